//! A neutralized copy: what makes a copy of production safe to run as a test environment, as
//! a contract of two functions — [`neutralize`] switches off everything that reaches the
//! outside world, and [`verify`] fails, naming each one, if anything is still live. The check
//! is separate so callers can run it on any database at any time (before starting a test
//! server, after a module update on the copy…).
//!
//! What [`neutralize`] does, in one transaction on the copy (all of it or nothing):
//! 1. every scheduled action off: `UPDATE ir_cron SET active = false`;
//! 2. the task queue emptied: `DELETE FROM ir_queue`;
//! 3. every credential of an integration blanked (set to `''`: the columns are `NOT NULL` for
//!    required fields, and an empty key authenticates nowhere): the catalogue
//!    [`INTEGRATION_CREDENTIALS`] names each module's tables and columns, checked against the
//!    packages of Tryton 7.0 and 8.2. Every listed column present in the database is blanked,
//!    whether its module is activated or not (a deactivated module keeps its tables);
//! 4. the copy marked: one row in the table [`MARKER_TABLE`] (created if needed) saying when,
//!    and from which database.
//!
//! What it cannot do: outgoing mail. Tryton sends mail through its configuration's
//! `[email] uri` (default `smtp://localhost:25`), not through anything in the database, so every
//! process serving a neutralized copy (server, cron, worker) must run with that set to a sink:
//! [`MAIL_SINK_URI`] or the caller's own capture server. Nor can it stop a cron or worker
//! process the caller starts for the copy: run none (crons are off in the data too).
//!
//! What it never does: touch any other database (the caller passes a connection to the copy;
//! [`neutralize`] refuses a database whose name the caller did not confirm as the copy).

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::database::names::quote_identifier;
use crate::error::{Error, Result};

/// The table recording that (and when, and from what) a database was neutralized.
pub const MARKER_TABLE: &str = "tenantry_neutralization";

/// An `[email] uri` that delivers nothing: the discard port on loopback refuses the
/// connection, and Tryton logs the failure and drops the message. A caller that wants to read
/// the copy's mail sets its own SMTP capture server instead (`TRYTOND_EMAIL__URI`).
pub const MAIL_SINK_URI: &str = "smtp://127.0.0.1:9";

/// Where one integration module keeps its secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntegrationCredentials {
    /// The Tryton module (`ir_module.name`).
    pub module: &'static str,
    /// Its table (the model name with `_` for `.`).
    pub table: &'static str,
    /// Every column holding a secret, across series: columns missing in a database's series
    /// are skipped, but an activated module with none of its columns present is an error (the
    /// catalogue does not know that series' layout yet).
    pub columns: &'static [&'static str],
}

/// The integration credentials Tryton keeps in the database, from reading the 7.0 and 8.2
/// packages on PyPI. Data, not code: a new integration is one more entry.
pub const INTEGRATION_CREDENTIALS: &[IntegrationCredentials] = &[
    IntegrationCredentials {
        module: "account_payment_stripe",
        table: "account_payment_stripe_account",
        columns: &["secret_key", "publishable_key", "webhook_identifier", "webhook_signing_secret"],
    },
    IntegrationCredentials {
        module: "account_payment_braintree",
        table: "account_payment_braintree_account",
        columns: &["private_key", "public_key", "webhook_identifier"],
    },
    // 7.0 calls the access token `shopify_password`; 8.x `shopify_access_token`.
    IntegrationCredentials {
        module: "web_shop_shopify",
        table: "web_shop",
        columns: &["shopify_password", "shopify_access_token", "shopify_webhook_shared_secret"],
    },
    IntegrationCredentials {
        module: "stock_package_shipping_ups",
        table: "carrier_credential_ups",
        columns: &["client_id", "client_secret"],
    },
    IntegrationCredentials {
        module: "stock_package_shipping_dpd",
        table: "carrier_credential_dpd",
        columns: &["password", "token"],
    },
    IntegrationCredentials {
        module: "stock_package_shipping_mygls",
        table: "carrier_credential_mygls",
        columns: &["password"],
    },
    IntegrationCredentials {
        module: "stock_package_shipping_sendcloud",
        table: "carrier_credential_sendcloud",
        columns: &["public_key", "secret_key"],
    },
    // The inbox's identifier is the secret part of its inbound URL.
    IntegrationCredentials { module: "inbound_email", table: "inbound_email_inbox", columns: &["identifier"] },
    // Peppol (from 7.8) through the Peppyrus access point.
    IntegrationCredentials {
        module: "edocument_peppol_peppyrus",
        table: "edocument_peppol_service",
        columns: &["peppyrus_api_key"],
    },
    IntegrationCredentials {
        module: "account_fr_chorus",
        table: "account_credential_chorus",
        columns: &["chorus_piste_client_secret", "chorus_password"],
    },
    IntegrationCredentials {
        module: "document_incoming_ocr_typless",
        table: "document_incoming_ocr_service",
        columns: &["typless_api_key"],
    },
    IntegrationCredentials {
        module: "document_incoming_ocr_eagle_doc",
        table: "document_incoming_ocr_service",
        columns: &["eagle_doc_api_key"],
    },
];

