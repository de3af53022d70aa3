//! The OpenAPI document's last touches, so that it is exactly as strict as the server.
//!
//! The schemas derived from the wire types know their shapes but not their rules (lengths,
//! patterns, which optional fields may be `null`), and rocket_okapi documents one error type's
//! statuses on every route. Here the rules are written into the schemas, from the same
//! constants the validation uses, and each operation keeps the error statuses it can answer.
//! Schemathesis (`scripts/schemathesis.sh`) holds the document to both directions: what it
//! allows must be accepted, what it forbids must be refused, and every status answered must be
//! documented.

use rocket::http::Method;
use rocket::response::content::RawJson;
use rocket::route::{Handler, Outcome, Route};
use rocket::{Data, Request};
use rocket_okapi::okapi::openapi3::OpenApi;
use serde_json::{json, Value};
use tasklane::types::limits;

/// What Rust's `str::trim` removes (`char::is_whitespace`, the Unicode `White_Space` property),
/// spelled out: `\s` means something else in each regex dialect a client may use.
const WHITESPACE: &str = r"\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

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
    ("post", "/tasks/", &[400, 401, 408, 413, 415, 422, 503]),
    ("get", "/tasks/{id}", &[401, 404, 422, 503]),
    ("put", "/tasks/{id}", &[400, 401, 404, 408, 413, 415, 422, 503]),
    ("patch", "/tasks/{id}", &[400, 401, 404, 408, 413, 415, 422, 503]),
    ("delete", "/tasks/{id}", &[401, 404, 422, 503]),
    ("get", "/health", &[]),
    ("get", "/ready", &[503]),
];

/// `GET /openapi.json`: the generated document with the rules and the per-operation statuses
/// applied. It is served as JSON text rather than through okapi's types, whose `f64` bounds
/// cannot carry `i64::MAX` exactly.
pub fn route(spec: &OpenApi) -> Result<Route, serde_json::Error> {
    let mut doc = serde_json::to_value(spec)?;
    refine_schemas(&mut doc);
    refine_operations(&mut doc);
    let json = serde_json::to_string_pretty(&doc)?;
    Ok(Route::new(Method::Get, "/openapi.json", Document(json)))
}

#[derive(Clone)]
struct Document(String);

#[rocket::async_trait]
impl Handler for Document {
    async fn handle<'r>(&self, req: &'r Request<'_>, _: Data<'r>) -> Outcome<'r> {
        Outcome::from(req, RawJson(self.0.clone()))
    }
}

fn refine_schemas(doc: &mut Value) {
    // A title is trimmed, then 1 to 200 characters: one non-whitespace character, or two with
    // at most 198 between them, and any whitespace around. No NUL anywhere (PostgreSQL).
    let title = format!(
        "^[{WHITESPACE}]*[^{WHITESPACE}\\u0000]([^\\u0000]{{0,{}}}[^{WHITESPACE}\\u0000])?[{WHITESPACE}]*$",
        limits::TITLE_MAX - 2
    );
    let title = json!({ "pattern": title });
    let description = json!({ "maxLength": limits::DESCRIPTION_MAX, "pattern": "^[^\\u0000]*$" });
    let schemas = &mut doc["components"]["schemas"];
    let rules = [
        (
            "Credentials",
            "username",
            json!({
                "minLength": limits::USERNAME_MIN,
                "maxLength": limits::USERNAME_MAX,
                "pattern": format!("^[A-Za-z0-9_.-]{{{},{}}}$", limits::USERNAME_MIN, limits::USERNAME_MAX),
            }),
        ),
        (
            "Credentials",
            "password",
            json!({ "minLength": limits::PASSWORD_MIN, "maxLength": limits::PASSWORD_MAX }),
        ),
        ("NewTask", "title", title.clone()),
        ("NewTask", "description", description.clone()),
        ("TaskUpdate", "title", title),
        ("TaskUpdate", "description", description),
    ];
    for (schema, property, rule) in rules {
        let Some(target) = schemas[schema]["properties"].get_mut(property).and_then(Value::as_object_mut)
        else {
            continue;
        };
        for (key, value) in rule.as_object().into_iter().flatten() {
            target.insert(key.clone(), value.clone());
        }
    }
    // A task's description is always sent, as null when there is none.
    if let Some(required) = schemas["Task"]["required"].as_array_mut() {
        if !required.iter().any(|r| r == "description") {
            required.push(json!("description"));
        }
    }
    // An update's title and status may be absent but not null (only the description may be
    // cleared); the derived schema lets every `Option` be null.
    for property in ["title", "status"] {
        if let Some(target) =
            schemas["TaskUpdate"]["properties"].get_mut(property).and_then(Value::as_object_mut)
        {
            target.remove("nullable");
        }
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
                }
            }
            if method == "get" && path == "/tasks/" {
                refine_list_parameters(operation);
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
        "429" | "503" => common.push(("Retry-After", "Seconds to wait before trying again", "integer")),
        _ => {}
    }
    let Some(response) = response.as_object_mut() else { return };
    let headers = response.entry("headers").or_insert_with(|| json!({}));
    for (name, description, kind) in common {
        headers[name] = json!({ "description": description, "schema": { "type": kind } });
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
