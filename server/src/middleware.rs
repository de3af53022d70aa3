//! What every request gets: its id (`X-Request-Id`), its spans (for the log, and for traces),
//! the headers every response carries (caching, security), its access line and its metrics.

use std::sync::OnceLock;
use std::time::Instant;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::{Header, HeaderMap};
use rocket::route::{Handler, Outcome, Route};
use rocket::{Data, Request, Response};
use tracing::field::Empty;
use tracing::Instrument as _;

/// Per-request bookkeeping: the request id, the start time, once something logs in it the
/// request's log span, and once a route handles it its trace span.
struct RequestMeta {
    id: String,
    started: Instant,
    span: OnceLock<tracing::Span>,
    trace: OnceLock<tracing::Span>,
}

/// The id of the request being served: the client's `X-Request-Id` when it is 1–128 characters
/// of `[A-Za-z0-9._:-]`, else a generated one.
pub fn request_id<'r>(req: &'r Request<'_>) -> &'r str {
    &meta(req).id
}

fn meta<'r>(req: &'r Request<'_>) -> &'r RequestMeta {
    req.local_cache(|| {
        let given = req.headers().get_one("X-Request-Id").filter(|id| {
            (1..=128).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        });
        // A v4 UUID from the thread's userspace generator: `Uuid::new_v4` would make a
        // getrandom system call per request for an id that needs no secrecy.
        let id = given.map_or_else(
            || uuid::Builder::from_random_bytes(rand::random()).into_uuid().simple().to_string(),
            str::to_owned,
        );
        RequestMeta { id, started: Instant::now(), span: OnceLock::new(), trace: OnceLock::new() }
    })
}

/// The span of the request being served (request id, method, path), for handlers to log their
/// events in. Made on first use: most requests log nothing but their access line, and
/// formatting a span's fields for every request would cost them all.
pub fn span(req: &Request<'_>) -> tracing::Span {
    let meta = meta(req);
    meta.span
        .get_or_init(|| {
            // Inside the trace span when there is one, even when made outside the handler (by
            // a catcher), so that it does not start a trace of its own.
            tracing::info_span!(
                parent: meta.trace.get().and_then(tracing::Span::id),
                "request",
                request_id = %meta.id,
                method = %req.method(),
                path = %req.uri().path(),
            )
        })
        .clone()
}

/// Wraps each route's handler so that what it awaits (guards, body, store and Redis calls) runs
/// in the request's trace span: see [`Traced`].
pub fn traced(routes: Vec<Route>) -> Vec<Route> {
    routes
        .into_iter()
        .map(|mut route| {
            route.handler = Box::new(Traced(route.handler));
            route
        })
        .collect()
}

/// A route's handler, run in the request's trace span: a `debug` span that continues the
/// trace of an incoming W3C `traceparent` (a new trace without one), with the method, the
/// route template, the request id and (set by [`finish`]) the status. It is exported when
/// traces are (see `telemetry.rs`); otherwise nothing enables it and it costs nothing. It
/// lives as long as the request, so it covers the catcher and the response too.
#[derive(Clone)]
pub struct Traced(Box<dyn Handler>);

#[rocket::async_trait]
impl Handler for Traced {
    async fn handle<'r>(&self, req: &'r Request<'_>, data: Data<'r>) -> Outcome<'r> {
        let meta = meta(req);
        let span = meta.trace.get_or_init(|| trace_span(req, &meta.id)).clone();
        // Set here rather than when the span is made, so that a request forwarded to another
        // route names the route that handled it.
        if let (false, Some(route)) = (span.is_disabled(), req.route()) {
            let template = route.uri.path();
            span.record("http.route", template);
            span.record("otel.name", format!("{} {template}", req.method()).as_str());
        }
        self.0.handle(req, data).instrument(span).await
    }
}

fn trace_span(req: &Request<'_>, id: &str) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let span = tracing::debug_span!(
        parent: None,
        "http.request",
        otel.name = %req.method(),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %req.method(),
        http.route = Empty,
        http.response.status_code = Empty,
        request_id = id,
    );
    if !span.is_disabled() && req.headers().contains("traceparent") {
        use opentelemetry::propagation::TextMapPropagator as _;
        let parent =
            opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&Headers(req.headers()));
        // Fails only without an OpenTelemetry layer (spans enabled by `RUST_LOG=debug` alone).
        let _ = span.set_parent(parent);
    }
    span
}

/// The request's headers, as OpenTelemetry's propagators read them.
struct Headers<'a>(&'a HeaderMap<'a>);

