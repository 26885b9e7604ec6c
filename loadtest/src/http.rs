//! A minimal HTTP/1.1 client over a raw tokio `TcpStream` (no client
//! crate): enough for `POST /api/documents` and `GET /api/documents/{id}`.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `http://HOST:PORT[/]` (or a bare `HOST:PORT`) → `HOST:PORT`.
pub fn addr_of(url: &str) -> String {
    let s = url
        .trim_start_matches("http://")
        .trim_start_matches("ws://");
    s.split('/').next().unwrap_or(s).to_owned()
}

/// Sends one request with `Connection: close`; returns status and body.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of HTTP headers")?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let raw_body = &buf[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    Ok((
        status,
        String::from_utf8(body).context("body is not UTF-8")?,
    ))
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..eol]);
        let n =
            usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + n).min(rest.len());
        out.extend_from_slice(&rest[start..end]);
        rest = rest.get(end + 2..).unwrap_or(&[]);
    }
    out
}

/// `POST /api/documents` with an id and text.
pub async fn create_document(addr: &str, id: &str, text: &str) -> Result<()> {
    let body = serde_json::json!({"id": id, "text": text}).to_string();
    let (status, resp) = request(addr, "POST", "/api/documents", Some(&body)).await?;
    if status != 201 && status != 200 {
        bail!("POST /api/documents {id}: HTTP {status}: {resp}");
    }
    Ok(())
}

/// `GET /api/documents/{id}` → (rev, text).
pub async fn fetch_document(addr: &str, id: &str) -> Result<(u64, String)> {
    let (status, body) = request(addr, "GET", &format!("/api/documents/{id}"), None).await?;
    if status != 200 {
        bail!("GET /api/documents/{id}: HTTP {status}: {body}");
    }
    let v: Value = serde_json::from_str(&body)?;
    Ok((
        v["rev"].as_u64().context("rev")?,
        v["text"].as_str().context("text")?.to_owned(),
    ))
}
