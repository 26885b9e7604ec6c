//! Bearer tokens: JWTs verified with the jsonwebtoken crate. HS256 with a
//! shared secret, or RS256/ES256 with a public key file. The claims are the
//! user's id (`sub`), display name (`name`), expiry (`exp`, required) and
//! whether they administer the whole server (`admin`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Longest `sub` accepted: user ids are short, and they are stored with
/// every op and grant.
pub const MAX_SUBJECT_CHARS: usize = 128;
/// Clock skew allowed when checking `exp`.
const LEEWAY_SECS: u64 = 30;

/// The claims Tandem reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user's id: the author of their ops and the owner of their
    /// client ids.
    pub sub: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Server-wide admin.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

/// Why a token was not accepted. The message is safe to show the client.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Expired (`exp` in the past).
    #[error("the token has expired")]
    Expired,
    /// Bad signature, wrong algorithm, malformed, missing claims.
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

/// Checks tokens.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

impl TokenVerifier {
    /// HS256 with `secret`.
    ///
    /// # Errors
    ///
    /// When the secret is empty.
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_secret(secret).map_err(|e| KeyError(e.to_string()))?;
        Ok(Self::with(key, Algorithm::HS256))
    }

    /// RS256 or ES256 with a PEM public key (whichever the key is).
    ///
    /// # Errors
    ///
    /// When the PEM is neither an RSA nor an EC public key.
    pub fn public_key(pem: &[u8]) -> Result<Self, KeyError> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::with(key, Algorithm::RS256));
        }
        let key = DecodingKey::from_ec_pem(pem)
            .map_err(|e| KeyError(format!("not an RSA or EC public key: {e}")))?;
        Ok(Self::with(key, Algorithm::ES256))
    }

    fn with(key: DecodingKey, alg: Algorithm) -> Self {
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self { key, validation }
    }

    /// The claims of a valid token.
    ///
    /// # Errors
    ///
    /// [`TokenError`] for an expired, malformed or badly signed token, or
    /// one whose `sub` is empty, too long or has control characters.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            },
        )?;
        let claims = data.claims;
        if claims.sub.is_empty()
            || claims.sub.chars().count() > MAX_SUBJECT_CHARS
            || claims.sub.chars().any(char::is_control)
        {
            return Err(TokenError::Invalid(format!(
                "sub must be 1-{MAX_SUBJECT_CHARS} characters without control characters"
            )));
        }
        Ok(claims)
    }
}

/// Signs tokens with the HS256 secret (`tandem token`, tests).
pub struct TokenSigner {
    key: EncodingKey,
}

impl TokenSigner {
    /// A signer for `secret`.
    ///
    /// # Errors
    ///
    /// When the secret is empty.
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        let key = EncodingKey::from_secret(secret).map_err(|e| KeyError(e.to_string()))?;
        Ok(Self { key })
    }

    /// A token for `sub` valid for `ttl`.
    ///
    /// # Errors
    ///
    /// When signing fails (it does not with an HS256 secret).
    pub fn issue(
        &self,
        sub: &str,
        name: Option<&str>,
        admin: bool,
        ttl: Duration,
    ) -> Result<String, KeyError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let claims = Claims {
            sub: sub.to_owned(),
            name: name.map(str::to_owned),
            exp: (now + ttl).as_secs(),
            admin,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .map_err(|e| KeyError(e.to_string()))
    }
}

/// Parses a duration like `90s`, `15m`, `1h`, `7d` (or plain seconds).
///
/// # Errors
///
/// When it is not one of those.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3_600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("not a duration: {s:?} (use s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_others_do_not() {
        let signer = TokenSigner::hs256(b"secret").expect("signer");
        let verifier = TokenVerifier::hs256(b"secret").expect("verifier");
        let t = signer
            .issue("alice", Some("Alice"), false, Duration::from_secs(60))
            .expect("token");
        let c = verifier.verify(&t).expect("valid");
        assert_eq!(
            (c.sub.as_str(), c.name.as_deref(), c.admin),
            ("alice", Some("Alice"), false)
        );
        let other = TokenVerifier::hs256(b"other").expect("verifier");
        assert!(matches!(other.verify(&t), Err(TokenError::Invalid(_))));
        assert!(matches!(
            verifier.verify("garbage"),
            Err(TokenError::Invalid(_))
        ));
        let old = Claims {
            sub: "bob".into(),
            name: None,
            exp: 1_000,
            admin: false,
        };
        let key = EncodingKey::from_secret(b"secret").expect("key");
        let expired =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &old, &key).expect("enc");
        assert_eq!(verifier.verify(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert!(parse_ttl("1y").is_err() && parse_ttl("").is_err());
    }
}
