//! Request inputs with the API's error rules (`docs/API.md`): the JSON body guard (400 / 413 / 415 / 422 with the
//! field at fault) and raw query parameters that handlers validate themselves (422 naming the
//! parameter), rather than Rocket's generic forward.

use std::marker::PhantomData;
use std::str::FromStr;

use rocket::data::{self, Data, FromData, ToByteUnit};
use rocket::form::{self, FromForm, ValueField};
use rocket::Request;
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::okapi::openapi3::{MediaType, RequestBody};
use rocket_okapi::request::OpenApiFromData;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use tasklane::types::limits::BODY_MAX_BYTES;
use tasklane::types::FieldError;

use crate::error::ApiError;

/// A JSON request body of type `T`.
///
/// Up to 65,536 bytes are read; a larger body is 413, and one that has not arrived within
/// [`BODY_READ_TIMEOUT`] is 408 (Rocket 0.5 sets no read deadline of its own, so a client that
/// stops sending would hold its request forever). A `Content-Type` other than JSON, or one that
/// does not parse, or a charset other than UTF-8, or a `Content-Encoding` (gzip and the like),
/// is 415 (a missing type is taken as JSON, as the service Tasklane replaces did). Bad syntax
/// is 400; a well-formed body of the wrong shape (not an object, unknown field, a field given
/// twice, wrong type, bad enum value, a nested object, or an array holding anything but plain
/// values: every body of this API is a flat object, `labels` its one list) is 422 and names the
/// field.
pub struct JsonBody<T>(pub T);

/// How long a request body may take to arrive: 64 KiB in 10 s is 6.4 KB/s, well below any
/// link a client would use.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[rocket::async_trait]
impl<'r, T: DeserializeOwned + JsonSchema> FromData<'r> for JsonBody<T> {
    type Error = ApiError;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        match parse(req, data).await {
            Ok(value) => data::Outcome::Success(JsonBody(value)),
            Err(err) => data::Outcome::Error(err.stash(req)),
        }
    }
}

async fn parse<T: DeserializeOwned + JsonSchema>(req: &Request<'_>, data: Data<'_>) -> Result<T, ApiError> {
    if let Some(raw) = req.headers().get_one("Content-Type") {
        // Rocket reads a header that does not parse as no type at all; that is not JSON either.
        let parsed = req.content_type();
        let json = parsed.is_some_and(|ct| {
            ct.is_json() || (ct.top() == "application" && ct.sub().as_str().ends_with("+json"))
        });
        if !json {
            let named = parsed.map_or_else(|| raw.to_owned(), |ct| ct.media_type().to_string());
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body must be application/json, not {named:?}"
            )));
        }
        // JSON is UTF-8 (RFC 8259); a body declared in another charset would be misread.
        let charset = parsed.and_then(|ct| ct.param("charset")).map(|c| c.trim_matches('"'));
        if let Some(charset) =
            charset.filter(|c| !c.eq_ignore_ascii_case("utf-8") && !c.eq_ignore_ascii_case("utf8"))
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body must be UTF-8 JSON, not charset {charset:?}"
            )));
        }
    }
    // A compressed body would be read as malformed JSON; say what is wrong instead (RFC 9110
    // answers a content coding the server does not know with 415).
    if let Some(coding) =
        req.headers().get_one("Content-Encoding").filter(|c| !c.trim().eq_ignore_ascii_case("identity"))
    {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the body must not be encoded (Content-Encoding: {coding:?}); send plain JSON"
        )));
    }
    let bytes = tokio::time::timeout(BODY_READ_TIMEOUT, data.open(BODY_MAX_BYTES.bytes()).into_bytes())
        .await
        .map_err(|_| ApiError::RequestTimeout(BODY_READ_TIMEOUT))?
        .map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
    if !bytes.is_complete() {
        return Err(ApiError::PayloadTooLarge);
    }
    req.local_cache(|| crate::middleware::BodyRead(true));
    // Syntax first, shape second: JSON that does not parse is 400, and well-formed JSON of the
    // wrong shape is 422 naming the field. Deserializing straight from the bytes would mix the
    // two: serde_json reports some type errors (a number or null where an enum belongs) as
    // syntax errors.
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|err| {
        if err.classify() == serde_json::error::Category::Eof && bytes.is_empty() {
            ApiError::BadRequest("the request body is empty; expected a JSON object".to_owned())
        } else {
            ApiError::BadRequest(format!("malformed JSON: {err}"))
        }
    })?;
    // Every body of this API is a flat object of strings, numbers and nulls. serde is more
    // lenient than that: a struct can be read from an array (`[]` is an empty update) and an
    // enum from a one-key object (`{"done": null}` is `done`).
    let Some(object) = json.as_object() else {
        return Err(ApiError::invalid("body", "must be a JSON object"));
    };
    // A key given twice is ambiguous (RFC 8259: names SHOULD be unique); a map keeps only the
    // last one, where another reader of the same body (a proxy, a log) may take the first.
    if let Some(key) = serde_json::from_slice::<Keys>(&bytes).ok().and_then(Keys::repeated) {
        return Err(ApiError::invalid(key, "given more than once"));
    }
    let flat = |v: &serde_json::Value| !v.is_object() && !v.is_array();
    let nested = object
        .iter()
        .find(|(_, v)| v.is_object() || v.as_array().is_some_and(|items| !items.iter().all(flat)))
        .map(|(k, _)| k.clone());
    let value = serde_path_to_error::deserialize(&json).map_err(|err| {
        let message = err.inner().to_string();
        if message.starts_with("missing field `") {
            // serde stops at the first missing field; a client is better told of all at once.
            let errors: Vec<FieldError> = missing_fields::<T>(object)
                .into_iter()
                .map(|field| FieldError::new(field, "is required"))
                .collect();
            if !errors.is_empty() {
                return ApiError::Validation(errors);
            }
        }
        // The field itself, not a position inside it (`labels`, not `labels[0]`).
        let field = match err.path().to_string().as_str() {
            "." => named_field(&message).unwrap_or_else(|| "body".to_owned()),
            path => path.split(['[', '.']).next().unwrap_or(path).to_owned(),
        };
        ApiError::invalid(field, message)
    })?;
    // Checked after the shape, so an unknown or mistyped field is reported as such first.
    if let Some(field) = nested {
        return Err(ApiError::invalid(
            field,
            "must be a string, a number, a boolean, null or a list of them",
        ));
    }
    Ok(value)
}

