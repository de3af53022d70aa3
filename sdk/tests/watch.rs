//! `tasks().watch()`: the live events as a stream that reconnects by itself, resumes from the
//! last change it yielded, refreshes the token it needs once, backs off, and ends only on an
//! error it cannot mend; then a replica kept live through it, against the real server.
//!
//! Real time throughout, with small waits: tokio's paused clock jumps ahead whenever the test's
//! runtime waits for a socket, which would fire the watch's timeouts while an answer is on
//! its way.
#![cfg(feature = "client")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt as _;
use serde_json::json;
use tasklane::{
    Change, Client, Error, LiveChange, MemoryTokenStore, NewTask, Replica, TaskStatus, TaskUpdate, Watch,
};
use tasklane_server::rocket::fairing::AdHoc;
use tasklane_server::testing::TestServer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A `change` event: the task `id` titled `title`, with `cursor` as its id.
fn upsert(cursor: &str, id: i64, title: &str) -> String {
    let data = json!({"type": "upsert", "task": task(id, title)});
    format!("id:{cursor}\nevent:change\ndata:{data}\n\n")
}

/// A `change` event: the task `id` deleted.
fn deleted(cursor: &str, id: i64) -> String {
    format!("id:{cursor}\nevent:change\ndata:{}\n\n", json!({"type": "delete", "id": id}))
}

const KEEP_ALIVE: &str = ": keep-alive\n\n";

/// A `200 text/event-stream` answer with `body`, after which the server closes the stream.
fn events(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "text/event-stream")
}

/// A stream that has not answered yet when the test is over.
fn hanging() -> ResponseTemplate {
    events("").set_delay(Duration::from_secs(60))
}

/// The next item of `watch`, within 10 s.
async fn next(watch: &mut Watch) -> Option<tasklane::Result<LiveChange>> {
    tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("the watch said nothing in 10 s")
}

/// The next change of `watch`, which must be one.
async fn change(watch: &mut Watch) -> LiveChange {
    next(watch).await.expect("the watch ended").expect("a change")
}

/// The error `watch` ends with; it must then be over.
async fn end(watch: &mut Watch) -> Error {
    let err = next(watch).await.expect("an error before the end").expect_err("an error, not a change");
    assert!(next(watch).await.is_none(), "the watch went on after {err:?}");
    assert!(futures::stream::FusedStream::is_terminated(watch));
    err
}

/// `(id, title)` of an upsert, `(id, "")` of a delete, with its cursor.
fn seen(live: &LiveChange) -> (String, i64, String) {
    let title = match &live.change {
        Change::Upsert { task } => task.title.clone(),
        Change::Delete { .. } => String::new(),
    };
    (live.cursor.clone(), live.task_id(), title)
}

fn owned(cursor: &str, id: i64, title: &str) -> (String, i64, String) {
    (cursor.to_owned(), id, title.to_owned())
}

/// The value of header `name` on each request to the live events, in order.
async fn events_header(server: &MockServer, name: &str) -> Vec<Option<String>> {
    let requests = server.received_requests().await.unwrap();
    requests
        .iter()
        .filter(|r| r.url.path() == "/tasks/events")
        .map(|r| r.headers.get(name).map(|v| v.to_str().unwrap().to_owned()))
        .collect()
}

