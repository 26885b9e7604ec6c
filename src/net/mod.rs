//! The network edge: the HTTP server with the WebSocket sessions and the
//! REST API, and the graceful shutdown that ties them to the documents.

pub mod access;
pub mod access_log;
pub mod admin;
pub mod cluster;
pub mod connections;
pub mod forward;
pub mod guard;
pub mod history;
pub mod http;
pub mod limits;
pub mod openapi;
pub mod origin;
pub mod outgoing;
pub mod proxy;
pub mod ready;
pub mod session;
pub mod webapp;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, middleware, web};
use tokio::sync::watch;
use tracing::info;

use crate::cluster::SharedCluster;
use crate::cluster::redis::RedisCluster;
use crate::cluster::single::SingleNode;
use crate::config::Settings;
use crate::registry::Registry;
use crate::store::SharedStore;

/// How long shutdown waits by default for documents to flush before giving
/// up (`--shutdown-timeout`): a document flushes in milliseconds, so this
/// is for a store that is slow or down, whose appends are retried for
/// [`STORE_RETRY_LIMIT`](crate::config::STORE_RETRY_LIMIT) (also 30 s);
/// and it stays under the 30 s an orchestrator usually waits after SIGTERM
/// before SIGKILL, with the HTTP server's own few seconds on top.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(25);

/// What a server needs to run.
pub struct ServerConfig {
    /// The store.
    pub store: SharedStore,
    /// Authentication and rights.
    pub auth: crate::auth::Auth,
    /// Limits and timing.
    pub settings: Settings,
    /// A folder to serve the built web app from; `None` for the app
    /// embedded in the binary, if it carries one (see [`webapp`]).
    pub static_dir: Option<PathBuf>,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// Which pages may open sockets and call the API.
    pub origins: origin::Origins,
    /// Several nodes: Redis holds the leases and the node directory. `None`:
    /// this node is the only one.
    pub redis: Option<crate::cluster::redis::RedisConfig>,
    /// A bearer token that opens the admin API (`--admin-token`), if set.
    pub admin_token: Option<String>,
    /// Checks `/readyz` runs after the store's (Redis, ...).
    pub readiness: Vec<Arc<dyn ready::ReadinessCheck>>,
    /// How long shutdown waits for the documents to flush.
    pub shutdown_timeout: Duration,
}

/// Serves on `listener` until `shutdown` completes, then shuts down
/// gracefully: sessions are closed with 1001, every document task finishes
/// its pending commits and writes a snapshot, and only then does this return.
///
/// # Errors
///
/// When the HTTP server cannot start.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(handle) = crate::metrics::install() {
        actix_web::rt::spawn(crate::metrics::upkeep_until(handle, stop_rx.clone()));
    }
    let cluster: SharedCluster = match config.redis {
        Some(redis) => RedisCluster::start(redis, stop_rx.clone())
            .map_err(|e| std::io::Error::other(e.to_string()))?,
        None => Arc::new(SingleNode::default()),
    };
    let registry = Registry::new(
        config.store,
        cluster,
        Arc::new(config.settings),
        stop_rx.clone(),
    );
    if let Some(changes) = registry.cluster().subscribe() {
        actix_web::rt::spawn(access::relay_rights(Arc::clone(&registry), changes));
    }
    let connections = connections::Connections::new(registry.settings().limits.max_connections);
    let limiters = limits::Limiters::new(&registry.settings().rate);
    actix_web::rt::spawn(limits::sweep_until(Arc::clone(&limiters), stop_rx.clone()));
    let state = http::AppState {
        registry: Arc::clone(&registry),
        auth: Arc::new(config.auth),
        connections,
        shutdown: stop_rx,
        static_dir: config.static_dir,
        limiters,
        origins: Arc::new(config.origins),
        admin_token: config.admin_token.map(Arc::from),
        readiness: {
            let mut checks = config.readiness;
            if !registry.cluster().is_single() {
                checks.push(Arc::new(ready::ClusterReady(Arc::clone(
                    registry.cluster(),
                ))));
            }
            checks.into()
        },
    };
    let max_body = state.registry.settings().limits.max_message_bytes * 16;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(web::PayloadConfig::new(max_body))
            .app_data(web::QueryConfig::default().error_handler(|e, _| http::extractor_error(e)))
            .app_data(web::PathConfig::default().error_handler(|e, _| http::extractor_error(e)))
            .configure(http::configure)
            // CORS outside the rate limit, so that a page can read its 429.
            .wrap(middleware::from_fn(limits::limit_requests))
            .wrap(middleware::from_fn(origin::cors))
            // Outermost, so that it logs what the client got (a 429, a 403).
            .wrap(middleware::from_fn(access_log::log_requests))
    })
    // Small frames (an ack, a keystroke) must leave at once: with Nagle's
    // algorithm a second small write waits for the peer's delayed ACK (40 ms).
    .on_connect(|conn, _| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?;
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    let server = server.run();
    let handle = server.handle();
    let serving = actix_web::rt::spawn(server);
    shutdown.await;
    // One watch: `/readyz` answers 503 from the moment the drain begins.
    info!("shutting down: not ready; closing sessions and flushing documents");
    let _ = stop_tx.send(true);
    if tokio::time::timeout(config.shutdown_timeout, registry.wait_closed())
        .await
        .is_err()
    {
        tracing::warn!("documents did not flush in time");
    }
    handle.stop(true).await;
    let _ = serving.await;
    info!("stopped");
    Ok(())
}
