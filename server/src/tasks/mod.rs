//! `/tasks/*`: a user's tasks. Every query carries the caller's id, so another user's task is
//! simply not found (404, never 403).

pub mod events;
pub mod headers;

use chrono::{DateTime, Utc};
use rocket::response::status::{Created, NoContent};
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, put, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::openapi;
use rocket_okapi::settings::OpenApiSettings;
use tasklane::types::{
    limits, ChangePage, FieldError, NewTask, Priority, Task, TaskSort, TaskStatus, TaskUpdate,
};

use crate::app::App;
use crate::auth::guard::AuthUser;
use crate::body::{JsonBody, QueryParam};
use crate::error::{ApiError, ApiResult};
use crate::responders::{etag, DocumentedHeaders, TaskAnswer, TaskOrNotModified, WithHeaders};
use crate::store::{Claim, Replay};

use self::headers::{IdempotencyKey, IfMatch, IfNoneMatch, Tags};
use crate::store::TaskFilter;

/// The routes of this area and their OpenAPI document.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    rocket_okapi::openapi_get_routes_spec![settings: create, list, get_one, update, patch_one, delete_one, changes, events::events]
}

impl DocumentedHeaders for Vec<Task> {
    const HEADERS: &'static [(&'static str, &'static str, &'static str)] = &[
        ("X-Total-Count", "Number of tasks matching the filter, over all pages", "integer"),
        ("Link", "RFC 8288 links to the `next` and `prev` pages", "string"),
    ];
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("task {id} not found"))
}

/// Create a task.
///
/// `title` is 1 to 200 characters (stored trimmed), `description` up to 10,000, `status`
/// defaults to `pending`; `due_at`, `priority` and `labels` are optional. Answers 201 with the
/// task, its `Location` and `ETag`.
///
/// With an `Idempotency-Key`, a repeat of the request (same key, same body) within 24 hours
/// answers what the first one answered, with `Idempotent-Replayed: true`, and creates nothing;
/// the same key with another body is 422, and while the first is in flight, 409.
#[openapi(tag = "Tasks")]
#[post("/", data = "<body>")]
async fn create(
    app: &State<App>,
    user: AuthUser,
    key: IdempotencyKey,
    body: JsonBody<NewTask>,
) -> ApiResult<Created<TaskAnswer>> {
    let task = body.0.validate().map_err(ApiError::Validation)?;
    let Some(key) = key.0 else {
        let task = app.db.create_task(user.id, &task, crate::store::now()).await?;
        app.live.publish(user.id);
        return Ok(Created::new(format!("/tasks/{}", task.id)).body(TaskAnswer::new(&task)?));
    };
    // The body as received, compared as a JSON value: fields in a fixed order, nothing else.
    let fingerprint = serde_json::to_string(&body.0).map_err(|e| ApiError::Internal(e.to_string()))?;
    let other_body = || ApiError::invalid("Idempotency-Key", "was used with another body");
    match app.idempotency.claim(user.id, &key, &fingerprint, IN_FLIGHT).await? {
        Claim::Done(kept) if kept.fingerprint == fingerprint => {
            Ok(Created::new(kept.location).body(TaskAnswer::replayed(kept.body)?))
        }
        Claim::Done(_) => Err(other_body()),
        Claim::InFlight { fingerprint: Some(first) } if first != fingerprint => Err(other_body()),
        Claim::InFlight { .. } => Err(ApiError::InFlight),
        Claim::New => match app.db.create_task(user.id, &task, crate::store::now()).await {
            Ok(task) => {
                app.live.publish(user.id);
                let location = format!("/tasks/{}", task.id);
                let answer = TaskAnswer::new(&task)?;
                let kept = Replay {
                    fingerprint,
                    status: 201,
                    location: location.clone(),
                    body: answer.body().to_owned(),
                };
                // The task exists: a key that cannot be kept is logged, and this answer stands.
                if let Err(err) =
                    app.idempotency.complete(user.id, &key, &kept, app.feed.idempotency_ttl).await
                {
                    tracing::warn!(user_id = user.id, error = %err, "an idempotency key's answer could not be kept");
                }
                Ok(Created::new(location).body(answer))
            }
            Err(err) => {
                // Not kept: the key can be used again.
                if let Err(undo) = app.idempotency.release(user.id, &key).await {
                    tracing::warn!(user_id = user.id, error = %undo, "an idempotency key could not be freed");
                }
                Err(err.into())
            }
        },
    }
}

