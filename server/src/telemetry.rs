//! Observability: Prometheus metrics at `/metrics`, and the log output format.
//!
//! Metrics (from the `metrics` facade, rendered by `metrics-exporter-prometheus`):
//! - `http_requests_total{method, route, status}`: requests served;
//! - `http_request_duration_seconds{method, route, status}`: latency histogram;
//! - `db_pool_connections` / `db_pool_idle_connections`, `redis_pool_connections` /
//!   `redis_pool_idle_connections`: pool usage, read at scrape time;
//! - `db_read_pipeline_connections`: the shared connections task reads go over on PostgreSQL,
//!   open at scrape time;
//! - `password_hash_memory_bytes`: argon2 working memory the hashing threads hold (19 MiB per
//!   busy thread, given back after 10 s idle), read at scrape time.
//!
//! `route` is the route's pattern (`/tasks/<id>`), never the raw path, so label sets stay
//! bounded; requests that match no route count under `unmatched`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rocket::http::ContentType;
use rocket::{get, State};

use crate::AppState;

/// Latency buckets in seconds: fine below 10 ms, where a healthy API answers, coarse above.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process-wide recorder. The `metrics` facade has one global recorder per process, so
/// every app built in this process (tests build many) shares it.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".to_owned()),
                LATENCY_BUCKETS,
            )
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours just renders nothing.
        let _ = metrics::set_global_recorder(recorder);
        // Histogram samples pile up until upkeep folds them into buckets; with no exporter
        // task of the crate's own running, that is ours to do, or memory grows with every
        // request between scrapes. Every 5 s keeps the pile to a few seconds of traffic.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            })
            .expect("spawn the metrics upkeep thread");
        handle
    })
}

/// Records one served request.
pub fn record_request(method: &str, route: &str, status: u16, latency: Duration) {
    let labels = [("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_string())];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(latency.as_secs_f64());
}

/// Prometheus metrics (text exposition format). Meant for the operator's network only.
#[get("/metrics")]
pub fn metrics_endpoint(state: &State<AppState>) -> (ContentType, String) {
    let (size, idle) = state.stores.store.pool_status();
    metrics::gauge!("db_pool_connections").set(size as f64);
    metrics::gauge!("db_pool_idle_connections").set(idle as f64);
    metrics::gauge!("db_read_pipeline_connections").set(state.stores.store.read_pipelines_open() as f64);
    metrics::gauge!("password_hash_memory_bytes").set(state.hasher.resident_bytes() as f64);
    if let Some(redis) = &state.stores.redis {
        let (size, idle) = redis.status();
        metrics::gauge!("redis_pool_connections").set(size as f64);
        metrics::gauge!("redis_pool_idle_connections").set(idle as f64);
    }
    (ContentType::new("text", "plain").with_params(("version", "0.0.4")), prometheus().render())
}

/// The log filter when `RUST_LOG` is unset: our events at `info` (one line per request, in its
/// span), Rocket's start-up report, but not Rocket's own per-request lines ("Matched",
/// "Outcome", "Response succeeded", catcher and failed-guard notices), which repeat what the
/// request span says several times over and cost a write each.
pub const DEFAULT_LOG_FILTER: &str = "info,rocket::server=error,rocket::shield=warn,\
     tasklane_server::auth::_=error,tasklane_server::tasks::_=error,tasklane_server::ops::_=error";

/// Installs the log subscriber: `LOG_FORMAT=json` for one JSON object per line, else text
/// (coloured only on a terminal). `RUST_LOG` filters (default [`DEFAULT_LOG_FILTER`]).
pub fn init_logging() -> Result<(), String> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stdout().is_terminal());
    match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().flatten_event(true).with_current_span(true).init(),
        Ok("text") | Err(_) => builder.init(),
        Ok(other) => return Err(format!("LOG_FORMAT: expected text or json, got {other:?}")),
    }
    Ok(())
}
