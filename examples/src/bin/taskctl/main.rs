//! taskctl: a command-line tool for your Tasklane tasks, built on the SDK.
//!
//! Start a server, then run taskctl through cargo (the `--` separates taskctl's arguments from
//! cargo's):
//!
//! ```sh
//! cargo run -p tasklane-server                                        # terminal 1
//! cargo run -q -p tasklane-examples --bin taskctl -- register         # prompts for both
//! cargo run -q -p tasklane-examples --bin taskctl -- add "Pay rent" --due tomorrow --priority high --label home
//! cargo run -q -p tasklane-examples --bin taskctl -- ls --label home --sort due_at
//! cargo run -q -p tasklane-examples --bin taskctl -- done 1
//! ```
//!
//! or install it with `cargo install --path examples --bin taskctl` and run `taskctl --help`.
//!
//! Commands: `register`, `login`, `logout`, `add TITLE`, `edit ID`, `ls`, `done ID`, `rm ID`,
//! `watch`, `whoami` (`taskctl help COMMAND` for each one's options). `register` and `login` take
//! `--username` and `--password` (or `TASKLANE_USER` and `TASKLANE_PASSWORD`) and, in a
//! terminal, ask for what is missing, the password without echo.
//!
//! Due dates are read in the local time zone: `2026-12-24` (the end of that day),
//! `2026-12-24T17:00`, `today` or `tomorrow` (the end of the day), or a full RFC 3339 time.
//! `ls` shows each task's due date, priority and labels in columns, and marks with `!` a task
//! that is overdue (due before now and not done).
//!
//! `watch` prints each change to your tasks as it happens, made anywhere (another device,
//! another terminal), one line per change in the columns of `ls`, after `created`, `updated`
//! or `deleted`, and keeps the local copy up to date as it goes; `--since CURSOR` first prints
//! what changed after that cursor of the change feed (the one `watch` names when it stops). It
//! runs until Ctrl-C, or until whoever reads its output stops (`taskctl watch | head -3`),
//! reconnecting by itself meanwhile (when the server restarts, when the access token expires).
//!
//! Every command also brings a local copy of your tasks up to date (`replica.json`, beside the
//! session, through the change feed): `ls --offline` answers from it without the server, and
//! `edit` refuses to change a task that changed on the server since you last saw it, naming
//! its current title and status (the write itself carries `If-Match`, so an edit made meanwhile
//! by someone else is never overwritten).
//!
//! The session is kept in `session.json` in `~/.config/tasklane` (the platform's config
//! directory; `TASKLANE_CONFIG_DIR` overrides it), readable only by you, together with the
//! server's address: `login` once, and later runs resume the session, refreshing its tokens as
//! needed. A new `login` or `register` ends the session it replaces on the server too. The
//! server is `TASKLANE_URL` (default `http://127.0.0.1:8000`).
//!
//! Exit status: 0 on success, 1 on an error (one line on stderr), 2 on a usage error.

mod session;

