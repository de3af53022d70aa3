//! Over real sockets: refresh races on every refresh store, restarts, compatibility mode, and
//! backends that do not answer.

mod common;

use std::time::{Duration, Instant};

use common::{scratch_config, secret_key, Backend, TestApp, TestServer};
use futures::future::join_all;
use serde_json::{json, Value};
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

/// Refreshes racing logouts of the same sessions: each refresh wins (200) or finds the session
/// gone (401), each logout answers 204, and nothing fails. (On PostgreSQL the two lock a
/// session's rows, and must take them in the same order not to deadlock.)
async fn refresh_racing_logout_never_fails(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else { return };
    let http = reqwest::Client::new();
    register(&http, &server, "racing").await;
    let creds = json!({"username": "racing", "password": "correct horse"});
    for round in 0..3 {
        let logins = (0..16).map(|_| {
            let (http, url, creds) = (http.clone(), server.url("/auth/login"), creds.clone());
            async move {
                let res = http.post(url).json(&creds).send().await.unwrap();
                assert_eq!(res.status(), 200);
                res.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned()
            }
        });
        let tokens = join_all(logins).await;
        let races = tokens.iter().flat_map(|token| {
            let body = json!({"refresh_token": token});
            ["/auth/refresh", "/auth/logout"].map(|path| {
                let (http, url, body) = (http.clone(), server.url(path), body.clone());
                async move {
                    let res = http.post(url).json(&body).send().await.unwrap();
                    (path, res.status().as_u16(), res.text().await.unwrap())
                }
            })
        });
        for (path, status, body) in join_all(races).await {
            match path {
                "/auth/refresh" => {
                    assert!(matches!(status, 200 | 401), "round {round}: {path} {status} {body}")
                }
                _ => assert_eq!(status, 204, "round {round}: {path} {body}"),
            }
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_racing_logout_never_fails_sqlite() {
    refresh_racing_logout_never_fails(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_racing_logout_never_fails_redis() {
    refresh_racing_logout_never_fails(Backend::PostgresRedis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_racing_logout_never_fails_postgres() {
    refresh_racing_logout_never_fails(Backend::Postgres).await;
}

/// A client that stops sending its body halfway gets 408 as problem JSON once the body's time
/// is up, and the connection is closed, instead of the request waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_408_and_closes_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let http = reqwest::Client::new();
    let pair = register(&http, &server, "trickle").await;
    let token = pair["access_token"].as_str().unwrap();
    let mut socket =
        tokio::net::TcpStream::connect(server.url("").trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /tasks/ HTTP/1.1\r\nHost: tasklane\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"title\": \"a slow start"
    );
    // (Past the first 14 bytes: Rocket itself waits for those before any fairing or guard runs;
    // see DESIGN.md.)
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    // The whole answer, up to the server closing the connection; bounded, so a hang fails.
    let read = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server answers and closes, rather than wait for the body: {:?}",
        String::from_utf8_lossy(&answer)
    );
    let waited = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("content-type: application/problem+json"), "{answer}");
    let problem: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(problem["status"], 408, "{problem}");
    assert!(waited >= tasklane_server::body::BODY_READ_TIMEOUT - Duration::from_millis(100), "{waited:?}");
    // Nothing was created.
    let list = http.get(server.url("/tasks/")).bearer_auth(token).send().await.unwrap();
    assert_eq!(list.headers()["x-total-count"], "0");
    server.stop().await;
}

/// Writes `request` on `socket` and reads one answer: its head (lowercased) and its body.
async fn exchange(socket: &mut tokio::net::TcpStream, request: &[u8]) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    socket.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0; 8192];
    loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |n| n.trim().parse().unwrap());
            if answer.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&answer[end + 4..end + 4 + length]).into_owned();
                return (head, body);
            }
        }
        let read =
            tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buf)).await.unwrap().unwrap();
        assert!(read > 0, "closed before a whole answer: {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..read]);
    }
}

