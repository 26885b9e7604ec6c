//! docs/deploy/nginx.conf in front of three nodes, with Debian's nginx.
//!
//! The test writes a copy of the shipped file with only its node addresses,
//! listening port and file paths replaced, runs `nginx` on it, and sends
//! every client through it: the clients of one document converge with every
//! op once, they all land on the document's owner (the hash by document id
//! routes them there, so no node forwards), and after kill -9 of that node
//! they reconnect through nginx to another node and lose nothing.
//!
//! Without nginx (`apt-get install nginx`) the test passes after writing
//! `SKIPPED(nginx): ...` to stderr; under CI (`CI=true`) it fails instead.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{LEASE_SECS, Member, Nodes, converge_and_check, type_rounds};
use common::*;
use serde_json::Value;

/// The shipped configuration.
const CONF: &str = include_str!("../docs/deploy/nginx.conf");
/// The node addresses in the shipped file, in order.
const CONF_NODES: [&str; 3] = ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"];
/// The listening line of the shipped file.
const CONF_LISTEN: &str = "listen 8080;";
/// The pid file and logs of the shipped file (Debian's paths).
const CONF_PID: &str = "pid /run/nginx.pid;";
const CONF_ERROR_LOG: &str = "error_log /var/log/nginx/";
const CONF_ACCESS_LOG: &str = "access_log /var/log/nginx/";

/// `nginx` on this machine: on the `PATH`, or where Debian puts it (not on
/// a user's `PATH`).
fn nginx_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
}

/// nginx running on a copy of docs/deploy/nginx.conf; stopped on drop.
struct Nginx {
    child: Child,
    /// Its prefix: the configuration, pid file and logs.
    dir: tempfile::TempDir,
    /// Where clients reach it.
    addr: String,
}

