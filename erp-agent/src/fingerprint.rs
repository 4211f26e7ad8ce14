//! A database's fingerprint: the exact number of rows of every table of the `public` schema
//! and the activated ERP modules. It goes into every backup manifest and into the upgrade
//! report, and [`compare`] says what an upgrade or a restore lost.
//!
//! Counts are exact (`count(*)` per table), read in one `REPEATABLE READ` read-only
//! transaction so they describe a single moment even while the ERP is writing.
//!
//! Modules come from `ir_module` (`name`, `state = 'activated'`), whose columns are the same
//! from Tryton 7.0 to 8.2. Tryton keeps no module version in the database (`ir.module.version`
//! is computed from the installed code), so a module's version is the ERP version the caller
//! runs: the manifest records that once, beside this list.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::database::names::quote_identifier;
use crate::error::{Error, Result};
use crate::report::TableRows;

/// Row counts and activated modules of one database.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Table name → exact row count, for every ordinary table of the `public` schema.
    pub tables: BTreeMap<String, u64>,
    /// Names of the modules in state `activated`.
    pub modules: BTreeSet<String>,
}

/// Tables whose contents are sessions, caches, locks and queues: their counts change with use
/// and with every server start, so a shrinking count there is no data loss. A caller comparing
/// fingerprints may ignore them ([`FingerprintDiff::without`]).
pub const VOLATILE_TABLES: &[&str] = &[
    "ir_cache",
    "ir_lock",
    "ir_queue",
    "ir_session",
    "ir_session_wizard",
    "res_user_login_attempt",
    "res_user_device",
];

/// Reads the fingerprint of the database `connection` is connected to.
pub async fn read(connection: &mut PgConnection) -> Result<Fingerprint> {
    let mut transaction =
        connection.begin().await.map_err(Error::database("starting the fingerprint's transaction"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *transaction)
        .await
        .map_err(Error::database("making the fingerprint's transaction a snapshot"))?;
    let fingerprint = read_in(&mut transaction).await?;
    transaction.commit().await.map_err(Error::database("ending the fingerprint's transaction"))?;
    Ok(fingerprint)
}

/// Reads the fingerprint inside a transaction the caller opened as a snapshot (`REPEATABLE
/// READ`), e.g. the one whose snapshot a backup's dump uses.
pub async fn read_in(transaction: &mut PgConnection) -> Result<Fingerprint> {
    let mut tables = BTreeMap::new();
    for name in tables_of_public_schema(&mut *transaction, "1").await? {
        let count = count_rows(&mut *transaction, &name).await?;
        tables.insert(name, count);
    }
    let modules = if tables.contains_key("ir_module") {
        sqlx::query_scalar("SELECT name::text FROM ir_module WHERE state = 'activated'")
            .fetch_all(&mut *transaction)
            .await
            .map_err(Error::database("reading the activated modules"))?
            .into_iter()
            .collect()
    } else {
        BTreeSet::new()
    };
    Ok(Fingerprint { tables, modules })
}

/// The exact row count of every table of the `public` schema of a database **nothing writes**
/// (a work copy before its cut-over), counted on several `connections` at once, the largest
/// tables first. Without a writer no snapshot is needed to make the counts agree; what this
/// saves is the round trip per table (an ERP has hundreds) and, for the few large tables, the
/// wait of one scan behind another.
pub async fn count_rows_of_quiet_database(connections: Vec<PgConnection>) -> Result<BTreeMap<String, u64>> {
    let mut connections = connections.into_iter();
    let Some(mut first) = connections.next() else {
        return Err(Error::Invalid("counting rows needs at least one connection".into()));
    };
    let largest_first = tables_of_public_schema(&mut first, "pg_total_relation_size(c.oid) DESC, 1").await?;
    let queue = std::sync::Mutex::new(largest_first.into_iter());
    let next = || queue.lock().unwrap_or_else(|e| e.into_inner()).next();
    let workers = std::iter::once(first).chain(connections).map(|mut connection| {
        let next = &next;
        async move {
            let mut counted = Vec::new();
            while let Some(name) = next() {
                let count = count_rows(&mut connection, &name).await?;
                counted.push((name, count));
            }
            Ok::<_, Error>(counted)
        }
    });
    let counted = futures::future::try_join_all(workers).await?;
    Ok(counted.into_iter().flatten().collect())
}

/// The ordinary and partitioned tables of the `public` schema, in the order `order_by` (SQL over
/// `c`, their `pg_class` row) gives.
async fn tables_of_public_schema(connection: &mut PgConnection, order_by: &'static str) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY {order_by}"
    );
    sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_all(connection)
        .await
        .map_err(Error::database("listing the tables of the public schema"))
}

/// The exact number of rows of table `name` of the `public` schema.
async fn count_rows(connection: &mut PgConnection, name: &str) -> Result<u64> {
    let sql = format!("SELECT count(*) FROM public.{}", quote_identifier(name));
    let count: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(connection)
        .await
        .map_err(Error::database(format!("counting the rows of `{name}`")))?;
    Ok(count as u64)
}

