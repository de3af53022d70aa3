//! The OpenAPI document at `/openapi.json` and Swagger UI at `/docs`.
//!
//! The schemas come from the wire types, their rules (lengths, patterns) from the `schemars`
//! attributes beside the validation in `tasklane::types`. What cannot be derived is added
//! here: the error statuses each operation can answer (rocket_okapi documents one error
//! type's statuses on every route), the headers every answer carries, and the bounds of the
//! listing's query parameters. Schemathesis (`scripts/schemathesis.sh`) holds the document to
//! both directions: what it allows must be accepted, what it forbids must be refused, and
//! every status answered must be documented.

use rocket::http::{ContentType, Method};
use rocket::response::content::RawJson;
use rocket::response::Redirect;
use rocket::route::{Handler, Outcome, Route};
use rocket::{get, Data, Request};
use rocket_okapi::okapi::openapi3::{Info, OpenApi};
use rocket_okapi::swagger_ui::{make_swagger_ui, SwaggerUIConfig};
use serde_json::{json, Value};
use tasklane::types::limits;

/// The error statuses each operation can answer (besides 405 for a method it does not have,
/// and 500, which is a bug). Registered in `build`; a test checks that the document and this
/// table agree.
pub const ERROR_STATUSES: &[(&str, &str, &[u16])] = &[
    ("post", "/auth/register", &[400, 408, 409, 413, 415, 422, 429, 503]),
    ("post", "/auth/login", &[400, 401, 408, 413, 415, 422, 429, 503]),
    ("post", "/auth/refresh", &[400, 401, 408, 413, 415, 422, 429, 503]),
    ("post", "/auth/logout", &[400, 408, 413, 415, 422, 503]),
    ("get", "/auth/me", &[401, 503]),
    ("get", "/tasks/", &[401, 422, 503]),
    ("post", "/tasks/", &[400, 401, 408, 409, 413, 415, 422, 503]),
    ("get", "/tasks/changes", &[401, 410, 422, 503]),
    ("get", "/tasks/events", &[401, 410, 422, 429, 503]),
    ("get", "/tasks/{id}", &[400, 401, 404, 422, 503]),
    ("put", "/tasks/{id}", &[400, 401, 404, 408, 412, 413, 415, 422, 503]),
    ("patch", "/tasks/{id}", &[400, 401, 404, 408, 412, 413, 415, 422, 503]),
    ("delete", "/tasks/{id}", &[400, 401, 404, 412, 422, 503]),
    ("get", "/health", &[]),
    ("get", "/ready", &[503]),
];

/// `GET /openapi.json`: the areas' documents merged, with what cannot be derived added. It is
/// served as JSON text rather than through okapi's types, whose `f64` bounds cannot carry
/// `i64::MAX` exactly.
pub fn document(areas: &[(&str, OpenApi)]) -> Result<Route, String> {
    let mut spec =
        rocket_okapi::okapi::merge::marge_spec_list(areas).map_err(|e| format!("OpenAPI merge: {e}"))?;
    spec.info = Info {
        title: "Tasklane API".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        description: Some(
            "Tasks for many users, behind bearer tokens. Errors are `application/problem+json`. \
             Sign in with /auth/login (or /auth/register), then press Authorize and paste the \
             `access_token`."
                .to_owned(),
        ),
        ..Default::default()
    };
    let mut doc = serde_json::to_value(&spec).map_err(|e| e.to_string())?;
    refine_operations(&mut doc);
    // A task always carries every field, its nulls included; schemars calls an `Option` field
    // optional, and nullable only when it is not also required.
    let task = &mut doc["components"]["schemas"]["Task"];
    for field in ["description", "due_at", "completed_at"] {
        task["properties"][field]["nullable"] = json!(true);
    }
    if let Some(required) = task["required"].as_array_mut() {
        for field in ["description", "due_at", "priority", "labels", "completed_at", "version"] {
            if !required.iter().any(|r| r == field) {
                required.push(json!(field));
            }
        }
    }
    let json = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    Ok(Route::new(Method::Get, "/openapi.json", Document(json)))
}

/// Swagger UI's page, as rocket_okapi ships it less the links to favicons it does not ship.
const SWAGGER_INDEX: &str = r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>Tasklane API</title>
    <link rel="stylesheet" type="text/css" href="./swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="index.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./swagger-ui-bundle.js" charset="UTF-8"> </script>
    <script src="./swagger-ui-standalone-preset.js" charset="UTF-8"> </script>
    <script src="./swagger-initializer.js" charset="UTF-8"> </script>
  </body>
</html>
"#;

/// Swagger UI's routes, to mount at `/docs`: rocket_okapi's assets, with the page above. Its
/// own `/` redirects relative to `/docs`, which lands outside it; [`docs_index`] is absolute.
pub fn swagger_ui() -> Vec<Route> {
    let config = SwaggerUIConfig { url: "/openapi.json".to_owned(), ..Default::default() };
    let mut routes: Vec<Route> = make_swagger_ui(&config)
        .into()
        .into_iter()
        .filter(|route| !matches!(route.uri.path(), "/" | "/index.html"))
        .collect();
    routes.push(Route::new(Method::Get, "/index.html", Page(SWAGGER_INDEX)));
    routes
}

/// `GET /docs`: to Swagger UI's page.
#[get("/docs")]
pub fn docs_index() -> Redirect {
    Redirect::to("/docs/index.html")
}

#[derive(Clone)]
struct Page(&'static str);

#[rocket::async_trait]
impl Handler for Page {
    async fn handle<'r>(&self, req: &'r Request<'_>, _: Data<'r>) -> Outcome<'r> {
        Outcome::from(req, (ContentType::HTML, self.0))
    }
}

