//! Several nodes on one PostgreSQL and one Redis: each document is served by
//! the node holding its lease, connections that land elsewhere are
//! forwarded, and whatever happens to a node (kill -9, a pause past its
//! lease, a rolling restart) or to Redis, every client converges and every
//! acked op is in the log exactly once.
//!
//! The nodes are real `tandem serve` processes with 2-second leases; the
//! clients are the protocol model of `common::OtClient`, moving to another
//! node (with backoff) when theirs closes, fails or goes silent, resuming
//! and resending their op in flight as PROTOCOL.md asks.

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::redis::PrivateRedis;
use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_spread_over_three_nodes_converge() {
    let Some(nodes) = Nodes::start(3, None).await else {
        return;
    };
    let doc = "spread";
    let mut members = members_on(&nodes, doc, 6, 100).await;
    type_rounds(&nodes, doc, &mut members, 40).await;
    converge_and_check(&nodes, doc, &mut members).await;
    // One node serves the document; the other two forwarded their clients.
    let mut open = Vec::new();
    for i in nodes.live() {
        let (_, body) = http_request(&nodes.node(i).addr, "GET", "/api/cluster", None).await;
        let v: Value = serde_json::from_str(&body).expect("json");
        open.push(v["open_documents"].as_u64().expect("open_documents"));
        assert_eq!(v["mode"], "redis");
        assert_eq!(
            v["nodes"].as_array().expect("nodes").len(),
            3,
            "the directory lists every node: {v}"
        );
    }
    open.sort_unstable();
    assert_eq!(open, vec![0, 0, 1], "exactly one owner");
    // The owner counts its lease in its metrics.
    let owner = nodes.owner().await.expect("an owner");
    let (status, metrics) = http_request(&nodes.node(owner).addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(
        metrics.lines().any(|l| l == "tandem_leases_held 1"),
        "tandem_leases_held on the owner: {metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tandem_lease_changes_total{kind=\"acquired\"} ")),
        "tandem_lease_changes_total on the owner"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_loses_nothing_acked() {
    let Some(mut nodes) = Nodes::start(3, None).await else {
        return;
    };
    let doc = "killed";
    let mut members = members_on(&nodes, doc, 6, 200).await;
    type_rounds(&nodes, doc, &mut members, 20).await;
    let owner = nodes.owner().await.expect("an owner");
    let killed_at = Instant::now();
    nodes.nodes[owner].take().expect("running").kill();
    type_rounds(&nodes, doc, &mut members, 20).await;
    converge_and_check(&nodes, doc, &mut members).await;
    eprintln!(
        "kill -9 of the owner: everyone settled {:.1} s after the kill (lease {LEASE_SECS} s)",
        killed_at.elapsed().as_secs_f64()
    );
    assert!(nodes.owner().await.is_some(), "another node serves it now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_is_fenced_and_closed_when_it_wakes() {
    let Some(nodes) = Nodes::start(3, None).await else {
        return;
    };
    let doc = "paused";
    let mut members = members_on(&nodes, doc, 4, 300).await;
    type_rounds(&nodes, doc, &mut members, 10).await;
    for m in members.iter_mut() {
        m.settle(&nodes, doc, 0).await;
    }
    let owner = nodes.owner().await.expect("an owner");
    // A session straight on the owner, idle through the pause.
    let mut direct = Socket::connect(&nodes.node(owner).ws_url(doc)).await;
    direct
        .send(&serde_json::json!({"type": "join", "client": null, "rev": null, "user": null}))
        .await;
    direct.recv_type("joined").await;

    signal(nodes.node(owner), "-STOP");
    // Typing goes on while it sleeps: its clients move, and once its lease
    // has run out another node takes the document and accepts edits.
    let paused_at = Instant::now();
    while paused_at.elapsed() < Duration::from_secs(4) {
        type_rounds(&nodes, doc, &mut members, 1).await;
        for m in members.iter_mut() {
            if m.c.pending() {
                tokio::time::timeout(SILENCE, m.settle(&nodes, doc, 0))
                    .await
                    .ok();
            }
        }
    }
    for m in members.iter_mut() {
        m.settle(&nodes, doc, 0).await;
    }
    let (before_wake, _) = fetch_doc(&nodes.node((owner + 1) % 3).addr, doc).await;
    signal(nodes.node(owner), "-CONT");
    // The woken node serves nothing on the lease it lost: its session is
    // told to reconnect.
    assert_eq!(
        direct.closed().await,
        Some(4409),
        "the stale owner's session is closed with 4409"
    );
    type_rounds(&nodes, doc, &mut members, 10).await;
    converge_and_check(&nodes, doc, &mut members).await;
    let (after, _) = fetch_doc(&nodes.node(owner).addr, doc).await;
    assert!(after >= before_wake, "no revision was lost or rewritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing() {
    let Some(mut nodes) = Nodes::start(3, None).await else {
        return;
    };
    let doc = "rolling";
    let mut members = members_on(&nodes, doc, 6, 400).await;
    type_rounds(&nodes, doc, &mut members, 10).await;
    for i in 0..3 {
        let code = nodes.nodes[i].take().expect("running").terminate();
        assert_eq!(code, Some(0), "node n{i} stops cleanly on SIGTERM");
        type_rounds(&nodes, doc, &mut members, 5).await;
        nodes.nodes[i] = Some(nodes.spawn(i));
        type_rounds(&nodes, doc, &mut members, 5).await;
    }
    converge_and_check(&nodes, doc, &mut members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_load_loses_nothing() {
    let Some(mut redis) = PrivateRedis::new() else {
        return;
    };
    let Some(nodes) = Nodes::start(3, Some(redis.url())).await else {
        return;
    };
    let doc = "redis-restart";
    let mut members = members_on(&nodes, doc, 6, 500).await;
    type_rounds(&nodes, doc, &mut members, 10).await;
    // Down for longer than a lease: owners stop serving when they cannot
    // renew, nobody can take a lease, and all resumes when it is back.
    redis.stop();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(3) {
        for m in members.iter_mut() {
            m.type_something().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(redis.start(), "Redis restarts");
    type_rounds(&nodes, doc, &mut members, 10).await;
    converge_and_check(&nodes, doc, &mut members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_made_on_another_node_closes_the_session_at_once() {
    const SECRET: &str = "cluster-secret";
    let Some(nodes) = Nodes::start_with(2, None, &["--auth", "jwt", "--jwt-secret", SECRET]).await
    else {
        return;
    };
    let token = |sub: &str| {
        tandem::auth::token::TokenSigner::hs256(SECRET.as_bytes())
            .expect("signer")
            .issue(sub, Some(sub), false, Duration::from_secs(600))
            .expect("token")
    };
    let (alice, bob) = (token("alice"), token("bob"));
    let doc = "rights";
    let join = serde_json::json!({"type": "join", "client": null, "rev": null, "user": null});
    // Alice creates the document on n0 (its owner now) and lets Bob write.
    let mut a = Socket::connect(&format!("{}?token={alice}", nodes.node(0).ws_url(doc))).await;
    a.send(&join).await;
    assert_eq!(a.recv_type("joined").await["permission"], "admin");
    let grant = format!("/api/documents/{doc}/access/bob?token={alice}");
    let (status, body) = http_request(
        &nodes.node(0).addr,
        "PUT",
        &grant,
        Some(r#"{"permission":"write"}"#),
    )
    .await;
    assert_eq!(status, 200, "grant: {body}");
    let mut b = Socket::connect(&format!("{}?token={bob}", nodes.node(0).ws_url(doc))).await;
    b.send(&join).await;
    assert_eq!(b.recv_type("joined").await["permission"], "write");
    // Alice revokes it through n1, which does not serve the document: n0
    // hears of it and closes Bob's session.
    let (status, body) = http_request(&nodes.node(1).addr, "DELETE", &grant, None).await;
    assert_eq!(status, 204, "revoke: {body}");
    let refused = b.recv_type("error").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert_eq!(b.closed().await, Some(4403));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redirect_a_non_owner_names_the_owner() {
    let Some(nodes) = Nodes::start_with(2, None, &["--cluster-redirect", "true"]).await else {
        return;
    };
    let doc = "redirected";
    let join = serde_json::json!({"type": "join", "client": null, "rev": null, "user": null});
    let mut owner = Socket::connect(&nodes.node(0).ws_url(doc)).await;
    owner.send(&join).await;
    owner.recv_type("joined").await;
    let mut other = Socket::connect(&nodes.node(1).ws_url(doc)).await;
    other.send(&join).await;
    let frame = loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut other.ws)).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    .expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 4409);
    assert_eq!(
        frame.reason.as_ref(),
        format!("moved: http://{}", nodes.node(0).addr),
        "the reason names the owner's URL"
    );
}
