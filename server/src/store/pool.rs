//! The SQL connection pool: deadpool's managed pool around plain sqlx connections, used like
//! sqlx's own pool (`query.fetch_optional(&pool)`), one call per statement.
//!
//! Why not `sqlx::Pool`: it pings the database every time a connection goes back to the pool,
//! a round trip per request beside the request's one statement, and offers no switch for it
//! (DESIGN.md). This pool tests a connection only when there is a reason to doubt it:
//! - it sat idle for [`PING_AFTER_IDLE`] or more (the database may have restarted meanwhile);
//! - its last use did not end cleanly: a statement that failed with anything but a plain
//!   database error, one whose future was dropped mid-way (the ping then drains what it left
//!   on the wire, as sqlx's own release ping does), or any use through [`SqlPool::acquire`]
//!   that did not end with [`Pooled::release`];
//! - another connection was lost since this one was last tested: a database that restarted
//!   has cut them all, so each is tested once rather than each failing a request.
//!
//! A connection whose ping fails is replaced. Connections idle for [`IDLE_TIMEOUT`] are
//! closed, so a quiet server holds none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleResult};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use futures::FutureExt;
use sqlx::{ConnectOptions, Connection, Either, Execute, Executor};

use super::bounded;
use super::error::connection_lost;

/// A connection idle at least this long is pinged before it is handed out.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

/// A connection idle this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Opens and tests connections of one database.
pub struct Manager<C: Connection> {
    options: C::Options,
    /// How many connections have been lost, counted by their users.
    losses: Arc<AtomicU64>,
}

/// A pooled connection and what is known of it.
pub struct Slot<C> {
    conn: C,
    /// Whether its last use ended cleanly (see the module docs).
    clean: bool,
    /// The pool's count of losses when this connection was last opened or tested.
    tested_at: u64,
}

impl<C: Connection> managed::Manager for Manager<C> {
    type Type = Slot<C>;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<Slot<C>, sqlx::Error> {
        let tested_at = self.losses.load(Ordering::Acquire);
        Ok(Slot { conn: self.options.connect().await?, clean: true, tested_at })
    }

    async fn recycle(&self, slot: &mut Slot<C>, metrics: &Metrics) -> RecycleResult<sqlx::Error> {
        let losses = self.losses.load(Ordering::Acquire);
        if !slot.clean || metrics.last_used() >= PING_AFTER_IDLE || slot.tested_at < losses {
            slot.conn.ping().await?;
            slot.clean = true;
            slot.tested_at = losses;
        }
        Ok(())
    }
}

/// A pool of connections to one SQL database. `&SqlPool` is a sqlx [`Executor`]: each
/// statement takes a connection, runs within the backend timeout and gives it back.
pub struct SqlPool<C: Connection> {
    pool: managed::Pool<Manager<C>>,
    losses: Arc<AtomicU64>,
}

impl<C: Connection> std::fmt::Debug for SqlPool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlPool").field("status", &self.pool.status()).finish()
    }
}

impl<C: Connection + 'static> SqlPool<C> {
    /// A pool of at most `max_size` connections; none is opened until one is asked for. Must
    /// be called inside the Tokio runtime (it starts the task that closes idle connections).
    pub fn new(options: C::Options, max_size: u32) -> Result<Self, sqlx::Error> {
        let losses = Arc::<AtomicU64>::default();
        let manager = Manager { options, losses: losses.clone() };
        let pool = managed::Pool::builder(manager)
            .max_size(max_size as usize)
            .build()
            .map_err(|e| sqlx::Error::Configuration(e.into()))?;
        let weak = pool.weak();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(IDLE_TIMEOUT / 10).await;
                let Some(pool) = weak.upgrade() else { break };
                pool.retain(|_, metrics| metrics.last_used() < IDLE_TIMEOUT);
            }
        });
        Ok(Self { pool, losses })
    }

    /// A connection of its own for several statements (a transaction), tested before its next
    /// use unless [`Pooled::release`] says it ended cleanly. Not bounded by itself: wrap the
    /// work in [`bounded`].
    pub async fn acquire(&self) -> Result<Pooled<C>, sqlx::Error> {
        let mut slot = self.pool.get().await.map_err(pool_error)?;
        slot.clean = false;
        Ok(Pooled { slot, losses: self.losses.clone() })
    }

    /// Connections open, and how many of them are idle.
    pub fn status(&self) -> (usize, usize) {
        let status = self.pool.status();
        (status.size, status.available)
    }

    /// Closes the pool: idle connections now, the others as they come back.
    pub fn close(&self) {
        self.pool.close();
    }

    /// A handle that does not keep the pool alive, for a background task that ends with it.
    pub fn downgrade(&self) -> WeakSqlPool<C> {
        WeakSqlPool { pool: self.pool.weak(), losses: self.losses.clone() }
    }
}

