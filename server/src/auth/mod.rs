//! `/auth/*`: register, login, refresh (rotation with reuse detection), logout, me.

pub mod guard;
pub mod jwt;
pub mod password;

use rocket::response::status::{Created, NoContent};
use rocket::serde::json::Json;
use rocket::{get, post, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::openapi;
use rocket_okapi::settings::OpenApiSettings;
use tasklane::types::{Credentials, RefreshRequest, Secret, TokenPair, User};

use self::guard::AuthUser;
use self::jwt::{Claims, TokenKind};
use crate::app::App;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::limits::{Action, ClientAddress};
use crate::middleware::RequestSpan;
use crate::store::{Rotation, StoreError};

/// The routes of this area and their OpenAPI document.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    rocket_okapi::openapi_get_routes_spec![settings: register, login, refresh, logout, me]
}

fn bad_credentials() -> ApiError {
    ApiError::Unauthorized("incorrect username or password".into())
}

fn invalid_refresh() -> ApiError {
    ApiError::Unauthorized("the refresh token is invalid, expired or already used; sign in again".into())
}

/// A new session: a family with its first refresh token, and an access token.
async fn start_session(app: &App, user_id: i64) -> ApiResult<TokenPair> {
    let now = crate::store::now();
    let family = uuid::Uuid::new_v4().simple().to_string();
    let (refresh, claims) =
        app.keys.issue(TokenKind::Refresh, user_id, Some(&family), now, app.tokens.refresh_ttl);
    app.sessions.start_family(&family, user_id, &claims.jti, expiry(&claims)).await?;
    Ok(token_pair(app, user_id, now, refresh))
}

fn expiry(claims: &Claims) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(chrono::Utc::now)
}

fn token_pair(app: &App, user_id: i64, now: chrono::DateTime<chrono::Utc>, refresh: String) -> TokenPair {
    let (access, _) = app.keys.issue(TokenKind::Access, user_id, None, now, app.tokens.access_ttl);
    TokenPair {
        access_token: Secret::new(access),
        refresh_token: Secret::new(refresh),
        token_type: "bearer".to_owned(),
        expires_in: app.tokens.access_ttl.as_secs(),
    }
}

/// Create an account and sign in.
///
/// Username: 3 to 64 ASCII letters, digits, `_`, `-`, `.`, unique ignoring case. Password: 8 to
/// 128 characters. Answers 201 with a token pair (and `Location: /auth/me`); 409 if the name
/// is taken; 429 past the rate limit (per username and per client address).
#[openapi(tag = "Auth")]
#[post("/register", data = "<body>")]
async fn register(
    app: &State<App>,
    span: RequestSpan,
    address: ClientAddress,
    body: JsonBody<Credentials>,
) -> ApiResult<Created<Json<TokenPair>>> {
    let creds = body.0;
    app.limits.check(Action::Register, Some(&creds.username), address.0).await?;
    creds.validate().map_err(ApiError::Validation)?;
    let hash = app.hasher.hash(creds.password.expose().to_owned()).await?;
    let user = match app.db.create_user(&creds.username, &hash, crate::store::now()).await {
        Ok(user) => user,
        Err(StoreError::Conflict) => return Err(ApiError::Conflict("that username is already taken".into())),
        Err(e) => return Err(e.into()),
    };
    match start_session(app, user.id).await {
        Ok(pair) => {
            tracing::info!(parent: &span.0, user_id = user.id, "user registered");
            // The new account is the signed-in user, at `/auth/me`.
            Ok(Created::new("/auth/me").body(Json(pair)))
        }
        Err(err) => {
            // No half-made account: without its session the registration did not happen,
            // and the same request can be retried.
            if let Err(undo) = app.db.delete_user(user.id).await {
                tracing::error!(parent: &span.0, user_id = user.id, error = %undo, "could not undo a failed registration");
            }
            Err(err)
        }
    }
}

/// Sign in with username (matched ignoring case) and password.
///
/// An unknown user and a wrong password get the same 401, in about the same time. Attempts are
/// rate limited per username and per client address (429 with `Retry-After`).
#[openapi(tag = "Auth")]
#[post("/login", data = "<body>")]
async fn login(
    app: &State<App>,
    span: RequestSpan,
    address: ClientAddress,
    body: JsonBody<Credentials>,
) -> ApiResult<Json<TokenPair>> {
    let creds = body.0;
    app.limits.check(Action::Login, Some(&creds.username), address.0).await?;
    // Only shapes that could ever have registered are looked up; the rest still pay for a
    // hash, so the answer's timing says nothing.
    let found = match creds.validate() {
        Ok(()) => app.db.find_credentials(&creds.username).await?,
        Err(_) => None,
    };
    let (user_id, phc) = match found {
        Some(c) => (Some(c.user.id), Some(c.password_hash)),
        None => (None, None),
    };
    if !app.hasher.verify(creds.password.expose().to_owned(), phc).await? {
        tracing::info!(parent: &span.0, known_user = user_id.is_some(), "login refused");
        return Err(bad_credentials());
    }
    let user_id = user_id.ok_or_else(bad_credentials)?;
    tracing::info!(parent: &span.0, user_id, "login");
    Ok(Json(start_session(app, user_id).await?))
}

