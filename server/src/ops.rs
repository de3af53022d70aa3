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
    // A failed check says why in the log (a warning per probe while it lasts): the answer
    // names only the service.
    let ok = |name: &'static str, outcome: Result<(), crate::store::StoreError>| match outcome {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(service = name, error = %err, "not ready");
            false
        }
    };
    checks.insert("database".to_owned(), ok("database", stores.store.ping().await));
    if stores.refresh.kind() == "redis" {
        checks.insert("redis".to_owned(), ok("redis", stores.refresh.ping().await));
    }
    let down: Vec<&str> = checks.iter().filter(|(_, ok)| !**ok).map(|(name, _)| name.as_str()).collect();
    if !down.is_empty() {
        return Err(ApiError::Unavailable(format!("not ready: {} unavailable", down.join(" and "))));
    }
    let checks = checks.into_keys().map(|name| (name, "ok".to_owned())).collect();
    Ok(Json(HealthStatus { status: "ok".to_owned(), checks }))
}

/// `tasklane-server healthcheck`: asks a running server's `/health` over plain HTTP/1.1, for a
/// container `HEALTHCHECK` without curl in the image. Bounded by `timeout` in all.
pub fn probe(addr: std::net::SocketAddr, timeout: std::time::Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| format!("{addr}: {e}"))?;
    match &head {
        b"HTTP/1.1 200" | b"HTTP/1.0 200" => Ok(()),
        other => Err(format!("{addr}: /health answered {:?}", String::from_utf8_lossy(other))),
    }
}
