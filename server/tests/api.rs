//! The API contract (docs/API.md), through Rocket's local client, on every backend.

mod common;

use chrono::Utc;
use common::{Resp, TestApp, Tokens, SECRET};
use serde_json::{json, Value};
use tasklane_server::auth::jwt::{JwtKeys, TokenKind};

backend_tests![
    register_login_me,
    register_rejects_bad_credentials_and_duplicates,
    login_fails_alike_for_unknown_user_and_wrong_password,
    task_crud_round_trip,
    put_and_patch_change_only_present_fields,
    task_validation_errors_name_the_field,
    another_users_task_is_404_on_every_verb,
    list_filters_sorts_and_pages,
    list_total_is_exact_as_a_list_grows_and_shrinks,
    list_rejects_bad_query_parameters,
    bad_ids_are_never_500,
    refresh_rotates_and_detects_reuse,
    logout_revokes_the_family_and_is_no_oracle,
    token_confusion_is_refused,
    tampered_expired_and_foreign_tokens_are_refused,
    framework_errors_are_problem_json,
    body_limit_is_64_kib,
    request_ids_are_echoed_or_generated,
    health_ready_openapi_and_docs,
    metrics_and_security_headers,
    tokens_of_a_deleted_user_are_401,
];

const PW: &str = "correct horse";

async fn register_login_me(app: &TestApp) {
    let res = app.post("/auth/register", None, json!({"username": "Ada.L", "password": PW})).await;
    assert_eq!(res.status, 201, "{}", res.text);
    let body = res.json();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    let tokens = Tokens::from(&res);

    let me = app.get("/auth/me", &tokens.access).await;
    assert_eq!(me.status, 200);
    let me = me.json();
    assert_eq!(me["username"], "Ada.L");
    assert!(me["id"].as_i64().unwrap() > 0);
    assert!(me["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(me.get("password_hash").is_none());

    // Login matches ignoring case; the name stays as first registered.
    let res = app.post("/auth/login", None, json!({"username": "ada.l", "password": PW})).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let again = Tokens::from(&res);
    let me2 = app.get("/auth/me", &again.access).await.json();
    assert_eq!(me2["id"], me["id"]);
    assert_eq!(me2["username"], "Ada.L");

    // Unicode passwords count characters, not bytes: 8 characters, 16 bytes.
    let res = app.post("/auth/register", None, json!({"username": "uni", "password": "üüüüüüüü"})).await;
    assert_eq!(res.status, 201, "{}", res.text);
    let res = app.post("/auth/login", None, json!({"username": "UNI", "password": "üüüüüüüü"})).await;
    assert_eq!(res.status, 200);
}

async fn register_rejects_bad_credentials_and_duplicates(app: &TestApp) {
    app.register("taken").await;
    let res = app.post("/auth/register", None, json!({"username": "TAKEN", "password": PW})).await;
    let body = res.problem(409);
    assert!(body["detail"].as_str().unwrap().contains("taken"));

    for (username, password, field) in [
        ("ab", PW, "username"),
        (&"a".repeat(65) as &str, PW, "username"),
        ("white space", PW, "username"),
        ("émile", PW, "username"),
        ("shortpw", "1234567", "password"),
        ("longpw", &"p".repeat(129) as &str, "password"),
    ] {
        let res = app.post("/auth/register", None, json!({"username": username, "password": password})).await;
        let body = res.problem(422);
        assert_eq!(body["errors"][0]["field"], field, "{username:?}: {body}");
    }
    // Longest legal values.
    let res = app
        .post("/auth/register", None, json!({"username": "a".repeat(64), "password": "p".repeat(128)}))
        .await;
    assert_eq!(res.status, 201);
    let res =
        app.post("/auth/register", None, json!({"username": "x_y-z.0", "password": PW, "admin": true})).await;
    let body = res.problem(422);
    assert_eq!(body["errors"][0]["field"], "admin");
    let res = app.post("/auth/register", None, json!({"username": "nopw"})).await;
    let body = res.problem(422);
    assert_eq!(body["errors"], json!([{"field": "password", "message": "is required"}]), "{body}");
    // Every missing field at once, not the first serde met.
    let res = app.post("/auth/register", None, json!({})).await;
    let body = res.problem(422);
    let fields: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["password", "username"], "{body}");
    // A misspelt field is still named as unknown, rather than its intended one as missing.
    let res = app.post("/auth/register", None, json!({"usernme": "typo", "password": PW})).await;
    let body = res.problem(422);
    assert_eq!(body["errors"][0]["field"], "usernme", "{body}");
}

async fn login_fails_alike_for_unknown_user_and_wrong_password(app: &TestApp) {
    app.register("known").await;
    let wrong =
        app.post("/auth/login", None, json!({"username": "known", "password": "wrong password"})).await;
    let unknown =
        app.post("/auth/login", None, json!({"username": "nobody", "password": "wrong password"})).await;
    let malformed = app.post("/auth/login", None, json!({"username": "x", "password": "y"})).await;
    let a = wrong.problem(401);
    let b = unknown.problem(401);
    let c = malformed.problem(401);
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
}

async fn task_crud_round_trip(app: &TestApp) {
    let t = app.register("crud").await.access;
    let res =
        app.post("/tasks/", Some(&t), json!({"title": "  Write docs  ", "description": "all of them"})).await;
    assert_eq!(res.status, 201, "{}", res.text);
    let task = res.json();
    let id = task["id"].as_i64().unwrap();
    assert_eq!(res.header("location"), Some(format!("/tasks/{id}").as_str()));
    assert_eq!(task["title"], "Write docs");
    assert_eq!(task["description"], "all of them");
    assert_eq!(task["status"], "pending");
    assert_eq!(task["created_at"], task["updated_at"]);
    let me = app.get("/auth/me", &t).await.json();
    assert_eq!(task["user_id"], me["id"]);

    // Without the trailing slash too.
    let res = app.post("/tasks", Some(&t), json!({"title": "second", "status": "done"})).await;
    assert_eq!(res.status, 201);
    assert_eq!(res.json()["status"], "done");

    let got = app.get(&format!("/tasks/{id}"), &t).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), task);

    let list = app.get("/tasks", &t).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json().as_array().unwrap().len(), 2);
    assert_eq!(list.header("x-total-count"), Some("2"));

    let del = app.send("DELETE", &format!("/tasks/{id}"), Some(&t), None).await;
    assert_eq!(del.status, 204);
    assert!(del.text.is_empty());
    app.get(&format!("/tasks/{id}"), &t).await.problem(404);
    app.send("DELETE", &format!("/tasks/{id}"), Some(&t), None).await.problem(404);
    assert_eq!(app.get("/tasks/", &t).await.header("x-total-count"), Some("1"));
}

