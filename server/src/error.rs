//! One error type for every handler, guard and catcher, rendered as `application/problem+json`
//! (RFC 9457).

use std::io::Cursor;
use std::sync::Mutex;
use std::time::Duration;

use rocket::http::{ContentType, Header, Method, Status};
use rocket::response::{self, Responder, Response};
use rocket::Request;
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::okapi::openapi3::{MediaType, RefOr, Response as OpenApiResponse, Responses};
use rocket_okapi::response::OpenApiResponderInner;
use tasklane::types::{FieldError, Problem};

use crate::store::StoreError;

/// What a handler, guard or catcher answers when it cannot serve the request.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing, invalid or expired credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 404: no such route, or no such task for this user.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists with other methods.
    #[error("method not allowed; allowed: {}", .0.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "))]
    MethodNotAllowed(Vec<Method>),
    /// 408: the body did not arrive in time.
    #[error("the request body did not arrive within {} s", .0.as_secs())]
    RequestTimeout(Duration),
    /// 409: the resource already exists.
    #[error("{0}")]
    Conflict(String),
    /// 409 with `Retry-After: 1`: a request with the same idempotency key is being processed.
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    InFlight,
    /// 410: what the request refers to is gone for good (a change-feed cursor past retention).
    #[error("{0}")]
    Gone(String),
    /// 412: `If-Match` named no current ETag; the task's current ETag, when it exists.
    #[error("the task has changed since you read it (If-Match does not name its current ETag)")]
    PreconditionFailed(Option<String>),
    /// 413: the body exceeds the limit.
    #[error("request body exceeds {} bytes", tasklane::types::limits::BODY_MAX_BYTES)]
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: a well-formed request that breaks a rule.
    #[error("{}", validation_detail(.0))]
    Validation(Vec<FieldError>),
    /// 429: too many attempts; retry after the given time.
    #[error("too many requests; retry in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    /// 429: the user has as many event streams open as they may; one must close first.
    #[error("at most {0} event streams may be open at once for a user on one server instance; close one, or retry in 5 s")]
    TooManyStreams(usize),
    /// 503: a backing service does not answer; the request may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// 503 for a backing service that failed under this request: the cause is logged (in the
    /// request's span, with its id), the client told only that it may retry.
    #[error("{BACKEND_DOWN}")]
    BackendDown(String),
    /// 500: a bug or an unexpected failure. The message is logged, never sent.
    #[error("internal server error")]
    Internal(String),
    /// Any other status Rocket raised itself (a catcher's fallback).
    #[error("{}", .0.reason_lossy())]
    Other(Status),
}

/// What a 503 says when a backing service failed, or when Rocket raised one itself.
const BACKEND_DOWN: &str = "a backing service is unavailable; retry shortly";

fn validation_detail(errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    if parts.is_empty() {
        "the request breaks a rule".to_owned()
    } else {
        parts.join("; ")
    }
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> Status {
        match self {
            Self::BadRequest(_) => Status::BadRequest,
            Self::Unauthorized(_) => Status::Unauthorized,
            Self::NotFound(_) => Status::NotFound,
            Self::MethodNotAllowed(_) => Status::MethodNotAllowed,
            Self::RequestTimeout(_) => Status::RequestTimeout,
            Self::Conflict(_) | Self::InFlight => Status::Conflict,
            Self::Gone(_) => Status::Gone,
            Self::PreconditionFailed(_) => Status::PreconditionFailed,
            Self::PayloadTooLarge => Status::PayloadTooLarge,
            Self::UnsupportedMediaType(_) => Status::UnsupportedMediaType,
            Self::Validation(_) => Status::UnprocessableEntity,
            Self::RateLimited(_) | Self::TooManyStreams(_) => Status::TooManyRequests,
            Self::Unavailable(_) | Self::BackendDown(_) => Status::ServiceUnavailable,
            Self::Internal(_) => Status::InternalServerError,
            Self::Other(status) => *status,
        }
    }

    /// A 422 for one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// The generic error for a status that no handler explained (a catcher's fallback).
    pub fn for_status(status: Status) -> Self {
        match status.code {
            400 => Self::BadRequest("the request is malformed".into()),
            401 => Self::Unauthorized("a valid bearer token is required".into()),
            404 => Self::NotFound("no such resource".into()),
            413 => Self::PayloadTooLarge,
            415 => Self::UnsupportedMediaType("the body must be application/json".into()),
            422 => Self::Validation(Vec::new()),
            500 => Self::Internal("unexplained internal error".into()),
            503 => Self::Unavailable(BACKEND_DOWN.into()),
            _ => Self::Other(status),
        }
    }

    /// The problem document of this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            kind: "about:blank".to_owned(),
            title: status.reason_lossy().to_owned(),
            status: status.code,
            detail: self.to_string(),
            errors: match self {
                Self::Validation(errors) if !errors.is_empty() => Some(errors.clone()),
                _ => None,
            },
        }
    }

    /// Keeps this error for the catcher of its status, so a failed guard's reason reaches the
    /// client (Rocket passes catchers only the status).
    pub fn stash(self, req: &Request<'_>) -> (Status, Self) {
        let status = self.status();
        *req.local_cache(|| Stashed(Mutex::new(None))).0.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(self.clone());
        (status, self)
    }
}

