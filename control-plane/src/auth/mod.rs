//! Who is calling: HS256 JWT bearer tokens carrying one of three roles, verified against several
//! keys by `kid` so keys can rotate without downtime.

mod extract;
mod token;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use token::{Claims, Keys, KeysError};

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs the platform: every tenant, plan and webhook.
    ProviderAdmin,
    /// Manages one tenant, named by the token's `tenant` claim.
    TenantAdmin,
    /// Reads seat counts and usage for invoicing; nothing else.
    BillingReader,
}

impl Role {
    pub const ALL: [Self; 3] = [Self::ProviderAdmin, Self::TenantAdmin, Self::BillingReader];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ProviderAdmin => "provider-admin",
            Self::TenantAdmin => "tenant-admin",
            Self::BillingReader => "billing-reader",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}; one of provider-admin, tenant-admin, billing-reader")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, UnknownRole> {
        Self::ALL.into_iter().find(|role| role.as_str() == text).ok_or_else(|| UnknownRole(text.to_string()))
    }
}

/// The verified caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    /// The tenant slug a tenant-admin is bound to; `None` for the other roles.
    pub tenant: Option<String>,
    pub subject: String,
}

impl Principal {
    pub fn is_provider_admin(&self) -> bool {
        self.role == Role::ProviderAdmin
    }

    /// Whether the caller may see anything of tenant `slug`. A billing-reader sees every tenant,
    /// but only through the read-only billing endpoints: the HTTP layer decides which those are.
    pub fn can_see_tenant(&self, slug: &str) -> bool {
        match self.role {
            Role::ProviderAdmin | Role::BillingReader => true,
            Role::TenantAdmin => self.tenant.as_deref() == Some(slug),
        }
    }
}

/// Why a token was refused or could not be made. Messages never contain the token or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token: send `Authorization: Bearer <token>`")]
    MissingBearer,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is signed with an unknown key id {0:?}")]
    UnknownKid(String),
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("the token's algorithm {0:?} is refused; only HS256 is accepted")]
    Algorithm(String),
    /// The role and tenant claims do not fit together.
    #[error("{0}")]
    Claims(String),
    #[error("signing the token failed: {0}")]
    Signing(String),
    /// The server has no keys to check tokens with (a wiring mistake, not the caller's).
    #[error("token verification is not configured on this server")]
    NotConfigured,
}

impl AuthError {
    /// The stable `code` of the problem+json answer.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingBearer => "token_missing",
            Self::Expired => "token_expired",
            Self::Signing(_) | Self::NotConfigured => "auth_not_configured",
            _ => "token_invalid",
        }
    }
}

/// The rules tying a role to a tenant: a tenant-admin names exactly one valid tenant slug, the
/// other roles name none.
pub(crate) fn check_tenant_binding(role: Role, tenant: Option<&str>) -> Result<(), AuthError> {
    match (role, tenant) {
        (Role::TenantAdmin, None) => Err(AuthError::Claims("a tenant-admin token must name its tenant".into())),
        (Role::TenantAdmin, Some(slug)) => crate::slug::Slug::parse(slug)
            .map(drop)
            .map_err(|e| AuthError::Claims(format!("the tenant of a tenant-admin token is not a valid slug: {e}"))),
        (other, Some(_)) => Err(AuthError::Claims(format!("a {other} token must not name a tenant"))),
        (_, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_in_kebab_case() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        assert_eq!("tenant-admin".parse::<Role>(), Ok(Role::TenantAdmin));
        assert!("admin".parse::<Role>().unwrap_err().to_string().contains("provider-admin"));
    }

    #[test]
    fn tenant_visibility_follows_the_role() {
        let principal = |role, tenant: Option<&str>| Principal {
            role,
            tenant: tenant.map(str::to_string),
            subject: "someone".into(),
        };
        let acme_admin = principal(Role::TenantAdmin, Some("acme"));
        assert!(acme_admin.can_see_tenant("acme"));
        assert!(!acme_admin.can_see_tenant("globex"));
        assert!(!acme_admin.is_provider_admin());
        assert!(principal(Role::ProviderAdmin, None).can_see_tenant("globex"));
        assert!(principal(Role::ProviderAdmin, None).is_provider_admin());
        assert!(principal(Role::BillingReader, None).can_see_tenant("globex"));
    }

    #[test]
    fn tenant_binding_rules() {
        assert!(check_tenant_binding(Role::TenantAdmin, Some("acme")).is_ok());
        assert!(check_tenant_binding(Role::TenantAdmin, None).is_err());
        assert!(check_tenant_binding(Role::TenantAdmin, Some("Not A Slug")).is_err());
        assert!(check_tenant_binding(Role::ProviderAdmin, Some("acme")).is_err());
        assert!(check_tenant_binding(Role::BillingReader, Some("acme")).is_err());
        assert!(check_tenant_binding(Role::BillingReader, None).is_ok());
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(AuthError::MissingBearer.code(), "token_missing");
        assert_eq!(AuthError::Expired.code(), "token_expired");
        assert_eq!(AuthError::BadSignature.code(), "token_invalid");
        assert_eq!(AuthError::UnknownKid("k".into()).code(), "token_invalid");
    }
}
