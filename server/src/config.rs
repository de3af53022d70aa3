//! Settings from the environment (and a `.env` file, loaded by `main`), read with Figment.
//!
//! Every field of [`Config`] is read from the environment variable of the same name in capitals
//! (`database_url` from `DATABASE_URL`). The defaults, in [`Config::default`], give a working
//! server on a fresh machine: SQLite, refresh tokens in the database, a generated secret key.
//! A bad value stops start-up with one line naming the variable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use serde::{Deserialize, Serialize};
use tasklane::types::Secret;

/// The shortest `SECRET_KEY` accepted: 32 bytes, the HMAC-SHA256 block-size guidance.
pub const SECRET_KEY_MIN_BYTES: usize = 32;

/// Variables an older release read that this one ignores (with a warning, so a `.env` that
/// still sets them keeps working).
pub const RETIRED_VARIABLES: &[&str] = &["DATABASE_READ_PIPELINES"];

/// Server settings. Tests build it from [`Config::sqlite`]; `from_env` reads the variables.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where users and tasks live.
    pub database_url: DatabaseUrl,
    /// When set, refresh-token families and rate limits live in Redis.
    pub redis_url: Option<String>,
    /// The JWT signing key; generated into a file beside a SQLite database when unset.
    pub secret_key: Option<Secret>,
    /// A second key whose tokens are accepted too, never used to sign (for rotating the key).
    pub secret_key_accepted: Option<Secret>,
    /// Access-token lifetime (whole minutes in the environment).
    #[serde(with = "minutes")]
    pub access_token_expire_minutes: Duration,
    /// Refresh-token lifetime, renewed by each refresh (whole minutes in the environment).
    #[serde(with = "minutes")]
    pub refresh_token_expire_minutes: Duration,
    /// `false` gives the old service's reusable refresh tokens.
    pub refresh_token_rotation: bool,
    /// How long start-up waits for a PostgreSQL that does not accept connections yet.
    #[serde(with = "seconds")]
    pub database_startup_wait_seconds: Duration,
    /// The SQL pool's size.
    pub database_max_connections: u32,
    /// argon2 hashes running at once.
    pub password_hash_concurrency: usize,
    /// Credential attempts per account per minute; 0 turns the limit off.
    pub rate_limit_account_per_minute: u32,
    /// Credential attempts per client address per minute; 0 turns the limit off.
    pub rate_limit_address_per_minute: u32,
    /// Browser origins allowed to call the API: comma-separated, or `*`; empty for none.
    pub cors_allowed_origins: String,
    /// How long the answer to an `Idempotency-Key` is kept (whole hours in the environment).
    #[serde(with = "hours")]
    pub idempotency_key_ttl_hours: Duration,
    /// How long deleted tasks are remembered for the change feed (whole days in the environment).
    #[serde(with = "days")]
    pub tombstone_retention_days: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: DatabaseUrl::Sqlite("sqlite:tasklane.db".to_owned()),
            redis_url: None,
            secret_key: None,
            secret_key_accepted: None,
            access_token_expire_minutes: Duration::from_secs(15 * 60),
            refresh_token_expire_minutes: Duration::from_secs(10_080 * 60),
            refresh_token_rotation: true,
            database_startup_wait_seconds: Duration::from_secs(30),
            // Enough connections to keep every core busy while others wait on I/O, few enough
            // that several instances stay well under PostgreSQL's default 100.
            database_max_connections: 16,
            // argon2 is CPU-bound: more hashes at once than cores only adds latency to each.
            password_hash_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            // 10 a minute per account: a person retyping a password never meets it, guessing
            // is held to 10 a minute. 60 per address: room for an office behind one NAT.
            rate_limit_account_per_minute: 10,
            rate_limit_address_per_minute: 60,
            cors_allowed_origins: String::new(),
            idempotency_key_ttl_hours: Duration::from_secs(24 * 3600),
            tombstone_retention_days: Duration::from_secs(30 * 86_400),
        }
    }
}

/// A setting that cannot be used; its message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(var: &str, message: impl Into<String>) -> Self {
        Self { var: var.to_owned(), message: message.into() }
    }
}

impl Config {
    /// The embedded default, with the SQLite file at `path`: what a fresh machine runs.
    pub fn sqlite(path: impl AsRef<Path>) -> Self {
        Self {
            database_url: DatabaseUrl::Sqlite(format!("sqlite:{}", path.as_ref().display())),
            ..Self::default()
        }
    }

