//! The Jobs that run the ERP agent (`tenantry-agent`) for one `TenantBackup`, in the tenant's
//! namespace beside its database: the backup itself, and the deletion of its archive.
//!
//! The agent reaches PostgreSQL through the tenant's Service with the tenant's generated
//! credentials, reads the environment's file store from its volume (read-only, on the node that
//! has it: the same affinity as the server's), encrypts to the recipient of the tenant's backup
//! key and reads the backup back with the key itself (a Secret volume, root's and readable by
//! the pod's group alone: what the agent accepts of a key file). The store's credentials are
//! the copied `backup-storage` Secret, as environment variables. The agent writes its JSON
//! document to the container's termination message, where the operator reads the outcome
//! without reading logs.
//!
//! Jobs are named by the backup's id, so a retry of the operator's step finds the Job it
//! created; a retried pod continues the same backup (the id is given, the store is checked for
//! it first). Exit code 3 (interrupted) and a lost pod are worth a retry; 1 and 2 are not, but a
//! v1.20 Job cannot tell them apart, so the backoff limit is small and a rerun is harmless.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements, SecretEnvSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::BuildContext;
use super::common::{Component, DATABASE_HOST, DATABASE_PORT, labels_for};
use super::erp::{filestore_affinity, server_pod_labels};
use super::pod::{
    base_pod_spec, claim_volume, empty_dir_volume, env, mount, restricted_container, secret_env, secret_volume,
};
use super::secrets::keys;
use crate::api::backup::BackupKind;
use crate::api::labels;
use crate::model::{Backups, Environment};
use tenantry_contract::names::secrets::{BACKUP_KEY, BACKUP_STORAGE, DATABASE};

/// Where the key Secret is mounted.
const KEY_DIR: &str = "/etc/backup-key";
/// The agent's journal: an emptyDir, so a retried pod starts a fresh journal and finds the
/// backup by its id in the store.
const WORK_DIR: &str = "/work";
/// Kubernetes keeps at most 4096 bytes of it; the agent writes a document that fits.
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Tries of a backup's pod: one retry for a lost node or an interrupted run.
const BACKOFF_LIMIT: i32 = 1;
/// A backup that has not finished in this long is stuck (a database of hundreds of GB takes
/// an hour or two).
const ACTIVE_DEADLINE_SECONDS: i64 = 6 * 3600;

/// The agent's figures: the quota counts them with the tenant's other pods. Memory stays bounded
/// whatever the backup's size (streamed; `pg_dump` runs beside).
pub const AGENT_CPU_REQUEST: &str = "100m";
pub const AGENT_CPU_LIMIT: &str = "500m";
pub const AGENT_MEMORY_REQUEST: &str = "128Mi";
pub const AGENT_MEMORY_LIMIT: &str = "384Mi";

/// One backup's part in the Jobs: which object, which id, which environment.
#[derive(Debug, Clone)]
pub struct BackupWork<'a> {
    /// The store's id of the backup (`YYYYMMDDTHHMMSSZ-<hex>`).
    pub backup_id: &'a str,
    pub environment: &'a Environment,
    pub kind: BackupKind,
    /// For a backup before an operation: the operation's name.
    pub operation: Option<&'a str>,
    /// The `TenantBackup` (controller): the Job goes with it.
    pub owner: OwnerReference,
}

/// What a Job of a backup does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentTask {
    /// Take the backup and read it back.
    Backup,
    /// Delete the backup's archive from the store.
    Delete,
}

impl AgentTask {
    /// The Job's name in the tenant's namespace (at most 63 characters, as the `job-name` label
    /// the Job controller puts on its pods must be).
    pub fn job_name(self, backup_id: &str) -> String {
        let id = backup_id.to_ascii_lowercase();
        match self {
            Self::Backup => format!("backup-{id}"),
            Self::Delete => format!("backup-delete-{id}"),
        }
    }
}

