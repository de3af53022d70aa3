//! The error of every client call, and how a server's answer becomes one.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::etag::ETag;
use crate::types::{FieldError, Problem};
use reqwest::header::{HeaderMap, DATE, ETAG, LOCATION, RETRY_AFTER};
use reqwest::StatusCode;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The source of a transport, timeout or decode error.
///
/// Shared rather than boxed so that [`Error`] is `Clone`: one failed token refresh is reported
/// to every request that was waiting for it.
pub type BoxError = Arc<dyn StdError + Send + Sync + 'static>;

/// The header that names a request in the server's logs.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// Longest piece of a non-JSON error body kept as the [`ErrorResponse::detail`].
const DETAIL_MAX_CHARS: usize = 512;

/// How much of an error body is read: a problem document is well under a kilobyte, and an
/// error page from a proxy in front of the server says what it has to say in its first
/// kilobytes. A longer body is not read to its end (nor held in memory, as a whole one of a
/// misbehaving proxy could be gigabytes), and the connection is not reused.
const ERROR_BODY_MAX_BYTES: usize = 64 * 1024;

/// What the server answered when it refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The problem's `detail`: a human-readable explanation. When the body was not problem JSON,
    /// the start of the body, or the status's reason phrase when the body was empty.
    pub detail: String,
    /// The response's `X-Request-Id`, to find the request in the server's logs; when the
    /// answer carried none (a proxy's own error page), the one the client sent with the request.
    pub request_id: Option<String>,
    /// The whole problem document, when the body was `application/problem+json`.
    pub problem: Option<Box<Problem>>,
    /// How long the server asked to wait before trying again (`Retry-After`), whatever the
    /// status: Tasklane sends it with 429, 503 and the 409 of a create still in flight.
    pub retry_after: Option<Duration>,
}

impl ErrorResponse {
    fn new(status: StatusCode, headers: &HeaderMap, body: &[u8], sent_id: Option<String>) -> Self {
        let problem = read_problem(status, body).map(Box::new);
        let location =
            headers.get(LOCATION).and_then(|l| l.to_str().ok()).filter(|_| status.is_redirection());
        let detail = match (&problem, location) {
            (_, Some(location)) => format!("redirected to {location}; not followed"),
            (Some(problem), None) => problem.detail.clone(),
            (None, None) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    reason(status).to_owned()
                } else {
                    text.chars().take(DETAIL_MAX_CHARS).collect()
                }
            }
        };
        Self {
            status: status.as_u16(),
            detail,
            request_id: request_id(headers).or(sent_id),
            problem,
            retry_after: retry_after(headers),
        }
    }
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {}", self.detail, self.status)?;
        if let Some(id) = &self.request_id {
            write!(f, ", request id {id}")?;
        }
        f.write_str(")")
    }
}

