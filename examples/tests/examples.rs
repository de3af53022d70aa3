//! Every example, run as built against a real server: started in-process on a random port, on
//! a fresh SQLite database, so a broken example fails the tests.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tasklane_server::rocket::fairing::AdHoc;
use tasklane_server::testing::TestServer;

/// The server on 127.0.0.1:<random port>, served by a runtime on its own thread, and what it
/// saw: successful refreshes and the `User-Agent` of every request.
struct Server {
    url: String,
    refreshes: Arc<AtomicUsize>,
    user_agents: Arc<Mutex<Vec<String>>>,
    _server: TestServer,
}

impl Server {
    fn start(access_token_ttl: Duration) -> Server {
        let refreshes = Arc::new(AtomicUsize::new(0));
        let user_agents = Arc::new(Mutex::new(Vec::new()));
        let (counted, seen) = (refreshes.clone(), user_agents.clone());
        // Rate limits are off (a test server's default): every example logs in from the same
        // address, again and again.
        let server = TestServer::builder()
            .access_token_ttl(access_token_ttl)
            .attach(AdHoc::on_request("user agents", move |req, _| {
                if let Some(agent) = req.headers().get_one("User-Agent") {
                    seen.lock().unwrap().push(agent.to_owned());
                }
                Box::pin(async {})
            }))
            .attach(AdHoc::on_response("refreshes", move |req, res| {
                if req.uri().path() == "/auth/refresh" && res.status().code == 200 {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                Box::pin(async {})
            }))
            .start_blocking();
        Server { url: server.url().to_owned(), refreshes, user_agents, _server: server }
    }

    fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }

