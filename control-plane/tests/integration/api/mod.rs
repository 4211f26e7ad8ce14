//! The HTTP API end to end: a real server on port 0 over a real store and cache.

mod crash;
mod hosts_and_versions;
mod matrix;

use crate::harness::{CacheKind, Db, TestApp, plan_body};
use serde_json::json;

/// Signups of one request body under one key make one tenant; the replay has no token.
async fn idempotent_signup(cache: CacheKind) {
    let app = TestApp::start(Db::Sqlite, cache).await;
    let body = json!({"company_name": "Acme Corp", "admin_email": "ada@acme.test", "plan": "starter", "seats": 3});
    let send = |key: &'static str, body: serde_json::Value| {
        let request = app.http.post(format!("{}/v1/signup", app.url)).header("Idempotency-Key", key).json(&body);
        async move { request.send().await.unwrap() }
    };
    let first = send("key-1", body.clone()).await;
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    let token = first["token"].as_str().expect("the first response carries the token").to_string();
    assert_eq!(first["tenant"]["slug"], "acme-corp");
    assert_eq!(first["tenant"]["provisioning"], "waiting");

    let replay = send("key-1", body.clone()).await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(replay["tenant"]["slug"], "acme-corp");
    assert_eq!(replay["token"], serde_json::Value::Null, "a token is never returned twice");

    let mut other = body.clone();
    other["seats"] = 4.into();
    let reused = send("key-1", other).await;
    assert_eq!(reused.status(), 422);

    // The tenant-admin token works for its own tenant; one tenant exists, with its admin seated.
    let own = app.get("/v1/tenants/acme-corp/seats", &token).await;
    assert_eq!(own.status, 200, "{own:?}");
    assert_eq!(own.body["count"], 1);
    let list = app.get("/v1/tenants", &app.provider).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1, "{list:?}");

    // Without the key, the same company signs up again under a numbered name.
    let again = app.call("POST", "/v1/signup", None, Some(body)).await;
    assert_eq!(again.status, 202, "{again:?}");
    assert_eq!(again.body["tenant"]["slug"], "acme-corp-2");
    app.stop().await;
}

#[tokio::test]
async fn idempotent_signup_in_process() {
    idempotent_signup(CacheKind::InProcess).await;
}

#[tokio::test]
async fn idempotent_signup_redis() {
    idempotent_signup(CacheKind::Redis).await;
}

/// The plan's maximum holds; a refused seat leaves nothing behind; a read right after a write
/// sees the write (the cached count is never stale).
async fn seat_limit_is_enforced(db: Db, cache: CacheKind) {
    let app = TestApp::start(db, cache).await;
    app.plan("tiny", 3).await;
    app.tenant("limited", "tiny").await;
    let seats = "/v1/tenants/limited/seats";
    for (n, email) in ["a@limited.test", "b@limited.test", "c@limited.test"].into_iter().enumerate() {
        let added = app.post(seats, &app.provider, json!({"email": email})).await;
        assert_eq!(added.status, 201, "{added:?}");
        let read = app.get(seats, &app.billing).await;
        assert_eq!(read.body["count"], n + 1, "read after write: {read:?}");
    }
    let again = app.post(seats, &app.provider, json!({"email": "b@limited.test"})).await;
    assert_eq!(again.status, 200, "the same user twice is idempotent: {again:?}");
    let refused = app.post(seats, &app.provider, json!({"email": "d@limited.test"})).await;
    refused.assert_problem(409, "seat_limit_reached");
    let listed = app.get(seats, &app.provider).await;
    assert_eq!(listed.body["count"], 3);
    assert_eq!(listed.body["max_seats"], 3);
    let emails: Vec<&str> =
        listed.body["seats"].as_array().unwrap().iter().map(|seat| seat["email"].as_str().unwrap()).collect();
    assert!(!emails.contains(&"d@limited.test"), "{emails:?}");
    assert_eq!(app.get(seats, &app.billing).await.body["count"], 3);

    let removed = app.call("DELETE", "/v1/tenants/limited/seats/a@limited.test", Some(&app.provider), None).await;
    assert_eq!(removed.status, 204, "{removed:?}");
    assert_eq!(app.get(seats, &app.billing).await.body["count"], 2, "read after a removal");
    let added = app.post(seats, &app.provider, json!({"email": "d@limited.test"})).await;
    assert_eq!(added.status, 201, "a freed seat can be taken: {added:?}");
    app.stop().await;
}

#[tokio::test]
async fn seat_limit_is_enforced_sqlite() {
    seat_limit_is_enforced(Db::Sqlite, CacheKind::InProcess).await;
}

#[tokio::test]
async fn seat_limit_is_enforced_postgres_redis() {
    seat_limit_is_enforced(Db::Postgres, CacheKind::Redis).await;
}

