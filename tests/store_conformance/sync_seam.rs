//! SQLite only: nothing is answered before a flush that covers it.
//!
//! A kill test cannot notice a missing `fdatasync`: the process dies, the
//! page cache does not, and everything acknowledged is read back. So these
//! tests open the store with a recording [`WalSync`] in place of the real
//! one. It runs the real flush ([`Fdatasync`]) and logs, for every flush,
//! what had been written before it began (each document's revision, read
//! through a connection of its own, not from the store's bookkeeping) and
//! when it returned, on a clock shared with the callers. Then:
//!
//! - every create, every append's `Durable` and every one-step `append`
//!   must have resolved after a successful flush that covered it had
//!   returned (a covering flush began after the write, so the write is in
//!   the file it synced);
//! - a failed flush fails what it covered, and nothing resolves `Ok` on it;
//! - end to end, every `ack` and every `op` frame a document task sends goes
//!   out after a covering flush has returned.
//!
//! With the flush removed from the syncer, or with the syncer answering
//! commits that were written while the flush ran, these fail. (PostgreSQL
//! has no such seam: its commit is its flush, see `WalSync`.)

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ropey::Rope;
use serde_json::Value;
use tandem::config::Settings;
use tandem::document::{Command, JoinRequest, outbound};
use tandem::ids::{LeaseEpoch, Revision, Seq};
use tandem::ot::{Component, TextOp};
use tandem::registry::Registry;
use tandem::store::sqlite::{Fdatasync, SqliteStore, WalSync};
use tandem::store::{AppendBatch, OpRecord, SharedStore};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::store_conformance::{client, doc};

/// Documents written at once, each by its own task.
const DOCUMENTS: usize = 6;
/// Appends per document, of 1 to `MAX_BATCH` ops each.
const APPENDS: usize = 80;
const MAX_BATCH: u64 = 6;
/// The longest a recorded flush sleeps before the real one, standing in for
/// a slow disk: commits keep being written while a flush runs.
const FLUSH_LATENCY_US: u64 = 2_000;
/// How long the end-to-end test waits for any one frame.
const WAIT: Duration = Duration::from_secs(20);

/// One order for everything the tests and the recorder see.
#[derive(Default)]
struct Clock(AtomicU64);

impl Clock {
    fn tick(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

/// One flush, as the recorder saw it.
struct Flush {
    /// Each document's revision as written before the flush began.
    written: HashMap<String, u64>,
    /// When the flush returned.
    returned: u64,
    /// Whether it returned `Ok`.
    ok: bool,
}

/// A [`WalSync`] that runs the real flush and logs each one.
struct Recorder {
    db: PathBuf,
    clock: Arc<Clock>,
    /// Fails every flush whose index (from 0) is `k - 1` modulo `k`.
    fail_every: Option<usize>,
    reader: Mutex<Option<rusqlite::Connection>>,
    flushes: Mutex<Vec<Flush>>,
    /// Why the recorder could not read what was written (fails the test).
    errors: Mutex<Vec<String>>,
}

impl Recorder {
    fn new(db: &Path, clock: &Arc<Clock>, fail_every: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            db: db.to_path_buf(),
            clock: Arc::clone(clock),
            fail_every,
            reader: Mutex::new(None),
            flushes: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
        })
    }

    /// Every document's revision as committed now: what a flush that begins
    /// after this covers.
    fn written(&self) -> rusqlite::Result<HashMap<String, u64>> {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        if reader.is_none() {
            let conn = rusqlite::Connection::open_with_flags(
                &self.db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            conn.busy_timeout(Duration::from_secs(5))?;
            *reader = Some(conn);
        }
        let conn = reader.as_ref().expect("opened above");
        let mut stmt = conn.prepare_cached("SELECT id, rev FROM documents")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|r| r.map(|(id, rev)| (id, u64::try_from(rev).unwrap_or(0))))
            .collect()
    }