/// The keys of a JSON object, in order, repeats included.
struct Keys(Vec<String>);

impl Keys {
    /// The first key given again.
    fn repeated(self) -> Option<String> {
        let mut seen = std::collections::HashSet::with_capacity(self.0.len());
        self.0.into_iter().find(|key| !seen.insert(key.clone()))
    }
}

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, serde::de::IgnoredAny)) = map.next_entry::<String, _>()? {
                    keys.push(key);
                }
                Ok(Keys(keys))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// The fields `T`'s schema requires that `object` lacks, by name.
fn missing_fields<T: JsonSchema>(object: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    let schema = schemars::gen::SchemaSettings::openapi3().into_generator().into_root_schema_for::<T>();
    schema
        .schema
        .object
        .map(|object_schema| object_schema.required.into_iter().filter(|f| !object.contains_key(f)).collect())
        .unwrap_or_default()
}

// serde names an unknown or missing field in the message ("unknown field `x`, expected ...",
// "missing field `x`"), while the path points at the enclosing object.
fn named_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `").or_else(|| message.strip_prefix("missing field `"))?;
    Some(rest.split('`').next()?.to_owned())
}

impl<'r, T: DeserializeOwned + JsonSchema> OpenApiFromData<'r> for JsonBody<T> {
    fn request_body(gen: &mut OpenApiGenerator) -> rocket_okapi::Result<RequestBody> {
        let mut content = rocket_okapi::okapi::Map::new();
        content.insert(
            "application/json".to_owned(),
            MediaType { schema: Some(gen.json_schema::<T>()), ..Default::default() },
        );
        Ok(RequestBody { content, required: true, ..Default::default() })
    }
}

/// A query parameter kept as its raw text, so the handler can answer a bad value with a 422
/// that names the parameter. Documented in OpenAPI with the schema of `T`.
///
/// Given more than once (`?status=done&status=pending`) it is an error too, where Rocket's own
/// `Option<T>` would quietly read a repeated parameter as absent.
pub struct QueryParam<T> {
    raw: String,
    repeated: bool,
    _type: PhantomData<fn() -> T>,
}

impl<T: FromStr> QueryParam<T>
where
    T::Err: std::fmt::Display,
{
    /// Parses the value; the error names `name` and says what was expected.
    pub fn parse(&self, name: &str) -> Result<T, tasklane::types::FieldError> {
        if self.repeated {
            return Err(tasklane::types::FieldError::new(name, "given more than once"));
        }
        self.raw.parse().map_err(|e: T::Err| tasklane::types::FieldError::new(name, e.to_string()))
    }
}

#[rocket::async_trait]
impl<'v, T: Send> FromForm<'v> for QueryParam<T> {
    type Context = Vec<&'v str>;

    fn init(_: form::Options) -> Self::Context {
        Vec::new()
    }

    fn push_value(values: &mut Self::Context, field: ValueField<'v>) {
        values.push(field.value);
    }

    async fn push_data(_: &mut Self::Context, _: form::DataField<'v, '_>) {
        // Query parameters only: a form body never reaches a `QueryParam`.
    }

    fn finalize(values: Self::Context) -> form::Result<'v, Self> {
        match values.first() {
            Some(first) => {
                Ok(Self { raw: (*first).to_owned(), repeated: values.len() > 1, _type: PhantomData })
            }
            None => Err(form::error::ErrorKind::Missing.into()),
        }
    }
}

impl<T: JsonSchema> JsonSchema for QueryParam<T> {
    fn schema_name() -> String {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(gen: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        T::json_schema(gen)
    }

    fn is_referenceable() -> bool {
        T::is_referenceable()
    }
}
