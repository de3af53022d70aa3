//! The pools rocket_db_pools holds, and what every handler shares, assembled once they are open.

use std::sync::Arc;
use std::time::Duration;

use rocket::{Build, Orbit, Rocket};
use rocket_db_pools::Database;

use crate::auth::jwt::JwtKeys;
use crate::auth::password::PasswordHasher;
use crate::config::Config;
use crate::limits::{LimitSettings, RateLimits};
use crate::live::Hub;
use crate::store::{
    self, IdempotencyStore, RedisIdempotency, RedisPool, RedisSessions, SessionStore, Traced,
};

/// The SQL database (`DATABASE_URL`), opened by rocket_db_pools at ignite.
#[derive(Database)]
#[database("sql")]
pub struct Sql(store::SqlDatabase);

/// The Redis pool (`REDIS_URL`), opened by rocket_db_pools at ignite when Redis is configured.
#[derive(Database)]
#[database("redis")]
pub struct Redis(store::RedisPool);

/// The state of the app, managed by Rocket (`&State<App>` in a handler).
pub struct App {
    /// Users and tasks.
    pub db: Arc<dyn store::Database>,
    /// Refresh-token families: in Redis when it is configured, else in `db`.
    pub sessions: Arc<dyn SessionStore>,
    /// Idempotency keys of creates: in Redis when it is configured, else in `db`.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Word of changes, to the event streams open here.
    pub live: Arc<Hub>,
    /// The Redis pool, when `REDIS_URL` is set.
    pub redis: Option<RedisPool>,
    /// JWT signing and verification.
    pub keys: JwtKeys,
    /// argon2id off the async workers.
    pub hasher: PasswordHasher,
    /// Attempts left on the credential routes.
    pub limits: RateLimits,
    /// Token lifetimes and rotation.
    pub tokens: TokenSettings,
    /// How long idempotency keys and tombstones are kept.
    pub feed: FeedSettings,
}

/// How long what makes retries and syncs safe is kept.
#[derive(Clone, Copy, Debug)]
pub struct FeedSettings {
    /// The answer to an idempotency key.
    pub idempotency_ttl: Duration,
    /// A deleted task's tombstone.
    pub tombstone_retention: Duration,
}

/// How tokens are issued.
#[derive(Clone, Copy, Debug)]
pub struct TokenSettings {
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// Refresh-token lifetime.
    pub refresh_ttl: Duration,
    /// Whether refresh tokens rotate.
    pub rotation: bool,
}

impl App {
    /// The app on the pools rocket_db_pools opened at ignite (the SQL database always, Redis
    /// when configured), signing with `key`.
    pub fn assemble(rocket: &Rocket<Build>, config: &Config, key: &[u8]) -> Option<App> {
        let db = Sql::fetch(rocket)?.handle();
        // Not `Redis::fetch`, which reports a pool that is not attached as an error.
        let redis = rocket.state::<Redis>().map(|redis| RedisPool::clone(redis));
        let (sessions, idempotency): (Arc<dyn SessionStore>, Arc<dyn IdempotencyStore>) = match &redis {
            Some(pool) => (
                Arc::new(Traced::new(RedisSessions::new(pool.clone()), "redis")),
                Arc::new(Traced::new(RedisIdempotency::new(pool.clone()), "redis")),
            ),
            None => (db.clone(), db.clone()),
        };
        let limit_settings = LimitSettings::per_minute(
            config.rate_limit_account_per_minute,
            config.rate_limit_address_per_minute,
        );
        let limits = match &redis {
            Some(pool) => RateLimits::redis(limit_settings, pool.clone()),
            None => RateLimits::local(limit_settings),
        };
        let live = match (&redis, &config.redis_url) {
            (Some(pool), Some(url)) => match Hub::redis(url, pool.clone()) {
                Ok(hub) => hub,
                Err(err) => {
                    tracing::error!(error = %err, "REDIS_URL: cannot subscribe to live events");
                    return None;
                }
            },
            _ => Hub::local(),
        };
        let keys = match &config.secret_key_accepted {
            Some(accepted) => JwtKeys::new(key).accepting(accepted.expose().as_bytes()),
            None => JwtKeys::new(key),
        };
        Some(App {
            db,
            sessions,
            idempotency,
            live,
            redis,
            keys,
            hasher: PasswordHasher::new(config.password_hash_concurrency),
            limits,
            tokens: TokenSettings {
                access_ttl: config.access_token_expire_minutes,
                refresh_ttl: config.refresh_token_expire_minutes,
                rotation: config.refresh_token_rotation,
            },
            feed: FeedSettings {
                idempotency_ttl: config.idempotency_key_ttl_hours,
                tombstone_retention: config.tombstone_retention_days,
            },
        })
    }
}

/// How often tombstones past the retention are looked for, and how many go per statement, so
/// that pruning never holds many rows (or SQLite's write lock) at once.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_BATCH: u32 = 1000;

/// Forgets the tombstones of tasks deleted more than the retention ago, now and every hour,
/// until shutdown. Every instance does it; two doing it at once delete different batches.
/// A tombstone goes an hour after its retention, so that a cursor issued just before a
/// deletion's commit, with the deletion's time a little earlier, still finds it.
pub fn prune_tombstones(rocket: &Rocket<Orbit>) {
    let (Some(app), mut shutdown) = (rocket.state::<App>(), rocket.shutdown()) else { return };
    let (db, retention) = (app.db.clone(), app.feed.tombstone_retention + Duration::from_secs(3600));
    tokio::spawn(async move {
        loop {
            let before = crate::store::now() - retention;
            loop {
                match db.prune_tombstones(before, PRUNE_BATCH).await {
                    Ok(pruned) if pruned == u64::from(PRUNE_BATCH) => continue,
                    Ok(pruned) => {
                        if pruned > 0 {
                            tracing::info!(pruned, "forgot tombstones past the retention");
                        }
                        break;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "could not prune tombstones; trying again later");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(PRUNE_EVERY) => {}
            }
        }
    });
}
