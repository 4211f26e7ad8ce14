//! Backups as Kubernetes objects, on the real node: the schedule creates `TenantBackup`s, their
//! Jobs run the ERP agent's image beside the tenant's real Tryton database and store the
//! archives in the environment's S3-protocol server, retention deletes objects and their
//! archives, a held backup stays until released.

use crate::common;
use crate::real_erp::{READY_TIMEOUT, VERSION, create_party, login, real_node_placement, spec};

use std::time::Duration;

use e2e::TestEnv;
use e2e::wait::{until, until_deleted};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tenant_operator::api::backup::{BackupKind, BackupPhase, TenantBackup, TenantBackupSpec};
use tenant_operator::api::{
    BackupStorageSpec, BackupsSpec, Phase, RetentionSpec, Tenant, condition, labels, namespace_of,
};
use tenantry_contract::schedule::BackupSchedule;

/// A backup of a small Tryton database: the agent's image starts, dumps, uploads, reads back.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(300);

/// The provider's Secret with the store's credentials, in a namespace standing for the
/// operator's own.
async fn store_credentials(client: &Client, namespace: &str, s3: &e2e::s3_server::S3Endpoint) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "backup-store"},
        "stringData": {
            "AWS_ACCESS_KEY_ID": s3.access_key_id,
            "AWS_SECRET_ACCESS_KEY": s3.secret_access_key,
            "AWS_REGION": s3.region,
            "AWS_ENDPOINT": s3.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
        },
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
}

async fn completed(backups: &Api<TenantBackup>, name: &str) -> TenantBackup {
    until(backups, name, "Completed", BACKUP_TIMEOUT, |backup: Option<&TenantBackup>| {
        let status = backup.and_then(|b| b.status.as_ref());
        if let Some(status) = status.filter(|s| s.phase == Some(BackupPhase::Failed)) {
            panic!("backup {name} failed: {:?}", status.message);
        }
        status.is_some_and(|s| s.phase == Some(BackupPhase::Completed))
    })
    .await
}

async fn gone(backups: &Api<TenantBackup>, name: &str) {
    until_deleted(backups, name, BACKUP_TIMEOUT).await;
}

