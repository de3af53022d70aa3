//! Offline-safe clients (docs/API.md, version 2): conditional requests, idempotent creation and
//! the change feed, through Rocket's local client on every backend, and over real sockets where
//! concurrency is the point.

mod common;

use std::collections::BTreeMap;

use common::{scratch_config, Backend, Resp, TestApp, TestServer};
use futures::future::join_all;
use serde_json::{json, Value};

backend_tests![
    every_single_task_answer_has_its_etag,
    if_none_match_answers_304_when_current,
    if_match_guards_updates_and_deletes,
    malformed_precondition_headers_are_400,
    an_idempotency_key_replays_the_first_answer,
    idempotency_key_rules,
    the_feed_gives_upserts_and_deletes_after_a_cursor,
    the_feed_pages_with_has_more_and_each_task_once,
    the_feed_refuses_bad_cursors_and_pruned_ones,
];

async fn user(app: &TestApp, name: &str) -> String {
    app.register(name).await.access
}

async fn with_headers(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Resp {
    let mut req = app.client.req(method.parse().unwrap(), path.to_owned());
    req = req.header(rocket::http::Header::new("Authorization", format!("Bearer {token}")));
    for (name, value) in headers {
        req = req.header(rocket::http::Header::new(name.to_string(), value.to_string()));
    }
    if let Some(body) = body {
        req = req.header(rocket::http::ContentType::JSON).body(body.to_string());
    }
    let res = req.dispatch().await;
    let status = res.status().code;
    let headers = res.headers().iter().map(|h| (h.name().to_string(), h.value().to_string())).collect();
    let text = res.into_string().await.unwrap_or_default();
    Resp { status, headers, text }
}

fn etag_of(task: &Value) -> String {
    format!("\"{}-{}\"", task["id"], task["version"])
}

async fn every_single_task_answer_has_its_etag(app: &TestApp) {
    let t = user(app, "tagged").await;
    let created = app.post("/tasks/", Some(&t), json!({"title": "x"})).await;
    let task = created.json();
    assert_eq!(created.header("etag"), Some(etag_of(&task).as_str()));
    let path = format!("/tasks/{}", task["id"]);
    assert_eq!(app.get(&path, &t).await.header("etag"), Some(etag_of(&task).as_str()));
    for method in ["PUT", "PATCH"] {
        let res = app.send(method, &path, Some(&t), Some(json!({"title": method}))).await;
        assert_eq!(res.header("etag").map(str::to_owned), Some(etag_of(&res.json())), "{method}");
    }
    assert_eq!(etag_of(&app.get(&path, &t).await.json()), format!("\"{}-3\"", task["id"]));
}

async fn if_none_match_answers_304_when_current(app: &TestApp) {
    let t = user(app, "cached").await;
    let task = app.create_task(&t, json!({"title": "x"})).await;
    let path = format!("/tasks/{}", task["id"]);
    let current = etag_of(&task);
    for value in [current.clone(), "*".to_owned(), format!("\"1-999\", W/{current}")] {
        let res = with_headers(app, "GET", &path, &t, &[("If-None-Match", &value)], None).await;
        assert_eq!(res.status, 304, "{value}");
        assert_eq!(res.text, "", "no body");
        assert_eq!(res.header("etag"), Some(current.as_str()));
    }
    let res = with_headers(app, "GET", &path, &t, &[("If-None-Match", "\"stale\"")], None).await;
    assert_eq!(res.status, 200);
    // Another user's task is not found, whatever the header says.
    let other = user(app, "cached2").await;
    with_headers(app, "GET", &path, &other, &[("If-None-Match", "*")], None).await.problem(404);
}

async fn if_match_guards_updates_and_deletes(app: &TestApp) {
    let t = user(app, "guarded").await;
    let task = app.create_task(&t, json!({"title": "v1"})).await;
    let path = format!("/tasks/{}", task["id"]);
    let v1 = etag_of(&task);

    let res = with_headers(app, "PATCH", &path, &t, &[("If-Match", &v1)], Some(json!({"title": "v2"}))).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let v2 = res.header("etag").unwrap().to_owned();
    // The stale ETag: 412, nothing changes, and the current ETag comes back.
    for method in ["PUT", "PATCH"] {
        let res =
            with_headers(app, method, &path, &t, &[("If-Match", &v1)], Some(json!({"title": "lost"}))).await;
        res.problem(412);
        assert_eq!(res.header("etag"), Some(v2.as_str()), "{method}");
    }
    let res = with_headers(app, "DELETE", &path, &t, &[("If-Match", &v1)], None).await;
    res.problem(412);
    assert_eq!(res.header("etag"), Some(v2.as_str()));
    // A weak tag never matches If-Match; a list matches by any of its tags.
    with_headers(app, "PATCH", &path, &t, &[("If-Match", &format!("W/{v2}"))], Some(json!({"title": "x"})))
        .await
        .problem(412);
    let listed = format!("\"0-1\", {v1}, {v2}");
    let res =
        with_headers(app, "PATCH", &path, &t, &[("If-Match", &listed)], Some(json!({"title": "v3"}))).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let current = app.get(&path, &t).await.json();
    assert_eq!((current["title"].clone(), current["version"].clone()), (json!("v3"), json!(3)));
    // An empty update with a stale tag is refused too; with the current one, answered as is.
    with_headers(app, "PATCH", &path, &t, &[("If-Match", &v2)], Some(json!({}))).await.problem(412);
    let same =
        with_headers(app, "PATCH", &path, &t, &[("If-Match", &etag_of(&current))], Some(json!({}))).await;
    assert_eq!((same.status, same.json()["version"].clone()), (200, json!(3)));

    // `*`: any version of a task that exists; for one that does not, 412 without an ETag.
    let res =
        with_headers(app, "PUT", &path, &t, &[("If-Match", "*")], Some(json!({"status": "done"}))).await;
    assert_eq!(res.status, 200);
    let missing = "/tasks/999999999";
    let res =
        with_headers(app, "PATCH", missing, &t, &[("If-Match", "*")], Some(json!({"title": "x"}))).await;
    res.problem(412);
    assert_eq!(res.header("etag"), None);
    with_headers(app, "PATCH", missing, &t, &[("If-Match", "\"999999999-1\"")], Some(json!({"title": "x"})))
        .await
        .problem(404);
    // Another user's task: not found (412 for `*`), and its ETag never shown.
    let other = user(app, "guarded2").await;
    let res = with_headers(app, "DELETE", &path, &other, &[("If-Match", "*")], None).await;
    res.problem(412);
    assert_eq!(res.header("etag"), None);
    with_headers(app, "DELETE", &path, &other, &[("If-Match", &v2)], None).await.problem(404);
    // The right tag deletes.
    let now = etag_of(&app.get(&path, &t).await.json());
    assert_eq!(with_headers(app, "DELETE", &path, &t, &[("If-Match", &now)], None).await.status, 204);
    app.get(&path, &t).await.problem(404);
}

async fn malformed_precondition_headers_are_400(app: &TestApp) {
    let t = user(app, "malformed").await;
    let task = app.create_task(&t, json!({"title": "x"})).await;
    let path = format!("/tasks/{}", task["id"]);
    for value in ["7-1", "\"unterminated", "W/x", "\"a\" \"b\"", ","] {
        with_headers(app, "GET", &path, &t, &[("If-None-Match", value)], None).await.problem(400);
        with_headers(app, "PATCH", &path, &t, &[("If-Match", value)], Some(json!({"title": "y"})))
            .await
            .problem(400);
        with_headers(app, "DELETE", &path, &t, &[("If-Match", value)], None).await.problem(400);
    }
    assert_eq!(app.get(&path, &t).await.json()["version"], 1, "nothing changed");
}

/// A key of this test run's own: the test databases are fresh, but Redis, where keys live when
/// it is configured, is shared by every run, and user ids start again at 1.
fn unique(key: &str) -> String {
    format!("{key}-{}", uuid::Uuid::new_v4().simple())
}

async fn an_idempotency_key_replays_the_first_answer(app: &TestApp) {
    let t = user(app, "idem").await;
    let key = unique("create-1");
    let key = [("Idempotency-Key", key.as_str())];
    let first =
        with_headers(app, "POST", "/tasks/", &t, &key, Some(json!({"title": "once", "labels": ["a"]}))).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.header("idempotent-replayed"), None);
    // The same body, its fields in another order: the same answer, replayed; nothing created.
    let again =
        with_headers(app, "POST", "/tasks/", &t, &key, Some(json!({"labels": ["a"], "title": "once"}))).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text);
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("etag"), first.header("etag"));
    assert_eq!(app.get("/tasks/", &t).await.header("x-total-count"), Some("1"));
    // Even after the task changed or went, the first answer is what a replay gets.
    let path = first.header("location").unwrap().to_owned();
    app.send("DELETE", &path, Some(&t), None).await;
    let late =
        with_headers(app, "POST", "/tasks/", &t, &key, Some(json!({"title": "once", "labels": ["a"]}))).await;
    assert_eq!((late.status, late.text.clone()), (201, first.text.clone()));
    // Keys are per user, and compared exactly.
    let other = user(app, "idem2").await;
    assert_eq!(
        with_headers(app, "POST", "/tasks/", &other, &key, Some(json!({"title": "once"})))
            .await
            .header("idempotent-replayed"),
        None
    );
    let upper = key[0].1.replace("create", "CREATE");
    let upper =
        with_headers(app, "POST", "/tasks/", &t, &[("Idempotency-Key", &upper)], Some(json!({"title": "x"})))
            .await;
    assert_eq!((upper.status, upper.header("idempotent-replayed")), (201, None));
}

