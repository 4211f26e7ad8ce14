//! `sql` steps: the step's statements in one transaction, on a connection of their own.

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// How the agent names itself in `pg_stat_activity` (as the database module does), so a
/// session it left is recognisable.
const APPLICATION_NAME: &str = "tenantry-agent";

/// Runs `sql` (one or more statements) in one transaction and returns the rows it changed.
/// The error is PostgreSQL's message; it never contains the connection's password (sqlx's
/// errors do not echo connection options).
pub(super) async fn run_in_one_transaction(connect: &PgConnectOptions, sql: &str) -> Result<u64, String> {
    let options = connect.clone().application_name(APPLICATION_NAME);
    let mut connection =
        PgConnection::connect_with(&options).await.map_err(|e| format!("connecting to the database: {e}"))?;
    let result = async {
        let mut transaction = connection.begin().await?;
        // The statements come from the catalogue (shipped or the provider's), never from a tenant.
        let done = sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut *transaction).await?;
        transaction.commit().await?;
        Ok::<_, sqlx::Error>(done.rows_affected())
    }
    .await;
    // An error above rolled the transaction back (dropping it does); the connection goes either way.
    let _ = connection.close().await;
    result.map_err(|e| e.to_string())
}