    /// The log. A test that failed while holding it does not take the
    /// syncer thread down with it.
    fn flushes(&self) -> MutexGuard<'_, Vec<Flush>> {
        self.flushes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn errors(&self) -> MutexGuard<'_, Vec<String>> {
        self.errors.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl WalSync for Recorder {
    fn sync_wal(&self, wal: &File) -> std::io::Result<()> {
        let written = match self.written() {
            Ok(w) => w,
            Err(e) => {
                self.errors().push(e.to_string());
                HashMap::new()
            }
        };
        let index = self.flushes().len();
        std::thread::sleep(Duration::from_micros(
            rand::rng().random_range(0..=FLUSH_LATENCY_US),
        ));
        let result = match self.fail_every {
            Some(k) if index % k == k - 1 => Err(std::io::Error::other("injected flush failure")),
            _ => Fdatasync.sync_wal(wal),
        };
        let returned = self.clock.tick();
        self.flushes().push(Flush {
            written,
            returned,
            ok: result.is_ok(),
        });
        result
    }
}

/// Something the store (or a document task) called durable, and when.
#[derive(Debug)]
struct Answered {
    what: &'static str,
    doc: String,
    rev: u64,
    /// When its append returned written, if it was a two-step one.
    written: Option<u64>,
    at: u64,
}

#[derive(Default)]
struct Answers(Mutex<Vec<Answered>>);

impl Answers {
    fn push(&self, a: Answered) {
        self.0.lock().expect("answers lock").push(a);
    }

    fn take(&self) -> Vec<Answered> {
        std::mem::take(&mut *self.0.lock().expect("answers lock"))
    }
}

/// Every answer that came before a successful flush covering it had
/// returned, described.
fn early(flushes: &[Flush], answers: &[Answered]) -> Vec<String> {
    answers
        .iter()
        .filter_map(|a| {
            let covered = flushes
                .iter()
                .filter(|f| f.ok && f.written.get(&a.doc).is_some_and(|&rev| rev >= a.rev))
                .map(|f| f.returned)
                .min();
            let written = a
                .written
                .map_or(String::new(), |w| format!("written t={w}, "));
            match covered {
                Some(t) if t < a.at => None,
                Some(t) => Some(format!(
                    "{} {} rev {}: {written}durable t={}, first covering flush returned t={t}",
                    a.what, a.doc, a.rev, a.at
                )),
                None => Some(format!(
                    "{} {} rev {}: {written}durable t={}, no flush covered it",
                    a.what, a.doc, a.rev, a.at
                )),
            }
        })
        .collect()
}

/// Fails unless every answer came after a flush covering it had returned.
/// `seed` is the workload's (the timing is not reproducible, the sizes are).
#[track_caller]
fn assert_none_early(recorder: &Recorder, answers: &[Answered], seed: Option<u64>) {
    let errors = recorder.errors().clone();
    assert!(errors.is_empty(), "the recorder could not read: {errors:?}");
    let (early, flushes) = {
        let flushes = recorder.flushes();
        (early(&flushes, answers), flushes.len())
    };
    let seed = seed.map_or(String::new(), |s| format!(", seed {s}"));
    assert!(
        early.is_empty(),
        "{} of {} answers came before a flush covering them had returned \
         ({flushes} flushes recorded{seed}); the first:\n  {}",
        early.len(),
        answers.len(),
        early[..early.len().min(6)].join("\n  "),
    );
}

fn open(path: &Path, recorder: &Arc<Recorder>) -> SharedStore {
    let sync: Arc<dyn WalSync> = Arc::clone(recorder) as Arc<dyn WalSync>;
    Arc::new(SqliteStore::open_with_wal_sync(path, sync).expect("open SQLite store"))
}

/// Text of `len` characters, some of them outside the BMP.
fn text(rng: &mut StdRng, len: usize) -> String {
    const CHARS: [char; 6] = ['a', 'z', '\n', 'é', '漢', '😀'];
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())])
        .collect()
}

