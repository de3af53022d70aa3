//! Test harness: the real app on a fresh database per test, on SQLite or on PostgreSQL + Redis.
//!
//! PostgreSQL and Redis come from `TASKLANE_TEST_DATABASE_URL` (an admin URL; each test creates
//! its own database there) and `TASKLANE_TEST_REDIS_URL`. Without them the PostgreSQL half of
//! the suite is not run and says so loudly on stderr, unless `CI` is set: then it fails.
#![allow(dead_code)]

use std::io::Write;
use std::sync::Once;
use std::time::Duration;

use rocket::figment::Figment;
use rocket::http::{ContentType, Header};
use rocket::local::asynchronous::Client;
use serde_json::{json, Value};
use sqlx::Connection;
use tasklane::types::Secret;
use tasklane_server::config::DatabaseUrl;
use tasklane_server::Config;

/// The secret every test app signs with, so tests can mint tokens of their own.
pub const SECRET: &[u8] = b"tasklane-test-secret-0123456789abcdef";

/// [`SECRET`] as the config takes it.
pub fn secret_key() -> Option<Secret> {
    Some(Secret::new(std::str::from_utf8(SECRET).unwrap()))
}

/// Turns the rate limits off (tests about limits turn them on).
pub fn without_rate_limits(config: &mut Config) {
    config.rate_limit_account_per_minute = 0;
    config.rate_limit_address_per_minute = 0;
}

/// Which backends a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file, refresh tokens in it (the embedded default).
    Sqlite,
    /// PostgreSQL, refresh tokens in Redis (production).
    PostgresRedis,
    /// PostgreSQL, refresh tokens in PostgreSQL.
    Postgres,
}

struct PgEnv {
    admin_url: String,
    redis_url: String,
}

fn pg_env() -> Option<PgEnv> {
    let admin_url = std::env::var("TASKLANE_TEST_DATABASE_URL").ok().filter(|v| !v.is_empty());
    let redis_url = std::env::var("TASKLANE_TEST_REDIS_URL").ok().filter(|v| !v.is_empty());
    match (admin_url, redis_url) {
        (Some(admin_url), Some(redis_url)) => Some(PgEnv { admin_url, redis_url }),
        _ if std::env::var_os("CI").is_some() => panic!(
            "CI is set but TASKLANE_TEST_DATABASE_URL / TASKLANE_TEST_REDIS_URL are not: \
             the PostgreSQL + Redis tests must run under CI (.ci/run starts both)"
        ),
        _ => {
            static WARN: Once = Once::new();
            WARN.call_once(|| {
                // Written to the raw stderr, past the test harness's output capture.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** PostgreSQL + Redis tests NOT RUN: set TASKLANE_TEST_DATABASE_URL and \
                     TASKLANE_TEST_REDIS_URL (see README.md) ***\n"
                );
            });
            None
        }
    }
}

/// Where a test's database lives, to clean it up afterwards.
pub enum Scratch {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, database: String },
}

/// A fresh database (and Redis, on the PostgreSQL backends) with a config pointing at it.
pub async fn scratch_config(backend: Backend) -> Option<(Config, Scratch)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut config = Config::sqlite(dir.path().join("tasklane.db"));
            config.secret_key = secret_key();
            without_rate_limits(&mut config);
            Some((config, Scratch::Sqlite(dir)))
        }
        Backend::Postgres | Backend::PostgresRedis => {
            let env = pg_env()?;
            let database = format!("tasklane_test_{}", uuid::Uuid::new_v4().simple());
            let mut admin =
                sqlx::PgConnection::connect(&env.admin_url).await.expect("connect to the admin database");
            sqlx::query(&format!("CREATE DATABASE {database}"))
                .execute(&mut admin)
                .await
                .expect("create database");
            admin.close().await.ok();
            let mut url = url::Url::parse(&env.admin_url).expect("admin URL");
            url.set_path(&database);
            let mut config = Config::sqlite("unused.db");
            config.database_url = DatabaseUrl::Postgres(url.to_string());
            config.secret_key = secret_key();
            config.database_max_connections = 8;
            without_rate_limits(&mut config);
            if backend == Backend::PostgresRedis {
                config.redis_url = Some(env.redis_url);
            }
            Some((config, Scratch::Postgres { admin_url: env.admin_url, database }))
        }
    }
}

impl Scratch {
    /// Drops the test's PostgreSQL database (a SQLite temp dir goes with its drop).
    pub async fn cleanup(self) {
        if let Scratch::Postgres { admin_url, database } = self {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        }
    }
}