    /// The names of the variables read, one per field.
    pub fn variables() -> Vec<String> {
        let fields = serde_json::to_value(Self::default()).unwrap_or_default();
        fields.as_object().into_iter().flatten().map(|(name, _)| name.to_ascii_uppercase()).collect()
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests), then checks
    /// them with [`Config::validate`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let config = Self::extract(lookup)?;
        config.validate()?;
        Ok(config)
    }

    /// What `tasklane-server migrate` needs: `DATABASE_URL` and `DATABASE_STARTUP_WAIT_SECONDS`,
    /// and nothing else (no `SECRET_KEY`), so a deploy step can run it with the database's
    /// credentials alone.
    pub fn for_migrations(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let config = Self::extract(|name| {
            matches!(name, "DATABASE_URL" | "DATABASE_STARTUP_WAIT_SECONDS").then(|| lookup(name)).flatten()
        })?;
        config.check_values()?;
        Ok(config)
    }

    /// The defaults, then every variable that is set and not empty (a copied `.env.example`
    /// leaves some empty); no rules checked yet.
    fn extract(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        // Values are kept as the strings they are (Figment's own `Env` would read `123` as a
        // number and `[x]` as an array, which a key or a password may look like); the lossy
        // extraction turns `15` and `yes` into numbers and booleans where fields want them.
        // Surrounding spaces are dropped, but not from keys: a key is used exactly as given.
        let given: BTreeMap<String, String> = Self::variables()
            .into_iter()
            .filter_map(|var| {
                let value = lookup(&var).filter(|v| !v.trim().is_empty())?;
                let value = if var.starts_with("SECRET_KEY") { value } else { value.trim().to_owned() };
                Some((var.to_ascii_lowercase(), value))
            })
            .collect();
        let figment = Figment::from(Serialized::defaults(Self::default())).merge(Serialized::globals(given));
        figment.extract_lossy().map_err(|err| {
            let var = err.path.last().map_or_else(|| "configuration".to_owned(), |k| k.to_ascii_uppercase());
            ConfigError { var, message: err.kind.to_string() }
        })
    }

    /// Every rule of the settings: the bounds of each value, and the rules across fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_values()?;
        if self.secret_key.is_none() && matches!(self.database_url, DatabaseUrl::Postgres(_)) {
            return Err(ConfigError::new(
                "SECRET_KEY",
                format!(
                    "is required with PostgreSQL (at least {SECRET_KEY_MIN_BYTES} bytes), so that every \
                     instance signs with the same key; generate one with `openssl rand -hex 32`"
                ),
            ));
        }
        Ok(())
    }

    /// The bounds and shapes of single values.
    fn check_values(&self) -> Result<(), ConfigError> {
        let key_rule = |var: &str, key: &Option<Secret>| {
            match key {
            Some(key) if key.expose().len() < SECRET_KEY_MIN_BYTES => Err(ConfigError::new(
                var,
                format!(
                    "must be at least {SECRET_KEY_MIN_BYTES} bytes (got {}); generate one with `openssl rand -hex 32`",
                    key.expose().len()
                ),
            )),
            _ => Ok(()),
        }
        };
        key_rule("SECRET_KEY", &self.secret_key)?;
        key_rule("SECRET_KEY_ACCEPTED", &self.secret_key_accepted)?;
        if let Some(url) = &self.redis_url {
            if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                return Err(ConfigError::new("REDIS_URL", "expected a redis:// or rediss:// URL"));
            }
        }
        // The upper bounds keep `exp` arithmetic far from overflow (100 years).
        let ranges: [(&str, u64, u64, u64); 9] = [
            ("IDEMPOTENCY_KEY_TTL_HOURS", self.idempotency_key_ttl_hours.as_secs() / 3600, 1, 8760),
            ("TOMBSTONE_RETENTION_DAYS", self.tombstone_retention_days.as_secs() / 86_400, 1, 3650),
            ("ACCESS_TOKEN_EXPIRE_MINUTES", self.access_token_expire_minutes.as_secs() / 60, 1, 52_560_000),
            ("REFRESH_TOKEN_EXPIRE_MINUTES", self.refresh_token_expire_minutes.as_secs() / 60, 1, 52_560_000),
            ("DATABASE_STARTUP_WAIT_SECONDS", self.database_startup_wait_seconds.as_secs(), 0, 3600),
            ("DATABASE_MAX_CONNECTIONS", self.database_max_connections.into(), 1, 10_000),
            ("PASSWORD_HASH_CONCURRENCY", self.password_hash_concurrency as u64, 1, 10_000),
            ("RATE_LIMIT_ACCOUNT_PER_MINUTE", self.rate_limit_account_per_minute.into(), 0, 100_000),
            ("RATE_LIMIT_ADDRESS_PER_MINUTE", self.rate_limit_address_per_minute.into(), 0, 100_000),
        ];
        for (var, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::new(
                    var,
                    format!("expected a whole number from {min} to {max}, got {value}"),
                ));
            }
        }
        for origin in self.cors_origins() {
            let valid = origin == "*"
                || url::Url::parse(&origin)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.path() == "/");
            if !valid {
                return Err(ConfigError::new(
                    "CORS_ALLOWED_ORIGINS",
                    format!("expected * or comma-separated origins such as https://app.example.com, got {origin:?}"),
                ));
            }
        }
        Ok(())
    }

    /// The allowed CORS origins, without trailing slashes.
    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_allowed_origins
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect()
    }
}

/// A duration given in whole minutes.
mod minutes {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs() / 60)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        // Bounded well before `exp` arithmetic could overflow (`validate` allows 100 years).
        let minutes = u64::deserialize(deserializer)?.min(u64::MAX / 120);
        Ok(Duration::from_secs(minutes * 60))
    }
}

