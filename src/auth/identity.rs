//! Who a request is, decided once (at the WebSocket upgrade, or per REST
//! call) from its credentials, and handed to the session and the document.

use crate::auth::Permission;
use crate::ids::DocId;

/// How an identity was proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// `--auth open`: nobody is asked; every client is trusted.
    Open,
    /// A verified bearer token.
    Token,
    /// Only a share link (no account).
    Link,
}

/// A share link presented with the request: the right it gives on its one
/// document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkGrant {
    /// The link's id (revoking it closes the sessions that used it).
    pub id: String,
    /// The document it is for.
    pub document: DocId,
    /// `read` or `write`.
    pub permission: Permission,
}

/// Who a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id: a token's `sub`, `link:<id>` for someone holding only a
    /// link, `None` in open mode (no users).
    pub subject: Option<String>,
    /// Display name (a token's `name`, or generated for link guests).
    pub name: Option<String>,
    /// Server-wide admin (a token's `admin: true`).
    pub admin: bool,
    /// How it was proven.
    pub proof: Proof,
    /// A share link presented with it, if any.
    pub link: Option<LinkGrant>,
}

impl Identity {
    /// Everyone in open mode.
    pub fn open() -> Self {
        Self {
            subject: None,
            name: None,
            admin: false,
            proof: Proof::Open,
            link: None,
        }
    }

    /// The user id, for grants, op authors and client-id ownership.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// True for a signed-in user (a token), who may create documents.
    pub fn signed_in(&self) -> bool {
        self.proof == Proof::Token
    }
}
