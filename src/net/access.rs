//! Who may read and write a document: its grants and its share links, for
//! the document's admins and server admins.
//!
//! ```text
//! GET    /api/documents/{id}/access               → {"grants":[{"user","permission"}]}
//! PUT    /api/documents/{id}/access/{user}        {"permission":"read"|"write"|"admin"}
//! DELETE /api/documents/{id}/access/{user}
//! POST   /api/documents/{id}/links                {"permission":"read"|"write","expires_in":s}
//!                                                 → {"id","token","url","permission","expires_at"}
//! GET    /api/documents/{id}/links                → {"links":[{"id","permission","expires_at","created_by"}]}
//! DELETE /api/documents/{id}/links/{link}
//! ```
//!
//! A change takes effect at once on the open document: a revoked grant or
//! link closes its sessions with 4403, a downgrade to `read` refuses their
//! next op.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::guard::authorize;
use super::http::{ApiError, AppState};
use crate::auth::Permission;
use crate::auth::policy::{hash_link_token, random_token};
use crate::cluster::{Change, RightsChange};
use crate::document::Command;
use crate::ids::DocId;
use crate::registry::Registry;
use crate::store::{ShareLink, now_ms};

/// Longest a share link may live: a year.
const MAX_LINK_SECS: u64 = 365 * 24 * 3_600;
/// Longest user id a grant may name (the token `sub` limit).
const MAX_USER_CHARS: usize = crate::auth::token::MAX_SUBJECT_CHARS;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/documents/{id}/access", web::get().to(list_grants))
        .route(
            "/api/documents/{id}/access/{user}",
            web::put().to(put_grant),
        )
        .route(
            "/api/documents/{id}/access/{user}",
            web::delete().to(delete_grant),
        )
        .route("/api/documents/{id}/links", web::post().to(create_link))
        .route("/api/documents/{id}/links", web::get().to(list_links))
        .route(
            "/api/documents/{id}/links/{link}",
            web::delete().to(delete_link),
        );
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_message", message)
}

fn doc_id(raw: &str) -> Result<DocId, ApiError> {
    DocId::parse(raw).map_err(|e| bad(e.to_string()))
}

fn user_id(raw: &str) -> Result<String, ApiError> {
    if raw.is_empty() || raw.chars().count() > MAX_USER_CHARS || raw.chars().any(char::is_control) {
        return Err(bad(format!(
            "a user id is 1-{MAX_USER_CHARS} characters without control characters"
        )));
    }
    Ok(raw.to_owned())
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

/// Tells the open document (if it is open here) what changed, and the
/// other nodes, whose sessions of the document are theirs to close.
async fn tell(state: &AppState, doc: &DocId, change: Change) {
    apply(&state.registry, doc, change.clone()).await;
    let cluster = state.registry.cluster();
    if !cluster.is_single() {
        let change = RightsChange {
            doc: doc.clone(),
            change,
        };
        cluster.publish(&change).await;
    }
}

/// Hands a change of rights to the document's task, if it is open here.
async fn apply(registry: &Registry, doc: &DocId, change: Change) {
    if let Some(handle) = registry.get(doc) {
        let cmd = match change {
            Change::Grant { user, permission } => Command::Permission { user, permission },
            Change::RevokeLink { link } => Command::RevokeLink { link },
        };
        let _ = handle.send(cmd).await;
    }
}

/// Applies the changes of rights the other nodes publish, until shutdown.
pub async fn relay_rights(
    registry: Arc<Registry>,
    mut changes: tokio::sync::broadcast::Receiver<RightsChange>,
) {
    loop {
        match changes.recv().await {
            Ok(RightsChange { doc, change }) => apply(&registry, &doc, change).await,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "missed changes of rights from other nodes");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn list_grants(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = doc_id(&path)?;
    authorize(&req, &state, &id, Permission::Admin).await?;
    let grants = state.registry.store().grants(&id).await?;
    let body: Vec<_> = grants
        .into_iter()
        .map(|(user, p)| serde_json::json!({"user": user, "permission": p}))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "grants": body })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    permission: String,
}

async fn put_grant(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (id, user) = path.into_inner();
    let id = doc_id(&id)?;
    let user = user_id(&user)?;
    authorize(&req, &state, &id, Permission::Admin).await?;
    let body: GrantBody = json_body(&body)?;
    let permission = Permission::parse(&body.permission).map_err(|e| bad(e.to_string()))?;
    state.registry.store().grant(&id, &user, permission).await?;
    tell(
        &state,
        &id,
        Change::Grant {
            user: user.clone(),
            permission: Some(permission),
        },
    )
    .await;
    Ok(HttpResponse::Ok().json(serde_json::json!({"user": user, "permission": permission})))
}

async fn delete_grant(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, user) = path.into_inner();
    let id = doc_id(&id)?;
    let user = user_id(&user)?;
    authorize(&req, &state, &id, Permission::Admin).await?;
    let removed = state.registry.store().revoke(&id, &user).await?;
    if !removed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "that user has no grant on this document",
        ));
    }
    // What they keep is the server's default, if any.
    let permission = state.auth.default_permission;
    tell(&state, &id, Change::Grant { user, permission }).await;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    permission: String,
    expires_in: u64,
}

fn link_json(link: &ShareLink) -> serde_json::Value {
    serde_json::json!({
        "id": link.id,
        "permission": link.permission,
        "expires_at": link.expires_ms / 1000,
        "created_by": link.created_by,
    })
}

async fn create_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = doc_id(&path)?;
    let (identity, _) = authorize(&req, &state, &id, Permission::Admin).await?;
    let body: LinkBody = json_body(&body)?;
    let permission = match Permission::parse(&body.permission) {
        Ok(p @ (Permission::Read | Permission::Write)) => p,
        _ => return Err(bad("a link gives read or write")),
    };
    if body.expires_in == 0 || body.expires_in > MAX_LINK_SECS {
        return Err(bad(format!(
            "expires_in must be 1 to {MAX_LINK_SECS} seconds"
        )));
    }
    let token = random_token(32);
    let now = now_ms();
    let link = ShareLink {
        id: random_token(8),
        document: id.clone(),
        token_hash: hash_link_token(&token),
        permission,
        expires_ms: now.saturating_add(body.expires_in as i64 * 1000),
        created_ms: now,
        created_by: identity.subject.unwrap_or_default(),
    };
    state.registry.store().create_link(&link).await?;
    let mut json = link_json(&link);
    json["token"] = token.clone().into();
    json["url"] = format!("/d/{id}?link={token}").into();
    Ok(HttpResponse::Created().json(json))
}

async fn list_links(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = doc_id(&path)?;
    authorize(&req, &state, &id, Permission::Admin).await?;
    let links = state.registry.store().links(&id).await?;
    let body: Vec<_> = links.iter().map(link_json).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "links": body })))
}

async fn delete_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, link) = path.into_inner();
    let id = doc_id(&id)?;
    authorize(&req, &state, &id, Permission::Admin).await?;
    if !state.registry.store().revoke_link(&id, &link).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such link on this document",
        ));
    }
    tell(&state, &id, Change::RevokeLink { link }).await;
    Ok(HttpResponse::NoContent().finish())
}
