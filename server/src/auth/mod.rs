//! `/auth/*`: register, login, refresh (rotation with reuse detection), logout, me.

pub mod guard;
pub mod jwt;
pub mod password;

use rocket::response::status::NoContent;
use rocket::serde::json::Json;
use rocket::{get, post, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::openapi;
use rocket_okapi::settings::OpenApiSettings;
use tasklane::types::{Credentials, RefreshRequest, Secret, TokenPair, User};

use self::guard::AuthUser;
use self::jwt::{Claims, TokenKind};
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::limits::{Action, ClientAddress};
use crate::responders::WithStatus;
use crate::routing::RequestSpan;
use crate::store::{Rotation, StoreError};
use crate::AppState;
use tracing::Instrument;

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
async fn start_session(state: &AppState, user_id: i64) -> ApiResult<TokenPair> {
    let now = crate::store::now();
    let family = uuid::Uuid::new_v4().simple().to_string();
    let (refresh, claims) =
        state.keys.issue(TokenKind::Refresh, user_id, Some(&family), now, state.config.refresh_token_ttl);
    state.stores.refresh.start_family(&family, user_id, &claims.jti, expiry(&claims)).await?;
    Ok(token_pair(state, user_id, now, refresh))
}

fn expiry(claims: &Claims) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(chrono::Utc::now)
}

fn token_pair(
    state: &AppState,
    user_id: i64,
    now: chrono::DateTime<chrono::Utc>,
    refresh: String,
) -> TokenPair {
    let (access, _) = state.keys.issue(TokenKind::Access, user_id, None, now, state.config.access_token_ttl);
    TokenPair {
        access_token: Secret::new(access),
        refresh_token: Secret::new(refresh),
        token_type: "bearer".to_owned(),
        expires_in: state.config.access_token_ttl.as_secs(),
    }
}

/// Create an account and sign in.
///
/// Username: 3 to 64 ASCII letters, digits, `_`, `-`, `.`, unique ignoring case. Password: 8 to
/// 128 characters. Answers 201 with a token pair; 409 if the name is taken; 429 past the
/// rate limit (per username and per client address).
#[openapi(tag = "Auth")]
#[post("/register", data = "<body>")]
async fn register(
    state: &State<AppState>,
    span: RequestSpan,
    address: ClientAddress,
    body: JsonBody<Credentials>,
) -> ApiResult<WithStatus<201, Json<TokenPair>>> {
    let result: ApiResult<WithStatus<201, Json<TokenPair>>> = async move {
        let creds = body.0;
        state.limits.check(Action::Register, Some(&creds.username), address.0).await?;
        creds.validate().map_err(ApiError::Validation)?;
        let hash = state.hasher.hash(creds.password.expose().to_owned()).await?;
        let user = match state.stores.store.create_user(&creds.username, &hash, crate::store::now()).await {
            Ok(user) => user,
            Err(StoreError::Conflict) => {
                return Err(ApiError::Conflict("that username is already taken".into()))
            }
            Err(e) => return Err(e.into()),
        };
        match start_session(state, user.id).await {
            Ok(pair) => {
                tracing::info!(user_id = user.id, "user registered");
                Ok(WithStatus(Json(pair)))
            }
            Err(err) => {
                // No half-made account: without its session the registration did not happen,
                // and the same request can be retried.
                if let Err(undo) = state.stores.store.delete_user(user.id).await {
                    tracing::error!(user_id = user.id, error = %undo, "could not undo a failed registration");
                }
                Err(err)
            }
        }
    }
    .instrument(span.0)
    .await;
    result
}

