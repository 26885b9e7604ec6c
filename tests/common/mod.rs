//! Test support: the real `tandem` binary on 127.0.0.1:0, a raw JSON
//! WebSocket client, and an OT client model that follows PROTOCOL.md the
//! way ot.js does (one op in flight, a buffer, resume), written from the
//! protocol document only.

#![allow(dead_code)]

pub mod cluster;
pub mod pg;
pub mod redis;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tandem::ot::{OpLimits, RawOp, TextOp};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// How long a test waits for any one expected thing: a message, a reply, a
/// connection, the server's listening line.
pub const WAIT: Duration = Duration::from_secs(20);

/// How long a test waits for a whole phase that is many round trips long
/// (settling a client, a count of acks under load): generous, because the
/// tests share two cores with their servers, but finite, so that a hang
/// fails with a message instead of stalling `cargo test`.
pub const LONG_WAIT: Duration = Duration::from_secs(120);

/// How long a test waits for the server to exit after SIGTERM: longer than
/// the server's own limit on flushing at shutdown (30 s).
pub const EXIT_WAIT: Duration = Duration::from_secs(60);

/// How often [`wait_until`] checks its condition again.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `cond` holds, checking it every 10 ms.
///
/// # Panics
///
/// When it still does not hold `within` after the call, with a message
/// naming `what` was awaited.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The output of `fut`.
///
/// # Panics
///
/// When `fut` has not finished `limit` after the call, naming `what`.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// A running server process.
pub struct Server {
    child: Child,
    pub addr: String,
    pub data: PathBuf,
}

/// Runs `$body(db)` as two tests, `$name::sqlite` and `$name::postgres`:
/// one protocol test body, both stores.
#[macro_export]
macro_rules! on_both_stores {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                $body(Db::sqlite()).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(db) = Db::postgres().await {
                    $body(db).await;
                }
            }
        }
    };
}

/// Where a test server keeps its data: a SQLite file, or a fresh
/// PostgreSQL database.
pub enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(pg::TestDatabase),
}

impl Db {
    pub fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().expect("tempdir"))
    }

    /// `None` when no PostgreSQL is configured (and not in CI).
    pub async fn postgres() -> Option<Db> {
        pg::TestDatabase::new().await.map(Db::Postgres)
    }

    fn args(&self) -> Vec<String> {
        match self {
            Db::Sqlite(dir) => vec![
                "--data".into(),
                dir.path().join("t.db").display().to_string(),
            ],
            Db::Postgres(db) => vec!["--database-url".into(), db.url.clone()],
        }
    }
}

impl Server {
    /// Starts `tandem serve` on a free port with its database at `data`.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        let args = ["--data".to_owned(), data.display().to_string()];
        Self::spawn(&args, extra, data)
    }

    /// Starts `tandem serve` on a free port with the given store.
    pub fn start_db(db: &Db, extra: &[&str]) -> Server {
        Self::spawn(&db.args(), extra, Path::new(""))
    }

    fn spawn(store: &[String], extra: &[&str], data: &Path) -> Server {
        // No web app unless the test brings one.
        let no_app: &[&str] = if extra.contains(&"--static-dir") {
            &[]
        } else {
            &["--static-dir", "/nonexistent"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("serve")
            .arg("--bind")
            .arg("127.0.0.1:0")
            .args(store)
            .args(no_app)
            .args(extra)
            .env("TANDEM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tandem");
        let line = listening_line(&mut child);
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .expect("address")
            .to_owned();
        assert!(
            addr.starts_with("127.0.0.1:"),
            "unexpected first line {line:?}"
        );
        Server {
            child,
            addr,
            data: data.to_path_buf(),
        }
    }

    pub fn ws_url(&self, doc: &str) -> String {
        format!("ws://{}/api/documents/{doc}/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory now, in bytes (Linux `VmRSS`).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS in /proc/PID/status")
            * 1024
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit status code.
    ///
    /// # Panics
    ///
    /// When the server has not exited [`EXIT_WAIT`] after the signal (it is
    /// then killed).
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
        let deadline = Instant::now() + EXIT_WAIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.code(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                Ok(None) => panic!("the server did not exit within {EXIT_WAIT:?} of SIGTERM"),
                Err(e) => panic!("waiting for the server to exit: {e}"),
            }
        }
    }
}

