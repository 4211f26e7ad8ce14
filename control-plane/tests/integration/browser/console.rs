//! The tenant console in the browser, on the local cluster with the real operator.

use std::time::Instant;

use super::*;

/// Polls the API until the tenant is ready (the status mirror has seen the operator's Ready).
async fn until_ready(app: &TestApp, slug: &str, token: &str) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let tenant = app.get(&format!("/v1/tenants/{slug}"), token).await;
        if tenant.body["provisioning"] == "ready" {
            return;
        }
        assert!(Instant::now() < deadline, "{slug} not ready in time: {tenant:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn seat_count(app: &TestApp, slug: &str) -> u64 {
    app.get(&format!("/v1/tenants/{slug}/seats"), &app.provider).await.body["count"].as_u64().unwrap()
}

/// Signs in at `/login` by pasting `token`.
async fn sign_in(session: &e2e::browser::Session, app: &TestApp, token: &str) {
    session.open(&format!("{}/login", app.url)).await.unwrap();
    session.fill("Access token", token).await.unwrap();
    session.click_button("Sign in").await.unwrap();
}

#[tokio::test]
async fn tenant_console_seats() {
    let operator = operator::start().await;
    let app = TestApp::start_on_cluster(operator.run_label()).await;
    app.plan("tiny", 3).await;
    let slug = operator.name("console");
    let signup = app
        .call(
            "POST",
            "/v1/signup",
            None,
            Some(serde_json::json!({"company_name": "Console Co", "slug": slug, "admin_email": "ada@console.test",
                "plan": "tiny", "seats": 3})),
        )
        .await;
    assert_eq!(signup.status, 202, "{signup:?}");
    let admin = signup.body["token"].as_str().unwrap().to_string();
    until_ready(&app, &slug, &admin).await;

    let shots = screenshot_dir("tenant_console_seats").unwrap();
    let browser = Browser::shared().await.unwrap();
    let session = browser.new_session().await.unwrap();
    sign_in(&session, &app, &admin).await;
    session.wait_for_text("h1", "Console Co", Duration::from_secs(10)).await.unwrap();
    assert!(session.current_url().await.unwrap().path().ends_with(&format!("/t/{slug}/console")));
    // The environments are those the operator reported; the cluster only simulates workloads.
    session
        .wait_for_text("[data-environment=production] [data-env-state]", "running", Duration::from_secs(10))
        .await
        .unwrap();
    session.wait_for_text(".simulated", "Simulated workloads", Duration::from_secs(10)).await.unwrap();
    session.wait_for_text("[data-seat-count]", "1", Duration::from_secs(10)).await.unwrap();
    session.screenshot(&shots, "console").await.unwrap();
    assert_eq!(session.accessibility_problems().await.unwrap(), Vec::<String>::new());
    assert!(session.tab_to("#seat-email", 40).await.unwrap().is_some(), "the seat field is reachable by keyboard");

    // Two more people fill the plan's three seats.
    for (email, count) in [("bob@console.test", "2"), ("cy@console.test", "3")] {
        session.fill("Add a person (email address)", email).await.unwrap();
        session.click_button("Add seat").await.unwrap();
        session.wait_for_text("[role=status]", "The seat was added.", Duration::from_secs(10)).await.unwrap();
        session.wait_for_text("[data-seat-count]", count, Duration::from_secs(10)).await.unwrap();
    }
    assert_eq!(seat_count(&app, &slug).await, 3);

    // At the limit the page disables adding, and the API refuses it too.
    let input = session.wait_for("#seat-email", Duration::from_secs(10)).await.unwrap();
    assert!(!input.is_enabled().await.unwrap(), "the email field is disabled at the limit");
    let button = session.find(Locator::XPath("//button[normalize-space(.)='Add seat']")).await.unwrap();
    assert!(!button.is_enabled().await.unwrap(), "the button is disabled at the limit");
    session.wait_for_text("#seat-limit-note", "maximum of 3 seats", Duration::from_secs(10)).await.unwrap();
    session.screenshot(&shots, "full").await.unwrap();
    assert_eq!(session.accessibility_problems().await.unwrap(), Vec::<String>::new());
    let refused =
        app.post(&format!("/v1/tenants/{slug}/seats"), &admin, serde_json::json!({"email": "dee@console.test"})).await;
    refused.assert_problem(409, "seat_limit_reached");
    assert_eq!(seat_count(&app, &slug).await, 3);

    // Removing one frees a seat: the form works again.
    session.find(Locator::Css("[data-seat='bob@console.test'] button")).await.unwrap().click().await.unwrap();
    session.wait_for_text("[role=status]", "The seat was released.", Duration::from_secs(10)).await.unwrap();
    session.wait_for_text("[data-seat-count]", "2", Duration::from_secs(10)).await.unwrap();
    assert!(session.wait_for("#seat-email", Duration::from_secs(5)).await.unwrap().is_enabled().await.unwrap());
    assert!(!session.page_text().await.unwrap().contains("bob@console.test"));
    assert_eq!(seat_count(&app, &slug).await, 2);
    session.screenshot(&shots, "after-removal").await.unwrap();
    session.close().await.unwrap();

    // On a phone-sized screen the console fits the width.
    let phone = browser.new_phone_session().await.unwrap();
    sign_in(&phone, &app, &admin).await;
    phone.wait_for_text("h2", "Seats", Duration::from_secs(10)).await.unwrap();
    let width: u64 =
        phone.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap().as_u64().unwrap();
    assert!(width <= 390, "the console fits a phone's width ({width} px)");
    phone.screenshot(&shots, "console-phone").await.unwrap();
    phone.close().await.unwrap();
    app.stop().await;
    operator.stop().await;
}
