//! `FileTokenStore`: a private file, replaced whole, that a later client resumes from.
#![cfg(feature = "file-store")]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use tasklane::{FileTokenStore, TokenStore, Tokens};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The names in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_session_resumes_in_a_later_client_and_ends_with_the_file() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/login"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pair("a1", "r1")))
        .expect(1)
        .mount(&server)
        .await;
    mount_refresh(&server, "r1", "a2", "r2", 1).await;
    Mock::given(path("/tasks/1"))
        .and(header("authorization", "Bearer a1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(task(1, "one")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/logout"))
        .and(body_json(serde_json::json!({"refresh_token": "r2"})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config").join("app").join("session.json");
    let url = server.uri();

    // The first run logs in; the directories and the file are made for it.
    {
        let store = FileTokenStore::new(&file, &url);
        assert_eq!(store.load().unwrap(), None);
        let client = builder(&server).token_store(store).build().unwrap();
        client.login("ada", "correct horse").await.unwrap();
    }
    #[cfg(unix)]
    {
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(file.parent().unwrap()), 0o700);
    }

    // A later run, another client, resumes the session: no login, the saved token is sent.
    let store = FileTokenStore::new(&file, format!("{url}/"));
    let saved = store.load().unwrap().expect("the saved session");
    assert_eq!(saved.refresh_token().expose(), "r1");
    assert!(saved.expires_at().is_some(), "the expiry is kept");
    let client = builder(&server).tokens(saved).token_store(store.clone()).build().unwrap();
    client.tasks().get(1).await.unwrap();
    // Its refresh rotates the tokens in the file.
    client.refresh().await.unwrap();
    assert_eq!(store.load().unwrap().unwrap().refresh_token().expose(), "r2");

    // Another server's store neither sees the session nor ends it.
    let elsewhere = FileTokenStore::new(&file, "https://elsewhere.example.com");
    assert_eq!(elsewhere.load().unwrap(), None);
    elsewhere.clear().await;
    assert!(file.exists());

    client.logout().await.unwrap();
    assert!(!file.exists());
    assert_eq!(store.load().unwrap(), None);
}

/// Readers of the file (another process starting, say) see the old session or the new one,
/// whole, never a file being written; and no temporary file is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_is_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.json");
    let store = FileTokenStore::new(&file, "http://127.0.0.1:8000");
    // Large enough tokens that writing one takes many writes.
    let tokens = |n: usize| Tokens::new(format!("{n}-{}", "a".repeat(256 * 1024)), format!("r{n}"));
    store.save(&tokens(0)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let reader = std::thread::spawn({
        let (stop, store) = (Arc::clone(&stop), store.clone());
        move || {
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) {
                let loaded = store.load().unwrap_or_else(|err| panic!("read {reads}: {err}"));
                assert!(loaded.is_some(), "read {reads}: no session");
                reads += 1;
            }
            reads
        }
    });
    for n in 1..=100 {
        store.save(&tokens(n)).await;
    }
    stop.store(true, Ordering::SeqCst);

    let reads = reader.join().expect("every read found a whole session");
    assert!(reads > 0);
    assert_eq!(store.load().unwrap().unwrap().refresh_token().expose(), "r100");
    assert_eq!(names(dir.path()), ["session.json"]);
}

#[cfg(unix)]
#[tokio::test]
async fn a_file_others_could_read_is_replaced_by_a_private_one() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.json");
    std::fs::write(&file, "{}").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

    FileTokenStore::new(&file, "http://127.0.0.1:8000").save(&Tokens::new("a", "r")).await;

    assert_eq!(mode(&file), 0o600);
}

#[tokio::test]
async fn failures_are_reported_and_leave_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be: it cannot be replaced.
    let file = dir.path().join("session.json");
    std::fs::create_dir(&file).unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&errors);
    let store = FileTokenStore::new(&file, "http://127.0.0.1:8000")
        .on_error(move |err| seen.lock().unwrap().push(err.to_string()));

    store.save(&Tokens::new("a", "r")).await;

    let errors = errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("could not save the session in") && errors[0].contains("session.json"),
        "{errors:?}"
    );
    assert!(file.is_dir());
    assert_eq!(names(dir.path()), ["session.json"], "no temporary file left");
}

#[test]
fn a_file_that_is_no_session_is_an_error_to_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.json");
    std::fs::write(&file, "not json").unwrap();

    let err = FileTokenStore::new(&file, "http://127.0.0.1:8000").load().unwrap_err();

    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[test]
fn debug_shows_where_not_what() {
    let store = FileTokenStore::new("/tmp/session.json", "http://127.0.0.1:8000/");
    let text = format!("{store:?}");
    assert!(text.contains("/tmp/session.json") && text.contains("\"http://127.0.0.1:8000\""), "{text}");
}