/// Appends `APPENDS` batches of random sizes to a new document, mostly
/// pipelined as a document task does (the next append is written while the
/// earlier ones wait for their flush), sometimes one step at a time, now and
/// then with a large snapshot; logs when each became durable. Returns how
/// many failed to.
async fn write_document(
    store: SharedStore,
    clock: Arc<Clock>,
    answers: Arc<Answers>,
    name: String,
    seed: u64,
) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let id = doc(&name);
    let who = client(&format!("{name}-writer"));
    let mut failed = 0;
    match store.create_document(&id, "rust", "").await {
        Ok(_) => answers.push(Answered {
            what: "create",
            doc: name.clone(),
            rev: 0,
            written: None,
            at: clock.tick(),
        }),
        // Its flush failed (the fault test): it is written all the same.
        Err(_) => failed += 1,
    }
    let mut rev = 0;
    let mut waiting = JoinSet::new();
    for _ in 0..APPENDS {
        let first = rev + 1;
        rev += rng.random_range(1..=MAX_BATCH);
        let ops = (first..=rev)
            .map(|r| {
                // Mostly keystrokes, sometimes a paste.
                let len = if rng.random_bool(0.05) {
                    rng.random_range(1_000..=20_000)
                } else {
                    rng.random_range(1..=8)
                };
                let inserted = text(&mut rng, len);
                Arc::new(OpRecord {
                    rev: Revision(r),
                    client: who.clone(),
                    seq: Seq(r),
                    author: "seam".to_owned(),
                    op: TextOp::from_components([Component::Insert(&inserted)]),
                    time_ms: 1_700_000_000_000,
                })
            })
            .collect();
        let snapshot = rng.random_bool(0.1).then(|| {
            let len = rng.random_range(1..=100_000);
            (Revision(rev), Rope::from_str(&text(&mut rng, len)))
        });
        let batch = AppendBatch {
            doc: id.clone(),
            ops,
            snapshot,
            epoch: LeaseEpoch::ZERO,
        };
        if rng.random_bool(0.2) {
            match store.append(batch).await {
                Ok(()) => answers.push(Answered {
                    what: "append",
                    doc: name.clone(),
                    rev,
                    written: None,
                    at: clock.tick(),
                }),
                Err(_) => failed += 1,
            }
            continue;
        }
        let durable = store.append_ordered(batch).await.expect("written in order");
        let written = clock.tick();
        let (clock, answers, name) = (Arc::clone(&clock), Arc::clone(&answers), name.clone());
        waiting.spawn(async move {
            let result = durable.await;
            let at = clock.tick();
            match result {
                Ok(()) => {
                    answers.push(Answered {
                        what: "append_ordered",
                        doc: name,
                        rev,
                        written: Some(written),
                        at,
                    });
                    0
                }
                Err(_) => 1,
            }
        });
        // Now and then the document goes quiet until all is flushed.
        if rng.random_bool(0.1) {
            while let Some(n) = waiting.join_next().await {
                failed += n.expect("durable waiter");
            }
        }
    }
    while let Some(n) = waiting.join_next().await {
        failed += n.expect("durable waiter");
    }
    failed
}

/// Runs `write_document` for `DOCUMENTS` documents at once; returns what
/// was answered and how many appends failed to become durable.
async fn write_documents(
    store: &SharedStore,
    clock: &Arc<Clock>,
    seed: u64,
) -> (Vec<Answered>, usize) {
    let answers = Arc::new(Answers::default());
    let mut writers = JoinSet::new();
    for d in 0..DOCUMENTS {
        writers.spawn(write_document(
            Arc::clone(store),
            Arc::clone(clock),
            Arc::clone(&answers),
            format!("seam-{d}"),
            seed.wrapping_add(d as u64),
        ));
    }
    let mut failed = 0;
    while let Some(n) = writers.join_next().await {
        failed += n.expect("writer task");
    }
    (answers.take(), failed)
}

/// Every `Durable` (and every create and one-step append) resolves only
/// after a flush that began after its commit was written has returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_only_after_a_covering_flush() {
    let seed: u64 = rand::random();
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("tandem.db");
    let clock = Arc::new(Clock::default());
    let recorder = Recorder::new(&path, &clock, None);
    let store = open(&path, &recorder);
    let (answers, failed) = write_documents(&store, &clock, seed).await;
    assert_eq!(failed, 0, "no flush failed, so no append may fail");
    assert_eq!(
        answers.len(),
        DOCUMENTS * (APPENDS + 1),
        "every write answered"
    );
    assert_none_early(&recorder, &answers, Some(seed));
    // The flushes were shared, or the check would be weak: a flush per
    // commit cannot answer a commit written during it.
    let (commits, _) = store.commit_stats();
    let flushes = recorder.flushes().len() as u64;
    assert!(
        flushes < commits,
        "{flushes} flushes for {commits} commits: none was shared"
    );
}

/// A failed flush fails every append it would have made durable, nothing
/// resolves `Ok` on it, and the store keeps going: later flushes answer
/// later commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_answers_nothing_ok() {
    let seed: u64 = rand::random();
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("tandem.db");
    let clock = Arc::new(Clock::default());
    let recorder = Recorder::new(&path, &clock, Some(5));
    let store = open(&path, &recorder);
    let (answers, failed) = write_documents(&store, &clock, seed).await;
    assert!(
        failed > 0,
        "appends covered only by a failed flush must fail, and none did"
    );
    assert_none_early(&recorder, &answers, Some(seed));
    let first_failure = recorder
        .flushes()
        .iter()
        .filter(|f| !f.ok)
        .map(|f| f.returned)
        .min()
        .expect("a flush failed");
    assert!(
        answers.iter().any(|a| a.at > first_failure),
        "nothing became durable after the first failed flush"
    );
}

