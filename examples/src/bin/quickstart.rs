//! Quickstart: the SDK's everyday calls in one run. It signs in, creates a task with a due date,
//! a priority and labels, finds it again by label and by search, updates and deletes it, and
//! logs out, printing each step.
//!
//! Start a server, then run the example against it:
//!
//! ```sh
//! cargo run -p tasklane-server                        # terminal 1: http://127.0.0.1:8000
//! cargo run -p tasklane-examples --bin quickstart     # terminal 2
//! ```
//!
//! `TASKLANE_URL` points it at another server. The account is `quickstart-demo` unless
//! `TASKLANE_USER` and `TASKLANE_PASSWORD` name another: the first run registers it, later runs
//! log in to it.

use std::process::ExitCode;

use tasklane::chrono::{TimeDelta, Utc};
use tasklane::{Client, Error, NewTask, Priority, TaskSort, TaskStatus, TaskUpdate};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => tasklane_examples::report("quickstart", &err),
    }
}

async fn run() -> tasklane::Result<()> {
    let url = tasklane_examples::server_url();
    let (username, password) = tasklane_examples::demo_account("quickstart-demo");

    // One client per server; it is cheap to clone and keeps the session (and refreshes it).
    let client = Client::new(&url)?;

    // Register; when the name is taken (by an earlier run), log in instead.
    match client.register(&username, password.as_str()).await {
        Ok(_) => println!("registered {username} at {url}"),
        Err(Error::Conflict { .. }) => {
            client.login(&username, password.as_str()).await?;
            println!("logged in as {username} at {url}");
        }
        Err(err) => return Err(err),
    }

    let due = Utc::now() + TimeDelta::days(1);
    let new = NewTask::new("Try Tasklane")
        .description("run the quickstart")
        .due(due)
        .priority(Priority::High)
        .label("demo")
        .label("Getting started");
    let task = client.tasks().create(new).await?;
    println!(
        "created  #{} {:?}, {}, {} priority, due {}, labels {:?}",
        task.id,
        task.title,
        task.status,
        task.priority,
        task.due_at.map_or_else(|| "never".to_owned(), |at| at.to_rfc3339()),
        task.labels
    );

    // One page of the list, with the total count from the server: here, the pending tasks
    // labelled `demo`, soonest due first. (`.stream()` instead of `.await` would go through
    // every page; see the taskctl example.)
    let page = client
        .tasks()
        .list()
        .status(TaskStatus::Pending)
        .label("demo")
        .sort(TaskSort::DueAt)
        .limit(10)
        .await?;
    println!("listed   {} pending demo task(s) of {}", page.items.len(), page.total.unwrap_or_default());
    for task in &page.items {
        println!("         #{} {}", task.id, task.title);
    }
    // Search: a substring of the title or description, ignoring case.
    let found = client.tasks().list().search("QUICKSTART").await?;
    println!("searched {} task(s) mention the quickstart", found.total.unwrap_or_default());

    // Updates change only the fields they name; `completed_at` is set by the server.
    let task = client.tasks().update(task.id, TaskUpdate::new().status(TaskStatus::Done).clear_due()).await?;
    println!("updated  #{} is now {} (version {}, due date cleared)", task.id, task.status, task.version);

    client.tasks().delete(task.id).await?;
    println!("deleted  #{}", task.id);

    // Revokes the refresh token on the server; the access token just expires.
    client.logout().await?;
    println!("logged out");
    Ok(())
}
