//! A quick closed-loop load: N clients on one document, each sending its
//! next op (an append) as soon as the last is acked, for a few seconds.
//! Prints acked ops/s and ack latency percentiles. The full load generator
//! is `loadtest/`; this is the smoke figure for a running server.
//!
//! ```text
//! cargo run --release --example quick_load -- 127.0.0.1:8080 10 5
//! ```

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async_with_config;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let clients: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let doc = format!("quick-load-{}", std::process::id());
    let url = format!("ws://{addr}/api/documents/{doc}/ws");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let (mut ws, _) = connect_async_with_config(&url, None, true)
                    .await
                    .expect("connect");
                let join = json!({"type": "join", "client": null, "rev": null, "user": null});
                ws.send(Message::Text(join.to_string()))
                    .await
                    .expect("join");
                let (mut rev, mut len) = (0u64, 0u64);
                let mut latencies = Vec::new();
                let mut seq = 0u64;
                let mut sent_at = None;
                loop {
                    if sent_at.is_none() {
                        if Instant::now() > deadline {
                            break;
                        }
                        seq += 1;
                        let op = if len == 0 {
                            json!(["abcd"])
                        } else {
                            json!([len, "abcd"])
                        };
                        let msg = json!({"type": "op", "rev": rev, "seq": seq, "op": op});
                        sent_at = Some(Instant::now());
                        ws.send(Message::Text(msg.to_string())).await.expect("send");
                    }
                    let Some(Ok(Message::Text(t))) = ws.next().await else {
                        break;
                    };
                    let m: Value = serde_json::from_str(&t).expect("json");
                    match m["type"].as_str() {
                        Some("joined") => {
                            rev = m["rev"].as_u64().unwrap_or(0);
                            len = m["text"].as_str().map_or(0, |t| t.chars().count() as u64);
                        }
                        Some("op") => {
                            rev = m["rev"].as_u64().unwrap_or(rev);
                            len += 4;
                        }
                        Some("ack") => {
                            rev = m["rev"].as_u64().unwrap_or(rev);
                            len += 4;
                            if let Some(t) = sent_at.take() {
                                latencies.push(t.elapsed());
                            }
                        }
                        Some("error") if m["code"] == "unknown_rev" => {
                            // Our base was stale (a peer's op not yet seen): drop it.
                            sent_at = None;
                        }
                        Some("error") => eprintln!("error: {m}"),
                        _ => {}
                    }
                }
                latencies
            })
        })
        .collect();
    let start = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)));
    println!(
        "{clients} clients, {:.1}s: {} acked ops, {:.0} ops/s; ack latency p50 {:?} p99 {:?} max {:?}",
        elapsed,
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        all.last()
    );
}
