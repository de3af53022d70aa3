//! The store on SQLite, the embedded default.
//!
//! SQLite has one write lock per database. A connection that finds it taken sleeps in SQLite's
//! busy handler and retries at growing intervals while newcomers may take it first: under 64
//! concurrent writers some waited over a second. So every write goes through one connection
//! of its own, which writers wait for in arrival order (the pool's queue is fair); readers,
//! which WAL lets run beside the writer, use the other pool and do not wait.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rocket::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use tasklane::types::{NewTask, Task, TaskStatus, TaskUpdate, User};

use super::pool::{SqlPool, WeakSqlPool};
use super::sql::{
    self, bind, CredentialsRow, FeedRow, KeyRow, ListRow, Listing, Search, TaskRow, UserRow, Value,
};
use super::{
    bounded, Claim, Feed, IdempotencyStore, Replay, Rotation, SessionStore, Store, StoreError, TaskFilter,
    UserCredentials, BACKEND_TIMEOUT,
};

/// Users, tasks and sessions in a SQLite file (or in memory).
pub struct Sqlite {
    reads: SqlPool<SqliteConnection>,
    writes: SqlPool<SqliteConnection>,
    /// An in-memory database lives only while a connection to it is open, and the pools close
    /// theirs when idle: this one is held for the store's life.
    _keep_alive: Option<tokio::sync::Mutex<SqliteConnection>>,
}

/// The most matches of a label or search filter that are read and sorted whole; past it, a page
/// is found by walking the sort's index. Near this size, on a large account, the two cost about
/// the same.
const SORTED_SET_MAX: i64 = 500;

/// How large the WAL file may grow before [`trim_wal`] empties it (twice the size at which
/// SQLite's own checkpoints start), and how often it looks. The shorter the wait, the shorter
/// the pause of the writes while it runs.
const WAL_LIMIT: u64 = 8 * 1024 * 1024;
const WAL_CHECK_EVERY: Duration = Duration::from_millis(100);

fn options(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    Ok(SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Internal(e.to_string()))?
        .create_if_missing(true)
        // WAL lets readers run beside the one writer; NORMAL is durable across crashes of the
        // process (only an OS crash can lose the last commits), the usual WAL pairing.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        // Other processes on the same file (`migrate`, a second server) queue for the lock.
        .busy_timeout(BACKEND_TIMEOUT)
        .foreign_keys(true))
}

fn in_memory(url: &str) -> bool {
    crate::config::DatabaseUrl::Sqlite(url.to_owned()).sqlite_file().is_none()
}

/// Creates the file if missing and applies `server/migrations/sqlite`.
///
/// The file is made here rather than by SQLite, readable by its owner only, as it holds the
/// password hashes and the sessions (SQLite gives its `-wal` and `-shm` files the same mode);
/// left to SQLite it would get the umask's mode, and a missing directory would be "unable to
/// open database file" without a path. An in-memory database is migrated when it is opened.
pub async fn migrate(url: &str) -> Result<(), StoreError> {
    if in_memory(url) {
        return Ok(());
    }
    let options = options(url)?;
    if !url.contains("mode=ro") {
        // The file as sqlx reads the URL (percent-decoded), not as written.
        super::create_owner_only(options.get_filename()).map_err(StoreError::Internal)?;
    }
    sql::migrate::<sqlx::Sqlite>(options, sqlx::migrate!("migrations/sqlite")).await
}

impl Sqlite {
    /// Pools on the database at `url`: `max_connections` readers and one writer.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = options(url)?;
        let keep_alive = if in_memory(url) {
            // `sqlite::memory:` is one database shared by the connections of these options
            // (sqlx names it), which exists from this connection on, and starts empty.
            let connection = options.connect().await?;
            sql::migrate::<sqlx::Sqlite>(options.clone(), sqlx::migrate!("migrations/sqlite")).await?;
            Some(tokio::sync::Mutex::new(connection))
        } else {
            None
        };
        let writes = SqlPool::new(options.clone(), 1)?;
        if keep_alive.is_none() {
            let mut wal = options.get_filename().as_os_str().to_owned();
            wal.push("-wal");
            tokio::spawn(trim_wal(PathBuf::from(wal), writes.downgrade()));
        }
        Ok(Self { reads: SqlPool::new(options, max_connections)?, writes, _keep_alive: keep_alive })
    }
}

