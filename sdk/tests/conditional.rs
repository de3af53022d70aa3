//! Entity tags and conditional requests: no update is lost to another client's.
#![cfg(feature = "client")]

mod common;

use common::*;
use serde_json::json;
use tasklane::{ETag, Error, NewTask, Task, TaskStatus, TaskUpdate};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn etag(value: &str) -> ETag {
    value.parse().unwrap()
}

#[tokio::test]
async fn every_answer_with_one_task_carries_its_etag() {
    let server = MockServer::start().await;
    let (v1, tag1) = versioned(5, "five", 1);
    let (v2, tag2) = versioned(5, "five", 2);
    let answer = |status, body, tag: &str| {
        ResponseTemplate::new(status).insert_header("etag", tag).set_body_json(body)
    };
    Mock::given(method("POST"))
        .and(path("/tasks/"))
        .respond_with(answer(201, &v1, &tag1))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tasks/5"))
        .respond_with(answer(200, &v1, &tag1))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/tasks/5"))
        .respond_with(answer(200, &v2, &tag2))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/tasks/5"))
        .respond_with(answer(200, &v2, &tag2))
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let tasks = client.tasks();

    let created = tasks.create(NewTask::new("five")).await.unwrap();
    assert_eq!(created.etag(), Some(&etag(r#""5-1""#)));
    let got = tasks.get(5).await.unwrap();
    assert_eq!((got.id, got.title.as_str(), got.etag()), (5, "five", Some(&etag(r#""5-1""#))));
    let updated = tasks.update(5, TaskUpdate::new().title("five")).await.unwrap();
    assert_eq!((updated.version, updated.etag()), (2, Some(&etag(r#""5-2""#))));
    let patched = tasks.patch(5, TaskUpdate::new().title("five")).await.unwrap();
    assert_eq!(patched.etag(), Some(&etag(r#""5-2""#)));

    // The task itself, kept without its tag.
    let (task, tag) = patched.into_parts();
    assert_eq!((task.version, tag), (2, Some(etag(r#""5-2""#))));
    let task: Task = got.into();
    assert_eq!(task.version, 1);
}

#[tokio::test]
async fn an_answer_without_a_valid_etag_has_none() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(task(1, "one")))
        .mount(&server)
        .await;
    Mock::given(path("/tasks/2"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("etag", "unquoted").set_body_json(task(2, "two")),
        )
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    assert_eq!(client.tasks().get(1).await.unwrap().etag(), None);
    assert_eq!(client.tasks().get(2).await.unwrap().etag(), None);
}

#[tokio::test]
async fn conditional_writes_send_if_match_exactly() {
    let server = MockServer::start().await;
    let (mut v4, tag4) = versioned(3, "three", 4);
    v4["status"] = json!("done");
    for verb in ["PUT", "PATCH"] {
        Mock::given(method(verb))
            .and(path("/tasks/3"))
            .and(body_json(json!({"status": "done"})))
            .respond_with(ResponseTemplate::new(200).insert_header("etag", tag4.as_str()).set_body_json(&v4))
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("DELETE"))
        .and(path("/tasks/3"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/tasks/4"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let tasks = client.tasks();
    let done = || TaskUpdate::new().status(TaskStatus::Done);

    let updated = tasks.update_if(3, &etag(r#""3-3""#), done()).await.unwrap();
    assert_eq!((updated.status, updated.etag()), (TaskStatus::Done, Some(&etag(&tag4))));
    tasks.patch_if(3, &etag(r#"W/"3-3""#), done()).await.unwrap();
    tasks.delete_if(3, &etag(r#""3-4""#)).await.unwrap();
    tasks.delete(4).await.unwrap();

    assert_eq!(
        sent_header(&server, "if-match").await,
        [Some(r#""3-3""#.to_owned()), Some(r#"W/"3-3""#.to_owned()), Some(r#""3-4""#.to_owned()), None]
    );
    assert_eq!(sent_header(&server, "if-none-match").await, [None, None, None, None]);
}

#[tokio::test]
async fn a_412_is_precondition_failed_with_the_current_etag_and_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/tasks/3"))
        .respond_with(problem(412, "the task has changed").insert_header("etag", r#""3-9""#))
        .expect(1)
        .mount(&server)
        .await;
    // A task deleted meanwhile: no current tag.
    Mock::given(method("DELETE"))
        .and(path("/tasks/4"))
        .respond_with(problem(412, "gone"))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let err =
        client.tasks().update_if(3, &etag(r#""3-3""#), TaskUpdate::new().title("mine")).await.unwrap_err();

    let Error::PreconditionFailed { current_etag, response } = &err else { panic!("{err:?}") };
    assert_eq!(current_etag.as_ref(), Some(&etag(r#""3-9""#)));
    assert_eq!(response.detail, "the task has changed");
    assert_eq!((err.status(), err.request_id()), (Some(412), Some("req-412")));
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("the task has changed"), "{err}");

    let err = client.tasks().delete_if(4, &etag(r#""4-1""#)).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { current_etag: None, .. }), "{err:?}");
}

#[tokio::test]
async fn a_conditional_get_is_none_while_the_task_is_unchanged() {
    let server = MockServer::start().await;
    let (v2, tag2) = versioned(6, "six", 2);
    Mock::given(method("GET"))
        .and(path("/tasks/6"))
        .and(wiremock::matchers::header("if-none-match", r#""6-2""#))
        .respond_with(ResponseTemplate::new(304).insert_header("etag", tag2.as_str()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tasks/6"))
        .and(wiremock::matchers::header("if-none-match", r#""6-1""#))
        .respond_with(ResponseTemplate::new(200).insert_header("etag", tag2.as_str()).set_body_json(&v2))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    assert_eq!(client.tasks().get_if_changed(6, &etag(r#""6-2""#)).await.unwrap(), None);
    let newer = client.tasks().get_if_changed(6, &etag(r#""6-1""#)).await.unwrap().expect("changed");
    assert_eq!((newer.version, newer.etag()), (2, Some(&etag(&tag2))));
}

/// A 304 is an answer only to a request that asked for one; otherwise it is an error.
#[tokio::test]
async fn an_unasked_for_304_is_an_error() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/6")).respond_with(ResponseTemplate::new(304)).mount(&server).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let err = client.tasks().get(6).await.unwrap_err();

    assert!(matches!(err, Error::Http { .. }), "{err:?}");
    assert_eq!(err.status(), Some(304));
}