impl<'a> opentelemetry::propagation::Extractor for Headers<'a> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get_one(key)
    }

    fn keys(&self) -> Vec<&str> {
        // Each header `iter` yields borrows its name from the map.
        let borrowed = |header: Header<'a>| match header.name.into_cow() {
            std::borrow::Cow::Borrowed(name) => Some(name),
            std::borrow::Cow::Owned(_) => None,
        };
        self.0.iter().filter_map(borrowed).collect()
    }
}

/// The request's span, as a request guard.
pub struct RequestSpan(pub tracing::Span);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for RequestSpan {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> rocket::request::Outcome<Self, Self::Error> {
        rocket::request::Outcome::Success(RequestSpan(span(req)))
    }
}

impl<'r> rocket_okapi::request::OpenApiFromRequest<'r> for RequestSpan {
    fn from_request_input(
        _: &mut rocket_okapi::gen::OpenApiGenerator,
        _: String,
        _: bool,
    ) -> rocket_okapi::Result<rocket_okapi::request::RequestHeaderInput> {
        Ok(rocket_okapi::request::RequestHeaderInput::None)
    }
}

/// Tags each request with its id, logs and counts each response, and sets the headers every
/// response carries.
pub struct RequestFairing;

#[rocket::async_trait]
impl Fairing for RequestFairing {
    fn info(&self) -> Info {
        Info { name: "request id, access log", kind: Kind::Request | Kind::Response }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        req.local_cache(|| Preprocessed(true));
        meta(req);
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        finish(req, res);
    }
}

/// Marks a request that went through Rocket's request fairings, as every request Rocket could
/// parse does. One it could not (an unknown method such as `QUERY`, or a malformed target) goes
/// straight to the catcher with a stand-in request, skipping the fairings.
struct Preprocessed(bool);

/// Whether this request skipped the request fairings: Rocket could not parse it and handed the
/// catcher a stand-in (the original path and headers, with `GET` for a method it does not
/// know). Its response gets no fairings either, so the catcher calls [`finish`] itself.
pub fn salvaged(req: &Request<'_>) -> bool {
    !req.local_cache(|| Preprocessed(false)).0
}

/// The headers every response carries (request id, caching, security), and its log line and
/// metrics. Called by [`RequestFairing`], or by the catcher for a [`salvaged`] request.
pub fn finish(req: &Request<'_>, res: &mut Response<'_>) {
    let meta = meta(req);
    let latency = meta.started.elapsed();
    res.set_header(Header::new("X-Request-Id", meta.id.clone()));
    if !req.uri().path().starts_with("/docs") {
        // API answers carry tokens and private data: never cached, never framed, no
        // active content. (Swagger UI's pages need scripts and are left alone.)
        if !res.headers().contains("Cache-Control") {
            res.set_header(Header::new("Cache-Control", "no-store"));
        }
        res.set_header(Header::new("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"));
    }
    // What Rocket's Shield would add, set here so that salvaged requests get them too; not
    // Shield's `Permissions-Policy: interest-cohort=()`, which names a browser feature that no
    // longer exists (browsers warn about it) and means nothing on JSON answers.
    for (name, value) in [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
    ] {
        if !res.headers().contains(name) {
            res.set_header(Header::new(name, value));
        }
    }
    if body_left_unread(req) {
        // The answer came before the body was read (a refused token, an unknown route, a type
        // that is not JSON). Rocket then closes the connection without saying so, and a client
        // that sends its next request on it finds it broken: say so.
        res.set_header(Header::new("Connection", "close"));
    }
    let status = res.status().code;
    if let Some(span) = meta.trace.get() {
        span.record("http.response.status_code", status);
        if status >= 500 {
            span.record("otel.status_code", "error");
        }
    }
    let route = req.route().map_or("unmatched", |r| r.uri.path());
    crate::metrics::record_request(req.method().as_str(), route, status, latency);
    // The access line: one event with every field, outside the span (which, if a handler
    // made one, carries the same request id).
    tracing::info!(
        request_id = %meta.id,
        method = %req.method(),
        path = %req.uri().path(),
        status,
        // Whole microseconds, so the line reads 1.804 rather than 1.8045369999999998.
        latency_ms = latency.as_micros() as f64 / 1000.0,
        "response"
    );
}

/// Marks a request whose body was read to its end (by the JSON body guard).
pub(crate) struct BodyRead(pub(crate) bool);

/// Whether the request came with a body (a length above zero, or chunked) that nothing read.
fn body_left_unread(req: &Request<'_>) -> bool {
    let headers = req.headers();
    let has_body = headers.contains("Transfer-Encoding")
        || headers.get_one("Content-Length").is_some_and(|n| n.trim() != "0");
    has_body && !req.local_cache(|| BodyRead(false)).0
}
