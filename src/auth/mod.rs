//! Identity and rights: who a request is and what it may do to a document.
//!
//! - [`permission`]: the rights a user can hold on one document (`read`,
//!   `write`, `admin`, ordered) and their text form, shared by the store,
//!   the WebSocket session and the REST API.

pub mod permission;

pub use permission::Permission;