async fn put_and_patch_change_only_present_fields(app: &TestApp) {
    let t = app.register("editor").await.access;
    let task = app.create_task(&t, json!({"title": "t", "description": "d"})).await;
    let path = format!("/tasks/{}", task["id"]);

    for method in ["PUT", "PATCH"] {
        let res = app.send(method, &path, Some(&t), Some(json!({"status": "in_progress"}))).await;
        assert_eq!(res.status, 200, "{method}: {}", res.text);
        let updated = res.json();
        assert_eq!(updated["status"], "in_progress");
        assert_eq!(updated["title"], "t");
        assert_eq!(updated["description"], "d");
        assert_eq!(updated["created_at"], task["created_at"]);
        assert!(
            updated["updated_at"].as_str() > task["updated_at"].as_str(),
            "{method}: updated_at must move"
        );
    }
    let res =
        app.send("PATCH", &path, Some(&t), Some(json!({"description": null, "title": " renamed "}))).await;
    let cleared = res.json();
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["title"], "renamed");
    assert_eq!(cleared["status"], "in_progress");
    // An empty update changes nothing, not even updated_at.
    let same = app.send("PUT", &path, Some(&t), Some(json!({}))).await.json();
    assert_eq!(same, cleared);
    assert_eq!(app.get(&path, &t).await.json(), cleared);

    let res = app.send("PUT", &path, Some(&t), Some(json!({"title": null}))).await;
    assert_eq!(res.problem(422)["errors"][0]["field"], "title");
    let res = app.send("PATCH", &path, Some(&t), Some(json!({"status": "archived"}))).await;
    assert_eq!(res.problem(422)["errors"][0]["field"], "status");
    app.send("PUT", "/tasks/999999", Some(&t), Some(json!({"title": "x"}))).await.problem(404);
}

