//! What the client tells `tracing`: a span per call with its route, attempts, status and
//! request id; events for retries and token refreshes; and never a secret.
#![cfg(feature = "tracing")]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;
use tasklane::{Error, RetryPolicy};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A span as the subscriber saw it, with every field recorded on it so far.
#[derive(Clone, Debug)]
struct SpanSeen {
    name: &'static str,
    parent: Option<usize>,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
struct EventSeen {
    level: Level,
    /// The span it was recorded in, as an index into [`Seen::spans`].
    span: Option<usize>,
    message: String,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct Seen {
    /// Every span, in the order they were made (a closed span's id may be given to a new one,
    /// so they are not kept by id).
    spans: Vec<SpanSeen>,
    live: HashMap<Id, usize>,
    events: Vec<EventSeen>,
}

/// A layer that keeps the spans and events of the client (the `tasklane` target), and the
/// same as text, formatted by `tracing_subscriber::fmt` as an application's logs would be.
#[derive(Clone, Default)]
struct Capture {
    seen: Arc<Mutex<Seen>>,
    text: Arc<Mutex<Vec<u8>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut seen = self.seen.lock().unwrap();
        let parent =
            ctx.span(id).and_then(|span| span.parent()).and_then(|p| seen.live.get(&p.id()).copied());
        seen.spans.push(SpanSeen { name: attrs.metadata().name(), parent, fields });
        let index = seen.spans.len() - 1;
        seen.live.insert(id.clone(), index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut seen = self.seen.lock().unwrap();
        let index = seen.live[id];
        values.record(&mut Fields(&mut seen.spans[index].fields));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let mut seen = self.seen.lock().unwrap();
        let span = ctx.event_span(event).and_then(|span| seen.live.get(&span.id()).copied());
        seen.events.push(EventSeen { level: *event.metadata().level(), span, message, fields });
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        self.seen.lock().unwrap().live.remove(&id);
    }
}

struct TextWriter(Arc<Mutex<Vec<u8>>>);

impl Write for TextWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// Captures what the client records on this thread (the tests run on one: the refresh task
    /// the client spawns is recorded too) until the guard is dropped.
    fn start() -> (Capture, tracing::subscriber::DefaultGuard) {
        let capture = Capture::default();
        let text = Arc::clone(&capture.text);
        let ours = tracing_subscriber::filter::filter_fn(|meta| meta.target().starts_with("tasklane"));
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(move || TextWriter(Arc::clone(&text)))
            .with_ansi(false)
            .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
            .with_filter(ours.clone());
        let subscriber = tracing_subscriber::registry().with(capture.clone().with_filter(ours)).with(fmt);
        let guard = tracing::subscriber::set_default(subscriber);
        (capture, guard)
    }

    /// The spans named `name`.
    fn spans(&self, name: &str) -> Vec<(usize, SpanSeen)> {
        let seen = self.seen.lock().unwrap();
        seen.spans.iter().cloned().enumerate().filter(|(_, span)| span.name == name).collect()
    }

    /// The one span named `name`.
    #[track_caller]
    fn only_span(&self, name: &str) -> (usize, SpanSeen) {
        let mut spans = self.spans(name);
        assert_eq!(spans.len(), 1, "{spans:#?}");
        spans.pop().unwrap()
    }

    /// The events recorded in the span at `index`, in order.
    fn events_in(&self, index: usize) -> Vec<EventSeen> {
        self.seen.lock().unwrap().events.iter().filter(|e| e.span == Some(index)).cloned().collect()
    }

