//! Validation: a Tenant's spec either becomes a [`TenantModel`] or a list of precise reasons why
//! not. Pure, and done before anything is applied, so an invalid Tenant changes nothing.

use std::collections::BTreeMap;

use tenantry_contract::schedule::BackupSchedule;

use crate::api::{BackupsSpec, ComputeResources, EnvironmentSpec, TenantSpec, namespace_of, test_host};
use crate::model::{
    Backups, Compute, DEFAULT_DATABASE_STORAGE, DEFAULT_FILESTORE_STORAGE, Environment, EnvironmentKind, Ingress,
    Quota, Resources, TenantModel, Tls,
};
use crate::profile::{ImageDefaults, Profile};
use crate::quantity;
use crate::version::ErpVersion;

/// Why a Tenant is invalid: every problem found, each naming its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<String>);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

/// The longest Tenant name whose namespace `tenant-<name>` is still a DNS label.
pub use tenantry_contract::names::MAX_TENANT_NAME_LEN as MAX_NAME_LEN;

pub fn validate(name: &str, spec: &TenantSpec, images: &ImageDefaults) -> Result<TenantModel, Invalid> {
    fits_its_quota(validate_spec(name, spec, images)?, images)
}

/// [`validate`] without the quota check: what the spec says, read and checked field by field.
pub fn validate_spec(name: &str, spec: &TenantSpec, images: &ImageDefaults) -> Result<TenantModel, Invalid> {
    let mut problems = Vec::new();
    let mut problem = |message: String| problems.push(message);

    if let Err(e) = dns_label(name, MAX_NAME_LEN) {
        problem(format!("metadata.name: {e}"));
    }
    if spec.display_name.trim().is_empty() {
        problem("spec.displayName must not be empty".into());
    }
    if spec.plan.trim().is_empty() {
        problem("spec.plan must not be empty".into());
    }
    let seats = match u32::try_from(spec.seats) {
        Ok(seats) => seats,
        Err(_) if spec.seats < 0 => {
            problem(format!("spec.seats must not be negative (got {})", spec.seats));
            0
        }
        Err(_) => {
            problem(format!("spec.seats is too large (got {})", spec.seats));
            0
        }
    };

    let profile = match spec.erp.profile.as_str() {
        "tryton" | "odoo" if spec.erp.custom.is_some() => {
            problem(format!("spec.erp.custom is only read with profile `custom`, not `{}`", spec.erp.profile));
            None
        }
        "tryton" => Some(Profile::tryton(images, spec.erp.image.as_deref())),
        "odoo" => Some(Profile::odoo(images, spec.erp.image.as_deref())),
        "custom" => match &spec.erp.custom {
            Some(custom) => {
                for (role, spec) in [("server", &custom.server), ("web", &custom.web)] {
                    if spec.image.trim().is_empty() {
                        problem(format!("spec.erp.custom.{role}.image must not be empty"));
                    }
                    if !(1..=65535).contains(&spec.port) {
                        problem(format!("spec.erp.custom.{role}.port must be 1-65535 (got {})", spec.port));
                    }
                    if !spec.readiness_path.starts_with('/') {
                        problem(format!("spec.erp.custom.{role}.readinessPath must start with `/`"));
                    }
                }
                if custom.update_all_command.is_empty() {
                    problem("spec.erp.custom.updateAllCommand must not be empty".into());
                }
                Some(Profile::custom(custom))
            }
            None => {
                problem("profile `custom` needs spec.erp.custom (server, web, updateAllCommand)".into());
                None
            }
        },
        other => {
            problem(format!("spec.erp.profile `{other}` is unknown; use tryton, odoo or custom"));
            None
        }
    };

    let mut environments = Vec::new();
    let mut environment = |kind: EnvironmentKind, env: &EnvironmentSpec, problem: &mut dyn FnMut(String)| {
        let field = match &env.version {
            Some(_) => format!("spec.environments.{}.version", kind.name()),
            None => "spec.erp.version".to_string(),
        };
        let text = env.version.as_deref().unwrap_or(&spec.erp.version);
        let version = match text.parse::<ErpVersion>() {
            Ok(version) => version,
            Err(e) => {
                problem(format!("{field}: {e}"));
                return;
            }
        };
        if kind == EnvironmentKind::Production && version.is_development() {
            problem(format!(
                "{field}: {version} is a development release (odd minor version {}) and is never allowed in \
                 production; run it in the test environment",
                version.minor
            ));
            return;
        }
        let replicas = env.server_replicas.unwrap_or(1);
        if replicas < 0 {
            problem(format!("spec.environments.{}.serverReplicas must not be negative (got {replicas})", kind.name()));
        }
        let host = spec.ingress.as_ref().map(|ingress| match kind {
            EnvironmentKind::Production => ingress.host.clone(),
            EnvironmentKind::Test => test_host(&ingress.host),
        });
        environments.push(Environment { kind, version, server_replicas: replicas.max(0), host });
    };
    environment(EnvironmentKind::Production, &spec.environments.production, &mut problem);
    if let Some(test) = &spec.environments.test {
        environment(EnvironmentKind::Test, test, &mut problem);
    }

    let mut modules: Vec<String> = spec.erp.modules.iter().map(|m| m.trim().to_string()).collect();
    for module in &modules {
        if module.is_empty() || !module.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            problem(format!("spec.erp.modules: `{module}` is not a module name (lowercase letters, digits, `_`)"));
        }
    }
    modules.sort();
    modules.dedup();

    // Options the operator sets from Secrets; a value here would put a credential in plain text
    // (or be ignored), so they are refused outright.
    let reserved: &[&str] = match spec.erp.profile.as_str() {
        "tryton" => &["database.uri", "session.super_pwd"],
        "odoo" => &["options.admin_passwd", "options.db_password", "options.db_user", "options.db_host"],
        _ => &[],
    };
    let mut config: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (key, value) in &spec.erp.config {
        let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        match key.split_once('.') {
            _ if reserved.contains(&key.as_str()) => {
                problem(format!("spec.erp.config.{key} is set by the operator from a Secret and cannot be given here"))
            }
            Some((section, option)) if word(section) && word(option) => {
                if value.contains(['\n', '\r']) {
                    problem(format!("spec.erp.config.{key}: a value must be a single line"));
                }
                config.entry(section.to_string()).or_default().insert(option.to_string(), value.clone());
            }
            _ => problem(format!("spec.erp.config: `{key}` is not of the form section.option")),
        }
    }

    let resources = resources(spec, &mut problem);

    let ingress = spec.ingress.as_ref().and_then(|ingress| {
        if let Err(e) = check_host(&ingress.host) {
            problem(format!("spec.ingress.host: {e}"));
        }
        if let Some(class) = &ingress.class_name
            && let Err(e) = dns_name(class)
        {
            problem(format!("spec.ingress.className: {e}"));
        }
        let tls = match (&ingress.tls_issuer, &ingress.tls_secret_name, ingress.tls_default_certificate) {
            (None, None, false) => {
                problem(
                    "spec.ingress needs one of tlsIssuer, tlsSecretName or tlsDefaultCertificate: tenants are \
                     served over HTTPS only"
                        .into(),
                );
                None
            }
            (Some(_), Some(_), _) | (Some(_), _, true) | (_, Some(_), true) => {
                problem(
                    "spec.ingress: set one of tlsIssuer, tlsSecretName or tlsDefaultCertificate, not several".into(),
                );
                None
            }
            (None, None, true) => Some(Tls::ControllerDefault),
            (Some(issuer), None, false) => Some(Tls::Issuer(issuer.clone())),
            (None, Some(secret), false) => match dns_name(secret) {
                Ok(()) => Some(Tls::Secret(secret.clone())),
                Err(e) => {
                    problem(format!("spec.ingress.tlsSecretName: {e}"));
                    None
                }
            },
        };
        tls.map(|tls| Ingress { class_name: ingress.class_name.clone(), tls })
    });

    let backups = spec.backups.as_ref().and_then(|backups| backups_model(backups, &mut problem));

    match profile {
        Some(profile) if problems.is_empty() => Ok(TenantModel {
            name: name.to_string(),
            namespace: namespace_of(name),
            display_name: spec.display_name.clone(),
            plan: spec.plan.clone(),
            seats,
            profile,
            modules,
            config,
            environments,
            suspended: spec.suspended,
            resources,
            ingress,
            deletion_policy: spec.deletion_policy,
            backups,
        }),
        _ => Err(Invalid(problems)),
    }
}

