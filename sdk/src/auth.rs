//! The session: tokens, where they are kept, and the single-flight refresh.
//!
//! # How a refresh happens
//!
//! The client holds its tokens with a *generation* number that grows by one on every change
//! (login, refresh, logout), and a *session* number that grows when a session begins or ends
//! (login, register, logout, a rejected refresh). A request reads the token with both; when it
//! needs a refresh, because the token is about to expire or because the server answered 401 to
//! it, it asks for a refresh *of that generation*:
//!
//! - If the generation has moved on within the same session, somebody else already refreshed
//!   since this request read its token: it takes the current tokens and makes no call.
//! - If the session has changed (logged out, or logged in again, perhaps as someone else), the
//!   request belongs to a session that is over: [`Error::SessionExpired`], and it is not sent
//!   again with the new session's tokens.
//! - If a refresh of that generation is in flight, it waits for that one's outcome.
//! - Otherwise it starts one, and every request that arrives later waits for it.
//!
//! So any number of concurrent requests cause one `POST /auth/refresh`. The decision is taken
//! under a lock, and the refresh itself runs on a spawned task: a caller that gives up (its
//! future dropped by a timeout) does not abort a refresh that may already have consumed the
//! single-use refresh token on the server, and the rotated tokens are kept and stored anyway,
//! as long as the Tokio runtime runs. A runtime shut down (a program returning from `main`)
//! ends the task with it: a program that stops waiting for a call and exits at once may lose
//! the rotated tokens, and its next run finds the session revoked.
//! (octocrab's cached token is refreshed outside any lock, so parallel requests each mint one;
//! with rotating refresh tokens all but one of those would be treated as token reuse.)
//!
//! A refresh the server rejects (401, as Tasklane answers a refresh token it does not accept)
//! ends the session: the tokens and the [`TokenStore`] are cleared and every waiting request
//! gets [`Error::SessionExpired`]. Any other failure (transport, 5xx, 429, or an answer no
//! Tasklane server gives, such as a proxy's 403 or 404) keeps the tokens: the waiting requests
//! get [`Error::RefreshFailed`] with the failure inside, retryable when it is, and the next
//! request that needs a refresh tries again.
//!
//! # While the access token is still good
//!
//! A refresh starts before the access token expires (the skew, 30 s by default), so a request
//! that finds one running, or starts one, still holds a token the server accepts. It waits for
//! the refresh only until shortly before that token expires, then goes ahead with it, and waits
//! for the refresh again once its own answer is in: a refresh that is slow or failing does not
//! fail requests that the old token can make, and a call that started a refresh still returns
//! only once the rotated tokens are in (so a program that exits after it keeps them). After a
//! refresh failed for a passing reason, requests go ahead with the old token without trying
//! again for a second, or for as long as the server's `Retry-After` asked, so that a struggling
//! server is not sent a refresh with every request. Once the token has expired, every request
//! needs the refresh, and gets its outcome.
//!
//! That retry is safe when the refresh never reached the server (refused connection, 503, 429).
//! It may not be when the outcome is unknown: a timeout or a connection lost after the request
//! was sent. The server may then have consumed the refresh token and rotated the session to
//! tokens the client never received, and the token the client kept counts as reused at the
//! next attempt: the server revokes the session and the client reports
//! [`Error::SessionExpired`]. Nothing on the client side can tell the two cases apart; the
//! user logs in again.
//!
//! One session belongs to one client. Clones of a [`Client`](crate::Client) share it and refresh
//! it once; two clients built from the same tokens (in one process or two) each present the
//! refresh token when it is due, and the second use revokes the session for both.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use futures::future::{BoxFuture, FutureExt as _, Shared};
use serde::{Deserialize, Serialize};

use crate::observe::{self, CallSpan};
use crate::types::{Secret, TokenPair};
use crate::{Error, Result};

