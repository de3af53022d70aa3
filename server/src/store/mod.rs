//! Storage: the traits handlers see, and one implementation per backend.
//!
//! - [`Store`] (users and tasks) and [`SessionStore`] (refresh-token families) are implemented
//!   by [`Postgres`] (`postgres.rs`) and [`Sqlite`] (`sqlite.rs`), which share their SQL text
//!   and row types (`sql.rs`); the scheme of `DATABASE_URL` picks one.
//! - With `REDIS_URL` set, sessions live in Redis instead ([`RedisSessions`], `redis.rs`).
//! - [`SqlDatabase`] and [`RedisPool`] are what rocket_db_pools opens at ignite and closes at
//!   shutdown.
//! - Each store is wrapped in [`Traced`] (`traced.rs`), a span per call; each Redis call has
//!   one too ([`RedisPool::run`]).
//!
//! Stores hold no HTTP; routes hold no SQL.

mod error;
pub mod pool;
mod postgres;
mod redis;
mod sql;
mod sqlite;
mod traced;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rocket::async_trait;
use rocket::figment::Figment;
use serde::{Deserialize, Serialize};
use tasklane::types::{Change, NewTask, Priority, Task, TaskSort, TaskStatus, TaskUpdate, User};

use crate::config::DatabaseUrl;

pub use self::error::StoreError;
pub use self::postgres::Postgres;
pub use self::redis::{RedisIdempotency, RedisPool, RedisSessions};
pub use self::sqlite::Sqlite;
pub use self::traced::Traced;

/// How long any call to a backend may take (waiting for a connection included) before the
/// request is answered with 503: long enough to ride out a pool that is briefly saturated,
/// short enough that a dead backend fails fast instead of holding the client's connection.
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(3);

/// A backend call that ran past [`BACKEND_TIMEOUT`].
#[derive(Debug)]
pub struct TimedOut;

/// The one timeout of every backend call: `work` within [`BACKEND_TIMEOUT`]. A database that
/// stops answering without closing its connections (a partition, a frozen host) then costs a
/// 503, not a request held until TCP gives up some 15 minutes later.
pub async fn bounded<T, E: From<TimedOut>>(work: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    tokio::time::timeout(BACKEND_TIMEOUT, work).await.unwrap_or_else(|_| Err(TimedOut.into()))
}

/// A user and the PHC string of their password, for login.
#[derive(Clone, Debug)]
pub struct UserCredentials {
    /// The user.
    pub user: User,
    /// argon2id PHC string.
    pub password_hash: String,
}

/// Which of a user's tasks to list, and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only this status.
    pub status: Option<TaskStatus>,
    /// Only this priority.
    pub priority: Option<Priority>,
    /// Only tasks carrying each of these labels (compared ignoring case).
    pub labels: Vec<String>,
    /// Only tasks due before this time.
    pub due_before: Option<DateTime<Utc>>,
    /// Only tasks due at or after this time.
    pub due_after: Option<DateTime<Utc>>,
    /// Only tasks whose title or description contains this, ignoring case.
    pub q: Option<String>,
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
    /// Applies a validated, non-empty [`TaskUpdate`], only if the task's version is one of
    /// `versions` when they are given (in the same statement, so no other write comes between
    /// the check and the change); `None` if no task was changed.
    async fn update_task(
        &self,
        user_id: i64,
        id: i64,
        update: &TaskUpdate,
        now: DateTime<Utc>,
        versions: Option<&[i64]>,
    ) -> Result<Option<Task>, StoreError>;
    /// Deletes a task, only if its version is one of `versions` when they are given; false if
    /// none was deleted.
    async fn delete_task(&self, user_id: i64, id: i64, versions: Option<&[i64]>) -> Result<bool, StoreError>;
    /// The user's changes after change `since` (every current task, without it), at most
    /// `limit`, in the order they were made.
    async fn changes(&self, user_id: i64, since: Option<i64>, limit: u32) -> Result<Feed, StoreError>;
    /// The number of the user's last change: a live event stream starts after it.
    async fn last_change(&self, user_id: i64) -> Result<i64, StoreError>;
    /// Forgets up to `batch` tombstones of tasks deleted before `before`, raising each user's
    /// feed horizon past them; how many were forgotten.
    async fn prune_tombstones(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, StoreError>;
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Connections open to the database, and how many of them are idle.
    fn pool_status(&self) -> (usize, usize);
    /// Closes the connections; later calls fail as unavailable.
    fn close(&self);
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

/// Refresh-token families: each login starts a family; each refresh consumes one token of it
/// and issues the next. Consumption is atomic, so two racing refreshes cannot both win.
#[async_trait]
pub trait SessionStore: Send + Sync {
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
}

/// What [`Store::changes`] read.
#[derive(Clone, Debug, Default)]
pub struct Feed {
    /// The changes, each with its number, in order.
    pub changes: Vec<(i64, Change)>,
    /// For a full sync (no `since`): the user's change counter, read before the tasks.
    pub counter: Option<i64>,
    /// The highest change whose tombstone was forgotten: a `since` below it may have missed a
    /// deletion. Read after the changes, so a pruning that overtook the read shows.
    pub horizon: i64,
}

/// What [`IdempotencyStore::claim`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's now: process it, then complete or release the key.
    New,
    /// A request with the key is being processed (its body's fingerprint, if known).
    InFlight { fingerprint: Option<String> },
    /// A request with the key was answered.
    Done(Replay),
}

