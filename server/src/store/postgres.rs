//! The store on PostgreSQL.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rocket::async_trait;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tasklane::types::{NewTask, Task, TaskStatus, TaskUpdate, User};

use super::error::passing_code;
use super::pool::SqlPool;
use super::sql::{
    self, bind, CredentialsRow, FeedRow, KeyRow, ListRow, Listing, Search, TaskRow, UserRow, Value,
};
use super::{
    bounded, Claim, Feed, IdempotencyStore, Replay, Rotation, SessionStore, Store, StoreError, TaskFilter,
    UserCredentials, BACKEND_TIMEOUT,
};

/// Users, tasks and (without Redis) sessions in PostgreSQL.
pub struct Postgres {
    pool: SqlPool<PgConnection>,
}

fn options(url: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url).map_err(|e| StoreError::Internal(e.to_string()))
}

impl Postgres {
    /// A pool of up to `max_connections` on the database at `url`; connections open as needed.
    pub fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        // PostgreSQL cancels what runs longer than a request waits for it, so a statement the
        // client gave up on does not keep its connection or its locks. (Migrations run without.)
        let options = options(url)?.options([("statement_timeout", BACKEND_TIMEOUT.as_millis().to_string())]);
        Ok(Self { pool: SqlPool::new(options, max_connections)? })
    }
}

/// Applies `server/migrations/postgres`, waiting up to `wait` for a database that is unreachable or
/// starting up (each failure logged with its cause), not at all for one that refuses the
/// credentials or does not have the database named.
pub async fn migrate(url: &str, wait: Duration) -> Result<(), StoreError> {
    let options = options(url)?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let err = match bounded(PgConnection::connect_with(&options)).await {
            Ok(connection) => {
                let _ = connection.close().await;
                break;
            }
            Err(err) => err,
        };
        let passing = match &err {
            sqlx::Error::Io(_) => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| passing_code(&code)),
            _ => false,
        };
        if !passing || tokio::time::Instant::now() >= deadline {
            return Err(err.into());
        }
        tracing::warn!(error = %err, "the database does not accept connections yet; trying again");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    sql::migrate::<sqlx::Postgres>(options, sqlx::migrate!("migrations/postgres")).await
}