/// What [`neutralize`] changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neutralized {
    pub source_database: String,
    pub at: DateTime<Utc>,
    pub crons_disabled: u64,
    pub queued_tasks_removed: u64,
    /// `table.column` of every credential column blanked, with the rows it held a value in.
    pub credentials_blanked: Vec<(String, u64)>,
}

/// One thing still live in a copy that should be neutralized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StillLive {
    ActiveCron {
        id: i64,
        method: String,
    },
    QueuedTask {
        id: i64,
        name: String,
    },
    Credential {
        module: String,
        table: String,
        column: String,
        rows: u64,
    },
    /// The database carries no neutralization marker.
    NoMarker,
}

impl fmt::Display for StillLive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ActiveCron { id, method } => write!(f, "scheduled action {id} ({method}) is active"),
            Self::QueuedTask { id, name } => write!(f, "task {id} is queued on `{name}`"),
            Self::Credential { module, table, column, rows } => {
                write!(f, "{module}: {table}.{column} still holds a credential in {rows} row(s)")
            }
            Self::NoMarker => write!(f, "the database is not marked as neutralized ({MARKER_TABLE})"),
        }
    }
}

/// Neutralizes the database `connection` is connected to, which must be named `copy` (a
/// guard against neutralizing production by mistake). `source` is recorded in the marker.
pub async fn neutralize(connection: &mut PgConnection, copy: &str, source: &str) -> Result<Neutralized> {
    let current: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut *connection)
        .await
        .map_err(Error::database("reading the connection's database"))?;
    if current != copy {
        return Err(Error::Invalid(format!(
            "refusing to neutralize `{current}`: the connection is not to the copy `{copy}`"
        )));
    }
    let mut transaction = connection.begin().await.map_err(Error::database("starting the neutralization"))?;
    let crons_disabled = sqlx::query("UPDATE ir_cron SET active = false WHERE active")
        .execute(&mut *transaction)
        .await
        .map_err(Error::database("switching the scheduled actions off"))?
        .rows_affected();
    let queued_tasks_removed = sqlx::query("DELETE FROM ir_queue")
        .execute(&mut *transaction)
        .await
        .map_err(Error::database("emptying the task queue"))?
        .rows_affected();
    let activated = activated_modules(&mut transaction).await?;
    let mut credentials_blanked = Vec::new();
    for (entry, columns) in present_credentials(&mut transaction, &activated).await? {
        for column in columns {
            let column_sql = quote_identifier(column);
            let sql = format!(
                "UPDATE {} SET {column_sql} = '' WHERE {column_sql} IS NOT NULL AND {column_sql} <> ''",
                quote_identifier(entry.table)
            );
            let rows = sqlx::query(AssertSqlSafe(sql))
                .execute(&mut *transaction)
                .await
                .map_err(Error::database(format!("blanking {}.{column}", entry.table)))?
                .rows_affected();
            credentials_blanked.push((format!("{}.{column}", entry.table), rows));
        }
    }
    let at: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *transaction)
        .await
        .map_err(Error::database("reading the time"))?;
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (id bigserial PRIMARY KEY, neutralized_at timestamptz NOT NULL, \
         source_database text NOT NULL, neutralized_as text NOT NULL)"
    );
    sqlx::query(AssertSqlSafe(create))
        .execute(&mut *transaction)
        .await
        .map_err(Error::database("creating the neutralization marker table"))?;
    let insert =
        format!("INSERT INTO {MARKER_TABLE} (neutralized_at, source_database, neutralized_as) VALUES ($1, $2, $3)");
    sqlx::query(AssertSqlSafe(insert))
        .bind(at)
        .bind(source)
        .bind(copy)
        .execute(&mut *transaction)
        .await
        .map_err(Error::database("marking the database as neutralized"))?;
    transaction.commit().await.map_err(Error::database("committing the neutralization"))?;
    Ok(Neutralized {
        source_database: source.to_string(),
        at,
        crons_disabled,
        queued_tasks_removed,
        credentials_blanked,
    })
}

