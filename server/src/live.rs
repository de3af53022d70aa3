//! Word that a user's tasks changed, carried to the event streams open on this instance.
//!
//! A notification says only *whose* tasks changed: each stream then reads the change feed from
//! its own cursor, so a notification that is late, repeated or merged with another costs a read
//! and loses nothing. Without Redis they go from the write's handler straight to the streams.
//! With `REDIS_URL`, a write publishes the user's id on one channel after it commits, and each
//! instance holds one subscription to it (not one per stream) and fans it out to its streams,
//! so a write on any instance reaches them all.
//!
//! When the subscription breaks, notifications may have been missed: every stream open on the
//! instance ends (its client resumes from its cursor), new streams are refused with 503, and the
//! subscription is opened again with backoff; streams work again as soon as it is back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deadpool_redis::redis;
use futures::StreamExt;
use rocket::Shutdown;
use tokio::sync::{broadcast, watch};
use tracing::Instrument as _;

use crate::error::ApiError;
use crate::store::{bounded, RedisPool, StoreError};

/// The Redis channel that carries the ids of users whose tasks changed.
const CHANNEL: &str = "tasklane:changes";

/// Open streams a user may have on one instance.
pub const STREAMS_PER_USER: usize = 10;

/// How often an idle subscription is pinged, so that a connection that died without closing
/// (a partition, a failover) is noticed.
const PING_EVERY: Duration = Duration::from_secs(15);

/// Waits between attempts to subscribe again: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The notifications of one instance, shared by its handlers (`App::live`).
pub struct Hub {
    /// A channel per user with streams open here; its receivers are the streams.
    users: Mutex<HashMap<i64, broadcast::Sender<()>>>,
    /// Whether notifications arrive: always without Redis, while subscribed with it. Any change
    /// of it ends the streams open before it (notifications may have been missed in between).
    ready: watch::Sender<bool>,
    redis: Option<Link>,
}

struct Link {
    /// Publishes, on the pool the other Redis calls use.
    pool: RedisPool,
    /// Opens the subscription, a connection of its own outside the pool.
    client: redis::Client,
}

/// A stream's hold on the notifications for its user; dropping it frees its place.
pub struct Subscription {
    hub: Arc<Hub>,
    user_id: i64,
    changes: Option<broadcast::Receiver<()>>,
    ready: watch::Receiver<bool>,
}

/// What a stream waiting on its [`Subscription`] learns.
#[derive(Debug, PartialEq, Eq)]
pub enum Signal {
    /// The user's tasks may have changed.
    Changed,
    /// Notifications may have been missed, or the instance is stopping: the stream must end.
    Lost,
}

impl Hub {
    /// Notifications within this process (the embedded default, without Redis).
    pub fn local() -> Arc<Hub> {
        Arc::new(Hub { users: Mutex::default(), ready: watch::Sender::new(true), redis: None })
    }

