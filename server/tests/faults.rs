//! Backends that fail and come back, for real: a Redis of the test's own is killed and
//! restarted, a PostgreSQL cluster of the test's own is stopped and started under load.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{post, secret_key, without_rate_limits, PrivatePostgres, PrivateRedis, TestServer};
use serde_json::json;
use sqlx::Connection;
use tasklane_server::config::DatabaseUrl;
use tasklane_server::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_is_503_for_sessions_only_and_recovers() {
    let Some(mut redis) = PrivateRedis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::sqlite(dir.path().join("tasklane.db"));
    config.secret_key = secret_key();
    config.redis_url = Some(redis.url());
    // Limits off, so registration reaches the session step that needs Redis.
    without_rate_limits(&mut config);
    let server = TestServer::with_config(config, None).await;
    let http = reqwest::Client::new();
    let creds = json!({"username": "weather", "password": "correct horse"});

    let (status, pair) = post(&http, server.url("/auth/register"), None, creds.clone()).await;
    assert_eq!(status, 201);
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();

    redis.kill();
    for (path, body) in [
        ("/auth/login", creds.clone()),
        ("/auth/refresh", json!({"refresh_token": refresh})),
        ("/auth/register", json!({"username": "newcomer", "password": "correct horse"})),
    ] {
        let started = Instant::now();
        let (status, problem) = post(&http, server.url(path), None, body).await;
        assert_eq!(status, 503, "{path}: {problem}");
        assert_eq!(problem["status"], 503);
        assert!(started.elapsed() < Duration::from_secs(8), "{path} took {:?}", started.elapsed());
    }
    let ready = http.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // Tasks need no Redis.
    let (status, _) =
        post(&http, server.url("/tasks/"), Some(&access), json!({"title": "during the outage"})).await;
    assert_eq!(status, 201);
    let list = http.get(server.url("/tasks/")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(list.status(), 200);

    // Back without a restart of the server. The refresh token from before the outage still works:
    // the failed attempts consumed nothing.
    redis.resume();
    let (status, _) = post(&http, server.url("/auth/refresh"), None, json!({"refresh_token": refresh})).await;
    assert_eq!(status, 200);
    let (status, _) = post(&http, server.url("/auth/login"), None, creds).await;
    assert_eq!(status, 200);
    assert_eq!(http.get(server.url("/ready")).send().await.unwrap().status(), 200);
    // The user registered during the outage was not half-created.
    let (status, _) = post(
        &http,
        server.url("/auth/register"),
        None,
        json!({"username": "newcomer", "password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 201);
    server.stop().await;
}

/// A `tasklane` database on `pg`, and the server's settings for it: a pool of
/// `max_connections`, limits off.
async fn config_on(pg: &PrivatePostgres, max_connections: u32) -> Config {
    let mut admin = sqlx::PgConnection::connect(&pg.admin_url()).await.unwrap();
    sqlx::query("CREATE DATABASE tasklane").execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    let mut config = Config::sqlite("unused.db");
    config.database_url =
        DatabaseUrl::Postgres(format!("postgres://postgres@127.0.0.1:{}/tasklane", pg.port));
    config.secret_key = secret_key();
    config.database_max_connections = max_connections;
    without_rate_limits(&mut config);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_under_load_is_503_then_recovers() {
    let Some(pg) = PrivatePostgres::start() else { return };
    let config = config_on(&pg, 8).await;
    let server = Arc::new(TestServer::with_config(config, None).await);
    let http = reqwest::Client::new();
    let (status, pair) = post(
        &http,
        server.url("/auth/register"),
        None,
        json!({"username": "steady", "password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 201);
    let access: Arc<str> = pair["access_token"].as_str().unwrap().into();

    // Eight clients create and list tasks without pause while the database restarts.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (http, server, access, stop) = (http.clone(), server.clone(), access.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let (status, _) = post(
                        &http,
                        server.url("/tasks/"),
                        Some(&access),
                        json!({"title": format!("w{w} #{i}")}),
                    )
                    .await;
                    let list =
                        http.get(server.url("/tasks/?limit=5")).bearer_auth(&*access).send().await.unwrap();
                    seen.push((status, list.status().as_u16()));
                }
                seen
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| pg.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let ready = http.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(8));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| pg.resume());
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut created = 0;
    let mut unavailable = 0;
    let mut last = Vec::new();
    for worker in workers {
        let seen = worker.await.unwrap();
        for (create, list) in &seen {
            assert!(matches!(create, 201 | 503), "create answered {create}");
            assert!(matches!(list, 200 | 503), "list answered {list}");
            created += usize::from(*create == 201);
            unavailable += usize::from(*create == 503) + usize::from(*list == 503);
        }
        last.push(*seen.last().unwrap());
    }
    assert!(unavailable > 0, "the outage was seen");
    assert!(last.iter().all(|s| *s == (201, 200)), "recovered: {last:?}");
    assert_eq!(http.get(server.url("/ready")).send().await.unwrap().status(), 200);

    // Every 201 is a stored task; nothing else is.
    let list = http.get(server.url("/tasks/?limit=1")).bearer_auth(&*access).send().await.unwrap();
    assert_eq!(list.headers()["x-total-count"].to_str().unwrap(), created.to_string());

    // No leaked connections: the pool holds at most its size.
    let mut admin = sqlx::PgConnection::connect(&pg.admin_url()).await.unwrap();
    let open: Vec<(String, i64)> = sqlx::query_as(
        "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = 'tasklane' \
         GROUP BY application_name ORDER BY application_name",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(open.iter().map(|(_, c)| c).sum::<i64>() <= 8, "pool connections: {open:?}");
    Arc::try_unwrap(server).ok().expect("workers are done").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_that_stops_answering_is_503_within_the_timeout_not_a_hang() {
    let Some(pg) = PrivatePostgres::start() else { return };
    let config = config_on(&pg, 4).await;
    let server = TestServer::with_config(config, None).await;
    // Far above what the server may take, so a hang fails the test instead of stalling it.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let (status, pair) = post(
        &http,
        server.url("/auth/register"),
        None,
        json!({"username": "frozen", "password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 201);
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let (status, task) = post(&http, server.url("/tasks/"), Some(&access), json!({"title": "before"})).await;
    assert_eq!(status, 201);
    let task_url = server.url(&format!("/tasks/{}", task["id"]));
    // Warm connections: used within the last seconds, so the pool hands them out untested.
    for _ in 0..4 {
        let list = http.get(server.url("/tasks/")).bearer_auth(&access).send().await.unwrap();
        assert_eq!(list.status(), 200);
        assert_eq!(http.get(server.url("/auth/me")).bearer_auth(&access).send().await.unwrap().status(), 200);
    }

    tokio::task::block_in_place(|| pg.freeze());
    let requests = [
        http.get(server.url("/tasks/")).bearer_auth(&access),
        http.get(task_url.clone()).bearer_auth(&access),
        http.get(server.url("/auth/me")).bearer_auth(&access),
        http.post(server.url("/tasks/")).bearer_auth(&access).json(&json!({"title": "during"})),
        http.put(task_url.clone()).bearer_auth(&access).json(&json!({"status": "done"})),
        http.get(server.url("/ready")),
    ];
    let answers = futures::future::join_all(requests.into_iter().map(|request| async move {
        let started = Instant::now();
        let response = request.send().await;
        let status = response.as_ref().map(|r| r.status().as_u16()).map_err(|e| e.to_string());
        let problem: serde_json::Value = match response {
            Ok(response) => response.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        (status, problem, started.elapsed())
    }))
    .await;
    tokio::task::block_in_place(|| pg.thaw());
    for (i, (status, problem, took)) in answers.iter().enumerate() {
        assert_eq!(status, &Ok(503), "answered, not hung (after {took:?}): {problem}");
        if !problem.is_null() {
            assert_eq!(problem["status"], 503, "{problem}");
        }
        // Reads (the first three) have one budget, wherever they run; a write, one wait for a
        // connection (3 s) and one for its statement (3 s), at most.
        let most = if i < 3 { Duration::from_secs(5) } else { Duration::from_secs(10) };
        assert!(*took < most, "request {i} answered after {took:?}");
    }

    // Thawed, it serves again without a restart of the server, and nothing half-done shows.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = http.get(server.url("/tasks/")).bearer_auth(&access).send().await.unwrap();
        if list.status() == 200 {
            let tasks: serde_json::Value = list.json().await.unwrap();
            let titles: Vec<_> = tasks.as_array().unwrap().iter().map(|t| t["title"].clone()).collect();
            assert!(titles.contains(&json!("before")), "{titles:?}");
            break;
        }
        assert!(Instant::now() < deadline, "not recovered: {}", list.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = post(&http, server.url("/tasks/"), Some(&access), json!({"title": "after"})).await;
    assert_eq!(status, 201);
    assert_eq!(http.get(server.url("/ready")).send().await.unwrap().status(), 200);
    server.stop().await;
}

/// `redis-cli -p <port> <args>`, expecting OK.
fn redis_cli(port: u16, args: &[&str]) {
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "OK", "redis-cli {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_refusing_writes_in_a_failover_is_503_and_recovers() {
    let Some(redis) = PrivateRedis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::sqlite(dir.path().join("tasklane.db"));
    config.secret_key = secret_key();
    config.redis_url = Some(redis.url());
    // On, so the limiter's script (a write) runs before each session step.
    config.rate_limit_account_per_minute = 1000;
    config.rate_limit_address_per_minute = 1000;
    let server = TestServer::with_config(config, None).await;
    let http = reqwest::Client::new();
    let creds = json!({"username": "failover", "password": "correct horse"});
    let (status, pair) = post(&http, server.url("/auth/register"), None, creds.clone()).await;
    assert_eq!(status, 201);
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();

    // Demoted to a replica of a primary that is not there, as in a failover: every write is
    // answered READONLY (reads still answer).
    redis_cli(redis.port, &["REPLICAOF", "127.0.0.1", &common::free_port().to_string()]);
    for (path, body) in [
        ("/auth/login", creds.clone()),
        ("/auth/refresh", json!({"refresh_token": refresh})),
        ("/auth/register", json!({"username": "during", "password": "correct horse"})),
        ("/auth/logout", json!({"refresh_token": refresh})),
    ] {
        let (status, problem) = post(&http, server.url(path), None, body).await;
        assert_eq!(status, 503, "{path}: {problem}");
        assert_eq!(problem["status"], 503, "{path}: {problem}");
    }

    // Promoted again: the session from before is intact, as nothing was consumed.
    redis_cli(redis.port, &["REPLICAOF", "NO", "ONE"]);
    let (status, problem) =
        post(&http, server.url("/auth/refresh"), None, json!({"refresh_token": refresh})).await;
    assert_eq!(status, 200, "{problem}");
    let (status, _) = post(&http, server.url("/auth/login"), None, creds).await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// A server started before its database (a container beside it, a host still booting) waits
/// for it, rather than exiting; one given a database that does not exist fails at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_that_is_not_up_yet_is_waited_for() {
    let Some(pg) = PrivatePostgres::create() else { return };
    let settings = |url: String| tasklane_server::store::Settings {
        url: DatabaseUrl::Postgres(url),
        max_connections: 1,
        startup_wait_seconds: 30,
        shutdown_grace_seconds: 0,
    };
    let wait = Duration::from_secs(30);
    let url = settings(pg.admin_url());
    let opening = tokio::spawn(async move { tasklane_server::store::migrate(&url).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!opening.is_finished(), "gave up on a database that is not up yet: {:?}", opening.await);
    pg.resume();
    let opened = tokio::time::timeout(wait, opening).await;
    opened.expect("migrated once the database came up").unwrap().unwrap();

    let missing = settings(pg.admin_url().replace("/postgres", "/no_such_database"));
    let failed =
        tokio::time::timeout(Duration::from_secs(10), tasklane_server::store::migrate(&missing)).await;
    let err = failed.expect("a database that does not exist is not waited for").unwrap_err();
    assert!(err.to_string().contains("no_such_database"), "{err}");
}
