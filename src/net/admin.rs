//! The admin API: who is connected to which open document, closing a
//! document, disconnecting a session, and deleting a document with
//! everything of it.
//!
//! ```text
//! GET    /api/admin/documents                        open documents and their sessions
//! POST   /api/admin/documents/{id}/close             every session gets 1001; the task flushes and stops
//! DELETE /api/admin/documents/{id}/sessions/{client} that session gets 1001
//! DELETE /api/documents/{id}                         sessions get 4404; ops, snapshots, grants, links deleted
//! ```
//!
//! Who may call them ([`require_admin`]): with `--auth jwt`, a server admin
//! (a token with `admin: true`); `DELETE /api/documents/{id}` also the
//! document's own admins. With `--auth open`, a request from loopback that
//! no proxy forwarded. In both modes, whoever presents `--admin-token` as
//! `Authorization: Bearer`.
//!
//! Everything goes through the document's task (the single writer), so a
//! close or delete is ordered with the edits: a delete waits for the
//! commits already under way, then the task deletes the document from the
//! store while it still holds the id, so no other task can load it
//! meanwhile.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::http::{ApiError, AppState};
use crate::auth::Permission;
use crate::document::{Command, DocumentHandle, SessionSummary};
use crate::ids::{ClientId, DocId};
use crate::protocol::CloseCode;
use crate::store::StoreError;

/// How long an admin call waits for a document task: to answer a listing,
/// or to flush and stop after a close. A task answers a listing as soon as
/// it reads its queue; a close waits for the commits under way, which the
/// store retries for up to `--store-retry-secs` (30 s by default) before
/// giving up, so this is a little longer than that default.
const TASK_WAIT: Duration = Duration::from_secs(35);

/// Times a delete goes back to the registry when the task it found stopped
/// before answering (it was closing for idleness, say): the next look
/// finds no task and deletes from the store directly.
const DELETE_ATTEMPTS: usize = 3;

/// The close code a closed document's and a disconnected session's clients
/// get: "going away, reconnect and resume". A client that reconnects finds
/// the document reopened from the store (or, while its task still
/// flushes, is refused `unavailable` and retries with backoff). Keeping
/// someone out is done with rights (a revoked grant or link closes 4403).
const ADMIN_CLOSE: CloseCode = CloseCode::GoingAway;

/// Registers the admin routes and `DELETE /api/documents/{id}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/admin/documents", web::get().to(list))
        .route("/api/admin/documents/{id}/close", web::post().to(close))
        .route(
            "/api/admin/documents/{id}/sessions/{client}",
            web::delete().to(disconnect),
        )
        .route("/api/documents/{id}", web::delete().to(delete));
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_message", message)
}

fn doc_id(raw: &str) -> Result<DocId, ApiError> {
    DocId::parse(raw).map_err(|e| bad(e.to_string()))
}

fn not_open() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "the document is not open on this server",
    )
}

fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the document did not answer in time; retry",
    )
    .retry_after(5)
}

/// True when `req` presents the configured admin token as its bearer
/// token. Compared as SHA-256 digests, byte by byte without stopping early,
/// so the time taken says nothing about how much of a guess was right.
fn has_admin_token(req: &HttpRequest, state: &AppState) -> bool {
    let Some(expected) = state.admin_token.as_deref() else {
        return false;
    };
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return false;
    };
    let (a, b) = (Sha256::digest(given.trim()), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// True for a request from this machine that no proxy forwarded: its TCP
/// peer is a loopback address and it carries none of the headers a reverse
/// proxy adds (a proxy on the same machine also connects from loopback, on
/// behalf of anyone).
fn local_unproxied(req: &HttpRequest) -> bool {
    let proxied = ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| req.headers().contains_key(*h));
    !proxied && req.peer_addr().is_some_and(|a| a.ip().is_loopback())
}

/// Lets a server admin through (see the module doc).
///
/// # Errors
///
/// 401 without valid credentials (a token in `--auth jwt`; the admin token
/// when one is set and the request is not local in `--auth open`), 403 for
/// anyone else.
pub async fn require_admin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    if has_admin_token(req, state) {
        return Ok(());
    }
    if state.auth.is_open() {
        if local_unproxied(req) {
            return Ok(());
        }
        return Err(if state.admin_token.is_some() {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the admin API needs the admin token (Authorization: Bearer)",
            )
        } else {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the admin API answers only requests from this machine unless --admin-token is set",
            )
        });
    }
    let identity = super::guard::identify(req, state).await?;
    if identity.admin {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only server admins may use the admin API",
        ))
    }
}

#[derive(Serialize)]
struct OpenDocument {
    id: DocId,
    sessions: Vec<SessionSummary>,
}