use std::io::{self, BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use clap::{Args, CommandFactory as _, Parser, Subcommand};
use tasklane::chrono::{DateTime, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use tasklane::futures::{FutureExt as _, StreamExt as _, TryStreamExt as _};
use tasklane::{
    Change, Client, Error, LiveChange, NewTask, Priority, Replica, Task, TaskSort, TaskStatus, TaskUpdate,
    Tokens,
};

/// Manage your Tasklane tasks from the command line.
#[derive(Debug, Parser)]
#[command(name = "taskctl", version)]
#[command(after_help = "The server is TASKLANE_URL (default http://127.0.0.1:8000). The session \
    is kept in the user's config directory, or in TASKLANE_CONFIG_DIR.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an account and log in to it
    Register(Credentials),
    /// Log in, and keep the session for later runs
    Login(Credentials),
    /// End the session, on the server and here
    Logout,
    /// Add a task
    Add {
        /// What to do
        title: String,
        /// More about it
        #[arg(long, short)]
        description: Option<String>,
        #[command(flatten)]
        plan: Plan,
    },
    /// Change a task: only what is given changes
    Edit {
        /// The task's number, as `ls` shows it
        id: i64,
        /// A new title
        #[arg(long, short)]
        title: Option<String>,
        /// A new description
        #[arg(long, short)]
        description: Option<String>,
        /// A new status: pending, in_progress or done
        #[arg(long, short)]
        status: Option<TaskStatus>,
        #[command(flatten)]
        plan: Plan,
        /// Remove the due date
        #[arg(long, conflicts_with = "due")]
        no_due: bool,
        /// Remove every label
        #[arg(long, conflicts_with = "label")]
        no_labels: bool,
    },
    /// List your tasks, oldest first
    Ls {
        /// Only tasks with this status: pending, in_progress or done
        #[arg(long, short)]
        status: Option<TaskStatus>,
        /// Only tasks of this priority: none, low, medium or high
        #[arg(long, short)]
        priority: Option<Priority>,
        /// Only tasks with this label (repeat it: tasks with every one)
        #[arg(long, short)]
        label: Vec<String>,
        /// Only tasks due before this time (same forms as --due)
        #[arg(long, value_parser = parse_due)]
        due_before: Option<DateTime<Utc>>,
        /// Only tasks due at or after this time (same forms as --due)
        #[arg(long, value_parser = parse_due)]
        due_after: Option<DateTime<Utc>>,
        /// Only tasks whose title or description contains this text, ignoring case
        #[arg(long, short = 'q')]
        search: Option<String>,
        /// Only tasks that are overdue: due before now, and not done
        #[arg(long)]
        overdue: bool,
        /// The order: created_at (default), -created_at, updated_at, -updated_at, title, -title,
        /// due_at, -due_at, priority or -priority
        #[arg(long, default_value = "created_at", allow_hyphen_values = true)]
        sort: TaskSort,
        /// Answer from the local copy of the last sync, without the server
        #[arg(long)]
        offline: bool,
    },
    /// Mark a task done
    Done {
        /// The task's number, as `ls` shows it
        id: i64,
    },
    /// Delete a task
    Rm {
        /// The task's number, as `ls` shows it
        id: i64,
    },
    /// Print each change to your tasks as it happens, until Ctrl-C
    Watch {
        /// First print what changed after this cursor of the change feed (as `watch` names it
        /// when it stops), then go on live
        #[arg(long, value_name = "CURSOR")]
        since: Option<String>,
    },
    /// Show who you are logged in as
    Whoami,
}

/// When a task is due, how much it matters, and its labels (`add` and `edit`).
#[derive(Debug, Args)]
struct Plan {
    /// When it is due: 2026-12-24 (the end of that day), 2026-12-24T17:00, today, tomorrow, in
    /// the local time zone, or an RFC 3339 time
    #[arg(long, value_parser = parse_due)]
    due: Option<DateTime<Utc>>,
    /// How much it matters: none, low, medium or high
    #[arg(long, short)]
    priority: Option<Priority>,
    /// A label (repeat it for more); on `edit`, the labels given replace the old ones
    #[arg(long, short)]
    label: Vec<String>,
}

/// A due date as typed, in the local time zone; a day alone means the end of that day.
fn parse_due(text: &str) -> Result<DateTime<Utc>, String> {
    let end_of = |day: NaiveDate| day.and_time(NaiveTime::from_hms_opt(23, 59, 59).expect("a time of day"));
    let today = Local::now().date_naive();
    let local = match text.trim() {
        "today" => end_of(today),
        "tomorrow" => end_of(today + TimeDelta::days(1)),
        text => {
            if let Ok(at) = DateTime::parse_from_rfc3339(text) {
                return Ok(at.with_timezone(&Utc));
            }
            if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                end_of(day)
            } else {
                ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"]
                    .iter()
                    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
                    .ok_or_else(|| {
                        format!("expected 2026-12-24, 2026-12-24T17:00, today or tomorrow, not {text:?}")
                    })?
            }
        }
    };
    // The earliest reading of a local time that a clock change makes twice, or the moment
    // after one it skips.
    local
        .and_local_timezone(Local)
        .earliest()
        .or_else(|| (local + TimeDelta::hours(1)).and_local_timezone(Local).earliest())
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| format!("{text:?} does not exist in the local time zone"))
}

