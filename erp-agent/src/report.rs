//! The report every operation produces: machine-readable (JSON, what the production gate of an
//! upgrade checks) and readable by a person (its `Display`). Steps in order with their
//! durations and outcomes, the database's fingerprint before and after per table, warnings, and
//! the ERP's own validation.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Outcome {
    Succeeded,
    /// A step failed and everything it had changed was undone: the environment is as before.
    RolledBack {
        step: String,
        reason: String,
    },
}

/// How one step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepOutcome {
    Done,
    Failed,
    /// Done, then undone while rolling back.
    Undone,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    pub step: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub outcome: StepOutcome,
    /// What the step did or why it failed, in a line or a few (an ERP log's tail on failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One table's rows before and after (`None`: the table did not exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRows {
    pub before: Option<u64>,
    pub after: Option<u64>,
}

/// The ERP's own check of the records, where it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validation {
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub operation: String,
    /// `backup`, `restore`, `test-copy`, `update`, `upgrade`…
    pub kind: String,
    pub tenant: String,
    pub environment: String,
    /// Run on the test environment: what the production gate looks for before the same change
    /// is allowed on production.
    pub rehearsal: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub steps: Vec<StepReport>,
    /// Per table, only where the rows changed or the table came or went
    /// ([`crate::fingerprint::FingerprintDiff::rows`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fingerprint: BTreeMap<String, TableRows>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    /// The database (and file-store folder) this operation replaced and set aside: kept until
    /// released (`tenantry-agent release --kept …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions = match (&self.from_version, &self.to_version) {
            (Some(from), Some(to)) if from != to => format!(" {from} → {to}"),
            (Some(version), _) | (None, Some(version)) => format!(" on {version}"),
            (None, None) => String::new(),
        };
        let rehearsal = if self.rehearsal { " (rehearsal)" } else { "" };
        writeln!(
            f,
            "{} of {}/{}{versions}{rehearsal}: {}",
            self.kind,
            self.tenant,
            self.environment,
            match &self.outcome {
                Outcome::Succeeded => "succeeded".to_string(),
                Outcome::RolledBack { step, reason } => format!("failed at {step} and was rolled back: {reason}"),
            }
        )?;
        for step in &self.steps {
            let outcome = match step.outcome {
                StepOutcome::Done => "done",
                StepOutcome::Failed => "FAILED",
                StepOutcome::Undone => "undone",
            };
            writeln!(f, "  {:<28} {:>9.1} s  {outcome}", step.step, step.duration_ms as f64 / 1000.0)?;
            if let Some(detail) = &step.detail {
                for line in detail.lines() {
                    writeln!(f, "      {line}")?;
                }
            }
        }
        if !self.fingerprint.is_empty() {
            writeln!(f, "  tables whose rows changed:")?;
            let count = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
            for (table, rows) in &self.fingerprint {
                writeln!(f, "    {table:<40} {:>10} → {:>10}", count(rows.before), count(rows.after))?;
            }
        }
        for warning in &self.warnings {
            writeln!(f, "  warning: {warning}")?;
        }
        if let Some(validation) = &self.validation {
            writeln!(f, "  validation: {} {}", if validation.passed { "passed" } else { "FAILED" }, validation.detail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_reads_as_json_and_as_text() {
        let at = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z").unwrap().with_timezone(&Utc);
        let report = Report {
            operation: "op-1".into(),
            kind: "upgrade".into(),
            tenant: "acme".into(),
            environment: "test".into(),
            rehearsal: true,
            from_version: Some("7.0.59".into()),
            to_version: Some("7.2.23".into()),
            started_at: at,
            finished_at: at,
            outcome: Outcome::RolledBack { step: "post-migration".into(), reason: "syntax error".into() },
            steps: vec![StepReport {
                step: "post-migration".into(),
                started_at: at,
                duration_ms: 1500,
                outcome: StepOutcome::Failed,
                detail: Some("syntax error at or near \"x\"".into()),
            }],
            fingerprint: BTreeMap::new(),
            warnings: vec!["the admin password must be set again".into()],
            validation: None,
            kept: None,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["outcome"], "rolled-back");
        assert_eq!(json["step"], "post-migration");
        assert_eq!(serde_json::from_value::<Report>(json).unwrap(), report);
        let text = report.to_string();
        assert!(
            text.starts_with("upgrade of acme/test 7.0.59 → 7.2.23 (rehearsal): failed at post-migration"),
            "{text}"
        );
        assert!(text.contains("FAILED") && text.contains("warning: the admin password"), "{text}");
    }
}
