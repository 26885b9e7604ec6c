//! Measurement: HDR histograms (microseconds), counters, /proc readings and
//! the report (readable summary and JSON).

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// A latency histogram in microseconds, 1 µs to 10 minutes, 2 significant
/// digits (1% precision). Every simulated client keeps two; at 3 digits
/// each is ~160 KB, so a thousand clients spent 320 MB and most of their
/// recording time on cache misses.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 2).expect("histogram bounds")
}

/// Records a duration, saturating at the histogram's bounds.
pub fn record(h: &mut Histogram<u64>, d: std::time::Duration) {
    let us = (d.as_micros() as u64).clamp(1, 600_000_000);
    h.saturating_record(us);
}

/// p50/p90/p99/max/mean in milliseconds, and the sample count.
pub fn summary(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return json!({"p50": null, "p90": null, "p99": null, "max": null, "mean": null, "count": 0});
    }
    json!({
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "max": ms(h.max()),
        "mean": h.mean() / 1000.0,
        "count": h.len(),
    })
}

/// What one client counted.
pub struct ClientStats {
    pub ack: Histogram<u64>,
    pub delivery: Histogram<u64>,
    /// Acks (in the measured window: ops sent inside it).
    pub acked: u64,
    /// Local edits held by the ops acked in the window.
    pub edits_acked: u64,
    pub acked_total: u64,
    pub edits: u64,
    pub errors: u64,
    pub rate_limited: u64,
    pub disconnects: u64,
    pub dropped_edits: u64,
    pub presence_sent: u64,
    pub error_samples: Vec<String>,
}

impl Default for ClientStats {
    fn default() -> Self {
        ClientStats {
            ack: new_hist(),
            delivery: new_hist(),
            acked: 0,
            edits_acked: 0,
            acked_total: 0,
            edits: 0,
            errors: 0,
            rate_limited: 0,
            disconnects: 0,
            dropped_edits: 0,
            presence_sent: 0,
            error_samples: Vec::new(),
        }
    }
}

impl ClientStats {
    pub fn error(&mut self, what: String) {
        self.errors += 1;
        if self.error_samples.len() < 3 {
            self.error_samples.push(what);
        }
    }

    pub fn merge(&mut self, o: &ClientStats) {
        self.ack.add(&o.ack).expect("same bounds");
        self.delivery.add(&o.delivery).expect("same bounds");
        self.acked += o.acked;
        self.edits_acked += o.edits_acked;
        self.acked_total += o.acked_total;
        self.edits += o.edits;
        self.errors += o.errors;
        self.rate_limited += o.rate_limited;
        self.disconnects += o.disconnects;
        self.dropped_edits += o.dropped_edits;
        self.presence_sent += o.presence_sent;
        for s in &o.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(s.clone());
            }
        }
    }
}

/// utime + stime of a process in seconds (`/proc/PID/stat`; `self` works).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0) // USER_HZ is 100 on Linux.
}

