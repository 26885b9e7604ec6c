//! Ordering of what a session receives, checked in the clients: every
//! committed op exactly once and in order (rule 1), and every `presence` valid
//! at the revision its receiver has just reached in its stream: a cursor never
//! runs ahead of the ops it was moved through, whatever the coalescing, and
//! however often clients drop and resume with an op in flight.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// How long the crowd may take to go quiet at the end.
const QUIESCE: Duration = Duration::from_secs(120);
/// How long a round waits for each message it reads: the traffic is uneven
/// on purpose, so a client often has nothing to read.
const BRIEFLY: Duration = Duration::from_millis(5);

/// Lengths of the document at each revision, as learnt from the streams (an
/// `op` or an `ack` says how long the text is at its revision), or asked of
/// the history API for a revision nobody was sent.
struct Lengths {
    addr: String,
    doc: String,
    at: HashMap<u64, usize>,
}

impl Lengths {
    async fn get(&mut self, rev: u64) -> usize {
        if let Some(n) = self.at.get(&rev) {
            return *n;
        }
        let path = format!("/api/documents/{}/text?rev={rev}", self.doc);
        let (status, body) = http_request(&self.addr, "GET", &path, None).await;
        assert_eq!(status, 200, "text at {rev}: {body}");
        let n = body.chars().count();
        self.at.insert(rev, n);
        n
    }
}

/// Takes one message off `c`'s socket (waiting at most `wait`), checks it,
/// and hands it to the client model (which asserts there is no gap).
/// Returns false when the socket closed or nothing came. Counts the
/// presences checked in `checked`.
async fn step_checked(
    c: &mut OtClient,
    lens: &mut Lengths,
    checked: &mut u64,
    wait: Duration,
) -> bool {
    let Some(s) = c.socket.as_mut() else {
        return false;
    };
    let m = match tokio::time::timeout(wait, s.next()).await {
        Err(_) => return false,
        Ok(Received::Msg(m)) => m,
        Ok(Received::Closed(_)) => {
            c.socket = None;
            return false;
        }
    };
    match m["type"].as_str() {
        Some("op") => {
            let rev = m["rev"].as_u64().expect("rev");
            lens.at.insert(rev, parse_op(&m["op"]).target_len());
        }
        Some("ack") => {
            if let Some((_, op)) = &c.inflight {
                let rev = m["rev"].as_u64().expect("rev");
                lens.at.insert(rev, op.target_len());
            }
        }
        Some("presence") if !m["selection"].is_null() => {
            let len = lens.get(c.rev).await;
            for r in m["selection"]["ranges"].as_array().expect("ranges") {
                let (a, h) = (r["anchor"].as_u64(), r["head"].as_u64());
                assert!(
                    a.zip(h).is_some_and(|(a, h)| a.max(h) as usize <= len),
                    "{} at revision {} ({len} characters) got a presence ahead of its text: {m}",
                    c.name,
                    c.rev
                );
            }
            *checked += 1;
        }
        _ => {}
    }
    c.handle(&m).await;
    true
}

on_both_stores!(presence_never_overtakes_ops, presence_order);

async fn presence_order(db: Db) {
    let server = Server::start_db(&db, &[]);
    let doc = "cursors";
    let url = server.ws_url(doc);
    let mut lens = Lengths {
        addr: server.addr.clone(),
        doc: doc.into(),
        at: HashMap::from([(0, 0)]),
    };
    let mut clients = Vec::new();
    for i in 0..16 {
        clients.push(OtClient::join(&url, &format!("user{i}")).await);
    }
    let mut rng = Rng::new(77);
    let mut checked = 0;
    for _round in 0..120 {
        for c in clients.iter_mut() {
            if c.socket.is_none() {
                c.connect().await;
            }
            let len = c.text.chars().count();
            match rng.below(7) {
                6 if !c.pending() && c.socket.is_some() => {
                    // An op with the cursor after it, as editors send them.
                    let op = random_op(&mut rng, len);
                    c.text = op.apply_str(&c.text).expect("applies");
                    let after = c.text.chars().count() as u64;
                    let (seq, rev) = (c.next_seq, c.rev);
                    c.next_seq += 1;
                    let msg = json!({"type": "op", "rev": rev, "seq": seq, "op": op_json(&op),
                        "selection": {"ranges": [{"anchor": rng.below(after + 1), "head": rng.below(after + 1)}]}});
                    c.inflight = Some((seq, op));
                    if let Some(s) = c.socket.as_mut() {
                        let _ = s.try_send(&msg).await;
                    }
                }
                0..=1 => {
                    let op = random_op(&mut rng, len);
                    c.edit(op).await;
                }
                2 => {
                    // Drop with an op in flight and come straight back: the
                    // op may be committed while the new session joins.
                    let op = random_op(&mut rng, len);
                    c.edit(op).await;
                    c.disconnect();
                    c.connect().await;
                }
                _ if !c.pending() => {
                    // A cursor in the text at the client's revision (with
                    // nothing pending, its text is the server's at `rev`).
                    let (a, h) = (rng.below(len as u64 + 1), rng.below(len as u64 + 1));
                    let msg = json!({"type": "presence", "rev": c.rev,
                        "selection": {"ranges": [{"anchor": a, "head": h}]}});
                    if let Some(s) = c.socket.as_mut() {
                        let _ = s.try_send(&msg).await;
                    }
                }
                _ => {}
            }
        }
        for c in clients.iter_mut() {
            for _ in 0..rng.below(6) {
                if !step_checked(c, &mut lens, &mut checked, BRIEFLY).await {
                    break;
                }
            }
        }
    }
    // Quiesce, still checking every message.
    let deadline = Instant::now() + QUIESCE;
    loop {
        assert!(
            Instant::now() < deadline,
            "did not quiesce within {QUIESCE:?}"
        );
        let (rev, _) = fetch_doc(&server.addr, doc).await;
        for c in clients.iter_mut() {
            while c.pending() || c.rev < rev {
                let in_time = Instant::now() < deadline;
                assert!(in_time, "{} did not catch up within {QUIESCE:?}", c.name);
                if !step_checked(c, &mut lens, &mut checked, WAIT).await && c.socket.is_none() {
                    c.connect().await;
                }
            }
        }
        let (after, _) = fetch_doc(&server.addr, doc).await;
        if after == rev && clients.iter().all(|c| !c.pending() && c.rev == rev) {
            break;
        }
    }
    let (rev, text) = fetch_doc(&server.addr, doc).await;
    let sent: u64 = clients.iter().map(OtClient::sent).sum();
    assert_eq!(rev, sent, "each op sent was committed exactly once");
    for c in &clients {
        assert_eq!(c.text, text, "client {} diverged", c.name);
    }
    assert!(checked > 200, "only {checked} presences were checked");
}
