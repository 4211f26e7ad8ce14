//! The control plane's settings: a YAML file (`--config` or `TENANTRY_CONFIG`), then environment
//! variables, then command-line flags, the later winning field by field. With nothing configured
//! everything has a default for the embedded mode: SQLite and generated keys in a local data
//! directory, no cluster.

mod duration;
mod layer;
mod network;
mod secret;
mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

pub use duration::{DurationError, HumanDuration, format_duration, parse_duration};
pub use layer::{AuthLayer, KeyEntry, Layer, SignupLayer, TlsLayer, WebhookLayer};
pub use network::Network;
pub use secret::{Secret, load_or_create_private_file, read_key_file};

use crate::auth::{Keys, KeysError};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The Tryton release new tenants get unless configured: the operator's supported series.
pub const DEFAULT_ERP_VERSION: &str = "7.0.59";
pub const DATABASE_FILE: &str = "control-plane.db";
pub const JWT_KEYS_FILE: &str = "jwt-keys";
pub const SECRET_KEY_FILE: &str = "secret-key";
pub const SECRET_KEY_BYTES: usize = 32;
const GENERATED_JWT_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// The YAML error names the unknown or malformed key and where it is.
    #[error("configuration file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {problem}")]
    Env { var: &'static str, problem: String },
    #[error("{field}: {problem}")]
    Invalid { field: &'static str, problem: String },
    #[error("TLS needs both a certificate and a key; {missing} is missing (TENANTRY_TLS_CERT / TENANTRY_TLS_KEY)")]
    TlsHalfConfigured { missing: &'static str },
    #[error("TLS {}: {problem}", path.display())]
    Tls { path: PathBuf, problem: String },
    #[error("key file {}: {problem}", path.display())]
    KeyFile { path: PathBuf, problem: String },
    #[error("no data directory: set TENANTRY_DATA_DIR, XDG_DATA_HOME or HOME")]
    NoDataDir,
    #[error(transparent)]
    Keys(#[from] KeysError),
}

/// Where desired Tenants go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionerSetting {
    /// Server-side apply to the cluster of the kubeconfig or the in-cluster credentials.
    Cluster,
    /// One YAML file per Tenant in this directory, for GitOps.
    Manifests(PathBuf),
    /// Recorded and shown as waiting for a cluster.
    None,
}

impl FromStr for ProvisionerSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "cluster" => Ok(Self::Cluster),
            "none" => Ok(Self::None),
            _ => match text.strip_prefix("manifests:") {
                Some(dir) if !dir.is_empty() => Ok(Self::Manifests(PathBuf::from(dir))),
                _ => Err(format!("unknown provisioner {text:?}; one of cluster, manifests:<dir>, none")),
            },
        }
    }
}

impl fmt::Display for ProvisionerSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cluster => f.write_str("cluster"),
            Self::Manifests(dir) => write!(f, "manifests:{}", dir.display()),
            Self::None => f.write_str("none"),
        }
    }
}

