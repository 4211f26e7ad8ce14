//! The browser pages at the HTML level: a real server on port 0, requests as a browser sends
//! them (forms, cookies, no redirects followed), and the API to check what was created.

use crate::harness;

use harness::{CacheKind, Db, TestApp};

// The consoles' pages, each in its own file (they use this file's `Browser` and `Page`).
#[path = "web/console.rs"]
mod console;
#[path = "web/provider.rs"]
mod provider;
use reqwest::header::{self, HeaderMap};
use serde_json::{Value, json};

struct Page {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Page {
    /// The value of the `Set-Cookie` for `name`, whole (attributes included).
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|value| value.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }

    /// Just the cookie's value.
    fn cookie_value(&self, name: &str) -> Option<String> {
        let whole = self.set_cookie(name)?;
        let pair = whole.split(';').next()?;
        Some(pair[name.len() + 1..].to_string())
    }

    /// The hidden CSRF field's value.
    fn csrf_field(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.text.find(marker).unwrap_or_else(|| panic!("no csrf field in {}", self.text)) + marker.len();
        self.text[start..].split('"').next().unwrap().to_string()
    }

    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).and_then(|value| value.to_str().ok()).unwrap_or_default()
    }

    #[track_caller]
    fn assert_html(&self, status: u16) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(
            self.text.starts_with("<!DOCTYPE html><html lang=\"en\">"),
            "{}",
            &self.text[..80.min(self.text.len())]
        );
        assert_security_headers(&self.headers);
    }
}

#[track_caller]
fn assert_security_headers(headers: &HeaderMap) {
    assert_eq!(headers["content-security-policy"], "default-src 'self'");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "same-origin");
    assert_eq!(headers["x-frame-options"], "DENY");
}