/// How long an idempotency key stays claimed by a request that neither completes nor fails (its
/// instance died): after it, the key can be used again.
const IN_FLIGHT: std::time::Duration = std::time::Duration::from_secs(60);

/// List the caller's tasks, a page at a time.
///
/// Filters, all combined: `status`; `priority`; `label` (repeatable: tasks carrying every label
/// given, compared ignoring case); `due_before` / `due_after` (RFC 3339; `due_at < due_before`,
/// `due_at >= due_after`, tasks without a due date left out); `q` (1 to 200 characters: tasks
/// whose title or description contains it, ignoring case; `%`, `_` and `*` match only
/// themselves). `limit` (1 to 100, default 50) and `offset` (default 0) page; `sort` is one of
/// `created_at`, `-created_at` (default), `updated_at`, `-updated_at`, `title`, `-title`,
/// `due_at`, `-due_at` (no due date last either way), `priority`, `-priority`, ties broken by
/// id in the same direction. The body is a JSON array; `X-Total-Count` has the number of
/// matching tasks and `Link` the `next` / `prev` pages.
#[openapi(tag = "Tasks")]
#[get("/?<status>&<limit>&<offset>&<sort>&<priority>&<label>&<due_before>&<due_after>&<q>")]
#[allow(clippy::too_many_arguments)]
async fn list(
    app: &State<App>,
    user: AuthUser,
    status: Option<QueryParam<TaskStatus>>,
    limit: Option<QueryParam<u32>>,
    offset: Option<QueryParam<u64>>,
    sort: Option<QueryParam<TaskSort>>,
    priority: Option<QueryParam<Priority>>,
    label: Vec<String>,
    due_before: Option<QueryParam<DateTime<Utc>>>,
    due_after: Option<QueryParam<DateTime<Utc>>>,
    q: Option<QueryParam<String>>,
) -> ApiResult<WithHeaders<Vec<Task>>> {
    let mut errors = Vec::new();
    let status =
        status.and_then(|s| check(&mut errors, s.parse("status"), "must be pending, in_progress or done"));
    let limit = limit.and_then(|l| {
        let value = l.parse("limit").and_then(|v| tasklane::types::validate_limit(Some(v)).map(|()| v));
        check(&mut errors, value, &format!("must be an integer from 1 to {}", limits::LIMIT_MAX))
    });
    let offset = offset.and_then(|o| {
        let value = o.parse("offset").and_then(|v: u64| {
            i64::try_from(v).map(|_| v).map_err(|_| FieldError::new("offset", "too large"))
        });
        check(&mut errors, value, "must be a non-negative integer")
    });
    let sort = sort.and_then(|s| check(&mut errors, s.parse("sort"), "must be a sort order"));
    let priority = priority.and_then(|p| check(&mut errors, p.parse("priority"), "must be a priority"));
    let time = "must be an RFC 3339 date-time with an offset, such as 2026-12-24T17:00:00Z";
    let due_before = due_before.and_then(|d| check(&mut errors, d.parse("due_before"), time));
    let due_after = due_after.and_then(|d| check(&mut errors, d.parse("due_after"), time));
    let q = q.and_then(|q| {
        let value = q.parse("q").and_then(|q: String| tasklane::types::validate_search(&q).map(|()| q));
        check(&mut errors, value, "must be a search text")
    });
    let labels: Vec<String> = label
        .iter()
        .filter_map(|l| {
            let label = tasklane::types::validate_label("label", l).map(str::to_owned);
            check(&mut errors, label, "must be a label")
        })
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let filter = TaskFilter {
        status,
        priority,
        labels,
        due_before,
        due_after,
        q,
        limit: limit.unwrap_or(limits::LIMIT_DEFAULT),
        offset: offset.unwrap_or(0),
        sort: sort.unwrap_or_default(),
    };
    let (tasks, total) = app.db.list_tasks(user.id, &filter).await?;
    let mut response = WithHeaders::new(tasks).header("X-Total-Count", total.to_string());
    if let Some(link) = link_header(&filter, total) {
        response = response.header("Link", link);
    }
    Ok(response)
}

