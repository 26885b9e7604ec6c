//! What an operator relies on, against the real binary: `/metrics` (every
//! metric moves under a little load), `/readyz` (follows PostgreSQL going
//! away and coming back, and turns 503 as soon as SIGTERM starts the
//! drain), and the JSON access log.
//!
//! PostgreSQL is taken away without stopping the machine's shared server
//! (other tests use it): tandem reaches it through a [`Relay`], a TCP relay
//! inside the test that can be cut (every connection dropped, new ones
//! closed at once) and restored.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::pg::TestDatabase;
use common::{Db, LONG_WAIT, Server, Socket, WAIT, http_request, wait_until, within};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A scrape of `/metrics`: each sample (`name{labels}`) and its value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    /// The sum over every label set of `name` (0 when it has none yet: a
    /// metric appears with its first sample).
    fn total(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }

    /// The value of exactly `sample` (`name{label="value"}`), 0 if absent.
    fn get(&self, sample: &str) -> f64 {
        self.0.get(sample).copied().unwrap_or(0.0)
    }
}

/// Parses the Prometheus text exposition format: `# ...` lines are
/// comments, every other line is `sample value` (no timestamps here).
fn parse_metrics(body: &str) -> Scrape {
    let mut samples = HashMap::new();
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (sample, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.insert(sample.to_owned(), value);
    }
    Scrape(samples)
}

async fn scrape(addr: &str) -> Scrape {
    let (status, body) = http_request(addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200, "GET /metrics: {body}");
    parse_metrics(&body)
}

async fn readyz(addr: &str) -> (u16, Value) {
    let (status, body) = http_request(addr, "GET", "/readyz", None).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|_| panic!("/readyz JSON: {body:?}"));
    (status, v)
}

async fn joined(url: &str) -> (Socket, Value) {
    let mut s = Socket::connect(url).await;
    s.send(&json!({"type": "join", "client": null, "rev": null, "user": {"name": "t"}}))
        .await;
    let j = s.recv_type("joined").await;
    (s, j)
}

/// Ops the load sends one after the other, each waiting for its ack.
const TYPED: u64 = 20;

