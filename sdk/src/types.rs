//! The wire types of the Tasklane API and their validation rules.
//!
//! These are shared by the SDK and the reference server, so a request the SDK validates locally
//! is judged by exactly the rules the server applies. Everything here is plain data: serde
//! always, `schemars::JsonSchema` behind the `schema` feature.
//!
//! Request bodies reject unknown fields (`#[serde(deny_unknown_fields)]`), so a typo in a field
//! name is an error rather than a silently ignored value.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Limits of the API, in Unicode scalar values (Rust `chars()`) unless noted.
pub mod limits {
    /// Shortest username.
    pub const USERNAME_MIN: usize = 3;
    /// Longest username.
    pub const USERNAME_MAX: usize = 64;
    /// Shortest password.
    pub const PASSWORD_MIN: usize = 8;
    /// Longest password (bounds the work of hashing it).
    pub const PASSWORD_MAX: usize = 128;
    /// Shortest task title, after trimming.
    pub const TITLE_MIN: usize = 1;
    /// Longest task title, after trimming.
    pub const TITLE_MAX: usize = 200;
    /// Longest task description.
    pub const DESCRIPTION_MAX: usize = 10_000;
    /// Largest page of tasks.
    pub const LIMIT_MAX: u32 = 100;
    /// Page size when the query names none.
    pub const LIMIT_DEFAULT: u32 = 50;
    /// Largest request body the server accepts, in bytes.
    pub const BODY_MAX_BYTES: usize = 65_536;
    /// Shortest label, after trimming.
    pub const LABEL_MIN: usize = 1;
    /// Longest label, after trimming.
    pub const LABEL_MAX: usize = 32;
    /// Most labels one request may give a task.
    pub const LABELS_MAX: usize = 20;
    /// Shortest search text (`q`).
    pub const SEARCH_MIN: usize = 1;
    /// Longest search text (`q`).
    pub const SEARCH_MAX: usize = 200;
    /// Largest page of the change feed.
    pub const CHANGES_LIMIT_MAX: u32 = 1000;
    /// Page size of the change feed when the query names none.
    pub const CHANGES_LIMIT_DEFAULT: u32 = 500;
    /// Longest `Idempotency-Key`.
    pub const IDEMPOTENCY_KEY_MAX: usize = 255;

    /// A username as a regular expression (for the OpenAPI document).
    pub const USERNAME_PATTERN: &str = "^[A-Za-z0-9_.-]{3,64}$";
    /// A title as given (any whitespace around it, which is trimmed, then 1 to 200 characters),
    /// as a regular expression: one non-whitespace character, or two with at most 198 between
    /// them. Whitespace is what Rust's `str::trim` removes, spelled out, as `\s` means
    /// something else in each regex dialect. No NUL anywhere.
    pub const TITLE_PATTERN: &str = concat!(
        r"^[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*",
        r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000]",
        r"([^\u0000]{0,198}",
        r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000])?",
        r"[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$"
    );
    /// Text without NUL (which PostgreSQL cannot store), as a regular expression.
    pub const NO_NUL_PATTERN: &str = r"^[^\u0000]*$";
    /// A label as given: whitespace around it, then 1 to 32 characters without control
    /// characters (U+0000–U+001F, U+007F–U+009F), first and last not whitespace.
    pub const LABEL_PATTERN: &str = concat!(
        r"^[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*",
        r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F]",
        r"([^\u0000-\u001F\u007F-\u009F]{0,30}",
        r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F])?",
        r"[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$"
    );
}

/// A secret string (password or token) whose `Debug` and `Display` never show the value.
///
/// It serializes as the plain string, since the wire needs it; call [`Secret::expose`] to read
/// it deliberately.
///
/// ```
/// use tasklane::types::Secret;
/// let s = Secret::from("hunter22");
/// assert_eq!(format!("{s:?}"), "Secret([redacted])");
/// assert_eq!(s.expose(), "hunter22");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Secret {
    fn schema_name() -> String {
        "Secret".to_owned()
    }

    fn json_schema(gen: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        String::json_schema(gen)
    }

    fn is_referenceable() -> bool {
        false
    }
}

