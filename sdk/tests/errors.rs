//! How answers and failures become typed errors.
#![cfg(feature = "client")]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tasklane::{Client, Error, NewTask, RetryPolicy, TaskUpdate};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn every_error_status_becomes_its_variant_with_detail_and_request_id() {
    let server = MockServer::start().await;
    let statuses = [400, 401, 404, 409, 410, 412, 413, 415, 422, 429, 500, 503];
    for status in statuses {
        let mut answer = problem(status, &format!("detail {status}"));
        if status == 429 {
            answer = answer.insert_header("retry-after", "7");
        }
        Mock::given(path(format!("/tasks/{status}"))).respond_with(answer).mount(&server).await;
    }
    // A 401 is followed by one refresh and one replay; the replay's 401 is what is returned.
    mount_refresh(&server, "r0", "a0", "r0", 1).await;
    let client =
        builder(&server).tokens(fresh("a0", "r0")).retry_policy(RetryPolicy::disabled()).build().unwrap();

    for status in statuses {
        let err = client.tasks().get(status.into()).await.unwrap_err();
        let variant_ok = match status {
            401 => matches!(err, Error::Unauthorized { .. }),
            404 => matches!(err, Error::NotFound { .. }),
            409 => matches!(err, Error::Conflict { .. }),
            410 => matches!(err, Error::Gone { .. }),
            412 => matches!(err, Error::PreconditionFailed { current_etag: None, .. }),
            422 => matches!(err, Error::Validation { .. }),
            429 => {
                matches!(err, Error::RateLimited { .. }) && err.retry_after() == Some(Duration::from_secs(7))
            }
            500 | 503 => matches!(err, Error::Server { .. }),
            _ => matches!(err, Error::Http { .. }),
        };
        assert!(variant_ok, "{status}: {err:?}");
        assert_eq!(err.status(), Some(status));
        assert_eq!(err.detail(), Some(format!("detail {status}").as_str()));
        assert_eq!(err.request_id(), Some(format!("req-{status}").as_str()));
        assert_eq!(err.is_retryable(), matches!(status, 429 | 503), "{status}");
        assert!(err.to_string().contains(&format!("detail {status}")), "{err}");
    }
}

#[tokio::test]
async fn a_422_carries_the_field_errors() {
    let server = MockServer::start().await;
    let body = json!({
        "type": "about:blank", "title": "Unprocessable Entity", "status": 422,
        "detail": "sort must be one of ...",
        "errors": [{"field": "sort", "message": "must be one of created_at, -created_at"}]
    });
    Mock::given(path("/tasks/"))
        .respond_with(ResponseTemplate::new(422).set_body_raw(body.to_string(), "application/problem+json"))
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let err = client.tasks().list().await.unwrap_err();

    let Error::Validation { errors, response: Some(response) } = &err else { panic!("{err:?}") };
    assert_eq!(errors[0].field, "sort");
    assert_eq!(response.problem.as_ref().unwrap().title, "Unprocessable Entity");
}

#[tokio::test]
async fn an_error_body_that_is_not_a_problem_still_gives_a_detail() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/1"))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"))
        .mount(&server)
        .await;
    let client =
        builder(&server).tokens(fresh("a0", "r0")).retry_policy(RetryPolicy::disabled()).build().unwrap();

    let err = client.tasks().get(1).await.unwrap_err();

    assert!(matches!(err, Error::Server { .. }));
    assert_eq!(err.detail(), Some("<html>Bad Gateway</html>"));
    assert!(err.is_retryable());
    // A gateway's page carries no X-Request-Id: the error names the one the request was sent with.
    let received = server.received_requests().await.unwrap();
    let sent = received[0].headers.get("x-request-id").unwrap().to_str().unwrap();
    assert_eq!(err.request_id(), Some(sent));
}

#[tokio::test]
async fn an_endless_error_body_is_not_read_to_its_end() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    // A proxy that answers 502 with a body of a gigabyte, sends 256 KiB of it, then stalls.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0; 4096];
        let _ = socket.read(&mut request).await.unwrap();
        let head =
            "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: 1000000000\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&vec![b'x'; 256 * 1024]).await.unwrap();
        std::future::pending::<()>().await;
    });
    let client = Client::builder(url)
        .tokens(fresh("a0", "r0"))
        .timeout(Duration::from_secs(3))
        .retry_policy(RetryPolicy::disabled())
        .build()
        .unwrap();

    let err = client.tasks().get(1).await.unwrap_err();

    // Reading the whole body would have waited for the timeout; its start is enough.
    assert!(matches!(err, Error::Server { .. }), "{err:?}");
    assert_eq!(err.status(), Some(502));
    assert_eq!(err.detail().unwrap().len(), 512);
}

#[tokio::test]
async fn a_success_that_does_not_decode_is_a_decode_error() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/1"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("x-request-id", "abc").set_body_json(json!({"id": "x"})),
        )
        .mount(&server)
        .await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();

    let err = client.tasks().get(1).await.unwrap_err();

    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert_eq!(err.status(), Some(200));
    assert_eq!(err.request_id(), Some("abc"));
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_transport_error() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client =
        Client::builder(format!("http://127.0.0.1:{port}")).retry_policy(fast_retries()).build().unwrap();

    let err = client.health().await.unwrap_err();

    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.status(), None);
    // No answer came: the id is the one the client made for the call.
    let id = err.request_id().expect("the id that was sent");
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(path("/health"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "ok"}))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let client = builder(&server).timeout(Duration::from_millis(50)).build().unwrap();

    let err = client.health().await.unwrap_err();

    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    // The server got the request: the error names the id it was sent with.
    let received = server.received_requests().await.unwrap();
    let sent: Vec<_> =
        received.iter().map(|r| r.headers.get("x-request-id").unwrap().to_str().unwrap()).collect();
    assert!(!sent.is_empty());
    assert_eq!(err.request_id(), sent.last().copied());
}

