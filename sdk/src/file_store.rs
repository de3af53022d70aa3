//! A [`TokenStore`] in a file (feature `file-store`): a session that survives the program.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::auth::{TokenStore, Tokens};

/// A [`TokenStore`] that keeps the session in a JSON file only its owner can read, for
/// programs that resume their session when they start again (a command-line tool, a desktop
/// app).
///
/// - **Private**: on Unix the file is created with mode 0600 (and a missing directory with
///   0700), so other users never see the tokens, not even for a moment; a file that was more
///   open is replaced by one that is not.
/// - **Replaced whole**: the tokens are written to a temporary file beside it, flushed to the
///   disk, and renamed over it, so a crash, a full disk or another process reading at the
///   same time never sees half a file; the old session stays until the new one is complete.
/// - **One server's**: the file records the server it belongs to. [`load`](Self::load) gives
///   the tokens only to a store for the same server, so tokens are never sent to another
///   one, and [`clear`](TokenStore::clear) leaves another server's session alone. Saving
///   replaces whatever the file held.
///
/// Load the saved session before building the client, and give the client the store:
///
/// ```no_run
/// use tasklane::{Client, FileTokenStore};
///
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let server = "https://tasks.example.com";
/// let store = FileTokenStore::new("/home/ada/.config/my-app/session.json", server)
///     .on_error(|err| eprintln!("warning: {err}"));
/// let mut builder = Client::builder(server).token_store(store.clone());
/// if let Some(tokens) = store.load()? {
///     builder = builder.tokens(tokens); // resume: no login needed
/// }
/// let client = builder.build()?;
/// # Ok(())
/// # }
/// ```
///
/// The client saves the tokens at login and after every refresh (which rotates the refresh
/// token, so the file always holds the one that still works), and clears the file when the
/// session ends. As for any store, one file is one session for one client at a time: two
/// programs resumed from the same file would each use its one-use refresh token, and the
/// server would revoke the session for both (see [`TokenStore`]).
///
/// The store's methods cannot return errors (the client goes on with its tokens whatever
/// the store does): a failure is handed to [`on_error`](Self::on_error), and with the
/// `tracing` feature is also a WARN event. They write on Tokio's blocking threads, so that a
/// slow disk does not hold up the runtime, and so need the runtime, as the client does.
#[derive(Clone)]
pub struct FileTokenStore {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    path: PathBuf,
    server: String,
    on_error: Option<ErrorReport>,
}

/// The hook of [`FileTokenStore::on_error`].
type ErrorReport = Arc<dyn Fn(&io::Error) + Send + Sync>;

/// What the file holds.
#[derive(Serialize, Deserialize)]
struct SessionFile {
    server: String,
    tokens: Tokens,
}

impl FileTokenStore {
    /// A store in the file at `path` for the sessions of the server at `server`, the base URL
    /// the client is built with (`http://host:8000` and `http://host:8000/` are the same).
    /// Nothing is read or written until the store is used.
    pub fn new(path: impl Into<PathBuf>, server: impl AsRef<str>) -> Self {
        let server = server.as_ref().trim_end_matches('/').to_owned();
        Self { inner: Arc::new(Inner { path: path.into(), server, on_error: None }) }
    }

    /// Calls `report` with the error when saving or clearing the file fails (a read-only
    /// directory, a full disk). Default: only the `tracing` event, if that feature is on.
    ///
    /// ```
    /// use tasklane::FileTokenStore;
    ///
    /// let store = FileTokenStore::new("session.json", "http://127.0.0.1:8000")
    ///     .on_error(|err| eprintln!("my-app: warning: {err}"));
    /// ```
    pub fn on_error(self, report: impl Fn(&io::Error) + Send + Sync + 'static) -> Self {
        let inner = Arc::unwrap_or_clone(self.inner);
        Self { inner: Arc::new(Inner { on_error: Some(Arc::new(report)), ..inner }) }
    }

    /// Where the session is kept.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The saved session for this store's server: `None` when there is no file, or when it
    /// holds another server's session.
    ///
    /// # Errors
    ///
    /// The file could not be read, or does not hold a session (`InvalidData`).
    pub fn load(&self) -> io::Result<Option<Tokens>> {
        let json = match fs::read(self.path()) {
            Ok(json) => json,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let saved: SessionFile = serde_json::from_slice(&json)?;
        Ok((saved.server == self.inner.server).then_some(saved.tokens))
    }

    fn write(&self, tokens: &Tokens) -> io::Result<()> {
        let dir = match self.path().parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut dir_builder = fs::DirBuilder::new();
        dir_builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir_builder, 0o700);
        dir_builder.create(dir)?;

        // Beside the file, so that the rename stays on one file system and is atomic.
        let (mut file, temp) = create_private(dir, self.path())?;
        let written = (|| {
            let session = SessionFile { server: self.inner.server.clone(), tokens: tokens.clone() };
            serde_json::to_writer_pretty(&mut file, &session)?;
            file.write_all(b"\n")?;
            // On the disk before the rename: a crash after it must not leave an empty file.
            file.sync_all()?;
            fs::rename(&temp, self.path())
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written?;
        // The rename itself, made durable. Not every file system can sync a directory, and
        // the session is already complete in the file: a failure here is not worth a warning.
        #[cfg(unix)]
        let _ = fs::File::open(dir).and_then(|dir| dir.sync_all());
        Ok(())
    }

    fn remove(&self) -> io::Result<()> {
        // No file, or another server's session: nothing of ours to end. An unreadable file is
        // removed, since it is no use to anyone.
        if let Ok(None) = self.load() {
            return Ok(());
        }
        match fs::remove_file(self.path()) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// Runs `job` on a blocking thread (file I/O and `fsync` must not hold up the runtime's
    /// workers), and reports its failure.
    async fn run(
        &self,
        what: &'static str,
        job: impl FnOnce(&FileTokenStore) -> io::Result<()> + Send + 'static,
    ) {
        let store = self.clone();
        let done = tokio::task::spawn_blocking(move || job(&store)).await;
        let err = match done {
            Ok(Ok(())) => return,
            Ok(Err(err)) => err,
            Err(err) => io::Error::other(err),
        };
        let err = io::Error::new(
            err.kind(),
            format!("could not {what} the session in {}: {err}", self.path().display()),
        );
        #[cfg(feature = "tracing")]
        tracing::warn!(target: "tasklane", error = %err, "token store");
        if let Some(report) = &self.inner.on_error {
            report(&err);
        }
    }
}

/// Creates a new file for writing in `dir`, readable by its owner only, named after `path`'s
/// file with a random suffix; and its path.
fn create_private(dir: &Path, path: &Path) -> io::Result<(fs::File, PathBuf)> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    loop {
        let temp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&temp) {
            Ok(file) => return Ok((file, temp)),
            // Another writer's: pick another name.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
}

impl TokenStore for FileTokenStore {
    fn save<'a>(&'a self, tokens: &'a Tokens) -> BoxFuture<'a, ()> {
        let tokens = tokens.clone();
        Box::pin(self.run("save", move |store| store.write(&tokens)))
    }

    fn clear(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.run("remove", FileTokenStore::remove))
    }
}

impl fmt::Debug for FileTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileTokenStore")
            .field("path", &self.inner.path)
            .field("server", &self.inner.server)
            .finish_non_exhaustive()
    }
}