/// What `handle`'s task says about its sessions; `None` when it stopped
/// (or did not answer in time) meanwhile.
async fn sessions_of(handle: DocumentHandle) -> Option<OpenDocument> {
    let (reply, answer) = oneshot::channel();
    let asked = async {
        handle.send(Command::Sessions { reply }).await.ok()?;
        answer.await.ok()
    };
    let mut sessions = tokio::time::timeout(TASK_WAIT, asked).await.ok()??;
    sessions.sort_by(|a, b| {
        (a.connected_ms, a.client.as_str()).cmp(&(b.connected_ms, b.client.as_str()))
    });
    Some(OpenDocument {
        id: handle.id.clone(),
        sessions,
    })
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state).await?;
    let handles = state.registry.open_handles();
    let mut docs: Vec<OpenDocument> =
        futures_util::future::join_all(handles.into_iter().map(sessions_of))
            .await
            .into_iter()
            .flatten()
            .collect();
    docs.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let sessions: usize = docs.iter().map(|d| d.sessions.len()).sum();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "documents": docs,
        "open_documents": docs.len(),
        "sessions": sessions,
    })))
}

async fn close(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state).await?;
    let id = doc_id(&path)?;
    let handle = state.registry.get(&id).ok_or_else(not_open)?;
    let closed = async {
        // A task that stopped meanwhile is closed already.
        let _ = handle.send(Command::Close { code: ADMIN_CLOSE }).await;
        handle.closed().await;
    };
    tokio::time::timeout(TASK_WAIT, closed)
        .await
        .map_err(|_| busy())?;
    Ok(HttpResponse::NoContent().finish())
}

async fn disconnect(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state).await?;
    let (id, client) = path.into_inner();
    let id = doc_id(&id)?;
    let client = ClientId::parse(&client).map_err(|e| bad(e.to_string()))?;
    let handle = state.registry.get(&id).ok_or_else(not_open)?;
    let (reply, answer) = oneshot::channel();
    let asked = async {
        handle
            .send(Command::Disconnect {
                client,
                code: ADMIN_CLOSE,
                reply,
            })
            .await
            .ok()?;
        answer.await.ok()
    };
    match tokio::time::timeout(TASK_WAIT, asked).await {
        Ok(Some(true)) => Ok(HttpResponse::NoContent().finish()),
        // Stopped meanwhile: none of its sessions is connected any more.
        Ok(Some(false) | None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such session on this document",
        )),
        Err(_) => Err(busy()),
    }
}

/// Server admins (see [`require_admin`]) and, with `--auth jwt`, the
/// document's own admins.
async fn may_delete(req: &HttpRequest, state: &AppState, id: &DocId) -> Result<(), ApiError> {
    match require_admin(req, state).await {
        Ok(()) => Ok(()),
        Err(refused) if state.auth.is_open() => Err(refused),
        Err(_) => super::guard::authorize(req, state, id, Permission::Admin)
            .await
            .map(|_| ()),
    }
}

/// Asks `handle`'s task to delete its document. `None` when the task
/// stopped before answering.
async fn delete_through(handle: &DocumentHandle) -> Option<Result<bool, StoreError>> {
    let (reply, answer) = oneshot::channel();
    handle.send(Command::Delete { reply }).await.ok()?;
    answer.await.ok()
}

async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = doc_id(&path)?;
    may_delete(&req, &state, &id).await?;
    let mut existed = None;
    for _ in 0..DELETE_ATTEMPTS {
        if let Some(handle) = state.registry.get(&id) {
            if let Some(result) = delete_through(&handle).await {
                existed = Some(result?);
                break;
            }
            continue;
        }
        // With several nodes, the owner deletes it through its task.
        let cluster = state.registry.cluster();
        if !cluster.is_single() {
            let owner = cluster.owner(&id).await.map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                )
            })?;
            if let Some(owner) = owner.filter(|o| o.id != cluster.node().id) {
                let via = cluster.node().id.clone();
                return super::forward::to_owner(&req, web::Bytes::new(), &owner, &via).await;
            }
        }
        // Not open: straight from the store. A join that opened it
        // meanwhile has a task holding what it loaded (or a new empty
        // document it created): that one is deleted through its task.
        let gone = state.registry.store().delete_document(&id).await?;
        let reopened = match state.registry.get(&id) {
            Some(handle) => delete_through(&handle).await.transpose()?,
            None => None,
        };
        existed = Some(gone || reopened.unwrap_or(false));
        break;
    }
    match existed {
        Some(true) => {
            tracing::info!(document = %id, "document deleted");
            Ok(HttpResponse::NoContent().finish())
        }
        Some(false) => Err(StoreError::NotFound.into()),
        None => Err(busy()),
    }
}
