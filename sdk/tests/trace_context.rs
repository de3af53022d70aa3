//! With the `opentelemetry` feature, every request carries the W3C `traceparent` of the call's
//! span, so the server's spans continue the application's trace.
#![cfg(feature = "opentelemetry")]

mod common;

use common::*;
use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A `traceparent` header, read: version, trace id, parent (span) id, flags.
fn traceparent(request: &wiremock::Request) -> Option<(String, TraceId, SpanId, String)> {
    let value = request.headers.get("traceparent")?.to_str().unwrap().to_owned();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!((parts[1].len(), parts[2].len()), (32, 16), "{value}");
    Some((
        parts[0].to_owned(),
        TraceId::from_hex(parts[1]).unwrap(),
        SpanId::from_hex(parts[2]).unwrap(),
        parts[3].to_owned(),
    ))
}

/// A server whose task 1 is busy once, and which refreshes tokens.
async fn server() -> MockServer {
    let server = MockServer::start().await;
    mount_refresh(&server, "r0", "a1", "r1", 1).await;
    Mock::given(path("/tasks/1"))
        .respond_with(problem(503, "busy"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tasks/1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(task(1, "one")))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn every_request_carries_the_traceparent_of_the_applications_trace() {
    let provider = SdkTracerProvider::builder().build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let server = server().await;
    let client = builder(&server).tokens(expired("a0", "r0")).build().unwrap();

    let app = tracing::info_span!("handle a click");
    let app_context = app.context().span().span_context().clone();
    assert!(app_context.is_valid());
    client.tasks().get(1).instrument(app).await.unwrap();

    let requests = server.received_requests().await.unwrap();
    let sent: Vec<_> = requests.iter().map(|r| (r.url.path().to_owned(), traceparent(r))).collect();
    assert_eq!(
        sent.iter().map(|(route, _)| route.as_str()).collect::<Vec<_>>(),
        ["/auth/refresh", "/tasks/1", "/tasks/1"]
    );
    for (route, parent) in &sent {
        let (version, trace_id, _, flags) =
            parent.clone().unwrap_or_else(|| panic!("no traceparent on {route}"));
        assert_eq!(version, "00");
        assert_eq!(trace_id, app_context.trace_id(), "{route}: the application's trace");
        assert_eq!(flags, "01", "{route}: sampled, as the application's span is");
    }
    // The parent of the server's spans is the call's span (the refresh's, for the refresh),
    // under the application's: one span for both attempts of the call.
    let span_of = |i: usize| sent[i].1.as_ref().unwrap().2;
    assert_ne!(span_of(1), app_context.span_id());
    assert_eq!(span_of(1), span_of(2), "the attempts of one call");
    assert_ne!(span_of(0), span_of(1), "the refresh's request has a span of its own");
}

#[tokio::test]
async fn without_an_opentelemetry_context_no_traceparent_is_sent() {
    // A subscriber, but no OpenTelemetry layer: the spans have no OpenTelemetry context.
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry());
    let server = server().await;
    let client = builder(&server).tokens(expired("a0", "r0")).build().unwrap();

    client.tasks().get(1).instrument(tracing::info_span!("app")).await.unwrap();

    for request in server.received_requests().await.unwrap() {
        assert!(!request.headers.contains_key("traceparent"), "{}", request.url);
        assert!(!request.headers.contains_key("tracestate"), "{}", request.url);
    }
}
