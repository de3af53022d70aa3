//! What Schemathesis (`scripts/schemathesis.sh`) found, pinned down: the OpenAPI document is as
//! strict as the server, well-formed bodies of the wrong shape are 422, repeated query
//! parameters are refused, and methods Rocket does not know are 405 like any wrong method.

mod common;

use std::collections::BTreeSet;

use common::{Backend, TestApp, TestServer};
use serde_json::{json, Value};

async fn sqlite_app() -> TestApp {
    TestApp::start(Backend::Sqlite).await.expect("SQLite is always available")
}

#[tokio::test]
async fn wrong_types_in_well_formed_json_are_422_naming_the_field() {
    let app = sqlite_app().await;
    let t = app.register("shaper").await.access;
    let id = app.create_task(&t, json!({"title": "shape me"})).await["id"].as_i64().unwrap();
    let task = format!("/tasks/{id}");
    // serde_json reports a non-string where an enum belongs as a syntax error, and reads an
    // enum from a one-key object; these are all well-formed JSON of the wrong shape, so they
    // are 422 and name the field.
    for (method, path, body, field) in [
        ("PATCH", task.as_str(), json!({"status": null}), "status"),
        ("PATCH", task.as_str(), json!({"status": 5}), "status"),
        ("PUT", task.as_str(), json!({"status": ["done"]}), "status"),
        ("PUT", task.as_str(), json!({"title": null}), "title"),
        ("POST", "/tasks/", json!({"title": "x", "status": 5}), "status"),
        ("POST", "/tasks/", json!({"title": "x", "status": {"done": null}}), "status"),
        // serde reads structs from arrays too; a body is an object.
        ("POST", "/tasks/", json!(["x"]), "body"),
        ("PATCH", task.as_str(), json!([]), "body"),
    ] {
        let res = app.send(method, path, Some(&t), Some(body.clone())).await;
        let problem = res.problem(422);
        assert_eq!(problem["errors"][0]["field"], field, "{method} {path} {body}: {problem}");
    }
    // Bad syntax stays 400.
    for raw in [&b"{\"title\": "[..], b"{\"title\": nul}", b"{'title': 'x'}"] {
        let res = app.send_raw("POST", "/tasks/", Some(&t), Some("application/json"), raw.to_vec()).await;
        assert!(res.problem(400)["detail"].as_str().unwrap().starts_with("malformed JSON"));
    }
    // Nothing was changed by the refused updates.
    assert_eq!(app.get(&task, &t).await.json()["status"], "pending");
    app.finish().await;
}

#[tokio::test]
async fn a_repeated_query_parameter_is_422_naming_it() {
    let app = sqlite_app().await;
    let t = app.register("repeater").await.access;
    for (query, field) in [
        ("status=done&status=done", "status"),
        ("status=null&status=null", "status"),
        ("limit=1&limit=2", "limit"),
        ("offset=0&offset=0", "offset"),
        ("sort=title&sort=-title", "sort"),
    ] {
        let res = app.get(&format!("/tasks/?{query}"), &t).await;
        let problem = res.problem(422);
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains("more than once"), "{problem}");
    }
    assert_eq!(app.get("/tasks/?status=done&limit=5", &t).await.status, 200);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_rocket_does_not_know_are_405_with_allow_and_the_usual_headers() {
    let server = TestServer::start(Backend::Sqlite).await.unwrap();
    let http = reqwest::Client::new();
    let query = reqwest::Method::from_bytes(b"QUERY").unwrap();
    for (path, allow) in [
        ("/tasks/", "GET, HEAD, POST"),
        ("/tasks/7", "DELETE, GET, HEAD, PATCH, PUT"),
        ("/health", "GET, HEAD"),
    ] {
        let res = http
            .request(query.clone(), server.url(path))
            .header("X-Request-Id", "probe-1")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{path}");
        let headers = res.headers().clone();
        assert_eq!(headers["allow"], allow, "{path}");
        assert_eq!(headers["content-type"], "application/problem+json");
        // Rocket hands such a request to the catcher without running the fairings; the
        // catcher adds what every response carries.
        assert_eq!(headers["x-request-id"], "probe-1");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["status"], 405);
        assert_eq!(problem["type"], "about:blank");
    }
    // On a path the app does not serve there is no method to suggest: 404, as for a known
    // method there (docs/API.md: unknown route).
    let res = http
        .request(query, server.url("/no/such/path"))
        .header("X-Request-Id", "probe-3")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.headers()["x-request-id"], "probe-3");
    assert_eq!(res.headers().get("allow"), None);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(
        (problem["status"].as_u64(), problem["title"].as_str()),
        (Some(404), Some("Not Found")),
        "{problem}"
    );
    // Known methods are unaffected: still 405 through the router, with the client's request id.
    let res = http.delete(server.url("/tasks/")).header("X-Request-Id", "probe-2").send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["x-request-id"], "probe-2");
    server.stop().await;
}

fn property<'a>(spec: &'a Value, schema: &str, name: &str) -> &'a Value {
    &spec["components"]["schemas"][schema]["properties"][name]
}

