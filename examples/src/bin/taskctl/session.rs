//! Where taskctl keeps its session between runs: the SDK's `FileTokenStore`, a JSON file that
//! only its owner can read, in the user's config directory.

use std::path::{Path, PathBuf};

use tasklane::{FileTokenStore, Replica};

/// The session file's directory: `TASKLANE_CONFIG_DIR`, or `tasklane` in the user's config
/// directory (`~/.config/tasklane` on Linux).
pub fn config_dir() -> Option<PathBuf> {
    match std::env::var_os("TASKLANE_CONFIG_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => dirs::config_dir().map(|dir| dir.join("tasklane")),
    }
}

/// The store of the session with the server at `url`, in `session.json` in `dir`.
///
/// The client saves the tokens at login and after every refresh, which rotates the refresh
/// token: the file always holds the one that still works, so a session started a week ago
/// resumes. It removes the file when the session ends (logout, or a refresh the server
/// refused). A failure to write it can only be reported: the server has changed the session
/// already.
pub fn store(dir: &Path, url: &str) -> FileTokenStore {
    FileTokenStore::new(dir.join("session.json"), url).on_error(|err| eprintln!("taskctl: warning: {err}"))
}

/// The local copy of the tasks, `replica.json` beside the session: the tasks as of the last
/// sync, for `ls --offline` and for telling whether a task changed since it was last seen.
pub struct LocalCopy {
    path: PathBuf,
    url: String,
}

impl LocalCopy {
    /// The copy of the tasks on the server at `url`, in `dir`.
    pub fn new(dir: &Path, url: &str) -> Self {
        Self { path: dir.join("replica.json"), url: url.to_owned() }
    }

    /// The saved replica; an empty one when there is none, or it is another server's, or it
    /// cannot be read (the next sync fetches everything again).
    pub fn load(&self) -> Replica {
        self.saved().unwrap_or_default()
    }

    /// The replica saved for this server, if there is one. The file holds
    /// `{"url": ..., "replica": ...}`: the server it is a copy of, and the copy.
    pub fn saved(&self) -> Option<Replica> {
        let bytes = std::fs::read(&self.path).ok()?;
        let mut saved: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        if saved["url"] != self.url.as_str() {
            return None;
        }
        serde_json::from_value(saved["replica"].take()).ok()
    }

    /// Saves `replica`, replacing the file whole (a temporary file, then a rename), so that a
    /// run stopped halfway leaves the previous copy.
    pub fn save(&self, replica: &Replica) -> std::io::Result<()> {
        let saved = serde_json::json!({ "url": self.url, "replica": replica });
        let bytes = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
        let temporary = self.path.with_extension("json.tmp");
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, &self.path)
    }

    /// Forgets the copy: it belongs to the session that ended.
    pub fn forget(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