#[tokio::test]
async fn cross_tenant_access_is_denied() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    app.tenant("alpha", "starter").await;
    app.tenant("beta", "starter").await;
    let alpha = app.tenant_admin("alpha");
    let missing = app.get("/v1/tenants/no-such-tenant", &alpha).await;
    missing.assert_problem(404, "tenant_not_found");
    let probes = [
        ("GET", "/v1/tenants/beta", None),
        ("PATCH", "/v1/tenants/beta", Some(json!({"display_name": "Taken over"}))),
        ("DELETE", "/v1/tenants/beta", None),
        ("POST", "/v1/tenants/beta/suspend", None),
        ("GET", "/v1/tenants/beta/seats", None),
        ("POST", "/v1/tenants/beta/seats", Some(json!({"email": "spy@alpha.test"}))),
        ("DELETE", "/v1/tenants/beta/seats/owner@beta.test", None),
        ("GET", "/v1/tenants/beta/seats/usage", None),
        ("GET", "/v1/tenants/beta/plan-history", None),
    ];
    for (method, path, body) in probes {
        let reply = app.call(method, path, Some(&alpha), body).await;
        reply.assert_problem(404, "tenant_not_found");
        // Exactly what a tenant that does not exist looks like, bar the name.
        assert_eq!(reply.body["detail"], "tenant \"beta\" not found", "{method} {path}");
    }
    let beta = app.get("/v1/tenants/beta", &app.provider).await;
    assert_eq!(beta.body["display_name"], "beta");
    assert_eq!(beta.body["state"], "trialing", "not suspended, not deleted");
    assert_eq!(app.get("/v1/tenants/beta/seats", &app.provider).await.body["count"], 0);
    let listed = app.get("/v1/tenants", &alpha).await;
    let slugs: Vec<&str> =
        listed.body["items"].as_array().unwrap().iter().map(|tenant| tenant["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["alpha"]);
    app.stop().await;
}

#[tokio::test]
async fn expired_tokens_and_missing_credentials_are_401() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    app.call("GET", "/v1/plans", None, None).await.assert_problem(401, "token_missing");
    let reply = app.call("GET", "/v1/plans", Some("not.a.jwt"), None).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert!(reply.headers.contains_key("www-authenticate"));
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_4xx() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    app.tenant("sturdy", "starter").await;
    let raw = |method: &str, path: &str, content_type: &str, body: Vec<u8>| {
        let request = app
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", app.url))
            .bearer_auth(&app.provider)
            .header("content-type", content_type.to_string())
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, content_type, body)
        }
    };
    // Method, path, content type, body, expected status and code.
    type Case = (&'static str, &'static str, &'static str, Vec<u8>, u16, &'static str);
    let cases: Vec<Case> = vec![
        ("POST", "/v1/tenants", "application/json", b"{\"slug\": ".to_vec(), 400, "invalid_body"),
        ("POST", "/v1/tenants", "application/json", b"[1, 2]".to_vec(), 400, "invalid_body"),
        ("POST", "/v1/tenants", "text/plain", b"{}".to_vec(), 415, "unsupported_media_type"),
        ("POST", "/v1/tenants/sturdy/seats", "application/json", vec![b' '; 200_000], 413, "body_too_large"),
        ("POST", "/v1/signup", "application/json", vec![b'x'; 1_000_000], 413, "body_too_large"),
        (
            "POST",
            "/v1/tenants",
            "application/json",
            json!({"slug": "Bad Slug", "display_name": "x", "owner_email": "o@x.test", "plan": "starter", "seats": 1})
                .to_string()
                .into_bytes(),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/tenants",
            "application/json",
            json!({"slug": "admin", "display_name": "x", "owner_email": "o@x.test", "plan": "starter", "seats": 1})
                .to_string()
                .into_bytes(),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/tenants",
            "application/json",
            json!({"slug": "ok", "display_name": "x", "owner_email": "o@x.test", "plan": "starter", "seats": -5})
                .to_string()
                .into_bytes(),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/tenants",
            "application/json",
            json!({"slug": "ok", "display_name": "x", "owner_email": "o@x.test", "plan": "starter", "seats": 1, "color": "red"})
                .to_string()
                .into_bytes(),
            400,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/tenants",
            "application/json",
            json!({"slug": "ok", "display_name": "x", "owner_email": "o@x.test", "plan": "no-such-plan", "seats": 1})
                .to_string()
                .into_bytes(),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/tenants",
            "application/json",
            json!({"slug": "ok2", "display_name": "x", "owner_email": "o@x.test", "plan": "starter", "seats": 1, "erp_version": "7.1.0"})
                .to_string()
                .into_bytes(),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/tenants",
            "application/json",
            json!({"slug": "ok3", "display_name": "x", "owner_email": "o@x.test", "plan": "starter", "seats": 99999999999_i64})
                .to_string()
                .into_bytes(),
            422,
            "validation_failed",
        ),
        ("POST", "/v1/tenants/sturdy/seats", "application/json", json!({"email": "not-an-email"}).to_string().into_bytes(), 422, "validation_failed"),
        ("POST", "/v1/tenants/sturdy/seats", "application/json", json!({"email": 42}).to_string().into_bytes(), 400, "invalid_body"),
        ("PATCH", "/v1/tenants/sturdy", "application/json", json!({"seats": -1}).to_string().into_bytes(), 422, "validation_failed"),
        ("PATCH", "/v1/tenants/sturdy", "application/json", json!({"state": "sleeping"}).to_string().into_bytes(), 400, "invalid_body"),
        ("PATCH", "/v1/tenants/sturdy", "application/json", json!({"plan": "no-such-plan"}).to_string().into_bytes(), 422, "validation_failed"),
        ("POST", "/v1/plans", "application/json", json!({"name": "x"}).to_string().into_bytes(), 400, "invalid_body"),
        ("POST", "/v1/plans", "application/json", {
            let mut plan = plan_body("Bad Name", 0);
            plan["price_per_seat_month"]["minor"] = (-1).into();
            plan.to_string().into_bytes()
        }, 422, "validation_failed"),
        ("POST", "/v1/webhooks", "application/json", json!({"url": "ftp://x"}).to_string().into_bytes(), 422, "validation_failed"),
        ("POST", "/v1/webhooks", "application/json", json!({"url": "http://127.0.0.1:9/x", "events": ["tenant.exploded"]}).to_string().into_bytes(), 422, "validation_failed"),
    ];
    for (method, path, content_type, body, status, code) in cases {
        let preview = String::from_utf8_lossy(&body[..body.len().min(120)]).to_string();
        let (got, got_type, got_body) = raw(method, path, content_type, body).await;
        assert_eq!(
            (got, got_body["code"].as_str().unwrap_or_default()),
            (status, code),
            "{method} {path} {preview}: {got_body}"
        );
        assert_eq!(got_type, "application/problem+json", "{method} {path}");
    }
    let queries = [
        ("/v1/tenants?limit=0", "invalid_query"),
        ("/v1/tenants?limit=lots", "invalid_query"),
        ("/v1/tenants?state=sleeping", "invalid_query"),
        ("/v1/tenants?colour=red", "invalid_query"),
        ("/v1/billing/seats?at=yesterday", "invalid_query"),
        ("/v1/billing/usage?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "invalid_query"),
        ("/v1/tenants/sturdy/seats/usage?from=garbage", "invalid_query"),
    ];
    for (path, code) in queries {
        app.get(path, &app.provider).await.assert_problem(400, code);
    }
    app.get("/v1/no-such-route", &app.provider).await.assert_problem(404, "route_not_found");
    app.get("/v1/plans/no-such-plan", &app.provider).await.assert_problem(404, "plan_not_found");
    app.call("DELETE", "/v1/tenants/sturdy/seats/nobody@sturdy.test", Some(&app.provider), None)
        .await
        .assert_problem(404, "seat_not_found");
    // Nothing above changed the tenant.
    let sturdy = app.get("/v1/tenants/sturdy", &app.provider).await;
    assert_eq!((sturdy.body["seats"].as_u64(), sturdy.body["plan"].as_str()), (Some(10), Some("starter")));
    let listed = app.get("/v1/tenants", &app.provider).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1, "{listed:?}");
    app.stop().await;
}