/// Everything that can go wrong in a call to the Tasklane API.
///
/// Variants that come from an HTTP answer carry an [`ErrorResponse`] with the status, the
/// problem's `detail` and the `X-Request-Id`; [`Error::status`], [`Error::detail`] and
/// [`Error::request_id`] read them without a `match`.
///
/// ```
/// # async fn demo(client: &tasklane::Client) -> tasklane::Result<()> {
/// use tasklane::Error;
///
/// match client.tasks().get(42).await {
///     Ok(task) => println!("{}", task.title),
///     Err(Error::NotFound { .. }) => println!("no such task"),
///     Err(Error::SessionExpired { .. }) => println!("please log in again"),
///     Err(err) if err.is_retryable() => println!("try again later: {err}"),
///     Err(err) => return Err(err),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 401: the credentials or the access token were refused.
    ///
    /// A request made with the client's tokens (the task routes and [`Client::me`]) has already
    /// been through one refresh and replay when this is returned. [`Client::login`] returns it
    /// directly for a wrong username or password; the session routes (register, login,
    /// refresh, logout) never refresh.
    ///
    /// [`Client::me`]: crate::Client::me
    /// [`Client::login`]: crate::Client::login
    #[error("unauthorized: {response}")]
    Unauthorized {
        /// The server's answer.
        response: ErrorResponse,
    },

    /// The session is over and the user must log in again.
    ///
    /// Either the server rejected the refresh token (`response` is its answer; the client's
    /// tokens and its [`TokenStore`](crate::TokenStore) have been cleared), or the client holds
    /// no tokens: it never logged in, or it logged out, or the session ended while this request
    /// was in flight, or another began (a login, perhaps as someone else) and the request, sent
    /// with the old session's token and refused, is not sent again with the new one's
    /// (`response` is `None`; a call made without tokens is not sent at all). So
    /// this one variant is where an application asks the user to log in.
    #[error("the session has expired; log in again")]
    SessionExpired {
        /// The server's refusal of the refresh token, when there was one.
        response: Option<ErrorResponse>,
    },

    /// 404: no such route, or no such task among the caller's own.
    #[error("not found: {response}")]
    NotFound {
        /// The server's answer.
        response: ErrorResponse,
    },

    /// 409: the username is already taken; or, with a `Retry-After`, a create whose
    /// `Idempotency-Key` is still being processed by an earlier request with the same key.
    ///
    /// The second kind is [retryable](Error::is_retryable): the client waits the second the
    /// server asks for and sends the create again, which then answers what the first request
    /// answered. It is returned only once the retry policy's attempts or the call's deadline
    /// are spent.
    #[error("conflict: {response}")]
    Conflict {
        /// The server's answer.
        response: ErrorResponse,
    },

    /// 410: what was asked for is no longer there. The change feed and the live events answer
    /// it for a cursor older than the server keeps deleted tasks for: start again without a
    /// cursor ([`Replica::sync`](crate::Replica::sync) does so by itself), then watch from the
    /// new one.
    #[error("gone: {response}")]
    Gone {
        /// The server's answer.
        response: ErrorResponse,
    },

    /// 412: a conditional write ([`Tasks::update_if`], [`Tasks::patch_if`],
    /// [`Tasks::delete_if`]) was refused, as the task is no longer the version its `ETag`
    /// named: someone changed it since it was read. Nothing was changed.
    ///
    /// `current_etag` is the tag of the version the server has now (when the task still
    /// exists), so an application can fetch that version, show both and let the user choose,
    /// then write again with the new tag.
    ///
    /// ```no_run
    /// # async fn demo(client: tasklane::Client, etag: tasklane::ETag) -> tasklane::Result<()> {
    /// use tasklane::{Error, TaskUpdate};
    ///
    /// match client.tasks().update_if(7, &etag, TaskUpdate::new().title("mine")).await {
    ///     Ok(task) => println!("saved version {}", task.version),
    ///     Err(Error::PreconditionFailed { current_etag, .. }) => {
    ///         let theirs = client.tasks().get(7).await?;
    ///         println!("changed meanwhile to {:?} ({current_etag:?})", theirs.title);
    ///     }
    ///     Err(err) => return Err(err),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`Tasks::update_if`]: crate::Tasks::update_if
    /// [`Tasks::patch_if`]: crate::Tasks::patch_if
    /// [`Tasks::delete_if`]: crate::Tasks::delete_if
    #[error("precondition failed: {response}")]
    PreconditionFailed {
        /// The `ETag` of the task as it is now, from the answer's header; `None` when the task
        /// no longer exists (or the answer carried no valid tag).
        current_etag: Option<ETag>,
        /// The server's answer.
        response: ErrorResponse,
    },

    /// The request breaks a rule: found by the client before sending (`response` is `None`) or
    /// answered 422 by the server.
    #[error("invalid request: {}", describe_validation(.errors, .response.as_ref()))]
    Validation {
        /// Each field at fault and what is wrong with it.
        errors: Vec<FieldError>,
        /// The server's answer, when the server refused the request.
        response: Option<ErrorResponse>,
    },

    /// 429: too many requests.
    #[error("rate limited: {response}")]
    ///
    /// How long the server asked to wait is [`Error::retry_after`].
    RateLimited {
        /// The server's answer.
        response: ErrorResponse,
    },

    /// A 5xx status. 502, 503 and 504 are retryable; 500 is not. A 503 may say how long to
    /// wait ([`Error::retry_after`]).
    #[error("server error: {response}")]
    Server {
        /// The server's answer.
        response: ErrorResponse,
    },

    /// Any other error status, such as 400 (malformed JSON), 405, 413 or 415; or a redirect
    /// the client did not follow, such as one that leaves the API's origin (see
    /// [`ClientBuilder::http_client`](crate::ClientBuilder::http_client)).
    #[error("HTTP error: {response}")]
    Http {
        /// The server's answer.
        response: ErrorResponse,
    },

    /// The session's tokens needed a refresh, and it failed for a reason other than the
    /// server refusing the refresh token (that is [`Error::SessionExpired`]): the server could
    /// not be reached, answered 5xx or 429, or answered as no Tasklane server does (a proxy's
    /// 403 or 404). The call itself was not sent, or was refused with 401 and not sent again,
    /// so it is retried like a request that certainly was not acted on, a POST included; the
    /// tokens are kept, and the next call tries the refresh again.
    ///
    /// [`is_retryable`](Error::is_retryable), [`retry_after`](Error::retry_after) and
    /// [`request_id`](Error::request_id) are the refresh's; [`status`](Error::status),
    /// [`detail`](Error::detail) and [`response`](Error::response) are `None`, since no answer
    /// to the call itself came: a refresh answered 404 is not the call's "not found".
    #[error("the session could not be refreshed")]
    RefreshFailed {
        /// Why the refresh failed.
        source: Box<Error>,
    },

    /// The call did not finish within its call timeout: the deadline that bounds the whole
    /// call, its attempts, the waits between them and any token refresh it waits for (see
    /// [`ClientBuilder::call_timeout`](crate::ClientBuilder::call_timeout)).
    ///
    /// Returned when the deadline comes while the call is still waiting, and at once when the
    /// next retry would have to wait past it (a `Retry-After` longer than the time left): there
    /// is no point in waiting only to fail at the end. [`last_error`](Error::DeadlineExceeded::last_error)
    /// says why the attempts before it failed.
    ///
    /// Retryable, like [`Error::Timeout`]: the server may have received an attempt and acted
    /// on it, the answer being what was not waited for. [`retry_after`](Error::retry_after) is
    /// the last error's; [`status`](Error::status), [`detail`](Error::detail) and
    /// [`response`](Error::response) are `None`, as no answer ended the call.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tasklane::Error;
    ///
    /// fn explain(err: &Error) -> String {
    ///     match err {
    ///         Error::DeadlineExceeded { timeout, last_error: Some(last), .. } => {
    ///             format!("gave up after {timeout:?}; the last attempt failed with: {last}")
    ///         }
    ///         Error::DeadlineExceeded { timeout, .. } => format!("no answer within {timeout:?}"),
    ///         other => other.to_string(),
    ///     }
    /// }
    /// # let _ = explain;
    /// ```
    #[error("the call did not finish within its call timeout of {timeout:?}")]
    DeadlineExceeded {
        /// The call timeout that ran out.
        timeout: Duration,
        /// The `X-Request-Id` the call's attempts were sent with, if one was sent.
        request_id: Option<String>,
        /// The error of the last attempt that failed before the deadline: the last server
        /// error seen (such as the 429 whose `Retry-After` would have passed the deadline), or
        /// a transport error. `None` when the first attempt (or the refresh it waited for) was
        /// still running at the deadline.
        #[source]
        last_error: Option<Box<Error>>,
    },

    /// The connect or request timeout elapsed.
    #[error("the request timed out")]
    Timeout {
        /// The `X-Request-Id` the client sent with the request, to look for it in the server's
        /// logs: the server may have received it even though no answer came back.
        request_id: Option<String>,
        /// The underlying error, usually a [`reqwest::Error`].
        source: BoxError,
    },

    /// The request did not complete: DNS, connection, TLS or I/O failure.
    #[error("the request could not be completed")]
    Transport {
        /// The `X-Request-Id` the client sent with the request, when it got as far as being
        /// built (see [`Error::Timeout`]).
        request_id: Option<String>,
        /// The underlying error, usually a [`reqwest::Error`].
        source: BoxError,
    },

    /// A successful answer could not be understood (unexpected JSON, a bad `Link` header).
    #[error("could not decode the response (HTTP {status})")]
    Decode {
        /// The HTTP status of the answer.
        status: u16,
        /// The answer's `X-Request-Id`.
        request_id: Option<String>,
        /// What was wrong with it.
        source: BoxError,
    },

    /// The client was configured wrongly, such as with a base URL that is not `http(s)`.
    #[error("invalid client configuration: {message}")]
    Configuration {
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// The HTTP status of the answer this error comes from, if it comes from one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Decode { status, .. } => Some(*status),
            _ => self.response().map(|r| r.status),
        }
    }

    /// The `X-Request-Id` of the request this error comes from: the server's answer's, or, when
    /// no answer came ([`Error::Timeout`], [`Error::Transport`], [`Error::DeadlineExceeded`]),
    /// the one the client sent.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Decode { request_id, .. }
            | Error::Timeout { request_id, .. }
            | Error::Transport { request_id, .. } => request_id.as_deref(),
            Error::RefreshFailed { source } => source.request_id(),
            Error::DeadlineExceeded { request_id, last_error, .. } => {
                request_id.as_deref().or_else(|| last_error.as_deref().and_then(Error::request_id))
            }
            _ => self.response().and_then(|r| r.request_id.as_deref()),
        }
    }

    /// The server's explanation (the problem's `detail`), if the server answered.
    pub fn detail(&self) -> Option<&str> {
        self.response().map(|r| r.detail.as_str())
    }

    /// The server's answer, for errors that come from an error status.
    pub fn response(&self) -> Option<&ErrorResponse> {
        match self {
            Error::Unauthorized { response }
            | Error::NotFound { response }
            | Error::Conflict { response }
            | Error::Gone { response }
            | Error::PreconditionFailed { response, .. }
            | Error::RateLimited { response, .. }
            | Error::Server { response }
            | Error::Http { response } => Some(response),
            Error::SessionExpired { response } | Error::Validation { response, .. } => response.as_ref(),
            Error::RefreshFailed { .. }
            | Error::DeadlineExceeded { .. }
            | Error::Timeout { .. }
            | Error::Transport { .. }
            | Error::Decode { .. }
            | Error::Configuration { .. } => None,
        }
    }

    /// How long the server asked to wait before trying again: the `Retry-After` of the answer
    /// this error comes from (Tasklane sends it with 429, 503 and a create's 409); for
    /// [`Error::DeadlineExceeded`], that of the last error before the deadline.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RefreshFailed { source } => source.retry_after(),
            Error::DeadlineExceeded { last_error, .. } => last_error.as_deref().and_then(Error::retry_after),
            _ => self.response().and_then(|r| r.retry_after),
        }
    }

    /// Whether the same request may succeed if sent again later: transport failures, timeouts
    /// (a call's deadline included), 429, 502, 503 and 504, and a 409 that says when to try
    /// again (`Retry-After`: an idempotent create still in flight).
    ///
    /// A 412 ([`Error::PreconditionFailed`]) and a 410 ([`Error::Gone`]) are not: the same
    /// request gets the same answer; the application must read again first.
    ///
    /// The client already retries idempotent requests by its [`RetryPolicy`](crate::RetryPolicy);
    /// this tells what is left once those attempts are spent.
    ///
    /// "May succeed" is not "was not applied". A [`Timeout`](Error::Timeout) or
    /// [`Transport`](Error::Transport) error can come after the server received the request
    /// and acted on it, the answer being what was lost. Each call to
    /// [`Tasks::create`](crate::Tasks::create) has a new `Idempotency-Key`, so calling it
    /// again after such an error may create a second task: to try a create again yourself,
    /// give every try the same key with [`Tasks::create_with_key`](crate::Tasks::create_with_key).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. }
            | Error::Timeout { .. }
            | Error::DeadlineExceeded { .. }
            | Error::RateLimited { .. } => true,
            Error::Server { response } => matches!(response.status, 502..=504),
            Error::Conflict { response } => response.retry_after.is_some(),
            Error::RefreshFailed { source } => source.is_retryable(),
            _ => false,
        }
    }

    /// The variant's name, for the client's spans and events: an error's text may hold what
    /// they must not (a transport error's names the URL, query and all).
    #[cfg(feature = "tracing")]
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Error::Unauthorized { .. } => "unauthorized",
            Error::SessionExpired { .. } => "session_expired",
            Error::NotFound { .. } => "not_found",
            Error::Conflict { .. } => "conflict",
            Error::Gone { .. } => "gone",
            Error::PreconditionFailed { .. } => "precondition_failed",
            Error::Validation { .. } => "validation",
            Error::RateLimited { .. } => "rate_limited",
            Error::Server { .. } => "server",
            Error::Http { .. } => "http",
            Error::RefreshFailed { .. } => "refresh_failed",
            Error::DeadlineExceeded { .. } => "deadline_exceeded",
            Error::Timeout { .. } => "timeout",
            Error::Transport { .. } => "transport",
            Error::Decode { .. } => "decode",
            Error::Configuration { .. } => "configuration",
        }
    }

    /// Whether the server certainly did not act on the request: the connection could not be
    /// opened, or it answered 429 (Tasklane refuses before doing anything), or the request was
    /// held back by a failed refresh.
    pub(crate) fn certainly_not_acted_on(&self) -> bool {
        match self {
            Error::RateLimited { .. } | Error::RefreshFailed { .. } => true,
            // A connection refused, or one that timed out before it was open.
            Error::Transport { source, .. } | Error::Timeout { source, .. } => {
                source.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_connect)
            }
            _ => false,
        }
    }

    /// The error for a response with an error status, from its status, headers and body, to a
    /// request sent with the `X-Request-Id` `sent_id`.
    pub(crate) fn from_status(
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        sent_id: Option<String>,
    ) -> Self {
        let response = ErrorResponse::new(status, headers, body, sent_id);
        match status.as_u16() {
            401 => Error::Unauthorized { response },
            404 => Error::NotFound { response },
            409 => Error::Conflict { response },
            410 => Error::Gone { response },
            412 => Error::PreconditionFailed { current_etag: etag(headers), response },
            422 => Error::Validation {
                errors: response.problem.as_ref().and_then(|p| p.errors.clone()).unwrap_or_default(),
                response: Some(response),
            },
            429 => Error::RateLimited { response },
            500..=599 => Error::Server { response },
            _ => Error::Http { response },
        }
    }

    /// The error for a response with an error status to a request sent with the `X-Request-Id`
    /// `sent_id`; reads the start of the body.
    pub(crate) async fn from_response(mut response: reqwest::Response, sent_id: Option<String>) -> Self {
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        // An unreadable error body still leaves the status and the request id to report.
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_MAX_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        body.truncate(ERROR_BODY_MAX_BYTES);
        Self::from_status(status, &headers, &body, sent_id)
    }

    /// A request the client refused to send because it breaks the API's rules.
    pub(crate) fn invalid(errors: Vec<FieldError>) -> Self {
        Error::Validation { errors, response: None }
    }

    /// A successful answer that could not be understood.
    pub(crate) fn decode(
        status: StatusCode,
        request_id: Option<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Error::Decode { status: status.as_u16(), request_id, source: Arc::from(source.into()) }
    }

    pub(crate) fn configuration(message: impl Into<String>) -> Self {
        Error::Configuration { message: message.into() }
    }

    /// A request that got no (whole) answer, sent with the `X-Request-Id` `request_id`.
    pub(crate) fn unanswered(error: reqwest::Error, request_id: Option<String>) -> Self {
        if error.is_timeout() {
            Error::Timeout { request_id, source: Arc::new(error) }
        } else {
            Error::Transport { request_id, source: Arc::new(error) }
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(error: reqwest::Error) -> Self {
        Error::unanswered(error, None)
    }
}

/// The `X-Request-Id` among `headers` (a response's, or the request's own).
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The `ETag` among `headers`, if it is a valid entity tag.
pub(crate) fn etag(headers: &HeaderMap) -> Option<ETag> {
    headers.get(ETAG).and_then(|v| v.to_str().ok()).and_then(|v| ETag::parse(v).ok())
}

/// A problem document (RFC 9457) read as the RFC asks, since gateways and proxies in front of
/// the server send their own: every member is optional, and a member of the wrong type is
/// ignored. A missing `title` is the status's reason phrase, a missing `status` the HTTP status,
/// a missing `detail` the title. A JSON object with none of `type`, `title`, `status` and
/// `detail` is not taken for a problem.
fn read_problem(status: StatusCode, body: &[u8]) -> Option<Problem> {
    let serde_json::Value::Object(members) = serde_json::from_slice(body).ok()? else { return None };
    let text = |name: &str| members.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
    let (kind, title, detail) = (text("type"), text("title"), text("detail"));
    let code = members.get("status").and_then(serde_json::Value::as_u64).and_then(|c| u16::try_from(c).ok());
    if kind.is_none() && title.is_none() && code.is_none() && detail.is_none() {
        return None;
    }
    let errors = members
        .get("errors")
        .and_then(serde_json::Value::as_array)
        .map(|errors| errors.iter().filter_map(read_field_error).collect());
    let title = title.unwrap_or_else(|| reason(status).to_owned());
    Some(Problem {
        kind: kind.unwrap_or_else(|| "about:blank".to_owned()),
        detail: detail.unwrap_or_else(|| title.clone()),
        title,
        status: code.unwrap_or(status.as_u16()),
        errors,
    })
}

/// One member of a problem's `errors`: an object naming the `field` and the `message`. One
/// that lacks either (or has it of the wrong type) is still kept, so that the others are not
/// lost with it; it is dropped only when it is not an object at all.
fn read_field_error(error: &serde_json::Value) -> Option<FieldError> {
    let members = error.as_object()?;
    let text = |name: &str| members.get(name).and_then(serde_json::Value::as_str).unwrap_or_default();
    let message = match text("message") {
        "" => "is invalid",
        message => message,
    };
    Some(FieldError::new(text("field"), message))
}

/// The status's reason phrase, such as `Bad Gateway`.
fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

/// `Retry-After` as delay-seconds, or as an HTTP date in any of the three formats RFC 9110
/// asks a recipient to accept. A date is measured from the answer's own `Date`, both being
/// the server's clock, so a client clock that is off does not change the wait; without a
/// `Date`, from the client's clock.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let now = headers
        .get(DATE)
        .and_then(|date| date.to_str().ok())
        .and_then(|date| httpdate::parse_http_date(date).ok())
        .unwrap_or_else(SystemTime::now);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The server's own words when it refused the request, else the client's findings.
fn describe_validation(errors: &[FieldError], response: Option<&ErrorResponse>) -> String {
    match response {
        Some(response) => response.to_string(),
        None => errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after(&headers(&[("retry-after", "7")])), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&headers(&[])), None);
    }

    #[test]
    fn retry_after_dates_in_every_http_format_count_from_the_answers_date() {
        // The server's clock (its `Date`) is years behind the client's: the wait is still the
        // 90 s between the two dates, whichever of RFC 9110's three formats says when.
        let date = ("date", "Sun, 06 Nov 1994 08:49:37 GMT");
        for at in
            ["Sun, 06 Nov 1994 08:51:07 GMT", "Sunday, 06-Nov-94 08:51:07 GMT", "Sun Nov  6 08:51:07 1994"]
        {
            assert_eq!(
                retry_after(&headers(&[date, ("retry-after", at)])),
                Some(Duration::from_secs(90)),
                "{at}"
            );
        }
        // Without a `Date`, from the client's clock: a date in the past is no wait.
        assert_eq!(
            retry_after(&headers(&[("retry-after", "Sun Nov  6 08:51:07 1994")])),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn an_answer_without_a_request_id_names_the_one_sent() {
        let err =
            Error::from_status(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"", Some("sent".to_owned()));
        assert_eq!(err.request_id(), Some("sent"));
        let answered = headers(&[("x-request-id", "answered")]);
        let err = Error::from_status(StatusCode::BAD_GATEWAY, &answered, b"", Some("sent".to_owned()));
        assert_eq!(err.request_id(), Some("answered"));
    }

    #[test]
    fn one_malformed_field_error_does_not_lose_the_others() {
        let body =
            br#"{"status":422,"detail":"d","errors":[{"field":"title","message":"m"},{"field":"limit"},7]}"#;
        let problem = read_problem(StatusCode::UNPROCESSABLE_ENTITY, body).unwrap();
        assert_eq!(
            problem.errors,
            Some(vec![FieldError::new("title", "m"), FieldError::new("limit", "is invalid")])
        );
    }

    #[test]
    fn a_body_that_is_not_a_problem_still_gives_a_detail() {
        let err = Error::from_status(
            StatusCode::BAD_GATEWAY,
            &headers(&[("x-request-id", "r1")]),
            b"upstream down\n",
            Some("sent".to_owned()),
        );
        assert_eq!(err.detail(), Some("upstream down"));
        assert_eq!(err.request_id(), Some("r1"));
        assert!(err.is_retryable());
        let err = Error::from_status(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), b"", None);
        assert_eq!(err.detail(), Some("Internal Server Error"));
        assert!(!err.is_retryable());
        assert_eq!(err.to_string(), "server error: Internal Server Error (HTTP 500)");
    }

    #[test]
    fn problems_are_read_as_rfc_9457_asks() {
        let read = |status: StatusCode, body: &str| read_problem(status, body.as_bytes());
        let full = read(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"type":"about:blank","title":"Unprocessable Entity","status":422,"detail":"d",
                "errors":[{"field":"title","message":"m"}]}"#,
        )
        .unwrap();
        assert_eq!(full.errors, Some(vec![FieldError::new("title", "m")]));
        let bare = read(StatusCode::BAD_GATEWAY, r#"{"detail":"upstream down"}"#).unwrap();
        assert_eq!(
            (bare.kind.as_str(), bare.title.as_str(), bare.status, bare.detail.as_str()),
            ("about:blank", "Bad Gateway", 502, "upstream down")
        );
        // Ill-typed members are ignored, not fatal.
        let odd =
            read(StatusCode::SERVICE_UNAVAILABLE, r#"{"title":7,"status":"x","detail":"d","errors":{}}"#)
                .unwrap();
        assert_eq!((odd.title.as_str(), odd.status, odd.errors), ("Service Unavailable", 503, None));
        // Not problems: other JSON, or none.
        for body in [r#"{"message":"nope"}"#, "[1]", "\"text\"", "<html>", ""] {
            assert!(read(StatusCode::BAD_GATEWAY, body).is_none(), "{body}");
        }
        let err =
            Error::from_status(StatusCode::BAD_GATEWAY, &HeaderMap::new(), br#"{"message":"nope"}"#, None);
        assert_eq!(err.detail(), Some(r#"{"message":"nope"}"#));
    }

    #[test]
    fn validation_display_names_the_fields() {
        let err = Error::invalid(vec![FieldError::new("title", "must be 1 to 200 characters")]);
        assert_eq!(err.to_string(), "invalid request: title must be 1 to 200 characters");
        assert_eq!(err.status(), None);
    }
}
