//! Which requests are retried, how often, and how long the client waits.
#![cfg(feature = "client")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tasklane::{Client, Error, NewTask, RetryPolicy, TaskUpdate};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Answers `failure` to the first `failures` matching requests, then `success`.
async fn mount_flaky(
    server: &MockServer,
    http_method: &str,
    route: &str,
    failure: ResponseTemplate,
    failures: u64,
    success: ResponseTemplate,
) {
    Mock::given(method(http_method))
        .and(path(route))
        .respond_with(failure)
        .up_to_n_times(failures)
        .with_priority(1)
        .expect(failures)
        .mount(server)
        .await;
    Mock::given(method(http_method)).and(path(route)).respond_with(success).expect(1).mount(server).await;
}

fn ok_task() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(task(1, "one"))
}

#[tokio::test]
async fn gets_are_retried_on_502_503_504_and_429() {
    for status in [502, 503, 504, 429] {
        let server = MockServer::start().await;
        mount_flaky(&server, "GET", "/tasks/1", problem(status, "busy"), 2, ok_task()).await;
        let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

        assert_eq!(client.tasks().get(1).await.unwrap().id, 1, "{status}");
    }
}

#[tokio::test]
async fn every_attempt_of_a_call_carries_the_same_request_id_and_calls_differ() {
    let server = MockServer::start().await;
    mount_flaky(&server, "GET", "/tasks/1", problem(503, "busy"), 2, ok_task()).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    client.tasks().get(1).await.unwrap();
    Mock::given(method("GET")).and(path("/tasks/2")).respond_with(problem(404, "no")).mount(&server).await;
    let err = client.tasks().get(2).await.unwrap_err();

    let ids: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers.get("x-request-id").expect("an X-Request-Id").to_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(ids.iter().all(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())), "{ids:?}");
    assert!(ids[0] == ids[1] && ids[1] == ids[2], "one call, three attempts: {ids:?}");
    assert_ne!(ids[2], ids[3], "another call");
    // The error names the id the server answered with.
    assert_eq!(err.request_id(), Some("req-404"));
}

#[tokio::test]
async fn put_patch_and_delete_are_retried() {
    let server = MockServer::start().await;
    mount_flaky(&server, "PUT", "/tasks/1", problem(503, "busy"), 1, ok_task()).await;
    mount_flaky(&server, "PATCH", "/tasks/1", problem(503, "busy"), 1, ok_task()).await;
    mount_flaky(&server, "DELETE", "/tasks/1", problem(503, "busy"), 1, ResponseTemplate::new(204)).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    client.tasks().update(1, TaskUpdate::new().title("x")).await.unwrap();
    client.tasks().patch(1, TaskUpdate::new().title("x")).await.unwrap();
    client.tasks().delete(1).await.unwrap();
}

#[tokio::test]
async fn retries_stop_after_the_last_attempt() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/1")).respond_with(problem(503, "down")).expect(4).mount(&server).await;
    let client = builder(&server)
        .tokens(fresh("a0", "r0"))
        .retry_policy(fast_retries().max_attempts(4))
        .build()
        .unwrap();

    let err = client.tasks().get(1).await.unwrap_err();

    assert_eq!(err.status(), Some(503));
    assert!(err.is_retryable(), "the caller may still try later");
}

#[tokio::test]
async fn a_disabled_policy_sends_once() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/1")).respond_with(problem(503, "down")).expect(1).mount(&server).await;
    let client =
        builder(&server).tokens(fresh("a0", "r0")).retry_policy(RetryPolicy::disabled()).build().unwrap();

    client.tasks().get(1).await.unwrap_err();
}

#[tokio::test]
async fn a_500_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/1")).respond_with(problem(500, "bug")).expect(1).mount(&server).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    assert!(!client.tasks().get(1).await.unwrap_err().is_retryable());
}

/// A POST without an `Idempotency-Key` (a login, a registration) is not sent again after a
/// failure it may have survived.
#[tokio::test]
async fn post_is_not_retried_by_default_after_a_failure_it_may_have_survived() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/register"))
        .respond_with(problem(503, "down"))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();

    assert_eq!(client.register("ada", "password1").await.unwrap_err().status(), Some(503));
}

