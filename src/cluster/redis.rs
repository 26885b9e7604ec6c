//! Leases and the node directory in Redis.
//!
//! ```text
//! {prefix}lease:{doc}  "{node} {token}", PX lease time   who owns the document
//! {prefix}node:{node}  {"id","url","documents",...}, PX   a live node (heartbeat)
//! {prefix}nodes        set of node ids                   to list the nodes
//! {prefix}rights       pub/sub channel                   changes of rights
//! ```
//!
//! A lease is taken with `SET NX PX`, renewed and released by scripts that
//! first check the value is still this acquisition's. If Redis loses a lease
//! (it restarted without persistence), the owner's next renewal takes it
//! back when nobody else did meanwhile; if somebody did, the store's epoch
//! refuses the old owner's writes. Every call has a deadline: a Redis that
//! hangs is a Redis that is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use super::{
    Acquired, Cluster, ClusterError, Lease, NodeInfo, NodeStatus, RightsChange, safety_margin,
};
use crate::ids::DocId;
use crate::store::now_ms;

/// How often a node announces itself in the directory.
/// Changes of rights waiting for this node's sessions; a node that falls
/// this far behind misses the oldest (they are re-checked on reconnect).
const RIGHTS_BACKLOG: usize = 1_024;
/// How long the subscriber waits before reconnecting to a Redis that went.
const RESUBSCRIBE: Duration = Duration::from_millis(500);
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a node's entry outlives its last heartbeat: three missed beats.
const NODE_TTL: Duration = Duration::from_secs(3);
/// The longest one Redis call may take before it counts as failed. Short
/// against the lease, so a hung Redis leaves time to retry a renewal.
const CALL_TIMEOUT: Duration = Duration::from_millis(1_000);

const RENEW: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Takes over a lease left by an earlier run of this same node id (killed
/// before it could release it), which no live process can be renewing.
const TAKE_OWN: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0";

/// How to reach Redis and who this node is.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Prefix of every key (several clusters can share one Redis).
    pub prefix: String,
    /// This node's id.
    pub node_id: String,
    /// How other nodes reach this one.
    pub advertise_url: String,
    /// How long a lease lasts.
    pub lease_time: Duration,
}

#[derive(Serialize, Deserialize)]
struct NodeEntry {
    id: String,
    url: String,
    documents: u64,
    started_ms: i64,
    seen_ms: i64,
}

/// The Redis [`Cluster`].
pub struct RedisCluster {
    config: RedisConfig,
    node: NodeInfo,
    client: redis::Client,
    /// Made on first use and kept (it reconnects by itself): a node starts
    /// and serves nothing while Redis is down, and picks it up when it
    /// comes back without a restart.
    conn: Mutex<Option<ConnectionManager>>,
    started_ms: i64,
    open_documents: AtomicUsize,
    /// Changes of rights received on the channel, for the registry.
    rights: tokio::sync::broadcast::Sender<RightsChange>,
}

/// A change of rights on the channel, with the node that made it (which
/// applied it already).
#[derive(Serialize, Deserialize)]
struct Published {
    from: String,
    #[serde(flatten)]
    change: RightsChange,
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCluster")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> ClusterError {
    ClusterError(e.to_string())
}

impl RedisCluster {
    /// Connects lazily to `config.url` and starts announcing this node
    /// until `shutdown` turns true (then its directory entry is removed).
    ///
    /// # Errors
    ///
    /// When the URL does not parse (a down Redis is not an error here).
    pub fn start(
        config: RedisConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, ClusterError> {
        let client = redis::Client::open(config.url.as_str()).map_err(unavailable)?;
        let cluster = Arc::new(Self {
            node: NodeInfo {
                id: config.node_id.clone(),
                url: Some(config.advertise_url.clone()),
            },
            config,
            client,
            conn: Mutex::new(None),
            started_ms: now_ms(),
            open_documents: AtomicUsize::new(0),
            rights: tokio::sync::broadcast::channel(RIGHTS_BACKLOG).0,
        });
        tokio::spawn(heartbeat(Arc::clone(&cluster), shutdown.clone()));
        tokio::spawn(listen_for_rights(Arc::clone(&cluster), shutdown));
        Ok(cluster)
    }

    fn key(&self, what: &str, name: &str) -> String {
        format!("{}{what}:{name}", self.config.prefix)
    }

    fn lease_key(&self, doc: &DocId) -> String {
        self.key("lease", doc.as_str())
    }

    fn lease_value(&self, token: &str) -> String {
        format!("{} {token}", self.config.node_id)
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.config.lease_time.as_millis()).unwrap_or(u64::MAX)
    }

    /// How long a lease taken or renewed by a request sent at `sent` may
    /// be counted on.
    fn valid_from(&self, sent: Instant) -> Instant {
        sent + self.config.lease_time - safety_margin(self.config.lease_time)
    }