    /// Runs the example `bin` against this server with `args`, without a terminal on stdin and
    /// with none of the developer's own Tasklane settings.
    fn run(&self, bin: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = Command::new(bin);
        command.args(args).stdin(Stdio::null()).env("TASKLANE_URL", &self.url).env("NO_PROXY", "127.0.0.1");
        for var in ["TASKLANE_USER", "TASKLANE_PASSWORD", "TASKLANE_CONFIG_DIR", "TASKLANE_PROXY"] {
            command.env_remove(var);
        }
        command.envs(env.iter().copied());
        let output = command.output().unwrap_or_else(|e| panic!("run {bin}: {e}"));
        Run {
            what: format!("{} {}", Path::new(bin).file_name().unwrap().to_string_lossy(), args.join(" ")),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// One finished run of an example.
#[derive(Debug)]
struct Run {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts the exit status, and returns stdout.
    #[track_caller]
    fn exits(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "`{}` exited with {:?}\n{self:#?}", self.what, self.code);
        &self.stdout
    }

    #[track_caller]
    fn ok(&self) -> &str {
        self.exits(0)
    }
}

const QUICKSTART: &str = env!("CARGO_BIN_EXE_quickstart");
const TASKCTL: &str = env!("CARGO_BIN_EXE_taskctl");
const CONCURRENT: &str = env!("CARGO_BIN_EXE_concurrent");
const CUSTOM_CLIENT: &str = env!("CARGO_BIN_EXE_custom_client");
const SYNC: &str = env!("CARGO_BIN_EXE_sync");

#[test]
fn quickstart_registers_then_logs_in_on_the_next_run() {
    let server = Server::start(Duration::from_secs(900));
    for first in [true, false] {
        let run = server.run(QUICKSTART, &[], &[]);
        let out = run.ok();
        let greeting = if first { "registered quickstart-demo" } else { "logged in as quickstart-demo" };
        assert!(out.contains(greeting), "{run:#?}");
        for step in [
            "created  #",
            "high priority, due 20",
            r#"labels ["demo", "Getting started"]"#,
            "listed   1 pending demo task(s) of 1",
            "searched 1 task(s) mention the quickstart",
            "updated  #",
            "is now done (version 2, due date cleared)",
            "deleted  #",
        ] {
            assert!(out.contains(step), "{step:?} missing: {run:#?}");
        }
        assert!(out.ends_with("logged out\n"), "{run:#?}");
    }
}

#[test]
fn quickstart_says_when_no_server_answers() {
    // A port that was free a moment ago, and on which nothing listens now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let output = Command::new(QUICKSTART)
        .stdin(Stdio::null())
        .env("TASKLANE_URL", &url)
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("quickstart: the request could not be completed: "), "{stderr}");
    assert!(stderr.contains(&format!("is a server running at {url}?")), "{stderr}");
}

/// The task number in taskctl's `added #N: title`.
fn added_id(out: &str) -> String {
    let rest = out.strip_prefix("added #").unwrap_or_else(|| panic!("{out:?}"));
    rest.split(':').next().unwrap().to_owned()
}

#[test]
fn taskctl_keeps_its_session_between_runs() {
    // Access tokens of 3 s, so that later runs resume the session with a refresh.
    let server = Server::start(Duration::from_secs(3));
    let config = tempfile::tempdir().unwrap();
    let config_dir = config.path().join("tasklane");
    let session = config_dir.join("session.json");
    let env = [("TASKLANE_CONFIG_DIR", config_dir.to_str().unwrap())];
    let taskctl = |args: &[&str]| server.run(TASKCTL, args, &env);

    // Not logged in yet.
    let run = taskctl(&["whoami"]);
    run.exits(1);
    assert_eq!(run.stderr, "taskctl: not logged in: run `taskctl login`\n");

    // Without a terminal, what is missing cannot be asked for: a usage error.
    let run = taskctl(&["register", "--username", "ada"]);
    run.exits(2);
    assert!(run.stderr.contains("--password (or TASKLANE_PASSWORD) is required"), "{run:#?}");

    let run = taskctl(&["register", "--username", "ada", "--password", "correct horse"]);
    assert_eq!(run.ok(), "registered and logged in as ada\n");
    let run = taskctl(&["register", "--username", "ADA", "--password", "correct horse"]);
    run.exits(1);
    assert!(run.stderr.contains("that username is taken"), "{run:#?}");

    // Log out, and in again in one process; every later command is a new process.
    assert_eq!(taskctl(&["logout"]).ok(), "logged out\n");
    assert!(!session.exists(), "logout removes the session file");
    let run = taskctl(&["login", "--username", "ada", "--password", "wrong password"]);
    run.exits(1);
    assert_eq!(run.stderr, "taskctl: wrong username or password\n");
    let run = server.run(
        TASKCTL,
        &["login"],
        &[env[0], ("TASKLANE_USER", "ada"), ("TASKLANE_PASSWORD", "correct horse")],
    );
    assert_eq!(run.ok(), "logged in as ada\n");

    // The session file: only its owner may read it, and it names the server.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&session).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "session file mode {mode:o}");
    }
    let read_session =
        || -> serde_json::Value { serde_json::from_slice(&std::fs::read(&session).unwrap()).unwrap() };
    let saved = read_session();
    assert_eq!(saved["server"], server.url.as_str());

    // Logging in again replaces the session, and ends the replaced one on the server: its
    // refresh token, no longer saved anywhere, is refused from then on.
    let replaced: tasklane::Tokens = serde_json::from_value(saved["tokens"].clone()).unwrap();
    let run = server.run(
        TASKCTL,
        &["login"],
        &[env[0], ("TASKLANE_USER", "ada"), ("TASKLANE_PASSWORD", "correct horse")],
    );
    assert_eq!((run.ok(), run.stderr.as_str()), ("logged in as ada\n", ""));
    assert_ne!(read_session()["tokens"]["refresh_token"].as_str(), Some(replaced.refresh_token().expose()));
    let old = tasklane::Client::builder(&server.url).tokens(replaced).build().unwrap();
    let refused = tokio::runtime::Runtime::new().unwrap().block_on(old.refresh());
    assert!(matches!(refused, Err(tasklane::Error::SessionExpired { .. })), "{refused:?}");

