//! `client.tasks().watch(since)`: the live events (`GET /tasks/events`) as a stream of
//! changes that reconnects by itself.
//!
//! A [`Watch`] is pulled: it reads from its connection only while it is polled, and holds no
//! task of its own. So the cursor it sends when it reconnects (`Last-Event-ID`) is always
//! that of the last change it handed to its caller, and the server resumes right after it.

use std::fmt;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource as _};
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, FusedStream, Stream, StreamExt as _};
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use tokio::time::Instant;

use crate::client::{route, Client};
use crate::deadline::Deadline;
use crate::error::request_id;
use crate::observe::{self, CallSpan, Lost, WatchSpan};
use crate::types::Change;
use crate::{Error, Result};

/// `Last-Event-ID`, in lowercase as `http` wants header names.
const LAST_EVENT_ID: &str = "last-event-id";

/// The event type of a change. The server may add other types later; they are ignored.
const CHANGE_EVENT: &str = "change";

/// A connection that lasted this long, or brought a change, was a working one: when it ends,
/// the next is opened at once. One that ends sooner, with nothing, counts as a failed attempt
/// (a server or proxy that accepts and hangs up at once is not asked again in a tight loop).
const HEALTHY_AFTER: Duration = Duration::from_secs(1);

/// The shortest wait before an attempt to connect that follows a failed one: a policy with no
/// backoff at all (a zero base delay) still makes no more than 20 attempts a second, where a
/// call would be bounded by its number of attempts and a watch is not.
const MIN_WAIT: Duration = Duration::from_millis(50);

/// The request timeout of a stream's request, which must not cut the stream: none, in effect.
/// (reqwest falls back to the client's own timeout for a request that sets none.)
const NO_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// One change of a [`Watch`]: the [`Change`], as the change feed has it, and the feed's
/// cursor after it.
///
/// It reads as the change (`change.task_id()`, `match &*change { .. }`); the cursor is where a
/// later watch (or [`Tasks::changes`](crate::Tasks::changes)) resumes from, and what
/// [`Replica::apply_change`](crate::Replica::apply_change) keeps as the replica's.
///
/// ```
/// use tasklane::{Change, LiveChange};
///
/// let live = LiveChange::new(Change::Delete { id: 7 }, "c1.42");
/// assert_eq!(live.task_id(), 7); // the change's own methods
/// assert_eq!(live.cursor, "c1.42");
/// assert_eq!(live.into_inner(), Change::Delete { id: 7 });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveChange {
    /// The change: a task created or changed (in its state now), or deleted.
    pub change: Change,
    /// The change feed's cursor after this change: opaque, to be given back as `since`.
    pub cursor: String,
}

impl LiveChange {
    /// A change with the cursor after it.
    pub fn new(change: Change, cursor: impl Into<String>) -> Self {
        Self { change, cursor: cursor.into() }
    }

    /// The change, without its cursor.
    pub fn into_inner(self) -> Change {
        self.change
    }
}

impl Deref for LiveChange {
    type Target = Change;

    fn deref(&self) -> &Change {
        &self.change
    }
}

