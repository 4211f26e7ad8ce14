//! The commercial fields of a plan as a form: filled from a plan, read back into a `PlanSpec`
//! (the plan's resources are never in the form: they are kept, or copied from the plan a new
//! one is based on), and every problem shown at its field.

use std::collections::BTreeMap;

use maud::{Markup, html};
use serde::Deserialize;

use super::sentence;
use crate::domain::money::{Currency, Money};
use crate::domain::plan::{ModulePolicy, PlanSpec};
use crate::http::problem::Problem;

/// What the revision and new-plan forms send. Every field is text, so that a field that does
/// not parse is answered at that field, with the others still checked.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct PlanForm {
    pub csrf: String,
    /// New plans only: the plan whose resources are copied.
    pub based_on: String,
    /// New plans only.
    pub name: String,
    pub display_name: String,
    /// Per seat and month, in major units: `29.00`.
    pub price: String,
    pub currency: String,
    pub max_seats: String,
    pub max_concurrent_users: String,
    pub trial_days: String,
    /// `yes` when the box is ticked; absent otherwise.
    pub test_environment: String,
    pub backup_retention_days: String,
    pub database_size_limit: String,
    pub module_policy: String,
}

/// The problems of a submitted form: per field (the form's names), and for the form as a whole.
#[derive(Debug, Default)]
pub struct FieldErrors {
    pub fields: BTreeMap<&'static str, String>,
    pub page: Option<String>,
}

impl FieldErrors {
    /// The first problem of a field is the one shown.
    pub fn field(&mut self, field: &'static str, message: impl Into<String>) {
        self.fields.entry(field).or_insert_with(|| message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.page.is_none()
    }

    /// The `field: message` problems of the shared plan validation (`PlanSpec::validate`, as the
    /// API reports them), each at its field of the form.
    pub fn add_validation(&mut self, problems: &[String]) {
        for problem in problems {
            match spec_field(problem) {
                Some((field, message)) => self.field(field, sentence(message)),
                None if problem.starts_with("resources") => {
                    self.page = Some(format!(
                        "The resources this plan has (copied from its first plan) are not valid: {}",
                        sentence(problem.trim_start_matches("resources").trim_start_matches(':').trim())
                    ));
                }
                None => self.page = Some(sentence(problem)),
            }
        }
    }

    /// A refusal of the shared create or revise functions (a taken name is the caller's to
    /// explain: only a new plan has one to choose).
    pub fn add_problem(&mut self, problem: &Problem) {
        if problem.status == 422 && !problem.errors.is_empty() {
            self.add_validation(&problem.errors);
        } else if problem.status >= 500 {
            self.page = Some("The plan could not be saved just now. Please try again in a moment.".into());
        } else {
            self.page = Some(sentence(&problem.detail));
        }
    }
}

/// The plan's fields as validation names them, and the form's name for each.
const SPEC_FIELDS: [(&str, &str); 8] = [
    ("price_per_seat_month", "price"),
    ("max_concurrent_users", "max_concurrent_users"),
    ("max_seats", "max_seats"),
    ("database_size_limit", "database_size_limit"),
    ("backup_retention_days", "backup_retention_days"),
    ("trial_days", "trial_days"),
    ("display_name", "display_name"),
    ("name", "name"),
];

/// `("max_seats", "at least 1")` from `max_seats: at least 1` (or `field must …`).
fn spec_field(problem: &str) -> Option<(&'static str, &str)> {
    SPEC_FIELDS.iter().find_map(|(spec, form)| {
        let rest = problem.strip_prefix(spec)?;
        let rest = rest.strip_prefix(':').or_else(|| rest.strip_prefix(' '))?;
        Some((*form, rest.trim()))
    })
}

/// Minor units from `29`, `29.5` or `29.50`.
fn parse_price(text: &str) -> Result<i64, &'static str> {
    const FORMAT: &str = "Enter the price per seat and month as an amount such as 29.00 (at most two decimals).";
    let text = text.trim();
    if text.starts_with('-') {
        return Err("The price cannot be negative.");
    }
    let (units, cents) = text.split_once('.').unwrap_or((text, "00"));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(units) || !digits(cents) || cents.len() > 2 {
        return Err(FORMAT);
    }
    let too_large = "This price is too large.";
    let units: i64 = units.parse().map_err(|_| too_large)?;
    let cents: i64 = format!("{cents:0<2}").parse().map_err(|_| FORMAT)?;
    units.checked_mul(100).and_then(|minor| minor.checked_add(cents)).ok_or(too_large)
}

fn parse_count(text: &str) -> Option<u32> {
    text.trim().parse().ok()
}