/// The first line the server prints (`listening on http://...`), read on a
/// thread of its own so that a server that never gets there fails the test.
///
/// # Panics
///
/// When no line came within [`WAIT`] (the server is then killed).
fn listening_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    match rx.recv_timeout(WAIT) {
        Ok(read) => read.expect("read listening line"),
        Err(_) => {
            let _ = child.kill();
            panic!("the server printed no listening line within {WAIT:?}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET or POST over a raw TCP stream (no client crate
/// needed): returns status and body.
pub async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let what = format!("the reply to {method} {path}");
    let buf = within(WAIT, &what, async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        buf
    })
    .await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    (status, body)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n.min(after.len())]);
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

/// A raw JSON WebSocket connection.
pub struct Socket {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server did besides sending a message.
#[derive(Debug)]
pub enum Received {
    Msg(Value),
    Closed(Option<u16>),
}

impl Socket {
    pub async fn connect(url: &str) -> Socket {
        let (ws, _) = within(WAIT, "the WebSocket handshake", connect_async(url))
            .await
            .expect("ws connect");
        Socket { ws }
    }

    pub async fn send(&mut self, v: &Value) {
        self.ws
            .send(Message::Text(v.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        let _ = self.ws.send(m).await;
    }

    /// Sends without failing when the server has closed.
    pub async fn try_send(&mut self, v: &Value) -> bool {
        self.ws.send(Message::Text(v.to_string())).await.is_ok()
    }

    /// The next JSON message or close, skipping pings.
    ///
    /// # Panics
    ///
    /// When none came within [`WAIT`] (pings do not extend the wait).
    pub async fn next(&mut self) -> Received {
        let deadline = Instant::now() + WAIT;
        self.next_by(deadline, "a message").await
    }

    /// The next JSON message or close, skipping pings; panics naming `what`
    /// at `deadline`.
    async fn next_by(&mut self, deadline: Instant, what: &str) -> Received {
        loop {
            match tokio::time::timeout_at(deadline.into(), self.ws.next()).await {
                Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
                Ok(None) => return Received::Closed(None),
                Ok(Some(Err(_))) => return Received::Closed(None),
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Received::Msg(serde_json::from_str(&t).expect("server sent JSON"));
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Received::Closed(frame.map(|f| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next JSON message; panics on close.
    pub async fn recv(&mut self) -> Value {
        match self.next().await {
            Received::Msg(v) => v,
            Received::Closed(c) => panic!("closed ({c:?}) while waiting for a message"),
        }
    }

    /// Waits for a message of `kind`, skipping the others.
    ///
    /// # Panics
    ///
    /// When the socket closes first, or none came within [`WAIT`] (however
    /// many other messages did).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        let what = format!("a {kind:?} message");
        loop {
            match self.next_by(deadline, &what).await {
                Received::Msg(m) if m["type"] == kind => return m,
                Received::Msg(_) => {}
                Received::Closed(c) => panic!("closed ({c:?}) while waiting for {what}"),
            }
        }
    }

    /// Waits until the server closes; returns the close code.
    ///
    /// # Panics
    ///
    /// When the server has not closed within [`WAIT`].
    pub async fn closed(&mut self) -> Option<u16> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Received::Closed(c) = self.next_by(deadline, "the server to close").await {
                return c;
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

pub fn parse_op(v: &Value) -> TextOp {
    let raw: RawOp = serde_json::from_value(v.clone()).expect("op from server");
    let limits = OpLimits {
        max_components: usize::MAX,
        max_insert_chars: usize::MAX,
        max_document_chars: usize::MAX / 2,
    };
    TextOp::parse(&raw, &limits).expect("valid op from server")
}

pub fn op_json(op: &TextOp) -> Value {
    serde_json::from_str(&op.to_json()).expect("json")
}

/// An OT client following PROTOCOL.md: one op in flight, later edits
/// composed into a buffer; seq fixed per op and reused on resend.
pub struct OtClient {
    pub socket: Option<Socket>,
    pub url: String,
    pub id: Option<String>,
    pub text: String,
    pub rev: u64,
    /// (seq, op) sent and not yet acked.
    pub inflight: Option<(u64, TextOp)>,
    pub buffer: Option<TextOp>,
    pub next_seq: u64,
    /// Every revision received, to check for gaps.
    pub seen_revs: Vec<u64>,
    pub name: String,
}

impl OtClient {
    pub async fn join(url: &str, name: &str) -> OtClient {
        let mut c = OtClient {
            socket: None,
            url: url.to_owned(),
            id: None,
            text: String::new(),
            rev: 0,
            inflight: None,
            buffer: None,
            next_seq: 1,
            seen_revs: Vec::new(),
            name: name.to_owned(),
        };
        c.connect().await;
        c
    }

    /// Connects (or reconnects) and resumes; resends the op in flight.
    pub async fn connect(&mut self) {
        if let Err(e) = self.try_connect().await {
            panic!("client {} could not join {}: {e}", self.name, self.url);
        }
    }

    /// As [`OtClient::connect`], but a server that cannot be reached, closes,
    /// or refuses the join is an `Err` (for clients that move between
    /// nodes), not a panic.
    pub async fn try_connect(&mut self) -> Result<(), String> {
        let (ws, _) = tokio::time::timeout(WAIT, connect_async(&self.url))
            .await
            .map_err(|_| "handshake timed out".to_owned())?
            .map_err(|e| format!("connect: {e}"))?;
        let mut s = Socket { ws };
        let join = match &self.id {
            None => {
                json!({"type": "join", "client": null, "rev": null, "user": {"name": self.name}})
            }
            Some(id) => {
                json!({"type": "join", "client": id, "rev": self.rev, "user": {"name": self.name}})
            }
        };
        if !s.try_send(&join).await {
            return Err("closed before join".into());
        }
        let joined = loop {
            match s.next().await {
                Received::Msg(m) if m["type"] == "joined" => break m,
                Received::Msg(m) if m["type"] == "error" => return Err(format!("refused: {m}")),
                Received::Msg(_) => {}
                Received::Closed(c) => return Err(format!("closed ({c:?}) before joined")),
            }
        };
        self.id = Some(joined["client"].as_str().expect("client id").to_owned());
        if let Some(ops) = joined.get("ops").and_then(Value::as_array) {
            for entry in ops {
                let rev = entry["rev"].as_u64().expect("rev");
                if entry["client"].as_str() == self.id.as_deref() {
                    self.on_ack(rev);
                } else {
                    self.on_remote(rev, &parse_op(&entry["op"]));
                }
            }
        } else {
            let text = joined["text"].as_str().expect("text").to_owned();
            assert!(
                self.inflight.is_none() && self.buffer.is_none(),
                "full reload with pending edits is not modelled"
            );
            self.text = text;
            self.rev = joined["rev"].as_u64().expect("rev");
        }
        assert_eq!(
            joined["rev"].as_u64(),
            Some(self.rev),
            "joined rev matches catch-up"
        );
        self.socket = Some(s);
        if let Some((seq, op)) = &self.inflight {
            let msg = json!({"type": "op", "rev": self.rev, "seq": seq, "op": op_json(op)});
            self.socket.as_mut().expect("socket").send(&msg).await;
        } else {
            self.flush().await;
        }
        Ok(())
    }

    pub fn disconnect(&mut self) {
        self.socket = None;
    }

    /// A local edit: applied at once, sent or buffered.
    pub async fn edit(&mut self, op: TextOp) {
        self.text = op.apply_str(&self.text).expect("local op applies");
        self.buffer = Some(match self.buffer.take() {
            None => op,
            Some(b) => b.compose(&op).expect("compose"),
        });
        self.flush().await;
    }

    async fn flush(&mut self) {
        if self.inflight.is_some() || self.socket.is_none() {
            return;
        }
        if let Some(op) = self.buffer.take() {
            let seq = self.next_seq;
            self.next_seq += 1;
            let msg = json!({"type": "op", "rev": self.rev, "seq": seq, "op": op_json(&op)});
            self.inflight = Some((seq, op));
            self.socket.as_mut().expect("socket").send(&msg).await;
        }
    }

    fn on_ack(&mut self, rev: u64) {
        assert_eq!(rev, self.rev + 1, "ack without gap");
        self.seen_revs.push(rev);
        self.rev = rev;
        self.inflight = None;
    }

    fn on_remote(&mut self, rev: u64, op: &TextOp) {
        assert_eq!(rev, self.rev + 1, "op without gap");
        self.seen_revs.push(rev);
        let mut op = op.clone();
        if let Some((seq, pending)) = self.inflight.take() {
            let (p2, o2) = pending.transform(&op).expect("transform in flight");
            self.inflight = Some((seq, p2));
            op = o2;
        }
        if let Some(buf) = self.buffer.take() {
            let (b2, o2) = buf.transform(&op).expect("transform buffer");
            self.buffer = Some(b2);
            op = o2;
        }
        self.text = op.apply_str(&self.text).expect("remote op applies");
        self.rev = rev;
    }

    /// Handles one server message. Returns false when the socket closed.
    pub async fn step(&mut self) -> bool {
        let Some(s) = self.socket.as_mut() else {
            return false;
        };
        match s.next().await {
            Received::Closed(_) => {
                self.socket = None;
                false
            }
            Received::Msg(m) => {
                self.handle(&m).await;
                true
            }
        }
    }

    pub async fn handle(&mut self, m: &Value) {
        match m["type"].as_str() {
            Some("ack") => {
                let seq = m["seq"].as_u64().expect("seq");
                assert_eq!(
                    self.inflight.as_ref().map(|p| p.0),
                    Some(seq),
                    "ack for the op in flight"
                );
                self.on_ack(m["rev"].as_u64().expect("rev"));
                self.flush().await;
            }
            Some("op") => self.on_remote(m["rev"].as_u64().expect("rev"), &parse_op(&m["op"])),
            Some("error") => panic!("unexpected error {m}"),
            _ => {}
        }
    }

    /// Processes messages until nothing is pending and the server's revision
    /// (read by `target`) is reached, reconnecting when the server closes.
    ///
    /// # Panics
    ///
    /// When that has not happened within [`LONG_WAIT`].
    pub async fn settle(&mut self, target: u64) {
        let deadline = Instant::now() + LONG_WAIT;
        while self.inflight.is_some() || self.buffer.is_some() || self.rev < target {
            assert!(
                Instant::now() < deadline,
                "client {} not settled at revision {target} within {LONG_WAIT:?} (at {}, pending: {})",
                self.name,
                self.rev,
                self.pending()
            );
            if !self.step().await {
                self.connect().await;
            }
        }
    }

    /// Processes messages until nothing is pending (every edit acked);
    /// `false` when the server closed the socket first.
    ///
    /// # Panics
    ///
    /// When edits are still pending [`LONG_WAIT`] after the call.
    pub async fn until_acked(&mut self) -> bool {
        let deadline = Instant::now() + LONG_WAIT;
        while self.pending() {
            assert!(
                Instant::now() < deadline,
                "client {}: edits not acked within {LONG_WAIT:?}",
                self.name
            );
            if !self.step().await {
                return false;
            }
        }
        true
    }

    /// Ops this client has sent (each once, whatever the resends).
    pub fn sent(&self) -> u64 {
        self.next_seq - 1
    }

    pub fn pending(&self) -> bool {
        self.inflight.is_some() || self.buffer.is_some()
    }
}

/// A deterministic xorshift generator for tests (no unseeded randomness).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

const PIECES: [&str; 10] = [
    "a", "bc", "😀", "漢字", "e\u{301}", "\n", "👍🏽", " ", "xyz", "ß",
];

/// A random edit of a document of `len` characters: insert, delete or both.
pub fn random_op(rng: &mut Rng, len: usize) -> TextOp {
    use tandem::ot::Component;
    let pos = rng.below(len as u64 + 1) as usize;
    let del = if len > pos && rng.below(3) == 0 {
        1 + rng.below(((len - pos) as u64).min(5)) as usize
    } else {
        0
    };
    let ins = if del == 0 || rng.below(2) == 0 {
        PIECES[rng.below(PIECES.len() as u64) as usize]
    } else {
        ""
    };
    TextOp::from_components([
        Component::Retain(pos),
        Component::Insert(ins),
        Component::Delete(del),
        Component::Retain(len - pos - del),
    ])
}

/// Fetches the document over REST: (rev, text).
pub async fn fetch_doc(server_addr: &str, doc: &str) -> (u64, String) {
    let (status, body) =
        http_request(server_addr, "GET", &format!("/api/documents/{doc}"), None).await;
    assert_eq!(status, 200, "GET document: {body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    (
        v["rev"].as_u64().expect("rev"),
        v["text"].as_str().expect("text").to_owned(),
    )
}

/// Reads a gzipped editing trace from `tests/data/traces` (vendored in the
/// repository, see its `CREDITS.md`), e.g. `sequential/rustcode.json.gz`.
///
/// # Panics
///
/// When the file is missing or unreadable: the traces are part of the
/// repository, so a missing one is a broken checkout, not a reason to skip.
pub fn load_trace(name: &str) -> Value {
    use std::io::Read;
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/traces")
        .join(name);
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("trace {} missing or unreadable: {e}", path.display()));
    let mut s = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut s)
        .unwrap_or_else(|e| panic!("gunzip trace {}: {e}", path.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("trace {} JSON: {e}", path.display()))
}