async fn idempotency_key_rules(app: &TestApp) {
    let t = user(app, "idemrules").await;
    let key = unique("k");
    let key = [("Idempotency-Key", key.as_str())];
    with_headers(app, "POST", "/tasks/", &t, &key, Some(json!({"title": "first"}))).await;
    // Another body with the same key: 422 naming the header.
    let res = with_headers(app, "POST", "/tasks/", &t, &key, Some(json!({"title": "second"}))).await;
    assert_eq!(res.problem(422)["errors"][0]["field"], "Idempotency-Key");
    // A malformed key: 422 naming it, nothing created.
    let long = "k".repeat(256);
    for bad in ["", "with space", "tab\t", long.as_str(), "ümlaut"] {
        let res = with_headers(
            app,
            "POST",
            "/tasks/",
            &t,
            &[("Idempotency-Key", bad)],
            Some(json!({"title": "x"})),
        )
        .await;
        assert_eq!(res.problem(422)["errors"][0]["field"], "Idempotency-Key", "{bad:?}");
    }
    assert_eq!(app.get("/tasks/", &t).await.header("x-total-count"), Some("1"));
    // A first request that failed is not kept: the key works again.
    let fresh = unique("after-a-failure");
    let fresh = [("Idempotency-Key", fresh.as_str())];
    with_headers(app, "POST", "/tasks/", &t, &fresh, Some(json!({"title": ""}))).await.problem(422);
    let res = with_headers(app, "POST", "/tasks/", &t, &fresh, Some(json!({"title": "ok"}))).await;
    assert_eq!((res.status, res.header("idempotent-replayed")), (201, None));
    let longest = format!("{}{}", unique("k"), "k".repeat(255)).chars().take(255).collect::<String>();
    assert_eq!(
        with_headers(
            app,
            "POST",
            "/tasks/",
            &t,
            &[("Idempotency-Key", &longest)],
            Some(json!({"title": "x"}))
        )
        .await
        .status,
        201
    );
}