    async fn conn(&self) -> Result<ConnectionManager, ClusterError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT));
        let made = tokio::time::timeout(
            CALL_TIMEOUT,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| ClusterError("connecting to Redis timed out".into()))?
        .map_err(unavailable)?;
        *slot = Some(made.clone());
        Ok(made)
    }

    /// Runs one call with the deadline every Redis call has.
    async fn call<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, ClusterError> {
        let mut conn = self.conn().await?;
        tokio::time::timeout(CALL_TIMEOUT, cmd.query_async::<T>(&mut conn))
            .await
            .map_err(|_| ClusterError("Redis did not answer in time".into()))?
            .map_err(unavailable)
    }

    async fn script(&self, script: &str, key: &str, args: &[&str]) -> Result<i64, ClusterError> {
        let mut conn = self.conn().await?;
        let script = redis::Script::new(script);
        let mut invocation = script.key(key);
        for a in args {
            invocation.arg(*a);
        }
        tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async::<i64>(&mut conn))
            .await
            .map_err(|_| ClusterError("Redis did not answer in time".into()))?
            .map_err(unavailable)
    }

    async fn node_info(&self, id: &str) -> Result<NodeInfo, ClusterError> {
        let entry: Option<String> = self
            .call(redis::cmd("GET").arg(self.key("node", id)))
            .await?;
        let url = entry
            .and_then(|e| serde_json::from_str::<NodeEntry>(&e).ok())
            .map(|e| e.url);
        Ok(NodeInfo {
            id: id.to_owned(),
            url,
        })
    }

    async fn announce(&self) -> Result<(), ClusterError> {
        let entry = NodeEntry {
            id: self.config.node_id.clone(),
            url: self.config.advertise_url.clone(),
            documents: self.open_documents.load(Ordering::Relaxed) as u64,
            started_ms: self.started_ms,
            seen_ms: now_ms(),
        };
        let json = serde_json::to_string(&entry).map_err(unavailable)?;
        let ttl = u64::try_from(NODE_TTL.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.key("node", &self.config.node_id))
            .arg(json)
            .arg("PX")
            .arg(ttl)
            .ignore()
            .cmd("SADD")
            .arg(format!("{}nodes", self.config.prefix))
            .arg(&self.config.node_id)
            .ignore();
        let mut conn = self.conn().await?;
        tokio::time::timeout(CALL_TIMEOUT, pipe.query_async::<()>(&mut conn))
            .await
            .map_err(|_| ClusterError("Redis did not answer in time".into()))?
            .map_err(unavailable)
    }

    async fn withdraw(&self) -> Result<(), ClusterError> {
        self.call::<()>(redis::cmd("DEL").arg(self.key("node", &self.config.node_id)))
            .await?;
        self.call::<()>(
            redis::cmd("SREM")
                .arg(format!("{}nodes", self.config.prefix))
                .arg(&self.config.node_id),
        )
        .await
    }
}

