//! Hosts given by hand never collide with another tenant's, and ERP versions come from the
//! provider's catalogue and never go down in production.

use serde_json::json;

use crate::harness::{CacheKind, Db, TestApp};

const DOMAIN_ENV: [(&str, &str); 2] =
    [("TENANTRY_TENANT_DOMAIN", "erp.example.com"), ("TENANTRY_TENANT_TLS_ISSUER", "letsencrypt")];

async fn colliding_host_is_refused(db: Db) {
    let app = TestApp::start_with(db, CacheKind::InProcess, &DOMAIN_ENV).await;
    app.tenant("acme", "business").await;
    app.tenant("globex", "business").await;

    // A host given by hand: lowercased, and shown.
    let set =
        app.call("PATCH", "/v1/tenants/acme", Some(&app.provider), Some(json!({"host": "ERP.Acme.Example"}))).await;
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(set.body["host"], "erp.acme.example");

    // Another tenant cannot have it, nor another tenant's generated address, nor a test host.
    for (host, code) in [
        ("erp.acme.example", "host_taken"),
        ("acme.erp.example.com", "host_taken"),
        ("globex.test.erp.example.com", "validation_failed"),
    ] {
        let reply = app.call("PATCH", "/v1/tenants/globex", Some(&app.provider), Some(json!({"host": host}))).await;
        let status = if code == "host_taken" { 409 } else { 422 };
        reply.assert_problem(status, code);
        assert!(!reply.body["detail"].as_str().unwrap().contains("acme "), "the holder is not named: {reply:?}");
    }
    let globex = app.get("/v1/tenants/globex", &app.provider).await;
    assert_eq!(globex.body["host"], serde_json::Value::Null, "nothing changed: {globex:?}");

    // Onboarding with a taken host is refused and creates nothing.
    let body = json!({"slug": "initech", "display_name": "Initech", "owner_email": "o@initech.test",
        "plan": "business", "seats": 2, "host": "erp.acme.example"});
    app.post("/v1/tenants", &app.provider, body).await.assert_problem(409, "host_taken");
    assert_eq!(app.get("/v1/tenants/initech", &app.provider).await.status, 404);

    // A signup whose slug's address was given to another tenant by hand gets the next name.
    let set = app
        .call("PATCH", "/v1/tenants/acme", Some(&app.provider), Some(json!({"host": "hooli.erp.example.com"})))
        .await;
    assert_eq!(set.status, 200, "{set:?}");
    let signup = json!({"company_name": "Hooli", "admin_email": "gavin@hooli.test", "plan": "starter", "seats": 1});
    let reply = app.call("POST", "/v1/signup", None, Some(signup)).await;
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(reply.body["tenant"]["slug"], "hooli-2");

    // Giving the host back frees it; a tenant admin cannot change hosts.
    let cleared = app.call("PATCH", "/v1/tenants/acme", Some(&app.provider), Some(json!({"host": null}))).await;
    assert_eq!(cleared.body["host"], serde_json::Value::Null, "{cleared:?}");
    let taken =
        app.call("PATCH", "/v1/tenants/globex", Some(&app.provider), Some(json!({"host": "erp.acme.example"}))).await;
    assert_eq!(taken.status, 200, "{taken:?}");
    let admin = app.tenant_admin("acme");
    app.call("PATCH", "/v1/tenants/acme", Some(&admin), Some(json!({"host": "erp.acme.example"})))
        .await
        .assert_problem(403, "forbidden");
    app.stop().await;
}

#[tokio::test]
async fn colliding_host_is_refused_sqlite() {
    colliding_host_is_refused(Db::Sqlite).await;
}

#[tokio::test]
async fn colliding_host_is_refused_postgres() {
    colliding_host_is_refused(Db::Postgres).await;
}

#[tokio::test]
async fn hosts_need_tls_for_tenants() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    app.tenant("acme", "business").await;
    let reply =
        app.call("PATCH", "/v1/tenants/acme", Some(&app.provider), Some(json!({"host": "erp.acme.example"}))).await;
    reply.assert_problem(422, "validation_failed");
    app.stop().await;
}

#[tokio::test]
async fn unknown_and_lower_versions_are_refused() {
    let app =
        TestApp::start_with(Db::Sqlite, CacheKind::InProcess, &[("TENANTRY_ERP_VERSIONS", "7.0.59, 7.2.23, 8.0.12")])
            .await;
    app.tenant("acme", "business").await;
    let patch = |version: &str| {
        app.call("PATCH", "/v1/tenants/acme", Some(&app.provider), Some(json!({"erp_version": version})))
    };
    // A release that does not exist (or that the provider does not offer).
    let unknown = patch("99.0.0").await;
    unknown.assert_problem(422, "validation_failed");
    assert_eq!(
        unknown.body["errors"][0],
        "erp_version: 99.0.0 is not in the provider's catalogue of ERP versions (7.0.59, 7.2.23, 8.0.12)"
    );
    let onboarding = json!({"slug": "globex", "display_name": "Globex", "owner_email": "o@globex.test",
        "plan": "business", "seats": 2, "erp_version": "7.4.0"});
    app.post("/v1/tenants", &app.provider, onboarding).await.assert_problem(422, "validation_failed");

    // Up is fine; down is refused, with the reason, and changes nothing.
    assert_eq!(patch("7.2.23").await.status, 200);
    let down = patch("7.0.59").await;
    down.assert_problem(409, "version_downgrade");
    assert_eq!(
        down.body["detail"],
        "production runs ERP 7.2.23; 7.0.59 is older, and an older ERP on a database that a newer one has migrated \
         would corrupt it, so versions only go up"
    );
    assert_eq!(app.get("/v1/tenants/acme", &app.provider).await.body["erp_version"], "7.2.23");
    assert_eq!(patch("8.0.12").await.body["erp_version"], "8.0.12");
    app.stop().await;
}
