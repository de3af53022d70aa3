//! The log (its filter, and its format: text, or one JSON object per line) and, when an OTLP
//! endpoint is set, the traces: the request spans and the store and Redis spans inside them,
//! exported over OTLP (HTTP/protobuf).

use opentelemetry_sdk::trace::SdkTracerProvider;

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

/// What telemetry holds until the process ends: the trace exporter, when there is one.
#[must_use = "call `shutdown` once the server has stopped, or the last spans are lost"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exports_traces(&self) -> bool {
        self.traces.is_some()
    }

    /// Sends the spans still waiting in the batch (within the exporter's timeout). Call it
    /// outside the async runtime: the exporter's HTTP client blocks.
    pub fn shutdown(self) {
        if let Some(provider) = self.traces {
            if let Err(err) = provider.shutdown() {
                tracing::warn!(error = %err, "could not send the last traces");
            }
        }
    }
}

/// Whether traces are to be exported: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set and not empty (compose passes an unset variable as
/// empty), and `OTEL_SDK_DISABLED` is not `true`.
pub fn traces_wanted(lookup: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| lookup(name).is_some_and(|value| !value.trim().is_empty());
    let disabled = lookup("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true"));
    (set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT")) && !disabled
}

/// Installs the log subscriber: `LOG_FORMAT=json` for one JSON object per line, else text
/// (coloured only on a terminal). `RUST_LOG` filters (default [`DEFAULT_LOG_FILTER`]).
///
/// With an OTLP endpoint set ([`traces_wanted`]), an OpenTelemetry layer beside it exports
/// this crate's spans, the `debug` ones included, whatever the log filter; the log keeps its
/// own filter. The exporter reads the standard `OTEL_*` variables itself (endpoint, headers,
/// timeout, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*`, the sampler). One
/// that cannot be built (an endpoint that is not a URL) is a warning, and the server runs
/// without traces. Without an endpoint there is no such layer at all: the spans stay disabled
/// (the log filter does not enable `debug`) and cost nothing.
pub fn init_logging() -> Result<Telemetry, String> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // Unset or empty (as compose passes an unset variable) means the default.
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            EnvFilter::try_new(&directives).map_err(|e| format!("RUST_LOG: {e} in {directives:?}"))?
        }
        _ => EnvFilter::new(DEFAULT_LOG_FILTER),
    };
    let json = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") | Err(_) => false,
        Ok(other) => return Err(format!("LOG_FORMAT: expected text or json, got {other:?}")),
    };
    let ansi = std::io::stdout().is_terminal();
    let traces = traces_wanted(|name| std::env::var(name).ok()).then(tracer_provider);
    if let Some(Ok(provider)) = traces {
        with_traces(filter, json, ansi, &provider)?;
        tracing::info!("exporting traces over OTLP");
        return Ok(Telemetry { traces: Some(provider) });
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    if json {
        builder.json().flatten_event(true).with_current_span(true).init();
    } else {
        builder.init();
    }
    if let Some(Err(err)) = traces {
        tracing::warn!(error = %err, "cannot export traces; serving without them");
    }
    Ok(Telemetry { traces: None })
}

/// The subscriber with the log filtered by `filter`, and an OpenTelemetry layer taking every
/// span and event of this crate at `debug` and above.
fn with_traces(
    filter: tracing_subscriber::EnvFilter,
    json: bool,
    ansi: bool,
    provider: &SdkTracerProvider,
) -> Result<(), String> {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let log = tracing_subscriber::fmt::layer().with_ansi(ansi);
    let log = if json {
        log.json().flatten_event(true).with_current_span(true).with_filter(filter).boxed()
    } else {
        log.with_filter(filter).boxed()
    };
    let ours = tracing_subscriber::filter::Targets::new()
        .with_target(env!("CARGO_CRATE_NAME"), tracing::Level::DEBUG);
    // Names and the fields the spans declare, without the source location, thread, target and
    // busy/idle times the layer adds by default: the span names say where they are, and each
    // attribute is paid for in every span of every request.
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("tasklane-server"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(ours);
    tracing_subscriber::registry().with(log).with(traces).try_init().map_err(|e| e.to_string())
}

/// The exporter and its batch processor (a thread of its own), on the `OTEL_*` variables.
fn tracer_provider() -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()?;
    // The SDK names an unnamed service after the executable, as `unknown_service:...`.
    let detected = opentelemetry_sdk::Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::new("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    let resource = opentelemetry_sdk::Resource::builder()
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    let resource = if named { resource } else { resource.with_service_name("tasklane-server") };
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build())
}

#[cfg(test)]
mod tests {
    use super::traces_wanted;

    #[test]
    fn traces_are_wanted_only_with_an_endpoint_that_is_not_empty() {
        let with = |vars: &'static [(&'static str, &'static str)]| {
            traces_wanted(move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
        };
        assert!(!with(&[]));
        assert!(!with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", ""), ("OTEL_SERVICE_NAME", "api")]));
        assert!(with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]));
        assert!(with(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/v1/traces")]));
        assert!(!with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "true")
        ]));
    }
}
