//! The real server for an application's own tests (feature `testing`).
//!
//! [`TestServer::start`] runs the reference server in-process, exactly as it is deployed (the
//! same routes, store, migrations and token rules), on `127.0.0.1` and a port the OS picks, on
//! a fresh SQLite database in a temporary directory. Every test gets its own server and its own
//! empty database, so tests run in parallel without seeing each other's users or tasks. Dropping
//! the [`TestServer`] signals the server's shutdown, waits for it to stop, and removes the
//! directory.
//!
//! ```
//! use tasklane_server::testing::TestServer;
//!
//! # #[tokio::main]
//! # async fn main() {
//! // In your tests: `#[tokio::test] async fn ...`.
//! let server = TestServer::start().await;
//! let health: serde_json::Value =
//!     reqwest::get(format!("{}/health", server.url())).await.unwrap().json().await.unwrap();
//! assert_eq!(health["status"], "ok");
//!
//! let registered = reqwest::Client::new()
//!     .post(format!("{}/auth/register", server.url()))
//!     .json(&serde_json::json!({"username": "ada", "password": "correct horse battery"}))
//!     .send()
//!     .await
//!     .unwrap();
//! assert_eq!(registered.status(), 201);
//! # }
//! ```
//!
//! What the test server changes from a deployed one, and why:
//!
//! - **Rate limits are off** (`RATE_LIMIT_ACCOUNT_PER_MINUTE` and
//!   `RATE_LIMIT_ADDRESS_PER_MINUTE` are 0): every test logs in from the same address, again and
//!   again, and would meet the per-address limit within a minute. Turn them back on with
//!   [`TestServerBuilder::rate_limits`] to test how an app handles 429, or set other values
//!   through [`TestServerBuilder::config`].
//! - **Nothing comes from the environment**: not `DATABASE_URL` nor any other variable, not
//!   `ROCKET_*` nor `Rocket.toml`, not `.env`. The settings are [`Config`]'s defaults (those of a
//!   fresh machine), changed by the builder only. The signing key is generated into the
//!   temporary directory.
//! - **Quiet and quick to stop**: Rocket logs nothing, leaves Ctrl-C and SIGTERM to the test
//!   process, and at shutdown ends the requests still in flight at once (no grace period).
//!
//! Everything else, the token lifetimes (15 minutes for an access token), argon2's cost, the
//! change feed's retention, is as deployed. For a short access-token lifetime, to see your app
//! refresh, use [`TestServerBuilder::access_token_ttl`].
//!
//! The server runs on a Tokio runtime of its own, on a thread of its own, so it serves whatever
//! the test's runtime is doing (a `current_thread` runtime blocked in a synchronous call
//! included). An `async` test awaits [`start`](TestServer::start); a test without a runtime,
//! one that runs your program as a child process for instance, calls
//! [`start_blocking`](TestServer::start_blocking).
//!
//! Passwords are hashed with argon2 at the cost a deployment uses, which an unoptimised build
//! makes about a hundred times slower. Optimise it in the profile your tests build with:
//!
//! ```toml
//! [profile.dev.package.argon2]
//! opt-level = 3
//! [profile.dev.package.blake2]
//! opt-level = 3
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rocket::fairing::Fairing;
use rocket::figment::Figment;
use rocket::{Build, Rocket};
use tokio::sync::oneshot;

use crate::{Config, StartError};

/// What the server's thread reports: where it listens and how to stop it, or why it could not
/// start.
type Listening = oneshot::Receiver<Result<(SocketAddr, rocket::Shutdown), StartError>>;

/// The reference server, running in-process on `127.0.0.1:<random port>` and a temporary
/// SQLite database, until it is dropped. See [the module](self).
///
/// [`start`](Self::start) takes the defaults; [`builder`](Self::builder) changes settings or
/// attaches fairings first.
pub struct TestServer {
    addr: SocketAddr,
    url: String,
    shutdown: rocket::Shutdown,
    /// The thread of the server's runtime; it ends once the server has stopped.
    thread: Option<std::thread::JoinHandle<()>>,
    /// Removed once that thread has ended.
    dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server with the defaults (see [the module](self)) and returns once it accepts
    /// connections. Any executor can await it: the server has a runtime of its own.
    ///
    /// # Panics
    ///
    /// If the server cannot start (it cannot bind a port, create its temporary directory, or
    /// open its database), with the reason; [`TestServerBuilder::try_start`] returns it instead.
    pub async fn start() -> TestServer {
        Self::builder().start().await
    }

    /// [`start`](Self::start) for a test that has no async runtime (one that runs a program,
    /// say): blocks until the server accepts connections.
    ///
    /// # Panics
    ///
    /// If the server cannot start, with the reason.
    pub fn start_blocking() -> TestServer {
        Self::builder().start_blocking()
    }

