//! Storage: the traits handlers see, and their implementations.
//!
//! - [`Store`] (users and tasks) has one SQL implementation compiled for PostgreSQL and for
//!   SQLite (`sql.rs`); the URL scheme of `DATABASE_URL` picks one.
//! - [`RefreshStore`] (refresh-token families) lives in Redis when `REDIS_URL` is set
//!   (`redis.rs`), else in the SQL database (`sql.rs`).
//!
//! Stores hold no HTTP; routes hold no SQL.

mod pipeline;
mod pool;
mod redis;
mod sql;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rocket::async_trait;
use tasklane::types::{NewTask, Task, TaskSort, TaskStatus, TaskUpdate, User};

use crate::config::{Config, DatabaseUrl};

pub use self::redis::{RedisPool, RedisRefreshStore};
pub use self::sql::{wait_for_postgres, PgStore, SqliteStore};

/// How long a request waits for a database connection or a Redis reply before it is answered
/// with 503. Long enough to ride out a pool that is briefly saturated, short enough that a dead
/// backend fails fast instead of holding the client's connection.
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(3);

/// A storage failure, as handlers need to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend does not answer (connection refused, pool timeout, restart): 503.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule was broken: 409.
    #[error("conflict")]
    Conflict,
    /// A row the statement refers to is gone: the user of a token that is still valid was
    /// deleted (a database restored from a backup, say). 401, as for `/auth/me`.
    #[error("the user of this token no longer exists")]
    UserGone,
    /// Anything else: 500, logged.
    #[error("storage error: {0}")]
    Internal(String),
}

/// A user and the PHC string of their password, for login.
#[derive(Clone, Debug)]
pub struct UserCredentials {
    /// The user.
    pub user: User,
    /// argon2id PHC string.
    pub password_hash: String,
}

/// One page of a user's tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only this status.
    pub status: Option<TaskStatus>,
    /// Page size.
    pub limit: u32,
    /// Tasks skipped.
    pub offset: u64,
    /// Order.
    pub sort: TaskSort,
}

/// Users and tasks. Every task method takes the caller's id: another user's task is not found.
#[async_trait]
pub trait Store: Send + Sync {
    /// Creates a user; [`StoreError::Conflict`] if the name is taken (ignoring case).
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError>;
    /// Deletes a user and everything they own (undoes a registration whose session failed).
    async fn delete_user(&self, id: i64) -> Result<(), StoreError>;
    /// The user with this name (ignoring case), with the password hash.
    async fn find_credentials(&self, username: &str) -> Result<Option<UserCredentials>, StoreError>;
    /// The user with this id.
    async fn get_user(&self, id: i64) -> Result<Option<User>, StoreError>;
    /// Creates a task from a validated [`NewTask`].
    async fn create_task(&self, user_id: i64, task: &NewTask, now: DateTime<Utc>)
        -> Result<Task, StoreError>;
    /// A page of tasks, and the number of tasks matching the filter.
    async fn list_tasks(&self, user_id: i64, filter: &TaskFilter) -> Result<(Vec<Task>, u64), StoreError>;
    /// One task.
    async fn get_task(&self, user_id: i64, id: i64) -> Result<Option<Task>, StoreError>;
    /// Applies a validated, non-empty [`TaskUpdate`]; `None` if there is no such task.
    async fn update_task(
        &self,
        user_id: i64,
        id: i64,
        update: &TaskUpdate,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError>;
    /// Deletes a task; false if there was none.
    async fn delete_task(&self, user_id: i64, id: i64) -> Result<bool, StoreError>;
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Connections open to the database (on SQLite, the writing one included), and how many of
    /// them are idle.
    fn pool_status(&self) -> (u32, usize);
    /// Pipelined read connections open (PostgreSQL only; see `pipeline.rs`).
    fn read_pipelines_open(&self) -> usize {
        0
    }
}

/// What became of a refresh token presented for rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The old token is consumed and the new one stored in the same family.
    Rotated,
    /// The token was already consumed (or never stored): a replay. The family must be revoked.
    Reused,
    /// The family is revoked or expired.
    FamilyRevoked,
}

