//! One environment of the ERP: the file store, the update Job, the server and the web client,
//! each with its Service.
//!
//! The server and its update Job run the same image with the same environment and volumes:
//! [`ServerRuntime`] is that common part.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EnvVar, PersistentVolumeClaim, PodAffinity, PodAffinityTerm, PodSpec,
    PodTemplateSpec, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::common::{
    CONFIG_HASH_ANNOTATION, Component, DATABASE_HOST, DATABASE_PORT, DATABASE_USER, VERSION_ANNOTATION, child,
    content_hash, labels_for, match_labels, metadata, names, selector_labels, short_hash,
};
use super::config::{WEB_CONFIG_DIR, WEB_ROOT, server_config, server_config_location, web_config};
use super::pod::{
    JOB_BACKOFF_LIMIT, base_pod_spec, claim_volume, config_map_volume, empty_dir_volume, env, libpq_env,
    liveness_probe, mount, pull_policy, read_write_once_claim, readiness_probe, resources, restricted_container,
    secret_env, secret_volume,
};
use super::secrets::keys;
use super::{BuildContext, Child, DATABASE_SECRET, MASTER_PASSWORD_SECRET};
use crate::api::labels;
use crate::model::Environment;
use crate::profile::{ConfigFormat, Role};

/// The unprivileged user of the nginx image serving the web role of the built-in profiles.
const WEB_PROXY_UID: i64 = 101;
/// The port the web Services expose (the Ingress's backend port).
pub(crate) const WEB_SERVICE_PORT: i32 = 80;
/// Where the master password Secret's files are mounted, in the pods that need them.
const MASTER_PASSWORD_DIR: &str = "/run/secrets/erp-master";
/// Where Odoo's configuration template (the ConfigMap) is mounted; the server reads a copy
/// completed with the master password.
const CONFIG_TEMPLATE_DIR: &str = "/etc/erp-template";
/// Pod label of every pod mounting an environment's file store.
const FILESTORE_LABEL: &str = "tenantry.dev/filestore";

/// The file store, the update Job (unless suspended), the server and the web client.
pub(crate) fn children(ctx: &BuildContext, environment: &Environment) -> Vec<Child> {
    let runtime = ServerRuntime::new(ctx, environment);
    let update = UpdateWork::of(ctx, environment, &runtime);
    let mut children = vec![child(&filestore_claim(ctx, environment), false)];
    // A suspended tenant runs nothing, Jobs included; they come back with the tenant.
    if !ctx.model.suspended
        && let Some(update) = &update
    {
        children.push(child(&update_job(ctx, environment, &runtime, update), true));
    }
    children.push(child(&server_deployment(ctx, environment, &runtime, update.as_ref()), false));
    children.push(child(&service(ctx, environment, Component::Server), false));
    children.push(child(&web_deployment(ctx, environment), false));
    children.push(child(&service(ctx, environment, Component::Web), false));
    children
}

fn filestore_claim(ctx: &BuildContext, environment: &Environment) -> PersistentVolumeClaim {
    read_write_once_claim(
        ctx,
        &names::filestore(environment),
        labels_for(ctx.model, Some(Component::Server), Some(environment)),
        &ctx.model.resources.filestore_storage,
    )
}

/// What the server and its update Job share: image, environment, volumes, and the init
/// containers that prepare the configuration.
struct ServerRuntime {
    image: String,
    image_pull_policy: Option<String>,
    env: Vec<EnvVar>,
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
    init_containers: Vec<Container>,
    /// Pod-template annotations: what the pods read at start, so that a change rolls them.
    annotations: BTreeMap<String, String>,
}