    /// A builder, to change settings or attach fairings before the server starts.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// The base URL for clients: `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The temporary directory of the server's database (`tasklane.db`) and its signing key,
    /// removed once the server has stopped.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |dir| dir.path())
    }

    /// Rocket's handle to stop the server before the `TestServer` is dropped (which notifies
    /// it too): to see what an app does when the server goes away. Requests in flight are cut
    /// off, and new connections refused.
    pub fn shutdown_handle(&self) -> rocket::Shutdown {
        self.shutdown.clone()
    }
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer").field("url", &self.url).field("dir", &self.dir()).finish_non_exhaustive()
    }
}

impl Drop for TestServer {
    /// Stops the server and removes its directory: signals the shutdown, waits for the server's
    /// thread to end (milliseconds: requests still in flight are cut off), then removes the
    /// directory. It blocks the dropping thread meanwhile, which does not hold up the server:
    /// that has its own runtime.
    fn drop(&mut self) {
        self.shutdown.clone().notify();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            // sqlx opens and closes each SQLite connection on a thread of its own, which goes
            // on after the runtime has gone: one the server was opening as it stopped (the
            // tombstone pruning starts as it listens) can create the file again while the
            // directory is emptied, and the directory is then removed again once it is done.
            if dir.close().is_err() {
                for _ in 0..50 {
                    std::thread::sleep(Duration::from_millis(20));
                    if std::fs::remove_dir_all(&path).is_ok() || !path.exists() {
                        break;
                    }
                }
            }
        }
    }
}

/// Settings of a [`TestServer`] before it starts: from [`TestServer::builder`].
///
/// The builder starts from the defaults of [the module](self); [`config`](Self::config) edits
/// the server's [`Config`] after the other methods have set theirs, so it has the last word.
#[derive(Default)]
#[must_use = "a builder does nothing until started"]
pub struct TestServerBuilder {
    access_token_ttl: Option<Duration>,
    rate_limits: bool,
    configure: Vec<ConfigEdit>,
    fairings: Vec<Attach>,
}

/// A [`TestServerBuilder::config`] edit.
type ConfigEdit = Box<dyn FnOnce(&mut Config) + Send>;

/// A [`TestServerBuilder::attach`]: the fairing, attached once the app is built.
type Attach = Box<dyn FnOnce(Rocket<Build>) -> Rocket<Build> + Send>;

impl fmt::Debug for TestServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServerBuilder")
            .field("access_token_ttl", &self.access_token_ttl)
            .field("rate_limits", &self.rate_limits)
            .field("config_edits", &self.configure.len())
            .field("fairings", &self.fairings.len())
            .finish()
    }
}

