//! The one answer to "may this identity do this to this document", shared
//! by the WebSocket session and every REST endpoint, and the reading of
//! credentials from a request.

use sha2::{Digest, Sha256};

use crate::auth::Permission;
use crate::auth::identity::{Identity, LinkGrant, Proof};
use crate::auth::token::{TokenError, TokenVerifier};
use crate::ids::DocId;
use crate::store::{Store, StoreError, now_ms};

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Nobody is asked; everyone may do everything (a local run).
    Open,
    /// Bearer tokens, checked by this verifier.
    Jwt(Box<TokenVerifier>),
}

/// Authentication and the rules for rights.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Open or JWT.
    pub mode: Mode,
    /// What a signed-in user without a grant gets on an existing document.
    pub default_permission: Option<Permission>,
    /// Whether a signed-in user's first join (or POST) creates a document,
    /// making them its admin.
    pub allow_create: bool,
}

impl Default for Auth {
    fn default() -> Self {
        Self::open()
    }
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or bad or expired ones: 401 / close 4401.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known, but without the right: 403 / close 4403.
    #[error("{0}")]
    Forbidden(String),
    /// No such document, and not allowed to create it: 404.
    #[error("no such document")]
    NotFound,
    /// The store could not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an identity may do to one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Its right, if any.
    pub permission: Option<Permission>,
    /// Whether the document exists.
    pub exists: bool,
    /// The document does not exist and the identity may create it (then
    /// `permission` is `Admin`: a creator administers what it made).
    pub create: bool,
}

/// The stored form of a link token: its SHA-256, hex. A leaked database
/// gives no usable links.
pub fn hash_link_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random token (link tokens, link ids): `bytes` random bytes, hex.
pub fn random_token(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

impl Auth {
    /// Open mode: everyone may do everything.
    pub fn open() -> Self {
        Self {
            mode: Mode::Open,
            default_permission: None,
            allow_create: true,
        }
    }

    /// True in open mode.
    pub fn is_open(&self) -> bool {
        matches!(self.mode, Mode::Open)
    }

    /// Who presents these credentials: `token` (from `Authorization:
    /// Bearer` or `?token=`) and `link` (from `?link=`).
    ///
    /// # Errors
    ///
    /// [`AuthError::Unauthenticated`] in JWT mode for no credentials, a bad
    /// or expired token, or an unknown, revoked or expired link.
    pub async fn identify(
        &self,
        store: &dyn Store,
        token: Option<&str>,
        link: Option<&str>,
    ) -> Result<Identity, AuthError> {
        let verifier = match &self.mode {
            Mode::Open => return Ok(Identity::open()),
            Mode::Jwt(v) => v,
        };
        let link = match link.filter(|l| !l.is_empty()) {
            Some(token) => Some(self.link(store, token).await),
            None => None,
        };
        let token = token.filter(|t| !t.is_empty());
        let link = match (link, token) {
            (Some(Ok(grant)), _) => Some(grant),
            // A signed-in user with a stale link is still themselves.
            (Some(Err(_)), Some(_)) | (None, _) => None,
            (Some(Err(e)), None) => return Err(e),
        };
        match token {
            Some(token) => {
                let claims = verifier.verify(token).map_err(|e| match e {
                    TokenError::Expired => AuthError::Unauthenticated(e.to_string()),
                    TokenError::Invalid(_) => AuthError::Unauthenticated(e.to_string()),
                })?;
                Ok(Identity {
                    subject: Some(claims.sub),
                    name: claims.name,
                    admin: claims.admin,
                    proof: Proof::Token,
                    link,
                })
            }
            None => match link {
                Some(grant) => Ok(Identity {
                    subject: Some(format!("link:{}", grant.id)),
                    name: Some(format!("Guest {}", &random_token(2))),
                    admin: false,
                    proof: Proof::Link,
                    link: Some(grant),
                }),
                None => Err(AuthError::Unauthenticated(
                    "sign in: send a token (Authorization: Bearer, or ?token=) or a share link"
                        .into(),
                )),
            },
        }
    }

    async fn link(&self, store: &dyn Store, token: &str) -> Result<LinkGrant, AuthError> {
        let refused = || {
            AuthError::Unauthenticated("the share link is not valid (revoked or expired)".into())
        };
        if token.len() > 256 {
            return Err(refused());
        }
        let link = store
            .link_by_token_hash(&hash_link_token(token))
            .await?
            .ok_or_else(refused)?;
        if link.expires_ms <= now_ms() {
            return Err(refused());
        }
        Ok(LinkGrant {
            id: link.id,
            document: link.document,
            permission: link.permission,
        })
    }

    /// What `identity` may do to `doc`: its grant, a link for `doc`, server
    /// admin, or the default; for a document that does not exist, admin if
    /// it may create it.
    ///
    /// # Errors
    ///
    /// [`AuthError::Store`] when the store cannot answer.
    pub async fn access(
        &self,
        store: &dyn Store,
        identity: &Identity,
        doc: &DocId,
    ) -> Result<Access, AuthError> {
        let exists = store.document(doc).await?.is_some();
        if self.is_open() {
            return Ok(Access {
                permission: Some(Permission::Admin),
                exists,
                create: !exists,
            });
        }
        if !exists {
            let create = identity.signed_in() && self.allow_create;
            return Ok(Access {
                permission: create.then_some(Permission::Admin),
                exists,
                create,
            });
        }
        if identity.admin {
            return Ok(Access {
                permission: Some(Permission::Admin),
                exists,
                create: false,
            });
        }
        let mut best = None;
        if let Some(sub) = identity.subject()
            && identity.signed_in()
        {
            best = store.permission(doc, sub).await?;
            if best.is_none() {
                best = self.default_permission;
            }
        }
        if let Some(link) = identity.link.as_ref().filter(|l| &l.document == doc) {
            best = best.max(Some(link.permission));
        }
        Ok(Access {
            permission: best,
            exists,
            create: false,
        })
    }

    /// Checks that `identity` holds `needed` on `doc`, which must exist.
    ///
    /// # Errors
    ///
    /// `NotFound` when the document does not exist (to anyone who may not
    /// tell, the same as a document they cannot see: `Forbidden`),
    /// `Forbidden` when the right is missing.
    pub async fn require(
        &self,
        store: &dyn Store,
        identity: &Identity,
        doc: &DocId,
        needed: Permission,
    ) -> Result<Permission, AuthError> {
        let access = self.access(store, identity, doc).await?;
        match access.permission {
            _ if !access.exists && access.create => Err(AuthError::NotFound),
            Some(p) if access.exists && p.allows(needed) => Ok(p),
            _ => Err(AuthError::Forbidden(format!(
                "{} access to this document is needed",
                needed.as_str()
            ))),
        }
    }
}