/// One line of `ls`: number, overdue mark, status, due date (local), priority, title, labels.
fn task_line(task: &Task, now: DateTime<Utc>) -> String {
    let overdue = task.status != TaskStatus::Done && task.due_at.is_some_and(|due| due < now);
    let due = task
        .due_at
        .map_or_else(|| "-".to_owned(), |due| due.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string());
    let priority = if task.priority == Priority::None { "-" } else { task.priority.as_str() };
    let labels =
        if task.labels.is_empty() { String::new() } else { format!("  [{}]", task.labels.join(", ")) };
    format!(
        "{:>6} {} {:<11}  {:<16}  {:<6}  {}{labels}",
        format!("#{}", task.id),
        if overdue { "!" } else { " " },
        task.status.as_str(),
        due,
        priority,
        task.title
    )
}

#[derive(Debug, Args)]
struct Credentials {
    /// Your username; asked for when missing
    #[arg(long, short, env = "TASKLANE_USER")]
    username: Option<String>,
    /// Your password; asked for (without echo) when missing. Prefer that, or the environment
    /// variable, to the command line, which other users of the machine can see
    #[arg(long, env = "TASKLANE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

/// Why a command failed.
enum Failure {
    /// The API refused, or could not be reached.
    Api(Error),
    /// Anything else, already worded for the user.
    Other(String),
    /// Whoever read the output has stopped reading (`taskctl ls | head`): nothing to report.
    Unread,
}

/// Writes one line to standard output. A reader that has gone away ends the command quietly,
/// where `println!` would panic.
fn say(line: std::fmt::Arguments<'_>) -> Result<(), Failure> {
    match writeln!(std::io::stdout().lock(), "{line}") {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::Unread),
        Err(err) => Err(Failure::Other(format!("cannot write the output: {err}"))),
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure::Api(err)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Exits with status 2 and clap's message on a usage error.
    let cli = Cli::parse();
    let url = tasklane_examples::server_url();
    match run(&cli.command, &url).await {
        Ok(()) | Err(Failure::Unread) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("taskctl: {}", describe(failure, &cli.command, &url));
            ExitCode::FAILURE
        }
    }
}

/// Revokes the session a `login` or `register` replaced, so that its refresh token, no longer
/// saved anywhere, cannot be used either. The new session is in place already: a failure here
/// is reported, not fatal (the old refresh token still expires on its own).
async fn end_replaced_session(url: &str, replaced: Option<Tokens>) {
    let Some(tokens) = replaced else { return };
    // A client of its own, with no store: the file now holds the new session.
    let ended = match Client::builder(url).tokens(tokens).build() {
        Ok(old) => old.logout().await,
        Err(err) => Err(err),
    };
    if let Err(err) = ended {
        eprintln!("taskctl: the previous session could not be ended on the server: {err}");
    }
}

