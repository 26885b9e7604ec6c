//! Memory is bounded in bytes, not items: one client sending ops of 900,000
//! characters (insert, delete, insert, ...) must not make the server hold
//! them all. Before the history window was capped in bytes, 2,800 such ops
//! on one document took the server to 881 MB.

mod common;

use common::*;
use serde_json::json;

/// Characters inserted (then deleted) by each op.
const BIG: usize = 900_000;
/// Ops sent, one at a time, each acked before the next.
const OPS: u64 = 3_000;
/// What the server may take beyond an idle server's footprint: the text
/// (at most 0.9 MB, held at two revisions), the 8 MiB history window, a
/// few frames in flight, the store's caches. A few tens of MB, whatever
/// the number of ops.
const HEADROOM: u64 = 48 * 1024 * 1024;

on_both_stores!(huge_ops_keep_memory_bounded, huge_ops);

async fn huge_ops(db: Db) {
    let server = Server::start_db(&db, &[]);
    let url = server.ws_url("huge");
    let mut s = Socket::connect(&url).await;
    s.send(&json!({"type": "join", "client": null, "rev": null, "user": null}))
        .await;
    s.recv_type("joined").await;
    let idle = server.rss_bytes();
    let insert = json!({"type": "op", "rev": 0, "seq": 0, "op": ["x".repeat(BIG)]}).to_string();
    let mut peak = idle;
    for n in 0..OPS {
        // Only rev and seq change: splice them into the prepared frame.
        let frame = if n % 2 == 0 {
            insert.replacen(
                "\"rev\":0,\"seq\":0",
                &format!("\"rev\":{n},\"seq\":{}", n + 1),
                1,
            )
        } else {
            json!({"type": "op", "rev": n, "seq": n + 1, "op": [-(BIG as i64)]}).to_string()
        };
        s.send_raw(tokio_tungstenite::tungstenite::Message::Text(frame))
            .await;
        let ack = s.recv_type("ack").await;
        assert_eq!(ack["rev"], n + 1, "{ack}");
        if n % 100 == 99 {
            peak = peak.max(server.rss_bytes());
        }
    }
    peak = peak.max(server.rss_bytes());
    eprintln!(
        "huge ops: idle RSS {} MB, peak {} MB over {OPS} ops of {BIG} characters",
        idle >> 20,
        peak >> 20
    );
    assert!(
        peak <= idle + HEADROOM,
        "RSS grew from {} MB to {} MB (bound: {} MB more)",
        idle >> 20,
        peak >> 20,
        HEADROOM >> 20
    );
    let (rev, text) = fetch_doc(&server.addr, "huge").await;
    assert_eq!((rev, text.len()), (OPS, 0));
}