    let first = added_id(taskctl(&["add", "Write the docs", "--description", "all of them"]).ok());
    let second = added_id(taskctl(&["add", "Ship it"]).ok());
    let out = taskctl(&["ls"]).ok().to_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains(&format!("#{first}"))
            && lines[0].contains("pending")
            && lines[0].ends_with("Write the docs")
    );
    assert!(lines[1].ends_with("all of them"), "{out}");
    assert!(lines[2].contains(&format!("#{second}")) && lines[2].ends_with("Ship it"), "{out}");

    assert_eq!(taskctl(&["done", &first]).ok(), format!("done #{first}: Write the docs\n"));
    let done = taskctl(&["ls", "--status", "done"]).ok().to_owned();
    assert!(done.contains("Write the docs") && !done.contains("Ship it"), "{done}");
    let pending = taskctl(&["ls", "--status", "pending"]).ok().to_owned();
    assert!(pending.contains("Ship it") && !pending.contains("Write the docs"), "{pending}");
    taskctl(&["ls", "--status", "someday"]).exits(2);

    // Let the access token expire: the next run refreshes, and saves the rotated refresh token
    // for the run after it (reusing the old one would end the session).
    let before = read_session()["tokens"]["refresh_token"].clone();
    let refreshes = server.refreshes();
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(taskctl(&["whoami"]).ok(), format!("ada (user #1) at {}\n", server.url));
    assert!(server.refreshes() > refreshes, "the expired access token was refreshed");
    assert_ne!(read_session()["tokens"]["refresh_token"], before, "the rotated refresh token was saved");
    std::thread::sleep(Duration::from_millis(3500));
    assert!(taskctl(&["ls"]).ok().contains("Ship it"));

    assert_eq!(taskctl(&["rm", &second]).ok(), format!("removed #{second}\n"));
    let run = taskctl(&["rm", &second]);
    run.exits(1);
    assert_eq!(run.stderr, format!("taskctl: no task #{second}\n"));

    // A session belongs to its server: pointed elsewhere, taskctl neither uses nor removes it.
    let elsewhere = server.url.replace("127.0.0.1", "localhost");
    let run = server.run(TASKCTL, &["whoami"], &[env[0], ("TASKLANE_URL", &elsewhere)]);
    run.exits(1);
    assert!(run.stderr.contains("not logged in"), "{run:#?}");
    assert_eq!(
        server.run(TASKCTL, &["logout"], &[env[0], ("TASKLANE_URL", &elsewhere)]).ok(),
        "not logged in\n"
    );
    assert!(session.exists());

    assert_eq!(taskctl(&["logout"]).ok(), "logged out\n");
    let run = taskctl(&["add", "One more thing"]);
    run.exits(1);
    assert_eq!(run.stderr, "taskctl: not logged in: run `taskctl login`\n");

    taskctl(&["frobnicate"]).exits(2);
}

