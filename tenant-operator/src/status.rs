//! The Tenant's status, computed from what was observed: pure, so that an unchanged world gives
//! an identical status (and the reconcile then writes nothing).

use crate::api::{Condition, EnvironmentStatus, Phase, TenantStatus, condition};
use crate::model::TenantModel;

/// What the reconcile saw of the tenant's workloads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// PostgreSQL is ready and every environment's database exists.
    pub database: Readiness,
    /// Per environment, in the model's order.
    pub environments: Vec<EnvironmentObserved>,
    /// An error applying children, if any (the tenant is then Degraded or still Provisioning).
    pub apply_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvironmentObserved {
    pub server: Readiness,
    pub web: Readiness,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not ready yet, and why.
    Waiting(String),
    /// Scaled to zero on purpose.
    #[default]
    Suspended,
}

impl Readiness {
    fn is_ready(&self) -> bool {
        *self == Self::Ready
    }
}

/// The status of a valid tenant.
pub fn for_model(
    model: &TenantModel,
    observed: &Observed,
    previous: &TenantStatus,
    generation: i64,
    now: &str,
) -> TenantStatus {
    let mut conditions = previous.conditions.clone();
    let mut set = |type_: &str, status: bool, reason: &str, message: String| {
        set_condition(&mut conditions, type_, if status { "True" } else { "False" }, reason, &message, generation, now)
    };
    set(condition::VALID, true, "Valid", "the spec is valid".into());

    let (db_ok, db_reason, db_message) = readiness_parts(&observed.database, "the database is ready");
    set(condition::DATABASE_READY, db_ok, db_reason, db_message);

    let role = |pick: fn(&EnvironmentObserved) -> &Readiness, what: &str| {
        let mut waiting = Vec::new();
        let mut suspended = false;
        for (env, seen) in model.environments.iter().zip(&observed.environments) {
            match pick(seen) {
                Readiness::Ready => {}
                Readiness::Waiting(why) => waiting.push(format!("{}: {why}", env.name())),
                Readiness::Suspended => suspended = true,
            }
        }
        if waiting.is_empty() && !suspended && observed.environments.len() == model.environments.len() {
            (true, "Ready", format!("every environment's {what} is ready"))
        } else if suspended {
            (false, "Suspended", format!("the {what} is scaled to zero"))
        } else {
            (false, "Waiting", waiting.join("; "))
        }
    };
    let (server_ok, server_reason, server_message) = role(|e| &e.server, "ERP server");
    set(condition::SERVER_READY, server_ok, server_reason, server_message);
    let (web_ok, web_reason, web_message) = role(|e| &e.web, "web client");
    set(condition::WEB_READY, web_ok, web_reason, web_message);

    let all_ready = db_ok && server_ok && web_ok && observed.apply_error.is_none();
    let was_ready = matches!(previous.phase, Some(Phase::Ready | Phase::Degraded));
    let (phase, reason, message) = if model.suspended {
        (Phase::Suspended, "Suspended", "every workload is scaled to zero; all data is kept".to_string())
    } else if all_ready {
        (Phase::Ready, "Ready", "the ERP is serving".to_string())
    } else {
        let why = observed.apply_error.clone().unwrap_or_else(|| {
            [(db_ok, "database"), (server_ok, "server"), (web_ok, "web client")]
                .iter()
                .filter(|(ok, _)| !ok)
                .map(|(_, what)| *what)
                .collect::<Vec<_>>()
                .join(", ")
                + " not ready"
        });
        if was_ready { (Phase::Degraded, "Degraded", why) } else { (Phase::Provisioning, "Provisioning", why) }
    };
    set(condition::READY, phase == Phase::Ready, reason, message);

    let environments = model
        .environments
        .iter()
        .zip(observed.environments.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(env, seen)| EnvironmentStatus {
            name: env.name().to_string(),
            version: env.version.to_string(),
            ready: seen.is_some_and(|s| s.server.is_ready() && s.web.is_ready()) && db_ok,
            url: env.host.as_ref().map(|host| format!("https://{host}")),
        })
        .collect::<Vec<_>>();
    // A host that moved is announced, not changed silently: bookmarks and the certificate's
    // name were the old one.
    let moved: Vec<String> = environments
        .iter()
        .filter_map(|env| {
            let before = previous.environments.iter().find(|p| p.name == env.name)?.url.as_deref()?;
            let after = env.url.as_deref()?;
            (before != after).then(|| format!("the {} environment moved from {before} to {after}", env.name))
        })
        .collect();
    if !moved.is_empty() {
        let message = format!("{}; the old address is no longer served", moved.join("; "));
        set_condition(&mut conditions, condition::HOST_CHANGED, "True", "HostChanged", &message, generation, now);
    }
    let url = environments.first().and_then(|e| e.url.clone()).or_else(|| {
        // Without an ingress the ERP is reachable inside the cluster only.
        Some(format!("http://erp-web-production.{}.svc", model.namespace))
    });

    // The backups' part is the scheduler's (see `crate::backups::schedule`), written beside.
    let backups = previous.backups.clone();
    TenantStatus { phase: Some(phase), conditions, observed_generation: Some(generation), url, environments, backups }
}

