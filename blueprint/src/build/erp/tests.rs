use super::*;
use crate::build::fixture::{Fixture, custom_fixture, fixture, odoo_fixture};
use crate::model::{EnvironmentKind, TenantModel};
use crate::profile::Profile;

fn environment(model: &TenantModel, kind: EnvironmentKind) -> &Environment {
    model.environments.iter().find(|e| e.kind == kind).unwrap()
}

fn pod(deployment: &Deployment) -> &PodSpec {
    deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn env_of(container: &Container) -> BTreeMap<&str, &EnvVar> {
    container.env.iter().flatten().map(|e| (e.name.as_str(), e)).collect()
}

/// `secret/key` of a variable set from a Secret.
fn secret_ref(var: &EnvVar) -> String {
    let selector = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    format!("{}/{}", selector.name, selector.key)
}

fn mounts_of(container: &Container) -> BTreeMap<&str, &str> {
    container.volume_mounts.iter().flatten().map(|m| (m.name.as_str(), m.mount_path.as_str())).collect()
}

fn job_of(ctx: &BuildContext, kind: EnvironmentKind) -> Option<Job> {
    let environment = environment(ctx.model, kind);
    let runtime = ServerRuntime::new(ctx, environment);
    UpdateWork::of(ctx, environment, &runtime).map(|update| update_job(ctx, environment, &runtime, &update))
}

fn server_of(ctx: &BuildContext, kind: EnvironmentKind) -> Deployment {
    let environment = environment(ctx.model, kind);
    let runtime = ServerRuntime::new(ctx, environment);
    server_deployment(ctx, environment, &runtime, UpdateWork::of(ctx, environment, &runtime).as_ref())
}

#[test]
fn tryton_server_gets_its_secrets_from_the_environment_and_its_files_mounted() {
    let fx = Fixture::new(fixture());
    let deployment = server_of(&fx.ctx(), EnvironmentKind::Production);
    assert_eq!(deployment.metadata.name.as_deref(), Some("erp-server-production"));
    assert_eq!(deployment.spec.as_ref().unwrap().replicas, Some(2));
    let pod = pod(&deployment);
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("tryton/tryton:7.0"));
    assert_eq!(container.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(container.command.as_deref(), Some(&["trytond".to_string()][..]));
    assert_eq!(container.args.clone().unwrap(), ["-c", "/etc/erp/trytond.conf"]);
    assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 8000);

    let env = env_of(container);
    assert_eq!(secret_ref(env["DATABASE_PASSWORD"]), "postgres-credentials/password");
    // DATABASE_PASSWORD comes first, or Kubernetes would not expand it in the URI.
    assert_eq!(container.env.as_ref().unwrap()[0].name, "DATABASE_PASSWORD");
    assert_eq!(
        env["TRYTOND_DATABASE__URI"].value.as_deref(),
        Some("postgresql://erp:$(DATABASE_PASSWORD)@postgres:5432/")
    );
    assert_eq!(secret_ref(env["TRYTOND_SESSION__SUPER_PWD"]), "erp-master-password/password-hash");
    // Without it, a 7.8 or later server refuses every login to the environment's database.
    assert_eq!(env["TRYTOND_DATABASE_NAMES"].value.as_deref(), Some("production"));

    let mounts = mounts_of(container);
    assert_eq!(mounts["config"], "/etc/erp");
    assert_eq!(mounts["filestore"], "/var/lib/trytond/db");
    let volumes: BTreeMap<_, _> = pod.volumes.iter().flatten().map(|v| (v.name.as_str(), v)).collect();
    assert_eq!(volumes["config"].config_map.as_ref().unwrap().name, "erp-config-production");
    assert_eq!(volumes["filestore"].persistent_volume_claim.as_ref().unwrap().claim_name, "filestore-production");

    let readiness = container.readiness_probe.as_ref().unwrap();
    assert_eq!(readiness.tcp_socket.as_ref().unwrap().port, IntOrString::Int(8000));
    assert!(container.liveness_probe.as_ref().unwrap().tcp_socket.is_some());
    assert_eq!(container.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0, "2Gi");
    assert_eq!(pod.service_account_name.as_deref(), Some("tenant-erp"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.security_context.as_ref().unwrap().run_as_user, Some(1000));
}

#[test]
fn server_selector_is_tenant_component_environment_and_pods_carry_it() {
    let fx = Fixture::new(fixture());
    let deployment = server_of(&fx.ctx(), EnvironmentKind::Test);
    let spec = deployment.spec.unwrap();
    let selector = spec.selector.match_labels.unwrap();
    assert_eq!(
        selector,
        BTreeMap::from([
            (labels::COMPONENT.to_string(), "server".to_string()),
            (labels::ENVIRONMENT.to_string(), "test".to_string()),
            (labels::TENANT.to_string(), "acme".to_string()),
        ])
    );
    let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
}

#[test]
fn a_config_or_version_change_rolls_the_server_pods() {
    let annotations = |model: TenantModel| {
        let fx = Fixture::new(model);
        server_of(&fx.ctx(), EnvironmentKind::Production).spec.unwrap().template.metadata.unwrap().annotations.unwrap()
    };
    let before = annotations(fixture());
    assert_eq!(before[VERSION_ANNOTATION], "7.0.59");
    assert_eq!(before[CONFIG_HASH_ANNOTATION].len(), 16);

    let mut changed = fixture();
    changed.config.get_mut("web").unwrap().insert("cache_timeout".into(), "600".into());
    assert_ne!(annotations(changed)[CONFIG_HASH_ANNOTATION], before[CONFIG_HASH_ANNOTATION]);

    let mut patched = fixture();
    patched.environments[0].version = "7.0.60".parse().unwrap();
    let after = annotations(patched);
    assert_eq!(after[VERSION_ANNOTATION], "7.0.60");
    assert_eq!(after[CONFIG_HASH_ANNOTATION], before[CONFIG_HASH_ANNOTATION]);
}

#[test]
fn odoo_server_reads_a_config_completed_with_the_master_password() {
    let fx = Fixture::new(odoo_fixture());
    let deployment = server_of(&fx.ctx(), EnvironmentKind::Production);
    let pod = pod(&deployment);
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("odoo:17.0"));
    let env = env_of(container);
    assert_eq!(secret_ref(env["PGPASSWORD"]), "postgres-credentials/password");
    assert_eq!(secret_ref(env["PASSWORD"]), "postgres-credentials/password");
    assert!(!env.contains_key("TRYTOND_DATABASE__URI"));
    assert_eq!(mounts_of(container)["config-final"], "/etc/erp");
    assert_eq!(
        container.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(),
        Some("/web/health")
    );

    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.name, "config");
    assert_eq!(init.image.as_deref(), Some("odoo:17.0"));
    let script = &init.command.as_ref().unwrap()[2];
    assert!(script.contains("cp /etc/erp-template/odoo.conf /etc/erp/odoo.conf"), "{script}");
    assert!(script.contains("cat /run/secrets/erp-master/password"), "{script}");
    assert_eq!(
        mounts_of(init),
        BTreeMap::from([
            ("config", "/etc/erp-template"),
            ("config-final", "/etc/erp"),
            ("master-password", "/run/secrets/erp-master")
        ])
    );
    let volumes: BTreeMap<_, _> = pod.volumes.iter().flatten().map(|v| (v.name.as_str(), v)).collect();
    assert_eq!(volumes["master-password"].secret.as_ref().unwrap().secret_name.as_deref(), Some("erp-master-password"));
    assert!(volumes["config-final"].empty_dir.is_some());
}