    fn text(&self) -> String {
        String::from_utf8(self.text.lock().unwrap().clone()).unwrap()
    }
}

/// The fields of a span or an event, as `name: value` pairs to compare in one assertion.
fn fields<'a>(all: &'a BTreeMap<String, String>, names: &[&'a str]) -> Vec<(&'a str, Option<&'a str>)> {
    names.iter().map(|name| (*name, all.get(*name).map(String::as_str))).collect()
}

/// The X-Request-Id of every request `server` received for `route`.
async fn sent_ids(server: &MockServer, route: &str) -> Vec<String> {
    let requests = server.received_requests().await.unwrap();
    requests
        .iter()
        .filter(|r| r.url.path() == route)
        .map(|r| r.headers["x-request-id"].to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_call_is_one_span_with_its_route_attempts_status_and_request_id() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/7"))
        .respond_with(problem(503, "busy"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/tasks/7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(task(7, "seven")))
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let (capture, _guard) = Capture::start();

    client.tasks().get(7).await.unwrap();

    let (index, span) = capture.only_span("tasklane.request");
    let id = sent_ids(&server, "/tasks/7").await[0].clone();
    assert_eq!(
        fields(&span.fields, &["method", "route", "attempts", "status", "request_id", "error"]),
        [
            ("method", Some("GET")),
            ("route", Some("/tasks/{id}")),
            ("attempts", Some("3")),
            ("status", Some("200")),
            ("request_id", Some(id.as_str())),
            ("error", None),
        ]
    );
    let retries = capture.events_in(index);
    assert_eq!(retries.len(), 2, "{retries:#?}");
    for (n, retry) in retries.iter().enumerate() {
        assert_eq!(retry.message, "retrying");
        assert_eq!(retry.level, Level::INFO);
        let attempt = (n + 1).to_string();
        assert_eq!(
            fields(&retry.fields, &["attempt", "reason", "status"]),
            [("attempt", Some(attempt.as_str())), ("reason", Some("server")), ("status", Some("503"))]
        );
        let wait: u64 = retry.fields["wait_ms"].parse().unwrap();
        assert!(wait <= 20, "the test policy waits 20 ms at most: {wait}");
    }
}

#[tokio::test]
async fn a_failed_call_records_its_status_and_error_kind() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE")).and(path("/tasks/9")).respond_with(problem(404, "no")).mount(&server).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let (capture, _guard) = Capture::start();

    client.tasks().delete(9).await.unwrap_err();

    let (index, span) = capture.only_span("tasklane.request");
    assert_eq!(
        fields(&span.fields, &["method", "route", "attempts", "status", "error"]),
        [
            ("method", Some("DELETE")),
            ("route", Some("/tasks/{id}")),
            ("attempts", Some("1")),
            ("status", Some("404")),
            ("error", Some("not_found")),
        ]
    );
    assert!(capture.events_in(index).is_empty());
}

/// Each route is named by its template, whatever the ids and the query of the URL.
#[tokio::test]
async fn routes_are_templates() {
    let server = MockServer::start().await;
    let page = |ids: std::ops::RangeInclusive<i64>| json!(ids.map(|id| task(id, "t")).collect::<Vec<_>>());
    Mock::given(method("GET"))
        .and(path("/tasks/"))
        .and(query_param("offset", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(3..=3)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tasks/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(page(1..=2))
                .insert_header("link", r#"</tasks/?limit=2&offset=2>; rel="next""#),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/tasks/"))
        .respond_with(ResponseTemplate::new(201).set_body_json(task(4, "new")))
        .mount(&server)
        .await;
    Mock::given(path("/auth/me"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": 1, "username": "ada", "created_at": "2026-11-26T17:12:54Z"
        })))
        .mount(&server)
        .await;
    Mock::given(path("/health"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "ok"})))
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let (capture, _guard) = Capture::start();

    let first = client.tasks().list().status(tasklane::TaskStatus::Pending).limit(2).await.unwrap();
    client.tasks().next_page(&first).await.unwrap().unwrap();
    client.tasks().create(tasklane::NewTask::new("new")).await.unwrap();
    client.me().await.unwrap();
    client.health().await.unwrap();

    let calls: Vec<_> = capture
        .spans("tasklane.request")
        .into_iter()
        .map(|(_, span)| format!("{} {}", span.fields["method"], span.fields["route"]))
        .collect();
    assert_eq!(calls, ["GET /tasks/", "GET /tasks/", "POST /tasks/", "GET /auth/me", "GET /health"]);
}

#[tokio::test]
async fn concurrent_calls_record_who_started_the_refresh_who_joined_it_and_its_outcome() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/refresh"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(pair("a1", "r1")).set_delay(Duration::from_millis(50)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/tasks/1"))
        .and(header("authorization", "Bearer a1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(task(1, "one")))
        .expect(3)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(expired("a0", "r0")).build().unwrap();
    let (capture, _guard) = Capture::start();

    let calls = tasklane::futures::future::join_all((0..3).map(|_| client.tasks().get(1))).await;
    assert!(calls.iter().all(Result::is_ok), "{calls:?}");

    let spans = capture.spans("tasklane.request");
    assert_eq!(spans.len(), 3);
    let mut started = Vec::new();
    for (index, _) in &spans {
        let events = capture.events_in(*index);
        let messages: Vec<_> = events.iter().map(|e| e.message.as_str()).collect();
        match messages[..] {
            ["token refresh started", "token refresh finished"] => started.push(*index),
            ["token refresh joined: one is running", "token refresh finished"] => {}
            _ => panic!("{events:#?}"),
        }
        assert_eq!(events[0].fields["cause"], "expiring");
        assert_eq!(events[1].fields["outcome"], "refreshed");
    }
    assert_eq!(started.len(), 1, "one call starts the refresh, the others join it");
    // The refresh's own request: a span of its own, under the call that started it.
    let (_, refresh) = capture.only_span("tasklane.refresh");
    assert_eq!(refresh.parent, Some(started[0]));
    let id = sent_ids(&server, "/auth/refresh").await.remove(0);
    assert_eq!(
        fields(&refresh.fields, &["method", "route", "attempts", "status", "request_id"]),
        [
            ("method", Some("POST")),
            ("route", Some("/auth/refresh")),
            ("attempts", Some("1")),
            ("status", Some("200")),
            ("request_id", Some(id.as_str())),
        ]
    );
}

#[tokio::test]
async fn a_refused_token_and_a_failed_refresh_are_recorded() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/refresh"))
        .respond_with(problem(503, "redis down"))
        .mount(&server)
        .await;
    Mock::given(path("/tasks/1")).respond_with(problem(401, "token expired")).mount(&server).await;
    let client =
        builder(&server).tokens(fresh("a0", "r0")).retry_policy(RetryPolicy::disabled()).build().unwrap();
    let (capture, _guard) = Capture::start();

    let err = client.tasks().get(1).await.unwrap_err();

    assert!(matches!(err, Error::RefreshFailed { .. }), "{err:?}");
    let (index, span) = capture.only_span("tasklane.request");
    assert_eq!(span.fields["error"], "refresh_failed");
    let events = capture.events_in(index);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(
        (events[0].message.as_str(), events[0].fields["cause"].as_str()),
        ("token refresh started", "refused")
    );
    assert_eq!(events[1].level, Level::WARN);
    assert_eq!(
        fields(&events[1].fields, &["outcome", "error", "status"]),
        [("outcome", Some("failed")), ("error", Some("server")), ("status", Some("503"))]
    );
    let (_, refresh) = capture.only_span("tasklane.refresh");
    assert_eq!((refresh.fields["status"].as_str(), refresh.fields["error"].as_str()), ("503", "server"));
}

