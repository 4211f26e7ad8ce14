//! The desired `Tenant` object of a tenant on a plan version: pure, so the store can write it
//! into the provisioning outbox inside the transaction of the change.

use kube::Resource;
use tenantry_contract::api::{
    EnvironmentSpec, EnvironmentsSpec, ErpSpec, IngressSpec, Tenant as TenantObject, TenantSpec, default_profile,
};

use crate::store::{Plan, Tenant};

/// Labels the control plane sets on the Tenants it owns, so a watch can select them.
pub use tenantry_contract::names::labels::MANAGED_BY as MANAGED_BY_LABEL;
pub const MANAGED_BY: &str = "tenantry-control-plane";
pub const PLAN_VERSION_ANNOTATION: &str = "tenantry.dev/plan-version";

/// The Tenant the operator should run for `tenant` on `plan` (the tenant's own plan version).
pub fn tenant_object(tenant: &Tenant, plan: &Plan) -> TenantObject {
    let spec = TenantSpec {
        display_name: tenant.display_name.clone(),
        plan: plan.spec.name.clone(),
        seats: i64::from(tenant.licensed_seats),
        erp: ErpSpec { profile: default_profile(), version: tenant.erp_version.clone(), ..ErpSpec::default() },
        resources: plan.spec.resources.clone(),
        environments: EnvironmentsSpec {
            production: EnvironmentSpec::default(),
            test: plan.spec.test_environment.then(EnvironmentSpec::default),
        },
        suspended: !tenant.state.runs(),
        // A host given by hand; the deployment's decorations fill in the rest (or, without
        // one, generate `<slug>.<domain>`).
        ingress: tenant.host.as_ref().map(|host| IngressSpec { host: host.clone(), ..IngressSpec::default() }),
        deletion_policy: Default::default(),
        backups: None,
    };
    let mut object = TenantObject::new(&tenant.slug, spec);
    let meta = object.meta_mut();
    meta.labels = Some([(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string())].into());
    meta.annotations = Some([(PLAN_VERSION_ANNOTATION.to_string(), plan.version.to_string())].into());
    object
}

/// The same, as the JSON written to the outbox (with `apiVersion` and `kind`, ready to apply).
pub fn tenant_json(tenant: &Tenant, plan: &Plan) -> serde_json::Value {
    serde_json::to_value(tenant_object(tenant, plan)).expect("a Tenant always serialises")
}
