//! Durability end to end: acked means durable even under SIGKILL, real
//! editing traces replay to their recorded final text and survive restarts,
//! and SIGTERM shuts down gracefully (1001 to clients, pending commits and a
//! snapshot written, exit 0).

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use serde_json::Value;
use tandem::ids::{DocId, Revision};
use tandem::ot::{Component, TextOp};
use tandem::store::Store;
use tandem::store::sqlite::SqliteStore;

fn append(len: usize, token: &str) -> TextOp {
    TextOp::from_components([Component::Retain(len), Component::Insert(token)])
}

on_both_stores!(sigkill_under_load_loses_no_acked_op, sigkill_under_load);

async fn sigkill_under_load(db: Db) {
    let server = Server::start_db(&db, &[]);
    let url = server.ws_url("killed");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..6 {
        let url = url.clone();
        let acked = Arc::clone(&acked);
        writers.push(tokio::spawn(async move {
            let mut c = OtClient::join(&url, &format!("w{w}")).await;
            for n in 0.. {
                let token = format!("[w{w}-{n}]");
                c.edit(append(c.text.chars().count(), &token)).await;
                if !c.until_acked().await {
                    return;
                }
                acked.lock().expect("lock").push(token);
            }
        }));
    }
    // Let the writers get going, then kill the server mid-stream.
    wait_until(LONG_WAIT, "300 acked ops before the kill", || {
        std::future::ready(acked.lock().expect("lock").len() >= 300)
    })
    .await;
    server.kill();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().expect("lock").clone();
    let server = Server::start_db(&db, &[]);
    let (rev, text) = fetch_doc(&server.addr, "killed").await;
    assert!(rev as usize >= acked.len());
    let missing: Vec<_> = acked
        .iter()
        .filter(|t| !text.contains(t.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "acked ops lost after SIGKILL: {missing:?}"
    );
}

/// Replays a sequential trace through one client, one patch per op, each
/// sent once the previous one is acked.
async fn replay_trace(url: &str, trace: &Value) -> String {
    let mut c = OtClient::join(url, "trace").await;
    let mut len = 0usize;
    for txn in trace["txns"].as_array().expect("txns") {
        for patch in txn["patches"].as_array().expect("patches") {
            let pos = patch[0].as_u64().expect("pos") as usize;
            let del = patch[1].as_u64().expect("del") as usize;
            let ins = patch[2].as_str().expect("ins");
            let op = TextOp::from_components([
                Component::Retain(pos),
                Component::Delete(del),
                Component::Insert(ins),
                Component::Retain(len - pos - del),
            ]);
            len = op.target_len();
            c.edit(op).await;
            assert!(c.until_acked().await, "server closed during replay");
        }
    }
    c.text
}

#[tokio::test]
async fn real_traces_replay_to_their_final_text_and_survive_restarts() {
    let names = [
        "sequential/rustcode.json.gz",
        "sequential/sveltecomponent.json.gz",
    ];
    let traces: Vec<(&str, Value)> = names.iter().map(|n| (*n, load_trace(n))).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("t.db");
    let server = Server::start(&db, &[]);
    // Both documents at once: their commits share fsyncs (group commit).
    let runs = traces.iter().enumerate().map(|(i, (_, t))| {
        let url = server.ws_url(&format!("trace{i}"));
        async move { replay_trace(&url, t).await }
    });
    let texts = futures_util::future::join_all(runs).await;
    for (i, ((name, trace), text)) in traces.iter().zip(&texts).enumerate() {
        let end = trace["endContent"].as_str().expect("endContent");
        assert!(text == end, "{name}: client text differs from endContent");
        let (_, served) = fetch_doc(&server.addr, &format!("trace{i}")).await;
        assert!(served == end, "{name}: server text differs from endContent");
    }
    // Graceful restart, then a hard one: the text is the same each time.
    assert_eq!(server.terminate(), Some(0));
    let server = Server::start(&db, &[]);
    for (i, (name, trace)) in traces.iter().enumerate() {
        let (_, served) = fetch_doc(&server.addr, &format!("trace{i}")).await;
        assert!(
            served == trace["endContent"].as_str().expect("end"),
            "{name} after restart"
        );
    }
    server.kill();
    let server = Server::start(&db, &[]);
    for (i, (name, trace)) in traces.iter().enumerate() {
        let (_, served) = fetch_doc(&server.addr, &format!("trace{i}")).await;
        assert!(
            served == trace["endContent"].as_str().expect("end"),
            "{name} after SIGKILL"
        );
    }
}

#[tokio::test]
async fn sigterm_closes_sessions_with_1001_flushes_and_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("t.db");
    let server = Server::start(&db, &[]);
    let url = server.ws_url("graceful");
    let mut a = OtClient::join(&url, "a").await;
    for i in 0..25 {
        a.edit(append(a.text.chars().count(), &format!("{i};")))
            .await;
        assert!(a.until_acked().await, "server closed before the SIGTERM");
    }
    let mut watcher = Socket::connect(&url).await;
    watcher
        .send(&serde_json::json!({"type": "join", "client": null, "rev": null, "user": null}))
        .await;
    watcher.recv_type("joined").await;
    let code = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("join");
    assert_eq!(code, Some(0), "graceful exit status");
    assert_eq!(watcher.closed().await, Some(1001));
    // The document was snapshotted at its last revision on the way out.
    let store = SqliteStore::open(&db).expect("open db");
    let doc = DocId::parse("graceful").expect("id");
    let revs = store.snapshot_revisions(&doc).await.expect("snapshots");
    assert_eq!(revs.last(), Some(&Revision(25)));
    let meta = store.document(&doc).await.expect("read").expect("exists");
    assert_eq!(meta.rev, Revision(25));
}

