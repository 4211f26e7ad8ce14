//! Real ERP data, made by Tryton itself: a company with its currency, parties with addresses,
//! products, sale orders with lines (some confirmed), and attachments whose bytes land in the
//! file store (`<[database] path>/<database>/ab/cd/<md5>`). Backups, restores, neutralized
//! copies and upgrades are tested on it, and [`read_back`] gives the figures they compare.
//!
//! The work is done by `fixture.py` (beside this file), run with the Python of the series'
//! virtualenv through `proteus` on the trytond backend: every record goes through Tryton's
//! models, defaults, on-changes and workflow buttons (`quote`, `confirm`) as a user's would,
//! with no server needed. Sales use manual invoicing and shipping, so no chart of accounts is
//! needed and confirming creates no invoice or shipment.
//!
//! **Size.** [`FixtureSize::small`] is the tests' core (seconds). For a benchmark of
//! realistic size, [`FixtureSize::bulk_sales`] adds sales copied by SQL
//! (`INSERT … SELECT … generate_series`) from a real confirmed sale, each with
//! `bulk_lines_per_sale` lines, parties rotating over the real ones — documented as such: the
//! bulk is valid rows of Tryton's tables, not records that went through its workflow.
//! Attachments are always made through Tryton: 200 attachments of 1 MiB make 200 MiB.
//!
//! Checked on every supported series, 7.0 (the oldest, where upgrades start) to 8.2: the
//! ignored test `fixture_and_neutralization_work_on_every_supported_series` of the agent runs
//! it on each.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::TrytonConfig;
use super::install::{MODULES, TrytonInstall};
use crate::error::{Error, IoContext, Result};
use crate::process::{Spec, run_async};

const SCRIPT: &str = include_str!("fixture.py");
const ANSWER_PREFIX: &str = "TENANTRY-FIXTURE ";

/// How much data [`create`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixtureSize {
    pub parties: u32,
    pub products: u32,
    pub sales: u32,
    /// The first `confirmed_sales` sales are quoted and confirmed; the others stay drafts.
    pub confirmed_sales: u32,
    pub lines_per_sale: u32,
    pub attachments: u32,
    /// Random (incompressible) bytes per attachment.
    pub attachment_bytes: u32,
    /// Extra sales copied by SQL from a real one (see the module docs).
    pub bulk_sales: u64,
    pub bulk_lines_per_sale: u32,
}

impl FixtureSize {
    /// The tests' data: 5 parties, 4 products, 4 sales of 3 lines (2 confirmed), 3
    /// attachments of 4 KiB.
    pub fn small() -> Self {
        Self {
            parties: 5,
            products: 4,
            sales: 4,
            confirmed_sales: 2,
            lines_per_sale: 3,
            attachments: 3,
            attachment_bytes: 4096,
            bulk_sales: 0,
            bulk_lines_per_sale: 0,
        }
    }

    /// About `table_bytes` of table data beyond the core (bulk sales of 10 lines; `sale_sale`
    /// and `sale_line` with their indexes measured 291 bytes per line on 7.0) and
    /// `attachment_bytes` of attachments in files of 1 MiB.
    pub fn benchmark(table_bytes: u64, attachment_bytes: u64) -> Self {
        const LINES: u32 = 10;
        const BYTES_PER_LINE: u64 = 290;
        const ATTACHMENT: u64 = 1 << 20;
        Self {
            parties: 50,
            products: 20,
            sales: 20,
            confirmed_sales: 10,
            lines_per_sale: 5,
            attachments: attachment_bytes.div_ceil(ATTACHMENT) as u32,
            attachment_bytes: ATTACHMENT as u32,
            bulk_sales: table_bytes / (BYTES_PER_LINE * u64::from(LINES)),
            bulk_lines_per_sale: LINES,
        }
    }
}

/// What tests compare before and after an operation, read through Tryton's models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadBack {
    pub companies: u64,
    pub parties: u64,
    pub addresses: u64,
    pub products: u64,
    pub sales: u64,
    pub sale_lines: u64,
    pub attachments: u64,
    /// Bytes of attachment content as the ERP reads it (a missing file reads as 0 bytes).
    pub attachment_bytes: u64,
    /// SHA-256 over every attachment's name, size and content SHA-256, in id order.
    pub attachments_sha256: String,
    /// Sum of the product templates' list prices, as Tryton's decimal text.
    pub list_price_sum: String,
}

/// Activates [`MODULES`] (with their dependencies) in `database`, which
/// [`TrytonInstall::create_database`] initialised: what [`create`] needs.
pub async fn activate_modules(install: &TrytonInstall, config: &TrytonConfig, database: &str) -> Result<()> {
    install.activate_modules(config, database, MODULES).await
}

/// Creates the data of `size` in `database` (modules activated, no data yet: the company is
/// the first one).
pub async fn create(install: &TrytonInstall, config: &TrytonConfig, database: &str, size: &FixtureSize) -> Result<()> {
    let mut request = serde_json::to_value(size).expect("sizes serialise");
    request["command"] = "create".into();
    run_script(install, config, database, request).await.map(drop)
}

/// The figures of [`ReadBack`] for `database`, read with `install`'s series (the series the
/// database is at).
pub async fn read_back(install: &TrytonInstall, config: &TrytonConfig, database: &str) -> Result<ReadBack> {
    let answer = run_script(install, config, database, serde_json::json!({"command": "read"})).await?;
    serde_json::from_value(answer)
        .map_err(|e| Error::Prerequisite(format!("the fixture's read-back is not what was expected: {e}")))
}

async fn run_script(
    install: &TrytonInstall,
    config: &TrytonConfig,
    database: &str,
    mut request: serde_json::Value,
) -> Result<serde_json::Value> {
    let script = config.dir().join("tenantry-fixture.py");
    std::fs::write(&script, SCRIPT).context(|| format!("writing {}", script.display()))?;
    request["database"] = database.into();
    request["config"] = config.path().display().to_string().into();
    let output = run_async(
        Spec::new("fixture.py", install.bin("python"))
            .arg(script.display().to_string())
            .arg(request.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .current_dir(config.dir()),
    )
    .await?;
    let line = output.lines().rev().find_map(|line| line.strip_prefix(ANSWER_PREFIX)).ok_or_else(|| {
        Error::Prerequisite(format!("fixture.py gave no answer line; its output ended with: {}", tail(&output)))
    })?;
    serde_json::from_str(line)
        .map_err(|e| Error::Prerequisite(format!("fixture.py's answer is not JSON ({e}): {line}")))
}

fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The counts of [`ReadBack`] by name, for messages comparing two read-backs.
pub fn counts(read_back: &ReadBack) -> BTreeMap<&'static str, u64> {
    BTreeMap::from([
        ("companies", read_back.companies),
        ("parties", read_back.parties),
        ("addresses", read_back.addresses),
        ("products", read_back.products),
        ("sales", read_back.sales),
        ("sale_lines", read_back.sale_lines),
        ("attachments", read_back.attachments),
        ("attachment_bytes", read_back.attachment_bytes),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_sizes_reach_their_targets() {
        let size = FixtureSize::benchmark(1 << 30, 200 << 20);
        assert_eq!(size.attachments, 200);
        assert_eq!(u64::from(size.attachments) * u64::from(size.attachment_bytes), 200 << 20);
        let bulk_bytes = size.bulk_sales * u64::from(size.bulk_lines_per_sale) * 290;
        assert!(bulk_bytes <= 1 << 30 && bulk_bytes > (1 << 30) - 4000, "{bulk_bytes}");
        assert!(size.confirmed_sales > 0 && size.confirmed_sales <= size.sales);
    }
}
