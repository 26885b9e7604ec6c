//! Redis for the cluster tests: the server `TANDEM_TEST_REDIS_URL` names
//! (each test under its own key prefix), or a private `redis-server` that a
//! test may stop and start. Without the variable (or the binary), a test
//! that needs one fails in CI (`CI=true`) and elsewhere passes without
//! running, after writing `SKIPPED(redis): <binary>::<test> (...)` to stderr
//! for `scripts/test` to collect.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn skip(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}: required in CI");
    }
    let line = format!("SKIPPED(redis): {} ({why})\n", super::pg::test_name());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The shared Redis's URL, or `None` after a skip line.
pub fn url() -> Option<String> {
    match std::env::var("TANDEM_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip("TANDEM_TEST_REDIS_URL not set");
            None
        }
    }
}

/// A key prefix no other test uses.
pub fn prefix() -> String {
    format!("tandem-test-{:016x}:", rand::random::<u64>())
}

/// A `redis-server` of the test's own, without persistence, on a port
/// that stays the same across [`PrivateRedis::stop`] and
/// [`PrivateRedis::start`] (so the nodes' URL stays right).
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one on a free port; `None` after a skip line when
    /// `TANDEM_TEST_REDIS_URL` is not set (the sign that this machine has
    /// no Redis for tests) or `redis-server` is missing.
    pub fn new() -> Option<Self> {
        url()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self { port, child: None };
        if !redis.start() {
            skip("redis-server could not be started");
            return None;
        }
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again); true once it answers.
    pub fn start(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + super::WAIT;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kills it (SIGKILL: everything it held is gone, as after a crash of a
    /// Redis without persistence).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
