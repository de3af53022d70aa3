//! Prometheus metrics, served at `/metrics`.
//!
//! Metrics (from the `metrics` facade, rendered by `metrics-exporter-prometheus`):
//! - `http_requests_total{method, route, status}`: requests served;
//! - `http_request_duration_seconds{method, route, status}`: latency histogram;
//! - `db_pool_connections` / `db_pool_idle_connections`, `redis_pool_connections` /
//!   `redis_pool_idle_connections`: pool usage, read at scrape time.
//!
//! `route` is the route's pattern (`/tasks/<id>`), never the raw path, so label sets stay
//! bounded; requests that match no route count under `unmatched`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
pub fn record_request(method: &'static str, route: &str, status: u16, latency: Duration) {
    // A handle taken before the recorder is installed would count nothing, for good.
    prometheus();
    let labels = [("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_string())];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(latency.as_secs_f64());
}

/// The metrics in Prometheus's text exposition format.
pub fn render() -> String {
    prometheus().render()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line that starts with `series`, in the rendered metrics.
    fn sample(series: &str) -> Option<f64> {
        prometheus().render().lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn every_request_is_counted() {
        let route = "/test/counted";
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