impl ServerRuntime {
    fn new(ctx: &BuildContext, environment: &Environment) -> Self {
        let profile = &ctx.model.profile;
        let image = profile.server.image.reference(&environment.version);
        let (config_dir, config_file) = server_config_location(profile);
        let config = server_config(ctx, environment);
        let mut runtime = Self {
            image: image.clone(),
            image_pull_policy: pull_policy(&profile.server.image),
            env: vec![secret_env("DATABASE_PASSWORD", DATABASE_SECRET, keys::PASSWORD)],
            volumes: vec![
                config_map_volume("config", &names::server_config(environment)),
                claim_volume("filestore", &names::filestore(environment)),
            ],
            mounts: vec![mount("filestore", &profile.data_dir, false)],
            init_containers: Vec::new(),
            annotations: BTreeMap::from([
                (CONFIG_HASH_ANNOTATION.to_string(), content_hash(&config.data)),
                (VERSION_ANNOTATION.to_string(), environment.version.to_string()),
            ]),
        };
        match profile.config_format {
            Some(ConfigFormat::Tryton) => {
                runtime.mounts.push(mount("config", config_dir, true));
                runtime.env.extend([
                    // Kubernetes expands `$(DATABASE_PASSWORD)` from the entry above; the
                    // password is alphanumeric, so it needs no escaping in the URI.
                    env(
                        "TRYTOND_DATABASE__URI",
                        format!("postgresql://{DATABASE_USER}:$(DATABASE_PASSWORD)@{DATABASE_HOST}:{DATABASE_PORT}/"),
                    ),
                    secret_env("TRYTOND_SESSION__SUPER_PWD", MASTER_PASSWORD_SECRET, keys::PASSWORD_HASH),
                    // From 7.8 trytond serves only the databases named at its start (a login to
                    // any other fails); earlier series load them on demand and take it as a
                    // preload. The command line's `-d` of a Job still wins.
                    env("TRYTOND_DATABASE_NAMES", environment.database()),
                ]);
            }
            Some(ConfigFormat::Odoo) => {
                runtime.env.extend([
                    secret_env("PASSWORD", DATABASE_SECRET, keys::PASSWORD),
                    secret_env("PGPASSWORD", DATABASE_SECRET, keys::PASSWORD),
                ]);
                runtime.volumes.extend([
                    empty_dir_volume("config-final"),
                    secret_volume("master-password", MASTER_PASSWORD_SECRET),
                ]);
                runtime.mounts.push(mount("config-final", config_dir, true));
                runtime.init_containers.push(odoo_config_container(ctx, &runtime, &image, config_dir, config_file));
            }
            None => {
                runtime.mounts.push(mount("config", config_dir, true));
                runtime.env.extend(libpq_env(environment.database()));
            }
        }
        runtime
    }

    /// A container of this runtime running `command` (no probes: Jobs and init containers).
    fn container(&self, name: &str, command: Vec<String>, ctx: &BuildContext) -> Container {
        Container {
            name: name.into(),
            image: Some(self.image.clone()),
            image_pull_policy: self.image_pull_policy.clone(),
            command: Some(command),
            env: Some(self.env.clone()),
            volume_mounts: Some(self.mounts.clone()),
            resources: Some(resources(&ctx.model.resources.server)),
            security_context: Some(restricted_container()),
            ..Default::default()
        }
    }
}

/// Odoo reads its master password (`admin_passwd`) only from its configuration file, so an init
/// container writes the final file into an emptyDir: the ConfigMap's, plus that line from the
/// Secret. The file is the user's alone; the password never appears in any object.
///
/// It has the server's resources: an init container's figures count only up to the largest of
/// the pod's containers, so these cost the quota nothing more.
fn odoo_config_container(
    ctx: &BuildContext,
    runtime: &ServerRuntime,
    image: &str,
    config_dir: &str,
    config_file: &str,
) -> Container {
    let script = format!(
        "umask 077\n\
         cp {CONFIG_TEMPLATE_DIR}/{config_file} {config_dir}/{config_file}\n\
         {{ printf 'admin_passwd = '; cat {MASTER_PASSWORD_DIR}/{password}; echo; }} >> {config_dir}/{config_file}\n",
        password = keys::PASSWORD,
    );
    Container {
        name: "config".into(),
        image: Some(image.into()),
        image_pull_policy: runtime.image_pull_policy.clone(),
        command: Some(vec!["sh".into(), "-c".into(), script]),
        volume_mounts: Some(vec![
            mount("config", CONFIG_TEMPLATE_DIR, true),
            mount("config-final", config_dir, false),
            mount("master-password", MASTER_PASSWORD_DIR, true),
        ]),
        resources: Some(resources(&ctx.model.resources.server)),
        security_context: Some(restricted_container()),
        ..Default::default()
    }
}

/// Pod labels of the server and of its Job: the common labels plus the file store they mount.
pub(crate) fn server_pod_labels(
    ctx: &BuildContext,
    environment: &Environment,
    component: Component,
) -> BTreeMap<String, String> {
    let mut labels = labels_for(ctx.model, Some(component), Some(environment));
    labels.insert(FILESTORE_LABEL.into(), names::filestore(environment));
    labels
}

