//! Durable storage: the [`Store`] trait and its backends.
//!
//! A store holds, per document, its metadata, the op log (one row per
//! revision, unique on `(document, revision)` and on `(document, client,
//! seq)`) and snapshots of the text. Appends are the fence between nodes: a
//! batch whose first revision is not the document's next one fails with
//! [`StoreError::Conflict`] instead of forking history.
//!
//! Access rights live beside the documents: one [`Permission`] per
//! `(document, user)` (`document_access`), and share links
//! ([`ShareLink`], `share_links`), each stored by the hash of its token
//! only, so that a copy of the database holds no usable link. Reads of a
//! document that does not exist find nothing; writes to one are
//! [`StoreError::NotFound`].
//!
//! Backends: [`sqlite`] (embedded, the default) and [`postgres`] (several
//! nodes sharing one database; schema in `sql/`). Both pass the same
//! conformance suite in `tests/store.rs`.

mod checkpoint;
mod job;
pub mod pg_tls;
pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use ropey::Rope;
use thiserror::Error;

use crate::auth::Permission;
use crate::ids::{ClientId, DocId, LeaseEpoch, Revision, Seq};
use crate::ot::TextOp;

/// Why a store call failed. Callers act on the variant: `Conflict` closes
/// the document, `Unavailable` is retried, `NotFound` is a user error.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The document does not exist.
    #[error("document not found")]
    NotFound,
    /// Someone else wrote first: the document exists already, or the
    /// revisions of an append are taken (another node owns the document).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store cannot be reached or failed; the call may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data does not parse; something wrote what it should not have.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The store refused a value it was given (a PostgreSQL data error, a
    /// number out of range): the same write would be refused again, so it
    /// is neither retried nor taken for another writer's.
    #[error("value refused by the store: {0}")]
    Invalid(String),
}

impl StoreError {
    /// What a client may be told: a stable message without the store's own
    /// text (table names, SQL, paths), which goes to the operator's log.
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::NotFound => "no such document",
            Self::Conflict(_) => "the document was changed by another writer",
            Self::Unavailable(_) => "the store is unavailable; retry",
            Self::Corrupt(_) => "the document's stored data is damaged; an operator has been told",
            Self::Invalid(_) => "the store refused the data",
        }
    }
}

/// A document's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentMeta {
    /// Its id.
    pub id: DocId,
    /// Monaco language id.
    pub language: String,
    /// Latest committed revision.
    pub rev: Revision,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// Last change, Unix milliseconds.
    pub updated_ms: i64,
}

/// One committed op as it is kept in the log and in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct OpRecord {
    /// The revision this op produced (it was based on `rev - 1`).
    pub rev: Revision,
    /// The session that sent it.
    pub client: ClientId,
    /// That session's counter for it.
    pub seq: Seq,
    /// Who wrote it (the user's name as the server knows it).
    pub author: String,
    /// The op, transformed to apply at `rev - 1`.
    pub op: TextOp,
    /// When it was committed, Unix milliseconds.
    pub time_ms: i64,
}

impl OpRecord {
    /// About how many bytes the record takes in memory (see
    /// [`TextOp::approx_bytes`](crate::ot::TextOp::approx_bytes)).
    pub fn approx_bytes(&self) -> usize {
        self.op.approx_bytes() + self.client.as_str().len() + self.author.len() + 64
    }
}

/// The text of a document at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The revision.
    pub rev: Revision,
    /// The full text at it.
    pub text: String,
}

/// A share link: whoever presents its token gets `permission` on
/// `document` until `expires_ms`. The store keeps only the token's hash
/// (made by the caller, e.g. SHA-256 in hex), never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareLink {
    /// The link's id (not secret: it names the link to list and revoke it).
    /// Unique across all documents.
    pub id: String,
    /// The document it opens.
    pub document: DocId,
    /// The hash of its token. Unique across all links.
    pub token_hash: String,
    /// What it grants: [`Permission::Read`] or [`Permission::Write`], never
    /// admin.
    pub permission: Permission,
    /// When it stops working, Unix milliseconds. Expired links are kept
    /// (and listed) until revoked; the caller checks the time.
    pub expires_ms: i64,
    /// When it was made, Unix milliseconds.
    pub created_ms: i64,
    /// Who made it (a user id).
    pub created_by: String,
}

/// Ops to append to one document's log, in revision order with no gap, and
/// optionally a snapshot of the text after the last of them.
#[derive(Debug, Clone)]
pub struct AppendBatch {
    /// The document.
    pub doc: DocId,
    /// The ops; the first must be the document's next revision.
    pub ops: Vec<Arc<OpRecord>>,
    /// A snapshot to write in the same transaction (the rope is turned into
    /// text on the store's thread, off the document task).
    pub snapshot: Option<(Revision, Rope)>,
    /// The writer's lease epoch (see [`Store::claim`]): the batch is refused
    /// when the document has been claimed with a later one since.
    pub epoch: LeaseEpoch,
}

