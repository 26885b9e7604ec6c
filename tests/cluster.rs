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

use std::process::Command;
use std::time::{Duration, Instant};

use common::redis::PrivateRedis;
use common::*;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// Lease time of the test nodes, in seconds.
const LEASE_SECS: &str = "2";
/// How long a client waits for its node's answer, with edits pending,
/// before it takes the node for gone and moves on.
const SILENCE: Duration = Duration::from_secs(2);
/// How long a client's handshake and join may take before it tries the next
/// node (a paused node accepts TCP connections and answers nothing).
const JOIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Three (or more) nodes sharing a fresh database and a Redis key prefix.
struct Nodes {
    db: Db,
    redis_url: String,
    prefix: String,
    nodes: Vec<Option<Server>>,
}

impl Nodes {
    /// `None` when PostgreSQL or Redis is not configured (a skip line says
    /// which).
    async fn start(count: usize, redis_url: Option<String>) -> Option<Nodes> {
        let redis_url = redis_url.or_else(common::redis::url)?;
        let db = Db::postgres().await?;
        let mut nodes = Nodes {
            db,
            redis_url,
            prefix: common::redis::prefix(),
            nodes: Vec::new(),
        };
        for i in 0..count {
            let server = nodes.spawn(i);
            nodes.nodes.push(Some(server));
        }
        Some(nodes)
    }

    fn spawn(&self, i: usize) -> Server {
        let id = format!("n{i}");
        Server::start_db(
            &self.db,
            &[
                "--redis-url",
                &self.redis_url,
                "--redis-prefix",
                &self.prefix,
                "--node-id",
                &id,
                "--lease-secs",
                LEASE_SECS,
            ],
        )
    }

    fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("node is running")
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    /// The node that has the document open (holds its lease), by asking
    /// each live node.
    async fn owner(&self) -> Option<usize> {
        for i in self.live() {
            let (status, body) =
                http_request(&self.node(i).addr, "GET", "/api/cluster", None).await;
            assert_eq!(status, 200, "GET /api/cluster: {body}");
            let v: Value = serde_json::from_str(&body).expect("json");
            if v["open_documents"].as_u64() == Some(1) {
                return Some(i);
            }
        }
        None
    }

    /// Every op of `doc` in the log, as (rev, client), fetched from node `i`.
    async fn log(&self, i: usize, doc: &str) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let path = format!("/api/documents/{doc}/ops?from={from}&limit=10000");
            let (status, body) = http_request(&self.node(i).addr, "GET", &path, None).await;
            assert_eq!(status, 200, "GET ops: {body}");
            let v: Value = serde_json::from_str(&body).expect("json");
            for op in v["ops"].as_array().expect("ops") {
                out.push((
                    op["rev"].as_u64().expect("rev"),
                    op["client"].as_str().expect("client").to_owned(),
                ));
            }
            match v["next"].as_u64() {
                Some(next) => from = next,
                None => return out,
            }
        }
    }
}

/// A client of the cluster, with the node it prefers.
struct Member {
    c: OtClient,
    home: usize,
    rng: Rng,
}

impl Member {
    async fn join(nodes: &Nodes, doc: &str, home: usize, seed: u64) -> Member {
        let mut m = Member {
            c: OtClient {
                socket: None,
                url: nodes.node(home).ws_url(doc),
                id: None,
                text: String::new(),
                rev: 0,
                inflight: None,
                buffer: None,
                next_seq: 1,
                seen_revs: Vec::new(),
                name: format!("m{seed}"),
            },
            home,
            rng: Rng::new(seed),
        };
        m.rejoin(nodes, doc).await;
        m
    }