/// The tokens of a session: what the client sends, and what a [`TokenStore`] keeps.
///
/// Unlike the wire's [`TokenPair`], whose `expires_in` is relative to when it was issued,
/// `Tokens` knows the access token's expiry as an instant, so they can be stored and restored
/// later. `Debug` never shows the tokens themselves.
///
/// ```
/// use tasklane::Tokens;
///
/// let tokens = Tokens::new("access-jwt", "refresh-token");
/// assert!(!format!("{tokens:?}").contains("access-jwt"));
/// assert_eq!(tokens.access_token().expose(), "access-jwt");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    access_token: Secret,
    refresh_token: Secret,
    expires_at: Option<DateTime<Utc>>,
    /// When the access token was issued, which bounds the refresh skew: when the client
    /// received it, or its JWT `iat` for tokens made with [`Tokens::new`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_at: Option<DateTime<Utc>>,
}

impl Tokens {
    /// Tokens from an access token and a refresh token.
    ///
    /// The access token's expiry is read from its JWT `exp` claim (decoded, not verified: only
    /// the server can verify it). A token that is not a JWT gets no expiry and is refreshed
    /// only when the server refuses it.
    ///
    /// `exp` is a time on the server's clock, compared with the client's: when the two
    /// disagree by more than the refresh skew, the token is refreshed too early or only on a
    /// 401. Tokens the client hands to a [`TokenStore`], and their serde form, keep the expiry
    /// it measured on its own clock from the server's `expires_in`; restore those rather than
    /// making new ones from the token strings.
    pub fn new(access_token: impl Into<Secret>, refresh_token: impl Into<Secret>) -> Self {
        let access_token = access_token.into();
        let expires_at = jwt_claim_time(access_token.expose(), "exp");
        let issued_at = jwt_claim_time(access_token.expose(), "iat");
        Self { access_token, refresh_token: refresh_token.into(), expires_at, issued_at }
    }

    /// Sets when the access token expires, replacing what was read from the token.
    pub fn with_expires_at(mut self, expires_at: DateTime<Utc>) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// The access token, sent as `Authorization: Bearer`.
    pub fn access_token(&self) -> &Secret {
        &self.access_token
    }

    /// The refresh token, good for one `POST /auth/refresh`.
    pub fn refresh_token(&self) -> &Secret {
        &self.refresh_token
    }

    /// When the access token expires, if known.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    /// Whether the access token expires within `margin` of `now` (or already has).
    ///
    /// The margin is at most half the token's lifetime when that is known, so a server with
    /// access tokens shorter than the client's skew still gets a refresh per half-lifetime,
    /// not one before every request.
    pub(crate) fn expires_within(&self, margin: Duration, now: DateTime<Utc>) -> bool {
        let mut margin = TimeDelta::from_std(margin).unwrap_or(TimeDelta::MAX);
        if let (Some(issued), Some(expires)) = (self.issued_at, self.expires_at) {
            margin = margin.min((expires - issued) / 2);
        }
        self.expires_at.is_some_and(|at| at.signed_duration_since(now) <= margin)
    }
}

impl From<TokenPair> for Tokens {
    /// Tokens from a server's answer, received now: the access token was issued now and
    /// expires `expires_in` seconds later, both by the client's clock, whatever the server's
    /// clock says in the JWT's `iat` and `exp`. (A client clock minutes fast would otherwise
    /// refresh before every request, and a slow one only after a 401.) Only an `expires_in`
    /// too large for a timestamp leaves the expiry to `exp`.
    fn from(pair: TokenPair) -> Self {
        let now = Utc::now();
        let expires_at = i64::try_from(pair.expires_in)
            .ok()
            .and_then(TimeDelta::try_seconds)
            .and_then(|lifetime| now.checked_add_signed(lifetime));
        let tokens = Tokens::new(pair.access_token, pair.refresh_token);
        match expires_at {
            Some(expires_at) => Tokens { expires_at: Some(expires_at), issued_at: Some(now), ..tokens },
            None => tokens,
        }
    }
}

/// A time claim (`exp`, `iat`) of a JWT, read without verifying the token.
fn jwt_claim_time(token: &str, claim: &str) -> Option<DateTime<Utc>> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    // NumericDate may have a fraction; whole seconds are precise enough for a refresh deadline.
    let seconds = claims.get(claim)?.as_f64()?;
    DateTime::from_timestamp(seconds as i64, 0)
}