/// The logged-in user's changes as they happen: a [`Stream`] of [`LiveChange`]s, made by
/// [`Tasks::watch`](crate::Tasks::watch). It is `Send`, `Unpin` and `'static`, so it can be
/// moved to a task of its own or kept in a struct.
///
/// It reads the server's live events (`GET /tasks/events`, Server-Sent Events): every task
/// created, changed or deleted, in the order of the change feed, each with the feed's cursor
/// after it. Its connection opens when it is first polled, and whenever a connection ends,
/// it opens another by itself, sending the cursor of the last change it yielded
/// (`Last-Event-ID`): the server resumes right after it, so across reconnections no change
/// is skipped and none is yielded twice.
///
/// ```no_run
/// use tasklane::futures::StreamExt as _;
/// use tasklane::{Change, Client};
///
/// # async fn demo(client: Client) -> tasklane::Result<()> {
/// let mut changes = client.tasks().watch(None);
/// while let Some(live) = changes.next().await {
///     match live?.change {
///         Change::Upsert { task } => println!("#{} is now {:?} ({})", task.id, task.title, task.status),
///         Change::Delete { id } => println!("#{id} was deleted"),
///     }
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Where it starts
///
/// After `since`, a cursor of the change feed (a [`Replica`](crate::Replica)'s, a
/// [`ChangePage`](crate::ChangePage)'s, an earlier [`LiveChange`]'s), the changes made since
/// come first, then the live ones. Without it, the watch starts when its first connection
/// opens, that is when it is first polled: changes made before are not in it. To miss none
/// from a known state, start from that state's cursor, as a replica kept live does (see
/// [`Replica::apply_change`](crate::Replica::apply_change)).
///
/// # Reconnecting
///
/// - The server ends a stream when the access token that opened it expires, when it shuts
///   down, and when its live notifications were interrupted. The watch reconnects at once,
///   refreshing the token first when it is due. A connection refused with 401 is refreshed and
///   sent once more, as any call is. Either way the refresh is the client's single-flight one:
///   however many calls and watches need it, one `POST /auth/refresh` is made.
/// - A connection that cannot be opened (the server unreachable, any 5xx, 429, a refresh that
///   failed for a reason that may pass, or the call timeout below) is tried again after a
///   backoff: the client's [`RetryPolicy`](crate::RetryPolicy), full jitter doubling from its
///   base delay up to its longest (100 ms and 20 s by default). Its number of attempts does
///   not apply: a watch tries for as long as it is polled (50 ms apart at least, whatever the
///   policy). A `Retry-After` (the server sends
///   one with 429 and 503) is waited for in full, plus that jitter, so that clients cut off
///   together do not all come back at the same instant. A connection that ends within a
///   second without bringing a change counts as a failed attempt too.
/// - A connection on which nothing at all arrives (the server sends a keep-alive comment every
///   15 s) for the [idle timeout](Watch::idle_timeout), 45 s by default, is taken for dead
///   (a network that dropped it without a word), closed and opened again.
///
/// # Ending
///
/// The stream ends only on an error that reconnecting cannot mend, yielded as its last item;
/// after it, it yields `None` ([`FusedStream`]):
///
/// - [`Error::SessionExpired`]: the server refused the refresh token (the session is over),
///   or the client has no session, or another session began since the watch started (a
///   logout, or a login, perhaps as someone else: a cursor means nothing to another user).
/// - [`Error::Unauthorized`]: the server refused the access token even after a refresh.
/// - [`Error::Gone`]: the cursor is older than the server remembers deleted tasks for (30
///   days by default): [`Replica::sync`](crate::Replica::sync) rebuilds a replica, and a new
///   watch goes on from its cursor.
/// - [`Error::Validation`]: `since` is not a cursor of this user's change feed.
/// - Any other refusal (4xx) and [`Error::Decode`]: an answer that is no event stream, or a
///   change the client cannot read.
///
/// # Deadlines and timeouts
///
/// The client's [call timeout](crate::ClientBuilder::call_timeout) bounds each attempt to
/// connect (waiting for a token refresh, connecting, and the answer's headers), not the
/// stream, which lasts as long as it is polled; an attempt that runs out of time is tried
/// again like one that could not connect. The client's request
/// [`timeout`](crate::ClientBuilder::timeout) does not apply to the stream either (it would
/// cut it); the idle timeout does that job. A `reqwest::Client` given to
/// [`http_client`](crate::ClientBuilder::http_client) with a read timeout of its own shorter
/// than 15 s would cut idle streams: give it none, or a longer one.
///
/// # Pulled, not pushed
///
/// The watch reads from its connection only while it is polled, and spawns nothing: a
/// consumer that is slow to ask for the next change holds the server back (through TCP's
/// flow control) rather than filling memory, and dropping the watch closes its connection.
///
/// With the `tracing` feature, a watch is a span, `tasklane.watch`, with a `tasklane.request`
/// span for each connection and an event for each reconnection (see the crate's
/// documentation).
#[must_use = "a watch does nothing until it is polled"]
pub struct Watch {
    /// The state, while no change is being waited for; during a wait it is inside `next`.
    watcher: Option<Box<Watcher>>,
    /// The wait for the next change, once it has begun: kept across polls, so that a caller
    /// that stops waiting (a `select!` that took another branch) loses nothing.
    next: Option<NextChange>,
    idle_timeout: Duration,
    ended: bool,
}

/// The wait for a watch's next change, which hands its state back with it.
type NextChange = BoxFuture<'static, (Box<Watcher>, Option<Result<LiveChange>>)>;

