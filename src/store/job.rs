//! The write jobs both backends' single writers take, and how each is
//! answered. A backend queues a [`Job`], its writer runs a batch of them in
//! one transaction, and only after the commit calls [`reply`] for each.

use ropey::Rope;
use tokio::sync::oneshot;

use super::{AppendBatch, DocumentMeta, Durable, ShareLink, StoreError, durable_now};
use crate::auth::Permission;
use crate::ids::{DocId, LeaseEpoch, Revision};

/// Where a job's outcome goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One write, queued to a backend's writer.
pub(super) enum Job {
    Create {
        id: DocId,
        language: String,
        text: String,
        /// Made the document's admin in the same transaction.
        owner: Option<String>,
        reply: Reply<DocumentMeta>,
    },
    Append {
        batch: AppendBatch,
        reply: Reply<Durable>,
    },
    Claim {
        id: DocId,
        reply: Reply<LeaseEpoch>,
    },
    SetLanguage {
        id: DocId,
        language: String,
        epoch: LeaseEpoch,
        reply: Reply<()>,
    },
    PutSnapshot {
        id: DocId,
        rev: Revision,
        text: Rope,
        epoch: LeaseEpoch,
        reply: Reply<()>,
    },
    Grant {
        doc: DocId,
        user: String,
        permission: Permission,
        reply: Reply<()>,
    },
    Revoke {
        doc: DocId,
        user: String,
        reply: Reply<bool>,
    },
    CreateLink {
        link: ShareLink,
        reply: Reply<()>,
    },
    RevokeLink {
        doc: DocId,
        id: String,
        reply: Reply<bool>,
    },
    /// The document with its ops, snapshots, grants and links.
    DeleteDocument {
        id: DocId,
        reply: Reply<bool>,
    },
}

/// What a job's savepoint did, when it succeeded.
pub(super) enum Done {
    /// A document was created.
    Created(DocumentMeta),
    /// A document was claimed with this epoch.
    Claimed(LeaseEpoch),
    /// A write with nothing to tell.
    Written,
    /// A delete: whether a row was removed.
    Removed(bool),
}

/// Answers a job with the outcome of its savepoint (only once the whole
/// transaction has committed and is durable, or with the commit's error).
pub(super) fn reply(job: Job, result: Result<Done, StoreError>) {
    match job {
        Job::Create { reply, .. } => {
            let _ = reply.send(result.and_then(|d| match d {
                Done::Created(meta) => Ok(meta),
                _ => Err(StoreError::Corrupt("create returned nothing".into())),
            }));
        }
        Job::Claim { reply, .. } => {
            let _ = reply.send(result.and_then(|d| match d {
                Done::Claimed(epoch) => Ok(epoch),
                _ => Err(StoreError::Corrupt("claim returned nothing".into())),
            }));
        }
        Job::Append { reply, .. } => {
            let _ = reply.send(result.map(|_| durable_now()));
        }
        Job::SetLanguage { reply, .. }
        | Job::PutSnapshot { reply, .. }
        | Job::Grant { reply, .. }
        | Job::CreateLink { reply, .. } => {
            let _ = reply.send(result.map(|_| ()));
        }
        Job::Revoke { reply, .. }
        | Job::RevokeLink { reply, .. }
        | Job::DeleteDocument { reply, .. } => {
            let _ = reply.send(result.and_then(|d| match d {
                Done::Removed(removed) => Ok(removed),
                _ => Err(StoreError::Corrupt("delete returned nothing".into())),
            }));
        }
    }
}