/// A stream the server ends is opened again with `Last-Event-ID` set to the last change
/// yielded, and the `since` the watch began with still in the URL (as a reconnecting
/// EventSource sends it): the server resumes right after that change. Keep-alive comments,
/// `retry` fields and event types the client does not know are passed over, and the cursor of
/// an unknown event is not taken for one of a change.
#[tokio::test]
async fn a_closed_stream_is_reopened_after_the_last_change_yielded() {
    let server = MockServer::start().await;
    let first = [
        KEEP_ALIVE,
        &upsert("c1.1", 1, "one"),
        "retry: 5\n\n",
        KEEP_ALIVE,
        &deleted("c1.2", 9),
        "id:c1.3\nevent:something-new\ndata:{}\n\n",
        KEEP_ALIVE,
    ]
    .concat();
    Mock::given(method("GET"))
        .and(path("/tasks/events"))
        .respond_with(events(&first))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/tasks/events"))
        .and(header("last-event-id", "c1.2"))
        .respond_with(events(&[KEEP_ALIVE, &upsert("c1.4", 2, "two")].concat()))
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/tasks/events"))
        .and(header("last-event-id", "c1.4"))
        .respond_with(hanging())
        .with_priority(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let mut watch = client.tasks().watch(Some("c1.0"));
    let got = vec![seen(&change(&mut watch).await), seen(&change(&mut watch).await)];
    assert_eq!(got, [owned("c1.1", 1, "one"), owned("c1.2", 9, "")]);
    assert_eq!(seen(&change(&mut watch).await), owned("c1.4", 2, "two"));
    // Pulled: the third connection opens when the next change is asked for (it hangs here).
    assert!(tokio::time::timeout(Duration::from_millis(300), watch.next()).await.is_err());

    assert_eq!(
        events_header(&server, "last-event-id").await,
        [None, Some("c1.2".to_owned()), Some("c1.4".to_owned())]
    );
    let requests = server.received_requests().await.unwrap();
    for request in requests.iter().filter(|r| r.url.path() == "/tasks/events") {
        assert_eq!(request.url.query(), Some("since=c1.0"));
        assert_eq!(request.headers["accept"], "text/event-stream");
        assert_eq!(request.headers["authorization"], "Bearer a0");
    }
    // Each connection is a request of its own, with its own id.
    let ids = events_header(&server, "x-request-id").await;
    assert!(ids[0].is_some() && ids[0] != ids[1] && ids[1] != ids[2], "{ids:?}");
}

/// The server ends the stream when the access token expires; the reconnection is refused with
/// 401, while other calls of the same client are refused too. One refresh serves them all,
/// and the watch resumes after the last change it yielded, with the new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_that_expires_is_refreshed_once_and_the_watch_resumes() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/events"))
        .and(header("authorization", "Bearer a0"))
        .respond_with(events(&[upsert("c1.1", 1, "one"), upsert("c1.2", 2, "two")].concat()))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/tasks/events"))
        .and(header("authorization", "Bearer a0"))
        .respond_with(problem(401, "the access token has expired; refresh it"))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(path("/tasks/events"))
        .and(header("authorization", "Bearer a1"))
        .and(header("last-event-id", "c1.2"))
        .respond_with(events(&upsert("c1.3", 3, "three")))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/tasks/events"))
        .and(header("authorization", "Bearer a1"))
        .and(header("last-event-id", "c1.3"))
        .respond_with(hanging())
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/tasks/1"))
        .and(header("authorization", "Bearer a0"))
        .respond_with(problem(401, "expired"))
        .mount(&server)
        .await;
    Mock::given(path("/tasks/1"))
        .and(header("authorization", "Bearer a1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(task(1, "one")))
        .mount(&server)
        .await;
    // Slow, so that the calls and the watch pile up behind it.
    Mock::given(method("POST"))
        .and(path("/auth/refresh"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(pair("a1", "r1")).set_delay(Duration::from_millis(200)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let store = MemoryTokenStore::new();
    let client = builder(&server).tokens(fresh("a0", "r0")).token_store(store.clone()).build().unwrap();

    let mut watch = client.tasks().watch(None);
    assert_eq!(seen(&change(&mut watch).await).0, "c1.1");
    assert_eq!(seen(&change(&mut watch).await).0, "c1.2");
    let calls = concurrently(8, || {
        let client = client.clone();
        async move { client.tasks().get(1).await }
    });
    let (calls, third) = tokio::join!(calls, change(&mut watch));

    assert_eq!(seen(&third), owned("c1.3", 3, "three"));
    for call in calls {
        assert_eq!(call.unwrap().id, 1);
    }
    assert_eq!(received(&server, "/auth/refresh").await, 1, "one refresh for the watch and the calls");
    assert_eq!(store.get().unwrap().refresh_token().expose(), "r1");
}

/// A connection refused with 503 or 429 is tried again once the server's `Retry-After` has
/// passed; a 502 without one after the client's (short, here) backoff. Nothing is lost.
#[tokio::test]
async fn refusals_are_retried_after_their_retry_after() {
    let server = MockServer::start().await;
    let times = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(AtomicUsize::new(0));
    let (seen_at, count) = (times.clone(), answers.clone());
    Mock::given(path("/tasks/events"))
        .respond_with(move |_: &Request| {
            seen_at.lock().unwrap().push(Instant::now());
            match count.fetch_add(1, Ordering::SeqCst) {
                0 => problem(503, "live events are unavailable for the moment")
                    .insert_header("retry-after", "1"),
                1 => problem(429, "at most 10 streams").insert_header("retry-after", "1"),
                2 => problem(502, "bad gateway"),
                3 => events(&upsert("c1.1", 1, "one")),
                _ => hanging(),
            }
        })
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let mut watch = client.tasks().watch(Some("c1.0"));
    assert_eq!(seen(&change(&mut watch).await), owned("c1.1", 1, "one"));

    let times = times.lock().unwrap().clone();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_secs(1), "the 503's Retry-After: {gaps:?}");
    assert!(gaps[1] >= Duration::from_secs(1), "the 429's Retry-After: {gaps:?}");
    // The test policy's backoff is 20 ms at most.
    assert!(gaps[2] < Duration::from_millis(500), "a 502 without Retry-After: {gaps:?}");
}

/// A stream refused with 401, whose refresh the server refuses too: the session is over, the
/// store is cleared, and the watch ends with `SessionExpired`.
#[tokio::test]
async fn a_refused_refresh_ends_the_watch_with_session_expired() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/events")).respond_with(problem(401, "expired")).expect(1).mount(&server).await;
    Mock::given(method("POST"))
        .and(path("/auth/refresh"))
        .respond_with(problem(401, "the refresh token is not valid"))
        .expect(1)
        .mount(&server)
        .await;
    let store = MemoryTokenStore::from(fresh("a0", "r0"));
    let client = builder(&server).tokens(fresh("a0", "r0")).token_store(store.clone()).build().unwrap();

    let err = end(&mut client.tasks().watch(Some("c1.0"))).await;
    assert!(matches!(err, Error::SessionExpired { response: Some(_) }), "{err:?}");
    assert_eq!(store.get(), None);

    // Without a session, a watch ends at once, sending nothing.
    let err = end(&mut client.tasks().watch(None)).await;
    assert!(matches!(err, Error::SessionExpired { response: None }), "{err:?}");
    assert_eq!(received(&server, "/tasks/events").await, 1);
}

/// A stream refused with 401 even with the token of a refresh that succeeded: the watch ends
/// with `Unauthorized`, as any call would.
#[tokio::test]
async fn a_token_refused_after_a_refresh_ends_the_watch() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/events")).respond_with(problem(401, "no")).expect(2).mount(&server).await;
    mount_refresh(&server, "r0", "a1", "r1", 1).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let err = end(&mut client.tasks().watch(None)).await;
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert_eq!(
        events_header(&server, "authorization").await,
        [Some("Bearer a0".into()), Some("Bearer a1".into())]
    );
}

/// A refresh that fails for a reason that may pass (the server overloaded) keeps the session,
/// and the watch tries again: the next refresh succeeds.
#[tokio::test]
async fn a_refresh_that_fails_for_a_passing_reason_is_tried_again() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/events"))
        .and(header("authorization", "Bearer a0"))
        .respond_with(problem(401, "expired"))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(path("/tasks/events"))
        .and(header("authorization", "Bearer a1"))
        .respond_with(events(&upsert("c1.1", 1, "one")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/refresh"))
        .respond_with(problem(503, "busy"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_refresh(&server, "r0", "a1", "r1", 1).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let mut watch = client.tasks().watch(None);
    assert_eq!(seen(&change(&mut watch).await), owned("c1.1", 1, "one"));
    assert_eq!(received(&server, "/auth/refresh").await, 2);
}

/// 410 (the cursor is older than the server remembers deletions for) ends the watch with
/// `Gone`, and so do the other refusals that the same request would get again (422, 404):
/// each after a single request.
#[tokio::test]
async fn gone_and_other_refusals_end_the_watch() {
    for (status, since) in [(410, "c1.1"), (422, "nonsense"), (404, "c1.1")] {
        let server = MockServer::start().await;
        Mock::given(path("/tasks/events"))
            .and(query_param("since", since))
            .respond_with(problem(status, "no"))
            .expect(1)
            .mount(&server)
            .await;
        let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

        let err = end(&mut client.tasks().watch(Some(since))).await;
        assert_eq!(err.status(), Some(status), "{err:?}");
        match status {
            410 => assert!(matches!(err, Error::Gone { .. }), "{err:?}"),
            422 => assert!(matches!(err, Error::Validation { .. }), "{err:?}"),
            _ => assert!(matches!(err, Error::NotFound { .. }), "{err:?}"),
        }
    }
}

/// An answer that is not an event stream (a proxy's page) ends the watch with `Decode`.
#[tokio::test]
async fn an_answer_that_is_no_event_stream_ends_the_watch() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/events"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("<html>hello</html>", "text/html"))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let err = end(&mut client.tasks().watch(None)).await;
    assert!(matches!(err, Error::Decode { status: 200, .. }), "{err:?}");
}

// ---- Connections that go quiet, over a socket the test controls ----

/// What a scripted connection does, in order.
#[derive(Clone)]
enum Step {
    Send(String),
    Wait(Duration),
}

/// A server whose `n`th connection is answered by the `n`th script (then held open, silent,
/// until the client goes away); it keeps each request's head, and counts the connections the
/// client closed.
struct Scripted {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
    closed: Arc<AtomicUsize>,
}

impl Scripted {
    async fn start(scripts: Vec<Vec<Step>>) -> Scripted {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (heads, closed) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicUsize::new(0)));
        let (all_heads, all_closed) = (heads.clone(), closed.clone());
        tokio::spawn(async move {
            for script in scripts {
                let (mut socket, _) = listener.accept().await.unwrap();
                let (heads, closed) = (all_heads.clone(), all_closed.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    heads.lock().unwrap().push(String::from_utf8(head).unwrap().to_lowercase());
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";
                    if socket.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    for step in script {
                        match step {
                            Step::Send(text) => {
                                if socket.write_all(text.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                            Step::Wait(wait) => tokio::time::sleep(wait).await,
                        }
                    }
                    // Silent from now on; the client closing is the end of the connection.
                    let _ = socket.read(&mut byte).await;
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Scripted { url, heads, closed }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A connection on which nothing comes for the idle timeout is taken for dead and replaced,
/// resuming after the last change; one that gets keep-alives is kept, however long it lasts:
/// neither the call timeout nor the client's request timeout cuts a stream.
#[tokio::test]
async fn a_silent_connection_is_replaced_and_keep_alives_keep_one() {
    let mut keep_alives = Vec::new();
    for _ in 0..8 {
        keep_alives.extend([Step::Wait(Duration::from_millis(150)), Step::Send(KEEP_ALIVE.into())]);
    }
    let second =
        [vec![Step::Send(KEEP_ALIVE.into())], keep_alives, vec![Step::Send(upsert("c1.2", 2, "two"))]];
    let server = Scripted::start(vec![vec![Step::Send(upsert("c1.1", 1, "one"))], second.concat()]).await;
    let client = Client::builder(&server.url)
        .retry_policy(fast_retries())
        .tokens(fresh("a0", "r0"))
        .call_timeout(Duration::from_millis(300))
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();

    let mut watch = client.tasks().watch(None).idle_timeout(Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(seen(&change(&mut watch).await), owned("c1.1", 1, "one"));
    assert_eq!(seen(&change(&mut watch).await), owned("c1.2", 2, "two"));

    let elapsed = started.elapsed();
    // The first connection went silent for the idle timeout; the second lasted longer than
    // the call timeout and the request timeout, kept alive by its comments.
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    let heads = server.heads();
    assert_eq!(heads.len(), 2, "{heads:#?}");
    assert!(!heads[0].contains("last-event-id"), "{}", heads[0]);
    assert!(heads[1].contains("last-event-id: c1.1\r\n"), "{}", heads[1]);
    assert!(heads[1].starts_with("get /tasks/events http/1.1\r\n"), "{}", heads[1]);
    // The dead connection was closed by the client, and dropping the watch closes the other.
    eventually(|| async { server.closed.load(Ordering::SeqCst) == 1 }).await;
    drop(watch);
    eventually(|| async { server.closed.load(Ordering::SeqCst) == 2 }).await;
}

/// A watch is `Send + 'static`: it can run on a task of its own.
#[tokio::test]
async fn a_watch_moves_to_a_task_of_its_own() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/events"))
        .and(header("last-event-id", "c1.1"))
        .respond_with(hanging())
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/tasks/events")).respond_with(events(&upsert("c1.1", 1, "one"))).mount(&server).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let watch = client.tasks().watch(None);
    let first = tokio::spawn(async move { watch.take(1).collect::<Vec<_>>().await }).await.unwrap();
    assert_eq!(first.into_iter().map(|c| c.unwrap().cursor).collect::<Vec<_>>(), ["c1.1"]);
}

// ---- Against the real server ----

/// The real server (on a temporary SQLite database), counting the streams it opened.
struct Server {
    /// Stops the server when the test drops it.
    _server: TestServer,
    url: String,
    streams: Arc<AtomicUsize>,
}

impl Server {
    async fn start(access_ttl: Duration) -> Server {
        let streams = Arc::new(AtomicUsize::new(0));
        let counted = streams.clone();
        let server = TestServer::builder()
            .access_token_ttl(access_ttl)
            .attach(AdHoc::on_response("count streams", move |req, res| {
                let counted = counted.clone();
                Box::pin(async move {
                    if req.uri().path() == "/tasks/events" && res.status().code == 200 {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                })
            }))
            .start()
            .await;
        Server { url: server.url().to_owned(), _server: server, streams }
    }
}

/// Every task of the user, as the server lists them, by id.
async fn server_tasks(client: &Client) -> Vec<tasklane::Task> {
    let mut tasks: Vec<_> = client.tasks().list().limit(100).stream().map(|t| t.unwrap()).collect().await;
    tasks.sort_by_key(|t| t.id);
    tasks
}

/// Two clients of one user: what one writes, the other's watch sees, in order, each change
/// with a cursor of its own; and a replica kept live through the watch equals the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_sees_the_writes_of_the_first_as_they_happen() {
    let server = Server::start(Duration::from_secs(900)).await;
    let writer = Client::new(&server.url).unwrap();
    writer.register("live-e2e", "correct horse").await.unwrap();
    let watcher = Client::new(&server.url).unwrap();
    watcher.login("live-e2e", "correct horse").await.unwrap();
    writer.tasks().create(NewTask::new("before the watch")).await.unwrap();

    let mut replica = Replica::new();
    replica.sync(&watcher).await.unwrap();
    let mut watch = watcher.tasks().watch(replica.cursor());
    let mut cursors = vec![replica.cursor().unwrap().to_owned()];
    let mut apply = |replica: &mut Replica, live: LiveChange| {
        assert!(!cursors.contains(&live.cursor), "{} came twice", live.cursor);
        cursors.push(live.cursor.clone());
        replica.apply_change(live)
    };

    // One write at a time: each is seen before the next is made.
    let task = writer.tasks().create(NewTask::new("water the plants")).await.unwrap();
    let live = change(&mut watch).await;
    assert_eq!(live.change, Change::Upsert { task: task.clone().into_inner() });
    assert_eq!(apply(&mut replica, live), None, "new to the replica");

    let renamed = writer.tasks().patch(task.id, TaskUpdate::new().title("water the balcony")).await.unwrap();
    let live = change(&mut watch).await;
    assert_eq!(live.change, Change::Upsert { task: renamed.clone().into_inner() });
    assert_eq!(apply(&mut replica, live).map(|t| t.title), Some("water the plants".to_owned()));

    let done = writer.tasks().patch(task.id, TaskUpdate::new().status(TaskStatus::Done)).await.unwrap();
    let live = change(&mut watch).await;
    assert_eq!(live.change, Change::Upsert { task: done.clone().into_inner() });
    apply(&mut replica, live);

    writer.tasks().delete(task.id).await.unwrap();
    let live = change(&mut watch).await;
    assert_eq!(live.change, Change::Delete { id: task.id });
    assert_eq!(apply(&mut replica, live).map(|t| t.status), Some(TaskStatus::Done));
    assert_eq!(replica.tasks().values().cloned().collect::<Vec<_>>(), server_tasks(&writer).await);

    // A burst, without waiting: the watch may bring several writes to a task as one change
    // (its latest state), but the replica ends equal to the server.
    let mut made = Vec::new();
    for n in 0..6 {
        made.push(writer.tasks().create(NewTask::new(format!("burst {n}"))).await.unwrap().id);
    }
    writer.tasks().patch(made[1], TaskUpdate::new().status(TaskStatus::InProgress)).await.unwrap();
    writer.tasks().delete(made[2]).await.unwrap();
    writer.tasks().update(made[3], TaskUpdate::new().title("burst 3, renamed")).await.unwrap();
    let expected = server_tasks(&writer).await;
    while replica.tasks().values().cloned().collect::<Vec<_>>() != expected {
        let live = change(&mut watch).await;
        apply(&mut replica, live);
    }
    // Nothing more than that is pending, and a fresh sync agrees with the live replica.
    assert!(tokio::time::timeout(Duration::from_millis(300), watch.next()).await.is_err());
    let mut fresh = Replica::new();
    fresh.sync(&watcher).await.unwrap();
    assert_eq!(fresh.tasks(), replica.tasks());
    assert_eq!(server.streams.load(Ordering::SeqCst), 1, "one connection did it all");
}

/// Access tokens of 2 s: the server ends each stream when its token expires, and the watch
/// refreshes and reconnects by itself, again and again, losing and repeating nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_outlives_its_access_tokens() {
    let server = Server::start(Duration::from_secs(2)).await;
    let writer = Client::new(&server.url).unwrap();
    writer.register("short-lived", "correct horse").await.unwrap();
    let watcher = Client::new(&server.url).unwrap();
    watcher.login("short-lived", "correct horse").await.unwrap();
    let first = watcher.tasks().changes(None).await.unwrap();

    let mut watch = watcher.tasks().watch(Some(&first.cursor));
    let writes = tokio::spawn(async move {
        let mut made = Vec::new();
        for n in 0..12 {
            made.push(writer.tasks().create(NewTask::new(format!("task {n}"))).await.unwrap().id);
            tokio::time::sleep(Duration::from_millis(450)).await;
        }
        made
    });
    let mut seen = Vec::new();
    while seen.len() < 12 {
        let live = change(&mut watch).await;
        assert!(matches!(live.change, Change::Upsert { .. }), "{live:?}");
        seen.push(live.task_id());
    }
    assert_eq!(seen, writes.await.unwrap(), "every task once, in order");
    let streams = server.streams.load(Ordering::SeqCst);
    assert!(streams >= 2, "the streams ended with their tokens: {streams} opened in 5 s");
}