/// Body of `POST /auth/register` and `POST /auth/login`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// 3 to 64 ASCII letters, digits, `_`, `-` or `.`; unique ignoring case.
    #[cfg_attr(
        feature = "schema",
        schemars(
            length(min = "limits::USERNAME_MIN", max = "limits::USERNAME_MAX"),
            regex(path = "limits::USERNAME_PATTERN")
        )
    )]
    pub username: String,
    /// 8 to 128 characters.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "String", length(min = "limits::PASSWORD_MIN", max = "limits::PASSWORD_MAX"))
    )]
    pub password: Secret,
}

impl Credentials {
    /// Credentials from a username and a password.
    pub fn new(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self { username: username.into(), password: password.into() }
    }

    /// Checks the registration rules: username shape and password length.
    ///
    /// ```
    /// use tasklane::types::Credentials;
    /// assert!(Credentials::new("ada", "correct horse").validate().is_ok());
    /// let errors = Credentials::new("a", "short").validate().unwrap_err();
    /// assert_eq!(errors.len(), 2);
    /// ```
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        collect([validate_username(&self.username), validate_password(self.password.expose())])
    }
}

/// Body of `POST /auth/refresh` and `POST /auth/logout`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token of a token pair.
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub refresh_token: Secret,
}

/// What register, login and refresh answer: a pair of bearer tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenPair {
    /// Short-lived JWT for `Authorization: Bearer`.
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub access_token: Secret,
    /// Long-lived token for `POST /auth/refresh`; rotated on every refresh.
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub refresh_token: Secret,
    /// Always `"bearer"`.
    pub token_type: String,
    /// Lifetime of the access token, in seconds.
    pub expires_in: u64,
}

/// A registered user, as `GET /auth/me` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct User {
    /// The user's id.
    pub id: i64,
    /// The username as first registered.
    pub username: String,
    /// When the user registered.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

/// Where a task stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Not started (the default).
    #[default]
    Pending,
    /// Being worked on.
    InProgress,
    /// Finished.
    Done,
}

impl TaskStatus {
    /// All statuses, in their natural order.
    pub const ALL: [TaskStatus; 3] = [TaskStatus::Pending, TaskStatus::InProgress, TaskStatus::Done];

    /// The wire name: `pending`, `in_progress` or `done`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Done => "done",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown [`TaskStatus`] or [`TaskSort`] name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`; expected one of: {expected}")]
pub struct ParseEnumError {
    what: &'static str,
    value: String,
    expected: &'static str,
}

impl std::str::FromStr for TaskStatus {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskStatus::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| ParseEnumError {
            what: "status",
            value: s.to_owned(),
            expected: "pending, in_progress, done",
        })
    }
}

/// How much a task matters. Ordered: `None` < `Low` < `Medium` < `High`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// No priority (the default).
    #[default]
    None,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

impl Priority {
    /// All priorities, lowest first.
    pub const ALL: [Priority; 4] = [Priority::None, Priority::Low, Priority::Medium, Priority::High];

    /// The wire name: `none`, `low`, `medium` or `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::None => "none",
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }

    /// The rank stored and sorted on: 0 for `None` to 3 for `High`.
    pub fn rank(self) -> i16 {
        self as i16
    }

    /// The priority of a rank; `None` for a rank out of range.
    pub fn from_rank(rank: i16) -> Option<Priority> {
        Priority::ALL.get(usize::try_from(rank).ok()?).copied()
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Priority {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| ParseEnumError {
            what: "priority",
            value: s.to_owned(),
            expected: "none, low, medium, high",
        })
    }
}