async fn task_validation_errors_name_the_field(app: &TestApp) {
    let t = app.register("validator").await.access;
    let cases = [
        (json!({"title": ""}), "title"),
        (json!({"title": "   "}), "title"),
        (json!({"title": "x".repeat(201)}), "title"),
        (json!({"title": "nul\u{0}byte"}), "title"),
        (json!({"title": "ok", "description": "d".repeat(10_001)}), "description"),
        (json!({"title": "ok", "status": "nope"}), "status"),
        (json!({"title": 5}), "title"),
        (json!({"title": "ok", "priority": 1}), "priority"),
        (json!({"description": "no title"}), "title"),
    ];
    for (body, field) in cases {
        let res = app.post("/tasks/", Some(&t), body.clone()).await;
        let problem = res.problem(422);
        let fields: Vec<&str> =
            problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert!(fields.contains(&field), "{body}: {problem}");
    }
    // The limits themselves are accepted; lengths count characters, not bytes.
    let ok = app.create_task(&t, json!({"title": "é".repeat(200), "description": "ü".repeat(10_000)})).await;
    assert_eq!(ok["title"].as_str().unwrap().chars().count(), 200);
    assert_eq!(
        app.get("/tasks/", &t).await.header("x-total-count"),
        Some("1"),
        "failed creates stored nothing"
    );
}

async fn another_users_task_is_404_on_every_verb(app: &TestApp) {
    let alice = app.register("alice").await.access;
    let bob = app.register("bob").await.access;
    let task = app.create_task(&alice, json!({"title": "alice's"})).await;
    let path = format!("/tasks/{}", task["id"]);

    app.get(&path, &bob).await.problem(404);
    app.send("PUT", &path, Some(&bob), Some(json!({"title": "mine"}))).await.problem(404);
    app.send("PATCH", &path, Some(&bob), Some(json!({"title": "mine"}))).await.problem(404);
    app.send("DELETE", &path, Some(&bob), None).await.problem(404);
    let bobs = app.get("/tasks/", &bob).await;
    assert_eq!(bobs.json(), json!([]));
    assert_eq!(bobs.header("x-total-count"), Some("0"));
    // Untouched for its owner.
    assert_eq!(app.get(&path, &alice).await.json(), task);
}

