//! Which web pages may talk to this server: the `Origin` allowlist
//! (`--allowed-origins`). A browser names the page's origin on every
//! WebSocket upgrade and cross-origin request, and a page from another site
//! would otherwise open a socket with the user's token or cookies: an
//! upgrade from an origin not on the list is refused with HTTP 403 before
//! it is upgraded, and REST follows the same list with CORS (preflights
//! answered, `Access-Control-Allow-Origin` for allowed origins only, other
//! origins refused 403). Requests without an `Origin` (other programs than
//! browsers, the tests) are not browsers' and are let through.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use super::http::{ApiError, AppState};

/// The list entry that stands for the server's own origin: an `Origin`
/// whose host and port are the request's `Host`.
pub const SELF: &str = "self";

/// Seconds a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE_SECS: u32 = 600;

/// The allowed origins.
#[derive(Debug, Clone)]
pub struct Origins {
    /// `*`: every origin.
    any: bool,
    /// `self`: the request's own host.
    same_host: bool,
    /// Exact origins, normalised (`scheme://host[:port]`, lower case,
    /// without the scheme's default port).
    listed: Vec<String>,
}

impl Default for Origins {
    /// The server's own origin only.
    fn default() -> Self {
        Self {
            any: false,
            same_host: true,
            listed: Vec::new(),
        }
    }
}

impl Origins {
    /// From the entries of `--allowed-origins`: `self`, `*`, or origins
    /// such as `https://editor.example.com` (`scheme://host[:port]`, no
    /// path).
    ///
    /// # Errors
    ///
    /// An entry that is none of these.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut origins = Self {
            any: false,
            same_host: false,
            listed: Vec::new(),
        };
        for entry in entries {
            let entry = entry.as_ref().trim();
            match entry {
                "" => {}
                "*" => origins.any = true,
                SELF => origins.same_host = true,
                other => {
                    let normal = normalise(other).ok_or_else(|| {
                        format!(
                            "{other:?} is not an origin: write scheme://host[:port] (no path), `self` or `*`"
                        )
                    })?;
                    origins.listed.push(normal);
                }
            }
        }
        Ok(origins)
    }

    /// Whether a request from `origin` to `host` (its `Host` header) is
    /// allowed.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        if self.any {
            return true;
        }
        let Some(origin) = normalise(origin) else {
            // `null` (a sandboxed page, a file) and garbage: never.
            return false;
        };
        if self.listed.contains(&origin) {
            return true;
        }
        self.same_host
            && host.is_some_and(|host| {
                let (scheme, _) = origin.split_once("://").unwrap_or_default();
                normalise(&format!("{scheme}://{host}")).as_deref() == Some(origin.as_str())
            })
    }

    /// The request's `Origin`, if it has one, and whether it is allowed.
    fn judge(&self, headers: &HeaderMap, host: Option<&str>) -> Option<(HeaderValue, bool)> {
        let origin = headers.get(header::ORIGIN)?;
        let allowed = origin.to_str().is_ok_and(|o| self.allows(o, host));
        Some((origin.clone(), allowed))
    }
}

/// `scheme://host[:port]` in lower case without the scheme's default
/// port, or `None` if `raw` is not an origin.
fn normalise(raw: &str) -> Option<String> {
    let lower = raw.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = lower.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        || authority.is_empty()
        || authority.contains(['/', '?', '#', '@', ' '])
    {
        return None;
    }
    let default_port = match scheme {
        "http" | "ws" => Some(":80"),
        "https" | "wss" => Some(":443"),
        _ => None,
    };
    let authority = match default_port {
        Some(port) => authority.strip_suffix(port).unwrap_or(authority),
        None => authority,
    };
    Some(format!("{scheme}://{authority}"))
}

fn host_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|h| h.to_str().ok())
}

fn refused(origin: &HeaderValue) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "pages from {} may not use this server (see --allowed-origins)",
            origin.to_str().unwrap_or("that origin")
        ),
    )
}

/// The WebSocket upgrade's check, before anything else is looked at.
///
/// # Errors
///
/// 403 `forbidden` for an `Origin` not on the list.
pub fn check_upgrade(origins: &Origins, headers: &HeaderMap) -> Result<(), ApiError> {
    match origins.judge(headers, host_of(headers)) {
        Some((origin, false)) => Err(refused(&origin)),
        _ => Ok(()),
    }
}

/// Middleware: CORS for every route but the WebSocket upgrade (which
/// checks for itself).
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let judged = match req.app_data::<web::Data<AppState>>() {
        Some(state) if !super::limits::is_upgrade_path(req.path()) => {
            state.origins.judge(req.headers(), host_of(req.headers()))
        }
        _ => None,
    };
    let Some((origin, allowed)) = judged else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    if !allowed {
        let refusal = refused(&origin);
        return Ok(req.error_response(refusal).map_into_right_body());
    }
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let response = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "GET, POST, PUT, DELETE",
            ))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Authorization, Content-Type",
            ))
            .insert_header((
                header::ACCESS_CONTROL_MAX_AGE,
                PREFLIGHT_MAX_AGE_SECS.to_string(),
            ))
            .insert_header((header::VARY, "Origin"))
            .finish();
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    // A page may read how long a 429 or 503 asks it to wait.
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Retry-After"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    Ok(response.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_host_listed_any_and_never_null() {
        let own = Origins::default();
        assert!(own.allows("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(own.allows("HTTPS://Editor.Example.com", Some("editor.example.com")));
        assert!(own.allows("https://editor.example.com", Some("editor.example.com:443")));
        assert!(own.allows("http://editor.example.com:80", Some("editor.example.com")));
        assert!(!own.allows("http://evil.example", Some("127.0.0.1:8080")));
        assert!(!own.allows("http://127.0.0.1:8081", Some("127.0.0.1:8080")));
        assert!(!own.allows("https://editor.example.com", Some("editor.example.com:80")));
        assert!(!own.allows("http://127.0.0.1:8080", None));
        assert!(!own.allows("null", Some("null")));

        let listed = Origins::parse(&["https://app.example/", " http://localhost:5173"]).unwrap();
        assert!(listed.allows("https://app.example", Some("api.example")));
        assert!(listed.allows("https://app.example:443", Some("api.example")));
        assert!(listed.allows("http://localhost:5173", None));
        assert!(
            !listed.allows("http://api.example", Some("api.example")),
            "no self"
        );
        let both = Origins::parse(&[SELF, "https://app.example"]).unwrap();
        assert!(both.allows("http://api.example", Some("api.example")));
        assert!(both.allows("https://app.example", Some("api.example")));
        let any = Origins::parse(&["*"]).unwrap();
        assert!(any.allows("null", None));

        assert!(Origins::parse(&["app.example"]).is_err());
        assert!(Origins::parse(&["https://app.example/path"]).is_err());
    }
}