async fn metrics_move_under_load(db: Db) {
    let server = Server::start_db(
        &db,
        &[
            // Twenty REST requests, then 429: the burst is 20 s' worth.
            "--rate-limit-ip-requests",
            "1",
            // A reader that stops is dropped after a few hundred kB.
            "--outbound-queue-bytes",
            "262144",
            "--max-document-chars",
            "40000000",
        ],
    );
    let before = scrape(&server.addr).await;

    // Two typists: one types TYPED ops, the other then sends one op made
    // on revision 0, which the server transforms over all of them.
    let url = server.ws_url("ops-metrics");
    let (mut a, _) = joined(&url).await;
    let (mut b, _) = joined(&url).await;
    for seq in 1..=TYPED {
        // Appends "a" (a zero retain is not a valid component).
        let op = if seq == 1 {
            json!(["a"])
        } else {
            json!([seq - 1, "a"])
        };
        a.send(&json!({"type": "op", "rev": seq - 1, "seq": seq, "op": op}))
            .await;
        assert_eq!(a.recv_type("ack").await["rev"], seq);
    }
    b.send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["b"]}))
        .await;
    assert_eq!(b.recv_type("ack").await["rev"], TYPED + 1);
    // An op that does not apply: refused `bad_op`.
    a.send(&json!({"type": "op", "rev": TYPED + 1, "seq": TYPED + 1, "op": [1000, "x"]}))
        .await;
    let refusal = a.recv_type("error").await;
    assert_eq!(refusal["code"], "bad_op");

    // REST requests past the per-address rate: 429 (probes are not counted).
    let mut limited = 0;
    for _ in 0..25 {
        let (status, _) = http_request(&server.addr, "GET", "/api/documents", None).await;
        if status == 429 {
            limited += 1;
        }
    }
    assert!(
        limited > 0,
        "25 requests at 1/s (burst 20) were never limited"
    );
    assert_eq!(
        readyz(&server.addr).await.0,
        200,
        "/readyz is not rate limited"
    );

    let during = scrape(&server.addr).await;
    assert!(
        during.total("tandem_connections") >= before.total("tandem_connections") + 2.0,
        "two connections open"
    );
    assert!(during.total("tandem_documents_open") >= 1.0);

    // A reader that never reads while a writer pastes 60 kB at a time:
    // once its socket and queue are full, it is dropped.
    let slow_url = server.ws_url("ops-slow");
    let (mut writer, _) = joined(&slow_url).await;
    let (_slow, _) = joined(&slow_url).await;
    let chunk = "y".repeat(60_000);
    let mut len = 0usize;
    let mut rev = 0u64;
    let mut dropped = false;
    for seq in 1..=300u64 {
        let op = if len == 0 {
            json!([chunk])
        } else {
            json!([len, chunk])
        };
        writer
            .send(&json!({"type": "op", "rev": rev, "seq": seq, "op": op}))
            .await;
        rev = writer.recv_type("ack").await["rev"].as_u64().expect("rev");
        len += 60_000;
        if seq % 10 == 0
            && scrape(&server.addr)
                .await
                .total("tandem_outbound_dropped_total")
                > before.total("tandem_outbound_dropped_total")
        {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "a reader that never read was not dropped");

    let after = scrape(&server.addr).await;
    let moved = |name: &str, by: f64| {
        let (was, now) = (before.total(name), after.total(name));
        assert!(
            now >= was + by,
            "{name}: {was} before, {now} after; expected it up by {by} at least"
        );
    };
    moved("tandem_ops_total", (TYPED + 1) as f64 + rev as f64);
    moved("tandem_ack_latency_seconds_count", (TYPED + 1) as f64);
    moved("tandem_commit_seconds_count", 1.0);
    moved("tandem_commit_batch_ops_sum", (TYPED + 1) as f64);
    moved("tandem_transform_depth_count", (TYPED + 1) as f64);
    // b's op went over the TYPED ops sent after its base.
    moved("tandem_transform_depth_sum", TYPED as f64);
    moved("tandem_outbound_dropped_total", 1.0);
    assert!(
        after.get(r#"tandem_ops_refused_total{code="bad_op"}"#)
            >= before.get(r#"tandem_ops_refused_total{code="bad_op"}"#) + 1.0
    );
    assert!(
        after.get(r#"tandem_rate_limited_total{limit="requests from this address"}"#)
            >= before.get(r#"tandem_rate_limited_total{limit="requests from this address"}"#)
                + f64::from(limited)
    );
    assert!(
        after.total("tandem_ack_latency_seconds_sum")
            > before.total("tandem_ack_latency_seconds_sum")
    );
    // No label carries a document (or user) id.
    for sample in after.0.keys() {
        assert!(
            !sample.contains("ops-metrics") && !sample.contains("ops-slow"),
            "a label holds a document id: {sample}"
        );
    }

    // The connections gauge comes back down as the clients leave.
    let open = after.total("tandem_connections");
    a.close().await;
    b.close().await;
    writer.close().await;
    let addr = server.addr.clone();
    wait_until(WAIT, "the connections gauge to go down", || {
        let addr = addr.clone();
        async move { scrape(&addr).await.total("tandem_connections") <= open - 3.0 }
    })
    .await;
}

on_both_stores!(metrics, metrics_move_under_load);

/// A TCP relay from a local port to PostgreSQL that the test can cut: all
/// its connections dropped and new ones closed as soon as accepted (as a
/// database that went away), and restore.
struct Relay {
    addr: SocketAddr,
    /// True while connections are let through; every connection's task
    /// watches it and drops both ends when it turns false.
    open: watch::Sender<bool>,
}

/// Accepts on `listener` until the test ends (the relay's thread then ends
/// with the test process), piping each connection to `upstream` while
/// `state` is true.
async fn relay(listener: std::net::TcpListener, upstream: String, state: watch::Receiver<bool>) {
    let listener = TcpListener::from_std(listener).expect("relay listener");
    let upstream = Arc::new(upstream);
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        if !*state.borrow() {
            drop(client);
            continue;
        }
        let mut cut = state.clone();
        let upstream = Arc::clone(&upstream);
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(upstream.as_str()).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cut.wait_for(|open| !*open) => {}
            }
        });
    }
}