/// Creating a task carries an `Idempotency-Key`: sent again, it creates nothing more, so it is
/// retried like a PUT.
#[tokio::test]
async fn a_create_is_retried_by_default() {
    let server = MockServer::start().await;
    let created = ResponseTemplate::new(201).set_body_json(task(1, "once"));
    mount_flaky(&server, "POST", "/tasks/", problem(503, "down"), 2, created).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    assert_eq!(client.tasks().create(NewTask::new("once")).await.unwrap().id, 1);
}

/// A 429 is a refusal before anything was done: a POST is sent again after it.
#[tokio::test]
async fn post_is_retried_after_429() {
    let server = MockServer::start().await;
    mount_flaky(
        &server,
        "POST",
        "/auth/login",
        problem(429, "slow down"),
        1,
        ResponseTemplate::new(200).set_body_json(pair("a1", "r1")),
    )
    .await;
    let client = builder(&server).build().unwrap();

    client.login("ada", "password1").await.unwrap();
}

/// A connection that could not be opened carried nothing: a POST is sent again, and reaches a
/// server that has come up meanwhile.
#[tokio::test]
async fn post_is_retried_when_the_connection_could_not_be_opened() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let policy = RetryPolicy::new()
        .max_attempts(100)
        .base_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(50));
    let client = Client::builder(format!("http://{address}"))
        .tokens(fresh("a0", "r0"))
        .retry_policy(policy)
        .build()
        .unwrap();
    let create = tokio::spawn(async move { client.tasks().create(NewTask::new("once")).await });

    tokio::time::sleep(Duration::from_millis(150)).await;
    // A server that answers from its first connection on (a mock server would need its mock
    // mounted after it started listening): one request, read whole, answered 201.
    let listener = std::net::TcpListener::bind(address).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{BufRead as _, BufReader, Read as _, Write as _};
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let (mut line, mut length, mut first) = (String::new(), 0, None);
        while reader.read_line(&mut line).unwrap() > 2 {
            first.get_or_insert_with(|| line.trim_end().to_owned());
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            line.clear();
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let json = task(1, "once").to_string();
        let answer = format!(
            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        );
        reader.get_mut().write_all(answer.as_bytes()).unwrap();
        (first.unwrap_or_default(), String::from_utf8(body).unwrap())
    });

    assert_eq!(create.await.unwrap().unwrap().title, "once");
    let (request_line, body) = server.join().unwrap();
    assert_eq!(request_line, "POST /tasks/ HTTP/1.1");
    assert!(body.contains("once"), "{body}");
}

#[tokio::test]
async fn post_is_retried_when_the_caller_opts_in() {
    let server = MockServer::start().await;
    let registered = ResponseTemplate::new(201).set_body_json(pair("a1", "r1"));
    mount_flaky(&server, "POST", "/auth/register", problem(503, "down"), 1, registered).await;
    let client = builder(&server).retry_policy(fast_retries().retry_non_idempotent(true)).build().unwrap();

    client.register("ada", "password1").await.unwrap();
}

/// How long a GET that is answered `status` with `Retry-After: 1` once, then 200, takes.
///
/// On the real clock: the mock server runs on a runtime of its own, and with paused time the
/// test's clock jumps ahead whenever the client waits for it, so a paused clock could pass the
/// check without the client ever waiting. The policy's own backoff before the first retry is
/// at most 1 ms, so a client that ignored the header would be done well within a second.
async fn time_to_success_after_retry_after(status: u16) -> Duration {
    let server = MockServer::start().await;
    let refusal = problem(status, "busy").insert_header("retry-after", "1");
    mount_flaky(&server, "GET", "/tasks/1", refusal, 1, ok_task()).await;
    let policy = RetryPolicy::new().base_delay(Duration::from_millis(1)).max_delay(Duration::from_secs(5));
    let client =
        Client::builder(server.uri()).tokens(fresh("a0", "r0")).retry_policy(policy).build().unwrap();

    let start = std::time::Instant::now();
    client.tasks().get(1).await.unwrap();
    start.elapsed()
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let waited = time_to_success_after_retry_after(429).await;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}, before the 1 s asked for");
    // Generous for a loaded machine, but no second wait nor a misread header.
    assert!(waited < Duration::from_millis(2500), "retried after {waited:?}");
}