struct Browser<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { app, http }
    }

    async fn send(&self, request: reqwest::RequestBuilder, cookies: &[(&str, &str)]) -> Page {
        let mut request = request;
        if !cookies.is_empty() {
            let header = cookies.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ");
            request = request.header(header::COOKIE, header);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Page { status, headers, text: response.text().await.unwrap() }
    }

    async fn get(&self, path: &str, cookies: &[(&str, &str)]) -> Page {
        self.send(self.http.get(format!("{}{path}", self.app.url)), cookies).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)], cookies: &[(&str, &str)]) -> Page {
        self.send(self.http.post(format!("{}{path}", self.app.url)).form(form), cookies).await
    }

    /// A form page's CSRF token: the cookie and the hidden field carry the same value.
    async fn csrf(&self, path: &str) -> String {
        let page = self.get(path, &[]).await;
        page.assert_html(200);
        let cookie = page.set_cookie("tenantry_csrf").expect("a form page sets the CSRF cookie");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"),
            "{cookie}"
        );
        let value = page.cookie_value("tenantry_csrf").unwrap();
        assert_eq!(page.csrf_field(), value);
        value
    }

    async fn slug_check(&self, company: &str, slug: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/signup/slug", self.app.url))
            .query(&[("company", company), ("slug", slug)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

async fn start() -> TestApp {
    TestApp::start_with(Db::Sqlite, CacheKind::InProcess, &[("TENANTRY_SIGNUP_BURST", "50")]).await
}

async fn tenant_slugs(app: &TestApp) -> Vec<String> {
    let reply = app.get("/v1/tenants", &app.provider).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["items"].as_array().unwrap().iter().map(|tenant| tenant["slug"].as_str().unwrap().to_string()).collect()
}

/// A page's text with its random CSRF value blanked.
fn without_csrf(text: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    match text.find(marker) {
        Some(start) => {
            let start = start + marker.len();
            let end = start + text[start..].find('"').unwrap();
            format!("{}{}", &text[..start], &text[end..])
        }
        None => text.to_string(),
    }
}

fn signup_form<'a>(
    csrf: &'a str,
    company: &'a str,
    slug: &'a str,
    email: &'a str,
    seats: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("company_name", company),
        ("slug", slug),
        ("admin_email", email),
        ("seats", seats),
        ("plan", "starter"),
    ]
}

#[tokio::test]
async fn the_signup_page_lists_the_plans_with_prices() {
    let app = start().await;
    let browser = Browser::new(&app);
    for path in ["/", "/signup"] {
        let page = browser.get(path, &[]).await;
        page.assert_html(200);
        for text in [
            "Starter",
            "Business",
            "Enterprise",
            "€19.00",
            "€29.00",
            "€49.00",
            "per seat per month",
            "up to 10",
            "up to 500",
        ] {
            assert!(page.text.contains(text), "{path} lacks {text}");
        }
        for label in ["company_name", "slug", "admin_email", "seats", "plan-starter"] {
            assert!(page.text.contains(&format!("<label for=\"{label}\"")), "{path}: no label for {label}");
            assert!(page.text.contains(&format!("id=\"{label}\"")), "{path}: no input {label}");
        }
        assert!(page.text.contains("<script src=\"/assets/app.js\" defer>"), "{path}");
        assert!(!page.text.contains("<script>"), "no inline script under the CSP");
        // Nothing takes backups for a tenant yet: the page promises none.
        assert!(!page.text.to_lowercase().contains("backup"), "{path} promises backups");
    }
    for (path, kind) in [("/assets/app.js", "text/javascript"), ("/assets/app.css", "text/css")] {
        let asset = browser.get(path, &[]).await;
        assert_eq!(asset.status, 200);
        assert!(asset.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with(kind), "{path}");
        assert_security_headers(&asset.headers);
    }
    app.stop().await;
}

#[tokio::test]
async fn the_slug_check_suggests_and_explains() {
    let app = start().await;
    app.tenant("taken-co", "starter").await;
    let browser = Browser::new(&app);
    assert_eq!(
        browser.slug_check("Acme Corp.", "").await,
        json!({"slug": "acme-corp", "available": true, "problem": null})
    );
    let taken = browser.slug_check("Taken Co", "").await;
    assert_eq!((taken["slug"].as_str(), taken["available"].as_bool()), (Some("taken-co"), Some(false)));
    assert!(taken["problem"].as_str().unwrap().contains("taken"), "{taken}");
    let taken = browser.slug_check("whatever", "taken-co").await;
    assert_eq!(taken["available"], false);
    let reserved = browser.slug_check("", "admin").await;
    assert_eq!(reserved["available"], false);
    assert!(reserved["problem"].as_str().unwrap().contains("reserved"), "{reserved}");
    let invalid = browser.slug_check("", "Bad Slug").await;
    assert_eq!((invalid["slug"].as_str(), invalid["available"].as_bool()), (Some("Bad Slug"), Some(false)));
    assert!(invalid["problem"].as_str().unwrap().contains("lowercase"), "{invalid}");
    let nothing = browser.slug_check("***", "").await;
    assert_eq!((nothing["slug"].clone(), nothing["available"].clone()), (Value::Null, json!(false)));

    // A script walking through names meets the rate limit (30 at once, then 60 a minute).
    let mut statuses = Vec::new();
    for n in 0..40 {
        let response = browser
            .http
            .get(format!("{}/signup/slug", app.url))
            .query(&[("company", ""), ("slug", &format!("probe-{n}"))])
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    let limited = statuses.iter().filter(|&&status| status == 429).count();
    assert!(limited >= 5 && statuses.iter().all(|&s| s == 200 || s == 429), "{statuses:?}");
    app.stop().await;
}

#[tokio::test]
async fn posts_without_the_csrf_token_are_refused() {
    let app = start().await;
    let browser = Browser::new(&app);
    let token = browser.csrf("/signup").await;
    let other = browser.csrf("/signup").await;
    assert_ne!(token, other, "each new visitor gets a token of its own");
    let form = signup_form(&token, "Acme", "acme", "ada@acme.test", "2");
    // Neither cookie nor field, a field without its cookie, a cookie with another field.
    let no_field: Vec<_> = form.iter().filter(|(name, _)| *name != "csrf").copied().collect();
    for (form, cookies) in [
        (no_field.clone(), vec![]),
        (form.clone(), vec![]),
        (form.clone(), vec![("tenantry_csrf", other.as_str())]),
        (no_field, vec![("tenantry_csrf", token.as_str())]),
    ] {
        let page = browser.post("/signup", &form, &cookies).await;
        page.assert_html(403);
        assert!(page.text.contains("could not be accepted"), "{}", page.text);
    }
    // The right token, sent from another site.
    let foreign = browser
        .send(
            browser.http.post(format!("{}/signup", app.url)).form(&form).header(header::ORIGIN, "https://evil.example"),
            &[("tenantry_csrf", token.as_str())],
        )
        .await;
    foreign.assert_html(403);
    // Nor when the other site's request also claims to have come through a proxy for it: the
    // peer is no trusted proxy, so its X-Forwarded-* headers are not believed.
    let spoofed = browser
        .send(
            browser
                .http
                .post(format!("{}/signup", app.url))
                .form(&form)
                .header(header::ORIGIN, "https://evil.example")
                .header("x-forwarded-host", "evil.example")
                .header("x-forwarded-proto", "https"),
            &[("tenantry_csrf", token.as_str())],
        )
        .await;
    spoofed.assert_html(403);
    let logout = browser.post("/logout", &[("csrf", "x")], &[("tenantry_csrf", token.as_str())]).await;
    logout.assert_html(403);
    assert!(tenant_slugs(&app).await.is_empty(), "nothing created");
    app.stop().await;
}

#[tokio::test]
async fn form_errors_are_shown_at_their_fields() {
    let app = start().await;
    app.tenant("taken", "starter").await;
    let browser = Browser::new(&app);
    let token = browser.csrf("/signup").await;
    let cookies = [("tenantry_csrf", token.as_str())];
    let cases = [
        (signup_form(&token, "Taken Company", "taken", "ada@taken.test", "2"), "slug", "This address is taken"),
        (signup_form(&token, "Globex Ltd", "globex", "not-an-email", "2"), "admin_email", "email address"),
        (signup_form(&token, "Initech", "initech", "bill@initech.test", "11"), "seats", "at most 10 seats"),
        (signup_form(&token, "Hooli", "hooli", "gavin@hooli.test", "many"), "seats", "whole number"),
        (signup_form(&token, "Umbrella", "Bad Slug", "ada@umbrella.test", "1"), "slug", "lowercase"),
        // A company called "Test" is told why no address is made from its name.
        (signup_form(&token, "Test", "", "ada@test-co.test", "1"), "slug", "“test” is a reserved word"),
    ];
    for (form, field, message) in cases {
        let page = browser.post("/signup", &form, &cookies).await;
        assert!(matches!(page.status, 409 | 422), "{field}: {}", page.status);
        page.assert_html(page.status);
        let error = format!("<p class=\"error\" id=\"{field}-error\">");
        let start = page.text.find(&error).unwrap_or_else(|| panic!("no {field} error in {}", page.text));
        let shown = &page.text[start..start + page.text[start..].find("</p>").unwrap()];
        assert!(shown.contains(message), "{field}: {shown}");
        assert!(
            page.text.contains(&format!("aria-describedby=\"{field}-error")),
            "{field}: not described by its error"
        );
        assert!(page.text.contains("aria-invalid=\"true\""));
        assert_eq!(page.text.matches("class=\"error\"").count(), 1, "{field}: only the field at fault");
        // What was typed is kept.
        for (name, value) in &form {
            if *name != "csrf" && *name != "plan" {
                assert!(page.text.contains(&format!("value=\"{value}\"")), "{field}: {name} not kept");
            }
        }
        assert!(page.text.contains("checked"), "{field}: the plan choice is kept");
        assert!(page.text.contains("Nothing was created"));
    }
    assert_eq!(tenant_slugs(&app).await, vec!["taken".to_string()], "nothing created");
    app.stop().await;
}

#[tokio::test]
async fn a_signup_leads_to_its_progress_page() {
    let app = start().await;
    let browser = Browser::new(&app);
    let token = browser.csrf("/signup").await;
    let form = signup_form(&token, "Acme Corp", "", "ada@acme.test", "3");
    // A browser sends its own origin; that is accepted.
    let done = browser
        .send(
            browser.http.post(format!("{}/signup", app.url)).form(&form).header(header::ORIGIN, app.url.as_str()),
            &[("tenantry_csrf", token.as_str())],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert_eq!(done.location(), "/t/acme-corp");
    let cookie = done.set_cookie("tenantry_session").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=86400"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    // A client claiming HTTPS through a proxy header is not believed without a trusted proxy.
    let claimed =
        browser.send(browser.http.get(format!("{}/signup", app.url)).header("x-forwarded-proto", "https"), &[]).await;
    let csrf_cookie = claimed.set_cookie("tenantry_csrf").expect("a form page sets the CSRF cookie");
    assert!(!csrf_cookie.contains("Secure"), "{csrf_cookie}");
    let session = done.cookie_value("tenantry_session").unwrap();
    assert_eq!(tenant_slugs(&app).await, vec!["acme-corp".to_string()]);

    let page = browser.get("/t/acme-corp", &[("tenantry_session", &session)]).await;
    page.assert_html(200);
    for text in ["Acme Corp", "Database", "ERP server", "Web client", "TLS", "waiting", "Waiting for a cluster"] {
        assert!(page.text.contains(text), "{text} not in {}", page.text);
    }
    assert!(page.text.contains("aria-live=\"polite\""));
    assert!(page.text.contains("<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>"), "{}", page.text);
    assert!(!page.text.contains("Master password"), "nothing about the password before the ERP is ready");
    assert!(page.text.contains("ada@acme.test"), "the signed-in admin is named");

    let progress = browser.get("/t/acme-corp/progress", &[("tenantry_session", &session)]).await;
    assert_eq!(progress.status, 200);
    assert_eq!(progress.headers[header::CONTENT_TYPE], "application/json");
    let progress: Value = serde_json::from_str(&progress.text).unwrap();
    assert_eq!(progress["slug"], "acme-corp");
    assert_eq!(progress["provisioning"], "waiting");
    assert_eq!(progress["waiting_for_cluster"], true);
    assert_eq!(progress["ready"], false);
    let steps: Vec<_> =
        progress["steps"].as_array().unwrap().iter().map(|s| (s["key"].clone(), s["state"].clone())).collect();
    assert_eq!(
        steps,
        ["database", "server", "web", "tls"].map(|key| (json!(key), json!("waiting"))).to_vec(),
        "{progress}"
    );

    // A provider admin sees it too.
    let provider = browser.get("/t/acme-corp", &[("tenantry_session", &app.provider)]).await;
    provider.assert_html(200);
    app.stop().await;
}

#[tokio::test]
async fn other_sessions_cannot_tell_a_tenant_exists() {
    let app = start().await;
    app.tenant("acme", "starter").await;
    let browser = Browser::new(&app);
    let other = app.tenant_admin("globex");
    for cookies in [
        vec![("tenantry_session", other.as_str())],
        vec![("tenantry_session", app.billing.as_str())],
        vec![("tenantry_session", "not-a-token")],
        vec![],
    ] {
        let page = browser.get("/t/acme", &cookies).await;
        page.assert_html(404);
        assert!(page.text.contains("Page not found"));
        let unknown = browser.get("/t/nope", &cookies).await;
        unknown.assert_html(404);
        assert_eq!(without_csrf(&page.text), without_csrf(&unknown.text), "the same page as for an unknown tenant");
    }
    let json = browser.get("/t/acme/progress", &[("tenantry_session", &other)]).await;
    let unknown_json = browser.get("/t/nope/progress", &[("tenantry_session", &other)]).await;
    assert_eq!((json.status, unknown_json.status), (404, 404));
    assert_eq!(json.text.replace("acme", "nope"), unknown_json.text);
    app.stop().await;
}

#[tokio::test]
async fn login_and_logout() {
    let app = start().await;
    app.tenant("acme", "starter").await;
    let browser = Browser::new(&app);
    let token = browser.csrf("/login").await;
    let cookies = [("tenantry_csrf", token.as_str())];

    let bad = browser.post("/login", &[("csrf", &token), ("token", "not.a.token")], &cookies).await;
    bad.assert_html(422);
    assert!(bad.text.contains("id=\"token-error\"") && bad.text.contains("not accepted"), "{}", bad.text);
    assert!(bad.text.contains("aria-describedby=\"token-error token-hint\""));
    assert!(bad.set_cookie("tenantry_session").is_none());

    let admin = app.tenant_admin("acme");
    let signed_in = browser.post("/login", &[("csrf", &token), ("token", &admin)], &cookies).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text);
    assert_eq!(signed_in.location(), "/t/acme/console");
    let cookie = signed_in.set_cookie("tenantry_session").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let max_age: u64 = cookie.split("Max-Age=").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&max_age), "the token's lifetime: {max_age}");
    let page =
        browser.get("/t/acme", &[("tenantry_session", &signed_in.cookie_value("tenantry_session").unwrap())]).await;
    page.assert_html(200);

    let provider = browser.post("/login", &[("csrf", &token), ("token", &app.provider)], &cookies).await;
    assert_eq!((provider.status, provider.location()), (303, "/provider"));

    let out =
        browser.post("/logout", &[("csrf", &token)], &[("tenantry_csrf", &token), ("tenantry_session", &admin)]).await;
    assert_eq!((out.status, out.location()), (303, "/login"));
    let cleared = out.set_cookie("tenantry_session").unwrap();
    assert!(cleared.starts_with("tenantry_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    assert_security_headers(&out.headers);
    app.stop().await;
}

#[tokio::test]
async fn signups_are_rate_limited_with_a_page_message() {
    let app = TestApp::start_with(
        Db::Sqlite,
        CacheKind::InProcess,
        &[("TENANTRY_SIGNUP_BURST", "1"), ("TENANTRY_SIGNUP_PER_MINUTE", "1")],
    )
    .await;
    let browser = Browser::new(&app);
    let token = browser.csrf("/signup").await;
    let cookies = [("tenantry_csrf", token.as_str())];
    let first = browser.post("/signup", &signup_form(&token, "Acme", "acme", "not-an-email", "1"), &cookies).await;
    first.assert_html(422);
    let limited = browser.post("/signup", &signup_form(&token, "Acme", "acme", "ada@acme.test", "1"), &cookies).await;
    limited.assert_html(429);
    assert!(limited.text.contains("role=\"alert\"") && limited.text.contains("Too many sign-ups"), "{}", limited.text);
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
    assert!(limited.text.contains("value=\"ada@acme.test\""), "values kept");
    assert!(tenant_slugs(&app).await.is_empty(), "nothing created");
    app.stop().await;
}

#[tokio::test]
async fn the_master_password_needs_a_ready_erp_its_admin_and_a_cluster() {
    let app = start().await;
    app.tenant("keyholder", "starter").await;
    let store = &app.running.as_ref().unwrap().store;
    let ready = control_plane::store::MirroredStatus {
        provisioning: control_plane::store::ProvisioningState::Ready,
        url: Some("https://keyholder.erp.test".into()),
        conditions: json!([{"type": "Ready", "status": "True"}]),
        environments: json!([{"name": "production", "version": "7.0.59", "ready": true}]),
    };
    store.mirror_status("keyholder", &ready).await.unwrap();
    let browser = Browser::new(&app);
    let admin = app.tenant_admin("keyholder");

    let provider_page = browser.get("/t/keyholder", &[("tenantry_session", &app.provider)]).await;
    provider_page.assert_html(200);
    assert!(!provider_page.text.contains("Show the master password"), "a provider never uses up the showing");

    let page = browser.get("/t/keyholder", &[("tenantry_session", &admin)]).await;
    page.assert_html(200);
    assert!(page.text.contains("Show the master password"), "{}", page.text);
    let csrf = page.cookie_value("tenantry_csrf").unwrap_or_else(|| page.csrf_field());
    let cookies = [("tenantry_session", admin.as_str()), ("tenantry_csrf", csrf.as_str())];
    let refused = browser.post("/t/keyholder/password", &[("csrf", "forged")], &cookies).await;
    assert_eq!(refused.status, 403);

    // This server has no cluster: nothing can be read, and nothing is used up.
    let no_cluster = browser.post("/t/keyholder/password", &[("csrf", &csrf)], &cookies).await;
    no_cluster.assert_html(503);
    assert!(no_cluster.text.contains("not connected to the cluster"), "{}", no_cluster.text);
    assert!(!store.password_revealed("keyholder").await.unwrap());

    // Another tenant's admin learns nothing.
    app.tenant("bystander", "starter").await;
    let other = app.tenant_admin("bystander");
    let other_cookies = [("tenantry_session", other.as_str()), ("tenantry_csrf", csrf.as_str())];
    let hidden = browser.post("/t/keyholder/password", &[("csrf", &csrf)], &other_cookies).await;
    hidden.assert_html(404);
    app.stop().await;
}

/// Behind a trusted proxy, the scheme and host it forwards are the page's own: cookies are
/// `Secure` and the browser's origin (the proxy's public address) is accepted.
#[tokio::test]
async fn forwarded_scheme_and_host_count_only_from_trusted_proxies() {
    let env = [("TENANTRY_SIGNUP_BURST", "50"), ("TENANTRY_TRUSTED_PROXIES", "127.0.0.0/8")];
    let app = TestApp::start_with(Db::Sqlite, CacheKind::InProcess, &env).await;
    let browser = Browser::new(&app);
    let proxied = |request: reqwest::RequestBuilder| {
        request.header("x-forwarded-proto", "https").header("x-forwarded-host", "erp.example.com")
    };
    let page = browser.send(proxied(browser.http.get(format!("{}/signup", app.url))), &[]).await;
    let cookie = page.set_cookie("tenantry_csrf").expect("a form page sets the CSRF cookie");
    assert!(cookie.contains("Secure"), "{cookie}");
    let token = page.cookie_value("tenantry_csrf").unwrap();
    let form = signup_form(&token, "Acme Corp", "", "ada@acme.test", "3");
    let request = proxied(browser.http.post(format!("{}/signup", app.url)).form(&form))
        .header(header::ORIGIN, "https://erp.example.com");
    let done = browser.send(request, &[("tenantry_csrf", token.as_str())]).await;
    assert_eq!(done.status, 303, "{}", done.text);
    app.stop().await;
}
