//! What both SQL backends share: the statements' text, the row types, and the migration run.
//!
//! Both databases accept `$N` placeholders, `RETURNING` and scalar subqueries, and the schema
//! differs only in column types (`migrations/<backend>`), so each statement is written once.
//! Runtime `query_as` is used rather than the `query!` macros, which would tie the build to one
//! database. Values are always bound, never formatted into SQL.

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolOptions;
use sqlx::Connection;
use tasklane::types::{Task, TaskSort, User};

use super::{StoreError, TaskFilter, UserCredentials, BACKEND_TIMEOUT};

pub const INSERT_USER: &str =
    "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id";
pub const DELETE_USER: &str = "DELETE FROM users WHERE id = $1";
pub const FIND_CREDENTIALS: &str =
    "SELECT id, username, created_at, password_hash FROM users WHERE lower(username) = lower($1)";
pub const GET_USER: &str = "SELECT id, username, created_at FROM users WHERE id = $1";

/// A task's columns, in the order [`TaskRow`] reads them.
macro_rules! task_columns {
    () => {
        "id, user_id, title, description, status, created_at, updated_at"
    };
}

pub const INSERT_TASK: &str = concat!(
    "INSERT INTO tasks (user_id, title, description, status, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $5) RETURNING ",
    task_columns!()
);
pub const GET_TASK: &str = concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = $1 AND user_id = $2");
/// Binds: id, user, title (null keeps it), whether the description changes, the description,
/// status (null keeps it), the time.
pub const UPDATE_TASK: &str = concat!(
    "UPDATE tasks SET
        title = COALESCE($3, title),
        description = CASE WHEN $4 THEN $5 ELSE description END,
        status = COALESCE($6, status),
        updated_at = $7
     WHERE id = $1 AND user_id = $2
     RETURNING ",
    task_columns!()
);
pub const DELETE_TASK: &str = "DELETE FROM tasks WHERE id = $1 AND user_id = $2 RETURNING id";
pub const PING: &str = "SELECT 1";

/// A listing statement and its count, for [`ListQuery::binds`]: the user, then the status if
/// the filter has one, then limit and offset (the count takes only the first ones).
pub struct ListQuery {
    /// The page, with the number of matching tasks in every row's `total`.
    pub page: String,
    /// The number of matching tasks, for a page past the end (which has no rows to carry it).
    pub count: String,
}

impl ListQuery {
    /// The statements for `filter`. Listing is one statement: the total rides along with the
    /// page as an uncorrelated scalar subquery, which both databases evaluate once from the
    /// `(user_id, ...)` index (DESIGN.md says why not two statements, or `COUNT(*) OVER ()`).
    pub fn new(filter: &TaskFilter) -> Self {
        let mut conditions = "user_id = $1".to_owned();
        let mut next = 2;
        if filter.status.is_some() {
            conditions.push_str(&format!(" AND status = ${next}"));
            next += 1;
        }
        let order = match filter.sort {
            TaskSort::CreatedAt => "created_at ASC, id ASC",
            TaskSort::CreatedAtDesc => "created_at DESC, id DESC",
            TaskSort::UpdatedAt => "updated_at ASC, id ASC",
            TaskSort::UpdatedAtDesc => "updated_at DESC, id DESC",
            TaskSort::Title => "title ASC, id ASC",
            TaskSort::TitleDesc => "title DESC, id DESC",
        };
        let count = format!("SELECT COUNT(*) FROM tasks WHERE {conditions}");
        let page = format!(
            "SELECT {}, ({count}) AS total FROM tasks WHERE {conditions} ORDER BY {order} LIMIT ${} OFFSET ${}",
            task_columns!(),
            next,
            next + 1
        );
        Self { page, count }
    }
}

/// The offset as the databases take it: validated upstream, saturating keeps an absurd one an
/// empty page rather than an error.
pub fn offset(filter: &TaskFilter) -> i64 {
    i64::try_from(filter.offset).unwrap_or(i64::MAX)
}