#[tokio::test]
async fn bad_requests_are_refused_before_sending() {
    let server = MockServer::start().await;
    let client = builder(&server).tokens(fresh("a0", "r0")).build().unwrap();
    let tasks = client.tasks();

    let errors = [
        tasks.create(NewTask::new("   ")).await.unwrap_err(),
        tasks.create(NewTask::new("ok").description("x".repeat(10_001))).await.unwrap_err(),
        tasks.update(1, TaskUpdate::new().title("t".repeat(201))).await.unwrap_err(),
        tasks.patch(1, TaskUpdate::new().title("")).await.unwrap_err(),
        tasks.list().limit(0).await.unwrap_err(),
        tasks.list().limit(101).send().await.unwrap_err(),
        tasks.create_with_key(NewTask::new("ok"), "not a key").await.unwrap_err(),
        tasks.changes(None).limit(0).await.unwrap_err(),
        tasks.changes(Some("c")).limit(1001).send().await.unwrap_err(),
        client.register("a", "short").await.unwrap_err(),
    ];

    for err in &errors {
        let Error::Validation { errors, response: None } = err else { panic!("{err:?}") };
        assert!(!errors.is_empty());
        assert_eq!(err.status(), None);
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn debug_output_never_shows_a_secret() {
    let server = MockServer::start().await;
    Mock::given(path("/tasks/1")).respond_with(problem(404, "no such task")).mount(&server).await;
    let client = builder(&server).tokens(fresh("access-secret", "refresh-secret")).build().unwrap();
    let err = client.tasks().get(1).await.unwrap_err();

    for text in [format!("{client:?}"), format!("{:?}", client.tokens()), format!("{err:?}"), err.to_string()]
    {
        assert!(!text.contains("secret"), "{text}");
    }
}

#[test]
fn the_client_is_cheap_to_share() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<Client>();
    assert_shareable::<Error>();
    // Small enough to return by value without boxing.
    assert!(std::mem::size_of::<Error>() <= 128, "{}", std::mem::size_of::<Error>());
}

#[test]
fn a_bad_base_url_is_a_configuration_error() {
    for url in ["", "localhost:8000", "ftp://example.com", "http://example.com/?q=1"] {
        let err = Client::new(url).unwrap_err();
        assert!(matches!(err, Error::Configuration { .. }), "{url}: {err:?}");
    }
    Client::new("http://127.0.0.1:8000/api").unwrap();
}

#[tokio::test]
async fn an_injected_http_client_is_used() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .and(wiremock::matchers::header("user-agent", "injected/1.0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "ok"})))
        .expect(1)
        .mount(&server)
        .await;
    let http = tasklane::reqwest::Client::builder().user_agent("injected/1.0").build().unwrap();
    let client = Client::builder(server.uri()).http_client(http).build().unwrap();

    assert_eq!(client.health().await.unwrap().status, "ok");
}

#[tokio::test]
async fn a_problem_without_title_or_status_is_still_read() {
    // RFC 9457 makes every member optional, and says a member of the wrong type is ignored.
    let cases = [
        (502, json!({"detail": "upstream timed out"}), "upstream timed out", "Bad Gateway"),
        (503, json!({"title": "Maintenance", "status": "503"}), "Maintenance", "Maintenance"),
        (
            504,
            json!({"type": "https://gateway.example/timeout", "detail": 7}),
            "Gateway Timeout",
            "Gateway Timeout",
        ),
    ];
    for (status, body, detail, title) in cases {
        let server = MockServer::start().await;
        Mock::given(path("/tasks/1"))
            .respond_with(
                ResponseTemplate::new(status).set_body_raw(body.to_string(), "application/problem+json"),
            )
            .mount(&server)
            .await;
        let client =
            builder(&server).tokens(fresh("a0", "r0")).retry_policy(RetryPolicy::disabled()).build().unwrap();

        let err = client.tasks().get(1).await.unwrap_err();

        assert!(matches!(err, Error::Server { .. }), "{err:?}");
        assert_eq!(err.detail(), Some(detail), "{body}");
        let problem = err.response().unwrap().problem.as_deref().expect("read as a problem");
        assert_eq!((problem.title.as_str(), problem.status), (title, status), "{body}");
        assert_eq!(problem.detail, detail);
    }
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_not_followed_with_the_password() {
    let api = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    let target = format!("{}/auth/login", elsewhere.uri());
    Mock::given(path("/auth/login"))
        .respond_with(ResponseTemplate::new(307).insert_header("location", target.as_str()))
        .mount(&api)
        .await;
    // A redirect on the API's own origin is followed, body and all.
    Mock::given(path("/tasks/1"))
        .respond_with(ResponseTemplate::new(308).insert_header("location", "/v2/tasks/1"))
        .mount(&api)
        .await;
    Mock::given(path("/v2/tasks/1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(task(1, "moved")))
        .mount(&api)
        .await;
    let client = builder(&api).tokens(fresh("a0", "r0")).build().unwrap();

    let err = client.login("ada", "correct horse").await.unwrap_err();

    assert!(matches!(err, Error::Http { .. }), "{err:?}");
    assert_eq!(err.status(), Some(307));
    assert!(err.detail().unwrap().contains(&target), "{err}");
    assert_eq!(received(&elsewhere, "/auth/login").await, 0, "the password stayed home");
    assert_eq!(client.tasks().get(1).await.unwrap().title, "moved");
}
