//! `/tasks/*`: a user's tasks. Every query carries the caller's id, so another user's task is
//! simply not found (404, never 403).

use rocket::response::status::{Created, NoContent};
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, put, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::openapi;
use rocket_okapi::settings::OpenApiSettings;
use tasklane::types::{limits, FieldError, NewTask, Task, TaskSort, TaskStatus, TaskUpdate};

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
/// `status` filters; `limit` (1 to 100, default 50) and `offset` (default 0) page; `sort` is
/// one of `created_at`, `-created_at` (default), `updated_at`, `-updated_at`, `title`, `-title`,
/// ties broken by id in the same direction. The body is a JSON array; `X-Total-Count` has the
/// number of matching tasks and `Link` the `next` / `prev` pages.
#[openapi(tag = "Tasks")]
#[get("/?<status>&<limit>&<offset>&<sort>")]
async fn list(
    app: &State<App>,
    user: AuthUser,
    status: Option<QueryParam<TaskStatus>>,
    limit: Option<QueryParam<u32>>,
    offset: Option<QueryParam<u64>>,
    sort: Option<QueryParam<TaskSort>>,
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
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let filter = TaskFilter {
        status,
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
        let mut query = format!("limit={}&offset={offset}&sort={}", filter.limit, filter.sort);
        if let Some(status) = filter.status {
            query.push_str(&format!("&status={status}"));
        }
        format!("/tasks/?{query}")
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
        TaskFilter { status: Some(TaskStatus::Done), limit, offset, sort: TaskSort::Title }
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
    }
}