/// `add` and `edit` with due dates, priorities and labels; `ls` filtering, searching and
/// sorting on them, in columns, marking what is overdue.
#[test]
fn taskctl_plans_with_due_dates_priorities_and_labels() {
    let server = Server::start(Duration::from_secs(900));
    let config = tempfile::tempdir().unwrap();
    let env = [("TASKLANE_CONFIG_DIR", config.path().to_str().unwrap())];
    let taskctl = |args: &[&str]| server.run(TASKCTL, args, &env);
    taskctl(&["register", "-u", "planner", "--password", "correct horse"]).ok();

    let rent = added_id(
        taskctl(&["add", "Pay rent", "--due", "tomorrow", "--priority", "high", "--label", "home"]).ok(),
    );
    let late =
        added_id(taskctl(&["add", "File taxes", "--due", "2020-04-15", "-l", "Home", "-l", "admin"]).ok());
    let someday = added_id(taskctl(&["add", "Learn the cello", "--priority", "low"]).ok());
    taskctl(&["add", "x", "--due", "next week"]).exits(2);
    taskctl(&["add", "x", "--priority", "urgent"]).exits(2);

    let out = taskctl(&["ls", "--sort", "due_at"]).ok().to_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].contains(&format!("#{late} !")) && lines[0].contains("2020-04-15 23:59"), "{out}");
    assert!(lines[0].ends_with("File taxes  [admin, Home]"), "{out}");
    assert!(
        lines[1].contains(&format!("#{rent}  ")) && lines[1].contains("high") && lines[1].ends_with("[home]"),
        "{out}"
    );
    assert!(
        lines[2].contains(&format!("#{someday}")) && lines[2].contains(" - ") && lines[2].contains("low"),
        "{out}"
    );
    // The columns line up: every title starts at the same place.
    let at = |line: &str, title: &str| line.find(title).unwrap();
    assert_eq!(at(lines[0], "File taxes"), at(lines[1], "Pay rent"), "{out}");
    assert_eq!(at(lines[1], "Pay rent"), at(lines[2], "Learn the cello"), "{out}");

    let titles = |args: &[&str]| -> Vec<String> {
        let out = taskctl(args).ok().to_owned();
        // The title column starts after number, mark, status, due date and priority.
        out.lines()
            .filter(|l| l.contains('#'))
            .map(|l| l[48..].split("  [").next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(titles(&["ls", "--label", "HOME", "--sort", "title"]), ["File taxes", "Pay rent"]);
    assert_eq!(titles(&["ls", "--label", "home", "--label", "admin"]), ["File taxes"]);
    assert_eq!(titles(&["ls", "--priority", "high"]), ["Pay rent"]);
    assert_eq!(titles(&["ls", "--overdue"]), ["File taxes"]);
    assert_eq!(titles(&["ls", "--search", "CELLO"]), ["Learn the cello"]);
    assert_eq!(titles(&["ls", "--due-after", "2021-01-01"]), ["Pay rent"]);
    assert_eq!(titles(&["ls", "--sort", "-priority"]), ["Pay rent", "Learn the cello", "File taxes"]);

    assert_eq!(
        taskctl(&["edit", &late, "--no-due", "--status", "done"]).ok(),
        format!("edited #{late}: File taxes\n")
    );
    assert!(taskctl(&["ls", "--overdue"]).ok().starts_with("no tasks"));
    taskctl(&[
        "edit",
        &someday,
        "--due",
        "2026-12-24T17:00",
        "-l",
        "music",
        "-l",
        "fun",
        "--priority",
        "medium",
    ])
    .ok();
    let line = taskctl(&["ls", "--label", "music"]).ok().to_owned();
    assert!(
        line.contains("2026-12-24 17:00")
            && line.contains("medium")
            && line.trim_end().ends_with("[fun, music]"),
        "{line}"
    );
    taskctl(&["edit", &someday, "--no-labels"]).ok();
    assert!(taskctl(&["ls", "--label", "music"]).ok().starts_with("no tasks"));
    let run = taskctl(&["edit", &someday]);
    run.exits(1);
    assert!(run.stderr.contains("nothing to change"), "{run:#?}");
    let run = taskctl(&["edit", "999999", "--priority", "low"]);
    run.exits(1);
    assert_eq!(run.stderr, "taskctl: no task #999999\n");
}

#[test]
fn taskctl_ls_pages_through_every_task() {
    let server = Server::start(Duration::from_secs(900));
    let config = tempfile::tempdir().unwrap();
    let env = [("TASKLANE_CONFIG_DIR", config.path().to_str().unwrap())];
    server.run(TASKCTL, &["register", "-u", "grace", "--password", "correct horse"], &env).ok();

    // More tasks than fit on one page (100), made through the SDK in a session of its own.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = tasklane::Client::new(&server.url).unwrap();
        client.login("grace", "correct horse").await.unwrap();
        for n in 1..=120 {
            client.tasks().create(tasklane::NewTask::new(format!("task {n:03}"))).await.unwrap();
        }
    });
    let out = server.run(TASKCTL, &["ls"], &env).ok().to_owned();
    let titles: Vec<&str> = out.lines().map(|line| line.rsplit("  ").next().unwrap()).collect();
    let expected: Vec<String> = (1..=120).map(|n| format!("task {n:03}")).collect();
    assert_eq!(titles, expected, "oldest first, all pages");
}

