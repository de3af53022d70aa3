//! The SQL store, one body of code for PostgreSQL and SQLite.
//!
//! Both databases accept `$N` placeholders, `RETURNING`, scalar subqueries and the same schema
//! (up to column types, in `migrations/<backend>`), so the queries are written once. Runtime
//! `query_as` is used rather than the `query!` macros, which would tie the build to one database.
//! The trait impls are stamped out for each backend by `impl_sql_store!`, since a generic impl
//! over `sqlx::Database` needs a page of trait bounds per query.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rocket::async_trait;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, PgConnection, Postgres, Sqlite, SqliteConnection};
use tasklane::types::{NewTask, Task, TaskSort, TaskUpdate, User};

use super::pipeline::Pipelines;
use super::pool::{Conn, SqlPool};
use super::{RefreshStore, Rotation, Store, StoreError, TaskFilter, UserCredentials, BACKEND_TIMEOUT};

/// The users-and-tasks store on one SQL database, `C` being its connection type.
#[derive(Clone, Debug)]
pub struct SqlStore<C: Connection> {
    pool: SqlPool<C>,
    /// Users whose first page of tasks came back full (see [`ListStatement`]). Only a hint for
    /// choosing a statement, so each instance keeps its own: a stale or missing entry costs a
    /// statement, never a wrong answer.
    full_first_pages: Arc<quick_cache::sync::Cache<i64, ()>>,
    /// On SQLite, the one connection that writes (see [`SqlStore::writer`]); `None` on
    /// PostgreSQL, where writers use `pool` like readers.
    writes: Option<SqlPool<C>>,
    /// On PostgreSQL, the shared connections that task reads go over (see `pipeline.rs`);
    /// `None` on SQLite, or when the database link asks for TLS.
    reads: Option<Arc<Pipelines>>,
    /// On an in-memory SQLite database, a connection held for the store's life: the database
    /// lives only while one is open, and the pools close theirs when idle.
    keep_alive: Option<Arc<std::sync::Mutex<C>>>,
}

/// The store on PostgreSQL.
pub type PgStore = SqlStore<PgConnection>;
/// The store on SQLite.
pub type SqliteStore = SqlStore<SqliteConnection>;

impl PgStore {
    /// Connects, and applies `migrations/postgres`. Task reads go over `read_pipelines` shared
    /// connections when the link allows (see `pipeline.rs`), else over the pool.
    pub async fn connect(url: &str, max_connections: u32, read_pipelines: usize) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Internal(e.to_string()))?;
        migrate::<Postgres>(options.clone(), sqlx::migrate!("../migrations/postgres")).await?;
        let reads = Pipelines::new(url, read_pipelines, (max_connections as usize / 2).max(1));
        match &reads {
            Some(_) => tracing::info!(connections = read_pipelines, "task reads are pipelined"),
            None if read_pipelines > 0 => tracing::info!(
                "task reads use the pool: pipelined reads need an unencrypted link \
                 (sslmode=disable, or a loopback or Unix-socket host) and a URL tokio-postgres reads"
            ),
            None => {}
        }
        // PostgreSQL cancels what runs longer than a request would wait for it (the client's
        // side is `bounded`), so an abandoned statement does not keep the connection or its
        // locks. Migrations, above, run without it.
        let options = options.options([("statement_timeout", BACKEND_TIMEOUT.as_millis().to_string())]);
        let mut store = Self::new(SqlPool::new(options, max_connections)?, None);
        store.reads = reads.map(Arc::new);
        Ok(store)
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) and applies `migrations/sqlite`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .create_if_missing(true)
            // WAL lets readers run beside the one writer; NORMAL is durable across crashes of
            // the process (only an OS crash can lose the last commits), the usual WAL pairing.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // Writers queue for the lock instead of failing at once; bounded like every backend call.
            .busy_timeout(BACKEND_TIMEOUT)
            .foreign_keys(true);
        // `sqlite::memory:` is one database shared by the connections of these options (sqlx
        // names it and opens it in shared-cache mode) for as long as one of them is open.
        let in_memory = crate::config::DatabaseUrl::Sqlite(url.to_owned()).sqlite_file().is_none();
        if !in_memory && !url.contains("mode=ro") {
            // Made here rather than by SQLite, readable by its owner only, as it holds the
            // password hashes and the sessions (SQLite gives the `-wal` and `-shm` files it
            // makes beside it the same mode); left to SQLite it would get the umask's mode,
            // usually 0644, and a missing directory would be "unable to open database file"
            // without a path. The file as sqlx reads the URL (percent-decoded), not as written.
            super::create_owner_only(options.get_filename()).map_err(StoreError::Internal)?;
        }
        let keep_alive = if in_memory {
            Some(Arc::new(std::sync::Mutex::new(
                sqlx::ConnectOptions::connect(&options).await.map_err(map_err)?,
            )))
        } else {
            None
        };
        migrate::<Sqlite>(options.clone(), sqlx::migrate!("../migrations/sqlite")).await?;
        let writes = SqlPool::new(options.clone(), 1)?;
        let mut store = Self::new(SqlPool::new(options, max_connections)?, Some(writes));
        store.keep_alive = keep_alive;
        Ok(store)
    }
}

