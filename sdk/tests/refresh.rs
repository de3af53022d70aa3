//! The session: proactive and reactive refresh, single flight, rotation, and the ends of a
//! session.
#![cfg(feature = "client")]

mod common;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::*;
use serde_json::json;
use tasklane::{Error, MemoryTokenStore, RetryPolicy, Tokens};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// `GET /tasks/1` answered 200 for `Bearer {token}`, expected `times` times.
async fn mount_task_for(server: &MockServer, token: &str, times: impl Into<wiremock::Times>) {
    Mock::given(method("GET"))
        .and(path("/tasks/1"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(task(1, "one")))
        .expect(times)
        .mount(server)
        .await;
}

/// `GET /tasks/1` answered 401 for `Bearer {token}`.
async fn mount_refused(server: &MockServer, token: &str, times: impl Into<wiremock::Times>) {
    Mock::given(method("GET"))
        .and(path("/tasks/1"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(problem(401, "token expired"))
        .expect(times)
        .mount(server)
        .await;
}

/// Mounts `POST /auth/refresh` answered with `answer`, expected exactly once.
async fn mount_refresh_answer(server: &MockServer, answer: ResponseTemplate) {
    Mock::given(method("POST")).and(path("/auth/refresh")).respond_with(answer).expect(1).mount(server).await;
}

/// Mounts `POST /auth/refresh` answered with `failure` the first time only, ahead of what else
/// is mounted for it (the refresh that succeeds next).
async fn mount_refresh_failing_first(server: &MockServer, failure: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/auth/refresh"))
        .respond_with(failure)
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(server)
        .await;
}

/// A refresh that takes a while, so that concurrent callers pile up behind it.
async fn mount_slow_refresh(server: &MockServer, refresh: &str, access: &str, next: &str) {
    Mock::given(method("POST"))
        .and(path("/auth/refresh"))
        .and(body_json(json!({"refresh_token": refresh})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(pair(access, next))
                .set_delay(Duration::from_millis(100)),
        )
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_calls_with_an_expired_token_refresh_once() {
    let server = MockServer::start().await;
    mount_slow_refresh(&server, "r0", "a1", "r1").await;
    mount_task_for(&server, "a0", 0).await;
    mount_task_for(&server, "a1", 100).await;
    let store = MemoryTokenStore::new();
    let client = builder(&server).tokens(expired("a0", "r0")).token_store(store.clone()).build().unwrap();

    let results = concurrently(100, || {
        let client = client.clone();
        async move { client.tasks().get(1).await }
    })
    .await;

    for result in results {
        assert_eq!(result.unwrap().id, 1);
    }
    assert_eq!(received(&server, "/auth/refresh").await, 1);
    assert_eq!(client.tokens().unwrap().access_token().expose(), "a1");
    assert_eq!(store.get().unwrap().refresh_token().expose(), "r1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_calls_refused_with_401_refresh_once() {
    let server = MockServer::start().await;
    mount_slow_refresh(&server, "r0", "a1", "r1").await;
    mount_refused(&server, "a0", 1..=100).await;
    mount_task_for(&server, "a1", 100).await;
    // Valid by the clock: only the server's 401 says the token is no good.
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let results = concurrently(100, || {
        let client = client.clone();
        async move { client.tasks().get(1).await }
    })
    .await;

    for result in results {
        assert_eq!(result.unwrap().id, 1);
    }
    assert_eq!(received(&server, "/auth/refresh").await, 1);
}

#[tokio::test]
async fn a_401_that_arrives_after_another_refresh_reuses_its_tokens() {
    let server = MockServer::start().await;
    mount_refresh(&server, "r0", "a1", "r1", 1).await;
    // Task 1's refusal is slow: by the time it arrives, task 2's call has refreshed.
    Mock::given(path("/tasks/1"))
        .and(header("authorization", "Bearer a0"))
        .respond_with(problem(401, "token expired").set_delay(Duration::from_millis(300)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/tasks/2"))
        .and(header("authorization", "Bearer a0"))
        .respond_with(problem(401, "expired"))
        .expect(1)
        .mount(&server)
        .await;
    for id in [1, 2] {
        Mock::given(path(format!("/tasks/{id}")))
            .and(header("authorization", "Bearer a1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(task(id, "t")))
            .expect(1)
            .mount(&server)
            .await;
    }
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.tasks().get(1).await }
    });
    eventually(|| async { received(&server, "/tasks/1").await == 1 }).await;
    client.tasks().get(2).await.unwrap();
    slow.await.unwrap().unwrap();
    assert_eq!(received(&server, "/auth/refresh").await, 1);
}

#[tokio::test]
async fn the_jwt_exp_claim_drives_the_proactive_refresh() {
    let server = MockServer::start().await;
    let stale = jwt(json!({"sub": "1", "exp": Utc::now().timestamp() - 5}));
    mount_refresh(&server, "r0", "a1", "r1", 1).await;
    mount_task_for(&server, &stale, 0).await;
    mount_task_for(&server, "a1", 1).await;
    let client = builder(&server).tokens(Tokens::new(stale.as_str(), "r0")).build().unwrap();

    client.tasks().get(1).await.unwrap();
}

/// `POST /auth/login` answering a JWT access token `a0` with these `iat`/`exp` (seconds from
/// now by the local clock) and `expires_in`.
async fn mount_login_with_clock_offset(server: &MockServer, iat: i64, exp: i64, expires_in: u64) -> String {
    let now = Utc::now().timestamp();
    let access = jwt(json!({"sub": "1", "iat": now + iat, "exp": now + exp, "n": "a0"}));
    let answer = json!({"access_token": access, "refresh_token": "r0", "token_type": "bearer", "expires_in": expires_in});
    Mock::given(method("POST"))
        .and(path("/auth/login"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(1)
        .mount(server)
        .await;
    access
}

#[tokio::test]
async fn a_client_clock_ahead_of_the_server_does_not_refresh_every_request() {
    let server = MockServer::start().await;
    // Issued 25 minutes ago and expired 10 minutes ago by the local clock, which runs fast;
    // the server says it lives 900 s from now.
    let access = mount_login_with_clock_offset(&server, -1500, -600, 900).await;
    mount_refresh(&server, "r0", "a1", "r1", 0).await;
    mount_task_for(&server, &access, 3).await;
    let client = builder(&server).build().unwrap();

    let tokens = client.login("ada", "correct horse").await.unwrap();

    let left = tokens.expires_at().unwrap() - Utc::now();
    assert!(left > TimeDelta::seconds(890) && left <= TimeDelta::seconds(900), "{left}");
    for _ in 0..3 {
        client.tasks().get(1).await.unwrap();
    }
}

#[tokio::test]
async fn a_client_clock_behind_the_server_still_refreshes_at_half_life() {
    let server = MockServer::start().await;
    // Issued an hour ahead of the local clock, which runs slow; the token lives 1 s.
    let access = mount_login_with_clock_offset(&server, 3600, 3601, 1).await;
    mount_refresh(&server, "r0", "a1", "r1", 1).await;
    mount_task_for(&server, &access, 0).await;
    mount_task_for(&server, "a1", 1).await;
    let client = builder(&server).build().unwrap();
    client.login("ada", "correct horse").await.unwrap();

    // Past half the lifetime, by the client's own clock since the answer.
    tokio::time::sleep(Duration::from_millis(700)).await;
    client.tasks().get(1).await.unwrap();

    assert_eq!(client.tokens().unwrap().access_token().expose(), "a1");
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed_first_and_a_fresh_one_is_not() {
    let server = MockServer::start().await;
    mount_refresh(&server, "r0", "a1", "r1", 1).await;
    mount_task_for(&server, "a1", 2).await;
    // Expires in 10 s, inside the default 30 s skew.
    let soon = Tokens::new("a0", "r0").with_expires_at(Utc::now() + TimeDelta::seconds(10));
    let client = builder(&server).tokens(soon).build().unwrap();

    client.tasks().get(1).await.unwrap();
    // The refreshed token is good for 900 s: no second refresh.
    client.tasks().get(1).await.unwrap();
}

#[tokio::test]
async fn a_refused_request_is_replayed_once_and_a_second_401_is_returned() {
    let server = MockServer::start().await;
    mount_refresh(&server, "r0", "a1", "r1", 1).await;
    mount_refused(&server, "a0", 1).await;
    mount_refused(&server, "a1", 1).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let err = client.tasks().get(1).await.unwrap_err();

    let Error::Unauthorized { response } = &err else { panic!("{err:?}") };
    assert_eq!(response.detail, "token expired");
    assert_eq!(err.request_id(), Some("req-401"));
    // The session itself is not over: the refresh worked.
    assert_eq!(client.tokens().unwrap().refresh_token().expose(), "r1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejected_refresh_ends_the_session_for_every_waiting_call() {
    let server = MockServer::start().await;
    mount_refresh_answer(&server, problem(401, "refresh token reused").set_delay(Duration::from_millis(100)))
        .await;
    mount_refused(&server, "a0", 1..=20).await;
    let store = MemoryTokenStore::from(fresh("a0", "r0"));
    let client = builder(&server).tokens(fresh("a0", "r0")).token_store(store.clone()).build().unwrap();

    let results = concurrently(20, || {
        let client = client.clone();
        async move { client.tasks().get(1).await }
    })
    .await;

    for result in results {
        let err = result.unwrap_err();
        let Error::SessionExpired { response: Some(response) } = &err else { panic!("{err:?}") };
        assert_eq!(response.detail, "refresh token reused");
        assert!(!err.is_retryable());
    }
    assert!(client.tokens().is_none());
    assert!(store.get().is_none(), "the store is cleared");
    assert!(matches!(client.refresh().await, Err(Error::SessionExpired { response: None })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_refresh_keeps_the_tokens_and_is_retryable() {
    let server = MockServer::start().await;
    mount_refresh_answer(&server, problem(503, "database unavailable").set_delay(Duration::from_millis(100)))
        .await;
    let store = RecordingStore::default();
    let client = builder(&server)
        .tokens(expired("a0", "r0"))
        .token_store(store.clone())
        .retry_policy(RetryPolicy::disabled())
        .build()
        .unwrap();

    let results = concurrently(10, || {
        let client = client.clone();
        async move { client.tasks().get(1).await }
    })
    .await;

    for result in results {
        let err = result.unwrap_err();
        let Error::RefreshFailed { source } = &err else { panic!("{err:?}") };
        assert!(matches!(**source, Error::Server { .. }), "{err:?}");
        assert_eq!(source.detail(), Some("database unavailable"));
        assert!(err.is_retryable());
        // The call's own answer never came: no status or detail of its own.
        assert_eq!((err.status(), err.detail()), (None, None));
        assert_eq!(err.request_id(), Some("req-503"));
    }
    assert_eq!(client.tokens().unwrap().refresh_token().expose(), "r0");
    assert_eq!(store.events(), [], "the store is neither saved nor cleared");
}

#[tokio::test]
async fn a_refresh_answered_as_tasklane_never_does_keeps_the_session_and_is_not_the_calls_answer() {
    // A proxy or firewall in front of the server: its 400, 403 or 404 says nothing of the
    // refresh token, and a 404 is not "no such task".
    for status in [400, 403, 404] {
        let server = MockServer::start().await;
        mount_refresh_answer(&server, problem(status, "not here")).await;
        let store = RecordingStore::default();
        let client = builder(&server)
            .tokens(expired("a0", "r0"))
            .token_store(store.clone())
            .retry_policy(RetryPolicy::disabled())
            .build()
            .unwrap();

        let err = client.tasks().get(1).await.unwrap_err();

        let Error::RefreshFailed { source } = &err else { panic!("{status}: {err:?}") };
        assert_eq!(source.status(), Some(status));
        assert_eq!(err.status(), None);
        assert!(!err.is_retryable(), "{status}");
        assert_eq!(client.tokens().unwrap().refresh_token().expose(), "r0", "{status}");
        assert_eq!(store.events(), [], "{status}: the store is neither saved nor cleared");
    }
}

#[tokio::test]
async fn a_post_held_back_by_a_failed_refresh_is_retried() {
    let server = MockServer::start().await;
    mount_refresh_failing_first(&server, problem(503, "redis unavailable")).await;
    mount_refresh(&server, "r0", "a1", "r1", 1).await;
    Mock::given(method("POST"))
        .and(path("/tasks/"))
        .and(header("authorization", "Bearer a1"))
        .respond_with(ResponseTemplate::new(201).set_body_json(task(1, "once")))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(expired("a0", "r0")).build().unwrap();

    // The create was never sent while the refresh failed: sending it after the retry is safe.
    let task = client.tasks().create(tasklane::NewTask::new("once")).await.unwrap();

    assert_eq!(task.id, 1);
}

#[tokio::test]
async fn a_slow_failing_refresh_does_not_fail_a_request_the_old_token_can_make() {
    let server = MockServer::start().await;
    mount_refresh_answer(&server, problem(503, "redis unavailable").set_delay(Duration::from_secs(7))).await;
    mount_task_for(&server, "a0", 1).await;
    // Inside the skew, good for 6 s more: shorter than the refresh takes to fail.
    let soon = Tokens::new("a0", "r0").with_expires_at(Utc::now() + TimeDelta::seconds(6));
    let client = builder(&server).tokens(soon).retry_policy(RetryPolicy::disabled()).build().unwrap();

    assert_eq!(client.tasks().get(1).await.unwrap().id, 1);
    assert_eq!(client.tokens().unwrap().access_token().expose(), "a0");
}

/// A store whose `save` takes a while, as one writing a file or a keychain does.
#[derive(Clone, Default)]
struct SlowStore(RecordingStore);

impl tasklane::TokenStore for SlowStore {
    fn save<'a>(&'a self, tokens: &'a Tokens) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            self.0.save(tokens).await;
        })
    }

    fn clear(&self) -> futures::future::BoxFuture<'_, ()> {
        self.0.clear()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_went_ahead_of_a_slow_refresh_returns_once_its_tokens_are_stored() {
    // The token is good for 6 s: the call waits 5 s for the refresh, goes ahead with the old
    // token, and its answer comes at ~8 s, after the refresh answered (7 s) and while the
    // store is still saving (7-9 s).
    let server = MockServer::start().await;
    let slow = ResponseTemplate::new(200).set_body_json(pair("a1", "r1")).set_delay(Duration::from_secs(7));
    mount_refresh_answer(&server, slow).await;
    Mock::given(method("GET"))
        .and(path("/tasks/1"))
        .and(header("authorization", "Bearer a0"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(task(1, "t")).set_delay(Duration::from_secs(3)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let store = SlowStore::default();
    let soon = Tokens::new("a0", "r0").with_expires_at(Utc::now() + TimeDelta::seconds(6));
    let client = builder(&server).tokens(soon).token_store(store.clone()).build().unwrap();

    client.tasks().get(1).await.unwrap();

    // A program that exits right after the call keeps the rotated tokens.
    assert_eq!(store.0.events(), [StoreEvent::Save("r1".into())]);
    assert_eq!(client.tokens().unwrap().access_token().expose(), "a1");
}

#[tokio::test]
async fn after_a_failed_refresh_calls_go_ahead_with_the_old_token_for_a_while() {
    let server = MockServer::start().await;
    mount_refresh_answer(&server, problem(503, "redis unavailable").insert_header("retry-after", "30")).await;
    mount_task_for(&server, "a0", 5).await;
    let soon = Tokens::new("a0", "r0").with_expires_at(Utc::now() + TimeDelta::seconds(20));
    let client = builder(&server).tokens(soon).retry_policy(RetryPolicy::disabled()).build().unwrap();

    // One refresh tried; the four calls after it do not send another within its Retry-After.
    for _ in 0..5 {
        client.tasks().get(1).await.unwrap();
    }
}

#[tokio::test]
async fn a_retried_request_gets_through_a_refresh_that_failed_once() {
    let server = MockServer::start().await;
    mount_refresh_failing_first(&server, problem(502, "bad gateway")).await;
    mount_refresh(&server, "r0", "a1", "r1", 1).await;
    mount_task_for(&server, "a1", 1).await;
    let client = builder(&server).tokens(expired("a0", "r0")).build().unwrap();

    assert_eq!(client.tasks().get(1).await.unwrap().id, 1);
}

#[tokio::test]
async fn a_token_inside_the_skew_is_still_used_when_its_refresh_fails() {
    let server = MockServer::start().await;
    mount_refresh_answer(&server, problem(503, "redis unavailable")).await;
    mount_task_for(&server, "a0", 1).await;
    let soon = Tokens::new("a0", "r0").with_expires_at(Utc::now() + TimeDelta::seconds(10));
    let client = builder(&server).tokens(soon).retry_policy(RetryPolicy::disabled()).build().unwrap();

    client.tasks().get(1).await.unwrap();
    assert_eq!(client.tokens().unwrap().access_token().expose(), "a0");
}

#[tokio::test]
async fn rotated_tokens_are_used_and_stored_in_order() {
    let server = MockServer::start().await;
    mount_refresh(&server, "r0", "a1", "r1", 1).await;
    mount_refresh(&server, "r1", "a2", "r2", 1).await;
    let store = RecordingStore::default();
    let client = builder(&server).tokens(fresh("a0", "r0")).token_store(store.clone()).build().unwrap();

    assert_eq!(client.refresh().await.unwrap().refresh_token().expose(), "r1");
    assert_eq!(client.refresh().await.unwrap().refresh_token().expose(), "r2");

    assert_eq!(store.events(), [StoreEvent::Save("r1".into()), StoreEvent::Save("r2".into())]);
    assert_eq!(client.tokens().unwrap().access_token().expose(), "a2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_explicit_refreshes_are_one() {
    let server = MockServer::start().await;
    mount_slow_refresh(&server, "r0", "a1", "r1").await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let results = concurrently(10, || {
        let client = client.clone();
        async move { client.refresh().await }
    })
    .await;

    for result in results {
        assert_eq!(result.unwrap().access_token().expose(), "a1");
    }
    assert_eq!(received(&server, "/auth/refresh").await, 1);
}

#[tokio::test]
async fn a_refresh_completes_even_when_its_caller_gives_up() {
    let server = MockServer::start().await;
    mount_slow_refresh(&server, "r0", "a1", "r1").await;
    mount_task_for(&server, "a1", 1).await;
    let store = MemoryTokenStore::new();
    let client = builder(&server).tokens(expired("a0", "r0")).token_store(store.clone()).build().unwrap();

    // The caller is dropped while the refresh is on the wire, after the server has consumed r0.
    let gave_up = tokio::time::timeout(Duration::from_millis(20), client.tasks().get(1)).await;
    assert!(gave_up.is_err());

    // The rotated tokens are kept, so the next call needs no refresh (which would reuse r0).
    eventually(|| async { store.get().is_some() }).await;
    assert_eq!(store.get().unwrap().refresh_token().expose(), "r1");
    client.tasks().get(1).await.unwrap();
}

#[tokio::test]
async fn auth_routes_and_probes_never_refresh_nor_send_the_token() {
    let server = MockServer::start().await;
    mount_refresh(&server, "r0", "a1", "r1", 0).await;
    let routes = [
        ("/auth/login", 401),
        ("/auth/register", 409),
        ("/auth/logout", 500),
        ("/health", 503),
        ("/ready", 503),
    ];
    for (route, status) in routes {
        Mock::given(path(route)).respond_with(problem(status, "no")).expect(1).mount(&server).await;
    }
    // An expired session that any authenticated call would refresh first.
    let client = builder(&server).tokens(expired("a0", "r0")).build().unwrap();

    assert!(matches!(client.login("ada", "wrong password").await, Err(Error::Unauthorized { .. })));
    assert!(matches!(client.register("ada", "long enough").await, Err(Error::Conflict { .. })));
    assert!(matches!(client.logout().await, Err(Error::Server { .. })));
    assert!(matches!(client.health().await, Err(Error::Server { .. })));
    assert!(matches!(client.ready().await, Err(Error::Server { .. })));

    for request in server.received_requests().await.unwrap() {
        assert!(!request.headers.contains_key("authorization"), "{}", request.url);
    }
    // The failed logout kept the session.
    assert_eq!(client.tokens().unwrap().refresh_token().expose(), "r0");
}

#[tokio::test]
async fn me_is_an_ordinary_authenticated_call() {
    let server = MockServer::start().await;
    mount_refresh(&server, "r0", "a1", "r1", 1).await;
    Mock::given(method("GET"))
        .and(path("/auth/me"))
        .and(header("authorization", "Bearer a1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": 1, "username": "ada", "created_at": "2026-11-26T17:12:54Z"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(expired("a0", "r0")).build().unwrap();

    assert_eq!(client.me().await.unwrap().username, "ada");
}

#[tokio::test]
async fn login_and_register_start_a_stored_session() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/register"))
        .and(body_json(json!({"username": "ada", "password": "correct horse"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(pair("a1", "r1")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/login"))
        .and(body_json(json!({"username": "ada", "password": "correct horse"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(pair("a2", "r2")))
        .expect(1)
        .mount(&server)
        .await;
    mount_task_for(&server, "a2", 1).await;
    let store = RecordingStore::default();
    let client = builder(&server).token_store(store.clone()).build().unwrap();

    let tokens = client.register("ada", "correct horse").await.unwrap();
    let left = tokens.expires_at().unwrap() - Utc::now();
    assert!(left > TimeDelta::seconds(890) && left <= TimeDelta::seconds(900), "{left}");
    client.login("ada", "correct horse").await.unwrap();
    client.tasks().get(1).await.unwrap();

    assert_eq!(store.events(), [StoreEvent::Save("r1".into()), StoreEvent::Save("r2".into())]);
}

#[tokio::test]
async fn logout_revokes_the_refresh_token_and_clears_the_store() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/logout"))
        .and(body_json(json!({"refresh_token": "r0"})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let store = RecordingStore::default();
    let client = builder(&server).tokens(fresh("a0", "r0")).token_store(store.clone()).build().unwrap();

    client.logout().await.unwrap();
    assert!(client.tokens().is_none());
    // Without a session there is nothing to revoke: no second request.
    client.logout().await.unwrap();
    assert_eq!(store.events(), [StoreEvent::Clear, StoreEvent::Clear]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_logout_does_not_hold_up_a_login_nor_end_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/logout"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_secs(5)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/login"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pair("b0", "s0")))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let logout = tokio::spawn({
        let client = client.clone();
        async move { client.logout().await }
    });
    eventually(|| async { received(&server, "/auth/logout").await == 1 }).await;

    client.login("bob", "correct horse").await.unwrap();

    assert!(!logout.is_finished(), "the login did not wait for the logout");
    logout.await.unwrap().unwrap();
    // The logout revoked the session it was called in, not the one begun meanwhile.
    assert_eq!(client.tokens().unwrap().refresh_token().expose(), "s0");
}

#[tokio::test]
async fn forget_session_ends_the_session_locally_when_logout_fails() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/logout"))
        .respond_with(problem(503, "database unavailable"))
        .expect(1)
        .mount(&server)
        .await;
    let store = RecordingStore::default();
    let client = builder(&server).tokens(fresh("a0", "r0")).token_store(store.clone()).build().unwrap();

    assert!(client.logout().await.is_err());
    assert!(client.tokens().is_some(), "a failed logout keeps the session");
    client.forget_session().await;

    assert!(client.tokens().is_none());
    assert_eq!(store.events(), [StoreEvent::Clear]);
    let err = client.tasks().get(1).await.unwrap_err();
    assert!(matches!(err, Error::SessionExpired { response: None }), "{err:?}");
    // Without a session it only clears the store, and never calls the server.
    client.forget_session().await;
    assert_eq!(store.events(), [StoreEvent::Clear, StoreEvent::Clear]);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_in_flight_does_not_bring_a_forgotten_session_back() {
    let server = MockServer::start().await;
    mount_slow_refresh(&server, "r0", "a1", "r1").await;
    let store = RecordingStore::default();
    let client = builder(&server).tokens(expired("a0", "r0")).token_store(store.clone()).build().unwrap();

    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.tasks().get(1).await }
    });
    eventually(|| async { received(&server, "/auth/refresh").await == 1 }).await;
    client.forget_session().await;

    let err = waiting.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::SessionExpired { response: None }), "{err:?}");
    assert!(client.tokens().is_none());
    assert_eq!(store.events(), [StoreEvent::Clear], "the refreshed tokens are not saved");
    assert_eq!(received(&server, "/tasks/1").await, 0);
}

#[tokio::test]
async fn without_a_session_authenticated_calls_end_before_any_round_trip() {
    let server = MockServer::start().await;
    Mock::given(path("/health"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "ok"})))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).build().unwrap();

    // Never logged in: one variant to match for a login prompt, and nothing sent.
    let errors = [
        client.tasks().get(1).await.unwrap_err(),
        client.tasks().list().await.unwrap_err(),
        client.tasks().create(tasklane::NewTask::new("t")).await.unwrap_err(),
        client.tasks().delete(1).await.unwrap_err(),
        client.me().await.unwrap_err(),
        client.refresh().await.unwrap_err(),
    ];
    for err in &errors {
        assert!(matches!(err, Error::SessionExpired { response: None }), "{err:?}");
        assert!(!err.is_retryable());
    }
    // Calls that need no session still go out.
    assert_eq!(client.health().await.unwrap().status, "ok");
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.iter().map(|r| r.url.path()).collect::<Vec<_>>(), ["/health"]);
}

#[tokio::test]
async fn after_logout_authenticated_calls_end_before_any_round_trip() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/logout"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    client.logout().await.unwrap();

    let err = client.tasks().get(1).await.unwrap_err();

    assert!(matches!(err, Error::SessionExpired { response: None }), "{err:?}");
    assert_eq!(received(&server, "/tasks/1").await, 0);
}

/// A request refused with 401 after the app logged in as someone else is not sent again with
/// the new session's tokens: it belongs to a session that is over.
#[tokio::test]
async fn a_request_is_never_replayed_with_another_sessions_tokens() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/tasks/1"))
        .and(header("authorization", "Bearer alice"))
        .respond_with(problem(401, "token expired").set_delay(Duration::from_millis(300)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/tasks/1"))
        .and(header("authorization", "Bearer bob"))
        .respond_with(ResponseTemplate::new(200).set_body_json(task(1, "changed")))
        .expect(0)
        .mount(&server)
        .await;
    mount_refresh(&server, "ralice", "alice2", "ralice2", 0).await;
    let client = builder(&server).tokens(fresh("alice", "ralice")).build().unwrap();

    let err = error_across_a_login(&server, &client, |client| async move {
        client.tasks().update(1, tasklane::TaskUpdate::new().title("changed")).await
    })
    .await;

    assert!(matches!(err, Error::SessionExpired { response: None }), "{err:?}");
    assert_eq!(client.tokens().unwrap().access_token().expose(), "bob", "bob's session is untouched");
}

/// Starts `call` (alice's, answered slowly), logs the client in as bob while it is in flight,
/// and returns the error the call ends with.
async fn error_across_a_login<T, F>(
    server: &MockServer,
    client: &tasklane::Client,
    call: impl FnOnce(tasklane::Client) -> F,
) -> Error
where
    T: std::fmt::Debug + Send + 'static,
    F: std::future::Future<Output = tasklane::Result<T>> + Send + 'static,
{
    Mock::given(method("POST"))
        .and(path("/auth/login"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pair("bob", "rbob")))
        .expect(1)
        .mount(server)
        .await;
    let call = tokio::spawn(call(client.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.login("bob", "correct horse").await.unwrap();
    call.await.unwrap().unwrap_err()
}

/// A token store that panics while saving refreshed tokens, in its future or in `save` itself:
/// the panic is its own, and every request that waited for the refresh goes on with the new
/// tokens (none is left hanging, none fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_that_panics_does_not_leave_requests_hanging() {
    struct PanickingStore {
        in_save: bool,
    }
    impl tasklane::TokenStore for PanickingStore {
        fn save<'a>(&'a self, _: &'a Tokens) -> futures::future::BoxFuture<'a, ()> {
            assert!(!self.in_save, "the disk is on fire");
            Box::pin(async { panic!("the disk is on fire") })
        }
        fn clear(&self) -> futures::future::BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }
    for in_save in [false, true] {
        let server = MockServer::start().await;
        mount_slow_refresh(&server, "r0", "a1", "r1").await;
        mount_task_for(&server, "a1", 50).await;
        let store = PanickingStore { in_save };
        // Without retries, which would hide a failed wait: the tokens are set before the save.
        let client = builder(&server)
            .tokens(expired("a0", "r0"))
            .token_store(store)
            .retry_policy(RetryPolicy::disabled())
            .build()
            .unwrap();

        let calls = concurrently(50, || {
            let client = client.clone();
            async move { tokio::time::timeout(Duration::from_secs(10), client.tasks().get(1)).await }
        });
        let results = calls.await;

        assert!(results.iter().all(|r| matches!(r, Ok(Ok(_)))), "in save: {in_save}: {results:?}");
        assert_eq!(client.tokens().unwrap().refresh_token().expose(), "r1");
    }
}

/// A request retried after a passing failure is not sent again once another session has
/// begun: the retry would go out with someone else's token.
#[tokio::test]
async fn a_retry_is_never_sent_with_another_sessions_tokens() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/tasks/1"))
        .and(header("authorization", "Bearer alice"))
        .respond_with(problem(503, "busy").set_delay(Duration::from_millis(300)))
        .expect(1)
        .mount(&server)
        .await;
    mount_task_for(&server, "bob", 0).await;
    let client = builder(&server).tokens(fresh("alice", "ralice")).build().unwrap();

    let err =
        error_across_a_login(&server, &client, |client| async move { client.tasks().get(1).await }).await;

    assert!(matches!(err, Error::SessionExpired { response: None }), "{err:?}");
}

/// What an `on_refresh` hook heard, one line per outcome, and what the store held then.
#[derive(Clone, Default)]
struct HookLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl HookLog {
    fn hook(&self, store: MemoryTokenStore) -> impl Fn(&tasklane::RefreshOutcome) + Send + Sync + 'static {
        let log = self.clone();
        move |outcome| {
            let stored = store.get().map(|t| t.refresh_token().expose().to_owned());
            let line = match outcome {
                tasklane::RefreshOutcome::Refreshed { expires_at } => {
                    let left = expires_at.unwrap() - Utc::now();
                    assert!(left > TimeDelta::seconds(890) && left <= TimeDelta::seconds(900), "{left}");
                    format!("refreshed, stored {stored:?}")
                }
                tasklane::RefreshOutcome::SessionExpired { error } => {
                    format!("session expired ({}), stored {stored:?}", error.status().unwrap())
                }
                tasklane::RefreshOutcome::Failed { error } => format!("failed ({})", error.status().unwrap()),
                other => panic!("{other:?}"),
            };
            log.0.lock().unwrap().push(line);
        }
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_refresh_hook_hears_each_refresh_once_after_the_store() {
    let server = MockServer::start().await;
    mount_slow_refresh(&server, "r0", "a1", "r1").await;
    mount_task_for(&server, "a1", 20).await;
    let (store, log) = (MemoryTokenStore::new(), HookLog::default());
    let client = builder(&server)
        .tokens(expired("a0", "r0"))
        .token_store(store.clone())
        .on_refresh(log.hook(store))
        .build()
        .unwrap();

    let results = concurrently(20, || {
        let client = client.clone();
        async move { client.tasks().get(1).await }
    })
    .await;

    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(log.lines(), ["refreshed, stored Some(\"r1\")"]);
}

#[tokio::test]
async fn the_refresh_hook_hears_failures_and_the_end_of_the_session() {
    let server = MockServer::start().await;
    mount_refresh_failing_first(&server, problem(503, "redis unavailable")).await;
    mount_refresh_answer(&server, problem(401, "refresh token reused")).await;
    let (store, log) = (MemoryTokenStore::from(fresh("a0", "r0")), HookLog::default());
    let client = builder(&server)
        .tokens(fresh("a0", "r0"))
        .token_store(store.clone())
        .on_refresh(log.hook(store))
        .build()
        .unwrap();

    assert!(matches!(client.refresh().await, Err(Error::RefreshFailed { .. })));
    assert!(matches!(client.refresh().await, Err(Error::SessionExpired { .. })));

    assert_eq!(log.lines(), ["failed (503)", "session expired (401), stored None"]);
}

#[tokio::test]
async fn a_refresh_hook_that_panics_does_not_fail_the_calls() {
    let server = MockServer::start().await;
    mount_refresh(&server, "r0", "a1", "r1", 1).await;
    mount_task_for(&server, "a1", 2).await;
    let client = builder(&server)
        .tokens(expired("a0", "r0"))
        .on_refresh(|_| panic!("the hook is broken"))
        .retry_policy(RetryPolicy::disabled())
        .build()
        .unwrap();

    client.tasks().get(1).await.unwrap();
    client.tasks().get(1).await.unwrap();
    assert_eq!(client.tokens().unwrap().refresh_token().expose(), "r1");
}
