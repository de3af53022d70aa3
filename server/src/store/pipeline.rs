//! Pipelined reads on PostgreSQL: the task reads (`GET /tasks/`, `GET /tasks/{id}`) and the user
//! lookup by id (`/auth/me`, each refresh) go over a few connections that many requests share
//! at once, instead of one pooled connection each.
//!
//! Why: on the list benchmark a pooled connection carries one statement at a time, so every
//! request pays a full round trip of its own: the server writes, wakes a PostgreSQL backend,
//! which reads, answers and sleeps again, and the server reads. With tokio-postgres, requests
//! that share a connection write their statements one after another without waiting for the
//! answers, and the backend reads and answers them in batches: fewer system calls and wake-ups
//! on both sides for the same statements. Measured at 64 concurrent list requests on two cores
//! (bench/RESULTS.md), the server served 19–52 % more list requests per second than the pool in
//! the harness runs (+33 % in the latest, 18,900 against 14,214), with less CPU per request on
//! both sides. sqlx, which the rest of the store uses, cannot share a connection between
//! statements in flight.
//!
//! What it costs: statements on one connection are answered in order, so whatever holds one up
//! (a slow statement, or on busy cores the OS preempting the thread that drives the connection)
//! delays all those behind it. Three things bound that:
//! - a new statement goes to the connection with the fewest in flight;
//! - a read that has waited [`HEDGE_AFTER`] is also sent to the pool, and the first answer wins
//!   ([`Pipelines::hedged`]): under a login storm this kept the list's p99 at 8–33 ms over 11
//!   runs, where it had reached several hundred;
//! - PostgreSQL cancels any statement on these connections that runs longer than
//!   [`BACKEND_TIMEOUT`] (`statement_timeout`), the time a request waits for it anyway.
//!
//! Writes stay on the pool, where each has its connection to itself.
//!
//! On by default, over two connections (`DATABASE_READ_PIPELINES`; `0` keeps reads on the
//! pool); see DESIGN.md.
//!
//! These connections never use TLS. They are used when the database link is not meant to be
//! encrypted: `sslmode=disable`, or the default `prefer` to a loopback address or a Unix
//! socket, where TLS protects nothing. Otherwise (TLS required, or preferred to another host),
//! and for URLs with options tokio-postgres does not know, reads use the pool like the rest.

use std::future::Future;
use std::net::IpAddr;
use std::pin::pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use super::{StoreError, BACKEND_TIMEOUT};

/// The name these connections give PostgreSQL, as seen in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "tasklane-reads";

/// How long a read waits for its pipelined connection before the same read is also sent to
/// the pool (see [`Pipelines::hedged`]). Measured on the login-storm benchmark (bench/RESULTS.md):
/// at 10 ms 15-25 % of reads were sent twice and throughput fell below the pool's; at 40 ms
/// about 1 %, and the list's p99 under the storm stayed at 45-52 ms, where without hedging three
/// runs of four reached 190-306 ms; at 80 ms it stayed at 63-84 ms. Since stuck reads beyond the
/// budget also go to the pool in turn, this delay is what bounds the tail: at 20 ms the storm's
/// p99 was 8-33 ms against 15-48 ms at 40 ms (11 alternating rounds), with at most ~2 % of
/// reads sent twice and no loss of throughput.
pub const HEDGE_AFTER: Duration = Duration::from_millis(20);

/// A few shared connections to one PostgreSQL database, for reads.
pub struct Pipelines {
    config: tokio_postgres::Config,
    links: Box<[Slot]>,
    /// Permits for reads sent to the pool as well (see [`Pipelines::hedged`]).
    hedges: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Pipelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipelines").field("connections", &self.links.len()).finish()
    }
}

/// One connection, opened on first use and again after it breaks.
#[derive(Default)]
struct Slot {
    /// Read by every statement, written only when (re)connecting: a read lock never waits for
    /// another reader, where a mutex would park one worker thread behind the other.
    link: RwLock<Option<Arc<Link>>>,
    /// Held while (re)connecting, so that one request opens the connection and the others wait.
    connecting: tokio::sync::Mutex<()>,
    in_flight: AtomicUsize,
}

