//! Rocket's settings, as Tasklane reads them, and launching the app in a program of one's own.

use rocket::figment::Figment;
use rocket::{Build, Rocket};

use crate::store::StoreError;

/// Why the server could not start. Each message is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The database could not be opened or migrated.
    #[error("DATABASE_URL: cannot open the database: {0}")]
    Store(#[from] StoreError),
    /// Redis refused the setting (a password, a database index).
    #[error("REDIS_URL: {0}")]
    Redis(String),
    /// The key file could not be read or written.
    #[error("SECRET_KEY: {0}")]
    KeyFile(String),
    /// The app itself could not be assembled or launched (a bug, not a setting).
    #[error("cannot start: {0}")]
    Internal(String),
}

/// Seconds that requests in flight at shutdown (SIGTERM, SIGINT) may take to finish, while new
/// connections are refused. Rocket's default is 2; a login waiting behind a queue of argon2
/// hashes under load can need more. With [`SHUTDOWN_MERCY_SECS`] and Rocket's final second the
/// process is gone within 8 s, inside the 10 s `docker stop` allows before SIGKILL.
pub const SHUTDOWN_GRACE_SECS: u32 = 5;

/// Seconds after the grace period for connections to close before they are cut (Rocket: 3).
pub const SHUTDOWN_MERCY_SECS: u32 = 2;

/// Rocket's settings from `Rocket.toml` and `ROCKET_*` (as `rocket::Config::figment()` reads
/// them), with Tasklane's defaults beneath them: the shutdown periods above, and no client-IP
/// header trusted (Rocket would trust `X-Real-IP`, which any client can forge to dodge the
/// per-address rate limit) unless `ROCKET_IP_HEADER` names the one a trusted proxy sets.
pub fn rocket_figment() -> Figment {
    use rocket::figment::providers::{Env, Format, Toml};
    use rocket::figment::Profile;
    let operators = Figment::new()
        .merge(Toml::file(Env::var_or("ROCKET_CONFIG", "Rocket.toml")).nested())
        .merge(Env::prefixed("ROCKET_").ignore(&["PROFILE"]).global())
        .select(Profile::from_env_or("ROCKET_PROFILE", rocket::Config::DEFAULT_PROFILE));
    with_tasklane_defaults(operators)
}

/// The operator's Rocket settings (`operators`, with its profile selected) over Tasklane's
/// defaults: see [`rocket_figment`].
pub fn with_tasklane_defaults(operators: Figment) -> Figment {
    use rocket::figment::providers::Serialized;
    // Rocket's default trusts `X-Real-IP`, which any client can send, and the per-address
    // limits key on what it gives: off unless the operator names a header (in the environment
    // or Rocket.toml).
    let names_ip_header = operators.contains("ip_header");
    // In the default profile, beneath whatever profile the operator's file or environment
    // uses (a bare tuple would go to the global profile, above their `[default]` and
    // `[release]` tables).
    let figment = Figment::from(rocket::Config::default())
        .merge(Serialized::default("shutdown.grace", SHUTDOWN_GRACE_SECS))
        .merge(Serialized::default("shutdown.mercy", SHUTDOWN_MERCY_SECS))
        .merge(operators);
    if names_ip_header {
        figment
    } else {
        figment.merge(("ip_header", false))
    }
}

/// A server launched by [`spawn`].
pub struct Running {
    /// Where it listens (a port of 0 in the settings is replaced by the one the OS picked).
    pub addr: std::net::SocketAddr,
    /// Ends it gracefully.
    pub shutdown: rocket::Shutdown,
    /// Resolves when it has stopped.
    pub task: LaunchTask,
}

/// The task of a server launched by [`spawn`]: Rocket's `launch`, resolving when it has stopped.
pub type LaunchTask = tokio::task::JoinHandle<Result<Rocket<rocket::Ignite>, rocket::Error>>;

impl Running {
    /// `http://<addr>`, the base URL for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Launches `rocket` on the current Tokio runtime and returns once it listens: for tests,
/// benchmarks and programs that embed the server.
pub async fn spawn(rocket: Rocket<Build>) -> Result<Running, StartError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let rocket = rocket.attach(rocket::fairing::AdHoc::on_liftoff("report the address", move |rocket| {
        let sender = tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let ready = sender.map(|tx| {
            let config = rocket.config();
            (tx, std::net::SocketAddr::new(config.address, config.port), rocket.shutdown())
        });
        Box::pin(async move {
            if let Some((tx, addr, shutdown)) = ready {
                let _ = tx.send((addr, shutdown));
            }
        })
    }));
    let task = tokio::spawn(rocket.launch());
    match rx.await {
        Ok((addr, shutdown)) => Ok(Running { addr, shutdown, task }),
        Err(_) => match task.await {
            Ok(Err(e)) => Err(StartError::Internal(format!("launch failed: {e}"))),
            other => Err(StartError::Internal(format!(
                "the server stopped before it listened: {:?}",
                other.map(drop)
            ))),
        },
    }
}