/// Announces the node every [`HEARTBEAT`] until shutdown, then withdraws it.
async fn heartbeat(cluster: Arc<RedisCluster>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(HEARTBEAT);
    let mut down = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                match cluster.announce().await {
                    Ok(()) if down => {
                        down = false;
                        tracing::info!("Redis is reachable again");
                    }
                    Ok(()) => {}
                    Err(e) if !down => {
                        down = true;
                        tracing::warn!(error = %e, "cannot announce this node in Redis");
                    }
                    Err(_) => {}
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    if let Err(e) = cluster.withdraw().await {
        tracing::warn!(error = %e, "could not remove this node from the directory");
    }
}

/// Receives the rights changes other nodes publish, reconnecting when
/// Redis goes away, until shutdown.
async fn listen_for_rights(cluster: Arc<RedisCluster>, mut shutdown: watch::Receiver<bool>) {
    let channel = format!("{}rights", cluster.config.prefix);
    loop {
        let subscribed = async {
            let mut pubsub = cluster.client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            r = tokio::time::timeout(CALL_TIMEOUT, subscribed) => r.ok().and_then(Result::ok),
            _ = shutdown.changed() => return,
        };
        if let Some(mut pubsub) = pubsub {
            let mut messages = pubsub.on_message();
            loop {
                let msg = tokio::select! {
                    m = futures_util::StreamExt::next(&mut messages) => m,
                    _ = shutdown.changed() => return,
                };
                let Some(msg) = msg else { break };
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                match serde_json::from_str::<Published>(&payload) {
                    Ok(p) if p.from != cluster.config.node_id => {
                        let _ = cluster.rights.send(p.change);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "unreadable rights change on Redis"),
                }
            }
        }
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(RESUBSCRIBE) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[async_trait]
impl Cluster for RedisCluster {
    fn node(&self) -> &NodeInfo {
        &self.node
    }

    fn is_single(&self) -> bool {
        false
    }

    fn lease_time(&self) -> Duration {
        self.config.lease_time
    }

    async fn acquire(&self, doc: &DocId) -> Result<Acquired, ClusterError> {
        let key = self.lease_key(doc);
        let token = format!("{:032x}", rand::random::<u128>());
        let value = self.lease_value(&token);
        let ms = self.lease_ms();
        // Twice at most: a lease that expires between our SET and GET is
        // simply tried again.
        for _ in 0..2 {
            let sent = Instant::now();
            let set: Option<String> = self
                .call(
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(&value)
                        .arg("NX")
                        .arg("PX")
                        .arg(ms),
                )
                .await?;
            let mine = set.is_some()
                || self
                    .script(
                        TAKE_OWN,
                        &key,
                        &[
                            &format!("{} ", self.config.node_id),
                            &value,
                            &ms.to_string(),
                        ],
                    )
                    .await?
                    == 1;
            if mine {
                return Ok(Acquired::Leased(Lease {
                    doc: doc.clone(),
                    token,
                    valid_until: Some(self.valid_from(sent)),
                }));
            }
            let holder: Option<String> = self.call(redis::cmd("GET").arg(&key)).await?;
            if let Some(holder) = holder {
                let node = holder.split(' ').next().unwrap_or_default();
                return Ok(Acquired::Elsewhere(self.node_info(node).await?));
            }
        }
        Err(ClusterError(format!(
            "the lease of {doc} changes hands too fast; retry"
        )))
    }

    async fn renew(&self, lease: &Lease) -> Result<Option<Instant>, ClusterError> {
        let sent = Instant::now();
        let kept = self
            .script(
                RENEW,
                &self.lease_key(&lease.doc),
                &[
                    &self.lease_value(&lease.token),
                    &self.lease_ms().to_string(),
                ],
            )
            .await?;
        if kept == 2 {
            tracing::info!(document = %lease.doc, "Redis had lost this node's lease; taken back");
        }
        Ok((kept != 0).then(|| self.valid_from(sent)))
    }

    async fn release(&self, lease: &Lease) {
        let released = self
            .script(
                RELEASE,
                &self.lease_key(&lease.doc),
                &[&self.lease_value(&lease.token)],
            )
            .await;
        if let Err(e) = released {
            tracing::warn!(document = %lease.doc, error = %e, "could not release the lease; it will expire");
        }
    }

    async fn owner(&self, doc: &DocId) -> Result<Option<NodeInfo>, ClusterError> {
        let holder: Option<String> = self
            .call(redis::cmd("GET").arg(self.lease_key(doc)))
            .await?;
        match holder {
            None => Ok(None),
            Some(h) => {
                let node = h.split(' ').next().unwrap_or_default().to_owned();
                Ok(Some(self.node_info(&node).await?))
            }
        }
    }

    async fn nodes(&self) -> Result<Vec<NodeStatus>, ClusterError> {
        let set = format!("{}nodes", self.config.prefix);
        let mut ids: Vec<String> = self.call(redis::cmd("SMEMBERS").arg(&set)).await?;
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key("node", id)).collect();
        let entries: Vec<Option<String>> = self.call(redis::cmd("MGET").arg(&keys)).await?;
        let mut nodes = Vec::new();
        for (id, entry) in ids.iter().zip(entries) {
            match entry.and_then(|e| serde_json::from_str::<NodeEntry>(&e).ok()) {
                Some(e) => nodes.push(NodeStatus {
                    id: e.id,
                    url: e.url,
                    documents: e.documents,
                    started_ms: e.started_ms,
                    seen_ms: e.seen_ms,
                }),
                // Its heartbeat stopped: forget it.
                None => {
                    self.call::<()>(redis::cmd("SREM").arg(&set).arg(id))
                        .await?;
                }
            }
        }
        Ok(nodes)
    }

    async fn ping(&self) -> Result<(), ClusterError> {
        self.call::<String>(&redis::cmd("PING")).await.map(|_| ())
    }

    fn set_open_documents(&self, count: usize) {
        self.open_documents.store(count, Ordering::Relaxed);
    }

    async fn publish(&self, change: &RightsChange) {
        let published = Published {
            from: self.config.node_id.clone(),
            change: change.clone(),
        };
        let Ok(json) = serde_json::to_string(&published) else {
            return;
        };
        let channel = format!("{}rights", self.config.prefix);
        if let Err(e) = self
            .call::<i64>(redis::cmd("PUBLISH").arg(channel).arg(json))
            .await
        {
            tracing::warn!(document = %change.doc, error = %e, "could not tell the other nodes of a change of rights");
        }
    }

    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<RightsChange>> {
        Some(self.rights.subscribe())
    }
}
