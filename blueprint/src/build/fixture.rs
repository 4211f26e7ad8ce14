//! Small tenants for the builders' tests.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::BuildContext;
use crate::api::{CustomProfile, DeletionPolicy, RoleSpec};
use crate::model::{Compute, Environment, EnvironmentKind, Ingress, Quota, Resources, TenantModel, Tls};
use crate::placement::Placement;
use crate::profile::{ImageDefaults, Profile};

/// Tenant `acme` on Tryton: production on 7.0.59 with two server replicas, test on the
/// development release 7.1.3, an ingress with a cert-manager issuer, a quota, one module and
/// one configuration option.
pub fn fixture() -> TenantModel {
    let images = ImageDefaults::default();
    TenantModel {
        name: "acme".into(),
        namespace: "tenant-acme".into(),
        display_name: "Acme Corporation".into(),
        plan: "business".into(),
        seats: 25,
        profile: Profile::tryton(&images, None),
        modules: vec!["sale".into()],
        config: BTreeMap::from([("web".into(), BTreeMap::from([("cache_timeout".into(), "300".into())]))]),
        environments: vec![
            Environment {
                kind: EnvironmentKind::Production,
                version: "7.0.59".parse().unwrap(),
                server_replicas: 2,
                host: Some("acme.example.com".into()),
            },
            Environment {
                kind: EnvironmentKind::Test,
                version: "7.1.3".parse().unwrap(),
                server_replicas: 1,
                host: Some("acme.test.example.com".into()),
            },
        ],
        suspended: false,
        resources: Resources {
            server: Compute {
                cpu_request: Some("250m".into()),
                cpu_limit: Some("2".into()),
                memory_request: Some("512Mi".into()),
                memory_limit: Some("2Gi".into()),
            },
            web: Compute { cpu_request: Some("50m".into()), memory_limit: Some("128Mi".into()), ..Default::default() },
            database: Compute {
                memory_request: Some("1Gi".into()),
                memory_limit: Some("2Gi".into()),
                ..Default::default()
            },
            database_storage: "20Gi".into(),
            filestore_storage: "5Gi".into(),
            quota: Quota {
                cpu: Some("8".into()),
                memory: Some("16Gi".into()),
                storage: Some("100Gi".into()),
                pods: Some(30),
            },
        },
        ingress: Some(Ingress { class_name: Some("nginx".into()), tls: Tls::Issuer("letsencrypt".into()) }),
        deletion_policy: DeletionPolicy::Retain,
        backups: None,
    }
}

/// The same tenant on Odoo 17.0.
pub fn odoo_fixture() -> TenantModel {
    let mut model = fixture();
    model.profile = Profile::odoo(&ImageDefaults::default(), None);
    model.modules = vec!["sale".into(), "stock".into()];
    for environment in &mut model.environments {
        environment.version = "17.0.3".parse().unwrap();
    }
    model
}

/// The same tenant on a hand-made profile.
pub fn custom_fixture() -> TenantModel {
    let role = |image: &str, port| RoleSpec {
        image: image.into(),
        command: Vec::new(),
        args: Vec::new(),
        port,
        readiness_path: "/ready".into(),
        liveness_path: None,
    };
    let mut model = fixture();
    model.profile = Profile::custom(&CustomProfile {
        server: role("registry.example/erp-server", 9000),
        web: role("registry.example/erp-web", 3000),
        update_all_command: ["erp-admin", "--config", "{config}", "--database", "{database}", "--update-all"]
            .map(String::from)
            .to_vec(),
    });
    model.modules = Vec::new();
    model
}

/// Owns what a [`BuildContext`] borrows.
pub struct Fixture {
    pub model: TenantModel,
    pub images: ImageDefaults,
    pub ingress_controller_namespace: BTreeMap<String, String>,
    pub placement: Placement,
    pub backup_store_ports: Vec<i32>,
}

impl Fixture {
    pub fn new(model: TenantModel) -> Self {
        Self {
            model,
            images: ImageDefaults::default(),
            placement: Default::default(),
            backup_store_ports: vec![443],
            ingress_controller_namespace: BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                "ingress-nginx".to_string(),
            )]),
        }
    }

    pub fn ctx(&self) -> BuildContext<'_> {
        BuildContext {
            model: &self.model,
            owner: OwnerReference {
                api_version: "tenantry.dev/v1alpha1".into(),
                kind: "Tenant".into(),
                name: self.model.name.clone(),
                uid: "2f1b6c9e-5d1a-4b59-9a3c-0e7d3f2a8b10".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            images: &self.images,
            ingress_controller_namespace: &self.ingress_controller_namespace,
            placement: &self.placement,
            backup_store_ports: &self.backup_store_ports,
        }
    }
}