impl Watch {
    /// 45 s without a byte, three keep-alive intervals of the server's (15 s): long enough for
    /// a keep-alive held up by a busy network or a slow proxy, short enough that a dead
    /// connection is replaced within a minute.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(45);

    pub(crate) fn new(client: Client, since: Option<String>) -> Self {
        let watcher = Watcher {
            span: WatchSpan::new(since.is_some()),
            client,
            since,
            last_delivered: None,
            connection: None,
            wait: Duration::ZERO,
            failures: 0,
            session: None,
            connections: 0,
            changes: 0,
            done: false,
        };
        Self {
            watcher: Some(Box::new(watcher)),
            next: None,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            ended: false,
        }
    }

    /// How long a connection may stay silent (not even a keep-alive) before it is taken for
    /// dead and replaced; from the next connection on. Default:
    /// [`DEFAULT_IDLE_TIMEOUT`](Self::DEFAULT_IDLE_TIMEOUT). It also bounds the wait for a
    /// connection's headers, even without a call timeout.
    ///
    /// Keep it well above the server's keep-alive interval (15 s), or idle streams are cut
    /// and reopened for nothing.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// # fn demo(client: tasklane::Client) {
    /// // Behind a proxy known to hold data back for a while.
    /// let changes = client.tasks().watch(None).idle_timeout(Duration::from_secs(90));
    /// # drop(changes);
    /// # }
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }
}

impl Stream for Watch {
    type Item = Result<LiveChange>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let idle_timeout = this.idle_timeout;
        let next = this.next.get_or_insert_with(|| {
            let mut watcher = this.watcher.take().expect("the watcher is here between changes");
            Box::pin(async move {
                let item = watcher.next(idle_timeout).await;
                (watcher, item)
            })
        });
        let (watcher, item) = ready!(next.as_mut().poll(cx));
        this.next = None;
        this.watcher = Some(watcher);
        this.ended = item.is_none();
        Poll::Ready(item)
    }
}

impl FusedStream for Watch {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Watch");
        if let Some(watcher) = &self.watcher {
            debug
                .field("last_delivered", &watcher.last_delivered)
                .field("connected", &watcher.connection.is_some())
                .field("connections", &watcher.connections)
                .field("changes", &watcher.changes);
        }
        debug.field("idle_timeout", &self.idle_timeout).field("ended", &self.ended).finish_non_exhaustive()
    }
}

/// A watch's state between polls.
struct Watcher {
    client: Client,
    /// The cursor the watch was given: `since` in the URL of every connection, as a
    /// reconnecting EventSource sends the URL it first opened. `Last-Event-ID` wins over it.
    since: Option<String>,
    /// The cursor of the last change yielded: the next connection's `Last-Event-ID`.
    last_delivered: Option<String>,
    connection: Option<Connection>,
    /// The wait before the next attempt to connect.
    wait: Duration,
    /// Attempts to connect since the last working connection: the backoff's exponent.
    failures: u32,
    /// The session the watch belongs to, once it has tried to connect.
    session: Option<u64>,
    /// Attempts to connect so far, for the trace.
    connections: u32,
    /// Changes yielded so far, for the trace.
    changes: u64,
    span: WatchSpan,
    /// An error ended it.
    done: bool,
}

/// An open stream of events.
struct Connection {
    events: BoxStream<'static, std::result::Result<Event, EventStreamError<BodyError>>>,
    /// The `X-Request-Id` of its answer (or of its request), for the errors it ends with.
    request_id: Option<String>,
    opened_at: Instant,
    /// Changes it brought.
    delivered: u64,
}

/// Why the body of a stream stopped.
#[derive(Debug)]
enum BodyError {
    /// Nothing came for the idle timeout.
    Idle,
    /// The connection broke.
    Read(reqwest::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Idle => f.write_str("nothing received for the idle timeout"),
            BodyError::Read(err) => err.fmt(f),
        }
    }
}

/// The source of the [`Error::Timeout`] of a connection whose headers did not come within the
/// idle timeout.
#[derive(Debug)]
struct NoAnswer(Duration);

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no answer from the live events within {:?}", self.0)
    }
}

impl std::error::Error for NoAnswer {}

impl Watcher {
    /// The next change; an error that ends the watch; `None` once it has ended.
    async fn next(&mut self, idle_timeout: Duration) -> Option<Result<LiveChange>> {
        if self.done {
            return None;
        }
        let span = self.span.clone();
        let outcome = span.instrument(self.advance(idle_timeout)).await;
        self.span.progress(self.connections, self.changes);
        if let Err(err) = &outcome {
            self.done = true;
            self.connection = None;
            self.span.end(err);
        }
        Some(outcome)
    }

