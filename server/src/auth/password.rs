//! Password hashing: argon2id at the OWASP minimum (m = 19 MiB, t = 2, p = 1), run on a few
//! dedicated threads so a login storm can neither starve the async workers nor grow memory.
//!
//! Why threads of our own rather than `spawn_blocking` under a semaphore, and why each keeps
//! its own working memory: argon2's own API allocates 19 MiB per hash and frees it after. Under
//! glibc's malloc the freed blocks stayed in per-thread arenas, so a login storm left ~240 MB
//! resident (476 MB on the blocking pool's changing threads); any allocator makes every hash
//! fault in fresh pages. Here each of the `concurrency` threads allocates its 19 MiB at its
//! first hash and reuses it while hashes keep coming: memory is bounded by `concurrency` ×
//! 19 MiB. A thread that has had nothing to hash for [`MEMORY_KEPT_IDLE`] frees its memory, so
//! a server that is quiet again after a burst of logins returns to its idle footprint (once the
//! allocator hands the pages back; see DESIGN.md). The argon2 calls are the crate's own
//! (`hash_password_into_with_memory`); only the PHC string around them is assembled here, field
//! for field as `argon2`'s `PasswordHasher` does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

use crate::error::ApiError;

/// OWASP's minimum argon2id cost: 19 MiB of memory, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;
/// The nice value of the hashing threads (the async workers run at 0). A login storm beside
/// other traffic then takes the CPU the workers leave over, instead of an equal share of it:
/// on the list benchmark under a storm, ~1,800 -> ~2,500 requests/s and p99 69 -> 50 ms, for
/// fewer logins/s while other requests compete (none lost; alone, logins use both cores).
const HASHING_NICENESS: i32 = 10;

/// Lowers the calling thread's priority to [`HASHING_NICENESS`] (Linux keeps a nice value per
/// thread). Raising one's own nice value needs no privilege; if it fails anyway, hashing simply
/// runs at normal priority.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: both calls take and return plain integers and touch no memory of ours; the
    // thread id is the caller's own, so only this thread's scheduling priority changes.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, HASHING_NICENESS);
    }
}

/// Bytes of salt and of hash output, argon2's recommended lengths.
const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

fn params() -> Params {
    Params::new(MEMORY_KIB, PASSES, LANES, Some(OUTPUT_LEN)).expect("valid argon2 parameters")
}

/// Verified against when the user does not exist, so an unknown name costs the same time as a
/// wrong password and login timing does not reveal who is registered. A fixed hash of a random
/// password nobody kept (a test checks it has the current parameters): computing one at start
/// would cost a hash and leave its 19 MiB resident on an idle server.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$b6XXczbRoXzzY2gMlhUvcw$GRBLkzT2WODz8id53IwFjez4FuxsVXGN0fBZfErnmjE";

/// How long a hashing thread keeps its working memory with no job to do. Long enough that a
/// steady trickle of logins reuses it, short enough that an idle server gives it back.
pub const MEMORY_KEPT_IDLE: Duration = Duration::from_secs(10);

/// The argon2 working memory of one hashing thread, allocated at its first hash. `resident`
/// counts the bytes held by all the pool's threads; it is updated before a hash runs and when
/// the memory is dropped.
#[derive(Default)]
struct Memory {
    blocks: Vec<Block>,
    resident: Arc<AtomicUsize>,
}

impl Drop for Memory {
    fn drop(&mut self) {
        self.resident.fetch_sub(self.bytes(), Ordering::Relaxed);
    }
}

impl Memory {
    fn new(resident: Arc<AtomicUsize>) -> Self {
        Self { blocks: Vec::new(), resident }
    }

    fn bytes(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<Block>()
    }

    fn blocks(&mut self, count: usize) -> &mut [Block] {
        if self.blocks.len() < count {
            let before = self.bytes();
            self.blocks.resize(count, Block::default());
            self.resident.fetch_add(self.bytes() - before, Ordering::Relaxed);
        }
        &mut self.blocks[..count]
    }

    /// The argon2id PHC string of `password`, with a fresh random salt.
    fn hash(&mut self, password: &[u8]) -> Result<String, String> {
        let params = params();
        let salt: [u8; SALT_LEN] = rand::random();
        let mut out = [0u8; OUTPUT_LEN];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password_into_with_memory(password, &salt, &mut out, self.blocks(params.block_count()))
            .map_err(|e| e.to_string())?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
            salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
            hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches the PHC string `phc` (with the parameters `phc` names, as
    /// `argon2`'s `PasswordVerifier` does; the comparison is `Output`'s constant-time one).
    fn verify(&mut self, password: &[u8], phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else { return false };
        let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else { return false };
        let (Ok(algorithm), Ok(params)) =
            (Algorithm::try_from(hash.algorithm.as_str()), Params::try_from(&hash))
        else {
            return false;
        };
        let Ok(version) = hash.version.map_or(Ok(Version::default()), Version::try_from) else {
            return false;
        };
        let mut out = vec![0u8; expected.len()];
        let blocks = self.blocks(params.block_count());
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password, salt, &mut out, blocks)
            .is_ok()
            && Output::new(&out).is_ok_and(|computed| computed == *expected)
    }
}

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// Hashes and verifies passwords on `concurrency` dedicated threads; requests beyond that wait
/// in line (FIFO) without holding an async worker.
#[derive(Clone)]
pub struct PasswordHasherPool {
    jobs: flume::Sender<Job>,
    resident: Arc<AtomicUsize>,
}

impl PasswordHasherPool {
    /// A pool of `concurrency` hashing threads. They end when the last clone of the pool drops.
    pub fn new(concurrency: usize) -> Self {
        Self::with_idle_release(concurrency, MEMORY_KEPT_IDLE)
    }

