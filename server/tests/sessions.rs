//! Over real sockets: refresh races on every refresh store, restarts, compatibility mode, and
//! backends that do not answer.

mod common;

use std::time::{Duration, Instant};

use common::{scratch_config, Backend, TestApp, TestServer, SECRET};
use futures::future::join_all;
use serde_json::{json, Value};
use tasklane_server::auth::jwt::{JwtKeys, TokenKind};
use tasklane_server::config::SecretKey;
use tasklane_server::Config;

async fn register(http: &reqwest::Client, server: &TestServer, name: &str) -> Value {
    let res = http
        .post(server.url("/auth/register"))
        .json(&json!({"username": name, "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// 20 refreshes of one token at once, over 20 connections: exactly one wins.
async fn concurrent_refresh_has_one_winner(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else { return };
    let http = reqwest::Client::new();
    let pair = register(&http, &server, "racer").await;
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    let attempts = (0..20).map(|_| {
        let http = http.clone();
        let url = server.url("/auth/refresh");
        let body = json!({"refresh_token": refresh});
        async move { http.post(url).json(&body).send().await.unwrap().status().as_u16() }
    });
    let statuses = join_all(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 19, "{statuses:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refresh_has_one_winner_sqlite() {
    concurrent_refresh_has_one_winner(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refresh_has_one_winner_redis() {
    concurrent_refresh_has_one_winner(Backend::PostgresRedis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refresh_has_one_winner_postgres() {
    concurrent_refresh_has_one_winner(Backend::Postgres).await;
}

/// The whole flow over HTTP/1.1 on a socket, as curl would do it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_over_a_socket() {
    for backend in [Backend::Sqlite, Backend::PostgresRedis] {
        let Some(server) = TestServer::start(backend).await else { continue };
        let http = reqwest::Client::new();
        let pair = register(&http, &server, "socket").await;
        let token = pair["access_token"].as_str().unwrap();
        let created = http
            .post(server.url("/tasks"))
            .bearer_auth(token)
            .json(&json!({"title": "over the wire"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        assert!(!created.headers()["x-request-id"].is_empty());
        let list = http.get(server.url("/tasks/")).bearer_auth(token).send().await.unwrap();
        assert_eq!(list.headers()["x-total-count"], "1");
        let tasks: Value = list.json().await.unwrap();
        assert_eq!(tasks[0]["title"], "over the wire");
        // A body over the limit is refused with problem JSON, and the connection stays usable.
        let big = http
            .post(server.url("/tasks/"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(vec![b' '; 200_000])
            .send()
            .await
            .unwrap();
        assert_eq!(big.status(), 413);
        assert_eq!(big.headers()["content-type"], "application/problem+json");
        let after = http.get(server.url("/health")).send().await.unwrap();
        assert_eq!(after.status(), 200);
        server.stop().await;
    }
}

/// The embedded default generates its key once and keeps it: tokens survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_survive_a_restart_of_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::sqlite(dir.path().join("tasklane.db"));
    assert!(matches!(config.secret_key, SecretKey::Generated));

    let first = TestApp::with_config(config.clone(), Backend::Sqlite, None).await;
    let pair = first.register("survivor").await;
    first.create_task(&pair.access, json!({"title": "kept"})).await;
    drop(first);

    let key_file = dir.path().join("tasklane.secret");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the key file is private");
    assert!(std::fs::read(&key_file).unwrap().len() >= 32);

    let second = TestApp::with_config(config, Backend::Sqlite, None).await;
    let list = second.get("/tasks/", &pair.access).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.json()[0]["title"], "kept");
    let res = second.post("/auth/refresh", None, json!({"refresh_token": pair.refresh})).await;
    assert_eq!(res.status, 200, "{}", res.text);
}

/// `REFRESH_TOKEN_ROTATION=false`: the old service's reusable refresh tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_without_rotation_reuses_the_token() {
    for backend in [Backend::Sqlite, Backend::PostgresRedis] {
        let Some((mut config, scratch)) = scratch_config(backend).await else { continue };
        config.refresh_token_rotation = false;
        let app = TestApp::with_config(config, backend, Some(scratch)).await;
        let pair = app.register("legacy").await;
        for _ in 0..3 {
            let res = app.post("/auth/refresh", None, json!({"refresh_token": pair.refresh})).await;
            assert_eq!(res.status, 200, "{}", res.text);
            assert_eq!(res.json()["refresh_token"], pair.refresh.as_str());
            let access = res.json()["access_token"].as_str().unwrap().to_owned();
            assert_eq!(app.get("/auth/me", &access).await.status, 200);
        }
        assert_eq!(app.post("/auth/logout", None, json!({"refresh_token": pair.refresh})).await.status, 204);
        app.post("/auth/refresh", None, json!({"refresh_token": pair.refresh})).await.problem(401);
        app.finish().await;
    }
}

/// Redis down: the routes that need it answer 503 quickly; task CRUD goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_is_503_and_tasks_keep_working() {
    let (mut config, scratch) = scratch_config(Backend::Sqlite).await.unwrap();
    // Nothing listens on port 1.
    config.redis_url = Some("redis://127.0.0.1:1".to_owned());
    let app = TestApp::with_config(config, Backend::Sqlite, Some(scratch)).await;

    let started = Instant::now();
    let res =
        app.post("/auth/register", None, json!({"username": "noredis", "password": "correct horse"})).await;
    let body = res.problem(503);
    assert_eq!(res.header("retry-after"), Some("1"));
    assert!(!body["detail"].as_str().unwrap().contains("redis://"), "no internals: {body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503 must come quickly, took {:?}",
        started.elapsed()
    );

    let ready = app.send("GET", "/ready", None, None).await;
    assert!(ready.problem(503)["detail"].as_str().unwrap().contains("redis"));
    assert_eq!(app.send("GET", "/health", None, None).await.status, 200);

    // The user row was written before the session failed; a token for it still serves tasks,
    // since access tokens need no Redis.
    let (token, _) =
        JwtKeys::new(SECRET).issue(TokenKind::Access, 1, None, chrono::Utc::now(), Duration::from_secs(60));
    let created = app.post("/tasks/", Some(&token), json!({"title": "no redis needed"})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(app.get("/tasks/", &token).await.status, 200);
    app.finish().await;
}

/// PostgreSQL refusing connections: 503 (quickly, no hang), `/ready` 503, recovery after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_postgres_is_503_then_recovers() {
    let Some((config, scratch)) = scratch_config(Backend::Postgres).await else { return };
    let common::Scratch::Postgres { admin_url, database } = &scratch else { unreachable!() };
    let (admin_url, database) = (admin_url.clone(), database.clone());
    let app = TestApp::with_config(config, Backend::Postgres, Some(scratch)).await;
    let pair = app.register("outage").await;
    app.create_task(&pair.access, json!({"title": "before"})).await;

    let admin = || async {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&admin_url).await.unwrap()
    };
    let mut conn = admin().await;
    sqlx::query(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS false"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();

    let started = Instant::now();
    let res = app.get("/tasks/", &pair.access).await;
    res.problem(503);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    app.send("GET", "/ready", None, None).await.problem(503);

    sqlx::query(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
        .execute(&mut conn)
        .await
        .unwrap();
    let list = app.get("/tasks/", &pair.access).await;
    assert_eq!(list.status, 200, "recovered without a restart: {}", list.text);
    assert_eq!(list.json()[0]["title"], "before");
    assert_eq!(app.send("GET", "/ready", None, None).await.status, 200);
    app.finish().await;
}

/// A database that cannot be reached at start-up is an error, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_at_start_is_a_prompt_error() {
    let mut config = Config::sqlite("unused.db");
    config.database_url =
        tasklane_server::config::DatabaseUrl::Postgres("postgres://u@127.0.0.1:1/db".to_owned());
    config.secret_key = SecretKey::Given(SECRET.to_vec());
    let started = Instant::now();
    let Err(err) = tasklane_server::build_with(config, common::figment()).await else {
        panic!("start-up must fail");
    };
    assert!(err.to_string().starts_with("DATABASE_URL"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
}
