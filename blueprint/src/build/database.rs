//! PostgreSQL: one StatefulSet `postgres` holding every environment's database, its volume, a
//! headless Service, and the Job that creates the databases.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, PersistentVolumeClaim, PodSpec, PodTemplateSpec, Probe, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::common::{
    Component, DATABASE_HOST, DATABASE_PORT, DATABASE_USER, child, labels_for, match_labels, metadata, selector_labels,
    short_hash,
};
use super::pod::{
    JOB_BACKOFF_LIMIT, base_pod_spec, claim_volume, env, libpq_env, mount, read_write_once_claim, resources,
    restricted_container, secret_env,
};
use super::secrets::keys;
use super::{BuildContext, Child, DATABASE_SECRET};
use crate::model::EnvironmentKind;

/// The postgres user of the official image.
const POSTGRES_UID: i64 = 999;
const DATA_DIR: &str = "/var/lib/postgresql/data";
/// The database the image creates at initialisation.
const INITIAL_DATABASE: &str = "production";
/// The volume's name is the one a `volumeClaimTemplates` entry `data` would give the
/// StatefulSet's pod, but it is a plain PVC: a template is immutable, so a plan that grows the
/// database would make every later update of the StatefulSet fail (suspension included), while
/// a PVC's request can grow in place.
pub(crate) const DATA_CLAIM: &str = "data-postgres-0";

/// The data volume, the Service, the StatefulSet and, unless suspended, the db-init Job.
pub(crate) fn children(ctx: &BuildContext) -> Vec<Child> {
    let mut children =
        vec![child(&data_claim(ctx), false), child(&service(ctx), false), child(&stateful_set(ctx), false)];
    // A suspended tenant runs nothing, Jobs included; the Job comes back with the tenant.
    if !ctx.model.suspended {
        children.push(child(&init_job(ctx), true));
    }
    children
}

fn labels(ctx: &BuildContext) -> BTreeMap<String, String> {
    labels_for(ctx.model, Some(Component::Database), None)
}

fn data_claim(ctx: &BuildContext) -> PersistentVolumeClaim {
    read_write_once_claim(ctx, DATA_CLAIM, labels(ctx), &ctx.model.resources.database_storage)
}

