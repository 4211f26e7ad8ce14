//! Checks of one Tenant against the other Tenants and against its own past, made after
//! validation and before anything is built. Pure: the reconcile hands in what its cache holds.
//!
//! - **Hosts**: no two Tenants are ever given the same public host, in any environment. A host
//!   wanted by two Tenants stays with the one that already serves it (its status announces it);
//!   when neither does yet, with the one created first. The other is Invalid, and its message
//!   does not name the tenant that holds the host.
//! - **Versions**: production never goes back to an older version than it runs: an older ERP on
//!   a database that a newer one has migrated corrupts it.
//! - **Quota**: a new Tenant whose whole stack cannot fit its own quota is refused; one that
//!   already runs (a plan version from before the check) is still reconciled, so that it keeps
//!   drift correction, suspension and updates, and its problems are reported instead.

use std::cmp::Ordering;

use crate::api::{Tenant, TenantSpec, TenantStatus, test_host};
use crate::model::TenantModel;
use crate::profile::ImageDefaults;
use crate::validate::{Invalid, validate_spec};
use crate::version::ErpVersion;

/// What the checks before building say about a Tenant.
#[derive(Debug)]
pub enum Admission {
    /// Build and apply `model`. `quota_problems`: a running Tenant's quota is too small for its
    /// stack (reported in the `QuotaFits` condition).
    Admitted { model: Box<TenantModel>, quota_problems: Vec<String> },
    /// Nothing is applied. `host_taken`: another Tenant holds a host, which can change without
    /// this Tenant changing.
    Refused { invalid: Invalid, host_taken: bool },
}

/// Validates `tenant` and checks it against the `others` and its own status.
pub fn admit<'a>(tenant: &Tenant, others: impl IntoIterator<Item = &'a Tenant>, images: &ImageDefaults) -> Admission {
    let name = tenant.metadata.name.as_deref().unwrap_or_default();
    let model = match validate_spec(name, &tenant.spec, images) {
        Ok(model) => model,
        Err(invalid) => return Admission::Refused { invalid, host_taken: false },
    };
    let already_runs = tenant.status.as_ref().is_some_and(|status| !status.environments.is_empty());
    let quota_problems = match crate::fit::check(&model, images) {
        Ok(_) => Vec::new(),
        Err(problems) if already_runs => problems,
        Err(problems) => return Admission::Refused { invalid: Invalid(problems), host_taken: false },
    };
    let mut problems = host_conflicts(tenant, others);
    let host_taken = !problems.is_empty();
    problems.extend(production_downgrade(&tenant.spec, tenant.status.as_ref()));
    if problems.is_empty() {
        Admission::Admitted { model: Box::new(model), quota_problems }
    } else {
        Admission::Refused { invalid: Invalid(problems), host_taken }
    }
}

/// The public hosts a spec asks for: production's, and the test environment's when it has one.
pub fn wanted_hosts(spec: &TenantSpec) -> Vec<String> {
    let Some(ingress) = &spec.ingress else {
        return Vec::new();
    };
    let mut hosts = vec![ingress.host.clone()];
    if spec.environments.test.is_some() {
        hosts.push(test_host(&ingress.host));
    }
    hosts
}

/// The hosts a Tenant serves now, as its status last announced them.
fn served_hosts(status: Option<&TenantStatus>) -> Vec<&str> {
    status
        .map(|status| {
            status.environments.iter().filter_map(|env| env.url.as_deref()?.strip_prefix("https://")).collect()
        })
        .unwrap_or_default()
}

/// Whether `holder` keeps `host` against `claimant` (both want it).
fn keeps(holder: &Tenant, claimant: &Tenant, host: &str) -> bool {
    let serves = |tenant: &Tenant| served_hosts(tenant.status.as_ref()).contains(&host);
    match (serves(holder), serves(claimant)) {
        (true, false) => true,
        (false, true) => false,
        // Neither or both (only possible from before this rule): the first created keeps it.
        _ => first_created(holder, claimant) == Ordering::Less,
    }
}