/// The value of a query parameter, or its error (with `expected` spelled out) added to `errors`.
fn check<T>(errors: &mut Vec<FieldError>, value: Result<T, FieldError>, expected: &str) -> Option<T> {
    value.map_err(|e| errors.push(FieldError::new(e.field, format!("{expected} ({})", e.message)))).ok()
}

/// The RFC 8288 `Link` value for the pages around `filter`, if there are any.
fn link_header(filter: &TaskFilter, total: u64) -> Option<String> {
    let page = |offset: u64| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("limit", &filter.limit.to_string());
        query.append_pair("offset", &offset.to_string());
        query.append_pair("sort", filter.sort.as_str());
        if let Some(status) = filter.status {
            query.append_pair("status", status.as_str());
        }
        if let Some(priority) = filter.priority {
            query.append_pair("priority", priority.as_str());
        }
        for label in &filter.labels {
            query.append_pair("label", label);
        }
        let time = |at: &DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        if let Some(at) = &filter.due_before {
            query.append_pair("due_before", &time(at));
        }
        if let Some(at) = &filter.due_after {
            query.append_pair("due_after", &time(at));
        }
        if let Some(q) = &filter.q {
            query.append_pair("q", q);
        }
        format!("/tasks/?{}", query.finish())
    };
    let limit = u64::from(filter.limit);
    let mut links = Vec::new();
    if filter.offset.saturating_add(limit) < total {
        links.push(format!("<{}>; rel=\"next\"", page(filter.offset + limit)));
    }
    if filter.offset > 0 {
        // From past the end, `prev` is the last page that has tasks.
        let prev = filter.offset.min(total).saturating_sub(limit);
        links.push(format!("<{}>; rel=\"prev\"", page(prev)));
    }
    (!links.is_empty()).then(|| links.join(", "))
}

/// One task, with its `ETag`; 304 without a body when `If-None-Match` names it (or is `*`).
#[openapi(tag = "Tasks")]
#[get("/<id>")]
async fn get_one(
    app: &State<App>,
    user: AuthUser,
    id: i64,
    if_none_match: IfNoneMatch,
) -> ApiResult<TaskOrNotModified> {
    let task = app.db.get_task(user.id, id).await?.ok_or_else(|| not_found(id))?;
    let current = etag(&task);
    match if_none_match.0 {
        Some(tags) if tags.names(&current) => Ok(TaskOrNotModified::NotModified(current)),
        _ => Ok(TaskOrNotModified::Task(TaskAnswer::new(&task)?)),
    }
}

/// What a write that `If-Match` made conditional, and that changed nothing, answers: 404 for a
/// task that does not exist (412 for `*`, which asked for one that exists), else 412 with the
/// current ETag. Read after the write, only to word the answer: the check was the write's own.
async fn refused(app: &App, user: AuthUser, id: i64, if_match: &Option<Tags>) -> ApiError {
    match app.db.get_task(user.id, id).await {
        Ok(Some(task)) => ApiError::PreconditionFailed(Some(etag(&task))),
        Ok(None) if matches!(if_match, Some(Tags::Any)) => ApiError::PreconditionFailed(None),
        Ok(None) => not_found(id),
        Err(err) => err.into(),
    }
}

async fn apply_update(
    app: &App,
    user: AuthUser,
    id: i64,
    update: TaskUpdate,
    if_match: IfMatch,
) -> ApiResult<TaskAnswer> {
    let update = update.validate().map_err(ApiError::Validation)?;
    let versions = if_match.0.as_ref().and_then(|tags| tags.versions_of(id));
    let task = if update.is_empty() {
        // Nothing to change: `updated_at` and the version stay, the task is answered as it is
        // (if the precondition holds).
        app.db
            .get_task(user.id, id)
            .await?
            .filter(|task| versions.as_ref().is_none_or(|v| v.contains(&task.version)))
    } else if versions.as_ref().is_some_and(Vec::is_empty) {
        // The list names no version of this task: nothing can match.
        None
    } else {
        let task = app.db.update_task(user.id, id, &update, crate::store::now(), versions.as_deref()).await?;
        if task.is_some() {
            app.live.publish(user.id);
        }
        task
    };
    match task {
        Some(task) => TaskAnswer::new(&task),
        None if if_match.0.is_some() => Err(refused(app, user, id, &if_match.0).await),
        None => Err(not_found(id)),
    }
}

