//! The Tasklane reference server: the HTTP API of `API.md` on Rocket.
//!
//! [`build`] is the one place the app is assembled: it opens the stores named by the
//! [`Config`], mounts each area's routes and their OpenAPI document, Swagger UI at `/docs`, the
//! problem-JSON catchers and the request fairing. `main.rs` only reads the config and launches.
//!
//! The request path reads straight down: route → guard (who is calling) → store trait → SQL.

pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod limits;
pub mod openapi;
pub mod ops;
pub mod responders;
pub mod routing;
pub mod store;
pub mod tasks;
pub mod telemetry;

use std::io::Write;
use std::path::Path;

use rocket::figment::Figment;
use rocket::response::Redirect;
use rocket::{get, Build, Rocket};
use rocket_okapi::okapi::openapi3::{Info, OpenApi};
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::swagger_ui::{make_swagger_ui, SwaggerUIConfig};

use crate::auth::jwt::JwtKeys;
use crate::auth::password::PasswordHasherPool;
pub use crate::config::Config;
use crate::config::{DatabaseUrl, SecretKey};
use crate::store::{StoreError, Stores};

/// What every handler shares: the stores, the signing keys, the hasher and the settings.
pub struct AppState {
    /// Users, tasks and refresh-token families.
    pub stores: Stores,
    /// JWT signing and verification.
    pub keys: JwtKeys,
    /// argon2id off the async workers.
    pub hasher: PasswordHasherPool,
    /// Attempts left on the credential routes.
    pub limits: limits::RateLimits,
    /// The settings the app was built with.
    pub config: Config,
}

/// Why the server could not start. Each message is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The database could not be opened or migrated.
    #[error("DATABASE_URL: cannot open the database: {0}")]
    Store(#[from] StoreError),
    /// Redis refused the setting (a password, a database index).
    #[error("REDIS_URL: {0}")]
    Redis(String),
    /// The key file could not be read or written.
    #[error("SECRET_KEY: {0}")]
    KeyFile(String),
    /// The app itself could not be assembled (a bug, not a setting).
    #[error("cannot start: {0}")]
    Internal(String),
}

