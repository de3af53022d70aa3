//! `client.tasks()`: the logged-in user's tasks.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use futures::stream::{self, Stream, StreamExt as _, TryStreamExt as _};
use reqwest::header::{HeaderName, HeaderValue, IF_MATCH, IF_NONE_MATCH, LINK};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::client::{route, Answer, Auth, Call, Client};
use crate::error::request_id;
use crate::etag::{ETag, Tagged};
use crate::retry::IDEMPOTENCY_KEY;
use crate::types::{
    limits, validate_idempotency_key, ChangePage, FieldError, ListQuery, NewTask, Priority, Task, TaskSort,
    TaskStatus, TaskUpdate,
};
use crate::watch::Watch;
use crate::{Error, Result};

/// The header with the number of tasks that match a listing, across all pages.
const TOTAL_COUNT: &str = "x-total-count";

/// The logged-in user's tasks; made by [`Client::tasks`]. Every call needs a session, and
/// fails with [`Error::SessionExpired`] without sending anything while the client has none.
///
/// Requests are checked against the API's rules (lengths, page size) before they are sent, so
/// a bad one fails with [`Error::Validation`] without a round trip.
///
/// `Tasks` is `Copy` and its methods take it by value, so the futures they return borrow only
/// the client, not the `Tasks` made for the call: calls made in a closure can run together.
///
/// ```no_run
/// # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
/// let ids = [3, 5, 8];
/// let tasks = tasklane::futures::future::try_join_all(ids.iter().map(|id| client.tasks().get(*id))).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Tasks<'c> {
    client: &'c Client,
}

impl<'c> Tasks<'c> {
    pub(crate) fn new(client: &'c Client) -> Self {
        Self { client }
    }

