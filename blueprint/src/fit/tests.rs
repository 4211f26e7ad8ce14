use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::api::TenantSpec;
use crate::build::fixture::{Fixture, fixture, odoo_fixture};
use crate::model::{Compute, Environment, EnvironmentKind, Quota};
use crate::validate::validate;

const MI: u64 = 1 << 20;
const GI: u64 = 1 << 30;

#[test]
fn figures_are_read_from_the_built_objects_as_quota_admission_counts_them() {
    // acme: production with 2 server replicas, test with 1; server 2 CPU / 2Gi, web 50m /
    // 128Mi, database without CPU figures (the defaults: 1 CPU limit) and 2Gi.
    let mut model = fixture();
    model.resources.quota = Quota::default();
    let footprint = check(&model, &ImageDefaults::default()).unwrap();
    // Server pods: production 2 + 1 surge, test 1 + 1 surge, and one update Job per
    // environment (its init containers have the server's figures too); web pods: 1 + 1 surge
    // per environment; the database and its db-init Job.
    let (server_pods, web_pods, database_pods) = ((2 + 1) + (1 + 1) + 2, 2 + 2, 2);
    assert_eq!(footprint.pods, server_pods + web_pods + database_pods);
    assert_eq!(footprint.cpu_limits_milli, server_pods * 2000 + web_pods * 50 + database_pods * 1000);
    assert_eq!(footprint.cpu_requests_milli, server_pods * 250 + web_pods * 50 + database_pods * 100);
    assert_eq!(footprint.memory_limits, server_pods * 2 * GI + web_pods * 128 * MI + database_pods * 2 * GI);
    assert_eq!(footprint.memory_requests, server_pods * 512 * MI + web_pods * 128 * MI + database_pods * GI);
    assert_eq!(footprint.storage, 20 * GI + 2 * 5 * GI);
}

#[test]
fn a_suspended_tenant_must_still_fit_when_it_resumes() {
    let mut model = fixture();
    model.resources.quota = Quota { cpu: Some("2".into()), ..Quota::default() };
    model.suspended = true;
    assert!(check(&model, &ImageDefaults::default()).is_err());
}

