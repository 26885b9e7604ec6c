//! Several nodes: which node each client connects to (`--url` repeated),
//! holding each document open on one node first (`--owner-url`), and the
//! resume figures after a node fails (outages: from the failed connection
//! to the rejoin and to the first ack after it).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{OtClient, ServerMsg, connect};
use crate::http::addr_of;
use crate::stats::{new_hist, record, summary};

/// The node (index into the `--url` list) for client `ix` when clients go
/// round-robin over `docs` documents: the `k`-th client of document `d`
/// goes to node `(d + k) % nodes`, so the clients of one document land on
/// every node (and most of them are forwarded to its owner), and the first
/// clients of successive documents on successive nodes.
pub fn node_for(ix: usize, docs: usize, nodes: usize) -> usize {
    let docs = docs.max(1);
    let nodes = nodes.max(1);
    (ix % docs + ix / docs) % nodes
}

/// `ws://HOST:PORT/api/documents/{doc}/ws` for a `--url`.
pub fn ws_url(url: &str, doc: &str) -> String {
    format!("ws://{}/api/documents/{doc}/ws", addr_of(url))
}

/// One lost connection of a client: when it was found broken, when the
/// client had joined again (on whichever node), and its first ack after.
#[derive(Debug, Clone, Copy)]
pub struct Outage {
    pub start: Instant,
    pub rejoined: Option<Instant>,
    pub acked: Option<Instant>,
}

impl Outage {
    pub fn new(start: Instant) -> Outage {
        Outage {
            start,
            rejoined: None,
            acked: None,
        }
    }
}

/// What the clients' outages add up to, for the report's `resume`.
pub fn resume_report(outages: &[(usize, Outage)], url_switches: u64) -> Value {
    let mut rejoin: Histogram<u64> = new_hist();
    let mut ack: Histogram<u64> = new_hist();
    let mut clients = std::collections::HashSet::new();
    let first = outages.iter().map(|(_, o)| o.start).min();
    let mut last_rejoin = None::<Instant>;
    let mut last_ack = None::<Instant>;
    let mut unresumed = 0u64;
    for (ix, o) in outages {
        clients.insert(*ix);
        match o.rejoined {
            Some(r) => {
                record(&mut rejoin, r.saturating_duration_since(o.start));
                last_rejoin = last_rejoin.max(Some(r));
            }
            None => unresumed += 1,
        }
        if let Some(a) = o.acked {
            record(&mut ack, a.saturating_duration_since(o.start));
            last_ack = last_ack.max(Some(a));
        }
    }
    let span = |end: Option<Instant>| {
        first
            .zip(end)
            .map(|(f, e)| e.saturating_duration_since(f).as_secs_f64() * 1000.0)
    };
    json!({
        "outages": outages.len(),
        "clients": clients.len(),
        "not_rejoined": unresumed,
        "url_switches": url_switches,
        "rejoin_ms": summary(&rejoin),
        "first_ack_ms": summary(&ack),
        "first_failure_to_last_rejoin_ms": span(last_rejoin),
        "first_failure_to_last_first_ack_ms": span(last_ack),
    })
}

/// Connections that keep documents open on one node (`--owner-url`), so
/// that it owns them: each joined before any client connects, then read
/// (and ignored) until dropped.
pub struct Holders {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Holders {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Joins each of `ws_urls` as a fresh client and keeps the connection.
pub async fn hold(ws_urls: &[String]) -> Result<Holders> {
    let mut tasks = Vec::with_capacity(ws_urls.len());
    for url in ws_urls {
        let mut ws = connect(url).await?;
        let join = OtClient::new("holder").join_msg(false);
        ws.send(Message::Text(join)).await?;
        loop {
            let m = timeout(Duration::from_secs(30), ws.next())
                .await
                .with_context(|| format!("holder {url}: timed out waiting for joined"))?;
            match m {
                Some(Ok(Message::Text(t))) => {
                    let m: ServerMsg = serde_json::from_str(&t)?;
                    match m.kind.as_str() {
                        "joined" => break,
                        "error" => bail!("holder {url}: {:?} {:?}", m.code, m.message),
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
                other => bail!("holder {url}: closed while joining: {other:?}"),
            }
        }
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        }));
    }
    Ok(Holders { tasks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_of_a_document_spread_over_nodes() {
        // One document: plain round-robin.
        let one: Vec<usize> = (0..6).map(|ix| node_for(ix, 1, 3)).collect();
        assert_eq!(one, [0, 1, 2, 0, 1, 2]);
        // 150 documents × 4 clients over 3 nodes: each document's clients
        // on three different nodes, and every node gets a third.
        let mut per_node = [0usize; 3];
        for d in 0..150 {
            let nodes: std::collections::HashSet<usize> =
                (0..4).map(|k| node_for(d + 150 * k, 150, 3)).collect();
            assert_eq!(nodes.len(), 3, "document {d}");
        }
        for ix in 0..600 {
            per_node[node_for(ix, 150, 3)] += 1;
        }
        assert_eq!(per_node, [200, 200, 200]);
        // Two documents on three nodes (docs + 1 a multiple of nodes).
        let d0: Vec<usize> = (0..3).map(|k| node_for(2 * k, 2, 3)).collect();
        assert_eq!(d0, [0, 1, 2]);
        assert_eq!(node_for(5, 2, 1), 0);
    }

    #[test]
    fn resume_figures() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let outages = [
            (
                0,
                Outage {
                    start: t,
                    rejoined: Some(t + ms(1000)),
                    acked: Some(t + ms(1200)),
                },
            ),
            (
                1,
                Outage {
                    start: t + ms(10),
                    rejoined: Some(t + ms(2010)),
                    acked: None,
                },
            ),
            (1, Outage::new(t + ms(3000))),
        ];
        let r = resume_report(&outages, 2);
        assert_eq!(r["outages"], 3);
        assert_eq!(r["clients"], 2);
        assert_eq!(r["not_rejoined"], 1);
        assert_eq!(r["url_switches"], 2);
        assert_eq!(r["rejoin_ms"]["count"], 2);
        assert_eq!(r["first_ack_ms"]["count"], 1);
        let last = r["first_failure_to_last_rejoin_ms"].as_f64().unwrap();
        assert!((last - 2010.0).abs() < 1.0, "{r}");
        let empty = resume_report(&[], 0);
        assert_eq!(empty["outages"], 0);
        assert!(empty["first_failure_to_last_rejoin_ms"].is_null());
    }
}
