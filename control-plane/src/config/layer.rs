//! One source of configuration (the YAML file, the environment or the command line): every
//! field optional, so sources merge field by field with the later one winning.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use super::duration::HumanDuration;
use super::network::{self, Network};
use super::secret::Secret;
use super::{ConfigError, LogFormat, ProvisionerSetting};

/// The configuration file's shape; unknown keys are refused so a typo is never silently ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    #[serde(default)]
    pub tls: TlsLayer,
    pub provisioner: Option<ProvisionerSetting>,
    #[serde(default)]
    pub auth: AuthLayer,
    /// Base64 of 32 bytes.
    pub secret_key: Option<Secret>,
    /// A file holding the base64 of 32 bytes.
    pub secret_key_file: Option<PathBuf>,
    #[serde(default)]
    pub signup: SignupLayer,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<Vec<Network>>,
    pub default_erp_version: Option<String>,
    /// The ERP versions tenants may be given (the provider's catalogue).
    pub erp_versions: Option<Vec<String>>,
    pub max_body_bytes: Option<usize>,
    #[serde(default)]
    pub webhook: WebhookLayer,
    pub log_format: Option<LogFormat>,
    /// How long settled provisioning jobs, webhook deliveries and events are kept.
    pub history_retention: Option<HumanDuration>,
    pub database_max_connections: Option<u32>,
    /// HTTP worker threads.
    pub workers: Option<usize>,
    /// What every tenant's Tenant gets where it runs: host domain, labels, ingress.
    #[serde(default)]
    pub tenants: TenantsLayer,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsLayer {
    /// Tenants are served at `<slug>.<domain>`.
    pub domain: Option<String>,
    /// Added to every Tenant (e.g. to shard Tenants between operators).
    pub labels: Option<BTreeMap<String, String>>,
    pub ingress_class: Option<String>,
    /// cert-manager ClusterIssuer for the tenants' certificates (one per host).
    pub tls_issuer: Option<String>,
    /// Serve the ingress controller's default certificate instead: one wildcard certificate
    /// for `*.<domain>` and `*.test.<domain>`.
    pub tls_default_certificate: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsLayer {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthLayer {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub signing_kid: Option<String>,
    pub keys: Option<Vec<KeyEntry>>,
    pub token_ttl: Option<HumanDuration>,
    pub signup_token_ttl: Option<HumanDuration>,
}

/// One JWT key: inline base64, or a file holding the base64.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub kid: String,
    pub secret: Option<Secret>,
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupLayer {
    pub per_minute: Option<u32>,
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookLayer {
    pub max_attempts: Option<u32>,
    pub timeout: Option<HumanDuration>,
    /// Internal networks (loopback, private, link-local…) webhooks may nevertheless reach.
    pub allowed_networks: Option<Vec<Network>>,
}

impl Layer {
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        // An empty file is an empty configuration, not an error.
        if text.trim().is_empty() { Ok(Self::default()) } else { serde_yaml::from_str(text) }
    }

    /// The `TENANTRY_*` variables (and `DATABASE_URL`, `REDIS_URL`) of `vars`. Errors name the
    /// variable and never repeat a secret's value.
    pub fn from_env(vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| vars.get(name).map(|value| value.trim()).filter(|value| !value.is_empty());
        let text = |name: &str| get(name).map(str::to_string);
        Ok(Self {
            listen: typed(vars, "TENANTRY_LISTEN")?,
            data_dir: get("TENANTRY_DATA_DIR").map(PathBuf::from),
            database_url: text("DATABASE_URL"),
            redis_url: text("REDIS_URL"),
            tls: TlsLayer {
                cert: get("TENANTRY_TLS_CERT").map(PathBuf::from),
                key: get("TENANTRY_TLS_KEY").map(PathBuf::from),
            },
            provisioner: typed(vars, "TENANTRY_PROVISIONER")?,
            auth: AuthLayer {
                issuer: text("TENANTRY_JWT_ISSUER"),
                audience: text("TENANTRY_JWT_AUDIENCE"),
                signing_kid: text("TENANTRY_JWT_SIGNING_KID"),
                keys: env_keys(get("TENANTRY_JWT_KEYS"), get("TENANTRY_JWT_KEY_FILES"))?,
                token_ttl: typed(vars, "TENANTRY_TOKEN_TTL")?,
                signup_token_ttl: typed(vars, "TENANTRY_SIGNUP_TOKEN_TTL")?,
            },
            secret_key: match get("TENANTRY_SECRET_KEY") {
                Some(text) => Some(Secret::from_base64(text).ok_or_else(|| ConfigError::Env {
                    var: "TENANTRY_SECRET_KEY",
                    problem: "must be base64 of 32 bytes".into(),
                })?),
                None => None,
            },
            secret_key_file: get("TENANTRY_SECRET_KEY_FILE").map(PathBuf::from),
            signup: SignupLayer {
                per_minute: typed(vars, "TENANTRY_SIGNUP_PER_MINUTE")?,
                burst: typed(vars, "TENANTRY_SIGNUP_BURST")?,
            },
            trusted_proxies: networks(vars, "TENANTRY_TRUSTED_PROXIES")?,
            default_erp_version: text("TENANTRY_DEFAULT_ERP_VERSION"),
            erp_versions: get("TENANTRY_ERP_VERSIONS")
                .map(|list| list.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_string).collect()),
            max_body_bytes: typed(vars, "TENANTRY_MAX_BODY_BYTES")?,
            webhook: WebhookLayer {
                max_attempts: typed(vars, "TENANTRY_WEBHOOK_MAX_ATTEMPTS")?,
                timeout: typed(vars, "TENANTRY_WEBHOOK_TIMEOUT")?,
                allowed_networks: networks(vars, "TENANTRY_WEBHOOK_ALLOWED_NETWORKS")?,
            },
            log_format: typed(vars, "TENANTRY_LOG_FORMAT")?,
            history_retention: typed(vars, "TENANTRY_HISTORY_RETENTION")?,
            database_max_connections: typed(vars, "TENANTRY_DATABASE_MAX_CONNECTIONS")?,
            workers: typed(vars, "TENANTRY_WORKERS")?,
            tenants: TenantsLayer {
                domain: text("TENANTRY_TENANT_DOMAIN"),
                labels: match get("TENANTRY_TENANT_LABELS") {
                    Some(list) => Some(
                        list.split(',')
                            .map(str::trim)
                            .filter(|pair| !pair.is_empty())
                            .map(|pair| {
                                pair.split_once('=')
                                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                                    .ok_or_else(|| ConfigError::Env {
                                        var: "TENANTRY_TENANT_LABELS",
                                        problem: format!("{pair:?} is not key=value"),
                                    })
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                    None => None,
                },
                ingress_class: text("TENANTRY_TENANT_INGRESS_CLASS"),
                tls_issuer: text("TENANTRY_TENANT_TLS_ISSUER"),
                tls_default_certificate: typed(vars, "TENANTRY_TENANT_TLS_DEFAULT_CERTIFICATE")?,
            },
        })
    }

    /// `self` wins over `lower`, field by field.
    pub fn over(self, lower: Self) -> Self {
        // The inline sealing key and its key file are one setting: a higher source naming either
        // replaces both of a lower one.
        let (secret_key, secret_key_file) = if self.secret_key.is_some() || self.secret_key_file.is_some() {
            (self.secret_key, self.secret_key_file)
        } else {
            (lower.secret_key, lower.secret_key_file)
        };
        Self {
            listen: self.listen.or(lower.listen),
            data_dir: self.data_dir.or(lower.data_dir),
            database_url: self.database_url.or(lower.database_url),
            redis_url: self.redis_url.or(lower.redis_url),
            tls: TlsLayer { cert: self.tls.cert.or(lower.tls.cert), key: self.tls.key.or(lower.tls.key) },
            provisioner: self.provisioner.or(lower.provisioner),
            auth: AuthLayer {
                issuer: self.auth.issuer.or(lower.auth.issuer),
                audience: self.auth.audience.or(lower.auth.audience),
                signing_kid: self.auth.signing_kid.or(lower.auth.signing_kid),
                keys: self.auth.keys.or(lower.auth.keys),
                token_ttl: self.auth.token_ttl.or(lower.auth.token_ttl),
                signup_token_ttl: self.auth.signup_token_ttl.or(lower.auth.signup_token_ttl),
            },
            secret_key,
            secret_key_file,
            signup: SignupLayer {
                per_minute: self.signup.per_minute.or(lower.signup.per_minute),
                burst: self.signup.burst.or(lower.signup.burst),
            },
            trusted_proxies: self.trusted_proxies.or(lower.trusted_proxies),
            default_erp_version: self.default_erp_version.or(lower.default_erp_version),
            erp_versions: self.erp_versions.or(lower.erp_versions),
            max_body_bytes: self.max_body_bytes.or(lower.max_body_bytes),
            webhook: WebhookLayer {
                max_attempts: self.webhook.max_attempts.or(lower.webhook.max_attempts),
                timeout: self.webhook.timeout.or(lower.webhook.timeout),
                allowed_networks: self.webhook.allowed_networks.or(lower.webhook.allowed_networks),
            },
            log_format: self.log_format.or(lower.log_format),
            history_retention: self.history_retention.or(lower.history_retention),
            database_max_connections: self.database_max_connections.or(lower.database_max_connections),
            workers: self.workers.or(lower.workers),
            tenants: TenantsLayer {
                domain: self.tenants.domain.or(lower.tenants.domain),
                labels: self.tenants.labels.or(lower.tenants.labels),
                ingress_class: self.tenants.ingress_class.or(lower.tenants.ingress_class),
                tls_issuer: self.tenants.tls_issuer.or(lower.tenants.tls_issuer),
                tls_default_certificate: self.tenants.tls_default_certificate.or(lower.tenants.tls_default_certificate),
            },
        }
    }
}

fn typed<T>(vars: &BTreeMap<String, String>, var: &'static str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match vars.get(var).map(|value| value.trim()).filter(|value| !value.is_empty()) {
        Some(text) => text.parse::<T>().map(Some).map_err(|e| ConfigError::Env { var, problem: e.to_string() }),
        None => Ok(None),
    }
}

/// A comma-separated list of addresses and CIDR blocks.
fn networks(vars: &BTreeMap<String, String>, var: &'static str) -> Result<Option<Vec<Network>>, ConfigError> {
    match vars.get(var).map(|value| value.trim()).filter(|value| !value.is_empty()) {
        Some(list) => network::parse_list(list)
            .map(|list| Some(list.into_iter().map(Network).collect()))
            .map_err(|problem| ConfigError::Env { var, problem }),
        None => Ok(None),
    }
}

/// `TENANTRY_JWT_KEYS="kid1:base64,kid2:base64"` and `TENANTRY_JWT_KEY_FILES="kid3:/path"`.
fn env_keys(inline: Option<&str>, files: Option<&str>) -> Result<Option<Vec<KeyEntry>>, ConfigError> {
    if inline.is_none() && files.is_none() {
        return Ok(None);
    }
    let pairs = |var: &'static str, list: &str| -> Result<Vec<(String, String)>, ConfigError> {
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                let Some((kid, value)) =
                    item.split_once(':').filter(|(kid, value)| !kid.trim().is_empty() && !value.trim().is_empty())
                else {
                    return Err(ConfigError::Env {
                        var,
                        problem: "expected a comma-separated list of kid:value".into(),
                    });
                };
                Ok((kid.trim().to_string(), value.trim().to_string()))
            })
            .collect()
    };
    let mut entries = Vec::new();
    for (kid, base64) in pairs("TENANTRY_JWT_KEYS", inline.unwrap_or_default())? {
        let secret = Secret::from_base64(&base64).ok_or_else(|| ConfigError::Env {
            var: "TENANTRY_JWT_KEYS",
            problem: format!("the key of kid {kid:?} is not base64"),
        })?;
        entries.push(KeyEntry { kid, secret: Some(secret), file: None });
    }
    for (kid, path) in pairs("TENANTRY_JWT_KEY_FILES", files.unwrap_or_default())? {
        entries.push(KeyEntry { kid, secret: None, file: Some(PathBuf::from(path)) });
    }
    Ok(Some(entries))
}
