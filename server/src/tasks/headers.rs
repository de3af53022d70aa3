//! The request headers of conditional requests (`If-Match`, `If-None-Match`, RFC 9110 §13) and
//! of idempotent creation (`Idempotency-Key`), as request guards: a malformed one is answered
//! 400 (or 422 for a key) before the handler runs.

use rocket::request::{FromRequest, Outcome};
use rocket::Request;
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::okapi::openapi3::{Object, Parameter, ParameterValue};
use rocket_okapi::request::{OpenApiFromRequest, RequestHeaderInput};

use crate::error::ApiError;

/// One entity-tag of a list: weak or strong, and its opaque part (quotes included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityTag {
    weak: bool,
    opaque: String,
}

/// An `If-Match` or `If-None-Match` value: `*`, or a list of entity-tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tags {
    /// `*`: any current representation.
    Any,
    /// The entity-tags listed.
    List(Vec<EntityTag>),
}

impl Tags {
    /// Parses a header value (RFC 9110: `"*" / #entity-tag`, empty elements allowed).
    fn parse(value: &str) -> Option<Tags> {
        if value.trim() == "*" {
            return Some(Tags::Any);
        }
        let mut tags = Vec::new();
        let mut rest = value.trim_start();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix(',') {
                rest = after.trim_start();
                continue;
            }
            let (weak, quoted) = match rest.strip_prefix("W/") {
                Some(after) => (true, after),
                None => (false, rest),
            };
            let inner = quoted.strip_prefix('"')?;
            let end = inner.find('"')?;
            // etagc: any visible character but the quote, or obs-text.
            if !inner[..end].bytes().all(|b| b == 0x21 || (0x23..=0x7E).contains(&b) || b >= 0x80) {
                return None;
            }
            tags.push(EntityTag { weak, opaque: quoted[..end + 2].to_owned() });
            rest = inner[end + 1..].trim_start();
            if !rest.is_empty() && !rest.starts_with(',') {
                return None;
            }
        }
        (!tags.is_empty()).then_some(Tags::List(tags))
    }

    /// The versions of task `id` that the list names with strong tags (`If-Match` compares
    /// strongly: a weak tag never matches); `None` for `*`.
    pub fn versions_of(&self, id: i64) -> Option<Vec<i64>> {
        let Tags::List(tags) = self else { return None };
        let prefix = format!("\"{id}-");
        Some(
            tags.iter()
                .filter(|tag| !tag.weak)
                .filter_map(|tag| tag.opaque.strip_prefix(&prefix)?.strip_suffix('"')?.parse().ok())
                .collect(),
        )
    }

    /// Whether the list names `current` (`If-None-Match` compares weakly: `W/"7-3"` names
    /// `"7-3"` too), or is `*`.
    pub fn names(&self, current: &str) -> bool {
        match self {
            Tags::Any => true,
            Tags::List(tags) => tags.iter().any(|tag| tag.opaque == current),
        }
    }
}

/// Reads header `name` as [`Tags`]; 400 when it does not parse.
fn tags(req: &Request<'_>, name: &str) -> Outcome<Option<Tags>, ApiError> {
    // An empty field is no condition at all, as if it were absent.
    let values: Vec<&str> = req.headers().get(name).filter(|v| !v.trim().is_empty()).collect();
    if values.is_empty() {
        return Outcome::Success(None);
    }
    // Several fields of one list header are one comma-separated list (RFC 9110 §5.3).
    match Tags::parse(&values.join(", ")) {
        Some(tags) => Outcome::Success(Some(tags)),
        None => {
            let err =
                ApiError::BadRequest(format!("{name} must be * or a list of entity-tags such as \"7-3\""));
            Outcome::Error(err.stash(req))
        }
    }
}

/// `If-Match`, when the request has one.
pub struct IfMatch(pub Option<Tags>);

/// `If-None-Match`, when the request has one.
pub struct IfNoneMatch(pub Option<Tags>);