/// An answer given before the request's body was read (here a 401, a 404 and a 415 to a
/// 40 KB create) says `Connection: close`: Rocket does not keep such a connection, and a
/// client that reused it would find it broken. One whose body was read keeps the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_is_read_closes_the_connection_and_says_so() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let http = reqwest::Client::new();
    let pair = register(&http, &server, "unread").await;
    let token = pair["access_token"].as_str().unwrap();
    let address = server.url("").trim_start_matches("http://").to_owned();
    let big = serde_json::to_string(&json!({"title": "big", "description": "d".repeat(9_000)})).unwrap();
    let big = big.repeat(4); // ~36 KB: well-formed or not, it is refused before it is read
    let request = |path: &str, auth: &str, content_type: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: tasklane\r\n{auth}Content-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let bearer = format!("Authorization: Bearer {token}\r\n");
    for (status, request) in [
        (401, request("/tasks/", "", "application/json", &big)),
        (404, request("/nowhere", &bearer, "application/json", &big)),
        (415, request("/tasks/", &bearer, "text/plain", &big)),
    ] {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        let (head, body) = exchange(&mut socket, request.as_bytes()).await;
        assert!(head.starts_with(&format!("http/1.1 {status} ")), "{head}\n{body}");
        assert!(head.contains("\r\nconnection: close"), "{status}: {head}");
    }
    // A body that was read: the connection carries the next request.
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let small = r#"{"title": "kept"}"#;
    for _ in 0..2 {
        let (head, body) =
            exchange(&mut socket, request("/tasks/", &bearer, "application/json", small).as_bytes()).await;
        assert!(head.starts_with("http/1.1 201 "), "{head}\n{body}");
        assert!(!head.contains("connection: close"), "{head}");
    }
    server.stop().await;
}

/// A compressed body is 415 naming the coding, not a puzzling "malformed JSON".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_body_is_415() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let http = reqwest::Client::new();
    let pair = register(&http, &server, "encoded").await;
    let token = pair["access_token"].as_str().unwrap();
    for (coding, status) in [("gzip", 415), ("identity", 201)] {
        let res = http
            .post(server.url("/tasks/"))
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", coding)
            .body(r#"{"title": "plain"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{coding}");
        if status == 415 {
            let problem: Value = res.json().await.unwrap();
            assert!(problem["detail"].as_str().unwrap().contains("gzip"), "{problem}");
        }
    }
    server.stop().await;
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
    assert!(config.secret_key.is_none(), "generated");

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
    // A user who signed up while the database was served without Redis.
    let before = TestApp::with_config(config.clone(), Backend::Sqlite, None).await;
    let token = before.register("early").await.access;
    drop(before);
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

    // Access tokens need no Redis: the earlier user's token still serves tasks.
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

/// A database that cannot be reached at start-up is an error once the start-up wait is over
/// (here none), not a hang, and it says why: the connection's own error, not a pool's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_at_start_is_a_prompt_error() {
    let mut config = Config::sqlite("unused.db");
    config.database_url =
        tasklane_server::config::DatabaseUrl::Postgres("postgres://u@127.0.0.1:1/db".to_owned());
    config.secret_key = secret_key();
    config.database_startup_wait_seconds = Duration::ZERO;
    let started = Instant::now();
    let Err(err) = tasklane_server::build_with(config, common::figment()).await else {
        panic!("start-up must fail");
    };
    assert!(err.to_string().starts_with("DATABASE_URL"), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
}

/// `tasklane-server healthcheck` (the container's HEALTHCHECK) against a live server and a dead one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_probe_tells_live_from_dead() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let listener = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let probe = move || tasklane_server::ops::probe(listener, Duration::from_secs(3));
    tokio::task::spawn_blocking(probe).await.unwrap().expect("live server is healthy");
    server.stop().await;
    let err = tokio::task::spawn_blocking(probe).await.unwrap().expect_err("stopped server is not");
    assert!(err.contains(&port.to_string()), "{err}");
}

#[rocket::get("/boom")]
fn boom() -> &'static str {
    panic!("handler bug with a secret: hunter2")
}

/// A panicking handler answers 500 problem JSON without internals; the server serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_a_500_problem() {
    let (config, scratch) = scratch_config(Backend::Sqlite).await.unwrap();
    let rocket = tasklane_server::build_with(config, common::figment())
        .await
        .unwrap()
        .mount("/test", rocket::routes![boom]);
    let client = rocket::local::asynchronous::Client::tracked(rocket).await.unwrap();
    let res = client.get("/test/boom").dispatch().await;
    assert_eq!(res.status().code, 500);
    assert_eq!(res.content_type().map(|c| c.to_string()), Some("application/problem+json".to_owned()));
    assert!(res.headers().get_one("X-Request-Id").is_some());
    let body: Value = serde_json::from_str(&res.into_string().await.unwrap()).unwrap();
    assert_eq!(body["status"], 500);
    assert_eq!(body["detail"], "internal server error");
    assert!(!body.to_string().contains("hunter2"));
    assert_eq!(client.get("/health").dispatch().await.status().code, 200);
    scratch.cleanup().await;
}

