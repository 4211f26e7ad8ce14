//! The `control-plane` binary as an operator runs it, each test with its own data directory.

use std::path::Path;
use std::process::{Command, Output};

use control_plane::auth::Role;
use control_plane::config::Settings;
use control_plane::store::Store;

/// The binary with a clean environment: only what the test passes, so the developer's
/// `DATABASE_URL` or `KUBECONFIG` never leaks in.
fn control_plane(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_control-plane"));
    command.env_clear().env("TENANTRY_DATA_DIR", data_dir).env("USER", "tester").env("RUST_LOG", "warn");
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("the control-plane binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn token_issue_prints_only_a_token_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(control_plane(dir.path()).args(["token", "issue", "--role", "provider-admin"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "nothing but the token on stdout: {stdout:?}");

    let keys = Settings::with_data_dir(dir.path()).jwt_keys().unwrap();
    let principal = keys.verify(stdout.trim()).unwrap();
    assert_eq!(
        (principal.role, principal.tenant, principal.subject.as_str()),
        (Role::ProviderAdmin, None, "cli:tester")
    );

    let output = run(control_plane(dir.path()).args([
        "token",
        "issue",
        "--role",
        "tenant-admin",
        "--tenant",
        "acme",
        "--subject",
        "ada@acme.test",
        "--ttl",
        "15m",
    ]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let token = text(&output.stdout);
    let claims = keys.verify_claims(token.trim()).unwrap();
    assert_eq!((claims.tenant.as_deref(), claims.sub.as_str()), (Some("acme"), "ada@acme.test"));
    assert_eq!(claims.exp - claims.iat, 15 * 60);
}

#[test]
fn token_issue_enforces_the_tenant_rules() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (&["--role", "tenant-admin"][..], "must name its tenant"),
        (&["--role", "provider-admin", "--tenant", "acme"][..], "must not name a tenant"),
        (&["--role", "billing-reader", "--tenant", "acme"][..], "must not name a tenant"),
        (&["--role", "tenant-admin", "--tenant", "Not_A_Slug"][..], "not a valid slug"),
        (&["--role", "root"][..], "unknown role"),
        (&["--role", "provider-admin", "--ttl", "forever"][..], "not a duration"),
    ] {
        let output = run(control_plane(dir.path()).args(["token", "issue"]).args(args));
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(output.stdout.is_empty(), "{args:?} printed {:?}", text(&output.stdout));
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

fn write_catalogue(dir: &Path, name: &str, yaml: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path
}

const STARTER: &str = "\
- name: starter
  display_name: Starter
  price_per_seat_month: {minor: 1900, currency: EUR}
  max_seats: 10
  max_concurrent_users: 10
  database_size_limit: 5Gi
  test_environment: false
  module_policy: certified_only
  backup_retention_days: 7
  trial_days: 14
";

#[tokio::test]
async fn plans_import_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let good = write_catalogue(dir.path(), "good.yaml", STARTER);
    let output = run(control_plane(&data).args(["plans", "import"]).arg(&good));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), "starter: created (version 1)");
    let output = run(control_plane(&data).args(["plans", "import"]).arg(&good));
    assert_eq!(text(&output.stdout).trim(), "starter: unchanged (version 1)");

    // A revision of starter next to an invalid plan: neither is imported.
    let revised = STARTER.replace("minor: 1900", "minor: 2100");
    let broken = STARTER.replace("name: starter", "name: broken").replace("max_seats: 10", "max_seats: 0");
    let bad = write_catalogue(dir.path(), "bad.yaml", &format!("{revised}{broken}"));
    let output = run(control_plane(&data).args(["plans", "import"]).arg(&bad));
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("plan \"broken\": max_seats"), "{stderr}");
    assert!(stderr.contains("bad.yaml"), "{stderr}");
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));

    let unknown = write_catalogue(dir.path(), "unknown.yaml", &revised.replace("trial_days", "trial_dayz"));
    let output = run(control_plane(&data).args(["plans", "import"]).arg(&unknown));
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("trial_dayz"), "{}", text(&output.stderr));

    let store = Store::connect(&Settings::with_data_dir(&data).database_url()).await.unwrap();
    let plans = store.plans().await.unwrap();
    assert_eq!(plans.len(), 1, "{plans:?}");
    assert_eq!((plans[0].spec.name.as_str(), plans[0].version), ("starter", 1));
    assert_eq!(plans[0].spec.price_per_seat_month.minor, 1900);

    let revision = write_catalogue(dir.path(), "revised.yaml", &revised);
    let output = run(control_plane(&data).args(["plans", "import"]).arg(&revision));
    assert_eq!(text(&output.stdout).trim(), "starter: revised (version 2)", "{}", text(&output.stderr));
}

#[test]
fn migrate_twice_on_a_fresh_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    for round in 1..=2 {
        let output = run(control_plane(&data).arg("migrate"));
        assert!(output.status.success(), "round {round}: {}", text(&output.stderr));
        assert!(text(&output.stdout).contains("SQLite"), "{}", text(&output.stdout));
    }
    assert!(data.join("control-plane.db").is_file());
}

#[tokio::test]
async fn migrate_twice_on_postgres() {
    let env = e2e::TestEnv::shared().await;
    let postgres = env.postgres().await;
    let database = format!("cli_migrate_{}_{}", std::process::id(), rand::random::<u32>());
    postgres.create_database(&database).await.unwrap();
    let url = postgres.url(&database);
    let dir = tempfile::tempdir().unwrap();
    for round in 1..=2 {
        let output = run(control_plane(dir.path()).env("DATABASE_URL", &url).arg("migrate"));
        assert!(output.status.success(), "round {round}: {}", text(&output.stderr));
        assert!(text(&output.stdout).contains("PostgreSQL"), "{}", text(&output.stdout));
    }
    let store = Store::connect(&url).await.unwrap();
    assert!(store.plans().await.unwrap().is_empty(), "migrating imports no plan");
    assert!(!dir.path().join("control-plane.db").exists(), "no SQLite file with DATABASE_URL");
}

#[test]
fn an_unknown_configuration_key_stops_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_catalogue(dir.path(), "tenantry.yaml", "listen: 127.0.0.1:9\nlisten_port: 9\n");
    let output = run(control_plane(dir.path()).arg("--config").arg(&config).args([
        "token",
        "issue",
        "--role",
        "provider-admin",
    ]));
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(text(&output.stderr).contains("listen_port"), "{}", text(&output.stderr));
}
