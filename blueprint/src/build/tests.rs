//! Properties of the whole set of objects a tenant gets.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, PodTemplateSpec, ResourceQuota, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::fixture::{Fixture, custom_fixture, fixture, odoo_fixture};
use super::*;
use crate::api::labels;
use crate::model::TenantModel;

fn known_secrets() -> GeneratedSecrets {
    GeneratedSecrets {
        database_password: "DbPassw0rdDbPassw0rdDbPassw0rd12".into(),
        master_password: "MasterPassw0rdMasterPassw0rd1234".into(),
        master_password_hash: "$6$abcdefgh$MasterHashValue".into(),
        backup_key: "AGE-SECRET-KEY-1KNOWN".into(),
        backup_recipient: "age1known".into(),
    }
}

/// Every child of `model`: desired objects, then the Secrets.
fn everything(model: TenantModel) -> Vec<Child> {
    let fx = Fixture::new(model);
    let mut children = desired(&fx.ctx());
    children.extend(secrets(&fx.ctx(), &known_secrets()));
    children
}

fn suspended(mut model: TenantModel) -> TenantModel {
    model.suspended = true;
    model
}

fn without_test(mut model: TenantModel) -> TenantModel {
    model.environments.truncate(1);
    model
}

/// Every fixture variant, so that properties hold whatever the profile or state.
fn all_variants() -> Vec<(&'static str, Vec<Child>)> {
    vec![
        ("tryton", everything(fixture())),
        ("tryton suspended", everything(suspended(fixture()))),
        ("tryton production only", everything(without_test(fixture()))),
        ("odoo", everything(odoo_fixture())),
        ("custom", everything(custom_fixture())),
    ]
}

fn of_kind<'a>(children: &'a [Child], kind: &str) -> Vec<&'a Child> {
    children.iter().filter(|c| c.resource.kind == kind).collect()
}

fn pod_templates(children: &[Child]) -> Vec<(String, PodTemplateSpec)> {
    let mut templates = Vec::new();
    for child in children {
        let template = match child.resource.kind.as_str() {
            "Deployment" => typed::<Deployment>(child).spec.unwrap().template,
            "StatefulSet" => typed::<StatefulSet>(child).spec.unwrap().template,
            "Job" => typed::<Job>(child).spec.unwrap().template,
            _ => continue,
        };
        templates.push((format!("{}/{}", child.resource.kind, child.name), template));
    }
    templates
}

fn typed<K: DeserializeOwned>(child: &Child) -> K {
    serde_json::from_value(child.body.clone()).unwrap_or_else(|e| panic!("{} {}: {e}", child.resource.kind, child.name))
}

#[test]
fn every_child_carries_the_tenant_labels_and_its_owner() {
    for (variant, children) in all_variants() {
        for child in &children {
            let metadata = &child.body["metadata"];
            assert_eq!(metadata["labels"][labels::MANAGED_BY], "tenantry", "{variant}: {}", child.name);
            assert_eq!(metadata["labels"][labels::TENANT], "acme", "{variant}: {}", child.name);
            let owners = metadata["ownerReferences"].as_array().unwrap();
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0]["kind"], "Tenant");
            assert_eq!(owners[0]["name"], "acme");
            assert_eq!(owners[0]["controller"], true);
            assert_eq!(owners[0]["blockOwnerDeletion"], true);
            assert_eq!(metadata["name"], child.name.as_str());
            assert_eq!(child.body["apiVersion"], child.resource.api_version.as_str());
            assert_eq!(child.body["kind"], child.resource.kind.as_str());
        }
    }
}

#[test]
fn names_are_unique_per_kind_and_namespace() {
    for (variant, children) in all_variants() {
        let mut seen = BTreeSet::new();
        for child in &children {
            assert!(
                seen.insert((&child.resource.kind, &child.namespace, &child.name)),
                "{variant}: {} {} twice",
                child.resource.kind,
                child.name
            );
        }
    }
}

