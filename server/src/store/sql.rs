//! What both SQL backends share: the statements' text, the row types, and the migration run.
//!
//! Both databases accept `$N` placeholders, `RETURNING` and scalar subqueries, and the schema
//! differs only in column types (`server/migrations/<backend>`), so each statement is written once.
//! Runtime `query_as` is used rather than the `query!` macros, which would tie the build to one
//! database. Values are always bound, never formatted into SQL.

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolOptions;
use sqlx::Connection;
use tasklane::types::{Change, Priority, Task, TaskSort, User};

use super::{Claim, Replay, StoreError, TaskFilter, UserCredentials, BACKEND_TIMEOUT};

pub const INSERT_USER: &str =
    "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id";
pub const DELETE_USER: &str = "DELETE FROM users WHERE id = $1";
pub const FIND_CREDENTIALS: &str =
    "SELECT id, username, created_at, password_hash FROM users WHERE lower(username) = lower($1)";
pub const GET_USER: &str = "SELECT id, username, created_at FROM users WHERE id = $1";

/// A task's columns, as [`TaskRow`] reads them.
macro_rules! task_columns {
    () => {
        "id, user_id, title, description, status, created_at, updated_at, due_at, priority, labels, \
         completed_at, version"
    };
}

/// Binds: user, title, description, status, the time, due, priority rank, labels (JSON), and
/// the completion time (the time, if created done). The version starts at 1.
pub const INSERT_TASK: &str = concat!(
    "INSERT INTO tasks (user_id, title, description, status, created_at, updated_at, due_at, priority, labels,
                        completed_at)
     VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9) RETURNING ",
    task_columns!()
);
pub const GET_TASK: &str = concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = $1 AND user_id = $2");
/// Binds: id, user, title (null keeps it), whether the description changes, the description,
/// status (null keeps it), whether the due date changes, the due date, priority rank (null keeps
/// it), labels (JSON; null keeps them), the time, then the versions of [`update_task`]'s
/// condition. `completed_at` follows the status: set to the time when the task becomes done,
/// kept while it stays done, cleared when it leaves done. Every update is a change: the version
/// goes up by one, as `updated_at` moves.
const UPDATE_TASK: &str = "UPDATE tasks SET
        title = COALESCE($3, title),
        description = CASE WHEN $4 THEN $5 ELSE description END,
        status = COALESCE($6, status),
        due_at = CASE WHEN $7 THEN $8 ELSE due_at END,
        priority = COALESCE($9, priority),
        labels = COALESCE($10, labels),
        completed_at = CASE
            WHEN COALESCE($6, status) <> 'done' THEN NULL
            WHEN status = 'done' THEN completed_at
            ELSE $11
        END,
        updated_at = $11,
        version = version + 1
     WHERE id = $1 AND user_id = $2";

/// ` AND version IN (...)` with `versions` placeholders from `$first` on: the condition of a
/// conditional write (`If-Match`), checked by the write itself; nothing for `None`.
fn version_condition(versions: Option<usize>, first: usize) -> String {
    match versions {
        None => String::new(),
        Some(n) => {
            let placeholders: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
            format!(" AND version IN ({})", placeholders.join(", "))
        }
    }
}

/// The update, changing the task only if its version is one of `versions` (binds after the
/// 11 of the update), when given.
pub fn update_task(versions: Option<usize>) -> String {
    format!("{UPDATE_TASK}{} RETURNING {}", version_condition(versions, 12), task_columns!())
}

/// The deletion (binds: id, user, then the versions): the id of the task deleted, if any.
pub fn delete_task(versions: Option<usize>) -> String {
    format!("DELETE FROM tasks WHERE id = $1 AND user_id = $2{} RETURNING id", version_condition(versions, 3))
}

/// A task's labels for the filter: task, user, label (lowercase).
pub const INSERT_LABEL: &str = "INSERT INTO task_labels (task_id, user_id, label) VALUES ($1, $2, $3)";
pub const DELETE_LABELS: &str = "DELETE FROM task_labels WHERE task_id = $1";