/// Refresh-token families: each login starts a family; each refresh consumes one token of it and
/// issues the next. Consumption is atomic, so two racing refreshes cannot both win.
#[async_trait]
pub trait RefreshStore: Send + Sync {
    /// Starts a family with its first token.
    async fn start_family(
        &self,
        family: &str,
        user_id: i64,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Consumes `old_jti` and stores `new_jti` in the same family, extending the family to
    /// `expires_at`.
    async fn rotate(
        &self,
        family: &str,
        old_jti: &str,
        new_jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Rotation, StoreError>;
    /// Whether `jti` is a live token of a live family (refresh without rotation).
    async fn is_active(&self, family: &str, jti: &str) -> Result<bool, StoreError>;
    /// Revokes the family: none of its tokens refreshes again.
    async fn revoke_family(&self, family: &str) -> Result<(), StoreError>;
    /// Whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// `database` or `redis`, for `/ready`.
    fn kind(&self) -> &'static str;
}

/// The stores the app runs on.
#[derive(Clone)]
pub struct Stores {
    /// Users and tasks.
    pub store: Arc<dyn Store>,
    /// Refresh-token families.
    pub refresh: Arc<dyn RefreshStore>,
    /// The Redis pool, when `REDIS_URL` is set (shared with the rate limits).
    pub redis: Option<RedisPool>,
}

/// Opens the database named by the config, applies its migrations, and picks the refresh store.
pub async fn open(config: &Config, redis: Option<RedisPool>) -> Result<Stores, StoreError> {
    let max = config.database_max_connections;
    if let DatabaseUrl::Postgres(url) = &config.database_url {
        wait_for_postgres(url, config.database_startup_wait).await?;
    }
    let (store, sql_refresh): (Arc<dyn Store>, Arc<dyn RefreshStore>) = match &config.database_url {
        DatabaseUrl::Postgres(url) => {
            let store = Arc::new(PgStore::connect(url, max, config.database_read_pipelines).await?);
            (store.clone(), store)
        }
        DatabaseUrl::Sqlite(url) => {
            let store = Arc::new(SqliteStore::connect(url, max).await?);
            (store.clone(), store)
        }
    };
    let refresh = match &redis {
        Some(pool) => Arc::new(RedisRefreshStore::new(pool.clone())) as Arc<dyn RefreshStore>,
        None => sql_refresh,
    };
    Ok(Stores { store, refresh, redis })
}

/// Creates `path`, and its directory, readable and writable by its owner only (mode 0600):
/// the file, when this call made it; `None` when it was there already (of two instances
/// starting at once, one creates it and the other finds it). An error is worded with the path.
pub(crate) fn create_owner_only(path: &std::path::Path) -> Result<Option<std::fs::File>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the directory of", e))?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(fail("cannot create", e)),
    }
}

/// Applies the migrations of this database and returns, waiting up to `startup_wait` for a
/// PostgreSQL that does not accept connections yet.
pub async fn migrate(
    database_url: &DatabaseUrl,
    startup_wait: std::time::Duration,
) -> Result<(), StoreError> {
    match database_url {
        DatabaseUrl::Postgres(url) => {
            wait_for_postgres(url, startup_wait).await?;
            PgStore::connect(url, 1, 0).await.map(drop)
        }
        DatabaseUrl::Sqlite(url) => SqliteStore::connect(url, 1).await.map(drop),
    }
}

/// The admin URL of the test PostgreSQL; `None` (with a notice) outside CI without one.
#[cfg(test)]
pub(crate) fn test_postgres_url() -> Option<String> {
    match std::env::var("TASKLANE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but TASKLANE_TEST_DATABASE_URL is not (.ci/run starts PostgreSQL)")
        }
        _ => {
            eprintln!("*** TASKLANE_TEST_DATABASE_URL unset: PostgreSQL store test NOT RUN ***");
            None
        }
    }
}

/// Truncates to whole microseconds, the precision both databases keep, so a value read back
/// equals the value written.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