/// The Job of `task` for `work`, with the agent image `image`.
pub fn agent_job(ctx: &BuildContext, backups: &Backups, work: &BackupWork, task: AgentTask, image: &str) -> Job {
    let model = ctx.model;
    let profile = &model.profile;
    let environment = work.environment;
    let mut args = match task {
        AgentTask::Backup => vec!["backup".to_string(), "--kind".into(), work.kind.agent_flag().into()],
        AgentTask::Delete => vec!["delete".to_string(), "--backup".into(), work.backup_id.into()],
    };
    if let (AgentTask::Backup, Some(operation)) = (task, work.operation) {
        args.extend(["--for-operation".to_string(), operation.to_string()]);
    }
    let mut environment_variables = vec![
        env("TENANTRY_AGENT_TENANT", &model.name),
        env("TENANTRY_AGENT_ENVIRONMENT", environment.name()),
        env("TENANTRY_AGENT_STORE", &backups.store),
        env("TENANTRY_AGENT_RESULT_FILE", TERMINATION_MESSAGE_PATH),
        env("TENANTRY_AGENT_LOG", "info"),
    ];
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    if task == AgentTask::Backup {
        environment_variables.extend(database_env(environment));
        environment_variables.extend([
            env("TENANTRY_AGENT_ERP_VERSION", environment.version.to_string()),
            env("TENANTRY_AGENT_FILESTORE", &profile.data_dir),
            env("TENANTRY_AGENT_BACKUP_ID", work.backup_id),
            secret_env("TENANTRY_AGENT_RECIPIENT", BACKUP_KEY, keys::RECIPIENT),
            env("TENANTRY_AGENT_KEY_FILE", format!("{KEY_DIR}/{}", keys::KEY)),
            env("TENANTRY_AGENT_JOURNAL", format!("{WORK_DIR}/journal.json")),
        ]);
        mounts.extend([
            mount("filestore", &profile.data_dir, true),
            mount("key", KEY_DIR, true),
            mount("work", WORK_DIR, false),
        ]);
        volumes.extend([
            read_only(claim_volume("filestore", &super::common::names::filestore(environment))),
            secret_volume("key", BACKUP_KEY),
            empty_dir_volume("work"),
        ]);
    }
    let container = Container {
        name: "agent".into(),
        image: Some(image.to_string()),
        args: Some(args),
        env: Some(environment_variables),
        env_from: Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: BACKUP_STORAGE.into(),
                // Stores whose credentials come from the node (a cloud's instance identity).
                optional: Some(backups.credentials_secret.is_none()),
            }),
            ..Default::default()
        }]),
        volume_mounts: Some(mounts).filter(|m| !m.is_empty()),
        resources: Some(agent_resources()),
        security_context: Some(restricted_container()),
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    // The server's labels (its file store's, which the affinity matches, so the pod may also
    // start alone while the server is scaled down) with the Job's component, plus the backup's.
    let mut pod_labels = server_pod_labels(ctx, environment, Component::Job);
    pod_labels.insert(labels::BACKUP.into(), work.backup_id.to_ascii_lowercase());
    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(volumes).filter(|v| !v.is_empty()),
        restart_policy: Some("Never".into()),
        affinity: (task == AgentTask::Backup).then(|| filestore_affinity(ctx, environment)),
        ..base_pod_spec(ctx, profile.run_as_user)
    };
    Job {
        metadata: ObjectMeta {
            name: Some(task.job_name(work.backup_id)),
            namespace: Some(model.namespace.clone()),
            labels: Some(job_labels(ctx, environment, work)),
            owner_references: Some(vec![work.owner.clone()]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            active_deadline_seconds: Some(ACTIVE_DEADLINE_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..Default::default() }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Job's own labels: not the tenant's label, so the Tenant's reconcile, which deletes the
/// tenant's children it did not build, leaves it to its `TenantBackup`.
fn job_labels(ctx: &BuildContext, environment: &Environment, work: &BackupWork) -> BTreeMap<String, String> {
    let mut job = labels_for(ctx.model, Some(Component::Job), Some(environment));
    job.remove(labels::TENANT);
    job.insert(labels::BACKUP.into(), work.backup_id.to_ascii_lowercase());
    job
}

/// The database URL from the generated credentials (alphanumeric, so no escaping), assembled
/// by the kubelet from two Secret variables so that no object holds it in plain text.
fn database_env(environment: &Environment) -> Vec<EnvVar> {
    vec![
        secret_env("DB_USER", DATABASE, keys::USERNAME),
        secret_env("DB_PASSWORD", DATABASE, keys::PASSWORD),
        env(
            "TENANTRY_AGENT_DATABASE_URL",
            format!("postgres://$(DB_USER):$(DB_PASSWORD)@{DATABASE_HOST}:{DATABASE_PORT}/"),
        ),
        env("TENANTRY_AGENT_DATABASE", environment.database()),
    ]
}

fn read_only(mut volume: k8s_openapi::api::core::v1::Volume) -> k8s_openapi::api::core::v1::Volume {
    if let Some(claim) = volume.persistent_volume_claim.as_mut() {
        claim.read_only = Some(true);
    }
    volume
}

fn agent_resources() -> ResourceRequirements {
    let quantities = |cpu: &str, memory: &str| {
        Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ]))
    };
    ResourceRequirements {
        requests: quantities(AGENT_CPU_REQUEST, AGENT_MEMORY_REQUEST),
        limits: quantities(AGENT_CPU_LIMIT, AGENT_MEMORY_LIMIT),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixture::{Fixture, fixture};
    use tenantry_contract::schedule::BackupSchedule;

    fn backups() -> Backups {
        Backups {
            schedule: BackupSchedule::parse("0 3 * * *").unwrap(),
            retention: Default::default(),
            store: "s3://backups/tenants".into(),
            credentials_secret: Some("store".into()),
        }
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "tenantry.dev/v1alpha1".into(),
            kind: "TenantBackup".into(),
            name: "acme-20261207t030000z-0a1b2c3d".into(),
            uid: "uid".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn job(task: AgentTask) -> Job {
        let fixture = Fixture::new(fixture());
        let environment = &fixture.model.environments[0];
        let work = BackupWork {
            backup_id: "20261207T030000Z-0a1b2c3d",
            environment,
            kind: BackupKind::Scheduled,
            operation: None,
            owner: owner(),
        };
        agent_job(&fixture.ctx(), &backups(), &work, task, "tenantry/erp-agent:1")
    }

    fn env_of(job: &Job) -> BTreeMap<String, String> {
        let container = &job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
        container
            .env
            .iter()
            .flatten()
            .map(|e| {
                let value = match (&e.value, &e.value_from) {
                    (Some(v), _) => v.clone(),
                    (None, Some(from)) => {
                        let secret = from.secret_key_ref.as_ref().unwrap();
                        format!("secret:{}/{}", secret.name, secret.key)
                    }
                    _ => String::new(),
                };
                (e.name.clone(), value)
            })
            .collect()
    }

    #[test]
    fn the_backup_job_runs_the_agent_on_the_environment_with_the_given_id() {
        let job = job(AgentTask::Backup);
        assert_eq!(job.metadata.name.as_deref(), Some("backup-20261207t030000z-0a1b2c3d"));
        assert_eq!(job.metadata.owner_references.as_ref().unwrap()[0].kind, "TenantBackup");
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.args.as_ref().unwrap(), &["backup", "--kind", "scheduled"]);
        let env = env_of(&job);
        assert_eq!(env["TENANTRY_AGENT_BACKUP_ID"], "20261207T030000Z-0a1b2c3d");
        assert_eq!(env["TENANTRY_AGENT_DATABASE"], "production");
        assert_eq!(env["TENANTRY_AGENT_STORE"], "s3://backups/tenants");
        assert_eq!(env["TENANTRY_AGENT_RECIPIENT"], "secret:backup-key/recipient");
        assert_eq!(env["TENANTRY_AGENT_FILESTORE"], "/var/lib/trytond/db");
        assert_eq!(env["TENANTRY_AGENT_RESULT_FILE"], TERMINATION_MESSAGE_PATH);
        // No password in the object: the URL is assembled from Secret variables.
        assert_eq!(env["DB_PASSWORD"], "secret:postgres-credentials/password");
        assert!(env["TENANTRY_AGENT_DATABASE_URL"].contains("$(DB_PASSWORD)"));
        assert_eq!(container.env_from.as_ref().unwrap()[0].secret_ref.as_ref().unwrap().name, "backup-storage");
        // The file store read-only, next to the server that has it.
        let filestore = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "filestore").unwrap();
        assert_eq!(filestore.persistent_volume_claim.as_ref().unwrap().read_only, Some(true));
        assert!(pod.affinity.as_ref().unwrap().pod_affinity.is_some());
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(false));
    }

    #[test]
    fn backup_jobs_are_not_the_tenants_children() {
        let job = job(AgentTask::Backup);
        let labels = job.metadata.labels.unwrap();
        assert!(!labels.contains_key(labels::TENANT), "the Tenant's garbage collection would delete it: {labels:?}");
        assert_eq!(labels[labels::BACKUP], "20261207t030000z-0a1b2c3d");
    }

    #[test]
    fn the_delete_job_needs_neither_the_database_nor_the_key() {
        let job = job(AgentTask::Delete);
        assert_eq!(job.metadata.name.as_deref(), Some("backup-delete-20261207t030000z-0a1b2c3d"));
        let env = env_of(&job);
        assert!(!env.contains_key("TENANTRY_AGENT_DATABASE_URL") && !env.contains_key("TENANTRY_AGENT_KEY_FILE"));
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.containers[0].args.as_ref().unwrap(), &["delete", "--backup", "20261207T030000Z-0a1b2c3d"]);
        assert!(pod.volumes.is_none() && pod.affinity.is_none());
    }

    #[test]
    fn job_names_fit_the_label_the_job_controller_gives_its_pods() {
        let id = "20261207T030000Z-0a1b2c3d";
        assert!(AgentTask::Delete.job_name(id).len() <= 63);
    }
}