/// A plan whose quota cannot hold the stack of a tenant on it is refused when created, naming
/// the quota and what the stack needs; its tenants would otherwise never become Ready.
#[tokio::test]
async fn a_plan_whose_quota_cannot_hold_its_stack_is_refused() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    let mut plan = plan_body("cramped", 10);
    plan["test_environment"] = true.into();
    plan["resources"] = json!({
        "server": {"cpuLimit": "2", "memoryLimit": "2Gi"},
        "web": {"cpuLimit": "500m", "memoryLimit": "256Mi"},
        "database": {"cpuLimit": "2", "memoryLimit": "2Gi"},
        "quota": {"cpu": "8", "memory": "32Gi", "pods": 30}
    });
    let refused = app.call("POST", "/v1/plans", Some(&app.provider), Some(plan.clone())).await;
    refused.assert_problem(422, "validation_failed");
    let errors = refused.body["errors"].as_array().expect("the problems are listed");
    assert_eq!(errors.len(), 1, "{refused:?}");
    let error = errors[0].as_str().unwrap();
    assert!(error.starts_with("resources: spec.resources.quota.cpu: "), "{error}");
    assert!(error.ends_with("CPU limits of 18 at once, more than the quota's 8"), "{error}");
    app.get("/v1/plans/cramped", &app.provider).await.assert_problem(404, "plan_not_found");

    plan["resources"]["quota"]["cpu"] = "18".into();
    let created = app.call("POST", "/v1/plans", Some(&app.provider), Some(plan)).await;
    assert_eq!(created.status, 201, "{created:?}");
    app.stop().await;
}

#[tokio::test]
async fn plans_are_versioned() {
    let app = TestApp::start(Db::Postgres, CacheKind::InProcess).await;
    app.plan("growth", 10).await;
    let before = app.tenant("early", "growth").await;
    assert_eq!(before["plan_version"], 1);
    let mut revised = plan_body("growth", 10);
    revised["price_per_seat_month"]["minor"] = 2500.into();
    let patched = app.call("PATCH", "/v1/plans/growth", Some(&app.provider), Some(revised)).await;
    assert_eq!((patched.status, patched.body["version"].as_i64()), (200, Some(2)), "{patched:?}");
    assert_eq!(app.get("/v1/tenants/early", &app.provider).await.body["plan_version"], 1, "early keeps its price");
    assert_eq!(app.tenant("late", "growth").await["plan_version"], 2);
    let old = app.get("/v1/plans/growth?version=1", &app.provider).await;
    assert_eq!(old.body["price_per_seat_month"]["minor"], 1900);
    let retired = app.call("DELETE", "/v1/plans/growth", Some(&app.provider), None).await;
    assert!(retired.body["retired_at"].is_string(), "{retired:?}");
    let refused = app
        .call(
            "POST",
            "/v1/signup",
            None,
            Some(json!({"company_name": "Newco", "admin_email": "a@newco.test", "plan": "growth", "seats": 1})),
        )
        .await;
    refused.assert_problem(409, "plan_retired");
    assert_eq!(app.get("/v1/tenants/early", &app.provider).await.body["plan"], "growth");
    app.stop().await;
}

#[tokio::test]
async fn plan_change_needs_room_for_the_seats_held() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    app.plan("small", 1).await;
    app.plan("large", 20).await;
    app.tenant("mover", "large").await;
    for email in ["a@mover.test", "b@mover.test"] {
        assert_eq!(app.post("/v1/tenants/mover/seats", &app.provider, json!({"email": email})).await.status, 201);
    }
    let admin = app.tenant_admin("mover");
    let refused = app.call("PATCH", "/v1/tenants/mover", Some(&admin), Some(json!({"plan": "small"}))).await;
    refused.assert_problem(409, "plan_too_small");
    assert_eq!(app.get("/v1/tenants/mover/seats", &app.billing).await.body["max_seats"], 20);
    let moved =
        app.call("PATCH", "/v1/tenants/mover", Some(&admin), Some(json!({"plan": "starter", "seats": 2}))).await;
    assert_eq!(moved.status, 200, "{moved:?}");
    assert_eq!(
        app.get("/v1/tenants/mover/seats", &app.billing).await.body["max_seats"],
        2,
        "the cached count follows the licence changed with the plan"
    );
    let over_licence = app.call("PATCH", "/v1/tenants/mover", Some(&admin), Some(json!({"seats": 20}))).await;
    over_licence.assert_problem(409, "seat_limit_reached");
    app.post("/v1/plans", &app.provider, plan_body("closing", 50)).await;
    app.call("DELETE", "/v1/plans/closing", Some(&app.provider), None).await;
    let retired = app.call("PATCH", "/v1/tenants/mover", Some(&admin), Some(json!({"plan": "closing"}))).await;
    retired.assert_problem(409, "plan_retired");
    let history = app.get("/v1/tenants/mover/plan-history", &admin).await;
    let history = history.body.as_array().unwrap().clone();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!((history[0]["from_plan"].as_str(), history[0]["to_plan"].as_str()), (Some("large"), Some("starter")));
    let state = app.call("PATCH", "/v1/tenants/mover", Some(&admin), Some(json!({"state": "active"}))).await;
    state.assert_problem(403, "forbidden");
    app.stop().await;
}