impl<C: Connection + 'static> SqlStore<C> {
    fn new(pool: SqlPool<C>, writes: Option<SqlPool<C>>) -> Self {
        Self {
            pool,
            full_first_pages: Arc::new(quick_cache::sync::Cache::new(FULL_FIRST_PAGES_REMEMBERED)),
            writes,
            reads: None,
            keep_alive: None,
        }
    }

    /// A connection for statements that write.
    ///
    /// SQLite has one write lock per database. A connection that finds it taken sleeps in
    /// SQLite's busy handler and retries, at growing intervals up to 100 ms, while newcomers
    /// may take the lock first: under 64 concurrent writers some waited over a second, and a few
    /// ran past the client's timeout. So on SQLite all writes go through one connection of
    /// their own, which writers wait for in arrival order (the pool's wait queue is fair),
    /// bounded by [`BACKEND_TIMEOUT`] like every other backend call. The lock is then always
    /// free when a writer's turn comes, the connection's page cache stays warm across writes,
    /// and readers, which WAL lets run beside the writer, keep the other connections.
    async fn writer(&self) -> Result<Conn<C>, StoreError> {
        self.writes.as_ref().unwrap_or(&self.pool).get().await
    }

    /// A read: over the pipelined connections, hedged to the pool (see `pipeline.rs`), when
    /// there are any; else on the pool.
    async fn read<'a, T, F>(
        &'a self,
        pipelined: impl FnOnce(&'a Pipelines) -> F,
        pooled: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, StoreError>>,
    {
        match &self.reads {
            Some(reads) => reads.hedged(pipelined(reads), pooled).await,
            None => pooled.await,
        }
    }
}

/// Waits for PostgreSQL at `url` to accept a connection: up to `wait` while it is unreachable
/// or starting up (each failure logged with its cause), not at all when it refuses the
/// credentials or does not have the database named. The error is the database's own, not a
/// pool's timeout.
pub async fn wait_for_postgres(url: &str, wait: std::time::Duration) -> Result<(), StoreError> {
    let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Internal(e.to_string()))?;
    wait_for_database::<PgConnection>(&options, wait).await
}

async fn wait_for_database<C: Connection>(
    options: &C::Options,
    wait: std::time::Duration,
) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let err = match bounded(C::connect_with(options)).await {
            Ok(connection) => {
                let _ = connection.close().await;
                return Ok(());
            }
            Err(err) => err,
        };
        // Unreachable, or reachable and starting up, shutting down or full: it may pass.
        let passing = match &err {
            sqlx::Error::Io(_) => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| passing_code(&code)),
            _ => false,
        };
        if !passing || tokio::time::Instant::now() >= deadline {
            return Err(map_err(err));
        }
        tracing::warn!(error = %err, "the database does not accept connections yet; trying again");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Applies `migrator` on a one-connection sqlx pool of its own, closed when done: the shape
/// `Migrator::run` takes inside a `Send` future (on `&mut` a connection, rustc's higher-ranked
/// lifetime check rejects it).
///
/// Migrations applied by a newer release are left alone, so that during a rolling deploy, or
/// after a rollback, the release before can start on the schema the newer one left: every
/// migration keeps the schema usable by the release before it (DESIGN.md, Migrations).
async fn migrate<DB>(
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
    let migrations = PoolOptions::<DB>::new()
        .max_connections(1)
        .acquire_timeout(BACKEND_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(map_err)?;
    // A database migrated before has the table; a new one does not, and has none applied.
    let applied: Vec<i64> = {
        let mut connection = migrations.acquire().await.map_err(map_err)?;
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut *connection)
            .await
        {
            Ok(applied) => applied,
            Err(sqlx::Error::Database(_)) => Vec::new(),
            Err(err) => return Err(map_err(err)),
        }
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
    let migrated = migrator.run(&migrations).await;
    migrations.close().await;
    migrated.map_err(|e| StoreError::Internal(e.to_string()))?;
    // Replicas starting together each count the same pending ones; one of them applied them.
    tracing::info!(pending_at_start = pending, latest = known.iter().max(), "database schema up to date");
    Ok(())
}

/// Sorts a user's tasks by each [`TaskSort`]; ties broken by id in the same direction. The
/// fragments are fixed strings (no user input is ever formatted into SQL). A listing with a
/// status filter and one without are separate statements, so neither carries a
/// `($2 IS NULL OR status = $2)` that the planner must keep for both cases.
///
/// Each listing comes in two forms (see [`ListStatement`]): the page alone, and the page with
/// the total riding along as an uncorrelated scalar subquery, which both databases run once per
/// statement off the `(user_id, ...)` index. (`COUNT(*) OVER ()` made SQLite read the user's
/// rows through a co-routine and sort them in a temporary B-tree on every page, instead of
/// walking the index that already has the order.)
macro_rules! list_sql {
    ($order:literal) => {
        ListStatements {
            page: concat!(
                "SELECT id, user_id, title, description, status, created_at, updated_at
                 FROM tasks WHERE user_id = $1 ORDER BY ",
                $order,
                " LIMIT $2 OFFSET $3"
            ),
            with_total: concat!(
                "SELECT id, user_id, title, description, status, created_at, updated_at,
                        (SELECT COUNT(*) FROM tasks WHERE user_id = $1) AS total
                 FROM tasks WHERE user_id = $1 ORDER BY ",
                $order,
                " LIMIT $2 OFFSET $3"
            ),
            status_page: concat!(
                "SELECT id, user_id, title, description, status, created_at, updated_at
                 FROM tasks WHERE user_id = $1 AND status = $2 ORDER BY ",
                $order,
                " LIMIT $3 OFFSET $4"
            ),
            status_with_total: concat!(
                "SELECT id, user_id, title, description, status, created_at, updated_at,
                        (SELECT COUNT(*) FROM tasks WHERE user_id = $1 AND status = $2) AS total
                 FROM tasks WHERE user_id = $1 AND status = $2 ORDER BY ",
                $order,
                " LIMIT $3 OFFSET $4"
            ),
        }
    };
}

/// The four listing statements of one sort order.
struct ListStatements {
    page: &'static str,
    with_total: &'static str,
    status_page: &'static str,
    status_with_total: &'static str,
}

/// Which form of a listing statement to send.
///
/// Most listings are a first page that holds all of a user's matching tasks: then the page
/// tells its own total (the number of rows), and counting beside it is waste. pgbench measured
/// the page alone at ~13,000 statements/s on PostgreSQL against ~10,600 with the count. Such
/// listings send [`ListStatement::Page`]; only when that page comes back full does a count
/// follow, as a second statement. A user whose first page came back full is remembered (see
/// `SqlStore::full_first_pages`), and their listings, like every page after the first, send
/// [`ListStatement::WithTotal`], one statement that carries the total in every row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListStatement {
    Page,
    WithTotal,
}