/// Everything still live in the database `connection` is connected to; empty for a
/// neutralized database.
pub async fn still_live(connection: &mut PgConnection) -> Result<Vec<StillLive>> {
    let mut live = Vec::new();
    let crons: Vec<(i64, String)> =
        sqlx::query_as("SELECT id::bigint, coalesce(method, '')::text FROM ir_cron WHERE active ORDER BY id")
            .fetch_all(&mut *connection)
            .await
            .map_err(Error::database("reading the active scheduled actions"))?;
    live.extend(crons.into_iter().map(|(id, method)| StillLive::ActiveCron { id, method }));
    let tasks: Vec<(i64, String)> = sqlx::query_as("SELECT id::bigint, name::text FROM ir_queue ORDER BY id")
        .fetch_all(&mut *connection)
        .await
        .map_err(Error::database("reading the task queue"))?;
    live.extend(tasks.into_iter().map(|(id, name)| StillLive::QueuedTask { id, name }));
    let activated = activated_modules(connection).await?;
    for (entry, columns) in present_credentials(connection, &activated).await? {
        for column in columns {
            let column_sql = quote_identifier(column);
            let sql = format!(
                "SELECT count(*) FROM {} WHERE {column_sql} IS NOT NULL AND {column_sql} <> ''",
                quote_identifier(entry.table)
            );
            let rows: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(&mut *connection)
                .await
                .map_err(Error::database(format!("looking for credentials in {}.{column}", entry.table)))?;
            if rows > 0 {
                live.push(StillLive::Credential {
                    module: entry.module.to_string(),
                    table: entry.table.to_string(),
                    column: column.to_string(),
                    rows: rows as u64,
                });
            }
        }
    }
    let marked = match table_exists(connection, MARKER_TABLE).await? {
        false => false,
        true => sqlx::query_scalar(AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM {MARKER_TABLE})")))
            .fetch_one(&mut *connection)
            .await
            .map_err(Error::database("reading the neutralization marker"))?,
    };
    if !marked {
        live.push(StillLive::NoMarker);
    }
    Ok(live)
}

/// The check of the contract: `Ok` for a neutralized database, [`Error::StillLive`] naming
/// everything still live otherwise.
pub async fn verify(connection: &mut PgConnection) -> Result<()> {
    let live = still_live(connection).await?;
    if live.is_empty() { Ok(()) } else { Err(Error::StillLive(live)) }
}

async fn activated_modules(connection: &mut PgConnection) -> Result<BTreeSet<String>> {
    Ok(sqlx::query_scalar("SELECT name::text FROM ir_module WHERE state = 'activated'")
        .fetch_all(connection)
        .await
        .map_err(Error::database("reading the activated modules"))?
        .into_iter()
        .collect())
}

async fn table_exists(connection: &mut PgConnection, table: &str) -> Result<bool> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("public.{}", quote_identifier(table)))
        .fetch_one(connection)
        .await
        .map_err(Error::database(format!("looking for table `{table}`")))
}

/// The catalogue's entries with the credential columns this database has. An activated module
/// whose columns are all missing is an error: its secrets are somewhere the catalogue does not
/// know, and a copy is not proven safe.
async fn present_credentials(
    connection: &mut PgConnection,
    activated: &BTreeSet<String>,
) -> Result<Vec<(&'static IntegrationCredentials, Vec<&'static str>)>> {
    let mut present = Vec::new();
    for entry in INTEGRATION_CREDENTIALS {
        let existing: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1",
        )
        .bind(entry.table)
        .fetch_all(&mut *connection)
        .await
        .map_err(Error::database(format!("reading the columns of `{}`", entry.table)))?;
        let columns: Vec<&'static str> =
            entry.columns.iter().copied().filter(|column| existing.iter().any(|e| e == column)).collect();
        if columns.is_empty() && activated.contains(entry.module) {
            return Err(Error::Invalid(format!(
                "module `{}` is activated but none of its known credential columns ({}.{}) exists: \
                 the neutralization catalogue does not know this series yet",
                entry.module,
                entry.table,
                entry.columns.join(", ")
            )));
        }
        if !columns.is_empty() {
            present.push((entry, columns));
        }
    }
    Ok(present)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_well_formed() {
        let mut seen = BTreeSet::new();
        for entry in INTEGRATION_CREDENTIALS {
            assert!(!entry.columns.is_empty(), "{entry:?}");
            for name in std::iter::once(&entry.table).chain(entry.columns) {
                assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name}");
            }
            for column in entry.columns {
                assert!(seen.insert((entry.table, *column)), "{}.{column} listed twice", entry.table);
            }
        }
    }

    #[test]
    fn still_live_things_are_named() {
        let credential = StillLive::Credential { module: "m".into(), table: "t".into(), column: "c".into(), rows: 2 };
        assert_eq!(credential.to_string(), "m: t.c still holds a credential in 2 row(s)");
        let error = Error::StillLive(vec![
            StillLive::ActiveCron { id: 3, method: "ir.trigger|trigger_time".into() },
            StillLive::NoMarker,
        ]);
        let message = error.to_string();
        assert!(message.contains("scheduled action 3 (ir.trigger|trigger_time) is active"), "{message}");
        assert!(message.contains("not marked as neutralized"), "{message}");
    }
}