#[test]
fn custom_server_gets_libpq_settings() {
    let fx = Fixture::new(custom_fixture());
    let deployment = server_of(&fx.ctx(), EnvironmentKind::Test);
    let container = &pod(&deployment).containers[0];
    assert_eq!(container.image.as_deref(), Some("registry.example/erp-server:7.1.3"));
    assert_eq!(container.image_pull_policy, None);
    assert_eq!(container.command, None, "the image's own command");
    let env = env_of(container);
    assert_eq!(env["PGHOST"].value.as_deref(), Some("postgres"));
    assert_eq!(env["PGDATABASE"].value.as_deref(), Some("test"));
    assert_eq!(secret_ref(env["PGPASSWORD"]), "postgres-credentials/password");
    assert_eq!(mounts_of(container)["config"], "/etc/erp");
}

#[test]
fn tryton_web_serves_sao_copied_from_the_tryton_image() {
    let fx = Fixture::new(fixture());
    let test = environment(&fx.model, EnvironmentKind::Test);
    let deployment = web_deployment(&fx.ctx(), test);
    assert_eq!(deployment.metadata.name.as_deref(), Some("erp-web-test"));
    assert_eq!(deployment.spec.as_ref().unwrap().replicas, Some(1));
    let pod = pod(&deployment);
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.image.as_deref(), Some("tryton/tryton:7.1"));
    assert_eq!(init.command.clone().unwrap(), ["cp", "-R", "/var/lib/trytond/www/.", "/usr/share/nginx/html/"]);
    let web = &pod.containers[0];
    assert_eq!(web.image.as_deref(), Some("nginxinc/nginx-unprivileged:1.27-alpine"));
    assert_eq!(web.ports.as_ref().unwrap()[0].container_port, 8080);
    assert_eq!(
        mounts_of(web),
        BTreeMap::from([("web-assets", "/usr/share/nginx/html"), ("web-config", "/etc/nginx/conf.d")])
    );
    assert_eq!(web.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));
    assert_eq!(pod.security_context.as_ref().unwrap().run_as_user, Some(101));
    let volumes: BTreeMap<_, _> = pod.volumes.iter().flatten().map(|v| (v.name.as_str(), v)).collect();
    assert_eq!(volumes["web-config"].config_map.as_ref().unwrap().name, "web-config-test");
    let annotations = deployment.spec.unwrap().template.metadata.unwrap().annotations.unwrap();
    assert!(annotations.contains_key(CONFIG_HASH_ANNOTATION));
}