#[tokio::test]
async fn suspension_and_deletion_follow_the_subscription_rules() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    app.tenant("sleepy", "starter").await;
    app.post("/v1/tenants/sleepy/resume", &app.provider, json!(null)).await.assert_problem(409, "not_suspended");
    assert_eq!(app.get("/v1/tenants/sleepy", &app.provider).await.body["state"], "trialing", "the trial goes on");
    let suspended = app.post("/v1/tenants/sleepy/suspend", &app.provider, json!(null)).await;
    assert_eq!(suspended.body["state"], "suspended", "{suspended:?}");
    let resumed = app.post("/v1/tenants/sleepy/resume", &app.provider, json!(null)).await;
    assert_eq!(resumed.body["state"], "trialing", "back to the trial: {resumed:?}");
    let suspended = app.post("/v1/tenants/sleepy/suspend", &app.provider, json!(null)).await;
    let trial = app.call("PATCH", "/v1/tenants/sleepy", Some(&app.provider), Some(json!({"state": "trialing"}))).await;
    trial.assert_problem(409, "invalid_state_transition");
    assert_eq!(suspended.body["state"], "suspended");
    let deleted = app.call("DELETE", "/v1/tenants/sleepy", Some(&app.provider), None).await;
    assert_eq!(deleted.body["state"], "canceled", "{deleted:?}");
    // A deleted tenant is gone for changes (its record stays for billing).
    app.post("/v1/tenants/sleepy/resume", &app.provider, json!(null)).await.assert_problem(404, "tenant_not_found");
    assert_eq!(app.get("/v1/tenants/sleepy", &app.provider).await.body["state"], "canceled");
    app.get("/v1/tenants/sleepy/seats", &app.billing).await.assert_problem(404, "tenant_not_found");
    app.get("/v1/tenants/sleepy", &app.tenant_admin("sleepy")).await.assert_problem(404, "tenant_not_found");
    app.stop().await;
}

#[tokio::test]
async fn trials_end_as_past_due() {
    let app = TestApp::start(Db::Postgres, CacheKind::InProcess).await;
    let trial = app.tenant("on-trial", "starter").await;
    assert_eq!(trial["state"], "trialing");
    let ends: chrono::DateTime<chrono::Utc> = trial["trial_ends_at"].as_str().unwrap().parse().unwrap();
    app.tenant("paid-early", "starter").await;
    let paid = app.call("PATCH", "/v1/tenants/paid-early", Some(&app.provider), Some(json!({"state": "active"}))).await;
    assert_eq!(paid.body["state"], "active", "{paid:?}");
    let store = &app.running.as_ref().unwrap().store;

    let before_end =
        control_plane::trials::expire_due_trials(store, ends - chrono::TimeDelta::seconds(1)).await.unwrap();
    assert_eq!(before_end, 0, "the trial has not ended yet");
    let moved = control_plane::trials::expire_due_trials(store, ends).await.unwrap();
    assert_eq!(moved, 1);
    assert_eq!(app.get("/v1/tenants/on-trial", &app.provider).await.body["state"], "past_due");
    assert_eq!(app.get("/v1/tenants/paid-early", &app.provider).await.body["state"], "active");

    // A background move never undoes what happened meanwhile: it applies only from `trialing`.
    let stale = control_plane::store::TenantChange {
        state: Some(control_plane::domain::subscription::SubscriptionState::PastDue),
        only_if_state: Some(control_plane::domain::subscription::SubscriptionState::Trialing),
        ..Default::default()
    };
    let unchanged = store.change_tenant("paid-early", &stale).await.unwrap();
    assert_eq!(unchanged.state.as_str(), "active");
    let events = store.recorded_events().await.unwrap();
    let changes = events.iter().filter(|event| event["type"] == "subscription.changed").count();
    assert_eq!(changes, 2, "one for the activation, one for the ended trial");
    app.stop().await;
}

#[tokio::test]
async fn signup_is_rate_limited_per_client() {
    let app = TestApp::start_with(
        Db::Sqlite,
        CacheKind::InProcess,
        &[("TENANTRY_SIGNUP_PER_MINUTE", "2"), ("TENANTRY_SIGNUP_BURST", "2")],
    )
    .await;
    let mut statuses = Vec::new();
    for n in 0..3 {
        let body =
            json!({"company_name": format!("Rush {n}"), "admin_email": "a@rush.test", "plan": "starter", "seats": 1});
        let reply = app.call("POST", "/v1/signup", None, Some(body)).await;
        if reply.status == 429 {
            reply.assert_problem(429, "rate_limited");
            let retry: u64 = reply.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
        }
        statuses.push(reply.status);
    }
    assert_eq!(statuses, [202, 202, 429]);
    app.stop().await;
}