/// A task, as the server answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Task {
    /// The task's id.
    pub id: i64,
    /// 1 to 200 characters, trimmed.
    pub title: String,
    /// Up to 10,000 characters, or null.
    pub description: Option<String>,
    /// Where the task stands.
    pub status: TaskStatus,
    /// The owner's id.
    pub user_id: i64,
    /// When the task was created.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// When the task last changed.
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// When the task is due, or null.
    #[serde(default, serialize_with = "rfc3339_or_null")]
    pub due_at: Option<DateTime<Utc>>,
    /// How much the task matters.
    #[serde(default)]
    pub priority: Priority,
    /// The task's labels, sorted by their lowercase form.
    #[serde(default)]
    pub labels: Vec<String>,
    /// When the task was last marked done; null unless its status is `done`.
    #[serde(default, serialize_with = "rfc3339_or_null")]
    pub completed_at: Option<DateTime<Utc>>,
    /// 1 at creation, one more with every change.
    #[serde(default = "first_version")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub version: i64,
}

fn first_version() -> i64 {
    1
}

/// Body of `POST /tasks/`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// 1 to 200 characters; stored trimmed.
    #[cfg_attr(feature = "schema", schemars(regex(path = "limits::TITLE_PATTERN")))]
    pub title: String,
    /// Up to 10,000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(length(max = "limits::DESCRIPTION_MAX"), regex(path = "limits::NO_NUL_PATTERN"))
    )]
    pub description: Option<String>,
    /// Defaults to `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    /// When the task is due: an RFC 3339 date-time with an offset, stored in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
    /// Defaults to `none`; cannot be null.
    #[serde(default, deserialize_with = "non_null", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Priority"))]
    pub priority: Option<Priority>,
    /// Each 1 to 32 characters after trimming, no control characters; at most 20. Defaults to
    /// none; cannot be null.
    #[serde(default, deserialize_with = "non_null", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<Label>", length(max = "limits::LABELS_MAX")))]
    pub labels: Option<Vec<String>>,
}

/// One label as a request gives it (documentation of its rules for the OpenAPI document).
#[cfg(feature = "schema")]
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
struct Label(#[schemars(regex(path = "limits::LABEL_PATTERN"))] String);

impl NewTask {
    /// A new task with a title, no description and the default status and priority.
    ///
    /// ```
    /// use tasklane::types::{NewTask, Priority};
    /// let due = "2026-12-24T17:00:00+01:00".parse().unwrap();
    /// let task = NewTask::new("Pay rent").due(due).priority(Priority::High).label("home");
    /// assert_eq!(task.labels.as_deref(), Some(&["home".to_owned()][..]));
    /// ```
    pub fn new(title: impl Into<String>) -> Self {
        Self { title: title.into(), ..Self::default() }
    }

    /// Sets when the task is due.
    pub fn due(mut self, at: DateTime<Utc>) -> Self {
        self.due_at = Some(at);
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Adds a label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.labels.get_or_insert_with(Vec::new).push(label.into());
        self
    }

    /// Sets every label at once.
    pub fn labels<I: IntoIterator<Item = S>, S: Into<String>>(mut self, labels: I) -> Self {
        self.labels = Some(labels.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the status.
    pub fn status(mut self, status: TaskStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Checks the rules and returns the task as it will be stored (title trimmed).
    ///
    /// ```
    /// use tasklane::types::NewTask;
    /// let task = NewTask::new("  write docs ").validate().unwrap();
    /// assert_eq!(task.title, "write docs");
    /// assert!(NewTask::new("   ").validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<NewTask, Vec<FieldError>> {
        let title = self.title.trim();
        let labels = self.labels.as_deref().map(normalize_labels);
        collect([
            validate_title(title),
            self.description.as_deref().map_or(Ok(()), validate_description),
            labels.clone().map_or(Ok(()), |l| l.map(drop)),
        ])?;
        Ok(NewTask {
            title: title.to_owned(),
            description: self.description.clone(),
            status: self.status,
            due_at: self.due_at.map(whole_microseconds),
            priority: self.priority,
            labels: labels.transpose().ok().flatten(),
        })
    }
}

/// Body of `PUT /tasks/{id}` and `PATCH /tasks/{id}`: the fields present change, the others stay.
///
/// `description` is `Some(None)` to clear it (JSON `null`), `None` to keep it (field absent).
/// `title` and `status` cannot be null.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskUpdate {
    /// New title, 1 to 200 characters; stored trimmed.
    #[serde(default, deserialize_with = "non_null", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "String", regex(path = "limits::TITLE_PATTERN")))]
    pub title: Option<String>,
    /// New description; `Some(None)` clears it.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(
            with = "Option<String>",
            length(max = "limits::DESCRIPTION_MAX"),
            regex(path = "limits::NO_NUL_PATTERN")
        )
    )]
    pub description: Option<Option<String>>,
    /// New status (absent keeps it; it cannot be null).
    #[serde(default, deserialize_with = "non_null", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "TaskStatus"))]
    pub status: Option<TaskStatus>,
    /// New due date; `Some(None)` clears it.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<DateTime<Utc>>"))]
    pub due_at: Option<Option<DateTime<Utc>>>,
    /// New priority (it cannot be null).
    #[serde(default, deserialize_with = "non_null", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Priority"))]
    pub priority: Option<Priority>,
    /// The new set of labels, replacing the old one (it cannot be null).
    #[serde(default, deserialize_with = "non_null", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<Label>", length(max = "limits::LABELS_MAX")))]
    pub labels: Option<Vec<String>>,
}