    /// Joins (resuming, resending) through its home node or, failing that,
    /// the next live ones in turn, with backoff.
    async fn rejoin(&mut self, nodes: &Nodes, doc: &str) {
        let deadline = Instant::now() + LONG_WAIT;
        let mut attempt: u32 = 0;
        loop {
            let live = nodes.live();
            let i = live[(self.home + attempt as usize) % live.len()];
            self.c.url = nodes.node(i).ws_url(doc);
            match tokio::time::timeout(JOIN_TIMEOUT, self.c.try_connect()).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) if attempt % 10 == 9 => {
                    eprintln!("client {} on n{i}: {e}", self.c.name);
                }
                Err(_) if attempt % 10 == 9 => {
                    eprintln!(
                        "client {} on n{i}: no answer in {JOIN_TIMEOUT:?}",
                        self.c.name
                    );
                }
                _ => {}
            }
            self.c.socket = None;
            assert!(
                Instant::now() < deadline,
                "client {} could not rejoin within {LONG_WAIT:?}",
                self.c.name
            );
            let backoff = Duration::from_millis(50 * (1 << attempt.min(4)));
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    /// The next message, or `None` when the socket closed or failed.
    async fn next_msg(&mut self) -> Option<Value> {
        let s = self.c.socket.as_mut()?;
        loop {
            match s.ws.next_message().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).ok(),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    async fn handle(&mut self, m: &Value) {
        // A node that loses a document says so before closing; the close
        // that follows moves the client.
        if m["type"] == "error" && m["code"] == "unavailable" {
            return;
        }
        self.c.handle(m).await;
    }

    /// Handles what has arrived, without waiting; rejoins if the socket is
    /// gone.
    async fn drain(&mut self, nodes: &Nodes, doc: &str) {
        loop {
            if self.c.socket.is_none() {
                self.rejoin(nodes, doc).await;
            }
            match tokio::time::timeout(Duration::from_millis(2), self.next_msg()).await {
                Ok(Some(m)) => self.handle(&m).await,
                Ok(None) => self.c.socket = None,
                Err(_) => return,
            }
        }
    }

    /// A random local edit.
    async fn type_something(&mut self) {
        let len = self.c.text.chars().count();
        let op = random_op(&mut self.rng, len);
        self.c.edit(op).await;
    }

    /// Until nothing is pending and revision `target` is reached, moving
    /// node when the socket closes or stays silent with edits pending.
    async fn settle(&mut self, nodes: &Nodes, doc: &str, target: u64) {
        let deadline = Instant::now() + LONG_WAIT;
        while self.c.pending() || self.c.rev < target {
            assert!(
                Instant::now() < deadline,
                "client {} not settled at {target} within {LONG_WAIT:?} (at {}, pending {})",
                self.c.name,
                self.c.rev,
                self.c.pending()
            );
            if self.c.socket.is_none() {
                self.rejoin(nodes, doc).await;
                continue;
            }
            match tokio::time::timeout(SILENCE, self.next_msg()).await {
                Ok(Some(m)) => self.handle(&m).await,
                Ok(None) => self.c.socket = None,
                Err(_) => self.c.socket = None,
            }
        }
    }
}

trait NextMessage {
    async fn next_message(
        &mut self,
    ) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>>;
}

impl<S> NextMessage for S
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    async fn next_message(
        &mut self,
    ) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
        futures_util::StreamExt::next(self).await
    }
}

/// `rounds` rounds of every member typing once and reading what came.
async fn type_rounds(nodes: &Nodes, doc: &str, members: &mut [Member], rounds: usize) {
    for _ in 0..rounds {
        for m in members.iter_mut() {
            m.type_something().await;
        }
        for m in members.iter_mut() {
            m.drain(nodes, doc).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Settles every member, then checks: one text everywhere (every client,
/// and the document as each live node serves it), a log without gaps, and
/// every client's ops in it exactly once (each was acked: nothing is
/// pending).
async fn converge_and_check(nodes: &Nodes, doc: &str, members: &mut [Member]) {
    for m in members.iter_mut() {
        m.settle(nodes, doc, 0).await;
    }
    let live = nodes.live();
    let (rev, text) = fetch_doc(&nodes.node(live[0]).addr, doc).await;
    for m in members.iter_mut() {
        m.settle(nodes, doc, rev).await;
        assert_eq!(m.c.rev, rev, "client {} revision", m.c.name);
        assert_eq!(m.c.text, text, "client {} text", m.c.name);
    }
    for i in &live {
        assert_eq!(
            fetch_doc(&nodes.node(*i).addr, doc).await,
            (rev, text.clone()),
            "node n{i} serves the same document"
        );
    }
    let log = nodes.log(live[0], doc).await;
    let revs: Vec<u64> = log.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        revs,
        (1..=rev).collect::<Vec<_>>(),
        "the log is every revision once"
    );
    for m in members.iter() {
        let id = m.c.id.as_deref().expect("joined");
        let mine = log.iter().filter(|(_, c)| c == id).count() as u64;
        assert_eq!(
            mine,
            m.c.sent(),
            "client {}: its {} acked ops are in the log exactly once",
            m.c.name,
            m.c.sent()
        );
    }
}

async fn members_on(nodes: &Nodes, doc: &str, count: usize, seed: u64) -> Vec<Member> {
    let mut members = Vec::new();
    for k in 0..count {
        members.push(Member::join(nodes, doc, k % nodes.nodes.len(), seed + k as u64).await);
    }
    members
}

fn signal(server: &Server, sig: &str) {
    let status = Command::new("kill")
        .arg(sig)
        .arg(server.pid().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig}");
}

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