/// Update a task: the fields present change, the others stay.
///
/// `"description": null` and `"due_at": null` clear them; `labels` replaces the whole set.
/// `updated_at` moves and `version` goes up by one on every change. PUT and PATCH behave alike
/// (the service Tasklane replaces used PUT for partial updates). With `If-Match`, the task
/// changes only if one of the ETags listed is its current one (else 412 with the current
/// `ETag`): of concurrent writes carrying the same ETag, exactly one succeeds.
#[openapi(tag = "Tasks")]
#[put("/<id>", data = "<body>")]
async fn update(
    app: &State<App>,
    user: AuthUser,
    id: i64,
    if_match: IfMatch,
    body: JsonBody<TaskUpdate>,
) -> ApiResult<TaskAnswer> {
    apply_update(app, user, id, body.0, if_match).await
}

/// Update a task: the fields present change, the others stay (same as PUT, `If-Match` too).
#[openapi(tag = "Tasks")]
#[patch("/<id>", data = "<body>")]
async fn patch_one(
    app: &State<App>,
    user: AuthUser,
    id: i64,
    if_match: IfMatch,
    body: JsonBody<TaskUpdate>,
) -> ApiResult<TaskAnswer> {
    apply_update(app, user, id, body.0, if_match).await
}

/// Delete a task. Answers 204 with an empty body; with `If-Match`, only if one of the ETags
/// listed is the task's current one (else 412 with the current `ETag`).
#[openapi(tag = "Tasks")]
#[delete("/<id>")]
async fn delete_one(app: &State<App>, user: AuthUser, id: i64, if_match: IfMatch) -> ApiResult<NoContent> {
    let versions = if_match.0.as_ref().and_then(|tags| tags.versions_of(id));
    let deleted = match &versions {
        Some(versions) if versions.is_empty() => false,
        versions => app.db.delete_task(user.id, id, versions.as_deref()).await?,
    };
    match deleted {
        true => {
            app.live.publish(user.id);
            Ok(NoContent)
        }
        false if if_match.0.is_some() => Err(refused(app, user, id, &if_match.0).await),
        false => Err(not_found(id)),
    }
}

/// Up to `limit` of the user's changes after `since` (all current tasks without it); 410 when
/// `since` is older than the deletions remembered. The feed and the event stream both read here.
pub(crate) async fn read_feed(
    db: &dyn crate::store::Database,
    user_id: i64,
    since: Option<i64>,
    limit: u32,
) -> Result<crate::store::Feed, ApiError> {
    let feed = db.changes(user_id, since, limit).await?;
    if since.is_some_and(|since| since < feed.horizon) {
        return Err(ApiError::Gone(
            "this cursor is older than the deleted tasks remembered; sync again without `since`".into(),
        ));
    }
    Ok(feed)
}