#[tokio::test]
async fn usage_and_billing_endpoints() {
    let app = TestApp::start(Db::Postgres, CacheKind::Redis).await;
    for slug in ["bill-a", "bill-b", "bill-c"] {
        app.tenant(slug, "starter").await;
        app.post(&format!("/v1/tenants/{slug}/seats"), &app.provider, json!({"email": format!("u@{slug}.test")})).await;
    }
    let usage = app.get("/v1/tenants/bill-a/seats/usage", &app.billing).await;
    assert_eq!(
        (usage.status, usage.body["current"].as_u64(), usage.body["peak"].as_u64()),
        (200, Some(1), Some(1)),
        "{usage:?}"
    );
    assert!(usage.body["seat_seconds"].as_i64().unwrap() >= 0);
    let first = app.get("/v1/billing/seats?limit=2", &app.billing).await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2, "{first:?}");
    let next = first.body["next"].as_str().unwrap();
    let second = app.get(&format!("/v1/billing/seats?limit=2&after={next}"), &app.billing).await;
    let rest: Vec<&str> =
        second.body["items"].as_array().unwrap().iter().map(|row| row["tenant"].as_str().unwrap()).collect();
    assert_eq!(rest, ["bill-c"]);
    let totals = app.get("/v1/billing/usage", &app.billing).await;
    assert_eq!(totals.body["items"].as_array().unwrap().len(), 3, "{totals:?}");
    let past = app.get("/v1/billing/seats?at=2000-01-01T00:00:00Z", &app.billing).await;
    assert_eq!(past.body["items"].as_array().unwrap().len(), 0, "no tenant existed then");
    app.stop().await;
}

#[tokio::test]
async fn webhook_secret_is_returned_once() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    let created = app
        .post("/v1/webhooks", &app.provider, json!({"url": "http://127.0.0.1:9/in", "events": ["tenant.ready"]}))
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let secret = created.body["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32);
    let listed = app.get("/v1/webhooks", &app.provider).await;
    assert!(!listed.text.contains(&secret), "{listed:?}");
    assert_eq!(listed.body[0]["url"], "http://127.0.0.1:9/in");
    let id = created.body["id"].as_str().unwrap();
    assert_eq!(app.call("DELETE", &format!("/v1/webhooks/{id}"), Some(&app.provider), None).await.status, 204);
    assert_eq!(app.get("/v1/webhooks", &app.provider).await.body, json!([]));
    app.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::start(Db::Sqlite, CacheKind::Redis).await;
    assert_eq!(app.call("GET", "/healthz", None, None).await.status, 200);
    assert_eq!(app.call("GET", "/readyz", None, None).await.status, 200);
    app.get("/v1/plans", &app.provider).await;
    let metrics = app.call("GET", "/metrics", None, None).await;
    assert!(
        metrics.text.contains(
            "tenantry_control_plane_http_requests_total{method=\"GET\",route=\"/v1/plans\",status=\"2xx\"} 1"
        ),
        "{}",
        metrics.text
    );
    assert!(metrics.text.contains("tenantry_control_plane_provisioning_pending"), "{}", metrics.text);
    app.stop().await;
}

/// The committed `openapi.json` is what the handlers generate. `TENANTRY_UPDATE_OPENAPI=1`
/// rewrites it.
#[test]
fn openapi_document_is_committed() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let generated = control_plane::http::openapi::document();
    if std::env::var_os("TENANTRY_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "control-plane/openapi.json differs from the handlers; regenerate it with \
         TENANTRY_UPDATE_OPENAPI=1 cargo test -p control-plane --test api openapi"
    );
    let document: serde_json::Value = serde_json::from_str(&generated).unwrap();
    for path in ["/v1/signup", "/v1/tenants/{slug}/seats", "/v1/billing/usage", "/v1/plans/{name}"] {
        assert!(document["paths"][path].is_object(), "{path} missing");
    }
}

/// A field a body type does not have is refused wherever it is, naming its path, and nothing
/// is created or changed.
#[tokio::test]
async fn unknown_nested_fields_are_refused() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    let mut plan = plan_body("nested", 5);
    plan["resources"] = json!({"server": {"cpu_limit": "1", "memoryLimit": "1Gi"}, "qouta": {"cpu": "1"}});
    let reply = app.post("/v1/plans", &app.provider, plan).await;
    reply.assert_problem(400, "invalid_body");
    assert_eq!(reply.body["errors"], json!(["resources.qouta", "resources.server.cpu_limit"]), "{reply:?}");
    assert!(reply.body["detail"].as_str().unwrap().contains("resources.qouta"), "{reply:?}");
    app.get("/v1/plans/nested", &app.provider).await.assert_problem(404, "plan_not_found");

    // A revision with junk in its resources makes no version (with empty resources or other).
    let mut good = plan_body("nested", 5);
    // (A quota the whole stack fits: a smaller one is refused for that.)
    good["resources"] = json!({"server": {"memoryLimit": "1Gi"}, "quota": {"cpu": "64"}});
    assert_eq!(app.post("/v1/plans", &app.provider, good.clone()).await.status, 201);
    let mut junk = good.clone();
    junk["resources"] = json!({"servre": {"memoryLimit": "2Gi"}});
    let reply = app.call("PATCH", "/v1/plans/nested", Some(&app.provider), Some(junk)).await;
    reply.assert_problem(400, "invalid_body");
    assert_eq!(reply.body["errors"], json!(["resources.servre"]), "{reply:?}");
    let mut deep = good.clone();
    deep["resources"]["quota"]["cpus"] = "4".into();
    deep["price_per_seat_month"]["cents"] = 5.into();
    let reply = app.call("PATCH", "/v1/plans/nested", Some(&app.provider), Some(deep)).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.body["detail"].as_str().unwrap().contains("price_per_seat_month"), "{reply:?}");
    let stored = app.get("/v1/plans/nested", &app.provider).await;
    assert_eq!(stored.body["version"], 1, "no new version: {stored:?}");
    assert_eq!(
        stored.body["resources"],
        json!({"server": {"memoryLimit": "1Gi"}, "web": {}, "database": {}, "quota": {"cpu": "64"}})
    );

    // A wrong value deep down names its path too.
    let mut typed = good.clone();
    typed["resources"]["quota"]["pods"] = "many".into();
    let reply = app.call("PATCH", "/v1/plans/nested", Some(&app.provider), Some(typed)).await;
    reply.assert_problem(400, "invalid_body");
    assert!(reply.body["detail"].as_str().unwrap().starts_with("resources.quota.pods"), "{reply:?}");

    // Other bodies: a signup and a webhook registration with an unknown field create nothing.
    let signup =
        json!({"company_name": "Junk", "admin_email": "a@junk.test", "plan": "starter", "seats": 1, "sets": 2});
    app.call("POST", "/v1/signup", None, Some(signup)).await.assert_problem(400, "invalid_body");
    let webhook = json!({"url": "http://127.0.0.1:9/in", "events": [], "secret": "mine"});
    app.post("/v1/webhooks", &app.provider, webhook).await.assert_problem(400, "invalid_body");
    assert_eq!(app.get("/v1/webhooks", &app.provider).await.body, json!([]));
    assert_eq!(app.get("/v1/tenants", &app.provider).await.body["items"], json!([]));
    app.stop().await;
}

