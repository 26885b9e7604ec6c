//! The wire protocol (version 1): the messages of `shared/PROTOCOL.md`, their
//! error codes and close codes. Shared by the WebSocket session, which parses
//! client messages, and the document task, which builds server messages.
//!
//! ```text
//! client -> server   {"type":"op","rev":41,"seq":7,"op":[3,"x",5]}
//! server -> client   {"type":"ack","seq":7,"rev":42}
//! server -> others   {"type":"op","rev":42,"client":"9f2c…","op":[3,"x",5]}
//! ```

use bytestring::ByteString;
use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, Revision, Seq};
use crate::ot::{RawOp, Selection, TextOp};

/// Largest `rev` or `seq` accepted: 2^53 - 1, the largest integer every
/// JSON implementation (JavaScript's above all) reads exactly. Larger values
/// are refused as `bad_message` before they reach the document or the store.
pub const MAX_COUNTER: u64 = (1 << 53) - 1;

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// A user as a client describes itself in `join`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct UserIn {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// CSS hex colour, `#rgb` or `#rrggbb`.
    #[serde(default)]
    pub color: Option<String>,
}

/// A user as the server knows it, sent to peers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    /// Stable id: the authenticated subject, or the client id when anonymous.
    pub id: String,
    /// Display name.
    pub name: String,
    /// CSS hex colour.
    pub color: String,
}

/// A message from a client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientMsg {
    /// First message: start or resume a session.
    Join {
        /// The earlier client id when resuming; null for a fresh client.
        #[serde(default)]
        client: Option<String>,
        /// The last revision the client has applied, when resuming.
        #[serde(default)]
        rev: Option<u64>,
        /// Who the user is.
        #[serde(default)]
        user: Option<UserIn>,
        /// Extension: the client reads batched frames (a JSON array of
        /// messages in one frame), see `document::batch`.
        #[serde(default)]
        batch: bool,
    },
    /// An edit based on revision `rev`.
    Op {
        /// Base revision.
        rev: u64,
        /// The client's counter for this op.
        seq: u64,
        /// The op, not yet validated.
        op: RawOp,
        /// The sender's cursors after the op, if it sends them.
        #[serde(default)]
        selection: Option<Selection>,
    },
    /// Where the client's cursors are at revision `rev`.
    Presence {
        /// The revision the selection is valid at.
        rev: u64,
        /// The cursors, or null to clear them.
        selection: Option<Selection>,
    },
    /// Change the document's language.
    Language {
        /// A Monaco language id.
        language: String,
    },
}

/// Why a request was refused: stable strings clients act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not a message of the protocol, or a field out of bounds.
    BadMessage,
    /// The op does not apply at its base revision.
    BadOp,
    /// The revision is in the future or too old: reload.
    UnknownRev,
    /// Not allowed.
    Forbidden,
    /// No valid credentials.
    Unauthenticated,
    /// No such document.
    NotFound,
    /// The message or the resulting document is too large.
    TooLarge,
    /// Too many messages.
    RateLimited,
    /// The server cannot serve this now (store down, document full).
    Unavailable,
}

/// WebSocket close codes of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: the session was replaced by a newer one of the same client.
    Normal,
    /// 1001: the server is shutting down; reconnect.
    GoingAway,
    /// 1009: a message was over `limits.max_message_bytes` (the reason
    /// names the limit); the client must split its edit, never resend it.
    MessageTooBig,
    /// 1011: the server hit an internal error serving this document (its
    /// task failed); reconnect and resume, it reopens from the store.
    InternalError,
    /// 1013: the client could not keep up or the server is overloaded;
    /// reconnect and resume.
    TryAgainLater,
    /// 4400: protocol violation.
    ProtocolViolation,
    /// 4401: unauthenticated.
    Unauthenticated,
    /// 4403: forbidden.
    Forbidden,
    /// 4404: no such document.
    NotFound,
    /// 4408: idle too long.
    Idle,
    /// 4409: the document moved to another node; reconnect.
    Moved,
    /// 4429: rate limited.
    RateLimited,
}

impl CloseCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::MessageTooBig => 1009,
            Self::InternalError => 1011,
            Self::TryAgainLater => 1013,
            Self::ProtocolViolation => 4400,
            Self::Unauthenticated => 4401,
            Self::Forbidden => 4403,
            Self::NotFound => 4404,
            Self::Idle => 4408,
            Self::Moved => 4409,
            Self::RateLimited => 4429,
        }
    }
}

