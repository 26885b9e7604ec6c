//! The history REST API: ops, text at a revision, diffs, revisions grouped
//! by author, blame, and restore. Everything is read from the store (the
//! op log is durable before anyone hears of an op, so it is never behind
//! what clients saw), except restore, which goes through the document task
//! like any client op. Nothing here creates a document.
//!
//! Routes (see `docs/api.md`):
//!
//! - `GET  /api/documents/{id}/ops?from=A&to=B&limit=N`
//! - `GET  /api/documents/{id}/text?rev=N`
//! - `GET  /api/documents/{id}/diff?from=A&to=B[&format=json]`
//! - `GET  /api/documents/{id}/revisions`
//! - `GET  /api/documents/{id}/blame`
//! - `POST /api/documents/{id}/restore` `{"rev": N}`
//! - `POST /api/admin/documents/{id}/replay?to=N`: replays and verifies the
//!   whole history ([`crate::replay`]).
//!
//! Every route checks the caller's right first ([`super::guard::authorize`]):
//! `read` for the readers, `write` for restore, `admin` for replay.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::http::{ApiError, AppState};
use crate::auth::Permission;
use crate::document::Command;
use crate::history::{self, Blame, GROUP_GAP_MS};
use crate::ids::{DocId, Revision};
use crate::protocol::ErrorCode;
use crate::registry::OpenError;
use crate::store::{SharedStore, StoreError};

/// Default page size of `ops`.
const OPS_DEFAULT_LIMIT: usize = 1000;
/// Largest page size of `ops`.
const OPS_MAX_LIMIT: usize = 10_000;
/// Ops read from the store at once when walking the whole history.
const PAGE: usize = 10_000;
/// Lines of context around each change of a diff.
const DIFF_CONTEXT: usize = 3;
/// Author recorded for a restore that names none.
const RESTORE_AUTHOR: &str = "restore";

/// Registers the history routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/documents/{id}/ops", web::get().to(ops))
        .route("/api/documents/{id}/text", web::get().to(text))
        .route("/api/documents/{id}/diff", web::get().to(diff))
        .route("/api/documents/{id}/revisions", web::get().to(revisions))
        .route("/api/documents/{id}/blame", web::get().to(blame))
        .route("/api/documents/{id}/restore", web::post().to(restore))
        .route(
            "/api/admin/documents/{id}/replay",
            web::post().to(admin_replay),
        );
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_message", message)
}

fn doc_id(raw: &str) -> Result<DocId, ApiError> {
    DocId::parse(raw).map_err(|e| bad(e.to_string()))
}

fn corrupt(message: impl Into<String>) -> ApiError {
    StoreError::Corrupt(message.into()).into()
}

/// The query string as a map; repeated keys keep the last value.
fn query(req: &HttpRequest) -> Result<HashMap<String, String>, ApiError> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(|q| q.into_inner().into_iter().collect())
        .map_err(|e| bad(format!("bad query string: {e}")))
}

/// A non-negative integer parameter, if present.
fn number(q: &HashMap<String, String>, key: &str) -> Result<Option<u64>, ApiError> {
    q.get(key)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| bad(format!("{key} must be a non-negative integer")))
        })
        .transpose()
}

/// The document's latest committed revision; 404 when it does not exist.
async fn current_rev(store: &SharedStore, id: &DocId) -> Result<u64, ApiError> {
    match store.document(id).await? {
        Some(meta) => Ok(meta.rev.0),
        None => Err(StoreError::NotFound.into()),
    }
}

fn check_rev(name: &str, rev: u64, current: u64) -> Result<(), ApiError> {
    if rev > current {
        return Err(bad(format!(
            "{name} {rev} is beyond the current revision {current}"
        )));
    }
    Ok(())
}

/// `from` and `to` of a range, defaulting to `0` and `current`, checked.
fn range(q: &HashMap<String, String>, current: u64) -> Result<(u64, u64), ApiError> {
    let from = number(q, "from")?.unwrap_or(0);
    let to = number(q, "to")?.unwrap_or(current);
    check_rev("to", to, current)?;
    if from > to {
        return Err(bad(format!("from {from} is after to {to}")));
    }
    Ok((from, to))
}

/// The text at `rev` (at most the current revision): the nearest snapshot
/// at or before it plus the ops after that snapshot.
pub(super) async fn text_at(store: &SharedStore, id: &DocId, rev: u64) -> Result<String, ApiError> {
    let snapshot = store
        .snapshot_at_or_before(id, Revision(rev))
        .await?
        .ok_or_else(|| corrupt(format!("document {id} has no snapshot at or before {rev}")))?;
    let ops = store
        .ops(id, snapshot.rev, Revision(rev), usize::MAX)
        .await?;
    if ops.len() as u64 != rev - snapshot.rev.0 {
        return Err(corrupt(format!(
            "ops missing before revision {rev} of {id}"
        )));
    }
    history::text_at(&snapshot.text, ops.iter().map(|o| &o.op))
        .map_err(|e| corrupt(format!("history of {id} does not apply: {e}")))
}