/// What changed from one fingerprint to another.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FingerprintDiff {
    /// Every table whose row count changed, or that exists on one side only: rows before and
    /// after (what a report shows, [`crate::report::Report::fingerprint`]).
    pub rows: BTreeMap<String, TableRows>,
    /// Tables present before and gone after.
    pub tables_lost: Vec<String>,
    /// Tables with fewer rows after than before.
    pub tables_shrunk: Vec<ShrunkTable>,
    /// Tables present after only (an upgrade adds some).
    pub tables_added: Vec<String>,
    /// Modules activated before and not after.
    pub modules_lost: Vec<String>,
    /// Modules activated after only.
    pub modules_added: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShrunkTable {
    pub table: String,
    pub before: u64,
    pub after: u64,
}

impl FingerprintDiff {
    /// No table lost, none shrunk, no module lost: nothing points to lost data.
    pub fn loses_nothing(&self) -> bool {
        self.tables_lost.is_empty() && self.tables_shrunk.is_empty() && self.modules_lost.is_empty()
    }

    /// The same difference without the tables `ignore` names (e.g. [`VOLATILE_TABLES`], or
    /// tables a migration step is documented to drop).
    pub fn without(mut self, ignore: &[&str]) -> Self {
        let kept = |table: &String| !ignore.contains(&table.as_str());
        self.rows.retain(|table, _| kept(table));
        self.tables_lost.retain(kept);
        self.tables_added.retain(kept);
        self.tables_shrunk.retain(|shrunk| kept(&shrunk.table));
        self
    }
}

/// What `after` lost or gained against `before`.
pub fn compare(before: &Fingerprint, after: &Fingerprint) -> FingerprintDiff {
    let rows: BTreeMap<String, TableRows> = before
        .tables
        .keys()
        .chain(after.tables.keys())
        .filter_map(|table| {
            let rows = TableRows { before: before.tables.get(table).copied(), after: after.tables.get(table).copied() };
            (rows.before != rows.after).then(|| (table.clone(), rows))
        })
        .collect();
    let mut diff = FingerprintDiff::default();
    for (table, rows) in &rows {
        match (rows.before, rows.after) {
            (Some(_), None) => diff.tables_lost.push(table.clone()),
            (None, Some(_)) => diff.tables_added.push(table.clone()),
            (Some(before), Some(after)) if after < before => {
                diff.tables_shrunk.push(ShrunkTable { table: table.clone(), before, after })
            }
            _ => {}
        }
    }
    diff.rows = rows;
    diff.modules_lost = before.modules.difference(&after.modules).cloned().collect();
    diff.modules_added = after.modules.difference(&before.modules).cloned().collect();
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(tables: &[(&str, u64)], modules: &[&str]) -> Fingerprint {
        Fingerprint {
            tables: tables.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            modules: modules.iter().map(|m| m.to_string()).collect(),
        }
    }

    #[test]
    fn comparison_names_lost_shrunk_and_added_tables() {
        let before =
            fingerprint(&[("party_party", 10), ("sale_sale", 5), ("ir_session", 3), ("old", 1)], &["party", "sale"]);
        let after =
            fingerprint(&[("party_party", 10), ("sale_sale", 4), ("ir_session", 0), ("new", 0)], &["party", "company"]);
        let diff = compare(&before, &after);
        assert_eq!(diff.tables_lost, ["old"]);
        assert_eq!(
            diff.tables_shrunk,
            [
                ShrunkTable { table: "ir_session".into(), before: 3, after: 0 },
                ShrunkTable { table: "sale_sale".into(), before: 5, after: 4 }
            ]
        );
        assert_eq!(diff.tables_added, ["new"]);
        assert_eq!(diff.modules_lost, ["sale"]);
        assert_eq!(diff.modules_added, ["company"]);
        assert!(!diff.loses_nothing());
        // Only the tables that changed, with their rows on each side.
        assert_eq!(diff.rows.keys().collect::<Vec<_>>(), ["ir_session", "new", "old", "sale_sale"]);
        assert_eq!(diff.rows["sale_sale"], TableRows { before: Some(5), after: Some(4) });
        assert_eq!(diff.rows["old"], TableRows { before: Some(1), after: None });
        assert_eq!(diff.rows["new"], TableRows { before: None, after: Some(0) });

        let ignored = diff.without(VOLATILE_TABLES);
        assert!(!ignored.rows.contains_key("ir_session"));
        assert_eq!(ignored.tables_shrunk.len(), 1);
        assert_eq!(ignored.tables_shrunk[0].table, "sale_sale");
    }

    #[test]
    fn growth_is_not_loss() {
        let before = fingerprint(&[("party_party", 10)], &["party"]);
        let after = fingerprint(&[("party_party", 11), ("ir_new", 2)], &["party"]);
        let diff = compare(&before, &after);
        assert!(diff.loses_nothing(), "{diff:?}");
        assert_eq!(diff.tables_added, ["ir_new"]);
        assert!(compare(&before, &before).loses_nothing());
        assert_eq!(compare(&before, &before), FingerprintDiff::default());
    }
}