/// Creation order, names breaking ties within the same second.
fn first_created(a: &Tenant, b: &Tenant) -> Ordering {
    let key = |t: &Tenant| (t.metadata.creation_timestamp.as_ref().map(|time| time.0), t.metadata.name.clone());
    match (key(a), key(b)) {
        // A Tenant not yet created (no timestamp) comes after every created one.
        ((None, a_name), (None, b_name)) => a_name.cmp(&b_name),
        ((None, _), (Some(_), _)) => Ordering::Greater,
        ((Some(_), _), (None, _)) => Ordering::Less,
        (a, b) => a.cmp(&b),
    }
}

/// Problems with `tenant`'s hosts, given every other Tenant the operator knows.
pub fn host_conflicts<'a>(tenant: &Tenant, others: impl IntoIterator<Item = &'a Tenant>) -> Vec<String> {
    let wanted = wanted_hosts(&tenant.spec);
    if wanted.is_empty() {
        return Vec::new();
    }
    let mut taken: Vec<&str> = Vec::new();
    for other in others {
        if other.metadata.name == tenant.metadata.name || other.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let theirs = wanted_hosts(&other.spec);
        for host in &wanted {
            if theirs.contains(host) && keeps(other, tenant, host) && !taken.contains(&host.as_str()) {
                taken.push(host);
            }
        }
    }
    taken
        .into_iter()
        .map(|host| {
            let whose = if wanted.first().is_some_and(|first| first == host) { "production" } else { "test" };
            format!("spec.ingress.host: the {whose} environment's host {host} is already used by another tenant")
        })
        .collect()
}

