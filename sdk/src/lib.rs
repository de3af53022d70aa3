//! Tasklane: a typed async client for the Tasklane task-manager API, and its wire types.
//!
//! # A tour
//!
//! Build a [`Client`] for the server's base URL, start a session, and work with the tasks:
//!
//! ```no_run
//! use tasklane::{Client, NewTask, TaskStatus, TaskUpdate};
//!
//! # async fn demo() -> tasklane::Result<()> {
//! let client = Client::new("http://127.0.0.1:8000")?;
//! client.login("ada", "correct horse battery").await?;
//!
//! let task = client.tasks().create(NewTask::new("write the docs")).await?;
//! let task = client.tasks().patch(task.id, TaskUpdate::new().status(TaskStatus::Done)).await?;
//! assert_eq!(task.status, TaskStatus::Done);
//!
//! let page = client.tasks().list().status(TaskStatus::Done).limit(10).await?;
//! println!("{} done tasks in all", page.total.unwrap_or_default());
//!
//! client.tasks().delete(task.id).await?;
//! client.logout().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The client is cheap to clone and safe to share between tasks; clones share one connection
//! pool and one session.
//!
//! ## Sessions and tokens
//!
//! [`Client::register`] and [`Client::login`] start a session. Its access token lives 15
//! minutes by default; the client refreshes it by itself, shortly before it expires (the
//! [`refresh_skew`](ClientBuilder::refresh_skew)) and when the server refuses it with 401, after
//! which the refused request is sent once more. However many requests need a new token at
//! the same moment, one `POST /auth/refresh` is made and all of them use its result.
//!
//! Refresh tokens rotate: each refresh returns a new one and the old one stops working. Give
//! the builder a [`TokenStore`] to keep the current tokens across runs, and pass the saved
//! [`Tokens`] back to [`ClientBuilder::tokens`] on the next start. [`FileTokenStore`] keeps
//! them in a file only the user can read, replaced whole at each change:
//!
//! ```no_run
//! use tasklane::{Client, FileTokenStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let server = "http://127.0.0.1:8000";
//! let store = FileTokenStore::new("/home/ada/.config/my-app/session.json", server);
//! let mut builder = Client::builder(server).token_store(store.clone());
//! if let Some(tokens) = store.load()? {
//!     builder = builder.tokens(tokens); // the session of the last run
//! }
//! let client = builder.build()?;
//! let me = client.me().await?; // Error::SessionExpired when there was none: log in
//! println!("hello, {}", me.username);
//! # Ok(())
//! # }
//! ```
//!
//! [`MemoryTokenStore`] keeps them in memory (for tests); any other place (a keychain, a
//! database) is a [`TokenStore`] of your own.
//!
//! A session belongs to one client (and its clones): two clients resumed from the same saved
//! tokens would each use the one-use refresh token, and the server revokes a session whose
//! refresh token is used twice.
//!
//! When the server refuses the refresh token (the session was logged out elsewhere, or it
//! expired after 7 days), calls fail with [`Error::SessionExpired`] and the store is cleared:
//! log in again. A client that holds no tokens (never logged in, or logged out) fails the same
//! way, without sending the request. A refresh that fails for another reason (the server
//! unreachable or overloaded) keeps the session: calls whose access token is still good go
//! ahead with it, and those that needed the refresh fail with [`Error::RefreshFailed`], which
//! the retry policy treats as not sent.
//!
//! To hear of every refresh as it ends (new tokens, the session over, a failure that may
//! pass) without waiting for a call to fail, give the builder a hook:
//!
//! ```no_run
//! use tasklane::{Client, RefreshOutcome};
//!
//! # fn demo() -> tasklane::Result<()> {
//! let client = Client::builder("http://127.0.0.1:8000")
//!     .on_refresh(|outcome| {
//!         if let RefreshOutcome::SessionExpired { .. } = outcome {
//!             eprintln!("signed out: please log in again");
//!         }
//!     })
//!     .build()?;
//! # Ok(())
//! # }
//! ```
//!
//! A refresh runs on a task of its own, so a call that gives up on it (at its
//! [deadline](#deadlines), or dropped by a `tokio::time::timeout`) does not cut it short, and
//! its rotated tokens are still stored. That task needs the Tokio runtime: a program that
//! gives up on a call and returns from `main` at once can lose them, and finds its session
//! revoked at the next start.
//!
//! ## Listing
//!
//! [`Tasks::list`] returns a builder: `.await` it for one [`Page`] (with the total count and
//! the link to the next page), or turn it into a stream of every matching task:
//!
//! ```no_run
//! use tasklane::futures::TryStreamExt as _;
//! use tasklane::{Client, TaskSort};
//!
//! # async fn demo(client: Client) -> tasklane::Result<()> {
//! let titles: Vec<String> =
//!     client.tasks().list().sort(TaskSort::Title).stream().map_ok(|task| task.title).try_collect().await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Conditional writes
//!
//! Every answer that carries one task ([`Tasks::get`], [`Tasks::create`], [`Tasks::update`],
//! [`Tasks::patch`]) comes as a [`Tagged`] task: it reads as the [`Task`] (`task.title`), and
//! [`Tagged::etag`] is the [`ETag`] of the version it is. Hand that tag to
//! [`Tasks::update_if`], [`Tasks::patch_if`] or [`Tasks::delete_if`] and the server writes only
//! if nobody changed the task since; otherwise nothing changes and the call fails with
//! [`Error::PreconditionFailed`], carrying the tag of the version the server has now:
//!
//! ```no_run
//! use tasklane::{Error, TaskUpdate};
//!
//! # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
//! let task = client.tasks().get(7).await?;
//! let etag = task.etag().cloned().expect("the server tags every task it answers");
//! let update = TaskUpdate::new().title(format!("{} (urgent)", task.title));
//! match client.tasks().update_if(task.id, &etag, update).await {
//!     Ok(saved) => println!("saved version {}", saved.version),
//!     Err(Error::PreconditionFailed { current_etag, .. }) => {
//!         println!("changed by someone else meanwhile ({current_etag:?}): read it again")
//!     }
//!     Err(err) => return Err(err),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! [`Tasks::get_if_changed`] fetches a task only when it is no longer the version a tag names.
//! To keep a task without its tag, take it out with [`Tagged::into_inner`].
//!
//! ## Idempotent creates
//!
//! [`Tasks::create`] sends an `Idempotency-Key` of its own with each create, the same on every
//! attempt: the server answers a repeat with the task it created the first time. So a create
//! whose answer was lost is retried like a PUT, and never makes two tasks. An application that
//! must retry a create after a restart keeps a key of its own with the task and passes it to
//! [`Tasks::create_with_key`].
//!
//! ## Incremental sync
//!
//! [`Tasks::changes`] reads the change feed: the tasks created, changed and deleted after a
//! cursor. A [`Replica`] is a local copy of the user's tasks kept current through it: plain
//! data (serde), whose [`sync`](Replica::sync) fetches only what changed since its last one,
//! and starts again from scratch when the server no longer knows its cursor:
//!
//! ```no_run
//! use tasklane::Replica;
//!
//! # async fn demo(client: tasklane::Client, saved: Option<String>) -> Result<(), Box<dyn std::error::Error>> {
//! let mut replica = match saved {
//!     Some(json) => serde_json::from_str(&json)?,
//!     None => Replica::new(),
//! };
//! let report = replica.sync(&client).await?;
//! println!("{} tasks, {} changed, {} deleted", replica.len(), report.upserted.len(), report.deleted.len());
//! let saved = serde_json::to_string(&replica)?; // the next run resumes from here
//! # Ok(())
//! # }
//! ```
//!
//! ## Live updates
//!
//! [`Tasks::watch`] follows the changes as they happen (the server's live events, Server-Sent
//! Events): a [`Watch`], a stream of [`LiveChange`]s, each a [`Change`] with the feed's
//! cursor after it. It reconnects by itself whenever its connection ends, resuming right after
//! the last change it yielded (nothing skipped, nothing repeated); the server ends a stream
//! when its access token expires, and the watch refreshes the token (once, with every other
//! call that needs it) and goes on. It ends only on an error that reconnecting cannot mend,
//! yielded as its last item. A [`Replica`] started from a sync and fed each change with
//! [`apply_change`](Replica::apply_change) stays equal to the server:
//!
//! ```no_run
//! use tasklane::futures::StreamExt as _;
//! use tasklane::{Error, Replica};
//!
//! # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
//! let mut replica = Replica::new();
//! replica.sync(&client).await?;
//! let mut changes = client.tasks().watch(replica.cursor());
//! while let Some(change) = changes.next().await {
//!     match change {
//!         Ok(change) => {
//!             replica.apply_change(change);
//!         }
//!         // Away for longer than the server remembers deletions: start again from every task.
//!         Err(Error::Gone { .. }) => {
//!             replica.sync(&client).await?;
//!             changes = client.tasks().watch(replica.cursor());
//!         }
//!         Err(err) => return Err(err), // the session is over, say
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Between connections it waits by the client's [`RetryPolicy`] (backoff with jitter,
//! `Retry-After` honoured), for as long as it is polled; the [call timeout](#deadlines)
//! bounds each attempt to connect, not the stream; a connection silent for 45 s (three of the
//! server's keep-alive intervals) is replaced. [`Watch`] has the details.
//!
//! ## Errors and retries
//!
//! Every call returns [`Result`]; an [`Error`] tells what went wrong in a typed variant, with the
//! server's `detail` and the `X-Request-Id` of its answer. Requests are checked against the
//! API's rules before they are sent:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use tasklane::{Client, Error, NewTask};
//!
//! let client = Client::new("http://127.0.0.1:8000").unwrap();
//! let err = client.tasks().create(NewTask::new("   ")).await.unwrap_err();
//! let Error::Validation { errors, .. } = &err else { panic!("{err}") };
//! assert_eq!(errors[0].field, "title");
//! assert_eq!(err.status(), None); // found by the client: nothing was sent
//! # }
//! ```
//!
//! Idempotent requests (GET, PUT, PATCH, DELETE, and creates, which carry an `Idempotency-Key`)
//! that fail for a passing reason (a connection lost before or during the answer, 502, 503,
//! 504, or 429) are sent again after an exponential backoff with jitter, honouring the
//! server's `Retry-After`; see [`RetryPolicy`] to change how.
//!
//! ## Deadlines
//!
//! Each call has a deadline, 30 s by default ([`ClientBuilder::DEFAULT_CALL_TIMEOUT`]), that
//! bounds all of it: every attempt, the waits between them, and a token refresh it waits for.
//! A call that reaches it fails with [`Error::DeadlineExceeded`], which carries the error of
//! the attempt before, if one failed; a retry whose `Retry-After` would end past the deadline
//! fails that way at once, rather than after the wait. Set another with
//! [`ClientBuilder::call_timeout`], or for some calls only with [`Client::with_call_timeout`]:
//!
//! ```no_run
//! use std::time::Duration;
//! use tasklane::{Client, Error};
//!
//! # async fn demo(client: Client) -> tasklane::Result<()> {
//! match client.with_call_timeout(Duration::from_secs(5)).tasks().get(7).await {
//!     Ok(task) => println!("{}", task.title),
//!     Err(Error::DeadlineExceeded { last_error, .. }) => {
//!         println!("no answer within 5 s (last error: {last_error:?})")
//!     }
//!     Err(err) => return Err(err),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## Tracing
//!
//! With the `tracing` feature (on by default) every call is a
//! [`tracing`](https://docs.rs/tracing) span, so an application's subscriber shows what the
//! client did, under the application's own spans:
//!
//! ```no_run
//! # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
//! tracing_subscriber::fmt()
//!     .with_max_level(tracing::Level::DEBUG)
//!     .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
//!     .init();
//! client.tasks().get(7).await?;
//! // INFO tasklane.request{method=GET route="/tasks/{id}" request_id="9f0c…" attempts=1
//! //     status=200}: tasklane: close
//! # Ok(())
//! # }
//! ```
//!
//! Everything is recorded under the target `tasklane`:
//!
//! - A span `tasklane.request` (level INFO) per call, with `method`; `route`, the route's
//!   template (`/tasks/{id}`, `/tasks/`, `/auth/login`), never the URL; `request_id`, the
//!   `X-Request-Id` sent with each attempt (the server logs it, and echoes it in its answer);
//!   and once the call is over, `attempts`, `status` (of the answer that ended it, if one
//!   did) and `error`, the kind of error it failed with (`rate_limited`,
//!   `deadline_exceeded`...).
//! - A span `tasklane.refresh` for the `POST /auth/refresh` of each token refresh, with the
//!   same fields, inside the span of the call that started it.
//! - Events in a call's span: `retrying` (INFO) before each retry, with the `attempt` that
//!   failed, its `reason` and `status`, and the `wait_ms` before the next; one (INFO) when
//!   the deadline leaves no time for the next; for a refresh, whether the call started it
//!   or joined one already running (DEBUG, with its `cause`: `expiring`, `refused` or
//!   `requested`), and its `outcome` (`refreshed`, `session_expired` at INFO; `failed` at
//!   WARN, with its `error` and `status`).
//!
//! - A span `tasklane.watch` (level INFO) per [`Watch`], open as long as the watch is, with
//!   `route` (`/tasks/events`), `resumed` (whether it started after a cursor), and as it goes
//!   `connections` (attempts to connect), `changes` (changes yielded) and `error` (the kind
//!   of error that ended it). Each attempt to connect is a `tasklane.request` span inside it.
//!   Its events: `watch connected` (DEBUG, with the `connection` number), `reconnecting`
//!   (INFO) with the `connection` lost, its `reason` (`closed` by the server, `idle`, or the
//!   kind of error, with the `status`) and the `wait_ms` before the next, and `watch ended`
//!   (INFO, with the `error` and `status`).
//!
//! No token, password, URL (so no query string), header, body or error text is ever
//! recorded, nor a cursor: only the fields above.
//!
//! With the `opentelemetry` feature, and a `tracing-opentelemetry` layer in the application's
//! subscriber, every request also carries the W3C `traceparent` (and `tracestate`) of its
//! call's span, so the server's spans continue the application's trace, under the call
//! (without such a layer, OpenTelemetry's own current context is used, if any; with neither,
//! nothing is sent). The spans are named as OpenTelemetry's HTTP conventions ask
//! (`GET /tasks/{id}`, kind client).
//! Use the versions of `opentelemetry` and `tracing-opentelemetry` this crate depends on:
//!
//! ```no_run
//! use opentelemetry::trace::TracerProvider as _;
//! use tracing::Instrument as _;
//! use tracing_subscriber::layer::SubscriberExt as _;
//!
//! # use opentelemetry_sdk::trace::SdkTracerProvider;
//! # async fn demo(client: tasklane::Client, provider: SdkTracerProvider) -> tasklane::Result<()> {
//! // `provider` exports to your collector (OTLP, say).
//! let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("my-app"));
//! tracing::subscriber::set_global_default(tracing_subscriber::registry().with(otel)).unwrap();
//!
//! // The server's spans for these requests are in this span's trace.
//! client.tasks().get(7).instrument(tracing::info_span!("show task")).await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Testing an application against the real server
//!
//! The `tasklane-server` crate, with its `testing` feature, starts the reference server
//! in-process for an application's tests, on `127.0.0.1` and a fresh SQLite database:
//! `let server = TestServer::start().await;` then `Client::new(server.url())`. The README's
//! "Testing your app against the real server" shows a whole test.
//!
//! ## Features
//!
//! - `client` (default): the HTTP client. Without it the crate is only the wire types in
//!   [`types`] and their validation rules, as the server uses it.
//! - `tracing` (default): the spans and events above. Without it the client holds no tracing
//!   code.
//! - `file-store` (default): [`FileTokenStore`]. It needs no dependency beyond the client's.
//! - `opentelemetry`: the W3C `traceparent` header from the current span's OpenTelemetry
//!   context; implies `tracing`.
//! - `schema`: `schemars::JsonSchema` for every wire type.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The docs link to the items of the default features (the client, `FileTokenStore`), which a
// build without them lacks; its docs keep the links' text.
#![cfg_attr(not(all(feature = "client", feature = "file-store")), allow(rustdoc::broken_intra_doc_links))]