#[test]
fn odoo_web_is_a_plain_proxy() {
    let fx = Fixture::new(odoo_fixture());
    let production = environment(&fx.model, EnvironmentKind::Production);
    let deployment = web_deployment(&fx.ctx(), production);
    let pod = pod(&deployment);
    assert!(pod.init_containers.is_none());
    assert_eq!(mounts_of(&pod.containers[0]), BTreeMap::from([("web-config", "/etc/nginx/conf.d")]));
}

#[test]
fn services_expose_the_server_port_and_port_80_for_the_web() {
    let fx = Fixture::new(fixture());
    let production = environment(&fx.model, EnvironmentKind::Production);
    let server = service(&fx.ctx(), production, Component::Server);
    assert_eq!(server.metadata.name.as_deref(), Some("erp-server-production"));
    let port = &server.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!((port.port, port.target_port.clone()), (8000, Some(IntOrString::Int(8000))));
    let web = service(&fx.ctx(), production, Component::Web);
    assert_eq!(web.metadata.name.as_deref(), Some("erp-web-production"));
    let port = &web.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!((port.port, port.target_port.clone()), (80, Some(IntOrString::Int(8080))));
    assert_eq!(web.spec.unwrap().selector.unwrap()[labels::COMPONENT], "web");
}

#[test]
fn filestore_is_a_read_write_once_claim_every_pod_mounting_it_shares_a_node_for() {
    let fx = Fixture::new(fixture());
    let test = environment(&fx.model, EnvironmentKind::Test);
    let claim = filestore_claim(&fx.ctx(), test);
    assert_eq!(claim.metadata.name.as_deref(), Some("filestore-test"));
    let spec = claim.spec.unwrap();
    assert_eq!(spec.access_modes.unwrap(), ["ReadWriteOnce"]);
    assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"].0, "5Gi");

    let server = server_of(&fx.ctx(), EnvironmentKind::Test);
    let job = job_of(&fx.ctx(), EnvironmentKind::Test).unwrap();
    for template in [&server.spec.unwrap().template, &job.spec.unwrap().template] {
        let labels = template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        assert_eq!(labels[FILESTORE_LABEL], "filestore-test");
        let affinity = template.spec.as_ref().unwrap().affinity.as_ref().unwrap();
        let term = &affinity
            .pod_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()[0];
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        let wanted = term.label_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert!(wanted.iter().all(|(k, v)| labels.get(k) == Some(v)), "the pod must match its own term");
    }
}

