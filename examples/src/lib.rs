//! Runnable programs that show the Tasklane SDK in real use.
//!
//! Each example is a binary of this crate (`src/bin/`). Start a server in one terminal and run
//! an example in another:
//!
//! ```sh
//! cargo run -p tasklane-server                          # http://127.0.0.1:8000
//! cargo run -p tasklane-examples --bin quickstart
//! ```
//!
//! | example | what it shows |
//! | --- | --- |
//! | `quickstart` | register (or log in), create, list, update, delete |
//! | `taskctl` | a command-line tool whose session survives between runs, in a file |
//! | `concurrent` | 50 tasks sharing one client across an access-token expiry: one refresh |
//! | `custom_client` | the SDK over a `reqwest::Client` with your own timeouts, proxy and user agent |
//! | `live` | two clients of one user: one writes, the other's live events show each change as it comes |
//!
//! Every example talks to the server at `TASKLANE_URL` (default `http://127.0.0.1:8000`). The
//! items below are the little they share.

use std::error::Error as StdError;
use std::process::ExitCode;

use tasklane::{Client, Error};

/// The server address every example talks to: `TASKLANE_URL`, or the server's default address.
pub fn server_url() -> String {
    std::env::var("TASKLANE_URL").unwrap_or_else(|_| "http://127.0.0.1:8000".to_owned())
}

/// The account an example uses: `TASKLANE_USER` and `TASKLANE_PASSWORD`, or `default_user`
/// with a demo password.
pub fn demo_account(default_user: &str) -> (String, String) {
    let username = std::env::var("TASKLANE_USER").unwrap_or_else(|_| default_user.to_owned());
    let password = std::env::var("TASKLANE_PASSWORD").unwrap_or_else(|_| "correct horse battery".to_owned());
    (username, password)
}

/// Registers `username`, or logs in when the name is already taken (by an earlier run), so an
/// example works every time it is run. Returns whether the account is new.
pub async fn register_or_login(client: &Client, username: &str, password: &str) -> tasklane::Result<bool> {
    match client.register(username, password).await {
        Ok(_) => Ok(true),
        Err(Error::Conflict { .. }) => client.login(username, password).await.map(|_| false),
        Err(err) => Err(err),
    }
}

/// Prints `err` with its causes on one line to stderr (`program: error: cause: cause`), and a
/// hint when the server could not be reached; returns the exit code for a failure.
pub fn report(program: &str, err: &(dyn StdError + 'static)) -> ExitCode {
    eprintln!("{program}: {}", with_causes(err));
    if err.downcast_ref::<Error>().is_some_and(unreachable) {
        eprintln!("is a server running at {}? `cargo run -p tasklane-server` starts one", server_url());
    }
    ExitCode::FAILURE
}

/// Whether `err` says the server could not be reached: the call's own request, or the token
/// refresh it needed first.
pub fn unreachable(err: &Error) -> bool {
    match err {
        Error::Transport { .. } | Error::Timeout { .. } => true,
        Error::RefreshFailed { source } => unreachable(source),
        _ => false,
    }
}

/// `err` and its chain of causes on one line: `the request could not be completed: error
/// sending request: …: Connection refused`.
pub fn with_causes(err: &(dyn StdError + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(source) = cause {
        line.push_str(&format!(": {source}"));
        cause = source.source();
    }
    line
}

/// The repository's README, whose Rust snippets are compiled as doctests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