/// The listing statement for `sort`: binds user id, then the status if `filtered`, then limit
/// and offset.
fn list_sql(sort: TaskSort, filtered: bool, form: ListStatement) -> &'static str {
    let statements = match sort {
        TaskSort::CreatedAt => list_sql!("created_at ASC, id ASC"),
        TaskSort::CreatedAtDesc => list_sql!("created_at DESC, id DESC"),
        TaskSort::UpdatedAt => list_sql!("updated_at ASC, id ASC"),
        TaskSort::UpdatedAtDesc => list_sql!("updated_at DESC, id DESC"),
        TaskSort::Title => list_sql!("title ASC, id ASC"),
        TaskSort::TitleDesc => list_sql!("title DESC, id DESC"),
    };
    match (filtered, form) {
        (false, ListStatement::Page) => statements.page,
        (false, ListStatement::WithTotal) => statements.with_total,
        (true, ListStatement::Page) => statements.status_page,
        (true, ListStatement::WithTotal) => statements.status_with_total,
    }
}

/// How many users with a full first page each instance remembers. A forgotten one costs only
/// its next first page a second statement; entries are 16 bytes or so.
const FULL_FIRST_PAGES_REMEMBERED: usize = 65_536;

/// The count of a full first page sent as [`ListStatement::Page`], or of a page past the end,
/// which has no rows to carry it.
const COUNT_SQL: &str = "SELECT COUNT(*) FROM tasks WHERE user_id = $1";
const COUNT_BY_STATUS_SQL: &str = "SELECT COUNT(*) FROM tasks WHERE user_id = $1 AND status = $2";
const TASK_COLUMNS: &str = "id, user_id, title, description, status, created_at, updated_at";

struct TaskRow {
    id: i64,
    user_id: i64,
    title: String,
    description: Option<String>,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A task's columns in [`TASK_COLUMNS`] order. Rows are read by position, through sqlx's tuple
/// `FromRow`, not by name as `#[derive(FromRow)]` reads them: looking each column's name up in
/// the row's hash map, for every column of every row, was ~4 % of a list request's CPU.
type TaskColumns = (i64, i64, String, Option<String>, String, DateTime<Utc>, DateTime<Utc>);

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for TaskRow
where
    TaskColumns: sqlx::FromRow<'r, R>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let (id, user_id, title, description, status, created_at, updated_at) = TaskColumns::from_row(row)?;
        Ok(TaskRow { id, user_id, title, description, status, created_at, updated_at })
    }
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

/// A listed task, and the total in the column after [`TASK_COLUMNS`].
struct ListRow {
    task: TaskRow,
    total: i64,
}

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for ListRow
where
    TaskRow: sqlx::FromRow<'r, R>,
    &'r str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(ListRow { task: TaskRow::from_row(row)?, total: row.try_get("total")? })
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    username: String,
    created_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User { id: row.id, username: row.username, created_at: row.created_at }
    }
}

#[derive(sqlx::FromRow)]
struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

/// One use of a pooled connection, bounded by [`BACKEND_TIMEOUT`]. Waiting for, opening and
/// testing a connection are bounded by the pool; this bounds the statements once it is ours, so
/// a database that stops answering (a network partition, a frozen host) gets a 503 after the
/// timeout instead of holding the request until TCP gives up, some 15 minutes later. The
/// connection is left unsettled (see `pool.rs`), so it is tested, or replaced, before its next
/// use; a transaction cut short this way is rolled back then.
async fn bounded<T>(
    work: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(BACKEND_TIMEOUT, work).await.unwrap_or_else(|_| {
        Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the database did not answer within {} s", BACKEND_TIMEOUT.as_secs()),
        )))
    })
}

/// The [`StoreError`] of a sqlx error: 503 for a backend that does not answer, 409 for a
/// uniqueness rule, 401 for a foreign key (the user is gone), 500 for the rest.
pub(super) fn map_err(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        // Every foreign key leads to the user (a task's or a session's owner).
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::UserGone,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(code) if unavailable_code(code) => StoreError::Unavailable(err.to_string()),
            // SQLite: SQLITE_BUSY / SQLITE_LOCKED after the busy timeout.
            Some("5") | Some("6") | Some("517") | Some("262") => StoreError::Unavailable(err.to_string()),
            _ => StoreError::Internal(err.to_string()),
        },
        _ => StoreError::Internal(err.to_string()),
    }
}

