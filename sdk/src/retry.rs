//! When and how long to wait before sending a failed request again.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use reqwest::{Method, Request};

use crate::deadline::Deadline;
use crate::observe;
use crate::{Error, Result};

/// The header that makes a POST safe to send again (its name in lowercase, as `http` wants
/// it).
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How the client retries requests that failed in a way that may pass: transport errors,
/// timeouts, 429, 502, 503 and 504, and the 409 of a create whose `Idempotency-Key` is still
/// being processed.
///
/// Between attempts it waits an exponential backoff with "full jitter" (a random delay between
/// zero and `base_delay × 2^(retry - 1)`, capped at `max_delay`), which spreads out the clients
/// that failed together. When the server sends `Retry-After` (Tasklane does with 429, 503 and
/// a create's 409), that delay is used instead; one longer than `max_delay` is not waited for:
/// the error ([`Error::RateLimited`], or [`Error::Server`] for a 503) is returned at once, with
/// the wait in [`Error::retry_after`], so the caller decides.
///
/// Idempotent requests are retried: GET, PUT, PATCH, DELETE (and HEAD, OPTIONS). PATCH is not
/// idempotent in HTTP in general, but Tasklane's PATCH sets the fields it names to the given
/// values, exactly like its PUT, so sending it twice leaves the same task.
///
/// So is creating a task ([`Tasks::create`](crate::Tasks::create)): each create carries an
/// `Idempotency-Key` of its own, the same on every attempt, and the server answers a repeat
/// with what it answered the first time instead of creating a second task. While the first
/// attempt is still being processed, the server answers a repeat 409 with `Retry-After: 1`,
/// which is waited for like a 503's.
///
/// Other POSTs (logging in, registering) are retried when they certainly were not acted on:
/// the connection could not be opened, the server answered 429 (it refuses before doing
/// anything), or a failed token refresh held them back ([`Error::RefreshFailed`]). After any
/// other failure they are retried only with [`RetryPolicy::retry_non_idempotent`]: a POST
/// whose answer was lost may have been applied. A token refresh is never retried by this
/// policy, since a refresh token can be used once.
///
/// A retried DELETE whose first attempt was applied (but whose answer was lost) answers 404;
/// a retried conditional write ([`Tasks::update_if`](crate::Tasks::update_if) and the others)
/// answers 412, [`Error::PreconditionFailed`], its `current_etag` being that of the write
/// itself.
///
/// Each attempt has the client's [`timeout`](crate::ClientBuilder::timeout), and the attempts
/// with their waits are bounded together by the call's deadline
/// ([`call_timeout`](crate::ClientBuilder::call_timeout)): a retry whose wait would end past
/// the deadline is not waited for, and the call fails at once with
/// [`Error::DeadlineExceeded`], carrying the error that asked for the wait.
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
    /// limit waits, or gets [`Error::RateLimited`] at once when the wait is longer). The call's
    /// deadline (30 s by default) leaves time for one wait of 20 s, not two.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    /// 100 ms: the first retry comes quickly (a lost connection usually succeeds at once).
    pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(100);
    /// 20 s: the longest single wait, for backoff and for `Retry-After` alike; the cap the AWS
    /// SDKs use for the same purpose.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(20);

    /// The default policy: 3 attempts, 100 ms base delay, 20 s longest delay, POST retried
    /// only with an `Idempotency-Key` or when certainly not acted on.
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

    /// Whether POST requests without an `Idempotency-Key` are retried after any retryable
    /// failure, not only after those that show they were not acted on. Off by default: see
    /// the type's documentation. Creating a task carries a key, and is retried either way.
    pub fn retry_non_idempotent(mut self, retry: bool) -> Self {
        self.retry_non_idempotent = retry;
        self
    }

    /// How many times a request is sent at most.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Makes the attempts of one call, by this policy and within `deadline`, until one succeeds
    /// or the call fails for good; the outcome, and how many attempts were made.
    ///
    /// `replayable` says whether the request may be sent again after any retryable failure
    /// ([`allows`](RetryPolicy::allows)); when it may not, it is sent again only after a
    /// failure that shows it was not acted on.
    ///
    /// `attempt` makes one attempt, bounded by the deadline it is given: it returns
    /// [`Error::DeadlineExceeded`] when cut short (whatever it carries is replaced here by the
    /// call's `request_id` and the error of the attempt before). It is not cut short from the
    /// outside, so that an attempt that has its answer can still finish what it must (wait
    /// for a token refresh to be stored) before it returns.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        replayable: bool,
        deadline: Deadline,
        request_id: Option<&str>,
        mut attempt: F,
    ) -> (Result<T>, u32)
    where
        F: FnMut(Deadline) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let exceeded = |last_error| deadline.exceeded(request_id.map(str::to_owned), last_error);
        let mut attempts = 1;
        let mut last_error = None;
        loop {
            let err = match attempt(deadline).await {
                Ok(value) => return (Ok(value), attempts),
                Err(Error::DeadlineExceeded { .. }) => return (Err(exceeded(last_error)), attempts),
                Err(err) => err,
            };
            let allowed = replayable || err.certainly_not_acted_on();
            if attempts >= self.attempts() || !err.is_retryable() || !allowed {
                return (Err(err), attempts);
            }
            let Some(delay) = self.delay(attempts, &err) else { return (Err(err), attempts) };
            if !deadline.leaves_time_after(delay) {
                observe::no_time_to_retry(attempts, delay, &err);
                return (Err(exceeded(Some(err))), attempts);
            }
            observe::retrying(attempts, delay, &err);
            tokio::time::sleep(delay).await;
            last_error = Some(err);
            attempts += 1;
        }
    }

    /// Whether `request` may be sent more than once after any failure: its method is
    /// idempotent, or it carries an `Idempotency-Key` (the server answers a repeat with the
    /// first answer), or this policy retries every POST.
    pub(crate) fn allows(&self, request: &Request) -> bool {
        self.retry_non_idempotent
            || request.headers().contains_key(IDEMPOTENCY_KEY)
            || matches!(
                *request.method(),
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

    /// Full jitter: uniform in `[0, min(max_delay, base_delay × 2^(retry - 1))]`. Also the
    /// wait of a [`Watch`](crate::Watch) before it reconnects.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
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

    fn request(method: Method, key: Option<&'static str>) -> Request {
        let mut request = Request::new(method, "http://localhost/tasks/".parse().unwrap());
        if let Some(key) = key {
            request.headers_mut().insert(IDEMPOTENCY_KEY, HeaderValue::from_static(key));
        }
        request
    }

    #[test]
    fn methods_retried_by_default_are_the_idempotent_ones_and_keyed_posts() {
        let policy = RetryPolicy::new();
        for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(policy.allows(&request(method.clone(), None)), "{method}");
        }
        assert!(!policy.allows(&request(Method::POST, None)));
        assert!(policy.allows(&request(Method::POST, Some("k-1"))));
        assert!(policy.retry_non_idempotent(true).allows(&request(Method::POST, None)));
    }

    #[test]
    fn zero_attempts_means_one() {
        assert_eq!(RetryPolicy::new().max_attempts(0).attempts(), 1);
    }

    use std::sync::Mutex;

    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
    use reqwest::StatusCode;
    use tokio::time::Instant;

    /// The error of an answer `status` with `Retry-After: retry_after` seconds.
    fn refusal(status: StatusCode, retry_after: Option<&'static str>) -> Error {
        let mut headers = HeaderMap::new();
        if let Some(seconds) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        Error::from_status(status, &headers, b"", Some("call-1".to_owned()))
    }

    /// Runs a GET by `policy` within `call_timeout`, each attempt failing with `fail()`; the
    /// outcome, and when each attempt began and the call ended, as offsets on the paused clock.
    async fn run_failing(
        policy: RetryPolicy,
        call_timeout: Option<Duration>,
        fail: impl Fn() -> Error,
    ) -> (Error, Vec<Duration>, Duration) {
        let start = Instant::now();
        let began = Mutex::new(Vec::new());
        let deadline = Deadline::start(call_timeout);
        let (outcome, attempts) = policy
            .run(true, deadline, Some("call-1"), |deadline| {
                began.lock().unwrap().push(start.elapsed());
                let err = fail();
                // Bounded as the client's attempts are; not ready at the first poll, as no
                // answer comes from the network at once.
                deadline.bound(async move {
                    tokio::task::yield_now().await;
                    Err::<(), _>(err)
                })
            })
            .await;
        let began = began.into_inner().unwrap();
        assert_eq!(attempts as usize, began.len());
        (outcome.unwrap_err(), began, start.elapsed())
    }

    /// Endless 429s with `Retry-After: 5`, and as many attempts as the policy likes: the call
    /// ends with the deadline error as soon as the next wait would pass the deadline (at 10 s
    /// of 12), rather than sleeping up to it.
    #[tokio::test(start_paused = true)]
    async fn endless_429s_with_retry_after_end_at_the_deadline() {
        let policy = RetryPolicy::new().max_attempts(u32::MAX);
        let (err, began, ended) = run_failing(policy, Some(Duration::from_secs(12)), || {
            refusal(StatusCode::TOO_MANY_REQUESTS, Some("5"))
        })
        .await;

        let secs = |s| Duration::from_secs(s);
        assert_eq!(began, [secs(0), secs(5), secs(10)]);
        assert_eq!(ended, secs(10), "failed at once, not at the deadline");
        let Error::DeadlineExceeded { timeout, request_id, last_error: Some(last) } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*timeout, request_id.as_deref()), (secs(12), Some("call-1")));
        assert!(matches!(**last, Error::RateLimited { .. }), "{last:?}");
        assert_eq!(err.retry_after(), Some(secs(5)));
        assert!(err.is_retryable());
        assert_eq!(err.status(), None);
    }

    /// With the defaults, a GET facing 429s that ask for the longest wait the policy allows
    /// (20 s) gets one wait, not two: about 20 s, where it used to take 40.
    #[tokio::test(start_paused = true)]
    async fn the_default_deadline_leaves_room_for_one_long_wait_only() {
        let call_timeout = Some(crate::ClientBuilder::DEFAULT_CALL_TIMEOUT);
        let (err, began, ended) = run_failing(RetryPolicy::default(), call_timeout, || {
            refusal(StatusCode::TOO_MANY_REQUESTS, Some("20"))
        })
        .await;

        assert_eq!(began, [Duration::ZERO, Duration::from_secs(20)]);
        assert_eq!(ended, Duration::from_secs(20));
        assert!(matches!(err, Error::DeadlineExceeded { last_error: Some(_), .. }), "{err:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_deadline_the_policy_alone_ends_the_call() {
        let policy = RetryPolicy::new().max_attempts(4);
        let (err, began, _) =
            run_failing(policy, None, || refusal(StatusCode::TOO_MANY_REQUESTS, Some("5"))).await;

        assert_eq!(began.len(), 4);
        assert_eq!(began[3], Duration::from_secs(15));
        assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    }

    /// An attempt still running at the deadline is cut there; the error carries the one of
    /// the attempt before.
    #[tokio::test(start_paused = true)]
    async fn an_attempt_cut_by_the_deadline_carries_the_error_before() {
        let start = Instant::now();
        let deadline = Deadline::start(Some(Duration::from_secs(3)));
        let mut attempt = 0;
        let (outcome, attempts) = RetryPolicy::new()
            .run(true, deadline, Some("call-1"), |deadline| {
                attempt += 1;
                let first = attempt == 1;
                async move {
                    if first {
                        return Err(refusal(StatusCode::SERVICE_UNAVAILABLE, Some("1")));
                    }
                    deadline.bound(std::future::pending::<Result<()>>()).await
                }
            })
            .await;

        assert_eq!((attempts, start.elapsed()), (2, Duration::from_secs(3)));
        let err = outcome.unwrap_err();
        let Error::DeadlineExceeded { last_error: Some(last), .. } = &err else { panic!("{err:?}") };
        assert_eq!(last.status(), Some(503));
        assert_eq!(err.request_id(), Some("call-1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_attempt_cut_by_the_deadline_has_no_last_error() {
        let deadline = Deadline::start(Some(Duration::from_secs(3)));
        let (outcome, attempts) = RetryPolicy::new()
            .run(true, deadline, Some("call-1"), |deadline| {
                deadline.bound(std::future::pending::<Result<()>>())
            })
            .await;

        assert_eq!(attempts, 1);
        assert!(matches!(outcome, Err(Error::DeadlineExceeded { last_error: None, .. })), "{outcome:?}");
    }
}
