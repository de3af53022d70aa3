//! The client, its builder, and the path every request takes.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt as _};
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, IF_NONE_MATCH, USER_AGENT,
};
use reqwest::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;

use crate::auth::{RefreshCause, RefreshHook, RefreshOutcome, Session, TokenStore, Tokens};
use crate::deadline::Deadline;
use crate::error::{etag, request_id, REQUEST_ID};
use crate::etag::Tagged;
use crate::observe::{self, CallSpan};
use crate::retry::RetryPolicy;
use crate::tasks::Tasks;
use crate::types::{Credentials, HealthStatus, RefreshRequest, Secret, TokenPair, User};
use crate::{Error, Result};

/// The `User-Agent` of a client that names none.
const DEFAULT_USER_AGENT: &str = concat!("tasklane-rust/", env!("CARGO_PKG_VERSION"));

/// A client of the Tasklane API.
///
/// Cloning is cheap (the state is shared behind an `Arc`), and a client can be used from many
/// tasks at once: clones share the connection pool and the session, so a token refreshed by
/// one is used by all.
///
/// The client refreshes the access token by itself, once for any number of concurrent
/// requests: shortly before it expires, and when the server answers 401 to a request made
/// with it (which is then sent again, once). See [`Error::SessionExpired`] for when that is no
/// longer possible: a call that needs a session fails with it, without a round trip, while the
/// client holds no tokens.
///
/// ```no_run
/// # async fn demo() -> tasklane::Result<()> {
/// use tasklane::{Client, NewTask};
///
/// let client = Client::new("http://127.0.0.1:8000")?;
/// client.login("ada", "correct horse battery").await?;
/// let task = client.tasks().create(NewTask::new("write the docs")).await?;
/// println!("created #{}", task.id);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// Outside `inner`, so that [`Client::with_call_timeout`] makes a client with its own
    /// deadline that shares everything else.
    call_timeout: Option<Duration>,
}

struct Inner {
    http: reqwest::Client,
    /// Always ends with `/`, so that API paths join below it.
    base_url: Url,
    /// Set on each request only when the `reqwest::Client` was injected; a client the builder
    /// makes has these as its own defaults.
    user_agent: Option<HeaderValue>,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    session: Arc<Session>,
}

/// The API's routes, as templates: what a call's span names (never its URL, whose ids and
/// query are the caller's data).
pub(crate) mod route {
    pub(crate) const REGISTER: &str = "/auth/register";
    pub(crate) const LOGIN: &str = "/auth/login";
    pub(crate) const REFRESH: &str = "/auth/refresh";
    pub(crate) const LOGOUT: &str = "/auth/logout";
    pub(crate) const ME: &str = "/auth/me";
    pub(crate) const HEALTH: &str = "/health";
    pub(crate) const READY: &str = "/ready";
    pub(crate) const TASKS: &str = "/tasks/";
    pub(crate) const TASK: &str = "/tasks/{id}";
    pub(crate) const CHANGES: &str = "/tasks/changes";
    pub(crate) const EVENTS: &str = "/tasks/events";
}

/// A request ready to be sent, and the route it is an instance of.
pub(crate) struct Call {
    pub(crate) request: Request,
    /// A template such as `/tasks/{id}` (see [`route`]).
    pub(crate) route: &'static str,
}

/// Whether a request carries the session's access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Auth {
    /// No `Authorization` header, and a 401 is final: `/auth/register`, `/auth/login`,
    /// `/auth/refresh`, `/auth/logout`, `/health`, `/ready`.
    None,
    /// `Authorization: Bearer`, with proactive and reactive refresh; without tokens the
    /// request is not sent and fails with [`Error::SessionExpired`].
    Bearer,
}