impl<'de> Deserialize<'de> for ProvisionerSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    #[default]
    Text,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            _ => Err(format!("unknown log format {text:?}; json or text")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Token issuing and verification. `keys` lists every verification key by kid; empty means the
/// generated key of the data directory (see [`Settings::resolved_auth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    /// Signs new tokens; the first key when `None`.
    pub signing_kid: Option<String>,
    pub keys: Vec<(String, Secret)>,
    pub token_ttl: Duration,
    pub signup_token_ttl: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "tenantry".into(),
            audience: "tenantry-api".into(),
            signing_kid: None,
            keys: Vec::new(),
            token_ttl: Duration::from_secs(3600),
            signup_token_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Signup rate limit per client IP: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignupSettings {
    pub per_minute: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    pub max_attempts: u32,
    /// Per delivery attempt.
    pub timeout: Duration,
    /// Internal networks webhooks may reach; none by default (see `webhooks::destination`).
    pub allowed_networks: Vec<IpNet>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: SQLite in the data directory (see [`Settings::database_url`]).
    pub database_url: Option<String>,
    /// `None`: cache, rate limits and idempotency records in process.
    pub redis_url: Option<String>,
    pub tls: Option<TlsSettings>,
    pub provisioner: ProvisionerSetting,
    /// The kubeconfig file(s) of `KUBECONFIG`; without one the cluster provisioner uses
    /// `~/.kube/config` or the in-cluster service account.
    pub kubeconfig: Option<String>,
    pub auth: AuthSettings,
    /// Seals webhook secrets; `None`: generated in the data directory (see [`Settings::secret_key`]).
    pub secret_key: Option<Secret>,
    pub signup: SignupSettings,
    /// Proxies (networks) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub default_erp_version: String,
    /// The only ERP versions tenants may be given; `default_erp_version` is one of them.
    pub erp_versions: crate::domain::versions::VersionCatalogue,
    pub max_body_bytes: usize,
    pub webhook: WebhookSettings,
    pub log_format: LogFormat,
    /// Settled provisioning jobs, webhook deliveries and events older than this are deleted.
    pub history_retention: Duration,
    pub database_max_connections: u32,
    /// HTTP worker threads; `None`: one per CPU.
    pub workers: Option<usize>,
    /// Added to every Tenant where it is applied: host under the domain, labels, ingress.
    pub tenants: crate::provision::Decorations,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_deref().map(redact_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("tls", &self.tls)
            .field("provisioner", &self.provisioner)
            .field("auth", &self.auth)
            .field("secret_key", &self.secret_key)
            .field("signup", &self.signup)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("default_erp_version", &self.default_erp_version)
            .field("erp_versions", &self.erp_versions)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("webhook", &self.webhook)
            .field("log_format", &self.log_format)
            .field("history_retention", &self.history_retention)
            .field("database_max_connections", &self.database_max_connections)
            .field("workers", &self.workers)
            .field("tenants", &self.tenants)
            .finish()
    }
}

impl Settings {
    /// The file (`config_file`, else `TENANTRY_CONFIG`), the process environment, then `flags`.
    pub fn load(config_file: Option<&Path>, flags: Layer) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let path = config_file
            .map(Path::to_path_buf)
            .or_else(|| env.get("TENANTRY_CONFIG").filter(|path| !path.trim().is_empty()).map(PathBuf::from));
        let file = match path {
            Some(path) => read_file_layer(&path)?,
            None => Layer::default(),
        };
        Self::from_sources(file, &env, flags)
    }

    /// The settings from three sources, flags over environment over file. `env` also provides
    /// the defaults' inputs (`HOME`, `XDG_DATA_HOME`, `KUBECONFIG`, `KUBERNETES_SERVICE_HOST`);
    /// nothing here reads the process environment.
    pub fn from_sources(file: Layer, env: &BTreeMap<String, String>, flags: Layer) -> Result<Self, ConfigError> {
        let merged = flags.over(Layer::from_env(env)?.over(file));
        let var = |name: &str| env.get(name).map(|value| value.trim()).filter(|value| !value.is_empty());

        let data_dir = match merged.data_dir {
            Some(dir) => dir,
            None => default_data_dir(var("XDG_DATA_HOME"), var("HOME"))?,
        };
        let tls = match (merged.tls.cert, merged.tls.key) {
            (Some(cert), Some(key)) => Some(TlsSettings { cert, key }),
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::TlsHalfConfigured { missing: "the key" }),
            (None, Some(_)) => return Err(ConfigError::TlsHalfConfigured { missing: "the certificate" }),
        };
        let provisioner = merged.provisioner.unwrap_or_else(|| {
            if var("KUBECONFIG").is_some() || var("KUBERNETES_SERVICE_HOST").is_some() {
                ProvisionerSetting::Cluster
            } else {
                ProvisionerSetting::None
            }
        });

        let defaults = AuthSettings::default();
        let auth = AuthSettings {
            issuer: merged.auth.issuer.unwrap_or(defaults.issuer),
            audience: merged.auth.audience.unwrap_or(defaults.audience),
            signing_kid: merged.auth.signing_kid,
            keys: resolve_keys(merged.auth.keys.unwrap_or_default())?,
            token_ttl: merged.auth.token_ttl.map_or(defaults.token_ttl, |ttl| ttl.0),
            signup_token_ttl: merged.auth.signup_token_ttl.map_or(defaults.signup_token_ttl, |ttl| ttl.0),
        };
        // Configured keys are checked now, so a bad key stops start-up rather than a request.
        if !auth.keys.is_empty() {
            Keys::new(&auth)?;
        } else if auth.issuer.trim().is_empty() || auth.audience.trim().is_empty() {
            return Err(ConfigError::Invalid {
                field: "auth",
                problem: "issuer and audience must not be empty".into(),
            });
        }
        let secret_key = match (merged.secret_key, merged.secret_key_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    field: "secret_key",
                    problem: "give the key or a key file, not both".into(),
                });
            }
            (Some(secret), None) => Some(secret),
            (None, Some(path)) => Some(read_key_file(&path)?),
            (None, None) => None,
        };
        if let Some(secret) = &secret_key {
            sealing_key(secret)?;
        }

        let settings = Self {
            listen: match merged.listen {
                Some(listen) => listen,
                None => DEFAULT_LISTEN.parse().expect("the default listen address parses"),
            },
            data_dir,
            database_url: merged.database_url,
            redis_url: merged.redis_url,
            tls,
            provisioner,
            kubeconfig: var("KUBECONFIG").map(str::to_string),
            auth,
            secret_key,
            signup: SignupSettings {
                per_minute: merged.signup.per_minute.unwrap_or(10),
                burst: merged.signup.burst.unwrap_or(5),
            },
            trusted_proxies: merged.trusted_proxies.unwrap_or_default().into_iter().map(|network| network.0).collect(),
            default_erp_version: merged.default_erp_version.unwrap_or_else(|| DEFAULT_ERP_VERSION.into()),
            erp_versions: match &merged.erp_versions {
                Some(list) => crate::domain::versions::VersionCatalogue::new(list)
                    .map_err(|e| ConfigError::Invalid { field: "erp_versions", problem: e.to_string() })?,
                None => crate::domain::versions::VersionCatalogue::default(),
            },
            max_body_bytes: merged.max_body_bytes.unwrap_or(64 * 1024),
            webhook: WebhookSettings {
                max_attempts: merged.webhook.max_attempts.unwrap_or(12),
                timeout: merged.webhook.timeout.map_or(Duration::from_secs(10), |timeout| timeout.0),
                allowed_networks: merged
                    .webhook
                    .allowed_networks
                    .unwrap_or_default()
                    .into_iter()
                    .map(|network| network.0)
                    .collect(),
            },
            log_format: merged.log_format.unwrap_or_default(),
            history_retention: merged.history_retention.map_or(Duration::from_secs(30 * 86_400), |keep| keep.0),
            database_max_connections: merged.database_max_connections.unwrap_or(32),
            workers: merged.workers,
            tenants: crate::provision::Decorations {
                labels: merged.tenants.labels.unwrap_or_default(),
                domain: merged.tenants.domain,
                ingress_class: merged.tenants.ingress_class,
                tls_issuer: merged.tenants.tls_issuer,
                tls_default_certificate: merged.tenants.tls_default_certificate.unwrap_or(false),
            },
        };
        settings.check()?;
        Ok(settings)
    }

    /// The embedded defaults with `data_dir`: no file, no environment (for tests and tools).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let flags = Layer { data_dir: Some(data_dir.into()), ..Layer::default() };
        Self::from_sources(Layer::default(), &BTreeMap::new(), flags).expect("the defaults are valid")
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |field, problem: &str| Err(ConfigError::Invalid { field, problem: problem.to_string() });
        if let Err(e) = self
            .default_erp_version
            .parse::<tenantry_contract::version::ErpVersion>()
            .and_then(tenantry_contract::version::ErpVersion::check_production)
        {
            return invalid("default_erp_version", &e.to_string());
        }
        if let Err(e) = self.erp_versions.offered(&self.default_erp_version) {
            return invalid("default_erp_version", &format!("{e}: add it to erp_versions"));
        }
        if self.signup.per_minute == 0 || self.signup.burst == 0 {
            return invalid("signup", "per_minute and burst must be at least 1");
        }
        if self.max_body_bytes < 1024 {
            return invalid("max_body_bytes", "at least 1024");
        }
        if self.history_retention < Duration::from_secs(3600) {
            return invalid("history_retention", "at least 1h: settled work is kept at least that long");
        }
        if self.webhook.max_attempts == 0 {
            return invalid("webhook.max_attempts", "at least 1");
        }
        if self.webhook.timeout.is_zero() {
            return invalid("webhook.timeout", "must be longer than zero");
        }
        if self.auth.token_ttl.is_zero() || self.auth.signup_token_ttl.is_zero() {
            return invalid("auth", "token lifetimes must be longer than zero");
        }
        if self.database_max_connections == 0 {
            return invalid("database_max_connections", "at least 1");
        }
        if self.workers == Some(0) {
            return invalid("workers", "at least 1");
        }
        if let Some(domain) = &self.tenants.domain {
            let label_ok = |label: &str| {
                (1..=63).contains(&label.len())
                    && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            };
            if domain.len() > 200 || !domain.split('.').all(label_ok) {
                return invalid("tenants.domain", "a lowercase DNS name such as erp.example.com");
            }
            if self.tenants.tls_issuer.is_none() && !self.tenants.tls_default_certificate {
                return invalid(
                    "tenants.tls_issuer",
                    "needed with tenants.domain (or tenants.tls_default_certificate): tenants are served over HTTPS only",
                );
            }
        }
        if self.tenants.tls_issuer.is_some() && self.tenants.tls_default_certificate {
            return invalid("tenants.tls_default_certificate", "set it or tenants.tls_issuer, not both");
        }
        for (key, value) in &self.tenants.labels {
            let name = key.rsplit('/').next().unwrap_or_default();
            let text_ok = |text: &str, max: usize| {
                text.len() <= max && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            };
            if name.is_empty() || !text_ok(name, 63) || key.len() > 253 || !text_ok(value, 63) {
                return invalid("tenants.labels", &format!("{key}={value} is not a Kubernetes label"));
            }
        }
        Ok(())
    }

    /// `DATABASE_URL`, else the SQLite file of the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite:{}", self.data_dir.join(DATABASE_FILE).display()),
        }
    }

    /// Creates the data directory (private to its owner) when missing.
    pub fn ensure_data_dir(&self) -> Result<(), ConfigError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.data_dir)
            .map_err(|source| ConfigError::Read { path: self.data_dir.clone(), source })
    }

    /// The auth settings with their keys: the configured ones, or the key generated once into
    /// `<data_dir>/jwt-keys` so tokens survive restarts.
    pub fn resolved_auth(&self) -> Result<AuthSettings, ConfigError> {
        if !self.auth.keys.is_empty() {
            return Ok(self.auth.clone());
        }
        let path = self.data_dir.join(JWT_KEYS_FILE);
        let text = load_or_create_private_file(&path, || {
            let kid = format!("local-{:08x}", rand::random::<u32>());
            format!("{kid}:{}\n", Secret::random(GENERATED_JWT_SECRET_BYTES).to_base64())
        })?;
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                line.split_once(':')
                    .and_then(|(kid, base64)| Some((kid.trim().to_string(), Secret::from_base64(base64)?)))
                    .ok_or_else(|| ConfigError::KeyFile {
                        path: path.clone(),
                        problem: "expected kid:base64 lines".into(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AuthSettings { keys, ..self.auth.clone() })
    }

    /// The keys to issue and verify tokens with.
    pub fn jwt_keys(&self) -> Result<Keys, ConfigError> {
        Ok(Keys::new(&self.resolved_auth()?)?)
    }

    /// The key sealing webhook secrets: configured, or generated once into
    /// `<data_dir>/secret-key`.
    pub fn secret_key(&self) -> Result<[u8; SECRET_KEY_BYTES], ConfigError> {
        if let Some(secret) = &self.secret_key {
            return sealing_key(secret);
        }
        let path = self.data_dir.join(SECRET_KEY_FILE);
        let text =
            load_or_create_private_file(&path, || format!("{}\n", Secret::random(SECRET_KEY_BYTES).to_base64()))?;
        let secret = Secret::from_base64(&text)
            .ok_or_else(|| ConfigError::KeyFile { path: path.clone(), problem: "does not hold base64 text".into() })?;
        sealing_key(&secret).map_err(|_| ConfigError::KeyFile {
            path,
            problem: format!("must hold base64 of exactly {SECRET_KEY_BYTES} bytes"),
        })
    }

    /// The TLS server configuration, when a certificate and key are configured.
    pub fn rustls_config(&self) -> Result<Option<rustls::ServerConfig>, ConfigError> {
        self.tls.as_ref().map(tls::server_config).transpose()
    }
}

fn read_file_layer(path: &Path) -> Result<Layer, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    Layer::from_yaml(&text).map_err(|e| ConfigError::File { path: path.to_path_buf(), message: e.to_string() })
}