/// Rocket settings for tests: quiet, and a random port when served on a socket.
pub fn figment() -> Figment {
    tasklane_server::rocket_figment()
        .merge(("log_level", "off"))
        .merge(("port", 0))
        .merge(("address", "127.0.0.1"))
        .merge(("shutdown.grace", 1))
        .merge(("shutdown.mercy", 1))
}

/// The app under test, through Rocket's local client.
pub struct TestApp {
    pub client: Client,
    pub config: Config,
    pub backend: Backend,
    scratch: Option<Scratch>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Asserts an error response in the API's problem shape (docs/API.md), and returns its body.
    #[track_caller]
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{}", self.text);
        let body = self.json();
        assert_eq!(body["status"], status);
        assert_eq!(body["type"], "about:blank");
        assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
        body
    }
}

impl TestApp {
    /// The app on a fresh database, or `None` when the backend is not available here.
    pub async fn start(backend: Backend) -> Option<TestApp> {
        let (config, scratch) = scratch_config(backend).await?;
        Some(Self::with_config(config, backend, Some(scratch)).await)
    }

    pub async fn with_config(config: Config, backend: Backend, scratch: Option<Scratch>) -> TestApp {
        let rocket = tasklane_server::build_with(config.clone(), figment()).await.expect("build the app");
        let client = Client::tracked(rocket).await.expect("valid rocket");
        TestApp { client, config, backend, scratch }
    }

    /// Ends the test: drops the scratch database.
    pub async fn finish(mut self) {
        if let Some(scratch) = self.scratch.take() {
            scratch.cleanup().await;
        }
    }

    /// Sends a request; `body` is sent as JSON when given.
    pub async fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let method = method.parse().expect("method");
        let mut req = self.client.req(method, path.to_owned());
        if let Some(token) = token {
            req = req.header(Header::new("Authorization", format!("Bearer {token}")));
        }
        if let Some(body) = body {
            req = req.header(ContentType::JSON).body(body.to_string());
        }
        Self::read(req.dispatch().await).await
    }

    /// Sends a raw body with the given content type.
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        ct: Option<&str>,
        body: Vec<u8>,
    ) -> Resp {
        let mut req = self.client.req(method.parse().expect("method"), path.to_owned()).body(body);
        if let Some(ct) = ct {
            req = req.header(Header::new("Content-Type", ct.to_owned()));
        }
        if let Some(token) = token {
            req = req.header(Header::new("Authorization", format!("Bearer {token}")));
        }
        Self::read(req.dispatch().await).await
    }

    async fn read(res: rocket::local::asynchronous::LocalResponse<'_>) -> Resp {
        let status = res.status().code;
        let headers = res.headers().iter().map(|h| (h.name().to_string(), h.value().to_string())).collect();
        let text = res.into_string().await.unwrap_or_default();
        Resp { status, headers, text }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.send("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.send("POST", path, token, Some(body)).await
    }

    /// Registers `username` and returns the token pair.
    pub async fn register(&self, username: &str) -> Tokens {
        let res = self
            .post("/auth/register", None, json!({"username": username, "password": "correct horse"}))
            .await;
        assert_eq!(res.status, 201, "{}", res.text);
        Tokens::from(&res)
    }

    /// Creates a task and returns it.
    pub async fn create_task(&self, token: &str, body: Value) -> Value {
        let res = self.post("/tasks/", Some(token), body).await;
        assert_eq!(res.status, 201, "{}", res.text);
        res.json()
    }
}

/// A token pair from a response.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

impl From<&Resp> for Tokens {
    fn from(res: &Resp) -> Self {
        let body = res.json();
        assert_eq!(body["token_type"], "bearer");
        Tokens {
            access: body["access_token"].as_str().expect("access_token").to_owned(),
            refresh: body["refresh_token"].as_str().expect("refresh_token").to_owned(),
        }
    }
}

/// The app served on a real socket (random port), for tests that need real connections.
pub struct TestServer {
    pub base: String,
    pub config: Config,
    shutdown: rocket::Shutdown,
    handle: tokio::task::JoinHandle<Result<rocket::Rocket<rocket::Ignite>, rocket::Error>>,
    scratch: Option<Scratch>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Option<TestServer> {
        let (config, scratch) = scratch_config(backend).await?;
        Some(Self::with_config(config, Some(scratch)).await)
    }

    pub async fn with_config(config: Config, scratch: Option<Scratch>) -> TestServer {
        let rocket = tasklane_server::build_with(config.clone(), figment()).await.expect("build the app");
        let running = tokio::time::timeout(Duration::from_secs(30), tasklane_server::spawn(rocket))
            .await
            .expect("server started in time")
            .expect("server started");
        TestServer { base: running.url(), config, shutdown: running.shutdown, handle: running.task, scratch }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn stop(mut self) {
        self.shutdown.clone().notify();
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(10), &mut self.handle).await {
            panic!("the server failed: {e}");
        }
        if let Some(scratch) = self.scratch.take() {
            scratch.cleanup().await;
        }
    }
}