#[tokio::test]
async fn the_openapi_document_states_the_rules_the_server_enforces() {
    let app = sqlite_app().await;
    let spec = app.send("GET", "/openapi.json", None, None).await.json();

    let username = property(&spec, "Credentials", "username");
    assert_eq!(username["pattern"], "^[A-Za-z0-9_.-]{3,64}$");
    assert_eq!((username["minLength"].as_u64(), username["maxLength"].as_u64()), (Some(3), Some(64)));
    let password = property(&spec, "Credentials", "password");
    assert_eq!((password["minLength"].as_u64(), password["maxLength"].as_u64()), (Some(8), Some(128)));
    for schema in ["NewTask", "TaskUpdate"] {
        let title = property(&spec, schema, "title");
        assert!(title["pattern"].as_str().unwrap().contains("{0,198}"), "{schema}: {title}");
        assert!(title.get("maxLength").is_none(), "a padded title is trimmed, so longer is fine");
        let description = property(&spec, schema, "description");
        assert_eq!(description["maxLength"], 10_000, "{schema}");
        assert_eq!(description["nullable"], true, "{schema}: null clears or leaves it empty");
    }
    // An update may leave out the title and status, not null them.
    assert!(property(&spec, "TaskUpdate", "title").get("nullable").is_none());
    assert!(property(&spec, "TaskUpdate", "status").get("nullable").is_none());
    // What the document says a title may be, the server takes (trimmed), and the reverse.
    let t = app.register("ruler").await.access;
    let padded = format!("\u{3000} {}\t\u{85}", "é".repeat(200));
    assert_eq!(app.create_task(&t, json!({"title": padded})).await["title"], "é".repeat(200));
    for title in [" \u{2028} ", "a\u{0}b"] {
        app.post("/tasks/", Some(&t), json!({"title": title})).await.problem(422);
    }

    let list = &spec["paths"]["/tasks/"]["get"]["parameters"];
    let param = |name: &str| {
        list.as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name}"))
            ["schema"]
            .clone()
    };
    let limit = param("limit");
    assert_eq!((limit["minimum"].as_u64(), limit["maximum"].as_u64()), (Some(1), Some(100)));
    let offset = param("offset");
    // Exactly i64::MAX: a float would round it up to one past what the server accepts.
    assert_eq!(offset["maximum"].as_i64(), Some(i64::MAX), "{offset}");
    assert_eq!(app.get(&format!("/tasks/?offset={}", i64::MAX), &t).await.status, 200);
    app.get(&format!("/tasks/?offset={}", i64::MAX as u64 + 1), &t).await.problem(422);
    for name in ["status", "limit", "offset", "sort"] {
        assert!(param(name).get("nullable").is_none(), "{name}: absent is the default, never null");
    }
    // A task always carries its description (null when there is none), so the schema requires it.
    let created = app.post("/tasks/", Some(&t), json!({"title": "no description"})).await;
    assert_eq!(created.json()["description"], Value::Null);
    assert!(created.json().as_object().unwrap().contains_key("description"));
    let task_required = spec["components"]["schemas"]["Task"]["required"].as_array().unwrap();
    assert!(task_required.contains(&json!("description")), "{task_required:?}");
    // One TaskStatus schema, not a copy per use.
    assert!(spec["components"]["schemas"].get("TaskStatus2").is_none());

    // Each operation documents the error statuses it can answer, and only those.
    let mut operations = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let errors: Vec<u16> = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|code| code.parse().unwrap())
                .filter(|code| *code >= 400)
                .collect();
            let expected = tasklane_server::openapi::ERROR_STATUSES
                .iter()
                .find(|(m, p, _)| m == method && p == path)
                .unwrap_or_else(|| panic!("{method} {path} is not in openapi::ERROR_STATUSES"))
                .2;
            assert_eq!(errors, expected, "{method} {path}");
            // A route that reads a body answers a late (408), large (413) or non-JSON (415) one.
            if operation.get("requestBody").is_some() {
                for code in [408, 413, 415] {
                    assert!(errors.contains(&code), "{method} {path} does not document {code}");
                }
            }
            for (code, response) in operation["responses"].as_object().unwrap() {
                let headers = &response["headers"];
                assert!(headers["X-Request-Id"].is_object(), "{method} {path} {code}: {headers}");
                match code.as_str() {
                    "401" => assert!(headers["WWW-Authenticate"].is_object(), "{method} {path}"),
                    "429" | "503" => assert!(headers["Retry-After"].is_object(), "{method} {path} {code}"),
                    _ => {}
                }
            }
            for code in &errors {
                let content = &operation["responses"][code.to_string()]["content"];
                assert!(content["application/problem+json"].is_object(), "{method} {path} {code}");
            }
            operations.insert((method.clone(), path.clone()));
        }
    }
    assert_eq!(
        operations.len(),
        tasklane_server::openapi::ERROR_STATUSES.len(),
        "the table names no stale operation"
    );
    app.finish().await;
}

/// The contract in `docs/API.md` and the OpenAPI document name the same operations.
#[tokio::test]
async fn the_written_contract_and_the_openapi_document_agree_on_the_routes() {
    let app = sqlite_app().await;
    let spec = app.send("GET", "/openapi.json", None, None).await.json();
    let documented: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/API.md")).unwrap();
    // Table rows such as "| GET | `/tasks/{id}` | ...".
    let written: BTreeSet<(String, String)> = text
        .lines()
        .filter_map(|line| {
            let mut cells = line.split('|').map(str::trim).skip(1);
            let method = cells.next()?;
            let path = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            method.chars().all(|c| c.is_ascii_uppercase()).then(|| (method.to_owned(), path.to_owned()))
        })
        .filter(|(method, _)| !method.is_empty())
        .collect();
    // The document and its viewer are not in the document itself.
    let about_itself =
        [("GET", "/openapi.json"), ("GET", "/docs")].map(|(m, p)| (m.to_owned(), p.to_owned()));
    let written: BTreeSet<_> = written.into_iter().filter(|op| !about_itself.contains(op)).collect();
    assert_eq!(written, documented);
    app.finish().await;
}
