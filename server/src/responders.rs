//! Answers with headers of their own (paging, ETags), documented in the OpenAPI document.

use std::io::Cursor;

use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Responder, Response};
use rocket::serde::json::Json;
use rocket::Request;
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::okapi::openapi3::{Header as OpenApiHeader, ParameterValue, RefOr, Responses};
use rocket_okapi::response::OpenApiResponderInner;
use schemars::JsonSchema;
use serde::Serialize;
use tasklane::types::Task;

use crate::error::ApiError;

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
                response.headers.insert((*name).to_owned(), documented_header(gen, description, kind));
            }
        }
        Ok(responses)
    }
}

/// The strong ETag of a task in this version: its id and version, quoted (`"7-3"`).
pub fn etag(task: &Task) -> String {
    format!("\"{}-{}\"", task.id, task.version)
}

/// One task as JSON, with its `ETag` (and, for a replayed create, `Idempotent-Replayed`).
pub struct TaskAnswer {
    body: String,
    etag: String,
    replayed: bool,
}

impl TaskAnswer {
    /// `task`, with the ETag of its version.
    pub fn new(task: &Task) -> Result<Self, ApiError> {
        let body =
            serde_json::to_string(task).map_err(|e| ApiError::Internal(format!("encoding a task: {e}")))?;
        Ok(Self { body, etag: etag(task), replayed: false })
    }

    /// The task's JSON, as it will be answered (and kept for an idempotent create).
    pub fn body(&self) -> &str {
        &self.body
    }

    /// A first answer given again for an idempotency key: its body as it was, and its ETag.
    pub fn replayed(body: String) -> Result<Self, ApiError> {
        let task: Task =
            serde_json::from_str(&body).map_err(|e| ApiError::Internal(format!("a kept answer: {e}")))?;
        Ok(Self { body, etag: etag(&task), replayed: true })
    }
}

impl<'r> Responder<'r, 'static> for TaskAnswer {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut res = Response::build();
        res.header(ContentType::JSON)
            .header(Header::new("ETag", self.etag))
            .sized_body(self.body.len(), Cursor::new(self.body));
        if self.replayed {
            res.header(Header::new("Idempotent-Replayed", "true"));
        }
        Ok(res.finalize())
    }
}

impl OpenApiResponderInner for TaskAnswer {
    fn responses(gen: &mut OpenApiGenerator) -> rocket_okapi::Result<Responses> {
        let mut responses = Json::<Task>::responses(gen)?;
        for response in responses.responses.values_mut() {
            if let RefOr::Object(response) = response {
                response.headers.insert(
                    "ETag".to_owned(),
                    documented_header(gen, "The task's ETag, for If-Match and If-None-Match", "string"),
                );
            }
        }
        Ok(responses)
    }
}

/// A task, or 304 Not Modified (with its ETag) when the client's copy is current.
pub enum TaskOrNotModified {
    /// 200 with the task.
    Task(TaskAnswer),
    /// 304 with the current ETag and no body.
    NotModified(String),
}

impl<'r> Responder<'r, 'static> for TaskOrNotModified {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        match self {
            Self::Task(answer) => answer.respond_to(req),
            Self::NotModified(etag) => {
                Ok(Response::build().status(Status::NotModified).header(Header::new("ETag", etag)).finalize())
            }
        }
    }
}

impl OpenApiResponderInner for TaskOrNotModified {
    fn responses(gen: &mut OpenApiGenerator) -> rocket_okapi::Result<Responses> {
        let mut responses = TaskAnswer::responses(gen)?;
        let mut headers = rocket_okapi::okapi::Map::new();
        headers.insert("ETag".to_owned(), documented_header(gen, "The task's current ETag", "string"));
        responses.responses.insert(
            "304".to_owned(),
            RefOr::Object(rocket_okapi::okapi::openapi3::Response {
                description: "The task is as the client has it (If-None-Match)".to_owned(),
                headers,
                ..Default::default()
            }),
        );
        Ok(responses)
    }
}

/// A response header as the OpenAPI document describes it.
fn documented_header(gen: &mut OpenApiGenerator, description: &str, kind: &str) -> RefOr<OpenApiHeader> {
    let schema = match kind {
        "integer" => gen.json_schema::<u64>(),
        _ => gen.json_schema::<String>(),
    };
    RefOr::Object(OpenApiHeader {
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
        extensions: Default::default(),
    })
}