/// Where a client keeps its tokens beyond its own memory: a file, a keychain, a database.
///
/// The client calls [`save`](TokenStore::save) after every change of tokens (register, login,
/// each refresh, whose refresh token replaces the consumed one) and [`clear`](TokenStore::clear)
/// when the session ends (logout, [`Client::forget_session`](crate::Client::forget_session), or
/// a refresh the server rejected). Calls come one at a time,
/// in the order of the changes. Loading is up to the application: read the tokens before
/// building the client and pass them to [`ClientBuilder::tokens`](crate::ClientBuilder::tokens).
///
/// A store keeps one session for one client at a time. Two clients (or processes) resumed from
/// the same saved tokens share one refresh token: each presents it when its access token is due,
/// the server takes the second use for a stolen token, and revokes the session for both. Share a
/// session within a process by cloning the [`Client`](crate::Client); across processes, let one
/// of them own it, or give each its own login.
///
/// The methods return no error: by the time a store is called, the server has already rotated
/// the tokens, and the client goes on with them in memory whatever the store does. A store
/// that can fail should report it its own way (a log line, a metric). A store that panics is
/// ignored the same way after a refresh (the panic hook has reported it); in `login`,
/// `logout` and the like, the panic reaches their caller.
///
/// The client waits for the store: a call that refreshed returns once the new tokens are
/// saved, so that a program that exits right after it (a command-line tool) finds them at its
/// next start; `login`, `register`, `logout` and `forget_session` return once the store has
/// their change. So a store should be quick, and must finish: requests that wait for a refresh
/// wait for its save, and one that never finishes holds up every later change.
///
/// [`FileTokenStore`](crate::FileTokenStore) (feature `file-store`) keeps the session in a
/// private file. Any other store implements the two methods; here, one entry in an
/// application's settings, as JSON:
///
/// ```
/// use std::sync::Mutex;
///
/// use tasklane::{BoxFuture, TokenStore, Tokens};
///
/// /// The session as one JSON entry of the application's settings.
/// struct SettingsStore {
///     entry: Mutex<Option<String>>,
/// }
///
/// impl TokenStore for SettingsStore {
///     fn save<'a>(&'a self, tokens: &'a Tokens) -> BoxFuture<'a, ()> {
///         // `Tokens` serialize with their expiry, for `ClientBuilder::tokens` at the next start.
///         let json = serde_json::to_string(tokens).expect("tokens serialize to JSON");
///         *self.entry.lock().unwrap() = Some(json);
///         Box::pin(std::future::ready(()))
///     }
///
///     fn clear(&self) -> BoxFuture<'_, ()> {
///         *self.entry.lock().unwrap() = None;
///         Box::pin(std::future::ready(()))
///     }
/// }
/// ```
pub trait TokenStore: Send + Sync {
    /// Keeps `tokens`, replacing whatever was kept.
    fn save<'a>(&'a self, tokens: &'a Tokens) -> BoxFuture<'a, ()>;

    /// Forgets the kept tokens.
    fn clear(&self) -> BoxFuture<'_, ()>;
}

impl<T: TokenStore + ?Sized> TokenStore for Arc<T> {
    fn save<'a>(&'a self, tokens: &'a Tokens) -> BoxFuture<'a, ()> {
        (**self).save(tokens)
    }

    fn clear(&self) -> BoxFuture<'_, ()> {
        (**self).clear()
    }
}

/// A [`TokenStore`] in memory, shared by its clones: keep one clone to read what the client
/// stored. Useful in tests, and as a model for other stores.
///
/// ```
/// use tasklane::{Client, MemoryTokenStore};
///
/// let store = MemoryTokenStore::new();
/// let client = Client::builder("http://127.0.0.1:8000").token_store(store.clone()).build()?;
/// assert!(store.get().is_none()); // until the client logs in
/// # Ok::<(), tasklane::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryTokenStore {
    tokens: Arc<Mutex<Option<Tokens>>>,
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tokens last saved, unless cleared since.
    pub fn get(&self) -> Option<Tokens> {
        lock(&self.tokens).clone()
    }
}