async fn run(command: &Command, url: &str) -> Result<(), Failure> {
    let dir = session::config_dir()
        .ok_or_else(|| Failure::Other("no config directory: set TASKLANE_CONFIG_DIR".into()))?;
    let store = session::store(&dir, url);
    let copy = session::LocalCopy::new(&dir, url);
    if let Command::Ls { offline: true, .. } = command {
        return list_offline(command, &copy);
    }

    // Resume the saved session, unless this command starts a new one. A new session replaces
    // the saved one, which is ended on the server once the new one exists (a failed login
    // keeps it); an unreadable file has no session worth ending.
    let (saved, mut replaced) = match command {
        Command::Register(_) | Command::Login(_) => (None, store.load().ok().flatten()),
        _ => {
            let saved = store.load().map_err(|err| {
                Failure::Other(format!(
                    "cannot read the session in {}: {err}; `taskctl login` replaces it",
                    store.path().display()
                ))
            })?;
            (saved, None)
        }
    };
    let mut builder = Client::builder(url);
    if let Some(tokens) = saved {
        builder = builder.tokens(tokens);
    }
    let client = builder.token_store(store).build()?;

    match command {
        Command::Register(credentials) => {
            let (username, password) = credentials.resolve("register")?;
            client.register(&username, password).await?;
            copy.forget();
            end_replaced_session(url, replaced.take()).await;
            say(format_args!("registered and logged in as {username}"))?;
        }
        Command::Login(credentials) => {
            let (username, password) = credentials.resolve("login")?;
            client.login(&username, password).await?;
            copy.forget();
            end_replaced_session(url, replaced.take()).await;
            say(format_args!("logged in as {username}"))?;
        }
        Command::Logout => {
            if client.tokens().is_none() {
                say(format_args!("not logged in"))?;
            } else {
                client.logout().await?;
                copy.forget();
                say(format_args!("logged out"))?;
                return Ok(());
            }
        }
        Command::Add { title, description, plan } => {
            let mut task = NewTask::new(title.as_str()).labels(&plan.label);
            if let Some(description) = description {
                task = task.description(description.as_str());
            }
            if let Some(due) = plan.due {
                task = task.due(due);
            }
            if let Some(priority) = plan.priority {
                task = task.priority(priority);
            }
            let task = client.tasks().create(task).await?;
            say(format_args!("added #{}: {}", task.id, task.title))?;
        }
        Command::Edit { id, title, description, status, plan, no_due, no_labels } => {
            let mut update = TaskUpdate::new();
            if let Some(title) = title {
                update = update.title(title.as_str());
            }
            if let Some(description) = description {
                update = update.description(description.as_str());
            }
            if let Some(status) = status {
                update = update.status(*status);
            }
            if let Some(due) = plan.due {
                update = update.due(due);
            }
            if *no_due {
                update = update.clear_due();
            }
            if let Some(priority) = plan.priority {
                update = update.priority(priority);
            }
            if !plan.label.is_empty() || *no_labels {
                update = update.labels(&plan.label);
            }
            if update.is_empty() {
                return Err(Failure::Other(
                    "nothing to change: give at least one option (taskctl help edit)".into(),
                ));
            }
            // As last seen here, before this run's sync: a task changed on the server since
            // then is not edited blindly.
            let seen = copy.load().get(*id).map(|task| task.version);
            let current = client.tasks().get(*id).await?;
            if seen.is_some_and(|version| version < current.version) {
                // The copy catches up, so that what the user looks at next is the server's.
                sync(&client, &copy).await;
                return Err(conflict(&current));
            }
            let edited = match current.etag() {
                Some(etag) => client.tasks().patch_if(*id, etag, update).await,
                None => client.tasks().patch(*id, update).await,
            };
            let task = match edited {
                Ok(task) => task,
                Err(Error::PreconditionFailed { .. }) => {
                    sync(&client, &copy).await;
                    return Err(conflict(&client.tasks().get(*id).await?.into_inner()));
                }
                Err(err) => return Err(err.into()),
            };
            say(format_args!("edited #{}: {}", task.id, task.title))?;
        }
        Command::Ls { status, priority, label, due_before, due_after, search, overdue, sort, .. } => {
            let now = Utc::now();
            let mut query = client.tasks().list().sort(*sort).limit(100);
            if let Some(status) = status {
                query = query.status(*status);
            }
            if let Some(priority) = priority {
                query = query.priority(*priority);
            }
            for label in label {
                query = query.label(label.as_str());
            }
            // Overdue: due before now; the done ones are left out below.
            if let Some(before) = due_before.iter().copied().chain(overdue.then_some(now)).min() {
                query = query.due_before(before);
            }
            if let Some(after) = due_after {
                query = query.due_after(*after);
            }
            if let Some(search) = search {
                query = query.search(search.as_str());
            }
            // The stream fetches page after page until every matching task has been seen.
            let mut tasks = query.stream();
            let mut count = 0;
            while let Some(task) = tasks.try_next().await? {
                if *overdue && task.status == TaskStatus::Done {
                    continue;
                }
                say(format_args!("{}", task_line(&task, now)))?;
                if let Some(description) = &task.description {
                    say(format_args!("{:>6}   {description}", ""))?;
                }
                count += 1;
            }
            if count == 0 {
                say(format_args!("no tasks"))?;
            }
        }
        Command::Done { id } => {
            let task = client.tasks().patch(*id, TaskUpdate::new().status(TaskStatus::Done)).await?;
            say(format_args!("done #{}: {}", task.id, task.title))?;
        }
        Command::Rm { id } => {
            client.tasks().delete(*id).await?;
            say(format_args!("removed #{id}"))?;
        }
        Command::Whoami => {
            let me = client.me().await?;
            say(format_args!("{} (user #{}) at {url}", me.username, me.id))?;
        }
        // Keeps the local copy current itself, change by change.
        Command::Watch { since } => return watch(&client, &copy, since.as_deref()).await,
    }
    sync(&client, &copy).await;
    Ok(())
}