    /// Creates a task (`POST /tasks/`); its title is sent trimmed. The answer carries the new
    /// task's [`ETag`], for a conditional write to follow.
    ///
    /// Each call sends an `Idempotency-Key` of its own (a random UUID), the same on every
    /// attempt, so a create is retried like the idempotent requests (after a lost connection,
    /// a timeout, 502, 503, 504 or 429, by the client's [`RetryPolicy`](crate::RetryPolicy))
    /// without ever making two tasks: the server answers a repeat with the task the first
    /// attempt created. Two calls are two tasks, even with the same fields. To retry a create
    /// across restarts of the application, keep a key of your own and use
    /// [`create_with_key`](Tasks::create_with_key).
    ///
    /// ```no_run
    /// # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
    /// use tasklane::{NewTask, TaskStatus};
    ///
    /// let task = client
    ///     .tasks()
    ///     .create(NewTask::new("ship 1.0").description("tag, publish, announce").status(TaskStatus::InProgress))
    ///     .await?;
    /// println!("created #{} ({:?})", task.id, task.etag());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create(self, task: NewTask) -> Result<Tagged<Task>> {
        self.create_with_key(task, &uuid::Uuid::new_v4().to_string()).await
    }

    /// Creates a task with the `Idempotency-Key` `key`: 1 to 255 visible ASCII characters,
    /// unique to this task (a UUID is a good choice).
    ///
    /// The server keeps the answer to a key for 24 hours (by default): the same create sent
    /// again with the same key within that time, by this process or a later one, gets the
    /// same task back, created once. Save the key with the task's fields before the first
    /// try, and remove it once the create has succeeded.
    ///
    /// ```no_run
    /// # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
    /// use tasklane::NewTask;
    ///
    /// // Saved in the application's outbox with the task, so a retry after a crash reuses it.
    /// let key = "outbox-42-9b1f0c4e";
    /// let task = client.tasks().create_with_key(NewTask::new("pay rent"), key).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Validation`] without a round trip for a key that breaks the rule (its field is
    /// `Idempotency-Key`), and from the server when the key was used before with other fields;
    /// [`Error::Conflict`] when a request with the key is still being processed after every
    /// retry.
    pub async fn create_with_key(self, task: NewTask, key: &str) -> Result<Tagged<Task>> {
        let (task, key) = match (task.validate(), validate_idempotency_key(key)) {
            (Ok(task), Ok(())) => (task, key),
            (task, key) => {
                let errors = task.err().unwrap_or_default().into_iter().chain(key.err()).collect();
                return Err(Error::invalid(errors));
            }
        };
        let mut call =
            self.client.json_request(Method::POST, route::TASKS, self.client.endpoint("tasks/"), &task);
        // Checked above: visible ASCII.
        let key = HeaderValue::from_str(key).expect("a valid idempotency key is a header value");
        call.request.headers_mut().insert(HeaderName::from_static(IDEMPOTENCY_KEY), key);
        self.client.send(call, Auth::Bearer).await?.tagged()
    }

    /// Starts a listing (`GET /tasks/`): set filters and paging on the returned builder, then
    /// `.await` it for one [`Page`] or call [`ListTasks::stream`] for every task.
    ///
    /// ```no_run
    /// # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
    /// use tasklane::{TaskSort, TaskStatus};
    ///
    /// let page = client.tasks().list().status(TaskStatus::Done).sort(TaskSort::Title).limit(20).await?;
    /// println!("{} of {:?} done tasks", page.items.len(), page.total);
    /// # Ok(())
    /// # }
    /// ```
    pub fn list(self) -> ListTasks<'c> {
        ListTasks { client: self.client, query: ListQuery::default() }
    }

    /// The page after `page`, following its `next` link; `None` on the last page.
    pub async fn next_page(self, page: &Page<Task>) -> Result<Option<Page<Task>>> {
        match &page.next {
            Some(next) => fetch_page(self.client, next.clone()).await.map(Some),
            None => Ok(None),
        }
    }

    /// One task (`GET /tasks/{id}`), with its [`ETag`].
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is no such task, or it belongs to somebody else.
    pub async fn get(self, id: i64) -> Result<Tagged<Task>> {
        let call = self.client.request(Method::GET, route::TASK, self.url(id), None);
        self.client.send(call, Auth::Bearer).await?.tagged()
    }

    /// The task, unless it is still the version `etag` names (`GET /tasks/{id}` with
    /// `If-None-Match`): `None` when it has not changed (the server answered 304 without the
    /// task), else the task as it is now with its new tag.
    ///
    /// ```no_run
    /// # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
    /// let mut task = client.tasks().get(7).await?;
    /// // Later: fetch it again only if it changed.
    /// if let Some(etag) = task.etag().cloned() {
    ///     if let Some(newer) = client.tasks().get_if_changed(7, &etag).await? {
    ///         task = newer;
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is no such task (any more), or it belongs to somebody
    /// else.
    pub async fn get_if_changed(self, id: i64, etag: &ETag) -> Result<Option<Tagged<Task>>> {
        let mut call = self.client.request(Method::GET, route::TASK, self.url(id), None);
        call.request.headers_mut().insert(IF_NONE_MATCH, header_value(etag));
        let answer = self.client.send(call, Auth::Bearer).await?;
        if answer.status == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        answer.tagged().map(Some)
    }

    /// Changes the fields that `update` sets and keeps the others (`PUT /tasks/{id}`); the
    /// task as it is now, with its new [`ETag`].
    ///
    /// This overwrites whatever another client wrote since the task was read. To change it
    /// only if it is still the version read, use [`update_if`](Tasks::update_if).
    ///
    /// ```no_run
    /// # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
    /// use tasklane::{TaskStatus, TaskUpdate};
    ///
    /// let task = client.tasks().update(7, TaskUpdate::new().status(TaskStatus::Done).clear_description()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn update(self, id: i64, update: TaskUpdate) -> Result<Tagged<Task>> {
        self.change(Method::PUT, id, update, None).await
    }

    /// The same as [`update`](Tasks::update), sent as `PATCH /tasks/{id}`.
    pub async fn patch(self, id: i64, update: TaskUpdate) -> Result<Tagged<Task>> {
        self.change(Method::PATCH, id, update, None).await
    }

    /// Changes the task only if it is still the version `etag` names (`PUT /tasks/{id}` with
    /// `If-Match`), so that no other client's change is lost: the server checks and writes in
    /// one step. The task as it is now, with its new [`ETag`].
    ///
    /// ```no_run
    /// # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
    /// use tasklane::{Error, TaskUpdate};
    ///
    /// let task = client.tasks().get(7).await?;
    /// let etag = task.etag().cloned().expect("the server tags every task it answers");
    /// let retitled = format!("{} (moved to Monday)", task.title);
    /// match client.tasks().update_if(task.id, &etag, TaskUpdate::new().title(retitled)).await {
    ///     Ok(task) => println!("saved: version {}", task.version),
    ///     Err(Error::PreconditionFailed { current_etag, .. }) => {
    ///         println!("someone changed #7 meanwhile (now {current_etag:?}): read it again")
    ///     }
    ///     Err(err) => return Err(err),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::PreconditionFailed`] when the task has changed since (or was deleted), with the
    /// current tag if it exists; nothing was changed. A conditional write is retried like any
    /// PUT, so when an attempt was applied but its answer lost, the retry is the one refused:
    /// its `current_etag` is then that of this very write.
    pub async fn update_if(self, id: i64, etag: &ETag, update: TaskUpdate) -> Result<Tagged<Task>> {
        self.change(Method::PUT, id, update, Some(etag)).await
    }

    /// The same as [`update_if`](Tasks::update_if), sent as `PATCH /tasks/{id}`.
    pub async fn patch_if(self, id: i64, etag: &ETag, update: TaskUpdate) -> Result<Tagged<Task>> {
        self.change(Method::PATCH, id, update, Some(etag)).await
    }

    async fn change(
        self,
        method: Method,
        id: i64,
        update: TaskUpdate,
        if_match: Option<&ETag>,
    ) -> Result<Tagged<Task>> {
        let update = update.validate().map_err(Error::invalid)?;
        let mut call = self.client.json_request(method, route::TASK, self.url(id), &update);
        if_matches(&mut call, if_match);
        self.client.send(call, Auth::Bearer).await?.tagged()
    }

    /// Deletes a task (`DELETE /tasks/{id}`).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is no such task, or it belongs to somebody else. A
    /// DELETE retried after a lost answer also finds the task already gone.
    pub async fn delete(self, id: i64) -> Result<()> {
        self.remove(id, None).await
    }

    /// Deletes the task only if it is still the version `etag` names (`DELETE /tasks/{id}`
    /// with `If-Match`): a task someone changed since it was read is kept.
    ///
    /// ```no_run
    /// # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
    /// use tasklane::{Error, TaskStatus};
    ///
    /// let task = client.tasks().get(7).await?;
    /// if let (TaskStatus::Done, Some(etag)) = (task.status, task.etag()) {
    ///     match client.tasks().delete_if(task.id, etag).await {
    ///         Ok(()) | Err(Error::NotFound { .. }) => println!("cleared"),
    ///         Err(Error::PreconditionFailed { .. }) => println!("reopened meanwhile: kept"),
    ///         Err(err) => return Err(err),
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::PreconditionFailed`] when the task has changed since; [`Error::NotFound`] when
    /// it does not exist, which a retry after a lost answer also finds.
    pub async fn delete_if(self, id: i64, etag: &ETag) -> Result<()> {
        self.remove(id, Some(etag)).await
    }

    async fn remove(self, id: i64, if_match: Option<&ETag>) -> Result<()> {
        let mut call = self.client.request(Method::DELETE, route::TASK, self.url(id), None);
        if_matches(&mut call, if_match);
        self.client.send(call, Auth::Bearer).await.map(drop)
    }

    /// The changes to the user's tasks after `since` (`GET /tasks/changes`), one page of them;
    /// without `since`, every task as it is now. Set the page size on the returned builder,
    /// then `.await` it.
    ///
    /// Apply each page in order to a local copy and ask again from its `cursor` while
    /// `has_more` is true: [`Replica`](crate::Replica) does all of that.
    ///
    /// ```no_run
    /// # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
    /// use tasklane::Change;
    ///
    /// let first = client.tasks().changes(None).limit(100).await?;
    /// // ... later, what changed since:
    /// let page = client.tasks().changes(Some(&first.cursor)).await?;
    /// for change in &page.changes {
    ///     match change {
    ///         Change::Upsert { task } => println!("#{} is now {:?}", task.id, task.title),
    ///         Change::Delete { id } => println!("#{id} was deleted"),
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Gone`] when `since` is older than the server remembers deleted tasks for
    /// (30 days by default): start again without it. [`Error::Validation`] naming `since` for a
    /// cursor the server does not recognise.
    pub fn changes(self, since: Option<&str>) -> ListChanges<'c> {
        ListChanges { client: self.client, since: since.map(str::to_owned), limit: None }
    }

    /// The changes to the user's tasks as they happen (`GET /tasks/events`): a [`Watch`], a
    /// stream of [`LiveChange`](crate::LiveChange)s, each a [`Change`](crate::Change) of the
    /// change feed with the feed's cursor after it. With `since` (a cursor of the feed), the
    /// changes made after it come first; without, the watch starts when it is first polled.
    ///
    /// The watch reconnects by itself whenever its connection ends (the server ends it when
    /// the access token expires; the watch refreshes the token and goes on), resuming right
    /// after the last change it yielded: nothing is skipped or repeated. It ends only with an
    /// error that reconnecting cannot mend, as its last item: [`Error::SessionExpired`],
    /// [`Error::Gone`] for a cursor too old (resync, then watch again), [`Error::Validation`]
    /// for a cursor that is not this user's, or another refusal. The client's call timeout
    /// bounds each attempt to connect, not the stream. [`Watch`] tells the details.
    ///
    /// ```no_run
    /// use tasklane::futures::StreamExt as _;
    /// use tasklane::{Change, Client, Error};
    ///
    /// # async fn demo(client: Client) -> tasklane::Result<()> {
    /// // From the state of a first read of the feed: nothing made after it is missed.
    /// let start = client.tasks().changes(None).await?;
    /// let mut changes = client.tasks().watch(Some(&start.cursor));
    /// while let Some(live) = changes.next().await {
    ///     match live {
    ///         Ok(live) => match &*live {
    ///             Change::Upsert { task } => println!("#{} {} ({})", task.id, task.title, live.cursor),
    ///             Change::Delete { id } => println!("#{id} deleted ({})", live.cursor),
    ///         },
    ///         Err(Error::SessionExpired { .. }) => println!("signed out: log in again"),
    ///         Err(err) => return Err(err),
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn watch(self, since: Option<&str>) -> Watch {
        Watch::new(self.client.clone(), since.map(str::to_owned))
    }

    fn url(&self, id: i64) -> Url {
        self.client.endpoint(&format!("tasks/{id}"))
    }
}