/// A duration given in whole hours.
mod hours {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs() / 3600)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(deserializer)?.min(u64::MAX / 7200) * 3600))
    }
}

/// A duration given in whole days.
mod days {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs() / 86_400)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(deserializer)?.min(u64::MAX / 172_800) * 86_400))
    }
}

/// A duration given in whole seconds.
mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

/// Where users and tasks live, from `DATABASE_URL`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DatabaseUrl {
    /// A SQLite database file (or `sqlite::memory:`), created if missing.
    Sqlite(String),
    /// A PostgreSQL server.
    Postgres(String),
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;

    /// The URL forms Tasklane accepts: `sqlite:` paths, `postgres://`, `postgresql://` and the
    /// SQLAlchemy forms of the service Tasklane replaces (`postgresql+asyncpg://`,
    /// `sqlite+aiosqlite:///path`), so an old `.env` works unchanged.
    fn try_from(url: String) -> Result<Self, String> {
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
}

impl From<DatabaseUrl> for String {
    fn from(url: DatabaseUrl) -> String {
        match url {
            DatabaseUrl::Sqlite(url) | DatabaseUrl::Postgres(url) => url,
        }
    }
}

impl DatabaseUrl {
    /// The URL as sqlx reads it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Sqlite(url) | Self::Postgres(url) => url,
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
        let Self::Postgres(url) = self else { return self.as_str().to_owned() };
        match url::Url::parse(url) {
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
        }
    }
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
        assert!(c.secret_key.is_none());
        assert_eq!(c.access_token_expire_minutes, Duration::from_secs(900));
        assert_eq!(c.refresh_token_expire_minutes, Duration::from_secs(604_800));
        assert!(c.refresh_token_rotation);
        assert!(c.redis_url.is_none());
        // An empty value (as in a copied .env.example) is unset, not a too-short key.
        assert!(from(&[("SECRET_KEY", "")]).unwrap().secret_key.is_none());
        assert!(Config::variables().contains(&"CORS_ALLOWED_ORIGINS".to_owned()));
    }

    #[test]
    fn values_are_read_as_given() {
        let key = "1".repeat(40);
        let c = from(&[
            ("SECRET_KEY", key.as_str()),
            ("ACCESS_TOKEN_EXPIRE_MINUTES", " 5 "),
            ("REFRESH_TOKEN_ROTATION", "off"),
            ("RATE_LIMIT_ADDRESS_PER_MINUTE", "0"),
        ])
        .unwrap();
        // A key of digits stays the text it is, not a number.
        assert_eq!(c.secret_key.as_ref().unwrap().expose(), key);
        assert_eq!(c.access_token_expire_minutes, Duration::from_secs(300));
        assert!(!c.refresh_token_rotation);
        assert_eq!(c.rate_limit_address_per_minute, 0);
        assert_eq!(c.rate_limit_account_per_minute, 10);
        assert!(!from(&[("REFRESH_TOKEN_ROTATION", "false")]).unwrap().refresh_token_rotation);
        assert!(from(&[("REFRESH_TOKEN_ROTATION", "yes")]).unwrap().refresh_token_rotation);
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
        let redacted = |url: &str| DatabaseUrl::try_from(url.to_owned()).unwrap().redacted();
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
            (&[("DATABASE_STARTUP_WAIT_SECONDS", "3601")], "DATABASE_STARTUP_WAIT_SECONDS"),
            (&[("ACCESS_TOKEN_EXPIRE_MINUTES", "ten")], "ACCESS_TOKEN_EXPIRE_MINUTES"),
            (&[("REFRESH_TOKEN_EXPIRE_MINUTES", "0")], "REFRESH_TOKEN_EXPIRE_MINUTES"),
            (&[("REFRESH_TOKEN_ROTATION", "maybe")], "REFRESH_TOKEN_ROTATION"),
            (&[("REDIS_URL", "localhost:6379")], "REDIS_URL"),
            (&[("RATE_LIMIT_ACCOUNT_PER_MINUTE", "-1")], "RATE_LIMIT_ACCOUNT_PER_MINUTE"),
            (&[("DATABASE_MAX_CONNECTIONS", "0")], "DATABASE_MAX_CONNECTIONS"),
            (&[("CORS_ALLOWED_ORIGINS", "app.example.com")], "CORS_ALLOWED_ORIGINS"),
            (&[("CORS_ALLOWED_ORIGINS", "https://a.example/path")], "CORS_ALLOWED_ORIGINS"),
        ];
        for (vars, var) in cases {
            let err = from(vars).unwrap_err();
            assert_eq!(err.var, *var, "{vars:?}: {err}");
            assert!(err.to_string().starts_with(var), "{err}");
        }
        let cors = from(&[("CORS_ALLOWED_ORIGINS", "https://a.example, http://localhost:3000/")]).unwrap();
        assert_eq!(cors.cors_origins(), vec!["https://a.example", "http://localhost:3000"]);
    }
}