async fn list_filters_sorts_and_pages(app: &TestApp) {
    let t = app.register("lister").await.access;
    let mut ids = Vec::new();
    for (i, (title, status)) in
        [("b", "pending"), ("a", "done"), ("c", "pending"), ("a", "in_progress"), ("e", "pending")]
            .iter()
            .enumerate()
    {
        let task = app.create_task(&t, json!({"title": title, "status": status})).await;
        ids.push(task["id"].as_i64().unwrap());
        assert!(i == 0 || ids[i] > ids[i - 1]);
    }
    let ids_of = |res: &Resp| -> Vec<i64> {
        res.json().as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect()
    };

    // Default: newest first.
    let res = app.get("/tasks/", &t).await;
    assert_eq!(ids_of(&res), ids.iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(res.header("link"), None);
    let res = app.get("/tasks/?sort=created_at", &t).await;
    assert_eq!(ids_of(&res), ids);
    // Title ties broken by id in the same direction.
    let res = app.get("/tasks/?sort=title", &t).await;
    assert_eq!(ids_of(&res), vec![ids[1], ids[3], ids[0], ids[2], ids[4]]);
    let res = app.get("/tasks/?sort=-title", &t).await;
    assert_eq!(ids_of(&res), vec![ids[4], ids[2], ids[0], ids[3], ids[1]]);
    // updated_at follows changes.
    app.send("PATCH", &format!("/tasks/{}", ids[0]), Some(&t), Some(json!({"title": "b2"}))).await;
    let res = app.get("/tasks/?sort=-updated_at&limit=1", &t).await;
    assert_eq!(ids_of(&res), vec![ids[0]]);
    let res = app.get("/tasks/?sort=updated_at&limit=1", &t).await;
    assert_eq!(ids_of(&res), vec![ids[1]]);

    let res = app.get("/tasks/?status=pending", &t).await;
    assert_eq!(ids_of(&res), vec![ids[4], ids[2], ids[0]]);
    assert_eq!(res.header("x-total-count"), Some("3"));

    // Paging: total over all pages, Link to next and prev.
    let res = app.get("/tasks?limit=2&offset=0&sort=created_at", &t).await;
    assert_eq!(ids_of(&res), vec![ids[0], ids[1]]);
    assert_eq!(res.header("x-total-count"), Some("5"));
    assert_eq!(res.header("link"), Some("</tasks/?limit=2&offset=2&sort=created_at>; rel=\"next\""));
    let res = app.get("/tasks/?limit=2&offset=2&sort=created_at", &t).await;
    assert_eq!(ids_of(&res), vec![ids[2], ids[3]]);
    assert_eq!(
        res.header("link"),
        Some("</tasks/?limit=2&offset=4&sort=created_at>; rel=\"next\", </tasks/?limit=2&offset=0&sort=created_at>; rel=\"prev\"")
    );
    let res = app.get("/tasks/?limit=2&offset=4&sort=created_at&status=pending", &t).await;
    assert_eq!(ids_of(&res), Vec::<i64>::new());
    assert_eq!(res.header("x-total-count"), Some("3"), "the total is known past the end too");
    assert_eq!(
        res.header("link"),
        Some("</tasks/?limit=2&offset=1&sort=created_at&status=pending>; rel=\"prev\"")
    );
    let res = app.get("/tasks/?offset=7", &t).await;
    assert_eq!((ids_of(&res).len(), res.header("x-total-count")), (0, Some("5")), "unfiltered, past the end");
    // Following `next` links visits every task exactly once.
    let mut seen = Vec::new();
    let mut next = Some("/tasks/?limit=2".to_owned());
    while let Some(path) = next {
        let res = app.get(&path, &t).await;
        seen.extend(ids_of(&res));
        next = res.header("link").and_then(|l| {
            l.split(", ").find(|p| p.ends_with("rel=\"next\"")).map(|p| p[1..p.find('>').unwrap()].to_owned())
        });
    }
    seen.sort();
    assert_eq!(seen, ids);
    // Limits at their bounds.
    assert_eq!(ids_of(&app.get("/tasks/?limit=100", &t).await).len(), 5);
    assert_eq!(ids_of(&app.get("/tasks/?limit=1", &t).await).len(), 1);
}

/// The total is exact whichever statement the store picks: a first page that holds everything
/// counts its rows, a full one is counted beside it (and the user remembered as having one),
/// later pages carry the count, and a list that shrinks is counted right again.
async fn list_total_is_exact_as_a_list_grows_and_shrinks(app: &TestApp) {
    let t = app.register("counter").await.access;
    let total = |res: &Resp| {
        (res.status, res.json().as_array().unwrap().len(), res.header("x-total-count").map(str::to_owned))
    };
    let expect = |rows: usize, total: usize| (200, rows, Some(total.to_string()));
    assert_eq!(total(&app.get("/tasks/?limit=3", &t).await), expect(0, 0), "no tasks at all");
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            app.create_task(&t, json!({"title": format!("t{i}"), "status": "done"})).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    // Exactly a full first page, then one more than that: each needs a real count.
    assert_eq!(total(&app.get("/tasks/?limit=3", &t).await), expect(3, 3));
    assert_eq!(total(&app.get("/tasks/?limit=4", &t).await), expect(3, 3));
    ids.push(app.create_task(&t, json!({"title": "t3"})).await["id"].as_i64().unwrap());
    assert_eq!(total(&app.get("/tasks/?limit=3", &t).await), expect(3, 4));
    assert_eq!(
        total(&app.get("/tasks/?limit=3", &t).await),
        expect(3, 4),
        "again, once the user is remembered"
    );
    assert_eq!(total(&app.get("/tasks/?limit=3&offset=3", &t).await), expect(1, 4));
    assert_eq!(total(&app.get("/tasks/?limit=3&offset=9", &t).await), expect(0, 4));
    assert_eq!(total(&app.get("/tasks/?limit=2&status=done", &t).await), expect(2, 3));
    assert_eq!(total(&app.get("/tasks/?limit=50&status=pending", &t).await), expect(1, 1));
    assert_eq!(total(&app.get("/tasks/", &t).await), expect(4, 4), "a first page with room to spare");
    // Shrinking below the page, then to nothing.
    for id in &ids[..2] {
        assert_eq!(app.send("DELETE", &format!("/tasks/{id}"), Some(&t), None).await.status, 204);
    }
    assert_eq!(total(&app.get("/tasks/?limit=3", &t).await), expect(2, 2));
    assert_eq!(total(&app.get("/tasks/?limit=3", &t).await), expect(2, 2));
    assert_eq!(total(&app.get("/tasks/?limit=2", &t).await), expect(2, 2));
    for id in &ids[2..] {
        assert_eq!(app.send("DELETE", &format!("/tasks/{id}"), Some(&t), None).await.status, 204);
    }
    assert_eq!(total(&app.get("/tasks/?limit=2", &t).await), expect(0, 0));
    assert_eq!(total(&app.get("/tasks/?limit=2&offset=2", &t).await), expect(0, 0));
}

async fn list_rejects_bad_query_parameters(app: &TestApp) {
    let t = app.register("querier").await.access;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("sort=bogus", "sort"),
        ("status=nope", "status"),
    ] {
        let res = app.get(&format!("/tasks/?{query}"), &t).await;
        let body = res.problem(422);
        assert_eq!(body["errors"][0]["field"], field, "{query}");
    }
    let res = app.get("/tasks/?limit=0&sort=bogus", &t).await;
    assert_eq!(res.problem(422)["errors"].as_array().unwrap().len(), 2);
    // Unknown parameters are ignored (cache busters and the like).
    assert_eq!(app.get("/tasks/?_=123", &t).await.status, 200);
}

