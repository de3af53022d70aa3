//! taskctl: a command-line tool for your Tasklane tasks, built on the SDK.
//!
//! Start a server, then run taskctl through cargo (the `--` separates taskctl's arguments from
//! cargo's):
//!
//! ```sh
//! cargo run -p tasklane-server                                        # terminal 1
//! cargo run -q -p tasklane-examples --bin taskctl -- register         # prompts for both
//! cargo run -q -p tasklane-examples --bin taskctl -- add "Write the docs" --description "all of them"
//! cargo run -q -p tasklane-examples --bin taskctl -- ls --status pending
//! cargo run -q -p tasklane-examples --bin taskctl -- done 1
//! ```
//!
//! or install it with `cargo install --path examples --bin taskctl` and run `taskctl --help`.
//!
//! Commands: `register`, `login`, `logout`, `add TITLE [--description TEXT]`,
//! `ls [--status STATUS]`, `done ID`, `rm ID`, `whoami`. `register` and `login` take
//! `--username` and `--password` (or `TASKLANE_USER` and `TASKLANE_PASSWORD`) and, in a
//! terminal, ask for what is missing, the password without echo.
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
use tasklane::futures::TryStreamExt as _;
use tasklane::{Client, Error, NewTask, TaskSort, TaskStatus, TaskUpdate, Tokens};

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
    },
    /// List your tasks, oldest first
    Ls {
        /// Only tasks with this status: pending, in_progress or done
        #[arg(long, short)]
        status: Option<TaskStatus>,
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
    /// Show who you are logged in as
    Whoami,
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
            end_replaced_session(url, replaced.take()).await;
            say(format_args!("registered and logged in as {username}"))?;
        }
        Command::Login(credentials) => {
            let (username, password) = credentials.resolve("login")?;
            client.login(&username, password).await?;
            end_replaced_session(url, replaced.take()).await;
            say(format_args!("logged in as {username}"))?;
        }
        Command::Logout => {
            if client.tokens().is_none() {
                say(format_args!("not logged in"))?;
            } else {
                client.logout().await?;
                say(format_args!("logged out"))?;
            }
        }
        Command::Add { title, description } => {
            let mut task = NewTask::new(title.as_str());
            if let Some(description) = description {
                task = task.description(description.as_str());
            }
            let task = client.tasks().create(task).await?;
            say(format_args!("added #{}: {}", task.id, task.title))?;
        }
        Command::Ls { status } => {
            let mut query = client.tasks().list().sort(TaskSort::CreatedAt).limit(100);
            if let Some(status) = status {
                query = query.status(*status);
            }
            // The stream fetches page after page until every matching task has been seen.
            let mut tasks = query.stream();
            let mut count = 0;
            while let Some(task) = tasks.try_next().await? {
                say(format_args!(
                    "{:>6}  {:<11}  {}",
                    format!("#{}", task.id),
                    task.status.as_str(),
                    task.title
                ))?;
                if let Some(description) = &task.description {
                    say(format_args!("{:>6}  {:<11}  {description}", "", ""))?;
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
        (Error::NotFound { .. }, Command::Done { id } | Command::Rm { id }) => format!("no task #{id}"),
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