#[test]
fn a_container_without_resources_is_refused() {
    // What the web-assets init container was before it had figures: left to the LimitRange
    // (1 CPU), it made each web pod count 1 CPU against the quota.
    let fx = Fixture::new(fixture());
    let mut children = build::desired(&fx.ctx());
    let web = children.iter_mut().find(|c| c.name == "erp-web-production").unwrap();
    let init = &mut web.body["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["name"], "web-assets");
    init.as_object_mut().unwrap().remove("resources");
    let problems = footprint(&children).unwrap_err();
    assert_eq!(
        problems,
        [
            "Deployment erp-web-production: container web-assets sets no cpu request",
            "Deployment erp-web-production: container web-assets sets no cpu limit",
            "Deployment erp-web-production: container web-assets sets no memory request",
            "Deployment erp-web-production: container web-assets sets no memory limit",
        ]
    );
}

#[test]
fn a_request_above_its_limit_is_refused() {
    let mut model = fixture();
    model.resources.server.cpu_request = Some("3".into());
    let problems = check(&model, &ImageDefaults::default()).unwrap_err();
    assert!(
        problems.contains(
            &"Deployment erp-server-production: container server's cpu request 3 is above its limit 2".into()
        ),
        "{problems:?}"
    );
}

#[test]
fn a_tenant_whose_stack_exceeds_its_quota_is_invalid() {
    let spec: TenantSpec = serde_json::from_value(serde_json::json!({
        "displayName": "Acme Corp",
        "plan": "business",
        "erp": {"version": "7.0.59"},
        "resources": {
            "server": {"cpuLimit": "2", "memoryLimit": "2Gi"},
            "web": {"cpuLimit": "500m", "memoryLimit": "256Mi"},
            "database": {"cpuLimit": "2", "memoryLimit": "2Gi"},
            "quota": {"cpu": "8", "memory": "16Gi", "storage": "10Gi", "pods": 5}
        },
        "environments": {"production": {}, "test": {}}
    }))
    .unwrap();
    let problems = validate("acme", &spec, &ImageDefaults::default()).unwrap_err().0;
    let what = "the tenant's own workloads (every Deployment with its rolling-update surge, the StatefulSet and \
                every Job) need";
    assert_eq!(
        problems,
        [
            format!("spec.resources.quota.cpu: {what} CPU limits of 18 at once, more than the quota's 8"),
            format!("spec.resources.quota.memory: {what} memory limits of 17Gi at once, more than the quota's 16Gi"),
            "spec.resources.quota.storage: the tenant's volumes request 20Gi, more than the quota's 10Gi".into(),
            format!("spec.resources.quota.pods: {what} 12 pods at once, more than the quota's 5"),
        ]
    );
}

#[test]
fn an_odoo_tenant_counts_its_config_init_container() {
    let fx = Fixture::new(odoo_fixture());
    let children = build::desired(&fx.ctx());
    let server = children.iter().find(|c| c.name == "erp-server-production").unwrap();
    let init = &server.body["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["name"], "config");
    assert_eq!(init["resources"]["limits"]["cpu"], Value::from("2"));
    assert!(footprint(&children).is_ok());
}

/// One role's figures as the plan gives them: each quantity set or not.
fn compute() -> impl Strategy<Value = Compute> {
    let cpu = proptest::option::of(1u64..4000).prop_map(|m| m.map(|m| format!("{m}m")));
    let memory = proptest::option::of(1u64..8192).prop_map(|m| m.map(|m| format!("{m}Mi")));
    (cpu.clone(), cpu, memory.clone(), memory).prop_map(|(cpu_request, cpu_limit, memory_request, memory_limit)| {
        Compute { cpu_request, cpu_limit, memory_request, memory_limit }
    })
}

/// (request, limit) of one resource of a container made from `compute`: the plan's figures, a
/// lone one for both, else the LimitRange's defaults. In the units of the test: millicores, Mi.
fn effective(request: &Option<String>, limit: &Option<String>, defaults: (u64, u64)) -> (u64, u64) {
    let value = |text: &String| text.trim_end_matches(['m', 'M', 'i']).parse::<u64>().unwrap();
    match (request, limit) {
        (Some(request), Some(limit)) => (value(request), value(limit)),
        (Some(one), None) | (None, Some(one)) => (value(one), value(one)),
        (None, None) => defaults,
    }
}

#[derive(Debug, Clone)]
struct RandomPlan {
    server: Compute,
    web: Compute,
    database: Compute,
    odoo: bool,
    test_environment: bool,
    replicas: (i32, i32),
    storage_gi: (u64, u64),
    /// How far each quota is from the stack's own figure (quota minus figure), or no quota.
    slack: [Option<i64>; 4],
}

fn random_plan() -> impl Strategy<Value = RandomPlan> {
    let slack = proptest::option::of(-3i64..3);
    (
        (compute(), compute(), compute()),
        (any::<bool>(), any::<bool>(), 0i32..5, 0i32..5),
        (1u64..200, 1u64..100),
        proptest::array::uniform4(slack),
    )
        .prop_map(|((server, web, database), (odoo, test_environment, production, test), storage_gi, slack)| {
            RandomPlan {
                server,
                web,
                database,
                odoo,
                test_environment,
                replicas: (production, test),
                storage_gi,
                slack,
            }
        })
}

proptest! {
    /// A random plan fits exactly when its quota covers what Kubernetes counts for the stack:
    /// worked out here from the plan's own figures, independently of the builders, and
    /// compared with what the check reads from the built objects.
    #[test]
    fn a_random_plan_fits_exactly_when_its_quota_covers_the_stack(plan in random_plan()) {
        let mut model = if plan.odoo { odoo_fixture() } else { fixture() };
        model.environments = vec![Environment {
            kind: EnvironmentKind::Production,
            server_replicas: plan.replicas.0,
            ..model.environments[0].clone()
        }];
        if plan.test_environment {
            model.environments.push(Environment {
                kind: EnvironmentKind::Test,
                server_replicas: plan.replicas.1,
                ..fixture().environments[1].clone()
            });
            if plan.odoo {
                model.environments[1].version = "17.0.3".parse().unwrap();
            }
        }
        model.resources.server = plan.server.clone();
        model.resources.web = plan.web.clone();
        model.resources.database = plan.database.clone();
        model.resources.database_storage = format!("{}Gi", plan.storage_gi.0);
        model.resources.filestore_storage = format!("{}Gi", plan.storage_gi.1);

        // Pods of each role at the worst moment: replicas plus the 25 % surge rounded up for
        // Deployments, one pod per Job (an update Job per environment, the db-init Job).
        let environments = model.environments.len() as u64;
        let server_pods: u64 = model
            .environments
            .iter()
            .map(|e| e.server_replicas as u64 + (e.server_replicas as u64).div_ceil(4) + 1)
            .sum();
        let web_pods = 2 * environments;
        let database_pods = 2;
        let roles = [(&plan.server, server_pods), (&plan.web, web_pods), (&plan.database, database_pods)];
        let mut cpu_limits = 0;
        let mut memory_limits_mi = 0;
        let mut request_above_limit = false;
        for (compute, pods) in roles {
            let (cpu_request, cpu_limit) = effective(&compute.cpu_request, &compute.cpu_limit, (100, 1000));
            let (memory_request, memory_limit) =
                effective(&compute.memory_request, &compute.memory_limit, (128, 1024));
            request_above_limit |= cpu_request > cpu_limit || memory_request > memory_limit;
            cpu_limits += cpu_limit * pods;
            memory_limits_mi += memory_limit * pods;
        }
        let pods = server_pods + web_pods + database_pods;
        let storage_gi = plan.storage_gi.0 + plan.storage_gi.1 * environments;

        let quota = |figure: u64, slack: Option<i64>| slack.map(|s| (figure as i64 + s).max(0) as u64);
        let [cpu_slack, memory_slack, storage_slack, pods_slack] = plan.slack;
        model.resources.quota = Quota {
            cpu: quota(cpu_limits, cpu_slack).map(|q| format!("{q}m")),
            memory: quota(memory_limits_mi, memory_slack).map(|q| format!("{q}Mi")),
            storage: quota(storage_gi, storage_slack).map(|q| format!("{q}Gi")),
            pods: quota(pods, pods_slack).map(|q| q as u32),
        };
        let within = |figure: u64, slack: Option<i64>| quota(figure, slack).is_none_or(|q| figure <= q);
        let fits = !request_above_limit
            && within(cpu_limits, cpu_slack)
            && within(memory_limits_mi, memory_slack)
            && within(storage_gi, storage_slack)
            && within(pods, pods_slack);

        let checked = check(&model, &ImageDefaults::default());
        prop_assert_eq!(checked.is_ok(), fits, "{:?}", checked);
        if let Ok(footprint) = checked {
            prop_assert_eq!(footprint.cpu_limits_milli, cpu_limits);
            prop_assert_eq!(footprint.memory_limits, memory_limits_mi * MI);
            prop_assert_eq!(footprint.storage, storage_gi * GI);
            prop_assert_eq!(footprint.pods, pods);
        }
    }
}