/// Builds the app on the environment's Rocket settings (`ROCKET_ADDRESS`, `ROCKET_PORT`, ...).
pub async fn build(config: Config) -> Result<Rocket<Build>, StartError> {
    build_with(config, rocket_figment()).await
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

/// Builds the app on the given Rocket settings (tests pick a port or a log level this way).
pub async fn build_with(config: Config, figment: Figment) -> Result<Rocket<Build>, StartError> {
    let secret = resolve_secret(&config)?;
    let redis = match config.redis_url.as_deref() {
        Some(url) => {
            let pool = store::RedisPool::connect(url).map_err(|e| StartError::Redis(e.to_string()))?;
            pool.check().await.map_err(StartError::Redis)?;
            Some(pool)
        }
        None => None,
    };
    let stores = store::open(&config, redis).await?;
    let hasher = PasswordHasherPool::new(config.password_hash_concurrency);
    let limits = match &stores.redis {
        Some(pool) => limits::RateLimits::redis(config.rate_limits, pool.clone()),
        None => limits::RateLimits::local(config.rate_limits),
    };
    let keys = match &config.secret_key_accepted {
        Some(accepted) => JwtKeys::new(&secret).accepting(&accepted.0),
        None => JwtKeys::new(&secret),
    };
    let state = AppState { stores, keys, hasher, limits, config };
    telemetry::prometheus();

    let settings = OpenApiSettings::default();
    let areas = [
        ("/auth", auth::routes(&settings)),
        ("/tasks", tasks::routes(&settings)),
        ("/", ops::routes(&settings)),
    ];
    let mut rocket = rocket::custom(figment);
    let mut specs = Vec::new();
    for (base, (routes, spec)) in areas {
        rocket = rocket.mount(base, routes);
        specs.push((base, spec));
    }
    let mut spec: OpenApi = rocket_okapi::okapi::merge::marge_spec_list(&specs)
        .map_err(|e| StartError::Internal(format!("OpenAPI merge failed: {e}")))?;
    spec.info = Info {
        title: "Tasklane API".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        description: Some(
            "Tasks for many users, behind bearer tokens. Errors are `application/problem+json`. \
             Sign in with /auth/login (or /auth/register), then press Authorize and paste the \
             `access_token`."
                .to_owned(),
        ),
        ..Default::default()
    };
    let openapi_route =
        openapi::route(&spec).map_err(|e| StartError::Internal(format!("OpenAPI document: {e}")))?;
    // Swagger UI's own "/" redirects relative to `/docs`, which lands outside it; ours is absolute.
    let swagger: Vec<rocket::Route> =
        make_swagger_ui(&SwaggerUIConfig { url: "/openapi.json".to_owned(), ..Default::default() })
            .into()
            .into_iter()
            .filter(|route| route.uri.path() != "/")
            .collect();
    let cors = cors(&state.config)?;
    let rocket = match cors {
        Some(cors) => rocket.attach(cors),
        None => rocket,
    };
    Ok(rocket
        .mount("/", vec![openapi_route])
        .mount("/docs", swagger)
        .mount("/", rocket::routes![docs_index, telemetry::metrics_endpoint])
        .register("/", error::catchers())
        .attach(routing::RequestFairing)
        // `routing::finish` sets the security headers (for requests Rocket could not parse
        // too); an empty Shield keeps Rocket from attaching its default one, which would set
        // them first and differently.
        .attach(rocket::shield::Shield::new())
        .manage(state))
}

/// Where rocket_cors mounts the route it sends refused requests to (`GET /cors/<status>`).
const CORS_ERROR_ROUTES: &str = "/cors";

/// CORS for the configured browser origins: rocket_cors, shown only the requests that are its
/// business.
///
/// rocket_cors refuses (403) any request whose `Origin` is not listed, but a browser sends
/// `Origin` with a page's own POST, PUT, PATCH and DELETE too: with origins configured, Swagger
/// UI at `/docs` and every other same-origin page could no longer write. And it takes any
/// OPTIONS with an `Origin` for a preflight (400 without `Access-Control-Request-Method`). So
/// it sees the requests from a listed origin (preflights and actual requests) and nothing else;
/// other requests go on as if they carried no `Origin`: they get no CORS headers, and the
/// browser keeps a cross-origin page from reading the answer, as the protocol intends.
///
/// Around it: an `Origin` that does not parse is a 400 (sent to rocket_cors's error route, with
/// its detail); a request for that error route itself is sent to it as a 404, since the route
/// answers anyone who asks (`/cors/0` as a 500); and a preflight answered with no route found
/// loses the 405's `Allow` and problem content type that rocket_cors leaves on its 204.
struct Cors {
    inner: rocket_cors::Cors,
    /// The listed origins, serialized as rocket_cors serializes a request's; `None` for `*`.
    /// The one check of an origin: rocket_cors, seeing only listed ones, allows any.
    allowed: Option<std::collections::HashSet<String>>,
}

/// Whether rocket_cors handles the request (see [`Cors`]).
struct CorsHandled(bool);

impl Cors {
    /// Sends `req` to rocket_cors's error route for `status`.
    fn route_to_error(req: &mut rocket::Request<'_>, status: u16) {
        if let Ok(uri) = rocket::http::uri::Origin::parse_owned(format!("{CORS_ERROR_ROUTES}/{status}")) {
            req.set_method(rocket::http::Method::Get);
            req.set_uri(uri);
        }
    }

    /// Whether rocket_cors is to handle `req` (its `Origin` parsed as `origin`).
    fn handles(&self, req: &rocket::Request<'_>, origin: &rocket_cors::headers::Origin) -> bool {
        let listed = self.allowed.as_ref().is_none_or(|allowed| allowed.contains(&origin.to_string()));
        let not_a_preflight = req.method() == rocket::http::Method::Options
            && req.headers().get_one("Access-Control-Request-Method").is_none();
        listed && !not_a_preflight
    }
}

#[rocket::async_trait]
impl rocket::fairing::Fairing for Cors {
    fn info(&self) -> rocket::fairing::Info {
        use rocket::fairing::Kind;
        rocket::fairing::Info { name: "CORS", kind: Kind::Ignite | Kind::Request | Kind::Response }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> rocket::fairing::Result {
        self.inner.on_ignite(rocket).await
    }

    async fn on_request(&self, req: &mut rocket::Request<'_>, data: &mut rocket::Data<'_>) {
        use std::str::FromStr;
        let rest = req.uri().path().as_str().strip_prefix(CORS_ERROR_ROUTES);
        let handled = if rest.is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) {
            Self::route_to_error(req, 404);
            false
        } else if let Some(origin) = req.headers().get_one("Origin") {
            match rocket_cors::headers::Origin::from_str(origin) {
                Ok(origin) => self.handles(req, &origin),
                Err(_) => {
                    let detail = format!("the Origin header is not a web origin: {origin:?}");
                    error::ApiError::BadRequest(detail).stash(req);
                    Self::route_to_error(req, 400);
                    false
                }
            }
        } else {
            false
        };
        if handled {
            self.inner.on_request(req, data).await;
        }
        req.local_cache(|| CorsHandled(handled));
    }

    async fn on_response<'r>(&self, req: &'r rocket::Request<'_>, res: &mut rocket::Response<'r>) {
        if !req.local_cache(|| CorsHandled(false)).0 {
            return;
        }
        self.inner.on_response(req, res).await;
        if req.method() == rocket::http::Method::Options && res.status() == rocket::http::Status::NoContent {
            res.remove_header("Allow");
            res.remove_header("Content-Type");
        }
    }
}