impl From<Tokens> for MemoryTokenStore {
    /// A store that already holds `tokens`.
    fn from(tokens: Tokens) -> Self {
        Self { tokens: Arc::new(Mutex::new(Some(tokens))) }
    }
}

impl TokenStore for MemoryTokenStore {
    fn save<'a>(&'a self, tokens: &'a Tokens) -> BoxFuture<'a, ()> {
        *lock(&self.tokens) = Some(tokens.clone());
        Box::pin(std::future::ready(()))
    }

    fn clear(&self) -> BoxFuture<'_, ()> {
        *lock(&self.tokens) = None;
        Box::pin(std::future::ready(()))
    }
}

/// How a token refresh ended, as told to the hook of
/// [`ClientBuilder::on_refresh`](crate::ClientBuilder::on_refresh).
///
/// ```
/// use tasklane::RefreshOutcome;
///
/// fn describe(outcome: &RefreshOutcome) -> String {
///     match outcome {
///         RefreshOutcome::Refreshed { expires_at } => format!("new tokens, good until {expires_at:?}"),
///         RefreshOutcome::SessionExpired { .. } => "the session is over: log in again".to_owned(),
///         RefreshOutcome::Failed { error } => format!("could not refresh ({error}); will try again"),
///         _ => "something new".to_owned(),
///     }
/// }
/// # let _ = describe;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RefreshOutcome {
    /// The server issued new tokens; the session goes on with them, and the
    /// [`TokenStore`] has been given them.
    Refreshed {
        /// When the new access token expires, if known.
        expires_at: Option<DateTime<Utc>>,
    },
    /// The server refused the refresh token: the session is over and the store cleared.
    /// Calls fail with [`Error::SessionExpired`] until the user logs in again.
    SessionExpired {
        /// The server's refusal (an [`Error::Unauthorized`]).
        error: Error,
    },
    /// The refresh failed for another reason (the server unreachable or overloaded, an answer
    /// from a proxy): the tokens are kept, and the next call that needs a refresh tries again.
    /// The calls waiting for it got [`Error::RefreshFailed`] with this error inside.
    Failed {
        /// Why it failed.
        error: Error,
    },
}

/// The hook of [`ClientBuilder::on_refresh`](crate::ClientBuilder::on_refresh).
pub(crate) type RefreshHook = Arc<dyn Fn(&RefreshOutcome) + Send + Sync>;

/// The default store: nothing beyond the client's memory.
struct NoStore;

impl TokenStore for NoStore {
    fn save<'a>(&'a self, _: &'a Tokens) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }

    fn clear(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section here is a plain assignment or read).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The tokens a request is sent with, and the session and generation they belong to.
#[derive(Clone, Debug)]
pub(crate) struct Bearer {
    pub(crate) tokens: Arc<Tokens>,
    pub(crate) stamp: Stamp,
    /// Sent ahead of a refresh of its generation that is still running: the call waits for it
    /// once its own answer is in ([`Session::settle`]).
    pub(crate) ahead_of_refresh: bool,
}

/// Which tokens: the session (grows when one begins or ends) and the generation (grows on
/// every change, refreshes included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) session: u64,
    generation: u64,
}

type InFlight = Shared<BoxFuture<'static, Result<Bearer>>>;

/// Why a call asks for a refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefreshCause {
    /// The access token expires within the skew.
    Expiring,
    /// The server answered 401 to a request made with it.
    Refused,
    /// The application called [`Client::refresh`](crate::Client::refresh).
    Requested,
}

impl RefreshCause {
    #[cfg(feature = "tracing")]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RefreshCause::Expiring => "expiring",
            RefreshCause::Refused => "refused",
            RefreshCause::Requested => "requested",
        }
    }
}

/// How long before the old access token expires a request waiting for a refresh stops
/// waiting and goes ahead with it: time for the request to reach the server while the token is
/// still good there (which also allows some leeway of its own).
const EXPIRY_MARGIN: Duration = Duration::from_secs(1);