#[test]
fn concurrent_workers_share_one_refresh() {
    // Tokens of 10 s. The client refreshes ahead of expiry by its skew, at most half the
    // lifetime: the 50 workers create their tasks well within the first 5 s (no refresh yet),
    // then wait out the rest.
    let server = Server::start(Duration::from_secs(10));
    let run = server.run(CONCURRENT, &[], &[]);
    let out = run.ok();
    assert!(out.contains("50 workers finished and deleted their tasks after the expiry"), "{run:#?}");
    assert!(out.contains("token refreshes: 1\n"), "{run:#?}");
    assert_eq!(server.refreshes(), 1, "refreshes the server made");
}

#[test]
fn custom_client_sends_its_own_user_agent() {
    let server = Server::start(Duration::from_secs(900));
    let run = server.run(CUSTOM_CLIENT, &[], &[]);
    let out = run.ok();
    assert!(
        out.contains(&format!("{} is ok (asked as tasklane-custom-client-example/", server.url)),
        "{run:#?}"
    );
    assert!(out.contains("logged in as custom-client-demo (user #1) through the custom client"), "{run:#?}");
    let agents = server.user_agents.lock().unwrap();
    assert!(
        !agents.is_empty() && agents.iter().all(|a| a.starts_with("tasklane-custom-client-example/")),
        "{agents:?}"
    );
}