/// An open connection and the statements prepared on it.
struct Link {
    client: Client,
    /// Keyed by the address of the `'static` SQL text: a few dozen fixed statements, compared
    /// without hashing or reading the text.
    statements: RwLock<Vec<(usize, Statement)>>,
}

/// Counts a statement in flight on a slot while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pipelines {
    /// `count` shared connections to `url`, or `None` when reads should use the pool instead:
    /// `count` is 0, the URL asks for TLS (see the module docs), or tokio-postgres cannot read
    /// it. At most `hedges` reads at a time are also sent to the pool. Opens nothing yet.
    pub fn new(url: &str, count: usize, hedges: usize) -> Option<Self> {
        if count == 0 {
            return None;
        }
        let mut config = tokio_postgres::Config::from_str(url).ok()?;
        let plaintext = match config.get_ssl_mode() {
            SslMode::Disable => true,
            SslMode::Prefer => config.get_hosts().iter().all(|host| match host {
                Host::Unix(_) => true,
                Host::Tcp(name) => {
                    name == "localhost" || IpAddr::from_str(name).is_ok_and(|ip| ip.is_loopback())
                }
            }),
            _ => false,
        };
        if !plaintext {
            return None;
        }
        let statement_timeout = format!("-c statement_timeout={}", BACKEND_TIMEOUT.as_millis());
        let options = match config.get_options() {
            Some(options) => format!("{options} {statement_timeout}"),
            None => statement_timeout,
        };
        config.ssl_mode(SslMode::Disable).connect_timeout(BACKEND_TIMEOUT).options(options);
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        Some(Self {
            config,
            links: (0..count).map(|_| Slot::default()).collect(),
            hedges: tokio::sync::Semaphore::new(hedges),
        })
    }

    /// Runs `pipelined` (a read on these connections); if it has not answered after
    /// [`HEDGE_AFTER`], runs `pooled` (the same read on the pool) beside it, as soon as the
    /// budget allows, and returns the first success, or if both fail, the error of the last.
    ///
    /// Why: statements on a pipelined connection are answered in order, so whatever holds the
    /// connection up holds up every statement queued on it, dozens at a time: on two busy cores,
    /// mostly the OS preempting the thread that drives the connection (bench/RESULTS.md). A read
    /// that has waited [`HEDGE_AFTER`], several times what one takes under load, is most likely
    /// stuck behind such a stall, and a pooled connection of its own answers it without waiting
    /// for the stall to end. Reads change nothing, so running one twice is safe; the loser is
    /// dropped, and tokio-postgres discards its answer.
    ///
    /// A read whose connection broke (killed, or closed by a proxy) goes to the pool the same
    /// way, rather than answer 503 while the pool could answer it, whether it broke before
    /// [`HEDGE_AFTER`] or while the read waited on it with the budget taken. Those wait for the
    /// budget rather than skip it, as a break fails many reads at once. Other errors (a
    /// statement PostgreSQL refused, or a read that used up [`BACKEND_TIMEOUT`]) are the answer.
    ///
    /// What bounds the cost: only the slowest or broken reads are sent twice, and no more than
    /// `hedges` at a time (half the pool by default), so when the database itself is slow,
    /// hedging neither doubles its load nor takes the pool from writes. Stuck reads beyond the
    /// budget wait for their connection or a permit, whichever comes first, and take permits
    /// oldest first: a stall holds up dozens of reads at once, and each pooled read returns
    /// its permit within a few milliseconds, so they drain through the pool in turn rather than
    /// all wait out the stall. Counted in `db_read_hedges_total`, by `reason`: `slow` or
    /// `broken`.
    ///
    /// The read has [`BACKEND_TIMEOUT`] in all, wherever it runs: a pooled read started late
    /// (after the hedge delay, or after a permit) could otherwise wait for a pooled connection
    /// and then for its statement, each with a timeout of its own, long after the pipelined
    /// one timed out (9 s for a list, against a frozen database). (A read answered on its
    /// connection before [`HEDGE_AFTER`], nearly all of them, is bounded by `query` alone.)
    pub async fn hedged<T>(
        &self,
        pipelined: impl Future<Output = Result<T, StoreError>>,
        pooled: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let deadline = tokio::time::Instant::now() + BACKEND_TIMEOUT;
        // Run on one path or the other, never both.
        let mut pooled = Some(pooled);
        let mut pipelined = pin!(pipelined);
        let early = tokio::select! {
            biased;
            result = &mut pipelined => Some(result),
            () = tokio::time::sleep(HEDGE_AFTER) => None,
        };
        let result = match early {
            Some(result) => result,
            // Stuck: to the pool as well as soon as the budget allows, unless the connection
            // answers first. The semaphore hands permits out in order, oldest read first (it is
            // never closed; were it, the connection would be all that is left).
            None => {
                let stuck = async {
                    tokio::select! {
                        biased;
                        result = &mut pipelined => Outcome::Answered(result),
                        Ok(_permit) = self.hedges.acquire() => {
                            metrics::counter!("db_read_hedges_total", "reason" => "slow").increment(1);
                            let pooled = pooled.take().expect("the pooled read runs once");
                            Outcome::Raced(race(pipelined, pooled).await)
                        }
                    }
                };
                match within(deadline, stuck).await {
                    Ok(Outcome::Raced(result)) => return result,
                    Ok(Outcome::Answered(result)) => result,
                    Err(late) => return Err(late),
                }
            }
        };
        match result {
            // Failed before its time was up: the connection broke (a read that timed out has
            // had its time, and the pool would only double the wait).
            Err(broken @ StoreError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                // A break fails all the reads queued on the connection at once: they take
                // turns on the budget.
                within(deadline, async {
                    let Ok(_permit) = self.hedges.acquire().await else {
                        return Err(broken);
                    };
                    metrics::counter!("db_read_hedges_total", "reason" => "broken").increment(1);
                    match pooled.take() {
                        Some(pooled) => pooled.await,
                        None => Err(broken),
                    }
                })
                .await
                .and_then(|answer| answer)
            }
            answer => answer,
        }
    }

    /// Runs `sql` (a fixed statement, prepared once per connection) with `params` on the least
    /// busy connection, bounded by [`BACKEND_TIMEOUT`].
    pub async fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let slot = self
            .links
            .iter()
            .min_by_key(|slot| slot.in_flight.load(Ordering::Relaxed))
            .expect("at least one connection");
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(&slot.in_flight);
        let run = async {
            let link = self.link(slot).await?;
            let result = match link.statement(sql).await {
                Ok(statement) => link.client.query(&statement, params).await,
                Err(err) => Err(err),
            };
            result.map_err(|err| {
                let cancelled = err.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED);
                let err = map_err(err);
                if matches!(err, StoreError::Unavailable(_)) && !cancelled {
                    // The connection may be going (killed, or the database shutting down)
                    // before its task has noticed: the next statement opens a new one rather
                    // than fail on it too.
                    slot.forget(&link);
                }
                err
            })
        };
        match tokio::time::timeout(BACKEND_TIMEOUT, run).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable("the database did not answer in time".to_owned())),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.links.iter().filter(|slot| slot.current().is_some()).count()
    }

    /// The slot's connection, opened if it has none or the one it had is closed.
    async fn link(&self, slot: &Slot) -> Result<Arc<Link>, StoreError> {
        if let Some(link) = slot.current() {
            return Ok(link);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(link) = slot.current() {
            return Ok(link);
        }
        let (client, connection) = self.config.connect(NoTls).await.map_err(map_err)?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(error = %err, "pipelined database connection closed");
            }
        });
        let link = Arc::new(Link { client, statements: RwLock::new(Vec::new()) });
        // The one just forgotten, if any, closes once its statements in flight are answered.
        *slot.link.write().unwrap() = Some(link.clone());
        Ok(link)
    }
}