pub mod types;

#[cfg(feature = "client")]
mod auth;
#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
mod deadline;
#[cfg(feature = "client")]
mod error;
mod etag;
#[cfg(feature = "file-store")]
mod file_store;
#[cfg(feature = "client")]
mod link;
#[cfg(feature = "client")]
mod observe;
#[cfg(feature = "client")]
mod replica;
#[cfg(feature = "client")]
mod retry;
#[cfg(feature = "client")]
mod tasks;
#[cfg(feature = "client")]
mod watch;

#[cfg(feature = "client")]
pub use auth::{MemoryTokenStore, RefreshOutcome, TokenStore, Tokens};
/// The date and time types of the API ([`Task::created_at`], [`Tokens::expires_at`]), so that
/// an application uses the same `chrono` as this crate without depending on it itself.
pub use chrono;
#[cfg(feature = "client")]
pub use client::{Client, ClientBuilder};
#[cfg(feature = "client")]
pub use error::{BoxError, Error, ErrorResponse, Result};
pub use etag::{ETag, InvalidETag, Tagged};
#[cfg(feature = "file-store")]
pub use file_store::FileTokenStore;
/// The `futures` crate, for the stream of [`ListTasks::stream`] (`TryStreamExt::try_next`,
/// `try_collect`) and for [`BoxFuture`].
#[cfg(feature = "client")]
pub use futures;
/// The future a [`TokenStore`] returns: a boxed `Send` future, so a store needs no `futures`
/// dependency of its own to name it.
#[cfg(feature = "client")]
pub use futures::future::BoxFuture;
#[cfg(feature = "client")]
pub use replica::{Replica, SyncReport};
/// The HTTP client underneath, for [`ClientBuilder::http_client`].
#[cfg(feature = "client")]
pub use reqwest;
#[cfg(feature = "client")]
pub use retry::RetryPolicy;
#[cfg(feature = "client")]
pub use tasks::{ListChanges, ListTasks, Page, Tasks};
/// The URL type of [`Client::base_url`] and [`Page::next`].
#[cfg(feature = "client")]
pub use url::Url;
#[cfg(feature = "client")]
pub use watch::{LiveChange, Watch};

pub use types::{
    Change, ChangePage, FieldError, HealthStatus, ListQuery, NewTask, Priority, Secret, Task, TaskSort,
    TaskStatus, TaskUpdate, TokenPair, User,
};

/// The README's examples, compiled as doctests.
#[cfg(all(doctest, feature = "client"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
