//! Smoke test: the load generator's library code, in process, against the
//! real server binary for a few seconds. Asserts that ops were acked, that
//! every client converged, that `--plot` wrote an SVG with curves, and that
//! a paced trace replay took at least its schedule; never asserts latencies.
//! The join workload runs end to end through the `tandem-loadtest` binary:
//! `--write-history`, `tandem import`, `tandem serve`, `--join --json`.
//!
//! The server binary is `$TANDEM_BIN`, or `target/debug/tandem` of this
//! workspace (built by `cargo test --workspace`; built here when missing).
//! The real trace is the one vendored in `tests/data/traces/`.
//!
//! Every wait has a deadline ([`RUN_WAIT`], [`WAIT`]) and fails naming what
//! it waited for.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tandem_loadtest::{LoadConfig, TraceConfig, run_load, run_trace};

struct Server {
    child: Child,
    addr: String,
    _dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// How long a test waits for the server's listening line.
const WAIT: Duration = Duration::from_secs(20);

/// How long one load generator run (in process or as a command) or one
/// `tandem import` may take: each lasts a few seconds, plus the load
/// generator's own quiescence limits; generous for two shared cores.
const RUN_WAIT: Duration = Duration::from_secs(180);

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The output of `fut`; panics naming `what` when it takes over [`RUN_WAIT`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(RUN_WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {RUN_WAIT:?} waiting for {what}"),
    }
}

/// `cmd.output()` with a deadline: the command is killed and the test fails
/// when it has not exited within [`RUN_WAIT`].
fn output_within(cmd: &mut Command, what: &str) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    // Drained on threads of their own, so that a full pipe cannot stall it.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + RUN_WAIT;
    let status = loop {
        match child.try_wait().expect("wait for the command") {
            Some(status) => break status,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {RUN_WAIT:?}");
            }
        }
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TANDEM_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from);
    let bin = target.join("debug").join("tandem");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "tandem", "--bin", "tandem"])
            .current_dir(workspace())
            .status()
            .expect("run cargo build")
            .success();
        assert!(ok, "cargo build --bin tandem failed");
    }
    bin
}

/// A fresh, empty temporary directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-loadtest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn start_server(name: &str) -> Server {
    start_server_in(temp_dir(name))
}

/// Serves `dir/t.db` (removing `dir` when dropped).
fn start_server_in(dir: PathBuf) -> Server {
    let mut child = Command::new(server_binary())
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--static-dir",
            "/nonexistent",
        ])
        .arg("--data")
        .arg(dir.join("t.db"))
        .env("TANDEM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tandem");
    // Read on a thread of its own, so that a server that never listens fails
    // the test instead of stalling it.
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    let line = match rx.recv_timeout(WAIT) {
        Ok(read) => read.expect("listening line"),
        Err(_) => {
            let _ = child.kill();
            panic!("the server printed no listening line within {WAIT:?}");
        }
    };
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .expect("address")
        .to_owned();
    assert!(
        addr.starts_with("127.0.0.1:"),
        "unexpected first line {line:?}"
    );
    Server {
        child,
        addr,
        _dir: dir,
    }
}