#[tokio::test]
async fn postgres_connections_killed_under_load_lose_nothing() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let Db::Postgres(pg) = &db else {
        unreachable!("Db::postgres makes a PostgreSQL database")
    };
    let server = Server::start_db(&db, &[]);
    let url = server.ws_url("pgkill");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (url, acked, stop) = (url.clone(), Arc::clone(&acked), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut c = OtClient::join(&url, &format!("w{w}")).await;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let token = format!("[w{w}-{n}]");
                n += 1;
                c.edit(append(c.text.chars().count(), &token)).await;
                // No disconnect, no reload: the server rides it out.
                assert!(c.until_acked().await, "client w{w} was disconnected");
                acked.lock().expect("lock").push(token);
            }
            c.sent()
        }));
    }
    let admin = pg::admin_client(&pg.admin_url).await;
    let acks = || acked.lock().expect("lock").len();
    for round in 1..=3 {
        let what = format!("{} acked ops before cut {round}", round * 150);
        wait_until(LONG_WAIT, &what, || {
            std::future::ready(acks() >= round * 150)
        })
        .await;
        // Cut every connection the server has to its database.
        let cut = admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&pg.name],
            )
            .await
            .expect("terminate backends");
        assert!(cut >= 1, "the server had connections to cut");
    }
    wait_until(LONG_WAIT, "600 acked ops after the cuts", || {
        std::future::ready(acks() >= 600)
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for w in writers {
        sent += w.await.expect("writer");
    }
    let (rev, text) = fetch_doc(&server.addr, "pgkill").await;
    assert_eq!(rev, sent, "every op committed exactly once");
    let acked = acked.lock().expect("lock").clone();
    let missing: Vec<_> = acked
        .iter()
        .filter(|t| !text.contains(t.as_str()))
        .collect();
    assert!(missing.is_empty(), "acked ops lost: {missing:?}");
}

#[tokio::test]
async fn postgres_gone_too_long_means_unavailable_then_the_resend_lands_once() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let Db::Postgres(pg) = &db else {
        unreachable!("Db::postgres makes a PostgreSQL database")
    };
    let server = Server::start_db(&db, &["--store-retry-secs", "1"]);
    let url = server.ws_url("pgdown");
    let mut c = OtClient::join(&url, "c").await;
    c.edit(append(0, "before;")).await;
    assert!(c.until_acked().await, "server closed before the outage");
    // Take the database away: no new connections, existing ones cut.
    let admin = pg::admin_client(&pg.admin_url).await;
    let name = &pg.name;
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .expect("disallow");
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[name],
        )
        .await
        .expect("terminate");
    c.edit(append(7, "during;")).await;
    // Past the retry limit the op is refused as unavailable and the session
    // closed; nothing was acked.
    let socket = c.socket.as_mut().expect("connected");
    let saw_unavailable = within(WAIT, "the session to close as unavailable", async {
        let mut saw_unavailable = false;
        loop {
            match socket.next().await {
                Received::Msg(m) if m["type"] == "error" => {
                    assert_eq!(m["code"], "unavailable", "{m}");
                    // The store's own text stays in the server's log.
                    let text = m["message"].as_str().unwrap_or("").to_lowercase();
                    for word in ["postgres", "sql", "connection", "database"] {
                        assert!(!text.contains(word), "store text reached a client: {m}");
                    }
                    saw_unavailable = true;
                }
                Received::Msg(m) => assert_ne!(m["type"], "ack", "nothing may be acked: {m}"),
                Received::Closed(code) => {
                    assert_eq!(code, Some(1013));
                    return saw_unavailable;
                }
            }
        }
    })
    .await;
    assert!(saw_unavailable);
    c.disconnect();
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .expect("allow");
    // The client resumes and resends; the op lands exactly once.
    c.connect().await;
    c.settle(0).await;
    assert_eq!(
        fetch_doc(&server.addr, "pgdown").await,
        (2, "before;during;".to_owned())
    );
}

