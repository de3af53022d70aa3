//! The bearer request guard: who is calling. Verifying the JWT needs no database round trip.

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome};
use rocket::Request;
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::okapi::openapi3::{Object, SecurityRequirement, SecurityScheme, SecuritySchemeData};
use rocket_okapi::request::{OpenApiFromRequest, RequestHeaderInput};

use crate::app::App;
use crate::auth::jwt::TokenKind;
use crate::error::ApiError;

/// The authenticated caller, from `Authorization: Bearer <access token>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthUser {
    /// The caller's user id.
    pub id: i64,
    /// When the access token expires, in seconds since the epoch (an event stream ends then).
    pub expires_at: i64,
}

/// Name of the security scheme in the OpenAPI document.
pub const SECURITY_SCHEME: &str = "bearer";

fn bearer_token<'r>(req: &'r Request<'_>) -> Result<&'r str, ApiError> {
    let header = req
        .headers()
        .get_one("Authorization")
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer token".into()))?;
    match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(token.trim())
        }
        _ => Err(ApiError::Unauthorized("the Authorization header must be `Bearer <access token>`".into())),
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for AuthUser {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let Some(app) = req.rocket().state::<App>() else {
            return Outcome::Error(ApiError::Internal("app state missing".into()).stash(req));
        };
        let verified = bearer_token(req).and_then(|token| {
            app.keys
                .verify(token, TokenKind::Access)
                .map_err(|e| ApiError::Unauthorized(format!("{e}; sign in or refresh")))
        });
        match verified.map(|claims| (claims.user_id(), claims.exp)) {
            Ok((Some(id), expires_at)) => Outcome::Success(AuthUser { id, expires_at }),
            Ok((None, _)) => Outcome::Error(ApiError::Unauthorized("the token is invalid".into()).stash(req)),
            Err(err) => {
                debug_assert_eq!(err.status(), Status::Unauthorized);
                Outcome::Error(err.stash(req))
            }
        }
    }
}

impl<'r> OpenApiFromRequest<'r> for AuthUser {
    fn from_request_input(
        _gen: &mut OpenApiGenerator,
        _name: String,
        _required: bool,
    ) -> rocket_okapi::Result<RequestHeaderInput> {
        let scheme = SecurityScheme {
            description: Some(
                "An access token from /auth/login, /auth/register or /auth/refresh.".to_owned(),
            ),
            data: SecuritySchemeData::Http {
                scheme: "bearer".to_owned(),
                bearer_format: Some("JWT".to_owned()),
            },
            extensions: Object::default(),
        };
        let mut requirement = SecurityRequirement::new();
        requirement.insert(SECURITY_SCHEME.to_owned(), Vec::new());
        Ok(RequestHeaderInput::Security(SECURITY_SCHEME.to_owned(), scheme, requirement))
    }
}
