//! Tandem: a real-time collaborative code editor server.
//!
//! Each document has one authority, a task that orders every edit,
//! transforms concurrent edits against each other (Operational
//! Transformation, ot.js style), stores them, and only then acknowledges
//! them and passes them on.
//!
//! # Layout
//!
//! - [`ot`]: the operation type, parsed from untrusted JSON, applied to a
//!   rope, transformed; selections. Pure.
//! - [`document`]: one document's single-writer task and its pure state
//!   (the sequencer).
//! - [`registry`]: which documents are open on this node.
//! - [`cluster`]: which node owns which document: leases in Redis (or one
//!   node and no Redis), the node directory, fenced by the store's epoch.
//! - [`store`]: the `Store` trait and its backends (SQLite embedded).
//! - [`history`]: reading history: text at a revision, grouped revisions,
//!   blame, diffs, the op that restores an old text. Pure.
//! - [`replay`]: admin tools over a store: replay and verify a document's
//!   whole history, export it as JSON lines, import an export, fork.
//! - [`protocol`]: the wire messages, error codes and close codes.
//! - [`net`]: the WebSocket session, forwarding it to the owner, the REST
//!   API, graceful shutdown.
//! - [`auth`]: identity and rights: per-document read < write < admin.
//! - [`ids`], [`config`]: identifier newtypes; limits and timeouts.
//! - [`metrics`]: the Prometheus metrics, named in one place.
//! - [`settings_file`], [`settings_check`]: the TOML settings file under
//!   `serve`'s flags, and the check of every limit and timeout at start.
//!
//! Dependencies point one way: `net -> registry -> document -> ot`, and
//! `document`/`registry -> store` through the trait.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod cluster;
pub mod config;
pub mod document;
pub mod history;
pub mod ids;
pub mod metrics;
pub mod net;
pub mod ot;
pub mod protocol;
pub mod registry;
pub mod replay;
pub mod settings_check;
pub mod settings_file;
pub mod store;