/// Empties the WAL file whenever it has outgrown [`WAL_LIMIT`], until the store is dropped.
///
/// SQLite's own checkpoints copy the WAL into the database, but start it over only at a moment
/// when no reader is using it. Under a steady mix of reads and writes that moment never comes,
/// and the file grows without bound (gigabytes a minute under the write benchmarks), as does
/// its index, which every connection maps into memory; nor does SQLite shrink the file while
/// connections to it are open. A `TRUNCATE` checkpoint waits for the readers instead, and cuts
/// the file to nothing. It runs on the writer's own connection, so no write competes with it;
/// writes wait while it runs.
async fn trim_wal(wal: PathBuf, writes: WeakSqlPool<SqliteConnection>) {
    loop {
        tokio::time::sleep(WAL_CHECK_EVERY).await;
        let Some(writes) = writes.upgrade() else { return };
        if tokio::fs::metadata(&wal).await.map_or(true, |file| file.len() <= WAL_LIMIT) {
            continue;
        }
        // The row is (blocked by a reader, frames in the WAL, frames copied).
        let checkpoint: Result<(i64, i64, i64), _> =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&writes).await;
        match checkpoint {
            Ok((0, _, _)) => {}
            Ok(_) => tracing::warn!("a reader kept the SQLite WAL from being emptied; trying again"),
            Err(sqlx::Error::PoolClosed) => return,
            Err(err) => tracing::warn!(error = %err, "could not empty the SQLite WAL; trying again"),
        }
    }
}

