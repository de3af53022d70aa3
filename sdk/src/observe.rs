//! What the client tells `tracing` (feature `tracing`): a span per call, and events for its
//! retries and token refreshes. Without the feature every item here is empty, and the client
//! has no tracing code at all.
//!
//! Only what cannot hold a secret is recorded: methods, route templates, statuses, request
//! ids, counts, waits and the kinds of errors. Never a URL (its query may hold anything), a
//! header or a body, nor an error's text: a transport error's names the URL it was sent to.

use std::future::Future;
use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::auth::RefreshCause;
use crate::Error;

/// A call's span, with every field it records later declared empty: a span's fields are fixed
/// when it is made. With OpenTelemetry, `otel.*` name the exported span as its semantic
/// conventions ask (`GET /tasks/{id}`, a client span).
#[cfg(feature = "tracing")]
macro_rules! call_span {
    ($name:literal, $method:expr, $route:expr, $request_id:expr) => {{
        let (method, route): (&Method, &'static str) = (&$method, $route);
        #[cfg(feature = "opentelemetry")]
        let span = tracing::info_span!(
            target: "tasklane",
            $name,
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            method = %method,
            route,
            request_id = $request_id,
            attempts = tracing::field::Empty,
            status = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        #[cfg(not(feature = "opentelemetry"))]
        let span = tracing::info_span!(
            target: "tasklane",
            $name,
            method = %method,
            route,
            request_id = $request_id,
            attempts = tracing::field::Empty,
            status = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        span
    }};
}

/// The span of a call (`tasklane.request`), or of a token refresh's request
/// (`tasklane.refresh`).
#[derive(Clone, Debug)]
pub(crate) struct CallSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

#[cfg(feature = "tracing")]
impl CallSpan {
    /// The span of a call of `route` (a template such as `/tasks/{id}`), sent with
    /// `X-Request-Id: request_id`.
    pub(crate) fn request(method: &Method, route: &'static str, request_id: Option<&str>) -> Self {
        Self { span: call_span!("tasklane.request", method, route, request_id) }
    }

    /// The span of a token refresh's `POST /auth/refresh`: a child of the span of the call
    /// that started it, whose request id it records once its request is made.
    pub(crate) fn refresh() -> Self {
        Self {
            span: call_span!("tasklane.refresh", Method::POST, crate::client::route::REFRESH, None::<&str>),
        }
    }

    /// The span `future` runs in: the call's own when it is instrumented, such as a refresh's
    /// request on its task.
    pub(crate) fn current() -> Self {
        Self { span: tracing::Span::current() }
    }

    /// Runs `future` in this span.
    pub(crate) fn instrument<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        tracing::Instrument::instrument(future, self.span.clone())
    }

    pub(crate) fn record_request_id(&self, request_id: Option<&str>) {
        self.span.record("request_id", request_id);
    }

    /// Records how the call ended: after how many attempts, with which status (of the answer
    /// that ended it, if one did) or error.
    pub(crate) fn finish(&self, attempts: u32, outcome: Result<Option<StatusCode>, &Error>) {
        self.span.record("attempts", attempts);
        match outcome {
            Ok(status) => {
                self.span.record("status", status.map(|s| s.as_u16()));
            }
            Err(err) => {
                self.span.record("status", err.status());
                self.span.record("error", err.kind());
                #[cfg(feature = "opentelemetry")]
                self.span.record("otel.status_code", "error");
            }
        }
    }
}

#[cfg(not(feature = "tracing"))]
impl CallSpan {
    pub(crate) fn request(_: &Method, _: &'static str, _: Option<&str>) -> Self {
        Self {}
    }

    pub(crate) fn refresh() -> Self {
        Self {}
    }

    pub(crate) fn current() -> Self {
        Self {}
    }

    pub(crate) fn instrument<F: Future>(&self, future: F) -> F {
        future
    }

    pub(crate) fn record_request_id(&self, _: Option<&str>) {}

    pub(crate) fn finish(&self, _: u32, _: Result<Option<StatusCode>, &Error>) {}
}

/// The span of a watch (`tasklane.watch`, INFO): open for as long as the stream is, with the
/// spans of its connections (`tasklane.request`, route `/tasks/events`) and its reconnections
/// inside it.
#[derive(Clone, Debug)]
pub(crate) struct WatchSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

#[cfg(feature = "tracing")]
impl WatchSpan {
    /// The span of a watch that starts after a cursor (`resumed`) or from now.
    pub(crate) fn new(resumed: bool) -> Self {
        let span = tracing::info_span!(
            target: "tasklane",
            "tasklane.watch",
            route = crate::client::route::EVENTS,
            resumed,
            connections = tracing::field::Empty,
            changes = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        Self { span }
    }

    /// Runs `future` in this span.
    pub(crate) fn instrument<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        tracing::Instrument::instrument(future, self.span.clone())
    }

    /// Records how far the watch has got: connections opened, changes delivered.
    pub(crate) fn progress(&self, connections: u32, changes: u64) {
        self.span.record("connections", connections);
        self.span.record("changes", changes);
    }

    /// Records the error that ended the watch.
    pub(crate) fn end(&self, err: &Error) {
        self.span.record("error", err.kind());
        self.span.in_scope(
            || tracing::info!(target: "tasklane", error = err.kind(), status = err.status(), "watch ended"),
        );
    }
}

#[cfg(not(feature = "tracing"))]
impl WatchSpan {
    pub(crate) fn new(_: bool) -> Self {
        Self {}
    }

    pub(crate) fn instrument<F: Future>(&self, future: F) -> F {
        future
    }

    pub(crate) fn progress(&self, _: u32, _: u64) {}

    pub(crate) fn end(&self, _: &Error) {}
}

/// Connection number `connection` of a watch is open; `resumed` when it was opened after a
/// cursor (`Last-Event-ID` or `since`).
pub(crate) fn watch_connected(connection: u32, resumed: bool) {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "tasklane", connection, resumed, "watch connected");
    #[cfg(not(feature = "tracing"))]
    let _ = (connection, resumed);
}

/// A watch's connection number `connection` was `lost`, or failed to open; the next attempt
/// comes after `wait`. Its `reason`: `closed` (the server ended the stream), `idle` (nothing
/// came for too long), or the kind of error, with the answer's `status` if one came.
pub(crate) fn watch_reconnecting(connection: u32, lost: &Lost, wait: Duration) {
    #[cfg(feature = "tracing")]
    {
        let (reason, status) = match lost {
            Lost::Closed => ("closed", None),
            Lost::Idle => ("idle", None),
            Lost::Failed(err) => (err.kind(), err.status()),
        };
        tracing::info!(target: "tasklane", connection, reason, status, wait_ms = millis(wait), "reconnecting");
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (connection, lost, wait);
}

/// Why a watch reconnects.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))] // only the trace reads the error
pub(crate) enum Lost {
    /// The server ended the stream.
    Closed,
    /// Nothing came, not even a keep-alive, for the watch's idle timeout.
    Idle,
    /// The connection broke, or could not be opened.
    Failed(Error),
}

/// Attempt `attempt` failed with `err`, and the next comes after `wait`.
pub(crate) fn retrying(attempt: u32, wait: Duration, err: &Error) {
    #[cfg(feature = "tracing")]
    tracing::info!(
        target: "tasklane",
        attempt,
        wait_ms = millis(wait),
        reason = err.kind(),
        status = err.status(),
        retry_after_ms = err.retry_after().map(millis),
        "retrying"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (attempt, wait, err);
}

/// Attempt `attempt` failed with `err`, and the wait before the next would pass the deadline.
pub(crate) fn no_time_to_retry(attempt: u32, wait: Duration, err: &Error) {
    #[cfg(feature = "tracing")]
    tracing::info!(
        target: "tasklane",
        attempt,
        wait_ms = millis(wait),
        reason = err.kind(),
        status = err.status(),
        "not retrying: the wait would pass the call's deadline"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (attempt, wait, err);
}

/// This call starts a refresh, for `cause`.
pub(crate) fn refresh_started(cause: RefreshCause) {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "tasklane", cause = cause.as_str(), "token refresh started");
    #[cfg(not(feature = "tracing"))]
    let _ = cause;
}

/// This call waits for a refresh another call started.
pub(crate) fn refresh_joined(cause: RefreshCause) {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "tasklane", cause = cause.as_str(), "token refresh joined: one is running");
    #[cfg(not(feature = "tracing"))]
    let _ = cause;
}

/// The tokens this call read have been replaced since: it takes the new ones, no refresh.
pub(crate) fn refresh_done_already() {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "tasklane", "token refresh not needed: the tokens were refreshed meanwhile");
}

/// The outcome of the refresh this call waited for.
pub(crate) fn refresh_finished<T>(outcome: &Result<T, Error>) {
    #[cfg(feature = "tracing")]
    match outcome {
        Ok(_) => tracing::info!(target: "tasklane", outcome = "refreshed", "token refresh finished"),
        Err(Error::RefreshFailed { source }) => tracing::warn!(
            target: "tasklane",
            outcome = "failed",
            error = source.kind(),
            status = source.status(),
            "token refresh finished"
        ),
        Err(err) => tracing::info!(
            target: "tasklane",
            outcome = "session_expired",
            status = err.status(),
            "token refresh finished"
        ),
    }
    #[cfg(not(feature = "tracing"))]
    let _ = outcome;
}

/// A refresh is still running, and the call goes ahead with the access token it has, which
/// is still good.
pub(crate) fn ahead_of_refresh() {
    #[cfg(feature = "tracing")]
    tracing::debug!(target: "tasklane", "token refresh still running: sending with the current token");
}

/// No refresh now: one failed moments ago, and the current access token is still good.
pub(crate) fn refresh_held_back() {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: "tasklane",
        "token refresh held back after a failed one: sending with the current token"
    );
}

