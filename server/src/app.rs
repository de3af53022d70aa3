//! The pools rocket_db_pools holds, and what every handler shares, assembled once they are open.

use std::sync::Arc;
use std::time::Duration;

use rocket::{Build, Rocket};
use rocket_db_pools::Database;

use crate::auth::jwt::JwtKeys;
use crate::auth::password::PasswordHasher;
use crate::config::Config;
use crate::limits::{LimitSettings, RateLimits};
use crate::store::{self, RedisPool, RedisSessions, SessionStore};

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
        let sessions: Arc<dyn SessionStore> = match &redis {
            Some(pool) => Arc::new(RedisSessions::new(pool.clone())),
            None => db.clone(),
        };
        let limit_settings = LimitSettings::per_minute(
            config.rate_limit_account_per_minute,
            config.rate_limit_address_per_minute,
        );
        let limits = match &redis {
            Some(pool) => RateLimits::redis(limit_settings, pool.clone()),
            None => RateLimits::local(limit_settings),
        };
        let keys = match &config.secret_key_accepted {
            Some(accepted) => JwtKeys::new(key).accepting(accepted.expose().as_bytes()),
            None => JwtKeys::new(key),
        };
        Some(App {
            db,
            sessions,
            redis,
            keys,
            hasher: PasswordHasher::new(config.password_hash_concurrency),
            limits,
            tokens: TokenSettings {
                access_ttl: config.access_token_expire_minutes,
                refresh_ttl: config.refresh_token_expire_minutes,
                rotation: config.refresh_token_rotation,
            },
        })
    }
}
