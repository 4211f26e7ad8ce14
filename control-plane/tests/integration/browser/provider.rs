//! The provider console in Chromium, against the local cluster with the real operator: a
//! provider admin finds a ready tenant, suspends it from its page (the operator scales its ERP to
//! zero), then resumes it. Screenshots: `target/browser-screenshots/provider_console_suspend/`.

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::json;
use tenantry_contract::api::{Phase, Tenant};

use super::*;

const PAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// The workloads the operator scales with suspension: the ERP server and the web client.
const WORKLOADS: [&str; 2] = ["erp-server-production", "erp-web-production"];

/// Polls the API (the status mirror has no event to await) until the tenant is `provisioning`.
async fn until_provisioning(app: &TestApp, slug: &str, provisioning: &str) {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        let tenant = app.get(&format!("/v1/tenants/{slug}"), &app.provider).await;
        if tenant.body["provisioning"] == provisioning {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{slug} never {provisioning}: {}", tenant.text);
        tick.tick().await;
    }
}

/// Waits until the Tenant's spec says `suspended`, the operator reports the phase that goes
/// with it, and the ERP's workloads are scaled to `replicas`.
async fn until_scaled(operator: &operator::Operator, slug: &str, suspended: bool, replicas: i32) {
    let what = format!("spec.suspended = {suspended}");
    e2e::wait::until(&operator.tenants(), slug, &what, operator::TIMEOUT, move |tenant: Option<&Tenant>| {
        tenant.is_some_and(|tenant| tenant.spec.suspended == suspended)
    })
    .await;
    operator.wait_phase(slug, if suspended { Phase::Suspended } else { Phase::Ready }).await;
    let namespace = control_plane::slug::Slug::parse(slug).unwrap().namespace();
    let deployments: Api<Deployment> = Api::namespaced(operator.client.clone(), &namespace);
    for name in WORKLOADS {
        let what = format!("{replicas} replicas");
        e2e::wait::until(&deployments, name, &what, operator::TIMEOUT, move |deployment: Option<&Deployment>| {
            deployment.and_then(|d| d.spec.as_ref()).is_some_and(|spec| spec.replicas == Some(replicas))
        })
        .await;
    }
}