/// Brings the local copy up to date. The command itself has succeeded: a failure here is a
/// warning, and the next run tries again.
async fn sync(client: &Client, copy: &session::LocalCopy) {
    if client.tokens().is_none() {
        return;
    }
    let mut replica = copy.load();
    let synced = match replica.sync(client).await {
        Ok(_) => copy.save(&replica).map_err(|err| err.to_string()),
        Err(err) => Err(err.to_string()),
    };
    if let Err(err) = synced {
        eprintln!("taskctl: warning: the local copy of your tasks was not updated: {err}");
    }
}

/// `watch`: brings the local copy up to date, then prints each change as it comes (those
/// after `since` first, if given) and applies it to the copy, until Ctrl-C, until a line finds
/// nobody reading the output (`taskctl watch | head -3`), or until an error the watch cannot
/// mend.
async fn watch(client: &Client, copy: &session::LocalCopy, since: Option<&str>) -> Result<(), Failure> {
    let mut replica = copy.load();
    replica.sync(client).await?;
    let mut saved = Saved::default();
    saved.save(copy, &replica);
    // The changes after the copy's cursor (or after `since`, which the synced copy is past:
    // replaying them gives each task its state now, so the copy stays current).
    let mut position = since.map(str::to_owned).or_else(|| replica.cursor().map(str::to_owned));
    let mut changes = client.tasks().watch(position.as_deref());
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    // Its handler is installed when it is first asked: before the user is told to press it.
    if stop.as_mut().now_or_never().is_some() {
        return Ok(());
    }
    eprintln!("taskctl: watching your tasks; Ctrl-C stops");
    loop {
        let next = tokio::select! {
            next = changes.next() => next,
            _ = &mut stop => {
                if let Some(position) = &position {
                    eprintln!("taskctl: stopped; `taskctl watch --since {position}` picks up from here");
                }
                return Ok(());
            }
        };
        match next {
            Some(Ok(change)) => {
                let line = change_line(&change, replica.get(change.task_id()), Utc::now());
                position = Some(change.cursor.clone());
                // Kept before it is shown: a reader gone now does not cost the copy a change.
                replica.apply_change(change);
                saved.save(copy, &replica);
                say(format_args!("{line}"))?;
            }
            // Away for longer than the server remembers deletions (or `since` is that old):
            // the copy starts again from every task, what that changed is shown, and the watch
            // goes on from there.
            Some(Err(Error::Gone { .. })) => {
                eprintln!("taskctl: that cursor is too old for the server; showing what changed since the local copy instead");
                let before = replica.clone();
                let report = replica.sync(client).await?;
                saved.save(copy, &replica);
                let now = Utc::now();
                for id in report.upserted.iter().chain(&report.deleted) {
                    let change = match replica.get(*id) {
                        Some(task) => Change::Upsert { task: task.clone() },
                        None => Change::Delete { id: *id },
                    };
                    let change = LiveChange::new(change, replica.cursor().unwrap_or_default());
                    say(format_args!("{}", change_line(&change, before.get(*id), now)))?;
                }
                position = replica.cursor().map(str::to_owned);
                changes = client.tasks().watch(position.as_deref());
            }
            Some(Err(err)) => return Err(err.into()),
            // A watch ends only after an error.
            None => return Ok(()),
        }
    }
}