/// Declares each listed test once per backend: `sqlite::name`, `postgres_redis::name` and,
/// where listed under `all_stores`, `postgres::name` (refresh tokens in PostgreSQL).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::common::TestApp::start($crate::common::Backend::Sqlite).await.unwrap();
                    super::$name(&app).await;
                    app.finish().await;
                }
            )*
        }
        mod postgres_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(app) = $crate::common::TestApp::start($crate::common::Backend::PostgresRedis).await else {
                        return;
                    };
                    super::$name(&app).await;
                    app.finish().await;
                }
            )*
        }
    };
}

/// A free TCP port on 127.0.0.1 (bound and released; the OS does not hand it out again soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether a test that needs a service binary it cannot find should skip (on a laptop) or fail
/// (under CI, which installs it).
pub fn missing_service(what: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but {what} is not installed (.ci/run installs it)");
    }
    let _ = writeln!(std::io::stderr(), "\n*** {what} not installed: test NOT RUN ***\n");
    true
}

/// A Redis server of this test's own, to stop and start at will.
pub struct PrivateRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> Option<PrivateRedis> {
        if which("redis-server").is_none() && missing_service("redis-server") {
            return None;
        }
        let mut redis = PrivateRedis { port: free_port(), dir: tempfile::tempdir().unwrap(), child: None };
        redis.resume();
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, and waits until it answers.
    pub fn resume(&mut self) {
        let child = std::process::Command::new("redis-server")
            // Persistent, as production Redis must be (refresh families live here): a kill
            // loses nothing that was acknowledged.
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        wait_for_port(self.port);
    }

    /// Kills it, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL cluster of this test's own (initdb in a temp dir), to restart at will.
pub struct PrivatePostgres {
    pub port: u16,
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    pub fn start() -> Option<PrivatePostgres> {
        let pg = Self::create()?;
        pg.resume();
        Some(pg)
    }

    /// A cluster made but not started (`resume` starts it), on the port it will listen on.
    pub fn create() -> Option<PrivatePostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|dirs| {
            dirs.filter_map(|d| d.ok())
                .map(|d| d.path().join("bin"))
                .filter(|b| b.join("initdb").exists())
                .max()
        });
        let Some(bin) = bin else {
            missing_service("PostgreSQL (initdb)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let pg = PrivatePostgres { port: free_port(), bin, dir };
        if is_root() {
            std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .unwrap();
        }
        let data = pg.dir.path().join("data");
        pg.run(&format!("{}/initdb -D {} -U postgres -A trust --no-sync", pg.bin.display(), data.display()));
        Some(pg)
    }

    fn run(&self, command: &str) {
        let status = if is_root() {
            std::process::Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", command])
                .stdout(std::process::Stdio::null())
                .status()
        } else {
            std::process::Command::new("sh")
                .args(["-c", command])
                .stdout(std::process::Stdio::null())
                .status()
        };
        assert!(status.expect("run a PostgreSQL command").success(), "{command}");
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn resume(&self) {
        let dir = self.dir.path();
        self.run(&format!(
            "{}/pg_ctl -D {}/data -l {}/log -w -t 60 start -o '-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off'",
            self.bin.display(),
            dir.display(),
            dir.display(),
            self.port,
            dir.display()
        ));
    }

    /// Freezes the postmaster and every backend (SIGSTOP), as a hung host or a network
    /// partition would look from here: connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal_all("-STOP");
    }

    /// Undoes [`PrivatePostgres::freeze`].
    pub fn thaw(&self) {
        self.signal_all("-CONT");
    }

    fn signal_all(&self, signal: &str) {
        let pid_file = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).unwrap();
        let postmaster = pid_file.lines().next().unwrap().trim().to_owned();
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // pid (comm) state ppid ...: comm may hold spaces, so read after its closing ')'.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let status = std::process::Command::new("kill").arg(signal).args(&pids).status().unwrap();
        assert!(status.success(), "kill {signal} {pids:?}");
    }

    /// Stops it, closing every connection (a restart's first half).
    pub fn stop(&self) {
        self.run(&format!(
            "{}/pg_ctl -D {}/data -m fast -w stop",
            self.bin.display(),
            self.dir.path().display()
        ));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.stop()));
    }
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

fn which(binary: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(binary))
        .find(|p| p.exists())
}

/// Waits (up to 30 s) until something accepts connections on the port.
pub fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// POSTs `body` as JSON over a real connection, with a bearer token if given: the status and
/// the JSON answer (null when there is none).
pub async fn post(http: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = http.post(url).json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.expect("the server answers");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}