/// After a refresh failed for a reason that may pass, how long requests whose token is still
/// good go ahead with it before the next one tries again, unless the server's `Retry-After`
/// said longer: one try a second is enough for a token with (by default) 30 s still to run.
const REFRESH_BACKOFF: Duration = Duration::from_secs(1);

struct State {
    tokens: Option<Arc<Tokens>>,
    stamp: Stamp,
    /// The refresh of the current generation, while it runs.
    in_flight: Option<InFlight>,
    /// After a refresh of the current generation failed for a passing reason: no refresh
    /// before this instant while the access token is still good.
    quiet_until: Option<Instant>,
}

impl State {
    fn bearer(&self) -> Option<Bearer> {
        self.tokens.clone().map(|tokens| Bearer { tokens, stamp: self.stamp, ahead_of_refresh: false })
    }

    /// The current tokens for a request that read the tokens of `seen`: if they are of the
    /// same session. A request of a session that is over is not sent with another's tokens.
    fn bearer_for(&self, seen: Stamp) -> Result<Bearer> {
        self.bearer()
            .filter(|_| self.stamp.session == seen.session)
            .ok_or(Error::SessionExpired { response: None })
    }

    /// The session's tokens replaced by a refresh.
    fn refreshed(&mut self, tokens: Arc<Tokens>) {
        self.tokens = Some(tokens);
        self.stamp.generation += 1;
        // A refresh still running belongs to the old generation; it finds out when it ends.
        self.in_flight = None;
        self.quiet_until = None;
    }

    /// A session begins with `tokens`, or, with `None`, the current one ends.
    fn begin(&mut self, tokens: Option<Arc<Tokens>>) {
        self.tokens = tokens;
        self.stamp.session += 1;
        self.stamp.generation += 1;
        self.in_flight = None;
        self.quiet_until = None;
    }
}

/// A client's session: its tokens, their store, and the refresh protocol.
pub(crate) struct Session {
    state: Mutex<State>,
    /// Held while the tokens change and the store is told, so that the store sees the changes
    /// one at a time and in order. Never taken while `state` is locked.
    changes: tokio::sync::Mutex<()>,
    store: Arc<dyn TokenStore>,
    skew: Duration,
    on_refresh: Option<RefreshHook>,
}

