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

/// A task, as the server answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Task {
    /// The task's id.
    pub id: i64,
    /// 1 to 200 characters, trimmed.
    pub title: String,
    /// Up to 10,000 characters, or null.
    #[cfg_attr(feature = "schema", schemars(required))]
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
}

impl NewTask {
    /// A new task with a title, no description and the default status.
    pub fn new(title: impl Into<String>) -> Self {
        Self { title: title.into(), ..Self::default() }
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
        collect([validate_title(title), self.description.as_deref().map_or(Ok(()), validate_description)])?;
        Ok(NewTask { title: title.to_owned(), description: self.description.clone(), status: self.status })
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

    /// Whether the update changes no field.
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.description.is_none() && self.status.is_none()
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
        collect([
            title.map_or(Ok(()), validate_title),
            match &self.description {
                Some(Some(d)) => validate_description(d),
                _ => Ok(()),
            },
        ])?;
        Ok(TaskUpdate {
            title: title.map(str::to_owned),
            description: self.description.clone(),
            status: self.status,
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
}

impl TaskSort {
    /// Every sort order.
    pub const ALL: [TaskSort; 6] = [
        TaskSort::CreatedAt,
        TaskSort::CreatedAtDesc,
        TaskSort::UpdatedAt,
        TaskSort::UpdatedAtDesc,
        TaskSort::Title,
        TaskSort::TitleDesc,
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
            expected: "created_at, -created_at, updated_at, -updated_at, title, -title",
        })
    }
}

/// The query of `GET /tasks/`. Absent fields take the server's defaults.
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
}

impl ListQuery {
    /// Checks the page size.
    ///
    /// ```
    /// use tasklane::types::ListQuery;
    /// assert!(ListQuery { limit: Some(100), ..Default::default() }.validate().is_ok());
    /// assert!(ListQuery { limit: Some(0), ..Default::default() }.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        collect([validate_limit(self.limit)])
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

// Text columns cannot hold U+0000 in PostgreSQL; refusing it here keeps both backends alike.
fn no_nul(field: &str, value: &str) -> Result<(), FieldError> {
    if value.contains('\0') {
        Err(FieldError::new(field, "must not contain NUL characters"))
    } else {
        Ok(())
    }
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
            })
            .unwrap()["updated_at"],
            "2023-11-14T22:13:20.000000005Z"
        );
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
