//! Forwarding a WebSocket to the node that owns its document.
//!
//! A connection that lands on a node which does not own its document is
//! carried to the owner: this node opens a WebSocket to the owner's
//! `--advertise-url` with the same path, query and `Authorization` (so the
//! owner checks the same credentials and sees the same user), sends the
//! client's `join`, and from then on copies text frames both ways as they
//! come. The client sees exactly the owner's stream; the close the owner
//! sends is passed on with its code, so 4409, 1001 and the rest mean the
//! same through a proxy as directly. If the owner cannot be reached, or goes
//! away, the client is closed with 4409 and reconnects, which finds the
//! document wherever it is served by then.
//!
//! Each side keeps its own heartbeat: this node pings the client and closes
//! it when silent, and answers the owner's pings (the WebSocket library does).

use std::time::Duration;

use actix_web::http::header::{AUTHORIZATION, HeaderMap};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseReason};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::{Instant, interval, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::debug;

use super::outgoing::Outgoing;
use crate::cluster::NodeInfo;
use crate::config::Settings;
use crate::protocol::{CloseCode, ErrorCode, error_frame};

/// The header a node sets on a connection it forwards. A forwarded
/// connection is never forwarded again (two nodes that each think the other
/// owns a document, for the moment a lease changes hands, must not bounce a
/// connection between them).
pub const FORWARDED_HEADER: &str = "x-tandem-forwarded";

/// How long connecting to the owner may take before the client is told to
/// reconnect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the last frames of a closing connection may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the owner must see of the client's upgrade request.
#[derive(Debug, Clone, Default)]
pub struct Upstream {
    /// Path and query (`/api/documents/x/ws?token=…`).
    path_and_query: String,
    /// The `Authorization` header, if any.
    authorization: Option<String>,
    /// `X-Forwarded-For` to send: the client's chain plus its address.
    forwarded_for: Option<String>,
    /// The request itself came forwarded from another node.
    forwarded: bool,
    /// This node's id, sent with the forwarded connection.
    pub via: String,
}

impl Upstream {
    /// Takes what the owner needs from the client's upgrade request.
    /// `client` is the client's address as this node's limits see it (the
    /// last `X-Forwarded-For` entry behind a trusted proxy, else the peer):
    /// it goes last in the chain passed on, which is the entry the owner
    /// takes when it trusts the header too, so a forwarded client is still
    /// counted as itself and not as the proxy in front of the nodes.
    pub fn from_request(
        path_and_query: &str,
        headers: &HeaderMap,
        client: Option<std::net::IpAddr>,
    ) -> Self {
        let header = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let chain = header(actix_web::http::header::HeaderName::from_static(
            "x-forwarded-for",
        ));
        let forwarded_for = match (chain, client) {
            (Some(chain), Some(client)) => Some(format!("{chain}, {client}")),
            (None, Some(client)) => Some(client.to_string()),
            (chain, None) => chain,
        };
        Self {
            path_and_query: path_and_query.to_owned(),
            authorization: header(AUTHORIZATION),
            forwarded_for,
            forwarded: headers.contains_key(FORWARDED_HEADER),
            via: String::new(),
        }
    }

    /// True when the request came from another node.
    pub fn is_forwarded(&self) -> bool {
        self.forwarded
    }
}

/// The owner's WebSocket URL for the client's path: `http` becomes `ws`,
/// `https` becomes `wss`.
fn owner_url(base: &str, path_and_query: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{base}{path_and_query}")
}

/// Closes the client with `code` and `reason` (cut to what a close frame
/// holds).
async fn close_client(ws: Outgoing, code: u16, reason: &str) {
    let reason = CloseReason {
        code: actix_ws::CloseCode::from(code),
        description: Some(reason.chars().take(100).collect()),
    };
    let _ = timeout(CLOSE_TIMEOUT, ws.close(Some(reason))).await;
}

/// Carries the client's session (its `join` already read) to `owner` until
/// either side closes. `upstream.via` names this node to the owner.
pub async fn forward(
    owner: NodeInfo,
    join: String,
    upstream: Upstream,
    settings: &Settings,
    mut ws: Outgoing,
    mut stream: AggregatedMessageStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let moved = CloseCode::Moved.code();
    let Some(base) = owner.url.as_deref() else {
        return close_client(ws, moved, "the document's node is not reachable; reconnect").await;
    };
    let url = owner_url(base, &upstream.path_and_query);
    let mut request = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(node = %owner.id, error = %e, "bad advertise URL of a node");
            return close_client(
                ws,
                CloseCode::InternalError.code(),
                "cannot reach the document's node",
            )
            .await;
        }
    };
    let headers = request.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = value.parse() {
            headers.insert(name, v);
        }
    };
    set(FORWARDED_HEADER, &upstream.via);
    if let Some(auth) = &upstream.authorization {
        set("authorization", auth);
    }
    if let Some(chain) = &upstream.forwarded_for {
        set("x-forwarded-for", chain);
    }
    // The owner is one of ours: its frames are as big as the protocol
    // allows (a `joined` carries the whole text), and already bounded there.
    let config = WebSocketConfig {
        max_message_size: None,
        max_frame_size: None,
        ..WebSocketConfig::default()
    };
    let connected = timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(request, Some(config), true),
    )
    .await;
    let mut owner_ws = match connected {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(e)) => {
            debug!(node = %owner.id, error = %e, "cannot connect to the owner");
            return close_client(ws, moved, "the document's node is not reachable; reconnect")
                .await;
        }
        Err(_) => {
            return close_client(ws, moved, "the document's node did not answer; reconnect").await;
        }
    };
    if owner_ws.send(Message::Text(join)).await.is_err() {
        return close_client(ws, moved, "the document's node went away; reconnect").await;
    }
    let timing = &settings.timing;
    let max = settings.limits.max_message_bytes;
    let mut ticker = interval(timing.ping_interval);
    ticker.tick().await;
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            msg = stream.recv() => match msg {
                None => {
                    let _ = owner_ws.close(None).await;
                    return;
                }
                Some(Err(e)) => {
                    if super::session::is_too_big(&e) {
                        let reason = format!("message too big: the limit is {max} bytes");
                        let _ = ws.text(error_frame(ErrorCode::TooLarge, &reason, None)).await;
                        let _ = owner_ws.close(None).await;
                        return close_client(ws, CloseCode::MessageTooBig.code(), &reason).await;
                    }
                    let _ = owner_ws.close(None).await;
                    return;
                }
                Some(Ok(msg)) => {
                    last_heard = Instant::now();
                    let out = match msg {
                        AggregatedMessage::Text(text) => Message::Text(text.to_string()),
                        AggregatedMessage::Binary(bytes) => Message::Binary(bytes.to_vec()),
                        AggregatedMessage::Ping(bytes) => {
                            if ws.pong(&bytes).await.is_err() {
                                let _ = owner_ws.close(None).await;
                                return;
                            }
                            continue;
                        }
                        AggregatedMessage::Pong(_) => continue,
                        AggregatedMessage::Close(reason) => {
                            let frame = reason.as_ref().map(|r| CloseFrame {
                                code: u16::from(r.code).into(),
                                reason: r.description.clone().unwrap_or_default().into(),
                            });
                            let _ = timeout(CLOSE_TIMEOUT, owner_ws.close(frame)).await;
                            let echo = reason.map(|r| CloseReason { code: r.code, description: None });
                            let _ = timeout(CLOSE_TIMEOUT, ws.close(echo)).await;
                            return;
                        }
                    };
                    if owner_ws.send(out).await.is_err() {
                        return close_client(ws, moved, "the document's node went away; reconnect").await;
                    }
                }
            },
            msg = owner_ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let sent = timeout(timing.client_idle_timeout, ws.text(text)).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        let _ = owner_ws.close(None).await;
                        return;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame.map_or((1000, String::new()), |f| (u16::from(f.code), f.reason.into_owned()));
                    return close_client(ws, code, &reason).await;
                }
                Some(Ok(_)) => {}
                Some(Err(tungstenite::Error::ConnectionClosed)) | None | Some(Err(_)) => {
                    return close_client(ws, moved, "the document's node went away; reconnect").await;
                }
            },
            _ = ticker.tick() => {
                if last_heard.elapsed() > timing.client_idle_timeout {
                    let _ = owner_ws.close(None).await;
                    return close_client(ws, CloseCode::Idle.code(), "idle").await;
                }
                if ws.ping(b"").await.is_err() {
                    let _ = owner_ws.close(None).await;
                    return;
                }
            }
            _ = shutdown.changed() => {
                let _ = owner_ws.close(None).await;
                return close_client(ws, CloseCode::GoingAway.code(), "server shutting down").await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_urls() {
        assert_eq!(
            owner_url("http://10.0.0.5:8080/", "/api/documents/a/ws?token=t"),
            "ws://10.0.0.5:8080/api/documents/a/ws?token=t"
        );
        assert_eq!(
            owner_url("https://n1.example", "/api/documents/a/ws"),
            "wss://n1.example/api/documents/a/ws"
        );
    }
}
