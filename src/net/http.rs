//! The HTTP side: the WebSocket upgrade, the REST API, health, and the web
//! app's static files. Errors become JSON `{"code","message"}` in one place,
//! [`ApiError`]'s `ResponseError` impl.

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use super::connections::Connections;
use crate::auth::{Auth, Permission};
use crate::document::{Command, DocumentInfo};
use crate::ids::DocId;
use crate::registry::{OpenError, Registry, TooManyDocuments};
use crate::store::StoreError;

/// Seconds a client refused because this node is at one of its caps
/// (connections, open documents) is told to wait (`Retry-After`): long
/// enough that a crowd of retries does not hammer a full node, short enough
/// that a place freed by a closing session or an idle document is taken up
/// soon.
const CAPACITY_RETRY_AFTER_SECS: u64 = 5;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// Open documents.
    pub registry: Arc<Registry>,
    /// Who may do what.
    pub auth: Arc<Auth>,
    /// WebSocket connections, against their cap.
    pub connections: Arc<Connections>,
    /// Turns true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// The folder of the built web app (`client-js/dist`); `None` for the
    /// one embedded in the binary, if any (see `webapp`).
    pub static_dir: Option<PathBuf>,
    /// Rates per user and per address, shared by every connection.
    pub limiters: Arc<super::limits::Limiters>,
    /// Which pages may open sockets and call the API.
    pub origins: Arc<super::origin::Origins>,
    /// The token that opens the admin API, if one is set (see `admin`).
    pub admin_token: Option<Arc<str>>,
    /// Extra conditions of `/readyz` (see `ready`).
    pub readiness: super::ready::ReadinessChecks,
}

/// An error answered as JSON.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for a `Retry-After` header, if any.
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with an HTTP status, a stable code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the client to retry after `secs` seconds.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 503 `unavailable` for a node at one of its caps, with `Retry-After`.
    fn at_capacity(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            .retry_after(CAPACITY_RETRY_AFTER_SECS)
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_message", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => {
                Self::new(StatusCode::NOT_FOUND, "not_found", "no such document")
            }
            StoreError::Conflict(ref m) => {
                tracing::debug!(error = %m, "store conflict");
                Self::new(StatusCode::CONFLICT, "conflict", e.public_message())
            }
            StoreError::Unavailable(ref m) => {
                tracing::warn!(error = %m, "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.public_message(),
                )
            }
            // Retrying will not mend either: a 500 and a line for the
            // operator, not a 503 that clients would retry forever.
            StoreError::Corrupt(ref m) | StoreError::Invalid(ref m) => {
                tracing::error!(error = %m, "store error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    e.public_message(),
                )
            }
        }
    }
}

impl From<TooManyDocuments> for ApiError {
    fn from(e: TooManyDocuments) -> Self {
        Self::at_capacity(e.to_string())
    }
}

impl From<OpenError> for ApiError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::TooMany(e) => e.into(),
            OpenError::Elsewhere(_) | OpenError::Cluster(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        response.json(ErrorBody {
            code: self.code,
            message: &self.message,
        })
    }
}

fn doc_id(raw: &str) -> Result<DocId, ApiError> {
    DocId::parse(raw).map_err(|e| ApiError::bad(e.to_string()))
}

/// Answers a query string or path that does not parse (`?limit=-1`, a
/// path segment that is not UTF-8) as every other refusal is, JSON
/// `bad_message`, instead of actix's plain-text default.
pub fn extractor_error(err: impl std::fmt::Display) -> actix_web::Error {
    ApiError::bad(format!("bad request: {err}")).into()
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health))
        .configure(super::ready::configure)
        .route("/api/documents", web::get().to(list_documents))
        .route("/api/documents", web::post().to(create_document))
        .route("/api/documents/{id}", web::get().to(get_document))
        .route("/api/documents/{id}/ws", web::get().to(websocket))
        .configure(super::history::configure)
        .configure(super::access::configure)
        .configure(super::cluster::configure)
        .configure(super::admin::configure)
        .configure(super::openapi::configure)
        .route("/", web::get().to(app_page))
        .route("/d/{id}", web::get().to(app_page))
        .route("/assets/{file:.*}", web::get().to(asset));
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    let (commits, ops) = state.registry.store().commit_stats();
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "open_documents": state.registry.open_count(),
        "connections": state.connections.count(),
        "limits": {
            "max_open_documents": state.registry.settings().limits.max_open_documents,
            "max_connections": state.connections.max(),
        },
        "store": { "commits": commits, "ops": ops },
    }))
}

