//! The real-data fixture of `e2e::tryton::fixture`, checked against what it was asked to make.

use crate::common;

use std::time::Instant;

use e2e::tryton::fixture::{self, FixtureSize};

#[tokio::test]
async fn fixture_makes_the_data_it_was_asked_for() {
    let tryton = common::tryton("7.0").await;
    let size = FixtureSize::small();
    let read = fixture::read_back(&tryton.install, &tryton.config, tryton.template.as_str()).await.unwrap();
    // The company's own party and address come on top of the customers'.
    assert_eq!(read.companies, 1);
    assert_eq!(read.parties, u64::from(size.parties) + 1);
    assert_eq!(read.addresses, u64::from(size.parties) + 1);
    assert_eq!(read.products, u64::from(size.products));
    assert_eq!(read.sales, u64::from(size.sales));
    assert_eq!(read.sale_lines, u64::from(size.sales * size.lines_per_sale));
    assert_eq!(read.attachments, u64::from(size.attachments));
    assert_eq!(read.attachment_bytes, u64::from(size.attachments * size.attachment_bytes));
    // 10.00 + 11.07 + 12.14 + 13.21
    assert_eq!(read.list_price_sum.parse::<f64>().unwrap(), 46.42, "{}", read.list_price_sum);
    let mut connection = tryton.server.connect(tryton.template.as_str()).await.unwrap();
    let confirmed: i64 = sqlx::query_scalar("SELECT count(*) FROM sale_sale WHERE state <> 'draft'")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(confirmed, i64::from(size.confirmed_sales));
}

#[tokio::test]
async fn bulk_sales_are_added_by_sql() {
    let tryton = common::tryton("7.0").await;
    let database = common::unique_name("bulk");
    tryton.install.create_database(tryton.postgres, &tryton.config, database.as_str()).await.unwrap();
    fixture::activate_modules(&tryton.install, &tryton.config, database.as_str()).await.unwrap();
    let size = FixtureSize { bulk_sales: 2_000, bulk_lines_per_sale: 10, ..FixtureSize::small() };
    let started = Instant::now();
    fixture::create(&tryton.install, &tryton.config, database.as_str(), &size).await.unwrap();
    let created = started.elapsed();
    let read = fixture::read_back(&tryton.install, &tryton.config, database.as_str()).await.unwrap();
    assert_eq!(read.sales, u64::from(size.sales) + 2_000);
    assert_eq!(read.sale_lines, u64::from(size.sales * size.lines_per_sale) + 20_000);
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    let bytes: i64 =
        sqlx::query_scalar("SELECT pg_total_relation_size('sale_line') + pg_total_relation_size('sale_sale')")
            .fetch_one(&mut connection)
            .await
            .unwrap();
    eprintln!("fixture with 20,000 bulk lines: {created:.1?}; sale tables {bytes} bytes ({} per line)", bytes / 20_012);
}

/// The benchmark's tenant (1 GiB of table data and 200 MiB of attachments unless
/// `TENANTRY_FIXTURE_TABLE_MIB` / `TENANTRY_FIXTURE_ATTACHMENT_MIB` say otherwise), checked and
/// timed. Minutes: run by hand with `--ignored`.
#[tokio::test]
#[ignore = "minutes and gigabytes: run by hand"]
async fn benchmark_sized_fixture() {
    let mib = |variable: &str, default: u64| -> u64 {
        std::env::var(variable).ok().and_then(|v| v.parse().ok()).unwrap_or(default) << 20
    };
    let size =
        FixtureSize::benchmark(mib("TENANTRY_FIXTURE_TABLE_MIB", 1024), mib("TENANTRY_FIXTURE_ATTACHMENT_MIB", 200));
    let tryton = common::tryton("7.0").await;
    let database = common::unique_name("benchmark");
    tryton.install.create_database(tryton.postgres, &tryton.config, database.as_str()).await.unwrap();
    fixture::activate_modules(&tryton.install, &tryton.config, database.as_str()).await.unwrap();
    let started = Instant::now();
    fixture::create(&tryton.install, &tryton.config, database.as_str(), &size).await.unwrap();
    let created = started.elapsed();
    let read = fixture::read_back(&tryton.install, &tryton.config, database.as_str()).await.unwrap();
    assert_eq!(read.sales, u64::from(size.sales) + size.bulk_sales);
    assert_eq!(read.attachment_bytes, u64::from(size.attachments) * u64::from(size.attachment_bytes));
    let mut connection = tryton.server.connect(database.as_str()).await.unwrap();
    let bytes: i64 =
        sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(&mut connection).await.unwrap();
    let inventory = tryton.store.inventory(database.as_str()).await.unwrap();
    eprintln!(
        "benchmark fixture: {size:?}\n  created in {created:.1?}, read back in {:.1?}; database {} MiB, file store {} MiB in {} files",
        started.elapsed() - created,
        bytes >> 20,
        inventory.bytes >> 20,
        inventory.files
    );
}

/// The fixture, the fingerprint and the neutralization contract on every supported series
/// (a minute or two each): run by hand with `--ignored` when a series is added.
#[tokio::test]
#[ignore = "every series: about ten minutes"]
async fn fixture_and_neutralization_work_on_every_supported_series() {
    for series in e2e::tryton::SUPPORTED_SERIES {
        let started = Instant::now();
        let tryton = common::tryton(series).await;
        let read = fixture::read_back(&tryton.install, &tryton.config, tryton.template.as_str()).await.unwrap();
        let size = FixtureSize::small();
        assert_eq!((read.sales, read.sale_lines), (u64::from(size.sales), u64::from(size.sales * size.lines_per_sale)));
        assert_eq!(read.attachment_bytes, u64::from(size.attachments * size.attachment_bytes), "{series}");
        let copy = tryton.copy_of_template("every_series").await;
        let mut connection = tryton.server.connect(copy.as_str()).await.unwrap();
        let fingerprint = erp_agent::fingerprint::read(&mut connection).await.unwrap();
        assert!(fingerprint.modules.contains("sale") && fingerprint.modules.contains("company"), "{series}");
        erp_agent::neutralize::neutralize(&mut connection, copy.as_str(), tryton.template.as_str()).await.unwrap();
        erp_agent::neutralize::verify(&mut connection).await.unwrap();
        eprintln!("Tryton {series}: fixture, fingerprint and neutralization in {:.1?}", started.elapsed());
    }
}
