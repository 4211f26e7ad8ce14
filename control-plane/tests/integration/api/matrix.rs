//! `role_matrix`: every endpoint × every kind of caller, against the rule each endpoint states.

use serde_json::{Value, json};

use crate::harness::{CacheKind, Db, TestApp, plan_body};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Provider,
    /// A tenant-admin of the tenant in the path.
    OwnAdmin,
    /// A tenant-admin of another tenant.
    OtherAdmin,
    Billing,
}

const CALLERS: [Caller; 5] =
    [Caller::Anonymous, Caller::Provider, Caller::OwnAdmin, Caller::OtherAdmin, Caller::Billing];

#[derive(Clone, Copy)]
enum Scope {
    /// No authentication.
    Public,
    /// Not about one tenant: tenant-admins are refused with 403 unless allowed.
    Global,
    /// About the tenant in the path: a tenant-admin of another tenant gets 404.
    Tenant,
}

struct Endpoint {
    method: &'static str,
    /// `{t}` is the fixture tenant, `{p}` the fixture plan, `{w}` the fixture webhook, `{n}` a
    /// fresh name.
    path: &'static str,
    body: fn(&str) -> Option<Value>,
    scope: Scope,
    allowed: &'static [Caller],
    ok: u16,
}

use Caller::{Billing, OwnAdmin, Provider};

fn none(_: &str) -> Option<Value> {
    None
}

const ENDPOINTS: &[Endpoint] = &[
    Endpoint { method: "GET", path: "/healthz", body: none, scope: Scope::Public, allowed: &[], ok: 200 },
    Endpoint { method: "GET", path: "/readyz", body: none, scope: Scope::Public, allowed: &[], ok: 200 },
    Endpoint { method: "GET", path: "/metrics", body: none, scope: Scope::Public, allowed: &[], ok: 200 },
    Endpoint { method: "GET", path: "/openapi.json", body: none, scope: Scope::Public, allowed: &[], ok: 200 },
    Endpoint {
        method: "POST",
        path: "/v1/signup",
        body: |n| {
            Some(
                json!({"company_name": format!("Company {n}"), "admin_email": "a@signup.test", "plan": "starter", "seats": 1}),
            )
        },
        scope: Scope::Public,
        allowed: &[],
        ok: 202,
    },
    Endpoint {
        method: "GET",
        path: "/v1/plans",
        body: none,
        scope: Scope::Global,
        allowed: &[Provider, Billing],
        ok: 200,
    },
    Endpoint {
        method: "POST",
        path: "/v1/plans",
        body: |n| Some(plan_body(n, 5)),
        scope: Scope::Global,
        allowed: &[Provider],
        ok: 201,
    },
    Endpoint {
        method: "GET",
        path: "/v1/plans/{p}",
        body: none,
        scope: Scope::Global,
        allowed: &[Provider, Billing],
        ok: 200,
    },
    Endpoint {
        method: "PATCH",
        path: "/v1/plans/{p}",
        body: |_| None,
        scope: Scope::Global,
        allowed: &[Provider],
        ok: 200,
    },
    Endpoint {
        method: "DELETE",
        path: "/v1/plans/{p}",
        body: none,
        scope: Scope::Global,
        allowed: &[Provider],
        ok: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/tenants",
        body: none,
        scope: Scope::Global,
        allowed: &[Provider, OwnAdmin, Caller::OtherAdmin],
        ok: 200,
    },
    Endpoint {
        method: "POST",
        path: "/v1/tenants",
        body: |n| {
            Some(json!({"slug": n, "display_name": n, "owner_email": "o@new.test", "plan": "starter", "seats": 1}))
        },
        scope: Scope::Global,
        allowed: &[Provider],
        ok: 201,
    },
    Endpoint {
        method: "GET",
        path: "/v1/tenants/{t}",
        body: none,
        scope: Scope::Tenant,
        allowed: &[Provider, OwnAdmin],
        ok: 200,
    },
    Endpoint {
        method: "PATCH",
        path: "/v1/tenants/{t}",
        body: |_| Some(json!({"display_name": "Renamed"})),
        scope: Scope::Tenant,
        allowed: &[Provider, OwnAdmin],
        ok: 200,
    },
    Endpoint {
        method: "DELETE",
        path: "/v1/tenants/{t}",
        body: none,
        scope: Scope::Tenant,
        allowed: &[Provider],
        ok: 200,
    },
    Endpoint {
        method: "POST",
        path: "/v1/tenants/{t}/suspend",
        body: none,
        scope: Scope::Tenant,
        allowed: &[Provider],
        ok: 200,
    },
    Endpoint {
        method: "POST",
        path: "/v1/tenants/{t}/resume",
        body: none,
        scope: Scope::Tenant,
        allowed: &[Provider],
        ok: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/tenants/{t}/plan-history",
        body: none,
        scope: Scope::Tenant,
        allowed: &[Provider, OwnAdmin],
        ok: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/tenants/{t}/seats",
        body: none,
        scope: Scope::Tenant,
        allowed: &[Provider, OwnAdmin, Billing],
        ok: 200,
    },
    Endpoint {
        method: "POST",
        path: "/v1/tenants/{t}/seats",
        body: |_| Some(json!({"email": "new@seat.test"})),
        scope: Scope::Tenant,
        allowed: &[Provider, OwnAdmin],
        ok: 201,
    },
    Endpoint {
        method: "DELETE",
        path: "/v1/tenants/{t}/seats/held@seat.test",
        body: none,
        scope: Scope::Tenant,
        allowed: &[Provider, OwnAdmin],
        ok: 204,
    },
    Endpoint {
        method: "GET",
        path: "/v1/tenants/{t}/seats/usage",
        body: none,
        scope: Scope::Tenant,
        allowed: &[Provider, OwnAdmin, Billing],
        ok: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/billing/seats",
        body: none,
        scope: Scope::Global,
        allowed: &[Provider, Billing],
        ok: 200,
    },
    Endpoint {
        method: "GET",
        path: "/v1/billing/usage",
        body: none,
        scope: Scope::Global,
        allowed: &[Provider, Billing],
        ok: 200,
    },
    Endpoint { method: "GET", path: "/v1/webhooks", body: none, scope: Scope::Global, allowed: &[Provider], ok: 200 },
    Endpoint {
        method: "POST",
        path: "/v1/webhooks",
        body: |_| Some(json!({"url": "http://127.0.0.1:9/in"})),
        scope: Scope::Global,
        allowed: &[Provider],
        ok: 201,
    },
    Endpoint {
        method: "DELETE",
        path: "/v1/webhooks/{w}",
        body: none,
        scope: Scope::Global,
        allowed: &[Provider],
        ok: 204,
    },
];