impl PlanForm {
    /// The form showing `spec`'s values.
    pub fn from_spec(spec: &PlanSpec) -> Self {
        let price = spec.price_per_seat_month;
        Self {
            csrf: String::new(),
            based_on: spec.name.clone(),
            name: spec.name.clone(),
            display_name: spec.display_name.clone(),
            price: format!("{}.{:02}", price.minor / 100, price.minor % 100),
            currency: price.currency.to_string(),
            max_seats: spec.max_seats.to_string(),
            max_concurrent_users: spec.max_concurrent_users.to_string(),
            trial_days: spec.trial_days.to_string(),
            test_environment: if spec.test_environment { "yes".into() } else { String::new() },
            backup_retention_days: spec.backup_retention_days.to_string(),
            database_size_limit: spec.database_size_limit.clone(),
            module_policy: module_policy_key(spec.module_policy).into(),
        }
    }

    /// `base` (its resources and anything the form lacks) with the form's fields and `name`;
    /// every problem, those of the shared validation included, at its field.
    pub fn to_spec(&self, base: &PlanSpec, name: &str) -> Result<PlanSpec, FieldErrors> {
        let mut errors = FieldErrors::default();
        let mut spec = base.clone();
        spec.name = name.to_string();
        spec.display_name = self.display_name.trim().to_string();
        let currency = self.currency.trim().to_ascii_uppercase();
        match currency.parse::<Currency>() {
            Ok(currency) => spec.price_per_seat_month.currency = currency,
            Err(_) => errors.field("price", "Enter the currency as a three-letter code such as EUR."),
        }
        match parse_price(&self.price) {
            Ok(minor) => spec.price_per_seat_month = Money { minor, currency: spec.price_per_seat_month.currency },
            Err(message) => errors.field("price", message),
        }
        let counts: [(&'static str, &str, &mut u32); 4] = [
            ("max_seats", &self.max_seats, &mut spec.max_seats),
            ("max_concurrent_users", &self.max_concurrent_users, &mut spec.max_concurrent_users),
            ("trial_days", &self.trial_days, &mut spec.trial_days),
            ("backup_retention_days", &self.backup_retention_days, &mut spec.backup_retention_days),
        ];
        for (field, text, value) in counts {
            match parse_count(text) {
                Some(count) => *value = count,
                None => errors.field(field, "Enter a whole number, for example 10."),
            }
        }
        spec.test_environment = !self.test_environment.is_empty();
        spec.database_size_limit = self.database_size_limit.trim().to_string();
        match self.module_policy.as_str() {
            "certified_only" => spec.module_policy = ModulePolicy::CertifiedOnly,
            "custom_allowed" => spec.module_policy = ModulePolicy::CustomAllowed,
            _ => errors.field("module_policy", "Choose which modules tenants may install."),
        }
        // The rest is checked as the API checks it, so that every problem shows at once; the
        // shared functions check again before anything is written.
        if let Err(invalid) = spec.validate() {
            errors.add_validation(&invalid.0);
        }
        if errors.is_empty() { Ok(spec) } else { Err(errors) }
    }
}

fn module_policy_key(policy: ModulePolicy) -> &'static str {
    match policy {
        ModulePolicy::CertifiedOnly => "certified_only",
        ModulePolicy::CustomAllowed => "custom_allowed",
    }
}

fn described_by(name: &str, hint: bool, error: bool) -> Option<String> {
    let ids: Vec<String> = [(error, "error"), (hint, "hint")]
        .into_iter()
        .filter(|(present, _)| *present)
        .map(|(_, kind)| format!("{name}-{kind}"))
        .collect();
    (!ids.is_empty()).then(|| ids.join(" "))
}

/// A labelled text input with its hint and, when it has one, its error.
pub fn input(name: &'static str, label: &str, value: &str, errors: &FieldErrors, hint: Option<&str>) -> Markup {
    let error = errors.fields.get(name);
    html! {
        div class={ "field" @if error.is_some() { " invalid" } } {
            label for=(name) { (label) }
            @if let Some(hint) = hint { p class="hint" id={ (name) "-hint" } { (hint) } }
            @if let Some(error) = error { p class="error" id={ (name) "-error" } { (error) } }
            input type="text" id=(name) name=(name) value=(value) autocomplete="off"
                aria-invalid=[error.map(|_| "true")] aria-describedby=[described_by(name, hint.is_some(), error.is_some())];
        }
    }
}