/// See [`SqlPool::downgrade`].
pub struct WeakSqlPool<C: Connection> {
    pool: managed::WeakPool<Manager<C>>,
    losses: Arc<AtomicU64>,
}

impl<C: Connection> WeakSqlPool<C> {
    /// The pool, unless it has been dropped.
    pub fn upgrade(&self) -> Option<SqlPool<C>> {
        Some(SqlPool { pool: self.pool.upgrade()?, losses: self.losses.clone() })
    }
}

fn pool_error(err: PoolError<sqlx::Error>) -> sqlx::Error {
    match err {
        PoolError::Backend(err) => err,
        PoolError::Closed => sqlx::Error::PoolClosed,
        PoolError::Timeout(_) => sqlx::Error::PoolTimedOut,
        other => sqlx::Error::Configuration(other.to_string().into()),
    }
}

/// A connection out of the pool; it goes back when dropped.
pub struct Pooled<C: Connection> {
    slot: Object<Manager<C>>,
    losses: Arc<AtomicU64>,
}

impl<C: Connection> Pooled<C> {
    /// Marks the connection as clean: its last use completed, nothing is left on the wire.
    pub fn release(mut self) {
        self.slot.clean = true;
    }

    /// Gives the connection back after one statement: clean after a success or a database's
    /// own error (a constraint, say); a lost connection makes the pool test the others too.
    fn finish<T>(mut self, result: &Result<T, sqlx::Error>) {
        self.slot.clean = match result {
            Ok(_) => true,
            Err(err) if connection_lost(err) => {
                self.losses.fetch_add(1, Ordering::AcqRel);
                false
            }
            Err(err) => matches!(err, sqlx::Error::Database(_)),
        };
    }
}

impl<C: Connection> std::ops::Deref for Pooled<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.slot.conn
    }
}

impl<C: Connection> std::ops::DerefMut for Pooled<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.slot.conn
    }
}

type QueryResult<C> = <<C as Connection>::Database as sqlx::Database>::QueryResult;
type Row<C> = <<C as Connection>::Database as sqlx::Database>::Row;

