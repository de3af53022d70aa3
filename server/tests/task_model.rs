//! The version 2 task model (docs/API.md, "Task model"), through Rocket's local client, on
//! every backend: due dates, priority, labels, completion, version, and the list's filters and
//! sorts over them.

mod common;

use common::TestApp;
use serde_json::{json, Value};

backend_tests![
    new_fields_have_their_defaults,
    due_dates_are_normalised_to_utc_and_checked,
    labels_are_trimmed_deduplicated_sorted_and_bounded,
    completed_at_follows_the_status,
    version_counts_changes_and_nothing_else,
    version_1_bodies_leave_the_new_fields_alone,
    read_only_and_null_fields_are_refused,
    each_filter_alone_and_combined,
    search_is_a_literal_substring_ignoring_case,
    a_large_match_pages_like_a_small_one,
    sorts_by_due_date_and_priority_with_ties,
    bad_list_parameters_are_422_naming_them,
];

async fn user(app: &TestApp, name: &str) -> String {
    app.register(name).await.access
}

/// The titles of a listing, in order, and its `X-Total-Count`.
async fn titles(app: &TestApp, token: &str, query: &str) -> (Vec<String>, u64) {
    let res = app.get(&format!("/tasks/?{query}"), token).await;
    assert_eq!(res.status, 200, "{query}: {}", res.text);
    let total = res.header("x-total-count").unwrap().parse().unwrap();
    let titles =
        res.json().as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap().to_owned()).collect();
    (titles, total)
}

async fn patch(app: &TestApp, token: &str, id: &Value, body: Value) -> common::Resp {
    app.send("PATCH", &format!("/tasks/{id}"), Some(token), Some(body)).await
}

async fn new_fields_have_their_defaults(app: &TestApp) {
    let t = user(app, "defaults").await;
    let task = app.create_task(&t, json!({"title": "plain"})).await;
    assert_eq!(task["due_at"], Value::Null);
    assert_eq!(task["priority"], "none");
    assert_eq!(task["labels"], json!([]));
    assert_eq!(task["completed_at"], Value::Null);
    assert_eq!(task["version"], 1);
    // Every field is always present, the nulls included.
    for field in ["due_at", "priority", "labels", "completed_at", "version"] {
        assert!(task.as_object().unwrap().contains_key(field), "{field}");
    }
    let read = app.get(&format!("/tasks/{}", task["id"]), &t).await.json();
    assert_eq!(read, task);
}

async fn due_dates_are_normalised_to_utc_and_checked(app: &TestApp) {
    let t = user(app, "due").await;
    let task =
        app.create_task(&t, json!({"title": "rent", "due_at": "2026-12-24T17:00:00.123456789+01:00"})).await;
    // In UTC, and kept to the microsecond as both databases store it.
    assert_eq!(task["due_at"], "2026-12-24T16:00:00.123456Z");
    assert_eq!(app.get(&format!("/tasks/{}", task["id"]), &t).await.json()["due_at"], task["due_at"]);
    let moved = patch(app, &t, &task["id"], json!({"due_at": "2027-01-01T00:00:00-05:00"})).await.json();
    assert_eq!(moved["due_at"], "2027-01-01T05:00:00Z");
    let cleared = patch(app, &t, &task["id"], json!({"due_at": null})).await.json();
    assert_eq!(cleared["due_at"], Value::Null);
    for bad in ["2026-12-24", "2026-12-24T17:00:00", "tomorrow", "2026-13-01T00:00:00Z"] {
        let res = app.post("/tasks/", Some(&t), json!({"title": "x", "due_at": bad})).await;
        assert_eq!(res.problem(422)["errors"][0]["field"], "due_at", "{bad}");
        let res = patch(app, &t, &task["id"], json!({"due_at": bad})).await;
        assert_eq!(res.problem(422)["errors"][0]["field"], "due_at", "{bad}");
    }
}