/// Whether a PostgreSQL error code met while connecting may pass by itself: connection
/// exceptions (08), shutdown and recovery (57P), too many connections (53300), not accepting
/// connections (55000). Not credentials (28) or a database that does not exist (3D000).
fn passing_code(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || matches!(code, "53300" | "55000")
}

/// Whether a PostgreSQL error code means the database cannot serve now, while connecting or
/// connected: connection exceptions (08), shutdown and recovery (57P), a statement cancelled,
/// as `statement_timeout` does (57014), too many connections (53300), database not accepting
/// connections (55000) or gone (3D000), credentials refused (28).
pub(super) fn unavailable_code(code: &str) -> bool {
    passing_code(code) || code.starts_with("28") || matches!(code, "57014" | "3D000")
}

/// Whether `err` means the connection itself is gone or unusable (so a database restart may
/// have cut the others too): I/O, TLS or protocol failures, a crashed SQLite worker, or
/// PostgreSQL's connection exceptions (08) and shutdowns (57P01–57P03). Not a database that is
/// only slow or busy (a statement timeout, a lock).
pub(super) fn connection_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            true
        }
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

const GET_USER_SQL: &str = "SELECT id, username, created_at FROM users WHERE id = $1";

const GET_TASK_SQL: &str =
    "SELECT id, user_id, title, description, status, created_at, updated_at FROM tasks WHERE id = $1 AND user_id = $2";

/// A column of a tokio-postgres row that does not decode as expected.
fn pg_decode_err(err: tokio_postgres::Error) -> StoreError {
    StoreError::Internal(err.to_string())
}

impl UserRow {
    /// A row of tokio-postgres (the pipelined reads), columns in [`GET_USER_SQL`] order.
    fn from_pg(row: &tokio_postgres::Row) -> Result<Self, StoreError> {
        Ok(UserRow {
            id: row.try_get(0).map_err(pg_decode_err)?,
            username: row.try_get(1).map_err(pg_decode_err)?,
            created_at: row.try_get(2).map_err(pg_decode_err)?,
        })
    }
}

impl TaskRow {
    /// A row of tokio-postgres (the pipelined reads), columns in [`TASK_COLUMNS`] order.
    fn from_pg(row: &tokio_postgres::Row) -> Result<Self, StoreError> {
        Ok(TaskRow {
            id: row.try_get(0).map_err(pg_decode_err)?,
            user_id: row.try_get(1).map_err(pg_decode_err)?,
            title: row.try_get(2).map_err(pg_decode_err)?,
            description: row.try_get(3).map_err(pg_decode_err)?,
            status: row.try_get(4).map_err(pg_decode_err)?,
            created_at: row.try_get(5).map_err(pg_decode_err)?,
            updated_at: row.try_get(6).map_err(pg_decode_err)?,
        })
    }
}

/// The binds of a listing statement: the user id, then the status if filtered, limit, offset.
struct ListBinds<'a> {
    user_id: i64,
    status: Option<&'a str>,
    limit: i64,
    offset: i64,
}

/// Where a listing's statements run: a pooled sqlx connection, or the pipelined reads.
trait ListReads {
    /// The page alone ([`ListStatement::Page`]).
    async fn page(&mut self, sql: &'static str, binds: &ListBinds<'_>) -> Result<Vec<TaskRow>, StoreError>;
    /// The page with the total in each row ([`ListStatement::WithTotal`]).
    async fn page_with_total(
        &mut self,
        sql: &'static str,
        binds: &ListBinds<'_>,
    ) -> Result<Vec<ListRow>, StoreError>;
    /// A count; binds the user id, then the status if filtered.
    async fn count(&mut self, sql: &'static str, binds: &ListBinds<'_>) -> Result<i64, StoreError>;
}

/// The pipelined reads (PostgreSQL only).
struct PipelinedReads<'a>(&'a Pipelines);

impl PipelinedReads<'_> {
    async fn rows(
        &self,
        sql: &'static str,
        binds: &ListBinds<'_>,
        paged: bool,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&binds.user_id];
        if let Some(status) = &binds.status {
            params.push(status);
        }
        if paged {
            params.push(&binds.limit);
            params.push(&binds.offset);
        }
        self.0.query(sql, &params).await
    }
}

impl ListReads for PipelinedReads<'_> {
    async fn page(&mut self, sql: &'static str, binds: &ListBinds<'_>) -> Result<Vec<TaskRow>, StoreError> {
        self.rows(sql, binds, true).await?.iter().map(TaskRow::from_pg).collect()
    }

    async fn page_with_total(
        &mut self,
        sql: &'static str,
        binds: &ListBinds<'_>,
    ) -> Result<Vec<ListRow>, StoreError> {
        let rows = self.rows(sql, binds, true).await?;
        rows.iter()
            .map(|row| {
                let total = row.try_get(7).map_err(pg_decode_err)?;
                Ok(ListRow { task: TaskRow::from_pg(row)?, total })
            })
            .collect()
    }

    async fn count(&mut self, sql: &'static str, binds: &ListBinds<'_>) -> Result<i64, StoreError> {
        let rows = self.rows(sql, binds, false).await?;
        let row = rows.first().ok_or_else(|| StoreError::Internal("a count without a row".to_owned()))?;
        row.try_get(0).map_err(pg_decode_err)
    }
}