/// A client reconnects while its op is still being stored, and resends it
/// only after the commit: it must get exactly one ack (the commit must not
/// ack the new connection as well as the resend's answer). The store is
/// held still by locking the document's row from another connection.
#[tokio::test]
async fn resend_across_a_slow_commit_is_acked_once() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let Db::Postgres(pg) = &db else {
        unreachable!("Db::postgres makes a PostgreSQL database")
    };
    let server = Server::start_db(&db, &[]);
    let url = server.ws_url("slow");
    let mut first = Socket::connect(&url).await;
    first
        .send(&serde_json::json!({"type": "join", "client": null, "rev": null, "user": null}))
        .await;
    let joined = first.recv_type("joined").await;
    let client = joined["client"].as_str().expect("client id").to_owned();

    let blocker = pg::admin_client(&pg.url).await;
    blocker
        .batch_execute("BEGIN; SELECT rev FROM documents WHERE id = 'slow' FOR UPDATE")
        .await
        .expect("lock the document row");
    let op = serde_json::json!({"type": "op", "rev": 0, "seq": 1, "op": ["hello"]});
    first.send(&op).await;
    // The op is being stored: its commit waits for the row lock. (Watched
    // from a connection of its own: inside the blocker's transaction
    // pg_stat_activity would not change.)
    let watcher = pg::admin_client(&pg.admin_url).await;
    let (watcher, name) = (&watcher, &pg.name);
    wait_until(
        WAIT,
        "the op's commit to wait for the locked row",
        move || async move {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = $1 AND wait_event_type = 'Lock'",
                    &[name],
                )
                .await
                .expect("read pg_stat_activity")
                .get(0);
            waiting >= 1
        },
    )
    .await;
    first.close().await;

    let mut second = Socket::connect(&url).await;
    second
        .send(&serde_json::json!({"type": "join", "client": client, "rev": 0, "user": null}))
        .await;
    let joined = second.recv_type("joined").await;
    assert_eq!(joined["rev"], 0, "the op is not committed yet");
    blocker.batch_execute("COMMIT").await.expect("unlock");
    // Let the commit land before the resend.
    let addr = server.addr.as_str();
    wait_until(WAIT, "the op's commit to land", move || async move {
        fetch_doc(addr, "slow").await.0 == 1
    })
    .await;
    assert_eq!(
        fetch_doc(&server.addr, "slow").await,
        (1, "hello".to_owned())
    );

    second.send(&op).await;
    let ack = second.recv_type("ack").await;
    assert_eq!(
        (ack["seq"].as_u64(), ack["rev"].as_u64()),
        (Some(1), Some(1))
    );
    // A duplicate ack for seq 1 would arrive before the next op's.
    second
        .send(&serde_json::json!({"type": "op", "rev": 1, "seq": 2, "op": [5, "!"]}))
        .await;
    let next = second.recv_type("ack").await;
    assert_eq!(
        (next["seq"].as_u64(), next["rev"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        fetch_doc(&server.addr, "slow").await,
        (2, "hello!".to_owned())
    );
}