#[async_trait]
impl Store for Postgres {
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
            .fetch_one(&self.pool)
            .await?;
        Ok(sql::new_user(id, username, now))
    }

    async fn delete_user(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query(sql::DELETE_USER).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn find_credentials(&self, username: &str) -> Result<Option<UserCredentials>, StoreError> {
        let row: Option<CredentialsRow> =
            sqlx::query_as(sql::FIND_CREDENTIALS).bind(username).fetch_optional(&self.pool).await?;
        Ok(row.map(Into::into))
    }

    async fn get_user(&self, id: i64) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(sql::GET_USER).bind(id).fetch_optional(&self.pool).await?;
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
            insert.fetch_one(&self.pool).await?
        } else {
            bounded(async {
                let mut conn = self.pool.acquire().await?;
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
        // Both sides folded by ICU's root locale, as the trigram indexes are.
        let search = |q: &str, n: &str| {
            let condition = format!(
                r#"(lower(title COLLATE "und-x-icu") LIKE {n} ESCAPE '\' OR lower(description COLLATE "und-x-icu") LIKE {n} ESCAPE '\')"#
            );
            (Search::Condition(condition), Value::Text(format!("%{}%", sql::like_literal(&q.to_lowercase()))))
        };
        let listing = Listing::new(user_id, filter, search);
        let text = listing.page_with_total();
        let page = bind!(sqlx::query_as::<_, ListRow>(&text), &listing.values);
        let rows = page.fetch_all(&self.pool).await?;
        sql::page(rows, filter, async {
            let count = bind!(sqlx::query_scalar::<_, i64>(&listing.count), listing.count_values());
            Ok(count.fetch_one(&self.pool).await?)
        })
        .await
    }

    async fn get_task(&self, user_id: i64, id: i64) -> Result<Option<Task>, StoreError> {
        let row: Option<TaskRow> =
            sqlx::query_as(sql::GET_TASK).bind(id).bind(user_id).fetch_optional(&self.pool).await?;
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
            None => statement.fetch_optional(&self.pool).await?,
            // The task and its labels for the filter change together.
            Some(labels) => {
                bounded(async {
                    let mut conn = self.pool.acquire().await?;
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
        Ok(statement.fetch_optional(&self.pool).await?.is_some())
    }

    async fn changes(&self, user_id: i64, since: Option<i64>, limit: u32) -> Result<Feed, StoreError> {
        let (rows, counter): (Vec<FeedRow>, _) = match since {
            // The counter first: every change it counts is committed, so the read after it
            // sees them all.
            None => {
                let counter: i64 =
                    sqlx::query_scalar(sql::USER_CHANGE_SEQ).bind(user_id).fetch_one(&self.pool).await?;
                let rows = sqlx::query_as(sql::FEED_ALL)
                    .bind(user_id)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                (rows, Some(counter))
            }
            Some(since) => {
                let rows = sqlx::query_as(sql::FEED_SINCE)
                    .bind(user_id)
                    .bind(since)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                (rows, None)
            }
        };
        let horizon: Option<i64> =
            sqlx::query_scalar(sql::FEED_HORIZON).bind(user_id).fetch_optional(&self.pool).await?;
        let changes = rows.into_iter().map(FeedRow::into_change).collect::<Result<_, _>>()?;
        Ok(Feed { changes, counter, horizon: horizon.unwrap_or(0) })
    }

    async fn last_change(&self, user_id: i64) -> Result<i64, StoreError> {
        let counter: Option<i64> =
            sqlx::query_scalar(sql::USER_CHANGE_SEQ).bind(user_id).fetch_optional(&self.pool).await?;
        counter.ok_or(StoreError::UserGone)
    }

    async fn prune_tombstones(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        // One statement: the tombstones go and the horizons rise together, or neither.
        let pruned: i64 = sqlx::query_scalar(
            "WITH gone AS (
                 DELETE FROM task_tombstones WHERE (user_id, change_seq) IN (
                     SELECT user_id, change_seq FROM task_tombstones WHERE deleted_at < $1 LIMIT $2)
                 RETURNING user_id, change_seq),
             raised AS (
                 INSERT INTO feed_horizons (user_id, pruned_through)
                 SELECT user_id, max(change_seq) FROM gone GROUP BY user_id
                 ON CONFLICT (user_id)
                 DO UPDATE SET pruned_through = GREATEST(feed_horizons.pruned_through, EXCLUDED.pruned_through))
             SELECT count(*) FROM gone",
        )
        .bind(before)
        .bind(i64::from(batch))
        .fetch_one(&self.pool)
        .await?;
        Ok(pruned.max(0) as u64)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query(sql::PING).execute(&self.pool).await?;
        Ok(())
    }

    fn pool_status(&self) -> (usize, usize) {
        self.pool.status()
    }

    fn close(&self) {
        self.pool.close();
    }
}

#[async_trait]
impl SessionStore for Postgres {
    async fn start_family(
        &self,
        family: &str,
        user_id: i64,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        bounded(async {
            let mut conn = self.pool.acquire().await?;
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
            let mut conn = self.pool.acquire().await?;
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
                // The renewal above is rolled back with the transaction.
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
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
        sqlx::query(sql::REVOKE_FAMILY).bind(family).execute(&self.pool).await?;
        Ok(())
    }
}

#[async_trait]
impl IdempotencyStore for Postgres {
    async fn claim(
        &self,
        user_id: i64,
        key: &str,
        fingerprint: &str,
        in_flight: Duration,
    ) -> Result<Claim, StoreError> {
        let now = super::now();
        sqlx::query(sql::FORGET_EXPIRED_KEYS).bind(user_id).bind(now).execute(&self.pool).await?;
        let claimed: Option<String> = sqlx::query_scalar(sql::CLAIM_KEY)
            .bind(user_id)
            .bind(key)
            .bind(fingerprint)
            .bind(now + in_flight)
            .fetch_optional(&self.pool)
            .await?;
        if claimed.is_some() {
            return Ok(Claim::New);
        }
        let row: Option<KeyRow> =
            sqlx::query_as(sql::GET_KEY).bind(user_id).bind(key).fetch_optional(&self.pool).await?;
        // Gone meanwhile (expired, or released by a failed first request): the client retries.
        Ok(row.map_or(Claim::InFlight { fingerprint: None }, Claim::from))
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
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release(&self, user_id: i64, key: &str) -> Result<(), StoreError> {
        sqlx::query(sql::RELEASE_KEY).bind(user_id).bind(key).execute(&self.pool).await?;
        Ok(())
    }
}