async fn ops(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = doc_id(&path)?;
    let _ = super::guard::authorize(&req, &state, &id, Permission::Read).await?;
    let q = query(&req)?;
    let store = state.registry.store();
    let current = current_rev(store, &id).await?;
    let (from, to) = range(&q, current)?;
    let limit = match number(&q, "limit")? {
        None => OPS_DEFAULT_LIMIT,
        Some(0) => return Err(bad("limit must be at least 1")),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(OPS_MAX_LIMIT),
    };
    let records = store.ops(&id, Revision(from), Revision(to), limit).await?;
    let next = records.last().map(|o| o.rev.0).filter(|&last| last < to);
    let body: Vec<_> = records
        .iter()
        .map(|o| {
            serde_json::json!({
                "rev": o.rev, "op": o.op, "client": o.client,
                "author": o.author, "time": o.time_ms,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ops": body, "next": next })))
}

async fn text(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = doc_id(&path)?;
    let _ = super::guard::authorize(&req, &state, &id, Permission::Read).await?;
    let q = query(&req)?;
    let store = state.registry.store();
    let current = current_rev(store, &id).await?;
    let rev = number(&q, "rev")?.unwrap_or(current);
    check_rev("rev", rev, current)?;
    let text = text_at(store, &id, rev).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("X-Revision", rev.to_string()))
        .body(text))
}

async fn diff(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = doc_id(&path)?;
    let _ = super::guard::authorize(&req, &state, &id, Permission::Read).await?;
    let q = query(&req)?;
    let json = match q.get("format").map(String::as_str) {
        Some("json") => true,
        Some("diff") => false,
        Some(_) => return Err(bad("format must be json or diff")),
        None => req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json")),
    };
    let store = state.registry.store();
    let current = current_rev(store, &id).await?;
    let (from, to) = range(&q, current)?;
    let old = text_at(store, &id, from).await?;
    let new = text_at(store, &id, to).await?;
    if json {
        let hunks = off_worker(move || Ok(history::line_diff(&old, &new, DIFF_CONTEXT))).await?;
        return Ok(HttpResponse::Ok().json(serde_json::json!({
            "from": from, "to": to, "hunks": hunks,
        })));
    }
    let (a, b) = (format!("{id}@{from}"), format!("{id}@{to}"));
    let body = off_worker(move || Ok(history::unified_diff(&old, &new, &a, &b))).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/x-diff; charset=utf-8")
        .body(body))
}

/// The next page of ops after `after` (below `current`); an empty page
/// means the log has a gap.
async fn next_page(
    store: &SharedStore,
    id: &DocId,
    after: u64,
    current: u64,
) -> Result<Vec<crate::store::OpRecord>, ApiError> {
    let page = store
        .ops(id, Revision(after), Revision(current), PAGE)
        .await?;
    if page.is_empty() {
        return Err(corrupt(format!(
            "ops missing after revision {after} of {id}"
        )));
    }
    Ok(page)
}

async fn revisions(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = doc_id(&path)?;
    let _ = super::guard::authorize(&req, &state, &id, Permission::Read).await?;
    let store = state.registry.store();
    let current = current_rev(store, &id).await?;
    let mut groups = Vec::new();
    let mut after = 0;
    while after < current {
        let page = next_page(store, &id, after, current).await?;
        after = page.last().map_or(current, |op| op.rev.0);
        history::group_ops(&mut groups, &page, GROUP_GAP_MS);
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "rev": current, "revisions": groups,
    })))
}

/// Blame built up page by page: the text, who inserted each character, and
/// the author of every revision (an index into `names`; 0 is nobody).
struct BlameWork {
    id: DocId,
    text: ropey::Rope,
    attribution: Blame,
    names: Vec<String>,
    index: HashMap<String, u32>,
    author_of: Vec<u32>,
}

impl BlameWork {
    fn take(&mut self, page: &[crate::store::OpRecord]) -> Result<(), ApiError> {
        for op in page {
            let id = &self.id;
            let broken = |e| corrupt(format!("op {} of {id} does not apply: {e}", op.rev));
            op.op.apply(&mut self.text, usize::MAX).map_err(broken)?;
            self.attribution.apply(&op.op, op.rev).map_err(broken)?;
            let n = match self.index.get(&op.author) {
                Some(&n) => n,
                None => {
                    let n = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
                    self.names.push(op.author.clone());
                    self.index.insert(op.author.clone(), n);
                    n
                }
            };
            self.author_of.push(n);
        }
        Ok(())
    }