/// The longest retention in days, weeks or months a plan may promise: ten years.
const MAX_RETENTION_DAYS: u32 = 3650;

fn backups_model(spec: &BackupsSpec, problem: &mut dyn FnMut(String)) -> Option<Backups> {
    let schedule =
        BackupSchedule::parse(&spec.schedule).map_err(|e| problem(format!("spec.backups.schedule: {e}"))).ok();
    let retention = &spec.retention;
    for (field, value, max) in [
        ("keepAllDays", retention.keep_all_days, MAX_RETENTION_DAYS),
        ("daily", retention.daily, MAX_RETENTION_DAYS),
        ("weekly", retention.weekly, MAX_RETENTION_DAYS / 7),
        ("monthly", retention.monthly, MAX_RETENTION_DAYS / 30),
        ("beforeOperationDays", retention.before_operation_days, MAX_RETENTION_DAYS),
    ] {
        if !(0..=i64::from(max)).contains(&value) {
            problem(format!("spec.backups.retention.{field}: 0 to {max} (got {value})"));
        }
    }
    if let Err(e) = check_store(&spec.storage.url) {
        problem(format!("spec.backups.storage.url: {e}"));
    }
    if let Some(secret) = &spec.storage.secret_name
        && let Err(e) = dns_name(secret)
    {
        problem(format!("spec.backups.storage.secretName: {e}"));
    }
    Some(Backups {
        schedule: schedule?,
        retention: retention.clone(),
        store: spec.storage.url.clone(),
        credentials_secret: spec.storage.secret_name.clone(),
    })
}

