//! Replays a sequential editing trace (shared/traces, gzipped JSON): one
//! client per document copy, each patch its own op, as fast as acks allow
//! (`--max-speed`), then checks the text against `endContent` and the server.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{OtClient, ServerMsg, connect, patch_op};
use crate::http::{addr_of, create_document, fetch_document};
use crate::stats::{ClientStats, cpu_seconds, peak_rss_mb, record, summary};
use crate::workload::run_prefix;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    #[serde(default)]
    pub start_content: String,
    pub end_content: String,
    pub txns: Vec<Txn>,
}

#[derive(Debug, Deserialize)]
pub struct Txn {
    pub patches: Vec<(usize, usize, String)>,
}

impl Trace {
    pub fn load(path: &Path) -> Result<Trace> {
        let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut s = String::new();
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut s)
            .context("gunzip trace")?;
        serde_json::from_str(&s).context("trace JSON")
    }

    pub fn patches(&self) -> usize {
        self.txns.iter().map(|t| t.patches.len()).sum()
    }
}

pub struct TraceConfig {
    pub url: String,
    pub trace: std::path::PathBuf,
    pub docs: usize,
    pub max_speed: bool,
    pub seed: u64,
    pub pid: Option<u32>,
}

/// One copy: join a fresh document, send every patch and wait for its ack.
async fn replay_one(trace: &Trace, url: &str, st: &mut ClientStats) -> Result<String> {
    let mut c = OtClient::new("trace");
    let mut ws = connect(url).await?;
    ws.send(Message::Text(c.join_msg(false))).await?;
    let wait = Duration::from_secs(30);
    loop {
        let Some(Ok(Message::Text(t))) = timeout(wait, ws.next()).await? else {
            bail!("closed while joining");
        };
        let m: ServerMsg = serde_json::from_str(&t)?;
        if m.kind == "joined" {
            c.on_joined(&m)?;
            break;
        }
    }
    if c.text != trace.start_content.as_str() {
        bail!("the new document does not hold startContent");
    }
    for txn in &trace.txns {
        for (pos, del, ins) in &txn.patches {
            let len = c.text.len_chars();
            if pos + del > len {
                bail!("patch ({pos}, {del}) past the end ({len})");
            }
            c.edit(patch_op(len, *pos, *del, ins))?;
            st.edits += 1;
            let msg = c.take_send(Instant::now()).context("nothing to send")?;
            ws.send(Message::Text(msg)).await?;
            loop {
                let t = match timeout(wait, ws.next()).await.context("no ack in 30 s")? {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(f))) => bail!("closed: {f:?}"),
                    Some(Err(e)) => bail!("socket: {e}"),
                    None => bail!("closed"),
                    Some(Ok(_)) => continue,
                };
                let m: ServerMsg = serde_json::from_str(&t)?;
                match m.kind.as_str() {
                    "ack" => {
                        let inf = c.on_ack(m.rev.context("rev")?)?;
                        st.acked += 1;
                        st.edits_acked += inf.edits;
                        record(&mut st.ack, inf.sent_at.elapsed());
                        break;
                    }
                    "error" => bail!("error {:?}: {:?}", m.code, m.message),
                    _ => {}
                }
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(c.text.to_string())
}

/// Runs the replay and returns the JSON report.
pub async fn run_trace(cfg: TraceConfig) -> Result<Value> {
    if !cfg.max_speed {
        bail!("only --max-speed replay is implemented");
    }
    let trace = std::sync::Arc::new(Trace::load(&cfg.trace)?);
    let addr = addr_of(&cfg.url);
    let prefix = run_prefix("trace", cfg.seed);
    let ids: Vec<String> = (0..cfg.docs.max(1))
        .map(|i| format!("{prefix}-{i}"))
        .collect();
    if !trace.start_content.is_empty() {
        for id in &ids {
            create_document(&addr, id, &trace.start_content).await?;
        }
    }
    let pid = cfg.pid.map(|p| p.to_string());
    let server_cpu0 = pid.as_deref().and_then(cpu_seconds);
    let self_cpu0 = cpu_seconds("self");
    let start = Instant::now();
    let handles: Vec<_> = ids
        .iter()
        .map(|id| {
            let trace = trace.clone();
            let url = format!("ws://{addr}/api/documents/{id}/ws");
            tokio::spawn(async move {
                let mut st = ClientStats::default();
                let r = replay_one(&trace, &url, &mut st).await;
                (r, st)
            })
        })
        .collect();
    let mut total = ClientStats::default();
    let mut texts = Vec::new();
    for h in handles {
        let (r, st) = h.await?;
        total.merge(&st);
        texts.push(r);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let server_cpu1 = pid.as_deref().and_then(cpu_seconds);
    let self_cpu1 = cpu_seconds("self");
    let mut matches_end = true;
    let mut converged = true;
    let mut errors = Vec::new();
    for (id, r) in ids.iter().zip(&texts) {
        match r {
            Ok(text) => {
                if *text != trace.end_content {
                    matches_end = false;
                }
                match fetch_document(&addr, id).await {
                    Ok((_, server)) if server == *text => {}
                    Ok(_) => converged = false,
                    Err(e) => {
                        converged = false;
                        errors.push(e.to_string());
                    }
                }
            }
            Err(e) => {
                matches_end = false;
                converged = false;
                errors.push(format!("{e:#}"));
            }
        }
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
    let server_cpu = diff(server_cpu0, server_cpu1);
    Ok(json!({
        "mode": "trace",
        "url": cfg.url,
        "trace": cfg.trace.display().to_string(),
        "docs": ids.len(),
        "patches_per_copy": trace.patches(),
        "elapsed_s": elapsed,
        "ops_per_sec": total.acked as f64 / elapsed,
        "edits_per_sec": total.acked as f64 / elapsed,
        "ops_acked": total.acked,
        "edits": total.edits,
        "ack_ms": summary(&total.ack),
        "delivery_ms": summary(&total.delivery),
        "matches_end_content": matches_end,
        "converged": converged && matches_end,
        "errors": errors.len(),
        "error_samples": errors,
        "rate_limited": 0,
        "disconnects": 0,
        "dropped_edits": 0,
        "server_cpu_s": server_cpu,
        "server_cpu_pct": server_cpu.map(|c| 100.0 * c / elapsed),
        "server_peak_rss_mb": pid.as_deref().and_then(peak_rss_mb),
        "loadgen_cpu_s": diff(self_cpu0, self_cpu1),
    }))
}
