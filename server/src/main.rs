//! `tasklane-server`: serve the API, or `tasklane-server migrate` to apply migrations and exit.

use std::process::ExitCode;

use tasklane_server::config::RETIRED_VARIABLES;
use tasklane_server::{store, Config};

/// mimalloc rather than glibc's malloc: a request allocates and frees many short-lived buffers
/// (headers, rows, the JSON body), which cost glibc's malloc a noticeable share of the CPU.
/// Built without transparent huge pages, so idle memory stays as small as glibc's (DESIGN.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: tasklane-server [migrate | healthcheck | --version]

  (no argument)  apply migrations, then serve the API
  migrate        apply migrations and exit
  healthcheck    exit 0 if the server answers /health where Rocket's settings put it
                 (ROCKET_ADDRESS, ROCKET_PORT or Rocket.toml; default 127.0.0.1:8000)
  --version      print the version

Settings come from the environment and a .env file: DATABASE_URL, REDIS_URL, SECRET_KEY,
ACCESS_TOKEN_EXPIRE_MINUTES, REFRESH_TOKEN_EXPIRE_MINUTES, REFRESH_TOKEN_ROTATION,
ROCKET_ADDRESS, ROCKET_PORT and more (see README.md).";

/// Reads `.env` and sets up logging before the async runtime starts: Rocket sizes that runtime
/// by `ROCKET_WORKERS`, which a `.env` file may set, and panics on 0.
fn main() -> ExitCode {
    // A missing .env is normal; a broken one is fatal. Only the working directory's:
    // `dotenvy::dotenv` would also take one from any parent directory.
    if let Err(e) = dotenvy::from_path(".env") {
        if !e.not_found() {
            return fail(format!(".env: {e}"));
        }
    }
    let telemetry = match tasklane_server::telemetry::init_logging() {
        Ok(telemetry) => telemetry,
        Err(e) => return fail(e),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match args.as_slice() {
        [] => None,
        [command] => Some(command.as_str()),
        [_, extra, ..] => {
            eprintln!("tasklane-server: unexpected argument {extra:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if matches!(command, Some("-h" | "--help" | "help")) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if matches!(command, Some("-V" | "--version" | "version")) {
        println!("tasklane-server {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Some(other) = command.filter(|c| !matches!(*c, "migrate" | "healthcheck")) {
        eprintln!("tasklane-server: unknown command {other:?}\n\n{USAGE}");
        return ExitCode::from(2);
    }
    // Rocket's settings are read before the runtime starts, so a bad one is one line here
    // rather than Rocket's own report or a panic (tokio refuses 0 threads of either kind).
    let rocket = match tasklane_server::rocket_figment().extract::<rocket::Config>() {
        Err(e) => return fail(e),
        Ok(rocket) if rocket.workers == 0 => return fail("ROCKET_WORKERS: must be at least 1"),
        Ok(rocket) if rocket.max_blocking == 0 => return fail("ROCKET_MAX_BLOCKING: must be at least 1"),
        Ok(rocket) => rocket,
    };
    let code = rocket::execute(run(command, rocket));
    // After the runtime is gone: the exporter's client blocks while it sends the last spans.
    telemetry.shutdown();
    code
}

/// `command` (none: serve) with Rocket's settings, `rocket`, already read and checked.
async fn run(command: Option<&str>, rocket: rocket::Config) -> ExitCode {
    if command == Some("healthcheck") {
        // Where the server listens, read as the server reads it (environment, Rocket.toml).
        let address = match rocket.address {
            std::net::IpAddr::V4(any) if any.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(any) if any.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            given => given,
        };
        let listener = std::net::SocketAddr::new(address, rocket.port);
        return match tasklane_server::ops::probe(listener, std::time::Duration::from_secs(3)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        };
    }
    for retired in RETIRED_VARIABLES.iter().filter(|var| std::env::var_os(var).is_some()) {
        tracing::warn!("{retired} is no longer used; it is ignored");
    }
    let lookup = |name: &str| std::env::var(name).ok();
    let read = if command.is_some() { Config::for_migrations(lookup) } else { Config::from_lookup(lookup) };
    let config = match read {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    if command.is_some() {
        let settings = store::Settings {
            url: config.database_url.clone(),
            max_connections: 1,
            startup_wait_seconds: config.database_startup_wait_seconds.as_secs(),
            shutdown_grace_seconds: 0,
        };
        return match store::migrate(&settings).await {
            Ok(()) => {
                println!("migrations applied to {}", config.database_url.redacted());
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("DATABASE_URL: {e}")),
        };
    }
    let figment = tasklane_server::rocket_figment();
    tracing::info!(database = %config.database_url.redacted(), redis = config.redis_url.is_some(), "starting");
    let app = match tasklane_server::build_with(config, figment).await {
        Ok(app) => app,
        Err(e) => return fail(e),
    };
    let app = app.attach(rocket::fairing::AdHoc::on_shutdown("log the shutdown", |rocket| {
        let shutdown = rocket.config().shutdown.clone();
        Box::pin(async move {
            tracing::info!(
                grace_s = shutdown.grace,
                mercy_s = shutdown.mercy,
                "shutting down: no new connections; requests in flight have the grace period to finish"
            );
        })
    }));
    match app.launch().await {
        Ok(_) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => match e.kind() {
            rocket::error::ErrorKind::Bind(bind) => {
                let at = std::net::SocketAddr::new(rocket.address, rocket.port);
                fail(format!("ROCKET_ADDRESS / ROCKET_PORT: cannot listen on {at}: {bind}"))
            }
            _ => fail(e),
        },
    }
}

/// Reports a fatal error on stderr, and in the log too when the log is JSON (so that a log
/// pipeline sees why the process stopped), then exits with status 1.
fn fail(err: impl std::fmt::Display) -> ExitCode {
    if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        tracing::error!(error = %err, "stopped");
    }
    eprintln!("tasklane-server: {err}");
    ExitCode::from(1)
}