#[derive(Clone)]
struct Document(String);

#[rocket::async_trait]
impl Handler for Document {
    async fn handle<'r>(&self, req: &'r Request<'_>, _: Data<'r>) -> Outcome<'r> {
        Outcome::from(req, RawJson(self.0.clone()))
    }
}

fn refine_operations(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, operation) in item.iter_mut() {
            let Some((_, _, statuses)) = ERROR_STATUSES.iter().find(|(m, p, _)| m == method && p == path)
            else {
                continue;
            };
            if let Some(responses) = operation["responses"].as_object_mut() {
                responses.retain(|code, _| {
                    code.parse::<u16>().is_ok_and(|code| code < 400 || statuses.contains(&code))
                });
                for (code, response) in responses.iter_mut() {
                    document_common_headers(code, response);
                    if code == "201" {
                        response["headers"]["Location"] = json!({ "description": "URL of what was created", "schema": { "type": "string" } });
                    }
                }
            }
            if method == "get" && path == "/tasks/" {
                refine_list_parameters(operation);
            }
            if method == "get" && path == "/tasks/changes" {
                refine_feed_parameters(operation);
            }
            if method == "get" && path == "/tasks/events" {
                refine_feed_parameters(operation);
                operation["responses"]["200"]["description"] = json!(
                    "Server-Sent Events: `event: change`, `id:` the feed's cursor after the change, `data:` \
                     the change object (as in `GET /tasks/changes`); `: keep-alive` comments every 15 s"
                );
                operation["responses"]["200"]["content"] =
                    json!({ "text/event-stream": { "schema": { "type": "string" } } });
            }
            if method == "post" && path == "/tasks/" {
                if let Some(created) = operation["responses"].get_mut("201") {
                    created["headers"]["Idempotent-Replayed"] = json!({
                        "description": "`true` when this answers again a request made before with the same Idempotency-Key",
                        "schema": { "type": "string", "enum": ["true"] }
                    });
                }
            }
        }
    }
}

/// The headers the server sends with every answer of a status, whichever route gives it.
fn document_common_headers(code: &str, response: &mut Value) {
    let mut common = vec![(
        "X-Request-Id",
        "The request's id: the client's own `X-Request-Id` if it sent a usable one, else a new one",
        "string",
    )];
    match code {
        "401" => common.push((
            "WWW-Authenticate",
            "`Bearer` (why the token was refused is in the problem's `detail`)",
            "string",
        )),
        "409" | "429" | "503" => {
            common.push(("Retry-After", "Seconds to wait before trying again", "integer"))
        }
        "412" => common.push(("ETag", "The task's current ETag", "string")),
        _ => {}
    }
    let Some(response) = response.as_object_mut() else { return };
    let headers = response.entry("headers").or_insert_with(|| json!({}));
    for (name, description, kind) in common {
        headers[name] = json!({ "description": description, "schema": { "type": kind } });
    }
}

/// The change feed's query parameters: optional, `limit` bounded.
fn refine_feed_parameters(operation: &mut Value) {
    let Some(parameters) = operation["parameters"].as_array_mut() else { return };
    for parameter in parameters {
        let name = parameter["name"].as_str().unwrap_or_default().to_owned();
        let Some(schema) = parameter["schema"].as_object_mut() else { continue };
        schema.remove("nullable");
        if name == "limit" {
            schema.insert("format".to_owned(), json!("int32"));
            schema.insert("minimum".to_owned(), json!(1));
            schema.insert("maximum".to_owned(), json!(limits::CHANGES_LIMIT_MAX));
            schema.insert("default".to_owned(), json!(limits::CHANGES_LIMIT_DEFAULT));
        }
        if name == "since" {
            schema.insert("pattern".to_owned(), json!(r"^c[0-9]+\.[0-9]+$"));
        }
    }
}

/// The listing's query parameters: optional (absent is the default, never `null`), with the
/// bounds the handler checks.
fn refine_list_parameters(operation: &mut Value) {
    let Some(parameters) = operation["parameters"].as_array_mut() else { return };
    for parameter in parameters {
        let name = parameter["name"].as_str().unwrap_or_default().to_owned();
        let Some(schema) = parameter["schema"].as_object_mut() else { continue };
        schema.remove("nullable");
        match name.as_str() {
            "limit" => {
                schema.insert("format".to_owned(), json!("int32"));
                schema.insert("minimum".to_owned(), json!(1));
                schema.insert("maximum".to_owned(), json!(limits::LIMIT_MAX));
                schema.insert("default".to_owned(), json!(limits::LIMIT_DEFAULT));
            }
            "q" => {
                schema.insert("minLength".to_owned(), json!(limits::SEARCH_MIN));
                schema.insert("maxLength".to_owned(), json!(limits::SEARCH_MAX));
            }
            "label" => {
                // Repeatable and optional (rocket_okapi calls a list parameter required).
                parameter["required"] = json!(false);
                parameter["explode"] = json!(true);
                parameter["schema"]["items"] = json!({ "$ref": "#/components/schemas/Label" });
            }
            "offset" => {
                // Stored offsets are signed 64-bit; exact in JSON, where a float would round up.
                schema.insert("format".to_owned(), json!("int64"));
                schema.insert("minimum".to_owned(), json!(0));
                schema.insert("maximum".to_owned(), json!(i64::MAX));
                schema.insert("default".to_owned(), json!(0));
            }
            _ => {}
        }
    }
}