#[test]
fn namespace_comes_first_and_holds_everything_else() {
    for (variant, children) in all_variants() {
        assert_eq!(children[0].resource.kind, "Namespace", "{variant}");
        assert_eq!((children[0].name.as_str(), &children[0].namespace), ("tenant-acme", &None));
        for child in &children[1..] {
            assert_eq!(child.namespace.as_deref(), Some("tenant-acme"), "{variant}: {}", child.name);
            assert_eq!(child.body["metadata"]["namespace"], "tenant-acme");
        }
    }
}

#[test]
fn only_generated_secrets_and_jobs_are_create_only() {
    for (_, children) in all_variants() {
        for child in &children {
            let once = ["Secret", "Job"].contains(&child.resource.kind.as_str());
            assert_eq!(child.create_only, once, "{}", child.name);
        }
    }
}

#[test]
fn workloads_have_component_and_environment_labels() {
    for (variant, children) in all_variants() {
        for child in &children {
            let labels = &child.body["metadata"]["labels"];
            let needs_component = ["Deployment", "StatefulSet", "Job", "Service", "PersistentVolumeClaim", "Ingress"];
            if needs_component.contains(&child.resource.kind.as_str()) {
                let component = labels[labels::COMPONENT].as_str().unwrap_or_default();
                assert!(["database", "server", "web", "job"].contains(&component), "{variant}: {}", child.name);
            }
            for environment in ["production", "test"] {
                if child.name.ends_with(&format!("-{environment}")) || child.name.contains(&format!("-{environment}-"))
                {
                    assert_eq!(labels[labels::ENVIRONMENT], environment, "{variant}: {}", child.name);
                }
            }
        }
    }
}

#[test]
fn suspended_tenant_runs_nothing() {
    let children = everything(suspended(fixture()));
    assert!(of_kind(&children, "Job").is_empty());
    let replicas: Vec<_> = children
        .iter()
        .filter(|c| ["Deployment", "StatefulSet"].contains(&c.resource.kind.as_str()))
        .map(|c| (c.name.clone(), c.body["spec"]["replicas"].clone()))
        .collect();
    assert_eq!(replicas.len(), 5);
    assert!(replicas.iter().all(|(_, replicas)| *replicas == 0), "{replicas:?}");
    // Data, configuration and addresses stay.
    for kind in ["PersistentVolumeClaim", "ConfigMap", "Service", "Ingress", "Secret"] {
        assert!(!of_kind(&children, kind).is_empty(), "{kind}");
    }
}

