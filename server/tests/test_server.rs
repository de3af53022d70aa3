//! `testing::TestServer` (feature `testing`): it serves, takes its settings from the builder
//! alone, and once dropped has stopped and removed its directory. `cargo test --workspace` runs
//! it (the SDK's tests turn the feature on); alone: `cargo test -p tasklane-server --features
//! testing --test test_server`.
#![cfg(feature = "testing")]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use tasklane_server::testing::TestServer;

/// `GET path` over a plain socket, for a test without a runtime: the status code.
fn get_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0))
}

#[test]
fn a_blocking_server_serves_then_stops_and_removes_its_directory() {
    let server = TestServer::start_blocking();
    assert!(server.url().starts_with("http://127.0.0.1:"), "{}", server.url());
    assert!(server.dir().join("tasklane.db").is_file());
    assert_eq!(get_status(server.addr(), "/health").unwrap(), 200);

    let (addr, dir) = (server.addr(), server.dir().to_owned());
    drop(server);
    assert!(!dir.exists(), "the directory is removed by the time drop returns");
    assert!(get_status(addr, "/health").is_err(), "nothing listens any more");
}

/// Awaited on a single-threaded runtime (`#[tokio::test]`'s default flavour).
#[tokio::test]
async fn a_test_server_keeps_the_rules_of_a_deployed_one() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.url());
    let credentials = json!({"username": "ada", "password": "correct horse"});
    let registered = http.post(url("/auth/register")).json(&credentials).send().await.unwrap();
    assert_eq!(registered.status(), 201);
    let pair: Value = registered.json().await.unwrap();
    assert_eq!(pair["expires_in"], 900, "the access token's lifetime is the default");
    // The rate limits are off: more logins from one address and for one account than they allow.
    for _ in 0..12 {
        assert_eq!(http.post(url("/auth/login")).json(&credentials).send().await.unwrap().status(), 200);
    }
    let refused = http.get(url("/tasks/")).bearer_auth("not a token").send().await.unwrap();
    assert_eq!(refused.status(), 401);

    let dir = server.dir().to_owned();
    drop(server);
    assert!(!dir.exists(), "the directory is removed by the time drop returns");
}

/// Started and dropped at once, while the tasks it starts at liftoff may still be opening the
/// database: nothing is left behind.
#[test]
fn a_server_dropped_at_once_leaves_nothing_behind() {
    for _ in 0..20 {
        let server = TestServer::start_blocking();
        let dir = server.dir().to_owned();
        drop(server);
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_sets_the_lifetime_the_limits_and_any_setting() {
    let server = TestServer::builder()
        .access_token_ttl(Duration::from_secs(60))
        .rate_limits(true)
        .config(|config| config.rate_limit_account_per_minute = 2)
        .start()
        .await;
    let http = reqwest::Client::new();
    let credentials = json!({"username": "grace", "password": "correct horse"});
    let login = || http.post(format!("{}/auth/login", server.url())).json(&credentials).send();
    let pair: Value = http
        .post(format!("{}/auth/register", server.url()))
        .json(&credentials)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pair["expires_in"], 60);
    assert_eq!(login().await.unwrap().status(), 200);
    assert_eq!(login().await.unwrap().status(), 200);
    let limited = login().await.unwrap();
    assert_eq!(limited.status(), 429, "the account's limit of 2 logins a minute applies");
    assert!(limited.headers().contains_key("retry-after"));

    // Two servers at once: each its own port and database.
    let other = TestServer::start().await;
    assert_ne!(other.url(), server.url());
    assert_ne!(other.dir(), server.dir());
    let unknown = http.post(format!("{}/auth/login", other.url())).json(&credentials).send().await.unwrap();
    assert_eq!(unknown.status(), 401, "grace has no account on the other server");
}

#[tokio::test]
async fn a_server_that_cannot_start_says_why() {
    let err = TestServer::builder()
        .config(|config| {
            config.database_url = "sqlite:/dev/null/tasklane.db".to_owned().try_into().unwrap();
        })
        .try_start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/dev/null/tasklane"), "{err}");
}