    fn lines(&self) -> Vec<serde_json::Value> {
        let text = self.text.to_string();
        self.attribution
            .lines(&text)
            .into_iter()
            .enumerate()
            .map(|(i, rev)| {
                let author = self
                    .author_of
                    .get(rev as usize)
                    .filter(|&&n| n != 0)
                    .and_then(|&n| self.names.get(n as usize));
                serde_json::json!({ "line": i + 1, "rev": rev, "author": author })
            })
            .collect()
    }
}

/// Replaying a long history is seconds of CPU: it runs on the blocking
/// pool, a page at a time, never on a worker that serves sessions.
async fn off_worker<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("history work failed: {e}"),
        )
    })?
}

async fn blame(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = doc_id(&path)?;
    let _ = super::guard::authorize(&req, &state, &id, Permission::Read).await?;
    let store = state.registry.store();
    let current = current_rev(store, &id).await?;
    let first = store
        .snapshot_at_or_before(&id, Revision(0))
        .await?
        .ok_or_else(|| corrupt(format!("document {id} has no snapshot 0")))?;
    let text = ropey::Rope::from_str(&first.text);
    let mut work = BlameWork {
        id: id.clone(),
        attribution: Blame::new(text.len_chars(), first.rev),
        text,
        names: vec![String::new()],
        index: HashMap::new(),
        author_of: vec![0; (first.rev.0 + 1) as usize],
    };
    let mut after = first.rev.0;
    while after < current {
        let page = next_page(store, &id, after, current).await?;
        after = page.last().map_or(current, |op| op.rev.0);
        work = off_worker(move || work.take(&page).map(|()| work)).await?;
    }
    let lines = off_worker(move || Ok(work.lines())).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "rev": current, "lines": lines })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    rev: u64,
    author: Option<String>,
}

async fn restore(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = doc_id(&path)?;
    let (identity, _) = super::guard::authorize(&req, &state, &id, Permission::Write).await?;
    let raw = body.clone();
    let body: RestoreBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    let author = body.author.unwrap_or_else(|| RESTORE_AUTHOR.to_owned());
    if author.is_empty() || author.chars().count() > 64 || author.chars().any(char::is_control) {
        return Err(bad("author must be 1 to 64 printable characters"));
    }
    // With identities, the author is who restored, whatever the body says.
    let author = identity.subject.clone().unwrap_or(author);
    let store = state.registry.store();
    let current = current_rev(store, &id).await?;
    check_rev("rev", body.rev, current)?;
    let target = text_at(store, &id, body.rev).await?;
    let handle = match state.registry.get(&id) {
        Some(h) => h,
        None => match state.registry.open(&id).await {
            Ok(h) => h,
            // Another node owns the document: the restore runs there.
            Err(OpenError::Elsewhere(owner)) if owner.url.is_some() => {
                let via = state.registry.cluster().node().id.clone();
                return super::forward::to_owner(&req, raw, &owner, &via).await;
            }
            Err(e) => return Err(e.into()),
        },
    };
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "document closing; retry",
        )
    };
    let (tx, rx) = oneshot::channel();
    handle
        .send(Command::Restore {
            target,
            author,
            reply: tx,
        })
        .await
        .map_err(|_| unavailable())?;
    match rx.await.map_err(|_| unavailable())? {
        Ok(rev) => Ok(HttpResponse::Ok().json(serde_json::json!({ "rev": rev }))),
        Err(r) => {
            let (status, code) = match r.code {
                ErrorCode::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
                ErrorCode::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                _ => (StatusCode::CONFLICT, "conflict"),
            };
            Err(ApiError::new(status, code, r.message))
        }
    }
}

/// Replays the document from snapshot 0 and checks every stored snapshot;
/// when the document is open on this node (and `to` is not given), the
/// final text is also compared with its live text. Answers the report,
/// `200` whether or not it verified (see `ok`).
async fn admin_replay(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = doc_id(&path)?;
    let _ = super::guard::authorize(&req, &state, &id, Permission::Admin).await?;
    let q = query(&req)?;
    let store = state.registry.store();
    let current = current_rev(store, &id).await?;
    let to = number(&q, "to")?;
    if let Some(to) = to {
        check_rev("to", to, current)?;
    }
    // The live state, only when the document is open here already (this
    // endpoint never opens one).
    let live = match (to, state.registry.get(&id)) {
        (None, Some(handle)) => {
            let (tx, rx) = oneshot::channel();
            match handle.send(Command::Info { reply: tx }).await {
                Ok(()) => rx.await.ok(),
                Err(_) => None,
            }
        }
        _ => None,
    };
    let live_string = live.as_ref().map(|info| info.text.to_string());
    let (to, live_text) = match &live {
        Some(info) => (Some(info.rev), live_string.as_deref()),
        None => (to.map(Revision), None),
    };
    let report = crate::replay::replay(store.as_ref(), &id, to, live_text)
        .await
        .map_err(|e| match e {
            crate::replay::ReplayError::Store(e) => ApiError::from(e),
            e => bad(e.to_string()),
        })?;
    Ok(HttpResponse::Ok().json(report))
}
