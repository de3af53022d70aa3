//! A local copy of the user's tasks, kept current through the change feed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::types::{Change, ChangePage, Task};
use crate::watch::LiveChange;
use crate::{Error, Result};

/// A local copy of the logged-in user's tasks, kept current through the change feed
/// (`GET /tasks/changes`): the tasks by id, and the cursor of the last change applied.
///
/// It is plain data: [`sync`](Replica::sync) asks a [`Client`] for the changes since its
/// cursor and applies them; anything else (a cache file, a UI's list) reads it. It serializes
/// with serde, so an application can save it when it exits and load it back at the next
/// start, which then fetches only what changed meanwhile:
///
/// ```no_run
/// use tasklane::{Client, Replica};
///
/// # async fn demo(client: Client) -> Result<(), Box<dyn std::error::Error>> {
/// let path = "/home/ada/.cache/my-app/tasks.json";
/// let mut replica: Replica = match std::fs::read(path) {
///     Ok(saved) => serde_json::from_slice(&saved)?,
///     Err(_) => Replica::new(),
/// };
/// let report = replica.sync(&client).await?;
/// println!("{} tasks; {} changed, {} deleted", replica.len(), report.upserted.len(), report.deleted.len());
/// for task in replica.tasks().values() {
///     println!("#{} {}", task.id, task.title);
/// }
/// std::fs::write(path, serde_json::to_vec(&replica)?)?;
/// # Ok(())
/// # }
/// ```
///
/// A replica belongs to one user: its cursor means nothing in another's session (the server
/// answers it 422). Start a new one after logging in as someone else.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    tasks: BTreeMap<i64, Task>,
    cursor: Option<String>,
}

impl Replica {
    /// An empty replica, without a cursor: its first sync fetches every task.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tasks, by id.
    pub fn tasks(&self) -> &BTreeMap<i64, Task> {
        &self.tasks
    }

    /// The task with this id, if the replica holds it.
    pub fn get(&self, id: i64) -> Option<&Task> {
        self.tasks.get(&id)
    }

    /// Where the next sync starts: the cursor of the last page applied; `None` before the
    /// first.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// How many tasks the replica holds.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether the replica holds no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Applies one page of the change feed, in order: an upsert replaces the task with its
    /// id (or adds it), a delete removes it (deleting an id the replica does not hold is
    /// nothing to do); then the page's cursor is the replica's.
    ///
    /// For pages fetched by the application itself ([`Tasks::changes`](crate::Tasks::changes)),
    /// applied in the order they came; [`sync`](Replica::sync) does the fetching too.
    ///
    /// ```
    /// use tasklane::{Change, ChangePage, Replica};
    ///
    /// let mut replica = Replica::new();
    /// replica.apply(&ChangePage { changes: vec![Change::Delete { id: 3 }], cursor: "c1".into(), has_more: false });
    /// assert!(replica.is_empty());
    /// assert_eq!(replica.cursor(), Some("c1"));
    /// ```
    pub fn apply(&mut self, page: &ChangePage) {
        for change in &page.changes {
            self.apply_one(change.clone());
        }
        self.cursor = Some(page.cursor.clone());
    }

    /// Applies one change of a [`Watch`](crate::Watch) (an upsert replaces or adds the task, a
    /// delete removes it), and takes its cursor as the replica's; what the replica held for
    /// that task before, if anything (the title of a task just deleted, say).
    ///
    /// So a watch started from the replica's cursor keeps it equal to the server, change by
    /// change. When the watch ends with [`Error::Gone`] (it was away for longer than the server
    /// remembers deletions), [`sync`](Replica::sync) rebuilds the replica, and a new watch goes
    /// on from its cursor:
    ///
    /// ```no_run
    /// use tasklane::futures::StreamExt as _;
    /// use tasklane::{Client, Error, Replica};
    ///
    /// # async fn demo(client: Client) -> tasklane::Result<()> {
    /// let mut replica = Replica::new();
    /// replica.sync(&client).await?; // first every task, and a cursor
    /// let mut changes = client.tasks().watch(replica.cursor());
    /// while let Some(change) = changes.next().await {
    ///     match change {
    ///         Ok(change) => {
    ///             replica.apply_change(change);
    ///             println!("{} tasks", replica.len());
    ///         }
    ///         Err(Error::Gone { .. }) => {
    ///             replica.sync(&client).await?; // starts again from every task
    ///             changes = client.tasks().watch(replica.cursor());
    ///         }
    ///         Err(err) => return Err(err),
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Only changes of a watch started from this replica's cursor (or from an earlier one)
    /// belong here. A change from a watch that started later, or without a cursor, would move
    /// the replica's cursor past changes it never saw, and no later sync would fetch them:
    /// sync a new replica before it applies live changes.
    ///
    /// ```
    /// use tasklane::{Change, LiveChange, Replica};
    ///
    /// let mut replica = Replica::new();
    /// assert_eq!(replica.apply_change(LiveChange::new(Change::Delete { id: 3 }, "c1.7")), None);
    /// assert_eq!(replica.cursor(), Some("c1.7"));
    /// ```
    pub fn apply_change(&mut self, change: LiveChange) -> Option<Task> {
        let (_, before) = self.apply_one(change.change);
        self.cursor = Some(change.cursor);
        before
    }