/// An object store the agent reaches from a Job: a directory (`file://`) would be inside the
/// Job's pod and gone with it. Credentials belong in the Secret, never in the URL, which is
/// shown in statuses and consoles.
pub fn check_store(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("`{url}` is not a URL (s3://bucket/prefix, gs://bucket/prefix or az://container/prefix)"));
    };
    if !["s3", "gs", "az"].contains(&scheme) {
        return Err(format!("scheme `{scheme}` is not an object store; use s3://, gs:// or az://"));
    }
    let bucket = rest.split('/').next().unwrap_or_default();
    if bucket.is_empty() {
        return Err("the bucket is missing".into());
    }
    if rest.contains('@') || rest.contains('?') || rest.contains('#') {
        return Err("credentials and options belong in the storage Secret, not in the URL".into());
    }
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)) {
        return Err("only letters, digits and `-_./` are allowed".into());
    }
    Ok(())
}

/// A tenant whose own stack cannot fit its quota would wait forever for pods the apiserver
/// refuses: invalid as well (see [`crate::fit`]).
fn fits_its_quota(model: TenantModel, images: &ImageDefaults) -> Result<TenantModel, Invalid> {
    crate::fit::check(&model, images).map(|_| model).map_err(Invalid)
}

fn resources(spec: &TenantSpec, problem: &mut dyn FnMut(String)) -> Resources {
    let r = &spec.resources;
    let mut quantity = |field: &str, value: &Option<String>, positive: bool| -> Option<String> {
        let value = value.as_ref()?.trim().to_string();
        match quantity::check(field, &value, positive) {
            Ok(()) => Some(value),
            Err(e) => {
                problem(e);
                None
            }
        }
    };
    let mut compute = |role: &str, c: &ComputeResources| Compute {
        cpu_request: quantity(&format!("spec.resources.{role}.cpuRequest"), &c.cpu_request, false),
        cpu_limit: quantity(&format!("spec.resources.{role}.cpuLimit"), &c.cpu_limit, false),
        memory_request: quantity(&format!("spec.resources.{role}.memoryRequest"), &c.memory_request, false),
        memory_limit: quantity(&format!("spec.resources.{role}.memoryLimit"), &c.memory_limit, false),
    };
    let server = compute("server", &r.server);
    let web = compute("web", &r.web);
    let database = compute("database", &r.database);
    let database_storage = quantity("spec.resources.databaseStorage", &r.database_storage, true)
        .unwrap_or_else(|| DEFAULT_DATABASE_STORAGE.into());
    let filestore_storage = quantity("spec.resources.filestoreStorage", &r.filestore_storage, true)
        .unwrap_or_else(|| DEFAULT_FILESTORE_STORAGE.into());
    let quota = Quota {
        cpu: quantity("spec.resources.quota.cpu", &r.quota.cpu, false),
        memory: quantity("spec.resources.quota.memory", &r.quota.memory, false),
        storage: quantity("spec.resources.quota.storage", &r.quota.storage, false),
        pods: r.quota.pods.and_then(|pods| match u32::try_from(pods) {
            Ok(pods) => Some(pods),
            Err(_) => {
                problem(format!("spec.resources.quota.pods must not be negative (got {pods})"));
                None
            }
        }),
    };
    Resources { server, web, database, database_storage, filestore_storage, quota }
}

