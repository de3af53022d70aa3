//! The tasks handle: requests on the wire, pages, links and the stream.
#![cfg(feature = "client")]

mod common;

use common::*;
use futures::TryStreamExt as _;
use serde_json::{json, Value};
use tasklane::{Client, Error, NewTask, Priority, TaskSort, TaskStatus, TaskUpdate};
use wiremock::matchers::{body_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn tasks(ids: std::ops::RangeInclusive<i64>) -> Value {
    ids.map(|id| task(id, &format!("task {id}"))).collect()
}

#[tokio::test]
async fn create_sends_the_trimmed_task_with_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/tasks/"))
        .and(header("authorization", "Bearer a0"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"title": "write docs", "description": "all", "status": "in_progress"})))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("location", "/tasks/7")
                .set_body_json(task(7, "write docs")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let new = NewTask::new("  write docs ").description("all").status(TaskStatus::InProgress);
    let created = client.tasks().create(new).await.unwrap();

    assert_eq!(created.id, 7);
}

#[tokio::test]
async fn get_update_patch_and_delete_use_their_methods_and_bodies() {
    let server = MockServer::start().await;
    let answer = || ResponseTemplate::new(200).set_body_json(task(5, "five"));
    Mock::given(method("GET")).and(path("/tasks/5")).respond_with(answer()).expect(1).mount(&server).await;
    Mock::given(method("PUT"))
        .and(path("/tasks/5"))
        .and(body_json(json!({"title": "five", "description": null})))
        .respond_with(answer())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/tasks/5"))
        .and(body_json(json!({"status": "done"})))
        .respond_with(answer())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/tasks/5"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let tasks = client.tasks();

    assert_eq!(tasks.get(5).await.unwrap().title, "five");
    tasks.update(5, TaskUpdate::new().title(" five ").clear_description()).await.unwrap();
    tasks.patch(5, TaskUpdate::new().status(TaskStatus::Done)).await.unwrap();
    tasks.delete(5).await.unwrap();
}

#[tokio::test]
async fn calls_made_in_a_closure_run_together() {
    let server = MockServer::start().await;
    for id in 1..=3 {
        Mock::given(method("GET"))
            .and(path(format!("/tasks/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(task(id, "t")))
            .expect(1)
            .mount(&server)
            .await;
    }
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    // Each future borrows the client, not the `Tasks` made inside the closure.
    let tasks = futures::future::try_join_all([1, 2, 3].map(|id| client.tasks().get(id))).await.unwrap();

    assert_eq!(tasks.iter().map(|t| t.id).collect::<Vec<_>>(), [1, 2, 3]);
}

#[tokio::test]
async fn a_missing_task_is_not_found() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/9")).respond_with(problem(404, "task 9 not found")).mount(&server).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let err = client.tasks().delete(9).await.unwrap_err();

    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(err.detail(), Some("task 9 not found"));
}

#[tokio::test]
async fn list_sends_the_query_and_reads_the_total_and_links() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/tasks/"))
        .and(query_param("status", "done"))
        .and(query_param("limit", "2"))
        .and(query_param("offset", "4"))
        .and(query_param("sort", "-title"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-total-count", "9")
                .insert_header(
                    "link",
                    r#"</tasks/?status=done&limit=2&offset=6&sort=-title>; rel="next", </tasks/?status=done&limit=2&offset=2&sort=-title>; rel="prev""#,
                )
                .set_body_json(tasks(5..=6)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let page = client
        .tasks()
        .list()
        .status(TaskStatus::Done)
        .limit(2)
        .offset(4)
        .sort(TaskSort::TitleDesc)
        .await
        .unwrap();

    assert_eq!(page.items.iter().map(|t| t.id).collect::<Vec<_>>(), [5, 6]);
    assert_eq!(page.total, Some(9));
    let uri = server.uri();
    assert_eq!(page.next.unwrap().as_str(), format!("{uri}/tasks/?status=done&limit=2&offset=6&sort=-title"));
    assert_eq!(page.prev.unwrap().as_str(), format!("{uri}/tasks/?status=done&limit=2&offset=2&sort=-title"));
}

#[tokio::test]
async fn a_plain_list_sends_no_query_and_the_last_page_has_no_next() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/"))
        .and(query_param_is_missing("limit"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("x-total-count", "1").set_body_json(tasks(1..=1)),
        )
        .expect(2)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let page = client.tasks().list().await.unwrap();

    assert_eq!((page.total, page.next.clone()), (Some(1), None));
    assert_eq!(client.tasks().next_page(&page).await.unwrap(), None);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].url.query(), None);
    // The page also iterates.
    let page = client.tasks().list().send().await.unwrap();
    assert_eq!(page.into_iter().count(), 1);
}

#[tokio::test]
async fn a_relative_link_resolves_against_the_request_url() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", r#"<?limit=1&offset=1>; rel="next""#)
                .set_body_json(tasks(1..=1)),
        )
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let page = client.tasks().list().limit(1).await.unwrap();

    assert_eq!(page.next.unwrap().as_str(), format!("{}/tasks/?limit=1&offset=1", server.uri()));
    assert_eq!(page.total, None, "no X-Total-Count, no total");
}