impl TaskUpdate {
    /// An update that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes the title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Changes the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(Some(description.into()));
        self
    }

    /// Clears the description.
    pub fn clear_description(mut self) -> Self {
        self.description = Some(None);
        self
    }

    /// Changes the status.
    pub fn status(mut self, status: TaskStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Changes when the task is due.
    ///
    /// ```
    /// use tasklane::types::{Priority, TaskUpdate};
    /// let update = TaskUpdate::new().clear_due().priority(Priority::Low).label("errands");
    /// assert_eq!(update.due_at, Some(None));
    /// ```
    pub fn due(mut self, at: DateTime<Utc>) -> Self {
        self.due_at = Some(Some(at));
        self
    }

    /// Clears the due date.
    pub fn clear_due(mut self) -> Self {
        self.due_at = Some(None);
        self
    }

    /// Changes the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Adds a label to the new set (an update replaces the whole set).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.labels.get_or_insert_with(Vec::new).push(label.into());
        self
    }

    /// Replaces the labels with `labels` (empty: no labels).
    pub fn labels<I: IntoIterator<Item = S>, S: Into<String>>(mut self, labels: I) -> Self {
        self.labels = Some(labels.into_iter().map(Into::into).collect());
        self
    }

    /// Whether the update changes no field.
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.status.is_none()
            && self.due_at.is_none()
            && self.priority.is_none()
            && self.labels.is_none()
    }

    /// Checks the rules and returns the update as it will be applied (title trimmed).
    ///
    /// ```
    /// use tasklane::types::TaskUpdate;
    /// assert!(TaskUpdate::new().title("ok").validate().is_ok());
    /// assert!(TaskUpdate::new().title("").validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<TaskUpdate, Vec<FieldError>> {
        let title = self.title.as_deref().map(str::trim);
        let labels = self.labels.as_deref().map(normalize_labels);
        collect([
            title.map_or(Ok(()), validate_title),
            match &self.description {
                Some(Some(d)) => validate_description(d),
                _ => Ok(()),
            },
            labels.clone().map_or(Ok(()), |l| l.map(drop)),
        ])?;
        Ok(TaskUpdate {
            title: title.map(str::to_owned),
            description: self.description.clone(),
            status: self.status,
            due_at: self.due_at.map(|due| due.map(whole_microseconds)),
            priority: self.priority,
            labels: labels.transpose().ok().flatten(),
        })
    }
}

/// Order of a task listing. Ties are broken by id in the same direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum TaskSort {
    /// Oldest first.
    #[serde(rename = "created_at")]
    CreatedAt,
    /// Newest first (the default).
    #[default]
    #[serde(rename = "-created_at")]
    CreatedAtDesc,
    /// Least recently changed first.
    #[serde(rename = "updated_at")]
    UpdatedAt,
    /// Most recently changed first.
    #[serde(rename = "-updated_at")]
    UpdatedAtDesc,
    /// By title, A to Z (by Unicode code point).
    #[serde(rename = "title")]
    Title,
    /// By title, Z to A.
    #[serde(rename = "-title")]
    TitleDesc,
    /// Soonest due first; tasks without a due date last.
    #[serde(rename = "due_at")]
    DueAt,
    /// Latest due first; tasks without a due date last.
    #[serde(rename = "-due_at")]
    DueAtDesc,
    /// Lowest priority first (`none`, `low`, `medium`, `high`).
    #[serde(rename = "priority")]
    Priority,
    /// Highest priority first.
    #[serde(rename = "-priority")]
    PriorityDesc,
}