async fn bad_ids_are_never_500(app: &TestApp) {
    let t = app.register("idtester").await.access;
    for id in ["abc", "0", "-1", "99999999999999999999999", "1.5", "%00"] {
        for method in ["GET", "PUT", "PATCH", "DELETE"] {
            let body = (method == "PUT" || method == "PATCH").then(|| json!({"title": "x"}));
            let res = app.send(method, &format!("/tasks/{id}"), Some(&t), body).await;
            assert!(res.status == 404 || res.status == 422, "{method} {id}: {}", res.status);
            let problem = res.problem(res.status);
            if res.status == 422 {
                assert_eq!(problem["errors"][0]["field"], "id", "{method} {id}: {problem}");
            }
        }
    }
}

async fn refresh_rotates_and_detects_reuse(app: &TestApp) {
    let first = app.register("rotator").await;
    let res = app.post("/auth/refresh", None, json!({"refresh_token": first.refresh})).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let second = Tokens::from(&res);
    assert_ne!(second.refresh, first.refresh, "the refresh token rotates");
    assert_eq!(app.get("/auth/me", &second.access).await.status, 200);

    let res = app.post("/auth/refresh", None, json!({"refresh_token": second.refresh})).await;
    let third = Tokens::from(&res);

    // Replaying a consumed token is refused and revokes the whole family...
    let replay = app.post("/auth/refresh", None, json!({"refresh_token": first.refresh})).await;
    replay.problem(401);
    assert_eq!(replay.header("www-authenticate"), Some("Bearer"));
    // ...so the newest token of that family is dead too.
    app.post("/auth/refresh", None, json!({"refresh_token": third.refresh})).await.problem(401);
    // Other sessions of the same user are other families and live on.
    let other =
        Tokens::from(&app.post("/auth/login", None, json!({"username": "rotator", "password": PW})).await);
    assert_eq!(app.post("/auth/refresh", None, json!({"refresh_token": other.refresh})).await.status, 200);
    // Access tokens stay valid until they expire.
    assert_eq!(app.get("/auth/me", &third.access).await.status, 200);

    app.post("/auth/refresh", None, json!({"refresh_token": "garbage"})).await.problem(401);
    app.post("/auth/refresh", None, json!({})).await.problem(422);
}

async fn logout_revokes_the_family_and_is_no_oracle(app: &TestApp) {
    let tokens = app.register("leaver").await;
    let res = app.post("/auth/logout", None, json!({"refresh_token": tokens.refresh})).await;
    assert_eq!(res.status, 204);
    assert!(res.text.is_empty());
    app.post("/auth/refresh", None, json!({"refresh_token": tokens.refresh})).await.problem(401);
    // Again, and with garbage: the same 204.
    assert_eq!(app.post("/auth/logout", None, json!({"refresh_token": tokens.refresh})).await.status, 204);
    assert_eq!(app.post("/auth/logout", None, json!({"refresh_token": "nonsense"})).await.status, 204);
    // An access token is no refresh token: nothing is revoked, still 204.
    assert_eq!(app.post("/auth/logout", None, json!({"refresh_token": tokens.access})).await.status, 204);
}

async fn token_confusion_is_refused(app: &TestApp) {
    let tokens = app.register("confused").await;
    let res = app.get("/auth/me", &tokens.refresh).await;
    res.problem(401);
    assert_eq!(res.header("www-authenticate"), Some("Bearer"));
    app.get("/tasks/", &tokens.refresh).await.problem(401);
    app.post("/auth/refresh", None, json!({"refresh_token": tokens.access})).await.problem(401);
    // The refresh token still works for what it is for.
    assert_eq!(app.post("/auth/refresh", None, json!({"refresh_token": tokens.refresh})).await.status, 200);
}

