//! Issuing and verifying the HS256 tokens, with every verification key listed by `kid`.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AuthError, Principal, Role, check_tenant_binding};
use crate::config::AuthSettings;

/// The only algorithm accepted: pinned, so a token cannot choose `none` or another family.
const ALGORITHM: Algorithm = Algorithm::HS256;
const ALGORITHM_NAME: &str = "HS256";
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;
/// HS256 keys shorter than the hash output weaken it (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;
/// Real tokens are a few hundred bytes; anything this large is not one of ours.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The claims of a Tenantry token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    pub role: Role,
    /// Only on tenant-admin tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// Why a set of keys cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    #[error("no JWT keys are configured")]
    NoKeys,
    #[error("a JWT key id must not be empty")]
    EmptyKid,
    #[error("JWT key {kid:?} has {len} bytes; at least {MIN_SECRET_BYTES} are needed")]
    KeyTooShort { kid: String, len: usize },
    #[error("JWT key id {0:?} is listed twice")]
    DuplicateKid(String),
    #[error("the signing key id {0:?} is not among the configured JWT keys")]
    UnknownSigningKid(String),
    #[error("the JWT {0} must not be empty")]
    Empty(&'static str),
}

/// The keys tokens are signed and verified with. Verification accepts every listed key, by the
/// token's `kid`; new tokens are signed with the signing key only.
#[derive(Clone)]
pub struct Keys {
    issuer: String,
    audience: String,
    signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&String> = self.verifying.keys().collect();
        kids.sort();
        f.debug_struct("Keys")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("signing_kid", &self.signing_kid)
            .field("kids", &kids)
            .finish_non_exhaustive()
    }
}

/// The part of the JOSE header looked at before any key is chosen.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
}

impl Keys {
    /// The signing key is `signing_kid`, or the first listed key when none is named.
    pub fn new(settings: &AuthSettings) -> Result<Self, KeysError> {
        if settings.issuer.trim().is_empty() {
            return Err(KeysError::Empty("issuer"));
        }
        if settings.audience.trim().is_empty() {
            return Err(KeysError::Empty("audience"));
        }
        let (first_kid, _) = settings.keys.first().ok_or(KeysError::NoKeys)?;
        let mut verifying = HashMap::with_capacity(settings.keys.len());
        for (kid, secret) in &settings.keys {
            if kid.is_empty() {
                return Err(KeysError::EmptyKid);
            }
            if secret.expose().len() < MIN_SECRET_BYTES {
                return Err(KeysError::KeyTooShort { kid: kid.clone(), len: secret.expose().len() });
            }
            if verifying.insert(kid.clone(), DecodingKey::from_secret(secret.expose())).is_some() {
                return Err(KeysError::DuplicateKid(kid.clone()));
            }
        }
        let signing_kid = settings.signing_kid.clone().unwrap_or_else(|| first_kid.clone());
        let signing_secret = settings
            .keys
            .iter()
            .find(|(kid, _)| *kid == signing_kid)
            .map(|(_, secret)| secret)
            .ok_or_else(|| KeysError::UnknownSigningKid(signing_kid.clone()))?;

        let mut validation = Validation::new(ALGORITHM);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(Self {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            signing: EncodingKey::from_secret(signing_secret.expose()),
            signing_kid,
            verifying,
            validation,
        })
    }

    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// A token for `role` valid for `ttl` from now, signed with the signing key.
    pub fn issue(&self, role: Role, tenant: Option<&str>, subject: &str, ttl: Duration) -> Result<String, AuthError> {
        check_tenant_binding(role, tenant)?;
        if subject.trim().is_empty() {
            return Err(AuthError::Claims("a token needs a subject".into()));
        }
        let ttl = i64::try_from(ttl.as_secs())
            .ok()
            .filter(|seconds| *seconds > 0)
            .ok_or_else(|| AuthError::Claims("a token's lifetime must be at least one second".into()))?;
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.to_string(),
            exp: now.saturating_add(ttl),
            iat: now,
            nbf: None,
            jti: uuid::Uuid::new_v4().to_string(),
            role,
            tenant: tenant.map(str::to_string),
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.signing_kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.signing).map_err(|e| AuthError::Signing(e.to_string()))
    }

    /// The caller a token speaks for, once its algorithm, key, signature, issuer, audience,
    /// lifetime and role/tenant claims all check out.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let claims = self.verify_claims(token)?;
        check_tenant_binding(claims.role, claims.tenant.as_deref())?;
        if claims.sub.trim().is_empty() {
            return Err(AuthError::Claims("the token has an empty subject".into()));
        }
        Ok(Principal { role: claims.role, tenant: claims.tenant, subject: claims.sub })
    }

    /// Verified claims, before the role/tenant rules.
    pub fn verify_claims(&self, token: &str) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed(format!("longer than {MAX_TOKEN_BYTES} bytes")));
        }
        let header = raw_header(token)?;
        match header.alg.as_deref() {
            Some(ALGORITHM_NAME) => {}
            Some(other) => return Err(AuthError::Algorithm(printable(other))),
            None => return Err(AuthError::Malformed("the header has no `alg`".into())),
        }
        let kid = header.kid.ok_or_else(|| AuthError::Malformed("the header has no `kid`".into()))?;
        let key = self.verifying.get(&kid).ok_or_else(|| AuthError::UnknownKid(printable(&kid)))?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation).map(|data| data.claims).map_err(from_jwt_error)
    }
}