impl<C: Connection + 'static> SqlStore<C> {
    /// A page of the user's tasks and their total, the statements run by `reads`.
    async fn list_with(
        &self,
        reads: &mut impl ListReads,
        user_id: i64,
        filter: &TaskFilter,
    ) -> Result<(Vec<Task>, u64), StoreError> {
        let status = filter.status.map(|s| s.as_str());
        let limit = filter.limit as usize;
        let form = if filter.offset == 0 && self.full_first_pages.get(&user_id).is_none() {
            ListStatement::Page
        } else {
            ListStatement::WithTotal
        };
        let sql = list_sql(filter.sort, status.is_some(), form);
        let binds = ListBinds {
            user_id,
            status,
            limit: i64::from(filter.limit),
            offset: offset_param(filter.offset),
        };
        let (rows, total) = match form {
            ListStatement::Page => {
                let rows = reads.page(sql, &binds).await?;
                let total = if rows.len() < limit {
                    Some(rows.len() as i64)
                } else {
                    self.full_first_pages.insert(user_id, ());
                    None
                };
                (rows, total)
            }
            ListStatement::WithTotal => {
                let rows = reads.page_with_total(sql, &binds).await?;
                // Only a page past the end has no row to carry the total.
                let total = rows.first().map(|row| row.total).or((filter.offset == 0).then_some(0));
                // A short unfiltered first page: the user's tasks fit on one again. (A filtered
                // one says nothing of the others.)
                if filter.offset == 0 && status.is_none() && total.is_some_and(|total| total < limit as i64) {
                    self.full_first_pages.remove(&user_id);
                }
                (rows.into_iter().map(|row| row.task).collect(), total)
            }
        };
        let total = match total {
            Some(total) => total,
            None => {
                reads.count(if status.is_some() { COUNT_BY_STATUS_SQL } else { COUNT_SQL }, &binds).await?
            }
        };
        let tasks = rows.into_iter().map(Task::try_from).collect::<Result<_, _>>()?;
        Ok((tasks, total.max(0) as u64))
    }
}

fn offset_param(offset: u64) -> i64 {
    // Validated upstream; saturating keeps an absurd offset an empty page, not an error.
    i64::try_from(offset).unwrap_or(i64::MAX)
}