#[test]
fn update_job_waits_for_the_database_updates_everything_then_the_modules() {
    let fx = Fixture::new(fixture());
    let job = job_of(&fx.ctx(), EnvironmentKind::Test).unwrap();
    let name = job.metadata.name.clone().unwrap();
    assert!(name.starts_with("erp-init-test-") && name.len() == "erp-init-test-".len() + 8, "{name}");
    let job_labels = job.metadata.labels.clone().unwrap();
    assert_eq!(job_labels[labels::COMPONENT], "job");
    assert_eq!(job_labels[labels::ENVIRONMENT], "test");
    let spec = job.spec.unwrap();
    assert_eq!(spec.backoff_limit, Some(10));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("OnFailure"));
    let init: Vec<_> = pod.init_containers.as_ref().unwrap().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(init, ["wait-for-database", "update-all", "update-modules"]);
    let wait = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(wait.image.as_deref(), Some("postgres:15"));
    assert_eq!(env_of(wait)["PGDATABASE"].value.as_deref(), Some("test"));
    let update_all = &pod.init_containers.as_ref().unwrap()[1];
    assert_eq!(update_all.image.as_deref(), Some("tryton/tryton:7.1"));
    assert_eq!(
        update_all.command.clone().unwrap(),
        ["trytond-admin", "-c", "/etc/erp/trytond.conf", "-d", "test", "--all", "--email", "admin@localhost"]
    );
    let main = &pod.init_containers.as_ref().unwrap()[2];
    assert_eq!(
        main.command.clone().unwrap(),
        ["trytond-admin", "-c", "/etc/erp/trytond.conf", "-d", "test", "--activate-dependencies", "-u", "sale"]
    );
    // Last, once both succeeded: the mark the servers wait for, on the environment's database.
    let mark = &pod.containers[0];
    assert_eq!(mark.name, "mark-updated");
    let hash = name.trim_start_matches("erp-init-test-");
    assert_eq!(
        env_of(mark)["UPDATE_MARK_SQL"].value.as_deref(),
        Some(format!("COMMENT ON DATABASE \"test\" IS 'tenantry update {hash}';").as_str())
    );
    assert_eq!(env_of(mark)["PGDATABASE"].value.as_deref(), Some("test"));
    // Same environment and files as the server, plus the admin password file.
    let env = env_of(main);
    assert!(env.contains_key("TRYTOND_DATABASE__URI"));
    assert_eq!(env["TRYTONPASSFILE"].value.as_deref(), Some("/run/secrets/erp-master/password"));
    let mounts = mounts_of(main);
    assert_eq!(mounts["config"], "/etc/erp");
    assert_eq!(mounts["filestore"], "/var/lib/trytond/db");
    assert_eq!(mounts["master-password"], "/run/secrets/erp-master");
    assert!(main.readiness_probe.is_none());
}

#[test]
fn update_job_is_renamed_by_new_work_only() {
    let name = |model: TenantModel| {
        let fx = Fixture::new(model);
        job_of(&fx.ctx(), EnvironmentKind::Production).unwrap().metadata.name.unwrap()
    };
    let original = name(fixture());
    assert_eq!(name(fixture()), original);
    let mut patched = fixture();
    patched.environments[0].version = "7.0.60".parse().unwrap();
    assert_ne!(name(patched), original, "a patch release runs the update again");
    let mut more_modules = fixture();
    more_modules.modules.push("stock".into());
    assert_ne!(name(more_modules), original);
    let mut test_changed = fixture();
    test_changed.environments[1].version = "7.1.4".parse().unwrap();
    assert_eq!(name(test_changed), original, "another environment's change is not this Job's");
    // Incidental changes keep the finished Job (it is create-only): no second `--all`.
    let mut incidental = fixture();
    incidental.seats = 40;
    incidental.resources.server.memory_limit = Some("4Gi".into());
    incidental.config.get_mut("web").unwrap().insert("cache_timeout".into(), "600".into());
    assert_eq!(name(incidental), original);
}

