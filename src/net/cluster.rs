//! `GET /api/cluster`: the nodes of the cluster and how many documents
//! each serves. Server admins only with `--auth jwt`; anyone in open mode
//! (where everyone may do everything anyway).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::http::{ApiError, AppState};

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/cluster", web::get().to(cluster));
}

async fn cluster(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let identity = super::guard::identify(&req, &state).await?;
    if !state.auth.is_open() && !identity.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only server admins may see the cluster",
        ));
    }
    let cluster = state.registry.cluster();
    let this = cluster.node();
    let nodes = cluster.nodes().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "mode": if cluster.is_single() { "single" } else { "redis" },
        "node": this.id,
        "open_documents": state.registry.open_count(),
        "lease_secs": (!cluster.is_single()).then(|| cluster.lease_time().as_secs_f64()),
        "nodes": nodes,
    })))
}