impl Session {
    pub(crate) fn new(
        tokens: Option<Tokens>,
        store: Option<Arc<dyn TokenStore>>,
        skew: Duration,
        on_refresh: Option<RefreshHook>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                tokens: tokens.map(Arc::new),
                stamp: Stamp { session: 0, generation: 0 },
                in_flight: None,
                quiet_until: None,
            }),
            changes: tokio::sync::Mutex::new(()),
            store: store.unwrap_or_else(|| Arc::new(NoStore)),
            skew,
            on_refresh,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The current tokens.
    pub(crate) fn tokens(&self) -> Option<Tokens> {
        self.state().tokens.as_deref().cloned()
    }

    /// The current tokens with their stamp, without any refresh.
    pub(crate) fn current(&self) -> Option<Bearer> {
        self.state().bearer()
    }

    /// The tokens to send a request with: the current ones, refreshed first if the access token
    /// expires within the skew (see "While the access token is still good" in the module's
    /// documentation). [`Error::SessionExpired`] when the client holds no tokens.
    ///
    /// `exchange` sends `POST /auth/refresh` with a refresh token; it is called only if this
    /// caller is the one that starts a refresh.
    pub(crate) async fn bearer<E, F>(self: &Arc<Self>, exchange: E) -> Result<Bearer>
    where
        E: FnOnce(Secret) -> F + Send + 'static,
        F: Future<Output = Result<TokenPair>> + Send + 'static,
    {
        let bearer = self.current().ok_or(Error::SessionExpired { response: None })?;
        let now = Utc::now();
        if !bearer.tokens.expires_within(self.skew, now) {
            return Ok(bearer);
        }
        // How long the old token stays good enough to send, if it does.
        let good_for = bearer
            .tokens
            .expires_at
            .and_then(|at| (at - now).to_std().ok())
            .and_then(|left| left.checked_sub(EXPIRY_MARGIN))
            .filter(|left| !left.is_zero());
        let Some(good_for) = good_for else {
            return self.refresh(bearer.stamp, RefreshCause::Expiring, exchange).await;
        };
        if self.state().quiet_until.is_some_and(|until| Instant::now() < until) {
            observe::refresh_held_back();
            return Ok(bearer);
        }
        match tokio::time::timeout(good_for, self.refresh(bearer.stamp, RefreshCause::Expiring, exchange))
            .await
        {
            Ok(Ok(fresh)) => Ok(fresh),
            Ok(Err(err @ Error::SessionExpired { .. })) => Err(err),
            // Failed for a passing reason: the old token can still make the request.
            Ok(Err(_)) => Ok(bearer),
            // Still running: the same, and the caller waits for it once it has its answer.
            Err(_) => {
                observe::ahead_of_refresh();
                Ok(Bearer { ahead_of_refresh: true, ..bearer })
            }
        }
    }

    /// For a call sent [ahead of a refresh](Bearer::ahead_of_refresh): waits until that
    /// refresh has ended and its tokens are stored, so that the call returns with them kept.
    /// The refresh's outcome is the concern of the requests that need it.
    pub(crate) async fn settle(&self, bearer: &Bearer) {
        if !bearer.ahead_of_refresh {
            return;
        }
        let in_flight = {
            let state = self.state();
            state.in_flight.clone().filter(|_| state.stamp == bearer.stamp)
        };
        match in_flight {
            // Its outcome comes once the store has been told.
            Some(in_flight) => drop(in_flight.await),
            // Ended, but perhaps still being stored: that holds the lock on changes.
            None => drop(self.changes.lock().await),
        }
    }

    /// Replaces the tokens of `seen`, once however many callers ask; see the module's
    /// documentation.
    pub(crate) async fn refresh<E, F>(
        self: &Arc<Self>,
        seen: Stamp,
        cause: RefreshCause,
        exchange: E,
    ) -> Result<Bearer>
    where
        E: FnOnce(Secret) -> F + Send + 'static,
        F: Future<Output = Result<TokenPair>> + Send + 'static,
    {
        let in_flight = {
            let mut state = self.state();
            if state.stamp != seen {
                let current = state.bearer_for(seen);
                if current.is_ok() {
                    observe::refresh_done_already();
                }
                return current;
            }
            match &state.in_flight {
                Some(in_flight) => {
                    observe::refresh_joined(cause);
                    in_flight.clone()
                }
                None => {
                    let Some(tokens) = state.tokens.clone() else {
                        return Err(Error::SessionExpired { response: None });
                    };
                    observe::refresh_started(cause);
                    let in_flight = self.start_refresh(seen, tokens.refresh_token.clone(), exchange);
                    state.in_flight = Some(in_flight.clone());
                    in_flight
                }
            }
        };
        let outcome = in_flight.await;
        observe::refresh_finished(&outcome);
        outcome
    }

    fn start_refresh<E, F>(self: &Arc<Self>, seen: Stamp, refresh_token: Secret, exchange: E) -> InFlight
    where
        E: FnOnce(Secret) -> F + Send + 'static,
        F: Future<Output = Result<TokenPair>> + Send + 'static,
    {
        let session = Arc::clone(self);
        // The refresh's own span, a child of the call that starts it (the current span here).
        let span = CallSpan::refresh();
        let task = tokio::spawn(span.instrument(async move {
            let answer = exchange(refresh_token).await;
            session.finish_refresh(seen, answer).await
        }));
        let session = Arc::clone(self);
        async move {
            match task.await {
                Ok(outcome) => outcome,
                Err(err) => {
                    // The refresh was cancelled (the runtime is shutting down) or panicked: it
                    // will not finish, so the next caller must be free to start another. A
                    // panic is not resumed here: every waiter shares this future, and one that
                    // panics leaves the others waiting for ever.
                    {
                        let mut state = session.state();
                        if state.stamp == seen {
                            state.in_flight = None;
                        }
                    }
                    let err = Error::Transport { request_id: None, source: Arc::new(err) };
                    Err(Error::RefreshFailed { source: Box::new(err) })
                }
            }
        }
        .boxed()
        .shared()
    }

    async fn finish_refresh(&self, seen: Stamp, answer: Result<TokenPair>) -> Result<Bearer> {
        enum Change {
            Save(Arc<Tokens>),
            Clear,
        }
        // The expiry is measured from when the answer came, not from when the lock is free.
        let answer = answer.map(Tokens::from);
        let _changes = self.changes.lock().await;
        let (outcome, change, report) = {
            let mut state = self.state();
            if state.stamp != seen {
                // Logged in or out meanwhile: this refresh's result belongs to a past session.
                return state.bearer_for(seen);
            }
            match answer {
                Ok(tokens) => {
                    let tokens = Arc::new(tokens);
                    state.refreshed(Arc::clone(&tokens));
                    let report = RefreshOutcome::Refreshed { expires_at: tokens.expires_at };
                    (
                        Ok(Bearer {
                            tokens: Arc::clone(&tokens),
                            stamp: state.stamp,
                            ahead_of_refresh: false,
                        }),
                        Some(Change::Save(tokens)),
                        report,
                    )
                }
                Err(err) if is_rejection(&err) => {
                    state.begin(None);
                    let outcome = Err(Error::SessionExpired { response: err.response().cloned() });
                    (outcome, Some(Change::Clear), RefreshOutcome::SessionExpired { error: err })
                }
                Err(err) => {
                    state.in_flight = None;
                    let wait = err.retry_after().unwrap_or(REFRESH_BACKOFF).max(REFRESH_BACKOFF);
                    state.quiet_until = Instant::now().checked_add(wait);
                    let report = RefreshOutcome::Failed { error: err.clone() };
                    (Err(Error::RefreshFailed { source: Box::new(err) }), None, report)
                }
            }
        };
        // The tokens are the client's whatever the store does; a store that panics (in `save`
        // itself or in its future) has had its say through the panic hook, and the waiting
        // requests go on.
        let stored = async {
            match &change {
                Some(Change::Save(tokens)) => self.store.save(tokens).await,
                Some(Change::Clear) => self.store.clear().await,
                None => {}
            }
        };
        let _ = std::panic::AssertUnwindSafe(stored).catch_unwind().await;
        // Once the store has the change, so that a hook that reads the store finds it there. A
        // hook that panics is ignored, as a store is.
        if let Some(hook) = &self.on_refresh {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&report)));
        }
        outcome
    }

    /// Starts a new session with `tokens` (after register or login) and stores them.
    pub(crate) async fn replace(&self, tokens: Tokens) {
        let _changes = self.changes.lock().await;
        let tokens = Arc::new(tokens);
        self.state().begin(Some(Arc::clone(&tokens)));
        self.store.save(&tokens).await;
    }

    /// Ends the session: revokes the refresh token with `logout`, then forgets the tokens and
    /// clears the store. If `logout` fails, the tokens are kept and its error returned.
    ///
    /// The call to the server is made without holding up other changes: a refresh that ends
    /// meanwhile is stored (the server's logout revokes its tokens too, as the same family),
    /// and a session begun meanwhile (a login) is not the one revoked, so it is kept.
    pub(crate) async fn end<F: Future<Output = Result<()>>>(
        &self,
        logout: impl FnOnce(Secret) -> F,
    ) -> Result<()> {
        let (refresh_token, seen) = {
            let state = self.state();
            (state.tokens.as_ref().map(|t| t.refresh_token.clone()), state.stamp)
        };
        if let Some(refresh_token) = refresh_token {
            logout(refresh_token).await?;
        }
        let _changes = self.changes.lock().await;
        {
            let mut state = self.state();
            if state.stamp.session != seen.session {
                return Ok(());
            }
            state.begin(None);
        }
        self.store.clear().await;
        Ok(())
    }

    /// Forgets the tokens and clears the store, without calling the server. A refresh still
    /// running belongs to the old generation, so its outcome is discarded.
    pub(crate) async fn forget(&self) {
        let _changes = self.changes.lock().await;
        self.state().begin(None);
        self.store.clear().await;
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Session")
            .field("tokens", &state.tokens)
            .field("session", &state.stamp.session)
            .field("generation", &state.stamp.generation)
            .field("refreshing", &state.in_flight.is_some())
            .field("skew", &self.skew)
            .finish_non_exhaustive()
    }
}