#[tokio::test]
async fn a_rejected_refresh_is_recorded_as_the_session_expiring() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/refresh"))
        .respond_with(problem(401, "reused"))
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let (capture, _guard) = Capture::start();

    client.refresh().await.unwrap_err();

    // The explicit refresh is a call of its own, with the request's span under it.
    let (index, call) = capture.only_span("tasklane.request");
    assert_eq!(
        fields(&call.fields, &["method", "route", "error"]),
        [("method", Some("POST")), ("route", Some("/auth/refresh")), ("error", Some("session_expired"))]
    );
    let events = capture.events_in(index);
    assert_eq!(events[0].fields["cause"], "requested");
    assert_eq!(events[1].fields["outcome"], "session_expired");
    assert_eq!(capture.only_span("tasklane.refresh").1.parent, Some(index));
}

#[tokio::test]
async fn a_retry_the_deadline_leaves_no_time_for_is_recorded() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/1"))
        .respond_with(problem(429, "slow down").insert_header("retry-after", "10"))
        .mount(&server)
        .await;
    let client = builder(&server)
        .tokens(fresh("a0", "r0"))
        .retry_policy(RetryPolicy::new().max_delay(Duration::from_secs(60)))
        .call_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let (capture, _guard) = Capture::start();

    client.tasks().get(1).await.unwrap_err();

    let (index, span) = capture.only_span("tasklane.request");
    assert_eq!(
        fields(&span.fields, &["attempts", "status", "error"]),
        [("attempts", Some("1")), ("status", None), ("error", Some("deadline_exceeded"))]
    );
    let events = capture.events_in(index);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(events[0].message.contains("deadline"), "{events:#?}");
    assert_eq!(
        fields(&events[0].fields, &["wait_ms", "reason", "status"]),
        [("wait_ms", Some("10000")), ("reason", Some("rate_limited")), ("status", Some("429"))]
    );
}