    /// Reads on until a change comes, connecting again whenever a connection is lost; an
    /// error only when the watch cannot go on.
    async fn advance(&mut self, idle_timeout: Duration) -> Result<LiveChange> {
        loop {
            if self.connection.is_none() {
                let connection = self.connect(idle_timeout).await?;
                self.connection = Some(connection);
            }
            let connection = self.connection.as_mut().expect("connected above");
            let lost = match connection.events.next().await {
                Some(Ok(event)) => match change_of(event, &connection.request_id)? {
                    Some(change) => {
                        connection.delivered += 1;
                        self.changes += 1;
                        self.last_delivered = Some(change.cursor.clone());
                        return Ok(change);
                    }
                    // Keep-alives are comments, which the parser drops; event types of later
                    // versions are ignored.
                    None => continue,
                },
                Some(Err(EventStreamError::Transport(BodyError::Idle))) => Lost::Idle,
                Some(Err(EventStreamError::Transport(BodyError::Read(err)))) => {
                    Lost::Failed(Error::unanswered(err, connection.request_id.clone()))
                }
                // Not UTF-8, or not the event-stream format: the same would come again.
                Some(Err(err)) => {
                    return Err(Error::decode(StatusCode::OK, connection.request_id.clone(), err.to_string()))
                }
                None => Lost::Closed,
            };
            let worked = connection.delivered > 0 || connection.opened_at.elapsed() >= HEALTHY_AFTER;
            self.connection = None;
            if worked {
                self.failures = 0;
                self.wait = Duration::ZERO;
            } else {
                self.failures = self.failures.saturating_add(1);
                self.wait = self.backoff(None);
            }
            observe::watch_reconnecting(self.connections, &lost, self.wait);
        }
    }

