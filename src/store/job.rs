//! The write jobs both backends' single writers take, and how each is
//! answered. A backend queues a [`Job`], its writer runs a batch of them in
//! one transaction, and only after the commit calls [`reply`] for each.

use ropey::Rope;
use tokio::sync::oneshot;

use super::{AppendBatch, DocumentMeta, Durable, StoreError, durable_now};
use crate::ids::{DocId, Revision};

/// Where a job's outcome goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One write, queued to a backend's writer.
pub(super) enum Job {
    Create {
        id: DocId,
        language: String,
        text: String,
        reply: Reply<DocumentMeta>,
    },
    Append {
        batch: AppendBatch,
        reply: Reply<Durable>,
    },
    SetLanguage {
        id: DocId,
        language: String,
        reply: Reply<()>,
    },
    PutSnapshot {
        id: DocId,
        rev: Revision,
        text: Rope,
        reply: Reply<()>,
    },
}

/// Answers a job with the outcome of its savepoint (only once the whole
/// transaction has committed and is durable, or with the commit's error).
pub(super) fn reply(job: Job, result: Result<Option<DocumentMeta>, StoreError>) {
    match job {
        Job::Create { reply, .. } => {
            let _ = reply.send(result.and_then(|m| {
                m.ok_or_else(|| StoreError::Corrupt("create returned nothing".into()))
            }));
        }
        Job::Append { reply, .. } => {
            let _ = reply.send(result.map(|_| durable_now()));
        }
        Job::SetLanguage { reply, .. } | Job::PutSnapshot { reply, .. } => {
            let _ = reply.send(result.map(|_| ()));
        }
    }
}
