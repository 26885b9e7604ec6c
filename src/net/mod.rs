//! The network edge: the HTTP server with the WebSocket sessions and the
//! REST API, and the graceful shutdown that ties them to the documents.

pub mod access;
pub mod connections;
pub mod guard;
pub mod history;
pub mod http;
pub mod limits;
pub mod openapi;
pub mod origin;
pub mod session;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, middleware, web};
use tokio::sync::watch;
use tracing::info;

use crate::config::Settings;
use crate::registry::Registry;
use crate::store::SharedStore;

/// How long shutdown waits for documents to flush before giving up.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// What a server needs to run.
pub struct ServerConfig {
    /// The store.
    pub store: SharedStore,
    /// Authentication and rights.
    pub auth: crate::auth::Auth,
    /// Limits and timing.
    pub settings: Settings,
    /// The built web app, if any.
    pub static_dir: Option<PathBuf>,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// Which pages may open sockets and call the API.
    pub origins: origin::Origins,
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
    let registry = Registry::new(config.store, Arc::new(config.settings), stop_rx.clone());
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
    info!("shutting down: closing sessions and flushing documents");
    let _ = stop_tx.send(true);
    if tokio::time::timeout(SHUTDOWN_FLUSH_TIMEOUT, registry.wait_closed())
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