/// The status of a tenant whose spec is invalid: nothing else about it is claimed.
pub fn invalid(message: &str, previous: &TenantStatus, generation: i64, now: &str) -> TenantStatus {
    let mut conditions = previous.conditions.clone();
    set_condition(&mut conditions, condition::VALID, "False", "InvalidSpec", message, generation, now);
    set_condition(&mut conditions, condition::READY, "False", "InvalidSpec", message, generation, now);
    TenantStatus {
        phase: Some(Phase::Invalid),
        conditions,
        observed_generation: Some(generation),
        url: previous.url.clone(),
        environments: previous.environments.clone(),
        backups: previous.backups.clone(),
    }
}

/// A status with only the phase and the Ready condition changed (Pending, Deleting).
pub fn with_phase(phase: Phase, message: &str, previous: &TenantStatus, generation: i64, now: &str) -> TenantStatus {
    let mut status = previous.clone();
    status.phase = Some(phase);
    set_condition(&mut status.conditions, condition::READY, "False", &phase.to_string(), message, generation, now);
    status
}

/// How much a new status differs from the one in the cluster, which decides how soon it is
/// written (see [`crate::pacing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Nothing a reader could see.
    None,
    /// Finer progress within the same phase: a waiting message that moved on, the ERP server or
    /// the web client or one environment ready before the rest. It rides along with the next
    /// write.
    Progress,
    /// What a reader acts on: another phase, the spec acted on, something that got worse, an
    /// address, or the database ready (the long step of a provisioning).
    Significant,
}

/// Conditions whose waiting detail (reason and message while the status stays the same) is
/// progress, not news.
const READINESS_DETAIL: [&str; 4] =
    [condition::DATABASE_READY, condition::SERVER_READY, condition::WEB_READY, condition::READY];
/// Conditions whose turning True is progress: the tenant's `Ready` follows them, and is news.
/// (The database's turning ready is news of its own: it is the long step of a provisioning,
/// shown on the customer's progress page.)
const PROGRESS_WHEN_TRUE: [&str; 2] = [condition::SERVER_READY, condition::WEB_READY];

/// Classifies the difference between two statuses (pure).
pub fn change(previous: &TenantStatus, next: &TenantStatus) -> Change {
    if previous == next {
        return Change::None;
    }
    // The backups' part changes a few times a day, and a reader waits for it (a console, the
    // late-backup alert).
    if previous.phase != next.phase
        || previous.observed_generation != next.observed_generation
        || previous.url != next.url
        || previous.backups != next.backups
    {
        return Change::Significant;
    }
    let addresses = |status: &TenantStatus| {
        status.environments.iter().map(|e| (e.name.clone(), e.version.clone(), e.url.clone())).collect::<Vec<_>>()
    };
    if addresses(previous) != addresses(next) {
        return Change::Significant;
    }
    let became_unready =
        previous.environments.iter().zip(&next.environments).any(|(before, after)| before.ready && !after.ready);
    if became_unready {
        return Change::Significant;
    }
    let types: std::collections::BTreeSet<&str> =
        previous.conditions.iter().chain(&next.conditions).map(|c| c.type_.as_str()).collect();
    let mut change = Change::Progress;
    for type_ in types {
        let find = |status: &'_ TenantStatus| status.conditions.iter().find(|c| c.type_ == type_).cloned();
        let this = match (find(previous), find(next)) {
            (Some(before), Some(after)) if before.status != after.status => {
                if PROGRESS_WHEN_TRUE.contains(&type_) && after.status == "True" {
                    Change::Progress
                } else {
                    Change::Significant
                }
            }
            (Some(before), Some(after)) if before.reason != after.reason || before.message != after.message => {
                if READINESS_DETAIL.contains(&type_) {
                    Change::Progress
                } else {
                    Change::Significant
                }
            }
            (Some(_), Some(_)) => Change::Progress,
            _ => Change::Significant,
        };
        change = change.max(this);
    }
    change
}

fn readiness_parts(readiness: &Readiness, ready_message: &str) -> (bool, &'static str, String) {
    match readiness {
        Readiness::Ready => (true, "Ready", ready_message.to_string()),
        Readiness::Waiting(why) => (false, "Waiting", why.clone()),
        Readiness::Suspended => (false, "Suspended", "scaled to zero".to_string()),
    }
}

