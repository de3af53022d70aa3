//! Password hashing: argon2id at the OWASP minimum (m = 19 MiB, t = 2, p = 1), on a few
//! dedicated threads, so a login storm can neither starve the async workers nor run more
//! hashes (and hold more memory) than there are threads.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

use crate::error::ApiError;

/// The nice value of the hashing threads (the async workers run at 0): a login storm beside
/// other traffic takes the CPU the workers leave over, rather than an equal share of it.
const HASHING_NICENESS: i32 = 10;

/// Lowers the calling thread's priority (Linux keeps a nice value per thread). Raising one's
/// own nice value needs no privilege; if it fails anyway, hashing runs at normal priority.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: both calls take and return plain integers and touch no memory of ours; the
    // thread id is the caller's own, so only this thread's scheduling priority changes.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, HASHING_NICENESS);
    }
}

fn argon2() -> Argon2<'static> {
    // OWASP's minimum argon2id cost: 19 MiB of memory, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Verified against when the user does not exist, so an unknown name costs the same time as a
/// wrong password and login timing does not reveal who is registered. A fixed hash of a random
/// password nobody kept (a test checks it has the current parameters).
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$b6XXczbRoXzzY2gMlhUvcw$GRBLkzT2WODz8id53IwFjez4FuxsVXGN0fBZfErnmjE";

thread_local! {
    /// Each hashing thread's argon2 memory, kept from one job to the next while jobs are
    /// waiting, and given back when none is. Allocating it per hash made the allocator hold
    /// several freed 19 MiB buffers at once under a login storm; keeping it for good held it
    /// for the process's life after the first login.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs argon2 with this thread's kept memory. A hash of a higher memory cost than ours (made
/// with other parameters) gets memory of its own for the one job, so the kept buffer stays at
/// our cost.
fn hash_into(hasher: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> argon2::Result<()> {
    let blocks = hasher.params().block_count();
    if blocks > argon2().params().block_count() {
        return hasher.hash_password_into(password, salt, out);
    }
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        hasher.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
    })
}

