//! The one door every request goes through: its credentials (a bearer
//! token from `Authorization` or `?token=`, a share link from `?link=`)
//! become an [`Identity`], and [`authorize`] answers whether it holds the
//! right an endpoint needs on a document. REST handlers and the WebSocket
//! upgrade both call it, so an endpoint cannot forget the check.

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::http::header;

use super::http::{ApiError, AppState};
use crate::auth::{AuthError, Identity, Permission};
use crate::ids::DocId;

/// The token and the share link a request carries, if any.
pub fn credentials(req: &HttpRequest) -> (Option<String>, Option<String>) {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned());
    let query = web_query(req.query_string());
    let token = bearer.or_else(|| query_value(&query, "token"));
    let link = query_value(&query, "link");
    (token, link)
}

fn web_query(q: &str) -> Vec<(String, String)> {
    actix_web::web::Query::<Vec<(String, String)>>::from_query(q)
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

fn query_value(query: &[(String, String)], key: &str) -> Option<String> {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(m) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", m)
            }
            AuthError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            AuthError::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such document")
            }
            AuthError::Store(e) => e.into(),
        }
    }
}

/// Who sent `req`.
///
/// # Errors
///
/// 401 when credentials are needed and missing or bad.
pub async fn identify(req: &HttpRequest, state: &AppState) -> Result<Identity, ApiError> {
    let (token, link) = credentials(req);
    Ok(state
        .auth
        .identify(
            state.registry.store().as_ref(),
            token.as_deref(),
            link.as_deref(),
        )
        .await?)
}

/// Who sent `req`, if they hold `needed` on `doc` (which must exist).
///
/// # Errors
///
/// 401 without valid credentials, 403 without the right, 404 when the
/// document does not exist (to someone who could create it; to anyone
/// else, 403, so that ids cannot be probed).
pub async fn authorize(
    req: &HttpRequest,
    state: &AppState,
    doc: &DocId,
    needed: Permission,
) -> Result<(Identity, Permission), ApiError> {
    let identity = identify(req, state).await?;
    let held = state
        .auth
        .require(state.registry.store().as_ref(), &identity, doc, needed)
        .await?;
    Ok((identity, held))
}