/// `etag` as the value of an `If-Match` or `If-None-Match` header.
fn header_value(etag: &ETag) -> HeaderValue {
    // An `ETag` is checked to be visible ASCII when it is made.
    HeaderValue::from_str(etag.as_str()).expect("an entity tag is a header value")
}

/// Makes `call` conditional on `etag`, if there is one.
fn if_matches(call: &mut Call, etag: Option<&ETag>) {
    if let Some(etag) = etag {
        call.request.headers_mut().insert(IF_MATCH, header_value(etag));
    }
}

/// A request for a page of the change feed being set up; made by [`Tasks::changes`].
///
/// `.await` it (or call [`send`](ListChanges::send)) for the page.
#[derive(Clone, Debug)]
#[must_use = "a request for changes does nothing until it is awaited"]
pub struct ListChanges<'c> {
    client: &'c Client,
    since: Option<String>,
    limit: Option<u32>,
}

impl<'c> ListChanges<'c> {
    /// Changes per page, 1 to 1,000. Default: 500.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Fetches the page.
    pub async fn send(self) -> Result<ChangePage> {
        let url = self.url()?;
        let call = self.client.request(Method::GET, route::CHANGES, url, None);
        self.client.send(call, Auth::Bearer).await?.json()
    }

    fn url(&self) -> Result<Url> {
        if self.limit.is_some_and(|limit| !(1..=limits::CHANGES_LIMIT_MAX).contains(&limit)) {
            let message = format!("must be 1 to {}", limits::CHANGES_LIMIT_MAX);
            return Err(Error::invalid(vec![FieldError::new("limit", message)]));
        }
        let mut url = self.client.endpoint("tasks/changes");
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(since) = &self.since {
                pairs.append_pair("since", since);
            }
            if let Some(limit) = self.limit {
                pairs.append_pair("limit", &limit.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }
}

impl<'c> IntoFuture for ListChanges<'c> {
    type Output = Result<ChangePage>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'c>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A listing of tasks being set up; made by [`Tasks::list`].
///
/// `.await` it (or call [`send`](ListTasks::send)) for the first page, or turn it into a
/// [`stream`](ListTasks::stream) of every matching task.
#[derive(Clone, Debug)]
#[must_use = "a listing does nothing until it is awaited or streamed"]
pub struct ListTasks<'c> {
    client: &'c Client,
    query: ListQuery,
}

impl<'c> ListTasks<'c> {
    /// Only tasks with this status.
    pub fn status(mut self, status: TaskStatus) -> Self {
        self.query.status = Some(status);
        self
    }

    /// Tasks per page, 1 to 100. Default: 50.
    pub fn limit(mut self, limit: u32) -> Self {
        self.query.limit = Some(limit);
        self
    }

    /// Tasks to skip. Default: 0.
    pub fn offset(mut self, offset: u64) -> Self {
        self.query.offset = Some(offset);
        self
    }

    /// The order. Default: newest first ([`TaskSort::CreatedAtDesc`]).
    pub fn sort(mut self, sort: TaskSort) -> Self {
        self.query.sort = Some(sort);
        self
    }

    /// Only tasks of this priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.query.priority = Some(priority);
        self
    }

    /// Only tasks carrying this label (compared ignoring case); each call adds one, and a task
    /// must carry them all.
    ///
    /// ```no_run
    /// # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
    /// use tasklane::{Priority, TaskSort};
    ///
    /// let week = chrono::Utc::now() + chrono::TimeDelta::days(7);
    /// let urgent = client
    ///     .tasks()
    ///     .list()
    ///     .label("home")
    ///     .priority(Priority::High)
    ///     .due_before(week)
    ///     .search("rent")
    ///     .sort(TaskSort::DueAt)
    ///     .await?;
    /// println!("{} urgent tasks at home", urgent.total.unwrap_or_default());
    /// # Ok(())
    /// # }
    /// ```
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.query.labels.push(label.into());
        self
    }

