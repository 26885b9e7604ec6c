//! `--join DOC_ID [--joins K]`: K fresh joins in sequence to one document
//! (typically one with a long history, see [`crate::history`]). Each is a new
//! connection and a fresh client (`client: null, rev: null`), so the server
//! answers with the whole text. Measured per join: connect start → complete
//! `joined` received, `join` sent → `joined` received, and the `joined`
//! frame's size. The first join is reported apart as "cold" (the server may
//! have had to load the document from its store), the others as "warm".
//! Afterwards the server's document (`GET /api/documents/{id}`, which is
//! not called before: it would open the document) must have the revision
//! and text every join got.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{OtClient, connect};
use crate::http::{addr_of, fetch_document, request};
use crate::stats::{cpu_seconds, new_hist, peak_rss_mb, record, summary};

/// After each join, how long to wait for the server to end the connection
/// (not measured).
const CLOSE_WAIT: Duration = Duration::from_millis(100);

/// Everything `tandem-loadtest --join` is told.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    /// `http://HOST:PORT`.
    pub url: String,
    /// The document to join.
    pub doc: String,
    /// Joins in sequence (the first is the cold one).
    pub joins: usize,
    /// The server's pid, for CPU and memory.
    pub pid: Option<u32>,
    /// Longest wait for one join (connect to `joined`).
    pub timeout: Duration,
}

impl Default for JoinConfig {
    fn default() -> Self {
        JoinConfig {
            url: "http://127.0.0.1:8080".into(),
            doc: String::new(),
            joins: 20,
            pid: None,
            timeout: Duration::from_secs(60),
        }
    }
}

/// One join's measurements and what it got.
struct Joined {
    connect: Duration,
    connect_join: Duration,
    join: Duration,
    frame_bytes: usize,
    rev: u64,
    text: String,
}

/// Problems found: how many, and the first few.
#[derive(Default)]
struct Errors {
    count: u64,
    samples: Vec<String>,
}

