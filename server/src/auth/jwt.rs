//! JWT issue and verification: HS256 pinned, `exp/iat/iss/aud/sub/jti` checked, and a `typ`
//! claim that keeps access and refresh tokens apart.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// `iss` of every token this server issues.
pub const ISSUER: &str = "tasklane";
/// `aud` of every token this server issues.
pub const AUDIENCE: &str = "tasklane-api";
/// Clock skew tolerated between instances when checking `exp`. Small, since every instance
/// runs NTP; well under the 30 s that DESIGN.md allows.
pub const LEEWAY: Duration = Duration::from_secs(5);

/// Which kind of token a JWT is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Sent as `Authorization: Bearer`.
    Access,
    /// Sent to `/auth/refresh` and `/auth/logout`.
    Refresh,
}

/// The claims of both kinds of token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a decimal string.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    pub iat: i64,
    /// Always [`ISSUER`].
    pub iss: String,
    /// Always [`AUDIENCE`].
    pub aud: String,
    /// Unique id of this token.
    pub jti: String,
    /// Access or refresh.
    pub typ: TokenKind,
    /// The refresh-token family (refresh tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
}

impl Claims {
    /// The user id in `sub`.
    pub fn user_id(&self) -> Option<i64> {
        self.sub.parse().ok().filter(|id| *id > 0)
    }
}

/// Why a token was refused. The client only ever learns "invalid or expired".
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Past `exp`.
    #[error("the token has expired")]
    Expired,
    /// Bad signature, wrong algorithm, issuer or audience, or not a JWT at all.
    #[error("the token is invalid")]
    Invalid,
    /// A valid token of the other kind.
    #[error("the token is not {0} token")]
    WrongKind(&'static str),
}

/// The signing key and the rules tokens are checked against.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    /// Keys from the secret bytes.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY.as_secs();
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs a token of `kind` for `user_id`, valid for `ttl` from `now`.
    pub fn issue(
        &self,
        kind: TokenKind,
        user_id: i64,
        family: Option<&str>,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> (String, Claims) {
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now.timestamp(),
            exp: now.timestamp() + ttl.as_secs() as i64,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            typ: kind,
            fam: family.map(str::to_owned),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of serializable claims cannot fail");
        (token, claims)
    }

    /// Verifies a token and that it is of `kind`.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            }
        })?;
        let claims = data.claims;
        if claims.typ != kind {
            return Err(TokenError::WrongKind(match kind {
                TokenKind::Access => "an access",
                TokenKind::Refresh => "a refresh",
            }));
        }
        if claims.user_id().is_none() || (kind == TokenKind::Refresh && claims.fam.is_none()) {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Also proves exactly one jsonwebtoken crypto backend is compiled in: with none, or two,
    // the first encode panics.
    #[test]
    fn tokens_round_trip_and_are_told_apart() {
        let keys = JwtKeys::new(&[7; 32]);
        let now = Utc::now();
        let (access, _) = keys.issue(TokenKind::Access, 42, None, now, Duration::from_secs(60));
        let (refresh, claims) = keys.issue(TokenKind::Refresh, 42, Some("fam"), now, Duration::from_secs(60));
        assert_eq!(keys.verify(&access, TokenKind::Access).unwrap().user_id(), Some(42));
        assert_eq!(keys.verify(&refresh, TokenKind::Refresh).unwrap(), claims);
        assert!(matches!(keys.verify(&access, TokenKind::Refresh), Err(TokenError::WrongKind(_))));
        assert!(matches!(keys.verify(&refresh, TokenKind::Access), Err(TokenError::WrongKind(_))));
    }

    #[test]
    fn expired_foreign_and_tampered_tokens_are_refused() {
        let keys = JwtKeys::new(&[7; 32]);
        let old = Utc::now() - chrono::Duration::hours(1);
        let (expired, _) = keys.issue(TokenKind::Access, 1, None, old, Duration::from_secs(60));
        assert_eq!(keys.verify(&expired, TokenKind::Access), Err(TokenError::Expired));
        let (foreign, _) =
            JwtKeys::new(&[8; 32]).issue(TokenKind::Access, 1, None, Utc::now(), Duration::from_secs(60));
        assert_eq!(keys.verify(&foreign, TokenKind::Access), Err(TokenError::Invalid));
        let (token, _) = keys.issue(TokenKind::Access, 1, None, Utc::now(), Duration::from_secs(60));
        let mut tampered = token.into_bytes();
        let i = tampered.len() - 5;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            keys.verify(std::str::from_utf8(&tampered).unwrap(), TokenKind::Access),
            Err(TokenError::Invalid)
        );
        // alg=none is refused: the algorithm is pinned.
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let payload = keys.issue(TokenKind::Access, 1, None, Utc::now(), Duration::from_secs(60)).0;
        let body = payload.split('.').nth(1).unwrap();
        assert_eq!(keys.verify(&format!("{header}.{body}."), TokenKind::Access), Err(TokenError::Invalid));
    }
}
