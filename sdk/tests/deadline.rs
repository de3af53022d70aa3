//! The call deadline against a server: what ends a call, what it carries, and what it leaves
//! running. (The retry loop's timing is tested on a paused clock in `src/retry.rs`; here the
//! server is real, so the clock is too.)
#![cfg(feature = "client")]

mod common;

use std::time::Duration;

use common::*;
use tasklane::{Client, ClientBuilder, Error, MemoryTokenStore, RetryPolicy};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Far longer than any call here takes when it behaves, so that a call sleeping through a wait
/// it should have refused shows up as a failure rather than as a test that hangs.
const HANG: Duration = Duration::from_secs(20);

async fn mount_endless_429(server: &MockServer, retry_after: &str) {
    Mock::given(path("/tasks/1"))
        .respond_with(problem(429, "slow down").insert_header("retry-after", retry_after))
        .mount(server)
        .await;
}

#[test]
fn clients_have_the_default_deadline_unless_told_otherwise() {
    let client = Client::new("http://127.0.0.1:8000").unwrap();
    assert_eq!(client.call_timeout(), Some(ClientBuilder::DEFAULT_CALL_TIMEOUT));
    assert!(ClientBuilder::DEFAULT_CALL_TIMEOUT < 2 * RetryPolicy::DEFAULT_MAX_DELAY);
    let unbounded = Client::builder("http://127.0.0.1:8000").call_timeout(None).build().unwrap();
    assert_eq!(unbounded.call_timeout(), None);
    assert_eq!(
        unbounded.with_call_timeout(Duration::from_secs(3)).call_timeout(),
        Some(Duration::from_secs(3))
    );
}

#[tokio::test]
async fn endless_429s_end_with_the_deadline_error() {
    let server = MockServer::start().await;
    mount_endless_429(&server, "1").await;
    let client = builder(&server)
        .tokens(fresh("a0", "r0"))
        .retry_policy(RetryPolicy::new().max_attempts(100).max_delay(Duration::from_secs(5)))
        .call_timeout(Duration::from_millis(2500))
        .build()
        .unwrap();

    let err = tokio::time::timeout(HANG, client.tasks().get(1)).await.expect("no hang").unwrap_err();

    let Error::DeadlineExceeded { timeout, last_error: Some(last), .. } = &err else { panic!("{err:?}") };
    assert_eq!(*timeout, Duration::from_millis(2500));
    assert!(matches!(**last, Error::RateLimited { .. }), "{last:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    // Attempts 1 s apart in 2.5 s: a second, perhaps a third, never the hundred allowed.
    let sent = received(&server, "/tasks/1").await;
    assert!((2..=3).contains(&sent), "{sent} attempts");
    // The id the attempts were sent with.
    let ids: Vec<_> =
        server.received_requests().await.unwrap().iter().map(|r| r.headers["x-request-id"].clone()).collect();
    assert_eq!(err.request_id(), Some(ids[0].to_str().unwrap()));
    assert!(err.to_string().contains("2.5s"), "{err}");
}

/// A `Retry-After` that would end past the deadline is not waited for.
#[tokio::test]
async fn a_retry_after_past_the_deadline_fails_at_once() {
    let server = MockServer::start().await;
    mount_endless_429(&server, "120").await;
    let client = builder(&server)
        .tokens(fresh("a0", "r0"))
        // The policy would wait 120 s; the deadline is a minute.
        .retry_policy(RetryPolicy::new().max_delay(Duration::from_secs(300)))
        .call_timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    let err = tokio::time::timeout(HANG, client.tasks().get(1)).await.expect("failed at once").unwrap_err();

    let Error::DeadlineExceeded { last_error: Some(last), .. } = &err else { panic!("{err:?}") };
    assert_eq!(last.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(received(&server, "/tasks/1").await, 1);
}

#[tokio::test]
async fn a_stuck_attempt_ends_at_the_deadline() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(task(1, "late")).set_delay(Duration::from_secs(60)),
        )
        .mount(&server)
        .await;
    let client = builder(&server)
        .tokens(fresh("a0", "r0"))
        .timeout(None)
        .call_timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    let err = tokio::time::timeout(HANG, client.tasks().get(1)).await.expect("no hang").unwrap_err();

    assert!(matches!(err, Error::DeadlineExceeded { last_error: None, .. }), "{err:?}");
    assert!(err.is_retryable());
    let sent = server.received_requests().await.unwrap();
    assert_eq!(err.request_id(), sent[0].headers["x-request-id"].to_str().ok());
}

/// The deadline bounds the wait for a refresh, not the refresh: it goes on and is stored.
#[tokio::test]
async fn a_refresh_outlives_the_call_that_gave_up_on_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/refresh"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(pair("a1", "r1")).set_delay(Duration::from_millis(500)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/tasks/1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(task(1, "one")))
        .expect(1)
        .mount(&server)
        .await;
    let store = MemoryTokenStore::new();
    let client = builder(&server)
        .tokens(expired("a0", "r0"))
        .token_store(store.clone())
        .call_timeout(Duration::from_millis(100))
        .build()
        .unwrap();

    let err = tokio::time::timeout(HANG, client.tasks().get(1)).await.expect("no hang").unwrap_err();

    assert!(matches!(err, Error::DeadlineExceeded { last_error: None, .. }), "{err:?}");
    assert_eq!(received(&server, "/tasks/1").await, 0);
    eventually(|| async { store.get().is_some() }).await;
    assert_eq!(store.get().unwrap().refresh_token().expose(), "r1");
    // A call with time enough uses the tokens that refresh brought.
    client.with_call_timeout(None).tasks().get(1).await.unwrap();
}

#[tokio::test]
async fn with_call_timeout_changes_the_deadline_of_its_calls_only_and_shares_the_session() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(task(1, "slow")).set_delay(Duration::from_millis(700)),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/login"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pair("a0", "r0")))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).call_timeout(None).build().unwrap();
    let hasty = client.with_call_timeout(Duration::from_millis(100));

    // A login through one is the session of both.
    hasty.login("ada", "correct horse").await.unwrap();
    assert_eq!(client.tokens().unwrap().access_token().expose(), "a0");

    let err = hasty.tasks().get(1).await.unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err:?}");
    assert_eq!(client.tasks().get(1).await.unwrap().title, "slow");
    assert_eq!(client.call_timeout(), None);
}

#[tokio::test]
async fn an_explicit_refresh_is_bounded_too() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/refresh"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(pair("a1", "r1")).set_delay(Duration::from_millis(500)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let err = client.with_call_timeout(Duration::from_millis(100)).refresh().await.unwrap_err();

    assert!(matches!(err, Error::DeadlineExceeded { last_error: None, request_id: None, .. }), "{err:?}");
    eventually(|| async { client.tokens().unwrap().access_token().expose() == "a1" }).await;
}
