//! Redis (when `REDIS_URL` is set): the pool, and the refresh-token families kept in it, shared
//! by every server instance.
//!
//! Keys, with the family as a hash tag so a family's keys share one cluster slot:
//! - `tasklane:{<family>}:family` → user id, expiring with the family;
//! - `tasklane:{<family>}:rt:<jti>` → family, the family's one live token.
//!
//! Rotation runs as one Lua script (atomic in Redis), so of two racing refreshes one consumes
//! the token and the other finds it gone.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_redis::redis::{self, AsyncCommands, Script};
use deadpool_redis::{Connection, Pool, Runtime};
use rocket::async_trait;
use rocket::figment::Figment;

use super::{bounded, Claim, IdempotencyStore, Replay, Rotation, SessionStore, StoreError};

/// A Redis connection pool whose every call is bounded by the backend timeout. Connections
/// open lazily, so a Redis that is down makes only the routes that need it answer 503, and it
/// is picked up when it returns.
#[derive(Clone)]
pub struct RedisPool {
    pool: Pool,
    /// Rocket's shutdown grace period, which the pool outlives (see `store::close_after`).
    shutdown_grace_seconds: u64,
}

impl RedisPool {
    /// A pool for `url`; nothing is connected yet.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let pool = deadpool_redis::Config::from_url(url)
            .builder()
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(Self { pool, shutdown_grace_seconds: 0 })
    }

    /// Runs `op` on a pooled connection, within the backend timeout in all, in a `debug` span
    /// named `operation` (`redis.rotate`): what it does, never the keys or values.
    pub async fn run<T, F, Fut>(&self, operation: &'static str, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let span = tracing::debug_span!(
            "redis",
            otel.name = operation,
            db.system.name = "redis",
            otel.status_code = tracing::field::Empty,
        );
        let call = bounded(async {
            let conn = self.pool.get().await.map_err(|e| match e {
                // The pool's own error for a connection it could not open hides why.
                deadpool_redis::PoolError::Backend(e) => StoreError::from(e),
                e => StoreError::Unavailable(format!("redis pool: {e}")),
            })?;
            Ok(op(conn).await?)
        });
        super::traced::in_span(span, call).await
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(
            "redis.ping",
            |mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await },
        )
        .await
        .map(drop)
    }

    /// At start: one `PING`. Redis not answering (down, starting, behind a network still coming
    /// up) is logged and left to `/ready` and the 503s of the routes that need it, as at any
    /// other time; an answer that says the setting itself is wrong (a password refused, a
    /// database index that does not exist) is the error.
    pub async fn check(&self) -> Result<(), String> {
        match self.ping().await {
            Ok(()) => Ok(()),
            Err(StoreError::Unavailable(why)) => {
                tracing::warn!(error = %why, "REDIS_URL: Redis cannot be used yet; the session routes answer 503 until it can");
                Ok(())
            }
            Err(StoreError::Internal(why)) => Err(why),
            Err(err) => Err(err.to_string()),
        }
    }

    /// Pool size and idle connections, for metrics.
    pub fn status(&self) -> (usize, usize) {
        let status = self.pool.status();
        (status.size, status.available)
    }
}

/// rocket_db_pools opens the pool at ignite from `databases.redis` in Rocket's settings, where
/// the app puts `REDIS_URL`, and closes it at shutdown.
#[async_trait]
impl rocket_db_pools::Pool for RedisPool {
    type Connection = RedisPool;
    type Error = StoreError;

    async fn init(figment: &Figment) -> Result<Self, StoreError> {
        let setting = |e: rocket::figment::Error| StoreError::Internal(e.to_string());
        let url: String = figment.extract_inner("url").map_err(setting)?;
        let grace = figment.extract_inner("shutdown_grace_seconds").map_err(setting)?;
        Ok(Self { shutdown_grace_seconds: grace, ..Self::new(&url)? })
    }

    async fn get(&self) -> Result<RedisPool, StoreError> {
        Ok(self.clone())
    }

    async fn close(&self) {
        let pool = self.pool.clone();
        super::close_after(self.shutdown_grace_seconds, move || pool.close());
    }
}