/// Storage for documents, their op logs and snapshots.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a document at revision 0 with `text` as its snapshot 0.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when it exists already.
    async fn create_document(
        &self,
        id: &DocId,
        language: &str,
        text: &str,
    ) -> Result<DocumentMeta, StoreError>;

    /// As [`Store::create_document`], and makes `owner` the document's
    /// admin in the same transaction: a document is never left without the
    /// admin who created it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when it exists already (nothing is granted
    /// then); [`StoreError::Invalid`] when `owner` holds U+0000.
    async fn create_document_as(
        &self,
        id: &DocId,
        language: &str,
        text: &str,
        owner: &str,
    ) -> Result<DocumentMeta, StoreError>;

    /// Takes the document for a new owner: its lease epoch becomes one more
    /// than the last, and is returned. From then on, appends, language
    /// changes and snapshots that carry an older epoch are refused with
    /// [`StoreError::Conflict`]: a node that lost its lease (paused, cut off)
    /// cannot write after the next owner took the document, even where the
    /// revisions it would write are still free.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the document does not exist.
    async fn claim(&self, id: &DocId) -> Result<LeaseEpoch, StoreError>;

    /// The document's metadata, or `None` when it does not exist.
    async fn document(&self, id: &DocId) -> Result<Option<DocumentMeta>, StoreError>;

    /// Documents, most recently changed first, at most `limit`.
    async fn list_documents(&self, limit: usize) -> Result<Vec<DocumentMeta>, StoreError>;

    /// The latest snapshot at or before `rev`.
    async fn snapshot_at_or_before(
        &self,
        id: &DocId,
        rev: Revision,
    ) -> Result<Option<Snapshot>, StoreError>;

    /// The revisions of every stored snapshot, ascending.
    async fn snapshot_revisions(&self, id: &DocId) -> Result<Vec<Revision>, StoreError>;

    /// Ops with `after < rev <= upto`, in order, at most `limit`.
    async fn ops(
        &self,
        id: &DocId,
        after: Revision,
        upto: Revision,
        limit: usize,
    ) -> Result<Vec<OpRecord>, StoreError>;

    /// Appends a batch durably (fsync'd before this returns `Ok`). Appending
    /// exactly the same ops again succeeds, so a retry after an ambiguous
    /// failure is safe.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the first op is not the document's next
    /// revision, a revision is already taken by a different op, or the
    /// batch's epoch is older than the document's (see [`Store::claim`]).
    async fn append(&self, batch: AppendBatch) -> Result<(), StoreError> {
        self.append_ordered(batch).await?.await
    }

    /// Appends a batch in two steps, so a writer can keep the disk busy: the
    /// call returns once the batch is written in order (the next append may
    /// be started, and conflicts are known), and the [`Durable`] it returns
    /// resolves once it is on disk. Only then may the ops be acknowledged.
    /// A backend whose commit is its flush returns an already resolved one.
    ///
    /// # Errors
    ///
    /// As [`Store::append`]. An error from the [`Durable`] means the write
    /// may be lost; the document must be reloaded from the store.
    async fn append_ordered(&self, batch: AppendBatch) -> Result<Durable, StoreError>;

    /// The revision the op `(client, seq)` was committed as, if it was.
    async fn find_op(
        &self,
        id: &DocId,
        client: &ClientId,
        seq: Seq,
    ) -> Result<Option<Revision>, StoreError>;

    /// The client's highest committed seq and its revision.
    async fn last_seq(
        &self,
        id: &DocId,
        client: &ClientId,
    ) -> Result<Option<(Seq, Revision)>, StoreError>;

    /// Changes the document's language, unless `epoch` is older than the
    /// document's ([`StoreError::Conflict`], see [`Store::claim`]).
    async fn set_language(
        &self,
        id: &DocId,
        language: &str,
        epoch: LeaseEpoch,
    ) -> Result<(), StoreError>;

    /// Writes a snapshot (kept if one exists at that revision already),
    /// unless `epoch` is older than the document's ([`StoreError::Conflict`]).
    async fn put_snapshot(
        &self,
        id: &DocId,
        rev: Revision,
        text: Rope,
        epoch: LeaseEpoch,
    ) -> Result<(), StoreError>;

    /// Gives `user` exactly `permission` on the document, replacing any
    /// right they held (so it also lowers one). User ids are any text but
    /// U+0000, compared exactly (case and all).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the document does not exist;
    /// [`StoreError::Invalid`] when `user` holds U+0000.
    async fn grant(
        &self,
        doc: &DocId,
        user: &str,
        permission: Permission,
    ) -> Result<(), StoreError>;

    /// Takes away `user`'s right on the document. True when they had one.
    async fn revoke(&self, doc: &DocId, user: &str) -> Result<bool, StoreError>;

    /// Everyone with a right on the document, sorted by user id (byte
    /// order). Empty when the document does not exist.
    async fn grants(&self, doc: &DocId) -> Result<Vec<(String, Permission)>, StoreError>;

    /// `user`'s right on the document, if they were granted one. Share
    /// links are not counted: they are looked up by token.
    async fn permission(&self, doc: &DocId, user: &str) -> Result<Option<Permission>, StoreError>;

    /// Stores a new share link.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when its document does not exist;
    /// [`StoreError::Conflict`] when its id or token hash is taken;
    /// [`StoreError::Invalid`] when it grants admin or a text field holds
    /// U+0000.
    async fn create_link(&self, link: &ShareLink) -> Result<(), StoreError>;

    /// The document's share links, expired ones too, newest first (ties by
    /// id). Empty when the document does not exist.
    async fn links(&self, doc: &DocId) -> Result<Vec<ShareLink>, StoreError>;

    /// Deletes the document's link `id`. True when there was one (a link of
    /// another document is not touched, and gives false).
    async fn revoke_link(&self, doc: &DocId, id: &str) -> Result<bool, StoreError>;

    /// The link whose token hashes to `token_hash`, expired or not.
    async fn link_by_token_hash(&self, token_hash: &str) -> Result<Option<ShareLink>, StoreError>;

    /// Deletes the document and everything of it (its ops, snapshots,
    /// grants and share links) in one transaction. True when it existed;
    /// false, with nothing changed, when it did not. The id may be created
    /// again afterwards, from revision 0.
    ///
    /// The caller makes sure nothing writes to the document meanwhile (its
    /// task has stopped): a later append to the id is `NotFound`.
    async fn delete_document(&self, id: &DocId) -> Result<bool, StoreError>;

    /// `(commits, ops)` written by this store since it was opened.
    fn commit_stats(&self) -> (u64, u64);

    /// Answers once the store can serve reads: one trivial query on a read
    /// connection, cheap enough for a readiness probe every few seconds.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the store cannot be reached.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Counts of what a store's group commit did: how many transactions it
