//! Subscription plans: what a tenant pays per seat and what it gets.
//!
//! Plans are versioned: a change makes a new version, and a tenant stays on the version it
//! subscribed to until it changes plan, so changing a plan never silently changes what existing
//! tenants pay.

use serde::{Deserialize, Serialize};
use tenantry_blueprint::profile::ImageDefaults;
use tenantry_contract::api::{EnvironmentSpec, EnvironmentsSpec, ErpSpec, ResourcesSpec, TenantSpec, default_profile};

use super::money::Money;
use super::whole;

/// Which ERP modules a tenant on the plan may install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModulePolicy {
    /// Only modules of the ERP's own release.
    CertifiedOnly,
    /// Also the tenant's own modules.
    CustomAllowed,
}

/// A plan as the provider defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    /// Lowercase letters, digits and `-`; what tenants and the Tenant's `spec.plan` refer to.
    pub name: String,
    pub display_name: String,
    pub price_per_seat_month: Money,
    #[serde(deserialize_with = "whole::deserialize")]
    #[schema(value_type = i64, minimum = 1, maximum = 4_294_967_295_u32)]
    pub max_seats: u32,
    #[serde(deserialize_with = "whole::deserialize")]
    #[schema(value_type = i64, minimum = 1, maximum = 4_294_967_295_u32)]
    pub max_concurrent_users: u32,
    /// The largest database the plan allows, as a Kubernetes quantity (`20Gi`).
    pub database_size_limit: String,
    /// CPU, memory and storage per role, and the namespace quota: becomes the Tenant's
    /// `spec.resources`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub resources: ResourcesSpec,
    /// Whether tenants get a `test` environment beside `production`.
    pub test_environment: bool,
    pub module_policy: ModulePolicy,
    #[serde(deserialize_with = "whole::deserialize")]
    #[schema(value_type = i64, minimum = 1, maximum = 3650)]
    pub backup_retention_days: u32,
    #[serde(deserialize_with = "whole::deserialize")]
    #[schema(value_type = i64, minimum = 0, maximum = 365)]
    pub trial_days: u32,
}

/// Every problem of a plan, each naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid plan: {}", .0.join("; "))]
pub struct InvalidPlan(pub Vec<String>);

const MAX_NAME_LEN: usize = 40;

impl PlanSpec {
    pub fn validate(&self) -> Result<(), InvalidPlan> {
        let mut problems = Vec::new();
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_NAME_LEN
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && self.name.starts_with(|c: char| c.is_ascii_lowercase())
            && !self.name.ends_with('-');
        if !name_ok {
            problems.push(format!(
                "name: 1 to {MAX_NAME_LEN} lowercase letters, digits and '-', starting with a letter and not ending \
                 with '-' (got {:?})",
                self.name
            ));
        }
        if self.display_name.trim().is_empty() || self.display_name.chars().count() > 100 {
            problems.push("display_name: 1 to 100 characters".into());
        }
        if self.price_per_seat_month.minor < 0 {
            problems
                .push(format!("price_per_seat_month: must not be negative (got {})", self.price_per_seat_month.minor));
        }
        if self.max_seats == 0 {
            problems.push("max_seats: at least 1".into());
        }
        if self.max_concurrent_users == 0 {
            problems.push("max_concurrent_users: at least 1".into());
        }
        if let Err(e) = tenantry_contract::quantity::check("database_size_limit", &self.database_size_limit, true) {
            problems.push(e);
        }
        if !(1..=3650).contains(&self.backup_retention_days) {
            problems.push(format!("backup_retention_days: 1 to 3650 (got {})", self.backup_retention_days));
        }
        if self.trial_days > 365 {
            problems.push(format!("trial_days: at most 365 (got {})", self.trial_days));
        }
        // The operator's own validation decides whether these resources make a valid Tenant
        // whose whole stack fits its quota.
        let probe = self.tenant_spec_probe();
        if let Err(invalid) = tenantry_blueprint::validate::validate("probe", &probe, &ImageDefaults::default()) {
            problems.extend(invalid.0.into_iter().map(|problem| format!("resources: {problem}")));
        }
        if problems.is_empty() { Ok(()) } else { Err(InvalidPlan(problems)) }
    }

    /// A Tenant as a tenant on this plan gets it, with the environments the plan gives (see
    /// `provision::desired`): what the operator's validation judges the plan's resources by.
    pub fn tenant_spec_probe(&self) -> TenantSpec {
        TenantSpec {
            display_name: "probe".into(),
            plan: self.name.clone(),
            seats: 1,
            erp: ErpSpec { profile: default_profile(), version: "7.0.0".into(), ..ErpSpec::default() },
            resources: self.resources.clone(),
            environments: EnvironmentsSpec {
                production: EnvironmentSpec::default(),
                test: self.test_environment.then(EnvironmentSpec::default),
            },
            suspended: false,
            ingress: None,
            deletion_policy: Default::default(),
            backups: None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn business() -> PlanSpec {
        serde_json::from_value(serde_json::json!({
            "name": "business",
            "display_name": "Business",
            "price_per_seat_month": {"minor": 2900, "currency": "EUR"},
            "max_seats": 50,
            "max_concurrent_users": 40,
            "database_size_limit": "20Gi",
            "resources": {"server": {"cpuRequest": "250m", "memoryLimit": "2Gi"}, "databaseStorage": "20Gi",
                          "quota": {"cpu": "8", "memory": "20Gi", "pods": 30}},
            "test_environment": true,
            "module_policy": "custom_allowed",
            "backup_retention_days": 30,
            "trial_days": 14
        }))
        .unwrap()
    }

    #[test]
    fn a_good_plan_is_valid() {
        assert_eq!(business().validate(), Ok(()));
    }

    #[test]
    fn every_problem_is_named() {
        let mut plan = business();
        plan.name = "Business Plan".into();
        plan.max_seats = 0;
        plan.database_size_limit = "lots".into();
        plan.backup_retention_days = 0;
        plan.resources.database_storage = Some("-5Gi".into());
        let problems = plan.validate().unwrap_err().0;
        assert_eq!(problems.len(), 5, "{problems:?}");
        for field in ["name:", "max_seats:", "database_size_limit", "backup_retention_days:", "resources:"] {
            assert!(problems.iter().any(|p| p.starts_with(field)), "{field} in {problems:?}");
        }
    }

    #[test]
    fn a_quota_that_cannot_hold_the_stack_is_refused() {
        // Fits with production alone; the test environment's server, web client and update Job
        // do not fit the same quota.
        let mut plan = business();
        plan.resources.quota.memory = Some("12Gi".into());
        plan.test_environment = false;
        assert_eq!(plan.validate(), Ok(()));
        plan.test_environment = true;
        let problems = plan.validate().unwrap_err().0;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("resources: spec.resources.quota.memory: "), "{problems:?}");
        assert!(problems[0].ends_with("memory limits of 18Gi at once, more than the quota's 12Gi"), "{problems:?}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut value = serde_json::to_value(business()).unwrap();
        value["seats_included"] = 3.into();
        let error = serde_json::from_value::<PlanSpec>(value).unwrap_err().to_string();
        assert!(error.contains("seats_included"), "{error}");
    }
}
