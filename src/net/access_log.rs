//! The access log: one line per HTTP request and one per WebSocket session
//! when it ends, at `info` under the target `tandem::access` (silence them
//! with `TANDEM_LOG=info,tandem::access=warn`). With `--log-format json`
//! each is one JSON object whose `fields` hold:
//!
//! ```text
//! request:          method, path, status, duration_ms, bytes
//! session ended:    document, client, duration_ms, bytes_in, bytes_out, close_code
//! ```
//!
//! The path is logged without its query string: a share link's token or a
//! JWT may ride in `?token=`. `bytes` is the response body's size when it
//! is known before it is sent (absent for a stream); a session's bytes are
//! those of its text and binary messages, not of pings or close frames.

use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use crate::ids::{ClientId, DocId};

/// The `tracing` target of every access log line.
pub const TARGET: &str = "tandem::access";

/// Middleware: logs each request once its response is ready.
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let res = next.call(req).await;
    let (status, bytes) = match &res {
        Ok(res) => (
            res.status().as_u16(),
            match res.response().body().size() {
                BodySize::Sized(n) => Some(n),
                BodySize::None => Some(0),
                BodySize::Stream => None,
            },
        ),
        Err(e) => (e.as_response_error().status_code().as_u16(), None),
    };
    tracing::info!(
        target: TARGET,
        method = %method,
        path = %path,
        status,
        duration_ms = millis(started),
        bytes,
        "request"
    );
    res
}

/// Logs the end of a WebSocket session on `doc` (`client`: its id, once it
/// joined), with its bytes `(in, out)` and the close code it ended with
/// (none when the connection just went away).
pub fn session_ended(
    doc: &DocId,
    client: Option<&ClientId>,
    started: Instant,
    (bytes_in, bytes_out): (u64, u64),
    close_code: Option<u16>,
) {
    tracing::info!(
        target: TARGET,
        document = doc.as_str(),
        client = client.map(ClientId::as_str),
        duration_ms = millis(started),
        bytes_in,
        bytes_out,
        close_code,
        "session ended"
    );
}

/// Milliseconds since `started`, with microseconds.
fn millis(started: Instant) -> f64 {
    (started.elapsed().as_micros() as f64) / 1000.0
}