/// Signs in at `/login` by pasting `token` into "Access token".
async fn sign_in(session: &e2e::browser::Session, app: &TestApp, token: &str) {
    session.open(&format!("{}/login", app.url)).await.unwrap();
    session.fill("Access token", token).await.unwrap();
    session.click_button("Sign in").await.unwrap();
    session.wait_for_text("h1", "Tenants", PAGE_TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn provider_console_suspend() {
    let operator = operator::start().await;
    let app = TestApp::start_on_cluster(operator.run_label()).await;
    let slug = operator.name("console");
    let body = json!({"slug": slug, "display_name": "Console Corp", "owner_email": "ada@console.test", "plan": "starter", "seats": 2});
    let created = app.post("/v1/tenants", &app.provider, body).await;
    assert_eq!(created.status, 201, "{created:?}");
    until_provisioning(&app, &slug, "ready").await;

    let shots = screenshot_dir("provider_console_suspend").unwrap();
    let browser = Browser::shared().await.unwrap();
    let session = browser.new_session().await.unwrap();
    sign_in(&session, &app, &app.provider).await;
    assert!(session.current_url().await.unwrap().path().ends_with("/provider"));
    session.screenshot(&shots, "tenants").await.unwrap();
    assert_eq!(session.accessibility_problems().await.unwrap(), Vec::<String>::new(), "tenants");

    session.fill("Search", &slug).await.unwrap();
    session.click_button("Show tenants").await.unwrap();
    session.wait_for_text("#match-count", "1 tenant matches.", PAGE_TIMEOUT).await.unwrap();
    session.wait_for_text(&format!("tr[data-tenant=\"{slug}\"]"), "ready", PAGE_TIMEOUT).await.unwrap();
    session.screenshot(&shots, "search").await.unwrap();

    session.find(Locator::LinkText("Console Corp")).await.unwrap().click().await.unwrap();
    session.wait_for_text("h1", "Console Corp", PAGE_TIMEOUT).await.unwrap();
    session.wait_for_text("#provisioning-state", "ready", PAGE_TIMEOUT).await.unwrap();
    session.wait_for_text("#subscription-state", "trialing", PAGE_TIMEOUT).await.unwrap();
    session.screenshot(&shots, "detail").await.unwrap();
    assert_eq!(session.accessibility_problems().await.unwrap(), Vec::<String>::new(), "detail");

    session.click_button("Suspend").await.unwrap();
    session.wait_for_text(".confirmation", "The tenant is suspended", PAGE_TIMEOUT).await.unwrap();
    session.wait_for_text("#subscription-state", "suspended", PAGE_TIMEOUT).await.unwrap();
    assert_eq!(app.get(&format!("/v1/tenants/{slug}"), &app.provider).await.body["state"], "suspended");
    session.screenshot(&shots, "suspended").await.unwrap();
    assert_eq!(session.accessibility_problems().await.unwrap(), Vec::<String>::new(), "suspended");
    until_scaled(&operator, &slug, true, 0).await;
    until_provisioning(&app, &slug, "suspended").await;
    // The page, loaded again, shows what the operator reports.
    session.open(&format!("{}/provider/tenants/{slug}", app.url)).await.unwrap();
    session.wait_for_text("#provisioning-state", "suspended", PAGE_TIMEOUT).await.unwrap();
    session.screenshot(&shots, "scaled-to-zero").await.unwrap();

    session.click_button("Resume").await.unwrap();
    session
        .wait_for_text(".confirmation", "The tenant is resumed in the state it had before", PAGE_TIMEOUT)
        .await
        .unwrap();
    // It was on its trial when suspended: it is again.
    session.wait_for_text("#subscription-state", "trialing", PAGE_TIMEOUT).await.unwrap();
    assert_eq!(app.get(&format!("/v1/tenants/{slug}"), &app.provider).await.body["state"], "trialing");
    until_scaled(&operator, &slug, false, 1).await;
    session.screenshot(&shots, "resumed").await.unwrap();

    // The plan pages, as the browser shows them (the forms are tested over HTTP in `web.rs`).
    session.find(Locator::LinkText("Starter")).await.unwrap().click().await.unwrap();
    session.wait_for_text("h1", "Starter plan", PAGE_TIMEOUT).await.unwrap();
    session.screenshot(&shots, "plan").await.unwrap();
    assert_eq!(session.accessibility_problems().await.unwrap(), Vec::<String>::new(), "plan");
    session.find(Locator::LinkText("← All plans")).await.unwrap().click().await.unwrap();
    session.wait_for_text("#plans-caption", "Every plan", PAGE_TIMEOUT).await.unwrap();
    session.screenshot(&shots, "plans").await.unwrap();
    assert_eq!(session.accessibility_problems().await.unwrap(), Vec::<String>::new(), "plans");
    session.click_button("Start a new plan").await.unwrap();
    session.wait_for_text("h1", "New plan", PAGE_TIMEOUT).await.unwrap();
    session.screenshot(&shots, "new-plan").await.unwrap();
    assert_eq!(session.accessibility_problems().await.unwrap(), Vec::<String>::new(), "new-plan");
    session.close().await.unwrap();

    // On a phone the tables scroll inside the page; the page itself never scrolls sideways.
    let phone = browser.new_phone_session().await.unwrap();
    sign_in(&phone, &app, &app.provider).await;
    let detail = format!("/provider/tenants/{slug}");
    for (path, name) in
        [("/provider", "tenants-phone"), (detail.as_str(), "detail-phone"), ("/provider/plans", "plans-phone")]
    {
        phone.open(&format!("{}{path}", app.url)).await.unwrap();
        phone.wait_for("main h1", PAGE_TIMEOUT).await.unwrap();
        let width: u64 =
            phone.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap().as_u64().unwrap();
        assert!(width <= 390, "{path} fits a phone's width ({width} px)");
        phone.screenshot(&shots, name).await.unwrap();
    }
    phone.close().await.unwrap();
    app.stop().await;
    operator.stop().await;
}