/// The file store is ReadWriteOnce: every pod mounting it (server replicas, update Job) must
/// run on the node that has it attached, or it waits forever for the volume. Requiring to be
/// next to a pod with the same file store does that; the first such pod may go anywhere (the
/// scheduler lets a pod matching its own affinity term start alone).
pub(crate) fn filestore_affinity(ctx: &BuildContext, environment: &Environment) -> Affinity {
    let selector = BTreeMap::from([
        (labels::TENANT.to_string(), ctx.model.name.clone()),
        (FILESTORE_LABEL.to_string(), names::filestore(environment)),
    ]);
    Affinity {
        pod_affinity: Some(PodAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                label_selector: Some(match_labels(selector)),
                topology_key: "kubernetes.io/hostname".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn replicas(ctx: &BuildContext, wanted: i32) -> i32 {
    if ctx.model.suspended { 0 } else { wanted }
}

fn server_deployment(
    ctx: &BuildContext,
    environment: &Environment,
    runtime: &ServerRuntime,
    update: Option<&UpdateWork>,
) -> Deployment {
    let profile = &ctx.model.profile;
    let role = &profile.server;
    let mut init_containers = runtime.init_containers.clone();
    let mut annotations = runtime.annotations.clone();
    if let Some(update) = update {
        init_containers.push(wait_for_update(ctx, environment, update));
        // Another update's work restarts the servers, which then wait for it.
        annotations.insert(UPDATE_ANNOTATION.to_string(), update.hash.clone());
    }
    let container = Container {
        command: non_empty(&role.command),
        args: non_empty(&role.args),
        ports: Some(vec![http_port(role.port)]),
        readiness_probe: Some(readiness_probe(&role.readiness, role.port)),
        liveness_probe: role.liveness.as_ref().map(|probe| liveness_probe(probe, role.port)),
        ..runtime.container("server", Vec::new(), ctx)
    };
    let pod = PodSpec {
        init_containers: non_empty(&init_containers),
        containers: vec![container],
        volumes: Some(runtime.volumes.clone()),
        affinity: Some(filestore_affinity(ctx, environment)),
        ..base_pod_spec(ctx, profile.run_as_user)
    };
    deployment(
        ctx,
        environment,
        Component::Server,
        replicas(ctx, environment.server_replicas),
        server_pod_labels(ctx, environment, Component::Server),
        annotations,
        pod,
    )
}

/// Initialises or updates the environment's database: the profile's update of every module,
/// then, when the tenant has modules, their update (activation). Two containers rather than one
/// `sh -c` chaining them: the second starts only after the first succeeded (init containers run
/// in order, each to completion), no argument needs shell quoting, and images without a shell
/// work too. Named by a hash of its work (version, image, commands) and created once (see
/// [`Child::create_only`]): another version, other modules or another command is a new Job;
/// anything else (seats, resources) leaves the finished one alone. A failed Job stays failed
/// until its work changes or someone deletes it, which makes it run again.
///
/// Its last container marks the database as updated by this work ([`UpdateWork::mark`]), which
/// the servers wait for.
fn update_job(ctx: &BuildContext, environment: &Environment, runtime: &ServerRuntime, update: &UpdateWork) -> Job {
    let model = ctx.model;
    let profile = &model.profile;
    let database = environment.database();
    let mut init_containers = runtime.init_containers.clone();
    init_containers.push(wait_for_database(ctx, database));
    let mut runtime_env = runtime.env.clone();
    let mut mounts = runtime.mounts.clone();
    let mut volumes = runtime.volumes.clone();
    if profile.config_format == Some(ConfigFormat::Tryton) {
        // trytond-admin asks for the admin password when it initialises a database, and reads
        // it from this file instead when set: the admin user gets the master password.
        runtime_env.push(env("TRYTONPASSFILE", format!("{MASTER_PASSWORD_DIR}/{}", keys::PASSWORD)));
        mounts.push(mount("master-password", MASTER_PASSWORD_DIR, true));
        volumes.push(secret_volume("master-password", MASTER_PASSWORD_SECRET));
    }
    let step = |name: &str, command: Vec<String>| Container {
        env: Some(runtime_env.clone()),
        volume_mounts: Some(mounts.clone()),
        ..runtime.container(name, command, ctx)
    };
    init_containers.push(step("update-all", update.update_all.clone()));
    if let Some(update_modules) = &update.update_modules {
        init_containers.push(step("update-modules", update_modules.clone()));
    }
    let name = format!("erp-init-{}-{}", environment.name(), update.hash);
    let main = mark_updated(ctx, environment, update);
    let labels = server_pod_labels(ctx, environment, Component::Job);
    let spec = JobSpec {
        backoff_limit: Some(JOB_BACKOFF_LIMIT),
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels),
                annotations: Some(BTreeMap::from([(VERSION_ANNOTATION.to_string(), environment.version.to_string())])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                init_containers: Some(init_containers),
                containers: vec![main],
                volumes: Some(volumes),
                restart_policy: Some("OnFailure".into()),
                affinity: Some(filestore_affinity(ctx, environment)),
                ..base_pod_spec(ctx, profile.run_as_user)
            }),
        },
        ..Default::default()
    };
    Job {
        metadata: metadata(ctx, name, labels_for(model, Some(Component::Job), Some(environment))),
        spec: Some(spec),
        ..Default::default()
    }
}

