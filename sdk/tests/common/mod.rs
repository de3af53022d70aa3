//! Helpers shared by the wiremock tests.
#![allow(dead_code)] // each test file uses a different part

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
// The re-exports: a store and its tokens need nothing beyond this crate.
use tasklane::chrono::{TimeDelta, Utc};
use tasklane::{BoxFuture, Client, ClientBuilder, RetryPolicy, TokenStore, Tokens};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A builder for a client of `server` whose retries wait at most a few milliseconds.
pub fn builder(server: &MockServer) -> ClientBuilder {
    Client::builder(server.uri()).retry_policy(fast_retries())
}

pub fn fast_retries() -> RetryPolicy {
    RetryPolicy::new().base_delay(Duration::from_millis(1)).max_delay(Duration::from_millis(20))
}

/// Tokens whose access token expired a minute ago.
pub fn expired(access: &str, refresh: &str) -> Tokens {
    Tokens::new(access, refresh).with_expires_at(Utc::now() - TimeDelta::minutes(1))
}

/// Tokens whose access token is good for an hour.
pub fn fresh(access: &str, refresh: &str) -> Tokens {
    Tokens::new(access, refresh).with_expires_at(Utc::now() + TimeDelta::hours(1))
}

/// An unsigned JWT with these claims: enough for the client, which never verifies tokens.
pub fn jwt(claims: Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!("{}.{}.signature", part(&json!({"alg": "HS256", "typ": "JWT"})), part(&claims))
}

/// A token pair answer, as the server sends it.
pub fn pair(access: &str, refresh: &str) -> Value {
    json!({"access_token": access, "refresh_token": refresh, "token_type": "bearer", "expires_in": 900})
}

pub fn task(id: i64, title: &str) -> Value {
    json!({
        "id": id, "title": title, "description": null, "status": "pending", "user_id": 1,
        "created_at": "2026-11-26T17:12:54.123Z", "updated_at": "2026-11-26T17:12:54.123Z"
    })
}

/// An `application/problem+json` answer with a request id, as the server sends errors.
pub fn problem(status: u16, detail: &str) -> ResponseTemplate {
    let body = json!({"type": "about:blank", "title": "Error", "status": status, "detail": detail});
    ResponseTemplate::new(status)
        .insert_header("x-request-id", format!("req-{status}").as_str())
        .set_body_raw(serde_json::to_vec(&body).unwrap(), "application/problem+json")
}

/// Mounts `POST /auth/refresh` that accepts `refresh` and answers the pair `(access, next)`,
/// expected `times` times.
pub async fn mount_refresh(server: &MockServer, refresh: &str, access: &str, next: &str, times: u64) {
    Mock::given(method("POST"))
        .and(path("/auth/refresh"))
        .and(body_json(json!({"refresh_token": refresh})))
        .respond_with(ResponseTemplate::new(200).set_body_json(pair(access, next)))
        .expect(times)
        .mount(server)
        .await;
}

/// How many requests `server` received for `route`, whatever their method, headers or body
/// (a mock's `.expect(n)` counts only the requests it matched).
pub async fn received(server: &MockServer, route: &str) -> usize {
    server.received_requests().await.unwrap().iter().filter(|r| r.url.path() == route).count()
}

/// Waits (5 s at most) until `condition` holds, checking every 10 ms.
pub async fn eventually<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the condition did not come true within 5 s");
}

/// What a [`RecordingStore`] was asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreEvent {
    /// `save`, with the refresh token saved.
    Save(String),
    Clear,
}

/// A token store that records every call, to check what the client stored and when.
#[derive(Clone, Default)]
pub struct RecordingStore {
    events: Arc<Mutex<Vec<StoreEvent>>>,
}

impl RecordingStore {
    pub fn events(&self) -> Vec<StoreEvent> {
        self.events.lock().unwrap().clone()
    }
}

impl TokenStore for RecordingStore {
    fn save<'a>(&'a self, tokens: &'a Tokens) -> BoxFuture<'a, ()> {
        self.events.lock().unwrap().push(StoreEvent::Save(tokens.refresh_token().expose().to_owned()));
        Box::pin(async {})
    }

    fn clear(&self) -> BoxFuture<'_, ()> {
        self.events.lock().unwrap().push(StoreEvent::Clear);
        Box::pin(async {})
    }
}

/// Runs `n` copies of `call` at once on the runtime's worker threads.
pub async fn concurrently<F, Fut, T>(n: usize, call: F) -> Vec<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|_| tokio::spawn(call())).collect();
    let mut results = Vec::with_capacity(n);
    for handle in handles {
        results.push(handle.await.expect("task panicked"));
    }
    results
}

/// The value of header `name` on every request `server` received, in order (`None` where a
/// request had none).
pub async fn sent_header(server: &MockServer, name: &str) -> Vec<Option<String>> {
    let requests = server.received_requests().await.unwrap();
    requests.iter().map(|r| r.headers.get(name).map(|v| v.to_str().unwrap().to_owned())).collect()
}

/// A task of `version`, as the server sends it, and the `ETag` it would carry.
pub fn versioned(id: i64, title: &str, version: i64) -> (Value, String) {
    let mut body = task(id, title);
    body["version"] = json!(version);
    (body, format!("\"{id}-{version}\""))
}