    /// Brings the replica up to date: fetches the changes since its cursor, page after page
    /// while the server has more, and applies them. Without a cursor (a new replica), that is
    /// every task.
    ///
    /// The pages are applied once all have come, so a sync that fails (the network, the
    /// session) leaves the replica as it was, and the report lists every change it made.
    ///
    /// When the server no longer knows the cursor ([`Error::Gone`]: it is older than the
    /// server keeps deleted tasks for, 30 days by default), the deletions since cannot be
    /// told: the replica starts again from scratch with every task, drops those that are
    /// gone, and the report says it [`resynced`](SyncReport::resynced).
    ///
    /// # Errors
    ///
    /// Any error of [`Tasks::changes`](crate::Tasks::changes) but that first 410; the replica
    /// is then unchanged.
    pub async fn sync(&mut self, client: &Client) -> Result<SyncReport> {
        let mut since = self.cursor.clone();
        let mut resynced = false;
        let mut pages = Vec::new();
        loop {
            let page = match client.tasks().changes(since.as_deref()).await {
                Ok(page) => page,
                // Asked without a cursor, the server cannot find it too old: a 410 then (or
                // a second one) is the server's to explain, not a reason to loop.
                Err(Error::Gone { .. }) if since.is_some() && !resynced => {
                    resynced = true;
                    since = None;
                    pages.clear();
                    continue;
                }
                Err(err) => return Err(err),
            };
            // A page that does not move the cursor on cannot lead anywhere new, whatever its
            // `has_more` says: stop rather than ask the same question forever.
            let more = page.has_more && since.as_deref() != Some(page.cursor.as_str());
            since = Some(page.cursor.clone());
            pages.push(page);
            if !more {
                break;
            }
        }

        // What each touched task was before the sync, to report only what really changed.
        let mut before: BTreeMap<i64, Option<Task>> = BTreeMap::new();
        if resynced {
            before = std::mem::take(&mut self.tasks).into_iter().map(|(id, task)| (id, Some(task))).collect();
        }
        let report_pages = pages.len();
        for page in pages {
            for change in page.changes {
                let (id, old) = self.apply_one(change);
                before.entry(id).or_insert(old);
            }
            self.cursor = Some(page.cursor);
        }
        let mut report = SyncReport { resynced, pages: report_pages, ..SyncReport::default() };
        for (id, old) in before {
            match (old, self.tasks.get(&id)) {
                (old, Some(now)) if old.as_ref() != Some(now) => report.upserted.push(id),
                (Some(_), None) => report.deleted.push(id),
                _ => {}
            }
        }
        Ok(report)
    }

    /// Applies one change; the task's id, and what the replica held for it before.
    fn apply_one(&mut self, change: Change) -> (i64, Option<Task>) {
        match change {
            Change::Upsert { task } => (task.id, self.tasks.insert(task.id, task)),
            Change::Delete { id } => (id, self.tasks.remove(&id)),
        }
    }
}

/// What a [`Replica::sync`] changed in the replica.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// The ids of the tasks added or changed, ascending. A task the feed sent unchanged (as a
    /// resync sends every task) is not listed.
    pub upserted: Vec<i64>,
    /// The ids of the tasks removed, ascending: deleted on the server, or, after a resync, no
    /// longer among the user's tasks. A deletion of a task the replica never held is not
    /// listed.
    pub deleted: Vec<i64>,
    /// Whether the replica's cursor was too old for the server ([`Error::Gone`]), so the
    /// replica was rebuilt from every task.
    pub resynced: bool,
    /// How many pages of the change feed were applied.
    pub pages: usize,
}

impl SyncReport {
    /// Whether the sync changed nothing.
    pub fn is_empty(&self) -> bool {
        self.upserted.is_empty() && self.deleted.is_empty()
    }
}