impl Errors {
    fn push(&mut self, e: String) {
        self.count += 1;
        if self.samples.len() < 5 {
            self.samples.push(e);
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Connects, sends a fresh `join`, reads until `joined`, then closes.
async fn join_once(ws_url: &str, name: &str) -> Result<Joined> {
    let t0 = Instant::now();
    let mut ws = connect(ws_url).await?;
    let connected = Instant::now();
    let msg = OtClient::new(name).join_msg(false);
    let sent = Instant::now();
    ws.send(Message::Text(msg)).await.context("send join")?;
    let frame = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => break t,
            Some(Ok(Message::Close(c))) => bail!("closed before joined: {c:?}"),
            Some(Ok(Message::Binary(_))) => bail!("binary frame before joined"),
            Some(Ok(_)) => {} // ping, pong
            Some(Err(e)) => return Err(anyhow!(e).context("read joined")),
            None => bail!("connection ended before joined"),
        }
    };
    let done = Instant::now();
    // Not measured: parse, then close politely so the server sees the leave.
    let v: Value = serde_json::from_str(&frame).context("joined is not JSON")?;
    if v["type"] != "joined" {
        bail!("expected joined, got {:.300}", frame.as_str());
    }
    let text = v["text"]
        .as_str()
        .context("joined without text (a fresh join must get the full text)")?
        .to_owned();
    let rev = v["rev"].as_u64().context("joined without rev")?;
    // The server does not echo the close frame (it ends the session and
    // the connection goes about 1 s later): give it a moment to take the
    // leave, then drop the connection.
    let _ = ws.close(None).await;
    let _ = timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    Ok(Joined {
        connect: connected - t0,
        connect_join: done - t0,
        join: done - sent,
        frame_bytes: frame.len(),
        rev,
        text,
    })
}

/// `open_documents` from `GET /healthz` (does not open any document).
async fn open_documents(addr: &str) -> Option<u64> {
    let (status, body) = request(addr, "GET", "/healthz", None).await.ok()?;
    if status != 200 {
        return None;
    }
    serde_json::from_str::<Value>(&body).ok()?["open_documents"].as_u64()
}

/// Runs the joins and returns the report (`mode: "join"`).
pub async fn run_join(cfg: JoinConfig) -> Result<Value> {
    if tandem::ids::DocId::parse(&cfg.doc).is_err() {
        bail!("bad document id {:?}", cfg.doc);
    }
    if cfg.joins == 0 {
        bail!("--joins must be at least 1");
    }
    let addr = addr_of(&cfg.url);
    let ws_url = format!("ws://{addr}/api/documents/{}/ws", cfg.doc);
    let open_before = open_documents(&addr).await;
    let pid = cfg.pid.map(|p| p.to_string());
    let server_cpu0 = pid.as_deref().and_then(cpu_seconds);
    let self_cpu0 = cpu_seconds("self");
    let started = Instant::now();

    let mut warm_join = new_hist();
    let mut warm_connect_join = new_hist();
    let mut warm_connect = new_hist();
    let mut cold: Option<Value> = None;
    let mut per_join = Vec::with_capacity(cfg.joins);
    let mut errors = Errors::default();
    let mut first: Option<(u64, String)> = None;
    let mut consistent = true;
    let (mut frame_min, mut frame_max) = (usize::MAX, 0usize);
    let mut ok = 0usize;
    for i in 0..cfg.joins {
        let name = format!("loadtest-join-{i}");
        let r = match timeout(cfg.timeout, join_once(&ws_url, &name)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow!("no joined within {:?}", cfg.timeout)),
        };
        let j = match r {
            Ok(j) => j,
            Err(e) => {
                errors.push(format!("join {i}: {e:#}"));
                per_join.push(json!({"error": format!("{e:#}")}));
                continue;
            }
        };
        ok += 1;
        frame_min = frame_min.min(j.frame_bytes);
        frame_max = frame_max.max(j.frame_bytes);
        per_join.push(json!({
            "connect_join_ms": ms(j.connect_join),
            "join_ms": ms(j.join),
            "connect_ms": ms(j.connect),
            "frame_bytes": j.frame_bytes,
            "rev": j.rev,
        }));
        if i == 0 {
            cold = Some(json!({
                "connect_join_ms": ms(j.connect_join),
                "join_ms": ms(j.join),
                "connect_ms": ms(j.connect),
                "frame_bytes": j.frame_bytes,
            }));
        } else {
            record(&mut warm_join, j.join);
            record(&mut warm_connect_join, j.connect_join);
            record(&mut warm_connect, j.connect);
        }
        match &first {
            None => first = Some((j.rev, j.text)),
            Some((rev, text)) => {
                if j.rev != *rev || j.text != *text {
                    consistent = false;
                    errors.push(format!(
                        "join {i}: rev {} / {} chars, but the first join got rev {rev} / {} chars",
                        j.rev,
                        j.text.chars().count(),
                        text.chars().count()
                    ));
                }
            }
        }
    }
    if ok == 0 {
        bail!(
            "no join succeeded: {}",
            errors.samples.first().map_or("", String::as_str)
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu1 = pid.as_deref().and_then(cpu_seconds);
    let self_cpu1 = cpu_seconds("self");

    // The server's document, read only now (reading it opens it).
    let (rev, text) = first.context("no join succeeded")?;
    let text_chars = text.chars().count();
    let mut converged = ok == cfg.joins && consistent;
    let (server_rev, server_chars) = match fetch_document(&addr, &cfg.doc).await {
        Ok((srev, stext)) => {
            let schars = stext.chars().count();
            if srev != rev || schars != text_chars || stext != text {
                converged = false;
                errors.push(format!(
                    "the server has rev {srev} / {schars} chars, the joins got rev {rev} / {text_chars} chars{}",
                    if schars == text_chars && srev == rev {
                        " (different text)"
                    } else {
                        ""
                    }
                ));
            }
            (Some(srev), Some(schars))
        }
        Err(e) => {
            converged = false;
            errors.push(format!("GET /api/documents/{}: {e:#}", cfg.doc));
            (None, None)
        }
    };
    if rev == 0 {
        eprintln!(
            "note: document {} is at revision 0: it was empty or did not exist (the join created it); import a history first",
            cfg.doc
        );
    }
    for e in &errors.samples {
        eprintln!("error: {e}");
    }
    let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
    Ok(json!({
        "mode": "join",
        "url": cfg.url,
        "doc": cfg.doc,
        "joins": cfg.joins,
        "joins_ok": ok,
        "open_documents_before": open_before,
        "cold": cold,
        "cold_ms": cold.as_ref().map(|c| c["connect_join_ms"].clone()),
        "cold_join_ms": cold.as_ref().map(|c| c["join_ms"].clone()),
        "join_ms": summary(&warm_join),
        "connect_join_ms": summary(&warm_connect_join),
        "connect_ms": summary(&warm_connect),
        "frame_bytes": frame_max,
        "frame_bytes_min": frame_min,
        "bytes_per_char": frame_max as f64 / text_chars.max(1) as f64,
        "text_chars": text_chars,
        "text_bytes": text.len(),
        "rev": rev,
        "server_rev": server_rev,
        "server_text_chars": server_chars,
        "converged": converged,
        "errors": errors.count,
        "error_samples": errors.samples,
        "elapsed_s": elapsed,
        "server_cpu_s": diff(server_cpu0, server_cpu1),
        "server_peak_rss_mb": pid.as_deref().and_then(peak_rss_mb),
        "loadgen_cpu_s": diff(self_cpu0, self_cpu1),
        "per_join": per_join,
        "ops_per_sec": 0,
        "ops_acked": 0,
    }))
}
