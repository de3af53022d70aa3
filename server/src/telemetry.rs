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

use std::collections::HashMap;
use std::sync::{OnceLock, PoisonError, RwLock};
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

/// The request counter and latency histogram of one label set.
struct RequestMetrics {
    method: &'static str,
    status: u16,
    count: metrics::Counter,
    latency: metrics::Histogram,
}

/// Handles by route pattern, then method and status. Registering a label set builds its key
/// (three label strings) and looks it up in the recorder's registry, for each of the two
/// metrics; a handle kept here costs one lookup by route. Label sets are bounded (routes ×
/// methods × statuses), and so is this map.
type HandleCache = RwLock<HashMap<String, Vec<RequestMetrics>>>;

/// Records one served request.
pub fn record_request(method: &'static str, route: &str, status: u16, latency: Duration) {
    static HANDLES: OnceLock<HandleCache> = OnceLock::new();
    let handles = HANDLES.get_or_init(|| {
        // A handle taken before the recorder is installed would count nothing, for good.
        prometheus();
        HandleCache::default()
    });
    let record = |m: &RequestMetrics| {
        m.count.increment(1);
        m.latency.record(latency.as_secs_f64());
    };
    let known = handles.read().unwrap_or_else(PoisonError::into_inner);
    if let Some(m) =
        known.get(route).and_then(|v| v.iter().find(|m| m.method == method && m.status == status))
    {
        return record(m);
    }
    drop(known);
    let labels = [("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_string())];
    let m = RequestMetrics {
        method,
        status,
        count: metrics::counter!("http_requests_total", &labels),
        latency: metrics::histogram!("http_request_duration_seconds", &labels),
    };
    record(&m);
    // Two threads that miss at once both register the label set: the recorder hands both the
    // same metric, so the first handle kept serves.
    let mut known = handles.write().unwrap_or_else(PoisonError::into_inner);
    let kept = known.entry(route.to_owned()).or_default();
    if !kept.iter().any(|k| k.method == method && k.status == status) {
        kept.push(m);
    }
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
/// span), Rocket's start-up report, but not Rocket's own per-request lines (`rocket::server::_`: "Matched", "Outcome", "Response succeeded", catcher
/// and failed-guard notices, and "No matching routes" at `error` with the whole query string,
/// for every 404 and for every HEAD answered by its GET route). They repeat what the access
/// line says, cost a write each, and would let any client fill the error log (and put a
/// secret sent in a query string there). A handler that panics still shows: the access line
/// has the 500, and the panic message goes to stderr. PostgreSQL's notices at `info` are off
/// too: the migrator's `CREATE TABLE IF NOT EXISTS` draws "relation already exists, skipping"
/// at every start.
pub const DEFAULT_LOG_FILTER: &str = "info,rocket::server=error,rocket::server::_=off,rocket::shield=warn,\
     tasklane_server::auth::_=error,tasklane_server::tasks::_=error,tasklane_server::ops::_=error,\
     sqlx::postgres::notice=warn";

/// Installs the log subscriber: `LOG_FORMAT=json` for one JSON object per line, else text
/// (coloured only on a terminal). `RUST_LOG` filters (default [`DEFAULT_LOG_FILTER`]).
pub fn init_logging() -> Result<(), String> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // Unset or empty (as compose passes an unset variable) means the default.
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            EnvFilter::try_new(&directives).map_err(|e| format!("RUST_LOG: {e} in {directives:?}"))?
        }
        _ => EnvFilter::new(DEFAULT_LOG_FILTER),
    };
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stdout().is_terminal());
    match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().flatten_event(true).with_current_span(true).init(),
        Ok("text") | Err(_) => builder.init(),
        Ok(other) => return Err(format!("LOG_FORMAT: expected text or json, got {other:?}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line that starts with `series`, in the rendered metrics.
    fn sample(series: &str) -> Option<f64> {
        prometheus().render().lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn kept_handles_count_every_request() {
        let route = "/test/kept-handles";
        for status in [200, 200, 404, 200] {
            record_request("GET", route, status, Duration::from_millis(3));
        }
        record_request("POST", route, 200, Duration::from_millis(30));
        let labels =
            |method: &str, status: u16| format!(r#"{{method="{method}",route="{route}",status="{status}"}}"#);
        assert_eq!(sample(&format!("http_requests_total{}", labels("GET", 200))), Some(3.0));
        assert_eq!(sample(&format!("http_requests_total{}", labels("GET", 404))), Some(1.0));
        assert_eq!(sample(&format!("http_requests_total{}", labels("POST", 200))), Some(1.0));
        // Histogram samples are folded in at upkeep, which rendering also runs.
        assert_eq!(sample(&format!("http_request_duration_seconds_count{}", labels("GET", 200))), Some(3.0));
        let le = |bound: &str| {
            format!(
                r#"http_request_duration_seconds_bucket{{method="POST",route="{route}",status="200",le="{bound}"}}"#
            )
        };
        assert_eq!(sample(&le("0.025")), Some(0.0));
        assert_eq!(sample(&le("0.05")), Some(1.0));
    }
}