#[derive(Serialize)]
struct DocumentBody {
    id: String,
    rev: u64,
    language: String,
    text: String,
}

async fn info(state: &AppState, id: &DocId) -> Result<DocumentInfo, ApiError> {
    let handle = match state.registry.get(id) {
        Some(h) => h,
        None => {
            // Never create a document by reading it.
            let Some(meta) = state.registry.store().document(id).await? else {
                return Err(StoreError::NotFound.into());
            };
            // With several nodes a read takes no lease: the store has every
            // acked op, whoever owns the document.
            if !state.registry.cluster().is_single() {
                let text = super::history::text_at(state.registry.store(), id, meta.rev.0).await?;
                return Ok(DocumentInfo {
                    rev: meta.rev,
                    language: meta.language,
                    text: ropey::Rope::from_str(&text),
                });
            }
            state.registry.open(id).await?
        }
    };
    let (tx, rx) = oneshot::channel();
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "document closing; retry",
        )
    };
    handle
        .send(Command::Info { reply: tx })
        .await
        .map_err(|_| unavailable())?;
    rx.await.map_err(|_| unavailable())
}

async fn get_document(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = doc_id(&path)?;
    super::guard::authorize(&req, &state, &id, Permission::Read).await?;
    let info = info(&state, &id).await?;
    Ok(HttpResponse::Ok().json(DocumentBody {
        id: id.to_string(),
        rev: info.rev.0,
        language: info.language,
        text: info.text.to_string(),
    }))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list_documents(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let identity = super::guard::identify(&req, &state).await?;
    let limit = query.limit.unwrap_or(100).min(1000);
    let store = state.registry.store();
    let docs = store.list_documents(limit).await?;
    // Only what this user may read: a list must not reveal the others.
    let mut readable = Vec::with_capacity(docs.len());
    for d in docs {
        // Open mode lets everyone read everything: no lookups per document.
        if state.auth.is_open() {
            readable.push(d);
            continue;
        }
        let access = state.auth.access(store.as_ref(), &identity, &d.id).await?;
        if access.exists && access.permission.is_some() {
            readable.push(d);
        }
    }
    let body: Vec<_> = readable
        .into_iter()
        .map(|d| {
            serde_json::json!({
                "id": d.id, "rev": d.rev, "language": d.language,
                "created_ms": d.created_ms, "updated_ms": d.updated_ms,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "documents": body })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    id: Option<String>,
    language: Option<String>,
    text: Option<String>,
}

async fn create_document(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let identity = super::guard::identify(&req, &state).await?;
    if !(state.auth.is_open() || identity.signed_in() && state.auth.allow_create) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this server does not let you create documents",
        ));
    }
    let body: CreateBody = if body.is_empty() {
        CreateBody {
            id: None,
            language: None,
            text: None,
        }
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?
    };
    let id = match body.id {
        Some(id) => doc_id(&id)?,
        None => doc_id(crate::ids::ClientId::random().as_str())?,
    };
    let language = body.language.unwrap_or_else(|| "plaintext".to_owned());
    if !super::session::valid_language(&language) {
        return Err(ApiError::bad(
            "language must be a short identifier such as typescript",
        ));
    }
    let text = body.text.unwrap_or_default();
    let limits = &state.registry.settings().limits;
    if text.chars().count() > limits.max_document_chars {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "text is longer than {} characters",
                limits.max_document_chars
            ),
        ));
    }
    let store = state.registry.store();
    // Whoever creates a document administers it.
    let meta = match identity.subject() {
        Some(sub) => store.create_document_as(&id, &language, &text, sub).await?,
        None => store.create_document(&id, &language, &text).await?,
    };
    Ok(HttpResponse::Created().json(DocumentBody {
        id: meta.id.to_string(),
        rev: meta.rev.0,
        language: meta.language,
        text,
    }))
}