/// How a read stuck past [`HEDGE_AFTER`] ended: answered on its connection before a permit came,
/// or raced against the pool.
enum Outcome<T> {
    Answered(Result<T, StoreError>),
    Raced(Result<T, StoreError>),
}

/// `work`, or 503 once `deadline` has passed.
async fn within<R>(deadline: tokio::time::Instant, work: impl Future<Output = R>) -> Result<R, StoreError> {
    tokio::time::timeout_at(deadline, work)
        .await
        .map_err(|_| StoreError::Unavailable("the database did not answer in time".to_owned()))
}

/// The first success of the two, or if both fail, the error of the last.
async fn race<T>(
    first: impl Future<Output = Result<T, StoreError>>,
    second: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let (mut first, mut second) = (pin!(first), pin!(second));
    tokio::select! {
        result = &mut first => match result {
            Ok(answer) => Ok(answer),
            Err(_) => second.await,
        },
        result = &mut second => match result {
            Ok(answer) => Ok(answer),
            Err(_) => first.await,
        },
    }
}

impl Slot {
    fn current(&self) -> Option<Arc<Link>> {
        self.link.read().unwrap().as_ref().filter(|link| !link.client.is_closed()).cloned()
    }

    /// Drops `link` from the slot, unless another request has replaced it already.
    fn forget(&self, link: &Arc<Link>) {
        let mut current = self.link.write().unwrap();
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, link)) {
            *current = None;
        }
    }
}