/// A peer in `joined.peers`.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo<'a> {
    /// Its client id.
    pub client: &'a ClientId,
    /// Who it is.
    pub user: &'a User,
    /// Its cursors at the `joined` revision, if known.
    pub selection: Option<&'a Selection>,
}

/// The limits a client must keep to, announced in `joined.limits` so that it
/// splits a big edit into ops that fit instead of resending into a refusal.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct WireLimits {
    /// Largest message, in UTF-8 bytes of its JSON; larger frames are
    /// closed with 1009.
    pub max_message_bytes: usize,
    /// Largest document, in characters; an op that would grow it past this
    /// is refused with `too_large`.
    pub max_document_chars: usize,
    /// Most characters one op may insert.
    pub max_insert_chars: usize,
    /// Most components in one op.
    pub max_op_components: usize,
}

impl From<&crate::config::Limits> for WireLimits {
    fn from(l: &crate::config::Limits) -> Self {
        Self {
            max_message_bytes: l.max_message_bytes,
            max_document_chars: l.max_document_chars,
            max_insert_chars: l.max_insert_chars,
            max_op_components: l.max_op_components,
        }
    }
}

/// One op of a catch-up in `joined.ops`.
#[derive(Debug, Clone, Serialize)]
pub struct CatchUpOp<'a> {
    /// The revision it produced.
    pub rev: Revision,
    /// Who sent it.
    pub client: &'a ClientId,
    /// The op.
    pub op: &'a TextOp,
}

/// A message to a client, borrowing what it sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMsg<'a> {
    /// Answer to `join`.
    Joined {
        /// The client's id (new or resumed).
        client: &'a ClientId,
        /// The revision the client is at after this message.
        rev: Revision,
        /// The document's language.
        language: &'a str,
        /// `read`, `write` or `admin`.
        permission: &'a str,
        /// Who else is here.
        peers: Vec<PeerInfo<'a>>,
        /// Full text (fresh join, or resume that cannot be served).
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// Catch-up ops (resume).
        #[serde(skip_serializing_if = "Option::is_none")]
        ops: Option<Vec<CatchUpOp<'a>>>,
        /// Protocol version.
        protocol: u32,
        /// What the client must keep to.
        limits: WireLimits,
    },
    /// The client's op `seq` is committed as `rev`.
    Ack {
        /// The client's seq.
        seq: Seq,
        /// The revision it became.
        rev: Revision,
    },
    /// Another client's op.
    Op {
        /// The revision it produced.
        rev: Revision,
        /// Who sent it.
        client: &'a ClientId,
        /// The op.
        op: &'a TextOp,
    },
    /// A peer's cursors.
    Presence {
        /// Whose.
        client: &'a ClientId,
        /// Who it is.
        user: &'a User,
        /// Cursors, or null when cleared.
        selection: Option<&'a Selection>,
    },
    /// A peer joined.
    Peer {
        /// Its client id.
        client: &'a ClientId,
        /// Who it is.
        user: &'a User,
    },
    /// A peer left.
    Leave {
        /// Its client id.
        client: &'a ClientId,
    },
    /// The language changed.
    Language {
        /// The new language.
        language: &'a str,
        /// Who changed it.
        client: &'a ClientId,
    },
    /// A refused request.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// Human-readable reason.
        message: &'a str,
        /// The seq of the refused op, when it answers an op.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<Seq>,
    },
}

impl ServerMsg<'_> {
    /// Serialises the message once, into a frame that can be shared by every
    /// recipient (cloning a `ByteString` only bumps a reference count).
    pub fn to_frame(&self) -> ByteString {
        // Our messages hold only strings, integers and plain structs.
        ByteString::from(serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"unavailable","message":"serialisation failed"}"#.to_owned()
        }))
    }
}

/// An error frame. One with a `seq` refuses that op, and is counted as such
/// (`tandem_ops_refused_total`).
pub fn error_frame(code: ErrorCode, message: &str, seq: Option<Seq>) -> ByteString {
    if seq.is_some() {
        crate::metrics::op_refused(code);
    }
    ServerMsg::Error { code, message, seq }.to_frame()
}