/// Credential routes are limited per account and per address; 429 carries `Retry-After`.
async fn rate_limits_hold(backend: Backend) {
    use rocket::http::{ContentType, Header};
    let Some((mut config, scratch)) = scratch_config(backend).await else { return };
    config.rate_limit_account_per_minute = 3;
    config.rate_limit_address_per_minute = 5;
    let app = TestApp::with_config(config, backend, Some(scratch)).await;
    // Unique names and addresses: on Redis the budgets outlive this test's database.
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let victim = format!("victim{tag}");
    let ip = |n: u8| -> std::net::SocketAddr {
        format!("127.{}.{}.{n}:4000", tag.as_bytes()[0], tag.as_bytes()[1]).parse().unwrap()
    };
    let attempt = |user: String, from: std::net::SocketAddr, password: &'static str| {
        let client = &app.client;
        async move {
            let res = client
                .post("/auth/login")
                .remote(from)
                .header(ContentType::JSON)
                .body(json!({"username": user, "password": password}).to_string())
                .dispatch()
                .await;
            let retry = res.headers().get_one("Retry-After").map(str::to_owned);
            (res.status().code, retry)
        }
    };
    let res = app
        .client
        .post("/auth/register")
        .remote(ip(9))
        .header(ContentType::JSON)
        .header(Header::new("X-Real-IP", "1.2.3.4"))
        .body(json!({"username": victim, "password": "correct horse"}).to_string())
        .dispatch()
        .await;
    assert_eq!(res.status().code, 201);
    drop(res);

    for _ in 0..3 {
        assert_eq!(attempt(victim.clone(), ip(1), "wrong password").await.0, 401);
    }
    let (status, retry) = attempt(victim.clone(), ip(1), "wrong password").await;
    assert_eq!(status, 429);
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=20).contains(&retry), "one attempt per 20 s: {retry}");
    // The right password does not get past a spent account budget, from anywhere.
    assert_eq!(attempt(victim.clone(), ip(2), "correct horse").await.0, 429);
    // The address budget is separate: other accounts from ip(1) have 1 attempt left of 5.
    assert_eq!(attempt(format!("other{tag}"), ip(1), "wrong password").await.0, 401);
    assert_eq!(attempt(format!("third{tag}"), ip(1), "wrong password").await.0, 429);
    // A forged X-Real-IP is not trusted by default: it does not open a new address budget.
    let forged = app
        .client
        .post("/auth/login")
        .remote(ip(1))
        .header(ContentType::JSON)
        .header(Header::new("X-Real-IP", "9.9.9.9"))
        .body(json!({"username": format!("fourth{tag}"), "password": "wrong password"}).to_string())
        .dispatch()
        .await;
    assert_eq!(forged.status().code, 429);
    let body: Value = serde_json::from_str(&forged.into_string().await.unwrap()).unwrap();
    assert_eq!(body["status"], 429);
    // Refresh tokens that do not verify spend the address's budget like wrong passwords.
    let refresh = |token: String| {
        let client = &app.client;
        async move {
            let res = client
                .post("/auth/refresh")
                .remote(ip(3))
                .header(ContentType::JSON)
                .body(json!({ "refresh_token": token }).to_string())
                .dispatch()
                .await;
            res.status().code
        }
    };
    for n in 0..5 {
        assert_eq!(refresh(format!("guess-{n}")).await, 401);
    }
    assert_eq!(refresh("guess-5".to_owned()).await, 429);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_in_process() {
    rate_limits_hold(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_in_redis() {
    rate_limits_hold(Backend::PostgresRedis).await;
}

/// CORS: configured origins get the headers and their preflights pass; other origins get no
/// CORS headers but are not refused, since a browser sends `Origin` with a page's own writes
/// (Swagger UI at `/docs`, say) too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_follows_the_configured_origins() {
    use rocket::http::Header;
    let (mut config, scratch) = scratch_config(Backend::Sqlite).await.unwrap();
    config.cors_allowed_origins = "https://app.example".to_owned();
    let app = TestApp::with_config(config, Backend::Sqlite, Some(scratch)).await;

    let res = app.client.get("/health").header(Header::new("Origin", "https://app.example")).dispatch().await;
    assert_eq!(res.status().code, 200);
    assert_eq!(res.headers().get_one("Access-Control-Allow-Origin"), Some("https://app.example"));
    let exposed = res.headers().get_one("Access-Control-Expose-Headers").unwrap().to_ascii_lowercase();
    assert!(exposed.contains("x-total-count") && exposed.contains("link"), "{exposed}");
    drop(res);

    let preflight = app
        .client
        .options("/tasks/")
        .header(Header::new("Origin", "https://app.example"))
        .header(Header::new("Access-Control-Request-Method", "POST"))
        .header(Header::new("Access-Control-Request-Headers", "authorization, content-type"))
        .dispatch()
        .await;
    assert!(preflight.status().class().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers().get_one("Access-Control-Allow-Origin"), Some("https://app.example"));
    assert!(preflight.headers().get_one("Access-Control-Allow-Methods").unwrap().contains("POST"));
    // No leftovers of the 405 that the missing OPTIONS route would have been.
    assert_eq!(preflight.headers().get_one("Allow"), None);
    assert_eq!(preflight.headers().get_one("Content-Type"), None);
    drop(preflight);

    // An OPTIONS that is not a preflight is answered as without CORS: 405 with `Allow`.
    let options =
        app.client.options("/tasks/").header(Header::new("Origin", "https://app.example")).dispatch().await;
    assert_eq!(options.status().code, 405);
    assert!(options.headers().get_one("Allow").is_some());
    drop(options);

    // Another origin: served, without CORS headers (the browser keeps its page from reading).
    let foreign =
        app.client.get("/health").header(Header::new("Origin", "https://evil.example")).dispatch().await;
    assert_eq!(foreign.status().code, 200);
    assert_eq!(foreign.headers().get_one("Access-Control-Allow-Origin"), None);
    drop(foreign);
    // Such as the server's own pages, whose writes carry their origin.
    let own = app
        .client
        .post("/auth/register")
        .header(Header::new("Origin", "http://localhost:8000"))
        .header(rocket::http::ContentType::JSON)
        .body(json!({"username": "same-origin", "password": "correct horse"}).to_string())
        .dispatch()
        .await;
    assert_eq!(own.status().code, 201);
    assert_eq!(own.headers().get_one("Access-Control-Allow-Origin"), None);
    drop(own);
    // Its preflight gets no permission.
    let refused = app
        .client
        .options("/tasks/")
        .header(Header::new("Origin", "https://evil.example"))
        .header(Header::new("Access-Control-Request-Method", "DELETE"))
        .dispatch()
        .await;
    assert_eq!(refused.headers().get_one("Access-Control-Allow-Origin"), None);
    assert_eq!(refused.headers().get_one("Access-Control-Allow-Methods"), None);
    drop(refused);

    // An Origin that is not a URL is the client's mistake: 400 problem JSON, the status line
    // and the body agreeing.
    for bad in ["not a url", "https://", "http://[::1"] {
        let res = app.client.get("/health").header(Header::new("Origin", bad)).dispatch().await;
        let status = res.status().code;
        let body: Value = serde_json::from_str(&res.into_string().await.unwrap()).unwrap();
        assert_eq!((status, body["status"].clone()), (400, json!(400)), "{bad}: {body}");
        assert!(body["detail"].as_str().unwrap().contains("Origin"), "{body}");
    }
    // rocket_cors's error route is not part of the API.
    for path in ["/cors/0", "/cors/200", "/cors/400"] {
        let res = app.client.get(path).dispatch().await;
        assert_eq!(res.status().code, 404, "{path}");
    }
    app.finish().await;

    // Not configured: no CORS headers at all.
    let plain = TestApp::start(Backend::Sqlite).await.unwrap();
    let res =
        plain.client.get("/health").header(Header::new("Origin", "https://app.example")).dispatch().await;
    assert_eq!(res.headers().get_one("Access-Control-Allow-Origin"), None);
    drop(res);
    plain.finish().await;
}

/// Limits kept in Redis hold at any quota the settings accept, from 1 to 100,000 a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limits_hold_at_every_quota() {
    use std::num::NonZeroU32;
    use tasklane_server::limits::{Action, LimitSettings, RateLimits};
    let Some((config, scratch)) = scratch_config(Backend::PostgresRedis).await else { return };
    let pool = tasklane_server::store::RedisPool::new(config.redis_url.as_deref().unwrap()).unwrap();
    let account = format!("quota-{}", uuid::Uuid::new_v4().simple());
    for quota in [1, 7, 60_000, 60_001, 100_000] {
        let settings = LimitSettings { per_account: NonZeroU32::new(quota), per_address: None };
        let limits = RateLimits::redis(settings, pool.clone());
        let account = format!("{account}-{quota}");
        // The whole burst is let in at once (up to 200 tried), then the next attempt is refused
        // with the wait until one more is allowed.
        for attempt in 0..quota.min(200) {
            let allowed = limits.check(Action::Login, Some(&account), None).await;
            assert!(allowed.is_ok(), "quota {quota}, attempt {attempt}: {allowed:?}");
        }
        if quota <= 200 {
            let refused = limits.check(Action::Login, Some(&account), None).await.unwrap_err();
            let expected = (60.0 / f64::from(quota)).ceil() as u64;
            assert_eq!(refused.status().code, 429, "quota {quota}");
            assert_eq!(
                refused.to_string(),
                format!("too many requests; retry in {expected} s"),
                "quota {quota}"
            );
        }
    }
    scratch.cleanup().await;
}