/// Headless: the StatefulSet's governing Service, and `postgres` resolves straight to the pod.
fn service(ctx: &BuildContext) -> Service {
    Service {
        metadata: metadata(ctx, DATABASE_HOST, labels(ctx)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(ctx.model, Some(Component::Database), None)),
            ports: Some(vec![ServicePort {
                name: Some("postgres".into()),
                port: DATABASE_PORT,
                target_port: Some(IntOrString::Int(DATABASE_PORT)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn stateful_set(ctx: &BuildContext) -> StatefulSet {
    let model = ctx.model;
    let container = Container {
        name: "postgres".into(),
        image: Some(ctx.images.postgres.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("postgres".into()),
            container_port: DATABASE_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        env: Some(vec![
            secret_env("POSTGRES_USER", DATABASE_SECRET, keys::USERNAME),
            secret_env("POSTGRES_PASSWORD", DATABASE_SECRET, keys::PASSWORD),
            env("POSTGRES_DB", INITIAL_DATABASE),
            // A subdirectory: the volume's root may hold `lost+found`, which initdb refuses.
            env("PGDATA", format!("{DATA_DIR}/pgdata")),
        ]),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(["pg_isready", "-U", DATABASE_USER, "-d", INITIAL_DATABASE].map(String::from).to_vec()),
            }),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            ..Default::default()
        }),
        volume_mounts: Some(vec![mount("data", DATA_DIR, false)]),
        resources: Some(resources(&model.resources.database)),
        security_context: Some(restricted_container()),
        ..Default::default()
    };
    StatefulSet {
        metadata: metadata(ctx, DATABASE_HOST, labels(ctx)),
        spec: Some(StatefulSetSpec {
            replicas: Some(if model.suspended { 0 } else { 1 }),
            service_name: Some(DATABASE_HOST.into()),
            selector: match_labels(selector_labels(model, Some(Component::Database), None)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels(ctx)), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![claim_volume("data", DATA_CLAIM)]),
                    ..base_pod_spec(ctx, POSTGRES_UID)
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates each environment's database, owned by the ERP's user, when missing. Named by the
/// databases it creates, and created once (see [`Child::create_only`]). Idempotent, so it may
/// run again whenever it likes; `production` is included although the image creates it at
/// initialisation, so that a database restored or dropped by hand comes back the same way.
fn init_job(ctx: &BuildContext) -> Job {
    let mut databases: Vec<&str> = ctx.model.environments.iter().map(|e| e.database()).collect();
    databases.sort_unstable();
    databases.dedup();
    let sql: String = databases.iter().map(|database| create_database_sql(database)).collect();
    let mut job_env = libpq_env("postgres");
    job_env.push(env("DB_INIT_SQL", sql));
    let container = Container {
        name: "db-init".into(),
        image: Some(ctx.images.postgres.clone()),
        // `\gexec` is a psql meta-command, which `-c` cannot mix with SQL: the script goes in on
        // standard input. Waiting for the server first spares the Job's retries a slow
        // first start of PostgreSQL.
        command: Some(
            [
                "sh",
                "-c",
                "for attempt in $(seq 1 150); do pg_isready -q && break; sleep 2; done\n\
                 printf '%s\\n' \"$DB_INIT_SQL\" | psql -v ON_ERROR_STOP=1 -f -",
            ]
            .map(String::from)
            .to_vec(),
        ),
        env: Some(job_env),
        // The database's own figures: this Job is its work, and the quota fit check counts it
        // beside the database itself.
        resources: Some(resources(&ctx.model.resources.database)),
        security_context: Some(restricted_container()),
        ..Default::default()
    };
    let labels = labels_for(ctx.model, Some(Component::Job), None);
    let spec = JobSpec {
        backoff_limit: Some(JOB_BACKOFF_LIMIT),
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some(labels.clone()), ..Default::default() }),
            spec: Some(PodSpec {
                containers: vec![container],
                restart_policy: Some("OnFailure".into()),
                ..base_pod_spec(ctx, POSTGRES_UID)
            }),
        },
        ..Default::default()
    };
    Job {
        metadata: metadata(ctx, format!("db-init-{}", short_hash(&databases)), labels),
        spec: Some(spec),
        ..Default::default()
    }
}

/// The names come from [`EnvironmentKind`], never from a user, and are quoted all the same.
fn create_database_sql(database: &str) -> String {
    debug_assert!(
        [EnvironmentKind::Production, EnvironmentKind::Test].iter().any(|kind| kind.name() == database),
        "database names are environment names"
    );
    format!(
        "SELECT 'CREATE DATABASE \"{database}\" OWNER \"{DATABASE_USER}\"' \
         WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{database}')\\gexec\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixture::{Fixture, fixture};

    #[test]
    fn stateful_set_runs_postgres_with_credentials_from_the_secret() {
        let fx = Fixture::new(fixture());
        let set = stateful_set(&fx.ctx());
        let spec = set.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.service_name.as_deref(), Some("postgres"));
        let pod = spec.template.spec.unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("postgres:15"));
        let env: BTreeMap<_, _> = container.env.iter().flatten().map(|e| (e.name.as_str(), e)).collect();
        assert_eq!(
            env["POSTGRES_PASSWORD"].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().name,
            DATABASE_SECRET
        );
        assert_eq!(env["POSTGRES_DB"].value.as_deref(), Some("production"));
        assert_eq!(env["PGDATA"].value.as_deref(), Some("/var/lib/postgresql/data/pgdata"));
        let probe = container.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap().command.clone().unwrap();
        assert_eq!(probe, ["pg_isready", "-U", "erp", "-d", "production"]);
        assert_eq!(pod.volumes.unwrap()[0].persistent_volume_claim.as_ref().unwrap().claim_name, DATA_CLAIM);
        let security = pod.security_context.unwrap();
        assert_eq!((security.run_as_user, security.fs_group), (Some(999), Some(999)));
    }

    #[test]
    fn data_volume_has_the_plans_size() {
        let fx = Fixture::new(fixture());
        let claim = data_claim(&fx.ctx()).spec.unwrap();
        assert_eq!(claim.access_modes.unwrap(), ["ReadWriteOnce"]);
        assert_eq!(claim.resources.unwrap().requests.unwrap()["storage"].0, "20Gi");
    }

    #[test]
    fn service_is_headless() {
        let fx = Fixture::new(fixture());
        let spec = service(&fx.ctx()).spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.ports.unwrap()[0].port, 5432);
    }

    #[test]
    fn init_job_creates_every_database_idempotently_and_is_named_by_them() {
        let fx = Fixture::new(fixture());
        let job = init_job(&fx.ctx());
        let name = job.metadata.name.clone().unwrap();
        assert!(name.starts_with("db-init-") && name.len() == "db-init-".len() + 8, "{name}");
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(10));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("OnFailure"));
        let sql =
            pod.containers[0].env.iter().flatten().find(|e| e.name == "DB_INIT_SQL").unwrap().value.clone().unwrap();
        assert_eq!(
            sql,
            "SELECT 'CREATE DATABASE \"production\" OWNER \"erp\"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'production')\\gexec\n\
             SELECT 'CREATE DATABASE \"test\" OWNER \"erp\"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'test')\\gexec\n"
        );

        let mut model = fixture();
        model.environments.truncate(1);
        let fx = Fixture::new(model);
        assert_ne!(init_job(&fx.ctx()).metadata.name.unwrap(), name);
    }
}