// The change feed. Its numbers come from each user's change counter, which the triggers of the
// migrations bump inside every write (so a change committed later always has a higher number).

/// The user's change counter now.
pub const USER_CHANGE_SEQ: &str = "SELECT change_seq FROM users WHERE id = $1";
/// Every current task, in the order of its last change (binds: user, limit): a full sync.
pub const FEED_ALL: &str = concat!(
    "SELECT 0 AS deleted, change_seq, ",
    task_columns!(),
    " FROM tasks WHERE user_id = $1 ORDER BY change_seq LIMIT $2"
);
/// The tasks changed and deleted after a change (binds: user, change, limit), in one statement
/// so that both are read from one snapshot. A tombstone's row fills the task's columns with
/// placeholders of the right types.
pub const FEED_SINCE: &str = concat!(
    "SELECT 0 AS deleted, change_seq, ",
    task_columns!(),
    " FROM tasks WHERE user_id = $1 AND change_seq > $2
     UNION ALL
     SELECT 1, change_seq, task_id, user_id, '', NULL, 'pending', deleted_at, deleted_at, NULL,
            CAST(0 AS SMALLINT), '[]', NULL, CAST(1 AS BIGINT)
       FROM task_tombstones WHERE user_id = $1 AND change_seq > $2
     ORDER BY change_seq LIMIT $3"
);
/// The highest change whose tombstone was pruned, for the user (none: 0).
pub const FEED_HORIZON: &str = "SELECT pruned_through FROM feed_horizons WHERE user_id = $1";

/// A row of the feed: a task, or a tombstone (its id in `task`).
#[derive(sqlx::FromRow)]
pub struct FeedRow {
    deleted: i32,
    change_seq: i64,
    #[sqlx(flatten)]
    task: TaskRow,
}

impl FeedRow {
    /// The change, and its number.
    pub fn into_change(self) -> Result<(i64, Change), StoreError> {
        let change = if self.deleted != 0 {
            Change::Delete { id: self.task.id }
        } else {
            Change::Upsert { task: self.task.try_into()? }
        };
        Ok((self.change_seq, change))
    }
}

// Idempotency keys (without Redis).

/// Forgets a user's expired keys, as the user claims a new one: the table stays bounded by
/// the keys of the last day without a sweeper.
pub const FORGET_EXPIRED_KEYS: &str = "DELETE FROM idempotency_keys WHERE user_id = $1 AND expires_at <= $2";
/// Claims a key (binds: user, key, fingerprint, expiry); a row back when this call claimed it.
pub const CLAIM_KEY: &str =
    "INSERT INTO idempotency_keys (user_id, key, fingerprint, expires_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (user_id, key) DO NOTHING RETURNING key";
pub const GET_KEY: &str =
    "SELECT fingerprint, status, location, body FROM idempotency_keys WHERE user_id = $1 AND key = $2";
/// Keeps the answer (binds: user, key, status, location, body, expiry).
pub const COMPLETE_KEY: &str =
    "UPDATE idempotency_keys SET status = $3, location = $4, body = $5, expires_at = $6
     WHERE user_id = $1 AND key = $2";
pub const RELEASE_KEY: &str =
    "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND status IS NULL";

/// A key as stored.
#[derive(sqlx::FromRow)]
pub struct KeyRow {
    fingerprint: String,
    status: Option<i32>,
    location: Option<String>,
    body: Option<String>,
}

impl From<KeyRow> for Claim {
    fn from(row: KeyRow) -> Claim {
        match (row.status, row.location, row.body) {
            (Some(status), Some(location), Some(body)) => Claim::Done(Replay {
                fingerprint: row.fingerprint,
                status: u16::try_from(status).unwrap_or(201),
                location,
                body,
            }),
            _ => Claim::InFlight { fingerprint: Some(row.fingerprint) },
        }
    }
}
pub const PING: &str = "SELECT 1";

/// A value bound to a listing's statement.
#[derive(Clone, Debug)]
pub enum Value {
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
}

/// What a backend makes of `q=`: a condition on the task's columns, or a statement selecting
/// the ids of the matching tasks (from a search index).
pub enum Search {
    Condition(String),
    Ids(String),
}