impl TestServerBuilder {
    /// How long an access token lives (default 15 minutes). Any duration of a second or more:
    /// 1 s lets a test see a client refresh its session without waiting. (The server accepts a
    /// token a few seconds past its `exp`, for clock skew.)
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_token_ttl = Some(ttl);
        self
    }

    /// With `true`, the credential rate limits of a deployed server (10 attempts a minute per
    /// account, 60 per client address); with `false`, the default, none.
    pub fn rate_limits(mut self, on: bool) -> Self {
        self.rate_limits = on;
        self
    }

    /// Edits the server's settings before it starts: any field of [`Config`] (the refresh
    /// token's lifetime, rotation, the rate limits' values, ...). Called with the database
    /// already in the temporary directory; pointing `database_url` elsewhere (a PostgreSQL
    /// database of the test's own, say) is allowed. Several calls apply in order.
    ///
    /// The values are used as given: unlike the environment's, they are not checked against the
    /// bounds [`Config::validate`] enforces.
    pub fn config(mut self, edit: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.configure.push(Box::new(edit));
        self
    }

    /// Attaches a Rocket fairing to the server, after Tasklane's own: to count or record the
    /// requests it serves, for instance. The `rocket` crate is re-exported as
    /// [`tasklane_server::rocket`](crate::rocket), so the fairing is built on the server's own
    /// version.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use tasklane_server::rocket::fairing::AdHoc;
    /// use tasklane_server::testing::TestServer;
    ///
    /// # #[tokio::main]
    /// # async fn main() {
    /// let refreshes = Arc::new(AtomicUsize::new(0));
    /// let counter = refreshes.clone();
    /// let server = TestServer::builder()
    ///     .attach(AdHoc::on_response("count refreshes", move |req, res| {
    ///         if req.uri().path() == "/auth/refresh" && res.status().code == 200 {
    ///             counter.fetch_add(1, Ordering::SeqCst);
    ///         }
    ///         Box::pin(async {})
    ///     }))
    ///     .start()
    ///     .await;
    /// // ... the code under test ...
    /// assert_eq!(refreshes.load(Ordering::SeqCst), 0);
    /// # drop(server);
    /// # }
    /// ```
    pub fn attach(mut self, fairing: impl Fairing) -> Self {
        self.fairings.push(Box::new(move |rocket| rocket.attach(fairing)));
        self
    }

    /// Starts the server and returns once it accepts connections.
    ///
    /// # Panics
    ///
    /// If the server cannot start, with the reason (see [`try_start`](Self::try_start)).
    pub async fn start(self) -> TestServer {
        self.try_start().await.unwrap_or_else(|err| panic!("the Tasklane test server did not start: {err}"))
    }

    /// Starts the server, or says why it could not.
    pub async fn try_start(self) -> Result<TestServer, StartError> {
        let (dir, thread, listening) = self.launch()?;
        let started = listening.await;
        Self::started(dir, thread, started)
    }

    /// [`start`](Self::start) for a test that has no async runtime: blocks until the server
    /// accepts connections.
    ///
    /// # Panics
    ///
    /// If the server cannot start, with the reason.
    pub fn start_blocking(self) -> TestServer {
        self.try_start_blocking()
            .unwrap_or_else(|err| panic!("the Tasklane test server did not start: {err}"))
    }

    /// [`start_blocking`](Self::start_blocking), or why the server could not start.
    pub fn try_start_blocking(self) -> Result<TestServer, StartError> {
        let (dir, thread, listening) = self.launch()?;
        let started = futures::executor::block_on(listening);
        Self::started(dir, thread, started)
    }

    /// Starts the server's thread, which reports on the channel once the server listens (or
    /// why it could not start), and serves until shut down.
    fn launch(self) -> Result<(tempfile::TempDir, std::thread::JoinHandle<()>, Listening), StartError> {
        let dir = tempfile::Builder::new()
            .prefix("tasklane-test-")
            .tempdir()
            .map_err(|err| StartError::Internal(format!("cannot create a temporary directory: {err}")))?;
        let path = dir.path().to_owned();
        let (started, listening) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("tasklane-test-server".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("tasklane-test-server")
                    .enable_all()
                    .build();
                let runtime = match runtime {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = started.send(Err(StartError::Internal(format!("no Tokio runtime: {err}"))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let running = match self.build(&path).await {
                        Ok(rocket) => crate::spawn(rocket).await,
                        Err(err) => Err(err),
                    };
                    let running = match running {
                        Ok(running) => running,
                        Err(err) => {
                            let _ = started.send(Err(err));
                            return;
                        }
                    };
                    let _ = started.send(Ok((running.addr, running.shutdown)));
                    let _ = running.task.await;
                });
            })
            .map_err(|err| StartError::Internal(format!("cannot start the server's thread: {err}")))?;
        Ok((dir, thread, listening))
    }

    /// The server, from what its thread reported.
    fn started(
        dir: tempfile::TempDir,
        thread: std::thread::JoinHandle<()>,
        started: Result<Result<(SocketAddr, rocket::Shutdown), StartError>, oneshot::error::RecvError>,
    ) -> Result<TestServer, StartError> {
        match started {
            Ok(Ok((addr, shutdown))) => Ok(TestServer {
                addr,
                url: format!("http://{addr}"),
                shutdown,
                thread: Some(thread),
                dir: Some(dir),
            }),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            Err(_) => {
                let panicked = thread.join().err().map(|panic| panic_message(&*panic)).unwrap_or_default();
                Err(StartError::Internal(format!("the server's thread ended before it listened{panicked}")))
            }
        }
    }

    /// The app, on the settings of this builder, with its database in `dir`.
    async fn build(self, dir: &Path) -> Result<Rocket<Build>, StartError> {
        let mut config = Config::sqlite(dir.join("tasklane.db"));
        if let Some(ttl) = self.access_token_ttl {
            config.access_token_expire_minutes = ttl;
        }
        if !self.rate_limits {
            config.rate_limit_account_per_minute = 0;
            config.rate_limit_address_per_minute = 0;
        }
        for edit in self.configure {
            edit(&mut config);
        }
        let mut rocket = crate::build_with(config, figment()).await?;
        for attach in self.fairings {
            rocket = attach(rocket);
        }
        Ok(rocket)
    }
}

/// Rocket's settings for a test server: Tasklane's defaults (no client-IP header trusted),
/// none of the environment's, on 127.0.0.1 and a port the OS picks, silent, and quick to stop.
fn figment() -> Figment {
    crate::with_tasklane_defaults(Figment::new().select(rocket::Config::DEFAULT_PROFILE))
        .merge(("address", "127.0.0.1"))
        .merge(("port", 0))
        .merge(("log_level", "off"))
        .merge(("cli_colors", false))
        .merge(("shutdown.ctrlc", false))
        .merge(("shutdown.signals", Vec::<String>::new()))
        .merge(("shutdown.grace", 0))
        .merge(("shutdown.mercy", 0))
}

/// `: <message>` of a panic, when it has one.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .map_or_else(String::new, |message| format!(": {message}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rocket_settings_are_the_tests_own() {
        let config: rocket::Config = super::figment().extract().unwrap();
        assert_eq!(config.address, std::net::Ipv4Addr::LOCALHOST);
        assert_eq!(config.port, 0);
        assert!(config.ip_header.is_none(), "no client-IP header trusted, as deployed");
        assert!(!config.shutdown.ctrlc);
        #[cfg(unix)]
        assert!(config.shutdown.signals.is_empty());
        assert_eq!((config.shutdown.grace, config.shutdown.mercy), (0, 0));
        assert_eq!(config.log_level, rocket::config::LogLevel::Off);
    }
}