/// What an environment's update Job does, and the mark it leaves once done. The servers load
/// the database as the update left it — from 7.8, trytond loads the databases it serves once,
/// at start, so one started before the database was initialised answers every login with
/// `KeyError: 'res.user'` — so they start only after the mark is there.
pub(crate) struct UpdateWork {
    update_all: Vec<String>,
    update_modules: Option<Vec<String>>,
    /// A hash of the work: names the Job, and is in the mark.
    hash: String,
}

impl UpdateWork {
    /// `None` when the profile has no update command (a `custom` one may have none).
    fn of(ctx: &BuildContext, environment: &Environment, runtime: &ServerRuntime) -> Option<Self> {
        let profile = &ctx.model.profile;
        let database = environment.database();
        let update_all = profile.update_all_command(database);
        if update_all.is_empty() {
            return None;
        }
        let update_modules = profile.update_modules_command(database, &ctx.model.modules);
        // `UPDATE_MARK` is part of the work: Jobs made before servers waited for the mark left
        // none, so those environments run their update once more and leave it.
        let work = (
            UPDATE_MARK,
            environment.name(),
            environment.version.to_string(),
            &runtime.image,
            &update_all,
            &update_modules,
        );
        let hash = short_hash(&work);
        Some(Self { update_all, update_modules, hash })
    }

    /// The database's comment once the update is done (`COMMENT ON DATABASE`): metadata of
    /// PostgreSQL's, outside the ERP's tables, that a restore of the ERP's data leaves alone.
    fn mark(&self) -> String {
        format!("{UPDATE_MARK} {}", self.hash)
    }
}

/// The beginning of the mark an update leaves on its database.
const UPDATE_MARK: &str = "tenantry update";
/// Pod annotation of the servers: the hash of the update they wait for.
const UPDATE_ANNOTATION: &str = "tenantry.dev/update";

/// The update Job's last container: marks the database as updated by this work. The names are
/// environment names and the hash is hexadecimal, so nothing needs quoting.
fn mark_updated(ctx: &BuildContext, environment: &Environment, update: &UpdateWork) -> Container {
    let database = environment.database();
    let mut variables = libpq_env(database);
    variables.push(env("UPDATE_MARK_SQL", format!("COMMENT ON DATABASE \"{database}\" IS '{}';", update.mark())));
    Container {
        name: "mark-updated".into(),
        image: Some(ctx.images.postgres.clone()),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            "printf '%s\\n' \"$UPDATE_MARK_SQL\" | psql -v ON_ERROR_STOP=1 -q -f -".into(),
        ]),
        env: Some(variables),
        resources: Some(resources(&ctx.model.resources.server)),
        security_context: Some(restricted_container()),
        ..Default::default()
    }
}

/// The servers' first init container: waits until the database carries the mark of the update
/// it was started for. It waits as long as it takes: a failed update leaves the servers
/// waiting (and the tenant not ready) rather than serving a database in an unknown state.
fn wait_for_update(ctx: &BuildContext, environment: &Environment, update: &UpdateWork) -> Container {
    let mut variables = libpq_env(environment.database());
    variables.push(env("UPDATE_MARK", update.mark()));
    Container {
        name: "wait-for-update".into(),
        image: Some(ctx.images.postgres.clone()),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            "query=\"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()\"\n\
             until [ \"$(psql -qtA -c \"$query\" 2>/dev/null)\" = \"$UPDATE_MARK\" ]; do sleep 2; done"
                .into(),
        ]),
        env: Some(variables),
        resources: Some(resources(&ctx.model.resources.server)),
        security_context: Some(restricted_container()),
        ..Default::default()
    }
}

/// Waits until the environment's database accepts connections, which it does only once the
/// db-init Job created it: the update would otherwise fail and spend the Job's retries. It has
/// the server's resources, like the Job's other containers (an init container costs the quota
/// nothing beyond the pod's largest container).
fn wait_for_database(ctx: &BuildContext, database: &str) -> Container {
    Container {
        name: "wait-for-database".into(),
        image: Some(ctx.images.postgres.clone()),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            "for attempt in $(seq 1 300); do psql -qtA -c 'SELECT 1' >/dev/null 2>&1 && exit 0; sleep 2; done\n\
             echo \"database $PGDATABASE is not reachable\" >&2; exit 1"
                .into(),
        ]),
        env: Some(libpq_env(database)),
        resources: Some(resources(&ctx.model.resources.server)),
        security_context: Some(restricted_container()),
        ..Default::default()
    }
}

