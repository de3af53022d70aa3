//! What a backend's failure means for the request: the one place where sqlx's and Redis's
//! errors are sorted into "retry later" (503), "conflict" (409), "user gone" (401) and bugs.

use deadpool_redis::redis::{self, ErrorKind, ServerErrorKind};

use super::{TimedOut, BACKEND_TIMEOUT};

/// A storage failure, as handlers need to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend does not answer (connection refused, timeout, restart): 503.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule was broken: 409.
    #[error("conflict")]
    Conflict,
    /// A row the statement refers to is gone: the user of a token that is still valid was
    /// deleted (a database restored from a backup, say). 401, as for `/auth/me`.
    #[error("the user of this token no longer exists")]
    UserGone,
    /// Anything else: 500, logged.
    #[error("storage error: {0}")]
    Internal(String),
}

impl From<TimedOut> for StoreError {
    fn from(_: TimedOut) -> Self {
        Self::Unavailable(format!("no answer within {} s", BACKEND_TIMEOUT.as_secs()))
    }
}

impl From<TimedOut> for sqlx::Error {
    fn from(_: TimedOut) -> Self {
        let message = format!("the database did not answer within {} s", BACKEND_TIMEOUT.as_secs());
        sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, message))
    }
}

/// 503 for a database that does not answer, 409 for a uniqueness rule, 401 for a foreign key
/// (every foreign key leads to the user), 500 for the rest.
impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err.to_string()),
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => Self::UserGone,
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some(code) if unavailable_code(code) => Self::Unavailable(err.to_string()),
                // SQLite: SQLITE_BUSY / SQLITE_LOCKED and their extended codes, after the busy timeout.
                Some("5" | "6" | "517" | "262") => Self::Unavailable(err.to_string()),
                _ => Self::Internal(err.to_string()),
            },
            _ => Self::Internal(err.to_string()),
        }
    }
}

/// 503 for what passes: no connection, and the errors Redis answers while it cannot serve
/// (`LOADING` while it replays its file after a restart, `READONLY` on a primary demoted in a
/// failover, `MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`, `OOM` when full). Anything else is a bug.
impl From<redis::RedisError> for StoreError {
    fn from(err: redis::RedisError) -> Self {
        let refused = matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
            )
        ) || err.code() == Some("OOM");
        if refused
            || err.is_io_error()
            || err.is_connection_refusal()
            || err.is_timeout()
            || err.is_connection_dropped()
        {
            Self::Unavailable(format!("redis: {err}"))
        } else {
            Self::Internal(format!("redis: {err}"))
        }
    }
}

/// Whether a PostgreSQL error code met while connecting may pass by itself: connection
/// exceptions (08), shutdown and recovery (57P), too many connections (53300), not accepting
/// connections (55000). Not credentials (28) or a database that does not exist (3D000).
pub(super) fn passing_code(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || matches!(code, "53300" | "55000")
}

/// Whether a PostgreSQL error code means the database cannot serve now: the passing ones, a
/// statement cancelled by `statement_timeout` (57014), a database gone (3D000), credentials
/// refused (28).
fn unavailable_code(code: &str) -> bool {
    passing_code(code) || code.starts_with("28") || matches!(code, "57014" | "3D000")
}

/// Whether `err` means the connection itself is gone or unusable, so a database restart may
/// have cut the pool's other connections too: I/O, TLS or protocol failures, a crashed SQLite
/// worker, or PostgreSQL's connection exceptions (08) and shutdowns (57P01–57P03). Not a
/// database that is only slow or busy.
pub(super) fn connection_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            true
        }
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}