/// Tokens, passwords and queries are the caller's secrets: none of them is recorded, in any
/// span, event or the text a `fmt` subscriber writes, whatever happens to the calls.
#[tokio::test]
async fn nothing_recorded_holds_a_secret() {
    const SECRETS: [&str; 5] =
        ["access-secret-1", "refresh-secret-1", "access-secret-2", "refresh-secret-2", "hunter2-password"];
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/login"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pair("access-secret-1", "refresh-secret-1")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/refresh"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pair("access-secret-2", "refresh-secret-2")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/logout"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    // The first page links to a next one whose query holds something private; the server is
    // busy once for it, and refuses the first token once.
    Mock::given(path("/tasks/"))
        .and(query_param("q", "secret"))
        .respond_with(problem(503, "busy"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/tasks/"))
        .and(query_param("q", "secret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([task(2, "two")])))
        .mount(&server)
        .await;
    Mock::given(path("/tasks/"))
        .and(header("authorization", "Bearer access-secret-1"))
        .respond_with(problem(401, "token expired"))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(path("/tasks/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([task(1, "one")]))
                .insert_header("link", r#"</tasks/?q=secret&offset=1>; rel="next""#),
        )
        .with_priority(3)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();
    let (capture, _guard) = Capture::start();

    client.login("ada", "hunter2-password").await.unwrap();
    let first = client.tasks().list().limit(1).await.unwrap();
    client.tasks().next_page(&first).await.unwrap().unwrap();
    client.refresh().await.unwrap();
    client.logout().await.unwrap();

    // Everything happened, and was recorded.
    let text = capture.text();
    for expected in ["/auth/login", "/auth/refresh", "retrying", "token refresh started", "/auth/logout"] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    let seen = capture.seen.lock().unwrap();
    let recorded = seen
        .spans
        .iter()
        .flat_map(|s| s.fields.values())
        .chain(seen.events.iter().flat_map(|e| e.fields.values().chain([&e.message])));
    for value in recorded.chain([&text]) {
        for secret in SECRETS.iter().chain(&["q=secret", "secret"]) {
            assert!(!value.contains(secret), "{secret:?} recorded in {value:?}");
        }
    }
}

/// A watch is a span (`tasklane.watch`) for as long as it lasts, with a `tasklane.request`
/// span under it for each connection, an event for each connection and each reconnection
/// (why, and after how long), and the error that ended it.
#[tokio::test]
async fn a_watch_is_a_span_with_its_connections_and_reconnections() {
    let server = MockServer::start().await;
    let answers = std::sync::atomic::AtomicUsize::new(0);
    let change = |cursor: &str, id| {
        let data = json!({"type": "upsert", "task": task(id, "t")});
        format!("id:{cursor}\nevent:change\ndata:{data}\n\n")
    };
    let (first, second) = (change("c1.1", 1), change("c1.2", 2));
    Mock::given(path("/tasks/events"))
        .respond_with(move |_: &wiremock::Request| {
            let events =
                |body: &str| ResponseTemplate::new(200).set_body_raw(body.to_owned(), "text/event-stream");
            match answers.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => events(&first),
                1 => problem(503, "live events are unavailable").insert_header("retry-after", "0"),
                2 => events(&second),
                _ => problem(410, "too old"),
            }
        })
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let (capture, _guard) = Capture::start();

    let mut watch = client.tasks().watch(None);
    use tasklane::futures::StreamExt as _;
    assert_eq!(watch.next().await.unwrap().unwrap().cursor, "c1.1");
    assert_eq!(watch.next().await.unwrap().unwrap().cursor, "c1.2");
    assert!(matches!(watch.next().await, Some(Err(Error::Gone { .. }))));
    drop(watch);

    let (index, span) = capture.only_span("tasklane.watch");
    assert_eq!(
        fields(&span.fields, &["route", "resumed", "connections", "changes", "error"]),
        [
            ("route", Some("/tasks/events")),
            ("resumed", Some("false")),
            ("connections", Some("4")),
            ("changes", Some("2")),
            ("error", Some("gone")),
        ]
    );
    let requests = capture.spans("tasklane.request");
    let ids = sent_ids(&server, "/tasks/events").await;
    assert_eq!(requests.len(), 4);
    for ((_, request), (id, status)) in requests.iter().zip(ids.iter().zip(["200", "503", "200", "410"])) {
        assert_eq!(request.parent, Some(index));
        assert_eq!(
            fields(&request.fields, &["method", "route", "status", "request_id"]),
            [
                ("method", Some("GET")),
                ("route", Some("/tasks/events")),
                ("status", Some(status)),
                ("request_id", Some(id.as_str()))
            ]
        );
    }
    let events = capture.events_in(index);
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            let field = |name: &str| e.fields.get(name).map(String::as_str).unwrap_or("-");
            (e.level, e.message.as_str(), field("connection"), field("reason"), field("status"))
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Level::DEBUG, "watch connected", "1", "-", "-"),
            (Level::INFO, "reconnecting", "1", "closed", "-"),
            (Level::INFO, "reconnecting", "2", "server", "503"),
            (Level::DEBUG, "watch connected", "3", "-", "-"),
            (Level::INFO, "reconnecting", "3", "closed", "-"),
            (Level::INFO, "watch ended", "-", "-", "410"),
        ]
    );
    // A connection that brought a change is replaced at once; a refusal waits (its
    // Retry-After, 0 here, plus the test policy's jitter of 20 ms at most; 50 ms at least).
    assert_eq!(events[1].fields["wait_ms"], "0");
    assert_eq!(events[2].fields["wait_ms"], "50");
    assert_eq!(events[5].fields["error"], "gone");
}