/// A production version older than the one production runs, as the status last recorded it.
pub fn production_downgrade(spec: &TenantSpec, status: Option<&TenantStatus>) -> Option<String> {
    let running: ErpVersion = status?.environments.iter().find(|env| env.name == "production")?.version.parse().ok()?;
    let (field, text) = match &spec.environments.production.version {
        Some(version) => ("spec.environments.production.version", version),
        None => ("spec.erp.version", &spec.erp.version),
    };
    let wanted: ErpVersion = text.parse().ok()?;
    (wanted < running).then(|| {
        format!(
            "{field}: {wanted} is older than {running}, which production runs; an older ERP on a database that a \
             newer one has migrated would corrupt it, so production versions only go up"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EnvironmentSpec, EnvironmentStatus, ErpSpec, IngressSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;
    use proptest::prelude::*;

    fn tenant(name: &str, created: i64, host: Option<&str>, test: bool) -> Tenant {
        let spec = TenantSpec {
            display_name: name.into(),
            plan: "business".into(),
            seats: 1,
            erp: ErpSpec { profile: "tryton".into(), version: "7.0.59".into(), ..Default::default() },
            environments: crate::api::EnvironmentsSpec {
                production: EnvironmentSpec::default(),
                test: test.then(EnvironmentSpec::default),
            },
            ingress: host.map(|host| IngressSpec {
                host: host.into(),
                tls_issuer: Some("letsencrypt".into()),
                ..Default::default()
            }),
            resources: Default::default(),
            suspended: false,
            deletion_policy: Default::default(),
            backups: None,
        };
        let mut tenant = Tenant::new(name, spec);
        tenant.metadata = ObjectMeta {
            name: Some(name.into()),
            creation_timestamp: Some(Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + created).unwrap())),
            ..Default::default()
        };
        tenant
    }

    /// The status a valid reconcile writes: every wanted host announced.
    fn serving(mut tenant: Tenant) -> Tenant {
        let environments = wanted_hosts(&tenant.spec)
            .into_iter()
            .zip(["production", "test"])
            .map(|(host, name)| EnvironmentStatus {
                name: name.into(),
                version: "7.0.59".into(),
                ready: true,
                url: Some(format!("https://{host}")),
            })
            .collect();
        tenant.status = Some(TenantStatus { environments, ..Default::default() });
        tenant
    }

    #[test]
    fn colliding_host_is_refused() {
        // The case seen on the demo: acme's test environment and a signup called "test-acme".
        let acme = serving(tenant("acme", 0, Some("acme.erp.example.com"), true));
        let test_acme = tenant("test-acme", 10, Some("test-acme.erp.example.com"), false);
        assert!(host_conflicts(&test_acme, [&acme]).is_empty(), "the new scheme keeps them apart");

        // A host given by hand that equals acme's test host.
        let taker = tenant("taker", 10, Some("acme.test.erp.example.com"), false);
        let problems = host_conflicts(&taker, [&acme]);
        assert_eq!(
            problems,
            ["spec.ingress.host: the production environment's host acme.test.erp.example.com is already used by \
              another tenant"]
        );
        assert!(!problems[0].contains("acme.erp"), "the holder is not named");
        // The holder is not bothered by the claimant.
        assert!(host_conflicts(&acme, [&taker]).is_empty());

        // Neither serves yet: the first created keeps it, whatever order they are checked in.
        let first = tenant("zeta", 0, Some("erp.shared.example"), false);
        let second = tenant("alpha", 5, Some("erp.shared.example"), true);
        assert!(host_conflicts(&first, [&second]).is_empty());
        assert_eq!(host_conflicts(&second, [&first]).len(), 1);

        // The one serving keeps it even against an older claimant (a host changed later).
        let older = tenant("older", 0, Some("erp.shared.example"), false);
        let serving_newer = serving(tenant("newer", 5, Some("erp.shared.example"), false));
        assert_eq!(host_conflicts(&older, [&serving_newer]).len(), 1);
        assert!(host_conflicts(&serving_newer, [&older]).is_empty());

        // A Tenant being deleted holds nothing.
        let mut leaving = serving(tenant("leaving", 0, Some("erp.shared.example"), false));
        leaving.metadata.deletion_timestamp = leaving.metadata.creation_timestamp.clone();
        assert!(host_conflicts(&older, [&leaving]).is_empty());
    }

    #[test]
    fn a_running_tenant_is_not_stopped_for_a_quota_too_small() {
        let images = ImageDefaults::default();
        let mut small = tenant("small", 0, Some("small.example.com"), false);
        small.spec.resources.quota.cpu = Some("1".into());
        // New: refused, naming the quota.
        let Admission::Refused { invalid, host_taken } = admit(&small, [], &images) else { panic!("admitted") };
        assert!(invalid.0[0].starts_with("spec.resources.quota.cpu: "), "{invalid}");
        assert!(!host_taken);
        // Running already: admitted, with the problems to report.
        let running = serving(small);
        let Admission::Admitted { quota_problems, .. } = admit(&running, [], &images) else { panic!("refused") };
        assert!(quota_problems[0].starts_with("spec.resources.quota.cpu: "), "{quota_problems:?}");
        // A host another Tenant serves refuses even a running Tenant, and says it may change.
        let holder = serving(tenant("holder", 5, Some("small.example.com"), false));
        let mut claimant = tenant("claimant", 9, Some("small.example.com"), false);
        claimant.spec.resources = Default::default();
        let Admission::Refused { host_taken, .. } = admit(&claimant, [&holder], &images) else { panic!("admitted") };
        assert!(host_taken);
    }

    #[test]
    fn production_never_goes_back() {
        let mut acme = serving(tenant("acme", 0, None, false));
        acme.status = Some(TenantStatus {
            environments: vec![EnvironmentStatus {
                name: "production".into(),
                version: "7.2.1".into(),
                ready: true,
                url: None,
            }],
            ..Default::default()
        });
        let status = acme.status.as_ref();
        acme.spec.erp.version = "7.0.59".into();
        assert_eq!(
            production_downgrade(&acme.spec, status).unwrap(),
            "spec.erp.version: 7.0.59 is older than 7.2.1, which production runs; an older ERP on a database that a \
             newer one has migrated would corrupt it, so production versions only go up"
        );
        acme.spec.erp.version = "7.2.1".into();
        assert_eq!(production_downgrade(&acme.spec, status), None);
        acme.spec.erp.version = "7.2.3".into();
        assert_eq!(production_downgrade(&acme.spec, status), None);
        acme.spec.environments.production.version = Some("7.2.0".into());
        assert!(production_downgrade(&acme.spec, status).unwrap().starts_with("spec.environments.production.version"));
        // A new Tenant has no past.
        assert_eq!(production_downgrade(&acme.spec, None), None);
    }

    /// A host a provider might give by hand, or the control plane might generate.
    fn host() -> impl Strategy<Value = String> {
        let label = prop::sample::select(vec!["acme", "test", "erp", "beta", "test-acme", "x"]);
        let domain = prop::sample::select(vec!["example.com", "erp.example.com", "test.example.com"]);
        (label.clone(), prop::option::of(label), domain).prop_map(|(first, second, domain)| match second {
            Some(second) => format!("{first}.{second}.{domain}"),
            None => format!("{first}.{domain}"),
        })
    }

    proptest! {
        /// Tenants arrive in any order with any hosts and environments; each is reconciled
        /// (again and again, in any order) with what the others' statuses say at that moment.
        /// However it goes, the hosts of the Ingresses rendered for the valid Tenants are unique.
        #[test]
        fn no_two_environments_share_a_host(
            specs in prop::collection::vec((host(), any::<bool>(), any::<bool>()), 1..8),
            order in prop::collection::vec(any::<prop::sample::Index>(), 1..40),
        ) {
            let images = crate::profile::ImageDefaults::default();
            let mut tenants: Vec<Tenant> = Vec::new();
            let mut valid: Vec<bool> = Vec::new();
            for (i, (host, test, generated)) in specs.iter().enumerate() {
                // Half the Tenants get the control plane's `<slug>.<domain>` instead.
                let host = if *generated { format!("t{i}.erp.example.com") } else { host.clone() };
                tenants.push(tenant(&format!("t{i}"), i as i64, Some(&host), *test));
                valid.push(false);
            }
            // A spec never changes here, so neither does its validation: done once per Tenant.
            let models: Vec<_> = tenants
                .iter()
                .map(|t| crate::validate::validate(t.metadata.name.as_deref().unwrap(), &t.spec, &images))
                .collect();
            let reconcile = |i: usize, tenants: &mut Vec<Tenant>, valid: &mut Vec<bool>| {
                let me = tenants[i].clone();
                let conflicts = host_conflicts(&me, tenants.iter());
                valid[i] = models[i].is_ok() && conflicts.is_empty();
                if valid[i] {
                    tenants[i] = serving(me);
                }
            };
            for index in order {
                reconcile(index.index(tenants.len()), &mut tenants, &mut valid);
            }
            for i in 0..tenants.len() {
                reconcile(i, &mut tenants, &mut valid);
            }
            let mut rendered: Vec<String> = Vec::new();
            for (model, _) in models.iter().zip(&valid).filter(|(_, valid)| **valid) {
                let fixture = crate::build::fixture::Fixture::new(model.clone().unwrap());
                for child in crate::build::desired(&fixture.ctx()).into_iter().filter(|c| c.resource.kind == "Ingress") {
                    for rule in child.body["spec"]["rules"].as_array().unwrap() {
                        rendered.push(rule["host"].as_str().unwrap().to_string());
                    }
                }
            }
            let mut unique = rendered.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(unique.len(), rendered.len(), "hosts rendered twice: {:?}", rendered);
            // A host the control plane generates can be taken by no host given by hand.
            for (i, (_, _, generated)) in specs.iter().enumerate() {
                prop_assert!(!generated || valid[i], "t{} lost its generated host", i);
            }
        }
    }
}
