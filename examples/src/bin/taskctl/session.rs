//! Where taskctl keeps its session between runs: the SDK's `FileTokenStore`, a JSON file that
//! only its owner can read, in the user's config directory.

use std::path::{Path, PathBuf};

use tasklane::FileTokenStore;

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