impl Link {
    /// `sql` prepared on this connection. Two requests may both prepare a new statement; the
    /// first kept wins, and the other is closed when dropped.
    async fn statement(&self, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        let key = sql.as_ptr() as usize;
        let find = |statements: &[(usize, Statement)]| {
            statements.iter().find(|(k, _)| *k == key).map(|(_, statement)| statement.clone())
        };
        if let Some(statement) = find(&self.statements.read().unwrap()) {
            return Ok(statement);
        }
        let statement = self.client.prepare(sql).await?;
        let mut statements = self.statements.write().unwrap();
        Ok(find(&statements).unwrap_or_else(|| {
            statements.push((key, statement.clone()));
            statement
        }))
    }
}

/// The [`StoreError`] of a tokio-postgres error, by the same rules as sqlx's (`sql::map_err`).
fn map_err(err: tokio_postgres::Error) -> StoreError {
    match err.code() {
        Some(code) if code == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION => StoreError::Conflict,
        Some(code) if super::sql::unavailable_code(code.code()) => StoreError::Unavailable(err.to_string()),
        Some(_) => StoreError::Internal(err.to_string()),
        // Not from the database: the connection broke, closed, or could not be opened.
        None if err.is_closed()
            || std::error::Error::source(&err).is_some_and(|e| e.is::<std::io::Error>()) =>
        {
            StoreError::Unavailable(err.to_string())
        }
        None => StoreError::Internal(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use sqlx::Connection;

    use super::*;

    async fn backend_pid(reads: &Pipelines) -> Result<i32, StoreError> {
        Ok(reads.query("SELECT pg_backend_pid()", &[]).await?[0].get(0))
    }

    async fn terminate(url: &str, pid: i32) {
        let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
        let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(done, "backend {pid} terminated");
    }

    #[tokio::test]
    async fn statements_share_a_connection_and_a_broken_one_is_replaced() {
        let Some(url) = crate::store::test_postgres_url() else { return };
        let reads = Arc::new(Pipelines::new(&url, 1, 1).expect("a loopback URL"));
        assert_eq!(reads.open(), 0, "nothing is opened before the first statement");

        // Many statements at once, one connection: each gets its own answer.
        let answers =
            futures::future::join_all(
                (0..50i64).map(|i| {
                    let reads = reads.clone();
                    async move {
                        reads.query("SELECT $1::int8 * 2", &[&i]).await.map(|rows| rows[0].get::<_, i64>(0))
                    }
                }),
            )
            .await;
        assert_eq!(
            answers.into_iter().collect::<Result<Vec<_>, _>>().unwrap(),
            (0..50).map(|i| i * 2).collect::<Vec<_>>()
        );
        assert_eq!(reads.open(), 1);
        let pid = backend_pid(&reads).await.unwrap();
        let name: String =
            reads.query("SELECT current_setting('application_name')", &[]).await.unwrap()[0].get(0);
        assert_eq!(name, APPLICATION_NAME);

        // Killed mid-statement: that statement is unavailable (503), not an internal error, and
        // the next one gets a new connection.
        let slow = tokio::spawn({
            let reads = reads.clone();
            async move { reads.query("SELECT pg_sleep(2)::text", &[]).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        terminate(&url, pid).await;
        assert!(matches!(slow.await.unwrap(), Err(StoreError::Unavailable(_))));
        let new_pid = backend_pid(&reads).await.unwrap();
        assert_ne!(new_pid, pid, "the broken connection was replaced");
        assert_eq!(reads.open(), 1);

        // A database error is the statement's own: the connection stays.
        assert!(matches!(reads.query("SELECT 1 / 0", &[]).await, Err(StoreError::Internal(_))));
        assert_eq!(backend_pid(&reads).await.unwrap(), new_pid);
    }

    #[tokio::test]
    async fn a_slow_statement_holds_the_others_up_for_at_most_the_backend_timeout() {
        let Some(url) = crate::store::test_postgres_url() else { return };
        let reads = Arc::new(Pipelines::new(&url, 1, 1).expect("a loopback URL"));
        backend_pid(&reads).await.unwrap();
        let started = Instant::now();
        let slow = tokio::spawn({
            let reads = reads.clone();
            async move { reads.query("SELECT pg_sleep(30)::text", &[]).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Queued behind the slow one on the only connection.
        let behind = reads.query("SELECT 7::int8", &[]).await;
        assert!(matches!(slow.await.unwrap(), Err(StoreError::Unavailable(_))), "the slow one gave up");
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(10), "bounded by the timeouts, not by pg_sleep(30): {waited:?}");
        // PostgreSQL cancelled the slow one (statement_timeout), so the connection is free again.
        match behind {
            Ok(rows) => assert_eq!(rows[0].get::<_, i64>(0), 7),
            Err(err) => assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}"),
        }
        assert_eq!(reads.query("SELECT 8::int8", &[]).await.unwrap()[0].get::<_, i64>(0), 8);
    }

    /// Pipelines to nowhere (never opened): the tests of [`Pipelines::hedged`] give it both reads.
    fn unopened(hedges: usize) -> Pipelines {
        Pipelines::new("postgres://u@127.0.0.1:1/none", 1, hedges).expect("a loopback URL")
    }

    fn unavailable<T>() -> Result<T, StoreError> {
        Err(StoreError::Unavailable("gone".to_owned()))
    }

    #[tokio::test]
    async fn a_read_answered_in_time_is_not_sent_twice() {
        let answer = unopened(1).hedged(async { Ok(1) }, async { panic!("the pool was asked too") }).await;
        assert_eq!(answer.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_stuck_read_is_answered_by_the_pool() {
        let reads = unopened(1);
        let answer = reads.hedged(std::future::pending(), async { Ok(2) }).await;
        assert_eq!(answer.unwrap(), 2);
        assert_eq!(reads.hedges.available_permits(), 1, "the permit is returned");
    }

    #[tokio::test]
    async fn when_one_of_the_two_fails_the_other_answers() {
        let late_failure = async {
            tokio::time::sleep(HEDGE_AFTER * 2).await;
            unavailable()
        };
        let pooled = async {
            tokio::time::sleep(HEDGE_AFTER * 3).await;
            Ok(3)
        };
        assert_eq!(unopened(1).hedged(late_failure, pooled).await.unwrap(), 3);

        let pipelined = async {
            tokio::time::sleep(HEDGE_AFTER * 2).await;
            Ok(4)
        };
        assert_eq!(unopened(1).hedged(pipelined, async { unavailable() }).await.unwrap(), 4);

        let late_failure = async {
            tokio::time::sleep(HEDGE_AFTER * 2).await;
            unavailable::<i32>()
        };
        let both = unopened(1).hedged(late_failure, async { unavailable() }).await;
        assert!(matches!(both, Err(StoreError::Unavailable(_))));
    }

    #[tokio::test]
    async fn a_read_on_a_broken_connection_is_answered_by_the_pool_but_not_a_refused_one() {
        assert_eq!(unopened(1).hedged(async { unavailable() }, async { Ok(6) }).await.unwrap(), 6);
        let refused = async { Err::<i32, _>(StoreError::Internal("syntax error".to_owned())) };
        let answer = unopened(1).hedged(refused, async { panic!("the pool was asked too") }).await;
        assert!(matches!(answer, Err(StoreError::Internal(_))), "{answer:?}");
    }

    /// A broken connection fails dozens of reads at once: beyond the budget they wait their
    /// turn for the pool rather than fail.
    #[tokio::test]
    async fn reads_on_a_broken_connection_take_turns_on_the_budget() {
        let reads = unopened(1);
        let held = reads.hedges.try_acquire().unwrap();
        let answer = reads.hedged(async { unavailable() }, async { Ok(7) });
        tokio::pin!(answer);
        assert!(futures::poll!(&mut answer).is_pending(), "waits while the budget is taken");
        drop(held);
        assert_eq!(answer.await.unwrap(), 7);
    }

    /// Slow beyond the budget, it waits on its connection; if that then breaks, the pool
    /// answers once the budget frees up.
    #[tokio::test]
    async fn a_slow_read_beyond_the_budget_whose_connection_then_breaks_is_answered_by_the_pool() {
        let reads = unopened(1);
        let held = reads.hedges.try_acquire().unwrap();
        let late_break = async {
            tokio::time::sleep(HEDGE_AFTER * 2).await;
            unavailable()
        };
        let release = async {
            tokio::time::sleep(HEDGE_AFTER * 3).await;
            drop(held);
        };
        let (answer, ()) = tokio::join!(reads.hedged(late_break, async { Ok(8) }), release);
        assert_eq!(answer.unwrap(), 8);
    }

    /// A stall holds up many reads at once: beyond the budget they go to the pool in turn as
    /// permits come back, rather than wait for the stalled connection.
    #[tokio::test]
    async fn a_stuck_read_beyond_the_budget_goes_to_the_pool_once_a_permit_is_back() {
        let reads = unopened(1);
        let held = reads.hedges.try_acquire().unwrap();
        let release = async {
            tokio::time::sleep(HEDGE_AFTER * 2).await;
            drop(held);
        };
        let stuck = reads.hedged(std::future::pending(), async { Ok(9) });
        let (answer, ()) = tokio::join!(tokio::time::timeout(HEDGE_AFTER * 20, stuck), release);
        assert_eq!(answer.expect("answered by the pool, not left waiting").unwrap(), 9);
        assert_eq!(reads.hedges.available_permits(), 1, "the permit is returned");
    }

    #[tokio::test]
    async fn no_more_reads_are_sent_twice_than_the_budget() {
        let reads = unopened(0);
        let pipelined = async {
            tokio::time::sleep(HEDGE_AFTER * 2).await;
            Ok(5)
        };
        let answer = reads.hedged(pipelined, async { panic!("sent to the pool beyond the budget") }).await;
        assert_eq!(answer.unwrap(), 5);
    }

    #[test]
    fn plaintext_links_only() {
        let used = |url: &str| Pipelines::new(url, 2, 1).is_some();
        assert!(used("postgres://u@db.internal/tasklane?sslmode=disable"));
        assert!(used("postgres://u@127.0.0.1:5432/tasklane"));
        assert!(used("postgresql://u@localhost/tasklane?sslmode=prefer"));
        assert!(used("postgres://u@[::1]/tasklane"));
        assert!(used("postgres://u@%2Fvar%2Frun%2Fpostgresql/tasklane"));
        // TLS asked for, or preferred to a host across the network: the pool, which speaks it.
        assert!(!used("postgres://u@127.0.0.1/tasklane?sslmode=require"));
        assert!(!used("postgres://u@db.internal/tasklane"));
        // Options tokio-postgres does not read (sqlx's own, stricter TLS modes): the pool.
        assert!(!used("postgres://u@127.0.0.1/tasklane?sslmode=verify-full"));
        assert!(!used("postgres://u@127.0.0.1/tasklane?statement-cache-capacity=10"));
        assert!(Pipelines::new("postgres://u@127.0.0.1/tasklane", 0, 1).is_none());
    }
}
