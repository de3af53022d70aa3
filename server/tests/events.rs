//! Live events (docs/API.md, version 2): `GET /tasks/events` over real sockets, on SQLite
//! (in-process notifications) and on PostgreSQL + Redis (one subscription per instance).

mod common;

use std::time::Duration;

use common::{scratch_config, Backend, PrivateRedis, TestServer};
use serde_json::{json, Value};
use tasklane_server::auth::jwt::{JwtKeys, TokenKind};

/// One block of the stream: an event, or a comment.
#[derive(Debug, Default)]
struct Frame {
    event: Option<String>,
    id: Option<String>,
    data: Option<String>,
    comment: Option<String>,
}

impl Frame {
    fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("data")).expect("JSON data")
    }
}

/// An open stream, read a block at a time.
struct Stream {
    res: reqwest::Response,
    buf: String,
}

impl Stream {
    /// The next block, `None` when the stream ended; fails after `within`.
    async fn next_within(&mut self, within: Duration) -> Option<Frame> {
        self.next_or_silence(within).await.expect("the stream said nothing in time")
    }

    /// The next block (`Some(None)` when the stream ended), or `None` after `within`.
    async fn next_or_silence(&mut self, within: Duration) -> Option<Option<Frame>> {
        tokio::time::timeout(within, async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let mut frame = Frame::default();
                    for line in block.lines().filter(|line| !line.is_empty()) {
                        let (field, value) = line.split_once(':').unwrap_or((line, ""));
                        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                        match field {
                            "" => frame.comment = Some(value),
                            "event" => frame.event = Some(value),
                            "id" => frame.id = Some(value),
                            "data" => frame.data = Some(value),
                            _ => {}
                        }
                    }
                    return Some(frame);
                }
                match self.res.chunk().await {
                    Ok(Some(bytes)) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                    _ => return None,
                }
            }
        })
        .await
        .ok()
    }

    /// The next change event (keep-alive comments skipped).
    async fn change(&mut self) -> Frame {
        loop {
            let frame = self.next_within(Duration::from_secs(10)).await.expect("the stream ended");
            if frame.comment.is_none() {
                assert_eq!(frame.event.as_deref(), Some("change"), "{frame:?}");
                return frame;
            }
        }
    }

    /// Whether the stream ends within `within` (comments aside).
    async fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_or_silence(left).await {
                Some(None) => return true,
                Some(Some(frame)) if frame.comment.is_some() => continue,
                Some(Some(frame)) => panic!("an event where the end was expected: {frame:?}"),
                None => return false,
            }
        }
    }
}

async fn open(server: &TestServer, token: &str, headers: &[(&str, &str)], query: &str) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(server.url(&format!("/tasks/events{query}")))
        .bearer_auth(token)
        .header("Accept", "text/event-stream");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.unwrap()
}

async fn stream(server: &TestServer, token: &str, headers: &[(&str, &str)], query: &str) -> Stream {
    let res = open(server, token, headers, query).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    Stream { res, buf: String::new() }
}