fn expected(endpoint: &Endpoint, caller: Caller) -> u16 {
    match (endpoint.scope, caller) {
        (Scope::Public, _) => endpoint.ok,
        (_, Caller::Anonymous) => 401,
        _ if endpoint.allowed.contains(&caller) => endpoint.ok,
        (Scope::Tenant, Caller::OtherAdmin) => 404,
        _ => 403,
    }
}

#[tokio::test]
async fn role_matrix() {
    let app = TestApp::start_with(Db::Sqlite, CacheKind::InProcess, &[("TENANTRY_SIGNUP_BURST", "1000")]).await;
    app.tenant("outsider", "starter").await;
    let mut failures = Vec::new();
    for (index, endpoint) in ENDPOINTS.iter().enumerate() {
        for caller in CALLERS {
            // Fresh fixtures per case, so destructive calls cannot affect the next case.
            let name = format!("m{index}-{}", format!("{caller:?}").to_lowercase());
            let tenant = format!("t-{name}");
            app.tenant(&tenant, "starter").await;
            let held = app
                .post(&format!("/v1/tenants/{tenant}/seats"), &app.provider, json!({"email": "held@seat.test"}))
                .await;
            assert_eq!(held.status, 201, "{held:?}");
            if endpoint.path.ends_with("/resume") {
                let suspended = app.post(&format!("/v1/tenants/{tenant}/suspend"), &app.provider, json!(null)).await;
                assert_eq!(suspended.status, 200, "{suspended:?}");
            }
            let plan = format!("p-{name}");
            app.plan(&plan, 5).await;
            let webhook = app.post("/v1/webhooks", &app.provider, json!({"url": "http://127.0.0.1:9/fixture"})).await;
            let webhook = webhook.body["id"].as_str().unwrap().to_string();
            let path = endpoint.path.replace("{t}", &tenant).replace("{p}", &plan).replace("{w}", &webhook);
            let body = if endpoint.method == "PATCH" && endpoint.path == "/v1/plans/{p}" {
                let mut revised = plan_body(&plan, 5);
                revised["max_seats"] = 6.into();
                Some(revised)
            } else {
                (endpoint.body)(&format!("n-{name}"))
            };
            let token = match caller {
                Caller::Anonymous => None,
                Caller::Provider => Some(app.provider.clone()),
                Caller::OwnAdmin => Some(app.tenant_admin(&tenant)),
                Caller::OtherAdmin => Some(app.tenant_admin("outsider")),
                Caller::Billing => Some(app.billing.clone()),
            };
            let reply = app.call(endpoint.method, &path, token.as_deref(), body).await;
            let want = expected(endpoint, caller);
            if reply.status != want {
                failures.push(format!(
                    "{} {} as {caller:?}: {} (want {want}): {}",
                    endpoint.method, endpoint.path, reply.status, reply.text
                ));
            } else if reply.status >= 400 {
                assert_eq!(reply.content_type, "application/problem+json", "{} {}", endpoint.method, endpoint.path);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        ENDPOINTS.len() * CALLERS.len(),
        failures.join("\n")
    );
    app.stop().await;
}
