//! `/tasks/*`: a user's tasks. Every query carries the caller's id, so another user's task is
//! simply not found (404, never 403).

use chrono::{DateTime, Utc};
use rocket::response::status::{Created, NoContent};
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, put, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::openapi;
use rocket_okapi::settings::OpenApiSettings;
use tasklane::types::{limits, FieldError, NewTask, Priority, Task, TaskSort, TaskStatus, TaskUpdate};

use crate::app::App;
use crate::auth::guard::AuthUser;
use crate::body::{JsonBody, QueryParam};
use crate::error::{ApiError, ApiResult};
use crate::responders::{DocumentedHeaders, WithHeaders};
use crate::store::TaskFilter;

/// The routes of this area and their OpenAPI document.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    rocket_okapi::openapi_get_routes_spec![settings: create, list, get_one, update, patch_one, delete_one]
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
/// defaults to `pending`. Answers 201 with the task and its `Location`.
#[openapi(tag = "Tasks")]
#[post("/", data = "<body>")]
async fn create(app: &State<App>, user: AuthUser, body: JsonBody<NewTask>) -> ApiResult<Created<Json<Task>>> {
    let task = body.0.validate().map_err(ApiError::Validation)?;
    let task = app.db.create_task(user.id, &task, crate::store::now()).await?;
    Ok(Created::new(format!("/tasks/{}", task.id)).body(Json(task)))
}

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

/// One task.
#[openapi(tag = "Tasks")]
#[get("/<id>")]
async fn get_one(app: &State<App>, user: AuthUser, id: i64) -> ApiResult<Json<Task>> {
    app.db.get_task(user.id, id).await?.map(Json).ok_or_else(|| not_found(id))
}

async fn apply_update(app: &App, user: AuthUser, id: i64, update: TaskUpdate) -> ApiResult<Json<Task>> {
    let update = update.validate().map_err(ApiError::Validation)?;
    let store = &app.db;
    let task = if update.is_empty() {
        // Nothing to change: `updated_at` stays, the task is answered as it is.
        store.get_task(user.id, id).await?
    } else {
        store.update_task(user.id, id, &update, crate::store::now()).await?
    };
    task.map(Json).ok_or_else(|| not_found(id))
}

/// Update a task: the fields present change, the others stay.
///
/// `"description": null` clears the description. `updated_at` moves on every change. PUT and
/// PATCH behave alike (the service Tasklane replaces used PUT for partial updates).
#[openapi(tag = "Tasks")]
#[put("/<id>", data = "<body>")]
async fn update(
    app: &State<App>,
    user: AuthUser,
    id: i64,
    body: JsonBody<TaskUpdate>,
) -> ApiResult<Json<Task>> {
    apply_update(app, user, id, body.0).await
}

/// Update a task: the fields present change, the others stay (same as PUT).
#[openapi(tag = "Tasks")]
#[patch("/<id>", data = "<body>")]
async fn patch_one(
    app: &State<App>,
    user: AuthUser,
    id: i64,
    body: JsonBody<TaskUpdate>,
) -> ApiResult<Json<Task>> {
    apply_update(app, user, id, body.0).await
}

/// Delete a task. Answers 204 with an empty body.
#[openapi(tag = "Tasks")]
#[delete("/<id>")]
async fn delete_one(app: &State<App>, user: AuthUser, id: i64) -> ApiResult<NoContent> {
    if app.db.delete_task(user.id, id).await? {
        Ok(NoContent)
    } else {
        Err(not_found(id))
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