impl TaskSort {
    /// Every sort order.
    pub const ALL: [TaskSort; 10] = [
        TaskSort::CreatedAt,
        TaskSort::CreatedAtDesc,
        TaskSort::UpdatedAt,
        TaskSort::UpdatedAtDesc,
        TaskSort::Title,
        TaskSort::TitleDesc,
        TaskSort::DueAt,
        TaskSort::DueAtDesc,
        TaskSort::Priority,
        TaskSort::PriorityDesc,
    ];

    /// The wire name, such as `-created_at`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskSort::CreatedAt => "created_at",
            TaskSort::CreatedAtDesc => "-created_at",
            TaskSort::UpdatedAt => "updated_at",
            TaskSort::UpdatedAtDesc => "-updated_at",
            TaskSort::Title => "title",
            TaskSort::TitleDesc => "-title",
            TaskSort::DueAt => "due_at",
            TaskSort::DueAtDesc => "-due_at",
            TaskSort::Priority => "priority",
            TaskSort::PriorityDesc => "-priority",
        }
    }
}

impl fmt::Display for TaskSort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskSort {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskSort::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| ParseEnumError {
            what: "sort",
            value: s.to_owned(),
            expected: "created_at, -created_at, updated_at, -updated_at, title, -title, due_at, -due_at, \
                       priority, -priority",
        })
    }
}

/// The query of `GET /tasks/`. Absent fields take the server's defaults; the filters combine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only tasks with this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    /// Page size, 1 to 100 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Tasks to skip (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Order (default `-created_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<TaskSort>,
    /// Only tasks of this priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Only tasks carrying every one of these labels (compared ignoring case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Only tasks due before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_before: Option<DateTime<Utc>>,
    /// Only tasks due at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_after: Option<DateTime<Utc>>,
    /// Only tasks whose title or description contains this text, ignoring case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
}

impl ListQuery {
    /// Checks the page size, the labels and the search text.
    ///
    /// ```
    /// use tasklane::types::ListQuery;
    /// assert!(ListQuery { limit: Some(100), ..Default::default() }.validate().is_ok());
    /// assert!(ListQuery { limit: Some(0), ..Default::default() }.validate().is_err());
    /// assert!(ListQuery { q: Some(String::new()), ..Default::default() }.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors: Vec<FieldError> = validate_limit(self.limit).err().into_iter().collect();
        errors.extend(self.labels.iter().find_map(|l| validate_label("label", l).err()));
        errors.extend(self.q.as_deref().and_then(|q| validate_search(q).err()));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The page size in effect.
    pub fn effective_limit(&self) -> u32 {
        self.limit.unwrap_or(limits::LIMIT_DEFAULT)
    }
}

/// One field's problem in a validation error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FieldError {
    /// The field (or query parameter) at fault.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.message)
    }
}

/// An error body: `application/problem+json` (RFC 9457).
///
/// Tasklane's server always sends every member but `errors`. The client also reads problems
/// from gateways and proxies in front of it, as the RFC allows them: without `title`, `status`
/// or `detail` (they become the status's reason phrase, the HTTP status and the title), and
/// ignoring members of the wrong type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` when the status says it all.
    #[serde(rename = "type", default = "about_blank")]
    pub kind: String,
    /// The status's reason phrase, such as `Unprocessable Entity`.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// A human-readable explanation of this occurrence.
    pub detail: String,
    /// The fields at fault, on validation errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}

/// One change of the change feed (`GET /tasks/changes`) and of the live events: a task created or
/// changed, in its state now, or a task deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    /// A task created or changed: the task as it is now (replace a local copy by id).
    Upsert {
        /// The task.
        task: Task,
    },
    /// A task deleted (remove a local copy; an unknown id is nothing to remove).
    Delete {
        /// The deleted task's id.
        id: i64,
    },
}