/// A task as stored.
#[derive(sqlx::FromRow)]
pub struct TaskRow {
    id: i64,
    user_id: i64,
    title: String,
    description: Option<String>,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<TaskRow> for Task {
    type Error = StoreError;

    fn try_from(row: TaskRow) -> Result<Self, StoreError> {
        Ok(Task {
            id: row.id,
            title: row.title,
            description: row.description,
            status: row.status.parse().map_err(|e| StoreError::Internal(format!("task {}: {e}", row.id)))?,
            user_id: row.user_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A listed task and the number of tasks matching the listing.
#[derive(sqlx::FromRow)]
pub struct ListRow {
    #[sqlx(flatten)]
    pub task: TaskRow,
    pub total: i64,
}

/// A page of list rows as tasks and their total; `count` is asked only for a page past the
/// end, which has no row to carry the total.
pub async fn page(
    rows: Vec<ListRow>,
    filter: &TaskFilter,
    count: impl std::future::Future<Output = Result<i64, StoreError>>,
) -> Result<(Vec<Task>, u64), StoreError> {
    let total = match rows.first() {
        Some(row) => row.total,
        None if filter.offset == 0 => 0,
        None => count.await?,
    };
    let tasks = rows.into_iter().map(|row| Task::try_from(row.task)).collect::<Result<_, _>>()?;
    Ok((tasks, total.max(0) as u64))
}

/// A user as stored.
#[derive(sqlx::FromRow)]
pub struct UserRow {
    id: i64,
    username: String,
    created_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User { id: row.id, username: row.username, created_at: row.created_at }
    }
}

/// A user with the password hash.
#[derive(sqlx::FromRow)]
pub struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

impl From<CredentialsRow> for UserCredentials {
    fn from(row: CredentialsRow) -> Self {
        UserCredentials { user: row.user.into(), password_hash: row.password_hash }
    }
}

/// The user of a freshly inserted row.
pub fn new_user(id: i64, username: &str, now: DateTime<Utc>) -> User {
    User { id, username: username.to_owned(), created_at: now }
}

// Refresh-token families (without Redis). A family's row is taken before its tokens', the
// order a revocation's cascading DELETE takes them in, so the two cannot deadlock.

/// Expired families of this user go as a new one starts, so the tables stay bounded by live
/// sessions without a sweeper.
pub const DELETE_EXPIRED_FAMILIES: &str =
    "DELETE FROM refresh_families WHERE user_id = $1 AND expires_at <= $2";
pub const INSERT_FAMILY: &str = "INSERT INTO refresh_families (id, user_id, expires_at) VALUES ($1, $2, $3)";
pub const INSERT_TOKEN: &str = "INSERT INTO refresh_tokens (jti, family_id, expires_at) VALUES ($1, $2, $3)";
/// Renews a live family, and locks its row: `RETURNING` says whether it was live.
pub const RENEW_FAMILY: &str =
    "UPDATE refresh_families SET expires_at = $2 WHERE id = $1 AND expires_at > $3 RETURNING id";
/// The atomic step of a rotation: of two racing transactions only one gets the row.
pub const CONSUME_TOKEN: &str = "DELETE FROM refresh_tokens WHERE jti = $1 AND family_id = $2 RETURNING jti";
pub const TOKEN_IS_ACTIVE: &str =
    "SELECT t.jti FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id
     WHERE t.jti = $1 AND f.id = $2 AND f.expires_at > $3";
pub const REVOKE_FAMILY: &str = "DELETE FROM refresh_families WHERE id = $1";

/// Applies `migrator` on a one-connection sqlx pool of its own, closed when done (the shape
/// `Migrator::run` takes inside a `Send` future).
///
/// Migrations applied by a newer release are left alone, so that during a rolling deploy, or
/// after a rollback, the release before can start on the schema the newer one left: every
/// migration keeps the schema usable by the release before it (DESIGN.md).
pub async fn migrate<DB>(
    options: <DB::Connection as Connection>::Options,
    mut migrator: Migrator,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let pool = PoolOptions::<DB>::new()
        .max_connections(1)
        .acquire_timeout(BACKEND_TIMEOUT)
        .connect_with(options)
        .await?;
    // A database migrated before has the table; a new one does not, and has none applied.
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&pool).await
        {
            Ok(applied) => applied,
            Err(sqlx::Error::Database(_)) => Vec::new(),
            Err(err) => return Err(err.into()),
        };
    let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
    let newer: Vec<i64> = applied.iter().copied().filter(|v| !known.contains(v)).collect();
    if !newer.is_empty() {
        tracing::warn!(
            ?newer,
            "the database has migrations this release does not know (a newer release applied them); \
             starting on it all the same"
        );
    }
    let pending = known.iter().filter(|v| !applied.contains(v)).count();
    migrator.set_ignore_missing(true);
    let migrated = migrator.run(&pool).await;
    pool.close().await;
    migrated.map_err(|e| StoreError::Internal(e.to_string()))?;
    // Replicas starting together each count the same pending ones; one of them applied them.
    tracing::info!(pending_at_start = pending, latest = known.iter().max(), "database schema up to date");
    Ok(())
}
