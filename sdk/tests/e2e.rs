//! The SDK against the real server: started in-process on a random port, on SQLite, with short
//! token lifetimes, so every method and access tokens the server refuses run for real.
#![cfg(feature = "client")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use futures::TryStreamExt as _;
use tasklane::{Client, Error, MemoryTokenStore, NewTask, Secret, TaskSort, TaskStatus, TaskUpdate, Tokens};
use tasklane_server::rocket::fairing::AdHoc;
use tasklane_server::testing::TestServer;
use tasklane_server::Config;

/// The server on 127.0.0.1:<random port> (a `TestServer`), with the number of `/auth/refresh`
/// calls it served and of the task requests it refused with 401.
struct Server {
    url: String,
    refreshes: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    _server: TestServer,
}

impl Server {
    async fn start(access_ttl: Duration, configure: impl FnOnce(&mut Config) + Send + 'static) -> Server {
        let (refreshes, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let counters = (refreshes.clone(), refused.clone());
        let server = TestServer::builder()
            .access_token_ttl(access_ttl)
            .config(configure)
            .attach(AdHoc::on_response("count refreshes and refusals", move |req, res| {
                let (refreshes, refused) = counters.clone();
                Box::pin(async move {
                    let path = req.uri().path();
                    if path == "/auth/refresh" && res.status().code == 200 {
                        refreshes.fetch_add(1, Ordering::SeqCst);
                    }
                    if path.as_str().starts_with("/tasks") && res.status().code == 401 {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                })
            }))
            .start()
            .await;
        Server { url: server.url().to_owned(), refreshes, refused, _server: server }
    }

    fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }

    /// Task requests answered 401.
    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Waits until the server refuses `access_token` (at its expiry plus the server's leeway),
    /// asking `GET /auth/me` with it every 100 ms, for 20 s at most.
    async fn wait_until_refused(&self, access_token: &Secret) {
        let http = tasklane::reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = http
                .get(format!("{}/auth/me", self.url))
                .bearer_auth(access_token.expose())
                .send()
                .await
                .unwrap();
            if answer.status() == 401 {
                return;
            }
            assert_eq!(answer.status(), 200);
            assert!(Instant::now() < deadline, "the server still accepts the access token after 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sdk_method_against_the_server() {
    let server = Server::start(Duration::from_secs(900), |_| {}).await;
    let store = MemoryTokenStore::new();
    let client = Client::builder(&server.url).token_store(store.clone()).build().unwrap();

    assert_eq!(client.health().await.unwrap().status, "ok");
    assert_eq!(client.ready().await.unwrap().checks["database"], "ok");

    let tokens = client.register("e2e-user", "correct horse").await.unwrap();
    assert_eq!(store.get(), Some(tokens.clone()));
    let me = client.me().await.unwrap();
    assert_eq!(me.username, "e2e-user");

    // Errors come back typed, with the server's detail and request id.
    let conflict = client.register("E2E-USER", "correct horse").await.unwrap_err();
    assert!(matches!(conflict, Error::Conflict { .. }), "{conflict:?}");
    assert_eq!(conflict.status(), Some(409));
    assert!(conflict.detail().unwrap().contains("taken"));
    assert!(conflict.request_id().is_some_and(|id| !id.is_empty()));

    let tasks = client.tasks();
    let a = tasks.create(NewTask::new("  alpha ").description("first")).await.unwrap();
    assert_eq!(a.title, "alpha");
    assert_eq!(a.user_id, me.id);
    let b = tasks.create(NewTask::new("beta").status(TaskStatus::Done)).await.unwrap();
    let c = tasks.create(NewTask::new("gamma")).await.unwrap();
    assert_eq!(tasks.get(a.id).await.unwrap(), a);

    let page = tasks.list().sort(TaskSort::CreatedAt).limit(2).await.unwrap();
    assert_eq!(page.items.iter().map(|t| t.id).collect::<Vec<_>>(), vec![a.id, b.id]);
    assert_eq!(page.total, Some(3));
    assert!(page.next.is_some());
    let second = tasks.next_page(&page).await.unwrap().expect("a second page");
    assert_eq!(second.items.iter().map(|t| t.id).collect::<Vec<_>>(), vec![c.id]);
    assert!(tasks.next_page(&second).await.unwrap().is_none());
    let done = tasks.list().status(TaskStatus::Done).await.unwrap();
    assert_eq!(done.items, vec![b.clone().into_inner()]);
    let titles: Vec<String> = tasks
        .list()
        .sort(TaskSort::TitleDesc)
        .limit(1)
        .stream()
        .map_ok(|t| t.title)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(titles, vec!["gamma", "beta", "alpha"]);

    let updated = tasks.update(a.id, TaskUpdate::new().status(TaskStatus::InProgress)).await.unwrap();
    assert_eq!((updated.status, updated.description.as_deref()), (TaskStatus::InProgress, Some("first")));
    let patched = tasks.patch(a.id, TaskUpdate::new().clear_description().title("alpha 2")).await.unwrap();
    assert_eq!((patched.title.as_str(), patched.description.as_deref()), ("alpha 2", None));
    assert!(patched.updated_at > a.updated_at);

    tasks.delete(c.id).await.unwrap();
    let missing = tasks.get(c.id).await.unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing:?}");
    assert!(matches!(tasks.delete(c.id).await.unwrap_err(), Error::NotFound { .. }));

    // Invalid input is refused before it is sent, by the rules the server applies.
    let invalid = tasks.create(NewTask::new("")).await.unwrap_err();
    assert!(matches!(invalid, Error::Validation { .. }), "{invalid:?}");

    // An explicit refresh rotates the refresh token and hands it to the store.
    let rotated = client.refresh().await.unwrap();
    assert_ne!(rotated.refresh_token(), tokens.refresh_token());
    assert_eq!(store.get(), Some(rotated.clone()));
    assert_eq!(server.refreshes(), 1);

    // Another client logs in as the same user: a second session.
    let other = Client::new(&server.url).unwrap();
    other.login("e2e-user", "correct horse").await.unwrap();
    assert_eq!(other.tasks().list().await.unwrap().total, Some(2));
    let bad = Client::new(&server.url).unwrap().login("e2e-user", "wrong password").await.unwrap_err();
    assert!(matches!(bad, Error::Unauthorized { .. }), "{bad:?}");

    client.logout().await.unwrap();
    assert_eq!(store.get(), None);
    assert!(client.tokens().is_none());
    // Without a session, calls that need one end without a round trip.
    let after = client.tasks().list().await.unwrap_err();
    assert!(matches!(after, Error::SessionExpired { response: None }), "{after:?}");
    // The other session is untouched.
    assert_eq!(other.me().await.unwrap().id, me.id);
}

/// Access tokens living 1 s under a workload that goes on until the server itself refuses the
/// first one (its expiry plus the server's leeway), and a lifetime beyond: every call succeeds
/// because the client refreshed ahead of each expiry, once per half-life however many calls are
/// in flight, and so none was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_token_expiry_in_the_middle_of_a_workload() {
    let server = Server::start(Duration::from_secs(1), |_| {}).await;
    let store = MemoryTokenStore::new();
    let client = Client::builder(&server.url).token_store(store.clone()).build().unwrap();
    client.register("busy", "correct horse").await.unwrap();
    let first = store.get().unwrap();

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut calls = 0;
                while !stop.load(Ordering::SeqCst) {
                    let task = client.tasks().create(NewTask::new(format!("w{w}-{calls}"))).await?;
                    client.tasks().get(task.id).await?;
                    calls += 2;
                }
                Ok::<_, Error>(calls)
            })
        })
        .collect();
    server.wait_until_refused(first.access_token()).await;
    let refused_after = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut calls = 0;
    for worker in workers {
        calls += worker.await.unwrap().expect("no call fails across the expiries");
    }
    let elapsed = started.elapsed().as_secs_f64();

    assert!(
        refused_after > Duration::from_secs(1),
        "the server refused the first token after {refused_after:?}"
    );
    assert_eq!(server.refused(), 0, "every refresh came before the server refused a token");
    // 1 s tokens refreshed at half-life: about two refreshes a second, never one per call.
    let refreshes = server.refreshes();
    assert!(refreshes as f64 >= elapsed, "{refreshes} refreshes in {elapsed:.1} s");
    assert!(refreshes as f64 <= 3.0 * elapsed + 2.0, "{refreshes} refreshes in {elapsed:.1} s");
    assert!(refreshes * 10 < calls, "{refreshes} refreshes for {calls} calls");
    let last = store.get().unwrap();
    assert_ne!(last.access_token(), first.access_token(), "the workload ended on a rotated token");
    assert_ne!(last.refresh_token(), first.refresh_token(), "rotated tokens reached the store");
    assert_eq!(client.tokens(), Some(last));
}