async fn labels_are_trimmed_deduplicated_sorted_and_bounded(app: &TestApp) {
    let t = user(app, "labels").await;
    let task = app
        .create_task(
            &t,
            json!({"title": "x", "labels": ["  work", "Home ", "home", "WORK", "Äpfel", "äpfel"]}),
        )
        .await;
    // Trimmed; a duplicate ignoring case collapses to its first spelling; sorted by lowercase.
    assert_eq!(task["labels"], json!(["Home", "work", "Äpfel"]));
    let replaced = patch(app, &t, &task["id"], json!({"labels": ["b", "A"]})).await.json();
    assert_eq!(replaced["labels"], json!(["A", "b"]), "an update replaces the whole set");
    let emptied = patch(app, &t, &task["id"], json!({"labels": []})).await.json();
    assert_eq!(emptied["labels"], json!([]));

    let twenty: Vec<String> = (0..20).map(|i| format!("l{i}")).collect();
    let count = |task: Value| task["labels"].as_array().unwrap().len();
    assert_eq!(count(app.create_task(&t, json!({"title": "x", "labels": twenty})).await), 20);
    let mut with_duplicates: Vec<String> = (0..10).map(|i| format!("l{i}")).collect();
    with_duplicates.extend((0..10).map(|i| format!("L{i}")));
    assert_eq!(count(app.create_task(&t, json!({"title": "x", "labels": with_duplicates})).await), 10);
    let longest = "é".repeat(32);
    assert_eq!(app.create_task(&t, json!({"title": "x", "labels": [longest]})).await["labels"][0], longest);
    let mut too_many = twenty;
    too_many.push("l20".to_owned());
    let bad_sets = [
        json!(too_many),
        json!(["é".repeat(33)]),
        json!([""]),
        json!(["   "]),
        json!(["tab\there"]),
        json!(["nul\u{0}"]),
        json!([["nested"]]),
        json!([1]),
        json!("home"),
    ];
    for labels in bad_sets {
        let res = app.post("/tasks/", Some(&t), json!({"title": "x", "labels": labels})).await;
        assert_eq!(res.problem(422)["errors"][0]["field"], "labels", "{labels}");
        let res = patch(app, &t, &task["id"], json!({"labels": labels})).await;
        assert_eq!(res.problem(422)["errors"][0]["field"], "labels", "{labels}");
    }
    assert_eq!(app.get(&format!("/tasks/{}", task["id"]), &t).await.json()["labels"], json!([]));
}

async fn completed_at_follows_the_status(app: &TestApp) {
    let t = user(app, "completion").await;
    let done = app.create_task(&t, json!({"title": "born done", "status": "done"})).await;
    assert_eq!(done["completed_at"], done["created_at"], "created done: completed at creation");

    let task = app.create_task(&t, json!({"title": "work"})).await;
    let started = patch(app, &t, &task["id"], json!({"status": "in_progress"})).await.json();
    assert_eq!(started["completed_at"], Value::Null);
    let finished = patch(app, &t, &task["id"], json!({"status": "done"})).await.json();
    assert_eq!(finished["completed_at"], finished["updated_at"], "the change that made it done");
    let renamed = patch(app, &t, &task["id"], json!({"title": "work, done", "status": "done"})).await.json();
    assert_eq!(renamed["completed_at"], finished["completed_at"], "unchanged while it stays done");
    assert_ne!(renamed["updated_at"], finished["updated_at"]);
    let reopened = patch(app, &t, &task["id"], json!({"status": "pending"})).await.json();
    assert_eq!(reopened["completed_at"], Value::Null, "cleared when it leaves done");
}

async fn version_counts_changes_and_nothing_else(app: &TestApp) {
    let t = user(app, "versions").await;
    let task = app.create_task(&t, json!({"title": "v"})).await;
    let id = &task["id"];
    assert_eq!(task["version"], 1);
    assert_eq!(patch(app, &t, id, json!({"title": "v2"})).await.json()["version"], 2);
    let put = app.send("PUT", &format!("/tasks/{id}"), Some(&t), Some(json!({"priority": "high"}))).await;
    assert_eq!(put.json()["version"], 3);
    assert_eq!(patch(app, &t, id, json!({"labels": ["x"]})).await.json()["version"], 4);
    // A rejected update changes nothing, the version included; nor does an empty one.
    patch(app, &t, id, json!({"title": ""})).await.problem(422);
    patch(app, &t, id, json!({"labels": ["x"], "priority": "urgent"})).await.problem(422);
    assert_eq!(patch(app, &t, id, json!({})).await.json()["version"], 4);
    let read = app.get(&format!("/tasks/{id}"), &t).await.json();
    assert_eq!(
        (read["version"].clone(), read["title"].clone(), read["priority"].clone()),
        (json!(4), json!("v2"), json!("high"))
    );
    assert_eq!(read["labels"], json!(["x"]));
}