impl Change {
    /// The id of the task the change is about.
    pub fn task_id(&self) -> i64 {
        match self {
            Change::Upsert { task } => task.id,
            Change::Delete { id } => *id,
        }
    }
}

/// One answer of the change feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChangePage {
    /// The changes after the cursor given, each task at most once, in the order of their last
    /// change.
    pub changes: Vec<Change>,
    /// Where the next request starts (`since`); opaque.
    pub cursor: String,
    /// Whether more changes follow: ask again with `cursor` until it is false.
    pub has_more: bool,
}

/// Answer of `GET /health` and `GET /ready`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HealthStatus {
    /// `ok`, or `unavailable` when a backing service does not answer.
    pub status: String,
    /// Each backing service checked (`database`, `redis`) and its state.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub checks: std::collections::BTreeMap<String, String>,
}

/// Checks a username: 3 to 64 ASCII letters, digits, `_`, `-`, `.`.
pub fn validate_username(username: &str) -> Result<(), FieldError> {
    let len = username.chars().count();
    let shape_ok = username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if (limits::USERNAME_MIN..=limits::USERNAME_MAX).contains(&len) && shape_ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "username",
            format!(
                "must be {} to {} characters of ASCII letters, digits, '_', '-' or '.'",
                limits::USERNAME_MIN,
                limits::USERNAME_MAX
            ),
        ))
    }
}

/// Checks a password: 8 to 128 characters.
pub fn validate_password(password: &str) -> Result<(), FieldError> {
    let len = password.chars().count();
    if (limits::PASSWORD_MIN..=limits::PASSWORD_MAX).contains(&len) {
        Ok(())
    } else {
        Err(FieldError::new(
            "password",
            format!("must be {} to {} characters", limits::PASSWORD_MIN, limits::PASSWORD_MAX),
        ))
    }
}

/// Checks a (trimmed) title: 1 to 200 characters, no NUL.
pub fn validate_title(title: &str) -> Result<(), FieldError> {
    let len = title.chars().count();
    if !(limits::TITLE_MIN..=limits::TITLE_MAX).contains(&len) {
        return Err(FieldError::new(
            "title",
            format!("must be {} to {} characters", limits::TITLE_MIN, limits::TITLE_MAX),
        ));
    }
    no_nul("title", title)
}

/// Checks a description: up to 10,000 characters, no NUL.
pub fn validate_description(description: &str) -> Result<(), FieldError> {
    if description.chars().count() > limits::DESCRIPTION_MAX {
        return Err(FieldError::new(
            "description",
            format!("must be at most {} characters", limits::DESCRIPTION_MAX),
        ));
    }
    no_nul("description", description)
}

/// Checks a page size: 1 to 100 when given.
pub fn validate_limit(limit: Option<u32>) -> Result<(), FieldError> {
    match limit {
        Some(l) if !(1..=limits::LIMIT_MAX).contains(&l) => {
            Err(FieldError::new("limit", format!("must be 1 to {}", limits::LIMIT_MAX)))
        }
        _ => Ok(()),
    }
}

/// Checks one label (a task's, or a filter's, named `field`): 1 to 32 characters after
/// trimming, no control characters. Returns it trimmed.
pub fn validate_label<'a>(field: &str, label: &'a str) -> Result<&'a str, FieldError> {
    let label = label.trim();
    let len = label.chars().count();
    if !(limits::LABEL_MIN..=limits::LABEL_MAX).contains(&len) || label.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!(
                "each label must be {} to {} characters after trimming, without control characters",
                limits::LABEL_MIN,
                limits::LABEL_MAX
            ),
        ));
    }
    Ok(label)
}

