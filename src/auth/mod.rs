//! Identity and rights: who a request is and what it may do to a document.
//!
//! - [`permission`]: the rights a user can hold on one document (`read`,
//!   `write`, `admin`, ordered) and their text form, shared by the store,
//!   the WebSocket session and the REST API.
//! - [`token`]: JWTs: verifying them (HS256, RS256, ES256) and issuing
//!   HS256 ones for operators (`tandem token`).
//! - [`identity`]: who a request is, and how that was proven.
//! - [`policy`]: the one guard: what an identity may do to a document,
//!   from grants, share links, server admin and the defaults.

pub mod identity;
pub mod permission;
pub mod policy;
pub mod token;

pub use identity::{Identity, LinkGrant, Proof};
pub use permission::Permission;
pub use policy::{Access, Auth, AuthError, Mode};