async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, actix_web::Error> {
    let id = doc_id(&path)?;
    if *state.shutdown.borrow() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "shutting down",
        )
        .into());
    }
    // Another site's page must not get a socket with this user's
    // credentials: refused before anything else, and before the upgrade.
    super::origin::check_upgrade(&state.origins, req.headers())?;
    let ip = state.limiters.client_ip(req.headers(), req.peer_addr());
    state
        .limiters
        .connection_from(ip.as_ref())
        .map_err(ApiError::from)?;
    // Counted from before the upgrade to the end of the session, however
    // it ends: the guard goes with the session's task.
    let Some(guard) = state.connections.try_acquire() else {
        return Err(ApiError::at_capacity(format!(
            "too many connections to this server (the limit is {}); try again later",
            state.connections.max()
        ))
        .into());
    };
    // Who it is, before any document data: the session closes with 4401
    // when this failed (a browser cannot read an HTTP 401 on an upgrade).
    let (token, link) = super::guard::credentials(&req);
    let identity = state
        .auth
        .identify(
            state.registry.store().as_ref(),
            token.as_deref(),
            link.as_deref(),
        )
        .await;
    let user: Option<Arc<str>> = identity
        .as_ref()
        .ok()
        .and_then(|i| i.subject())
        .map(Arc::from);
    state
        .limiters
        .connection_of(user.as_ref())
        .map_err(ApiError::from)?;
    let (response, session, stream) = super::outgoing::handle(&req, body)?;
    let max = state.registry.settings().limits.max_message_bytes;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let session = super::session::run(
        Arc::clone(&state.registry),
        Arc::clone(&state.auth),
        identity,
        super::session::Caller {
            limiters: Arc::clone(&state.limiters),
            ip,
            addr: state.limiters.client_addr(req.headers(), req.peer_addr()),
            user,
            upstream: super::proxy::Upstream::from_request(
                req.uri().path_and_query().map_or("", |p| p.as_str()),
                req.headers(),
                state.limiters.client_addr(req.headers(), req.peer_addr()),
            ),
        },
        id,
        session,
        stream,
        state.shutdown.clone(),
    );
    // `map`, not an `async` block awaiting it: a block would hold the
    // session's future twice (captured, then pinned for the await), 3 KB
    // more per connection.
    actix_web::rt::spawn(futures_util::FutureExt::map(session, move |()| drop(guard)));
    Ok(response)
}

const NO_CLIENT: &str = "<!doctype html><meta charset=utf-8><title>Tandem</title>
<p>The Tandem server is running, but the web app is not built.
Run <code>npm ci &amp;&amp; npm run build</code> in <code>client-js/</code>,
or start the editor with <code>scripts/serve</code>.</p>";

async fn app_page(state: web::Data<AppState>) -> HttpResponse {
    let page = match &state.static_dir {
        Some(dir) => tokio::fs::read(dir.join("index.html"))
            .await
            .ok()
            .map(std::borrow::Cow::Owned),
        None => super::webapp::index_page(),
    };
    match page {
        Some(bytes) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(bytes),
        None => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(NO_CLIENT),
    }
}

async fn asset(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file");
    // Only plain relative paths inside the assets folder.
    let rel = path.into_inner();
    if rel
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == ".." || part.contains('\\'))
    {
        return Err(not_found());
    }
    let Some(dir) = state.static_dir.as_ref() else {
        return super::webapp::asset(&req, &rel, accepts_gzip(&req)).ok_or_else(not_found);
    };
    let path = dir.join("assets").join(&rel);
    // The build writes `NAME.gz` beside each large asset; send it to
    // browsers that take gzip (all do) instead of compressing per request.
    let gzipped = if accepts_gzip(&req) {
        actix_files::NamedFile::open_async(format!("{}.gz", path.display()))
            .await
            .ok()
    } else {
        None
    };
    let file = match gzipped {
        Some(gz) => {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            // Named for the .gz file, its disposition would say "attachment".
            gz.set_content_type(actix_files::file_extension_to_mime(ext))
                .set_content_encoding(header::ContentEncoding::Gzip)
                .disable_content_disposition()
        }
        None => actix_files::NamedFile::open_async(&path)
            .await
            .map_err(|_| not_found())?,
    };
    let mut response = file.into_response(&req);
    let headers = response.headers_mut();
    // Every asset name carries a content hash: a name never changes meaning.
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::VARY,
        header::HeaderValue::from_static("Accept-Encoding"),
    );
    Ok(response)
}

/// True when the request's `Accept-Encoding` prefers gzip to no encoding.
fn accepts_gzip(req: &HttpRequest) -> bool {
    use header::{AcceptEncoding, Encoding, Header};
    AcceptEncoding::parse(req)
        .ok()
        .and_then(|accept| accept.negotiate([Encoding::gzip(), Encoding::identity()].iter()))
        == Some(Encoding::gzip())
}
