//! The tenant console at the HTML level: who may see it, seats against the plan's limit, the
//! plan change, environments and the usage chart — each checked through the API as well.

use super::*;

/// A console session: the tenant admin's token and a CSRF token, as cookies.
struct Signed {
    session: String,
    csrf: String,
}

impl Signed {
    async fn new(browser: &Browser<'_>, session: String, slug: &str) -> Self {
        let page = browser.get(&format!("/t/{slug}/console"), &[("tenantry_session", &session)]).await;
        page.assert_html(200);
        let csrf = page.cookie_value("tenantry_csrf").unwrap();
        Self { session, csrf }
    }

    fn cookies(&self) -> [(&str, &str); 2] {
        [("tenantry_session", self.session.as_str()), ("tenantry_csrf", self.csrf.as_str())]
    }
}

async fn seat_count(app: &TestApp, slug: &str) -> u64 {
    let reply = app.get(&format!("/v1/tenants/{slug}/seats"), &app.provider).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["count"].as_u64().unwrap()
}

#[tokio::test]
async fn the_console_is_its_tenants_admins_and_the_providers() {
    let app = start().await;
    app.tenant("acme", "starter").await;
    app.tenant("other", "starter").await;
    let browser = Browser::new(&app);
    let nobody = browser.get("/t/acme/console", &[]).await;
    nobody.assert_html(404);
    let other_admin = app.tenant_admin("other");
    let other = browser.get("/t/acme/console", &[("tenantry_session", &other_admin)]).await;
    other.assert_html(404);
    let unknown = browser.get("/t/nowhere/console", &[("tenantry_session", &other_admin)]).await;
    assert_eq!(without_csrf(&other.text), without_csrf(&unknown.text), "another tenant's console is not found");
    let own = browser.get("/t/acme/console", &[("tenantry_session", &app.tenant_admin("acme"))]).await;
    own.assert_html(200);
    for section in ["id=\"seats\"", "id=\"environments\"", "id=\"subscription\"", "href=\"/t/acme/console\""] {
        assert!(own.text.contains(section), "{section} in {}", own.text);
    }
    let provider = browser.get("/t/acme/console", &[("tenantry_session", &app.provider)]).await;
    provider.assert_html(200);

    // Forms of another tenant's console are refused like its pages.
    let signed = Signed::new(&browser, app.tenant_admin("other"), "other").await;
    let refused = browser
        .post("/t/acme/console/seats", &[("csrf", &signed.csrf), ("email", "x@y.test")], &signed.cookies())
        .await;
    refused.assert_html(404);
    assert_eq!(seat_count(&app, "acme").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn seats_are_added_and_removed_up_to_the_plans_limit() {
    let app = start().await;
    app.plan("tiny", 3).await;
    app.tenant("acme", "tiny").await;
    let browser = Browser::new(&app);
    let signed = Signed::new(&browser, app.tenant_admin("acme"), "acme").await;
    let add = |email: &'static str| {
        let signed = &signed;
        let browser = &browser;
        async move {
            browser.post("/t/acme/console/seats", &[("csrf", &signed.csrf), ("email", email)], &signed.cookies()).await
        }
    };

    let forged =
        browser.post("/t/acme/console/seats", &[("csrf", "forged"), ("email", "a@acme.test")], &signed.cookies()).await;
    assert_eq!(forged.status, 403);
    let bad = add("not-an-email").await;
    bad.assert_html(422);
    assert!(
        bad.text.contains("id=\"seat-email-error\"") && bad.text.contains("Enter an email address"),
        "{}",
        bad.text
    );
    assert!(bad.text.contains("value=\"not-an-email\""), "what was typed is kept");

    for (email, count) in [("a@acme.test", 1), ("b@acme.test", 2), ("c@acme.test", 3)] {
        let added = add(email).await;
        assert_eq!((added.status, added.location()), (303, "/t/acme/console?done=seat-added#seats"), "{}", added.text);
        assert_eq!(seat_count(&app, "acme").await, count);
    }
    let again = add("a@acme.test").await;
    assert_eq!(again.location(), "/t/acme/console?done=seat-held#seats");

    // Full: the page says so and disables the form; a post anyway is refused and changes nothing.
    let full = browser.get("/t/acme/console", &signed.cookies()).await;
    full.assert_html(200);
    assert!(full.text.contains("3</strong> of 3 seats in use"), "{}", full.text);
    assert!(full.text.contains("id=\"seat-limit-note\""));
    assert!(full.text.contains("name=\"email\" autocomplete=\"off\" value=\"\" disabled"), "{}", full.text);
    let over = add("d@acme.test").await;
    over.assert_html(409);
    assert!(over.text.contains("id=\"seat-email-error\"") && over.text.contains("Release a seat"), "{}", over.text);
    assert_eq!(seat_count(&app, "acme").await, 3);
    let api = app.post("/v1/tenants/acme/seats", &app.tenant_admin("acme"), json!({"email": "d@acme.test"})).await;
    api.assert_problem(409, "seat_limit_reached");

    let removed = browser
        .post("/t/acme/console/seats/remove", &[("csrf", &signed.csrf), ("email", "b@acme.test")], &signed.cookies())
        .await;
    assert_eq!((removed.status, removed.location()), (303, "/t/acme/console?done=seat-removed#seats"));
    assert_eq!(seat_count(&app, "acme").await, 2);
    let twice = browser
        .post("/t/acme/console/seats/remove", &[("csrf", &signed.csrf), ("email", "b@acme.test")], &signed.cookies())
        .await;
    twice.assert_html(404);
    assert!(twice.text.contains("holds no seat"), "{}", twice.text);
    let page = browser.get("/t/acme/console?done=seat-removed", &signed.cookies()).await;
    assert!(page.text.contains("The seat was released."));
    assert!(!page.text.contains("data-seat=\"b@acme.test\"") && page.text.contains("data-seat=\"c@acme.test\""));
    assert!(!page.text.contains("id=\"seat-limit-note\""), "room again");
    // The chart shows today's peak of 3 against the limit of 3, with its table.
    assert!(page.text.contains("at most 3 seats"), "{}", page.text);
    assert!(page.text.contains("<svg") && page.text.contains("class=\"limit\""));
    assert_eq!(page.text.matches("<tr><td>").count(), 90, "one row per day for 90 days");
    app.stop().await;
}

#[tokio::test]
async fn the_plan_changes_unless_the_seats_do_not_fit() {
    let app = start().await;
    app.plan("tiny", 2).await;
    app.tenant("acme", "starter").await;
    let admin = app.tenant_admin("acme");
    for email in ["a@acme.test", "b@acme.test", "c@acme.test"] {
        assert_eq!(app.post("/v1/tenants/acme/seats", &admin, json!({"email": email})).await.status, 201);
    }
    let browser = Browser::new(&app);
    let signed = Signed::new(&browser, admin.clone(), "acme").await;
    let page = browser.get("/t/acme/console", &signed.cookies()).await;
    assert!(page.text.contains("Starter</dd>") && page.text.contains("€19.00 per seat per month"), "{}", page.text);
    assert!(page.text.contains("€57.00 for the 3 seats held now"), "{}", page.text);
    assert!(page.text.contains("too small for your 3 seats"), "the tiny plan is marked");

    let too_small =
        browser.post("/t/acme/console/plan", &[("csrf", &signed.csrf), ("plan", "tiny")], &signed.cookies()).await;
    too_small.assert_html(409);
    assert!(
        too_small.text.contains("id=\"plan-error\"") && too_small.text.contains("Release seats first"),
        "{}",
        too_small.text
    );
    let same =
        browser.post("/t/acme/console/plan", &[("csrf", &signed.csrf), ("plan", "starter")], &signed.cookies()).await;
    same.assert_html(422);
    let unknown =
        browser.post("/t/acme/console/plan", &[("csrf", &signed.csrf), ("plan", "nope")], &signed.cookies()).await;
    unknown.assert_html(422);
    assert_eq!(app.get("/v1/tenants/acme", &admin).await.body["plan"], "starter");

    let changed =
        browser.post("/t/acme/console/plan", &[("csrf", &signed.csrf), ("plan", "business")], &signed.cookies()).await;
    assert_eq!((changed.status, changed.location()), (303, "/t/acme/console?done=plan-changed#subscription"));
    assert_eq!(app.get("/v1/tenants/acme", &admin).await.body["plan"], "business");
    let page = browser.get("/t/acme/console", &signed.cookies()).await;
    assert!(page.text.contains("Business</dd>") && page.text.contains("€87.00 for the 3 seats"), "{}", page.text);
    app.stop().await;
}

#[tokio::test]
async fn environments_show_what_the_operator_reported() {
    let app = start().await;
    app.tenant("acme", "business").await;
    let browser = Browser::new(&app);
    let admin = app.tenant_admin("acme");
    let before = browser.get("/t/acme/console", &[("tenantry_session", &admin)]).await;
    assert!(before.text.contains("waiting to be built"), "{}", before.text);

    let store = &app.running.as_ref().unwrap().store;
    let ready = control_plane::store::MirroredStatus {
        provisioning: control_plane::store::ProvisioningState::Ready,
        url: Some("https://acme.erp.test".into()),
        conditions: json!([{"type": "Ready", "status": "True"}]),
        environments: json!([
            {"name": "production", "version": "7.0.59", "ready": true, "url": "https://acme.erp.test"},
            {"name": "test", "version": "7.2.3", "ready": false, "url": "https://test-acme.erp.test"}
        ]),
    };
    store.mirror_status("acme", &ready).await.unwrap();
    let page = browser.get("/t/acme/console", &[("tenantry_session", &admin)]).await;
    let production = section(&page.text, "data-environment=\"production\"");
    assert!(production.contains("Tryton 7.0.59") && production.contains("running"), "{production}");
    assert!(production.contains("href=\"https://acme.erp.test\""), "{production}");
    let test = section(&page.text, "data-environment=\"test\"");
    assert!(
        test.contains("Tryton 7.2.3") && test.contains("starting") && test.contains("test-acme.erp.test"),
        "{test}"
    );

    // The API reports the same environments.
    let api = app.get("/v1/tenants/acme", &admin).await;
    assert_eq!(api.body["environments"][1]["version"], "7.2.3");

    // Suspended: no addresses, and the state says why.
    app.post("/v1/tenants/acme/suspend", &app.provider, json!({})).await;
    let suspended = control_plane::store::MirroredStatus {
        provisioning: control_plane::store::ProvisioningState::Suspended,
        ..ready
    };
    store.mirror_status("acme", &suspended).await.unwrap();
    let page = browser.get("/t/acme/console", &[("tenantry_session", &admin)]).await;
    let production = section(&page.text, "data-environment=\"production\"");
    assert!(
        production.contains("suspended (scaled to zero, data kept)") && !production.contains("href="),
        "{production}"
    );
    assert!(page.text.contains("data-subscription-state>suspended"), "{}", page.text);
    app.stop().await;
}

/// The element starting at `marker`, up to the next environment or the section's end.
fn section<'a>(text: &'a str, marker: &str) -> &'a str {
    let start = text.find(marker).unwrap_or_else(|| panic!("{marker} in {text}"));
    let rest = &text[start..];
    let end = rest[1..].find("data-environment=").map_or(rest.len(), |i| i + 1);
    &rest[..end]
}
