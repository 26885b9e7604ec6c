//! Which documents are open on this node: opening one spawns its task (which
//! loads the latest snapshot and the ops after it), an idle task removes
//! itself, and shutdown waits for every task to flush.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Notify, watch};

use crate::config::Settings;
use crate::document::{self, DocumentHandle};
use crate::ids::DocId;
use crate::store::SharedStore;

/// The open documents of this node.
pub struct Registry {
    /// Open document tasks. A std mutex: held only to look up or insert,
    /// never across an `.await`.
    docs: Mutex<HashMap<DocId, DocumentHandle>>,
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
        settings: Arc<Settings>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(Self {
            docs: Mutex::new(HashMap::new()),
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

    /// The server settings.
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// The running task of `id`, if it is open.
    pub fn get(&self, id: &DocId) -> Option<DocumentHandle> {
        let docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        docs.get(id).filter(|h| !h.is_closed()).cloned()
    }

    /// The task of `id`, spawning it if the document is not open. A new task
    /// creates the document in the store if it does not exist.
    pub fn open(self: &Arc<Self>, id: &DocId) -> DocumentHandle {
        let mut docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = docs.get(id).filter(|h| !h.is_closed()) {
            return h.clone();
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let weak: Weak<Self> = Arc::downgrade(self);
        let live = Arc::clone(&self.live);
        live.0.fetch_add(1, Ordering::SeqCst);
        let doc = id.clone();
        let handle = document::spawn(
            id.clone(),
            generation,
            Arc::clone(&self.store),
            Arc::clone(&self.settings),
            self.shutdown.clone(),
            move || {
                if let Some(registry) = weak.upgrade() {
                    let mut docs = registry.docs.lock().unwrap_or_else(|p| p.into_inner());
                    if docs.get(&doc).is_some_and(|h| h.generation == generation) {
                        docs.remove(&doc);
                    }
                }
                live.0.fetch_sub(1, Ordering::SeqCst);
                live.1.notify_waiters();
            },
        );
        docs.insert(id.clone(), handle.clone());
        handle
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
