//! Idempotent creates: one key per create, the same on every attempt, so that a create can be
//! retried without making two tasks.
#![cfg(feature = "client")]

mod common;

use std::time::Duration;

use common::*;
use tasklane::{Error, NewTask};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn created(id: i64) -> ResponseTemplate {
    let (body, etag) = versioned(id, "once", 1);
    ResponseTemplate::new(201)
        .insert_header("location", format!("/tasks/{id}").as_str())
        .insert_header("etag", etag.as_str())
        .set_body_json(body)
}

/// Answers `failure` to the first `failures` creates, then `created(1)`.
async fn mount_flaky_create(server: &MockServer, failure: ResponseTemplate, failures: u64) {
    Mock::given(method("POST"))
        .and(path("/tasks/"))
        .respond_with(failure)
        .up_to_n_times(failures)
        .with_priority(1)
        .expect(failures)
        .mount(server)
        .await;
    Mock::given(method("POST")).and(path("/tasks/")).respond_with(created(1)).expect(1).mount(server).await;
}

/// The `Idempotency-Key` of every request `server` received.
async fn keys(server: &MockServer) -> Vec<String> {
    sent_header(server, "idempotency-key").await.into_iter().map(|key| key.expect("a key")).collect()
}

fn is_uuid_v4(key: &str) -> bool {
    let groups: Vec<&str> = key.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && key.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
        && groups[2].starts_with('4')
}

#[tokio::test]
async fn each_create_sends_a_key_of_its_own() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/tasks/")).respond_with(created(1)).expect(2).mount(&server).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    client.tasks().create(NewTask::new("same")).await.unwrap();
    client.tasks().create(NewTask::new("same")).await.unwrap();

    let keys = keys(&server).await;
    assert!(keys.iter().all(|key| is_uuid_v4(key)), "{keys:?}");
    assert_ne!(keys[0], keys[1], "two creates are two tasks, even with the same fields");
}

/// A 503 may come after the server acted: with its key, the create is sent again all the same,
/// by the default policy, and carries the same key.
#[tokio::test]
async fn a_create_is_retried_with_the_same_key() {
    let server = MockServer::start().await;
    mount_flaky_create(&server, problem(503, "busy"), 2).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let task = client.tasks().create(NewTask::new("once")).await.unwrap();

    assert_eq!(task.id, 1);
    let keys = keys(&server).await;
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|key| *key == keys[0]), "one call, one key: {keys:?}");
}

#[tokio::test]
async fn every_retryable_failure_of_a_create_is_retried() {
    for status in [502, 504, 429] {
        let server = MockServer::start().await;
        mount_flaky_create(&server, problem(status, "busy"), 1).await;
        let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

        assert_eq!(client.tasks().create(NewTask::new("once")).await.unwrap().id, 1, "{status}");
    }
}

/// While the first request with a key is in flight, the server answers a repeat 409 with
/// `Retry-After: 1`: the client waits, and the next attempt gets the first one's answer.
#[tokio::test]
async fn a_create_still_in_flight_is_waited_for() {
    let server = MockServer::start().await;
    let in_flight = problem(409, "a request with this key is in progress").insert_header("retry-after", "1");
    mount_flaky_create(&server, in_flight, 1).await;
    // Retry-After: 1 is more than the helper's 20 ms longest wait.
    let client = builder(&server)
        .tokens(fresh("a0", "r0"))
        .retry_policy(fast_retries().max_delay(Duration::from_secs(2)))
        .build()
        .unwrap();

    let task = client.tasks().create(NewTask::new("once")).await.unwrap();

    assert_eq!(task.id, 1);
    let keys = keys(&server).await;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);
}

/// A 409 without `Retry-After` (a username taken) is final.
#[tokio::test]
async fn a_conflict_that_does_not_say_when_to_retry_is_final() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/tasks/"))
        .respond_with(problem(409, "no"))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let err = client.tasks().create(NewTask::new("once")).await.unwrap_err();

    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_replayed_answer_is_a_success() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/tasks/"))
        .and(header("idempotency-key", "outbox-7"))
        .respond_with(created(7).insert_header("idempotent-replayed", "true"))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let task = client.tasks().create_with_key(NewTask::new("once"), "outbox-7").await.unwrap();

    assert_eq!((task.id, task.etag().map(|e| e.as_str())), (7, Some(r#""7-1""#)));
}

#[tokio::test]
async fn a_key_of_the_callers_own_is_sent_on_every_attempt() {
    let server = MockServer::start().await;
    mount_flaky_create(&server, problem(503, "busy"), 1).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    client.tasks().create_with_key(NewTask::new("once"), "outbox-42").await.unwrap();

    assert_eq!(keys(&server).await, ["outbox-42", "outbox-42"]);
}

#[tokio::test]
async fn a_bad_key_is_refused_before_sending() {
    let server = MockServer::start().await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let too_long = "k".repeat(256);

    for key in ["", "with space", "naïve", too_long.as_str()] {
        let err = client.tasks().create_with_key(NewTask::new("t"), key).await.unwrap_err();
        let Error::Validation { errors, response: None } = &err else { panic!("{key:?}: {err:?}") };
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["Idempotency-Key"]);
    }
    // Both faults at once are both reported.
    let err = client.tasks().create_with_key(NewTask::new(" "), "").await.unwrap_err();
    let Error::Validation { errors, .. } = &err else { panic!("{err:?}") };
    assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["title", "Idempotency-Key"]);
    assert!(server.received_requests().await.unwrap().is_empty());
}

/// The server refuses a key used before with another body.
#[tokio::test]
async fn a_key_reused_with_other_fields_is_a_validation_error() {
    let server = MockServer::start().await;
    let body = serde_json::json!({
        "type": "about:blank", "title": "Unprocessable Entity", "status": 422,
        "detail": "this Idempotency-Key was used with another request",
        "errors": [{"field": "Idempotency-Key", "message": "was used with another request"}]
    });
    Mock::given(method("POST"))
        .and(path("/tasks/"))
        .respond_with(ResponseTemplate::new(422).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let err = client.tasks().create_with_key(NewTask::new("other"), "outbox-42").await.unwrap_err();

    let Error::Validation { errors, response: Some(_) } = &err else { panic!("{err:?}") };
    assert_eq!(errors[0].field, "Idempotency-Key");
}

/// A POST without a key (logging in) is still not sent again after a failure it may have
/// survived.
#[tokio::test]
async fn other_posts_carry_no_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/login"))
        .respond_with(problem(503, "down"))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();

    assert_eq!(client.login("ada", "password1").await.unwrap_err().status(), Some(503));
    assert_eq!(sent_header(&server, "idempotency-key").await, [None]);
}
