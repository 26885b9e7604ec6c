//! Passing a REST write to the node that owns its document.
//!
//! Writes that go through a document's task (a restore) must run on the
//! node that owns it; one that lands elsewhere is sent on, as it came (same
//! path, query, `Authorization` and body), and the owner's answer is
//! returned as it is. Node-to-node traffic is plain HTTP/1.1 on the nodes'
//! own network (`--advertise-url http://…`), one request per connection:
//! a restore is rare, so nothing is kept open for it.

use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpResponse, web};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http::ApiError;
use super::proxy::FORWARDED_HEADER;
use crate::cluster::NodeInfo;

/// How long the owner may take to answer a forwarded request.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer taken back from the owner.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

fn unreachable_owner(owner: &NodeInfo) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!(
            "node {} that serves this document did not answer; retry",
            owner.id
        ),
    )
}

/// Sends `req` (with `body`) to `owner` and answers with what it says.
///
/// # Errors
///
/// 503 `unavailable` when the owner cannot be reached or answers nothing
/// usable; 400 when this request itself came forwarded (never two hops).
pub async fn to_owner(
    req: &HttpRequest,
    body: web::Bytes,
    owner: &NodeInfo,
    via: &str,
) -> Result<HttpResponse, ApiError> {
    if req.headers().contains_key(FORWARDED_HEADER) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the document is changing nodes; retry",
        ));
    }
    let host = owner
        .url
        .as_deref()
        .and_then(|u| u.strip_prefix("http://"))
        .map(|h| h.trim_end_matches('/').to_owned())
        .ok_or_else(|| unreachable_owner(owner))?;
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut head = format!(
        "{} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{FORWARDED_HEADER}: {via}\r\n",
        req.method(),
        body.len()
    );
    if let Some(auth) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    let exchange = async {
        let mut conn = TcpStream::connect(&host).await?;
        conn.write_all(head.as_bytes()).await?;
        conn.write_all(&body).await?;
        let mut answer = Vec::new();
        (&mut conn)
            .take(MAX_ANSWER_BYTES as u64)
            .read_to_end(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(FORWARD_TIMEOUT, exchange)
        .await
        .map_err(|_| unreachable_owner(owner))?
        .map_err(|e| {
            tracing::warn!(node = %owner.id, error = %e, "forwarding a request failed");
            unreachable_owner(owner)
        })?;
    let (status, body) = parse_answer(&answer).ok_or_else(|| unreachable_owner(owner))?;
    Ok(HttpResponse::build(status)
        .content_type("application/json")
        .body(body))
}

/// The status and body of an HTTP/1.1 answer read to its end (sized or
/// chunked).
fn parse_answer(answer: &[u8]) -> Option<(StatusCode, Vec<u8>)> {
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..split]).ok()?;
    let body = &answer[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some((StatusCode::from_u16(status).ok()?, body))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_sized_and_chunked() {
        let sized = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{\"rev\":3}";
        assert_eq!(
            parse_answer(sized),
            Some((StatusCode::OK, b"{\"rev\":3}".to_vec()))
        );
        let chunked =
            b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(
            parse_answer(chunked),
            Some((StatusCode::CONFLICT, b"{\"a\":1}".to_vec()))
        );
        assert_eq!(parse_answer(b"garbage"), None);
    }
}