/// The argon2id PHC string of `password`, with a fresh random 16-byte salt.
fn hash(password: &str) -> Result<String, String> {
    let argon2 = argon2();
    let salt: [u8; 16] = rand::random();
    let mut out = [0u8; 32];
    hash_into(&argon2, password.as_bytes(), &salt, &mut out).map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params()).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc` (with the parameters `phc` names). The
/// comparison of the outputs takes the same time wherever they differ.
fn matches(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(hash.algorithm.as_str()), Params::try_from(&hash))
    else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    hash_into(&argon2, password.as_bytes(), salt.as_ref(), &mut out).is_ok()
        && Output::new(&out).is_ok_and(|computed| &computed == expected)
}

type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords on `concurrency` dedicated threads; requests beyond that wait
/// in line without holding an async worker.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<Job>,
    /// Jobs sent and not yet taken by a thread.
    waiting: Arc<AtomicUsize>,
}

impl PasswordHasher {
    /// A pool of `concurrency` hashing threads. They end when the last clone of the pool drops.
    pub fn new(concurrency: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let waiting = Arc::new(AtomicUsize::new(0));
        for i in 0..concurrency.max(1) {
            let (queue, waiting) = (queue.clone(), waiting.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lower_this_threads_priority();
                    loop {
                        // The lock is held only while waiting for the next job, not while it runs.
                        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(job) = next else { return };
                        waiting.fetch_sub(1, Ordering::AcqRel);
                        job();
                        if waiting.load(Ordering::Acquire) == 0 {
                            MEMORY.take();
                        }
                    }
                })
                .expect("spawn an argon2 thread");
        }
        Self { jobs, waiting }
    }

    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.waiting.fetch_add(1, Ordering::AcqRel);
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(job());
            }))
            .map_err(|_| ApiError::Internal("the hashing threads are gone".into()))?;
        rx.await.map_err(|_| ApiError::Internal("a hashing job panicked".into()))
    }

    /// The argon2id PHC string of `password`, with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.run(move || hash(&password)).await?.map_err(|e| ApiError::Internal(format!("argon2: {e}")))
    }

    /// Whether `password` matches `phc`; with `None`, checks against the dummy hash and fails.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, ApiError> {
        self.run(move || match phc {
            Some(phc) => matches(&password, &phc),
            None => {
                matches(&password, DUMMY_HASH);
                false
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    /// Our PHC strings and the argon2 crate's own are the same format: each verifies the other.
    #[test]
    fn hashes_agree_with_the_argon2_crates_own() {
        let ours = hash("correct horse").unwrap();
        assert!(argon2().verify_password(b"correct horse", ours.as_str()).is_ok());
        assert!(argon2().verify_password(b"wrong horse", ours.as_str()).is_err());
        let theirs = argon2().hash_password(b"correct horse").unwrap().to_string();
        assert!(matches("correct horse", &theirs));
        assert!(!matches("wrong horse", &theirs));
        // A higher memory cost than ours verifies too, on memory of its own.
        let costlier =
            Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(32 * 1024, 1, 1, None).unwrap())
                .hash_password(b"hunter2")
                .unwrap()
                .to_string();
        assert!(matches("hunter2", &costlier));
        assert!(!matches("hunter3", &costlier));
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hasher = PasswordHasher::new(2);
        let phc = hasher.hash("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(hasher.verify("correct horse".into(), Some(phc.clone())).await.unwrap());
        assert!(!hasher.verify("wrong horse".into(), Some(phc)).await.unwrap());
        assert!(!hasher.verify("correct horse".into(), None).await.unwrap());
        assert!(!hasher.verify("x".into(), Some("not a phc string".into())).await.unwrap());
    }

    /// A hashing thread keeps its argon2 memory while jobs wait for it, and gives it back when
    /// none does.
    #[tokio::test]
    async fn argon2_memory_is_kept_only_while_jobs_wait() {
        let hasher = PasswordHasher::new(1);
        let memory = || MEMORY.with_borrow(Vec::len);
        // Both jobs are queued before the thread finishes the hash, so the probe waited for it.
        let (hashed, kept) = tokio::join!(hasher.hash("correct horse".into()), hasher.run(memory));
        hashed.unwrap();
        assert_eq!(kept.unwrap(), argon2().params().block_count());
        // The thread looks for waiting jobs just after the probe has answered, so the next probe
        // can come in first and find the memory kept for it; a pause lets the thread look first.
        let mut freed = false;
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if hasher.run(memory).await.unwrap() == 0 {
                freed = true;
                break;
            }
        }
        assert!(freed, "the memory is freed once no job waits");
    }

    #[test]
    fn dummy_hash_has_the_current_parameters() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let fresh = argon2().hash_password(b"x").unwrap();
        assert_eq!(dummy.algorithm, fresh.algorithm);
        assert_eq!(dummy.version, fresh.version);
        assert_eq!(dummy.params, fresh.params);
        assert_eq!(dummy.salt.unwrap().len(), fresh.salt.unwrap().len());
        assert_eq!(dummy.hash.unwrap().len(), fresh.hash.unwrap().len());
    }

    #[test]
    fn hashes_of_another_cost_still_verify() {
        let theirs =
            Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8 * 1024, 3, 1, None).unwrap())
                .hash_password(b"hunter2")
                .unwrap()
                .to_string();
        assert!(matches("hunter2", &theirs));
        assert!(!matches("hunter3", &theirs));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_below_normal_priority() {
        let _hasher = PasswordHasher::new(2);
        // The threads lower their priority first thing; give them a moment to start.
        let mut seen = 0;
        for _ in 0..100 {
            seen = 0;
            for task in std::fs::read_dir("/proc/self/task").unwrap() {
                let task = task.unwrap().path();
                if !std::fs::read_to_string(task.join("comm")).unwrap_or_default().starts_with("argon2-") {
                    continue;
                }
                // The nice value is field 19 of stat; fields counted after the ")" closing comm.
                let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
                let Some((_, rest)) = stat.rsplit_once(')') else { continue };
                let nice: i32 = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
                if nice == HASHING_NICENESS {
                    seen += 1;
                }
            }
            // Other tests in this process may run pools of their own beside this one.
            if seen >= 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(seen >= 2, "found {seen} argon2 threads at nice {HASHING_NICENESS}");
    }

    #[tokio::test]
    async fn concurrent_jobs_all_complete_on_few_threads() {
        let hasher = PasswordHasher::new(1);
        let jobs = (0..4).map(|i| {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(format!("password {i}")).await })
        });
        for job in jobs {
            assert!(job.await.unwrap().unwrap().starts_with("$argon2id$"));
        }
    }
}