#[tokio::test]
async fn retry_after_on_a_503_is_honoured() {
    let waited = time_to_success_after_retry_after(503).await;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}, before the 1 s asked for");
    assert!(waited < Duration::from_millis(2500), "retried after {waited:?}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_longest_delay_is_returned_to_the_caller() {
    for status in [429, 503] {
        let server = MockServer::start().await;
        Mock::given(path("/tasks/1"))
            .respond_with(problem(status, "come back later").insert_header("retry-after", "120"))
            .expect(1)
            .mount(&server)
            .await;
        let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

        let err = client.tasks().get(1).await.unwrap_err();

        let variant_ok = match status {
            429 => matches!(err, Error::RateLimited { .. }),
            _ => matches!(err, Error::Server { .. }),
        };
        assert!(variant_ok, "{err:?}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(120)), "{status}");
        assert_eq!(err.response().unwrap().retry_after, Some(Duration::from_secs(120)), "{status}");
    }
}

#[tokio::test]
async fn dropped_connections_are_retried() {
    // A server that accepts connections and closes them without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let client = Client::builder(format!("http://{address}"))
        .tokens(fresh("a0", "r0"))
        .retry_policy(fast_retries())
        .build()
        .unwrap();

    let err = client.tasks().get(1).await.unwrap_err();

    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

/// A server that answers its `n`th connection with `answers[n]` (the last one for any further
/// connection), after reading the request, then closes it; and how many it accepted.
async fn scripted_server(answers: Vec<String>) -> (String, Arc<AtomicUsize>) {
    let (url, accepted, _) = recording_scripted_server(answers).await;
    (url, accepted)
}

/// [`scripted_server`], which also keeps the head of each request it read, in lowercase.
async fn recording_scripted_server(
    answers: Vec<String>,
) -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let counter = Arc::clone(&accepted);
    let recorded = Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let answer = answers[n.min(answers.len() - 1)].clone();
            let recorded = Arc::clone(&recorded);
            tokio::spawn(async move {
                // The request's head, then its body, so that closing does not reset the
                // connection under unread bytes.
                let mut request = Vec::new();
                let mut buf = [0; 4096];
                let head_end = loop {
                    let read = socket.read(&mut buf).await.unwrap();
                    assert!(read > 0, "the client closed before sending its request");
                    request.extend_from_slice(&buf[..read]);
                    if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                recorded.lock().unwrap().push(head.clone());
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                while request.len() < head_end + length {
                    let read = socket.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..read]);
                }
                socket.write_all(answer.as_bytes()).await.unwrap();
                socket.shutdown().await.unwrap();
            });
        }
    });
    (url, accepted, heads)
}

/// A 200 whose head promises more body than is sent before the connection closes.
fn cut_short(status: &str) -> String {
    let body = task(1, "one").to_string();
    let half = &body[..body.len() / 2];
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{half}",
        body.len()
    )
}

fn whole(status: &str) -> String {
    let body = task(1, "one").to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn a_body_cut_short_is_retried_for_idempotent_requests() {
    let (url, accepted) = scripted_server(vec![cut_short("200 OK"), whole("200 OK")]).await;
    let client = Client::builder(url).tokens(fresh("a0", "r0")).retry_policy(fast_retries()).build().unwrap();

    let task = client.tasks().get(1).await.unwrap();

    assert_eq!(task.id, 1);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_cut_short_is_not_retried_for_a_post_without_a_key() {
    let (url, accepted) = scripted_server(vec![cut_short("200 OK"), whole("200 OK")]).await;
    let client = Client::builder(url).retry_policy(fast_retries()).build().unwrap();

    let err = client.login("ada", "password1").await.unwrap_err();

    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the login may have been done: not sent twice");
}

/// The answer to a create was lost after the server acted: the retry carries the same key, so
/// the server answers it with the task already created rather than a second one.
#[tokio::test]
async fn a_body_cut_short_is_retried_for_a_create_with_the_same_key() {
    let (url, accepted, heads) =
        recording_scripted_server(vec![cut_short("201 Created"), whole("201 Created")]).await;
    let client = Client::builder(url).tokens(fresh("a0", "r0")).retry_policy(fast_retries()).build().unwrap();

    let task = client.tasks().create(NewTask::new("once")).await.unwrap();

    assert_eq!(task.id, 1);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    let keys: Vec<String> = heads
        .lock()
        .unwrap()
        .iter()
        .map(|head| {
            let line = head.lines().find_map(|l| l.strip_prefix("idempotency-key:")).expect("a key");
            line.trim().to_owned()
        })
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);
}