/// Saves the local copy, warning once if it cannot (the watch goes on: the server has it all).
#[derive(Default)]
struct Saved {
    warned: bool,
}

impl Saved {
    fn save(&mut self, copy: &session::LocalCopy, replica: &Replica) {
        if let Err(err) = copy.save(replica) {
            if !std::mem::replace(&mut self.warned, true) {
                eprintln!("taskctl: warning: the local copy of your tasks is not being updated: {err}");
            }
        }
    }
}

/// The line `watch` prints for a change: `created`, `updated` or `deleted`, then the task as
/// `ls` shows it (as it was, for a deleted one, when the local copy knew it). `before` is what
/// the local copy held for the task.
fn change_line(change: &LiveChange, before: Option<&Task>, now: DateTime<Utc>) -> String {
    match &change.change {
        // New to the copy, or still at its first version (replayed after `--since`).
        Change::Upsert { task } if before.is_none() || task.version == 1 => {
            format!("created {}", task_line(task, now))
        }
        Change::Upsert { task } => format!("updated {}", task_line(task, now)),
        Change::Delete { .. } => match before {
            Some(task) => format!("deleted {}", task_line(task, now)),
            None => format!("deleted {:>6}", format!("#{}", change.task_id())),
        },
    }
}

/// The one-line refusal of an edit to a task that changed since it was last seen.
fn conflict(current: &Task) -> Failure {
    Failure::Other(format!(
        "#{} changed on the server since you last saw it: it is now {:?} ({}); nothing was edited, look again and repeat",
        current.id,
        current.title,
        current.status.as_str()
    ))
}

