//! `GET /tasks/events`: the caller's changes as Server-Sent Events, as they happen.
//!
//! A stream takes its place in the hub first, then reads the feed after its cursor, and reads
//! it again from where it got to whenever the hub says the user's tasks changed. Subscribing
//! before the first read means a change committed after that read is announced; reading from
//! the stream's own cursor means no change is sent twice, however the notifications fall.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use rocket::request::{FromRequest, Outcome};
use rocket::response::stream::{stream, Event, EventStream};
use rocket::{get, Request, Shutdown, State};
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::openapi;
use rocket_okapi::request::{OpenApiFromRequest, RequestHeaderInput};
use tasklane::types::Change;

use super::Cursor;
use crate::app::App;
use crate::auth::guard::AuthUser;
use crate::body::QueryParam;
use crate::error::{ApiError, ApiResult};
use crate::live::Signal;
use crate::store::Database;

/// How often a comment goes down an idle stream, so that proxies and clients see it is alive.
/// The feed is read again then too, which makes up for a notification lost on its way.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Changes read from the feed at a time.
const PAGE: u32 = 500;

/// The caller's changes as they happen (`text/event-stream`).
///
/// Each change is an event `change` whose `id` is the feed's cursor after it and whose data is
/// the change object of `GET /tasks/changes`. With `Last-Event-ID` (or `since`, a cursor of the
/// feed), the changes made after that cursor come first, then the live ones, none skipped or
/// repeated; without either, the stream starts with the changes made after it opened. A
/// comment `: keep-alive` comes every 15 seconds. The stream ends when the access token that
/// opened it expires (reconnect with a fresh one and `Last-Event-ID`), when the server stops,
/// and when live notifications were interrupted. A cursor older than the tombstone retention is
/// 410; at most 10 streams per user are open on a server instance (429 beyond).
#[openapi(tag = "Tasks")]
#[get("/events?<since>")]
pub async fn events(
    app: &State<App>,
    user: AuthUser,
    last_event_id: LastEventId,
    since: Option<QueryParam<String>>,
    mut shutdown: Shutdown,
) -> ApiResult<EventStream<BoxStream<'static, Event>>> {
    // A reconnecting EventSource sends Last-Event-ID and the URL it first opened: the header is
    // the newer position.
    let since = match (last_event_id.0, since) {
        (Some(id), _) => {
            Some(Cursor::parse(&id, user.id).map_err(|e| ApiError::invalid("Last-Event-ID", e.message))?)
        }
        (None, Some(since)) => {
            Some(since.parse("since").and_then(|s: String| Cursor::parse(&s, user.id)).map_err(|e| {
                ApiError::invalid("since", format!("must be a cursor this feed gave you ({})", e.message))
            })?)
        }
        (None, None) => None,
    };
    let lifetime = user.expires_at - chrono::Utc::now().timestamp();
    if lifetime <= 0 {
        // Accepted within the clock leeway, but a stream would end at once and be reopened in a
        // loop: the client must refresh first.
        return Err(ApiError::Unauthorized("the access token has expired; refresh it".into()));
    }
    let mut subscription = app.live.subscribe(user.id)?;
    let db = app.db.clone();
    let mut cursor = match since {
        Some(since) => since.0,
        None => db.last_change(user.id).await?,
    };
    // Read before answering, so that a cursor past the retention is a 410, not an empty stream.
    let first = feed_after(&db, user.id, cursor).await?;

    let user_id = user.id;
    let ends_at = tokio::time::Instant::now() + Duration::from_secs(lifetime as u64);
    let events = stream! {
        let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        let mut page = Some(first);
        loop {
            let changes = match page.take() {
                Some(changes) => changes,
                None => match feed_after(&db, user_id, cursor).await {
                    Ok(changes) => changes,
                    Err(err) => {
                        // The client reconnects and resumes; a cursor past the retention is
                        // then its 410.
                        tracing::warn!(user_id, error = %err, "an event stream ends: the feed could not be read");
                        break;
                    }
                },
            };
            let full = changes.len() >= PAGE as usize;
            for (seq, change) in changes {
                cursor = seq;
                yield change_event(user_id, seq, &change);
            }
            if full {
                continue;
            }
            let woke = tokio::select! {
                signal = subscription.next() => match signal {
                    Signal::Changed => Wake::Read,
                    Signal::Lost => Wake::End,
                },
                _ = keep_alive.tick() => Wake::KeepAlive,
                _ = tokio::time::sleep_until(ends_at) => Wake::End,
                _ = &mut shutdown => Wake::End,
            };
            match woke {
                Wake::Read => {}
                Wake::KeepAlive => yield Event::comment(" keep-alive"),
                Wake::End => break,
            }
        }
    };
    Ok(EventStream::from(events.boxed()).heartbeat(None))
}

enum Wake {
    Read,
    KeepAlive,
    End,
}

/// The user's changes after `cursor`, a page of them; 410 when the cursor is older than the
/// deletions remembered.
async fn feed_after(
    db: &Arc<dyn Database>,
    user_id: i64,
    cursor: i64,
) -> Result<Vec<(i64, Change)>, ApiError> {
    Ok(super::read_feed(db.as_ref(), user_id, Some(cursor), PAGE).await?.changes)
}

fn change_event(user_id: i64, seq: i64, change: &Change) -> Event {
    Event::json(change).event("change").id(Cursor(seq).to_string(user_id))
}

/// `Last-Event-ID`, when the request has one: the `id` of the last event the client received.
pub struct LastEventId(pub Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for LastEventId {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ApiError> {
        // An empty one is what an EventSource sends when no event had an id: no position.
        let id = req.headers().get_one("Last-Event-ID").map(str::trim).filter(|id| !id.is_empty());
        Outcome::Success(LastEventId(id.map(str::to_owned)))
    }
}

impl<'r> OpenApiFromRequest<'r> for LastEventId {
    fn from_request_input(
        _: &mut OpenApiGenerator,
        _: String,
        _: bool,
    ) -> rocket_okapi::Result<RequestHeaderInput> {
        Ok(super::headers::header(
            "Last-Event-ID",
            "The `id` of the last event received: the stream resumes after it (it wins over `since`)",
            r"^(\s*|c[0-9]+\.[0-9]+|.*[^\t\x20-\x7E].*)$",
        ))
    }
}