/// A task's labels as they are stored: at most 20 given, each trimmed and checked, duplicates
/// ignoring case collapsed to their first spelling, sorted by their lowercase form.
///
/// ```
/// use tasklane::types::normalize_labels;
/// let labels = normalize_labels(&[" Home".into(), "work".into(), "HOME".into()]).unwrap();
/// assert_eq!(labels, ["Home", "work"]);
/// ```
pub fn normalize_labels(labels: &[String]) -> Result<Vec<String>, FieldError> {
    if labels.len() > limits::LABELS_MAX {
        return Err(FieldError::new("labels", format!("at most {} labels", limits::LABELS_MAX)));
    }
    let mut kept: Vec<(String, String)> = Vec::with_capacity(labels.len());
    for label in labels {
        let label = validate_label("labels", label)?;
        let key = label.to_lowercase();
        if !kept.iter().any(|(k, _)| *k == key) {
            kept.push((key, label.to_owned()));
        }
    }
    kept.sort();
    Ok(kept.into_iter().map(|(_, label)| label).collect())
}

/// Checks an `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub fn validate_idempotency_key(key: &str) -> Result<(), FieldError> {
    if (1..=limits::IDEMPOTENCY_KEY_MAX).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(FieldError::new(
            "Idempotency-Key",
            format!("must be 1 to {} visible ASCII characters", limits::IDEMPOTENCY_KEY_MAX),
        ))
    }
}

/// Checks a search text (`q`): 1 to 200 characters.
pub fn validate_search(q: &str) -> Result<(), FieldError> {
    let len = q.chars().count();
    if (limits::SEARCH_MIN..=limits::SEARCH_MAX).contains(&len) {
        Ok(())
    } else {
        Err(FieldError::new(
            "q",
            format!("must be {} to {} characters", limits::SEARCH_MIN, limits::SEARCH_MAX),
        ))
    }
}

// Text columns cannot hold U+0000 in PostgreSQL; refusing it here keeps both backends alike.
fn no_nul(field: &str, value: &str) -> Result<(), FieldError> {
    if value.contains('\0') {
        Err(FieldError::new(field, "must not contain NUL characters"))
    } else {
        Ok(())
    }
}