#[async_trait]
impl Store for Sqlite {
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        let id: i64 = sqlx::query_scalar(sql::INSERT_USER)
            .bind(username)
            .bind(password_hash)
            .bind(now)
            .fetch_one(&self.writes)
            .await?;
        Ok(sql::new_user(id, username, now))
    }

    async fn delete_user(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query(sql::DELETE_USER).bind(id).execute(&self.writes).await?;
        Ok(())
    }

    async fn find_credentials(&self, username: &str) -> Result<Option<UserCredentials>, StoreError> {
        let row: Option<CredentialsRow> =
            sqlx::query_as(sql::FIND_CREDENTIALS).bind(username).fetch_optional(&self.reads).await?;
        Ok(row.map(Into::into))
    }

    async fn get_user(&self, id: i64) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(sql::GET_USER).bind(id).fetch_optional(&self.reads).await?;
        Ok(row.map(Into::into))
    }

    async fn create_task(
        &self,
        user_id: i64,
        task: &NewTask,
        now: DateTime<Utc>,
    ) -> Result<Task, StoreError> {
        let labels = task.labels.clone().unwrap_or_default();
        let status = task.status.unwrap_or_default();
        let insert = sqlx::query_as(sql::INSERT_TASK)
            .bind(user_id)
            .bind(&task.title)
            .bind(&task.description)
            .bind(status.as_str())
            .bind(now)
            .bind(task.due_at)
            .bind(task.priority.unwrap_or_default().rank())
            .bind(sql::labels_json(&labels))
            .bind((status == TaskStatus::Done).then_some(now));
        let row: TaskRow = if labels.is_empty() {
            insert.fetch_one(&self.writes).await?
        } else {
            bounded(async {
                let mut conn = self.writes.acquire().await?;
                let mut tx = conn.begin().await?;
                let row: TaskRow = insert.fetch_one(&mut *tx).await?;
                for label in &labels {
                    let label = label.to_lowercase();
                    sqlx::query(sql::INSERT_LABEL)
                        .bind(row.id())
                        .bind(user_id)
                        .bind(label)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                conn.release();
                Ok::<_, StoreError>(row)
            })
            .await?
        };
        row.try_into()
    }

    async fn list_tasks(&self, user_id: i64, filter: &TaskFilter) -> Result<(Vec<Task>, u64), StoreError> {
        // The trigram index answers a phrase of 3 characters or more (folding case by Unicode's
        // rules); a shorter one is a LIKE over the user's tasks, which folds ASCII only.
        let search = |q: &str, n: &str| {
            if q.chars().count() >= 3 {
                let phrase = format!("\"{}\"", q.replace('"', "\"\""));
                (
                    Search::Ids(format!("SELECT rowid FROM tasks_search WHERE tasks_search MATCH {n}")),
                    Value::Text(phrase),
                )
            } else {
                let condition = format!(r"(title LIKE {n} ESCAPE '\' OR description LIKE {n} ESCAPE '\')");
                (Search::Condition(condition), Value::Text(format!("%{}%", sql::like_literal(q))))
            }
        };
        let listing = Listing::new(user_id, filter, search);
        let count = || bind!(sqlx::query_scalar::<_, i64>(&listing.count), listing.count_values());
        if !listing.has_sets() {
            let text = listing.page_with_total();
            let page = bind!(sqlx::query_as::<_, ListRow>(&text), &listing.values);
            let rows = page.fetch_all(&self.reads).await?;
            return sql::page(rows, filter, async { Ok(count().fetch_one(&self.reads).await?) }).await;
        }
        // A label or search selects a set of ids, which SQLite would read and sort whole. Counted
        // first, the set's size chooses: a small set is read and sorted, a larger one is found
        // by walking the sort's index, where a page of it comes soon. One read transaction, so
        // that the total and the page are of one snapshot.
        let (total, rows) = bounded(async {
            let mut conn = self.reads.acquire().await?;
            let mut tx = conn.begin().await?;
            let total = count().fetch_one(&mut *tx).await?;
            let rows: Vec<TaskRow> = if u64::try_from(total).unwrap_or(0) > filter.offset {
                let id = if total <= SORTED_SET_MAX { "id" } else { "+id" };
                let text = listing.page_alone(id);
                bind!(sqlx::query_as(&text), &listing.values).fetch_all(&mut *tx).await?
            } else {
                Vec::new()
            };
            tx.commit().await?;
            conn.release();
            Ok::<_, StoreError>((total, rows))
        })
        .await?;
        sql::listed(rows, total)
    }

    async fn get_task(&self, user_id: i64, id: i64) -> Result<Option<Task>, StoreError> {
        let row: Option<TaskRow> =
            sqlx::query_as(sql::GET_TASK).bind(id).bind(user_id).fetch_optional(&self.reads).await?;
        row.map(Task::try_from).transpose()
    }

    async fn update_task(
        &self,
        user_id: i64,
        id: i64,
        update: &TaskUpdate,
        now: DateTime<Utc>,
        versions: Option<&[i64]>,
    ) -> Result<Option<Task>, StoreError> {
        let text = sql::update_task(versions.map(<[i64]>::len));
        let mut statement = sqlx::query_as(&text)
            .bind(id)
            .bind(user_id)
            .bind(&update.title)
            .bind(update.description.is_some())
            .bind(update.description.clone().flatten())
            .bind(update.status.map(|s| s.as_str()))
            .bind(update.due_at.is_some())
            .bind(update.due_at.flatten())
            .bind(update.priority.map(|p| p.rank()))
            .bind(update.labels.as_deref().map(sql::labels_json))
            .bind(now);
        for version in versions.unwrap_or_default() {
            statement = statement.bind(*version);
        }
        let row: Option<TaskRow> = match &update.labels {
            None => statement.fetch_optional(&self.writes).await?,
            // The task and its labels for the filter change together.
            Some(labels) => {
                bounded(async {
                    let mut conn = self.writes.acquire().await?;
                    let mut tx = conn.begin().await?;
                    let row: Option<TaskRow> = statement.fetch_optional(&mut *tx).await?;
                    if row.is_some() {
                        sqlx::query(sql::DELETE_LABELS).bind(id).execute(&mut *tx).await?;
                        for label in labels {
                            let label = label.to_lowercase();
                            sqlx::query(sql::INSERT_LABEL)
                                .bind(id)
                                .bind(user_id)
                                .bind(label)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    tx.commit().await?;
                    conn.release();
                    Ok::<_, StoreError>(row)
                })
                .await?
            }
        };
        row.map(Task::try_from).transpose()
    }

    async fn delete_task(&self, user_id: i64, id: i64, versions: Option<&[i64]>) -> Result<bool, StoreError> {
        let text = sql::delete_task(versions.map(<[i64]>::len));
        let mut statement = sqlx::query_scalar::<_, i64>(&text).bind(id).bind(user_id);
        for version in versions.unwrap_or_default() {
            statement = statement.bind(*version);
        }
        Ok(statement.fetch_optional(&self.writes).await?.is_some())
    }

    async fn changes(&self, user_id: i64, since: Option<i64>, limit: u32) -> Result<Feed, StoreError> {
        let (rows, counter): (Vec<FeedRow>, _) = match since {
            // The counter first: every change it counts is committed, so the read after it
            // sees them all.
            None => {
                let counter: i64 =
                    sqlx::query_scalar(sql::USER_CHANGE_SEQ).bind(user_id).fetch_one(&self.reads).await?;
                let rows = sqlx::query_as(sql::FEED_ALL)
                    .bind(user_id)
                    .bind(i64::from(limit))
                    .fetch_all(&self.reads)
                    .await?;
                (rows, Some(counter))
            }
            Some(since) => {
                let rows = sqlx::query_as(sql::FEED_SINCE)
                    .bind(user_id)
                    .bind(since)
                    .bind(i64::from(limit))
                    .fetch_all(&self.reads)
                    .await?;
                (rows, None)
            }
        };
        let horizon: Option<i64> =
            sqlx::query_scalar(sql::FEED_HORIZON).bind(user_id).fetch_optional(&self.reads).await?;
        let changes = rows.into_iter().map(FeedRow::into_change).collect::<Result<_, _>>()?;
        Ok(Feed { changes, counter, horizon: horizon.unwrap_or(0) })
    }

    async fn last_change(&self, user_id: i64) -> Result<i64, StoreError> {
        let counter: Option<i64> =
            sqlx::query_scalar(sql::USER_CHANGE_SEQ).bind(user_id).fetch_optional(&self.reads).await?;
        counter.ok_or(StoreError::UserGone)
    }

    async fn prune_tombstones(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        // One transaction on the one writer: the same tombstones are counted into the horizons
        // and deleted, and the horizons rise with their deletion.
        bounded(async {
            let mut conn = self.writes.acquire().await?;
            let mut tx = conn.begin().await?;
            sqlx::query(
                "INSERT INTO feed_horizons (user_id, pruned_through)
                 SELECT user_id, max(change_seq) FROM (
                     SELECT user_id, change_seq FROM task_tombstones WHERE deleted_at < $1 ORDER BY deleted_at LIMIT $2)
                 WHERE true GROUP BY user_id
                 ON CONFLICT (user_id) DO UPDATE SET pruned_through = max(pruned_through, excluded.pruned_through)",
            )
            .bind(before)
            .bind(i64::from(batch))
            .execute(&mut *tx)
            .await?;
            let gone = sqlx::query(
                "DELETE FROM task_tombstones WHERE rowid IN (
                     SELECT rowid FROM task_tombstones WHERE deleted_at < $1 ORDER BY deleted_at LIMIT $2)",
            )
            .bind(before)
            .bind(i64::from(batch))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            conn.release();
            Ok::<_, StoreError>(gone.rows_affected())
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query(sql::PING).execute(&self.reads).await?;
        Ok(())
    }

    fn pool_status(&self) -> (usize, usize) {
        let (reads, reads_idle) = self.reads.status();
        let (writes, writes_idle) = self.writes.status();
        (reads + writes, reads_idle + writes_idle)
    }

    fn close(&self) {
        self.reads.close();
        self.writes.close();
    }
}

#[async_trait]
impl SessionStore for Sqlite {
    async fn start_family(
        &self,
        family: &str,
        user_id: i64,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        bounded(async {
            let mut conn = self.writes.acquire().await?;
            let mut tx = conn.begin().await?;
            sqlx::query(sql::DELETE_EXPIRED_FAMILIES)
                .bind(user_id)
                .bind(super::now())
                .execute(&mut *tx)
                .await?;
            sqlx::query(sql::INSERT_FAMILY)
                .bind(family)
                .bind(user_id)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(sql::INSERT_TOKEN).bind(jti).bind(family).bind(expires_at).execute(&mut *tx).await?;
            tx.commit().await?;
            conn.release();
            Ok(())
        })
        .await
    }

    async fn rotate(
        &self,
        family: &str,
        old_jti: &str,
        new_jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Rotation, StoreError> {
        bounded(async {
            let mut conn = self.writes.acquire().await?;
            let mut tx = conn.begin().await?;
            let live: Option<String> = sqlx::query_scalar(sql::RENEW_FAMILY)
                .bind(family)
                .bind(expires_at)
                .bind(super::now())
                .fetch_optional(&mut *tx)
                .await?;
            if live.is_none() {
                return Ok(Rotation::FamilyRevoked);
            }
            let consumed: Option<String> = sqlx::query_scalar(sql::CONSUME_TOKEN)
                .bind(old_jti)
                .bind(family)
                .fetch_optional(&mut *tx)
                .await?;
            if consumed.is_none() {
                return Ok(Rotation::Reused);
            }
            sqlx::query(sql::INSERT_TOKEN)
                .bind(new_jti)
                .bind(family)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            conn.release();
            Ok(Rotation::Rotated)
        })
        .await
    }

    async fn is_active(&self, family: &str, jti: &str) -> Result<bool, StoreError> {
        let found: Option<String> = sqlx::query_scalar(sql::TOKEN_IS_ACTIVE)
            .bind(jti)
            .bind(family)
            .bind(super::now())
            .fetch_optional(&self.reads)
            .await?;
        Ok(found.is_some())
    }

    async fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
        sqlx::query(sql::REVOKE_FAMILY).bind(family).execute(&self.writes).await?;
        Ok(())
    }
}

#[async_trait]
impl IdempotencyStore for Sqlite {
    async fn claim(
        &self,
        user_id: i64,
        key: &str,
        fingerprint: &str,
        in_flight: Duration,
    ) -> Result<Claim, StoreError> {
        let now = super::now();
        // One turn at the writer for all three statements: each separate turn queues behind
        // every other writer again.
        bounded(async {
            let mut conn = self.writes.acquire().await?;
            let mut tx = conn.begin().await?;
            sqlx::query(sql::FORGET_EXPIRED_KEYS).bind(user_id).bind(now).execute(&mut *tx).await?;
            let claimed: Option<String> = sqlx::query_scalar(sql::CLAIM_KEY)
                .bind(user_id)
                .bind(key)
                .bind(fingerprint)
                .bind(now + in_flight)
                .fetch_optional(&mut *tx)
                .await?;
            let claim = if claimed.is_some() {
                Claim::New
            } else {
                let row: Option<KeyRow> =
                    sqlx::query_as(sql::GET_KEY).bind(user_id).bind(key).fetch_optional(&mut *tx).await?;
                // The insert found the row in this same transaction, so it is there; if it were
                // not, "in flight" makes the client retry, which is safe.
                row.map_or(Claim::InFlight { fingerprint: None }, Claim::from)
            };
            tx.commit().await?;
            conn.release();
            Ok::<_, StoreError>(claim)
        })
        .await
    }

    async fn complete(
        &self,
        user_id: i64,
        key: &str,
        answer: &Replay,
        keep: Duration,
    ) -> Result<(), StoreError> {
        sqlx::query(sql::COMPLETE_KEY)
            .bind(user_id)
            .bind(key)
            .bind(i32::from(answer.status))
            .bind(&answer.location)
            .bind(&answer.body)
            .bind(super::now() + keep)
            .execute(&self.writes)
            .await?;
        Ok(())
    }

    async fn release(&self, user_id: i64, key: &str) -> Result<(), StoreError> {
        sqlx::query(sql::RELEASE_KEY).bind(user_id).bind(key).execute(&self.writes).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer waits for the one before it to finish; readers do not wait.
    #[tokio::test]
    async fn writers_take_turns_and_readers_do_not_wait() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("store.db").display());
        migrate(&url).await.unwrap();
        let store = Sqlite::open(&url, 4).await.unwrap();
        let user = store.create_user("someone", "x", Utc::now()).await.unwrap().id;

        let first = store.writes.acquire().await.unwrap();
        let second = store.writes.acquire();
        tokio::pin!(second);
        assert!(futures::poll!(&mut second).is_pending(), "the next writer waits");
        let filter = TaskFilter { limit: 10, ..Default::default() };
        assert_eq!(
            store.list_tasks(user, &filter).await.unwrap().1,
            0,
            "a reader does not wait for the writer"
        );
        drop(first);
        drop(second.await.unwrap());
        store.create_task(user, &NewTask::new("after"), Utc::now()).await.unwrap();
        assert_eq!(store.pool_status(), (2, 2), "the reader's connection and the writer's, both counted");
    }

    /// A WAL that outgrew its limit while a reader kept SQLite from starting it over is emptied
    /// once the reader is done, and what was written stays.
    #[tokio::test]
    async fn an_outgrown_wal_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store.db");
        let url = format!("sqlite:{}", file.display());
        migrate(&url).await.unwrap();
        let store = Sqlite::open(&url, 4).await.unwrap();
        let user = store.create_user("someone", "x", Utc::now()).await.unwrap().id;
        let wal_size = || std::fs::metadata(dir.path().join("store.db-wal")).map_or(0, |wal| wal.len());

        let mut reader = store.reads.acquire().await.unwrap();
        let mut read = reader.begin().await.unwrap();
        sqlx::query("SELECT count(*) FROM tasks").fetch_one(&mut *read).await.unwrap();
        // Twelve MiB of tasks in one statement, so the check cannot run between them.
        let mut writer = store.writes.acquire().await.unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500)
             INSERT INTO tasks (user_id, title, description, created_at, updated_at)
             SELECT $1, 'filler', hex(randomblob(4096)), $2, $2 FROM n",
        )
        .bind(user)
        .bind(Utc::now())
        .execute(&mut *writer)
        .await
        .unwrap();
        writer.release();
        assert!(wal_size() > WAL_LIMIT, "the WAL holds the new pages: {} bytes", wal_size());

        tokio::time::sleep(WAL_CHECK_EVERY * 3).await;
        assert!(wal_size() > WAL_LIMIT, "the reader still uses it");
        read.commit().await.unwrap();
        reader.release();
        let mut waited = Duration::ZERO;
        while wal_size() > WAL_LIMIT && waited < Duration::from_secs(10) {
            tokio::time::sleep(WAL_CHECK_EVERY).await;
            waited += WAL_CHECK_EVERY;
        }
        assert_eq!(wal_size(), 0, "emptied after {waited:?}");
        let filter = TaskFilter { limit: 1, ..Default::default() };
        assert_eq!(store.list_tasks(user, &filter).await.unwrap().1, 1500);
    }
}