/// Sign in with username (matched ignoring case) and password.
///
/// An unknown user and a wrong password get the same 401, in about the same time. Attempts are
/// rate limited per username and per client address (429 with `Retry-After`).
#[openapi(tag = "Auth")]
#[post("/login", data = "<body>")]
async fn login(
    state: &State<AppState>,
    span: RequestSpan,
    address: ClientAddress,
    body: JsonBody<Credentials>,
) -> ApiResult<Json<TokenPair>> {
    let result: ApiResult<Json<TokenPair>> = async move {
        let creds = body.0;
        state.limits.check(Action::Login, Some(&creds.username), address.0).await?;
        // Only shapes that could ever have registered are looked up; the rest still pay for a
        // hash, so the answer's timing says nothing.
        let found = match creds.validate() {
            Ok(()) => state.stores.store.find_credentials(&creds.username).await?,
            Err(_) => None,
        };
        let (user_id, phc) = match found {
            Some(c) => (Some(c.user.id), Some(c.password_hash)),
            None => (None, None),
        };
        let password = creds.password.expose().to_owned();
        if !state.hasher.verify(password, phc).await? {
            tracing::info!(known_user = user_id.is_some(), "login refused");
            return Err(bad_credentials());
        }
        let user_id = user_id.ok_or_else(bad_credentials)?;
        tracing::info!(user_id, "login");
        Ok(Json(start_session(state, user_id).await?))
    }
    .instrument(span.0)
    .await;
    result
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
    state: &State<AppState>,
    span: RequestSpan,
    address: ClientAddress,
    body: JsonBody<RefreshRequest>,
) -> ApiResult<Json<TokenPair>> {
    let result: ApiResult<Json<TokenPair>> = async move {
        let verified = state
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
                state.limits.check(Action::Refresh, None, address.0).await?;
                return Err(refused);
            }
        };
        let family = family.as_str();
        state.limits.check(Action::Refresh, Some(&claims.sub), address.0).await?;
        let now = crate::store::now();
        let refresh = state.stores.refresh.as_ref();
        // The user must still exist: sessions may live in Redis, which a user's deletion (or a
        // database restored from an older backup) does not reach. Looked up before the token
        // is consumed, so a database that cannot answer fails the refresh (503) with the
        // session intact, rather than after, with the new token lost.
        if state.stores.store.get_user(user_id).await?.is_none() {
            refresh.revoke_family(family).await?;
            return Err(StoreError::UserGone.into());
        }
        if !state.config.refresh_token_rotation {
            // Compatibility mode: the same refresh token keeps working until it expires or logout.
            if !refresh.is_active(family, &claims.jti).await? {
                return Err(invalid_refresh());
            }
            return Ok(Json(token_pair(state, user_id, now, body.0.refresh_token.expose().to_owned())));
        }
        let (next, next_claims) =
            state.keys.issue(TokenKind::Refresh, user_id, Some(family), now, state.config.refresh_token_ttl);
        match refresh.rotate(family, &claims.jti, &next_claims.jti, expiry(&next_claims)).await? {
            Rotation::Rotated => Ok(Json(token_pair(state, user_id, now, next))),
            Rotation::Reused => {
                tracing::warn!(user_id, family, "refresh token reused; family revoked");
                refresh.revoke_family(family).await?;
                Err(invalid_refresh())
            }
            Rotation::FamilyRevoked => Err(invalid_refresh()),
        }
    }
    .instrument(span.0)
    .await;
    result
}

/// End the session of a refresh token: its family is revoked.
///
/// Needs no bearer, and answers 204 whether or not the token was still valid (no oracle).
/// Access tokens already issued stay valid until they expire.
#[openapi(tag = "Auth")]
#[post("/logout", data = "<body>")]
async fn logout(
    state: &State<AppState>,
    span: RequestSpan,
    body: JsonBody<RefreshRequest>,
) -> ApiResult<NoContent> {
    let result: ApiResult<NoContent> = async move {
        if let Ok(claims) = state.keys.verify(body.0.refresh_token.expose(), TokenKind::Refresh) {
            if let Some(family) = claims.fam.as_deref() {
                state.stores.refresh.revoke_family(family).await?;
                tracing::info!(user_id = claims.user_id(), "logout");
            }
        }
        Ok(NoContent)
    }
    .instrument(span.0)
    .await;
    result
}

/// The signed-in user.
#[openapi(tag = "Auth")]
#[get("/me")]
async fn me(state: &State<AppState>, user: AuthUser) -> ApiResult<Json<User>> {
    match state.stores.store.get_user(user.id).await? {
        Some(found) => Ok(Json(found)),
        // A valid token for a user who no longer exists: the credentials are no good.
        None => Err(StoreError::UserGone.into()),
    }
}