fn raw_header(token: &str) -> Result<RawHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed("a JWT has three dot-separated parts".into()));
    };
    let bytes =
        URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthError::Malformed("the header is not base64url".into()))?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed("the header is not a JSON object".into()))
}

fn from_jwt_error(error: jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::Algorithm(ALGORITHM_NAME.into()),
        ErrorKind::MissingRequiredClaim(claim) => AuthError::Malformed(format!("the `{claim}` claim is missing")),
        ErrorKind::InvalidClaimFormat(claim) => AuthError::Malformed(format!("the `{claim}` claim is malformed")),
        // Only reached after the signature verified, so the message describes our own claims.
        ErrorKind::Json(e) => AuthError::Malformed(format!("unexpected claims: {e}")),
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) => AuthError::Malformed("a part is not base64url text".into()),
        _ => AuthError::Malformed("not a JWT".into()),
    }
}

/// Attacker-chosen header text, made safe and short for an error message.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn settings(keys: &[(&str, u8)], signing: Option<&str>) -> AuthSettings {
        AuthSettings {
            keys: keys.iter().map(|(kid, fill)| (kid.to_string(), Secret::new(vec![*fill; 32]))).collect(),
            signing_kid: signing.map(str::to_string),
            ..AuthSettings::default()
        }
    }

    #[test]
    fn keys_are_checked_when_made() {
        assert_eq!(Keys::new(&settings(&[], None)).unwrap_err(), KeysError::NoKeys);
        let mut short = settings(&[("a", 1)], None);
        short.keys[0].1 = Secret::new(vec![1; 31]);
        assert_eq!(Keys::new(&short).unwrap_err(), KeysError::KeyTooShort { kid: "a".into(), len: 31 });
        assert_eq!(Keys::new(&settings(&[("a", 1), ("a", 2)], None)).unwrap_err(), KeysError::DuplicateKid("a".into()));
        assert_eq!(Keys::new(&settings(&[("a", 1)], Some("b"))).unwrap_err(), KeysError::UnknownSigningKid("b".into()));
        assert_eq!(Keys::new(&settings(&[("a", 1), ("b", 2)], None)).unwrap().signing_kid(), "a");
        assert_eq!(Keys::new(&settings(&[("a", 1), ("b", 2)], Some("b"))).unwrap().signing_kid(), "b");
    }

    #[test]
    fn debug_shows_no_secret() {
        let keys = Keys::new(&settings(&[("a", b'z')], None)).unwrap();
        let debug = format!("{keys:?}");
        assert!(debug.contains("\"a\"") && !debug.contains("zzzz"), "{debug}");
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_claims() {
        let keys = Keys::new(&settings(&[("a", 1)], None)).unwrap();
        let token = keys.issue(Role::TenantAdmin, Some("acme"), "ada@acme.test", Duration::from_secs(60)).unwrap();
        let claims = keys.verify_claims(&token).unwrap();
        assert_eq!((claims.iss.as_str(), claims.aud.as_str()), ("tenantry", "tenantry-api"));
        assert_eq!(claims.exp - claims.iat, 60);
        assert_eq!(uuid::Uuid::parse_str(&claims.jti).unwrap().get_version_num(), 4);
        let principal = keys.verify(&token).unwrap();
        assert_eq!(principal.tenant.as_deref(), Some("acme"));
        assert_eq!(principal.subject, "ada@acme.test");
    }

    #[test]
    fn issuing_follows_the_tenant_rules() {
        let keys = Keys::new(&settings(&[("a", 1)], None)).unwrap();
        let hour = Duration::from_secs(3600);
        assert!(matches!(keys.issue(Role::TenantAdmin, None, "x", hour), Err(AuthError::Claims(_))));
        assert!(matches!(keys.issue(Role::ProviderAdmin, Some("acme"), "x", hour), Err(AuthError::Claims(_))));
        assert!(matches!(keys.issue(Role::ProviderAdmin, None, " ", hour), Err(AuthError::Claims(_))));
        assert!(matches!(keys.issue(Role::ProviderAdmin, None, "x", Duration::ZERO), Err(AuthError::Claims(_))));
    }

    #[test]
    fn garbage_is_malformed() {
        let keys = Keys::new(&settings(&[("a", 1)], None)).unwrap();
        for garbage in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.x", &"a".repeat(MAX_TOKEN_BYTES + 1)] {
            assert!(matches!(keys.verify(garbage), Err(AuthError::Malformed(_))), "{garbage:.20}");
        }
    }
}
