//! The real `tasklane-server` binary, run as operators run it: child processes configured by
//! environment variables alone. SIGTERM under load (in-flight requests finish, new connections
//! are refused, exit code 0), two instances on one PostgreSQL + Redis behaving as one, and the
//! traces exported to a fake OpenTelemetry collector.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, post, scratch_config, Backend, SECRET};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use serde_json::{json, Value};
use sqlx::Connection;
use tasklane_server::config::DatabaseUrl;

/// These tests load whole server processes; on a two-core machine they take turns.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn secret() -> String {
    String::from_utf8(SECRET.to_vec()).unwrap()
}

/// A `tasklane-server` child process, in a temp dir of its own (its working directory, so no
/// `.env` file is read), logging to a file there.
struct ServerProcess {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the binary with exactly these settings (plus address, port and, unless the settings
    /// name one, `RUST_LOG=warn`: nothing is inherited, so a developer's `DATABASE_URL` or `ROCKET_*` cannot leak in) and waits
    /// until it answers `/health`.
    async fn start(settings: &[(&str, &str)]) -> ServerProcess {
        let port = free_port();
        Self::spawn(settings, port, true).await
    }

    /// Like [`ServerProcess::start`], for settings that give the server its port themselves
    /// (in a `Rocket.toml`): `ROCKET_PORT` is left unset and `/health` awaited on `port`.
    async fn start_configured(settings: &[(&str, &str)], port: u16) -> ServerProcess {
        Self::spawn(settings, port, false).await
    }

    async fn spawn(settings: &[(&str, &str)], port: u16, set_port: bool) -> ServerProcess {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tasklane-server"));
        command
            .env_clear()
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .envs(settings.iter().copied())
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if set_port {
            command.env("ROCKET_PORT", port.to_string());
        }
        let child = command.spawn().expect("start tasklane-server");
        let mut server = ServerProcess { child, port, dir };
        let http = reqwest::Client::new();
        // Migrations and the argon2 warm-up come first; a debug build on a busy machine is slow.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("the server exited at start ({status}):\n{}", server.log());
            }
            if let Ok(res) = http.get(server.url("/health")).send().await {
                if res.status() == 200 {
                    return server;
                }
            }
            assert!(Instant::now() < deadline, "no /health within 60 s:\n{}", server.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM, as `docker stop` and Kubernetes do.
    fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit (bounded, so a hang fails rather than stalls the suite).
    async fn exit_status(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running 30 s after SIGTERM:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, and the exit code must be 0.
    async fn stop(mut self) {
        self.terminate();
        let status = self.exit_status().await;
        assert_eq!(status.code(), Some(0), "{status}:\n{}", self.log());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn register(http: &reqwest::Client, server: &ServerProcess, username: &str) -> Value {
    let body = json!({"username": username, "password": "correct horse"});
    let (status, pair) = post(http, server.url("/auth/register"), None, body).await;
    assert_eq!(status, 201, "{pair}");
    pair
}

fn field(value: &Value, name: &str) -> String {
    value[name].as_str().unwrap_or_else(|| panic!("no {name} in {value}")).to_owned()
}

#[test]
fn shutdown_defaults_fit_inside_docker_stop() {
    let config: rocket::Config = tasklane_server::rocket_figment().extract().unwrap();
    if std::env::var_os("ROCKET_SHUTDOWN").is_none() {
        assert_eq!(config.shutdown.grace, tasklane_server::SHUTDOWN_GRACE_SECS);
        assert_eq!(config.shutdown.mercy, tasklane_server::SHUTDOWN_MERCY_SECS);
        assert!(config.shutdown.signals.contains(&rocket::config::Sig::Term));
        assert!(config.shutdown.ctrlc, "SIGINT too");
    }
    // Grace, mercy, and the second Rocket adds before it gives up: inside the 10 s that
    // `docker stop` waits before SIGKILL.
    let (grace, mercy) = (tasklane_server::SHUTDOWN_GRACE_SECS, tasklane_server::SHUTDOWN_MERCY_SECS);
    assert!(grace + mercy + 1 < 10);
}

/// Shutdown periods set in a `Rocket.toml` table (`[default]`, or the selected profile's) hold
/// over Tasklane's defaults, and the others keep theirs.
#[test]
fn rocket_toml_tables_set_the_shutdown_periods() {
    use rocket::figment::providers::{Format, Toml};
    use rocket::figment::Figment;
    let file = "[default.shutdown]\ngrace = 20\n[release.shutdown]\nmercy = 7\n";
    let operators = Figment::new().merge(Toml::string(file).nested());
    let read = |profile: &str| -> rocket::Config {
        let operators = operators.clone().select(profile);
        tasklane_server::with_tasklane_defaults(operators).select(profile).extract().unwrap()
    };
    let release = read("release");
    assert_eq!((release.shutdown.grace, release.shutdown.mercy), (20, 7));
    let debug = read("debug");
    assert_eq!((debug.shutdown.grace, debug.shutdown.mercy), (20, tasklane_server::SHUTDOWN_MERCY_SECS));
    let none: rocket::Config = tasklane_server::with_tasklane_defaults(Figment::new()).extract().unwrap();
    assert_eq!(
        (none.shutdown.grace, none.shutdown.mercy),
        (tasklane_server::SHUTDOWN_GRACE_SECS, tasklane_server::SHUTDOWN_MERCY_SECS)
    );
}

/// One request of the load, as the client saw it.
struct Sample {
    what: &'static str,
    started: Instant,
    finished: Instant,
    /// The status, or the transport error.
    outcome: Result<u16, String>,
}

/// A request the server has certainly accepted and is serving: its headers were read and the
/// handler is reading its body (the server answered `100 Continue`), but the body has not been
/// sent yet, so it stays in flight as long as the test wants.
struct HeldRequest {
    stream: std::net::TcpStream,
    body: String,
}

impl HeldRequest {
    fn open(port: u16, token: &str, body: Value) -> HeldRequest {
        let body = body.to_string();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            stream,
            "POST /tasks/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .unwrap();
        let interim = read_head(&mut stream);
        assert!(interim.starts_with("HTTP/1.1 100"), "expected 100 Continue, got {interim:?}");
        HeldRequest { stream, body }
    }

    /// Sends the body and returns the response's head.
    fn finish(mut self) -> String {
        self.stream.write_all(self.body.as_bytes()).unwrap();
        read_head(&mut self.stream)
    }
}

/// Reads an HTTP response head, up to its blank line.
fn read_head(stream: &mut std::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "connection ended in a response head ({other:?}): {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Login loops keep requests in flight: each waits for an argon2 hash, one at a time here.
const LOGIN_CLIENTS: usize = 32;
/// Task reads run alongside them.
const READ_CLIENTS: usize = 8;
/// A request counts as accepted before the signal when its sending started at least this long
/// before it: a few hundred bytes over loopback, read by the server as soon as they arrive (the
/// queue is for argon2, after the read), so this is ample even on a loaded machine.
const ACCEPTED_MARGIN: Duration = Duration::from_millis(250);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_finishes_accepted_requests_refuses_new_ones_and_exits_0() {
    let _turn = TURN.lock().await;
    let data = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite:{}", data.path().join("tasklane.db").display());
    let secret = secret();
    let settings = [
        ("DATABASE_URL", database_url.as_str()),
        ("SECRET_KEY", secret.as_str()),
        ("RATE_LIMIT_ACCOUNT_PER_MINUTE", "0"),
        ("RATE_LIMIT_ADDRESS_PER_MINUTE", "0"),
        // One hash at a time, so logins queue and many are in flight when the signal comes.
        ("PASSWORD_HASH_CONCURRENCY", "1"),
    ];
    let mut server = ServerProcess::start(&settings).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let access = field(&register(&http, &server, "loaded").await, "access_token");
    let (status, task) = post(&http, server.url("/tasks/"), Some(&access), json!({"title": "read me"})).await;
    assert_eq!(status, 201);
    let task_url = server.url(&format!("/tasks/{}", task["id"]));

    let signalled = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let warmed = Arc::new(tokio::sync::Semaphore::new(0));
    let workers: Vec<_> = (0..LOGIN_CLIENTS + READ_CLIENTS)
        .map(|i| {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let (login_url, task_url, access) = (server.url("/auth/login"), task_url.clone(), access.clone());
            let (signalled, stop, warmed) = (signalled.clone(), stop.clone(), warmed.clone());
            tokio::spawn(async move {
                let what = if i < LOGIN_CLIENTS { "login" } else { "read" };
                let mut samples = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let request = if what == "login" {
                        http.post(&login_url)
                            .json(&json!({"username": "loaded", "password": "correct horse"}))
                    } else {
                        http.get(&task_url).bearer_auth(&access)
                    };
                    let outcome = async {
                        let res = request.send().await?;
                        let status = res.status().as_u16();
                        res.bytes().await?;
                        Ok::<u16, reqwest::Error>(status)
                    }
                    .await
                    .map_err(|e| format!("{e:?}"));
                    let failed = outcome.is_err();
                    samples.push(Sample { what, started, finished: Instant::now(), outcome });
                    if samples.len() == 1 {
                        warmed.add_permits(1);
                    }
                    if failed && signalled.load(Ordering::SeqCst) {
                        break; // the server has stopped taking requests
                    }
                }
                samples
            })
        })
        .collect();
    // Every client has had an answer, so the load is steady: each has its next request out.
    let _ = warmed.acquire_many((LOGIN_CLIENTS + READ_CLIENTS) as u32).await.unwrap();

    let held = HeldRequest::open(server.port, &access, json!({"title": "finished after SIGTERM"}));
    let signalled_at = Instant::now();
    signalled.store(true, Ordering::SeqCst);
    server.terminate();

    // New connections are refused while the held request is still being served.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpStream::connect(("127.0.0.1", server.port)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            Err(e) => panic!("connecting after SIGTERM: {e}"),
            Ok(_) => assert!(Instant::now() < deadline, "still accepting connections 10 s after SIGTERM"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(server.running(), "the process waits for the request it is serving:\n{}", server.log());
    let head = held.finish();
    assert!(head.starts_with("HTTP/1.1 201"), "the held request completes after SIGTERM: {head}");

    let exit = server.exit_status().await;
    assert_eq!(exit.code(), Some(0), "{exit}:\n{}", server.log());
    stop.store(true, Ordering::SeqCst);
    let mut samples = Vec::new();
    for worker in workers {
        samples.extend(worker.await.unwrap());
    }

    let before = |s: &Sample| s.started + ACCEPTED_MARGIN <= signalled_at;
    let mut accepted = 0;
    let mut across = 0;
    for s in &samples {
        let sent = if s.started <= signalled_at {
            format!("sent {:?} before SIGTERM", signalled_at - s.started)
        } else {
            format!("sent {:?} after SIGTERM", s.started - signalled_at)
        };
        match &s.outcome {
            // Whatever the server answered, before the signal or while draining, was a success.
            Ok(status) => assert_eq!(*status, 200, "{} {sent} answered {status}", s.what),
            Err(e) => assert!(!before(s), "{} {sent} failed: {e}\n{}", s.what, server.log()),
        }
        if before(s) {
            accepted += 1;
            across += usize::from(s.finished > signalled_at);
        }
    }
    let failed = samples.iter().filter(|s| s.outcome.is_err()).count();
    let drained = samples.iter().filter(|s| s.outcome.is_ok()).map(|s| s.finished).max().unwrap();
    eprintln!(
        "{} requests; {accepted} accepted before SIGTERM, {across} of them answered after it, the \
         last {:?} after it; {failed} sent after it failed",
        samples.len(),
        drained.saturating_duration_since(signalled_at)
    );
    assert!(across > 0, "no accepted request was still in flight at the signal: the load is too light");

    // Nothing acknowledged was lost: the task created during shutdown is stored.
    let server = ServerProcess::start(&settings).await;
    let list = http.get(server.url("/tasks/?limit=1")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(list.headers()["x-total-count"], "2");
    server.stop().await;
}

/// The PostgreSQL database and the Redis of a `Backend::PostgresRedis` scratch config.
fn postgres_and_redis(config: &tasklane_server::Config) -> (&str, &str) {
    let DatabaseUrl::Postgres(database_url) = &config.database_url else { unreachable!() };
    (database_url, config.redis_url.as_deref().expect("a PostgresRedis config has Redis"))
}

/// The settings of an instance on the test's PostgreSQL database and the shared Redis.
fn cluster_settings<'a>(
    database_url: &'a str,
    redis_url: &'a str,
    secret: &'a str,
    account_limit: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("DATABASE_URL", database_url),
        ("REDIS_URL", redis_url),
        ("SECRET_KEY", secret),
        ("DATABASE_MAX_CONNECTIONS", "8"),
        ("RATE_LIMIT_ACCOUNT_PER_MINUTE", account_limit),
        // Every request here comes from 127.0.0.1; the per-address budget is not under test.
        ("RATE_LIMIT_ADDRESS_PER_MINUTE", "0"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres_and_redis_behave_as_one() {
    let Some((config, scratch)) = scratch_config(Backend::PostgresRedis).await else { return };
    let _turn = TURN.lock().await;
    let (database_url, redis_url) = postgres_and_redis(&config);
    let secret = secret();
    let settings = cluster_settings(database_url, redis_url, &secret, "0");
    // Started together, as replicas are: both apply migrations to the new database at once.
    let (a, b) = tokio::join!(ServerProcess::start(&settings), ServerProcess::start(&settings));
    let instances = [&a, &b];
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();

    // A session from one instance is good on the other.
    let pair = register(&http, &a, "twin").await;
    let access = field(&pair, "access_token");
    let me = http.get(b.url("/auth/me")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().await.unwrap()["username"], "twin");

    // 200 concurrent creates, alternating between the instances: 200 tasks, no error.
    let creates = (0..200).map(|i| {
        let (http, access) = (&http, &access);
        let url = instances[i % 2].url("/tasks/");
        async move { post(http, url, Some(access), json!({"title": format!("task {i}")})).await }
    });
    let results = futures::future::join_all(creates).await;
    let mut ids: Vec<i64> = results
        .iter()
        .map(|(status, task)| {
            assert_eq!(*status, 201, "{task}");
            task["id"].as_i64().unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200, "distinct ids");
    for server in instances {
        let list = http.get(server.url("/tasks/?limit=1")).bearer_auth(&access).send().await.unwrap();
        assert_eq!(list.status(), 200);
        assert_eq!(list.headers()["x-total-count"], "200");
    }

    // 20 concurrent refreshes of one token across both: exactly one wins.
    let refresh = field(&pair, "refresh_token");
    let refreshes = (0..20).map(|i| {
        let (http, refresh) = (&http, &refresh);
        let url = instances[i % 2].url("/auth/refresh");
        async move { post(http, url, None, json!({"refresh_token": refresh})).await }
    });
    let results = futures::future::join_all(refreshes).await;
    let winners: Vec<&Value> = results.iter().filter(|(s, _)| *s == 200).map(|(_, body)| body).collect();
    assert_eq!(winners.len(), 1, "{:?}", results.iter().map(|(s, _)| s).collect::<Vec<_>>());
    for (status, body) in &results {
        assert!(*status == 200 || *status == 401, "{status}: {body}");
    }
    // The losers presented a consumed token: reuse, so the family is revoked, the winner's
    // new refresh token included (DESIGN.md: a race cannot be told from a theft).
    let (status, _) = post(
        &http,
        a.url("/auth/refresh"),
        None,
        json!({"refresh_token": field(winners[0], "refresh_token")}),
    )
    .await;
    assert_eq!(status, 401);

    a.stop().await;
    b.stop().await;
    scratch.cleanup().await;
}

/// Two server processes on one PostgreSQL + Redis: 20 concurrent creates with one
/// Idempotency-Key, spread over both, make exactly one task (the others replay it, or are told
/// to retry while it is in flight); and a write on one process reaches an event stream on the
/// other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_make_one_task_per_key_and_share_live_events() {
    let Some((config, scratch)) = scratch_config(Backend::PostgresRedis).await else { return };
    let _turn = TURN.lock().await;
    let (database_url, redis_url) = postgres_and_redis(&config);
    let secret = secret();
    let settings = cluster_settings(database_url, redis_url, &secret, "0");
    let (a, b) = tokio::join!(ServerProcess::start(&settings), ServerProcess::start(&settings));
    let instances = [&a, &b];
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let access = field(&register(&http, &a, "keyed").await, "access_token");

    // Opened on B before the writes on A.
    let mut events = http
        .get(b.url("/tasks/events"))
        .bearer_auth(&access)
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);

    let key = format!("one-{}", uuid::Uuid::new_v4().simple());
    let creates = (0..20).map(|i| {
        let (http, access, key) = (&http, &access, &key);
        let url = instances[i % 2].url("/tasks/");
        async move {
            loop {
                let res = http
                    .post(&url)
                    .bearer_auth(access)
                    .header("Idempotency-Key", key)
                    .json(&json!({"title": "only one"}))
                    .send()
                    .await
                    .unwrap();
                if res.status() == 409 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                assert_eq!(res.status(), 201);
                return res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
            }
        }
    });
    let mut ids = futures::future::join_all(creates).await;
    ids.dedup();
    assert_eq!(ids.len(), 1, "one task for one key: {ids:?}");
    let list = http.get(b.url("/tasks/")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(list.headers()["x-total-count"], "1");

    // The create on A, announced through Redis, arrives on B's stream.
    let mut seen = String::new();
    let arrived = tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.contains("\n\n") {
            let chunk = events.chunk().await.unwrap().expect("the stream ended");
            seen.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await;
    assert!(arrived.is_ok(), "no event on B within 5 s: {seen:?}");
    assert!(seen.contains("event:change") && seen.contains(&format!("\"id\":{}", ids[0])), "{seen}");

    drop(events);
    a.stop().await;
    b.stop().await;
    scratch.cleanup().await;
}

/// `rediss://`, as managed Redis services with encryption in transit require: the server
/// verifies the certificate against the system's roots (here the test CA, named by
/// `SSL_CERT_FILE` as rustls-native-certs reads it), and keeps its sessions there.
#[tokio::test]
async fn redis_over_tls_verifies_the_certificate_and_keeps_sessions() {
    let Some((config, scratch)) = scratch_config(Backend::PostgresRedis).await else { return };
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(tls_url), Some(ca)) = (var("TASKLANE_TEST_REDIS_TLS_URL"), var("TASKLANE_TEST_REDIS_TLS_CA"))
    else {
        // Like the other services: required under CI, a loud note elsewhere.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but TASKLANE_TEST_REDIS_TLS_URL / _CA are not (scripts/services.sh prints them)"
        );
        eprintln!("\n*** Redis over TLS test NOT RUN: set TASKLANE_TEST_REDIS_TLS_URL and TASKLANE_TEST_REDIS_TLS_CA ***\n");
        scratch.cleanup().await;
        return;
    };
    let _turn = TURN.lock().await;
    let DatabaseUrl::Postgres(database_url) = &config.database_url else { unreachable!() };
    let secret = secret();
    let mut settings = cluster_settings(database_url, &tls_url, &secret, "0");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();

    // Trusting the CA: sessions are kept in Redis over TLS, and a refresh consumes them there.
    settings.push(("SSL_CERT_FILE", &ca));
    let trusting = ServerProcess::start(&settings).await;
    let ready = http.get(trusting.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{}", trusting.log());
    let pair = register(&http, &trusting, "tls").await;
    let body = json!({"refresh_token": field(&pair, "refresh_token")});
    let (status, refreshed) = post(&http, trusting.url("/auth/refresh"), None, body.clone()).await;
    assert_eq!(status, 200, "{refreshed}");
    let (status, _) = post(&http, trusting.url("/auth/refresh"), None, body).await;
    assert_eq!(status, 401, "a consumed refresh token");
    trusting.stop().await;

    // Without the CA the certificate is refused: Redis is unavailable, not silently trusted.
    settings.pop();
    let refusing = ServerProcess::start(&settings).await;
    let ready = http.get(refusing.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let (status, problem) = post(
        &http,
        refusing.url("/auth/login"),
        None,
        json!({"username": "tls", "password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 503, "{problem}");
    refusing.stop().await;
    scratch.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_one_rate_limit() {
    let Some((config, scratch)) = scratch_config(Backend::PostgresRedis).await else { return };
    let _turn = TURN.lock().await;
    let (database_url, redis_url) = postgres_and_redis(&config);
    let secret = secret();
    let settings = cluster_settings(database_url, redis_url, &secret, "5");
    let (a, b) = tokio::join!(ServerProcess::start(&settings), ServerProcess::start(&settings));
    let instances = [&a, &b];
    let http = reqwest::Client::new();
    // Unique: the limit's Redis keys outlive this test's database.
    let username = format!("limited-{}", uuid::Uuid::new_v4().simple());
    register(&http, &a, &username).await;
    let creds = json!({"username": username, "password": "correct horse"});

    // Five logins alternate between the instances: each has seen at most three, yet the sixth
    // and seventh are refused, on either instance.
    for attempt in 0..5 {
        let (status, body) =
            post(&http, instances[attempt % 2].url("/auth/login"), None, creds.clone()).await;
        assert_eq!(status, 200, "attempt {}: {body}", attempt + 1);
    }
    for server in [&b, &a] {
        let res = http.post(server.url("/auth/login")).json(&creds).send().await.unwrap();
        assert_eq!(res.status(), 429);
        let retry_after: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "Retry-After: {retry_after}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    // The budget is the account's: another user signs in on the same instances.
    let other = format!("other-{}", uuid::Uuid::new_v4().simple());
    register(&http, &b, &other).await;
    let (status, _) =
        post(&http, a.url("/auth/login"), None, json!({"username": other, "password": "correct horse"}))
            .await;
    assert_eq!(status, 200);

    a.stop().await;
    b.stop().await;
    scratch.cleanup().await;
}

#[tokio::test]
async fn access_log_is_one_json_line_per_request_with_its_id() {
    let secret = secret();
    let server = ServerProcess::start(&[
        ("SECRET_KEY", secret.as_str()),
        ("RUST_LOG", tasklane_server::telemetry::DEFAULT_LOG_FILTER),
        ("LOG_FORMAT", "json"),
    ])
    .await;
    let http = reqwest::Client::new();
    for (id, path) in [("probe-1", "/health"), ("probe-2", "/tasks/"), ("probe-3", "/nowhere")] {
        http.get(server.url(path)).header("X-Request-Id", id).send().await.unwrap();
    }
    let (status, _) = post(
        &http,
        server.url("/auth/register"),
        None,
        json!({"username": "logged", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(status, 201);

    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines: Vec<Value> =
            server.log().lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()).collect();
        let responses = lines.iter().filter(|l| l["message"] == "response").count();
        if responses >= 4 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (id, method, path, status) in [
        ("probe-1", "GET", "/health", 200),
        ("probe-2", "GET", "/tasks/", 401),
        ("probe-3", "GET", "/nowhere", 404),
    ] {
        let found: Vec<&Value> =
            lines.iter().filter(|l| l["message"] == "response" && l["request_id"] == id).collect();
        assert_eq!(found.len(), 1, "one access line for {id}:\n{}", server.log());
        let line = found[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!((line["method"].as_str(), line["path"].as_str()), (Some(method), Some(path)), "{line}");
        assert_eq!(line["status"], status, "{line}");
        assert!(line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{line}");
        let decimals = line["latency_ms"].to_string().split_once('.').map_or(0, |(_, frac)| frac.len());
        assert!(decimals <= 3, "latency in whole microseconds: {line}");
    }
    let register = lines
        .iter()
        .find(|l| l["message"] == "response" && l["path"] == "/auth/register")
        .unwrap_or_else(|| panic!("no access line for the register:\n{}", server.log()));
    assert_eq!(register["status"], 201);
    assert_eq!(register["request_id"].as_str().map(str::len), Some(32), "a generated id: {register}");
    server.stop().await;
}

/// `tasklane-server` to run in `dir` with exactly these settings and nothing inherited.
fn server_command(dir: &std::path::Path, settings: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tasklane-server"));
    command.env_clear().current_dir(dir).envs(settings.iter().copied());
    command
}

/// Runs `tasklane-server migrate` in `dir` with exactly these settings (and `RUST_LOG=warn`
/// unless they name one).
fn migrate(dir: &std::path::Path, settings: &[(&str, &str)]) -> std::process::Output {
    server_command(dir, &[("RUST_LOG", "warn")])
        .arg("migrate")
        .envs(settings.iter().copied())
        .output()
        .expect("run tasklane-server migrate")
}

#[tokio::test]
async fn migrate_needs_only_the_database_url_and_reads_no_parent_env_file() {
    let Some((config, scratch)) = scratch_config(Backend::Postgres).await else { return };
    let DatabaseUrl::Postgres(database_url) = &config.database_url else { unreachable!() };
    let parent = tempfile::tempdir().unwrap();
    // Were this read, migrate would stop on it.
    std::fs::write(parent.path().join(".env"), "DATABASE_URL=mysql://elsewhere\n").unwrap();
    let dir = parent.path().join("deploy");
    std::fs::create_dir(&dir).unwrap();

    // PostgreSQL, with no SECRET_KEY (serving would need one; migrating does not).
    let output = migrate(&dir, &[("DATABASE_URL", database_url.as_str())]);
    let said =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{said}");
    assert!(said.contains("migrations applied"), "{said}");
    let mut db = sqlx::PgConnection::connect(database_url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(applied > 0);
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks").fetch_one(&mut db).await.unwrap();
    assert_eq!(tasks, 0);
    db.close().await.unwrap();

    // Nothing set: the embedded default, in the working directory, not the parent's .env.
    let output = migrate(&dir, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(dir.join("tasklane.db").exists());
    // A .env in the working directory is read.
    std::fs::write(dir.join(".env"), "DATABASE_URL=mysql://here\n").unwrap();
    let output = migrate(&dir, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_URL"));
    scratch.cleanup().await;
}

/// Settings read before the server starts (Rocket's runtime, the log, `.env`): a bad one is one
/// line naming it and exit status 1, not a panic nor a server logging nothing.
#[test]
fn settings_read_before_start_fail_with_one_line_and_status_1() {
    // The settings, a `.env` file's text, and how stderr starts.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 5] = [
        (&[("ROCKET_WORKERS", "0")], "", "ROCKET_WORKERS: must be at least 1"),
        (&[("ROCKET_MAX_BLOCKING", "0")], "", "ROCKET_MAX_BLOCKING: must be at least 1"),
        (&[("RUST_LOG", "[[[")], "", "RUST_LOG: "),
        (&[("LOG_FORMAT", "xml")], "", "LOG_FORMAT: expected text or json"),
        (&[], "NOT A LINE\n", ".env: "),
    ];
    for (settings, env_file, said) in cases {
        let dir = tempfile::tempdir().unwrap();
        if !env_file.is_empty() {
            std::fs::write(dir.path().join(".env"), env_file).unwrap();
        }
        let output = server_command(dir.path(), settings).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{settings:?}: {stderr}");
        assert!(stderr.starts_with(&format!("tasklane-server: {said}")), "{settings:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!dir.path().join("tasklane.db").exists(), "nothing started");
    }
}

/// A `REDIS_URL` that Redis itself refuses (a wrong password, a database index it does not
/// have) stops the start with one line naming it; a Redis that does not answer yet is a
/// warning, and the server starts (its session routes answer 503 until Redis does).
#[tokio::test]
async fn a_redis_url_redis_refuses_stops_the_start_and_an_absent_redis_is_a_warning() {
    let Some((config, scratch)) = scratch_config(Backend::PostgresRedis).await else { return };
    let redis = url::Url::parse(config.redis_url.as_deref().unwrap()).unwrap();
    let mut wrong_password = redis.clone();
    wrong_password.set_password(Some("not-the-password")).unwrap();
    let mut no_such_database = redis.clone();
    no_such_database.set_path("/99");
    for (url, said) in
        [(wrong_password, "authentication failed"), (no_such_database, "DB index is out of range")]
    {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port().to_string();
        let settings = [("REDIS_URL", url.as_str()), ("RUST_LOG", "warn"), ("ROCKET_PORT", port.as_str())];
        let mut child = server_command(dir.path(), &settings)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Bounded: a server that starts anyway is a failure, not a hang.
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("{url}: still running after 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{url}: {stderr}");
        let line = stderr.lines().last().unwrap_or_default();
        assert!(line.starts_with("tasklane-server: REDIS_URL: ") && line.contains(said), "{url}: {stderr}");
        assert!(!dir.path().join("tasklane.db").exists(), "stopped before the database");
    }

    let _turn = TURN.lock().await;
    let server = ServerProcess::start(&[("REDIS_URL", &format!("redis://127.0.0.1:{}", free_port()))]).await;
    assert!(server.log().contains("REDIS_URL: Redis cannot be used yet"), "{}", server.log());
    let http = reqwest::Client::new();
    assert_eq!(http.get(server.url("/ready")).send().await.unwrap().status(), 503);
    server.stop().await;
    scratch.cleanup().await;
}

/// The embedded default's files hold password hashes and sessions: only their owner reads
/// them, the database and its WAL as the key file, in a directory made for them if need be.
#[tokio::test]
async fn sqlite_files_are_private_and_their_directory_is_made() {
    use std::os::unix::fs::PermissionsExt;
    let _turn = TURN.lock().await;
    let secret = secret();
    let server =
        ServerProcess::start(&[("DATABASE_URL", "sqlite:data/deep/t.db"), ("SECRET_KEY", secret.as_str())])
            .await;
    register(&reqwest::Client::new(), &server, "private").await;
    let data = server.dir.path().join("data/deep");
    for file in ["t.db", "t.db-wal", "t.db-shm"] {
        let mode = std::fs::metadata(data.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}: {mode:o}");
    }
    server.stop().await;
}

/// A port another process holds: one line naming where it tried to listen, status 1.
#[test]
fn a_port_in_use_is_one_line_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let settings = [("ROCKET_ADDRESS", "127.0.0.1"), ("ROCKET_PORT", port.as_str()), ("RUST_LOG", "warn")];
    let output = server_command(dir.path(), &settings).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected =
        format!("tasklane-server: ROCKET_ADDRESS / ROCKET_PORT: cannot listen on 127.0.0.1:{port}: ");
    assert!(stderr.lines().last().unwrap_or_default().starts_with(&expected), "{stderr}");
}

/// A database a newer release has migrated (a migration this one does not know) still takes
/// this release: a rolling deploy, or a rollback.
#[tokio::test]
async fn migrations_of_a_newer_release_do_not_stop_this_one() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("tasklane.db").display());
    let output = migrate(dir.path(), &[("DATABASE_URL", url.as_str())]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (29991231000001, 'from a newer release', 1, x'00', 0)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    db.close().await.unwrap();

    let output = migrate(dir.path(), &[("DATABASE_URL", url.as_str())]);
    let said =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{said}");
    assert!(said.contains("29991231000001") && said.contains("does not know"), "{said}");
}

#[tokio::test]
async fn an_empty_rust_log_keeps_the_default_filter() {
    let secret = secret();
    // What compose passes when RUST_LOG is not set on the host.
    let mut server = ServerProcess::start(&[("SECRET_KEY", secret.as_str()), ("RUST_LOG", "")]).await;
    let http = reqwest::Client::new();
    let res = http.get(server.url("/health")).header("X-Request-Id", "empty-filter").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("empty-filter") {
        assert!(Instant::now() < deadline, "no access line:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Requests a client makes up (a 404 with a secret in its query, a HEAD answered by the GET
    // route) leave their access line and nothing else.
    let res =
        http.get(server.url("/nowhere?password=hunter2")).header("X-Request-Id", "made-up").send().await;
    assert_eq!(res.unwrap().status(), 404);
    assert_eq!(http.head(server.url("/health")).send().await.unwrap().status(), 200);
    while !server.log().contains("made-up") {
        assert!(Instant::now() < deadline, "no access line:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.terminate();
    assert!(server.exit_status().await.success());
    let log = server.log();
    // Rocket's own per-request lines stay out, as under the default filter.
    for rocket_line in ["Matched:", "Outcome:", "Response succeeded", "No matching routes", "hunter2"] {
        assert!(!log.contains(rocket_line), "{rocket_line}:\n{log}");
    }
    // What the operator needs to know is there: the schema, the shutdown and its end.
    for said in ["database schema up to date", "shutting down", "stopped"] {
        assert!(log.contains(said), "{said}:\n{log}");
    }
}

/// Rocket's settings in `Rocket.toml` are the server's: `tasklane-server healthcheck` probes the
/// port given there, and an `ip_header` given there is trusted for the per-address limits (it
/// is off only when no one names one).
#[tokio::test]
async fn rocket_toml_settings_hold_for_the_healthcheck_and_the_client_address() {
    let secret = secret();
    let config_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let toml = config_dir.path().join("Rocket.toml");
    std::fs::write(&toml, format!("[default]\nport = {port}\nip_header = \"X-Real-IP\"\n")).unwrap();
    let toml = toml.to_str().unwrap();
    let settings = [
        ("SECRET_KEY", secret.as_str()),
        ("ROCKET_CONFIG", toml),
        ("RATE_LIMIT_ACCOUNT_PER_MINUTE", "0"),
        ("RATE_LIMIT_ADDRESS_PER_MINUTE", "1"),
    ];
    // The port must come from the file.
    let server = ServerProcess::start_configured(&settings, port).await;
    let http = reqwest::Client::new();

    let healthcheck = |settings: &[(&str, &str)]| {
        server_command(server.dir.path(), settings)
            .arg("healthcheck")
            .output()
            .expect("run tasklane-server healthcheck")
    };
    let probed = healthcheck(&[("ROCKET_CONFIG", toml)]);
    assert!(probed.status.success(), "{}", String::from_utf8_lossy(&probed.stderr));
    let elsewhere = free_port().to_string();
    let probed = healthcheck(&[("ROCKET_CONFIG", toml), ("ROCKET_PORT", elsewhere.as_str())]);
    assert_eq!(probed.status.code(), Some(1), "nothing listens on {elsewhere}");

    // One attempt a minute per address, the address being X-Real-IP's.
    let login = |address: &'static str| {
        http.post(server.url("/auth/login"))
            .header("X-Real-IP", address)
            .json(&json!({"username": "nobody", "password": "wrong horse"}))
            .send()
    };
    assert_eq!(login("192.0.2.1").await.unwrap().status(), 401);
    assert_eq!(login("192.0.2.2").await.unwrap().status(), 401, "another address, another budget");
    assert_eq!(login("192.0.2.1").await.unwrap().status(), 429);

    server.stop().await;
}

/// A fake OpenTelemetry collector on 127.0.0.1: what it is sent on `POST /v1/traces` (OTLP over
/// HTTP, protobuf), decoded.
struct Collector {
    running: tasklane_server::Running,
    received: Received,
}

type Received = Arc<std::sync::Mutex<Vec<ExportTraceServiceRequest>>>;

#[rocket::post("/v1/traces", format = "application/x-protobuf", data = "<body>")]
async fn collect(
    body: rocket::Data<'_>,
    received: &rocket::State<Received>,
) -> Result<(rocket::http::ContentType, Vec<u8>), rocket::http::Status> {
    use prost::Message;
    use rocket::data::ToByteUnit;
    let bytes = body.open(16.mebibytes()).into_bytes().await.map_err(|_| rocket::http::Status::BadRequest)?;
    let request =
        ExportTraceServiceRequest::decode(bytes.as_slice()).map_err(|_| rocket::http::Status::BadRequest)?;
    received.lock().unwrap().push(request);
    // An empty `ExportTraceServiceResponse`: everything accepted.
    Ok((rocket::http::ContentType::new("application", "x-protobuf"), Vec::new()))
}

impl Collector {
    async fn start() -> Collector {
        let received = Received::default();
        let config = rocket::Config {
            address: std::net::Ipv4Addr::LOCALHOST.into(),
            port: 0,
            log_level: rocket::config::LogLevel::Off,
            ..rocket::Config::debug_default()
        };
        let rocket = rocket::custom(config).manage(received.clone()).mount("/", rocket::routes![collect]);
        let running = tasklane_server::spawn(rocket).await.unwrap();
        Collector { running, received }
    }

    fn endpoint(&self) -> String {
        self.running.url()
    }

    /// Every span received, with the `service.name` of its resource.
    fn spans(&self) -> Vec<(String, OtlpSpan)> {
        let mut spans = Vec::new();
        for request in self.received.lock().unwrap().iter() {
            for resource_spans in &request.resource_spans {
                let service = resource_spans
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                    .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
                    .unwrap_or_default();
                for scope in &resource_spans.scope_spans {
                    spans.extend(scope.spans.iter().map(|span| (service.clone(), span.clone())));
                }
            }
        }
        spans
    }
}

fn text(value: &any_value::Value) -> Option<String> {
    match value {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A span's attribute, as text.
fn attribute(span: &OtlpSpan, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the process runs OpenTelemetry's batch span processor (its thread's name, cut to
/// the 15 bytes Linux keeps).
fn runs_span_exporter(pid: u32) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks.filter_map(Result::ok).any(|task| {
        std::fs::read_to_string(task.path().join("comm"))
            .is_ok_and(|name| name.starts_with("OpenTelemetry.T"))
    })
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, a request's span continues the caller's W3C
/// `traceparent` (same trace, the caller's span as parent) and carries the method, route
/// template, status and request id; the store and Redis calls are its children, named by
/// operation, with no value of the request in any attribute. With a batch delay of ten
/// minutes, the spans reach the collector only because shutdown flushes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traces_continue_the_callers_trace_and_are_flushed_at_shutdown() {
    let Some((config, scratch)) = scratch_config(Backend::PostgresRedis).await else { return };
    let _turn = TURN.lock().await;
    let (database_url, redis_url) = postgres_and_redis(&config);
    let collector = Collector::start().await;
    let (secret, endpoint) = (secret(), collector.endpoint());
    let mut settings = cluster_settings(database_url, redis_url, &secret, "5");
    settings.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "tasklane-under-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
    ]);
    let server = ServerProcess::start(&settings).await;
    assert!(runs_span_exporter(server.child.id()), "{}", server.log());
    let http = reqwest::Client::new();

    let register_trace = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let password = "traced horse battery";
    let res = http
        .post(server.url("/auth/register"))
        .header("traceparent", format!("00-{}-{}-01", register_trace.0, register_trace.1))
        .json(&json!({"username": "traced", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let access = field(&res.json().await.unwrap(), "access_token");
    let list_trace = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let res = http
        .get(server.url("/tasks/?q=secret-words&limit=5"))
        .bearer_auth(&access)
        .header("traceparent", format!("00-{}-{}-01", list_trace.0, list_trace.1))
        .header("X-Request-Id", "traced-list")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Without a `traceparent`: a trace of its own.
    let res = http.get(server.url("/auth/me")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(collector.spans().is_empty(), "nothing is sent before the batch delay or the shutdown");

    server.stop().await;
    let spans = collector.spans();
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
    assert!(spans.iter().all(|(service, _)| service == "tasklane-under-test"), "{spans:?}");
    let request_span = |trace: &str| {
        let found: Vec<&OtlpSpan> = spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| hex(&s.trace_id) == trace && s.kind == SpanKind::Server as i32)
            .collect();
        assert_eq!(found.len(), 1, "one request span in trace {trace}: {names:?}");
        found[0]
    };
    let child = |parent: &OtlpSpan, name: &str| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.name == name && s.parent_span_id == parent.span_id && s.trace_id == parent.trace_id)
            .unwrap_or_else(|| panic!("no {name} under {}: {names:?}", parent.name))
            .clone()
    };

    let list = request_span(list_trace.0);
    assert_eq!(hex(&list.parent_span_id), list_trace.1, "the caller's span is the parent");
    assert_eq!(list.name, "GET /tasks");
    for (key, value) in [
        ("http.request.method", "GET"),
        ("http.route", "/tasks"),
        ("http.response.status_code", "200"),
        ("request_id", "traced-list"),
    ] {
        assert_eq!(attribute(list, key).as_deref(), Some(value), "{key}: {list:?}");
    }
    let store = child(list, "store.list_tasks");
    assert_eq!(attribute(&store, "db.system.name").as_deref(), Some("postgresql"));

    let register = request_span(register_trace.0);
    assert_eq!(hex(&register.parent_span_id), register_trace.1);
    assert_eq!(attribute(register, "http.response.status_code").as_deref(), Some("201"));
    child(register, "redis.rate_limit");
    child(register, "store.create_user");
    let family = child(register, "store.start_family");
    assert_eq!(attribute(&family, "db.system.name").as_deref(), Some("redis"));
    child(&family, "redis.start_family");

    let me = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| {
            s.kind == SpanKind::Server as i32 && attribute(s, "http.route").as_deref() == Some("/auth/me")
        })
        .unwrap_or_else(|| panic!("no span for /auth/me: {names:?}"));
    assert!(me.parent_span_id.is_empty(), "without a traceparent, a new trace");
    assert!(![register_trace.0, list_trace.0].contains(&hex(&me.trace_id).as_str()));

    // Names and routes, never what was sent: no password, token or query in any attribute.
    let everything = format!("{spans:?}");
    for secret in [password, access.as_str(), "secret-words"] {
        assert!(!everything.contains(secret), "{secret} exported");
    }
    collector.running.shutdown.notify();
    scratch.cleanup().await;
}

/// Without an endpoint (unset, or empty as compose passes an unset variable) there is no
/// exporter at all, whatever other `OTEL_*` variables say; an endpoint that is not a URL is a
/// warning, and the server serves without traces.
#[tokio::test]
async fn no_endpoint_no_exporter_and_a_bad_one_is_a_warning() {
    let _turn = TURN.lock().await;
    let secret = secret();
    let base = [("SECRET_KEY", secret.as_str()), ("RUST_LOG", "info")];
    for endpoint in [None, Some(""), Some("http://not a host:4318")] {
        let mut settings = base.to_vec();
        settings.extend([("OTEL_SERVICE_NAME", "tasklane-under-test"), ("OTEL_BSP_SCHEDULE_DELAY", "10")]);
        settings.extend(endpoint.map(|url| ("OTEL_EXPORTER_OTLP_ENDPOINT", url)));
        let server = ServerProcess::start(&settings).await;
        let res = reqwest::Client::new()
            .get(server.url("/health"))
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{endpoint:?}");
        assert!(!runs_span_exporter(server.child.id()), "{endpoint:?}: {}", server.log());
        let log = server.log();
        assert!(!log.contains("exporting traces"), "{endpoint:?}: {log}");
        let warned = log.contains("cannot export traces; serving without them");
        assert_eq!(warned, endpoint.is_some_and(|url| !url.is_empty()), "{endpoint:?}: {log}");
        server.stop().await;
    }
}

/// A collector that does not answer costs the server nothing but a warning: it serves, and it
/// stops on SIGTERM with status 0.
#[tokio::test]
async fn an_unreachable_collector_does_not_stop_the_server() {
    let _turn = TURN.lock().await;
    let secret = secret();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let settings = [
        ("SECRET_KEY", secret.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "10"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
    ];
    let server = ServerProcess::start(&settings).await;
    assert!(runs_span_exporter(server.child.id()), "{}", server.log());
    let http = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(http.get(server.url("/health")).send().await.unwrap().status(), 200);
    }
    server.stop().await;
}
