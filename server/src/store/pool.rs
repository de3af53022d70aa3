//! The SQL connection pool: deadpool's managed pool around plain sqlx connections.
//!
//! Why not `sqlx::Pool`: it sends a ping (PostgreSQL: `Sync`, then wait for `ReadyForQuery`;
//! SQLite: a hop to the connection's worker thread) every time a connection goes back to the
//! pool, and by default another one every time it comes out. On a one-query request that is
//! two extra round trips to the database for one useful one; on the list benchmark the release
//! ping alone cost ~15 % of throughput, and sqlx offers no switch for it (0.8 and 0.9 alike).
//!
//! This pool tests a connection only when there is a reason to doubt it:
//! - it sat idle for [`PING_AFTER_IDLE`] or more (the database may have restarted meanwhile);
//! - its last use did not settle: a query failed with anything but a plain database error
//!   (I/O, protocol, timeout), or the future using it was dropped mid-query. The ping then
//!   also drains what that query left on the wire, as sqlx's own release ping does;
//! - another connection was lost (I/O, or PostgreSQL's connection exceptions and shutdowns)
//!   since this one was last tested: a database that restarted has cut them all, so each is
//!   tested once rather than each failing a request. A database that is only slow or busy (a
//!   statement timeout, a lock) does not count: pinging every connection then would add load.
//!
//! A connection whose ping fails is dropped and a new one is opened in its place. Connections
//! idle for [`IDLE_TIMEOUT`] are closed by a background task, so a quiet server holds none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleResult};
use deadpool::Runtime;
use sqlx::{ConnectOptions, Connection};

use super::{StoreError, BACKEND_TIMEOUT};

/// A connection idle at least this long is pinged before it is handed out.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

/// A connection idle this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How often idle connections are looked for.
const REAP_INTERVAL: Duration = Duration::from_secs(30);

/// Opens and tests connections of one database.
pub struct Manager<C: Connection> {
    options: C::Options,
    /// How many connections have been lost, counted by their users (see the module docs).
    doubts: Arc<AtomicU64>,
}

/// A pooled connection and whether its last use settled (see the module docs).
pub struct Slot<C> {
    conn: C,
    settled: bool,
    /// The pool's count of doubts when this connection was last opened or tested.
    tested_at: u64,
    doubts: Arc<AtomicU64>,
}

impl<C: Connection> managed::Manager for Manager<C> {
    type Type = Slot<C>;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<Slot<C>, sqlx::Error> {
        let tested_at = self.doubts.load(Ordering::Acquire);
        let conn = self.options.connect().await?;
        Ok(Slot { conn, settled: true, tested_at, doubts: Arc::clone(&self.doubts) })
    }

    async fn recycle(&self, slot: &mut Slot<C>, metrics: &Metrics) -> RecycleResult<sqlx::Error> {
        let doubts = self.doubts.load(Ordering::Acquire);
        if !slot.settled || metrics.last_used() >= PING_AFTER_IDLE || slot.tested_at < doubts {
            slot.conn.ping().await?;
            slot.settled = true;
            slot.tested_at = doubts;
        }
        Ok(())
    }
}

/// A pool of connections to one SQL database.
pub struct SqlPool<C: Connection> {
    pool: managed::Pool<Manager<C>>,
}

impl<C: Connection> Clone for SqlPool<C> {
    fn clone(&self) -> Self {
        Self { pool: self.pool.clone() }
    }
}

impl<C: Connection> std::fmt::Debug for SqlPool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlPool").field("status", &self.pool.status()).finish()
    }
}

