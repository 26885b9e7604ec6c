//! `tandem-loadtest`: see `--help` and loadtest/README.md.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tandem_loadtest::stats::print_summary;
use tandem_loadtest::{
    JoinConfig, LoadConfig, TraceConfig, run_join, run_load, run_trace, write_history,
};

/// Load generator for a Tandem server: OT clients that behave like the
/// browser client, HDR latency histograms, and a convergence check.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The server, `http://HOST:PORT`. Repeat it for the nodes of a
    /// cluster: load clients are spread over them (the clients of each
    /// document on different nodes) and move to the next when theirs
    /// refuses connections; --trace and --join use the first.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: Vec<String>,
    /// Open each document on this node first (a connection held until the
    /// end), so that it owns them; the documents are created there too.
    #[arg(long, value_name = "URL", conflicts_with_all = ["join", "trace", "write_history"])]
    owner_url: Option<String>,
    /// Documents (clients are spread round-robin); trace copies with --trace.
    #[arg(long, default_value_t = 1)]
    docs: usize,
    /// Typing clients.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Ops per second per typing client (open loop).
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Characters each op inserts.
    #[arg(long, default_value_t = 4)]
    chars: usize,
    /// Send the next op as soon as the last is acked (ignores --rate).
    #[arg(long)]
    closed_loop: bool,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Connected clients that never type.
    #[arg(long, default_value_t = 0)]
    lurkers: usize,
    /// Cursor (presence) updates per second per client.
    #[arg(long, default_value_t = 0.0)]
    presence: f64,
    /// Create each document first with this many characters of text.
    #[arg(long, default_value_t = 0)]
    doc_size: usize,
    /// Seed for positions and text.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The server's pid: report its CPU time and peak RSS. Repeat it for
    /// several nodes (load runs sum them; --trace and --join use the first).
    #[arg(long)]
    pid: Vec<u32>,
    /// Seconds to wait for quiescence after the load stops.
    #[arg(long, default_value_t = 60.0)]
    quiesce_timeout: f64,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG plot of the ack and delivery latency by percentile here.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Replay this sequential editing trace (gzipped JSON) instead, one
    /// client per --docs copy.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Trace replay: each patch its own op, the next sent when the last is
    /// acked (default: the recorded pace, see --speed and --max-gap).
    #[arg(long)]
    max_speed: bool,
    /// Trace replay at the recorded pace: this many times faster.
    #[arg(long, default_value_t = 1.0, conflicts_with = "max_speed")]
    speed: f64,
    /// Trace replay at the recorded pace: longest pause replayed (recorded
    /// seconds, before --speed).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 2.0,
        conflicts_with = "max_speed"
    )]
    max_gap: f64,
    /// Trace replay: only the first N patches (checked against the text they
    /// make instead of endContent).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Write an export file (the format `tandem import` reads) of a document
    /// whose history is --ops one-character inserts, and exit; no server.
    #[arg(
        long,
        value_name = "FILE",
        requires = "ops",
        conflicts_with_all = ["join", "trace", "plot"]
    )]
    write_history: Option<PathBuf>,
    /// --write-history: how many ops (= characters of the final text).
    #[arg(long, value_name = "N", requires = "write_history")]
    ops: Option<u64>,
    /// --write-history: the document id in the export (default hist-N).
    #[arg(long, value_name = "ID", requires = "write_history")]
    doc: Option<String>,
    /// Time K fresh joins in sequence to this document (full text each;
    /// the first reported as cold, the rest as warm).
    #[arg(long, value_name = "DOC_ID", conflicts_with_all = ["trace", "plot"])]
    join: Option<String>,
    /// --join: how many joins.
    #[arg(long, value_name = "K", default_value_t = 20, requires = "join")]
    joins: usize,
    /// Load on this existing document (for instance one imported from
    /// --write-history) instead of creating new ones.
    #[arg(
        long,
        value_name = "DOC_ID",
        conflicts_with_all = ["doc_size", "docs", "join", "trace", "write_history"]
    )]
    load_doc: Option<String>,
    /// During the load, N joiner tasks loop on the documents: a fresh join
    /// (the full text), then a resume from --resume-behind revisions back
    /// (that many catch-up ops), and again; each `joined` read and checked.
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with_all = ["join", "trace", "write_history"])]
    background_joins: usize,
    /// --background-joins: how many revisions behind a resume starts.
    #[arg(long, value_name = "REVS", default_value_t = 20_000)]
    resume_behind: u64,
    /// --background-joins: milliseconds each joiner waits between joins.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    background_pause_ms: u64,
    /// Only the first N clients (writers, then lurkers) keep the text and
    /// transform ops; the others are lean: they track the document's length
    /// and check revision order and lengths, so that a crowd on one document
    /// does not make the load generator the bottleneck (default: all full).
    #[arg(long, value_name = "N", conflicts_with_all = ["join", "trace", "write_history"])]
    full_clients: Option<usize>,
    /// Ask the server for batched frames (`"batch": true` in `join`): each
    /// frame may then hold a JSON array of messages.
    #[arg(long, conflicts_with_all = ["join", "trace", "write_history"])]
    batch: bool,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// `--write-history`: writes the file, prints what to do next.