impl Relay {
    /// Starts relaying to `upstream` on a thread and runtime of its own:
    /// the test's runtime blocks while a server starts, and PostgreSQL is
    /// reached through the relay before the server prints that it listens.
    fn start(upstream: String) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("relay address");
        let (open, _) = watch::channel(true);
        let state = open.subscribe();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("relay runtime");
            runtime.block_on(relay(listener, upstream, state));
        });
        Relay { addr, open }
    }

    fn cut(&self) {
        self.open.send_replace(false);
    }

    fn restore(&self) {
        self.open.send_replace(true);
    }
}

/// `url` with its `host:port` replaced by `addr`.
fn via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
    format!("{scheme}://{}{addr}/{path}", user.unwrap_or_default())
}

/// The `host:port` of `url`, which must be on this machine.
fn upstream_of(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL").1;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let host = host_port.rsplit_once(':').map_or("", |(h, _)| h);
    assert!(
        host.starts_with("127.") || host == "localhost",
        "the relay only forwards to this machine, not {host_port}"
    );
    host_port.replace("localhost", "127.0.0.1")
}

/// A test database that tandem reaches through a relay, the relay, and the
/// database's own URL; `None` when skipped (see `common::pg`).
async fn relayed_postgres() -> Option<(Db, Relay, String)> {
    let mut db = TestDatabase::new().await?;
    let relay = Relay::start(upstream_of(&db.url));
    let direct = std::mem::take(&mut db.url);
    db.url = via(&direct, relay.addr);
    Some((Db::Postgres(db), relay, direct))
}

#[tokio::test]
async fn readyz_follows_postgres_going_away_and_coming_back() {
    let Some((db, relay, _)) = relayed_postgres().await else {
        return;
    };
    let server = Server::start_db(&db, &[]);
    let (status, body) = readyz(&server.addr).await;
    assert_eq!((status, &body["status"]), (200, &json!("ready")), "{body}");
    let before = scrape(&server.addr).await;

    relay.cut();
    let addr = server.addr.clone();
    wait_until(LONG_WAIT, "/readyz to turn 503", || {
        let addr = addr.clone();
        async move { readyz(&addr).await.0 == 503 }
    })
    .await;
    let (_, body) = readyz(&server.addr).await;
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(body["check"], "store", "{body}");
    // Alive all the same: a liveness probe must not restart it.
    assert_eq!(
        http_request(&server.addr, "GET", "/healthz", None).await.0,
        200
    );
    assert!(
        scrape(&server.addr)
            .await
            .get(r#"tandem_store_errors_total{op="ping"}"#)
            > before.get(r#"tandem_store_errors_total{op="ping"}"#)
    );

    relay.restore();
    wait_until(LONG_WAIT, "/readyz to turn 200 again", || {
        let addr = addr.clone();
        async move { readyz(&addr).await.0 == 200 }
    })
    .await;
}

#[tokio::test]
async fn sigterm_turns_readyz_to_503_while_the_documents_drain() {
    let Some((mut db, relay, direct)) = relayed_postgres().await else {
        return;
    };
    let server = Server::start_db(
        &db,
        &["--store-retry-secs", "120", "--shutdown-timeout", "60"],
    );
    let (mut a, _) = joined(&server.ws_url("drain")).await;
    a.send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["1"]}))
        .await;
    assert_eq!(a.recv_type("ack").await["rev"], 1);
    assert_eq!(readyz(&server.addr).await.0, 200);

    // With the database gone, this op cannot be made durable: the document
    // keeps retrying it, so the drain cannot end until the relay returns.
    relay.cut();
    a.send(&json!({"type": "op", "rev": 1, "seq": 2, "op": [1, "2"]}))
        .await;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(server.pid().to_string())
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    // The session is told to go (1001), with no ack: the op is not durable.
    loop {
        match a.next().await {
            common::Received::Closed(code) => {
                assert_eq!(code, Some(1001));
                break;
            }
            common::Received::Msg(m) => assert_ne!(m["type"], "ack", "acked while cut: {m}"),
        }
    }
    let addr = server.addr.clone();
    wait_until(WAIT, "/readyz to say draining", || {
        let addr = addr.clone();
        async move {
            let (status, body) = readyz(&addr).await;
            status == 503 && body["check"] == "draining"
        }
    })
    .await;
    // Still draining (the op is still not durable), still not ready.
    assert_eq!(readyz(&server.addr).await.1["check"], "draining");

    // The database returns: the op is written, and the server exits.
    relay.restore();
    let code = within(LONG_WAIT, "the server to exit", async move {
        tokio::task::spawn_blocking(move || server.terminate())
            .await
            .expect("join")
    })
    .await;
    assert_eq!(code, Some(0));
    // Read back straight from the database, not through the relay.
    if let Db::Postgres(t) = &mut db {
        t.url = direct;
    }
    let check = Server::start_db(&db, &[]);
    assert_eq!(
        common::fetch_doc(&check.addr, "drain").await,
        (2, "12".to_owned())
    );
}