#[test]
fn running_tenant_has_the_replicas_it_asked_for_and_its_jobs() {
    let children = everything(fixture());
    let replicas: BTreeMap<_, _> = children
        .iter()
        .filter(|c| ["Deployment", "StatefulSet"].contains(&c.resource.kind.as_str()))
        .map(|c| (c.name.as_str(), c.body["spec"]["replicas"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        replicas,
        BTreeMap::from([
            ("postgres", 1),
            ("erp-server-production", 2),
            ("erp-web-production", 1),
            ("erp-server-test", 1),
            ("erp-web-test", 1),
        ])
    );
    // Each Job name is its purpose and an 8-digit hash.
    let jobs: Vec<_> = of_kind(&children, "Job")
        .iter()
        .map(|c| {
            let (purpose, hash) = c.name.rsplit_once('-').unwrap();
            assert!(hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{}", c.name);
            purpose.to_string()
        })
        .collect();
    assert_eq!(jobs, ["db-init", "erp-init-production", "erp-init-test"]);
}

#[test]
fn test_environment_objects_exist_only_with_the_test_environment() {
    let named_test = |children: &[Child]| -> Vec<String> {
        children
            .iter()
            .filter(|c| c.name.contains("-test") || c.name.starts_with("test-"))
            .map(|c| c.name.clone())
            .collect()
    };
    let without = everything(without_test(fixture()));
    assert_eq!(named_test(&without), Vec::<String>::new());

    let with = everything(fixture());
    let test_names = named_test(&with);
    for expected in
        ["erp-config-test", "web-config-test", "filestore-test", "erp-server-test", "erp-web-test", "erp-test"]
    {
        assert!(test_names.iter().any(|n| n == expected), "{expected} missing from {test_names:?}");
        let production = expected.replace("test", "production");
        assert!(with.iter().any(|c| c.name == production), "{production}");
    }
    assert!(test_names.iter().any(|n| n.starts_with("erp-init-test-")));
}

#[test]
fn test_environment_may_run_another_version() {
    let children = everything(fixture());
    let image = |name: &str| {
        let child = children.iter().find(|c| c.resource.kind == "Deployment" && c.name == name).unwrap();
        child.body["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap().to_string()
    };
    assert_eq!(image("erp-server-production"), "tryton/tryton:7.0");
    assert_eq!(image("erp-server-test"), "tryton/tryton:7.1");
}

#[test]
fn no_secret_value_appears_outside_the_secrets() {
    let values = known_secrets();
    for (variant, children) in all_variants() {
        for child in children.iter().filter(|c| c.resource.kind != "Secret") {
            let text = child.body.to_string();
            for secret in [&values.database_password, &values.master_password, &values.master_password_hash] {
                assert!(!text.contains(secret.as_str()), "{variant}: {} holds a secret", child.name);
            }
        }
        for config_map in of_kind(&children, "ConfigMap") {
            let text = config_map.body["data"].to_string().to_lowercase();
            for word in ["super_pwd", "admin_passwd =", "db_password", "password ="] {
                assert!(!text.contains(word), "{variant}: {} mentions {word}", config_map.name);
            }
            assert!(!text.contains("postgresql://erp:"), "{variant}: {}", config_map.name);
        }
    }
}

#[test]
fn every_pod_satisfies_the_restricted_pod_security_standard() {
    for (variant, children) in all_variants() {
        for (name, template) in pod_templates(&children) {
            let spec = template.spec.unwrap();
            let pod = spec.security_context.as_ref().unwrap();
            assert_eq!(pod.run_as_non_root, Some(true), "{variant}: {name}");
            assert!(pod.run_as_user.unwrap() > 0, "{variant}: {name}");
            assert_eq!(pod.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault", "{variant}: {name}");
            assert_eq!(spec.automount_service_account_token, Some(false), "{variant}: {name}");
            assert!(spec.host_network.is_none() && spec.host_pid.is_none() && spec.host_ipc.is_none());
            for container in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
                let context = container.security_context.as_ref().unwrap();
                assert_eq!(context.allow_privilege_escalation, Some(false), "{variant}: {name}/{}", container.name);
                assert_eq!(context.privileged, None);
                let capabilities = context.capabilities.as_ref().unwrap();
                assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_string()][..]));
                assert_eq!(capabilities.add, None);
                assert_ne!(context.run_as_non_root, Some(false));
                assert!(container.ports.iter().flatten().all(|p| p.host_port.is_none()));
            }
            for volume in spec.volumes.iter().flatten() {
                let allowed = volume.config_map.is_some()
                    || volume.secret.is_some()
                    || volume.empty_dir.is_some()
                    || volume.persistent_volume_claim.is_some();
                assert!(allowed, "{variant}: {name} volume {}", volume.name);
            }
        }
    }
}

/// Each kind's JSON read back into its k8s-openapi type and written again is unchanged: no
/// misspelt or misplaced field (it would be dropped on the way), nothing of the wrong shape.
#[test]
fn every_child_round_trips_through_its_typed_struct() {
    fn round_trip<K: DeserializeOwned + Serialize>(child: &Child) -> Value {
        serde_json::to_value(typed::<K>(child)).unwrap()
    }
    for (variant, children) in all_variants() {
        for child in &children {
            let again = match child.resource.kind.as_str() {
                "Namespace" => round_trip::<Namespace>(child),
                "ResourceQuota" => round_trip::<ResourceQuota>(child),
                "LimitRange" => round_trip::<LimitRange>(child),
                "ServiceAccount" => round_trip::<ServiceAccount>(child),
                "NetworkPolicy" => round_trip::<NetworkPolicy>(child),
                "Secret" => round_trip::<Secret>(child),
                "ConfigMap" => round_trip::<ConfigMap>(child),
                "PersistentVolumeClaim" => round_trip::<PersistentVolumeClaim>(child),
                "Service" => round_trip::<Service>(child),
                "StatefulSet" => round_trip::<StatefulSet>(child),
                "Deployment" => round_trip::<Deployment>(child),
                "Job" => round_trip::<Job>(child),
                "Ingress" => round_trip::<Ingress>(child),
                other => panic!("{variant}: unexpected kind {other}"),
            };
            assert_eq!(again, child.body, "{variant}: {} {}", child.resource.kind, child.name);
        }
    }
}

#[test]
fn every_namespaced_kind_built_is_managed() {
    let managed: BTreeSet<_> = managed_kinds().into_iter().map(|r| r.kind).collect();
    for (_, children) in all_variants() {
        for child in children.iter().filter(|c| c.namespace.is_some()) {
            assert!(managed.contains(&child.resource.kind), "{}", child.resource.kind);
        }
    }
    // And nothing cluster-scoped or unknown is listed.
    assert!(!managed.contains("Namespace"));
    assert_eq!(managed.len(), managed_kinds().len());
}

#[test]
fn references_between_objects_resolve() {
    for (variant, children) in all_variants() {
        let named =
            |kind: &str| -> BTreeSet<String> { of_kind(&children, kind).iter().map(|c| c.name.clone()).collect() };
        let (config_maps, secrets, claims) = (named("ConfigMap"), named("Secret"), named("PersistentVolumeClaim"));
        for (name, template) in pod_templates(&children) {
            let spec = template.spec.unwrap();
            for volume in spec.volumes.iter().flatten() {
                if let Some(source) = &volume.config_map {
                    assert!(config_maps.contains(&source.name), "{variant}: {name} → {}", source.name);
                }
                if let Some(source) = &volume.secret {
                    assert!(secrets.contains(source.secret_name.as_ref().unwrap()), "{variant}: {name}");
                }
                if let Some(source) = &volume.persistent_volume_claim {
                    assert!(claims.contains(&source.claim_name), "{variant}: {name} → {}", source.claim_name);
                }
            }
            let volumes: BTreeSet<_> = spec.volumes.iter().flatten().map(|v| v.name.clone()).collect();
            for container in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
                for mount in container.volume_mounts.iter().flatten() {
                    assert!(
                        volumes.contains(&mount.name),
                        "{variant}: {name}/{} mounts {}",
                        container.name,
                        mount.name
                    );
                }
                for var in container.env.iter().flatten() {
                    if let Some(selector) = var.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()) {
                        let secret = of_kind(&children, "Secret").into_iter().find(|s| s.name == selector.name);
                        let secret = secret.unwrap_or_else(|| panic!("{variant}: {name} → {}", selector.name));
                        assert!(
                            secret.body["data"].get(&selector.key).is_some(),
                            "{variant}: {name} → {}",
                            selector.key
                        );
                    }
                }
            }
        }
        // Services select pods that some workload makes, and Ingresses point at Services.
        let pod_labels: Vec<BTreeMap<String, String>> =
            pod_templates(&children).into_iter().map(|(_, t)| t.metadata.unwrap().labels.unwrap()).collect();
        for service in of_kind(&children, "Service") {
            let selector: BTreeMap<String, String> =
                serde_json::from_value(service.body["spec"]["selector"].clone()).unwrap();
            assert!(
                pod_labels.iter().any(|labels| selector.iter().all(|(k, v)| labels.get(k) == Some(v))),
                "{variant}: service {} selects nothing",
                service.name
            );
        }
        let services = named("Service");
        for ingress in of_kind(&children, "Ingress") {
            let backend = ingress.body["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"].as_str();
            assert!(services.contains(backend.unwrap()), "{variant}: {}", ingress.name);
        }
    }
}

