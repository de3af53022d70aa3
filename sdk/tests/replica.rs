//! The change feed, and a replica kept current through it.
#![cfg(feature = "client")]

mod common;

use common::*;
use serde_json::{json, Value};
use tasklane::{Change, ChangePage, Error, Replica};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn upsert(id: i64, title: &str) -> Value {
    json!({"type": "upsert", "task": task(id, title)})
}

fn delete(id: i64) -> Value {
    json!({"type": "delete", "id": id})
}

fn page(changes: Vec<Value>, cursor: &str, has_more: bool) -> Value {
    json!({"changes": changes, "cursor": cursor, "has_more": has_more})
}

/// Mounts the answer `body` to `GET /tasks/changes` with `since` (or without it), expected once.
async fn mount_page(server: &MockServer, since: Option<&str>, answer: ResponseTemplate) {
    let mock = Mock::given(method("GET")).and(path("/tasks/changes"));
    let mock = match since {
        Some(since) => mock.and(query_param("since", since)),
        None => mock.and(query_param_is_missing("since")),
    };
    mock.respond_with(answer).expect(1).mount(server).await;
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

/// The titles a replica holds, by id.
fn titles(replica: &Replica) -> Vec<(i64, String)> {
    replica.tasks().values().map(|t| (t.id, t.title.clone())).collect()
}

fn owned(pairs: &[(i64, &str)]) -> Vec<(i64, String)> {
    pairs.iter().map(|(id, title)| (*id, (*title).to_owned())).collect()
}

#[tokio::test]
async fn changes_sends_the_cursor_and_the_page_size() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/tasks/changes"))
        .and(query_param("since", "c 1/+"))
        .and(query_param("limit", "1000"))
        .respond_with(ok(page(vec![upsert(1, "one"), delete(2)], "c2", true)))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let got = client.tasks().changes(Some("c 1/+")).limit(1000).await.unwrap();
    assert_eq!(got.changes.iter().map(Change::task_id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!((got.cursor.as_str(), got.has_more), ("c2", true));

    // Without a cursor or a size, no query at all.
    Mock::given(method("GET"))
        .and(path("/tasks/changes"))
        .respond_with(ok(page(vec![], "c0", false)))
        .mount(&server)
        .await;
    client.tasks().changes(None).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.last().unwrap().url.query(), None);
}

#[tokio::test]
async fn a_410_is_gone_and_is_not_retried() {
    let server = MockServer::start().await;
    mount_page(&server, Some("old"), problem(410, "cursor too old: start again without since")).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let err = client.tasks().changes(Some("old")).await.unwrap_err();

    assert!(matches!(err, Error::Gone { .. }), "{err:?}");
    assert_eq!((err.status(), err.request_id()), (Some(410), Some("req-410")));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn sync_applies_upserts_and_deletes_across_pages() {
    let server = MockServer::start().await;
    mount_page(
        &server,
        None,
        ok(page(vec![upsert(1, "one"), upsert(2, "two"), upsert(3, "three")], "c1", true)),
    )
    .await;
    // A task changed and one deleted while the first page was read, and one the replica never
    // saw, created and deleted meanwhile.
    mount_page(
        &server,
        Some("c1"),
        ok(page(vec![upsert(2, "two, edited"), delete(3), delete(99)], "c2", false)),
    )
    .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let mut replica = Replica::new();

    let report = replica.sync(&client).await.unwrap();

    assert_eq!(titles(&replica), owned(&[(1, "one"), (2, "two, edited")]));
    assert_eq!((replica.cursor(), replica.len()), (Some("c2"), 2));
    assert_eq!(replica.get(2).map(|t| t.title.as_str()), Some("two, edited"));
    assert_eq!((report.upserted, report.deleted), (vec![1, 2], vec![]));
    assert_eq!((report.resynced, report.pages), (false, 2));
}

#[tokio::test]
async fn a_saved_replica_resumes_from_its_cursor() {
    let mut replica = Replica::new();
    let first: ChangePage =
        serde_json::from_value(page(vec![upsert(1, "one"), upsert(2, "two")], "c2", false)).unwrap();
    replica.apply(&first);
    let saved = serde_json::to_string(&replica).unwrap();
    let mut replica: Replica = serde_json::from_str(&saved).unwrap();
    assert_eq!(titles(&replica), owned(&[(1, "one"), (2, "two")]));

    let server = MockServer::start().await;
    mount_page(&server, Some("c2"), ok(page(vec![delete(1), upsert(4, "four")], "c3", false))).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let report = replica.sync(&client).await.unwrap();

    assert_eq!(titles(&replica), owned(&[(2, "two"), (4, "four")]));
    assert_eq!(replica.cursor(), Some("c3"));
    assert_eq!((report.upserted, report.deleted, report.resynced), (vec![4], vec![1], false));

    // Nothing new: the same cursor back, and a report of nothing.
    server.reset().await;
    mount_page(&server, Some("c3"), ok(page(vec![], "c3", false))).await;
    let report = replica.sync(&client).await.unwrap();
    assert!(report.is_empty(), "{report:?}");
    assert_eq!(replica.cursor(), Some("c3"));
}

/// A cursor older than the server's tombstones: the deletions since are lost, so the replica
/// starts again from every task, and drops the ones that are gone.
#[tokio::test]
async fn a_cursor_too_old_resyncs_from_scratch() {
    let stale: ChangePage =
        serde_json::from_value(page(vec![upsert(1, "one"), upsert(2, "two")], "stale", false)).unwrap();
    let mut replica = Replica::new();
    replica.apply(&stale);
    let server = MockServer::start().await;
    mount_page(&server, Some("stale"), problem(410, "cursor too old")).await;
    let everything =
        [page(vec![upsert(2, "two, edited")], "f1", true), page(vec![upsert(5, "five")], "f2", false)];
    mount_page(&server, None, ok(everything[0].clone())).await;
    mount_page(&server, Some("f1"), ok(everything[1].clone())).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let report = replica.sync(&client).await.unwrap();

    // Exactly the full list, as a new replica would hold it.
    let mut fresh_replica = Replica::new();
    for body in everything {
        fresh_replica.apply(&serde_json::from_value(body).unwrap());
    }
    assert_eq!(replica, fresh_replica);
    assert_eq!(titles(&replica), owned(&[(2, "two, edited"), (5, "five")]));
    assert_eq!(replica.cursor(), Some("f2"));
    assert!(report.resynced);
    assert_eq!((report.upserted, report.deleted, report.pages), (vec![2, 5], vec![1], 2));
    let sinces: Vec<Option<String>> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.query_pairs().find(|(k, _)| k == "since").map(|(_, v)| v.into_owned()))
        .collect();
    assert_eq!(
        sinces,
        [Some("stale".to_owned()), None, Some("f1".to_owned())],
        "the stale cursor is dropped"
    );
}

/// A 410 to the full listing itself is not looped on.
#[tokio::test]
async fn a_410_without_a_cursor_is_returned() {
    let server = MockServer::start().await;
    mount_page(&server, Some("stale"), problem(410, "cursor too old")).await;
    mount_page(&server, None, problem(410, "odd")).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let mut replica = Replica::new();
    replica.apply(&serde_json::from_value(page(vec![upsert(1, "one")], "stale", false)).unwrap());
    let before = replica.clone();

    let err = replica.sync(&client).await.unwrap_err();

    assert!(matches!(err, Error::Gone { .. }), "{err:?}");
    assert_eq!(replica, before);
}

/// A sync that fails partway changes nothing: the next one starts from the same cursor.
#[tokio::test]
async fn a_failed_sync_leaves_the_replica_as_it_was() {
    let server = MockServer::start().await;
    mount_page(&server, Some("c1"), ok(page(vec![delete(1), upsert(2, "two")], "c2", true))).await;
    mount_page(&server, Some("c2"), problem(500, "bug")).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let mut replica = Replica::new();
    replica.apply(&serde_json::from_value(page(vec![upsert(1, "one")], "c1", false)).unwrap());
    let before = replica.clone();

    let err = replica.sync(&client).await.unwrap_err();

    assert_eq!(err.status(), Some(500));
    assert_eq!(replica, before);
}

/// A page that claims more but does not move the cursor on ends the sync rather than loop.
#[tokio::test]
async fn a_page_that_does_not_move_the_cursor_ends_the_sync() {
    let server = MockServer::start().await;
    mount_page(&server, Some("c1"), ok(page(vec![], "c1", true))).await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let mut replica = Replica::new();
    replica.apply(&serde_json::from_value(page(vec![upsert(1, "one")], "c1", false)).unwrap());

    let report = replica.sync(&client).await.unwrap();

    assert_eq!((report.pages, report.is_empty()), (1, true));
    assert_eq!(replica.cursor(), Some("c1"));
}

#[test]
fn apply_replaces_by_id_removes_and_ignores_unknown_ids() {
    let mut replica = Replica::new();
    assert_eq!((replica.len(), replica.is_empty(), replica.cursor()), (0, true, None));
    let pages = [
        page(vec![upsert(1, "one"), upsert(2, "two")], "c1", false),
        page(vec![upsert(1, "one, edited"), delete(2), delete(42)], "c2", false),
    ];
    for body in pages {
        replica.apply(&serde_json::from_value(body).unwrap());
    }
    assert_eq!(titles(&replica), owned(&[(1, "one, edited")]));
    assert_eq!(replica.cursor(), Some("c2"));
    assert!(replica.get(2).is_none());
}