#[tokio::test]
async fn scheduled_backup_runs_and_retention_prunes() {
    let env = TestEnv::shared().await;
    let client = env.client().await;
    let s3 = env.s3().await.clone();
    let bucket = format!("backups-{:06x}", rand::random::<u32>() & 0xff_ffff);
    s3.create_bucket(&bucket).unwrap();
    let provider = env.namespace(&client, "provider").await;
    store_credentials(&client, &provider, &s3).await;
    let store_port: i32 = s3.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let operator = common::start_with(|config| {
        config.placement = real_node_placement();
        config.operator_namespace = provider.clone();
        config.backup_store_ports = vec![store_port];
    })
    .await;

    // A tenant with daily backups, keeping one day's newest.
    let name = operator.name("backups");
    let mut tenant = spec(false);
    tenant.backups = Some(BackupsSpec {
        schedule: "0 3 * * *".into(),
        retention: RetentionSpec { daily: 1, ..Default::default() },
        storage: BackupStorageSpec { url: format!("s3://{bucket}/tenants"), secret_name: Some("backup-store".into()) },
    });
    operator.create(&name, tenant).await;
    operator.wait_phase_within(&name, Phase::Ready, READY_TIMEOUT).await;
    let session = login(&client, &namespace_of(&name), "production").await;
    create_party(&session, "Backed Up Ltd").await;

    // 1. The schedule's first backup comes at once: the latest slot, which the new tenant has
    // not had.
    let backups: Api<TenantBackup> = Api::all(client.clone());
    let slot = BackupSchedule::parse("0 3 * * *").unwrap().latest_at_or_before(chrono::Utc::now()).unwrap();
    let scheduled_name = format!("{name}-scheduled-{}", slot.format("%Y%m%dt%H%Mz"));
    let scheduled = completed(&backups, &scheduled_name).await;
    assert_eq!(scheduled.spec.kind, BackupKind::Scheduled);
    let status = scheduled.status.unwrap();
    assert!(status.archive_bytes.unwrap_or(0) > 0 && status.data_bytes.unwrap_or(0) > 0, "{status:?}");
    assert!(status.tables.unwrap_or(0) > 50 && status.rows.unwrap_or(0) > 0, "a real Tryton database: {status:?}");
    assert_eq!(status.erp_version.as_deref(), Some(VERSION));
    assert_eq!(status.sha256.as_ref().map(String::len), Some(64));
    let scheduled_id = status.backup_id.unwrap();
    let prefix = format!("tenants/{name}/production/");
    assert_eq!(status.location.as_deref(), Some(format!("s3://{bucket}/{prefix}{scheduled_id}").as_str()));
    let keys = s3.keys(&bucket, &prefix).unwrap();
    assert!(keys.iter().any(|k| k.starts_with(&format!("{prefix}{scheduled_id}/archive"))), "{keys:?}");
    // The Tenant says so, and its backups are current.
    let tenants: Api<Tenant> = Api::all(client.clone());
    let current = |tenant: Option<&Tenant>| {
        let status = tenant.and_then(|t| t.status.as_ref());
        let last = status.and_then(|s| s.backups.as_ref()).and_then(|b| b.last_successful.clone());
        let condition = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == condition::BACKUPS_CURRENT));
        last.as_deref() == Some(scheduled_name.as_str()) && condition.is_some_and(|c| c.status == "True")
    };
    until(&tenants, &name, "backups current", BACKUP_TIMEOUT, current).await;
    // The Job is gone once its outcome is on record.
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &namespace_of(&name));
    until_deleted(&jobs, &format!("backup-{}", scheduled_id.to_ascii_lowercase()), BACKUP_TIMEOUT).await;

    // 2. A manual backup: retention (one day's newest) then deletes the scheduled one, object
    // and archive.
    let manual_name = format!("{name}-manual");
    let mut manual = TenantBackup::new(
        &manual_name,
        TenantBackupSpec {
            tenant: name.clone(),
            environment: "production".into(),
            kind: BackupKind::Manual,
            operation: None,
            slot: None,
            hold: false,
        },
    );
    manual.metadata.labels = Some([(labels::TENANT.to_string(), name.clone())].into());
    backups.create(&PostParams::default(), &manual).await.unwrap();
    let manual_id = completed(&backups, &manual_name).await.status.unwrap().backup_id.unwrap();
    gone(&backups, &scheduled_name).await;
    let keys = s3.keys(&bucket, &prefix).unwrap();
    assert!(!keys.iter().any(|k| k.contains(&scheduled_id)), "the pruned backup's archive is gone: {keys:?}");
    assert!(keys.iter().any(|k| k.contains(&manual_id)), "the kept backup's archive stays: {keys:?}");

    // 3. A held backup's deletion waits for the hold's release; then the archive goes.
    let hold = |hold: bool| json!({"spec": {"hold": hold}});
    backups.patch(&manual_name, &PatchParams::default(), &Patch::Merge(&hold(true))).await.unwrap();
    backups.delete(&manual_name, &DeleteParams::default()).await.unwrap();
    let held = |backup: Option<&TenantBackup>| {
        backup.and_then(|b| b.status.as_ref()).and_then(|s| s.message.as_deref()).is_some_and(|m| m.starts_with("held"))
    };
    until(&backups, &manual_name, "held", BACKUP_TIMEOUT, held).await;
    assert!(s3.keys(&bucket, &prefix).unwrap().iter().any(|k| k.contains(&manual_id)), "a held archive stays");
    backups.patch(&manual_name, &PatchParams::default(), &Patch::Merge(&hold(false))).await.unwrap();
    gone(&backups, &manual_name).await;
    let keys = s3.keys(&bucket, &prefix).unwrap();
    assert!(!keys.iter().any(|k| k.contains(&manual_id)), "released and deleted: {keys:?}");

    // 4. A tenant deleted with its data (`deletionPolicy: Delete`) takes its backups along,
    // archives included (a backup left without the namespace's key could never be read).
    operator.patch_spec(&name, json!({"deletionPolicy": "Delete"})).await;
    tenants.delete(&name, &DeleteParams::default()).await.unwrap();
    until_deleted(&tenants, &name, BACKUP_TIMEOUT).await;
    let left: Vec<String> = backups
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|b| b.spec.tenant == name)
        .map(|b| b.name_any())
        .collect();
    assert!(left.is_empty(), "backups outlived their deleted tenant: {left:?}");
    let keys = s3.keys(&bucket, &prefix).unwrap();
    assert!(keys.is_empty(), "archives outlived their deleted tenant: {keys:?}");
}