/// The commercial fields, filled from `form`.
pub fn commercial_fields(form: &PlanForm, errors: &FieldErrors) -> Markup {
    let policy_error = errors.fields.get("module_policy");
    let price_error = errors.fields.get("price");
    html! {
        (input("display_name", "Display name", &form.display_name, errors, Some("What customers see, up to 100 characters.")))
        div class={ "field price-field" @if price_error.is_some() { " invalid" } } {
            label for="price" { "Price per seat and month" }
            p class="hint" id="price-hint" { "An amount such as 29.00, in the currency beside it." }
            @if let Some(error) = price_error { p class="error" id="price-error" { (error) } }
            div class="price-inputs" {
                input type="text" id="price" name="price" value=(form.price) inputmode="decimal" autocomplete="off"
                    aria-invalid=[price_error.map(|_| "true")] aria-describedby=[described_by("price", true, price_error.is_some())];
                label for="currency" class="visually-hidden" { "Currency" }
                input type="text" id="currency" name="currency" value=(form.currency) maxlength="3" size="4"
                    autocomplete="off" aria-describedby="price-hint";
            }
        }
        (input("max_seats", "Most seats a tenant may hold", &form.max_seats, errors, None))
        (input("max_concurrent_users", "Most users at the same time", &form.max_concurrent_users, errors, None))
        (input("trial_days", "Free trial (days)", &form.trial_days, errors, Some("0 to 365; 0 means no trial.")))
        (input("backup_retention_days", "Backups kept (days)", &form.backup_retention_days, errors, Some("1 to 3650.")))
        (input("database_size_limit", "Database size limit", &form.database_size_limit, errors,
            Some("A Kubernetes quantity such as 20Gi.")))
        div class="field" {
            div class="choice" {
                input type="checkbox" id="test_environment" name="test_environment" value="yes"
                    checked[!form.test_environment.is_empty()];
                label for="test_environment" { "Tenants get a test environment beside production" }
            }
        }
        fieldset class={ "field" @if policy_error.is_some() { " invalid" } }
            aria-describedby=[policy_error.map(|_| "module_policy-error")] {
            legend { "Modules tenants may install" }
            @if let Some(error) = policy_error { p class="error" id="module_policy-error" { (error) } }
            @for (key, label) in [("certified_only", "Certified modules only"), ("custom_allowed", "Certified and their own modules")] {
                div class="choice" {
                    input type="radio" id={ "module_policy-" (key) } name="module_policy" value=(key)
                        checked[form.module_policy == key] aria-invalid=[policy_error.map(|_| "true")];
                    label for={ "module_policy-" (key) } { (label) }
                }
            }
        }
    }
}

/// Above a refused form: what to do, and any problem that has no field.
pub fn summary(errors: &FieldErrors) -> Markup {
    html! {
        @if let Some(message) = &errors.page {
            div class="alert" role="alert" { (message) " Nothing was saved." }
        } @else if !errors.fields.is_empty() {
            div class="alert" role="alert" {
                "Please correct the " (if errors.fields.len() == 1 { "field" } else { "fields" })
                " marked below. Nothing was saved."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_read_in_major_units() {
        assert_eq!(parse_price("29.00"), Ok(2900));
        assert_eq!(parse_price(" 29.5 "), Ok(2950));
        assert_eq!(parse_price("7"), Ok(700));
        assert_eq!(parse_price("0.05"), Ok(5));
        for bad in ["", "abc", "12,50", "1.234", ".5", "5.", "1e3"] {
            assert!(parse_price(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_price("-1.00"), Err("The price cannot be negative."));
        assert_eq!(parse_price("99999999999999999999"), Err("This price is too large."));
    }

    #[test]
    fn validation_problems_find_their_fields() {
        assert_eq!(spec_field("max_seats: at least 1"), Some(("max_seats", "at least 1")));
        assert_eq!(spec_field("max_concurrent_users: at least 1"), Some(("max_concurrent_users", "at least 1")));
        assert_eq!(
            spec_field("database_size_limit must not be negative (got -1)"),
            Some(("database_size_limit", "must not be negative (got -1)"))
        );
        assert_eq!(spec_field("price_per_seat_month: must not be negative"), Some(("price", "must not be negative")));
        assert_eq!(spec_field("resources: server: bad"), None);
    }

    #[test]
    fn a_form_reads_back_into_the_plan_it_shows() {
        let plan = crate::domain::plan::tests::business();
        let form = PlanForm::from_spec(&plan);
        assert_eq!(form.to_spec(&plan, &plan.name).unwrap(), plan);
        let bad = PlanForm { price: "lots".into(), max_seats: "0".into(), module_policy: String::new(), ..form };
        let errors = bad.to_spec(&plan, "business").unwrap_err();
        assert_eq!(errors.fields.keys().copied().collect::<Vec<_>>(), ["max_seats", "module_policy", "price"]);
    }
}
