//! Where taskctl keeps its session between runs: a JSON file that only its owner can read,
//! written through the SDK's `TokenStore`.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tasklane::{BoxFuture, TokenStore, Tokens};

/// The session file's directory: `TASKLANE_CONFIG_DIR`, or `tasklane` in the user's config
/// directory (`~/.config/tasklane` on Linux).
pub fn config_dir() -> Option<PathBuf> {
    match std::env::var_os("TASKLANE_CONFIG_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => dirs::config_dir().map(|dir| dir.join("tasklane")),
    }
}

/// What the file holds: the tokens, and the server that issued them.
#[derive(Serialize, Deserialize)]
struct SessionFile {
    server: String,
    tokens: Tokens,
}

/// A [`TokenStore`] in a file, for one server.
///
/// The client saves the tokens at login and after every refresh, which rotates the refresh
/// token: the file always holds the one that still works, so a session started a week ago
/// resumes. It clears them when the session ends (logout, or a refresh the server refused).
pub struct FileTokenStore {
    path: PathBuf,
    server: String,
}

impl FileTokenStore {
    /// A store in the file at `path`, for the server at `server`.
    pub fn new(path: PathBuf, server: &str) -> Self {
        // `http://host:8000` and `http://host:8000/` are the same server.
        Self { path, server: server.trim_end_matches('/').to_owned() }
    }

    /// Where the session is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved tokens, if there are any for this store's server: a session with another
    /// server is left alone.
    pub fn load(&self) -> io::Result<Option<Tokens>> {
        let json = match fs::read(&self.path) {
            Ok(json) => json,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let saved: SessionFile = serde_json::from_slice(&json)?;
        Ok((saved.server == self.server).then_some(saved.tokens))
    }

    fn write(&self, tokens: &Tokens) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut dir_builder = fs::DirBuilder::new();
        dir_builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir_builder, 0o700);
        dir_builder.create(dir)?;

        // Write a temporary file beside the session (tempfile creates it with mode 0600 on
        // Unix), then rename it over the old one: a crash or a concurrent run never sees half
        // a file, and the tokens are never readable by others, not even for a moment.
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        let session = SessionFile { server: self.server.clone(), tokens: tokens.clone() };
        serde_json::to_writer_pretty(&mut file, &session)?;
        file.write_all(b"\n")?;
        file.as_file().sync_all()?;
        file.persist(&self.path)?;
        Ok(())
    }

    fn remove(&self) -> io::Result<()> {
        // Another server's session is not ours to end.
        if let Ok(None) = self.load() {
            return Ok(());
        }
        match fs::remove_file(&self.path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

// The client calls these after the server has already changed the session, so a failure can
// only be reported. The file is small and local: it is written right here rather than on a
// blocking thread.
impl TokenStore for FileTokenStore {
    fn save<'a>(&'a self, tokens: &'a Tokens) -> BoxFuture<'a, ()> {
        if let Err(err) = self.write(tokens) {
            eprintln!("taskctl: warning: could not save the session in {}: {err}", self.path.display());
        }
        Box::pin(std::future::ready(()))
    }

    fn clear(&self) -> BoxFuture<'_, ()> {
        if let Err(err) = self.remove() {
            eprintln!("taskctl: warning: could not remove the session in {}: {err}", self.path.display());
        }
        Box::pin(std::future::ready(()))
    }
}