#[tokio::test]
async fn the_stream_follows_every_page_in_order() {
    let server = MockServer::start().await;
    let pages = [("0", 1..=2, Some("2")), ("2", 3..=4, Some("4")), ("4", 5..=5, None)];
    for (offset, ids, next) in pages {
        let mut answer =
            ResponseTemplate::new(200).insert_header("x-total-count", "5").set_body_json(tasks(ids));
        if let Some(next) = next {
            answer = answer
                .insert_header("link", format!(r#"</tasks/?limit=2&offset={next}>; rel="next""#).as_str());
        }
        Mock::given(path("/tasks/"))
            .and(query_param("limit", "2"))
            .and(query_param("offset", offset))
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
    }
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let all: Vec<_> = client.tasks().list().limit(2).offset(0).stream().try_collect().await.unwrap();

    assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn the_stream_reports_a_bad_query_and_stops_on_an_empty_page() {
    let server = MockServer::start().await;
    // An empty page that still links onwards: the stream must not loop on it.
    Mock::given(path("/tasks/"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", r#"</tasks/>; rel="next""#)
                .set_body_json(json!([])),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let bad: Result<Vec<_>, _> = client.tasks().list().limit(0).stream().try_collect().await;
    assert!(matches!(bad, Err(Error::Validation { .. })));
    let none: Vec<_> = client.tasks().list().stream().try_collect().await.unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_link_to_another_origin_is_refused() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", r#"<https://elsewhere.example/tasks/?offset=1>; rel="next""#)
                .set_body_json(tasks(1..=1)),
        )
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let err = client.tasks().list().await.unwrap_err();

    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(std::error::Error::source(&err).unwrap().to_string().contains("elsewhere.example"));
}

/// One page of `/api/tasks/` at `offset`, linking to the next page as the server does: by a
/// root-relative path that knows nothing of the `/api` prefix a proxy serves it under.
async fn mount_prefixed_page(
    server: &MockServer,
    offset: &str,
    ids: std::ops::RangeInclusive<i64>,
    next: Option<&str>,
) {
    let mut answer = ResponseTemplate::new(200).insert_header("x-total-count", "2").set_body_json(tasks(ids));
    if let Some(next) = next {
        answer =
            answer.insert_header("link", format!(r#"</tasks/?limit=1&offset={next}>; rel="next""#).as_str());
    }
    Mock::given(method("GET"))
        .and(path("/api/tasks/"))
        .and(query_param("offset", offset))
        .respond_with(answer)
        .expect(2)
        .mount(server)
        .await;
}

#[tokio::test]
async fn root_relative_links_resolve_below_a_base_url_with_a_path() {
    let server = MockServer::start().await;
    mount_prefixed_page(&server, "0", 1..=1, Some("1")).await;
    mount_prefixed_page(&server, "1", 2..=2, None).await;
    let client = Client::builder(format!("{}/api/", server.uri()))
        .retry_policy(fast_retries())
        .tokens(fresh("a0", "r0"))
        .build()
        .unwrap();

    let first = client.tasks().list().limit(1).offset(0).await.unwrap();
    assert_eq!(
        first.next.as_ref().unwrap().as_str(),
        format!("{}/api/tasks/?limit=1&offset=1", server.uri())
    );
    let second = client.tasks().next_page(&first).await.unwrap().expect("a second page");
    assert_eq!(second.items.iter().map(|t| t.id).collect::<Vec<_>>(), [2]);
    let all: Vec<_> = client.tasks().list().limit(1).offset(0).stream().try_collect().await.unwrap();
    assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), [1, 2]);

    // Nothing, and no token, went to the host's other paths.
    for request in server.received_requests().await.unwrap() {
        assert!(request.url.path().starts_with("/api/"), "{}", request.url);
    }
}

#[tokio::test]
async fn root_relative_links_that_carry_the_prefix_are_taken_as_they_are() {
    // A proxy that rewrites the server's links to include its prefix.
    let server = MockServer::start().await;
    Mock::given(path("/api/tasks/"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", r#"</api/tasks/?limit=1&offset=1>; rel="next""#)
                .set_body_json(tasks(1..=1)),
        )
        .mount(&server)
        .await;
    let client = Client::builder(format!("{}/api/", server.uri())).tokens(fresh("a0", "r0")).build().unwrap();
    let first = client.tasks().list().limit(1).await.unwrap();
    assert_eq!(first.next.unwrap().as_str(), format!("{}/api/tasks/?limit=1&offset=1", server.uri()));
}

#[tokio::test]
async fn absolute_links_must_stay_below_the_base_url() {
    let server = MockServer::start().await;
    let uri = server.uri();
    Mock::given(path("/api/tasks/"))
        .and(query_param("offset", "0"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", format!(r#"<{uri}/api/tasks/?offset=1>; rel="next""#).as_str())
                .set_body_json(tasks(1..=1)),
        )
        .mount(&server)
        .await;
    // Same host and port, but another application's path.
    Mock::given(path("/api/tasks/"))
        .and(query_param("offset", "1"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", format!(r#"<{uri}/other-app/tasks/?offset=2>; rel="next""#).as_str())
                .set_body_json(tasks(2..=2)),
        )
        .mount(&server)
        .await;
    let client = Client::builder(format!("{uri}/api")).tokens(fresh("a0", "r0")).build().unwrap();

    let first = client.tasks().list().offset(0).await.unwrap();
    assert_eq!(first.next.unwrap().as_str(), format!("{uri}/api/tasks/?offset=1"));
    let err = client.tasks().list().offset(1).await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(std::error::Error::source(&err).unwrap().to_string().contains("other-app"), "{err:?}");
}

#[tokio::test]
async fn network_path_links_are_not_taken_for_api_paths() {
    // `//host/..` (and `/\host/..`, which URL parsers read alike) name another host.
    for target in [r"//elsewhere.example/tasks/", r"/\elsewhere.example/tasks/"] {
        let server = MockServer::start().await;
        Mock::given(path("/api/tasks/"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("link", format!(r#"<{target}>; rel="next""#).as_str())
                    .set_body_json(tasks(1..=1)),
            )
            .mount(&server)
            .await;
        let client =
            Client::builder(format!("{}/api/", server.uri())).tokens(fresh("a0", "r0")).build().unwrap();

        let err = client.tasks().list().await.unwrap_err();

        assert!(matches!(err, Error::Decode { .. }), "{target}: {err:?}");
    }
}

/// The task model's builders put due dates (in UTC), priorities and labels on the wire, and a
/// task's new fields are read back typed.
#[tokio::test]
async fn builders_send_the_task_model_and_read_it_back() {
    let server = MockServer::start().await;
    let mut answer = task(8, "Pay rent");
    answer["due_at"] = json!("2026-12-24T16:00:00Z");
    answer["priority"] = json!("high");
    answer["labels"] = json!(["home"]);
    answer["completed_at"] = Value::Null;
    answer["version"] = json!(1);
    Mock::given(method("POST"))
        .and(path("/tasks/"))
        .and(body_json(json!({
            "title": "Pay rent", "due_at": "2026-12-24T16:00:00Z", "priority": "high", "labels": ["home"]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(&answer))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/tasks/8"))
        .and(body_json(json!({"due_at": null, "priority": "low", "labels": ["errands", "home"]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(&answer))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let due: chrono::DateTime<chrono::Utc> = "2026-12-24T17:00:00+01:00".parse().unwrap();
    let new = NewTask::new("Pay rent").due(due).priority(Priority::High).label(" home ");
    let created = client.tasks().create(new).await.unwrap();
    assert_eq!(created.due_at, Some(due));
    assert_eq!(
        (created.priority, created.labels.as_slice(), created.version),
        (Priority::High, &["home".to_owned()][..], 1)
    );
    let update = TaskUpdate::new().clear_due().priority(Priority::Low).label("home").label("errands");
    client.tasks().patch(8, update).await.unwrap();
}

/// The builders check the shared rules before anything is sent.
#[tokio::test]
async fn bad_labels_and_searches_fail_before_a_round_trip() {
    let server = MockServer::start().await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let too_long = "x".repeat(33);
    for new in [
        NewTask::new("t").label(""),
        NewTask::new("t").label(too_long.as_str()),
        NewTask::new("t").labels((0..21).map(|i| i.to_string())),
    ] {
        let err = client.tasks().create(new).await.unwrap_err();
        let Error::Validation { errors, response: None } = &err else { panic!("{err:?}") };
        assert_eq!(errors[0].field, "labels");
    }
    let err = client.tasks().list().search("").await.unwrap_err();
    assert!(matches!(err, Error::Validation { .. }), "{err:?}");
    let err = client.tasks().list().label(" ").await.unwrap_err();
    assert!(matches!(err, Error::Validation { .. }), "{err:?}");
    assert!(server.received_requests().await.unwrap().is_empty(), "nothing was sent");
}

/// Every list filter goes on the query string, labels repeated and times in UTC.
#[tokio::test]
async fn list_filters_go_on_the_query() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/tasks/"))
        .and(query_param("priority", "high"))
        .and(query_param("due_before", "2026-12-24T16:00:00Z"))
        .and(query_param("due_after", "2026-12-01T00:00:00Z"))
        .and(query_param("q", "50% off & more"))
        .and(query_param("sort", "-due_at"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("x-total-count", "1").set_body_json(tasks(1..=1)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let page = client
        .tasks()
        .list()
        .priority(Priority::High)
        .label("home")
        .label("Work")
        .due_before("2026-12-24T17:00:00+01:00".parse().unwrap())
        .due_after("2026-12-01T00:00:00Z".parse().unwrap())
        .search("50% off & more")
        .sort(TaskSort::DueAtDesc)
        .await
        .unwrap();
    assert_eq!(page.total, Some(1));
    let requests = server.received_requests().await.unwrap();
    let labels: Vec<String> =
        requests[0].url.query_pairs().filter(|(k, _)| k == "label").map(|(_, v)| v.into_owned()).collect();
    assert_eq!(labels, ["home", "Work"], "repeated, in order");
}
