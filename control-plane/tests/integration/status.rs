//! `status_is_mirrored`, end to end: a signup through the HTTP API, the control plane's worker
//! applies the Tenant to the local cluster, the real operator (in this process) reconciles it to
//! Ready with the simulated kubelet, and the status watch mirrors phase and URL back into the
//! store, where the API shows them.

use crate::operator;

use crate::harness;

use std::time::Duration;

use harness::TestApp;
use serde_json::{Value, json};
use tenantry_contract::api::Phase;

/// Polls the API (the mirror has no event the test could await) until `done` holds.
async fn until_api(app: &TestApp, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + operator::TIMEOUT;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        let reply = app.get(path, &app.provider).await;
        if done(&reply.body) {
            return reply.body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path} never showed {what}: {}", reply.text);
        tick.tick().await;
    }
}

/// Opens the progress page as the tenant's admin and presses "Show the master password":
/// (status, page text).
async fn reveal(app: &TestApp, slug: &str, session: &str) -> (u16, String) {
    harness::reveal_master_password(&app.url, slug, session).await
}

#[tokio::test]
async fn status_is_mirrored() {
    let operator = operator::start().await;
    let app = TestApp::start_on_cluster(operator.run_label()).await;
    let slug = operator.name("mirror");
    let signup = json!({"company_name": "Mirror Ltd", "slug": slug, "admin_email": "ada@mirror.test", "plan": "starter", "seats": 2});
    let reply = app.call("POST", "/v1/signup", None, Some(signup)).await;
    assert_eq!(reply.status, 202, "{reply:?}");

    // The worker applies it after the commit; the operator takes it from there.
    e2e::wait::until(
        &operator.tenants(),
        &slug,
        "applied",
        operator::TIMEOUT,
        |tenant: Option<&tenantry_contract::api::Tenant>| tenant.is_some(),
    )
    .await;
    let ready = operator.wait_phase(&slug, Phase::Ready).await;
    assert_eq!(ready.spec.plan, "starter");
    assert_eq!(
        ready.spec.ingress.as_ref().map(|ingress| ingress.host.as_str()),
        Some(format!("{slug}.erp.test").as_str())
    );
    let path = format!("/v1/tenants/{slug}");
    let tenant = until_api(&app, &path, "ready", |tenant| tenant["provisioning"] == "ready").await;
    assert_eq!(tenant["url"], format!("https://{slug}.erp.test"));
    let conditions = tenant["conditions"].as_array().expect("conditions are mirrored");
    assert!(conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"), "{conditions:?}");

    // The operator generated the master password; the control plane reads it from the Secret.
    let parsed = control_plane::slug::Slug::parse(&slug).unwrap();
    let password = control_plane::provision::password::read_master_password(&operator.client, &parsed).await.unwrap();
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(operator.client.clone(), &parsed.namespace());
    let secret = secrets.get(tenantry_contract::names::secrets::MASTER_PASSWORD).await.unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, password.as_bytes());
    assert!(password.len() >= 16, "a generated password");

    // The admin's page shows it once, through the page's own form.
    let admin = reply.body["token"].as_str().unwrap().to_string();
    let shown = reveal(&app, &slug, &admin).await;
    assert_eq!(shown.0, 200, "{}", shown.1);
    assert!(shown.1.contains(password.as_str()), "the page shows the Secret's password");
    let again = reveal(&app, &slug, &admin).await;
    assert_eq!(again.0, 410, "{}", again.1);
    assert!(!again.1.contains(password.as_str()));
    drop(password);

    let suspended = app.post(&format!("/v1/tenants/{slug}/suspend"), &app.provider, json!(null)).await;
    assert_eq!(suspended.status, 200, "{suspended:?}");
    operator.wait_phase(&slug, Phase::Suspended).await;
    until_api(&app, &path, "suspended", |tenant| tenant["provisioning"] == "suspended").await;

    let deleted = app.call("DELETE", &path, Some(&app.provider), None).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    e2e::wait::until_deleted(&operator.tenants(), &slug, operator::TIMEOUT).await;
    until_api(&app, &path, "deleted", |tenant| tenant["provisioning"] == "deleted").await;
    app.stop().await;
    operator.stop().await;
}
