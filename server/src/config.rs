//! Settings from the environment (and a `.env` file, loaded by `main`).
//!
//! Every variable has a default that gives a working server on a fresh machine (SQLite, refresh
//! tokens in the database, a generated secret key). A bad value stops start-up with one line
//! naming the variable.

use std::num::NonZeroU32;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::limits::LimitSettings;

/// Where users and tasks live, from `DATABASE_URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite database file (or `sqlite::memory:`), created if missing.
    Sqlite(String),
    /// A PostgreSQL server.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses the URL forms Tasklane accepts: `sqlite:` paths, `postgres://`, `postgresql://`
    /// and the SQLAlchemy forms of the service Tasklane replaces (`postgresql+asyncpg://`,
    /// `sqlite+aiosqlite:///path`), so an old `.env` works unchanged.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("postgresql+asyncpg://") {
            return Ok(Self::Postgres(format!("postgresql://{rest}")));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        if let Some(rest) = url.strip_prefix("sqlite+aiosqlite:///") {
            // SQLAlchemy: three slashes then a relative path, four for an absolute one.
            return Ok(Self::Sqlite(format!("sqlite:{rest}")));
        }
        if url.starts_with("sqlite:") {
            return Ok(Self::Sqlite(url.to_owned()));
        }
        Err("expected a sqlite: path or a postgres:// / postgresql:// URL".to_owned())
    }

    /// `DATABASE_URL` as set (`None` when unset or empty: the embedded default,
    /// `sqlite:tasklane.db`).
    pub fn from_setting(value: Option<String>) -> Result<Self, ConfigError> {
        match value.filter(|v| !v.trim().is_empty()) {
            Some(url) => Self::parse(&url).map_err(|m| ConfigError::new("DATABASE_URL", m)),
            None => Ok(Self::Sqlite("sqlite:tasklane.db".to_owned())),
        }
    }

    /// The SQLite file, if this is a SQLite database kept in a file.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        let Self::Sqlite(url) = self else { return None };
        let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" || rest.contains("mode=memory") {
            None
        } else {
            Some(PathBuf::from(path))
        }
    }

    /// A form fit for logs: the password, if any, is masked, whether it is in the user info or
    /// a query parameter (`?password=`, which libpq and sqlx accept too). A URL with a `#` is
    /// not shown at all: a password must percent-encode it, so there it is most likely part of
    /// an unencoded password that the parser has split across host, path and fragment.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(url) => url.clone(),
            Self::Postgres(url) => match url::Url::parse(url) {
                Ok(parsed) if parsed.fragment().is_some() => {
                    format!("{}://(not shown: the URL has a '#')", parsed.scheme())
                }
                Ok(mut parsed) => {
                    if parsed.password().is_some() {
                        let _ = parsed.set_password(Some("***"));
                    }
                    if parsed.query_pairs().any(|(key, _)| key.contains("password")) {
                        let pairs: Vec<(String, String)> = parsed
                            .query_pairs()
                            .map(|(key, value)| {
                                let value = if key.contains("password") { "***".into() } else { value };
                                (key.into_owned(), value.into_owned())
                            })
                            .collect();
                        parsed.query_pairs_mut().clear().extend_pairs(pairs);
                    }
                    parsed.to_string()
                }
                Err(_) => "postgres://(unparsable)".to_owned(),
            },
        }
    }
}

/// The signing key of the JWTs.
#[derive(Clone)]
pub enum SecretKey {
    /// `SECRET_KEY` from the environment.
    Given(Vec<u8>),
    /// Not given: on SQLite, read or create the key file beside the database.
    Generated,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Given(_) => f.write_str("Given([redacted])"),
            Self::Generated => f.write_str("Generated"),
        }
    }
}

/// `SECRET_KEY_ACCEPTED`'s key; `Debug` does not show it.
#[derive(Clone)]
pub struct AcceptedKey(pub Vec<u8>);