/// The answer kept for an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    /// The first request's body, as a canonical JSON text.
    pub fingerprint: String,
    /// Its status.
    pub status: u16,
    /// Its `Location`.
    pub location: String,
    /// Its body.
    pub body: String,
}

/// Idempotency keys of `POST /tasks/`, per user: in Redis when it is configured, else in the
/// SQL database.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for a request whose body is `fingerprint`, in flight for at most `in_flight`
    /// (a request that never completes, as in a crash, frees its key then); or what is there.
    async fn claim(
        &self,
        user_id: i64,
        key: &str,
        fingerprint: &str,
        in_flight: Duration,
    ) -> Result<Claim, StoreError>;
    /// Keeps the answer to `key` for `keep`.
    async fn complete(
        &self,
        user_id: i64,
        key: &str,
        answer: &Replay,
        keep: Duration,
    ) -> Result<(), StoreError>;
    /// Frees a key whose request failed, so it can be used again.
    async fn release(&self, user_id: i64, key: &str) -> Result<(), StoreError>;
}

/// A SQL database holds users and tasks and, without Redis, the sessions and idempotency keys.
pub trait Database: Store + SessionStore + IdempotencyStore {}

impl<T: Store + SessionStore + IdempotencyStore> Database for T {}

/// How to open the SQL database: rocket_db_pools hands these to [`SqlDatabase`] from Rocket's
/// settings (`databases.sql`), where the app puts them from its own [`crate::Config`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    /// `DATABASE_URL`.
    pub url: DatabaseUrl,
    /// The pool's size.
    pub max_connections: u32,
    /// How long [`migrate`] waits for a PostgreSQL that does not accept connections yet.
    pub startup_wait_seconds: u64,
    /// Rocket's shutdown grace period (see [`close_after`]).
    #[serde(default)]
    pub shutdown_grace_seconds: u64,
}

/// Closes a pool once Rocket's shutdown grace period is over. Rocket runs its shutdown fairings
/// (rocket_db_pools' close among them) as soon as shutdown starts, while the requests in flight
/// still have the grace period to finish, and they may yet need a connection.
pub fn close_after(grace_seconds: u64, close: impl FnOnce() + Send + 'static) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(grace_seconds)).await;
        close();
    });
}

/// The open SQL database (PostgreSQL or SQLite, by the URL's scheme), as rocket_db_pools holds
/// it: opened at ignite, closed at shutdown. Its connection pools live in the backend.
pub struct SqlDatabase {
    database: Arc<dyn Database>,
    shutdown_grace_seconds: u64,
}

impl SqlDatabase {
    /// The database, as the stores the app's handlers use.
    pub fn handle(&self) -> Arc<dyn Database> {
        self.database.clone()
    }
}

#[async_trait]
impl rocket_db_pools::Pool for SqlDatabase {
    type Connection = Arc<dyn Database>;
    type Error = StoreError;

    async fn init(figment: &Figment) -> Result<Self, StoreError> {
        let settings: Settings = figment.extract().map_err(|e| StoreError::Internal(e.to_string()))?;
        let database: Arc<dyn Database> = match &settings.url {
            DatabaseUrl::Postgres(url) => {
                Arc::new(Traced::new(Postgres::open(url, settings.max_connections)?, "postgresql"))
            }
            DatabaseUrl::Sqlite(url) => {
                Arc::new(Traced::new(Sqlite::open(url, settings.max_connections).await?, "sqlite"))
            }
        };
        Ok(Self { database, shutdown_grace_seconds: settings.shutdown_grace_seconds })
    }

    async fn get(&self) -> Result<Arc<dyn Database>, StoreError> {
        Ok(self.handle())
    }

    async fn close(&self) {
        let database = self.handle();
        close_after(self.shutdown_grace_seconds, move || database.close());
    }
}

/// Applies the migrations of this database, waiting up to the settings' start-up wait for a
/// PostgreSQL that does not accept connections yet. A SQLite file is created (with its
/// directory) if missing, readable by its owner only.
pub async fn migrate(settings: &Settings) -> Result<(), StoreError> {
    let wait = Duration::from_secs(settings.startup_wait_seconds);
    match &settings.url {
        DatabaseUrl::Postgres(url) => postgres::migrate(url, wait).await,
        DatabaseUrl::Sqlite(url) => sqlite::migrate(url).await,
    }
}

/// Creates `path`, and its directory, readable and writable by its owner only (mode 0600):
/// the file, when this call made it; `None` when it was there already (of two instances
/// starting at once, one creates it and the other finds it). An error is worded with the path.
pub fn create_owner_only(path: &std::path::Path) -> Result<Option<std::fs::File>, String> {
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

/// The current time truncated to whole microseconds, the precision both databases keep, so a
/// value read back equals the value written.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
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
