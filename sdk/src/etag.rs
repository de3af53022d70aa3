//! Entity tags: which version of a task an answer carried, for conditional requests.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An entity tag (RFC 9110 §8.8.3), as the server's `ETag` header gives it: the version of a
/// task an answer carried.
///
/// It is opaque: compare it, store it and send it back, never look inside. It is kept as
/// written on the wire, quotes included (`"7-3"`), or `W/"7-3"` for a weak one, which is what
/// [`Display`](fmt::Display), [`as_str`](ETag::as_str) and serde give back.
///
/// ```
/// use tasklane::ETag;
///
/// let etag: ETag = "\"7-3\"".parse()?;
/// assert_eq!(etag.to_string(), "\"7-3\"");
/// assert!(!etag.is_weak());
/// assert!("7-3".parse::<ETag>().is_err()); // not quoted: not an entity tag
/// # Ok::<(), tasklane::InvalidETag>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ETag(String);

impl ETag {
    /// Reads an entity tag: `"opaque"` or `W/"opaque"`, where the opaque part is visible ASCII
    /// other than `"`. Whitespace around it is ignored.
    ///
    /// # Errors
    ///
    /// [`InvalidETag`] for anything else.
    pub fn parse(value: &str) -> Result<Self, InvalidETag> {
        let value = value.trim_matches([' ', '\t']);
        let quoted = value.strip_prefix("W/").unwrap_or(value);
        let opaque = quoted.strip_prefix('"').and_then(|rest| rest.strip_suffix('"'));
        // RFC 9110's etagc, less obs-text: a header this client reads is visible ASCII.
        match opaque {
            Some(opaque) if opaque.bytes().all(|b| b.is_ascii_graphic() && b != b'"') => {
                Ok(Self(value.to_owned()))
            }
            _ => Err(InvalidETag(())),
        }
    }

    /// The entity tag as written on the wire, quotes included.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it is a weak tag (`W/"..."`). The server's are strong; a weak one (a proxy
    /// that compresses answers may weaken them) never matches in `If-Match`, so a conditional
    /// write made with it fails with [`Error::PreconditionFailed`](crate::Error::PreconditionFailed).
    pub fn is_weak(&self) -> bool {
        self.0.starts_with("W/")
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ETag {
    type Err = InvalidETag;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for ETag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for ETag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ETag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        ETag::parse(&value).map_err(serde::de::Error::custom)
    }
}

/// The error of reading something that is not an entity tag as an [`ETag`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidETag(());

impl fmt::Display for InvalidETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"not an entity tag: expected "opaque" or W/"opaque" in visible ASCII"#)
    }
}

impl std::error::Error for InvalidETag {}

/// A value read from an answer, with the [`ETag`] the answer carried for it: a [`Task`] from
/// [`Tasks::get`], [`Tasks::create`], [`Tasks::update`] and the others that answer one task.
///
/// It dereferences to the value, so `task.title` and `task.id` read the task as before; take
/// the tag with [`etag`](Tagged::etag) for a conditional request, and the value with
/// [`into_inner`](Tagged::into_inner) (or `Task::from`) to keep it.
///
/// ```no_run
/// # async fn demo(client: tasklane::Client) -> tasklane::Result<()> {
/// use tasklane::{Error, TaskStatus, TaskUpdate};
///
/// let task = client.tasks().get(7).await?;
/// println!("#{} {} (version {})", task.id, task.title, task.version);
/// if let Some(etag) = task.etag() {
///     match client.tasks().update_if(task.id, etag, TaskUpdate::new().status(TaskStatus::Done)).await {
///         Ok(done) => println!("done, now {:?}", done.etag()),
///         Err(Error::PreconditionFailed { .. }) => println!("changed meanwhile: look again"),
///         Err(err) => return Err(err),
///     }
/// }
/// # Ok(())
/// # }
/// ```
///
/// [`Task`]: crate::Task
/// [`Tasks::get`]: crate::Tasks::get
/// [`Tasks::create`]: crate::Tasks::create
/// [`Tasks::update`]: crate::Tasks::update
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tagged<T> {
    value: T,
    etag: Option<ETag>,
}

impl<T> Tagged<T> {
    /// `value` with the tag its answer carried, if any.
    pub fn new(value: T, etag: Option<ETag>) -> Self {
        Self { value, etag }
    }

    /// The answer's `ETag`. Every answer of a version 2 server that carries one task has it;
    /// `None` when it was missing or malformed (an older server, or a proxy that drops it).
    pub fn etag(&self) -> Option<&ETag> {
        self.etag.as_ref()
    }

    /// The value, without its tag.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The value and its tag.
    pub fn into_parts(self) -> (T, Option<ETag>) {
        (self.value, self.etag)
    }
}

impl<T> Deref for Tagged<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> AsRef<T> for Tagged<T> {
    fn as_ref(&self) -> &T {
        &self.value
    }
}

impl From<Tagged<crate::Task>> for crate::Task {
    fn from(tagged: Tagged<crate::Task>) -> Self {
        tagged.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_tags_are_read_as_rfc_9110_writes_them() {
        for good in [r#""7-3""#, r#"W/"7-3""#, r#""""#, r#"  "a!#~"  "#] {
            let etag = ETag::parse(good).unwrap_or_else(|_| panic!("{good}"));
            assert_eq!(etag.as_str(), good.trim());
        }
        assert!(ETag::parse(r#"W/"x""#).unwrap().is_weak());
        for bad in ["", "7-3", r#""7-3"#, r#""a"b""#, r#""a b""#, r#"w/"x""#, "\"é\"", "*"] {
            assert!(ETag::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_keeps_the_wire_form_and_checks_it() {
        let etag = ETag::parse(r#""7-3""#).unwrap();
        let json = serde_json::to_string(&etag).unwrap();
        assert_eq!(json, r#""\"7-3\"""#);
        assert_eq!(serde_json::from_str::<ETag>(&json).unwrap(), etag);
        assert!(serde_json::from_str::<ETag>(r#""7-3""#).is_err());
    }
}