    /// Opens a connection, after the wait the last failure asked for, and again after each
    /// attempt that fails for a reason that may pass.
    async fn connect(&mut self, idle_timeout: Duration) -> Result<Connection> {
        loop {
            if !self.wait.is_zero() {
                tokio::time::sleep(self.wait).await;
            }
            self.connections += 1;
            match self.open(idle_timeout).await {
                Ok(connection) => {
                    let resumed = self.since.is_some() || self.last_delivered.is_some();
                    observe::watch_connected(self.connections, resumed);
                    return Ok(connection);
                }
                Err(err) if passes(&err) => {
                    self.failures = self.failures.saturating_add(1);
                    self.wait = self.backoff(err.retry_after());
                    observe::watch_reconnecting(self.connections, &Lost::Failed(err), self.wait);
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One attempt to connect, in a span of its own: the stream, once the answer's headers
    /// have come and say it is one.
    async fn open(&mut self, idle_timeout: Duration) -> Result<Connection> {
        let mut url = self.client.endpoint("tasks/events");
        if let Some(since) = &self.since {
            url.query_pairs_mut().append_pair("since", since);
        }
        let mut call = self.client.request(Method::GET, route::EVENTS, url, None);
        let request = &mut call.request;
        request.headers_mut().insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        request.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Some(cursor) = &self.last_delivered {
            // Checked when its event was read.
            let cursor = HeaderValue::from_str(cursor).expect("a cursor is a header value");
            request.headers_mut().insert(HeaderName::from_static(LAST_EVENT_ID), cursor);
        }
        *request.timeout_mut() = Some(NO_TIMEOUT);
        let sent_id = request_id(request.headers());

        let span = CallSpan::request(&Method::GET, route::EVENTS, sent_id.as_deref());
        let deadline = Deadline::start(self.client.call_timeout());
        let opening = self.client.open_stream(&call.request, &mut self.session, deadline);
        // A server silent for the idle timeout is as dead before its headers as after them.
        let outcome = span
            .instrument(async {
                tokio::time::timeout(idle_timeout, opening).await.unwrap_or_else(|_| {
                    Err(Error::Timeout {
                        request_id: sent_id.clone(),
                        source: std::sync::Arc::new(NoAnswer(idle_timeout)),
                    })
                })
            })
            .await;
        span.finish(1, outcome.as_ref().map(|response| Some(response.status())));
        let response = outcome?;

        let request_id = request_id(response.headers()).or(sent_id);
        let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !content_type.trim_start().to_ascii_lowercase().starts_with("text/event-stream") {
            let why = format!("expected an event stream (text/event-stream), got {content_type:?}");
            return Err(Error::decode(response.status(), request_id, why));
        }
        let body = Box::pin(response.bytes_stream());
        let body = stream::unfold(body, move |mut body| async move {
            match tokio::time::timeout(idle_timeout, body.next()).await {
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), body)),
                Ok(Some(Err(err))) => Some((Err(BodyError::Read(err)), body)),
                Ok(None) => None,
                Err(_) => Some((Err(BodyError::Idle), body)),
            }
        });
        Ok(Connection {
            events: body.eventsource().boxed(),
            request_id,
            opened_at: Instant::now(),
            delivered: 0,
        })
    }

    /// The wait before the next attempt to connect: the client's backoff (full jitter), after
    /// the server's `Retry-After` if it gave one; [`MIN_WAIT`] at least.
    fn backoff(&self, retry_after: Option<Duration>) -> Duration {
        let jitter = self.client.retry_policy().backoff(self.failures);
        retry_after.map_or(jitter, |wait| wait.saturating_add(jitter)).max(MIN_WAIT)
    }
}

/// Whether a failure to connect may pass, so that the watch tries again: the network, any
/// 5xx (a server restarting or overloaded, live events down for a moment), 429 (too many
/// streams), the call timeout, or a refresh that failed for one of these reasons.
fn passes(err: &Error) -> bool {
    match err {
        Error::Transport { .. }
        | Error::Timeout { .. }
        | Error::DeadlineExceeded { .. }
        | Error::RateLimited { .. }
        | Error::Server { .. } => true,
        Error::RefreshFailed { source } => passes(source),
        _ => false,
    }
}

/// The change an event carries, if it is a change; an event of another type is `None`.
fn change_of(event: Event, request_id: &Option<String>) -> Result<Option<LiveChange>> {
    if event.event != CHANGE_EVENT {
        return Ok(None);
    }
    let invalid = |why: String| Error::decode(StatusCode::OK, request_id.clone(), why);
    // Sent back as `Last-Event-ID` at the next connection.
    if event.id.is_empty() || HeaderValue::from_str(&event.id).is_err() {
        return Err(invalid(format!("a change came without a usable id (cursor): {:?}", event.id)));
    }
    let change = serde_json::from_str(&event.data).map_err(|err| invalid(format!("a change: {err}")))?;
    Ok(Some(LiveChange { change, cursor: event.id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, id: &str, data: &str) -> Event {
        Event { event: kind.into(), id: id.into(), data: data.into(), retry: None }
    }

    #[test]
    fn changes_are_read_with_their_cursor_and_other_events_ignored() {
        let read = |e| change_of(e, &Some("req".into()));
        let live = read(event("change", "c1.2", r#"{"type":"delete","id":5}"#)).unwrap().unwrap();
        assert_eq!(live, LiveChange::new(Change::Delete { id: 5 }, "c1.2"));
        assert_eq!(read(event("message", "c1.3", "hello")).unwrap(), None);
        assert_eq!(read(event("later-kind", "", "{}")).unwrap(), None);
        for bad in [
            event("change", "", r#"{"type":"delete","id":5}"#),
            event("change", "c1\u{7f}", r#"{"type":"delete","id":5}"#),
            event("change", "c1.4", r#"{"type":"teleport","id":5}"#),
        ] {
            let err = read(bad).unwrap_err();
            assert!(matches!(err, Error::Decode { status: 200, .. }), "{err:?}");
            assert_eq!(err.request_id(), Some("req"));
        }
    }

    #[test]
    fn what_passes_and_what_ends_a_watch() {
        let status = |code: u16| {
            let status = StatusCode::from_u16(code).unwrap();
            Error::from_status(status, &Default::default(), b"", None)
        };
        for code in [429, 500, 502, 503, 504] {
            assert!(passes(&status(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 410, 422] {
            assert!(!passes(&status(code)), "{code}");
        }
        let refresh = |source| Error::RefreshFailed { source: Box::new(source) };
        assert!(passes(&refresh(status(503))));
        assert!(!passes(&refresh(status(403))));
        assert!(!passes(&Error::SessionExpired { response: None }));
    }
}