macro_rules! impl_sql_store {
    ($db:ty) => {
        impl Conn<$db> {
            /// A listing statement's rows, as either form's row type.
            async fn fetch_page<R>(&mut self, sql: &'static str, binds: &ListBinds<'_>) -> Result<Vec<R>, StoreError>
            where
                R: for<'r> sqlx::FromRow<'r, <<$db as Connection>::Database as sqlx::Database>::Row>
                    + Send
                    + Unpin,
            {
                let query = sqlx::query_as(sql).bind(binds.user_id);
                let query = match binds.status {
                    Some(status) => query.bind(status),
                    None => query,
                };
                let result = bounded(query.bind(binds.limit).bind(binds.offset).fetch_all(self.conn())).await;
                self.settle(result)
            }
        }

        impl ListReads for Conn<$db> {
            async fn page(&mut self, sql: &'static str, binds: &ListBinds<'_>) -> Result<Vec<TaskRow>, StoreError> {
                self.fetch_page(sql, binds).await
            }

            async fn page_with_total(
                &mut self,
                sql: &'static str,
                binds: &ListBinds<'_>,
            ) -> Result<Vec<ListRow>, StoreError> {
                self.fetch_page(sql, binds).await
            }

            async fn count(&mut self, sql: &'static str, binds: &ListBinds<'_>) -> Result<i64, StoreError> {
                let query = sqlx::query_scalar(sql).bind(binds.user_id);
                let query = match binds.status {
                    Some(status) => query.bind(status),
                    None => query,
                };
                let result = bounded(query.fetch_one(self.conn())).await;
                self.settle(result)
            }
        }

        #[async_trait]
        impl Store for SqlStore<$db> {
            async fn create_user(
                &self,
                username: &str,
                password_hash: &str,
                now: DateTime<Utc>,
            ) -> Result<User, StoreError> {
                let mut conn = self.writer().await?;
                let result = bounded(sqlx::query_scalar(
                    "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
                )
                .bind(username)
                .bind(password_hash)
                .bind(now)
                .fetch_one(conn.conn()))
                .await;
                let id: i64 = conn.settle(result)?;
                Ok(User { id, username: username.to_owned(), created_at: now })
            }

            async fn delete_user(&self, id: i64) -> Result<(), StoreError> {
                let mut conn = self.writer().await?;
                let result = bounded(sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(conn.conn())).await;
                conn.settle(result).map(drop)
            }

            async fn find_credentials(&self, username: &str) -> Result<Option<UserCredentials>, StoreError> {
                let mut conn = self.pool.get().await?;
                let result = bounded(sqlx::query_as(
                    "SELECT id, username, created_at, password_hash FROM users WHERE lower(username) = lower($1)",
                )
                .bind(username)
                .fetch_optional(conn.conn()))
                .await;
                let row: Option<CredentialsRow> = conn.settle(result)?;
                Ok(row.map(|r| UserCredentials { user: r.user.into(), password_hash: r.password_hash }))
            }

            async fn get_user(&self, id: i64) -> Result<Option<User>, StoreError> {
                let pooled = async {
                    let mut conn = self.pool.get().await?;
                    let result = bounded(sqlx::query_as(GET_USER_SQL).bind(id).fetch_optional(conn.conn())).await;
                    let row: Option<UserRow> = conn.settle(result)?;
                    Ok(row.map(User::from))
                };
                // A read like the task reads (`/auth/me`, and every refresh): the same way.
                self.read(
                    |reads| async move {
                        let rows = reads.query(GET_USER_SQL, &[&id]).await?;
                        rows.first().map(|row| UserRow::from_pg(row).map(User::from)).transpose()
                    },
                    pooled,
                )
                .await
            }

            async fn create_task(
                &self,
                user_id: i64,
                task: &NewTask,
                now: DateTime<Utc>,
            ) -> Result<Task, StoreError> {
                let mut conn = self.writer().await?;
                let result = bounded(sqlx::query_as(&format!(
                    "INSERT INTO tasks (user_id, title, description, status, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $5) RETURNING {TASK_COLUMNS}"
                ))
                .bind(user_id)
                .bind(&task.title)
                .bind(&task.description)
                .bind(task.status.unwrap_or_default().as_str())
                .bind(now)
                .fetch_one(conn.conn()))
                .await;
                let row: TaskRow = conn.settle(result)?;
                row.try_into()
            }

            async fn list_tasks(&self, user_id: i64, filter: &TaskFilter) -> Result<(Vec<Task>, u64), StoreError> {
                let pooled = async { self.list_with(&mut self.pool.get().await?, user_id, filter).await };
                self.read(|reads| async move { self.list_with(&mut PipelinedReads(reads), user_id, filter).await }, pooled)
                    .await
            }

            async fn get_task(&self, user_id: i64, id: i64) -> Result<Option<Task>, StoreError> {
                let pooled = async {
                    let mut conn = self.pool.get().await?;
                    let result =
                        bounded(sqlx::query_as(GET_TASK_SQL).bind(id).bind(user_id).fetch_optional(conn.conn())).await;
                    let row: Option<TaskRow> = conn.settle(result)?;
                    row.map(Task::try_from).transpose()
                };
                self.read(
                    |reads| async move {
                        let rows = reads.query(GET_TASK_SQL, &[&id, &user_id]).await?;
                        rows.first().map(|row| TaskRow::from_pg(row)?.try_into()).transpose()
                    },
                    pooled,
                )
                .await
            }

            async fn update_task(
                &self,
                user_id: i64,
                id: i64,
                update: &TaskUpdate,
                now: DateTime<Utc>,
            ) -> Result<Option<Task>, StoreError> {
                let mut conn = self.writer().await?;
                let result = bounded(sqlx::query_as(&format!(
                    "UPDATE tasks SET
                        title = COALESCE($3, title),
                        description = CASE WHEN $4 THEN $5 ELSE description END,
                        status = COALESCE($6, status),
                        updated_at = $7
                     WHERE id = $1 AND user_id = $2
                     RETURNING {TASK_COLUMNS}"
                ))
                .bind(id)
                .bind(user_id)
                .bind(&update.title)
                .bind(update.description.is_some())
                .bind(update.description.clone().flatten())
                .bind(update.status.map(|s| s.as_str()))
                .bind(now)
                .fetch_optional(conn.conn()))
                .await;
                let row: Option<TaskRow> = conn.settle(result)?;
                row.map(Task::try_from).transpose()
            }

            async fn delete_task(&self, user_id: i64, id: i64) -> Result<bool, StoreError> {
                let mut conn = self.writer().await?;
                let result = bounded(sqlx::query("DELETE FROM tasks WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(user_id)
                    .execute(conn.conn()))
                .await;
                let done = conn.settle(result)?;
                Ok(done.rows_affected() > 0)
            }

            async fn ping(&self) -> Result<(), StoreError> {
                let mut conn = self.pool.get().await?;
                let result = bounded(sqlx::query("SELECT 1").execute(conn.conn())).await;
                conn.settle(result).map(drop)
            }

            fn read_pipelines_open(&self) -> usize {
                self.reads.as_ref().map_or(0, |reads| reads.open())
            }

            fn pool_status(&self) -> (u32, usize) {
                let (size, idle) = self.pool.status();
                match &self.writes {
                    Some(writes) => {
                        let (write_size, write_idle) = writes.status();
                        (size.saturating_add(write_size), idle + write_idle)
                    }
                    None => (size, idle),
                }
            }
        }

        #[async_trait]
        impl RefreshStore for SqlStore<$db> {
            async fn start_family(
                &self,
                family: &str,
                user_id: i64,
                jti: &str,
                expires_at: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                let now = super::now();
                let mut conn = self.writer().await?;
                let result = bounded(async {
                    let mut tx = conn.conn().begin().await?;
                    // Expired families of this user go as a new one starts, so the tables stay
                    // bounded by live sessions without a sweeper.
                    sqlx::query("DELETE FROM refresh_families WHERE user_id = $1 AND expires_at <= $2")
                        .bind(user_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("INSERT INTO refresh_families (id, user_id, expires_at) VALUES ($1, $2, $3)")
                        .bind(family)
                        .bind(user_id)
                        .bind(expires_at)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("INSERT INTO refresh_tokens (jti, family_id, expires_at) VALUES ($1, $2, $3)")
                        .bind(jti)
                        .bind(family)
                        .bind(expires_at)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await
                })
                .await;
                conn.settle(result)
            }

            async fn rotate(
                &self,
                family: &str,
                old_jti: &str,
                new_jti: &str,
                expires_at: DateTime<Utc>,
            ) -> Result<Rotation, StoreError> {
                let now = super::now();
                let mut conn = self.writer().await?;
                let result = bounded(async {
                    let mut tx = conn.conn().begin().await?;
                    // The family's row first, then the token's: the order a revocation takes
                    // them in (its DELETE cascades from family to tokens), so the two cannot
                    // deadlock on PostgreSQL. The UPDATE renews a live family and locks its row.
                    let live =
                        sqlx::query("UPDATE refresh_families SET expires_at = $2 WHERE id = $1 AND expires_at > $3")
                            .bind(family)
                            .bind(expires_at)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    if live.rows_affected() == 0 {
                        return Ok(Rotation::FamilyRevoked);
                    }
                    // The DELETE is the atomic step: of two racing transactions only one gets the
                    // row. The loser's renewal above is rolled back with its transaction.
                    let consumed: Option<String> = sqlx::query_scalar(
                        "DELETE FROM refresh_tokens WHERE jti = $1 AND family_id = $2 RETURNING jti",
                    )
                    .bind(old_jti)
                    .bind(family)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if consumed.is_none() {
                        return Ok(Rotation::Reused);
                    }
                    sqlx::query("INSERT INTO refresh_tokens (jti, family_id, expires_at) VALUES ($1, $2, $3)")
                        .bind(new_jti)
                        .bind(family)
                        .bind(expires_at)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(Rotation::Rotated)
                })
                .await;
                conn.settle(result)
            }

            async fn is_active(&self, family: &str, jti: &str) -> Result<bool, StoreError> {
                let mut conn = self.pool.get().await?;
                let result: Result<Option<i64>, _> = bounded(sqlx::query_scalar(
                    "SELECT 1 FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id
                     WHERE t.jti = $1 AND f.id = $2 AND f.expires_at > $3",
                )
                .bind(jti)
                .bind(family)
                .bind(super::now())
                .fetch_optional(conn.conn()))
                .await;
                Ok(conn.settle(result)?.is_some())
            }

            async fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
                let mut conn = self.writer().await?;
                let result =
                    bounded(sqlx::query("DELETE FROM refresh_families WHERE id = $1").bind(family).execute(conn.conn())).await;
                conn.settle(result).map(drop)
            }

            async fn ping(&self) -> Result<(), StoreError> {
                Store::ping(self).await
            }

            fn kind(&self) -> &'static str {
                "database"
            }
        }
    };
}