/// CORS for the configured browser origins (rocket_cors): bearer tokens, no cookies, so no
/// credentials mode; the paging and request-id headers are exposed to scripts.
fn cors(config: &Config) -> Result<Option<Cors>, StartError> {
    use rocket_cors::{AllowedHeaders, AllowedOrigins, CorsOptions};
    use std::str::FromStr;
    if config.cors_allowed_origins.is_empty() {
        return Ok(None);
    }
    let invalid = |e: String| StartError::Config(config::ConfigError::new("CORS_ALLOWED_ORIGINS", e));
    let allowed = if config.cors_allowed_origins.iter().any(|o| o == "*") {
        None
    } else {
        let allowed = config
            .cors_allowed_origins
            .iter()
            .map(|o| rocket_cors::headers::Origin::from_str(o).map(|o| o.to_string()))
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        Some(allowed)
    };
    let options = CorsOptions {
        // Only listed origins reach rocket_cors (`Cors::handles`), so it need not check again.
        allowed_origins: AllowedOrigins::all(),
        allowed_methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .filter_map(|m| m.parse::<rocket::http::Method>().ok().map(Into::into))
            .collect(),
        allowed_headers: AllowedHeaders::some(&["Authorization", "Content-Type", "X-Request-Id"]),
        expose_headers: ["X-Total-Count", "Link", "Location", "X-Request-Id", "Retry-After"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        allow_credentials: false,
        // Browsers cap it anyway (Chromium at 2 h); an hour saves most preflights.
        max_age: Some(3600),
        fairing_route_base: CORS_ERROR_ROUTES.to_owned(),
        ..Default::default()
    };
    let inner = options.to_cors().map_err(|e| invalid(e.to_string()))?;
    Ok(Some(Cors { inner, allowed }))
}

#[get("/docs")]
fn docs_index() -> Redirect {
    Redirect::to("/docs/index.html")
}

/// A server launched by [`spawn`].
pub struct Running {
    /// Where it listens (a port of 0 in the settings is replaced by the one the OS picked).
    pub addr: std::net::SocketAddr,
    /// Ends it gracefully.
    pub shutdown: rocket::Shutdown,
    /// Resolves when it has stopped.
    pub task: tokio::task::JoinHandle<Result<Rocket<rocket::Ignite>, rocket::Error>>,
}

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

/// The JWT signing key: `SECRET_KEY`, or on the embedded default a key generated once and kept
/// beside the database (mode 0600), so tokens survive a restart.
fn resolve_secret(config: &Config) -> Result<Vec<u8>, StartError> {
    match (&config.secret_key, &config.database_url) {
        (SecretKey::Given(key), _) => Ok(key.clone()),
        (SecretKey::Generated, DatabaseUrl::Postgres(_)) => {
            Err(config::ConfigError::new("SECRET_KEY", "is required with PostgreSQL").into())
        }
        (SecretKey::Generated, url) => match url.sqlite_file() {
            Some(db) => key_file(&db.with_extension("secret")),
            None => {
                tracing::warn!("in-memory database and no SECRET_KEY: tokens end with the process");
                Ok(random_key())
            }
        },
    }
}

fn random_key() -> Vec<u8> {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes()
}

fn key_file(path: &Path) -> Result<Vec<u8>, StartError> {
    let fail = |what: &str, e: std::io::Error| StartError::KeyFile(format!("{what} {}: {e}", path.display()));
    // Of two instances starting at once, one writes and the other reads.
    match store::create_owner_only(path).map_err(StartError::KeyFile)? {
        Some(mut file) => {
            let key = random_key();
            file.write_all(&key).and_then(|()| file.sync_all()).map_err(|e| fail("cannot write", e))?;
            tracing::info!(path = %path.display(), "generated a new secret key");
            Ok(key)
        }
        None => {
            let key = std::fs::read(path).map_err(|e| fail("cannot read", e))?;
            let key: Vec<u8> = key.trim_ascii().to_vec();
            if key.len() < config::SECRET_KEY_MIN_BYTES {
                return Err(StartError::KeyFile(format!(
                    "{} holds fewer than {} bytes; delete it to generate a new key",
                    path.display(),
                    config::SECRET_KEY_MIN_BYTES
                )));
            }
            Ok(key)
        }
    }
}