/// Refresh-token families in Redis.
pub struct RedisSessions {
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

impl RedisSessions {
    /// The sessions on a pool.
    pub fn new(pool: RedisPool) -> Self {
        Self { pool, rotate: Script::new(ROTATE_LUA) }
    }
}

#[async_trait]
impl SessionStore for RedisSessions {
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
            .run("redis.start_family", |mut conn| async move {
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
        let mut invocation = self.rotate.prepare_invoke();
        invocation
            .key(token_key(family, old_jti))
            .key(family_key(family))
            .key(token_key(family, new_jti))
            .arg(family)
            .arg(ttl_ms(expires_at));
        let outcome: i64 = self
            .pool
            .run("redis.rotate", |mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await?;
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
            .run("redis.is_active", |mut conn| async move {
                redis::pipe().get(&tk).exists(&fk).query_async(&mut conn).await
            })
            .await?;
        Ok(live && owner.as_deref() == Some(family))
    }

    async fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
        let fk = family_key(family);
        self.pool.run("redis.revoke_family", |mut conn| async move { conn.del::<_, ()>(&fk).await }).await
    }
}

/// Idempotency keys in Redis: `tasklane:idem:<user>:<key>` → the claim or the answer kept (JSON),
/// expiring by Redis's TTL, so an expired key costs nothing to keep. A claim is `SET NX`, so of
/// requests racing on one key, on any instance, one claims it.
pub struct RedisIdempotency {
    pool: RedisPool,
}

/// What a key holds: the fingerprint alone while in flight, the answer too once done.
#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    fingerprint: String,
    #[serde(default)]
    answer: Option<Replay>,
}

impl RedisIdempotency {
    /// The keys on a pool.
    pub fn new(pool: RedisPool) -> Self {
        Self { pool }
    }
}

fn idempotency_key(user_id: i64, key: &str) -> String {
    format!("tasklane:idem:{user_id}:{key}")
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl IdempotencyStore for RedisIdempotency {
    async fn claim(
        &self,
        user_id: i64,
        key: &str,
        fingerprint: &str,
        in_flight: Duration,
    ) -> Result<Claim, StoreError> {
        let name = idempotency_key(user_id, key);
        let claim = serde_json::to_string(&Kept { fingerprint: fingerprint.to_owned(), answer: None })
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let ttl = millis(in_flight);
        let (claimed, kept): (Option<String>, Option<String>) = self
            .pool
            .run("redis.claim_idempotency_key", |mut conn| async move {
                redis::pipe()
                    .cmd("SET")
                    .arg(&name)
                    .arg(&claim)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .get(&name)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        if claimed.is_some() {
            return Ok(Claim::New);
        }
        let kept: Option<Kept> = kept.and_then(|json| serde_json::from_str(&json).ok());
        Ok(match kept {
            Some(Kept { answer: Some(answer), .. }) => Claim::Done(answer),
            Some(Kept { fingerprint, answer: None }) => Claim::InFlight { fingerprint: Some(fingerprint) },
            // Gone meanwhile: the client retries.
            None => Claim::InFlight { fingerprint: None },
        })
    }

    async fn complete(
        &self,
        user_id: i64,
        key: &str,
        answer: &Replay,
        keep: Duration,
    ) -> Result<(), StoreError> {
        let name = idempotency_key(user_id, key);
        let kept = serde_json::to_string(&Kept {
            fingerprint: answer.fingerprint.clone(),
            answer: Some(answer.clone()),
        })
        .map_err(|e| StoreError::Internal(e.to_string()))?;
        let ttl = millis(keep);
        self.pool
            .run("redis.complete_idempotency_key", |mut conn| async move {
                redis::cmd("SET").arg(&name).arg(&kept).arg("PX").arg(ttl).query_async::<()>(&mut conn).await
            })
            .await
    }

    async fn release(&self, user_id: i64, key: &str) -> Result<(), StoreError> {
        let name = idempotency_key(user_id, key);
        self.pool
            .run("redis.release_idempotency_key", |mut conn| async move { conn.del::<_, ()>(&name).await })
            .await
    }
}
