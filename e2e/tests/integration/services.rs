//! The private PostgreSQL and Redis servers are real: data goes through a real connection and
//! comes back.

use e2e::TestEnv;
use redis::AsyncCommands;
use sqlx::{Connection, PgConnection, Row};

#[tokio::test]
async fn postgres_and_redis_are_real() {
    let env = TestEnv::shared().await;

    let postgres = env.postgres().await;
    let database = format!("smoke_{}", std::process::id());
    postgres.create_database(&database).await.unwrap();
    let mut db = PgConnection::connect(&postgres.url(&database)).await.unwrap();
    sqlx::query("CREATE TABLE seats (email text PRIMARY KEY, assigned timestamptz NOT NULL DEFAULT now())")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO seats (email) VALUES ($1), ($2)")
        .bind("ada@example.com")
        .bind("grace@example.com")
        .execute(&mut db)
        .await
        .unwrap();
    let row =
        sqlx::query("SELECT count(*) AS n, string_agg(email, ',' ORDER BY email) AS emails, version() AS v FROM seats")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(row.get::<i64, _>("n"), 2);
    assert_eq!(row.get::<String, _>("emails"), "ada@example.com,grace@example.com");
    assert!(row.get::<String, _>("v").starts_with("PostgreSQL "));
    // A constraint only a real server enforces.
    let duplicate = sqlx::query("INSERT INTO seats (email) VALUES ('ada@example.com')").execute(&mut db).await;
    let error = duplicate.unwrap_err();
    assert_eq!(error.as_database_error().and_then(|e| e.code()).as_deref(), Some("23505"));
    db.close().await.unwrap();

    let redis = redis::Client::open(env.redis_url().await).unwrap();
    let mut connection = redis.get_multiplexed_async_connection().await.unwrap();
    let key = format!("smoke:{}", std::process::id());
    let _: () = connection.set_ex(&key, "seats=2", 60).await.unwrap();
    let value: String = connection.get(&key).await.unwrap();
    assert_eq!(value, "seats=2");
    let ttl: i64 = connection.ttl(&key).await.unwrap();
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut connection).await.unwrap();
    assert!(info.contains("redis_version:"));
}
