//! Password hashing: argon2id at the OWASP minimum (m = 19 MiB, t = 2, p = 1), run on a few
//! dedicated threads so a login storm can neither starve the async workers nor grow memory.
//!
//! Why threads of our own rather than `spawn_blocking` under a semaphore: each hash allocates
//! 19 MiB, and glibc keeps freed memory in per-thread arenas. Spread over the blocking pool's
//! changing threads, a storm left hundreds of MiB resident; on `concurrency` long-lived threads
//! the memory is bounded by `concurrency` × 19 MiB and reused hash after hash.

use std::sync::mpsc;
use std::sync::{Arc, LazyLock, Mutex};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::oneshot;

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

type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords on `concurrency` dedicated threads; requests beyond that wait
/// in line (FIFO) without holding an async worker.
#[derive(Clone)]
pub struct PasswordHasherPool {
    jobs: mpsc::Sender<Job>,
}

impl PasswordHasherPool {
    /// A pool of `concurrency` hashing threads. They end when the last clone of the pool drops.
    pub fn new(concurrency: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..concurrency.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job, not while hashing.
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })
                .expect("spawn an argon2 thread");
        }
        Self { jobs }
    }

    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(job());
            }))
            .map_err(|_| ApiError::Internal("the hashing threads are gone".into()))?;
        rx.await.map_err(|_| ApiError::Internal("a hashing job panicked".into()))
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

    #[tokio::test]
    async fn concurrent_jobs_all_complete_on_few_threads() {
        let pool = PasswordHasherPool::new(1);
        let jobs = (0..4).map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.hash(format!("password {i}")).await })
        });
        for job in jobs {
            assert!(job.await.unwrap().unwrap().starts_with("$argon2id$"));
        }
    }
}