async fn tampered_expired_and_foreign_tokens_are_refused(app: &TestApp) {
    let tokens = app.register("mallory").await;
    let user_id = app.get("/auth/me", &tokens.access).await.json()["id"].as_i64().unwrap();
    let keys = JwtKeys::new(SECRET);
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    let (expired, _) =
        keys.issue(TokenKind::Access, user_id, None, hour_ago, std::time::Duration::from_secs(60));
    let body = app.get("/auth/me", &expired).await.problem(401);
    assert!(body["detail"].as_str().unwrap().contains("expired"), "{body}");
    // A token minted right now with the same key works, so the refusal above is the expiry.
    let (fresh, _) =
        keys.issue(TokenKind::Access, user_id, None, Utc::now(), std::time::Duration::from_secs(60));
    assert_eq!(app.get("/auth/me", &fresh).await.status, 200);

    let (foreign, _) = JwtKeys::new(b"another-secret-another-secret-xx!").issue(
        TokenKind::Access,
        user_id,
        None,
        Utc::now(),
        std::time::Duration::from_secs(60),
    );
    app.get("/auth/me", &foreign).await.problem(401);

    let mut parts: Vec<String> = tokens.access.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].replacen('e', "f", 1);
    app.get("/auth/me", &parts.join(".")).await.problem(401);
    app.get("/auth/me", "not-a-jwt").await.problem(401);
    let (expired_refresh, _) =
        keys.issue(TokenKind::Refresh, user_id, Some("fam"), hour_ago, std::time::Duration::from_secs(60));
    app.post("/auth/refresh", None, json!({"refresh_token": expired_refresh})).await.problem(401);

    // Missing or malformed Authorization headers.
    app.send("GET", "/auth/me", None, None).await.problem(401);
    let res = app
        .client
        .get("/tasks/")
        .header(rocket::http::Header::new("Authorization", "Basic YTpi"))
        .dispatch()
        .await;
    assert_eq!(res.status().code, 401);
}

