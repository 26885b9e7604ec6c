//! Which node owns which document: leases, the node directory, and who to
//! forward to.
//!
//! Every open document is owned by one node at a time. The registry asks
//! [`Cluster::acquire`] before it opens a document: the answer is a
//! [`Lease`] (this node owns it now) or the [`NodeInfo`] of the owner (the
//! session forwards to it). The document task renews its lease beside its
//! other events and stops serving, closing its sessions with 4409, as soon
//! as it cannot be sure the lease is still its own; on a clean close it
//! releases it.
//!
//! A lease alone cannot stop a node that was paused past its lease from
//! writing when it wakes up, so ownership is also fenced in the store: the
//! task claims the document ([`Store::claim`](crate::store::Store::claim))
//! after taking the lease and writes with that epoch, which the store
//! refuses once a newer owner has claimed it.
//!
//! Two implementations: [`single::SingleNode`] (one node, no Redis: every
//! lease is granted and never expires) and [`redis::RedisCluster`].

pub mod redis;
pub mod single;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::time::Instant;

use crate::ids::DocId;

/// A node as other nodes see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// Its id (`--node-id`).
    pub id: String,
    /// How other nodes reach it (`--advertise-url`), e.g.
    /// `http://10.0.0.5:8080`; `None` when it is not in the directory (it
    /// stopped heartbeating: its leases are about to expire).
    pub url: Option<String>,
}

/// A node of the directory, for `GET /api/cluster`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Its id.
    pub id: String,
    /// Where other nodes reach it.
    pub url: String,
    /// Documents it has open (it holds their leases).
    pub documents: u64,
    /// When it started, Unix milliseconds.
    pub started_ms: i64,
    /// When it last announced itself, Unix milliseconds.
    pub seen_ms: i64,
}

/// A change of rights on a document, made through one node's REST API, that
/// every node applies to the sessions it serves (the owner of the document
/// has them): so a revoked user is closed at once wherever they are
/// connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RightsChange {
    /// The document.
    pub doc: DocId,
    /// What changed.
    pub change: Change,
}

/// What a [`RightsChange`] changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A user's right is now this (`None`: they have none).
    Grant {
        /// The user id.
        user: String,
        /// What they hold now, from grants and the default.
        permission: Option<crate::auth::Permission>,
    },
    /// A share link was revoked.
    RevokeLink {
        /// The link's id.
        link: String,
    },
}

/// What [`Cluster::acquire`] found.
#[derive(Debug)]
pub enum Acquired {
    /// This node owns the document now.
    Leased(Lease),
    /// Another node owns it.
    Elsewhere(NodeInfo),
}

/// This node's right to serve one document.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The document.
    pub doc: DocId,
    /// Proves the lease is this acquisition's (renewals and the release
    /// check it, so a node never extends or frees a lease another took).
    pub token: String,
    /// Until when this node may serve the document unless it renews the
    /// lease: the lease's expiry as counted from before the request that
    /// set it was sent, less a safety margin, so that this node stops before
    /// any other can take the document. `None`: never expires (one node).
    pub valid_until: Option<Instant>,
}

/// The coordinator could not be asked (Redis down or too slow).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the cluster coordinator is unavailable: {0}")]
pub struct ClusterError(pub String);

/// Leases and the node directory.
#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// This node.
    fn node(&self) -> &NodeInfo;

    /// True for [`single::SingleNode`]: no other node exists, so REST reads
    /// may open documents and nothing is ever forwarded.
    fn is_single(&self) -> bool;

    /// How long a lease lasts; renewals are due every third of it.
    fn lease_time(&self) -> Duration;

    /// Takes the document's lease, or says which node holds it.
    ///
    /// # Errors
    ///
    /// When the coordinator cannot be asked: no node opens a document it
    /// could not lease.
    async fn acquire(&self, doc: &DocId) -> Result<Acquired, ClusterError>;

    /// Extends `lease`. Returns its new `valid_until`, or `None` when the
    /// lease is not this node's any more (another node took it).
    ///
    /// # Errors
    ///
    /// When the coordinator cannot be asked: the lease stays valid until
    /// its `valid_until`, and the caller tries again.
    async fn renew(&self, lease: &Lease) -> Result<Option<Instant>, ClusterError>;

    /// Gives the lease up (if it is still this node's), so another node can
    /// take the document at once.
    async fn release(&self, lease: &Lease);

    /// Which node owns the document, if any does.
    ///
    /// # Errors
    ///
    /// When the coordinator cannot be asked.
    async fn owner(&self, doc: &DocId) -> Result<Option<NodeInfo>, ClusterError>;

    /// The live nodes.
    ///
    /// # Errors
    ///
    /// When the coordinator cannot be asked.
    async fn nodes(&self) -> Result<Vec<NodeStatus>, ClusterError>;

    /// Whether the coordinator answers (for readiness).
    ///
    /// # Errors
    ///
    /// When it does not.
    async fn ping(&self) -> Result<(), ClusterError>;

    /// Tells the directory how many documents this node has open.
    fn set_open_documents(&self, count: usize);

    /// Tells the other nodes about a change of rights (best effort: a node
    /// cut off from the coordinator misses it, and its sessions keep their
    /// right until they reconnect).
    async fn publish(&self, change: &RightsChange);

    /// The changes other nodes publish, from now on; `None` with one node.
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<RightsChange>>;
}

/// A shared cluster handle.
pub type SharedCluster = Arc<dyn Cluster>;

/// The part of a lease a node does not count on: it stops serving this long
/// before the lease could expire in the coordinator, for the time a renewal
/// spends in flight and for clocks that run at slightly different speeds.
pub fn safety_margin(lease_time: Duration) -> Duration {
    lease_time / 5
}
