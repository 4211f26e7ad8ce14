//! Plan catalogues in YAML: the default one shipped with the binary, and files given to
//! `plans import`. A catalogue is a list of plans; it is used whole or not at all.

use std::collections::BTreeSet;

use crate::domain::plan::PlanSpec;

const DEFAULT_CATALOGUE: &str = include_str!("../plans/default.yaml");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    #[error("not a YAML list of plans: {0}")]
    Parse(String),
    #[error("the catalogue holds no plan")]
    Empty,
    /// Every problem of every plan, each prefixed with the plan's name.
    #[error("invalid catalogue:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// The plans a fresh control plane starts with (`starter`, `business`, `enterprise`).
pub fn default_plans() -> Vec<PlanSpec> {
    // The embedded file is checked by this module's tests, so it always parses and validates.
    parse(DEFAULT_CATALOGUE).expect("the embedded default catalogue is valid")
}

/// A YAML list of plans, each validated; unknown fields (at any depth, `resources` included)
/// and duplicate names are refused.
pub fn parse(yaml: &str) -> Result<Vec<PlanSpec>, CatalogueError> {
    let mut unknown = Vec::new();
    let plans: Vec<PlanSpec> =
        serde_ignored::deserialize(serde_yaml::Deserializer::from_str(yaml), |path| unknown.push(path.to_string()))
            .map_err(|e| CatalogueError::Parse(e.to_string()))?;
    if !unknown.is_empty() {
        return Err(CatalogueError::Parse(format!("unknown fields (plan index first): {}", unknown.join(", "))));
    }
    if plans.is_empty() {
        return Err(CatalogueError::Empty);
    }
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, plan) in plans.iter().enumerate() {
        let label = if plan.name.is_empty() { format!("plan #{}", index + 1) } else { format!("plan {:?}", plan.name) };
        if !seen.insert(plan.name.as_str()) {
            problems.push(format!("{label}: listed more than once"));
        }
        if let Err(invalid) = plan.validate() {
            problems.extend(invalid.0.into_iter().map(|problem| format!("{label}: {problem}")));
        }
    }
    if problems.is_empty() { Ok(plans) } else { Err(CatalogueError::Invalid(problems)) }
}

#[cfg(test)]
mod tests {
    use tenantry_blueprint::profile::ImageDefaults;

    use super::*;

    #[test]
    fn the_default_catalogue_is_valid_and_priced_in_euros() {
        let plans = default_plans();
        let names: Vec<&str> = plans.iter().map(|plan| plan.name.as_str()).collect();
        assert_eq!(names, ["starter", "business", "enterprise"]);
        for plan in &plans {
            assert_eq!(plan.price_per_seat_month.currency.as_str(), "EUR", "{}", plan.name);
            assert!(plan.price_per_seat_month.minor > 0, "{}", plan.name);
        }
        assert!(plans.windows(2).all(|pair| pair[0].max_seats < pair[1].max_seats));
    }

    /// Each plan's quota holds the whole stack of a tenant on it at its peak, as the operator
    /// builds it (test environment included when the plan has one): whether a Job fits must
    /// not depend on the order in which pods start.
    #[test]
    fn every_plan_fits_its_quota() {
        for plan in default_plans() {
            let spec = plan.tenant_spec_probe();
            let model = tenantry_blueprint::validate::validate("probe", &spec, &ImageDefaults::default())
                .unwrap_or_else(|invalid| panic!("plan {}: {invalid}", plan.name));
            let footprint = tenantry_blueprint::fit::check(&model, &ImageDefaults::default())
                .unwrap_or_else(|problems| panic!("plan {}: {problems:?}", plan.name));
            let quota = &plan.resources.quota;
            assert!(quota.cpu.is_some() && quota.memory.is_some() && quota.pods.is_some(), "plan {}", plan.name);
            assert!(footprint.pods > 0 && footprint.cpu_limits_milli > 0, "plan {}: {footprint}", plan.name);
        }
    }

    #[test]
    fn every_problem_names_its_plan() {
        let yaml = DEFAULT_CATALOGUE
            .replace("max_seats: 10\n", "max_seats: 0\n")
            .replace("name: enterprise", "name: business");
        let CatalogueError::Invalid(problems) = parse(&yaml).unwrap_err() else { panic!("not Invalid") };
        assert!(problems.iter().any(|p| p.starts_with("plan \"starter\": max_seats")), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("plan \"business\": listed more than once")), "{problems:?}");
    }

    #[test]
    fn unknown_fields_and_non_lists_are_refused() {
        let error = parse(&DEFAULT_CATALOGUE.replace("trial_days: 14", "trial_dayz: 14")).unwrap_err().to_string();
        assert!(error.contains("trial_dayz"), "{error}");
        let nested = DEFAULT_CATALOGUE.replacen("resources:\n", "resources:\n    qouta: {cpu: \"1\"}\n", 1);
        assert_ne!(nested, DEFAULT_CATALOGUE, "the default catalogue has resources");
        let error = parse(&nested).unwrap_err().to_string();
        assert!(error.contains("0.resources.qouta"), "{error}");
        assert!(matches!(parse("name: starter"), Err(CatalogueError::Parse(_))));
        assert_eq!(parse("[]"), Err(CatalogueError::Empty));
    }
}