/// The caller's changes: tasks created or changed, and tasks deleted, after the change the
/// cursor `since` marks; without it, every current task. Each task at most once, in its latest
/// state, in the order of their last change; follow `cursor` while `has_more`. A cursor older
/// than the tombstone retention is 410 (sync again without it); one that does not parse, or is
/// another user's, is 422. `limit`: 1 to 1000, default 500.
#[openapi(tag = "Tasks")]
#[get("/changes?<since>&<limit>")]
async fn changes(
    app: &State<App>,
    user: AuthUser,
    since: Option<QueryParam<String>>,
    limit: Option<QueryParam<u32>>,
) -> ApiResult<Json<ChangePage>> {
    let mut errors = Vec::new();
    let since = since.and_then(|s| {
        let cursor = s.parse("since").and_then(|s: String| Cursor::parse(&s, user.id));
        check(&mut errors, cursor, "must be a cursor this feed gave you")
    });
    let limit = limit.and_then(|l| {
        let value = l.parse("limit").and_then(|v: u32| {
            (1..=limits::CHANGES_LIMIT_MAX)
                .contains(&v)
                .then_some(v)
                .ok_or_else(|| FieldError::new("limit", "out of range"))
        });
        check(&mut errors, value, &format!("must be an integer from 1 to {}", limits::CHANGES_LIMIT_MAX))
    });
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let limit = limit.unwrap_or(limits::CHANGES_LIMIT_DEFAULT);
    // One more than asked: whether more follow.
    let feed = read_feed(app.db.as_ref(), user.id, since.map(|c| c.0), limit + 1).await?;
    let has_more = feed.changes.len() > limit as usize;
    let mut changes = feed.changes;
    changes.truncate(limit as usize);
    // After the last change answered; when nothing was, where the client was (or, for a full
    // sync, the count of changes read before the tasks, so none after it is missed).
    let last = changes.last().map(|(seq, _)| *seq);
    let cursor = match (last, since, feed.counter) {
        (Some(last), _, Some(counter)) if !has_more => last.max(counter),
        (Some(last), _, _) => last,
        (None, Some(since), _) => since.0,
        (None, None, counter) => counter.unwrap_or(0),
    };
    Ok(Json(ChangePage {
        changes: changes.into_iter().map(|(_, change)| change).collect(),
        cursor: Cursor(cursor).to_string(user.id),
        has_more,
    }))
}

/// A position in a user's change feed: after change number `.0`. Written `c<user>.<change>`, so
/// that a cursor of another user's is told apart; clients keep it as an opaque string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor(pub(crate) i64);

impl Cursor {
    pub(crate) fn parse(text: &str, user_id: i64) -> Result<Cursor, FieldError> {
        let bad = || FieldError::new("since", "not a cursor of this feed");
        let (user, change) = text.strip_prefix('c').and_then(|rest| rest.split_once('.')).ok_or_else(bad)?;
        let (user, change): (i64, i64) =
            (user.parse().map_err(|_| bad())?, change.parse().map_err(|_| bad())?);
        if user != user_id {
            return Err(FieldError::new("since", "another user's cursor"));
        }
        if change < 0 {
            return Err(bad());
        }
        Ok(Cursor(change))
    }

    pub(crate) fn to_string(self, user_id: i64) -> String {
        format!("c{user_id}.{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(offset: u64, limit: u32) -> TaskFilter {
        TaskFilter {
            status: Some(TaskStatus::Done),
            limit,
            offset,
            sort: TaskSort::Title,
            ..Default::default()
        }
    }

    #[test]
    fn links_point_at_the_neighbouring_pages() {
        assert_eq!(link_header(&filter(0, 10), 5), None);
        assert_eq!(
            link_header(&filter(0, 10), 25).unwrap(),
            "</tasks/?limit=10&offset=10&sort=title&status=done>; rel=\"next\""
        );
        assert_eq!(
            link_header(&filter(10, 10), 25).unwrap(),
            "</tasks/?limit=10&offset=20&sort=title&status=done>; rel=\"next\", \
             </tasks/?limit=10&offset=0&sort=title&status=done>; rel=\"prev\""
        );
        assert_eq!(
            link_header(&filter(100, 10), 25).unwrap(),
            "</tasks/?limit=10&offset=15&sort=title&status=done>; rel=\"prev\""
        );
        let searched = TaskFilter {
            labels: vec!["Home & garden".into(), "x".into()],
            q: Some("50% off".into()),
            due_after: "2026-12-24T17:00:00+01:00".parse().ok(),
            ..filter(0, 10)
        };
        assert_eq!(
            link_header(&searched, 25).unwrap(),
            "</tasks/?limit=10&offset=10&sort=title&status=done&label=Home+%26+garden&label=x\
             &due_after=2026-12-24T16%3A00%3A00Z&q=50%25+off>; rel=\"next\""
        );
    }
}