/// The feed from a cursor, as `(type, id)` pairs, with the next cursor and `has_more`.
async fn feed(app: &TestApp, token: &str, query: &str) -> (Vec<(String, i64)>, String, bool, Value) {
    let res = app.get(&format!("/tasks/changes{query}"), token).await;
    assert_eq!(res.status, 200, "{query}: {}", res.text);
    let page = res.json();
    let changes = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let id = if c["type"] == "delete" { c["id"].as_i64() } else { c["task"]["id"].as_i64() };
            (c["type"].as_str().unwrap().to_owned(), id.unwrap())
        })
        .collect();
    (changes, page["cursor"].as_str().unwrap().to_owned(), page["has_more"].as_bool().unwrap(), page)
}

async fn the_feed_gives_upserts_and_deletes_after_a_cursor(app: &TestApp) {
    let t = user(app, "feeder").await;
    let (changes, start, more, _) = feed(app, &t, "").await;
    assert_eq!((changes.len(), more), (0, false), "a new account has nothing");
    let a = app.create_task(&t, json!({"title": "a"})).await["id"].as_i64().unwrap();
    let b = app.create_task(&t, json!({"title": "b"})).await["id"].as_i64().unwrap();
    let (changes, after_two, _, _) = feed(app, &t, &format!("?since={start}")).await;
    assert_eq!(changes, [("upsert".to_owned(), a), ("upsert".to_owned(), b)]);
    // An unchanged account: nothing, and the same cursor back.
    let (changes, same, _, _) = feed(app, &t, &format!("?since={after_two}")).await;
    assert_eq!((changes.len(), same.as_str()), (0, after_two.as_str()));

    // A changed task comes once, in its latest state, in the order of its last change; a task
    // created and deleted after the cursor comes as a delete.
    app.send("PATCH", &format!("/tasks/{a}"), Some(&t), Some(json!({"title": "a2"}))).await;
    let c = app.create_task(&t, json!({"title": "c"})).await["id"].as_i64().unwrap();
    app.send("PATCH", &format!("/tasks/{a}"), Some(&t), Some(json!({"title": "a3"}))).await;
    app.send("DELETE", &format!("/tasks/{b}"), Some(&t), None).await;
    app.send("DELETE", &format!("/tasks/{c}"), Some(&t), None).await;
    let (changes, _, more, page) = feed(app, &t, &format!("?since={after_two}")).await;
    assert!(!more);
    assert_eq!(changes, [("upsert".to_owned(), a), ("delete".to_owned(), b), ("delete".to_owned(), c)]);
    assert_eq!(page["changes"][0]["task"]["title"], "a3");
    assert_eq!(page["changes"][0]["task"]["version"], 3);

    // Without a cursor: every current task as an upsert, no deletes.
    let (changes, _, _, _) = feed(app, &t, "").await;
    assert_eq!(changes, [("upsert".to_owned(), a)]);
    // Another user's changes never show.
    let other = user(app, "feeder2").await;
    app.create_task(&other, json!({"title": "theirs"})).await;
    assert_eq!(
        feed(app, &t, &format!("?since={start}")).await.0.iter().filter(|(k, _)| k == "upsert").count(),
        1
    );
}