/// A production host: a DNS name whose test host is one too, and that is no test host itself
/// (`a.test.b` is the test host of `a.b`; as a production host it would take that tenant's test
/// environment's address).
pub fn check_host(host: &str) -> Result<(), String> {
    dns_name(host)?;
    let test = test_host(host);
    dns_name(&test).map_err(|e| format!("the test environment's host {test} is not valid: {e}"))?;
    if host.split('.').nth(1) == Some("test") {
        return Err(format!("`{host}` has `test` as its second label, which is reserved for test environments"));
    }
    Ok(())
}

/// An RFC 1123 label: lowercase letters, digits and `-`, starting and ending alphanumeric.
fn dns_label(text: &str, max: usize) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.len() > max {
        return Err(format!("`{text}` is longer than {max} characters"));
    }
    let ok = text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if ok { Ok(()) } else { Err(format!("`{text}` is not a DNS label (a-z, 0-9 and `-`, not at either end)")) }
}

/// An RFC 1123 subdomain: dot-separated labels, 253 characters at most.
fn dns_name(text: &str) -> Result<(), String> {
    if text.len() > 253 {
        return Err(format!("`{text}` is longer than 253 characters"));
    }
    for label in text.split('.') {
        dns_label(label, 63).map_err(|_| format!("`{text}` is not a DNS name"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CustomProfile, ErpSpec, IngressSpec, RoleSpec};

    fn spec() -> TenantSpec {
        TenantSpec {
            display_name: "Acme Corp".into(),
            plan: "business".into(),
            seats: 10,
            erp: ErpSpec { profile: "tryton".into(), version: "7.0.59".into(), ..Default::default() },
            resources: Default::default(),
            environments: Default::default(),
            suspended: false,
            ingress: Some(IngressSpec {
                host: "acme.example.com".into(),
                tls_issuer: Some("letsencrypt".into()),
                ..Default::default()
            }),
            deletion_policy: Default::default(),
            backups: None,
        }
    }

    fn with_backups(schedule: &str, url: &str) -> TenantSpec {
        TenantSpec {
            backups: Some(BackupsSpec {
                schedule: schedule.into(),
                retention: crate::api::RetentionSpec { keep_all_days: 30, daily: 7, ..Default::default() },
                storage: crate::api::BackupStorageSpec { url: url.into(), secret_name: Some("backup-store".into()) },
            }),
            ..spec()
        }
    }

    #[test]
    fn backups_become_the_model_with_their_schedule() {
        let model =
            validate("acme", &with_backups("30 2 * * *", "s3://backups/tenants"), &ImageDefaults::default()).unwrap();
        let backups = model.backups.unwrap();
        assert_eq!(backups.schedule.to_string(), "30 2 * * *");
        assert_eq!(backups.store, "s3://backups/tenants");
        assert_eq!(backups.retention.keep_all_days, 30);
        assert_eq!(backups.credentials_secret.as_deref(), Some("backup-store"));
    }

    #[test]
    fn a_wrong_schedule_or_store_names_its_field() {
        let found = problems(&with_backups("every night", "file:///var/backups"));
        assert!(found.iter().any(|p| p.starts_with("spec.backups.schedule: ")), "{found:?}");
        assert!(found.iter().any(|p| p.starts_with("spec.backups.storage.url: scheme `file`")), "{found:?}");
        for url in ["s3://", "s3://key:secret@bucket/x", "s3://bucket/x?region=eu", "backups", "s3://bucket/a b"] {
            let found = problems(&with_backups("0 3 * * *", url));
            assert!(found.iter().any(|p| p.starts_with("spec.backups.storage.url: ")), "{url}: {found:?}");
        }
        let mut spec = with_backups("0 3 * * *", "s3://b/p");
        spec.backups.as_mut().unwrap().retention.monthly = 1000;
        assert_eq!(problems(&spec), ["spec.backups.retention.monthly: 0 to 121 (got 1000)"]);
        spec.backups.as_mut().unwrap().retention.monthly = -1;
        assert_eq!(problems(&spec), ["spec.backups.retention.monthly: 0 to 121 (got -1)"]);
    }

    fn problems(spec: &TenantSpec) -> Vec<String> {
        validate("acme", spec, &ImageDefaults::default()).unwrap_err().0
    }

    #[test]
    fn a_good_spec_becomes_a_model() {
        let mut spec = spec();
        spec.environments.test = Some(EnvironmentSpec { version: Some("7.1.2".into()), server_replicas: None });
        spec.erp.modules = vec!["sale".into(), "party".into(), "sale".into()];
        spec.erp.config.insert("web.cache_timeout".into(), "300".into());
        let model = validate("acme", &spec, &ImageDefaults::default()).unwrap();
        assert_eq!(model.namespace, "tenant-acme");
        assert_eq!(model.modules, ["party", "sale"]);
        assert_eq!(model.config["web"]["cache_timeout"], "300");
        assert_eq!(model.environments.len(), 2);
        assert_eq!(model.environments[0].host.as_deref(), Some("acme.example.com"));
        assert_eq!(model.environments[1].host.as_deref(), Some("acme.test.example.com"));
        // A development version is fine in test.
        assert!(model.environments[1].version.is_development());
        assert_eq!(model.resources.database_storage, DEFAULT_DATABASE_STORAGE);
        assert_eq!(model.ingress.unwrap().tls, Tls::Issuer("letsencrypt".into()));
    }

    #[test]
    fn development_version_refused_in_production() {
        let mut spec = spec();
        spec.erp.version = "7.1.0".into();
        assert_eq!(
            problems(&spec),
            ["spec.erp.version: 7.1.0 is a development release (odd minor version 1) and is never allowed in \
              production; run it in the test environment"]
        );
        let mut spec = self::spec();
        spec.environments.production.version = Some("7.3.1".into());
        assert!(problems(&spec)[0].starts_with("spec.environments.production.version: 7.3.1 is a development"));
    }

    #[test]
    fn every_problem_is_named() {
        let mut spec = spec();
        spec.erp.version = "seven".into();
        spec.erp.profile = "sap".into();
        spec.seats = -2;
        spec.resources.database_storage = Some("-5Gi".into());
        spec.resources.server.cpu_limit = Some("lots".into());
        spec.ingress.as_mut().unwrap().host = "not a host".into();
        spec.erp.config.insert("nosection".into(), "x".into());
        spec.erp.modules = vec!["Bad-Module".into()];
        let found = problems(&spec);
        let expected = [
            "spec.seats must not be negative (got -2)",
            "spec.erp.profile `sap` is unknown; use tryton, odoo or custom",
            "spec.erp.version: version `seven` is not of the form A.B.C with three non-negative integers",
            "spec.erp.modules: `Bad-Module` is not a module name (lowercase letters, digits, `_`)",
            "spec.erp.config: `nosection` is not of the form section.option",
            "spec.resources.server.cpuLimit: `lots` is not a Kubernetes quantity (e.g. 500m, 2, 1Gi)",
            "spec.resources.databaseStorage must not be negative (got -5Gi)",
            "spec.ingress.host: `not a host` is not a DNS name",
        ];
        assert_eq!(found, expected);
    }

    #[test]
    fn credentials_cannot_be_configured() {
        let mut spec = spec();
        spec.erp.config.insert("database.uri".into(), "postgresql://x:y@db/".into());
        assert_eq!(
            problems(&spec),
            ["spec.erp.config.database.uri is set by the operator from a Secret and cannot be given here"]
        );
    }

    #[test]
    fn names_and_tls_are_checked() {
        let found = validate("Acme_Corp", &spec(), &ImageDefaults::default()).unwrap_err().0;
        assert_eq!(found, ["metadata.name: `Acme_Corp` is not a DNS label (a-z, 0-9 and `-`, not at either end)"]);
        let mut spec = spec();
        spec.ingress.as_mut().unwrap().tls_issuer = None;
        assert_eq!(
            problems(&spec),
            ["spec.ingress needs one of tlsIssuer, tlsSecretName or tlsDefaultCertificate: tenants are served over \
                 HTTPS only"]
        );
        spec.ingress.as_mut().unwrap().tls_issuer = Some("a".into());
        spec.ingress.as_mut().unwrap().tls_secret_name = Some("b".into());
        assert_eq!(
            problems(&spec),
            ["spec.ingress: set one of tlsIssuer, tlsSecretName or tlsDefaultCertificate, not several"]
        );
        spec.ingress.as_mut().unwrap().tls_secret_name = None;
        spec.ingress.as_mut().unwrap().tls_default_certificate = true;
        assert_eq!(
            problems(&spec),
            ["spec.ingress: set one of tlsIssuer, tlsSecretName or tlsDefaultCertificate, not several"]
        );
        spec.ingress.as_mut().unwrap().tls_issuer = None;
        let model = validate("acme", &spec, &ImageDefaults::default()).unwrap();
        assert_eq!(model.ingress.unwrap().tls, Tls::ControllerDefault);
    }

    #[test]
    fn a_production_host_cannot_take_a_test_host() {
        let mut spec = spec();
        spec.ingress.as_mut().unwrap().host = "acme.test.example.com".into();
        assert_eq!(
            problems(&spec),
            ["spec.ingress.host: `acme.test.example.com` has `test` as its second label, which is reserved for test \
              environments"]
        );
    }

    #[test]
    fn custom_profile_needs_its_roles() {
        let mut spec = spec();
        spec.erp.profile = "custom".into();
        assert_eq!(problems(&spec), ["profile `custom` needs spec.erp.custom (server, web, updateAllCommand)"]);
        let role = RoleSpec { image: "erp".into(), port: 8000, readiness_path: "/health".into(), ..Default::default() };
        spec.erp.custom =
            Some(CustomProfile { server: role.clone(), web: role, update_all_command: vec!["erp-admin".into()] });
        let model = validate("acme", &spec, &ImageDefaults::default()).unwrap();
        assert_eq!(model.profile.kind, crate::profile::ProfileKind::Custom);
        spec.erp.profile = "tryton".into();
        assert_eq!(problems(&spec), ["spec.erp.custom is only read with profile `custom`, not `tryton`"]);
    }
}