/// `DATABASE_URL=sqlite::memory:` serves, and keeps what it was given while the server runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_database_serves() {
    let mut config = Config::sqlite("unused.db");
    config.database_url = tasklane_server::config::DatabaseUrl::Sqlite("sqlite::memory:".to_owned());
    config.secret_key = secret_key();
    let app = TestApp::with_config(config, Backend::Sqlite, None).await;
    let tokens = app.register("ephemeral").await;
    for title in ["one", "two"] {
        app.create_task(&tokens.access, json!({"title": title})).await;
    }
    let list = app.get("/tasks/?sort=title", &tokens.access).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let titles: Vec<Value> = list.json().as_array().unwrap().iter().map(|t| t["title"].clone()).collect();
    assert_eq!(titles, [json!("one"), json!("two")]);
    let res = app.post("/auth/refresh", None, json!({"refresh_token": tokens.refresh})).await;
    assert_eq!(res.status, 200, "{}", res.text);
    app.finish().await;
}

/// Rotating `SECRET_KEY` without signing anyone out, as README's three steps do it, on instances
/// sharing one database (and Redis): a key accepted before it signs, then the old one accepted
/// until its tokens are gone.
async fn secret_key_rotates_without_signing_anyone_out(backend: Backend) {
    let Some((config, scratch)) = scratch_config(backend).await else { return };
    let (old, new) = (vec![b'o'; 32], vec![b'n'; 32]);
    let with = |signing: &[u8], accepted: Option<&[u8]>| {
        let mut config = config.clone();
        let key = |bytes: &[u8]| tasklane::types::Secret::new(String::from_utf8(bytes.to_vec()).unwrap());
        config.secret_key = Some(key(signing));
        config.secret_key_accepted = accepted.map(key);
        config
    };
    let before = TestApp::with_config(with(&old, None), backend, Some(scratch)).await;
    let tokens = before.register("rotated").await;
    // Step 1, every instance: the new key accepted, the old one still signing.
    let step1 = TestApp::with_config(with(&old, Some(&new)), backend, None).await;
    // Step 2, every instance: the new key signing, the old one accepted.
    let step2 = TestApp::with_config(with(&new, Some(&old)), backend, None).await;
    assert_eq!(step2.get("/auth/me", &tokens.access).await.status, 200, "an old access token");
    let refreshed = step2.post("/auth/refresh", None, json!({"refresh_token": tokens.refresh})).await;
    assert_eq!(refreshed.status, 200, "an old refresh token: {}", refreshed.text);
    let access = refreshed.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(step1.get("/auth/me", &access).await.status, 200, "a step-1 instance takes new tokens");
    before.get("/auth/me", &access).await.problem(401);
    // Step 3, once the old refresh tokens have expired: the new key alone.
    let after = TestApp::with_config(with(&new, None), backend, None).await;
    assert_eq!(after.get("/auth/me", &access).await.status, 200);
    after.get("/auth/me", &tokens.access).await.problem(401);
    before.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_key_rotates_on_sqlite() {
    secret_key_rotates_without_signing_anyone_out(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_key_rotates_on_postgres_and_redis() {
    secret_key_rotates_without_signing_anyone_out(Backend::PostgresRedis).await;
}