fn default_data_dir(xdg_data_home: Option<&str>, home: Option<&str>) -> Result<PathBuf, ConfigError> {
    // The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
    match (xdg_data_home.map(Path::new).filter(|dir| dir.is_absolute()), home) {
        (Some(xdg), _) => Ok(xdg.join("tenantry")),
        (None, Some(home)) => Ok(Path::new(home).join(".local/share/tenantry")),
        (None, None) => Err(ConfigError::NoDataDir),
    }
}

fn resolve_keys(entries: Vec<KeyEntry>) -> Result<Vec<(String, Secret)>, ConfigError> {
    entries
        .into_iter()
        .map(|entry| match (entry.secret, entry.file) {
            (Some(secret), None) => Ok((entry.kid, secret)),
            (None, Some(path)) => Ok((entry.kid, read_key_file(&path)?)),
            _ => Err(ConfigError::Invalid {
                field: "auth.keys",
                problem: format!("key {:?} needs exactly one of `secret` or `file`", entry.kid),
            }),
        })
        .collect()
}

fn sealing_key(secret: &Secret) -> Result<[u8; SECRET_KEY_BYTES], ConfigError> {
    secret.expose().try_into().map_err(|_| ConfigError::Invalid {
        field: "secret_key",
        problem: format!("must be base64 of exactly {SECRET_KEY_BYTES} bytes"),
    })
}

/// `url` without its password (userinfo or `password=` query parameter), for logs and output.
pub fn redact_url(url: &str) -> String {
    let mut redacted = url.to_string();
    if let Some(scheme_end) = redacted.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end =
            redacted[authority_start..].find(['/', '?', '#']).map_or(redacted.len(), |i| authority_start + i);
        if let Some(at) = redacted[authority_start..authority_end].rfind('@') {
            let userinfo = &redacted[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                redacted.replace_range(authority_start + colon + 1..authority_start + at, "***");
            }
        }
    }
    if let Some(query_start) = redacted.find('?') {
        let (head, query) = redacted.split_at(query_start + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect();
        redacted = format!("{head}{}", query.join("&"));
    }
    redacted
}

#[cfg(test)]
mod tests;