async fn the_feed_pages_with_has_more_and_each_task_once(app: &TestApp) {
    let t = user(app, "pager").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(app.create_task(&t, json!({"title": format!("t{i}")})).await["id"].as_i64().unwrap());
    }
    // Paged full sync: every task once, in creation order here.
    let (mut seen, mut query) = (Vec::new(), "?limit=3".to_owned());
    let mut pages = 0;
    loop {
        let (changes, cursor, more, _) = feed(app, &t, &query).await;
        assert!(changes.len() <= 3);
        seen.extend(changes.into_iter().map(|(_, id)| id));
        pages += 1;
        query = format!("?limit=3&since={cursor}");
        if !more {
            break;
        }
    }
    assert_eq!((seen, pages), (ids.clone(), 3));
    // A replica built from the pages and then from further changes equals the server's list.
    let mut replica: BTreeMap<i64, Value> = BTreeMap::new();
    let (_, mut cursor, _, page) = feed(app, &t, "?limit=1000").await;
    apply(&mut replica, &page);
    app.send("DELETE", &format!("/tasks/{}", ids[0]), Some(&t), None).await;
    app.send("PATCH", &format!("/tasks/{}", ids[1]), Some(&t), Some(json!({"status": "done"}))).await;
    app.create_task(&t, json!({"title": "late"})).await;
    loop {
        let (_, next, more, page) = feed(app, &t, &format!("?limit=2&since={cursor}")).await;
        apply(&mut replica, &page);
        cursor = next;
        if !more {
            break;
        }
    }
    let server: BTreeMap<i64, Value> = app
        .get("/tasks/?limit=100", &t)
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_i64().unwrap(), t.clone()))
        .collect();
    assert_eq!(replica, server);
}

/// Applies a feed page to a local copy, as the API says a client does.
fn apply(replica: &mut BTreeMap<i64, Value>, page: &Value) {
    for change in page["changes"].as_array().unwrap() {
        if change["type"] == "delete" {
            replica.remove(&change["id"].as_i64().unwrap());
        } else {
            replica.insert(change["task"]["id"].as_i64().unwrap(), change["task"].clone());
        }
    }
}

