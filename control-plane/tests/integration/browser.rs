//! The pages in a real browser: Debian's headless Chromium, driven through chromedriver
//! (`e2e::browser`), against a control plane on port 0 — and, for `signup_to_ready_in_browser`,
//! the local cluster with the real operator and the simulated kubelet. Screenshots of every
//! page go to `target/browser-screenshots/<test>/` (or `$TENANTRY_SCREENSHOTS/<test>/`).

use crate::operator;

use crate::harness;

use std::time::Duration;

use e2e::browser::{Browser, screenshot_dir};
use fantoccini::Locator;
use harness::{CacheKind, Db, TestApp};

// The consoles in the browser, each in its own file.
#[path = "browser/console.rs"]
mod console;
#[path = "browser/provider.rs"]
mod provider;

const READY_TIMEOUT: Duration = Duration::from_secs(150);

async fn slugs(app: &TestApp) -> Vec<String> {
    let listed = app.get("/v1/tenants", &app.provider).await;
    listed.body["items"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn signup_form_errors() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    app.tenant("taken-co", "starter").await;
    let shots = screenshot_dir("signup_form_errors").unwrap();
    let browser = Browser::shared().await.unwrap();
    let session = browser.new_session().await.unwrap();
    session.open(&format!("{}/signup", app.url)).await.unwrap();
    session.screenshot(&shots, "signup").await.unwrap();
    assert_eq!(session.accessibility_problems().await.unwrap(), Vec::<String>::new());
    for control in ["#company_name", "#slug", "#admin_email", "#seats", "#plan-starter", "button[type=submit]"] {
        assert!(session.tab_to(control, 40).await.unwrap().is_some(), "{control} is reachable by keyboard");
    }

    // The address follows the company name and says at once that it is taken.
    session.fill("Company name", "Taken Co").await.unwrap();
    session.wait_for_text("#slug-status", "taken", Duration::from_secs(10)).await.unwrap();
    session.fill("admin_email", "not-an-email").await.unwrap();
    session.fill("seats", "999").await.unwrap();
    session.find(Locator::Css("#plan-starter")).await.unwrap().click().await.unwrap();
    session.click_button("Create my ERP").await.unwrap();
    for field in ["slug", "admin_email", "seats"] {
        let error = session.wait_for(&format!("#{field}-error"), Duration::from_secs(10)).await.unwrap();
        assert!(!error.text().await.unwrap().trim().is_empty(), "{field} has its error");
        let input = session.find(Locator::Css(&format!("#{field}"))).await.unwrap();
        let described = input.attr("aria-describedby").await.unwrap().unwrap_or_default();
        assert!(described.contains(&format!("{field}-error")), "{field}: {described}");
    }
    let seats = session.find(Locator::Css("#seats")).await.unwrap();
    assert_eq!(seats.prop("value").await.unwrap().as_deref(), Some("999"), "what was typed is kept");
    session.screenshot(&shots, "errors").await.unwrap();
    assert_eq!(session.accessibility_problems().await.unwrap(), Vec::<String>::new());
    assert_eq!(slugs(&app).await, ["taken-co"], "nothing was created");

    // Put right, the same form goes through to the progress page.
    session.fill("slug", "fresh-co").await.unwrap();
    session.fill("admin_email", "ada@fresh.test").await.unwrap();
    session.fill("seats", "3").await.unwrap();
    session.click_button("Create my ERP").await.unwrap();
    session.wait_for_text("h2", "Setting up", Duration::from_secs(10)).await.unwrap();
    session.wait_for_text(".summary", "Waiting for a cluster", Duration::from_secs(10)).await.unwrap();
    assert!(session.current_url().await.unwrap().path().ends_with("/t/fresh-co"));
    session.screenshot(&shots, "progress").await.unwrap();
    session.close().await.unwrap();

    let phone = browser.new_phone_session().await.unwrap();
    phone.open(&format!("{}/signup", app.url)).await.unwrap();
    let width: u64 =
        phone.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap().as_u64().unwrap();
    assert!(width <= 390, "the page fits a phone's width ({width} px)");
    phone.screenshot(&shots, "signup-phone").await.unwrap();
    phone.close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn signup_to_ready_in_browser() {
    let operator = operator::start().await;
    let app = TestApp::start_on_cluster(operator.run_label()).await;
    let slug = operator.name("browser");
    let shots = screenshot_dir("signup_to_ready_in_browser").unwrap();
    let browser = Browser::shared().await.unwrap();
    let session = browser.new_session().await.unwrap();
    session.open(&format!("{}/", app.url)).await.unwrap();
    session.fill("Company name", "Browser Corp").await.unwrap();
    session.fill("slug", &slug).await.unwrap();
    session.fill("admin_email", "ada@browser.test").await.unwrap();
    session.fill("seats", "2").await.unwrap();
    session.find(Locator::Css("#plan-starter")).await.unwrap().click().await.unwrap();
    session.click_button("Create my ERP").await.unwrap();
    session.wait_for_text("h2", "Setting up", Duration::from_secs(10)).await.unwrap();
    session.screenshot(&shots, "progress").await.unwrap();

    // The page updates itself (no reload) until the ERP's address shows.
    let url = format!("https://{slug}.erp.test");
    session.wait_for_text("[data-url]", &url, READY_TIMEOUT).await.unwrap();
    session.screenshot(&shots, "ready").await.unwrap();

    // The master password, once: the Secret's value, then never again.
    session.click_button("Show the master password").await.unwrap();
    let field = session.wait_for("#master-password-value", Duration::from_secs(10)).await.unwrap();
    let shown = field.prop("value").await.unwrap().unwrap_or_default();
    let parsed = control_plane::slug::Slug::parse(&slug).unwrap();
    let secret = control_plane::provision::password::read_master_password(&operator.client, &parsed).await.unwrap();
    assert_eq!(shown, secret.as_str());
    session.screenshot(&shots, "password").await.unwrap();
    session.open(&format!("{}/t/{slug}", app.url)).await.unwrap();
    session.wait_for_text("#master-password", "shown once already", Duration::from_secs(10)).await.unwrap();
    let text = session.page_text().await.unwrap();
    assert!(!text.contains(secret.as_str()), "reloading does not show the password again");
    session.close().await.unwrap();
    app.stop().await;
    operator.stop().await;
}