/// Names in /etc/hosts for a loopback address, other than `localhost` (refused by name):
/// a name that resolves to loopback without a DNS query.
fn loopback_names_in_hosts_file() -> Vec<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts
        .lines()
        .filter_map(|line| line.split('#').next())
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address: std::net::IpAddr = fields.next()?.parse().ok()?;
            Some((address, fields.map(str::to_owned).collect::<Vec<_>>()))
        })
        .filter(|(address, _)| address.is_loopback())
        .flat_map(|(_, names)| names)
        .filter(|name| !name.ends_with("localhost") && name.contains(|c: char| c.is_ascii_alphabetic()))
        .collect()
}

#[tokio::test]
async fn webhook_endpoints_inside_the_network_are_refused() {
    // No allowed networks: the defaults of a deployment.
    let app = TestApp::start_with(Db::Sqlite, CacheKind::InProcess, &[("TENANTRY_WEBHOOK_ALLOWED_NETWORKS", "")]).await;
    let mut internal: Vec<String> = [
        "http://127.0.0.1/",
        "http://127.0.0.1:8080/hook",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://172.31.9.9/",
        "http://192.168.1.1/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://[fe80::1]/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://localhost/",
        "http://LocalHost.:9000/",
        "http://api.localhost/",
        // Decimal and hex forms are parsed as the addresses they are.
        "http://2130706433/",
        "http://0x7f000001/",
    ]
    .map(String::from)
    .to_vec();
    let resolving = loopback_names_in_hosts_file();
    assert!(!resolving.is_empty(), "this machine's /etc/hosts names a loopback address besides localhost");
    internal.extend(resolving.iter().map(|name| format!("https://{name}/hook")));
    for url in &internal {
        let reply = app.post("/v1/webhooks", &app.provider, json!({"url": url})).await;
        reply.assert_problem(400, "webhook_destination_refused");
        assert!(reply.body["detail"].as_str().unwrap().contains("webhook.allowed_networks"), "{url}: {reply:?}");
    }
    assert_eq!(app.get("/v1/webhooks", &app.provider).await.body, json!([]), "nothing was registered");
    // A public address is registered (and never connected to: no event follows).
    let public = app.post("/v1/webhooks", &app.provider, json!({"url": "https://203.0.113.7/in"})).await;
    assert_eq!(public.status, 201, "{public:?}");
    let id = public.body["id"].as_str().unwrap();
    assert_eq!(app.call("DELETE", &format!("/v1/webhooks/{id}"), Some(&app.provider), None).await.status, 204);
    app.stop().await;

    // Allowed explicitly, loopback receivers are registered.
    let app =
        TestApp::start_with(Db::Sqlite, CacheKind::InProcess, &[("TENANTRY_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")])
            .await;
    for url in ["http://127.0.0.1:9/in", "http://localhost:9/in"] {
        let reply = app.post("/v1/webhooks", &app.provider, json!({"url": url})).await;
        assert_eq!(reply.status, 201, "{url}: {reply:?}");
    }
    let still_refused = app.post("/v1/webhooks", &app.provider, json!({"url": "http://169.254.169.254/"})).await;
    still_refused.assert_problem(400, "webhook_destination_refused");
    app.stop().await;
}