/// Exchange a refresh token for a new token pair.
///
/// The refresh token rotates: the one presented is consumed and a new one returned. Presenting
/// a consumed token again revokes its whole family (every session descended from that login),
/// since it means the token was copied. Of concurrent refreshes with one token, exactly one
/// succeeds.
#[openapi(tag = "Auth")]
#[post("/refresh", data = "<body>")]
async fn refresh(
    app: &State<App>,
    span: RequestSpan,
    address: ClientAddress,
    body: JsonBody<RefreshRequest>,
) -> ApiResult<Json<TokenPair>> {
    let verified = app
        .keys
        .verify(body.0.refresh_token.expose(), TokenKind::Refresh)
        .map_err(|e| ApiError::Unauthorized(format!("{e}; sign in again")))
        .and_then(|claims| match (claims.user_id(), claims.fam.clone()) {
            (Some(user_id), Some(family)) => Ok((claims, user_id, family)),
            _ => Err(invalid_refresh()),
        });
    let (claims, user_id, family) = match verified {
        Ok(verified) => verified,
        Err(refused) => {
            // No account to charge, but the address pays: guessing tokens is limited like
            // guessing passwords.
            app.limits.check(Action::Refresh, None, address.0).await?;
            return Err(refused);
        }
    };
    let family = family.as_str();
    app.limits.check(Action::Refresh, Some(&claims.sub), address.0).await?;
    let now = crate::store::now();
    // The user must still exist: sessions may live in Redis, which a user's deletion (or a
    // database restored from an older backup) does not reach. Looked up before the token is
    // consumed, so a database that cannot answer fails the refresh (503) with the session
    // intact, rather than after, with the new token lost.
    if app.db.get_user(user_id).await?.is_none() {
        app.sessions.revoke_family(family).await?;
        return Err(StoreError::UserGone.into());
    }
    if !app.tokens.rotation {
        // Compatibility mode: the same refresh token keeps working until it expires or logout.
        if !app.sessions.is_active(family, &claims.jti).await? {
            return Err(invalid_refresh());
        }
        return Ok(Json(token_pair(app, user_id, now, body.0.refresh_token.expose().to_owned())));
    }
    let (next, next_claims) =
        app.keys.issue(TokenKind::Refresh, user_id, Some(family), now, app.tokens.refresh_ttl);
    match app.sessions.rotate(family, &claims.jti, &next_claims.jti, expiry(&next_claims)).await? {
        Rotation::Rotated => Ok(Json(token_pair(app, user_id, now, next))),
        Rotation::Reused => {
            tracing::warn!(parent: &span.0, user_id, family, "refresh token reused; family revoked");
            app.sessions.revoke_family(family).await?;
            Err(invalid_refresh())
        }
        Rotation::FamilyRevoked => Err(invalid_refresh()),
    }
}

/// End the session of a refresh token: its family is revoked.
///
/// Needs no bearer, and answers 204 whether or not the token was still valid (no oracle).
/// Access tokens already issued stay valid until they expire.
#[openapi(tag = "Auth")]
#[post("/logout", data = "<body>")]
async fn logout(app: &State<App>, span: RequestSpan, body: JsonBody<RefreshRequest>) -> ApiResult<NoContent> {
    if let Ok(claims) = app.keys.verify(body.0.refresh_token.expose(), TokenKind::Refresh) {
        if let Some(family) = claims.fam.as_deref() {
            app.sessions.revoke_family(family).await?;
            tracing::info!(parent: &span.0, user_id = claims.user_id(), "logout");
        }
    }
    Ok(NoContent)
}

/// The signed-in user.
#[openapi(tag = "Auth")]
#[get("/me")]
async fn me(app: &State<App>, user: AuthUser) -> ApiResult<Json<User>> {
    match app.db.get_user(user.id).await? {
        Some(found) => Ok(Json(found)),
        // A valid token for a user who no longer exists: the credentials are no good.
        None => Err(StoreError::UserGone.into()),
    }
}