/// A listing's statements and what they bind, in order: the page binds all of `values`, the
/// count all but the last two (limit and offset).
pub struct Listing {
    /// The number of matching tasks.
    pub count: String,
    pub values: Vec<Value>,
    /// Conditions on the task's own columns.
    conditions: String,
    /// Statements selecting the ids of matching tasks from a side index (labels, search).
    sets: Vec<String>,
    order: &'static str,
    limit: String,
    offset: String,
}

impl Listing {
    /// The statements for `filter`. The backend words the search: `search(q, next
    /// placeholder)` gives the SQL and the value it binds.
    pub fn new(user_id: i64, filter: &TaskFilter, search: impl Fn(&str, &str) -> (Search, Value)) -> Self {
        let mut values = vec![Value::Int(user_id)];
        // Binds `value` next; its placeholder.
        fn next(value: Value, values: &mut Vec<Value>) -> String {
            values.push(value);
            format!("${}", values.len())
        }
        let mut conditions = "user_id = $1".to_owned();
        let mut sets = Vec::new();
        if let Some(status) = filter.status {
            conditions +=
                &format!(" AND status = {}", next(Value::Text(status.as_str().to_owned()), &mut values));
        }
        if let Some(priority) = filter.priority {
            conditions +=
                &format!(" AND priority = {}", next(Value::Int(priority.rank().into()), &mut values));
        }
        let mut labels = Vec::new();
        for label in &filter.labels {
            let label = next(Value::Text(label.to_lowercase()), &mut values);
            sets.push(format!("SELECT task_id FROM task_labels WHERE user_id = $1 AND label = {label}"));
            labels.push(label);
        }
        if let Some(at) = filter.due_before {
            conditions += &format!(" AND due_at < {}", next(Value::Time(at), &mut values));
        }
        if let Some(at) = filter.due_after {
            conditions += &format!(" AND due_at >= {}", next(Value::Time(at), &mut values));
        }
        if let Some(q) = &filter.q {
            let (search, value) = search(q, &format!("${}", values.len() + 1));
            values.push(value);
            match search {
                Search::Condition(condition) => conditions += &format!(" AND {condition}"),
                Search::Ids(ids) => sets.push(ids),
            }
        }
        let order = match filter.sort {
            TaskSort::CreatedAt => "created_at ASC, id ASC",
            TaskSort::CreatedAtDesc => "created_at DESC, id DESC",
            TaskSort::UpdatedAt => "updated_at ASC, id ASC",
            TaskSort::UpdatedAtDesc => "updated_at DESC, id DESC",
            TaskSort::Title => "title ASC, id ASC",
            TaskSort::TitleDesc => "title DESC, id DESC",
            // Written as the indexes are, so that they serve the order.
            TaskSort::DueAt => "(due_at IS NULL) ASC, due_at ASC, id ASC",
            TaskSort::DueAtDesc => "(due_at IS NULL) ASC, due_at DESC, id DESC",
            TaskSort::Priority => "priority ASC, id ASC",
            TaskSort::PriorityDesc => "priority DESC, id DESC",
        };
        let count = match labels.split_first() {
            // Labels alone are counted in the label index, without reading the tasks (which
            // both databases otherwise scan whole to join with a common label's rows). Each
            // further label is a join on the index, which SQLite answers with a lookup per row
            // of the first rather than by building a set of its own rows first.
            Some((first, others)) if conditions == "user_id = $1" && filter.q.is_none() => {
                let joins = others.iter().enumerate().map(|(i, label)| {
                    let l = format!("l{}", i + 1);
                    format!(
                        " JOIN task_labels {l} ON {l}.user_id = $1 AND {l}.label = {label} \
                         AND {l}.task_id = l0.task_id"
                    )
                });
                format!(
                    "SELECT COUNT(*) FROM task_labels l0{} WHERE l0.user_id = $1 AND l0.label = {first}",
                    joins.collect::<String>()
                )
            }
            _ => format!("SELECT COUNT(*) FROM tasks WHERE {}", matching(&conditions, &sets, "id")),
        };
        let limit = next(Value::Int(filter.limit.into()), &mut values);
        let offset = next(Value::Int(i64::try_from(filter.offset).unwrap_or(i64::MAX)), &mut values);
        Self { count, values, conditions, sets, order, limit, offset }
    }