impl std::fmt::Debug for AcceptedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcceptedKey([redacted])")
    }
}

/// How long the server waits at start for a database that does not accept connections yet
/// (a container started beside it, a host still booting), by default.
pub const DEFAULT_DATABASE_STARTUP_WAIT: Duration = Duration::from_secs(30);

/// `DATABASE_STARTUP_WAIT_SECONDS` (the server and `tasklane-server migrate` read it alike).
pub fn startup_wait(value: Option<String>) -> Result<Duration, ConfigError> {
    let Some(raw) = value.filter(|v| !v.trim().is_empty()) else { return Ok(DEFAULT_DATABASE_STARTUP_WAIT) };
    match raw.trim().parse::<u64>() {
        Ok(seconds) if seconds <= 3600 => Ok(Duration::from_secs(seconds)),
        _ => Err(ConfigError::new(
            "DATABASE_STARTUP_WAIT_SECONDS",
            format!("expected whole seconds from 0 to 3600, got {raw:?}"),
        )),
    }
}

/// The shortest `SECRET_KEY` accepted: 32 bytes, the HMAC-SHA256 block-size guidance.
pub const SECRET_KEY_MIN_BYTES: usize = 32;

/// Server settings. Tests build it directly; `from_env` reads the documented variables.
#[derive(Clone, Debug)]
pub struct Config {
    /// `DATABASE_URL`: default `sqlite:tasklane.db` in the working directory.
    pub database_url: DatabaseUrl,
    /// `REDIS_URL`: when set, refresh-token families live in Redis.
    pub redis_url: Option<String>,
    /// `SECRET_KEY`.
    pub secret_key: SecretKey,
    /// `SECRET_KEY_ACCEPTED`: a second key whose tokens are accepted too, never used to sign
    /// (for rotating `SECRET_KEY` without signing everyone out).
    pub secret_key_accepted: Option<AcceptedKey>,
    /// `ACCESS_TOKEN_EXPIRE_MINUTES` (default 15).
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_EXPIRE_MINUTES` (default 10080, 7 days).
    pub refresh_token_ttl: Duration,
    /// `REFRESH_TOKEN_ROTATION` (default true).
    pub refresh_token_rotation: bool,
    /// `DATABASE_STARTUP_WAIT_SECONDS` (default 30): how long the server waits at start for a
    /// PostgreSQL that does not accept connections yet; 0 fails at once.
    pub database_startup_wait: Duration,
    /// `DATABASE_MAX_CONNECTIONS`: the SQL pool's size.
    pub database_max_connections: u32,
    /// `DATABASE_READ_PIPELINES`: on PostgreSQL, the shared connections task reads go over,
    /// besides the pool (default 2; 0: reads use the pool).
    pub database_read_pipelines: usize,
    /// `PASSWORD_HASH_CONCURRENCY`: argon2 hashes running at once (default: the CPU count).
    pub password_hash_concurrency: usize,
    /// `RATE_LIMIT_ACCOUNT_PER_MINUTE` / `RATE_LIMIT_ADDRESS_PER_MINUTE` (0 turns one off).
    pub rate_limits: LimitSettings,
    /// `CORS_ALLOWED_ORIGINS`: browser origins allowed to call the API (`*` for any); none by
    /// default, so only same-origin pages (such as `/docs`) can.
    pub cors_allowed_origins: Vec<String>,
}

/// A setting that cannot be used; its message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self { var, message: message.into() }
    }
}

impl Config {
    /// The embedded default, with the SQLite file at `path`: what a fresh machine runs.
    pub fn sqlite(path: impl AsRef<Path>) -> Self {
        Self {
            database_url: DatabaseUrl::Sqlite(format!("sqlite:{}", path.as_ref().display())),
            redis_url: None,
            secret_key: SecretKey::Generated,
            secret_key_accepted: None,
            database_startup_wait: DEFAULT_DATABASE_STARTUP_WAIT,
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(10080 * 60),
            refresh_token_rotation: true,
            database_max_connections: default_pool_size(),
            database_read_pipelines: DEFAULT_READ_PIPELINES,
            password_hash_concurrency: default_hash_concurrency(),
            rate_limits: LimitSettings::default(),
            cors_allowed_origins: Vec::new(),
        }
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let database_url = DatabaseUrl::from_setting(get("DATABASE_URL"))?;
        let redis_url = match get("REDIS_URL") {
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => Some(url),
            Some(_) => return Err(ConfigError::new("REDIS_URL", "expected a redis:// or rediss:// URL")),
            None => None,
        };
        let secret_key = match get("SECRET_KEY") {
            Some(key) if key.len() >= SECRET_KEY_MIN_BYTES => SecretKey::Given(key.into_bytes()),
            Some(key) => {
                return Err(ConfigError::new(
                    "SECRET_KEY",
                    format!(
                        "must be at least {SECRET_KEY_MIN_BYTES} bytes (got {}); generate one with `openssl rand -hex 32`",
                        key.len()
                    ),
                ))
            }
            None if matches!(database_url, DatabaseUrl::Postgres(_)) => {
                return Err(ConfigError::new(
                    "SECRET_KEY",
                    format!(
                        "is required with PostgreSQL (at least {SECRET_KEY_MIN_BYTES} bytes), so that every \
                         instance signs with the same key; generate one with `openssl rand -hex 32`"
                    ),
                ))
            }
            None => SecretKey::Generated,
        };
        let secret_key_accepted = match get("SECRET_KEY_ACCEPTED") {
            Some(key) if key.len() >= SECRET_KEY_MIN_BYTES => Some(AcceptedKey(key.into_bytes())),
            Some(key) => {
                return Err(ConfigError::new(
                    "SECRET_KEY_ACCEPTED",
                    format!(
                        "must be at least {SECRET_KEY_MIN_BYTES} bytes, like SECRET_KEY (got {})",
                        key.len()
                    ),
                ))
            }
            None => None,
        };
        let minutes = |var: &'static str, default: u64| -> Result<Duration, ConfigError> {
            let Some(raw) = get(var) else { return Ok(Duration::from_secs(default * 60)) };
            match raw.trim().parse::<u64>() {
                // An upper bound keeps `exp` arithmetic far from overflow (100 years).
                Ok(m) if (1..=52_560_000).contains(&m) => Ok(Duration::from_secs(m * 60)),
                _ => {
                    Err(ConfigError::new(var, format!("expected a whole number of minutes ≥ 1, got {raw:?}")))
                }
            }
        };
        let access_token_ttl = minutes("ACCESS_TOKEN_EXPIRE_MINUTES", 15)?;
        let refresh_token_ttl = minutes("REFRESH_TOKEN_EXPIRE_MINUTES", 10080)?;
        let refresh_token_rotation = match get("REFRESH_TOKEN_ROTATION") {
            None => true,
            Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(ConfigError::new(
                        "REFRESH_TOKEN_ROTATION",
                        format!("expected true or false, got {raw:?}"),
                    ))
                }
            },
        };
        let whole = |var: &'static str,
                     default: usize,
                     range: RangeInclusive<usize>|
         -> Result<usize, ConfigError> {
            let Some(raw) = get(var) else { return Ok(default) };
            match raw.trim().parse::<usize>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(ConfigError::new(
                    var,
                    format!("expected a whole number from {} to {}, got {raw:?}", range.start(), range.end()),
                )),
            }
        };
        let database_startup_wait = startup_wait(get("DATABASE_STARTUP_WAIT_SECONDS"))?;
        let database_max_connections =
            whole("DATABASE_MAX_CONNECTIONS", default_pool_size() as usize, 1..=10_000)? as u32;
        // 0 turns pipelined reads off.
        let database_read_pipelines = whole("DATABASE_READ_PIPELINES", DEFAULT_READ_PIPELINES, 0..=64)?;
        let password_hash_concurrency =
            whole("PASSWORD_HASH_CONCURRENCY", default_hash_concurrency(), 1..=10_000)?;
        let per_minute =
            |var: &'static str, default: Option<NonZeroU32>| -> Result<Option<NonZeroU32>, ConfigError> {
                let Some(raw) = get(var) else { return Ok(default) };
                match raw.trim().parse::<u32>() {
                    Ok(n) if n <= 100_000 => Ok(NonZeroU32::new(n)),
                    _ => Err(ConfigError::new(
                        var,
                        format!("expected attempts per minute, 0 (off) to 100000, got {raw:?}"),
                    )),
                }
            };
        let defaults = LimitSettings::default();
        let rate_limits = LimitSettings {
            per_account: per_minute("RATE_LIMIT_ACCOUNT_PER_MINUTE", defaults.per_account)?,
            per_address: per_minute("RATE_LIMIT_ADDRESS_PER_MINUTE", defaults.per_address)?,
        };
        let cors_allowed_origins: Vec<String> = get("CORS_ALLOWED_ORIGINS")
            .map(|raw| {
                raw.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for origin in &cors_allowed_origins {
            let valid = origin == "*"
                || url::Url::parse(origin)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.path() == "/");
            if !valid {
                return Err(ConfigError::new(
                    "CORS_ALLOWED_ORIGINS",
                    format!("expected * or comma-separated origins such as https://app.example.com, got {origin:?}"),
                ));
            }
        }
        Ok(Self {
            database_url,
            redis_url,
            secret_key,
            secret_key_accepted,
            database_startup_wait,
            access_token_ttl,
            refresh_token_ttl,
            refresh_token_rotation,
            database_max_connections,
            database_read_pipelines,
            password_hash_concurrency,
            rate_limits,
            cors_allowed_origins,
        })
    }
}

/// Shared read connections on PostgreSQL: two by default. On the list benchmark they served
/// 19–52 % more list requests per second than the pool in the harness runs (+54 % in the
/// latest, 19,205 against 12,437), with less CPU per request. What kept them off until
/// now, a p99 several-fold under a login storm (all statements on a connection wait while the
/// thread driving it is preempted), is bounded by sending reads stuck for 20 ms to the pool as
/// well (`store::pipeline`); figures in bench/RESULTS.md. `0` keeps reads on the pool.
const DEFAULT_READ_PIPELINES: usize = 2;

/// Enough connections to keep every core busy while others wait on I/O, few enough that several
/// instances stay well under PostgreSQL's default `max_connections` of 100.
fn default_pool_size() -> u32 {
    16
}

/// argon2 is CPU-bound: more hashes at once than cores only adds latency to each of them.
fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_embedded_server() {
        let c = from(&[]).unwrap();
        assert_eq!(c.database_url, DatabaseUrl::Sqlite("sqlite:tasklane.db".into()));
        assert_eq!(c.database_url.sqlite_file(), Some(PathBuf::from("tasklane.db")));
        assert!(matches!(c.secret_key, SecretKey::Generated));
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.refresh_token_ttl, Duration::from_secs(604_800));
        assert!(c.refresh_token_rotation);
        assert!(c.redis_url.is_none());
        // An empty value (as in a copied .env.example) is unset, not a too-short key.
        assert!(matches!(from(&[("SECRET_KEY", "")]).unwrap().secret_key, SecretKey::Generated));
    }

    #[test]
    fn old_service_urls_are_accepted() {
        let c = from(&[
            ("DATABASE_URL", "postgresql+asyncpg://u:p@db:5432/tasks"),
            ("SECRET_KEY", &"k".repeat(32)),
        ])
        .unwrap();
        assert_eq!(c.database_url, DatabaseUrl::Postgres("postgresql://u:p@db:5432/tasks".into()));
        assert_eq!(c.database_url.redacted(), "postgresql://u:***@db:5432/tasks");
        let redacted = |url: &str| DatabaseUrl::parse(url).unwrap().redacted();
        assert_eq!(
            redacted("postgres://db/tasks?user=u&password=S3cret&sslmode=require"),
            "postgres://db/tasks?user=u&password=***&sslmode=require"
        );
        assert_eq!(redacted("postgres://u:p@ss/w#rd@db/tasks"), "postgres://(not shown: the URL has a '#')");
        let c = from(&[("DATABASE_URL", "sqlite+aiosqlite:///./tasks.db")]).unwrap();
        assert_eq!(c.database_url.sqlite_file(), Some(PathBuf::from("./tasks.db")));
        assert_eq!(DatabaseUrl::Sqlite("sqlite::memory:".into()).sqlite_file(), None);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
            (&[("DATABASE_URL", "postgres://x/y")], "SECRET_KEY"),
            (&[("DATABASE_URL", "postgres://x/y"), ("SECRET_KEY", "short")], "SECRET_KEY"),
            (&[("SECRET_KEY_ACCEPTED", "short")], "SECRET_KEY_ACCEPTED"),
            (&[("DATABASE_STARTUP_WAIT_SECONDS", "soon")], "DATABASE_STARTUP_WAIT_SECONDS"),
            (&[("ACCESS_TOKEN_EXPIRE_MINUTES", "ten")], "ACCESS_TOKEN_EXPIRE_MINUTES"),
            (&[("REFRESH_TOKEN_EXPIRE_MINUTES", "0")], "REFRESH_TOKEN_EXPIRE_MINUTES"),
            (&[("REFRESH_TOKEN_ROTATION", "maybe")], "REFRESH_TOKEN_ROTATION"),
            (&[("REDIS_URL", "localhost:6379")], "REDIS_URL"),
            (&[("RATE_LIMIT_ACCOUNT_PER_MINUTE", "-1")], "RATE_LIMIT_ACCOUNT_PER_MINUTE"),
            (&[("DATABASE_READ_PIPELINES", "65")], "DATABASE_READ_PIPELINES"),
            (&[("DATABASE_READ_PIPELINES", "two")], "DATABASE_READ_PIPELINES"),
            (&[("CORS_ALLOWED_ORIGINS", "app.example.com")], "CORS_ALLOWED_ORIGINS"),
            (&[("CORS_ALLOWED_ORIGINS", "https://a.example/path")], "CORS_ALLOWED_ORIGINS"),
        ];
        for (vars, var) in cases {
            let err = from(vars).unwrap_err();
            assert_eq!(err.var, *var, "{vars:?}");
            assert!(err.to_string().starts_with(var), "{err}");
        }
        assert!(!from(&[("REFRESH_TOKEN_ROTATION", "false")]).unwrap().refresh_token_rotation);
        assert_eq!(from(&[]).unwrap().database_read_pipelines, 2);
        assert_eq!(from(&[("DATABASE_READ_PIPELINES", "0")]).unwrap().database_read_pipelines, 0);
        assert_eq!(from(&[("DATABASE_READ_PIPELINES", "2")]).unwrap().database_read_pipelines, 2);
        assert_eq!(from(&[("DATABASE_READ_PIPELINES", " 4 ")]).unwrap().database_read_pipelines, 4);
        let off = from(&[("RATE_LIMIT_ADDRESS_PER_MINUTE", "0")]).unwrap().rate_limits;
        assert_eq!(off.per_address, None);
        assert_eq!(off.per_account, NonZeroU32::new(10));
        let cors = from(&[("CORS_ALLOWED_ORIGINS", "https://a.example, http://localhost:3000/")]).unwrap();
        assert_eq!(cors.cors_allowed_origins, vec!["https://a.example", "http://localhost:3000"]);
    }
}