/// End to end: a document task sends an `ack`, and an `op` to the other
/// sessions, only once a flush covering the op has returned. Sessions here
/// are the task's own protocol (commands in, frames out), without a socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_and_ops_go_out_only_after_a_covering_flush() {
    const DOCS: usize = 3;
    const SESSIONS: u64 = 4;
    const OPS: u64 = 40;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("tandem.db");
    let clock = Arc::new(Clock::default());
    let recorder = Recorder::new(&path, &clock, None);
    let store = open(&path, &recorder);
    let (stop, shutdown) = watch::channel(false);
    let registry = Registry::new(
        store,
        Arc::new(tandem::cluster::single::SingleNode::default()),
        Arc::new(Settings::default()),
        shutdown,
    );
    let answers = Arc::new(Answers::default());
    let mut sessions = JoinSet::new();
    for d in 0..DOCS {
        for s in 0..SESSIONS {
            let (registry, clock, answers) = (
                Arc::clone(&registry),
                Arc::clone(&clock),
                Arc::clone(&answers),
            );
            let session = (d as u64) * SESSIONS + s;
            sessions.spawn(async move {
                edit(
                    &registry,
                    &format!("e2e-{d}"),
                    session,
                    OPS,
                    &clock,
                    &answers,
                )
                .await;
            });
        }
    }
    while let Some(done) = sessions.join_next().await {
        done.expect("session task");
    }
    let answers = answers.take();
    let acks = answers.iter().filter(|a| a.what == "ack").count();
    assert_eq!(acks as u64, DOCS as u64 * SESSIONS * OPS, "every op acked");
    assert!(
        answers.iter().any(|a| a.what == "op"),
        "ops were fanned out"
    );
    assert_none_early(&recorder, &answers, None);
    let _ = stop.send(true);
    registry.wait_closed().await;
}

/// One session of document `name`: joins, then `ops` times appends a token
/// at the end of the published text and waits for its ack, logging every
/// `ack` and `op` frame when it arrives.
async fn edit(
    registry: &Arc<Registry>,
    name: &str,
    session: u64,
    ops: u64,
    clock: &Clock,
    answers: &Answers,
) {
    let handle = registry
        .open(&doc(name))
        .await
        .expect("under the open-document cap");
    let (outbound, mut frames) = outbound(8_192, usize::MAX);
    let (kick, _kicked) = oneshot::channel();
    let (reply, joined) = oneshot::channel();
    handle
        .send(Command::Join {
            req: Box::new(JoinRequest {
                session,
                client: None,
                rev: None,
                user_name: format!("user-{session}"),
                user_color: String::new(),
                permission: tandem::auth::Permission::Write,
                rights: Default::default(),
                outbound,
                batch: false,
                kick,
                origin: Default::default(),
            }),
            reply,
        })
        .await
        .expect("document task running");
    let me = joined.await.expect("join answered").expect("joined").client;
    for seq in 1..=ops {
        let (reply, info) = oneshot::channel();
        handle
            .send(Command::Info { reply })
            .await
            .expect("document task running");
        let info = info.await.expect("info answered");
        let token = format!("[{session}-{seq}]");
        let op = TextOp::from_components([
            Component::Retain(info.text.chars().count()),
            Component::Insert(&token),
        ]);
        handle
            .send(Command::Op {
                session,
                client: me.clone(),
                rev: info.rev,
                seq: Seq(seq),
                op: Box::new(op),
                selection: None,
                received: std::time::Instant::now(),
            })
            .await
            .expect("document task running");
        loop {
            let frame = tokio::time::timeout(WAIT, frames.recv())
                .await
                .unwrap_or_else(|_| panic!("session {session}: no ack for seq {seq} in time"))
                .expect("session still open");
            let at = clock.tick();
            let msg: Value = serde_json::from_str(&frame).expect("a JSON frame");
            let what = match msg["type"].as_str() {
                Some("ack") => "ack",
                Some("op") => "op",
                Some("error") => panic!("session {session}: {frame}"),
                _ => continue,
            };
            answers.push(Answered {
                what,
                doc: name.to_owned(),
                rev: msg["rev"].as_u64().expect("a revision"),
                written: None,
                at,
            });
            if what == "ack" && msg["seq"].as_u64() == Some(seq) {
                break;
            }
        }
    }
    let _ = handle
        .send(Command::Leave {
            session,
            client: me,
        })
        .await;
}