/// `ls --offline`: the filters and order of `ls`, applied to the local copy.
fn list_offline(command: &Command, copy: &session::LocalCopy) -> Result<(), Failure> {
    let Command::Ls { status, priority, label, due_before, due_after, search, overdue, sort, .. } = command
    else {
        return Ok(());
    };
    let replica = copy.saved().ok_or_else(|| {
        Failure::Other("no local copy of your tasks yet: run any command online first (`taskctl ls`)".into())
    })?;
    let now = Utc::now();
    let search = search.as_ref().map(|text| text.to_lowercase());
    let mut tasks: Vec<&Task> = replica
        .tasks()
        .values()
        .filter(|task| status.is_none_or(|status| task.status == status))
        .filter(|task| priority.is_none_or(|priority| task.priority == priority))
        .filter(|task| label.iter().all(|l| task.labels.iter().any(|t| t.eq_ignore_ascii_case(l))))
        .filter(|task| due_before.is_none_or(|before| task.due_at.is_some_and(|due| due < before)))
        .filter(|task| due_after.is_none_or(|after| task.due_at.is_some_and(|due| due >= after)))
        .filter(|task| {
            !*overdue || (task.status != TaskStatus::Done && task.due_at.is_some_and(|due| due < now))
        })
        .filter(|task| {
            search.as_ref().is_none_or(|text| {
                task.title.to_lowercase().contains(text)
                    || task.description.as_ref().is_some_and(|d| d.to_lowercase().contains(text))
            })
        })
        .collect();
    let order = sort.as_str();
    let descending = order.starts_with('-');
    tasks.sort_by(|a, b| {
        use std::cmp::Ordering;
        let rank = |p: Priority| ["none", "low", "medium", "high"].iter().position(|r| *r == p.as_str());
        let by = match order.trim_start_matches('-') {
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            "title" => a.title.cmp(&b.title),
            "priority" => rank(a.priority).cmp(&rank(b.priority)),
            "due_at" => match (a.due_at, b.due_at) {
                // No due date last, either way.
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => return Ordering::Less,
                (None, Some(_)) => return Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
            _ => a.created_at.cmp(&b.created_at),
        }
        .then(a.id.cmp(&b.id));
        if descending {
            by.reverse()
        } else {
            by
        }
    });
    for task in &tasks {
        say(format_args!("{}", task_line(task, now)))?;
        if let Some(description) = &task.description {
            say(format_args!("{:>6}   {description}", ""))?;
        }
    }
    if tasks.is_empty() {
        say(format_args!("no tasks"))?;
    }
    Ok(())
}

/// The one line taskctl prints for a failed `command`.
fn describe(failure: Failure, command: &Command, url: &str) -> String {
    let err = match failure {
        Failure::Other(message) => return message,
        Failure::Unread => return String::new(),
        Failure::Api(err) => err,
    };
    match (&err, command) {
        (Error::Unauthorized { .. }, Command::Login(_)) => "wrong username or password".to_owned(),
        (Error::Conflict { .. }, Command::Register(_)) => {
            "that username is taken: choose another, or `taskctl login`".to_owned()
        }
        (Error::NotFound { .. }, Command::Done { id } | Command::Rm { id } | Command::Edit { id, .. }) => {
            format!("no task #{id}")
        }
        (Error::Validation { .. }, Command::Watch { since: Some(since) }) => {
            format!("{since:?} is not a cursor of your tasks' change feed")
        }
        // No saved session, or one the server no longer accepts (logged out elsewhere, or
        // unused for longer than the refresh token lives).
        (Error::SessionExpired { .. } | Error::Unauthorized { .. }, _) => {
            "not logged in: run `taskctl login`".to_owned()
        }
        (err, _) if tasklane_examples::unreachable(err) => {
            let why = tasklane_examples::with_causes(err);
            format!(
                "cannot reach the server at {url} ({why}); is it running? (TASKLANE_URL sets the address)"
            )
        }
        // Validation errors name the field; the others carry the server's detail (a failed
        // refresh, its cause's).
        _ => tasklane_examples::with_causes(&err),
    }
}

impl Credentials {
    /// The username and password for `command` (`register` or `login`): as given, or asked for
    /// on the terminal. Without a terminal, a missing one is a usage error (exit status 2).
    fn resolve(&self, command: &str) -> Result<(String, String), Failure> {
        let interactive = io::stdin().is_terminal();
        let username = match &self.username {
            Some(username) => username.clone(),
            None if interactive => prompt("username: ")?,
            None => missing(command, "--username (or TASKLANE_USER)"),
        };
        let password = match &self.password {
            Some(password) => password.clone(),
            None if interactive => {
                let password = rpassword::prompt_password("password: ").map_err(prompt_failed)?;
                // A new password is typed twice, so a typo does not lock the user out.
                if command == "register"
                    && rpassword::prompt_password("again: ").map_err(prompt_failed)? != password
                {
                    return Err(Failure::Other("the passwords do not match".into()));
                }
                password
            }
            None => missing(command, "--password (or TASKLANE_PASSWORD)"),
        };
        Ok((username, password))
    }
}

/// Asks for one line on the terminal.
fn prompt(question: &str) -> Result<String, Failure> {
    eprint!("{question}");
    io::stderr().flush().map_err(prompt_failed)?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer).map_err(prompt_failed)?;
    Ok(answer.trim().to_owned())
}

fn prompt_failed(err: io::Error) -> Failure {
    Failure::Other(format!("cannot read from the terminal: {err}"))
}

/// Exits with clap's usage error for `command`, for a value that cannot be asked for.
fn missing(command: &str, what: &str) -> ! {
    let mut cli = Cli::command();
    cli.build(); // gives the subcommands their full names, for the usage line
    let command = cli.find_subcommand_mut(command).expect("a taskctl command");
    command
        .error(
            clap::error::ErrorKind::MissingRequiredArgument,
            format!("{what} is required when not run in a terminal"),
        )
        .exit()
}
