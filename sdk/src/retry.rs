//! When and how long to wait before sending a failed request again.

use std::time::Duration;

use rand::Rng;
use reqwest::Method;

use crate::Error;

/// How the client retries requests that failed in a way that may pass: transport errors,
/// timeouts, 429, 502, 503 and 504.
///
/// Between attempts it waits an exponential backoff with "full jitter" (a random delay between
/// zero and `base_delay × 2^(retry - 1)`, capped at `max_delay`), which spreads out the clients
/// that failed together. When the server sends `Retry-After` (Tasklane does with 429 and 503),
/// that delay is used instead; one longer than `max_delay` is not waited for: the error
/// ([`Error::RateLimited`], or [`Error::Server`] for a 503) is returned at once, with the wait
/// in [`Error::retry_after`], so the caller decides.
///
/// Idempotent requests are retried: GET, PUT, PATCH, DELETE (and HEAD, OPTIONS). PATCH is not
/// idempotent in HTTP in general, but Tasklane's PATCH sets the fields it names to the given
/// values, exactly like its PUT, so sending it twice leaves the same task. POST (creating a
/// task, logging in) is retried when it certainly was not acted on: the connection could not
/// be opened, the server answered 429 (it refuses before doing anything), or a failed token
/// refresh held it back ([`Error::RefreshFailed`]). After any other
/// failure it is retried only with [`RetryPolicy::retry_non_idempotent`]: a POST whose answer
/// was lost may have been applied, and sending it again would create a second task. A token
/// refresh is never retried by this policy, since a refresh token can be used once.
///
/// A retried DELETE whose first attempt was applied (but whose answer was lost) answers 404.
///
/// A call has no deadline of its own: each attempt (and a refresh it needs) has the client's
/// [`timeout`](crate::ClientBuilder::timeout), and the attempts add up, with their waits. For
/// one bound on the whole call, wrap it in `tokio::time::timeout`: dropping a call midway is
/// safe, as a token refresh it started goes on without it and its tokens are stored, while the
/// program's runtime runs.
///
/// ```
/// use std::time::Duration;
/// use tasklane::RetryPolicy;
///
/// let policy = RetryPolicy::new()
///     .max_attempts(5)
///     .base_delay(Duration::from_millis(50))
///     .max_delay(Duration::from_secs(5));
/// assert_eq!(policy.attempts(), 5);
/// assert_eq!(RetryPolicy::disabled().attempts(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    retry_non_idempotent: bool,
}

impl RetryPolicy {
    /// Three attempts in all: two retries ride out a dropped connection or a brief hiccup
    /// without making a user wait long for an answer that will not come. With the default
    /// base delay the two backoffs add up to 300 ms at most (about 150 ms on average), which
    /// is shorter than a server restart: an application that should wait for one sets a longer
    /// [`base_delay`](RetryPolicy::base_delay) (1 s gives waits of up to 1, 2, 4 s…) and more
    /// attempts. A `Retry-After` replaces the backoff, up to `max_delay` (20 s) each: a 503's
    /// is 1 s, a 429's as long as the rate limit says, for a POST too (a login that hits the
    /// limit waits, or gets [`Error::RateLimited`] at once when the wait is longer).
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    /// 100 ms: the first retry comes quickly (a lost connection usually succeeds at once).
    pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(100);
    /// 20 s: the longest single wait, for backoff and for `Retry-After` alike; the cap the AWS
    /// SDKs use for the same purpose.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(20);

    /// The default policy: 3 attempts, 100 ms base delay, 20 s longest delay, POST not retried.
    pub fn new() -> Self {
        Self {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            base_delay: Self::DEFAULT_BASE_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
            retry_non_idempotent: false,
        }
    }

    /// A policy that never retries: every request is sent once.
    pub fn disabled() -> Self {
        Self::new().max_attempts(1)
    }

    /// How many times a request is sent at most, the first time included; at least 1.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The backoff before the first retry; each further retry doubles it (before jitter).
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// The longest wait between two attempts, for backoff and `Retry-After` alike.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Whether POST requests are retried after any retryable failure, not only after those
    /// that show it was not acted on. Off by default: see the type's documentation.
    pub fn retry_non_idempotent(mut self, retry: bool) -> Self {
        self.retry_non_idempotent = retry;
        self
    }

    /// How many times a request is sent at most.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether a request with this method may be sent again after `error`.
    pub(crate) fn allows_after(&self, method: &Method, error: &Error) -> bool {
        self.allows(method) || error.certainly_not_acted_on()
    }

    /// Whether requests with this method may be sent more than once after any failure.
    pub(crate) fn allows(&self, method: &Method) -> bool {
        self.retry_non_idempotent
            || matches!(
                *method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::PATCH | Method::DELETE
            )
    }

    /// How long to wait before retry number `retry` (1 for the first) after `error`, or `None`
    /// when the server asked for a longer wait than this policy allows.
    pub(crate) fn delay(&self, retry: u32, error: &Error) -> Option<Duration> {
        match error.retry_after() {
            Some(wait) if wait > self.max_delay => None,
            Some(wait) => Some(wait),
            None => Some(self.backoff(retry)),
        }
    }

    /// Full jitter: uniform in `[0, min(max_delay, base_delay × 2^(retry - 1))]`.
    fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(31);
        let cap = self.base_delay.saturating_mul(1 << exponent).min(self.max_delay);
        let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=cap_nanos))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps() {
        let policy =
            RetryPolicy::new().base_delay(Duration::from_millis(100)).max_delay(Duration::from_millis(350));
        for _ in 0..200 {
            assert!(policy.backoff(1) <= Duration::from_millis(100));
            assert!(policy.backoff(2) <= Duration::from_millis(200));
            assert!(policy.backoff(3) <= Duration::from_millis(350));
            assert!(policy.backoff(60) <= Duration::from_millis(350));
        }
        // Jitter really varies the delay.
        let delays: std::collections::HashSet<_> = (0..50).map(|_| policy.backoff(3)).collect();
        assert!(delays.len() > 1);
    }

    #[test]
    fn methods_retried_by_default_are_the_idempotent_ones() {
        let policy = RetryPolicy::new();
        for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(policy.allows(&method), "{method}");
        }
        assert!(!policy.allows(&Method::POST));
        assert!(policy.retry_non_idempotent(true).allows(&Method::POST));
    }

    #[test]
    fn zero_attempts_means_one() {
        assert_eq!(RetryPolicy::new().max_attempts(0).attempts(), 1);
    }
}
