//! `GET /api/openapi.json`: the OpenAPI description of the REST API.
//!
//! The description is the checked-in `docs/openapi.json`, compiled into the
//! binary and served as it is. A hand-written file rather than one derived
//! from annotations (utoipa): the handlers build their JSON with
//! `serde_json::json!`, so annotations would restate every shape beside the
//! code anyway, and one file edited by whoever adds a route merges more
//! easily than attributes spread over every handler. tests/openapi.rs keeps
//! it honest: every route registered under `src/` must be in it and nothing
//! else, and `scripts/schemathesis` checks live answers against it.

use actix_web::{HttpResponse, web};

/// docs/openapi.json, as built into the binary.
pub const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/openapi.json", web::get().to(openapi));
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI_JSON)
}
