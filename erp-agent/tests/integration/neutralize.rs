//! The neutralization contract on real Tryton databases with real data and Tryton's own
//! scheduled actions: `neutralize` then `verify` passes; anything left live fails the check,
//! named.

use crate::common;

use erp_agent::neutralize::{self, StillLive};
use erp_agent::{Error, fingerprint};
use sqlx::PgConnection;

#[tokio::test]
async fn neutralized_copy_passes_the_check() {
    neutralized_copy_passes_the_check_on("7.0").await;
}

/// The newest series: its `ir_cron`, `ir_queue` and `ir_module` columns are the ones the
/// contract reads.
#[tokio::test]
async fn neutralized_copy_passes_the_check_on_8_2() {
    neutralized_copy_passes_the_check_on("8.2").await;
}

async fn neutralized_copy_passes_the_check_on(series: &str) {
    let tryton = common::tryton(series).await;
    let copy = tryton.copy_of_template("neutralize").await;
    let mut connection = tryton.server.connect(copy.as_str()).await.unwrap();
    let credential = with_live_things(&mut connection).await;
    let before = fingerprint::read(&mut connection).await.unwrap();

    // As copied from production, the check fails and says why.
    let live = neutralize::still_live(&mut connection).await.unwrap();
    let crons = live.iter().filter(|l| matches!(l, StillLive::ActiveCron { .. })).count();
    assert!(crons >= 5, "a sale database has Tryton's scheduled actions active: {live:?}");
    // The fixture's confirmed sales queued their processing too.
    let tasks = live.iter().filter(|l| matches!(l, StillLive::QueuedTask { .. })).count();
    assert!(live.iter().any(|l| matches!(l, StillLive::QueuedTask { name, .. } if name == "default")), "{live:?}");
    assert!(live.contains(&credential), "{live:?}");
    assert!(live.contains(&StillLive::NoMarker), "{live:?}");
    assert!(matches!(neutralize::verify(&mut connection).await, Err(Error::StillLive(_))));

    let done = neutralize::neutralize(&mut connection, copy.as_str(), tryton.template.as_str()).await.unwrap();
    assert_eq!(done.crons_disabled, crons as u64);
    assert_eq!(done.queued_tasks_removed, tasks as u64);
    assert!(done.credentials_blanked.contains(&("account_payment_stripe_account.secret_key".to_string(), 1)));
    neutralize::verify(&mut connection).await.expect("a neutralized copy passes the check");

    // The customer's data is untouched: only the queue lost rows, the marker table is new.
    let diff = fingerprint::compare(&before, &fingerprint::read(&mut connection).await.unwrap());
    let shrunk: Vec<&str> = diff.tables_shrunk.iter().map(|s| s.table.as_str()).collect();
    assert_eq!(shrunk, ["ir_queue"], "{diff:?}");
    assert_eq!(diff.tables_added, [neutralize::MARKER_TABLE]);
    assert!(diff.tables_lost.is_empty() && diff.modules_lost.is_empty(), "{diff:?}");
    let production = e2e::tryton::fixture::read_back(&tryton.install, &tryton.config, tryton.template.as_str());
    let copied = e2e::tryton::fixture::read_back(&tryton.install, &tryton.config, copy.as_str());
    let (production, copied) = (production.await.unwrap(), copied.await.unwrap());
    assert_eq!(production, copied);

    // Neutralizing is refused on a connection to another database than the named copy.
    let mut production = tryton.server.connect(tryton.template.as_str()).await.unwrap();
    let refused = neutralize::neutralize(&mut production, copy.as_str(), tryton.template.as_str()).await;
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
    assert!(!neutralize::still_live(&mut production).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_neutralizer_that_leaves_one_cron_active_fails_the_check() {
    let tryton = common::tryton("7.0").await;
    let copy = tryton.copy_of_template("half_neutralized").await;
    let mut connection = tryton.server.connect(copy.as_str()).await.unwrap();
    neutralize::neutralize(&mut connection, copy.as_str(), tryton.template.as_str()).await.unwrap();
    neutralize::verify(&mut connection).await.unwrap();
    // The faulty neutralizer: one scheduled action left on.
    let (id, method): (i64, String) = sqlx::query_as(
        "UPDATE ir_cron SET active = true WHERE id = (SELECT min(id) FROM ir_cron) RETURNING id::bigint, method::text",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    match neutralize::verify(&mut connection).await {
        Err(Error::StillLive(live)) => {
            assert_eq!(live, [StillLive::ActiveCron { id, method: method.clone() }]);
            let message = Error::StillLive(live).to_string();
            assert!(message.contains(&format!("scheduled action {id} ({method}) is active")), "{message}");
        }
        other => panic!("a copy with an active cron passed the check: {other:?}"),
    }
}

/// Adds what production has and a test copy must not: a queued task, and a Stripe account
/// with its secret key. The Stripe module needs Stripe's SDK, so its table is created here
/// with the columns of `account_payment_stripe` (checked against its 7.0 and 8.2 packages).
async fn with_live_things(connection: &mut PgConnection) -> StillLive {
    sqlx::query("INSERT INTO ir_queue (name, data, enqueued_at, create_uid, create_date) VALUES ('default', NULL, now(), 0, now())")
        .execute(&mut *connection)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE account_payment_stripe_account (id serial PRIMARY KEY, name varchar NOT NULL, \
           secret_key varchar NOT NULL, publishable_key varchar NOT NULL, webhook_identifier varchar, \
           webhook_signing_secret varchar); \
         INSERT INTO account_payment_stripe_account (name, secret_key, publishable_key) \
           VALUES ('Shop', 'sk_live_not_a_real_key', 'pk_live_not_a_real_key')",
    )
    .execute(&mut *connection)
    .await
    .unwrap();
    StillLive::Credential {
        module: "account_payment_stripe".into(),
        table: "account_payment_stripe_account".into(),
        column: "secret_key".into(),
        rows: 1,
    }
}