async fn version_1_bodies_leave_the_new_fields_alone(app: &TestApp) {
    let t = user(app, "compat").await;
    let task = app
        .create_task(
            &t,
            json!({"title": "full", "due_at": "2026-12-24T16:00:00Z", "priority": "medium", "labels": ["a"]}),
        )
        .await;
    for (method, body) in [
        ("PUT", json!({"title": "renamed"})),
        ("PATCH", json!({"description": "d", "status": "in_progress"})),
    ] {
        let res = app.send(method, &format!("/tasks/{}", task["id"]), Some(&t), Some(body)).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let updated = res.json();
        assert_eq!(updated["due_at"], "2026-12-24T16:00:00Z", "{method}");
        assert_eq!(updated["priority"], "medium", "{method}");
        assert_eq!(updated["labels"], json!(["a"]), "{method}");
    }
    // A version 1 create still works and answers every field.
    let old = app
        .post("/tasks/", Some(&t), json!({"title": "old client", "description": null, "status": "pending"}))
        .await;
    assert_eq!(old.status, 201, "{}", old.text);
}

async fn read_only_and_null_fields_are_refused(app: &TestApp) {
    let t = user(app, "readonly").await;
    let task = app.create_task(&t, json!({"title": "x"})).await;
    for (field, value) in [
        ("version", json!(7)),
        ("completed_at", json!("2026-01-01T00:00:00Z")),
        ("priority", Value::Null),
        ("labels", Value::Null),
        ("priority", json!("urgent")),
        ("priority", json!(2)),
    ] {
        let mut body = json!({"title": "x"});
        body[field] = value.clone();
        let res = app.post("/tasks/", Some(&t), body).await;
        assert_eq!(res.problem(422)["errors"][0]["field"], field, "create {field}: {value}");
        let res = patch(app, &t, &task["id"], json!({ field: value })).await;
        assert_eq!(res.problem(422)["errors"][0]["field"], field, "update {field}: {value}");
    }
    assert_eq!(app.get(&format!("/tasks/{}", task["id"]), &t).await.json()["version"], 1);
}

async fn each_filter_alone_and_combined(app: &TestApp) {
    let t = user(app, "filters").await;
    for (title, body) in [
        ("a", json!({"priority": "high", "labels": ["Home", "urgent"], "due_at": "2026-12-01T00:00:00Z"})),
        ("b", json!({"priority": "high", "labels": ["home"], "due_at": "2026-12-10T00:00:00Z"})),
        (
            "c",
            json!({"priority": "low", "labels": ["work"], "due_at": "2026-12-20T00:00:00Z", "status": "done"}),
        ),
        ("d", json!({"priority": "none", "labels": ["HOME", "Work"]})),
        ("e", json!({})),
    ] {
        let mut body = body;
        body["title"] = json!(title);
        app.create_task(&t, body).await;
    }
    // Another user's tasks are never counted.
    let other = user(app, "filters2").await;
    app.create_task(&other, json!({"title": "a", "priority": "high", "labels": ["home"]})).await;

    let sorted = |query: &str| format!("sort=title&{query}");
    for (query, expected) in [
        ("priority=high", vec!["a", "b"]),
        ("priority=none", vec!["d", "e"]),
        ("label=home", vec!["a", "b", "d"]),
        ("label=HOME&label=work", vec!["d"]),
        ("label=home&label=urgent", vec!["a"]),
        ("label=nowhere", vec![]),
        ("due_before=2026-12-10T00:00:00Z", vec!["a"]),
        ("due_after=2026-12-10T00:00:00Z", vec!["b", "c"]),
        ("due_after=2026-12-02T00:00:00%2B01:00&due_before=2026-12-20T00:00:00Z", vec!["b"]),
        ("status=done", vec!["c"]),
        ("priority=high&label=home&due_after=2026-12-05T00:00:00Z", vec!["b"]),
        ("label=work&status=pending", vec!["d"]),
    ] {
        let (titles, total) = titles(app, &t, &sorted(query)).await;
        assert_eq!(titles, expected, "{query}");
        assert_eq!(total, expected.len() as u64, "{query}: X-Total-Count");
    }
    // The paging links carry every filter.
    let res = app.get("/tasks/?label=home&priority=high&limit=1&sort=title", &t).await;
    assert_eq!(res.header("x-total-count"), Some("2"));
    let link = res.header("link").unwrap().to_owned();
    assert!(link.contains("label=home") && link.contains("priority=high"), "{link}");
    let next = link.split(['<', '>']).nth(1).unwrap();
    let page = titles(app, &t, next.trim_start_matches("/tasks/?")).await;
    assert_eq!(page, (vec!["b".to_owned()], 2));

    // Labels alone are counted from the label rows: a page inside, a page past the end (the
    // count alone), several labels, and after a labelled task is deleted.
    for (query, expected, total) in [
        ("label=home&sort=-title&limit=2&offset=1", vec!["b", "a"], 3),
        ("label=home&label=work&offset=5", vec![], 1),
        ("label=home&offset=3", vec![], 3),
        ("label=home&q=a&offset=1", vec![], 1),
        // Three labels, and one of them twice (as cases of one label).
        ("label=home&label=urgent&label=work", vec![], 0),
        ("label=urgent&label=home&label=Home", vec!["a"], 1),
    ] {
        let expected = expected.into_iter().map(str::to_owned).collect();
        assert_eq!(titles(app, &t, query).await, (expected, total), "{query}");
    }
    let b = app.get("/tasks/?sort=title&offset=1&limit=1", &t).await.json()[0].clone();
    assert_eq!(b["title"], "b");
    assert_eq!(app.send("DELETE", &format!("/tasks/{}", b["id"]), Some(&t), None).await.status, 204);
    assert_eq!(titles(app, &t, "label=home&sort=title").await, (vec!["a".to_owned(), "d".to_owned()], 2));
}