/// The file `--plot` wrote: an SVG document with `lines` curves.
fn assert_svg_plot(path: &Path, lines: usize) {
    let svg = std::fs::read_to_string(path).expect("plot written");
    assert!(
        svg.starts_with("<?xml") || svg.starts_with("<svg"),
        "{svg:.200}"
    );
    assert!(svg.contains("<svg "), "{svg:.200}");
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), lines, "{svg}");
    assert!(svg.contains(">99.99%<"), "{svg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_load_converges() {
    let server = start_server("load");
    let plot = server._dir.join("load.svg");
    let run = run_load(LoadConfig {
        urls: vec![format!("http://{}", server.addr)],
        docs: 2,
        clients: 5,
        rate: 20.0,
        lurkers: 2,
        presence_hz: 5.0,
        doc_size: 2_000,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        pids: vec![server.child.id()],
        plot: Some(plot.clone()),
        ..LoadConfig::default()
    });
    let report = within("the open-loop load run", run)
        .await
        .expect("load run");
    assert_eq!(report["converged"], true, "{report:#}");
    assert!(report["ops_acked"].as_u64().unwrap() > 0, "{report:#}");
    assert!(
        report["delivery_ms"]["count"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    // Ack and delivery both have samples: two curves.
    assert_eq!(report["plot"], plot.display().to_string(), "{report:#}");
    assert_svg_plot(&plot, 2);
    assert_eq!(report["errors"], 0, "{report:#}");
    for key in ["p50", "p90", "p99", "max"] {
        assert!(report["ack_ms"][key].is_number(), "{report:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_load_converges() {
    let server = start_server("closed");
    let run = run_load(LoadConfig {
        urls: vec![format!("http://{}", server.addr)],
        clients: 4,
        closed_loop: true,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        ..LoadConfig::default()
    });
    let report = within("the closed-loop load run", run)
        .await
        .expect("load run");
    assert_eq!(report["converged"], true, "{report:#}");
    assert!(report["ops_acked"].as_u64().unwrap() > 0, "{report:#}");
}

/// Several `--url`s: the first refuses connections (nothing listens on
/// port 1), so the clients given it move to the next, and the REST calls
/// too; `--owner-url` holds the documents open first. Converges, with the
/// moves counted and no outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_urls_move_past_a_dead_node() {
    let server = start_server("urls");
    let url = format!("http://{}", server.addr);
    let run = run_load(LoadConfig {
        urls: vec!["http://127.0.0.1:1".into(), url.clone()],
        owner_url: Some(url),
        docs: 2,
        clients: 4,
        rate: 10.0,
        doc_size: 100,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        ..LoadConfig::default()
    });
    let report = within("the several-urls run", run).await.expect("load run");
    assert_eq!(report["converged"], true, "{report:#}");
    assert!(report["ops_acked"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(report["urls"].as_array().map(Vec::len), Some(2));
    // Clients 0 and 3 start on the dead node ((doc + k) % 2 == 0).
    assert_eq!(report["resume"]["url_switches"], 2, "{report:#}");
    assert_eq!(report["resume"]["outages"], 0, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
}

/// A small hand-made trace: the replay must end at `endContent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_replay_matches_end_content() {
    use std::io::Write;
    let server = start_server("trace");
    let trace = serde_json::json!({
        "startContent": "",
        "endContent": "héllo wörld😀\n",
        "txns": [
            {"patches": [[0, 0, "hello world"]]},
            {"patches": [[7, 1, "ö"], [1, 1, "é"]]},
            {"patches": [[11, 0, "😀\n"]]},
        ]
    });
    let path = server._dir.join("t.json.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).expect("create"),
        flate2::Compression::default(),
    );
    gz.write_all(trace.to_string().as_bytes()).expect("write");
    gz.finish().expect("finish");
    let run = run_trace(TraceConfig {
        url: format!("http://{}", server.addr),
        trace: path,
        docs: 2,
        max_speed: true,
        ..TraceConfig::default()
    });
    let report = within("the trace run", run).await.expect("trace run");
    assert_eq!(report["matches_end_content"], true, "{report:#}");
    assert_eq!(report["converged"], true, "{report:#}");
    // Each patch its own op at max speed.
    assert_eq!(report["ops_acked"], 8, "{report:#}");
    assert_eq!(report["edits_acked"], 8, "{report:#}");
}

/// The first 1,000 patches of a real trace (sveltecomponent) at the recorded
/// pace, 400 times faster (about 1 s), two copies at once, with a plot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_trace_replay_converges() {
    let trace = workspace().join("tests/data/traces/sequential/sveltecomponent.json.gz");
    assert!(
        trace.exists(),
        "vendored trace missing: {}",
        trace.display()
    );
    let server = start_server("paced");
    let plot = server._dir.join("trace.svg");
    let run = run_trace(TraceConfig {
        url: format!("http://{}", server.addr),
        trace,
        docs: 2,
        speed: 400.0,
        max_gap: 2.0,
        limit: Some(1_000),
        pid: Some(server.child.id()),
        plot: Some(plot.clone()),
        ..TraceConfig::default()
    });
    let report = within("the paced trace run", run).await.expect("trace run");
    assert_eq!(report["pace"], "paced", "{report:#}");
    assert_eq!(report["patches_per_copy"], 1_000, "{report:#}");
    assert_eq!(report["matches_expected"], true, "{report:#}");
    assert_eq!(report["converged"], true, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    assert_eq!(report["edits_acked"], 2_000, "{report:#}");
    assert_eq!(report["commit_ms"]["count"], 2_000, "{report:#}");
    let ops = report["ops_acked"].as_u64().unwrap();
    assert!(ops > 0 && ops <= 2_000, "{report:#}");
    assert_eq!(report["ack_ms"]["count"], ops, "{report:#}");
    // Paced for real: the replay cannot be quicker than its schedule
    // (about 416 recorded seconds / 400).
    let schedule = report["schedule_s"].as_f64().unwrap();
    assert!((0.9..1.2).contains(&schedule), "{report:#}");
    assert!(
        report["elapsed_s"].as_f64().unwrap() >= schedule,
        "{report:#}"
    );
    for key in [
        "ops_per_sec",
        "edits_per_sec",
        "server_cpu_s",
        "server_peak_rss_mb",
        "loadgen_cpu_s",
    ] {
        assert!(report[key].is_number(), "{key}: {report:#}");
    }
    assert_eq!(report["delivery_ms"]["count"], 0, "{report:#}");
    // Ack and commit curves; delivery has no samples (legend only).
    assert_svg_plot(&plot, 2);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("sveltecomponent.json.gz"), "{svg}");
}

/// The join workload as documented: `--write-history` 2,000 ops, `tandem
/// import`, `tandem serve` on that database, then `--join --joins 3 --json`.
/// Every join must get the whole text at revision 2,000, the same as the
/// server's, which must be the text the history types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_long_history_gets_full_text() {
    struct RmDir(PathBuf);
    impl Drop for RmDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = temp_dir("join");
    let _cleanup = RmDir(dir.clone());
    let history = dir.join("h.jsonl");
    let loadtest = env!("CARGO_BIN_EXE_tandem-loadtest");
    let out = output_within(
        Command::new(loadtest)
            .arg("--write-history")
            .arg(&history)
            .args(["--ops", "2000", "--doc", "hist"]),
        "tandem-loadtest --write-history",
    );
    assert!(out.status.success(), "{out:?}");
    let lines = std::fs::read_to_string(&history).expect("history written");
    assert_eq!(lines.lines().count(), 2 + 2_000);

    let out = output_within(
        Command::new(server_binary())
            .arg("import")
            .arg(&history)
            .arg("--data")
            .arg(dir.join("t.db"))
            .env("TANDEM_LOG", "warn"),
        "tandem import",
    );
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("imported hist at revision 2000"), "{said}");

    let server = start_server_in(dir);
    let json = server._dir.join("join.json");
    let out = output_within(
        Command::new(loadtest)
            .args(["--url", &format!("http://{}", server.addr)])
            .args(["--join", "hist", "--joins", "3"])
            .args(["--pid", &server.child.id().to_string()])
            .arg("--json")
            .arg(&json),
        "tandem-loadtest --join",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("== tandem-loadtest: join"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("json report");
    assert_eq!(report["mode"], "join", "{report:#}");
    assert_eq!(report["converged"], true, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    assert_eq!(report["joins"], 3, "{report:#}");
    assert_eq!(report["joins_ok"], 3, "{report:#}");
    assert_eq!(report["rev"], 2_000, "{report:#}");
    assert_eq!(report["server_rev"], 2_000, "{report:#}");
    assert_eq!(report["text_chars"], 2_000, "{report:#}");
    assert!(
        report["frame_bytes"].as_u64().unwrap() >= 2_000,
        "{report:#}"
    );
    // A fresh server: the first join loaded the document.
    assert_eq!(report["open_documents_before"], 0, "{report:#}");
    assert!(report["cold_ms"].as_f64().unwrap() > 0.0, "{report:#}");
    for key in ["join_ms", "connect_join_ms"] {
        assert_eq!(report[key]["count"], 2, "{key}: {report:#}");
        for q in ["p50", "p90", "p99", "max"] {
            assert!(report[key][q].is_number(), "{key}.{q}: {report:#}");
        }
    }
    for key in ["server_cpu_s", "server_peak_rss_mb"] {
        assert!(report[key].is_number(), "{key}: {report:#}");
    }
    let fetch = tandem_loadtest::http::fetch_document(&server.addr, "hist");
    let (rev, text) = within("GET the document", fetch)
        .await
        .expect("GET the document");
    assert_eq!(rev, 2_000);
    assert_eq!(text, tandem_loadtest::history::history_text(2_000));
}

/// `--background-joins` beside a load on an imported history: 3,000 ops
/// (the server keeps 2,000 in memory), 3 writers at 10 ops/s, 2 joiners
/// looping fresh join / resume 2,500 revisions behind (so the catch-up is
/// read from the store), all through the `tandem-loadtest` binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_joins_beside_a_load() {
    let dir = temp_dir("background");
    let history = dir.join("h.jsonl");
    let loadtest = env!("CARGO_BIN_EXE_tandem-loadtest");
    let out = output_within(
        Command::new(loadtest)
            .arg("--write-history")
            .arg(&history)
            .args(["--ops", "3000", "--doc", "bg"]),
        "tandem-loadtest --write-history",
    );
    assert!(out.status.success(), "{out:?}");
    let out = output_within(
        Command::new(server_binary())
            .arg("import")
            .arg(&history)
            .arg("--data")
            .arg(dir.join("t.db"))
            .env("TANDEM_LOG", "warn"),
        "tandem import",
    );
    assert!(out.status.success(), "{out:?}");

    let server = start_server_in(dir);
    let json = server._dir.join("bg.json");
    let out = output_within(
        Command::new(loadtest)
            .args(["--url", &format!("http://{}", server.addr)])
            .args(["--load-doc", "bg", "--clients", "3", "--rate", "10"])
            .args(["--duration", "1.5", "--warmup", "0.5"])
            .args(["--background-joins", "2", "--resume-behind", "2500"])
            .arg("--json")
            .arg(&json),
        "tandem-loadtest --background-joins",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("background: 2 joiners"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("json report");
    assert_eq!(report["mode"], "load", "{report:#}");
    assert_eq!(report["load_doc"], "bg", "{report:#}");
    assert_eq!(report["converged"], true, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    assert!(report["ops_acked"].as_u64().unwrap() > 0, "{report:#}");
    let bg = &report["background_joins"];
    assert_eq!(bg["joiners"], 2, "{report:#}");
    assert_eq!(bg["errors"], 0, "{report:#}");
    for kind in ["fresh", "resume"] {
        assert!(
            bg[kind]["count"].as_u64().unwrap() > 0,
            "{kind}: {report:#}"
        );
        assert!(bg[kind]["join_ms"]["p99"].is_number(), "{kind}: {report:#}");
    }
    // Each resume got the 2,500 ops it asked for (and the few typed since).
    let ops_min = bg["resume"]["ops_min"].as_u64().unwrap();
    assert!((2_500..2_600).contains(&ops_min), "{report:#}");
    // A fresh join gets the whole text: 3,000 characters and the writers'.
    assert!(
        bg["fresh"]["text_chars_min"].as_u64().unwrap() >= 3_000,
        "{report:#}"
    );
}