async fn framework_errors_are_problem_json(app: &TestApp) {
    let t = app.register("framework").await.access;
    // 400: malformed JSON; empty body.
    app.send_raw("POST", "/tasks/", Some(&t), Some("application/json"), b"{\"title\": ".to_vec())
        .await
        .problem(400);
    app.send_raw("POST", "/tasks/", Some(&t), Some("application/json"), Vec::new()).await.problem(400);
    // 415: not JSON.
    app.send_raw("POST", "/tasks/", Some(&t), Some("text/plain"), b"title".to_vec()).await.problem(415);
    app.send_raw(
        "POST",
        "/auth/login",
        None,
        Some("application/x-www-form-urlencoded"),
        b"username=a".to_vec(),
    )
    .await
    .problem(415);
    // A type that does not parse is not JSON either, whatever the body holds.
    for unparsable in ["json", "garbage", "application/"] {
        let res = app
            .send_raw("POST", "/tasks/", Some(&t), Some(unparsable), br#"{"title":"typed"}"#.to_vec())
            .await;
        let detail = res.problem(415)["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(unparsable), "{detail}");
    }
    // JSON is UTF-8: another declared charset is refused, UTF-8 in any spelling is read.
    let res = app
        .send_raw(
            "POST",
            "/tasks/",
            Some(&t),
            Some("application/json; charset=utf-16"),
            br#"{"title":"x"}"#.to_vec(),
        )
        .await;
    assert!(res.problem(415)["detail"].as_str().unwrap().contains("utf-16"), "{}", res.text);
    for utf8 in ["application/json; charset=UTF-8", "application/json;charset=\"utf-8\""] {
        let res =
            app.send_raw("POST", "/tasks/", Some(&t), Some(utf8), br#"{"title":"utf8"}"#.to_vec()).await;
        assert_eq!(res.status, 201, "{utf8}: {}", res.text);
    }
    // A key given twice is ambiguous: 422 naming it, and nothing is changed.
    let twice = app
        .send_raw(
            "POST",
            "/tasks/",
            Some(&t),
            Some("application/json"),
            br#"{"title":"a","title":"b"}"#.to_vec(),
        )
        .await;
    let body = twice.problem(422);
    assert_eq!(
        (body["errors"][0]["field"].as_str(), body["errors"][0]["message"].as_str()),
        (Some("title"), Some("given more than once"))
    );
    let login = br#"{"username":"framework","password":"x","password":"correct horse"}"#.to_vec();
    app.send_raw("POST", "/auth/login", None, Some("application/json"), login).await.problem(422);
    assert_eq!(
        app.get("/tasks/", &t).await.header("x-total-count"),
        Some("2"),
        "only the UTF-8 bodies made tasks"
    );
    // A body without a content type is read as JSON (as the old service did).
    let res = app.send_raw("POST", "/tasks/", Some(&t), None, br#"{"title":"untyped"}"#.to_vec()).await;
    assert_eq!(res.status, 201, "{}", res.text);
    // 422: valid JSON of the wrong shape.
    app.send_raw("POST", "/tasks/", Some(&t), Some("application/json"), b"[1,2]".to_vec()).await.problem(422);
    // 404: unknown route.
    app.send("GET", "/nowhere", None, None).await.problem(404);
    app.send("GET", "/tasks/1/extra", Some(&t), None).await.problem(404);
    // 405 with Allow.
    let res = app.send("DELETE", "/tasks/", Some(&t), None).await;
    res.problem(405);
    assert_eq!(res.header("allow"), Some("GET, HEAD, POST"));
    let res = app.send("GET", "/auth/login", None, None).await;
    res.problem(405);
    assert_eq!(res.header("allow"), Some("POST"));
    let res = app.send("POST", "/tasks/5", Some(&t), Some(json!({}))).await;
    res.problem(405);
    assert_eq!(res.header("allow"), Some("DELETE, GET, HEAD, PATCH, PUT"));
    // 401 from the guard, before the body is looked at.
    app.send("POST", "/tasks/", None, Some(json!({"title": "x"}))).await.problem(401);
}

async fn body_limit_is_64_kib(app: &TestApp) {
    let t = app.register("bigbody").await.access;
    // Exactly 65,536 bytes of valid JSON is read (and refused only for the title's length).
    let filler = 65_536 - br#"{"title":""}"#.len();
    let at_limit = format!(r#"{{"title":"{}"}}"#, "a".repeat(filler));
    assert_eq!(at_limit.len(), 65_536);
    let res =
        app.send_raw("POST", "/tasks/", Some(&t), Some("application/json"), at_limit.into_bytes()).await;
    assert_eq!(res.problem(422)["errors"][0]["field"], "title");
    // Whitespace padding to the limit is fine JSON.
    let padded = format!(r#"{{"title":"ok"}}{}"#, " ".repeat(65_536 - 14));
    assert_eq!(padded.len(), 65_536);
    let res = app
        .send_raw("POST", "/tasks/", Some(&t), Some("application/json"), padded.clone().into_bytes())
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    // One byte more is refused.
    let over = format!("{padded} ");
    app.send_raw("POST", "/tasks/", Some(&t), Some("application/json"), over.into_bytes()).await.problem(413);
    let res =
        app.send_raw("POST", "/auth/register", None, Some("application/json"), vec![b' '; 1 << 20]).await;
    res.problem(413);
    assert_eq!(app.get("/tasks/", &t).await.header("x-total-count"), Some("1"));
}

async fn request_ids_are_echoed_or_generated(app: &TestApp) {
    let echo = app
        .client
        .get("/health")
        .header(rocket::http::Header::new("X-Request-Id", "client-id:42.a_b"))
        .dispatch()
        .await;
    assert_eq!(echo.headers().get_one("X-Request-Id"), Some("client-id:42.a_b"));
    for bad in ["has space", "x".repeat(129).as_str(), "semi;colon"] {
        let res = app
            .client
            .get("/nowhere")
            .header(rocket::http::Header::new("X-Request-Id", bad.to_owned()))
            .dispatch()
            .await;
        let id = res.headers().get_one("X-Request-Id").unwrap().to_owned();
        assert_ne!(id, bad);
        assert!((1..=128).contains(&id.len()));
    }
    let a = app.send("GET", "/health", None, None).await;
    let b = app.send("GET", "/health", None, None).await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
    assert!(a.header("x-request-id").is_some());
}

async fn health_ready_openapi_and_docs(app: &TestApp) {
    let health = app.send("GET", "/health", None, None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let ready = app.send("GET", "/ready", None, None).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json()["checks"]["database"], "ok");
    if app.config.redis_url.is_some() {
        assert_eq!(ready.json()["checks"]["redis"], "ok");
    }

    let spec = app.send("GET", "/openapi.json", None, None).await.json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/auth/register", &["post"][..]),
        ("/auth/login", &["post"]),
        ("/auth/refresh", &["post"]),
        ("/auth/logout", &["post"]),
        ("/auth/me", &["get"]),
        ("/tasks/", &["get", "post"]),
        ("/tasks/{id}", &["get", "put", "patch", "delete"]),
        ("/health", &["get"]),
        ("/ready", &["get"]),
    ] {
        for method in methods {
            let op = &paths[path][method];
            assert!(op.is_object(), "{method} {path} missing");
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.keys().any(|c| c.starts_with('2')), "{method} {path}: no success response");
            if path != "/health" {
                assert!(
                    responses.contains_key("422") || responses.contains_key("503"),
                    "{method} {path}: no errors"
                );
            }
        }
    }
    let scheme = &spec["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert!(paths["/tasks/"]["get"]["security"].is_array());
    assert!(paths["/auth/login"]["post"].get("security").is_none());
    assert!(paths["/tasks/"]["post"]["responses"]["201"]["headers"]["Location"].is_object());
    assert!(paths["/tasks/"]["get"]["responses"]["200"]["headers"]["X-Total-Count"].is_object());

    let docs = app.send("GET", "/docs", None, None).await;
    assert_eq!(docs.status, 303);
    assert_eq!(docs.header("location"), Some("/docs/index.html"));
    let index = app.send("GET", "/docs/index.html", None, None).await;
    assert_eq!(index.status, 200);
    assert!(index.text.contains("swagger"), "Swagger UI page");
    let ui_config = app.send("GET", "/docs/swagger-ui-config.json", None, None).await.json();
    assert_eq!(ui_config["url"], "/openapi.json");
}

async fn metrics_and_security_headers(app: &TestApp) {
    let t = app.register("observer").await.access;
    app.get("/tasks/", &t).await;
    app.get("/tasks/12345", &t).await;
    app.send("GET", "/no/such/path", None, None).await;
    let res = app.send("GET", "/metrics", None, None).await;
    assert_eq!(res.status, 200);
    assert!(res.header("content-type").unwrap().starts_with("text/plain"));
    let text = &res.text;
    // Labelled by the route's pattern, never the raw path.
    for needle in [
        r#"http_requests_total{method="GET",route="/tasks",status="200"}"#,
        r#"http_requests_total{method="GET",route="/tasks/<id>",status="404"}"#,
        r#"http_requests_total{method="GET",route="unmatched",status="404"}"#,
        r#"http_request_duration_seconds_bucket{method="POST",route="/auth/register",status="201",le="0.005"}"#,
        "db_pool_connections ",
        "db_pool_idle_connections ",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    // (As a label value; a sample's value may well hold those digits.)
    assert!(!text.contains("/tasks/12345"), "raw paths must not become labels");
    if app.config.redis_url.is_some() {
        assert!(text.contains("redis_pool_connections "));
    }

    let res = app.get("/auth/me", &t).await;
    for (name, value) in [
        ("cache-control", "no-store"),
        ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(res.header(name), Some(value), "{name}");
    }
    // Errors carry them too; Swagger UI keeps the scripts it needs.
    assert_eq!(app.send("GET", "/nowhere", None, None).await.header("cache-control"), Some("no-store"));
    assert_eq!(app.send("GET", "/docs/index.html", None, None).await.header("content-security-policy"), None);
}

/// A user deleted while their token is still valid (a database restored from an older backup,
/// say): whatever the token asks is refused as 401, never a 500.
async fn tokens_of_a_deleted_user_are_401(app: &TestApp) {
    let tokens = app.register("vanished").await;
    let task = app.create_task(&tokens.access, json!({"title": "mine"})).await;
    let id = app.get("/auth/me", &tokens.access).await.json()["id"].as_i64().unwrap();
    let state = app.client.rocket().state::<tasklane_server::App>().unwrap();
    state.db.delete_user(id).await.unwrap();

    let detail = app.get("/auth/me", &tokens.access).await.problem(401)["detail"].clone();
    assert_eq!(detail, "the user of this token no longer exists");
    let created = app.post("/tasks/", Some(&tokens.access), json!({"title": "orphan"})).await;
    assert_eq!(created.problem(401)["detail"], detail);
    app.send("PUT", &format!("/tasks/{}", task["id"]), Some(&tokens.access), Some(json!({"title": "x"})))
        .await
        .problem(404);
    let list = app.get("/tasks/", &tokens.access).await;
    assert_eq!((list.status, list.json()), (200, json!([])));
    // Their session went with them.
    let refreshed = app.post("/auth/refresh", None, json!({"refresh_token": tokens.refresh})).await;
    refreshed.problem(401);
}