#[test]
fn without_modules_the_update_of_everything_is_the_job() {
    let mut model = fixture();
    model.modules.clear();
    let fx = Fixture::new(model);
    let pod = job_of(&fx.ctx(), EnvironmentKind::Production).unwrap().spec.unwrap().template.spec.unwrap();
    let init: Vec<_> = pod.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(init, ["wait-for-database", "update-all"]);
    assert_eq!(pod.containers[0].name, "mark-updated");
}

#[test]
fn odoo_job_builds_its_config_first() {
    let fx = Fixture::new(odoo_fixture());
    let pod = job_of(&fx.ctx(), EnvironmentKind::Production).unwrap().spec.unwrap().template.spec.unwrap();
    let init: Vec<_> = pod.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(init, ["config", "wait-for-database", "update-all", "update-modules"]);
    assert_eq!(
        pod.init_containers.as_ref().unwrap()[3].command.clone().unwrap(),
        ["odoo", "-c", "/etc/erp/odoo.conf", "-d", "production", "-u", "sale,stock", "--stop-after-init"]
    );
}

#[test]
fn custom_profile_without_update_command_has_no_job() {
    let mut model = custom_fixture();
    let Profile { update_all, .. } = &mut model.profile;
    update_all.clear();
    let fx = Fixture::new(model);
    assert!(job_of(&fx.ctx(), EnvironmentKind::Production).is_none());
    let kinds: Vec<_> = children(&fx.ctx(), &fx.model.environments[0]).into_iter().map(|c| c.resource.kind).collect();
    assert!(!kinds.contains(&"Job".to_string()));
}

#[test]
fn custom_web_runs_its_own_image_told_where_the_server_is() {
    let fx = Fixture::new(custom_fixture());
    let production = environment(&fx.model, EnvironmentKind::Production);
    let deployment = web_deployment(&fx.ctx(), production);
    let pod = pod(&deployment);
    let web = &pod.containers[0];
    assert_eq!(web.image.as_deref(), Some("registry.example/erp-web:7.0.59"));
    assert_eq!(web.ports.as_ref().unwrap()[0].container_port, 3000);
    assert_eq!(env_of(web)["ERP_SERVER_URL"].value.as_deref(), Some("http://erp-server-production:9000"));
    assert!(pod.volumes.is_none() && web.volume_mounts.is_none());
    let port = &service(&fx.ctx(), production, Component::Web).spec.unwrap().ports.unwrap()[0];
    assert_eq!((port.port, port.target_port.clone()), (80, Some(IntOrString::Int(3000))));
}

#[test]
fn servers_start_once_their_update_marked_the_database() {
    let fx = Fixture::new(fixture());
    let job = job_of(&fx.ctx(), EnvironmentKind::Production).unwrap();
    let hash = job.metadata.name.unwrap().trim_start_matches("erp-init-production-").to_string();
    let server = server_of(&fx.ctx(), EnvironmentKind::Production);
    let template = server.spec.unwrap().template;
    assert_eq!(template.metadata.unwrap().annotations.unwrap()["tenantry.dev/update"], hash);
    let pod = template.spec.unwrap();
    let wait = pod.init_containers.as_ref().unwrap().iter().find(|c| c.name == "wait-for-update").unwrap();
    assert_eq!(env_of(wait)["UPDATE_MARK"].value.as_deref(), Some(format!("tenantry update {hash}").as_str()));
    assert_eq!(env_of(wait)["PGDATABASE"].value.as_deref(), Some("production"));
    // A profile without an update command has nothing to wait for.
    let mut model = crate::build::fixture::custom_fixture();
    model.profile.update_all.clear();
    let custom = Fixture::new(model);
    let server = server_of(&custom.ctx(), EnvironmentKind::Production);
    let pod = server.spec.unwrap().template.spec.unwrap();
    assert!(pod.init_containers.iter().flatten().all(|c| c.name != "wait-for-update"));
}