async fn the_feed_refuses_bad_cursors_and_pruned_ones(app: &TestApp) {
    let t = user(app, "cursors").await;
    let other = user(app, "cursors2").await;
    let (_, theirs, _, _) = feed(app, &other, "").await;
    for bad in ["nonsense", "c1", "c1.x", "1.2", "c1.-1", theirs.as_str()] {
        let res = app.get(&format!("/tasks/changes?since={bad}"), &t).await;
        assert_eq!(res.problem(422)["errors"][0]["field"], "since", "{bad}");
    }
    for bad in ["0", "1001", "x"] {
        assert_eq!(
            app.get(&format!("/tasks/changes?limit={bad}"), &t).await.problem(422)["errors"][0]["field"],
            "limit"
        );
    }

    // A cursor from before deletions whose tombstones were forgotten: 410; a newer one is fine.
    let (_, old, _, _) = feed(app, &t, "").await;
    let doomed = app.create_task(&t, json!({"title": "doomed"})).await["id"].as_i64().unwrap();
    app.send("DELETE", &format!("/tasks/{doomed}"), Some(&t), None).await;
    let (_, recent, _, _) = feed(app, &t, &format!("?since={old}")).await;
    let state = app.client.rocket().state::<tasklane_server::App>().unwrap();
    // As the pruner does once the retention is over (here: everything deleted until now).
    let pruned =
        state.db.prune_tombstones(chrono::Utc::now() + chrono::TimeDelta::seconds(1), 1000).await.unwrap();
    assert!(pruned >= 1, "{pruned}");
    app.get(&format!("/tasks/changes?since={old}"), &t).await.problem(410);
    let (changes, _, _, _) = feed(app, &t, &format!("?since={recent}")).await;
    assert!(changes.is_empty());
    // Starting again without a cursor works, and carries on from there.
    let (_, fresh, _, _) = feed(app, &t, "").await;
    let kept = app.create_task(&t, json!({"title": "kept"})).await["id"].as_i64().unwrap();
    assert_eq!(feed(app, &t, &format!("?since={fresh}")).await.0, [("upsert".to_owned(), kept)]);
}