/// A signup request from `client` as a trusted proxy on loopback forwards it.
async fn signup_from(app: &TestApp, n: usize, forwarded_for: &str) -> u16 {
    let body =
        json!({"company_name": format!("Client {n}"), "admin_email": "a@client.test", "plan": "starter", "seats": 1});
    let request = app.http.post(format!("{}/v1/signup", app.url)).header("x-forwarded-for", forwarded_for).json(&body);
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn ipv6_signups_are_limited_per_prefix() {
    let limited = [
        ("TENANTRY_SIGNUP_PER_MINUTE", "1"),
        ("TENANTRY_SIGNUP_BURST", "2"),
        ("TENANTRY_TRUSTED_PROXIES", "127.0.0.0/8"),
    ];
    let app = TestApp::start_with(Db::Sqlite, CacheKind::InProcess, &limited).await;
    let expected = [
        // Three addresses of one /64 share its budget of two.
        ("2001:db8:aa:1::1", 202),
        ("2001:db8:aa:1:ffff::2", 202),
        ("2001:db8:aa:1:1234:5678:9abc:def0", 429),
        // Another /64 has its own.
        ("2001:db8:aa:2::1", 202),
        ("2001:db8:aa:2::2", 202),
        ("2001:db8:aa:2::3", 429),
        // An IPv4-mapped IPv6 address counts as its IPv4 address.
        ("203.0.113.9", 202),
        ("::ffff:203.0.113.9", 202),
        ("::ffff:cb00:7109", 429),
        ("203.0.113.10", 202),
    ];
    for (n, (client, status)) in expected.into_iter().enumerate() {
        assert_eq!(signup_from(&app, n, client).await, status, "signup {n} from {client}");
    }
    app.stop().await;
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let limit = [("TENANTRY_SIGNUP_PER_MINUTE", "1"), ("TENANTRY_SIGNUP_BURST", "1")];
    // Untrusted peer: its X-Forwarded-For is ignored, every request counts against 127.0.0.1.
    let app = TestApp::start_with(Db::Sqlite, CacheKind::InProcess, &limit).await;
    assert_eq!(signup_from(&app, 1, "198.51.100.1").await, 202);
    assert_eq!(signup_from(&app, 2, "198.51.100.2").await, 429, "a forged header buys no new budget");
    app.stop().await;

    // Trusted proxy network: the rightmost hop that is not a trusted proxy is the client.
    let trusted = [limit[0], limit[1], ("TENANTRY_TRUSTED_PROXIES", "127.0.0.0/8, 10.0.0.0/8")];
    let app = TestApp::start_with(Db::Sqlite, CacheKind::InProcess, &trusted).await;
    assert_eq!(signup_from(&app, 1, "198.51.100.1, 203.0.113.5, 10.0.0.7").await, 202);
    // The client cannot escape its budget by writing another address in front.
    assert_eq!(signup_from(&app, 2, "192.0.2.77, 203.0.113.5").await, 429);
    assert_eq!(signup_from(&app, 3, "203.0.113.6, 10.1.1.1").await, 202, "another client");
    app.stop().await;
}

/// Suspending a trial and resuming it gives the trial back, with its end unchanged; an overdue
/// account stays overdue. On both store engines.
#[tokio::test]
async fn resume_returns_to_the_trial() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = TestApp::start(db, CacheKind::InProcess).await;
        let trial = app.tenant("trial", "starter").await;
        assert_eq!(trial["state"], "trialing", "{db:?}: {trial}");
        let ends = trial["trial_ends_at"].clone();
        assert!(ends.is_string(), "{db:?}: the starter plan has a trial");

        let suspended = app.post("/v1/tenants/trial/suspend", &app.provider, json!(null)).await;
        assert_eq!(suspended.body["state"], "suspended", "{db:?}: {suspended:?}");
        let resumed = app.post("/v1/tenants/trial/resume", &app.provider, json!(null)).await;
        assert_eq!(resumed.status, 200, "{db:?}: {resumed:?}");
        assert_eq!(resumed.body["state"], "trialing", "{db:?}: the trial goes on: {resumed:?}");
        assert_eq!(resumed.body["trial_ends_at"], ends, "{db:?}: its end is unchanged");
        let read = app.get("/v1/tenants/trial", &app.provider).await;
        assert_eq!((&read.body["state"], &read.body["trial_ends_at"]), (&json!("trialing"), &ends), "{db:?}");
        app.post("/v1/tenants/trial/resume", &app.provider, json!(null)).await.assert_problem(409, "not_suspended");

        // An overdue account suspended and resumed is still overdue; an active one active.
        for (slug, state) in [("overdue", "past_due"), ("paying", "active")] {
            app.tenant(slug, "starter").await;
            let path = format!("/v1/tenants/{slug}");
            let moved = app.call("PATCH", &path, Some(&app.provider), Some(json!({"state": state}))).await;
            assert_eq!(moved.body["state"], state, "{db:?}: {moved:?}");
            app.post(&format!("{path}/suspend"), &app.provider, json!(null)).await;
            let resumed = app.post(&format!("{path}/resume"), &app.provider, json!(null)).await;
            assert_eq!(resumed.body["state"], state, "{db:?}: {resumed:?}");
        }
        app.stop().await;
    }
}

/// Every refusal about seats names the figure it is about: the plan's maximum and the number
/// asked for, the seats held, or the licence — in the singular for one.
#[tokio::test]
async fn seat_refusals_name_the_right_figures() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    let signup = json!({"company_name": "Initech", "admin_email": "bill@initech.test", "plan": "starter", "seats": 11});
    let refused = app.call("POST", "/v1/signup", None, Some(signup)).await;
    refused.assert_problem(409, "seat_limit_reached");
    let detail = refused.body["detail"].as_str().unwrap();
    assert_eq!(detail, "the plan allows 1 to 10 seats to be licensed; 11 were asked for");

    app.tenant_licensed("biz", "business", 2).await;
    for email in ["a@biz.test", "b@biz.test"] {
        assert_eq!(app.post("/v1/tenants/biz/seats", &app.provider, json!({"email": email})).await.status, 201);
    }
    let admin = app.tenant_admin("biz");
    let above = app.call("PATCH", "/v1/tenants/biz", Some(&admin), Some(json!({"seats": 51}))).await;
    above.assert_problem(409, "seat_limit_reached");
    assert_eq!(above.body["detail"], "the plan allows 1 to 50 seats to be licensed; 51 were asked for");
    let below = app.call("PATCH", "/v1/tenants/biz", Some(&admin), Some(json!({"seats": 1}))).await;
    below.assert_problem(409, "seats_in_use");
    assert_eq!(below.body["detail"], "2 seats are held now; release seats before lowering the licensed seats to 1");
    let full = app.post("/v1/tenants/biz/seats", &admin, json!({"email": "c@biz.test"})).await;
    full.assert_problem(409, "seat_limit_reached");
    assert_eq!(
        full.body["detail"],
        "2 seats are held and 2 licensed; raise the licensed seats (the plan allows up to 50) or release a seat"
    );

    app.plan("solo", 1).await;
    app.tenant("one", "solo").await;
    app.post("/v1/tenants/one/seats", &app.provider, json!({"email": "a@one.test"})).await;
    let solo = app.post("/v1/tenants/one/seats", &app.provider, json!({"email": "b@one.test"})).await;
    solo.assert_problem(409, "seat_limit_reached");
    assert_eq!(
        solo.body["detail"],
        "1 seat is held and 1 licensed, the plan's maximum; release a seat or move to a larger plan"
    );
    let too_small = app.call("PATCH", "/v1/tenants/biz", Some(&admin), Some(json!({"plan": "solo"}))).await;
    too_small.assert_problem(409, "plan_too_small");
    assert_eq!(too_small.body["detail"], "the new plan allows at most 1 seat and 2 seats are held now");
    app.stop().await;
}