impl Client {
    /// A builder for a client of the API at `base_url`, such as `https://tasks.example.com` or
    /// `http://127.0.0.1:8000/api/` (API paths are joined below it).
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(base_url.into())
    }

    /// A client of the API at `base_url` with the default settings and no session yet.
    ///
    /// # Errors
    ///
    /// [`Error::Configuration`] if `base_url` is not an `http` or `https` URL.
    pub fn new(base_url: impl Into<String>) -> Result<Self> {
        Self::builder(base_url).build()
    }

    /// The base URL that API paths are joined to.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// How long each call of this client may take in all; `None` for no limit. See
    /// [`ClientBuilder::call_timeout`].
    pub fn call_timeout(&self) -> Option<Duration> {
        self.call_timeout
    }

    /// How this client retries, and how long a watch waits before it reconnects.
    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// This client with another call timeout (`None` for none), for the calls made through
    /// it; the client it comes from keeps its own.
    ///
    /// A cheap clone: both share the connection pool and the session (a login or a refresh
    /// through either is the other's too), and differ only in how long a call may take.
    ///
    /// ```no_run
    /// # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
    /// use std::time::Duration;
    ///
    /// // An interactive lookup gives up sooner than the client's default allows.
    /// let task = client.with_call_timeout(Duration::from_secs(3)).tasks().get(7).await?;
    ///
    /// // A background job that should wait out a rate limit keeps retrying as the policy says.
    /// let patient = client.with_call_timeout(None);
    /// patient.tasks().delete(task.id).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_call_timeout(&self, timeout: impl Into<Option<Duration>>) -> Client {
        Client { inner: Arc::clone(&self.inner), call_timeout: timeout.into() }
    }

    /// The session's current tokens, if it has any.
    pub fn tokens(&self) -> Option<Tokens> {
        self.inner.session.tokens()
    }

    /// The tasks of the logged-in user.
    pub fn tasks(&self) -> Tasks<'_> {
        Tasks::new(self)
    }

    /// Registers a user (`POST /auth/register`) and starts a session as that user.
    ///
    /// The credentials are checked against the API's rules first (username of 3 to 64 ASCII
    /// letters, digits, `_`, `-` or `.`; password of 8 to 128 characters).
    ///
    /// # Errors
    ///
    /// [`Error::Validation`] for credentials that break the rules, [`Error::Conflict`] when the
    /// username is taken (ignoring case).
    pub async fn register(&self, username: impl Into<String>, password: impl Into<Secret>) -> Result<Tokens> {
        let credentials = Credentials::new(username, password);
        credentials.validate().map_err(Error::invalid)?;
        self.start_session(route::REGISTER, &credentials).await
    }

    /// Logs in (`POST /auth/login`) and starts a session; the tokens go to the
    /// [`TokenStore`].
    ///
    /// # Errors
    ///
    /// [`Error::Unauthorized`] for an unknown user or a wrong password (the server does not
    /// say which).
    pub async fn login(&self, username: impl Into<String>, password: impl Into<Secret>) -> Result<Tokens> {
        self.start_session(route::LOGIN, &Credentials::new(username, password)).await
    }

    async fn start_session(&self, route: &'static str, credentials: &Credentials) -> Result<Tokens> {
        let call = self.json_request(Method::POST, route, self.route_url(route), credentials);
        let pair: TokenPair = self.send(call, Auth::None).await?.json()?;
        let tokens = Tokens::from(pair);
        self.inner.session.replace(tokens.clone()).await;
        Ok(tokens)
    }

    /// Replaces the tokens now (`POST /auth/refresh`), as the client otherwise does by itself
    /// when they are about to expire. Concurrent refreshes, explicit or automatic, are one.
    ///
    /// # Errors
    ///
    /// [`Error::SessionExpired`] when the server rejects the refresh token (the session is
    /// then over and the store cleared) or when the client has no session;
    /// [`Error::RefreshFailed`] otherwise, retryable when the server could not be reached or
    /// answered 5xx or 429 (the tokens are kept). After a timeout or a
    /// connection lost once the request was sent, the server may have consumed the refresh
    /// token all the same, and the next refresh then ends the session with `SessionExpired`.
    ///
    /// The call's deadline bounds the wait, not the refresh: one that is still running when
    /// [`Error::DeadlineExceeded`] is returned goes on, and its tokens are stored.
    pub async fn refresh(&self) -> Result<Tokens> {
        let session = &self.inner.session;
        // A call of its own, whose request is the refresh's (its span a child of this one).
        let span = CallSpan::request(&Method::POST, route::REFRESH, None);
        let deadline = Deadline::start(self.call_timeout);
        let outcome = span
            .instrument(async {
                let current = session.current().ok_or(Error::SessionExpired { response: None })?;
                let refresh = session.refresh(current.stamp, RefreshCause::Requested, self.exchange());
                deadline.bound(refresh).await
            })
            .await;
        // No answer of its own: the refresh's request span has the status.
        span.finish(1, outcome.as_ref().map(|_| None));
        Ok(Tokens::clone(&outcome?.tokens))
    }

    /// Ends the session: revokes the refresh token's family on the server
    /// (`POST /auth/logout`), then forgets the tokens and clears the [`TokenStore`].
    ///
    /// Access tokens already issued stay valid until they expire (the server keeps no list of
    /// them). Without a session this only clears the store.
    ///
    /// # Errors
    ///
    /// A transport or server error; the session is then kept, so the logout can be tried again,
    /// or dropped here alone with [`forget_session`](Client::forget_session).
    pub async fn logout(&self) -> Result<()> {
        self.inner
            .session
            .end(|refresh_token| async move {
                let body = RefreshRequest { refresh_token };
                let call =
                    self.json_request(Method::POST, route::LOGOUT, self.route_url(route::LOGOUT), &body);
                self.send(call, Auth::None).await.map(drop)
            })
            .await
    }

    /// Ends the session here only, without a word to the server: forgets the tokens and
    /// clears the [`TokenStore`]. Calls that need a session then fail with
    /// [`Error::SessionExpired`], and a refresh still in flight is disregarded when it ends.
    ///
    /// For when [`logout`](Client::logout) cannot reach the server and the user must be signed
    /// out all the same. The refresh token stays good on the server until it expires (7 days by
    /// default), so prefer `logout` when the server can be reached; keep
    /// [`tokens`](Client::tokens) first to try the logout again later with another client.
    ///
    /// ```no_run
    /// # async fn demo(client: tasklane::Client) {
    /// if let Err(err) = client.logout().await {
    ///     eprintln!("could not end the session on the server ({err}); signing out here only");
    ///     client.forget_session().await;
    /// }
    /// # }
    /// ```
    pub async fn forget_session(&self) {
        self.inner.session.forget().await;
    }

    /// The logged-in user (`GET /auth/me`).
    ///
    /// # Errors
    ///
    /// [`Error::SessionExpired`] without a session, as for every call that needs one.
    pub async fn me(&self) -> Result<User> {
        self.get_json(route::ME, self.route_url(route::ME), Auth::Bearer).await
    }

    /// Whether the server process is serving (`GET /health`). Probes are sent once, never
    /// retried, so they report the present state.
    pub async fn health(&self) -> Result<HealthStatus> {
        self.probe(route::HEALTH).await
    }

    /// Whether the server can serve requests: its database (and Redis, if configured) answer
    /// (`GET /ready`). A server that is not ready answers 503: [`Error::Server`].
    pub async fn ready(&self) -> Result<HealthStatus> {
        self.probe(route::READY).await
    }

    async fn probe(&self, route: &'static str) -> Result<HealthStatus> {
        let call = self.request(Method::GET, route, self.route_url(route), None);
        self.execute(call, Auth::None, &RetryPolicy::disabled()).await?.json()
    }

    // ---- The request path, used by the resource handles too ----

    /// `path` (relative, such as `tasks/7`) joined to the base URL.
    pub(crate) fn endpoint(&self, path: &str) -> Url {
        // The base is an http(s) URL ending in `/` (checked at build) and `path` is one of this
        // crate's relative paths, so joining cannot fail.
        self.inner.base_url.join(path).expect("API paths join onto the base URL")
    }

    /// The URL of a route without parameters, such as [`route::LOGIN`].
    fn route_url(&self, route: &'static str) -> Url {
        self.endpoint(route.trim_start_matches('/'))
    }

    /// Whether `url` is below the base URL: on the API's origin (scheme, host and port) and
    /// under its path. Only such URLs are followed with the access token; another path on the
    /// same host may be another application.
    pub(crate) fn is_below_base(&self, url: &Url) -> bool {
        let base = &self.inner.base_url;
        url.origin() == base.origin() && url.path().starts_with(base.path())
    }

    /// A request for `route` at `url` with this client's headers and, if given, a JSON body.
    ///
    /// Each call gets an `X-Request-Id` of its own (32 random hex digits), sent again with every
    /// attempt of that call (retries, and the replay after a refresh), so the server's access
    /// lines of one call share it, and an error the server answered names it
    /// ([`Error::request_id`](crate::Error::request_id)).
    pub(crate) fn request(
        &self,
        method: Method,
        route: &'static str,
        url: Url,
        json: Option<Vec<u8>>,
    ) -> Call {
        let mut request = Request::new(method, url);
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let id = format!("{:032x}", rand::random::<u128>());
        headers.insert(HeaderName::from_static(REQUEST_ID), HeaderValue::from_str(&id).expect("hex digits"));
        if let Some(user_agent) = &self.inner.user_agent {
            headers.insert(USER_AGENT, user_agent.clone());
        }
        if let Some(json) = json {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            *request.body_mut() = Some(json.into());
        }
        *request.timeout_mut() = self.inner.timeout;
        Call { request, route }
    }

    pub(crate) fn json_request(
        &self,
        method: Method,
        route: &'static str,
        url: Url,
        body: &impl Serialize,
    ) -> Call {
        // The wire types are plain structs with string keys: serializing them cannot fail.
        let json = serde_json::to_vec(body).expect("request bodies serialize to JSON");
        self.request(method, route, url, Some(json))
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        route: &'static str,
        url: Url,
        auth: Auth,
    ) -> Result<T> {
        self.send(self.request(Method::GET, route, url, None), auth).await?.json()
    }

    /// Sends `request`, retrying it by the [`RetryPolicy`] within the call's deadline; a
    /// success status with its whole body, or an error.
    pub(crate) async fn send(&self, call: Call, auth: Auth) -> Result<Answer> {
        self.execute(call, auth, &self.inner.retry).await
    }

    /// [`send`](Client::send) by `policy`, in the call's span.
    async fn execute(&self, call: Call, auth: Auth, policy: &RetryPolicy) -> Result<Answer> {
        let Call { request, route } = call;
        let deadline = Deadline::start(self.call_timeout);
        let sent_id = request_id(request.headers());
        let span = CallSpan::request(request.method(), route, sent_id.as_deref());
        // The session the first attempt was made in: a retry is not sent in another.
        let sent_in = OnceLock::new();
        let attempt = |deadline| self.attempt(&request, auth, &sent_in, deadline);
        let run = policy.run(policy.allows(&request), deadline, sent_id.as_deref(), attempt);
        let (outcome, attempts) = span.instrument(run).await;
        span.finish(attempts, outcome.as_ref().map(|answer| Some(answer.status)));
        outcome
    }

    /// One attempt: with the access token (refreshed first if it is about to expire), and once
    /// more with a refreshed one if the server answers 401 to it. Without tokens, a request
    /// that needs them is not sent: [`Error::SessionExpired`]; nor is one whose earlier
    /// attempt was made in a session that has ended since (`sent_in`, recorded here).
    ///
    /// Every wait is bounded by `deadline` ([`Error::DeadlineExceeded`]), except the last: a
    /// call that has its answer returns it, and waits for a refresh it went ahead of only
    /// while the deadline allows (that refresh goes on by itself).
    async fn attempt(
        &self,
        request: &Request,
        auth: Auth,
        sent_in: &OnceLock<u64>,
        deadline: Deadline,
    ) -> Result<Answer> {
        let session = &self.inner.session;
        if auth == Auth::None {
            return deadline.bound(self.transmit(request, None)).await;
        }
        let bearer = deadline.bound(session.bearer(self.exchange())).await?;
        if *sent_in.get_or_init(|| bearer.stamp.session) != bearer.stamp.session {
            return Err(Error::SessionExpired { response: None });
        }
        match deadline.bound(self.transmit(request, Some(&bearer.tokens))).await {
            Err(Error::Unauthorized { .. }) => {
                // Refresh the generation this request was sent with: if another request has
                // refreshed since, this takes its tokens without a call; if the session has
                // changed (a logout, a login as someone else), it is not sent again.
                let refresh = session.refresh(bearer.stamp, RefreshCause::Refused, self.exchange());
                let fresh = deadline.bound(refresh).await?;
                deadline.bound(self.transmit(request, Some(&fresh.tokens))).await
            }
            outcome => {
                // Sent with a token that a refresh still running is replacing: that refresh
                // ends (and is stored) before the call returns, unless the deadline comes
                // first; the answer is the call's either way.
                deadline.within(session.settle(&bearer)).await;
                outcome
            }
        }
    }

    /// Sends `request` once and reads the answer to its end; a response with an error status
    /// becomes the matching [`Error`]. A 304 is an answer, not an error, to a request that
    /// asked for one with `If-None-Match`.
    async fn transmit(&self, request: &Request, tokens: Option<&Tokens>) -> Result<Answer> {
        let sent_id = request_id(request.headers());
        let response = self.dispatch(request, tokens).await?;
        Answer::read(response).await.map_err(|err| Error::unanswered(err, sent_id))
    }

    /// Sends `request` once, with the access token of `tokens` if given; the response, its body
    /// unread, when its status is a success (or the 304 that `If-None-Match` asked for), else
    /// the error the status means.
    async fn dispatch(&self, request: &Request, tokens: Option<&Tokens>) -> Result<Response> {
        // Bodies are in-memory bytes, which `try_clone` always copies.
        let mut request = request.try_clone().expect("requests with in-memory bodies clone");
        if let Some(tokens) = tokens {
            request.headers_mut().insert(AUTHORIZATION, bearer_header(tokens.access_token())?);
        }
        // Per attempt: the span current now is the call's (or the refresh's).
        observe::inject_trace_context(request.headers_mut());
        let sent_id = request_id(request.headers());
        let conditional = request.headers().contains_key(IF_NONE_MATCH);
        let response =
            self.inner.http.execute(request).await.map_err(|err| Error::unanswered(err, sent_id.clone()))?;
        let status = response.status();
        if status.is_success() || (conditional && status == StatusCode::NOT_MODIFIED) {
            Ok(response)
        } else {
            Err(Error::from_response(response, sent_id).await)
        }
    }

    /// One attempt to open a stream (the live events): the response whose body is the stream,
    /// once its headers have come. As for any other call's attempt, the access token is
    /// refreshed first if it is about to expire, and once more if the server answers 401, after
    /// which the request is sent again; everything up to the headers is bounded by `deadline`.
    ///
    /// `session` is the session the stream belongs to: recorded at its first attempt, and a
    /// later one made after another session began (a logout, a login perhaps as someone else)
    /// is not sent: [`Error::SessionExpired`]. A stream's position means nothing to another
    /// user.
    ///
    /// Unlike a call, it does not wait for a refresh it went ahead of: that refresh finishes on
    /// its own task, and a stream is not over when its headers come.
    pub(crate) async fn open_stream(
        &self,
        request: &Request,
        session: &mut Option<u64>,
        deadline: Deadline,
    ) -> Result<Response> {
        let sessions = &self.inner.session;
        let bearer = deadline.bound(sessions.bearer(self.exchange())).await?;
        if *session.get_or_insert(bearer.stamp.session) != bearer.stamp.session {
            return Err(Error::SessionExpired { response: None });
        }
        match deadline.bound(self.dispatch(request, Some(&bearer.tokens))).await {
            Err(Error::Unauthorized { .. }) => {
                let refresh = sessions.refresh(bearer.stamp, RefreshCause::Refused, self.exchange());
                let fresh = deadline.bound(refresh).await?;
                deadline.bound(self.dispatch(request, Some(&fresh.tokens))).await
            }
            outcome => outcome,
        }
    }

    /// How the session refreshes: `POST /auth/refresh`, sent once (a refresh token is good for
    /// one use, so a refresh is never retried blindly) and never itself refreshed.
    fn exchange(&self) -> impl FnOnce(Secret) -> BoxFuture<'static, Result<TokenPair>> + Send + 'static {
        let client = self.clone();
        move |refresh_token| {
            async move {
                let body = RefreshRequest { refresh_token };
                let call = client.json_request(
                    Method::POST,
                    route::REFRESH,
                    client.route_url(route::REFRESH),
                    &body,
                );
                // Runs on the refresh's task, in its span.
                let span = CallSpan::current();
                span.record_request_id(request_id(call.request.headers()).as_deref());
                let outcome = client.transmit(&call.request, None).await.and_then(|answer| {
                    let pair = answer.json()?;
                    Ok((answer.status, pair))
                });
                span.finish(1, outcome.as_ref().map(|(status, _)| Some(*status)));
                outcome.map(|(_, pair)| pair)
            }
            .boxed()
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .field("session", &self.inner.session)
            .field("retry", &self.inner.retry)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

/// Redirects are followed only on the origin the request was sent to, 10 at most. A 307 or
/// 308 sends the body again, and bodies carry passwords and refresh tokens: one pointing
/// anywhere else is not followed, and its answer becomes an [`Error::Http`] naming the
/// `Location`. That includes `http` to `https` on the same host: reqwest would send it on
/// without the access token, so the base URL should say `https` itself.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else { return attempt.stop() };
        let same_origin = attempt.url().origin() == first.origin();
        if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else if same_origin {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// `Bearer <token>`, marked sensitive so that HTTP tooling does not log or index it.
fn bearer_header(token: &Secret) -> Result<HeaderValue> {
    let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| {
        Error::configuration("the access token holds characters not allowed in an HTTP header")
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A successful answer with its whole body.
///
/// The body is read as part of the attempt, so that a connection lost in the middle of it is
/// an error of that attempt, retried (for a request that may be sent again) like one lost
/// before the status line came.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    /// The URL that answered (after any redirect), which relative links resolve against.
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    async fn read(mut response: Response) -> reqwest::Result<Self> {
        let (status, url) = (response.status(), response.url().clone());
        let headers = std::mem::take(response.headers_mut());
        let body = response.bytes().await?.into();
        Ok(Self { status, url, headers, body })
    }

    /// The body, read as JSON.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|err| Error::decode(self.status, request_id(&self.headers), err))
    }

    /// The body, read as JSON, with the answer's `ETag`.
    pub(crate) fn tagged<T: DeserializeOwned>(&self) -> Result<Tagged<T>> {
        Ok(Tagged::new(self.json()?, etag(&self.headers)))
    }
}

/// Builds a [`Client`]; made by [`Client::builder`].
///
/// ```
/// use std::time::Duration;
/// use tasklane::{Client, MemoryTokenStore, RetryPolicy};
///
/// let client = Client::builder("https://tasks.example.com")
///     .timeout(Duration::from_secs(10))
///     .call_timeout(Duration::from_secs(15))
///     .user_agent("my-app/1.2")
///     .refresh_skew(Duration::from_secs(60))
///     .retry_policy(RetryPolicy::new().max_attempts(5))
///     .token_store(MemoryTokenStore::new())
///     .build()?;
/// # Ok::<(), tasklane::Error>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct ClientBuilder {
    base_url: String,
    http: Option<reqwest::Client>,
    // `None`: the default; `Some(None)`: explicitly none.
    timeout: Option<Option<Duration>>,
    connect_timeout: Option<Option<Duration>>,
    call_timeout: Option<Duration>,
    user_agent: Option<String>,
    tokens: Option<Tokens>,
    store: Option<Arc<dyn TokenStore>>,
    refresh_skew: Duration,
    retry: RetryPolicy,
    on_refresh: Option<RefreshHook>,
}

impl ClientBuilder {
    /// 30 s for a whole request: every Tasklane call is small, so one that takes longer is
    /// stuck rather than slow, and failing it lets the retry policy try again.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    /// 10 s to connect: generous for a distant server, short enough to notice a dead one.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// 30 s for a whole call, its retries and their waits included: no longer than one
    /// attempt may already take ([`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)), so retrying
    /// never makes a caller wait longer than a single stuck request would.
    ///
    /// Without it, the default [`RetryPolicy`] could keep a call going for two `Retry-After`
    /// waits of up to 20 s each (a GET facing repeated 429s took about 40 s). 30 s leaves room
    /// for one such wait and the attempts around it, not for two: the retry whose wait would
    /// pass the deadline fails at once with [`Error::DeadlineExceeded`].
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
    /// 30 s before expiry, the access token is refreshed: enough for a request's round trip
    /// and for the clock difference between client and server (the server allows at most 30 s
    /// of leeway itself).
    pub const DEFAULT_REFRESH_SKEW: Duration = Duration::from_secs(30);

    fn new(base_url: String) -> Self {
        Self {
            base_url,
            http: None,
            timeout: None,
            connect_timeout: None,
            call_timeout: Some(Self::DEFAULT_CALL_TIMEOUT),
            user_agent: None,
            tokens: None,
            store: None,
            refresh_skew: Self::DEFAULT_REFRESH_SKEW,
            retry: RetryPolicy::default(),
            on_refresh: None,
        }
    }

    /// Uses this `reqwest::Client` (to share its connection pool, or for settings such as
    /// proxies or extra root certificates) instead of making one.
    ///
    /// Its own redirect policy applies. reqwest's default follows any redirect, and on a 307
    /// or 308 sends the body (with the password or refresh token in it) to wherever the
    /// `Location` points; the client this builder makes follows only redirects that stay on the
    /// API's origin (scheme, host and port).
    ///
    /// The injected client keeps its own timeouts and user agent unless [`timeout`] or
    /// [`user_agent`] are set here too (a `timeout` of `None` does not remove its own);
    /// [`connect_timeout`] cannot be applied to it and makes [`build`] fail.
    ///
    /// [`timeout`]: ClientBuilder::timeout
    /// [`user_agent`]: ClientBuilder::user_agent
    /// [`connect_timeout`]: ClientBuilder::connect_timeout
    /// [`build`]: ClientBuilder::build
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The longest a request may take, from sending to the end of the answer, for each attempt;
    /// `None` for no limit. Default: [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT).
    ///
    /// With an injected [`http_client`](Self::http_client), a duration set here replaces that
    /// client's own timeout for this client's requests, but `None` cannot lift it: reqwest
    /// falls back to the client's timeout for a request that sets none. Build the injected
    /// client without a timeout for no limit at all.
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeout = Some(timeout.into());
        self
    }

    /// The longest connecting may take; `None` for no limit. Default:
    /// [`DEFAULT_CONNECT_TIMEOUT`](Self::DEFAULT_CONNECT_TIMEOUT).
    pub fn connect_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.connect_timeout = Some(timeout.into());
        self
    }

    /// The longest a whole call may take, from when it begins until it returns: every
    /// attempt, the backoff and `Retry-After` waits between them, and any token refresh the
    /// call waits for. `None` for no limit, which leaves each attempt bounded by
    /// [`timeout`](Self::timeout) and their number by the [`RetryPolicy`]. Default:
    /// [`DEFAULT_CALL_TIMEOUT`](Self::DEFAULT_CALL_TIMEOUT).
    ///
    /// A call that reaches it fails with [`Error::DeadlineExceeded`], carrying the error of
    /// the attempt before, if one failed; so does a call whose next retry would have to wait
    /// past it, at once rather than after the wait. A refresh the call was waiting for is not
    /// cut short: it runs on and its tokens are stored. A call that already has its answer
    /// returns it, even when the deadline comes while it waits for a refresh it went ahead of.
    /// Each page of [`ListTasks::stream`](crate::ListTasks::stream) is a call of its own.
    ///
    /// [`Client::with_call_timeout`] changes it for some calls only.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tasklane::Client;
    ///
    /// // A command-line tool: a user waits 10 s at most for an answer.
    /// let client =
    ///     Client::builder("https://tasks.example.com").call_timeout(Duration::from_secs(10)).build()?;
    /// assert_eq!(client.call_timeout(), Some(Duration::from_secs(10)));
    ///
    /// // A batch job: retry as long as the policy allows.
    /// let batch = Client::builder("https://tasks.example.com").call_timeout(None).build()?;
    /// assert_eq!(batch.call_timeout(), None);
    /// # Ok::<(), tasklane::Error>(())
    /// ```
    pub fn call_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.call_timeout = timeout.into();
        self
    }

    /// The `User-Agent` header. Default: `tasklane-rust/<version>`.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Starts with a session: tokens saved from an earlier run, or a [`TokenPair`] just issued.
    /// They are not handed to the [`TokenStore`], which is assumed to hold them already.
    ///
    /// The new client then owns the session: no other client may go on using the same tokens.
    /// Both would present the one-use refresh token when it is due, and the server answers the
    /// second use by revoking the session for both (see [`TokenStore`]). To share a session
    /// within a process, clone the [`Client`] instead.
    pub fn tokens(mut self, tokens: impl Into<Tokens>) -> Self {
        self.tokens = Some(tokens.into());
        self
    }

    /// Where the tokens are kept whenever they change. Default: only in memory.
    pub fn token_store(mut self, store: impl TokenStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Calls `hook` with the outcome of every token refresh: new tokens, the session over, or a
    /// failure that may pass. For an application to react (show a login prompt when the
    /// session is over, count failures), without waiting for a call to fail.
    ///
    /// It is called once per refresh, however many calls waited for it, on the refresh's own
    /// task and after the [`TokenStore`] has its change, before the waiting calls go on. So it
    /// must be quick and must not block: hand anything slow to a task or a channel. A refresh
    /// whose outcome no longer matters (the session was logged out or replaced meanwhile) is
    /// not reported. A hook that panics is ignored.
    ///
    /// With the `tracing` feature the same outcomes are also events (see the crate's
    /// documentation); the hook needs no subscriber.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use tasklane::{Client, RefreshOutcome};
    ///
    /// let logged_out = Arc::new(AtomicBool::new(false));
    /// let flag = Arc::clone(&logged_out);
    /// let client = Client::builder("https://tasks.example.com")
    ///     .on_refresh(move |outcome| match outcome {
    ///         RefreshOutcome::SessionExpired { .. } => flag.store(true, Ordering::SeqCst),
    ///         RefreshOutcome::Failed { error } => eprintln!("token refresh failed: {error}"),
    ///         _ => {}
    ///     })
    ///     .build()?;
    /// # Ok::<(), tasklane::Error>(())
    /// ```
    pub fn on_refresh(mut self, hook: impl Fn(&RefreshOutcome) + Send + Sync + 'static) -> Self {
        self.on_refresh = Some(Arc::new(hook));
        self
    }

    /// How long before the access token expires it is refreshed. Default:
    /// [`DEFAULT_REFRESH_SKEW`](Self::DEFAULT_REFRESH_SKEW).
    ///
    /// The margin used is at most half the token's lifetime, so a skew longer than the
    /// server's tokens live means one refresh per half-lifetime, not one before every request.
    pub fn refresh_skew(mut self, skew: Duration) -> Self {
        self.refresh_skew = skew;
        self
    }

    /// How failed requests are retried. Default: [`RetryPolicy::default`].
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Makes the client.
    ///
    /// # Errors
    ///
    /// [`Error::Configuration`] when the base URL is not an `http` or `https` URL without
    /// query, fragment or credentials, when the user agent is not a valid header value, when
    /// a connect timeout is set alongside an injected `reqwest::Client`, or when reqwest
    /// cannot initialise TLS.
    pub fn build(self) -> Result<Client> {
        let base_url = parse_base_url(&self.base_url)?;
        let user_agent = self
            .user_agent
            .as_deref()
            .map(HeaderValue::from_str)
            .transpose()
            .map_err(|_| Error::configuration("the user agent is not a valid header value"))?;
        let (http, user_agent, timeout) = match self.http {
            Some(http) => {
                if self.connect_timeout.is_some() {
                    return Err(Error::configuration(
                        "a connect timeout cannot be applied to an injected reqwest::Client; set it on that client",
                    ));
                }
                (http, user_agent, self.timeout.flatten())
            }
            None => {
                let mut builder = reqwest::Client::builder()
                    .user_agent(user_agent.unwrap_or(HeaderValue::from_static(DEFAULT_USER_AGENT)))
                    .redirect(redirect_policy());
                if let Some(timeout) = self.timeout.unwrap_or(Some(Self::DEFAULT_TIMEOUT)) {
                    builder = builder.timeout(timeout);
                }
                if let Some(timeout) = self.connect_timeout.unwrap_or(Some(Self::DEFAULT_CONNECT_TIMEOUT)) {
                    builder = builder.connect_timeout(timeout);
                }
                let http = builder
                    .build()
                    .map_err(|err| Error::configuration(format!("cannot build the HTTP client: {err}")))?;
                (http, None, None)
            }
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url,
                user_agent,
                timeout,
                retry: self.retry,
                session: Session::new(self.tokens, self.store, self.refresh_skew, self.on_refresh),
            }),
            call_timeout: self.call_timeout,
        })
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("http_client_injected", &self.http.is_some())
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("user_agent", &self.user_agent)
            .field("tokens", &self.tokens)
            .field("token_store", &self.store.is_some())
            .field("on_refresh", &self.on_refresh.is_some())
            .field("refresh_skew", &self.refresh_skew)
            .field("retry", &self.retry)
            .finish()
    }
}