impl<C: Connection + 'static> SqlPool<C> {
    /// A pool of at most `max_size` connections; none is opened until one is asked for.
    /// Waiting for a free connection, opening one and testing one are each bounded by
    /// [`BACKEND_TIMEOUT`]. Must be called inside the Tokio runtime (it starts the reaper).
    pub fn new(options: C::Options, max_size: u32) -> Result<Self, StoreError> {
        let pool = managed::Pool::builder(Manager { options, doubts: Arc::default() })
            .max_size(max_size as usize)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(BACKEND_TIMEOUT))
            .create_timeout(Some(BACKEND_TIMEOUT))
            .recycle_timeout(Some(BACKEND_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Internal(format!("database pool: {e}")))?;
        let weak = pool.weak();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REAP_INTERVAL).await;
                let Some(pool) = weak.upgrade() else { break };
                pool.retain(|_, metrics| metrics.last_used() < IDLE_TIMEOUT);
            }
        });
        Ok(Self { pool })
    }

    /// A connection, tested first if there is reason to doubt it.
    pub async fn get(&self) -> Result<Conn<C>, StoreError> {
        match self.pool.get().await {
            Ok(slot) => Ok(Conn { slot }),
            Err(PoolError::Backend(err)) => Err(super::sql::map_err(err)),
            Err(PoolError::Timeout(_)) => {
                Err(StoreError::Unavailable("timed out waiting for a database connection".to_owned()))
            }
            Err(PoolError::Closed) => Err(StoreError::Unavailable("the database pool is closed".to_owned())),
            Err(err) => Err(StoreError::Internal(format!("database pool: {err}"))),
        }
    }

    /// Connections open, and how many of them are idle.
    pub fn status(&self) -> (u32, usize) {
        let status = self.pool.status();
        (u32::try_from(status.size).unwrap_or(u32::MAX), status.available)
    }
}

/// A connection out of the pool; it goes back when dropped. Each use is [`Conn::conn`], then
/// [`Conn::settle`] with the result.
pub struct Conn<C: Connection> {
    slot: Object<Manager<C>>,
}

impl<C: Connection> Conn<C> {
    /// The connection, marked unsettled until [`Conn::settle`] sees how its use ended.
    pub fn conn(&mut self) -> &mut C {
        self.slot.settled = false;
        &mut self.slot.conn
    }

