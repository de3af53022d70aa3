//! Operations: liveness, readiness.

use std::collections::BTreeMap;

use rocket::serde::json::Json;
use rocket::{get, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::openapi;
use rocket_okapi::settings::OpenApiSettings;
use tasklane::types::HealthStatus;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The routes of this area and their OpenAPI document.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    rocket_okapi::openapi_get_routes_spec![settings: health, ready]
}

/// Liveness: 200 while the process serves. Touches no backend.
#[openapi(tag = "Operations")]
#[get("/health")]
fn health() -> Json<HealthStatus> {
    Json(HealthStatus { status: "ok".to_owned(), checks: BTreeMap::new() })
}

/// Readiness: 200 when the database (and Redis, if configured) answer; 503 otherwise, with
/// the services that did not answer in `detail`.
#[openapi(tag = "Operations")]
#[get("/ready")]
async fn ready(state: &State<AppState>) -> ApiResult<Json<HealthStatus>> {
    let stores = &state.stores;
    let mut checks = BTreeMap::new();
    checks.insert("database".to_owned(), stores.store.ping().await.is_ok());
    if stores.refresh.kind() == "redis" {
        checks.insert("redis".to_owned(), stores.refresh.ping().await.is_ok());
    }
    let down: Vec<&str> = checks.iter().filter(|(_, ok)| !**ok).map(|(name, _)| name.as_str()).collect();
    if !down.is_empty() {
        return Err(ApiError::Unavailable(format!("not ready: {} unavailable", down.join(" and "))));
    }
    let checks = checks.into_keys().map(|name| (name, "ok".to_owned())).collect();
    Ok(Json(HealthStatus { status: "ok".to_owned(), checks }))
}
