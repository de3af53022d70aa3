//! The JWT signing key: `SECRET_KEY`, or on the embedded default a key generated once and kept
//! in a file beside the database (mode 0600), so tokens survive a restart.

use std::io::Write;
use std::path::Path;

use crate::config::{DatabaseUrl, SECRET_KEY_MIN_BYTES};
use crate::store::create_owner_only;

/// The signing key for these settings. With PostgreSQL a `SECRET_KEY` is required (the config
/// refuses to load without one), since every instance must sign with the same key.
pub fn signing_key(secret_key: Option<&str>, database: &DatabaseUrl) -> Result<Vec<u8>, String> {
    if let Some(key) = secret_key {
        return Ok(key.as_bytes().to_vec());
    }
    match database.sqlite_file() {
        Some(db) => key_file(&db.with_extension("secret")),
        None => {
            tracing::warn!("in-memory database and no SECRET_KEY: tokens end with the process");
            Ok(random_key())
        }
    }
}

fn random_key() -> Vec<u8> {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes()
}

/// Reads the key file, or creates it with a new key. Of two instances starting at once, one
/// writes it and the other reads it.
fn key_file(path: &Path) -> Result<Vec<u8>, String> {
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    match create_owner_only(path)? {
        Some(mut file) => {
            let key = random_key();
            file.write_all(&key).and_then(|()| file.sync_all()).map_err(|e| fail("cannot write", e))?;
            tracing::info!(path = %path.display(), "generated a new secret key");
            Ok(key)
        }
        None => {
            let key = std::fs::read(path).map_err(|e| fail("cannot read", e))?;
            let key = key.trim_ascii().to_vec();
            if key.len() < SECRET_KEY_MIN_BYTES {
                return Err(format!(
                    "{} holds fewer than {SECRET_KEY_MIN_BYTES} bytes; delete it to generate a new key",
                    path.display()
                ));
            }
            Ok(key)
        }
    }
}