#[tokio::test]
async fn json_access_log_has_one_line_per_request_and_session_without_query_strings() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--static-dir",
            "/nonexistent",
        ])
        .arg("--data")
        .arg(dir.path().join("t.db"))
        .args(["--log-format", "json"])
        .env("TANDEM_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tandem");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("listening line");
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .expect("address")
        .to_owned();
    // Log lines as they come, read on a thread of their own.
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(format!("{line}\n")).is_err() {
                return;
            }
        }
    });

    let (status, _) =
        http_request(&addr, "GET", "/api/documents?token=secret-in-query", None).await;
    assert_eq!(status, 200);
    let (mut s, joined) = joined(&format!("ws://{addr}/api/documents/logged/ws")).await;
    let client = joined["client"].as_str().expect("client id").to_owned();
    s.send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["hi"]}))
        .await;
    s.recv_type("ack").await;
    s.send_raw(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    })))
    .await;
    // The session's line is written when it ends: wait for it, then stop.
    let mut stderr = String::new();
    let deadline = std::time::Instant::now() + WAIT;
    while !stderr.contains("session ended") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => stderr.push_str(&line),
            Err(_) => panic!("no session line within {WAIT:?}: {stderr}"),
        }
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    while let Ok(line) = lines.recv_timeout(WAIT) {
        stderr.push_str(&line);
    }

    assert!(
        !stderr.contains("secret-in-query"),
        "a query string was logged"
    );
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l:?}")))
        .collect();
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "tandem::access")
        .collect();
    let request = access
        .iter()
        .find(|l| l["fields"]["path"] == "/api/documents")
        .unwrap_or_else(|| panic!("no request line in {stderr}"));
    assert_eq!(request["fields"]["method"], "GET");
    assert_eq!(request["fields"]["status"], 200);
    assert!(request["fields"]["duration_ms"].is_number());
    assert!(request["fields"]["bytes"].as_u64().is_some_and(|b| b > 0));
    let session = access
        .iter()
        .find(|l| l["fields"]["message"] == "session ended")
        .unwrap_or_else(|| panic!("no session line in {stderr}"));
    let f = &session["fields"];
    assert_eq!(f["document"], "logged");
    assert_eq!(f["client"], client.as_str());
    assert_eq!(f["close_code"], 1000, "the client's close code: {f}");
    assert!(f["bytes_in"].as_u64().is_some_and(|b| b > 0));
    assert!(f["bytes_out"].as_u64().is_some_and(|b| b > 0));
    assert!(f["duration_ms"].is_number());
}

/// The dashboard in docs/ops/ charts every metric, and only metrics that
/// exist (so a renamed metric cannot leave it silently empty).
#[test]
fn the_grafana_dashboard_uses_every_metric_and_no_other() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/ops/grafana-dashboard.json"
    );
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the dashboard"))
            .expect("the dashboard is JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().expect("expr"))
        .collect();
    let known = |name: &str| {
        tandem::metrics::ALL.iter().any(|(metric, kind)| {
            name == *metric
                || (*kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| name == format!("{metric}{suffix}")))
        })
    };
    for expr in &exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("tandem_") {
                assert!(known(word), "the dashboard uses an unknown metric {word}");
            }
        }
    }
    for (metric, _) in tandem::metrics::ALL {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "the dashboard does not chart {metric}"
        );
    }
}
