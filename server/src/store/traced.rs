//! A span around every store call, named by its operation (`store.list_tasks`), never carrying
//! its arguments: one wrapper for every backend, so each implementation stays plain.
//!
//! The spans are at `debug`, which the default log filter leaves off: they are made only when
//! traces are exported (`telemetry.rs`), or when `RUST_LOG` asks for them.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rocket::async_trait;
use tasklane::types::{NewTask, Task, TaskUpdate, User};
use tracing::field::Empty;
use tracing::Instrument as _;

use super::{
    Claim, Feed, IdempotencyStore, Replay, Rotation, SessionStore, Store, StoreError, TaskFilter,
    UserCredentials,
};

/// A store whose every call runs in a span of its own.
pub struct Traced<S> {
    inner: S,
    /// The backend, as OpenTelemetry names it (`db.system.name`): `postgresql`, `sqlite`, `redis`.
    system: &'static str,
}

impl<S> Traced<S> {
    /// `inner`, on the backend `system`.
    pub fn new(inner: S, system: &'static str) -> Self {
        Self { inner, system }
    }
}

/// The span of one call (the name must be a literal: a span's name is static).
macro_rules! span {
    ($self:ident, $name:literal) => {
        tracing::debug_span!($name, db.system.name = $self.system, otel.status_code = Empty)
    };
}

/// `call` in `span`. A backend that failed marks the span as an error; a conflict or a user
/// gone are answers, not failures.
pub(crate) async fn in_span<T>(
    span: tracing::Span,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let result = call.instrument(span.clone()).await;
    if matches!(result, Err(StoreError::Unavailable(_) | StoreError::Internal(_))) {
        span.record("otel.status_code", "error");
    }
    result
}

#[async_trait]
impl<S: Store> Store for Traced<S> {
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        in_span(span!(self, "store.create_user"), self.inner.create_user(username, password_hash, now)).await
    }

    async fn delete_user(&self, id: i64) -> Result<(), StoreError> {
        in_span(span!(self, "store.delete_user"), self.inner.delete_user(id)).await
    }

    async fn find_credentials(&self, username: &str) -> Result<Option<UserCredentials>, StoreError> {
        in_span(span!(self, "store.find_credentials"), self.inner.find_credentials(username)).await
    }

    async fn get_user(&self, id: i64) -> Result<Option<User>, StoreError> {
        in_span(span!(self, "store.get_user"), self.inner.get_user(id)).await
    }

    async fn create_task(
        &self,
        user_id: i64,
        task: &NewTask,
        now: DateTime<Utc>,
    ) -> Result<Task, StoreError> {
        in_span(span!(self, "store.create_task"), self.inner.create_task(user_id, task, now)).await
    }

    async fn list_tasks(&self, user_id: i64, filter: &TaskFilter) -> Result<(Vec<Task>, u64), StoreError> {
        in_span(span!(self, "store.list_tasks"), self.inner.list_tasks(user_id, filter)).await
    }

    async fn get_task(&self, user_id: i64, id: i64) -> Result<Option<Task>, StoreError> {
        in_span(span!(self, "store.get_task"), self.inner.get_task(user_id, id)).await
    }

    async fn update_task(
        &self,
        user_id: i64,
        id: i64,
        update: &TaskUpdate,
        now: DateTime<Utc>,
        versions: Option<&[i64]>,
    ) -> Result<Option<Task>, StoreError> {
        let call = self.inner.update_task(user_id, id, update, now, versions);
        in_span(span!(self, "store.update_task"), call).await
    }

    async fn delete_task(&self, user_id: i64, id: i64, versions: Option<&[i64]>) -> Result<bool, StoreError> {
        in_span(span!(self, "store.delete_task"), self.inner.delete_task(user_id, id, versions)).await
    }

    async fn changes(&self, user_id: i64, since: Option<i64>, limit: u32) -> Result<Feed, StoreError> {
        in_span(span!(self, "store.changes"), self.inner.changes(user_id, since, limit)).await
    }

    async fn last_change(&self, user_id: i64) -> Result<i64, StoreError> {
        in_span(span!(self, "store.last_change"), self.inner.last_change(user_id)).await
    }

    async fn prune_tombstones(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        in_span(span!(self, "store.prune_tombstones"), self.inner.prune_tombstones(before, batch)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        in_span(span!(self, "store.ping"), self.inner.ping()).await
    }

    fn pool_status(&self) -> (usize, usize) {
        self.inner.pool_status()
    }

    fn close(&self) {
        self.inner.close();
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for Traced<S> {
    async fn start_family(
        &self,
        family: &str,
        user_id: i64,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let call = self.inner.start_family(family, user_id, jti, expires_at);
        in_span(span!(self, "store.start_family"), call).await
    }

    async fn rotate(
        &self,
        family: &str,
        old_jti: &str,
        new_jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Rotation, StoreError> {
        in_span(span!(self, "store.rotate"), self.inner.rotate(family, old_jti, new_jti, expires_at)).await
    }

    async fn is_active(&self, family: &str, jti: &str) -> Result<bool, StoreError> {
        in_span(span!(self, "store.is_active"), self.inner.is_active(family, jti)).await
    }

    async fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
        in_span(span!(self, "store.revoke_family"), self.inner.revoke_family(family)).await
    }
}

#[async_trait]
impl<S: IdempotencyStore> IdempotencyStore for Traced<S> {
    async fn claim(
        &self,
        user_id: i64,
        key: &str,
        fingerprint: &str,
        in_flight: Duration,
    ) -> Result<Claim, StoreError> {
        let call = self.inner.claim(user_id, key, fingerprint, in_flight);
        in_span(span!(self, "store.claim_idempotency_key"), call).await
    }

    async fn complete(
        &self,
        user_id: i64,
        key: &str,
        answer: &Replay,
        keep: Duration,
    ) -> Result<(), StoreError> {
        let call = self.inner.complete(user_id, key, answer, keep);
        in_span(span!(self, "store.complete_idempotency_key"), call).await
    }

    async fn release(&self, user_id: i64, key: &str) -> Result<(), StoreError> {
        in_span(span!(self, "store.release_idempotency_key"), self.inner.release(user_id, key)).await
    }
}