/// Sets a condition; `lastTransitionTime` moves only when the status value changes.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: i64,
    now: &str,
) {
    let new = |last_transition_time: String| Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time,
        observed_generation: Some(generation),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) if existing.status == status => *existing = new(existing.last_transition_time.clone()),
        Some(existing) => *existing = new(now.to_string()),
        None => conditions.push(new(now.to_string())),
    }
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ErpSpec, TenantSpec};
    use crate::profile::ImageDefaults;

    fn model(test_env: bool, suspended: bool) -> TenantModel {
        let mut spec = TenantSpec {
            display_name: "Acme".into(),
            plan: "basic".into(),
            seats: 3,
            erp: ErpSpec { profile: "tryton".into(), version: "7.0.1".into(), ..Default::default() },
            resources: Default::default(),
            environments: Default::default(),
            suspended,
            ingress: None,
            deletion_policy: Default::default(),
            backups: None,
        };
        if test_env {
            spec.environments.test = Some(Default::default());
        }
        crate::validate::validate("acme", &spec, &ImageDefaults::default()).unwrap()
    }

    fn all_ready(envs: usize) -> Observed {
        Observed {
            database: Readiness::Ready,
            environments: vec![EnvironmentObserved { server: Readiness::Ready, web: Readiness::Ready }; envs],
            apply_error: None,
        }
    }

    fn condition<'a>(status: &'a TenantStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    fn waiting(what: &str) -> Readiness {
        Readiness::Waiting(what.into())
    }

    #[test]
    fn progress_within_a_phase_is_told_apart_from_news() {
        let model = model(true, false);
        let status = |database: Readiness, servers: [Readiness; 2], webs: [Readiness; 2], previous: &TenantStatus| {
            let environments =
                servers.into_iter().zip(webs).map(|(server, web)| EnvironmentObserved { server, web }).collect();
            for_model(&model, &Observed { database, environments, apply_error: None }, previous, 1, "T")
        };
        let start = status(
            waiting("postgres 0/1 ready"),
            [waiting("erp-server-production 0/1 ready"), waiting("erp-server-test 0/1 ready")],
            [waiting("erp-web-production 0/1 ready"), waiting("erp-web-test 0/1 ready")],
            &TenantStatus::default(),
        );
        assert_eq!(change(&TenantStatus::default(), &start), Change::Significant, "the first status");
        assert_eq!(change(&start, &start.clone()), Change::None);

        // A waiting message that moved on.
        let db_job = status(
            waiting("job db-init-1 has not completed"),
            [waiting("erp-server-production 0/1 ready"), waiting("erp-server-test 0/1 ready")],
            [waiting("erp-web-production 0/1 ready"), waiting("erp-web-test 0/1 ready")],
            &start,
        );
        assert_eq!(change(&start, &db_job), Change::Progress);
        // The web clients ready, one environment's then both.
        let one_web = status(
            waiting("job db-init-1 has not completed"),
            [waiting("erp-server-production 0/1 ready"), waiting("erp-server-test 0/1 ready")],
            [Readiness::Ready, waiting("erp-web-test 0/1 ready")],
            &db_job,
        );
        assert_eq!(change(&db_job, &one_web), Change::Progress);
        let webs = status(
            waiting("job db-init-1 has not completed"),
            [waiting("erp-server-production 0/1 ready"), waiting("erp-server-test 0/1 ready")],
            [Readiness::Ready, Readiness::Ready],
            &one_web,
        );
        assert_eq!(change(&one_web, &webs), Change::Progress);
        // The database: a step of the customer's progress page.
        let database = status(
            Readiness::Ready,
            [waiting("erp-server-production 0/1 ready"), waiting("erp-server-test 0/1 ready")],
            [Readiness::Ready, Readiness::Ready],
            &webs,
        );
        assert_eq!(change(&webs, &database), Change::Significant);
        let ready = status(
            Readiness::Ready,
            [Readiness::Ready, Readiness::Ready],
            [Readiness::Ready, Readiness::Ready],
            &database,
        );
        assert_eq!(change(&database, &ready), Change::Significant, "Ready");
        // The servers ready before the web clients: progress, the tenant's Ready follows.
        let db_only = status(
            Readiness::Ready,
            [waiting("erp-server-production 0/1 ready"), waiting("erp-server-test 0/1 ready")],
            [waiting("erp-web-production 0/1 ready"), waiting("erp-web-test 0/1 ready")],
            &start,
        );
        assert_eq!(change(&start, &db_only), Change::Significant);
        let servers = status(
            Readiness::Ready,
            [Readiness::Ready, Readiness::Ready],
            [waiting("erp-web-production 0/1 ready"), waiting("erp-web-test 0/1 ready")],
            &db_only,
        );
        assert_eq!(change(&db_only, &servers), Change::Progress);
        // Anything getting worse is news at once, the web client too.
        let web_lost = status(
            Readiness::Ready,
            [Readiness::Ready, Readiness::Ready],
            [Readiness::Ready, waiting("erp-web-test 0/1 ready")],
            &ready,
        );
        assert_eq!(change(&ready, &web_lost), Change::Significant);
        // Another generation acted on.
        let regenerated = for_model(&model, &all_ready(2), &ready, 2, "T");
        assert_eq!(change(&ready, &regenerated), Change::Significant);
        // An invalid spec.
        assert_eq!(change(&ready, &invalid("bad", &ready, 1, "T")), Change::Significant);
    }

    #[test]
    fn ready_when_everything_is() {
        let status = for_model(&model(true, false), &all_ready(2), &TenantStatus::default(), 3, "T1");
        assert_eq!(status.phase, Some(Phase::Ready));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.environments.len(), 2);
        assert!(status.environments.iter().all(|e| e.ready));
        assert_eq!(status.url.as_deref(), Some("http://erp-web-production.tenant-acme.svc"));
        for type_ in ["Ready", "Valid", "DatabaseReady", "ServerReady", "WebReady"] {
            assert_eq!(condition(&status, type_).status, "True", "{type_}");
        }
    }

    #[test]
    fn last_transition_time_moves_only_on_a_status_change() {
        let model = model(false, false);
        let mut waiting = all_ready(1);
        waiting.environments[0].web = Readiness::Waiting("0/1 available".into());
        let first = for_model(&model, &waiting, &TenantStatus::default(), 1, "T1");
        assert_eq!(first.phase, Some(Phase::Provisioning));
        assert_eq!(condition(&first, "WebReady").message, "production: 0/1 available");

        // Same world, later: identical status, so the reconcile writes nothing.
        assert_eq!(for_model(&model, &waiting, &first, 1, "T2"), first);

        let ready = for_model(&model, &all_ready(1), &first, 1, "T3");
        assert_eq!(condition(&ready, "WebReady").last_transition_time, "T3");
        assert_eq!(condition(&ready, "DatabaseReady").last_transition_time, "T1");

        // Losing readiness after having had it is Degraded, not Provisioning.
        let degraded = for_model(&model, &waiting, &ready, 1, "T4");
        assert_eq!(degraded.phase, Some(Phase::Degraded));
        assert_eq!(condition(&degraded, "Ready").last_transition_time, "T4");
    }

    #[test]
    fn a_moved_test_host_is_announced() {
        let mut spec = model(true, false);
        spec.environments[0].host = Some("acme.erp.example.com".into());
        spec.environments[1].host = Some("acme.test.erp.example.com".into());
        let mut before = for_model(&spec, &all_ready(2), &TenantStatus::default(), 1, "T1");
        assert!(before.conditions.iter().all(|c| c.type_ != "HostChanged"), "nothing moved on creation");
        // The status as the `test-<host>` scheme wrote it.
        before.environments[1].url = Some("https://test-acme.erp.example.com".into());
        let after = for_model(&spec, &all_ready(2), &before, 1, "T2");
        let moved = condition(&after, "HostChanged");
        assert_eq!(moved.status, "True");
        assert_eq!(
            moved.message,
            "the test environment moved from https://test-acme.erp.example.com to \
             https://acme.test.erp.example.com; the old address is no longer served"
        );
        // Announced once: the next reconcile keeps it as it is.
        assert_eq!(for_model(&spec, &all_ready(2), &after, 1, "T3"), after);
    }

    #[test]
    fn suspended_and_invalid() {
        let model = model(false, true);
        let observed = Observed {
            database: Readiness::Suspended,
            environments: vec![EnvironmentObserved::default()],
            apply_error: None,
        };
        let status = for_model(&model, &observed, &TenantStatus::default(), 1, "T1");
        assert_eq!(status.phase, Some(Phase::Suspended));
        assert_eq!(condition(&status, "ServerReady").reason, "Suspended");

        let invalid = invalid("spec.erp.version: bad", &status, 2, "T2");
        assert_eq!(invalid.phase, Some(Phase::Invalid));
        assert_eq!(condition(&invalid, "Valid").status, "False");
        assert_eq!(condition(&invalid, "Valid").message, "spec.erp.version: bad");
        assert_eq!(invalid.observed_generation, Some(2));
    }
}
