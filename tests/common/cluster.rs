//! A test cluster: nodes on one fresh PostgreSQL database and one Redis key
//! prefix, and clients that move between nodes (with backoff) when theirs
//! closes, fails or goes silent, resuming and resending their op in flight
//! as PROTOCOL.md asks.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::*;

/// Lease time of the test nodes, in seconds.
pub const LEASE_SECS: &str = "2";
/// How long a client waits for its node's answer, with edits pending,
/// before it takes the node for gone and moves on.
pub const SILENCE: Duration = Duration::from_secs(2);
/// How long a client's handshake and join may take before it tries the next
/// node (a paused node accepts TCP connections and answers nothing).
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Three (or more) nodes sharing a fresh database and a Redis key prefix.
pub struct Nodes {
    pub db: Db,
    pub redis_url: String,
    pub prefix: String,
    pub nodes: Vec<Option<Server>>,
    /// More flags for every node.
    pub extra: Vec<String>,
}

impl Nodes {
    /// `None` when PostgreSQL or Redis is not configured (a skip line says
    /// which).
    pub async fn start(count: usize, redis_url: Option<String>) -> Option<Nodes> {
        Self::start_with(count, redis_url, &[]).await
    }

    /// As [`Nodes::start`], each node with `extra` flags too.
    pub async fn start_with(
        count: usize,
        redis_url: Option<String>,
        extra: &[&str],
    ) -> Option<Nodes> {
        let redis_url = redis_url.or_else(super::redis::url)?;
        let db = Db::postgres().await?;
        let mut nodes = Nodes {
            db,
            redis_url,
            prefix: super::redis::prefix(),
            nodes: Vec::new(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        for i in 0..count {
            let server = nodes.spawn(i);
            nodes.nodes.push(Some(server));
        }
        Some(nodes)
    }

    pub fn spawn(&self, i: usize) -> Server {
        let id = format!("n{i}");
        let mut args = vec![
            "--redis-url",
            &self.redis_url,
            "--redis-prefix",
            &self.prefix,
            "--node-id",
            &id,
            "--lease-secs",
            LEASE_SECS,
        ];
        args.extend(self.extra.iter().map(String::as_str));
        Server::start_db(&self.db, &args)
    }

    pub fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    /// The node that has the document open (holds its lease), by asking
    /// each live node.
    pub async fn owner(&self) -> Option<usize> {
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
    pub async fn log(&self, i: usize, doc: &str) -> Vec<(u64, String)> {
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
pub struct Member {
    pub c: OtClient,
    pub home: usize,
    pub rng: Rng,
    /// Where it always connects (a load balancer's URL), instead of the
    /// nodes in turn.
    pub entry: Option<String>,
}

impl Member {
    pub async fn join(nodes: &Nodes, doc: &str, home: usize, seed: u64) -> Member {
        let mut m = Member::new(&nodes.node(home).ws_url(doc), home, seed);
        m.rejoin(nodes, doc).await;
        m
    }

    /// A member that always connects through `url` (a load balancer in
    /// front of the nodes), whichever node is behind it.
    pub async fn join_via(nodes: &Nodes, doc: &str, url: &str, seed: u64) -> Member {
        let mut m = Member::new(url, 0, seed);
        m.entry = Some(url.to_owned());
        m.rejoin(nodes, doc).await;
        m
    }

    /// A member that has not joined yet.
    fn new(url: &str, home: usize, seed: u64) -> Member {
        Member {
            c: OtClient {
                socket: None,
                url: url.to_owned(),
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
            entry: None,
        }
    }

    /// Joins (resuming, resending) through its home node or, failing that,
    /// the next live ones in turn, with backoff.
    pub async fn rejoin(&mut self, nodes: &Nodes, doc: &str) {
        let deadline = Instant::now() + LONG_WAIT;
        let mut attempt: u32 = 0;
        loop {
            let live = nodes.live();
            let i = live[(self.home + attempt as usize) % live.len()];
            self.c.url = match &self.entry {
                Some(url) => url.clone(),
                None => nodes.node(i).ws_url(doc),
            };
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
    pub async fn next_msg(&mut self) -> Option<Value> {
        let s = self.c.socket.as_mut()?;
        loop {
            match s.ws.next_message().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).ok(),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn handle(&mut self, m: &Value) {
        // A node that loses a document says so before closing; the close
        // that follows moves the client.
        if m["type"] == "error" && m["code"] == "unavailable" {
            return;
        }
        self.c.handle(m).await;
    }

    /// Handles what has arrived, without waiting; rejoins if the socket is
    /// gone.
    pub async fn drain(&mut self, nodes: &Nodes, doc: &str) {
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
    pub async fn type_something(&mut self) {
        let len = self.c.text.chars().count();
        let op = random_op(&mut self.rng, len);
        self.c.edit(op).await;
    }

    /// Until nothing is pending and revision `target` is reached, moving
    /// node when the socket closes or stays silent with edits pending.
    pub async fn settle(&mut self, nodes: &Nodes, doc: &str, target: u64) {
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

pub trait NextMessage {
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
pub async fn type_rounds(nodes: &Nodes, doc: &str, members: &mut [Member], rounds: usize) {
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
pub async fn converge_and_check(nodes: &Nodes, doc: &str, members: &mut [Member]) {
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

pub async fn members_on(nodes: &Nodes, doc: &str, count: usize, seed: u64) -> Vec<Member> {
    let mut members = Vec::new();
    for k in 0..count {
        members.push(Member::join(nodes, doc, k % nodes.nodes.len(), seed + k as u64).await);
    }
    members
}

pub fn signal(server: &Server, sig: &str) {
    let status = Command::new("kill")
        .arg(sig)
        .arg(server.pid().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig}");
}
