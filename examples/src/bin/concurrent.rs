//! Concurrent: 50 tasks share one `Client` across an access-token expiry, and the client
//! refreshes the token once for all of them.
//!
//! Each worker creates a task, waits until the session's access token has expired, then marks
//! its task done and deletes it. The 50 workers wake at the same moment and every one of them
//! needs a new token; the client makes a single `POST /auth/refresh` and they all go on with its
//! result. A `TokenStore` that counts what the client saves shows it: one save at login, one per
//! refresh.
//!
//! Access tokens live 15 minutes by default, so give the server 1-minute tokens to see the
//! expiry within a minute:
//!
//! ```sh
//! ACCESS_TOKEN_EXPIRE_MINUTES=1 cargo run -p tasklane-server    # terminal 1
//! cargo run -p tasklane-examples --bin concurrent               # terminal 2 (about a minute)
//! ```
//!
//! `TASKLANE_URL` points it at another server; the account is `concurrent-demo` unless
//! `TASKLANE_USER` and `TASKLANE_PASSWORD` name another.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tasklane::{BoxFuture, Client, NewTask, TaskStatus, TaskUpdate, TokenStore, Tokens};
use tokio::task::JoinSet;

const WORKERS: usize = 50;

/// Keeps no tokens: only counts how often the client saved new ones.
#[derive(Debug, Default)]
struct CountingStore {
    saves: AtomicUsize,
}

impl TokenStore for CountingStore {
    fn save<'a>(&'a self, _tokens: &'a Tokens) -> BoxFuture<'a, ()> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(()))
    }

    fn clear(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => tasklane_examples::report("concurrent", &err),
    }
}

async fn run() -> tasklane::Result<()> {
    let url = tasklane_examples::server_url();
    let (username, password) = tasklane_examples::demo_account("concurrent-demo");

    // The store is shared: the client gets one handle, we keep another to read the count.
    let store = Arc::new(CountingStore::default());
    let client = Client::builder(&url).token_store(Arc::clone(&store)).build()?;
    tasklane_examples::register_or_login(&client, &username, &password).await?;
    let saves_at_login = store.saves.load(Ordering::SeqCst);

    // The access token's expiry, read from the token the server issued.
    let expires_at = client.tokens().and_then(|tokens| tokens.expires_at()).expect("a session with a JWT");
    let wait = SystemTime::from(expires_at).duration_since(SystemTime::now()).unwrap_or_default();
    println!("logged in as {username}; the access token expires in {} s", wait.as_secs());
    if wait > Duration::from_secs(120) {
        println!("(a long wait: start the server with ACCESS_TOKEN_EXPIRE_MINUTES=1 for a short one)");
    }
    let expired = tokio::time::Instant::now() + wait;

    let mut workers = JoinSet::new();
    for n in 1..=WORKERS {
        // Clones share one connection pool and one session.
        let client = client.clone();
        workers.spawn(async move {
            let task = client.tasks().create(NewTask::new(format!("job {n} of {WORKERS}"))).await?;
            tokio::time::sleep_until(expired).await;
            // The access token has expired by now: this request needs a fresh one.
            client.tasks().update(task.id, TaskUpdate::new().status(TaskStatus::Done)).await?;
            client.tasks().delete(task.id).await
        });
    }
    println!("{WORKERS} workers are creating their tasks, then wait for the expiry...");
    let finished = workers.join_all().await.into_iter().collect::<tasklane::Result<Vec<()>>>()?;

    let refreshes = store.saves.load(Ordering::SeqCst) - saves_at_login;
    println!("{} workers finished and deleted their tasks after the expiry", finished.len());
    println!("token refreshes: {refreshes}");
    client.logout().await
}
