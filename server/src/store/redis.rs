//! Refresh-token families in Redis (when `REDIS_URL` is set), shared by every server instance.
//!
//! Keys, with the family as a hash tag so a family's keys share one cluster slot:
//! - `tasklane:{<family>}:family` → user id, expiring with the family;
//! - `tasklane:{<family>}:rt:<jti>` → family, the family's one live token.
//!
//! Rotation runs as one Lua script (atomic in Redis), so of two racing refreshes one consumes
//! the token and the other finds it gone.

use std::future::Future;

use chrono::{DateTime, Utc};
use deadpool_redis::redis::{self, AsyncCommands, Script};
use deadpool_redis::{Pool, Runtime};
use rocket::async_trait;

use super::{RefreshStore, Rotation, StoreError, BACKEND_TIMEOUT};

/// A Redis connection pool whose every call is bounded by [`BACKEND_TIMEOUT`].
#[derive(Clone)]
pub struct RedisPool(Pool);

/// The Redis refresh store.
#[derive(Clone)]
pub struct RedisRefreshStore {
    pool: RedisPool,
    rotate: Script,
}

// KEYS: old token, family, new token. ARGV: family, ttl in ms.
// Returns 1 rotated, 0 token not live (reuse), -1 family revoked or expired.
const ROTATE_LUA: &str = r"
local fam = redis.call('GET', KEYS[1])
if not fam or fam ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
";

fn family_key(family: &str) -> String {
    format!("tasklane:{{{family}}}:family")
}

fn token_key(family: &str, jti: &str) -> String {
    format!("tasklane:{{{family}}}:rt:{jti}")
}

fn ttl_ms(expires_at: DateTime<Utc>) -> i64 {
    (expires_at - Utc::now()).num_milliseconds().max(1)
}

/// 503 for what passes: no connection, and the errors Redis itself answers while it cannot
/// serve, such as `LOADING` while a persistent Redis replays its file after a restart,
/// `READONLY` on a primary demoted in a failover, `MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`, and
/// `OOM` when it is full. Anything else is a bug: 500.
fn map_err(err: redis::RedisError) -> StoreError {
    use redis::{ErrorKind, ServerErrorKind};
    let refused = matches!(
        err.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::MasterDown
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
        )
    ) || err.code() == Some("OOM");
    if refused
        || err.is_io_error()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.is_connection_dropped()
    {
        StoreError::Unavailable(format!("redis: {err}"))
    } else {
        StoreError::Internal(format!("redis: {err}"))
    }
}

impl RedisPool {
    /// A pool for `url`. Connections open lazily, so Redis being down at start-up makes only
    /// the routes that need it answer 503, and it is picked up when it returns.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = deadpool_redis::Config::from_url(url)
            .builder()
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .max_size(16)
            .wait_timeout(Some(BACKEND_TIMEOUT))
            .create_timeout(Some(BACKEND_TIMEOUT))
            .recycle_timeout(Some(BACKEND_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(Self(pool))
    }

    /// At start: one connection and a `PING`. Redis not answering (down, starting, behind a
    /// network still coming up) is logged and left to `/ready` and the 503s of the routes that
    /// need it, as at any other time; an answer that says the setting itself is wrong (a
    /// password refused, a database index that does not exist) stops the start.
    pub async fn check(&self) -> Result<(), String> {
        let ping = async {
            // The pool's own error for a connection it could not open hides why; this keeps it.
            let mut conn = self.0.get().await.map_err(|e| match e {
                deadpool_redis::PoolError::Backend(e) => map_err(e),
                e => StoreError::Unavailable(format!("redis pool: {e}")),
            })?;
            redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(map_err)
        };
        let answer = tokio::time::timeout(BACKEND_TIMEOUT, ping)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("redis did not answer in time".to_owned())));
        match answer {
            Ok(_) => Ok(()),
            Err(StoreError::Unavailable(why)) => {
                tracing::warn!(error = %why, "REDIS_URL: Redis cannot be used yet; the session routes answer 503 until it can");
                Ok(())
            }
            Err(StoreError::Internal(why)) => Err(why),
            Err(err) => Err(err.to_string()),
        }
    }

    /// Runs `op` on a pooled connection, within [`BACKEND_TIMEOUT`] in all.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(deadpool_redis::Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            let conn = self.0.get().await.map_err(|e| StoreError::Unavailable(format!("redis pool: {e}")))?;
            op(conn).await.map_err(map_err)
        };
        tokio::time::timeout(BACKEND_TIMEOUT, work)
            .await
            .map_err(|_| StoreError::Unavailable("redis did not answer in time".to_owned()))?
    }

    /// Pool size and idle connections, for metrics.
    pub fn status(&self) -> (usize, usize) {
        let status = self.0.status();
        (status.size, status.available)
    }
}

impl RedisRefreshStore {
    /// The refresh store on a pool.
    pub fn new(pool: RedisPool) -> Self {
        Self { pool, rotate: Script::new(ROTATE_LUA) }
    }
}

#[async_trait]
impl RefreshStore for RedisRefreshStore {
    async fn start_family(
        &self,
        family: &str,
        user_id: i64,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ttl = ttl_ms(expires_at);
        let (fk, tk, family) = (family_key(family), token_key(family, jti), family.to_owned());
        self.pool
            .run(|mut conn| async move {
                redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(&fk)
                    .arg(user_id)
                    .arg("PX")
                    .arg(ttl)
                    .ignore()
                    .cmd("SET")
                    .arg(&tk)
                    .arg(&family)
                    .arg("PX")
                    .arg(ttl)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
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
        let ttl = ttl_ms(expires_at);
        let mut invocation = self.rotate.prepare_invoke();
        invocation
            .key(token_key(family, old_jti))
            .key(family_key(family))
            .key(token_key(family, new_jti))
            .arg(family)
            .arg(ttl);
        let outcome: i64 =
            self.pool.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(match outcome {
            1 => Rotation::Rotated,
            0 => Rotation::Reused,
            _ => Rotation::FamilyRevoked,
        })
    }

    async fn is_active(&self, family: &str, jti: &str) -> Result<bool, StoreError> {
        let (fk, tk) = (family_key(family), token_key(family, jti));
        let (owner, live): (Option<String>, bool) = self
            .pool
            .run(|mut conn| async move { redis::pipe().get(&tk).exists(&fk).query_async(&mut conn).await })
            .await?;
        Ok(live && owner.as_deref() == Some(family))
    }

    async fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
        let fk = family_key(family);
        self.pool.run(|mut conn| async move { conn.del::<_, ()>(&fk).await }).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.pool
            .run(|mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await })
            .await
            .map(drop)
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