/// 20 concurrent PATCHes carrying one ETag, over real connections: exactly one succeeds.
async fn one_of_many_conditional_writes_wins(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else { return };
    let http = reqwest::Client::new();
    let (_, pair) = common::post(
        &http,
        server.url("/auth/register"),
        None,
        json!({"username": "racer", "password": "correct horse"}),
    )
    .await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    let (_, task) =
        common::post(&http, server.url("/tasks/"), Some(&token), json!({"title": "contended"})).await;
    let url = server.url(&format!("/tasks/{}", task["id"]));
    let etag = etag_of(&task);
    let writes = (0..20).map(|i| {
        http.patch(&url)
            .bearer_auth(&token)
            .header("If-Match", &etag)
            .json(&json!({"title": format!("writer {i}")}))
            .send()
    });
    let statuses: Vec<u16> =
        join_all(writes).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 412).count(), 19, "{statuses:?}");
    let now: Value = http.get(&url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(now["version"], 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_many_conditional_writes_wins_sqlite() {
    one_of_many_conditional_writes_wins(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_many_conditional_writes_wins_postgres() {
    one_of_many_conditional_writes_wins(Backend::PostgresRedis).await;
}

/// Two instances on one PostgreSQL (and Redis for the keys, or PostgreSQL alone): 20 concurrent
/// creates with one key, spread over both, make one task; the others replay it or are told to
/// retry while it is in flight.
async fn one_key_makes_one_task_across_instances(backend: Backend) {
    let Some((config, scratch)) = scratch_config(backend).await else { return };
    let a = TestServer::with_config(config.clone(), Some(scratch)).await;
    let b = TestServer::with_config(config, None).await;
    let http = reqwest::Client::new();
    let (_, pair) = common::post(
        &http,
        a.url("/auth/register"),
        None,
        json!({"username": "twice", "password": "correct horse"}),
    )
    .await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    let key = unique("one");
    let creates = (0..20).map(|i| {
        let key = key.clone();
        let url = if i % 2 == 0 { a.url("/tasks/") } else { b.url("/tasks/") };
        let (http, token) = (http.clone(), token.clone());
        async move {
            // As a client does: a 409 means "in flight, retry after Retry-After".
            loop {
                let res = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"title": "only one"}))
                    .send()
                    .await
                    .unwrap();
                if res.status() == 409 {
                    assert_eq!(res.headers()["retry-after"], "1");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                let status = res.status().as_u16();
                return (status, res.text().await.unwrap());
            }
        }
    });
    let answers = join_all(creates).await;
    assert!(answers.iter().all(|(status, _)| *status == 201), "{answers:?}");
    assert!(answers.iter().all(|(_, body)| *body == answers[0].1), "every answer is the first one");
    let list = http.get(a.url("/tasks/")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(list.headers()["x-total-count"], "1");
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_makes_one_task_across_instances_in_redis() {
    one_key_makes_one_task_across_instances(Backend::PostgresRedis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_makes_one_task_across_instances_in_postgres() {
    one_key_makes_one_task_across_instances(Backend::Postgres).await;
}

/// The no-gap argument, tested: writers on two instances create, update and delete at once
/// while a follower polls the feed with short pages; afterwards the follower's copy equals the
/// server's tasks exactly. Run several rounds; a cursor that could be overtaken by a later
/// commit would leave a change out, and the copies would differ.
async fn a_follower_misses_nothing_under_concurrent_writers(backend: Backend) {
    let Some((config, scratch)) = scratch_config(backend).await else { return };
    let a = TestServer::with_config(config.clone(), Some(scratch)).await;
    let b = TestServer::with_config(config, None).await;
    let http = reqwest::Client::new();
    let (_, pair) = common::post(
        &http,
        a.url("/auth/register"),
        None,
        json!({"username": "busy", "password": "correct horse"}),
    )
    .await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    for round in 0..3 {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..6)
            .map(|w| {
                let base = if w % 2 == 0 { a.base.clone() } else { b.base.clone() };
                let (http, token, stop) = (http.clone(), token.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) || i < 10 {
                        i += 1;
                        let (_, task) = common::post(
                            &http,
                            format!("{base}/tasks/"),
                            Some(&token),
                            json!({"title": format!("r{round} w{w} #{i}")}),
                        )
                        .await;
                        let id = task["id"].as_i64().unwrap();
                        mine.push(id);
                        if i % 3 == 0 {
                            let victim = mine.remove(0);
                            http.delete(format!("{base}/tasks/{victim}"))
                                .bearer_auth(&token)
                                .send()
                                .await
                                .unwrap();
                        } else {
                            http.patch(format!("{base}/tasks/{id}"))
                                .bearer_auth(&token)
                                .json(&json!({"status": "done"}))
                                .send()
                                .await
                                .unwrap();
                        }
                    }
                })
            })
            .collect();
        // The follower, alternating instances, with small pages.
        let mut replica: BTreeMap<i64, Value> = BTreeMap::new();
        let mut cursor: Option<String> = None;
        let mut polls = 0;
        let follow = |cursor: Option<String>, base: String| {
            let (http, token) = (http.clone(), token.clone());
            async move {
                let mut url = format!("{base}/tasks/changes?limit=7");
                if let Some(cursor) = cursor {
                    url.push_str(&format!("&since={cursor}"));
                }
                let res = http.get(url).bearer_auth(&token).send().await.unwrap();
                assert_eq!(res.status(), 200);
                res.json::<Value>().await.unwrap()
            }
        };
        while polls < 40 {
            let base = if polls % 2 == 0 { a.base.clone() } else { b.base.clone() };
            let page = follow(cursor.clone(), base).await;
            apply(&mut replica, &page);
            cursor = Some(page["cursor"].as_str().unwrap().to_owned());
            polls += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for writer in writers {
            writer.await.unwrap();
        }
        // Catch up to the end.
        loop {
            let page = follow(cursor.clone(), a.base.clone()).await;
            apply(&mut replica, &page);
            cursor = Some(page["cursor"].as_str().unwrap().to_owned());
            if !page["has_more"].as_bool().unwrap() {
                break;
            }
        }
        let mut server: BTreeMap<i64, Value> = BTreeMap::new();
        let mut offset = 0;
        loop {
            let list: Value = http
                .get(a.url(&format!("/tasks/?limit=100&offset={offset}&sort=created_at")))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let page = list.as_array().unwrap();
            server.extend(page.iter().map(|t| (t["id"].as_i64().unwrap(), t.clone())));
            if page.len() < 100 {
                break;
            }
            offset += 100;
        }
        assert_eq!(replica.len(), server.len(), "round {round}");
        assert!(replica == server, "round {round}: the follower's copy differs from the server's");
    }
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_misses_nothing_under_concurrent_writers_sqlite() {
    a_follower_misses_nothing_under_concurrent_writers(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_misses_nothing_under_concurrent_writers_postgres() {
    a_follower_misses_nothing_under_concurrent_writers(Backend::PostgresRedis).await;
}
