//! Request inputs with API.md's error rules: the JSON body guard (400 / 413 / 415 / 422 with the
//! field at fault) and raw query parameters that handlers validate themselves (422 naming the
//! parameter), rather than Rocket's generic forward.

use std::marker::PhantomData;
use std::str::FromStr;

use rocket::data::{self, Data, FromData, ToByteUnit};
use rocket::form::{self, FromFormField, ValueField};
use rocket::Request;
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::okapi::openapi3::{MediaType, RequestBody};
use rocket_okapi::request::OpenApiFromData;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use tasklane::types::limits::BODY_MAX_BYTES;

use crate::error::ApiError;

/// A JSON request body of type `T`.
///
/// Up to 65,536 bytes are read; a larger body is 413. A `Content-Type` other than JSON is 415
/// (a missing one is taken as JSON, as the service Tasklane replaces did). Bad syntax is 400;
/// a well-formed body of the wrong shape (unknown field, wrong type, bad enum value) is 422 and
/// names the field.
pub struct JsonBody<T>(pub T);

#[rocket::async_trait]
impl<'r, T: DeserializeOwned> FromData<'r> for JsonBody<T> {
    type Error = ApiError;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        match parse(req, data).await {
            Ok(value) => data::Outcome::Success(JsonBody(value)),
            Err(err) => data::Outcome::Error(err.stash(req)),
        }
    }
}

async fn parse<T: DeserializeOwned>(req: &Request<'_>, data: Data<'_>) -> Result<T, ApiError> {
    if let Some(ct) = req.content_type() {
        let json = ct.is_json() || (ct.top() == "application" && ct.sub().as_str().ends_with("+json"));
        if !json {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body must be application/json, not {}",
                ct.media_type()
            )));
        }
    }
    let bytes = data
        .open(BODY_MAX_BYTES.bytes())
        .into_bytes()
        .await
        .map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
    if !bytes.is_complete() {
        return Err(ApiError::PayloadTooLarge);
    }
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    let value = serde_path_to_error::deserialize(de).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = match field.as_str() {
                    "." => named_field(&inner.to_string()).unwrap_or_else(|| "body".to_owned()),
                    _ => field,
                };
                ApiError::invalid(field, strip_position(&inner.to_string()))
            }
            serde_json::error::Category::Eof if bytes.is_empty() => {
                ApiError::BadRequest("the request body is empty; expected a JSON object".to_owned())
            }
            _ => ApiError::BadRequest(format!("malformed JSON: {inner}")),
        }
    })?;
    Ok(value)
}

// serde names an unknown or missing field in the message ("unknown field `x`, expected ...",
// "missing field `x`"), while the path points at the enclosing object.
fn named_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `").or_else(|| message.strip_prefix("missing field `"))?;
    Some(rest.split('`').next()?.to_owned())
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
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
pub struct QueryParam<T> {
    raw: String,
    _type: PhantomData<fn() -> T>,
}

impl<T: FromStr> QueryParam<T>
where
    T::Err: std::fmt::Display,
{
    /// Parses the value; the error names `name` and says what was expected.
    pub fn parse(&self, name: &str) -> Result<T, tasklane::types::FieldError> {
        self.raw.parse().map_err(|e: T::Err| tasklane::types::FieldError::new(name, e.to_string()))
    }
}

#[rocket::async_trait]
impl<'v, T: Send> FromFormField<'v> for QueryParam<T> {
    fn from_value(field: ValueField<'v>) -> form::Result<'v, Self> {
        Ok(Self { raw: field.value.to_owned(), _type: PhantomData })
    }

    async fn from_data(_field: form::DataField<'v, '_>) -> form::Result<'v, Self> {
        Err(form::Error::validation("query parameters only").into())
    }
}

impl<T: JsonSchema> JsonSchema for QueryParam<T> {
    fn schema_name() -> String {
        T::schema_name()
    }

    fn json_schema(gen: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        T::json_schema(gen)
    }

    fn is_referenceable() -> bool {
        T::is_referenceable()
    }
}
