//! `tenantry-agent`'s contract with a Job: one JSON document on standard output, exit 2 for bad
//! usage or input (nothing started), exit 1 for a refusal, the database URL never printed, and the
//! same document in the result file a Job reads (its termination message).

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

/// How a Kubernetes Job runs a backup: under the operator's id, its outcome also written to a
/// result file (the termination message) on one line. The Job's pod lost and the backup run
/// again in a new one (a fresh journal): the same backup, not a second.
#[tokio::test]
async fn a_job_backs_up_under_its_own_id_and_reads_the_outcome_from_the_result_file() {
    let tryton = tryton("7.0").await;
    let version = tryton.install.version().unwrap();
    let database = tryton.copy_of_template("cli_backup").await;
    let scratch = tempfile::tempdir().unwrap();
    let backups = scratch.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let store = format!("file://{}", backups.display());
    let recipient = erp_agent::key::BackupKey::generate().recipient().to_string();
    let agent = |subcommand: &str, args: &[&str], pod: &str| -> (Output, std::path::PathBuf) {
        let result = scratch.path().join(format!("{pod}-result"));
        let output = Command::new(AGENT)
            .arg(subcommand)
            .args(["--tenant", "acme-cli-job", "--store", &store])
            .args(args)
            .arg("--result-file")
            .arg(&result)
            .env("TENANTRY_AGENT_DATABASE_URL", tryton.postgres.url("postgres"))
            .env("TENANTRY_AGENT_BACKUP_ID", "job-backup-1")
            .output()
            .unwrap();
        (output, result)
    };
    let backup = |pod: &str, extra: &[&str]| {
        let journal = scratch.path().join(format!("{pod}-journal.json"));
        let mut args = vec![
            "--database",
            database.as_str(),
            "--erp-version",
            &version,
            "--recipient",
            &recipient,
            "--journal",
            journal.to_str().unwrap(),
            "--filestore",
            tryton.store.root().to_str().unwrap(),
            "--pg-bin-dir",
            tryton.postgres.bin_dir().to_str().unwrap(),
        ];
        args.extend(extra);
        agent("backup", &args, pod)
    };
    let result = |path: &std::path::Path| -> serde_json::Value {
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        serde_json::from_str(&text).unwrap()
    };

    let (output, file) = backup("pod-1", &[]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let first = json(&output);
    assert_eq!(first["backup_id"], "job-backup-1");
    assert!(first["fingerprint"]["tables"].as_u64().unwrap() > 0, "{first}");
    assert!(first["fingerprint"]["rows"].as_u64().unwrap() > 0, "{first}");
    assert_eq!(result(&file), first, "the result file holds the document");

    let (output, file) = backup("pod-2", &[]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(json(&output), first, "the stored backup, not a new one");
    assert_eq!(result(&file), first);
    let (output, _) = agent("list", &[], "list");
    let listed = json(&output);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0], first);

    // An error is written too; an invalid id is bad input (exit 2) and starts nothing.
    let (output, file) = backup("pod-3", &["--backup-id", "../x"]);
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(result(&file)["error"]["kind"], json(&output)["error"]["kind"]);
    // A result file that cannot be written changes nothing of the outcome.
    let output = Command::new(AGENT)
        .args(["list", "--tenant", "acme-cli-job", "--store", &store])
        .arg("--result-file")
        .arg(scratch.path().join("missing").join("result"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(json(&output), listed);
    assert!(String::from_utf8_lossy(&output.stderr).contains("result file"));
}