impl<'p, C> Executor<'p> for &'p SqlPool<C>
where
    C: Connection + 'static,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
{
    type Database = C::Database;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<QueryResult<C>, Row<C>>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Self::Database>,
    {
        // Collected before they are handed on, so the connection goes back as soon as the
        // statement is done: this API's results are a page of rows at most.
        let all = bounded(async move {
            let mut pooled = self.acquire().await?;
            let result = pooled.fetch_many(query).try_collect::<Vec<_>>().await;
            pooled.finish(&result);
            result
        });
        futures::stream::once(all)
            .map_ok(|all| futures::stream::iter(all.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<Row<C>>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Self::Database>,
    {
        bounded(async move {
            let mut pooled = self.acquire().await?;
            let result = pooled.fetch_optional(query).await;
            pooled.finish(&result);
            result
        })
        .boxed()
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [<Self::Database as sqlx::Database>::TypeInfo],
    ) -> BoxFuture<'e, Result<<Self::Database as sqlx::Database>::Statement<'q>, sqlx::Error>>
    where
        'p: 'e,
    {
        bounded(async move {
            let mut pooled = self.acquire().await?;
            let result = pooled.prepare_with(sql, parameters).await;
            pooled.finish(&result);
            result
        })
        .boxed()
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Self::Database>, sqlx::Error>>
    where
        'p: 'e,
    {
        bounded(async move {
            let mut pooled = self.acquire().await?;
            let result = pooled.describe(sql).await;
            pooled.finish(&result);
            result
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::postgres::PgConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{PgConnection, SqliteConnection};

    use super::*;

    #[tokio::test]
    async fn sqlite_connection_dropped_mid_query_answers_the_next_query_right() {
        let dir = tempfile::tempdir().unwrap();
        let options =
            SqliteConnectOptions::new().filename(dir.path().join("pool.db")).create_if_missing(true);
        let pool = SqlPool::<SqliteConnection>::new(options, 1).unwrap();
        let slow = sqlx::query_scalar::<_, i64>(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) \
             SELECT count(*) FROM c",
        )
        .fetch_one(&pool);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), slow).await.is_err(),
            "the query was cut short"
        );

        let answer: i64 = sqlx::query_scalar("SELECT 41 + 1").fetch_one(&pool).await.unwrap();
        assert_eq!(answer, 42);
        assert_eq!(pool.status(), (1, 1));
    }

    #[tokio::test]
    async fn postgres_connections_cut_short_or_killed_are_drained_or_replaced() {
        let Some(url) = crate::store::test_postgres_url() else { return };
        let pool = SqlPool::<PgConnection>::new(PgConnectOptions::from_str(&url).unwrap(), 1).unwrap();

        // Dropped mid-query: the next user of the connection gets its own answer, not the
        // rest of the abandoned one.
        let slow = sqlx::query("SELECT pg_sleep(0.3)").execute(&pool);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slow).await.is_err(),
            "the query was cut short"
        );
        let answer: i64 = sqlx::query_scalar("SELECT 42::int8").fetch_one(&pool).await.unwrap();
        assert_eq!(answer, 42);
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&pool).await.unwrap();

        // Killed while idle in the pool: it is handed out untested (it was fine a moment ago),
        // its statement fails as a lost connection, and it is replaced before the next use.
        let mut admin = PgConnection::connect(&url).await.unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&mut admin).await.unwrap();
        let err = sqlx::query("SELECT 1").execute(&pool).await.unwrap_err();
        assert!(connection_lost(&err), "{err}");
        let new_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&pool).await.unwrap();
        assert_ne!(new_pid, pid, "the dead connection was replaced");
        assert_eq!(pool.status().0, 1, "never more than max_size");
    }

    /// A database restart cuts every connection: once one use has failed for it, the others
    /// are tested before their next use, so only that one request fails.
    #[tokio::test]
    async fn postgres_connections_all_cut_fail_one_request_not_one_each() {
        let Some(url) = crate::store::test_postgres_url() else { return };
        let pool = SqlPool::<PgConnection>::new(PgConnectOptions::from_str(&url).unwrap(), 3).unwrap();
        let pid = "SELECT pg_backend_pid(), pg_sleep(0.05)::text";
        let three = || {
            futures::future::join_all(
                (0..3).map(|_| sqlx::query_as::<_, (i32, String)>(pid).fetch_one(&pool)),
            )
        };
        let pids: Vec<i32> = three().await.into_iter().map(|r| r.unwrap().0).collect();
        assert_eq!(pool.status(), (3, 3), "three connections, all back");
        let mut admin = PgConnection::connect(&url).await.unwrap();
        for pid in &pids {
            sqlx::query("SELECT pg_terminate_backend($1)").bind(*pid).execute(&mut admin).await.unwrap();
        }

        assert!(sqlx::query("SELECT 1").execute(&pool).await.is_err(), "the first use meets the cut");
        // All three at once, so the two that were not used since the restart are among them.
        for answer in three().await {
            let pid = answer.expect("tested and replaced, not failed").0;
            assert!(!pids.contains(&pid), "a connection cut by the restart was handed out untested");
        }
    }
}
