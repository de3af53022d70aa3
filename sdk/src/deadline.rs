//! A call's deadline: one bound on everything the call waits for.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Result};

/// When a call must be over: its call timeout, counted from when the call began.
///
/// Tokio's clock, so that tests with a paused clock see deadlines pass as the clock moves.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    /// The call timeout and the instant it runs out; `None` for a call without a deadline.
    limit: Option<(Duration, Instant)>,
}

impl Deadline {
    /// The deadline of a call that begins now with `timeout`; `None` for none.
    pub(crate) fn start(timeout: Option<Duration>) -> Self {
        // A timeout beyond what an instant can hold (`Duration::MAX`) never runs out.
        Self { limit: timeout.and_then(|timeout| Some((timeout, Instant::now().checked_add(timeout)?))) }
    }

    /// `future`'s output, or `None` when the deadline comes first (and `future` is dropped).
    pub(crate) async fn within<F: Future>(self, future: F) -> Option<F::Output> {
        match self.limit {
            Some((_, at)) => tokio::time::timeout_at(at, future).await.ok(),
            None => Some(future.await),
        }
    }

    /// `future`'s outcome, or [`Error::DeadlineExceeded`] when the deadline comes first.
    pub(crate) async fn bound<T>(self, future: impl Future<Output = Result<T>>) -> Result<T> {
        self.within(future).await.unwrap_or_else(|| Err(self.exceeded(None, None)))
    }

    /// Whether, after waiting `wait` from now, some time is left for another attempt. A wait
    /// that ends at the deadline or later is not worth starting: the call would only fail at
    /// its end instead of now.
    pub(crate) fn leaves_time_after(&self, wait: Duration) -> bool {
        self.limit.is_none_or(|(_, at)| Instant::now().checked_add(wait).is_some_and(|end| end < at))
    }

    /// The error of a call that reached this deadline.
    pub(crate) fn exceeded(&self, request_id: Option<String>, last_error: Option<Error>) -> Error {
        Error::DeadlineExceeded {
            timeout: self.limit.map_or(Duration::MAX, |(timeout, _)| timeout),
            request_id,
            last_error: last_error.map(Box::new),
        }
    }
}