fn write_history_cmd(a: &Args, path: &std::path::Path) -> std::process::ExitCode {
    let ops = a.ops.unwrap_or(0);
    let doc = a.doc.clone().unwrap_or_else(|| format!("hist-{ops}"));
    match write_history(path, &doc, ops, a.seed) {
        Ok(s) => {
            println!(
                "wrote {}: document {}, {} ops typed by {} client(s) ({} chars of text), {:.1} MB in {:.2} s",
                path.display(),
                s.doc,
                s.ops,
                s.clients,
                s.text_chars,
                s.file_bytes as f64 / 1e6,
                s.elapsed_s
            );
            println!(
                "next: tandem import {} --data DB.db; tandem serve --data DB.db; tandem-loadtest --join {}",
                path.display(),
                s.doc
            );
            if let Some(json) = &a.json {
                let mut v = serde_json::to_value(&s).expect("json");
                v["mode"] = "write-history".into();
                v["file"] = path.display().to_string().into();
                let text = serde_json::to_string_pretty(&v).expect("json");
                if let Err(e) = std::fs::write(json, text + "\n") {
                    eprintln!("tandem-loadtest: write {}: {e}", json.display());
                    return std::process::ExitCode::from(2);
                }
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tandem-loadtest: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    if let Some(path) = &a.write_history {
        return write_history_cmd(&a, path);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        if let Some(doc) = &a.join {
            return run_join(JoinConfig {
                url: a.url[0].clone(),
                doc: doc.clone(),
                joins: a.joins,
                pid: a.pid.first().copied(),
                ..JoinConfig::default()
            })
            .await;
        }
        match &a.trace {
            Some(path) => {
                run_trace(TraceConfig {
                    url: a.url[0].clone(),
                    trace: path.clone(),
                    docs: a.docs,
                    max_speed: a.max_speed,
                    speed: a.speed,
                    max_gap: a.max_gap,
                    limit: a.limit,
                    seed: a.seed,
                    pid: a.pid.first().copied(),
                    plot: a.plot.clone(),
                })
                .await
            }
            None => {
                run_load(LoadConfig {
                    urls: a.url.clone(),
                    owner_url: a.owner_url.clone(),
                    docs: a.docs,
                    clients: a.clients,
                    rate: a.rate,
                    chars: a.chars,
                    closed_loop: a.closed_loop,
                    duration: secs(a.duration),
                    warmup: secs(a.warmup),
                    lurkers: a.lurkers,
                    presence_hz: a.presence,
                    doc_size: a.doc_size,
                    seed: a.seed,
                    pids: a.pid.clone(),
                    quiesce_timeout: secs(a.quiesce_timeout),
                    plot: a.plot.clone(),
                    load_doc: a.load_doc.clone(),
                    background_joins: a.background_joins,
                    resume_behind: a.resume_behind,
                    background_pause: Duration::from_millis(a.background_pause_ms),
                    full_clients: a.full_clients,
                    batch: a.batch,
                })
                .await
            }
        }
    });
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tandem-loadtest: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    print_summary(&report);
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report).expect("json");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("tandem-loadtest: write {}: {e}", path.display());
            return std::process::ExitCode::from(2);
        }
    }
    if report.get("plot_error").is_some() {
        return std::process::ExitCode::from(2);
    }
    let background_errors = report["background_joins"]["errors"].as_u64().unwrap_or(0);
    if report["converged"] == true && background_errors == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}
