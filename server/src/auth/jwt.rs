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
    /// A second key whose signatures verify too (`SECRET_KEY_ACCEPTED`), never used to sign.
    accepted: Option<DecodingKey>,
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
            accepted: None,
            validation,
        }
    }

    /// These keys, also accepting tokens signed with `secret` (a key being rotated in or out);
    /// tokens are still signed with the first key only.
    pub fn accepting(mut self, secret: &[u8]) -> Self {
        self.accepted = Some(DecodingKey::from_secret(secret));
        self
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

    /// The user id of a valid access token.
    pub fn verify_access(&self, token: &str) -> Result<i64, TokenError> {
        self.verify(token, TokenKind::Access)?.user_id().ok_or(TokenError::Invalid)
    }

    /// Verifies a token and that it is of `kind`.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let decode = |key| jsonwebtoken::decode::<Claims>(token, key, &self.validation);
        let decoded = match (decode(&self.decoding), &self.accepted) {
            (Err(e), Some(accepted)) if *e.kind() == ErrorKind::InvalidSignature => decode(accepted),
            (decoded, _) => decoded,
        };
        let data = decoded.map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
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

    /// Rotating the key: tokens of the key being rotated in or out verify, new ones are signed
    /// with the first key only, and a key neither knows is still refused.
    #[test]
    fn an_accepted_key_verifies_but_never_signs() {
        let now = Utc::now();
        let ttl = Duration::from_secs(60);
        let old = JwtKeys::new(&[1; 32]);
        let new = JwtKeys::new(&[2; 32]).accepting(&[1; 32]);
        let (from_old, _) = old.issue(TokenKind::Refresh, 7, Some("fam"), now, ttl);
        assert_eq!(new.verify(&from_old, TokenKind::Refresh).unwrap().user_id(), Some(7));
        assert_eq!(new.verify_access(&old.issue(TokenKind::Access, 7, None, now, ttl).0), Ok(7));
        let (from_new, _) = new.issue(TokenKind::Access, 7, None, now, ttl);
        assert_eq!(
            old.verify(&from_new, TokenKind::Access),
            Err(TokenError::Invalid),
            "signed with the new key"
        );
        assert_eq!(JwtKeys::new(&[2; 32]).verify_access(&from_new), Ok(7));
        let (stranger, _) = JwtKeys::new(&[3; 32]).issue(TokenKind::Access, 7, None, now, ttl);
        assert_eq!(new.verify(&stranger, TokenKind::Access), Err(TokenError::Invalid));
        // An expired token of the accepted key is expired, not invalid.
        let (stale, _) = old.issue(TokenKind::Access, 7, None, now - chrono::TimeDelta::hours(1), ttl);
        assert_eq!(new.verify(&stale, TokenKind::Access), Err(TokenError::Expired));
    }

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