    /// Only tasks due before `at` (tasks without a due date are left out).
    pub fn due_before(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
        self.query.due_before = Some(at);
        self
    }

    /// Only tasks due at or after `at` (tasks without a due date are left out).
    pub fn due_after(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
        self.query.due_after = Some(at);
        self
    }

    /// Only tasks whose title or description contains `text`, ignoring case; a literal
    /// substring, 1 to 200 characters.
    pub fn search(mut self, text: impl Into<String>) -> Self {
        self.query.q = Some(text.into());
        self
    }

    /// Replaces every setting with those of `query`.
    pub fn query(mut self, query: ListQuery) -> Self {
        self.query = query;
        self
    }

    /// Fetches the page the query describes.
    pub async fn send(self) -> Result<Page<Task>> {
        fetch_page(self.client, self.url()?).await
    }

    /// Every task the query matches, from its offset on, fetched a page at a time by following
    /// the `next` links. The stream ends after the last page, or after the first error.
    ///
    /// Pages are offsets into the list as it is when each page is fetched, so changes made
    /// while streaming move the tasks under it. Completing or deleting the tasks it yields
    /// (with a status filter) takes them out of the list, and every second page's worth is
    /// skipped; tasks created meanwhile, in the default newest-first order, push the others
    /// down and some come again. To change every task a query matches, collect them first
    /// (`try_collect`), or fetch the first page again until it comes back empty.
    ///
    /// ```no_run
    /// # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
    /// use tasklane::futures::TryStreamExt as _;
    /// use tasklane::TaskStatus;
    ///
    /// let mut pending = client.tasks().list().status(TaskStatus::Pending).limit(100).stream();
    /// while let Some(task) = pending.try_next().await? {
    ///     println!("#{} {}", task.id, task.title);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream(self) -> impl Stream<Item = Result<Task>> + Send + Unpin + 'static {
        let client = self.client.clone();
        stream::try_unfold(Some(self.url()), move |next| {
            let client = client.clone();
            async move {
                let Some(url): Option<Result<Url>> = next else { return Ok(None) };
                let page = fetch_page(&client, url?).await?;
                // An empty page ends the stream even if it links further, so a server that
                // keeps linking cannot make it loop.
                let next = if page.items.is_empty() { None } else { page.next.map(Ok) };
                Ok::<_, Error>(Some((stream::iter(page.items.into_iter().map(Ok)), next)))
            }
        })
        .try_flatten()
        .boxed()
    }

    fn url(&self) -> Result<Url> {
        self.query.validate().map_err(Error::invalid)?;
        let mut url = self.client.endpoint("tasks/");
        {
            let mut pairs = url.query_pairs_mut();
            let ListQuery { status, limit, offset, sort, priority, labels, due_before, due_after, q } =
                &self.query;
            if let Some(status) = status {
                pairs.append_pair("status", status.as_str());
            }
            if let Some(limit) = limit {
                pairs.append_pair("limit", &limit.to_string());
            }
            if let Some(offset) = offset {
                pairs.append_pair("offset", &offset.to_string());
            }
            if let Some(sort) = sort {
                pairs.append_pair("sort", sort.as_str());
            }
            if let Some(priority) = priority {
                pairs.append_pair("priority", priority.as_str());
            }
            for label in labels {
                pairs.append_pair("label", label);
            }
            let time =
                |at: &chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            if let Some(at) = due_before {
                pairs.append_pair("due_before", &time(at));
            }
            if let Some(at) = due_after {
                pairs.append_pair("due_after", &time(at));
            }
            if let Some(q) = q {
                pairs.append_pair("q", q);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }
}

impl<'c> IntoFuture for ListTasks<'c> {
    type Output = Result<Page<Task>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'c>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The items of this page, in the listing's order.
    pub items: Vec<T>,
    /// How many items match the listing across all pages (`X-Total-Count`), if the server
    /// said.
    pub total: Option<u64>,
    /// The next page (`Link: <...>; rel="next"`); `None` on the last page. A root-relative
    /// link (`</tasks/?offset=50>`, as the server writes them) is resolved below the client's
    /// base URL, any other against the URL of the request.
    pub next: Option<Url>,
    /// The previous page (`rel="prev"`); `None` on the first page.
    pub prev: Option<Url>,
}

impl<T> IntoIterator for Page<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

async fn fetch_page(client: &Client, url: Url) -> Result<Page<Task>> {
    // A next page's URL is the server's, but the call is the same listing.
    let answer = client.send(client.request(Method::GET, route::TASKS, url, None), Auth::Bearer).await?;
    let (total, next, prev) = page_links(client, &answer)?;
    let items = answer.json()?;
    Ok(Page { items, total, next, prev })
}

type PageLinks = (Option<u64>, Option<Url>, Option<Url>);

/// The total, next and previous page of a listing's response.
fn page_links(client: &Client, answer: &Answer) -> Result<PageLinks> {
    let total =
        answer.headers.get(TOTAL_COUNT).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    Ok((total, link_target(client, answer, "next")?, link_target(client, answer, "prev")?))
}

/// The `rel` link of a response, as a URL to request.
///
/// The server knows nothing of a proxy that serves the API under a path prefix, so it writes
/// its links root-relative (`</tasks/?offset=50>`): such a target is an API path, joined below
/// the base URL like every other, unless it starts with the base URL's path already (a proxy
/// that rewrites links wrote the prefix in). Any other target is resolved against the URL that was
/// requested. A link that leads away from the base URL (another origin, or another path on the
/// same host) is an error rather than a page to follow: the client would send it the access
/// token.
fn link_target(client: &Client, answer: &Answer, rel: &str) -> Result<Option<Url>> {
    let headers = &answer.headers;
    let values = headers.get_all(LINK).iter().filter_map(|v| v.to_str().ok());
    let Some(target) = crate::link::find(values, rel) else { return Ok(None) };
    let invalid = |why: String| Error::decode(answer.status, request_id(headers), why);
    let resolved = match target.strip_prefix('/') {
        // A proxy that rewrites links may have written the prefix in already.
        Some(_) if target.starts_with(client.base_url().path()) => answer.url.join(target),
        Some(api_path) if !api_path.starts_with('/') => client.base_url().join(api_path),
        _ => answer.url.join(target),
    };
    let url = resolved.map_err(|err| invalid(format!("bad Link rel=\"{rel}\" `{target}`: {err}")))?;
    if !client.is_below_base(&url) {
        return Err(invalid(format!(
            "Link rel=\"{rel}\" leads away from the API's base URL {}, to `{url}`",
            client.base_url()
        )));
    }
    Ok(Some(url))
}