/// `at` truncated to whole microseconds, the precision both databases keep, so that a due date
/// reads back as it was answered.
fn whole_microseconds(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

fn collect<const N: usize>(checks: [Result<(), FieldError>; N]) -> Result<(), Vec<FieldError>> {
    let errors: Vec<FieldError> = checks.into_iter().filter_map(Result::err).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

// A present field must not be null: `Some(value)`; absence is handled by `#[serde(default)]`.
fn non_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

// A present field may be null: `Some(None)` for null, `Some(Some(v))` for a value.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Writes a timestamp exactly as chrono's own `Serialize` does (RFC 3339, `Z`, as many
/// fractional digits as it needs), but as one string: chrono's impl feeds the serializer a dozen
/// small pieces through `fmt`, which `serde_json` escapes one by one, and a page of tasks
/// carries two timestamps per task.
fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn rfc3339_or_null<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_serialize_as_chrono_does() {
        for micros in [0, 1_700_000_000_000_000, 1_700_000_000_123_000, 1_700_000_000_123_456, -1] {
            let at = DateTime::from_timestamp_micros(micros).unwrap();
            let user = User { id: 1, username: "ann".into(), created_at: at };
            let json = serde_json::to_value(&user).unwrap();
            assert_eq!(json["created_at"], serde_json::to_value(at).unwrap(), "{at:?}");
            assert_eq!(serde_json::from_value::<User>(json).unwrap(), user);
        }
        let at = DateTime::from_timestamp(1_700_000_000, 5).unwrap();
        assert_eq!(
            serde_json::to_value(Task {
                id: 1,
                title: "t".into(),
                description: None,
                status: TaskStatus::Done,
                user_id: 1,
                created_at: at,
                updated_at: at,
                due_at: None,
                priority: Priority::High,
                labels: vec!["a".into()],
                completed_at: Some(at),
                version: 2,
            })
            .unwrap()["updated_at"],
            "2023-11-14T22:13:20.000000005Z"
        );
    }

    #[test]
    fn priorities_order_and_round_trip() {
        assert!(
            Priority::None < Priority::Low
                && Priority::Low < Priority::Medium
                && Priority::Medium < Priority::High
        );
        for p in Priority::ALL {
            assert_eq!(p.as_str().parse::<Priority>().unwrap(), p);
            assert_eq!(Priority::from_rank(p.rank()), Some(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        assert_eq!(Priority::from_rank(4), None);
        assert!("urgent".parse::<Priority>().is_err());
    }

    #[test]
    fn new_fields_tell_absent_from_null() {
        let u: TaskUpdate = serde_json::from_str(r#"{"due_at":null}"#).unwrap();
        assert_eq!(u.due_at, Some(None));
        assert!(!u.is_empty());
        assert!(serde_json::from_str::<TaskUpdate>(r#"{"priority":null}"#).is_err());
        assert!(serde_json::from_str::<TaskUpdate>(r#"{"labels":null}"#).is_err());
        assert!(serde_json::from_str::<NewTask>(r#"{"title":"t","labels":null}"#).is_err());
        assert!(serde_json::from_str::<NewTask>(r#"{"title":"t","due_at":"2026-12-24"}"#).is_err());
        assert!(serde_json::from_str::<NewTask>(r#"{"title":"t","due_at":"2026-12-24T17:00:00"}"#).is_err());
        let t: NewTask =
            serde_json::from_str(r#"{"title":"t","due_at":"2026-12-24T17:00:00.1234567+01:00"}"#).unwrap();
        let stored = t.validate().unwrap().due_at.unwrap();
        assert_eq!(stored.to_rfc3339_opts(SecondsFormat::AutoSi, true), "2026-12-24T16:00:00.123456Z");
        let json = serde_json::to_value(TaskUpdate::new().clear_due().priority(Priority::Low)).unwrap();
        assert_eq!(json, serde_json::json!({"due_at": null, "priority": "low"}));
    }

    #[test]
    fn labels_follow_the_rules() {
        let labels = |l: &[&str]| normalize_labels(&l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(labels(&[" b ", "A", "a", "Äpfel", "äPFEL"]).unwrap(), ["A", "b", "Äpfel"]);
        assert!(labels(&[""]).is_err());
        assert!(labels(&["x\u{7}"]).is_err());
        assert!(labels(&[&"é".repeat(33)]).is_err());
        assert!(labels(&[&"é".repeat(32)]).is_ok());
        let many: Vec<String> = (0..21).map(|i| i.to_string()).collect();
        assert_eq!(normalize_labels(&many).unwrap_err().field, "labels");
        assert_eq!(normalize_labels(&many[..20]).unwrap().len(), 20);
        assert!(NewTask::new("t").label("").validate().is_err());
        assert_eq!(NewTask::new("t").label(" x ").validate().unwrap().labels.unwrap(), ["x"]);
    }

    #[test]
    fn update_tells_absent_from_null() {
        let u: TaskUpdate = serde_json::from_str(r#"{"description":null}"#).unwrap();
        assert_eq!(u.description, Some(None));
        let u: TaskUpdate = serde_json::from_str("{}").unwrap();
        assert_eq!(u.description, None);
        assert!(u.is_empty());
        assert!(serde_json::from_str::<TaskUpdate>(r#"{"title":null}"#).is_err());
        assert!(serde_json::from_str::<TaskUpdate>(r#"{"titel":"x"}"#).is_err());
        let json = serde_json::to_string(&TaskUpdate::new().clear_description()).unwrap();
        assert_eq!(json, r#"{"description":null}"#);
    }

    #[test]
    fn lengths_count_chars_not_bytes() {
        assert!(validate_title(&"é".repeat(200)).is_ok());
        assert!(validate_title(&"é".repeat(201)).is_err());
        assert!(validate_password(&"ü".repeat(8)).is_ok());
        assert!(validate_password("ü".repeat(7).as_str()).is_err());
        assert!(validate_username("ädam").is_err());
        assert!(validate_title("a\0b").is_err());
    }

    #[test]
    fn enums_round_trip_their_wire_names() {
        for s in TaskSort::ALL {
            assert_eq!(s.as_str().parse::<TaskSort>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("bogus".parse::<TaskSort>().is_err());
    }
}
