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
    assert!(over.text.contains("id=\"seat-email-error\"") && over.text.contains("release a seat"), "{}", over.text);
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
    assert!(page.text.contains("too small for the 3 seats held"), "the tiny plan is marked");

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

#[tokio::test]
async fn the_seat_limit_is_changed_in_the_console_within_the_plan() {
    let app = start().await;
    app.tenant_licensed("acme", "starter", 2).await;
    let admin = app.tenant_admin("acme");
    for email in ["a@acme.test", "b@acme.test"] {
        assert_eq!(app.post("/v1/tenants/acme/seats", &admin, json!({"email": email})).await.status, 201);
    }
    let browser = Browser::new(&app);
    let signed = Signed::new(&browser, admin.clone(), "acme").await;
    let page = browser.get("/t/acme/console", &signed.cookies()).await;
    assert!(page.text.contains("2</strong> of 2 seats in use"), "{}", page.text);
    assert!(page.text.contains("Your seat limit of 2 is reached"), "{}", page.text);
    assert!(page.text.contains("id=\"seat-limit\" name=\"seats\" min=\"2\" max=\"10\""), "{}", page.text);
    let set = |seats: &'static str| {
        let (browser, signed) = (&browser, &signed);
        async move {
            browser
                .post("/t/acme/console/seat-limit", &[("csrf", &signed.csrf), ("seats", seats)], &signed.cookies())
                .await
        }
    };

    let below = set("1").await;
    below.assert_html(409);
    assert!(below.text.contains("2 seats are held now; release seats before lowering"), "{}", below.text);
    let above = set("11").await;
    above.assert_html(409);
    assert!(above.text.contains("The plan allows 1 to 10 seats to be licensed; 11 were asked for."), "{}", above.text);
    assert!(above.text.contains("value=\"11\""), "what was typed is kept");
    let words = set("many").await;
    words.assert_html(422);
    assert_eq!(app.get("/v1/tenants/acme", &admin).await.body["seats"], 2, "nothing changed");

    let raised = set("4").await;
    assert_eq!(
        (raised.status, raised.location()),
        (303, "/t/acme/console?done=limit-changed#seats"),
        "{}",
        raised.text
    );
    assert_eq!(app.get("/v1/tenants/acme", &admin).await.body["seats"], 4, "the API reports the new limit");
    assert_eq!(app.get("/v1/tenants/acme/seats", &app.billing).await.body["max_seats"], 4);
    let page = browser.get("/t/acme/console?done=limit-changed", &signed.cookies()).await;
    assert!(page.text.contains("Your seat limit was changed.") && page.text.contains("2</strong> of 4 seats in use"));
    assert!(page.text.contains("; 2 of 4 held now."), "the chart's summary: {}", page.text);
    assert!(!page.text.contains("id=\"seat-limit-note\""), "room again");
    let added = browser
        .post("/t/acme/console/seats", &[("csrf", &signed.csrf), ("email", "c@acme.test")], &signed.cookies())
        .await;
    assert_eq!(added.location(), "/t/acme/console?done=seat-added#seats");
    // Billing counts the 3 seats held, not the limit of 4.
    let page = browser.get("/t/acme/console", &signed.cookies()).await;
    assert!(page.text.contains("€57.00 for the 3 seats held now"), "{}", page.text);
    app.stop().await;
}