struct Stashed(Mutex<Option<ApiError>>);

impl ApiError {
    /// The error a guard stashed for the catcher of `status`, if any.
    pub fn stashed(req: &Request<'_>, status: Status) -> Option<ApiError> {
        req.local_cache(|| Stashed(Mutex::new(None)))
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|e| e.status() == status)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(msg) => Self::BackendDown(msg),
            StoreError::Conflict => Self::Conflict("already exists".into()),
            err @ StoreError::UserGone => Self::Unauthorized(err.to_string()),
            StoreError::Internal(msg) => Self::Internal(msg),
        }
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        match &self {
            Self::Internal(msg) => {
                crate::middleware::span(req).in_scope(|| tracing::error!(error = %msg, "internal error"))
            }
            Self::BackendDown(msg) => crate::middleware::span(req)
                .in_scope(|| tracing::warn!(error = %msg, "backing service unavailable")),
            _ => {}
        }
        let body = serde_json::to_vec(&self.problem()).map_err(|_| Status::InternalServerError)?;
        let mut res = Response::build();
        res.status(self.status())
            .header(ContentType::new("application", "problem+json"))
            .sized_body(body.len(), Cursor::new(body));
        match &self {
            Self::Unauthorized(_) => {
                res.header(Header::new("WWW-Authenticate", "Bearer"));
            }
            Self::MethodNotAllowed(methods) => {
                let allow: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
                res.header(Header::new("Allow", allow.join(", ")));
            }
            Self::PayloadTooLarge | Self::RequestTimeout(_) => {
                // The rest of the body was never read: the connection cannot carry another
                // request, so say so rather than let the client reuse it and fail.
                res.header(Header::new("Connection", "close"));
            }
            Self::RateLimited(wait) => {
                res.header(Header::new("Retry-After", wait.as_secs().max(1).to_string()));
            }
            Self::TooManyStreams(_) => {
                res.header(Header::new("Retry-After", "5"));
            }
            Self::InFlight => {
                res.header(Header::new("Retry-After", "1"));
            }
            Self::PreconditionFailed(Some(etag)) => {
                res.header(Header::new("ETag", etag.clone()));
            }
            Self::Unavailable(_) | Self::BackendDown(_) => {
                // Outages are usually brief (a restart, a failover); one second spreads retries.
                res.header(Header::new("Retry-After", "1"));
            }
            _ => {}
        }
        let mut res = res.finalize();
        if crate::middleware::salvaged(req) {
            // No fairing will see this response: give it the common headers here.
            crate::middleware::finish(req, &mut res);
        }
        Ok(res)
    }
}

/// Handler result: the value, or a problem response.
pub type ApiResult<T> = Result<T, ApiError>;

impl OpenApiResponderInner for ApiError {
    fn responses(gen: &mut OpenApiGenerator) -> rocket_okapi::Result<Responses> {
        let schema = gen.json_schema::<Problem>();
        let mut responses = Responses::default();
        for (code, description) in [
            ("400", "Malformed JSON or request"),
            ("401", "Missing, invalid or expired token, or bad credentials (`WWW-Authenticate: Bearer`)"),
            ("404", "Not found, or owned by another user"),
            ("408", "The request body did not arrive within 10 s"),
            (
                "409",
                "Already exists, or a request with the same Idempotency-Key is in flight (`Retry-After`)",
            ),
            ("410", "The cursor is older than the tombstone retention: sync again without it"),
            ("412", "If-Match named no current ETag (the current one is in `ETag`)"),
            ("413", "Body over 65,536 bytes"),
            ("415", "Body is not application/json"),
            ("422", "Breaks a rule; `errors` names the fields"),
            ("429", "Rate limited (`Retry-After`)"),
            ("503", "A backing service is unavailable; retry"),
        ] {
            let mut content = rocket_okapi::okapi::Map::new();
            content.insert(
                "application/problem+json".to_owned(),
                MediaType { schema: Some(schema.clone()), ..Default::default() },
            );
            responses.responses.insert(
                code.to_owned(),
                RefOr::Object(OpenApiResponse {
                    description: description.to_owned(),
                    content,
                    ..Default::default()
                }),
            );
        }
        Ok(responses)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use rocket::http::Header;
    use rocket::local::asynchronous::Client;

    use super::*;

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[rocket::get("/down")]
    fn down() -> ApiResult<()> {
        Err(StoreError::Unavailable("pool timed out".into()).into())
    }

    #[rocket::async_test]
    async fn a_backend_failure_is_503_and_logged_with_the_request_id() {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber =
            tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let client = Client::untracked(rocket::build().mount("/", rocket::routes![down])).await.unwrap();

        let res = client.get("/down").header(Header::new("X-Request-Id", "outage-1")).dispatch().await;

        assert_eq!(res.status(), Status::ServiceUnavailable);
        assert_eq!(res.headers().get_one("Retry-After"), Some("1"));
        let problem: serde_json::Value = serde_json::from_str(&res.into_string().await.unwrap()).unwrap();
        assert_eq!(problem["detail"], "a backing service is unavailable; retry shortly");
        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let line = logs.lines().find(|l| l.contains("backing service unavailable")).expect(&logs);
        assert!(line.contains("request_id=outage-1") && line.contains("pool timed out"), "{line}");
    }
}
