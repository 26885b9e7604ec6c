//! What operators and their tools ask the node: `/readyz` (may it take
//! traffic?) and `/metrics` (Prometheus). `/healthz`, "the process is
//! alive", stays in `http`.
//!
//! `/readyz` answers 200 only when the node is not draining, its store
//! answers a ping, and every extra [`ReadinessCheck`] passes (Redis, once
//! the cluster has it); otherwise 503 with the first reason:
//!
//! ```text
//! 200 {"status":"ready"}
//! 503 {"status":"unavailable","check":"draining","reason":"shutting down"}
//! 503 {"status":"unavailable","check":"store","reason":"the store is unavailable; retry"}
//! ```
//!
//! SIGTERM turns it to 503 at once (the shutdown watch it reads is the one
//! that starts the drain), so a load balancer stops sending new clients
//! while the documents flush.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use async_trait::async_trait;
use serde::Serialize;

use super::http::AppState;

/// How long one readiness check may take before it counts as failed: well
/// under the usual probe timeout (Kubernetes: 1 s by default, often raised
/// to a few), so the probe gets our 503 rather than its own timeout, and a
/// store that takes longer than this to answer `SELECT 1` is not one to
/// send clients to.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(2_000);

/// One more condition for readiness, beside the store and draining.
#[async_trait]
pub trait ReadinessCheck: Send + Sync + 'static {
    /// A short fixed name, reported as `check` when it fails: `redis`.
    fn name(&self) -> &'static str;

    /// `Ok` when the node may take traffic as far as this check knows.
    ///
    /// # Errors
    ///
    /// Why not, in a sentence an operator can act on (it is shown on the
    /// unauthenticated `/readyz`: no secrets, no connection strings).
    async fn check(&self) -> Result<(), String>;
}

/// Redis answers (with several nodes): a node that cannot reach it can
/// renew no lease and open no document, so it should not take traffic.
pub struct ClusterReady(pub crate::cluster::SharedCluster);

#[async_trait]
impl ReadinessCheck for ClusterReady {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self) -> Result<(), String> {
        self.0
            .ping()
            .await
            .map_err(|_| "Redis does not answer: no document can be leased".to_owned())
    }
}

/// Extra readiness checks, run in order after the store's.
pub type ReadinessChecks = Arc<[Arc<dyn ReadinessCheck>]>;

#[derive(Serialize)]
struct NotReady<'a> {
    status: &'static str,
    check: &'a str,
    reason: &'a str,
}

/// Registers `/readyz` and `/metrics`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// True for the probe and scrape paths, which no rate limit counts.
pub fn is_probe_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

fn not_ready(check: &str, reason: &str) -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(NotReady {
        status: "unavailable",
        check,
        reason,
    })
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if *state.shutdown.borrow() {
        return not_ready("draining", "shutting down");
    }
    let store = state.registry.store();
    match tokio::time::timeout(CHECK_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            crate::metrics::store_error("ping");
            tracing::warn!(error = %e, "readiness: the store does not answer");
            return not_ready("store", e.public_message());
        }
        Err(_) => {
            crate::metrics::store_error("ping");
            tracing::warn!(timeout = ?CHECK_TIMEOUT, "readiness: the store did not answer in time");
            return not_ready("store", "the store did not answer in time");
        }
    }
    for check in state.readiness.iter() {
        let reason = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
            Ok(Ok(())) => continue,
            Ok(Err(reason)) => reason,
            Err(_) => "did not answer in time".to_owned(),
        };
        tracing::warn!(check = check.name(), %reason, "readiness: not ready");
        return not_ready(check.name(), &reason);
    }
    HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
}

async fn metrics() -> HttpResponse {
    match crate::metrics::handle() {
        Some(handle) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(handle.render()),
        None => HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
            .content_type("text/plain; charset=utf-8")
            .body("metrics are not recorded by this process\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_exactly_the_three_paths() {
        assert!(is_probe_path("/healthz") && is_probe_path("/readyz") && is_probe_path("/metrics"));
        assert!(!is_probe_path("/metrics/x") && !is_probe_path("/api/documents"));
        assert!(!is_probe_path("/readyz/") && !is_probe_path("/"));
    }
}