/// The licensed seats are a limit the tenant admin sets within the plan: seats beyond it are
/// refused, it can be raised and lowered (not below the seats held), the seat count reports it,
/// and billing counts the seats held, not the licence.
#[tokio::test]
async fn the_tenant_admin_sets_the_seat_limit_and_billing_counts_the_seats_held() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    app.tenant_licensed("capped", "starter", 2).await;
    let admin = app.tenant_admin("capped");
    let seats = "/v1/tenants/capped/seats";
    for email in ["a@capped.test", "b@capped.test"] {
        assert_eq!(app.post(seats, &admin, json!({"email": email})).await.status, 201);
    }
    app.post(seats, &admin, json!({"email": "c@capped.test"})).await.assert_problem(409, "seat_limit_reached");
    let count = app.get(seats, &app.billing).await;
    assert_eq!((count.body["count"].as_u64(), count.body["max_seats"].as_u64()), (Some(2), Some(2)), "{count:?}");

    let raised = app.call("PATCH", "/v1/tenants/capped", Some(&admin), Some(json!({"seats": 5}))).await;
    assert_eq!((raised.status, raised.body["seats"].as_u64()), (200, Some(5)), "{raised:?}");
    let count = app.get(seats, &app.billing).await;
    assert_eq!(count.body["max_seats"], 5, "the cached count follows the new limit: {count:?}");
    assert_eq!(app.post(seats, &admin, json!({"email": "c@capped.test"})).await.status, 201);
    let lowered = app.call("PATCH", "/v1/tenants/capped", Some(&admin), Some(json!({"seats": 3}))).await;
    assert_eq!(lowered.body["seats"], 3, "{lowered:?}");

    // Billed for the 3 seats held, not the licence.
    let billed = app.get("/v1/billing/seats", &app.billing).await;
    assert_eq!(billed.body["items"][0]["count"], 3, "{billed:?}");
    let usage = app.get("/v1/tenants/capped/seats/usage", &app.billing).await;
    assert_eq!(usage.body["current"], 3, "{usage:?}");
    app.stop().await;
}

/// `Ada@Acme.example` is an address like any other: accepted, stored with its domain in lower
/// case, and the same seat as `ada@acme.example`.
#[tokio::test]
async fn email_addresses_are_accepted_and_compared_in_any_case() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    let signup = json!({"company_name": "Acme", "admin_email": "Ada@Acme.example", "plan": "starter", "seats": 3});
    let created = app.call("POST", "/v1/signup", None, Some(signup)).await;
    assert_eq!(created.status, 202, "{created:?}");
    assert_eq!(created.body["tenant"]["owner_email"], "Ada@acme.example");
    let seats = "/v1/tenants/acme/seats";
    let again = app.post(seats, &app.provider, json!({"email": "ada@ACME.EXAMPLE"})).await;
    assert_eq!((again.status, again.body["email"].as_str()), (200, Some("Ada@acme.example")), "{again:?}");
    let listed = app.get(seats, &app.provider).await;
    assert_eq!(listed.body["count"], 1, "{listed:?}");
    let removed = app.call("DELETE", "/v1/tenants/acme/seats/ADA@acme.example", Some(&app.provider), None).await;
    assert_eq!(removed.status, 204, "{removed:?}");
    assert_eq!(app.get(seats, &app.provider).await.body["count"], 0);
    app.stop().await;
}

/// Seat lists are in the order a person reads them: `user2` before `user10`.
#[tokio::test]
async fn seat_lists_are_in_natural_order() {
    let app = TestApp::start(Db::Postgres, CacheKind::InProcess).await;
    app.tenant("many", "starter").await;
    for email in ["user10@many.test", "user2@many.test", "User1@many.test", "ada@many.test"] {
        assert_eq!(app.post("/v1/tenants/many/seats", &app.provider, json!({"email": email})).await.status, 201);
    }
    let listed = app.get("/v1/tenants/many/seats", &app.provider).await;
    let emails: Vec<&str> =
        listed.body["seats"].as_array().unwrap().iter().map(|seat| seat["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["ada@many.test", "User1@many.test", "user2@many.test", "user10@many.test"]);
    app.stop().await;
}

/// A company called "Test" is told its name is a reserved word, not that no address can be made.
#[tokio::test]
async fn a_reserved_company_name_is_named_in_the_signup_refusal() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    let signup = json!({"company_name": "Test", "admin_email": "a@test-co.test", "plan": "starter", "seats": 1});
    let refused = app.call("POST", "/v1/signup", None, Some(signup)).await;
    refused.assert_problem(422, "validation_failed");
    assert_eq!(refused.body["errors"][0], "slug: `test`, made from company_name, is a reserved word; give a slug");
    let signup =
        json!({"company_name": "Ünïcödé GmbH", "admin_email": "a@unicode.test", "plan": "starter", "seats": 1});
    let created = app.call("POST", "/v1/signup", None, Some(signup)).await;
    assert_eq!(created.body["tenant"]["slug"], "unicode-gmbh", "{created:?}");
    app.stop().await;
}
