//! A JSON answer with extra headers, documented in the OpenAPI document.

use rocket::http::Header;
use rocket::response::{self, Responder};
use rocket::serde::json::Json;
use rocket::Request;
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::okapi::openapi3::{Header as OpenApiHeader, ParameterValue, RefOr, Responses};
use rocket_okapi::response::OpenApiResponderInner;
use schemars::JsonSchema;
use serde::Serialize;

/// A JSON body with response headers (`X-Total-Count`, `Link`).
pub struct WithHeaders<T> {
    body: Json<T>,
    headers: Vec<Header<'static>>,
}

impl<T> WithHeaders<T> {
    /// `body` with no headers yet.
    pub fn new(body: T) -> Self {
        Self { body: Json(body), headers: Vec::new() }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push(Header::new(name, value.into()));
        self
    }
}

impl<'r, T: Serialize> Responder<'r, 'static> for WithHeaders<T> {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let mut res = self.body.respond_to(req)?;
        for header in self.headers {
            res.set_header(header);
        }
        Ok(res)
    }
}

/// Headers documented for [`WithHeaders`] responses, by the body type.
pub trait DocumentedHeaders {
    /// `(name, description, schema type)` of each header.
    const HEADERS: &'static [(&'static str, &'static str, &'static str)];
}

impl<T: Serialize + JsonSchema + Send + DocumentedHeaders> OpenApiResponderInner for WithHeaders<T> {
    fn responses(gen: &mut OpenApiGenerator) -> rocket_okapi::Result<Responses> {
        let mut responses = Json::<T>::responses(gen)?;
        for response in responses.responses.values_mut() {
            let RefOr::Object(response) = response else { continue };
            for (name, description, kind) in T::HEADERS {
                let schema = match *kind {
                    "integer" => gen.json_schema::<u64>(),
                    _ => gen.json_schema::<String>(),
                };
                response.headers.insert(
                    (*name).to_owned(),
                    RefOr::Object(OpenApiHeader {
                        description: Some((*description).to_owned()),
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
                        extensions: Default::default(),
                    }),
                );
            }
        }
        Ok(responses)
    }
}