    /// Records how the last use ended and maps its error: the connection is trusted again
    /// after a success or a database's own error (a constraint, say); anything else gets it
    /// pinged before its next use.
    pub fn settle<T>(&mut self, result: Result<T, sqlx::Error>) -> Result<T, StoreError> {
        match result {
            Ok(value) => {
                self.slot.settled = true;
                Ok(value)
            }
            Err(err) => {
                let from_database = matches!(err, sqlx::Error::Database(_));
                if super::sql::connection_lost(&err) {
                    self.slot.doubts.fetch_add(1, Ordering::AcqRel);
                }
                let err = super::sql::map_err(err);
                // "terminating connection" and its kin are database errors too.
                self.slot.settled = from_database && !matches!(err, StoreError::Unavailable(_));
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::postgres::PgConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{PgConnection, SqliteConnection};

    use super::*;

    async fn scalar<C>(conn: &mut Conn<C>, sql: &'static str) -> Result<i64, StoreError>
    where
        C: Connection,
        for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
        i64: sqlx::Type<C::Database> + for<'r> sqlx::Decode<'r, C::Database>,
        (i64,): for<'r> sqlx::FromRow<'r, <C::Database as sqlx::Database>::Row>,
        for<'q> <C::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, C::Database>,
    {
        let result = sqlx::query_scalar::<_, i64>(sql).fetch_one(conn.conn()).await;
        conn.settle(result)
    }

    #[tokio::test]
    async fn sqlite_connection_dropped_mid_query_answers_the_next_query_right() {
        let dir = tempfile::tempdir().unwrap();
        let options =
            SqliteConnectOptions::new().filename(dir.path().join("pool.db")).create_if_missing(true);
        let pool = SqlPool::<SqliteConnection>::new(options, 1).unwrap();
        let mut conn = pool.get().await.unwrap();
        let slow = sqlx::query_scalar::<_, i64>(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) \
             SELECT count(*) FROM c",
        )
        .fetch_one(conn.conn());
        assert!(
            tokio::time::timeout(Duration::from_millis(20), slow).await.is_err(),
            "the query was cut short"
        );
        drop(conn);

        let mut conn = pool.get().await.unwrap();
        assert_eq!(scalar(&mut conn, "SELECT 41 + 1").await.unwrap(), 42);
        assert_eq!(pool.status(), (1, 0));
        drop(conn);
        assert_eq!(pool.status(), (1, 1));
    }

    #[tokio::test]
    async fn postgres_connections_cut_short_or_killed_are_drained_or_replaced() {
        let Some(url) = crate::store::test_postgres_url() else { return };
        let pool = SqlPool::<PgConnection>::new(PgConnectOptions::from_str(&url).unwrap(), 1).unwrap();

        // Dropped mid-query: the next user of the connection gets its own answer, not the
        // rest of the abandoned one.
        let mut conn = pool.get().await.unwrap();
        let slow = sqlx::query("SELECT pg_sleep(0.3)").execute(conn.conn());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slow).await.is_err(),
            "the query was cut short"
        );
        drop(conn);
        let mut conn = pool.get().await.unwrap();
        assert_eq!(scalar(&mut conn, "SELECT 42::int8").await.unwrap(), 42);
        let pid = scalar(&mut conn, "SELECT pg_backend_pid()::int8").await.unwrap();
        drop(conn);

        // Killed while idle in the pool: it is handed out untested (it was fine a moment ago),
        // its query fails as unavailable, and it is replaced before the next use.
        let mut admin = PgConnection::connect(&url).await.unwrap();
        sqlx::query("SELECT pg_terminate_backend($1::int4)")
            .bind(pid as i32)
            .execute(&mut admin)
            .await
            .unwrap();
        let mut conn = pool.get().await.unwrap();
        assert!(matches!(scalar(&mut conn, "SELECT 1::int8").await, Err(StoreError::Unavailable(_))));
        drop(conn);
        let mut conn = pool.get().await.unwrap();
        let new_pid = scalar(&mut conn, "SELECT pg_backend_pid()::int8").await.unwrap();
        assert_ne!(new_pid, pid, "the dead connection was replaced");
        assert_eq!(pool.status().0, 1, "never more than max_size");
    }

    /// A database restart cuts every connection: once one use has failed for it, the others
    /// are tested before their next use, so only that one request fails.
    #[tokio::test]
    async fn postgres_connections_all_cut_fail_one_request_not_one_each() {
        let Some(url) = crate::store::test_postgres_url() else { return };
        let pool = SqlPool::<PgConnection>::new(PgConnectOptions::from_str(&url).unwrap(), 3).unwrap();
        let (mut a, mut b, mut c) =
            (pool.get().await.unwrap(), pool.get().await.unwrap(), pool.get().await.unwrap());
        let mut pids = Vec::new();
        for conn in [&mut a, &mut b, &mut c] {
            pids.push(scalar(conn, "SELECT pg_backend_pid()::int8").await.unwrap());
        }
        drop((a, b, c));
        let mut admin = PgConnection::connect(&url).await.unwrap();
        for pid in &pids {
            sqlx::query("SELECT pg_terminate_backend($1::int4)")
                .bind(*pid as i32)
                .execute(&mut admin)
                .await
                .unwrap();
        }

        let mut first = pool.get().await.unwrap();
        assert!(matches!(scalar(&mut first, "SELECT 1::int8").await, Err(StoreError::Unavailable(_))));
        drop(first);
        // All three at once, so the two that were not used since the restart are among them.
        let (mut a, mut b, mut c) =
            (pool.get().await.unwrap(), pool.get().await.unwrap(), pool.get().await.unwrap());
        for conn in [&mut a, &mut b, &mut c] {
            let pid = scalar(conn, "SELECT pg_backend_pid()::int8").await.unwrap();
            assert!(!pids.contains(&pid), "a connection cut by the restart was handed out untested");
        }
    }
}