/// A client that takes an access token for good when the server no longer does (its clock
/// behind the server's, say): the server's 401 makes it refresh, and the call is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_server_refuses_is_refreshed_and_the_call_replayed() {
    let server = Server::start(Duration::from_secs(1), |_| {}).await;
    let registered = Client::new(&server.url).unwrap().register("behind", "correct horse").await.unwrap();
    // The session moves to a client that believes the access token good for another hour.
    let stale = Tokens::new(registered.access_token().clone(), registered.refresh_token().clone())
        .with_expires_at(Utc::now() + TimeDelta::hours(1));
    let client = Client::builder(&server.url).tokens(stale).build().unwrap();
    server.wait_until_refused(registered.access_token()).await;

    let page = client.tasks().list().await.unwrap();

    assert_eq!(page.total, Some(0));
    assert_eq!(server.refused(), 1, "the server refused the stale token once");
    assert_eq!(server.refreshes(), 1, "one refresh, then the call was replayed");
    assert_ne!(client.tokens().unwrap().access_token(), registered.access_token());
}

/// A session the server no longer knows (logged out elsewhere) ends with `SessionExpired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_ends_with_session_expired() {
    let server = Server::start(Duration::from_secs(1), |_| {}).await;
    let store = MemoryTokenStore::new();
    let client = Client::builder(&server.url).token_store(store.clone()).build().unwrap();
    let tokens = client.register("revoked", "correct horse").await.unwrap();
    // Logged out from elsewhere with the same refresh token.
    let elsewhere = Client::builder(&server.url).tokens(tokens).build().unwrap();
    elsewhere.logout().await.unwrap();
    // Once the access token is stale, the refresh is refused.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = client.me().await.unwrap_err();
    assert!(matches!(err, Error::SessionExpired { .. }), "{err:?}");
    assert_eq!(store.get(), None);
    assert!(client.tokens().is_none());
}

/// The server's rate limit surfaces as `RateLimited` with its `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_surface_as_rate_limited() {
    let server = Server::start(Duration::from_secs(900), |config| {
        config.rate_limit_account_per_minute = 2;
    })
    .await;
    let client =
        Client::builder(&server.url).retry_policy(tasklane::RetryPolicy::disabled()).build().unwrap();
    client.register("limited", "correct horse").await.unwrap();
    client.login("limited", "correct horse").await.unwrap();
    client.login("limited", "correct horse").await.unwrap();
    let err = client.login("limited", "correct horse").await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    assert_eq!(err.status(), Some(429));
    let wait = err.retry_after().expect("Retry-After");
    assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(30), "{wait:?}");
    assert!(err.is_retryable());
}
