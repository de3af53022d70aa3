//! Password hashing: argon2id at the OWASP minimum (m = 19 MiB, t = 2, p = 1), run on the
//! blocking pool under a semaphore so a login storm cannot starve the async workers.

use std::sync::{Arc, LazyLock};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// OWASP's minimum argon2id cost: 19 MiB of memory, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Verified against when the user does not exist, so an unknown name costs the same time as a
/// wrong password and login timing does not reveal who is registered.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let random: [u8; 16] = rand::random();
    argon2().hash_password(&random).expect("argon2 hashing of a random password").to_string()
});

/// Hashes and verifies passwords off the async workers, at most `concurrency` at once.
#[derive(Clone)]
pub struct PasswordHasherPool {
    permits: Arc<Semaphore>,
}

impl PasswordHasherPool {
    /// A pool running at most `concurrency` hashes at once.
    pub fn new(concurrency: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(concurrency.max(1))) }
    }

    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let _permit = self.permits.acquire().await.map_err(|_| ApiError::Internal("hasher closed".into()))?;
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| ApiError::Internal(format!("hashing task failed: {e}")))
    }

    /// The argon2id PHC string of `password`, with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.run(move || argon2().hash_password(password.as_bytes()).map(|h: PasswordHash| h.to_string()))
            .await?
            .map_err(|e| ApiError::Internal(format!("argon2: {e}")))
    }

    /// Whether `password` matches `phc`; with `None`, checks against the dummy hash and fails.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, ApiError> {
        self.run(move || {
            let known = phc.is_some();
            let phc = phc.unwrap_or_else(|| DUMMY_HASH.clone());
            let matches = PasswordHash::new(&phc)
                .map(|parsed| argon2().verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false);
            known && matches
        })
        .await
    }

    /// Computes the dummy hash now, so the first unknown-user login is not slower than the rest.
    pub async fn warm_up(&self) -> Result<(), ApiError> {
        self.run(|| LazyLock::force(&DUMMY_HASH).len()).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let pool = PasswordHasherPool::new(2);
        let phc = pool.hash("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(pool.verify("correct horse".into(), Some(phc.clone())).await.unwrap());
        assert!(!pool.verify("wrong horse".into(), Some(phc)).await.unwrap());
        assert!(!pool.verify("correct horse".into(), None).await.unwrap());
    }
}