/// `Idempotency-Key`, when the request has one.
pub struct IdempotencyKey(pub Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IfMatch {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ApiError> {
        tags(req, "If-Match").map(IfMatch)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IfNoneMatch {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ApiError> {
        tags(req, "If-None-Match").map(IfNoneMatch)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IdempotencyKey {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ApiError> {
        let mut values = req.headers().get("Idempotency-Key");
        let Some(key) = values.next() else { return Outcome::Success(IdempotencyKey(None)) };
        let checked = if values.next().is_some() {
            Err(tasklane::types::FieldError::new("Idempotency-Key", "given more than once"))
        } else {
            tasklane::types::validate_idempotency_key(key)
        };
        match checked {
            Ok(()) => Outcome::Success(IdempotencyKey(Some(key.to_owned()))),
            Err(err) => Outcome::Error(ApiError::Validation(vec![err]).stash(req)),
        }
    }
}

/// A header parameter in the OpenAPI document.
pub(crate) fn header(name: &str, description: &str, pattern: &str) -> RequestHeaderInput {
    let schema =
        serde_json::from_value(serde_json::json!({"type": "string", "pattern": pattern})).unwrap_or_default();
    RequestHeaderInput::Parameter(Parameter {
        name: name.to_owned(),
        location: "header".to_owned(),
        description: Some(description.to_owned()),
        required: false,
        deprecated: false,
        allow_empty_value: false,
        value: ParameterValue::Schema {
            style: None,
            explode: None,
            allow_reserved: false,
            schema,
            example: None,
            examples: None,
        },
        extensions: Object::default(),
    })
}

/// `*`, or entity-tags separated by commas; empty is the same as absent, and so is a field with
/// a character other than a tab, a space or visible ASCII, which Rocket does not keep (hyper's
/// `to_str` refuses it).
const TAGS_PATTERN: &str =
    r#"^(\s*|\*|\s*(W/)?"[\x21\x23-\x7E]*"(\s*,\s*(W/)?"[\x21\x23-\x7E]*")*\s*|.*[^\t\x20-\x7E].*)$"#;

impl<'r> OpenApiFromRequest<'r> for IfMatch {
    fn from_request_input(
        _: &mut OpenApiGenerator,
        _: String,
        _: bool,
    ) -> rocket_okapi::Result<RequestHeaderInput> {
        Ok(header(
            "If-Match",
            "Change the task only if its ETag is one of these (or, for `*`, if it exists); else 412 with the current ETag",
            TAGS_PATTERN,
        ))
    }
}

impl<'r> OpenApiFromRequest<'r> for IfNoneMatch {
    fn from_request_input(
        _: &mut OpenApiGenerator,
        _: String,
        _: bool,
    ) -> rocket_okapi::Result<RequestHeaderInput> {
        Ok(header(
            "If-None-Match",
            "304 without a body when the task's ETag is one of these (or `*`)",
            TAGS_PATTERN,
        ))
    }
}

impl<'r> OpenApiFromRequest<'r> for IdempotencyKey {
    fn from_request_input(
        _: &mut OpenApiGenerator,
        _: String,
        _: bool,
    ) -> rocket_okapi::Result<RequestHeaderInput> {
        Ok(header(
            "Idempotency-Key",
            "1 to 255 visible ASCII characters, per user: a repeat of the request with the same key and body \
             answers what the first one answered (`Idempotent-Replayed: true`) and creates nothing",
            // As for the tags: a field with a character other than tab, space or visible ASCII is
            // not kept.
            r"^([\x21-\x7E]{1,255}|.*[^\t\x20-\x7E].*)$",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_stars_parse_and_compare() {
        assert_eq!(Tags::parse("*"), Some(Tags::Any));
        let list = Tags::parse(r#" "7-3" , W/"7-4",,"8-1" "#).unwrap();
        assert_eq!(list.versions_of(7), Some(vec![3]), "a weak tag never matches If-Match");
        assert_eq!(list.versions_of(8), Some(vec![1]));
        assert_eq!(list.versions_of(9), Some(vec![]));
        assert!(list.names("\"7-4\""), "If-None-Match compares weakly");
        assert!(!list.names("\"7-5\""));
        assert_eq!(Tags::Any.versions_of(7), None);
        for bad in ["", "7-3", "\"7-3", "\"7-3\" \"7-4\"", "W/7", "\"a\"b\"", "**", ", ,"] {
            assert_eq!(Tags::parse(bad), None, "{bad:?}");
        }
    }
}