    /// The page, with the number of matching tasks in every row's `total`: listing in one
    /// statement, the total an uncorrelated scalar subquery that the database evaluates once
    /// (DESIGN.md says why not two statements).
    pub fn page_with_total(&self) -> String {
        self.page(&format!(", ({}) AS total", self.count), "id")
    }

    /// Whether the filter selects from a side index (a label, or a search index).
    pub fn has_sets(&self) -> bool {
        !self.sets.is_empty()
    }

    /// The page alone, testing each set as `id IN (...)` or as `+id IN (...)`. With `+id` (the
    /// same value, but no index on it) the page walks the sort's index and keeps the tasks in
    /// the sets, stopping after a page: for a set of thousands, rather than reading and
    /// sorting them all.
    pub fn page_alone(&self, id: &str) -> String {
        self.page("", id)
    }

    /// A page of the task columns and `more` columns, each set tested as `id IN (...)`.
    fn page(&self, more: &str, id: &str) -> String {
        let Self { conditions, sets, order, limit, offset, .. } = self;
        format!(
            "SELECT {}{more} FROM tasks WHERE {} ORDER BY {order} LIMIT {limit} OFFSET {offset}",
            task_columns!(),
            matching(conditions, sets, id)
        )
    }

    /// The values the count binds.
    pub fn count_values(&self) -> &[Value] {
        &self.values[..self.values.len() - 2]
    }
}

/// `conditions`, and each set tested as `id IN (set)`.
fn matching(conditions: &str, sets: &[String], id: &str) -> String {
    sets.iter().fold(conditions.to_owned(), |all, set| format!("{all} AND {id} IN ({set})"))
}

/// Binds listing [`Value`]s, in order, to a page or a count query (two types with the same
/// `bind`).
macro_rules! bind {
    ($query:expr, $values:expr) => {{
        let mut query = $query;
        for value in $values {
            query = match value {
                Value::Int(v) => query.bind(*v),
                Value::Text(v) => query.bind(v.as_str()),
                Value::Time(v) => query.bind(*v),
            };
        }
        query
    }};
}
pub(super) use bind;

/// `text` as a literal in a LIKE pattern with `ESCAPE '\'`: `%`, `_` and `\` match only
/// themselves.
pub fn like_literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
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
    due_at: Option<DateTime<Utc>>,
    priority: i16,
    labels: String,
    completed_at: Option<DateTime<Utc>>,
    version: i64,
}

impl TaskRow {
    /// The task's id.
    pub fn id(&self) -> i64 {
        self.id
    }
}

impl TryFrom<TaskRow> for Task {
    type Error = StoreError;

    fn try_from(row: TaskRow) -> Result<Self, StoreError> {
        let bad = |what: String| StoreError::Internal(format!("task {}: {what}", row.id));
        Ok(Task {
            id: row.id,
            title: row.title,
            description: row.description,
            status: row.status.parse().map_err(|e| bad(format!("{e}")))?,
            user_id: row.user_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
            due_at: row.due_at,
            priority: Priority::from_rank(row.priority)
                .ok_or_else(|| bad(format!("priority {}", row.priority)))?,
            labels: serde_json::from_str(&row.labels).map_err(|e| bad(format!("labels: {e}")))?,
            completed_at: row.completed_at,
            version: row.version,
        })
    }
}

/// Labels as the `labels` column holds them.
pub fn labels_json(labels: &[String]) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "[]".to_owned())
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
    listed(rows.into_iter().map(|row| row.task), total)
}

/// Listed rows as tasks, and the number of matching tasks.
pub fn listed(rows: impl IntoIterator<Item = TaskRow>, total: i64) -> Result<(Vec<Task>, u64), StoreError> {
    let tasks = rows.into_iter().map(Task::try_from).collect::<Result<_, _>>()?;
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
