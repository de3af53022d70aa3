//! Live: two clients of one user, as two devices would be, one watching and one writing. The
//! writer creates a task, renames it, completes it and deletes it; the watcher prints each
//! change as its live events bring it, and stops once it has seen every write.
//!
//! ```sh
//! cargo run -p tasklane-server                                   # terminal 1
//! cargo run -p tasklane-examples --bin live                      # terminal 2
//! ```
//!
//! The account is `live-demo` unless `TASKLANE_USER` and `TASKLANE_PASSWORD` name another.
//! `TASKLANE_LIVE_TIMEOUT` is how many seconds the watcher waits for every write to reach it
//! (default 10) before it gives up with an error.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use tasklane::futures::StreamExt as _;
use tasklane::{Change, Client, NewTask, Replica, TaskStatus, TaskUpdate};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => tasklane_examples::report("live", err.as_ref()),
    }
}

/// A write the writer made: the task and the version it left it at, or its deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wrote {
    Version(i64, i64),
    Deleted(i64),
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let url = tasklane_examples::server_url();
    let (username, password) = tasklane_examples::demo_account("live-demo");
    let wait = std::env::var("TASKLANE_LIVE_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let wait = Duration::from_secs_f64(wait);

    // Two logins: two sessions of one user, each with tokens of its own.
    let writer = Client::new(&url)?;
    tasklane_examples::register_or_login(&writer, &username, &password).await?;
    let watcher = Client::new(&url)?;
    watcher.login(&username, password.as_str()).await?;

    // The watcher starts from a known state (every task, and the cursor after them), so that
    // no write made from now on can slip by before its stream is open.
    let mut replica = Replica::new();
    replica.sync(&watcher).await?;
    println!("watcher: {} has {} tasks; watching for changes", username, replica.len());
    let mut changes = watcher.tasks().watch(replica.cursor());

    let (wrote, mut writes) = mpsc::unbounded_channel();
    let writing = tokio::spawn(write(writer, wrote));

    // What the watcher has seen of each task: its latest version, or its deletion.
    let mut seen: HashMap<i64, Wrote> = HashMap::new();
    let mut expected = Vec::new();
    let mut writer_done = false;
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    while !writer_done || !expected.iter().all(|write| is_seen(write, &seen)) {
        tokio::select! {
            write = writes.recv() => match write {
                Some(write) => expected.push(write),
                None => writer_done = true,
            },
            change = changes.next() => {
                let Some(change) = change else { break };
                let change = change?;
                let before = replica.get(change.task_id()).cloned();
                match &change.change {
                    Change::Upsert { task } => {
                        let what = if before.is_none() { "created" } else { "updated" };
                        println!(
                            "watcher: {what} #{} {:?} ({}, version {})",
                            task.id, task.title, task.status, task.version
                        );
                        seen.insert(task.id, Wrote::Version(task.id, task.version));
                    }
                    Change::Delete { id } => {
                        let title = before.map(|task| format!(" {:?}", task.title)).unwrap_or_default();
                        println!("watcher: deleted #{id}{title}");
                        seen.insert(*id, Wrote::Deleted(*id));
                    }
                }
                replica.apply_change(change);
            }
            _ = &mut deadline => {
                let got = expected.iter().filter(|write| is_seen(write, &seen)).count();
                return Err(format!(
                    "the watcher saw {got} of the {} writes within {wait:?}: are the server's live events \
                     reaching it (a proxy that buffers responses holds them back)?",
                    expected.len()
                )
                .into());
            }
        }
    }
    // The writer's own errors, if it had any, are the reason it stopped early.
    writing.await??;
    println!(
        "the watcher saw all {} writes; its copy has {} tasks, as the server does",
        expected.len(),
        replica.len()
    );
    Ok(())
}

/// Whether the watcher has seen `write`, or something later of the same task: changes that
/// come quickly one after another may reach it as one, the task's latest state.
fn is_seen(write: &Wrote, seen: &HashMap<i64, Wrote>) -> bool {
    match (write, seen.get(&task_of(write))) {
        (_, Some(Wrote::Deleted(_))) => true,
        (Wrote::Version(_, wrote), Some(Wrote::Version(_, saw))) => saw >= wrote,
        _ => false,
    }
}

fn task_of(write: &Wrote) -> i64 {
    match write {
        Wrote::Version(id, _) | Wrote::Deleted(id) => *id,
    }
}

/// The writer: create, rename, complete, delete, a moment apart, telling the watcher's side
/// what it wrote.
async fn write(client: Client, wrote: mpsc::UnboundedSender<Wrote>) -> tasklane::Result<()> {
    let pause = || tokio::time::sleep(Duration::from_millis(200));
    let task = client.tasks().create(NewTask::new("Water the plants")).await?;
    println!("writer:  created #{} {:?}", task.id, task.title);
    let _ = wrote.send(Wrote::Version(task.id, task.version));
    pause().await;

    let task =
        client.tasks().patch(task.id, TaskUpdate::new().title("Water the plants on the balcony")).await?;
    println!("writer:  renamed #{} to {:?}", task.id, task.title);
    let _ = wrote.send(Wrote::Version(task.id, task.version));
    pause().await;

    let task = client.tasks().patch(task.id, TaskUpdate::new().status(TaskStatus::Done)).await?;
    println!("writer:  completed #{}", task.id);
    let _ = wrote.send(Wrote::Version(task.id, task.version));
    pause().await;

    client.tasks().delete(task.id).await?;
    println!("writer:  deleted #{}", task.id);
    let _ = wrote.send(Wrote::Deleted(task.id));
    Ok(())
}