#[tokio::test]
async fn the_console_says_what_is_held_and_owed_now() {
    let app = start().await;
    app.tenant("acme", "starter").await;
    let admin = app.tenant_admin("acme");
    let browser = Browser::new(&app);
    let signed = Signed::new(&browser, admin.clone(), "acme").await;
    assert_eq!(app.post("/v1/tenants/acme/seats", &admin, json!({"email": "a@acme.test"})).await.status, 201);
    let page = browser.get("/t/acme/console", &signed.cookies()).await;
    assert!(page.text.contains("€19.00 for the 1 seat held now"), "{}", page.text);
    assert!(!page.text.contains("1 seats"), "one seat in the singular: {}", page.text);

    // The last seat released: today's peak was one seat, but none is held now.
    let removed = browser
        .post("/t/acme/console/seats/remove", &[("csrf", &signed.csrf), ("email", "a@acme.test")], &signed.cookies())
        .await;
    assert_eq!(removed.status, 303);
    let page = browser.get("/t/acme/console", &signed.cookies()).await;
    assert!(page.text.contains("at most 1 seat (on"), "{}", page.text);
    assert!(page.text.contains("; 0 of 10 held now."), "{}", page.text);
    assert!(!page.text.contains("1 of 10"), "{}", page.text);

    // Suspended: nothing is owed, and no next period's amount is shown.
    assert_eq!(app.post("/v1/tenants/acme/seats", &admin, json!({"email": "b@acme.test"})).await.status, 201);
    app.post("/v1/tenants/acme/suspend", &app.provider, json!(null)).await;
    let page = browser.get("/t/acme/console", &signed.cookies()).await;
    assert!(page.text.contains("data-amount-owed>nothing while your subscription is suspended"), "{}", page.text);
    assert!(!page.text.contains("Next period") && !page.text.contains("€19.00 for"), "{}", page.text);
    // Resumed: the trial again, with its end, and the amount for the seats held.
    let resumed = app.post("/v1/tenants/acme/resume", &app.provider, json!(null)).await;
    assert_eq!(resumed.body["state"], "trialing");
    let page = browser.get("/t/acme/console", &signed.cookies()).await;
    assert!(page.text.contains("Trial ends") && page.text.contains("€19.00 for the 1 seat held now"), "{}", page.text);
    app.stop().await;
}

#[tokio::test]
async fn a_smaller_plan_brings_the_seat_limit_down_to_its_maximum() {
    let app = start().await;
    app.tenant_licensed("acme", "business", 20).await;
    let admin = app.tenant_admin("acme");
    assert_eq!(app.post("/v1/tenants/acme/seats", &admin, json!({"email": "a@acme.test"})).await.status, 201);
    let browser = Browser::new(&app);
    let signed = Signed::new(&browser, admin.clone(), "acme").await;
    let page = browser.get("/t/acme/console", &signed.cookies()).await;
    assert!(page.text.contains("up to 10 seats — your seat limit would become 10"), "{}", page.text);
    let changed =
        browser.post("/t/acme/console/plan", &[("csrf", &signed.csrf), ("plan", "starter")], &signed.cookies()).await;
    assert_eq!(changed.location(), "/t/acme/console?done=plan-changed#subscription", "{}", changed.text);
    let tenant = app.get("/v1/tenants/acme", &admin).await;
    assert_eq!((tenant.body["plan"].as_str(), tenant.body["seats"].as_u64()), (Some("starter"), Some(10)));
    // The API asks for both at once instead.
    let api = app.call("PATCH", "/v1/tenants/acme", Some(&admin), Some(json!({"plan": "business", "seats": 20}))).await;
    assert_eq!(api.status, 200, "{api:?}");
    let refused = app.call("PATCH", "/v1/tenants/acme", Some(&admin), Some(json!({"plan": "starter"}))).await;
    refused.assert_problem(409, "plan_too_small");
    assert_eq!(
        refused.body["detail"],
        "the new plan allows at most 10 seats and 20 are licensed; lower the licensed seats with the plan change"
    );
    app.stop().await;
}

#[tokio::test]
async fn one_seat_is_worded_in_the_singular() {
    let app = start().await;
    app.plan("solo", 1).await;
    app.tenant("acme", "solo").await;
    let admin = app.tenant_admin("acme");
    assert_eq!(app.post("/v1/tenants/acme/seats", &admin, json!({"email": "a@acme.test"})).await.status, 201);
    let browser = Browser::new(&app);
    let progress = browser.get("/t/acme", &[("tenantry_session", &admin)]).await;
    progress.assert_html(200);
    assert!(progress.text.contains("with a limit of 1 seat."), "{}", progress.text);
    let console = browser.get("/t/acme/console", &[("tenantry_session", &admin)]).await;
    assert!(console.text.contains("1</strong> of 1 seat in use"), "{}", console.text);
    assert!(console.text.contains("Your plan's maximum of 1 seat is reached"), "{}", console.text);
    for page in [&progress.text, &console.text] {
        assert!(!page.contains(" 1 seats"), "{page}");
    }
    app.stop().await;
}