/// Adds the W3C Trace Context of the current span to a request's headers: `traceparent`, and
/// `tracestate` when there is one. The span is the call's, which tracing-opentelemetry makes a
/// child of the application's span: the server's spans join the application's trace under it.
///
/// Written here rather than through OpenTelemetry's global propagator, which does nothing
/// until an application installs one: the server reads W3C Trace Context, so that is sent.
/// A span without an OpenTelemetry context (no tracing-opentelemetry layer) falls back to
/// OpenTelemetry's own current context, for applications that use its API directly; with
/// neither, nothing is sent.
#[cfg(feature = "opentelemetry")]
pub(crate) fn inject_trace_context(headers: &mut reqwest::header::HeaderMap) {
    use opentelemetry::trace::TraceContextExt as _;
    use reqwest::header::{HeaderName, HeaderValue};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    let mut context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        context = opentelemetry::Context::current();
    }
    let span = context.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return;
    }
    let traceparent = format!(
        "00-{}-{}-{:02x}",
        span_context.trace_id(),
        span_context.span_id(),
        span_context.trace_flags().to_u8()
    );
    let traceparent = HeaderValue::from_str(&traceparent).expect("hex digits and dashes");
    headers.insert(HeaderName::from_static("traceparent"), traceparent);
    let state = span_context.trace_state().header();
    // An empty state is not sent; one that is no valid header value is dropped, as the
    // specification allows.
    if let Some(state) = Some(state).filter(|s| !s.is_empty()).and_then(|s| HeaderValue::from_str(&s).ok()) {
        headers.insert(HeaderName::from_static("tracestate"), state);
    }
}

#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn inject_trace_context(_: &mut reqwest::header::HeaderMap) {}

#[cfg(feature = "tracing")]
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