impl_sql_store!(PgConnection);
impl_sql_store!(SqliteConnection);

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use tasklane::types::{NewTask, TaskSort, TaskStatus};

    use super::*;

    fn filter(limit: u32, offset: u64, status: Option<TaskStatus>) -> TaskFilter {
        TaskFilter { status, limit, offset, sort: TaskSort::CreatedAtDesc }
    }

    /// A SQLite store in a temporary directory (kept alive by the caller), with one user.
    async fn store_with_user() -> (tempfile::TempDir, SqliteStore, i64) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("store.db").display());
        let store = SqliteStore::connect(&url, 4).await.unwrap();
        let user = store.create_user("someone", "x", Utc::now()).await.unwrap().id;
        (dir, store, user)
    }

    /// Which statement a listing sends follows what the user's first pages showed; the totals
    /// are checked on both backends by the api tests.
    #[tokio::test]
    async fn full_first_pages_are_remembered_until_an_unfiltered_one_is_short() {
        let (_dir, store, user) = store_with_user().await;
        let remembered = |store: &SqliteStore| store.full_first_pages.get(&user).is_some();
        for (i, status) in [TaskStatus::Done, TaskStatus::Done, TaskStatus::Pending].into_iter().enumerate() {
            let task = NewTask { title: format!("t{i}"), description: None, status: Some(status) };
            store.create_task(user, &task, Utc::now()).await.unwrap();
        }

        assert_eq!(store.list_tasks(user, &filter(5, 0, None)).await.unwrap().1, 3);
        assert!(!remembered(&store), "a short first page is not remembered");
        assert_eq!(store.list_tasks(user, &filter(3, 0, None)).await.unwrap().1, 3);
        assert!(remembered(&store), "a full first page is");
        assert_eq!(store.list_tasks(user, &filter(2, 0, Some(TaskStatus::Pending))).await.unwrap().1, 1);
        assert!(remembered(&store), "a short filtered page says nothing of the other tasks");
        assert_eq!(store.list_tasks(user, &filter(2, 2, None)).await.unwrap().1, 3);
        assert!(remembered(&store), "nor does a later page");
        assert_eq!(store.list_tasks(user, &filter(4, 0, None)).await.unwrap().1, 3);
        assert!(!remembered(&store), "a short unfiltered first page clears it");
        assert_eq!(store.list_tasks(user, &filter(2, 0, Some(TaskStatus::Done))).await.unwrap().1, 2);
        assert!(remembered(&store), "a full filtered first page implies a full unfiltered one");
    }

    /// A PostgreSQL database of one test's own, on the test server; removed by [`Self::remove`].
    struct ScratchPostgres {
        admin: PgConnection,
        database: String,
        url: String,
    }

    impl ScratchPostgres {
        /// `None` (with a notice) outside CI without a test PostgreSQL.
        async fn create(prefix: &str) -> Option<Self> {
            let admin_url = crate::store::test_postgres_url()?;
            let database = format!("tasklane_{prefix}_{}", uuid::Uuid::new_v4().simple());
            let mut admin = PgConnection::connect(&admin_url).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {database}")).execute(&mut admin).await.unwrap();
            let mut url = url::Url::parse(&admin_url).unwrap();
            url.set_path(&database);
            Some(Self { admin, database, url: url.into() })
        }

        async fn remove(mut self) {
            let drop = format!("DROP DATABASE {} WITH (FORCE)", self.database);
            sqlx::query(&drop).execute(&mut self.admin).await.unwrap();
        }
    }

    /// Reads queued behind a stalled pipelined connection are answered by the pool while the
    /// stall goes on, more of them than the hedge budget, in turn (see `Pipelines::hedged`).
    #[tokio::test]
    async fn reads_stuck_behind_a_pipelined_connection_are_answered_by_the_pool() {
        let Some(scratch) = ScratchPostgres::create("hedge").await else { return };
        let store = PgStore::connect(&scratch.url, 4, 1).await.unwrap();
        let user = store.create_user("someone", "x", Utc::now()).await.unwrap().id;
        let new = NewTask { title: "kept".to_owned(), description: None, status: None };
        let task = store.create_task(user, &new, Utc::now()).await.unwrap();
        let reads = store.reads.clone().expect("a loopback URL: reads are pipelined");
        assert_eq!(store.list_tasks(user, &filter(10, 0, None)).await.unwrap().1, 1);
        assert_eq!(reads.open(), 1, "the list went over the pipelined connection");

        // The only pipelined connection answers nothing for 2.5 s (its backend is asleep):
        // everything queued on it waits.
        let stall = tokio::spawn(async move { reads.query("SELECT pg_sleep(2.5)::text", &[]).await });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (tasks, total) = store.list_tasks(user, &filter(10, 0, None)).await.unwrap();
        assert_eq!((tasks.len(), total, tasks[0].id), (1, 1, task.id));
        assert_eq!(store.get_task(user, task.id).await.unwrap().map(|t| t.title), Some("kept".to_owned()));
        // A pool of 4 lends at most 2 connections to hedges at a time; 12 stuck reads take turns.
        let page = filter(10, 0, None);
        let lists = (0..12).map(|_| store.list_tasks(user, &page));
        for answer in futures::future::join_all(lists).await {
            assert_eq!(answer.unwrap().1, 1);
        }
        assert!(!stall.is_finished(), "all reads were answered while the connection was stalled");
        stall.await.unwrap().unwrap();

        drop(store);
        scratch.remove().await;
    }

    /// Reads in flight on a pipelined connection that is killed are answered by the pool, not
    /// failed (see `Pipelines::hedged`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_on_a_killed_pipelined_connection_are_answered_by_the_pool() {
        let Some(mut scratch) = ScratchPostgres::create("kill").await else { return };
        let store = Arc::new(PgStore::connect(&scratch.url, 8, 2).await.unwrap());
        let user = store.create_user("someone", "x", Utc::now()).await.unwrap().id;
        for i in 0..5 {
            let new = NewTask { title: format!("t{i}"), description: None, status: None };
            store.create_task(user, &new, Utc::now()).await.unwrap();
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..32)
            .map(|_| {
                let (store, stop) = (store.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        answers
                            .push(store.list_tasks(user, &filter(10, 0, None)).await.map(|(_, total)| total));
                    }
                    answers
                })
            })
            .collect();
        let mut killed = 0;
        for _ in 0..8 {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            // In the select list, so that only the filtered rows' backends are terminated: this
            // test's own, not those of tests running beside it.
            let done: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1 AND datname = $2",
            )
            .bind(super::super::pipeline::APPLICATION_NAME)
            .bind(&scratch.database)
            .fetch_all(&mut scratch.admin)
            .await
            .unwrap();
            killed += done.into_iter().filter(|&d| d).count();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut answers = Vec::new();
        for reader in readers {
            answers.extend(reader.await.unwrap());
        }
        assert!(killed >= 4, "pipelined connections were killed: {killed}");
        let failed: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
        assert!(
            failed.is_empty(),
            "{} of {} reads failed: {:?}",
            failed.len(),
            answers.len(),
            failed.first()
        );
        assert!(answers.iter().all(|a| matches!(a, Ok(5))));

        drop(store);
        scratch.remove().await;
    }

    /// On SQLite a writer waits for the one before it to finish; readers do not wait.
    #[tokio::test]
    async fn sqlite_writers_take_turns_and_readers_do_not_wait() {
        let (_dir, store, user) = store_with_user().await;

        let first = store.writer().await.unwrap();
        let second = store.writer();
        tokio::pin!(second);
        assert!(futures::poll!(&mut second).is_pending(), "the next writer waits");
        let listed = store.list_tasks(user, &filter(10, 0, None)).await.unwrap();
        assert_eq!(listed.1, 0, "a reader does not wait for the writer");
        drop(first);
        drop(second.await.unwrap());
        let task = NewTask { title: "after".to_owned(), description: None, status: None };
        store.create_task(user, &task, Utc::now()).await.unwrap();
        let (open, idle) = store.pool_status();
        assert_eq!((open, idle), (2, 2), "the reader's connection and the writer's, both counted");
    }
}
