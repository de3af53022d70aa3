//! Sync: an app's local copy of its tasks, kept current through the change feed and saved
//! between runs, so a restart fetches only what changed meanwhile.
//!
//! Start a server, then run the example against it, and change tasks meanwhile (taskctl, the
//! quickstart, curl): each round prints what changed.
//!
//! ```sh
//! cargo run -p tasklane-server                                   # terminal 1
//! cargo run -p tasklane-examples --bin sync                      # terminal 2
//! ```
//!
//! The copy is kept in `TASKLANE_REPLICA` (default `tasklane-replica.json` in the current
//! directory). `TASKLANE_SYNC_EVERY` sets the seconds between rounds (default 5) and
//! `TASKLANE_SYNC_ROUNDS` how many to run (default: until Ctrl-C). The account is `sync-demo`
//! unless `TASKLANE_USER` and `TASKLANE_PASSWORD` name another.

use std::process::ExitCode;
use std::time::Duration;

use tasklane::{Client, Error, Replica};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => tasklane_examples::report("sync", err.as_ref()),
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let url = tasklane_examples::server_url();
    let (username, password) = tasklane_examples::demo_account("sync-demo");
    let path = std::env::var("TASKLANE_REPLICA").unwrap_or_else(|_| "tasklane-replica.json".into());
    let every = Duration::from_secs_f64(setting("TASKLANE_SYNC_EVERY").unwrap_or(5.0));
    let rounds = setting("TASKLANE_SYNC_ROUNDS").map(|n: f64| n as u64);

    let client = Client::new(&url)?;
    match client.login(&username, password.as_str()).await {
        Ok(_) => {}
        Err(Error::Unauthorized { .. }) => {
            client.register(&username, password.as_str()).await?;
        }
        Err(err) => return Err(err.into()),
    }

    // The copy saved by the last run, if any: its cursor makes the first sync incremental. A
    // replica belongs to one user, so it is saved together with the name it belongs to.
    let mut replica = match std::fs::read(&path) {
        Ok(bytes) => {
            let mut saved: serde_json::Value = serde_json::from_slice(&bytes)?;
            if saved["username"] == username.as_str() {
                serde_json::from_value(saved["replica"].take())?
            } else {
                Replica::new()
            }
        }
        Err(_) => Replica::new(),
    };
    println!("{} tasks in the local copy at {path}", replica.len());

    let mut round = 0;
    loop {
        let report = replica.sync(&client).await?;
        if report.resynced {
            println!("the copy was too old for the feed: fetched every task again");
        }
        for id in &report.upserted {
            if let Some(task) = replica.get(*id) {
                println!(
                    "changed  #{} {:?} ({}, version {})",
                    task.id, task.title, task.status, task.version
                );
            }
        }
        for id in &report.deleted {
            println!("deleted  #{id}");
        }
        // Saved after every round, replacing the file whole, so a stop loses nothing synced.
        let saved = serde_json::json!({ "username": username, "replica": replica });
        let temporary = format!("{path}.tmp");
        std::fs::write(&temporary, serde_json::to_vec(&saved)?)?;
        std::fs::rename(&temporary, &path)?;
        println!(
            "round {}: {} tasks, {} changes",
            round + 1,
            replica.len(),
            report.upserted.len() + report.deleted.len()
        );

        round += 1;
        if rounds.is_some_and(|rounds| round >= rounds) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// A number from the environment, if set.
fn setting(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|value| value.parse().ok())
}