async fn register(server: &TestServer, name: &str) -> String {
    let (status, body) = common::post(
        &reqwest::Client::new(),
        server.url("/auth/register"),
        None,
        json!({"username": name, "password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let mut req = reqwest::Client::new().request(method, server.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    res.json().await.unwrap_or(Value::Null)
}

async fn create(server: &TestServer, token: &str, title: &str) -> Value {
    send(server, reqwest::Method::POST, "/tasks/", token, Some(json!({"title": title}))).await
}

async fn sqlite() -> Option<TestServer> {
    TestServer::start(Backend::Sqlite).await
}

async fn postgres_redis() -> Option<TestServer> {
    TestServer::start(Backend::PostgresRedis).await
}

/// Creates, updates and deletes arrive in order, each with the feed's cursor as its id and
/// the feed's change object as its data; another user's changes do not.
async fn changes_arrive_in_order(server: TestServer) {
    let token = register(&server, "watcher").await;
    let other = register(&server, "stranger").await;
    let mut events = stream(&server, &token, &[], "").await;
    let task = create(&server, &token, "first").await;
    create(&server, &other, "not yours").await;
    let id = task["id"].as_i64().unwrap();
    send(&server, reqwest::Method::PATCH, &format!("/tasks/{id}"), &token, Some(json!({"status": "done"})))
        .await;
    send(&server, reqwest::Method::DELETE, &format!("/tasks/{id}"), &token, None).await;

    let created = events.change().await;
    assert_eq!(created.json()["type"], "upsert");
    assert_eq!(created.json()["task"]["title"], "first");
    // The update and the delete may come as one read of the feed; each task once, latest state.
    let mut later = events.change().await;
    if later.json()["type"] == "upsert" {
        assert_eq!(later.json()["task"]["status"], "done");
        later = events.change().await;
    }
    assert_eq!(later.json(), json!({"type": "delete", "id": id}));

    // The ids are the feed's cursors: the feed after the first one has the rest.
    let res = reqwest::Client::new()
        .get(server.url("/tasks/changes"))
        .query(&[("since", created.id.as_deref().unwrap())])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let page: Value = res.json().await.unwrap();
    assert_eq!(page["changes"], json!([{"type": "delete", "id": id}]));
    assert_eq!(page["cursor"].as_str(), later.id.as_deref());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_arrive_in_order_on_sqlite() {
    changes_arrive_in_order(sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_arrive_in_order_on_postgres_redis() {
    let Some(server) = postgres_redis().await else { return };
    changes_arrive_in_order(server).await;
}

/// A client that reconnects with `Last-Event-ID` (or `since`) gets the changes it missed, then
/// live ones: none skipped, none repeated.
async fn resuming_skips_and_repeats_nothing(server: TestServer) {
    let token = register(&server, "resumer").await;
    let mut events = stream(&server, &token, &[], "").await;
    let a = create(&server, &token, "a").await;
    let seen = events.change().await;
    assert_eq!(seen.json()["task"]["id"], a["id"]);
    drop(events);

    // While disconnected.
    let b = create(&server, &token, "b").await;
    let c = create(&server, &token, "c").await;
    let last = seen.id.clone().unwrap();
    let mut resumed = stream(&server, &token, &[("Last-Event-ID", &last)], "").await;
    assert_eq!(resumed.change().await.json()["task"]["id"], b["id"]);
    let at_c = resumed.change().await;
    assert_eq!(at_c.json()["task"]["id"], c["id"]);
    // Then live, right after the seam.
    let d = create(&server, &token, "d").await;
    assert_eq!(resumed.change().await.json()["task"]["id"], d["id"]);
    assert!(!resumed.ends_within(Duration::from_millis(300)).await, "nothing more, and still open");

    // `since` in the URL does the same; Last-Event-ID wins over it.
    let mut by_query = stream(&server, &token, &[], &format!("?since={}", at_c.id.as_deref().unwrap())).await;
    assert_eq!(by_query.change().await.json()["task"]["id"], d["id"]);
    let mut both =
        stream(&server, &token, &[("Last-Event-ID", at_c.id.as_deref().unwrap())], &format!("?since={last}"))
            .await;
    assert_eq!(both.change().await.json()["task"]["id"], d["id"]);

    // Bad positions are 422 before any stream opens; another user's too.
    for (headers, query) in [
        (vec![("Last-Event-ID", "nonsense")], ""),
        (vec![], "?since=c1"),
        (vec![("Last-Event-ID", "c999999.1")], ""),
    ] {
        let res = open(&server, &token, &headers, query).await;
        assert_eq!(res.status(), 422, "{headers:?} {query}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_skips_and_repeats_nothing_on_sqlite() {
    resuming_skips_and_repeats_nothing(sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_skips_and_repeats_nothing_on_postgres_redis() {
    let Some(server) = postgres_redis().await else { return };
    resuming_skips_and_repeats_nothing(server).await;
}

/// Ten streams per user; the eleventh is 429 until one closes. Other users are not counted.
async fn the_eleventh_stream_is_refused(server: TestServer) {
    let token = register(&server, "greedy").await;
    let mut open_ones = Vec::new();
    for _ in 0..10 {
        open_ones.push(stream(&server, &token, &[], "").await);
    }
    let refused = open(&server, &token, &[], "").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "5");
    let problem: Value = refused.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("at most 10"), "{problem}");
    let other = register(&server, "modest").await;
    drop(stream(&server, &other, &[], "").await);

    drop(open_ones.pop());
    // The server notices the closed connection at its next write at the latest: a change.
    let mut tries = 0;
    loop {
        create(&server, &token, "wake the streams").await;
        let res = open(&server, &token, &[], "").await;
        if res.status() == 200 {
            break;
        }
        tries += 1;
        assert!(tries < 50, "a closed stream's place never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_stream_is_refused_on_sqlite() {
    the_eleventh_stream_is_refused(sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_stream_is_refused_on_postgres_redis() {
    let Some(server) = postgres_redis().await else { return };
    the_eleventh_stream_is_refused(server).await;
}

/// The stream ends when the access token that opened it expires; an expired one is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_ends_when_its_token_expires() {
    let server = sqlite().await.unwrap();
    let token = register(&server, "mortal").await;
    let me = send(&server, reqwest::Method::GET, "/auth/me", &token, None).await;
    let id = me["id"].as_i64().unwrap();
    let keys = JwtKeys::new(common::SECRET);
    let now = chrono::Utc::now();
    let (short, _) = keys.issue(TokenKind::Access, id, None, now, Duration::from_secs(2));
    let mut events = stream(&server, &short, &[], "").await;
    assert!(!events.ends_within(Duration::from_millis(500)).await);
    assert!(events.ends_within(Duration::from_secs(4)).await, "the stream outlived its token");

    // Past `exp` but within the clock leeway: refused, so the client refreshes.
    let (stale, _) =
        keys.issue(TokenKind::Access, id, None, now - chrono::Duration::seconds(10), Duration::from_secs(5));
    let res = open(&server, &stale, &[], "").await;
    assert_eq!(res.status(), 401);
    server.stop().await;
}

/// A keep-alive comment comes within 15 s on an idle stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_gets_keep_alive_comments() {
    let server = sqlite().await.unwrap();
    let token = register(&server, "idle").await;
    let mut events = stream(&server, &token, &[], "").await;
    let frame = events.next_within(Duration::from_secs(17)).await.expect("the stream ended");
    assert_eq!(frame.comment.as_deref(), Some("keep-alive"), "{frame:?}");
    assert!(frame.event.is_none() && frame.data.is_none());
    server.stop().await;
}

/// Each instance pings its Redis subscription every 15 s, and a subscribed connection answers
/// a ping with an array, not a string: a stream open across the ping stays open and gets changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_outlives_the_redis_subscriptions_ping() {
    let Some(server) = postgres_redis().await else { return };
    let token = register(&server, "patient").await;
    let mut events = stream(&server, &token, &[], "").await;
    assert!(
        !events.ends_within(Duration::from_secs(17)).await,
        "the stream ended at the subscription's ping"
    );
    let task = create(&server, &token, "after the ping").await;
    assert_eq!(events.change().await.json()["task"]["id"], task["id"]);
    server.stop().await;
}

/// Graceful shutdown ends every open stream within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_streams() {
    let server = sqlite().await.unwrap();
    let token = register(&server, "leaving").await;
    let mut events = stream(&server, &token, &[], "").await;
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(server.stop());
    assert!(events.ends_within(Duration::from_secs(3)).await, "the stream outlived the shutdown");
    stopping.await.unwrap();
    // The tests' grace period is 1 s.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

/// Two instances on one PostgreSQL and Redis: a write on A reaches a stream on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_on_one_instance_reaches_streams_on_another() {
    let Some((config, scratch)) = scratch_config(Backend::PostgresRedis).await else { return };
    let a = TestServer::with_config(config.clone(), Some(scratch)).await;
    let b = TestServer::with_config(config, None).await;
    let token = register(&a, "roaming").await;
    let mut on_b = stream(&b, &token, &[], "").await;
    let mut on_a = stream(&a, &token, &[], "").await;
    let task = create(&a, &token, "from A").await;
    assert_eq!(on_b.change().await.json()["task"]["id"], task["id"]);
    assert_eq!(on_a.change().await.json()["task"]["id"], task["id"]);
    let task = create(&b, &token, "from B").await;
    assert_eq!(on_a.change().await.json()["task"]["id"], task["id"]);
    assert_eq!(on_b.change().await.json()["task"]["id"], task["id"]);
    b.stop().await;
    a.stop().await;
}

/// Redis killed while streams are open: they end, new ones are 503 while it is away; once it is
/// back (no restart of the server) a client resumes from its cursor with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_end_when_redis_goes_and_resume_when_it_is_back() {
    let Some((mut config, scratch)) = scratch_config(Backend::PostgresRedis).await else { return };
    let Some(mut redis) = PrivateRedis::start() else { return };
    config.redis_url = Some(redis.url());
    let server = TestServer::with_config(config, Some(scratch)).await;
    let token = register(&server, "weathered").await;
    let mut events = stream(&server, &token, &[], "").await;
    create(&server, &token, "before").await;
    let before = events.change().await;

    redis.kill();
    assert!(events.ends_within(Duration::from_secs(5)).await, "the stream outlived the subscription");
    // Writes go on (PostgreSQL holds the tasks); streams cannot be promised and say so.
    let during = create(&server, &token, "while Redis was away").await;
    let refused = open(&server, &token, &[], "").await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));

    redis.resume();
    let mut tries = 0;
    let mut resumed = loop {
        let res = open(&server, &token, &[("Last-Event-ID", before.id.as_deref().unwrap())], "").await;
        if res.status() == 200 {
            break Stream { res, buf: String::new() };
        }
        assert_eq!(res.status(), 503);
        tries += 1;
        assert!(tries < 100, "streams never came back after Redis did");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(resumed.change().await.json()["task"]["id"], during["id"], "the change made meanwhile");
    let after = create(&server, &token, "after").await;
    assert_eq!(resumed.change().await.json()["task"]["id"], after["id"]);
    server.stop().await;
}