#[test]
fn workload_selectors_match_their_pods() {
    for (variant, children) in all_variants() {
        for child in children.iter().filter(|c| ["Deployment", "StatefulSet"].contains(&c.resource.kind.as_str())) {
            let selector: BTreeMap<String, String> =
                serde_json::from_value(child.body["spec"]["selector"]["matchLabels"].clone()).unwrap();
            let labels: BTreeMap<String, String> =
                serde_json::from_value(child.body["spec"]["template"]["metadata"]["labels"].clone()).unwrap();
            assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)), "{variant}: {}", child.name);
            assert!(selector.contains_key(labels::TENANT) && selector.contains_key(labels::COMPONENT));
        }
    }
}

#[test]
fn building_twice_gives_the_same_objects() {
    assert_eq!(everything(fixture()), everything(fixture()));
}

#[test]
fn generated_secrets_are_the_three_named_ones() {
    let fx = Fixture::new(fixture());
    let names: Vec<_> = secrets(&fx.ctx(), &GeneratedSecrets::generate()).into_iter().map(|c| c.name).collect();
    assert_eq!(names, [DATABASE_SECRET, MASTER_PASSWORD_SECRET, BACKUP_KEY]);
}

#[test]
fn every_child_carries_the_hash_of_what_is_wanted() {
    let hash = |children: &[Child], kind: &str| -> String {
        let child = children.iter().find(|c| c.resource.kind == kind).unwrap();
        child.body["metadata"]["annotations"][common::DESIRED_HASH_ANNOTATION].as_str().unwrap().to_string()
    };
    let before = everything(fixture());
    for child in &before {
        let value = &child.body["metadata"]["annotations"][common::DESIRED_HASH_ANNOTATION];
        assert!(value.as_str().is_some_and(|h| h.len() == 16), "{} {} has no hash", child.resource.kind, child.name);
    }
    // A field removed (no pod limit in the quota) changes the hash; others stay.
    let mut model = fixture();
    model.resources.quota.pods = None;
    let after = everything(model);
    assert_ne!(hash(&before, "ResourceQuota"), hash(&after, "ResourceQuota"));
    assert_eq!(hash(&before, "LimitRange"), hash(&after, "LimitRange"));
    assert_eq!(everything(fixture()), before, "the hashes are deterministic");
}

#[test]
fn every_pod_carries_the_installations_placement() {
    for model in [fixture(), odoo_fixture(), custom_fixture()] {
        let mut fx = Fixture::new(model);
        fx.placement = crate::placement::Placement {
            node_selector: BTreeMap::from([("pool".to_string(), "tenants".to_string())]),
            tolerations: crate::placement::parse_tolerations("dedicated=tenants:NoSchedule").unwrap(),
        };
        let templates = pod_templates(&desired(&fx.ctx()));
        assert!(templates.len() >= 4, "{templates:?}");
        for (name, template) in templates {
            let pod = template.spec.unwrap();
            assert_eq!(pod.node_selector.unwrap()["pool"], "tenants", "{name}");
            let tolerations = pod.tolerations.unwrap();
            assert_eq!(tolerations.len(), 1, "{name}");
            assert_eq!(tolerations[0].key.as_deref(), Some("dedicated"), "{name}");
        }
    }
    // Without one, pods say nothing of where they run.
    for (name, template) in pod_templates(&desired(&Fixture::new(fixture()).ctx())) {
        let pod = template.spec.unwrap();
        assert!(pod.node_selector.is_none() && pod.tolerations.is_none(), "{name}");
    }
}
