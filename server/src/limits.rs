//! Rate limits on the credential routes (login, register, refresh), per account and per client
//! address, answered with 429 and `Retry-After`.
//!
//! The algorithm is GCRA (a token bucket without a timer): `n` attempts per minute, in bursts of
//! up to `n`. In one process it is governor's keyed limiter; with `REDIS_URL` set it is the same
//! algorithm as one Lua script on Redis's clock, so every instance shares the budget.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use deadpool_redis::redis::Script;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rocket::request::{FromRequest, Outcome};
use rocket::Request;
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::request::{OpenApiFromRequest, RequestHeaderInput};

use crate::error::ApiError;
use crate::store::{RedisPool, StoreError};

/// A limited action: each has its own budget, so signing in does not spend refreshes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `POST /auth/login`.
    Login,
    /// `POST /auth/register`.
    Register,
    /// `POST /auth/refresh`.
    Refresh,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::Register => "register",
            Action::Refresh => "refresh",
        }
    }
}

/// Attempts per minute per account and per client address; `None` turns that limit off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitSettings {
    /// Per account (username, or user id for refresh).
    pub per_account: Option<NonZeroU32>,
    /// Per client address.
    pub per_address: Option<NonZeroU32>,
}

impl LimitSettings {
    /// `account` and `address` attempts a minute; 0 turns one off.
    pub fn per_minute(account: u32, address: u32) -> Self {
        Self { per_account: NonZeroU32::new(account), per_address: NonZeroU32::new(address) }
    }
}

#[derive(Clone, Copy)]
enum Scope {
    Account,
    Address,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Address => "address",
        }
    }
}

enum Backend {
    Local {
        account: Option<DefaultKeyedRateLimiter<String>>,
        address: Option<DefaultKeyedRateLimiter<String>>,
    },
    Redis {
        pool: RedisPool,
        gcra: Script,
    },
}

/// The limiter of one app.
pub struct RateLimits {
    settings: LimitSettings,
    backend: Backend,
}

// GCRA on Redis's own clock, in microseconds (a high quota's interval between attempts is
// under a millisecond: in milliseconds it rounded to 0, and `PX 0` is an error). KEYS[1]: bucket. ARGV:
// emission interval in µs, burst. Returns 0 when allowed, else the microseconds until the next
// attempt is allowed. Lua's numbers are doubles: µs since 1970 stay exact until 2255.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then return tat - now - tolerance end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000))
return 0
";

impl RateLimits {
    /// In-process limits, for a single instance.
    pub fn local(settings: LimitSettings) -> Self {
        let keyed = |n: Option<NonZeroU32>| n.map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        Self {
            settings,
            backend: Backend::Local {
                account: keyed(settings.per_account),
                address: keyed(settings.per_address),
            },
        }
    }

    /// Limits kept in Redis, shared by every instance on it.
    pub fn redis(settings: LimitSettings, pool: RedisPool) -> Self {
        Self { settings, backend: Backend::Redis { pool, gcra: Script::new(GCRA_LUA) } }
    }

    /// Spends one attempt of `action` for the account and the address; 429 when either budget
    /// is spent. Accounts are compared ignoring case, like usernames.
    pub async fn check(
        &self,
        action: Action,
        account: Option<&str>,
        address: Option<IpAddr>,
    ) -> Result<(), ApiError> {
        let account = account.map(str::to_ascii_lowercase);
        let address = address.map(|a| a.to_string());
        let mut wait = Duration::ZERO;
        for (scope, key, quota) in [
            (Scope::Account, account.as_deref(), self.settings.per_account),
            (Scope::Address, address.as_deref(), self.settings.per_address),
        ] {
            let (Some(key), Some(quota)) = (key, quota) else { continue };
            wait = wait.max(self.acquire(action, scope, key, quota).await?);
        }
        if wait.is_zero() {
            Ok(())
        } else {
            tracing::warn!(action = action.name(), retry_after_s = wait.as_secs_f32(), "rate limited");
            // Whole seconds, rounded up, so a client that waits `Retry-After` is let in.
            Err(ApiError::RateLimited(Duration::from_secs(wait.as_secs_f64().ceil() as u64)))
        }
    }

    async fn acquire(
        &self,
        action: Action,
        scope: Scope,
        key: &str,
        quota: NonZeroU32,
    ) -> Result<Duration, StoreError> {
        let bucket = format!("{}:{}:{key}", action.name(), scope.name());
        match &self.backend {
            Backend::Local { account, address } => {
                let limiter = match scope {
                    Scope::Account => account.as_ref(),
                    Scope::Address => address.as_ref(),
                };
                let Some(limiter) = limiter else { return Ok(Duration::ZERO) };
                let verdict = limiter.check_key(&bucket);
                // Forget buckets that have refilled, so memory follows recent clients only.
                if limiter.len() > 10_000 {
                    limiter.retain_recent();
                }
                Ok(verdict.err().map_or(Duration::ZERO, |not_until| {
                    not_until.wait_time_from(DefaultClock::default().now())
                }))
            }
            Backend::Redis { pool, gcra } => {
                let interval_us = 60_000_000 / u64::from(quota.get());
                let mut invocation = gcra.prepare_invoke();
                // v2: the bucket holds microseconds (v1's held milliseconds).
                invocation.key(format!("tasklane:limit:v2:{bucket}")).arg(interval_us).arg(quota.get());
                let wait_us: u64 =
                    pool.run("redis.rate_limit", |mut conn| async move {
                        invocation.invoke_async(&mut conn).await
                    })
                    .await?;
                Ok(Duration::from_micros(wait_us))
            }
        }
    }
}

/// The client's address, as Rocket sees it (`ROCKET_IP_HEADER` names a proxy's header to trust).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress(pub Option<IpAddr>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ClientAddress {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(ClientAddress(req.client_ip()))
    }
}

impl<'r> OpenApiFromRequest<'r> for ClientAddress {
    fn from_request_input(
        _: &mut OpenApiGenerator,
        _: String,
        _: bool,
    ) -> rocket_okapi::Result<RequestHeaderInput> {
        Ok(RequestHeaderInput::None)
    }
}
