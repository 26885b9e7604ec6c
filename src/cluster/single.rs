//! One node and no coordinator: every document is this node's, and its
//! lease never expires. The store's epoch still fences a second process on
//! the same database file.

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Acquired, Cluster, ClusterError, Lease, NodeInfo, NodeStatus, RightsChange};
use crate::ids::DocId;

/// The single-node [`Cluster`].
#[derive(Debug)]
pub struct SingleNode {
    node: NodeInfo,
}

impl SingleNode {
    /// This node, named `id`.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            node: NodeInfo {
                id: id.into(),
                url: None,
            },
        }
    }
}

impl Default for SingleNode {
    fn default() -> Self {
        Self::new("local")
    }
}

#[async_trait]
impl Cluster for SingleNode {
    fn node(&self) -> &NodeInfo {
        &self.node
    }

    fn is_single(&self) -> bool {
        true
    }

    fn lease_time(&self) -> Duration {
        Duration::MAX
    }

    async fn acquire(&self, doc: &DocId) -> Result<Acquired, ClusterError> {
        Ok(Acquired::Leased(Lease {
            doc: doc.clone(),
            token: String::new(),
            valid_until: None,
        }))
    }

    async fn renew(&self, _lease: &Lease) -> Result<Option<Instant>, ClusterError> {
        Ok(None)
    }

    async fn release(&self, _lease: &Lease) {}

    async fn owner(&self, _doc: &DocId) -> Result<Option<NodeInfo>, ClusterError> {
        Ok(Some(self.node.clone()))
    }

    async fn nodes(&self) -> Result<Vec<NodeStatus>, ClusterError> {
        Ok(Vec::new())
    }

    async fn ping(&self) -> Result<(), ClusterError> {
        Ok(())
    }

    fn set_open_documents(&self, _count: usize) {}

    async fn publish(&self, _change: &RightsChange) {}

    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<RightsChange>> {
        None
    }
}