    /// As [`new`](Self::new), with threads that free their working memory after `keep_idle`
    /// without a job.
    pub fn with_idle_release(concurrency: usize, keep_idle: Duration) -> Self {
        let (jobs, queue) = flume::unbounded::<Job>();
        let resident = Arc::new(AtomicUsize::new(0));
        for i in 0..concurrency.max(1) {
            let queue = queue.clone();
            let resident = resident.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lower_this_threads_priority();
                    let mut memory = Memory::new(resident);
                    loop {
                        let next = if memory.bytes() == 0 {
                            queue.recv().map_err(|_| flume::RecvTimeoutError::Disconnected)
                        } else {
                            queue.recv_timeout(keep_idle)
                        };
                        match next {
                            Ok(job) => job(&mut memory),
                            Err(flume::RecvTimeoutError::Timeout) => {
                                memory = Memory::new(memory.resident.clone());
                            }
                            Err(flume::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                })
                .expect("spawn an argon2 thread");
        }
        Self { jobs, resident }
    }

    /// Bytes of argon2 working memory the hashing threads hold right now.
    pub fn resident_bytes(&self) -> usize {
        self.resident.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |memory: &mut Memory| {
                let _ = tx.send(job(memory));
            }))
            .map_err(|_| ApiError::Internal("the hashing threads are gone".into()))?;
        rx.await.map_err(|_| ApiError::Internal("a hashing job panicked".into()))
    }

    /// The argon2id PHC string of `password`, with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.run(move |memory| memory.hash(password.as_bytes()))
            .await?
            .map_err(|e| ApiError::Internal(format!("argon2: {e}")))
    }

    /// Whether `password` matches `phc`; with `None`, checks against the dummy hash and fails.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, ApiError> {
        self.run(move |memory| match phc {
            Some(phc) => memory.verify(password.as_bytes(), &phc),
            None => {
                memory.verify(password.as_bytes(), DUMMY_HASH);
                false
            }
        })
        .await
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

    #[test]
    fn dummy_hash_has_the_current_parameters() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let fresh = PasswordHash::new(&Memory::default().hash(b"x").unwrap()).unwrap();
        assert_eq!(dummy.algorithm, fresh.algorithm);
        assert_eq!(dummy.version, fresh.version);
        assert_eq!(dummy.params, fresh.params);
        assert_eq!(dummy.salt.unwrap().len(), SALT_LEN);
        assert_eq!(dummy.hash.unwrap().len(), OUTPUT_LEN);
        assert!(!Memory::default().verify(b"", DUMMY_HASH));
    }

    #[test]
    fn verifies_what_the_argon2_crate_hashes_and_the_other_way_round() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let mut memory = Memory::default();
        // Another cost, as a hash carried over from elsewhere might have.
        let theirs =
            Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8 * 1024, 3, 1, None).unwrap())
                .hash_password(b"hunter2")
                .unwrap()
                .to_string();
        assert!(memory.verify(b"hunter2", &theirs));
        assert!(!memory.verify(b"hunter3", &theirs));
        let ours = memory.hash(b"hunter2").unwrap();
        let argon2 = Argon2::default();
        assert!(argon2.verify_password(b"hunter2", &PasswordHash::new(&ours).unwrap()).is_ok());
        assert!(argon2.verify_password(b"hunter3", &PasswordHash::new(&ours).unwrap()).is_err());
        assert!(!memory.verify(b"hunter2", "not a phc string"));
        assert!(!memory.verify(b"hunter2", "$argon2id$v=19$m=19456,t=2,p=1$qmSr1qk4Ty4fMfSbrjU2zA"));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_below_normal_priority() {
        let _pool = PasswordHasherPool::new(2);
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
    async fn idle_threads_give_their_memory_back() {
        let pool = PasswordHasherPool::with_idle_release(2, Duration::from_millis(200));
        assert_eq!(pool.resident_bytes(), 0, "nothing hashed yet");
        let phc = pool.hash("correct horse".into()).await.unwrap();
        let one = MEMORY_KIB as usize * 1024;
        assert_eq!(pool.resident_bytes(), one, "one thread hashed once");
        let (a, b) = tokio::join!(
            pool.verify("correct horse".into(), Some(phc.clone())),
            pool.verify("correct horse".into(), Some(phc.clone()))
        );
        assert!(a.unwrap() && b.unwrap());
        assert!(pool.resident_bytes() <= 2 * one);
        let mut waited = 0;
        while pool.resident_bytes() > 0 && waited < 100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        assert_eq!(pool.resident_bytes(), 0, "idle threads still hold memory");
        // A thread that gave its memory back hashes as before.
        assert!(pool.verify("correct horse".into(), Some(phc)).await.unwrap());
        assert_eq!(pool.resident_bytes(), one);
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