    /// Notifications through Redis at `url`, publishing on `pool`. Not ready until
    /// [`Hub::listen`] has subscribed.
    pub fn redis(url: &str, pool: RedisPool) -> Result<Arc<Hub>, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(Arc::new(Hub {
            users: Mutex::default(),
            ready: watch::Sender::new(false),
            redis: Some(Link { pool, client }),
        }))
    }

    /// Takes a place for a stream of `user_id`: 429 past [`STREAMS_PER_USER`] on this
    /// instance, 503 while notifications cannot arrive.
    pub fn subscribe(self: &Arc<Self>, user_id: i64) -> Result<Subscription, ApiError> {
        // Marked seen now: the stream ends on the next change of readiness.
        let ready = self.ready.subscribe();
        if !*ready.borrow() {
            return Err(ApiError::Unavailable(
                "live events are unavailable for the moment; retry shortly".into(),
            ));
        }
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = users.entry(user_id).or_insert_with(|| broadcast::channel(16).0);
        if sender.receiver_count() >= STREAMS_PER_USER {
            return Err(ApiError::TooManyStreams(STREAMS_PER_USER));
        }
        let changes = Some(sender.subscribe());
        Ok(Subscription { hub: self.clone(), user_id, changes, ready })
    }

    /// Says that `user_id`'s tasks changed, after the change committed. Never waits: with
    /// Redis, the publication runs on its own, and one that fails is logged (the streams read
    /// the feed again at their next keep-alive anyway).
    pub fn publish(&self, user_id: i64) {
        let Some(link) = &self.redis else {
            self.deliver(user_id);
            return;
        };
        let pool = link.pool.clone();
        tokio::spawn(async move {
            let published = pool
                .run("redis.publish", |mut conn| async move {
                    redis::cmd("PUBLISH").arg(CHANNEL).arg(user_id).query_async::<i64>(&mut conn).await
                })
                .await;
            if let Err(err) = published {
                tracing::warn!(user_id, error = %err, "could not publish a change to the other instances");
            }
        }
        // In the request's trace, though it may end after the answer.
        .in_current_span());
    }

    /// Wakes this instance's streams of `user_id`.
    fn deliver(&self, user_id: i64) {
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = users.get(&user_id) {
            // No receiver left is no one to tell.
            let _ = sender.send(());
        }
    }

    /// With Redis: holds the subscription until shutdown, opening it again whenever it breaks.
    /// Without, returns at once.
    pub async fn listen(self: Arc<Self>, mut shutdown: Shutdown) {
        let Some(link) = &self.redis else { return };
        let mut wait = RETRY_FIRST;
        loop {
            let outcome = tokio::select! {
                outcome = self.subscribed(link, &mut wait) => outcome,
                _ = &mut shutdown => return,
            };
            let was_ready = self.ready.send_replace(false);
            if was_ready {
                tracing::warn!(error = %outcome, "lost the Redis subscription of live events; open streams end, new ones wait for it");
            } else {
                tracing::debug!(error = %outcome, "cannot subscribe to live events in Redis yet");
            }
            // Up to half again, so that instances restarted together do not retry together.
            let jitter = wait.mul_f64(rand::random::<f64>() / 2.0);
            tokio::select! {
                _ = tokio::time::sleep(wait + jitter) => {}
                _ = &mut shutdown => return,
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// Subscribes and delivers what arrives, until the connection fails (the error).
    async fn subscribed(&self, link: &Link, wait: &mut Duration) -> StoreError {
        let opened = bounded(async {
            let mut pubsub = link.client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok(pubsub)
        })
        .await;
        let (mut sink, mut messages) = match opened {
            Ok(pubsub) => pubsub.split(),
            Err(err) => return err,
        };
        if !self.ready.send_replace(true) {
            tracing::info!("subscribed to live events in Redis");
        }
        *wait = RETRY_FIRST;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(message) => match message.get_payload::<i64>() {
                        Ok(user_id) => self.deliver(user_id),
                        Err(err) => tracing::warn!(error = %err, "ignored a message on the live-events channel"),
                    },
                    None => return StoreError::Unavailable("the connection closed".into()),
                },
                _ = ping.tick() => {
                    // Subscribed, Redis answers a ping with an array (`pong` and an empty
                    // message), not the usual string: any answer will do.
                    if let Err(err) = bounded(async { Ok(sink.ping::<redis::Value>().await?) }).await {
                        return err;
                    }
                }
            }
        }
    }
}

impl Subscription {
    /// Waits for the next notification for this stream's user.
    pub async fn next(&mut self) -> Signal {
        let Some(changes) = &mut self.changes else { return Signal::Lost };
        tokio::select! {
            received = changes.recv() => match received {
                // Missed some while busy: the feed has them all the same.
                Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => Signal::Changed,
                Err(broadcast::error::RecvError::Closed) => Signal::Lost,
            },
            _ = self.ready.changed() => Signal::Lost,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut users = self.hub.users.lock().unwrap_or_else(PoisonError::into_inner);
        // This stream's receiver goes first, so that the last one out removes the channel.
        drop(self.changes.take());
        if users.get(&self.user_id).is_some_and(|sender| sender.receiver_count() == 0) {
            users.remove(&self.user_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_user_hears_only_their_own_changes_and_has_ten_places() {
        let hub = Hub::local();
        let mut mine = hub.subscribe(1).unwrap();
        let mut others = hub.subscribe(2).unwrap();
        hub.publish(1);
        assert_eq!(mine.next().await, Signal::Changed);
        let quiet = tokio::time::timeout(Duration::from_millis(50), others.next()).await;
        assert!(quiet.is_err(), "user 2 was told of user 1's change");

        let more: Vec<_> = (1..STREAMS_PER_USER).map(|_| hub.subscribe(1).unwrap()).collect();
        assert_eq!(hub.subscribe(1).err().map(|e| e.status().code), Some(429));
        drop(more);
        drop(mine);
        assert!(!hub.users.lock().unwrap().contains_key(&1), "the last stream out removes the channel");
        assert!(hub.subscribe(1).is_ok());
    }

    #[tokio::test]
    async fn a_change_of_readiness_ends_the_streams_open_before_it() {
        let hub = Hub::local();
        let mut open = hub.subscribe(1).unwrap();
        hub.ready.send_replace(false);
        assert_eq!(hub.subscribe(1).err().map(|e| e.status().code), Some(503));
        hub.ready.send_replace(true);
        assert_eq!(open.next().await, Signal::Lost, "back up again, but notifications were missed");
        let mut fresh = hub.subscribe(1).unwrap();
        hub.publish(1);
        assert_eq!(fresh.next().await, Signal::Changed);
    }
}