/// Whether the server refused the refresh token itself (so the session is over), as opposed
/// to failing for a reason that may pass. Tasklane refuses a refresh token with 401 and
/// nothing else; a 400 or 403 comes from something in front of it (a proxy, a firewall) and
/// says nothing of the token, which stays good.
fn is_rejection(err: &Error) -> bool {
    matches!(err, Error::Unauthorized { .. })
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn jwt(claims: &str) -> String {
        format!("{}.{}.sig", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#), URL_SAFE_NO_PAD.encode(claims))
    }

    #[test]
    fn reads_exp_from_a_jwt() {
        let at = |s| DateTime::from_timestamp(s, 0);
        assert_eq!(jwt_claim_time(&jwt(r#"{"sub":"1","exp":1700000000}"#), "exp"), at(1_700_000_000));
        assert_eq!(jwt_claim_time(&jwt(r#"{"exp":1700000000.75}"#), "exp"), at(1_700_000_000));
        assert_eq!(jwt_claim_time(&jwt(r#"{"sub":"1"}"#), "exp"), None);
        assert_eq!(jwt_claim_time("opaque-token", "exp"), None);
        assert_eq!(jwt_claim_time("a.!!!.c", "exp"), None);
        assert_eq!(jwt_claim_time("a.b.c.d", "exp"), None);
    }

    #[test]
    fn a_pair_expires_by_its_lifetime_on_the_client_clock() {
        let now = Utc::now().timestamp();
        let pair = |access: String, expires_in| TokenPair {
            access_token: access.into(),
            refresh_token: "r".into(),
            token_type: "bearer".into(),
            expires_in,
        };
        // The server's clock an hour behind: its `iat`/`exp` are ignored for `expires_in`.
        let behind = jwt(&format!(r#"{{"iat":{},"exp":{}}}"#, now - 3600, now - 3540));
        for access in [behind.clone(), "opaque".to_owned()] {
            let tokens = Tokens::from(pair(access, 30));
            let left = tokens.expires_at().unwrap() - Utc::now();
            assert!(left <= TimeDelta::seconds(30) && left > TimeDelta::seconds(25), "{left}");
            // A 30 s token under a 30 s skew is refreshed at half-life, 15 s from now.
            assert!(!tokens.expires_within(Duration::from_secs(30), Utc::now()));
            assert!(tokens.expires_within(Duration::from_secs(30), Utc::now() + TimeDelta::seconds(16)));
        }
        // Only a lifetime beyond any timestamp leaves the expiry to `exp`.
        assert_eq!(Tokens::from(pair(behind, u64::MAX)).expires_at().unwrap().timestamp(), now - 3540);
        assert!(Tokens::from(pair("opaque".into(), u64::MAX)).expires_at().is_none());
    }

    #[test]
    fn expiry_margin() {
        let now = Utc::now();
        let tokens = Tokens::new("a", "r").with_expires_at(now + TimeDelta::seconds(20));
        assert!(tokens.expires_within(Duration::from_secs(30), now));
        assert!(!tokens.expires_within(Duration::from_secs(10), now));
        assert!(!Tokens::new("a", "r").expires_within(Duration::from_secs(3600), now));
        // A 4 s token under a 30 s skew is refreshed at half-life, not at once.
        let iat = now.timestamp();
        let short = Tokens::new(jwt(&format!(r#"{{"iat":{iat},"exp":{}}}"#, iat + 4)), "r");
        assert!(!short.expires_within(Duration::from_secs(30), now));
        assert!(short.expires_within(Duration::from_secs(30), now + TimeDelta::seconds(2)));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let tokens = Tokens::new("access-secret", "refresh-secret");
        let session = Session::new(Some(tokens.clone()), None, Duration::ZERO, None);
        for text in
            [format!("{tokens:?}"), format!("{session:?}"), format!("{:?}", MemoryTokenStore::from(tokens))]
        {
            assert!(!text.contains("secret"), "{text}");
        }
    }
}