/// Hundreds of tasks matching a label and a word: SQLite finds a page of so many by walking
/// the sort's index rather than reading them all, which must page and count alike.
async fn a_large_match_pages_like_a_small_one(app: &TestApp) {
    let t = user(app, "bulk").await;
    let n = 600;
    for i in 0..n {
        let labels = if i % 3 == 0 { json!(["bulk", "third"]) } else { json!(["bulk"]) };
        let title = format!("task {i:04}");
        app.create_task(&t, json!({"title": title, "description": "common words", "labels": labels})).await;
    }
    app.create_task(&t, json!({"title": "unlabelled"})).await;
    let expect = |from: usize, step: usize, count: usize| -> Vec<String> {
        (0..n).filter(|i| i % step == 0).skip(from).take(count).map(|i| format!("task {i:04}")).collect()
    };
    for (query, expected, total) in [
        ("label=bulk&sort=title&limit=3&offset=550", expect(550, 1, 3), n),
        ("q=common&sort=title&limit=3&offset=550", expect(550, 1, 3), n),
        ("label=bulk&q=common&sort=title&limit=2", expect(0, 1, 2), n),
        ("label=bulk&label=third&sort=title&limit=3&offset=100", expect(100, 3, 3), n / 3),
        ("label=bulk&sort=-title&limit=2", vec!["task 0599".to_owned(), "task 0598".to_owned()], n),
        ("label=bulk&offset=600", vec![], n),
    ] {
        assert_eq!(titles(app, &t, query).await, (expected, total as u64), "{query}");
    }
}

