//! Operations: liveness, readiness, metrics.

use std::collections::BTreeMap;

use rocket::http::ContentType;
use rocket::serde::json::Json;
use rocket::{get, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::openapi;
use rocket_okapi::settings::OpenApiSettings;
use tasklane::types::HealthStatus;

use crate::app::App;
use crate::error::{ApiError, ApiResult};

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
async fn ready(app: &State<App>) -> ApiResult<Json<HealthStatus>> {
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
    checks.insert("database".to_owned(), ok("database", app.db.ping().await));
    if let Some(redis) = &app.redis {
        checks.insert("redis".to_owned(), ok("redis", redis.ping().await));
    }
    let down: Vec<&str> = checks.iter().filter(|(_, ok)| !**ok).map(|(name, _)| name.as_str()).collect();
    if !down.is_empty() {
        return Err(ApiError::Unavailable(format!("not ready: {} unavailable", down.join(" and "))));
    }
    let checks = checks.into_keys().map(|name| (name, "ok".to_owned())).collect();
    Ok(Json(HealthStatus { status: "ok".to_owned(), checks }))
}

/// Prometheus metrics (text exposition format), with the pools' usage read now. Meant for the
/// operator's network only; not in the OpenAPI document.
#[get("/metrics")]
pub fn scrape(app: &State<App>) -> (ContentType, String) {
    let (size, idle) = app.db.pool_status();
    metrics::gauge!("db_pool_connections").set(size as f64);
    metrics::gauge!("db_pool_idle_connections").set(idle as f64);
    if let Some(redis) = &app.redis {
        let (size, idle) = redis.status();
        metrics::gauge!("redis_pool_connections").set(size as f64);
        metrics::gauge!("redis_pool_idle_connections").set(idle as f64);
    }
    (ContentType::new("text", "plain").with_params(("version", "0.0.4")), crate::metrics::render())
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