/// committed and how many ops they carried (ops per commit is the batching
/// that a writer achieved under load).
#[derive(Debug, Default)]
pub struct CommitStats {
    commits: AtomicU64,
    ops: AtomicU64,
}

impl CommitStats {
    /// Records one committed transaction carrying `ops` ops.
    pub fn record(&self, ops: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.ops.fetch_add(ops as u64, Ordering::Relaxed);
    }

    /// `(commits, ops)` so far.
    pub fn read(&self) -> (u64, u64) {
        (
            self.commits.load(Ordering::Relaxed),
            self.ops.load(Ordering::Relaxed),
        )
    }
}

/// Resolves once a written append is durable; see [`Store::append_ordered`].
pub type Durable = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// A [`Durable`] for a write that was flushed by its commit (PostgreSQL's:
/// which is why only SQLite, whose commit and flush are apart, routes its
/// flush through a seam a test can observe, [`sqlite::WalSync`]).
#[must_use]
pub fn durable_now() -> Durable {
    Box::pin(std::future::ready(Ok(())))
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// Parses an op read back from the store. Stored ops were validated when
/// they were committed, so a failure means the data is corrupt.
pub(crate) fn decode_op(json: &str) -> Result<TextOp, StoreError> {
    let raw: crate::ot::RawOp =
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("op: {e}")))?;
    let limits = crate::ot::OpLimits {
        max_components: usize::MAX,
        max_insert_chars: usize::MAX,
        max_document_chars: usize::MAX / 2,
    };
    TextOp::parse(&raw, &limits).map_err(|e| StoreError::Corrupt(format!("op: {e}")))
}

/// Refuses text that a backend cannot store the same way as the others:
/// PostgreSQL `text` cannot hold U+0000, so no backend takes it in a user
/// id or a link field.
pub(crate) fn storable(what: &str, s: &str) -> Result<(), StoreError> {
    if s.contains('\0') {
        return Err(StoreError::Invalid(format!("{what} contains U+0000")));
    }
    Ok(())
}

/// Checks a share link before it is stored: see [`Store::create_link`].
pub(crate) fn check_link(link: &ShareLink) -> Result<(), StoreError> {
    if link.permission > Permission::Write {
        return Err(StoreError::Invalid(format!(
            "a share link cannot grant {}",
            link.permission
        )));
    }
    storable("link id", &link.id)?;
    storable("link token hash", &link.token_hash)?;
    storable("link creator", &link.created_by)
}

/// Parses a permission read back from the store.
pub(crate) fn stored_permission(s: &str) -> Result<Permission, StoreError> {
    Permission::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Sorts grants as [`Store::grants`] returns them: by user id, in byte
/// order (the same on every backend, whatever its collation).
pub(crate) fn sort_grants(grants: &mut [(String, Permission)]) {
    grants.sort_unstable_by(|a, b| a.0.cmp(&b.0));
}

/// Sorts links as [`Store::links`] returns them: newest first, ties by id.
pub(crate) fn sort_links(links: &mut [ShareLink]) {
    links.sort_unstable_by(|a, b| {
        b.created_ms
            .cmp(&a.created_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// The refusal of a write whose epoch is older than the document's.
pub(crate) fn check_epoch(
    doc: &DocId,
    stored: LeaseEpoch,
    writer: LeaseEpoch,
) -> Result<(), StoreError> {
    if writer < stored {
        return Err(StoreError::Conflict(format!(
            "document {doc} was taken by a newer owner (lease epoch {stored}; this writer holds {writer})"
        )));
    }
    Ok(())
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