async fn search_is_a_literal_substring_ignoring_case(app: &TestApp) {
    let t = user(app, "searcher").await;
    for (title, description) in [
        ("Buy ÄPFEL", Some("at the market")),
        ("pears", Some("not äpfel, said nobody")),
        ("100% done", None),
        ("a_b c*d", None),
        ("plain", Some("nothing here")),
    ] {
        app.create_task(&t, json!({"title": title, "description": description})).await;
    }
    let other = user(app, "searcher2").await;
    app.create_task(&other, json!({"title": "Äpfel of someone else"})).await;
    for (q, expected) in [
        ("äpfel", vec!["Buy ÄPFEL", "pears"]),
        ("ÄPF", vec!["Buy ÄPFEL", "pears"]),
        ("MARKET", vec!["Buy ÄPFEL"]),
        ("%", vec!["100% done"]),
        ("0% d", vec!["100% done"]),
        ("_", vec!["a_b c*d"]),
        ("c*d", vec!["a_b c*d"]),
        ("a%b", vec![]),
        ("\"", vec![]),
        ("ab", vec![]),
        ("no", vec!["plain", "pears"]),
        ("zz", vec![]),
    ] {
        let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("q", q).finish();
        let (mut titles, total) = titles(app, &t, &query).await;
        titles.sort();
        let mut expected: Vec<String> = expected.into_iter().map(str::to_owned).collect();
        expected.sort();
        assert_eq!(titles, expected, "q={q}");
        assert_eq!(total, expected.len() as u64, "q={q}");
    }
    // A changed title is found by its new words, not its old ones.
    let task = app.create_task(&t, json!({"title": "rename me"})).await;
    patch(app, &t, &task["id"], json!({"title": "Quarterly report"})).await;
    assert_eq!(titles(app, &t, "q=quarterly").await.0, ["Quarterly report"]);
    assert_eq!(titles(app, &t, "q=rename").await.1, 0);
    app.send("DELETE", &format!("/tasks/{}", task["id"]), Some(&t), None).await;
    assert_eq!(titles(app, &t, "q=quarterly").await.1, 0);
}

async fn sorts_by_due_date_and_priority_with_ties(app: &TestApp) {
    let t = user(app, "sorter").await;
    let mut ids = Vec::new();
    for (title, due, priority) in [
        ("n1", None, "high"),
        ("d2", Some("2026-12-02T00:00:00Z"), "low"),
        ("d1a", Some("2026-12-01T00:00:00Z"), "none"),
        ("n2", None, "low"),
        ("d1b", Some("2026-12-01T00:00:00Z"), "high"),
    ] {
        let task = app.create_task(&t, json!({"title": title, "due_at": due, "priority": priority})).await;
        ids.push(task["id"].as_i64().unwrap());
    }
    // Ties go by id in the sort's direction; no due date comes last both ways.
    assert_eq!(titles(app, &t, "sort=due_at").await.0, ["d1a", "d1b", "d2", "n1", "n2"]);
    assert_eq!(titles(app, &t, "sort=-due_at").await.0, ["d2", "d1b", "d1a", "n2", "n1"]);
    assert_eq!(titles(app, &t, "sort=priority").await.0, ["d1a", "d2", "n2", "n1", "d1b"]);
    assert_eq!(titles(app, &t, "sort=-priority").await.0, ["d1b", "n1", "n2", "d2", "d1a"]);
    // Paged, the order holds across pages.
    let first = titles(app, &t, "sort=-due_at&limit=2").await.0;
    let second = titles(app, &t, "sort=-due_at&limit=2&offset=2").await.0;
    let third = titles(app, &t, "sort=-due_at&limit=2&offset=4").await.0;
    assert_eq!([first, second, third].concat(), ["d2", "d1b", "d1a", "n2", "n1"]);
    let _ = ids;
}

async fn bad_list_parameters_are_422_naming_them(app: &TestApp) {
    let t = user(app, "badparams").await;
    let long_q = "q".repeat(201);
    let long_label = "l".repeat(33);
    for (query, field) in [
        ("priority=urgent", "priority"),
        ("priority=", "priority"),
        ("due_before=2026-12-24", "due_before"),
        ("due_after=2026-12-24T17:00:00", "due_after"),
        ("due_after=soon", "due_after"),
        ("q=", "q"),
        (&format!("q={long_q}") as &str, "q"),
        ("label=", "label"),
        ("label=%20%20", "label"),
        (&format!("label=ok&label={long_label}"), "label"),
        ("sort=due", "sort"),
        ("q=a&q=b", "q"),
    ] {
        let res = app.get(&format!("/tasks/?{query}"), &t).await;
        let problem = res.problem(422);
        let fields: Vec<&str> =
            problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, [field], "{query}");
    }
    // Exactly 200 characters is fine, and so are 32-character labels.
    assert_eq!(app.get(&format!("/tasks/?q={}", "q".repeat(200)), &t).await.status, 200);
    assert_eq!(app.get(&format!("/tasks/?label={}", "l".repeat(32)), &t).await.status, 200);
}