/// An `http(s)` URL without query, fragment or credentials, ending in `/`.
fn parse_base_url(base_url: &str) -> Result<Url> {
    let invalid = |why: &str| Error::configuration(format!("invalid base URL `{base_url}`: {why}"));
    let mut url = Url::parse(base_url).map_err(|err| invalid(&err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must have no query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it must not hold credentials"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_made_joinable() {
        let base = |s| parse_base_url(s).map(|u| u.to_string());
        assert_eq!(base("http://localhost:8000").unwrap(), "http://localhost:8000/");
        assert_eq!(base("https://example.com/api").unwrap(), "https://example.com/api/");
        assert_eq!(base("https://example.com/api/").unwrap(), "https://example.com/api/");
        for bad in [
            "localhost:8000",
            "ftp://example.com",
            "http://example.com/?a=b",
            "http://u:p@example.com",
            "nope",
        ] {
            assert!(matches!(parse_base_url(bad), Err(Error::Configuration { .. })), "{bad}");
        }
    }

    #[test]
    fn paths_join_below_the_base() {
        let client = Client::new("https://example.com/api").unwrap();
        assert_eq!(client.endpoint("tasks/7").as_str(), "https://example.com/api/tasks/7");
        assert_eq!(client.endpoint("auth/login").as_str(), "https://example.com/api/auth/login");
    }

    #[test]
    fn the_authorization_header_is_sensitive() {
        let value = bearer_header(&Secret::from("abc")).unwrap();
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().unwrap(), "Bearer abc");
        assert!(format!("{value:?}").contains("Sensitive"));
        assert!(matches!(bearer_header(&Secret::from("a\nb")), Err(Error::Configuration { .. })));
    }

    #[test]
    fn injected_clients_refuse_a_connect_timeout() {
        let built = Client::builder("http://localhost")
            .http_client(reqwest::Client::new())
            .connect_timeout(Duration::from_secs(1))
            .build();
        assert!(matches!(built, Err(Error::Configuration { .. })));
    }
}
