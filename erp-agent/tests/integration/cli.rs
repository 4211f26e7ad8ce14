//! `tenantry-agent`'s contract with a Job: one JSON document on standard output, exit 2 for bad
//! usage or input (nothing started), exit 1 for a refusal, and the database URL never printed.

use crate::common;

use std::process::{Command, Output};

use common::tryton;

const AGENT: &str = env!("CARGO_BIN_EXE_tenantry-agent");

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

#[tokio::test]
async fn the_agent_answers_in_json_with_exit_codes_a_job_can_act_on() {
    let tryton = tryton("7.0").await;
    let version = tryton.install.version().unwrap();
    let database = tryton.copy_of_template("cli").await;
    let url = tryton.postgres.url("postgres");
    let agent = |subcommand: &str, args: &[&str]| -> Output {
        Command::new(AGENT)
            .arg(subcommand)
            .args(["--tenant", "acme-cli", "--database", database.as_str()])
            .arg("--filestore")
            .arg(tryton.store.root())
            .arg("--pg-bin-dir")
            .arg(tryton.postgres.bin_dir())
            .args(args)
            .env("TENANTRY_AGENT_DATABASE_URL", &url)
            .output()
            .unwrap()
    };

    // The upgrade plan of a real database: every hop to 8.2, changing nothing.
    let output = agent("plan", &["--erp-version", &version, "--to", "8.2.0"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let plan = json(&output);
    let hops: Vec<String> = plan["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hop| format!("{}-{}", hop["from"].as_str().unwrap(), hop["to"].as_str().unwrap()))
        .collect();
    assert_eq!(hops, ["7.0-7.2", "7.2-7.4", "7.4-7.6", "7.6-7.8", "7.8-8.0", "8.0-8.2"]);

    // A downgrade is refused (exit 1, a JSON error naming why), and so is a database that is
    // not neutralized.
    let output = agent("plan", &["--erp-version", &version, "--to", "6.8.0"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(json(&output)["error"]["message"].as_str().unwrap().contains("6.8"), "{}", json(&output));
    let output = agent("check-neutralized", &["--erp-version", &version]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json(&output)["error"]["kind"], "still-live");

    // Bad input: exit 2 and nothing started; the URL (and its password) is never printed.
    let output = agent("plan", &["--erp-version", "seven", "--to", "8.2.0"]);
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stdout));
    let scratch = tempfile::tempdir().unwrap();
    let output = Command::new(AGENT)
        .current_dir(scratch.path())
        .args(["restore", "--tenant", "t", "--database", "d", "--filestore", "files", "--erp-version", "7.0.1"])
        .arg("--store")
        .arg(format!("file://{}", scratch.path().join("backups").display()))
        .args(["--key-file", "missing.key", "--backup", "x"])
        .args(["--operation", "op", "--journal", "journal.json", "--erp-stopped"])
        .env("TENANTRY_AGENT_DATABASE_URL", "postgres://agent:s3cret-pw@127.0.0.1:1/")
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    for stream in [&output.stdout, &output.stderr] {
        assert!(!String::from_utf8_lossy(stream).contains("s3cret-pw"), "the password was printed");
    }
    let help = Command::new(AGENT)
        .args(["restore", "--help"])
        .env("TENANTRY_AGENT_DATABASE_URL", "postgres://a:s3cret-pw@h/")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("s3cret-pw"), "--help shows the URL");
}