fn web_deployment(ctx: &BuildContext, environment: &Environment) -> Deployment {
    let model = ctx.model;
    let profile = &model.profile;
    let role = &profile.web;
    let mut container = Container {
        name: "web".into(),
        image: Some(role.image.reference(&environment.version)),
        image_pull_policy: pull_policy(&role.image),
        command: non_empty(&role.command),
        args: non_empty(&role.args),
        ports: Some(vec![http_port(role.port)]),
        readiness_probe: Some(readiness_probe(&role.readiness, role.port)),
        liveness_probe: role.liveness.as_ref().map(|probe| liveness_probe(probe, role.port)),
        resources: Some(resources(&model.resources.web)),
        security_context: Some(restricted_container()),
        ..Default::default()
    };
    let mut pod = base_pod_spec(ctx, WEB_PROXY_UID);
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut annotations = BTreeMap::from([(VERSION_ANNOTATION.to_string(), environment.version.to_string())]);
    match web_config(ctx, environment) {
        Some(config) => {
            annotations.insert(CONFIG_HASH_ANNOTATION.into(), content_hash(&config.data));
            volumes.push(config_map_volume("web-config", &names::web_config(environment)));
            mounts.push(mount("web-config", WEB_CONFIG_DIR, true));
        }
        None => {
            // A web role brought by the tenant: it runs as the profile's user and is told
            // where the server is.
            pod = base_pod_spec(ctx, profile.run_as_user);
            container.env = Some(vec![env("ERP_SERVER_URL", server_url(ctx, environment))]);
        }
    }
    if let Some(assets) = &profile.web_assets {
        // The web client's files come from their own image (the ERP's, for Tryton) into an
        // emptyDir the proxy serves.
        volumes.push(empty_dir_volume("web-assets"));
        mounts.push(mount("web-assets", WEB_ROOT, true));
        pod.init_containers = Some(vec![Container {
            name: "web-assets".into(),
            image: Some(assets.image.reference(&environment.version)),
            image_pull_policy: pull_policy(&assets.image),
            command: Some(vec!["cp".into(), "-R".into(), format!("{}/.", assets.path), format!("{WEB_ROOT}/")]),
            volume_mounts: Some(vec![mount("web-assets", WEB_ROOT, false)]),
            // The web client's figures: left unset, the LimitRange's default limit (1 CPU)
            // made each web pod count far more against the quota than the plan says.
            resources: container.resources.clone(),
            security_context: Some(restricted_container()),
            ..Default::default()
        }]);
    }
    container.volume_mounts = non_empty(&mounts);
    pod.containers = vec![container];
    pod.volumes = non_empty(&volumes);
    deployment(
        ctx,
        environment,
        Component::Web,
        replicas(ctx, 1),
        labels_for(model, Some(Component::Web), Some(environment)),
        annotations,
        pod,
    )
}

fn server_url(ctx: &BuildContext, environment: &Environment) -> String {
    format!("http://{}:{}", names::server(environment), ctx.model.profile.server.port)
}

fn deployment(
    ctx: &BuildContext,
    environment: &Environment,
    component: Component,
    replicas: i32,
    pod_labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    pod: PodSpec,
) -> Deployment {
    let name = match component {
        Component::Web => names::web(environment),
        _ => names::server(environment),
    };
    Deployment {
        metadata: metadata(ctx, name, labels_for(ctx.model, Some(component), Some(environment))),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: match_labels(selector_labels(ctx.model, Some(component), Some(environment))),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `erp-server-<env>` on the server's port, `erp-web-<env>` on port 80.
fn service(ctx: &BuildContext, environment: &Environment, component: Component) -> Service {
    let (name, role, port): (String, &Role, i32) = match component {
        Component::Web => (names::web(environment), &ctx.model.profile.web, WEB_SERVICE_PORT),
        _ => (names::server(environment), &ctx.model.profile.server, ctx.model.profile.server.port),
    };
    Service {
        metadata: metadata(ctx, name, labels_for(ctx.model, Some(component), Some(environment))),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(ctx.model, Some(component), Some(environment))),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port,
                target_port: Some(IntOrString::Int(role.port)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_port(port: i32) -> ContainerPort {
    ContainerPort {
        name: Some("http".into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// `None` for an empty list, so that the image's own entrypoint and command stay in force.
fn non_empty<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.to_vec())
}

#[cfg(test)]
mod tests;