#[test]
fn taskctl_stops_quietly_when_its_reader_goes_away() {
    let server = Server::start(Duration::from_secs(900));
    let config = tempfile::tempdir().unwrap();
    let config_dir = config.path().join("tasklane");
    let env = [("TASKLANE_CONFIG_DIR", config_dir.to_str().unwrap())];
    server.run(TASKCTL, &["register", "--username", "piper", "--password", "correct horse"], &env).ok();
    server.run(TASKCTL, &["add", "one"], &env).ok();

    // `taskctl ls | head -0`: the reader is gone before the first line is written.
    let mut child = Command::new(TASKCTL)
        .arg("ls")
        .env("TASKLANE_URL", &server.url)
        .env("NO_PROXY", "127.0.0.1")
        .env("TASKLANE_CONFIG_DIR", &config_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

/// taskctl keeps a local copy of the tasks: `ls --offline` answers from it (without the
/// server's newer changes), and `edit` refuses, in one line naming the server's title and
/// status, a task that another device changed since this one last saw it.
#[test]
fn taskctl_keeps_a_local_copy_and_refuses_to_edit_what_changed_elsewhere() {
    let server = Server::start(Duration::from_secs(900));
    let (laptop, phone) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let on = |dir: &tempfile::TempDir, args: &[&str]| {
        server.run(TASKCTL, args, &[("TASKLANE_CONFIG_DIR", dir.path().to_str().unwrap())])
    };
    let run = on(&laptop, &["ls", "--offline"]);
    assert!(run.stderr.contains("no local copy"), "{run:#?}");
    run.exits(1);

    on(&laptop, &["register", "-u", "two-devices", "--password", "correct horse"]).ok();
    on(&phone, &["login", "-u", "two-devices", "--password", "correct horse"]).ok();
    let id = added_id(on(&laptop, &["add", "Buy milk"]).ok());
    assert!(on(&laptop, &["ls", "--offline"]).ok().contains("Buy milk"));

    // The phone renames it; the laptop has not synced since.
    on(&phone, &["edit", &id, "--title", "Buy oat milk"]).ok();
    let offline = on(&laptop, &["ls", "--offline"]).ok().to_owned();
    assert!(offline.contains("Buy milk") && !offline.contains("oat"), "{offline}");

    let run = on(&laptop, &["edit", &id, "--status", "done"]);
    assert_eq!(
        run.stderr,
        format!(
            "taskctl: #{id} changed on the server since you last saw it: it is now \"Buy oat milk\" \
             (pending); nothing was edited, look again and repeat\n"
        )
    );
    run.exits(1);
    // Nothing was edited, and the laptop's copy is now current.
    assert!(on(&phone, &["ls", "--status", "pending"]).ok().contains("Buy oat milk"));
    assert!(on(&laptop, &["ls", "--offline"]).ok().contains("Buy oat milk"));
    assert_eq!(on(&laptop, &["edit", &id, "--status", "done"]).ok(), format!("edited #{id}: Buy oat milk\n"));

    // A deletion elsewhere reaches the copy at the next command.
    on(&phone, &["rm", &id]).ok();
    on(&laptop, &["whoami"]).ok();
    assert_eq!(on(&laptop, &["ls", "--offline"]).ok(), "no tasks\n");
    // Logging out forgets the copy with the session.
    on(&laptop, &["logout"]).ok();
    on(&laptop, &["ls", "--offline"]).exits(1);
}

/// The sync example keeps a saved copy: a later run fetches only what changed meanwhile, and
/// prints it, deletions included.
#[test]
fn sync_saves_its_copy_and_fetches_only_what_changed() {
    let server = Server::start(Duration::from_secs(900));
    let dir = tempfile::tempdir().unwrap();
    // Not taskctl's own `replica.json`, which lives in the same directory here.
    let replica = dir.path().join("sync-copy.json");
    let account = [("TASKLANE_USER", "syncer"), ("TASKLANE_PASSWORD", "correct horse")];
    let sync = || {
        let mut env = account.to_vec();
        env.extend([("TASKLANE_REPLICA", replica.to_str().unwrap()), ("TASKLANE_SYNC_ROUNDS", "1")]);
        server.run(SYNC, &[], &env).ok().to_owned()
    };
    let first = sync();
    assert!(first.contains("round 1: 0 tasks, 0 changes"), "{first}");

    let env = [("TASKLANE_CONFIG_DIR", dir.path().to_str().unwrap())];
    server.run(TASKCTL, &["login", "-u", "syncer", "--password", "correct horse"], &env).ok();
    let id = added_id(server.run(TASKCTL, &["add", "Synced"], &env).ok());
    let second = sync();
    assert!(second.contains(&format!("changed  #{id} \"Synced\" (pending, version 1)")), "{second}");
    assert!(second.contains("round 1: 1 tasks, 1 changes"), "{second}");
    assert!(sync().contains("round 1: 1 tasks, 0 changes"), "nothing changed since");

    server.run(TASKCTL, &["rm", &id], &env).ok();
    let last = sync();
    assert!(
        last.contains(&format!("deleted  #{id}")) && last.contains("round 1: 0 tasks, 1 changes"),
        "{last}"
    );
}

// ---- Live updates: `taskctl watch` and the `live` example ----

const LIVE: &str = env!("CARGO_BIN_EXE_live");

/// The line `taskctl watch` writes on stderr once it is watching.
const WATCHING: &str = "taskctl: watching your tasks; Ctrl-C stops";

/// A `taskctl watch` running against a server, its output read as it comes, line by line; it
/// is killed if a test ends without stopping it.
struct Watching {
    child: std::process::Child,
    stdout: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::mpsc::Receiver<String>,
}

/// The lines `pipe` carries, as they come, on a channel.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

impl Watching {
    /// Starts `taskctl watch ARGS` with the session in `config_dir`; with `read_stdout` false,
    /// its stdout pipe is left in `child` for the test to do with as it likes.
    fn start(server_url: &str, config_dir: &Path, args: &[&str], read_stdout: bool) -> Watching {
        let mut child = Command::new(TASKCTL)
            .arg("watch")
            .args(args)
            .env("TASKLANE_URL", server_url)
            .env("NO_PROXY", "127.0.0.1")
            .env("TASKLANE_CONFIG_DIR", config_dir)
            .env_remove("TASKLANE_USER")
            .env_remove("TASKLANE_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout =
            if read_stdout { lines_of(child.stdout.take().unwrap()) } else { std::sync::mpsc::channel().1 };
        let stderr = lines_of(child.stderr.take().unwrap());
        let watching = Watching { child, stdout, stderr };
        let first = watching.stderr.recv_timeout(Duration::from_secs(20)).expect("taskctl watch started");
        assert_eq!(first, WATCHING);
        watching
    }

    /// The next line on stdout, within 10 s.
    #[track_caller]
    fn line(&self) -> String {
        self.stdout.recv_timeout(Duration::from_secs(10)).expect("a line from taskctl watch within 10 s")
    }

    /// Its exit code once it has exited (within 10 s), and what else it wrote on stderr.
    fn exit(&mut self) -> (Option<i32>, Vec<String>) {
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "taskctl watch is still running");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = Vec::new();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            stderr.push(line);
        }
        (status.code(), stderr)
    }

    /// Ctrl-C, as a terminal sends it; then as [`exit`](Watching::exit).
    fn interrupt(&mut self) -> (Option<i32>, Vec<String>) {
        // The shell's own `kill`, which needs no package beyond the shell.
        let pid = self.child.id().to_string();
        let sent = Command::new("sh").args(["-c", "kill -INT \"$0\"", &pid]).status().unwrap();
        assert!(sent.success());
        self.exit()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `taskctl watch` prints each change made elsewhere as it happens, one line each in the columns
/// of `ls` after what happened, and keeps the local copy current as it goes; Ctrl-C stops it
/// cleanly, naming the cursor it got to, from which `--since` later shows what changed meanwhile.
#[test]
fn taskctl_watch_prints_changes_as_they_happen() {
    let server = Server::start(Duration::from_secs(900));
    let (laptop, phone) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let on = |dir: &tempfile::TempDir, args: &[&str]| {
        server.run(TASKCTL, args, &[("TASKLANE_CONFIG_DIR", dir.path().to_str().unwrap())])
    };
    on(&laptop, &["register", "-u", "watcher", "--password", "correct horse"]).ok();
    on(&phone, &["login", "-u", "watcher", "--password", "correct horse"]).ok();
    // Made before the watch: in the laptop's copy once it starts, not shown as a change.
    let milk = added_id(on(&phone, &["add", "Buy milk"]).ok());

    let mut watching = Watching::start(&server.url, laptop.path(), &[], true);
    let id = added_id(on(&phone, &["add", "Water the plants", "--priority", "high"]).ok());
    let created = watching.line();
    assert!(created.starts_with("created ") && created.contains(&format!("#{id} ")), "{created}");
    assert!(
        created.contains(" pending ") && created.contains(" high ") && created.ends_with("Water the plants")
    );
    // The copy has it already, for `ls --offline`.
    assert!(on(&laptop, &["ls", "--offline"]).ok().contains("Water the plants"));

    on(&phone, &["edit", &id, "--title", "Water the balcony"]).ok();
    let renamed = watching.line();
    assert!(renamed.starts_with("updated ") && renamed.ends_with("Water the balcony"), "{renamed}");
    on(&phone, &["done", &id]).ok();
    let done = watching.line();
    assert!(done.starts_with("updated ") && done.contains(" done "), "{done}");
    on(&phone, &["rm", &id]).ok();
    let deleted = watching.line();
    assert!(deleted.starts_with(&format!("deleted {:>6}", format!("#{id}"))), "{deleted}");
    assert!(
        deleted.contains(" done ") && deleted.ends_with("Water the balcony"),
        "as it last was: {deleted}"
    );
    // The columns of `ls`, one after the word: every title starts at the same place.
    let titles: Vec<_> =
        [&created, &renamed, &done, &deleted].iter().map(|l| l.find("Water").unwrap()).collect();
    assert!(titles.iter().all(|at| *at == titles[0]), "{titles:?}");

    let (code, stderr) = watching.interrupt();
    assert_eq!(code, Some(0), "{stderr:?}");
    let [stopped] = &stderr[..] else { panic!("{stderr:?}") };
    let resume = stopped
        .strip_prefix("taskctl: stopped; `taskctl watch --since ")
        .and_then(|rest| rest.strip_suffix("` picks up from here"))
        .unwrap_or_else(|| panic!("{stopped}"));
    let offline = on(&laptop, &["ls", "--offline"]).ok().to_owned();
    assert!(offline.contains("Buy milk") && !offline.contains("Water"), "{offline}");

    // Later, on the phone; the laptop picks up from where it stopped.
    on(&phone, &["done", &milk]).ok();
    let mut again = Watching::start(&server.url, laptop.path(), &["--since", resume], true);
    let line = again.line();
    assert!(line.starts_with("updated ") && line.contains(" done ") && line.ends_with("Buy milk"), "{line}");
    assert_eq!(again.interrupt().0, Some(0));
}

/// `taskctl watch | head -0`: once nobody reads its output, the watch stops quietly at the next
/// change it has to show, as `tail -f` does.
#[test]
fn taskctl_watch_stops_when_its_reader_goes_away() {
    let server = Server::start(Duration::from_secs(900));
    let config = tempfile::tempdir().unwrap();
    let env = [("TASKLANE_CONFIG_DIR", config.path().to_str().unwrap())];
    server.run(TASKCTL, &["register", "-u", "reader", "--password", "correct horse"], &env).ok();

    let mut watching = Watching::start(&server.url, config.path(), &[], false);
    drop(watching.child.stdout.take());
    server.run(TASKCTL, &["add", "Nobody reads this"], &env).ok();
    let (code, stderr) = watching.exit();
    assert_eq!((code, stderr), (Some(0), vec![]));
}

/// An error the watch cannot mend ends taskctl with one line and status 1.
#[test]
fn taskctl_watch_ends_on_an_error_in_one_line() {
    let server = Server::start(Duration::from_secs(900));
    let config = tempfile::tempdir().unwrap();
    let env = [("TASKLANE_CONFIG_DIR", config.path().to_str().unwrap())];
    let run = server.run(TASKCTL, &["watch"], &env);
    run.exits(1);
    assert_eq!(run.stderr, "taskctl: not logged in: run `taskctl login`\n");

    server.run(TASKCTL, &["register", "-u", "erring", "--password", "correct horse"], &env).ok();
    let run = server.run(TASKCTL, &["watch", "--since", "nonsense"], &env);
    run.exits(1);
    assert_eq!(
        run.stderr,
        format!("{WATCHING}\ntaskctl: \"nonsense\" is not a cursor of your tasks' change feed\n")
    );
}

/// The live example: the watcher sees every write of the writer, in order, and stops by itself.
#[test]
fn live_the_watcher_sees_every_write() {
    let server = Server::start(Duration::from_secs(900));
    let run = server.run(LIVE, &[], &[]);
    let out = run.ok();
    let watcher: Vec<&str> = out.lines().filter(|line| line.starts_with("watcher: ")).collect();
    assert_eq!(watcher.first(), Some(&"watcher: live-demo has 0 tasks; watching for changes"), "{run:#?}");
    assert!(
        watcher[1].starts_with("watcher: created #")
            && watcher[1].ends_with("\"Water the plants\" (pending, version 1)")
    );
    let last = watcher.last().unwrap();
    assert!(
        last.starts_with("watcher: deleted #") && last.ends_with("\"Water the plants on the balcony\""),
        "{run:#?}"
    );
    assert!(
        out.ends_with("the watcher saw all 4 writes; its copy has 0 tasks, as the server does\n"),
        "{run:#?}"
    );
}
