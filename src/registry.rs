//! Which documents are open on this node: opening one takes its lease (or
//! finds which node owns it), then spawns its task (which claims it in the
//! store and loads the latest snapshot and the ops after it); an idle task
//! removes itself, and shutdown waits for every task to flush.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Notify, watch};

use crate::cluster::{Acquired, ClusterError, NodeInfo, SharedCluster};
use crate::config::Settings;
use crate::document::{self, DocumentHandle};
use crate::ids::DocId;
use crate::store::SharedStore;

/// This node has [`Limits::max_open_documents`](crate::config::Limits)
/// documents open and may not open another until one closes.
#[derive(Debug, thiserror::Error)]
#[error("too many documents open on this server (the limit is {0}); try again later")]
pub struct TooManyDocuments(pub usize);

/// Why [`Registry::open`] did not give a document of this node.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// This node is at its cap of open documents.
    #[error(transparent)]
    TooMany(#[from] TooManyDocuments),
    /// Another node owns the document.
    #[error("the document is served by node {}", .0.id)]
    Elsewhere(NodeInfo),
    /// The lease could not be asked for: nobody may open the document now.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// The open documents of this node.
pub struct Registry {
    /// Open document tasks. A std mutex: held only to look up or insert,
    /// never across an `.await`.
    docs: Mutex<HashMap<DocId, DocumentHandle>>,
    /// One lease acquisition per document at a time on this node: a second
    /// opener waits for the first instead of asking Redis again.
    opening: Mutex<HashMap<DocId, Arc<tokio::sync::Mutex<()>>>>,
    cluster: SharedCluster,
    store: SharedStore,
    settings: Arc<Settings>,
    shutdown: watch::Receiver<bool>,
    generation: AtomicU64,
    /// Tasks still running, and a wake-up for [`Registry::wait_closed`].
    live: Arc<(AtomicUsize, Notify)>,
}

impl Registry {
    /// A registry whose tasks use `store` and stop when `shutdown` turns true.
    pub fn new(
        store: SharedStore,
        cluster: SharedCluster,
        settings: Arc<Settings>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(Self {
            docs: Mutex::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
            cluster,
            store,
            settings,
            shutdown,
            generation: AtomicU64::new(0),
            live: Arc::new((AtomicUsize::new(0), Notify::new())),
        })
    }

    /// The store behind the documents.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Leases and the other nodes.
    pub fn cluster(&self) -> &SharedCluster {
        &self.cluster
    }

    /// The server settings.
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// The running task of `id`, if it is open.
    pub fn get(&self, id: &DocId) -> Option<DocumentHandle> {
        let docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        docs.get(id).filter(|h| !h.is_closed()).cloned()
    }

    /// The task of `id`, spawning it if the document is not open here and
    /// this node can take its lease. A new task claims the document in the
    /// store, creating it there if it does not exist.
    ///
    /// # Errors
    ///
    /// [`OpenError::Elsewhere`] when another node holds the lease;
    /// [`OpenError::TooMany`] when the document is not open and this node
    /// already runs `max_open_documents` tasks (counting those still
    /// closing: they hold their memory until they end);
    /// [`OpenError::Cluster`] when the lease cannot be asked for.
    pub async fn open(self: &Arc<Self>, id: &DocId) -> Result<DocumentHandle, OpenError> {
        if let Some(h) = self.get(id) {
            return Ok(h);
        }
        let turn = {
            let mut opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(opening.entry(id.clone()).or_default())
        };
        let result = {
            let _turn = turn.lock().await;
            match self.get(id) {
                Some(h) => Ok(h),
                None => self.acquire_and_spawn(id).await,
            }
        };
        let mut opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        // The last one out removes the entry (the map holds one reference).
        if opening.get(id).is_some_and(|t| Arc::strong_count(t) <= 2) {
            opening.remove(id);
        }
        result
    }

    async fn acquire_and_spawn(self: &Arc<Self>, id: &DocId) -> Result<DocumentHandle, OpenError> {
        let max = self.settings.limits.max_open_documents;
        if self.live.0.load(Ordering::SeqCst) >= max {
            return Err(TooManyDocuments(max).into());
        }
        let lease = match self.cluster.acquire(id).await? {
            Acquired::Leased(lease) => lease,
            Acquired::Elsewhere(node) => return Err(OpenError::Elsewhere(node)),
        };
        let mut docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        // Tasks are only counted in under this lock, so two opens cannot
        // both take the last place.
        if self.live.0.load(Ordering::SeqCst) >= max {
            drop(docs);
            self.cluster.release(&lease).await;
            return Err(TooManyDocuments(max).into());
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let weak: Weak<Self> = Arc::downgrade(self);
        let live = Arc::clone(&self.live);
        let count = live.0.fetch_add(1, Ordering::SeqCst) + 1;
        self.cluster.set_open_documents(count);
        crate::metrics::documents_open(1);
        let doc = id.clone();
        let handle = document::spawn(
            document::Owner {
                cluster: Arc::clone(&self.cluster),
                lease,
            },
            generation,
            Arc::clone(&self.store),
            Arc::clone(&self.settings),
            self.shutdown.clone(),
            move || {
                let registry = weak.upgrade();
                if let Some(registry) = &registry {
                    let mut docs = registry.docs.lock().unwrap_or_else(|p| p.into_inner());
                    if docs.get(&doc).is_some_and(|h| h.generation == generation) {
                        docs.remove(&doc);
                    }
                }
                let count = live.0.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
                if let Some(registry) = registry {
                    registry.cluster.set_open_documents(count);
                }
                crate::metrics::documents_open(-1);
                live.1.notify_waiters();
            },
        );
        docs.insert(id.clone(), handle.clone());
        Ok(handle)
    }

    /// The running tasks of every open document, in no order (a snapshot:
    /// documents may open and close right after).
    pub fn open_handles(&self) -> Vec<DocumentHandle> {
        let docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        docs.values().filter(|h| !h.is_closed()).cloned().collect()
    }

    /// Number of open documents.
    pub fn open_count(&self) -> usize {
        self.live.0.load(Ordering::SeqCst)
    }

    /// Waits until every document task has ended (after shutdown, once each
    /// has flushed its pending commits and written its snapshot).
    pub async fn wait_closed(&self) {
        loop {
            let notified = self.live.1.notified();
            if self.live.0.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;
    use crate::document::{Command, JoinRequest, Joined, OutboundReceiver, Refusal, outbound};
    use crate::ids::{Revision, Seq};
    use crate::ot::{Component, TextOp};
    use crate::protocol::CloseCode;
    use crate::store::sqlite::SqliteStore;

    const WAIT: Duration = Duration::from_secs(10);

    fn single() -> SharedCluster {
        Arc::new(crate::cluster::single::SingleNode::default())
    }

    /// A fresh database on `TANDEM_TEST_DATABASE_URL`'s server, as the
    /// integration tests make them (tests/common/pg.rs): `None` after a
    /// `SKIPPED(postgres)` line when it is not set, a failure in CI. Dropped
    /// at the end of the test that made it.
    async fn postgres_db() -> Option<(tokio_postgres::Client, String, String)> {
        let admin = match std::env::var("TANDEM_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "TANDEM_TEST_DATABASE_URL must be set in CI"
                );
                let test = std::thread::current().name().unwrap_or("?").to_owned();
                eprintln!("SKIPPED(postgres): tandem::{test} (TANDEM_TEST_DATABASE_URL not set)");
                return None;
            }
        };
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .expect("connect to TANDEM_TEST_DATABASE_URL");
        tokio::spawn(conn);
        let name = format!("tandem_unit_{:016x}", rand::random::<u64>());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let base = admin.split('?').next().unwrap_or(&admin);
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        let url = format!("{server}/{name}");
        Some((client, name, url))
    }

    struct Member {
        joined: Joined,
        rx: OutboundReceiver,
        kick: oneshot::Receiver<CloseCode>,
    }

    async fn join(h: &DocumentHandle, session: u64) -> Member {
        let (tx, rx) = outbound(64, usize::MAX);
        let (kick_tx, kick) = oneshot::channel();
        let (reply, answer) = oneshot::channel::<Result<Joined, Refusal>>();
        let req = JoinRequest {
            session,
            client: None,
            rev: None,
            user_name: "t".into(),
            user_color: String::new(),
            permission: crate::auth::Permission::Write,
            rights: Default::default(),
            outbound: tx,
            batch: false,
            kick: kick_tx,
            origin: Default::default(),
        };
        h.send(Command::Join {
            req: Box::new(req),
            reply,
        })
        .await
        .expect("send join");
        let joined = tokio::time::timeout(WAIT, answer)
            .await
            .expect("join answered in time")
            .expect("task alive")
            .expect("joined");
        Member { joined, rx, kick }
    }

    /// Sends "x" at the start and waits for its ack.
    async fn type_x(h: &DocumentHandle, m: &mut Member, session: u64, rev: u64, len: usize) {
        let op = TextOp::from_components([Component::Insert("x"), Component::Retain(len)]);
        let cmd = Command::Op {
            session,
            client: m.joined.client.clone(),
            rev: Revision(rev),
            seq: Seq(rev + 1),
            op: Box::new(op),
            selection: None,
            received: std::time::Instant::now(),
        };
        h.send(cmd).await.expect("send op");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, m.rx.recv())
                .await
                .expect("ack in time")
                .expect("session open");
            if frame.contains("\"ack\"") {
                return;
            }
        }
    }

    async fn text(h: &DocumentHandle) -> String {
        let (reply, answer) = oneshot::channel();
        h.send(Command::Info { reply }).await.expect("info");
        answer.await.expect("answered").text.to_string()
    }

    #[tokio::test]
    async fn a_panicking_document_closes_its_sessions_and_reopens_cleanly_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: SharedStore =
            Arc::new(SqliteStore::open(dir.path().join("t.db")).expect("store"));
        crash_and_reopen(store).await;
    }

    #[tokio::test]
    async fn a_panicking_document_closes_its_sessions_and_reopens_cleanly_postgres() {
        let Some((admin, name, url)) = postgres_db().await else {
            return;
        };
        crate::store::postgres::migrate(&url)
            .await
            .expect("migrate");
        let store = crate::store::postgres::PostgresStore::connect(&url)
            .await
            .expect("store");
        crash_and_reopen(Arc::new(store)).await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .expect("drop database");
    }

    #[tokio::test]
    async fn no_more_documents_open_than_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: SharedStore =
            Arc::new(SqliteStore::open(dir.path().join("t.db")).expect("store"));
        let mut settings = Settings::default();
        settings.limits.max_open_documents = 1;
        let (stop_tx, stop_rx) = watch::channel(false);
        let registry = Registry::new(store, single(), Arc::new(settings), stop_rx);
        let a_id = DocId::parse("first").expect("id");
        let a = registry.open(&a_id).await.expect("under the cap");
        let refused = registry.open(&DocId::parse("second").expect("id")).await;
        assert!(
            matches!(refused, Err(OpenError::TooMany(TooManyDocuments(1)))),
            "over the cap"
        );
        let again = registry
            .open(&a_id)
            .await
            .expect("an open document is served");
        assert_eq!(again.generation, a.generation);
        assert_eq!(registry.open_count(), 1);
        stop_tx.send(true).expect("shutdown");
        tokio::time::timeout(WAIT, registry.wait_closed())
            .await
            .expect("closed in time");
    }

    async fn crash_and_reopen(store: SharedStore) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let registry = Registry::new(store, single(), Arc::new(Settings::default()), stop_rx);
        let a_id = DocId::parse("crashes").expect("id");
        let b_id = DocId::parse("bystander").expect("id");
        let a = registry.open(&a_id).await.expect("open");
        let b = registry.open(&b_id).await.expect("open");
        let mut alice = join(&a, 1).await;
        let mut bob = join(&b, 2).await;
        type_x(&a, &mut alice, 1, 0, 0).await;
        type_x(&b, &mut bob, 2, 0, 0).await;
        assert_eq!(registry.open_count(), 2);

        a.send(Command::Crash).await.expect("send crash");
        // Its session is let go without a code: the session closes 1011.
        let kicked = tokio::time::timeout(WAIT, &mut alice.kick)
            .await
            .expect("kick dropped in time");
        assert!(kicked.is_err(), "a crash sends no close code: {kicked:?}");
        let deadline = tokio::time::Instant::now() + WAIT;
        while registry.open_count() != 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the crashed document is still counted as open"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(registry.get(&a_id).is_none(), "the registry forgot it");

        // The other document carries on; the crashed one reopens from the
        // store with everything acked.
        type_x(&b, &mut bob, 2, 1, 1).await;
        let a2 = registry.open(&a_id).await.expect("open");
        let mut carol = join(&a2, 3).await;
        assert_eq!(text(&a2).await, "x");
        type_x(&a2, &mut carol, 3, 1, 1).await;
        assert_eq!(text(&a2).await, "xx");
        assert_eq!(text(&b).await, "xx");

        // Shutdown waits only for the live tasks, not for the crashed one.
        stop_tx.send(true).expect("shutdown");
        tokio::time::timeout(WAIT, registry.wait_closed())
            .await
            .expect("shutdown did not wait for the crashed task");
        assert_eq!(registry.open_count(), 0);
    }

    /// A coordinator under the test's control: `theirs` is always another
    /// node's; other documents are leased for [`FAKE_LEASE`], and renewals
    /// keep them, lose them, or fail, as the test says.
    struct FakeCluster {
        node: crate::cluster::NodeInfo,
        renewals: std::sync::Mutex<Renewals>,
        released: std::sync::atomic::AtomicUsize,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Renewals {
        Keep,
        Lose,
        Fail,
    }

    const FAKE_LEASE: Duration = Duration::from_millis(400);

    impl FakeCluster {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                node: crate::cluster::NodeInfo {
                    id: "me".into(),
                    url: Some("http://me".into()),
                },
                renewals: std::sync::Mutex::new(Renewals::Keep),
                released: std::sync::atomic::AtomicUsize::new(0),
            })
        }

        fn set(&self, r: Renewals) {
            *self.renewals.lock().expect("lock") = r;
        }

        fn until(&self) -> tokio::time::Instant {
            tokio::time::Instant::now() + FAKE_LEASE - crate::cluster::safety_margin(FAKE_LEASE)
        }
    }

    #[async_trait::async_trait]
    impl crate::cluster::Cluster for FakeCluster {
        fn node(&self) -> &crate::cluster::NodeInfo {
            &self.node
        }
        fn is_single(&self) -> bool {
            false
        }
        fn lease_time(&self) -> Duration {
            FAKE_LEASE
        }
        async fn acquire(&self, doc: &DocId) -> Result<Acquired, ClusterError> {
            if doc.as_str() == "theirs" {
                return Ok(Acquired::Elsewhere(NodeInfo {
                    id: "other".into(),
                    url: Some("http://other".into()),
                }));
            }
            Ok(Acquired::Leased(crate::cluster::Lease {
                doc: doc.clone(),
                token: "t".into(),
                valid_until: Some(self.until()),
            }))
        }
        async fn renew(
            &self,
            _lease: &crate::cluster::Lease,
        ) -> Result<Option<tokio::time::Instant>, ClusterError> {
            let r = *self.renewals.lock().expect("lock");
            match r {
                Renewals::Keep => Ok(Some(self.until())),
                Renewals::Lose => Ok(None),
                Renewals::Fail => Err(ClusterError("coordinator down (test)".into())),
            }
        }
        async fn release(&self, _lease: &crate::cluster::Lease) {
            self.released.fetch_add(1, Ordering::SeqCst);
        }
        async fn owner(&self, _doc: &DocId) -> Result<Option<NodeInfo>, ClusterError> {
            Ok(None)
        }
        async fn nodes(&self) -> Result<Vec<crate::cluster::NodeStatus>, ClusterError> {
            Ok(Vec::new())
        }
        async fn ping(&self) -> Result<(), ClusterError> {
            Ok(())
        }
        fn set_open_documents(&self, _count: usize) {}
        async fn publish(&self, _change: &crate::cluster::RightsChange) {}
        fn subscribe(
            &self,
        ) -> Option<tokio::sync::broadcast::Receiver<crate::cluster::RightsChange>> {
            None
        }
    }

    /// A document another node holds is not opened here: the caller is
    /// told who holds it.
    #[tokio::test]
    async fn a_document_leased_elsewhere_is_not_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: SharedStore =
            Arc::new(SqliteStore::open(dir.path().join("t.db")).expect("store"));
        let (_stop_tx, stop_rx) = watch::channel(false);
        let registry = Registry::new(
            store,
            FakeCluster::new(),
            Arc::new(Settings::default()),
            stop_rx,
        );
        match registry.open(&DocId::parse("theirs").expect("id")).await {
            Err(OpenError::Elsewhere(node)) => assert_eq!(node.id, "other"),
            other => panic!("expected Elsewhere, got {:?}", other.map(|h| h.id)),
        }
        assert_eq!(registry.open_count(), 0);
    }

    /// Renewed leases keep a document served past its first term; a lease
    /// another node took (`Lose`), or one that cannot be renewed before it
    /// runs out (`Fail`), closes its sessions with 4409 and the document.
    #[tokio::test]
    async fn a_lost_or_unrenewable_lease_closes_the_document_with_4409() {
        for (name, how) in [("lost", Renewals::Lose), ("unrenewable", Renewals::Fail)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let store: SharedStore =
                Arc::new(SqliteStore::open(dir.path().join("t.db")).expect("store"));
            let cluster = FakeCluster::new();
            let (_stop_tx, stop_rx) = watch::channel(false);
            let registry = Registry::new(
                store,
                Arc::clone(&cluster) as SharedCluster,
                Arc::new(Settings::default()),
                stop_rx,
            );
            let id = DocId::parse(name).expect("id");
            let h = registry.open(&id).await.expect("leased here");
            let mut m = join(&h, 1).await;
            type_x(&h, &mut m, 1, 0, 0).await;
            // Three lease terms later it is still served: renewals work.
            tokio::time::sleep(FAKE_LEASE * 3).await;
            type_x(&h, &mut m, 1, 1, 1).await;
            assert_eq!(text(&h).await, "xx");

            cluster.set(how);
            let code = tokio::time::timeout(WAIT, &mut m.kick)
                .await
                .expect("closed in time")
                .expect("with a code");
            assert_eq!(code, CloseCode::Moved, "{name}: sessions told to reconnect");
            let deadline = tokio::time::Instant::now() + WAIT;
            while registry.open_count() != 0 {
                assert!(tokio::time::Instant::now() < deadline, "{name}: still open");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(
                cluster.released.load(Ordering::SeqCst),
                0,
                "{name}: a lease that is not ours is not released"
            );
        }
    }
}