impl Nginx {
    /// nginx in front of `nodes` (their `host:port`), or `None` after a
    /// skip line when it is not installed (a failure under CI).
    fn start(nodes: &[&str]) -> Option<Nginx> {
        let binary = nginx_binary().or_else(|| {
            skip_nginx();
            None
        })?;
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let conf = configure(nodes, &addr, dir.path());
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx { child, dir, addr };
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(&nginx.addr).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}): {}", nginx.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx not listening within {WAIT:?}: {}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(nginx)
    }

    fn ws_url(&self, doc: &str) -> String {
        format!("ws://{}/api/documents/{doc}/ws", self.addr)
    }

    fn error_log(&self) -> String {
        ["error.log", "tandem-error.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("")
    }

    /// The access log's lines so far (a socket's when it closed).
    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tandem-access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// SIGTERM, then waits: the master stops its workers before it exits
    /// (after a SIGKILL of the master, the workers would go on serving).
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skip_nginx() {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("nginx is not installed: required in CI (.ci/run installs it)");
    }
    let line = format!(
        "SKIPPED(nginx): {} (nginx not installed)\n",
        common::pg::test_name()
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The shipped configuration with the nodes' addresses, the listening
/// address and the file paths replaced; each placeholder must be there
/// exactly as the test knows it, so that the test runs the shipped file and
/// not something else.
fn configure(nodes: &[&str], listen: &str, dir: &Path) -> String {
    let mut conf = CONF.to_owned();
    let mut replace = |from: &str, to: &str, count: usize| {
        assert_eq!(
            conf.matches(from).count(),
            count,
            "docs/deploy/nginx.conf has {from:?} {count} time(s)"
        );
        conf = conf.replace(from, to);
    };
    for (from, to) in CONF_NODES.iter().zip(nodes) {
        replace(&format!("server {from} "), &format!("server {to} "), 1);
    }
    replace(CONF_LISTEN, &format!("listen {listen};"), 1);
    let dir = dir.display();
    replace(CONF_PID, &format!("pid {dir}/nginx.pid;"), 1);
    replace(CONF_ERROR_LOG, &format!("error_log {dir}/"), 1);
    replace(CONF_ACCESS_LOG, &format!("access_log {dir}/"), 1);
    conf
}

/// The cluster checks of [`converge_and_check`], and the document as
/// nginx serves it is the same too.
async fn converge_through(nodes: &Nodes, nginx: &Nginx, doc: &str, clients: &mut [Member]) {
    converge_and_check(nodes, doc, clients).await;
    let through = fetch_doc(&nginx.addr, doc).await;
    assert_eq!(
        through,
        (clients[0].c.rev, clients[0].c.text.clone()),
        "the document through nginx"
    );
}

/// A gauge or counter of node `i`'s `/metrics`, without labels.
async fn metric(nodes: &Nodes, i: usize, name: &str) -> f64 {
    let (status, body) = http_request(&nodes.node(i).addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200, "GET /metrics on n{i}");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in the metrics of n{i}"))
}

/// Checks that the document is open on one node only, and that every
/// client's WebSocket is on that node: nginx sent them all to the owner and
/// no node forwarded any (a forwarded socket counts on both nodes).
async fn all_on_the_owner(nodes: &Nodes, clients: usize) -> usize {
    let owner = nodes.owner().await.expect("a node has the document open");
    for i in nodes.live() {
        let (_, body) = http_request(&nodes.node(i).addr, "GET", "/api/cluster", None).await;
        let v: Value = serde_json::from_str(&body).expect("json");
        let open = v["open_documents"].as_u64().expect("open_documents");
        let sockets = metric(nodes, i, "tandem_connections").await;
        if i == owner {
            assert_eq!(open, 1, "the owner n{i} has it open");
            assert_eq!(
                sockets, clients as f64,
                "every client's socket is on the owner n{i}"
            );
        } else {
            assert_eq!(open, 0, "n{i} does not have it open: {v}");
            assert_eq!(
                sockets, 0.0,
                "n{i} carries no socket: nginx sent every client to the owner"
            );
        }
    }
    owner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_through_nginx_land_on_the_owner_and_survive_its_death() {
    if nginx_binary().is_none() {
        skip_nginx();
        return;
    }
    let Some(mut nodes) = Nodes::start(3, None).await else {
        return;
    };
    let addrs: Vec<String> = (0..3).map(|i| nodes.node(i).addr.clone()).collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let nginx = Nginx::start(&refs).expect("nginx");
    let doc = "behind-nginx";

    // REST through nginx: the list (any node) and the document (its node).
    let (status, body) = http_request(&nginx.addr, "GET", "/api/documents", None).await;
    assert_eq!(status, 200, "GET /api/documents through nginx: {body}");

    // (a) Six clients of one document, all through nginx.
    let url = nginx.ws_url(doc);
    let mut clients = Vec::new();
    for k in 0..6 {
        clients.push(Member::join_via(&nodes, doc, &url, 700 + k).await);
    }
    type_rounds(&nodes, doc, &mut clients, 30).await;
    converge_through(&nodes, &nginx, doc, &mut clients).await;

    // (b) They all landed on the owner; nobody was forwarded.
    let owner = all_on_the_owner(&nodes, clients.len()).await;

    // (c) kill -9 of the owner while they type: they reconnect through
    // nginx, another node takes the document over, nothing is lost.
    type_rounds(&nodes, doc, &mut clients, 5).await;
    let killed_at = Instant::now();
    nodes.nodes[owner].take().expect("running").kill();
    type_rounds(&nodes, doc, &mut clients, 30).await;
    converge_through(&nodes, &nginx, doc, &mut clients).await;
    eprintln!(
        "nginx: kill -9 of the owner n{owner}: every client settled {:.1} s after the kill (lease {LEASE_SECS} s)",
        killed_at.elapsed().as_secs_f64()
    );
    // The hash sends the document's requests to one surviving node, which
    // now owns it: again nobody is forwarded.
    let new_owner = all_on_the_owner(&nodes, clients.len()).await;
    assert_ne!(new_owner, owner, "another node serves it now");

    // The access log names the document and the node of each request.
    let log = nginx.access_log();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("doc={doc} ")) && l.contains(&addrs[new_owner])),
        "the access log shows the document's requests on n{new_owner}: {log}"
    );
}