/// Peak resident set (VmHWM) in MiB.
pub fn peak_rss_mb(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn fmt_ms(v: &Value, key: &str) -> String {
    v[key]
        .as_f64()
        .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"))
}

fn lat_line(name: &str, v: &Value) -> String {
    format!(
        "{name:<9} p50 {} ms  p90 {} ms  p99 {} ms  max {} ms  (n={})",
        fmt_ms(v, "p50"),
        fmt_ms(v, "p90"),
        fmt_ms(v, "p99"),
        fmt_ms(v, "max"),
        v["count"]
    )
}

fn opt_num(r: &Value, k: &str, unit: &str) -> String {
    r[k].as_f64()
        .map_or_else(|| "n/a".to_owned(), |x| format!("{x:.2}{unit}"))
}

/// The summary of a `--join` report.
fn print_join_summary(r: &Value) {
    let opt = |k: &str, unit: &str| opt_num(r, k, unit);
    println!(
        "{} fresh joins in sequence to {} (rev null: the full text each time); documents open before: {}",
        r["joins"],
        r["doc"].as_str().unwrap_or("?"),
        r["open_documents_before"]
    );
    println!(
        "document rev {}, {} chars ({} bytes UTF-8); joined frame {} bytes ({} bytes/char)",
        r["rev"],
        r["text_chars"],
        r["text_bytes"],
        r["frame_bytes"],
        opt("bytes_per_char", "")
    );
    let c = &r["cold"];
    println!(
        "cold      connect+join {} ms  join {} ms  (the first join: the server may load the document)",
        fmt_ms(c, "connect_join_ms"),
        fmt_ms(c, "join_ms")
    );
    println!("{}", lat_line("join", &r["join_ms"]));
    println!("{}", lat_line("conn+join", &r["connect_join_ms"]));
    println!(
        "          (warm joins; join: join sent -> joined received; conn+join: from the connect)"
    );
    println!(
        "joins ok {} of {}, errors {}",
        r["joins_ok"], r["joins"], r["errors"]
    );
    if let Some(s) = r["error_samples"].as_array().filter(|a| !a.is_empty()) {
        for e in s {
            println!("  error: {}", e.as_str().unwrap_or(""));
        }
    }
    println!(
        "server cpu {}, peak rss {}; loadgen cpu {}",
        opt("server_cpu_s", " s"),
        opt("server_peak_rss_mb", " MiB"),
        opt("loadgen_cpu_s", " s")
    );
    println!(
        "converged: {} (server rev {}, {} chars)",
        r["converged"], r["server_rev"], r["server_text_chars"]
    );
}

/// The `background_joins` lines of a load report.
fn print_background_summary(b: &Value) {
    println!(
        "background: {} joiners looping (fresh join, then resume {} revisions behind), pause {} ms",
        b["joiners"], b["resume_behind"], b["pause_ms"]
    );
    for (kind, size, what) in [
        ("fresh", "text_chars", "chars"),
        ("resume", "ops", "catch-up ops"),
    ] {
        let k = &b[kind];
        println!(
            "  {kind:<6} {} in window ({:.1}/s; {} in all), {}-{} {what}, frames up to {} bytes",
            k["count"],
            b[format!("{kind}_per_sec")].as_f64().unwrap_or(0.0),
            k["count_all"],
            k[format!("{size}_min")],
            k[format!("{size}_max")],
            k["frame_bytes_max"]
        );
        println!("  {}", lat_line(&format!("{kind} join"), &k["join_ms"]));
    }
    let t = &b["resume_as_text"];
    if t["count_all"].as_u64().unwrap_or(0) > 0 {
        println!(
            "  resumes answered with the whole text instead of ops: {} in window ({} in all)",
            t["count"], t["count_all"]
        );
        println!("  {}", lat_line("as text", &t["join_ms"]));
    }
    println!("  background errors {}", b["errors"]);
    if let Some(s) = b["error_samples"].as_array().filter(|a| !a.is_empty()) {
        for e in s {
            println!("    error: {}", e.as_str().unwrap_or(""));
        }
    }
}

/// A readable summary of a JSON report (load, trace or join).
pub fn print_summary(r: &Value) {
    let opt = |k: &str, unit: &str| opt_num(r, k, unit);
    println!("== tandem-loadtest: {}", r["mode"].as_str().unwrap_or("?"));
    if r["mode"] == "join" {
        print_join_summary(r);
        return;
    }
    if r["mode"] == "trace" {
        let pace = if r["pace"] == "max_speed" {
            "max speed (next patch on ack)".to_owned()
        } else {
            format!(
                "recorded pace x{}, pauses capped at {} s: {:.2} s schedule, done {:.3} s after it",
                r["speed"].as_f64().unwrap_or(0.0),
                r["max_gap_s"].as_f64().unwrap_or(0.0),
                r["schedule_s"].as_f64().unwrap_or(0.0),
                r["lag_s"].as_f64().unwrap_or(0.0)
            )
        };
        println!(
            "trace {}: {} copies x {} patches, {pace}",
            r["trace"].as_str().unwrap_or("?"),
            r["docs"],
            r["patches_per_copy"],
        );
        println!(
            "end to end {:.0} edits/s: {} edits acked in {:.2} s, in {} ops ({:.0} ops/s)",
            r["edits_per_sec"].as_f64().unwrap_or(0.0),
            r["edits_acked"],
            r["elapsed_s"].as_f64().unwrap_or(0.0),
            r["ops_acked"],
            r["ops_per_sec"].as_f64().unwrap_or(0.0)
        );
        println!(
            "text matches {}: {}",
            r["expected"].as_str().unwrap_or("?"),
            r["matches_expected"]
        );
    } else {
        println!(
            "{} writers + {} lurkers on {} docs, {}, {} s measured after {} s warmup",
            r["clients"],
            r["lurkers"],
            r["docs"],
            if r["closed_loop"] == true {
                "closed loop".to_owned()
            } else {
                format!("{} ops/s per writer", r["rate"])
            },
            r["duration_s"],
            r["warmup_s"]
        );
        let total = r["clients"].as_u64().unwrap_or(0) + r["lurkers"].as_u64().unwrap_or(0);
        if r["full_clients"].as_u64().is_some_and(|f| f < total) || r["batch"] == true {
            println!(
                "{} full clients (the rest lean: length only), batched frames {}",
                r["full_clients"], r["batch"]
            );
        }
        println!(
            "throughput {:.1} acked ops/s ({} ops, {} edits acked in window; {} edits made in all)",
            r["ops_per_sec"].as_f64().unwrap_or(0.0),
            r["ops_acked"],
            r["edits_acked"],
            r["edits"]
        );
    }
    println!("{}", lat_line("ack", &r["ack_ms"]));
    if r["pace"] == "paced" {
        println!("{}", lat_line("commit", &r["commit_ms"]));
    }
    if r["mode"] == "trace" {
        println!("delivery  - (one client per document: nobody else receives its ops)");
    } else {
        println!("{}", lat_line("delivery", &r["delivery_ms"]));
    }
    println!(
        "errors {} (rate_limited {}), disconnects {}, dropped edits {}",
        r["errors"], r["rate_limited"], r["disconnects"], r["dropped_edits"]
    );
    let resume = &r["resume"];
    if resume["outages"].as_u64().unwrap_or(0) > 0 {
        println!(
            "resume: {} outages of {} clients ({} not rejoined, {} moves to another --url); from the failed connection:",
            resume["outages"], resume["clients"], resume["not_rejoined"], resume["url_switches"]
        );
        println!("{}", lat_line("  rejoin", &resume["rejoin_ms"]));
        println!("{}", lat_line("  1st ack", &resume["first_ack_ms"]));
        println!(
            "  first failure to the last rejoin {} ms, to the last first ack {} ms",
            fmt_ms(resume, "first_failure_to_last_rejoin_ms"),
            fmt_ms(resume, "first_failure_to_last_first_ack_ms")
        );
    }
    if let Some(s) = r["error_samples"].as_array().filter(|a| !a.is_empty()) {
        for e in s {
            println!("  error: {}", e.as_str().unwrap_or(""));
        }
    }
    println!(
        "server cpu {} ({}), peak rss {}; loadgen cpu {}",
        opt("server_cpu_s", " s"),
        opt("server_cpu_pct", "% of one core"),
        opt("server_peak_rss_mb", " MiB"),
        opt("loadgen_cpu_s", " s")
    );
    if r["background_joins"].is_object() {
        print_background_summary(&r["background_joins"]);
    }
    if let Some(p) = r["plot"].as_str() {
        println!("plot: {p}");
    }
    if let Some(e) = r["plot_error"].as_str() {
        println!("plot failed: {e}");
    }
    println!("converged: {}", r["converged"]);
}
