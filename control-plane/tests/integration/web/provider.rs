//! The provider console at the HTML level: nobody but a provider admin learns it exists; the
//! tenant table's search, filters, sorting and pages; exact totals and revenue; suspension
//! through the forms (CSRF-checked); plan revision, new plans and retirement — each checked
//! through the API afterwards.

use super::*;

const PROVIDER_PAGES: [&str; 7] = [
    "/provider",
    "/provider?q=acme&sort=seats&page=2",
    "/provider/tenants/acme",
    "/provider/tenants/nope",
    "/provider/plans",
    "/provider/plans/starter",
    "/provider/new-plan?based_on=starter",
];

/// The slugs of the tenant table's rows, in order.
fn table_slugs(page: &Page) -> Vec<String> {
    let marker = "<tr data-tenant=\"";
    page.text
        .match_indices(marker)
        .map(|(at, _)| page.text[at + marker.len()..].split('"').next().unwrap().to_string())
        .collect()
}

/// The HTML of the first table row whose opening tag contains `attribute`.
fn row<'a>(page: &'a Page, attribute: &str) -> &'a str {
    let start =
        page.text.find(&format!("<tr {attribute}>")).unwrap_or_else(|| panic!("no row {attribute} in {}", page.text));
    let end = start + page.text[start..].find("</tr>").unwrap();
    &page.text[start..end]
}

/// The console as the provider admin sees it.
async fn as_provider(browser: &Browser<'_>, path: &str) -> Page {
    let page = browser.get(path, &[("tenantry_session", &browser.app.provider)]).await;
    page.assert_html(200);
    page
}

/// The CSRF token a provider's form page hands out (its cookie and its hidden field).
async fn provider_csrf(browser: &Browser<'_>, path: &str) -> String {
    let page = as_provider(browser, path).await;
    let token = page.cookie_value("tenantry_csrf").expect("a form page sets the CSRF cookie");
    assert_eq!(page.csrf_field(), token);
    token
}

async fn api_tenant(app: &TestApp, slug: &str) -> Value {
    let reply = app.get(&format!("/v1/tenants/{slug}"), &app.provider).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body
}

async fn api_plan(app: &TestApp, name: &str) -> Value {
    let reply = app.get(&format!("/v1/plans/{name}"), &app.provider).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body
}

async fn seat(app: &TestApp, slug: &str, emails: &[&str]) {
    for email in emails {
        let reply = app.post(&format!("/v1/tenants/{slug}/seats"), &app.provider, json!({ "email": email })).await;
        assert_eq!(reply.status, 201, "{reply:?}");
    }
}

/// A tenant licensed for its plan's maximum.
async fn tenant_named(app: &TestApp, slug: &str, display_name: &str, owner: &str, plan: &str) {
    let seats = api_plan(app, plan).await["max_seats"].clone();
    let body = json!({"slug": slug, "display_name": display_name, "owner_email": owner, "plan": plan, "seats": seats});
    let reply = app.post("/v1/tenants", &app.provider, body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
}

/// The revision form of `plan` (as the API shows it) with `changes` made.
fn plan_form(plan: &Value, csrf: &str, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let price = &plan["price_per_seat_month"];
    let minor = price["minor"].as_i64().unwrap();
    let mut form: Vec<(String, String)> = [
        ("csrf", csrf.to_string()),
        ("display_name", plan["display_name"].as_str().unwrap().to_string()),
        ("price", format!("{}.{:02}", minor / 100, minor % 100)),
        ("currency", price["currency"].as_str().unwrap().to_string()),
        ("max_seats", plan["max_seats"].to_string()),
        ("max_concurrent_users", plan["max_concurrent_users"].to_string()),
        ("trial_days", plan["trial_days"].to_string()),
        ("backup_retention_days", plan["backup_retention_days"].to_string()),
        ("database_size_limit", plan["database_size_limit"].as_str().unwrap().to_string()),
        ("module_policy", plan["module_policy"].as_str().unwrap().to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    if plan["test_environment"] == true {
        form.push(("test_environment".into(), "yes".into()));
    }
    for (name, value) in changes {
        form.retain(|(field, _)| field != name);
        form.push((name.to_string(), value.to_string()));
    }
    form
}

fn as_pairs(form: &[(String, String)]) -> Vec<(&str, &str)> {
    form.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect()
}

/// The error shown at `field`, asserting the field points at it.
#[track_caller]
fn field_error<'a>(page: &'a Page, field: &str) -> &'a str {
    let marker = format!("<p class=\"error\" id=\"{field}-error\">");
    let start = page.text.find(&marker).unwrap_or_else(|| panic!("no {field} error in {}", page.text)) + marker.len();
    assert!(page.text.contains(&format!("aria-describedby=\"{field}-error")), "{field} is not described by its error");
    &page.text[start..start + page.text[start..].find("</p>").unwrap()]
}

#[tokio::test]
async fn the_provider_console_is_hidden_from_everyone_else() {
    let app = start().await;
    app.tenant("acme", "starter").await;
    let browser = Browser::new(&app);
    let csrf = browser.csrf("/signup").await;
    let admin = app.tenant_admin("acme");
    let starter = api_plan(&app, "starter").await;
    let revision = plan_form(&starter, &csrf, &[("price", "1.00")]);
    let new_plan = plan_form(&starter, &csrf, &[("name", "copycat"), ("based_on", "starter")]);
    let state_form = vec![("csrf".to_string(), csrf.clone())];
    let retire_form = vec![("csrf".to_string(), csrf.clone()), ("confirm".to_string(), "yes".to_string())];
    let posts: [(&str, &Vec<(String, String)>); 5] = [
        ("/provider/tenants/acme/suspend", &state_form),
        ("/provider/tenants/acme/resume", &state_form),
        ("/provider/plans/starter", &revision),
        ("/provider/plans/starter/retire", &retire_form),
        ("/provider/new-plan", &new_plan),
    ];
    for session in [Some(admin.as_str()), Some(app.billing.as_str()), Some("not-a-token"), None] {
        let mut cookies = vec![("tenantry_csrf", csrf.as_str())];
        cookies.extend(session.map(|token| ("tenantry_session", token)));
        let unknown = browser.get("/t/nope", &cookies).await;
        unknown.assert_html(404);
        for path in PROVIDER_PAGES {
            let page = browser.get(path, &cookies).await;
            page.assert_html(404);
            assert_eq!(without_csrf(&page.text), without_csrf(&unknown.text), "{path}: the page of an unknown URL");
        }
        for (path, form) in posts {
            let page = browser.post(path, &as_pairs(form), &cookies).await;
            page.assert_html(404);
            assert_eq!(without_csrf(&page.text), without_csrf(&unknown.text), "POST {path}");
        }
    }
    // Nothing was done.
    assert_eq!(api_tenant(&app, "acme").await["state"], "trialing");
    let starter_after = api_plan(&app, "starter").await;
    assert_eq!((starter_after["version"].clone(), starter_after["retired_at"].clone()), (json!(1), Value::Null));
    assert_eq!(app.get("/v1/plans/copycat", &app.provider).await.status, 404);
    // The provider admin sees every page.
    for path in PROVIDER_PAGES.iter().filter(|path| !path.contains("nope")) {
        as_provider(&browser, path).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn the_tenant_table_searches_filters_sorts_and_pages() {
    let app = start().await;
    for n in 1..=27 {
        app.tenant(&format!("shop-{n:02}"), "starter").await;
    }
    tenant_named(&app, "acme", "Zenith Widgets", "boss@acme.test", "business").await;
    tenant_named(&app, "globex", "Globex 100%_Off", "hank@globex.test", "business").await;
    tenant_named(&app, "initech", "Initech", "bill@initech.test", "enterprise").await;
    seat(&app, "initech", &["a@initech.test", "b@initech.test", "c@initech.test"]).await;
    seat(&app, "acme", &["a@acme.test", "b@acme.test"]).await;
    seat(&app, "shop-03", &["a@shop.test"]).await;
    assert_eq!(app.post("/v1/tenants/shop-05/suspend", &app.provider, json!(null)).await.status, 200);
    assert_eq!(app.call("DELETE", "/v1/tenants/shop-06", Some(&app.provider), None).await.status, 200);
    let browser = Browser::new(&app);
    let shops = |range: &[u32]| range.iter().map(|n| format!("shop-{n:02}")).collect::<Vec<_>>();

    // 29 live tenants by slug: 25 on the first page, 4 on the second.
    let first = as_provider(&browser, "/provider").await;
    let mut expected = vec!["acme".to_string(), "globex".into(), "initech".into()];
    expected.extend(shops(&[1, 2, 3, 4, 5]));
    expected.extend(shops(&(7..=23).collect::<Vec<_>>()));
    assert_eq!(table_slugs(&first), expected);
    assert!(first.text.contains("29 tenants match."), "{}", first.text);
    assert!(first.text.contains("Page 1 of 2") && first.text.contains("<caption id=\"tenants-caption\">"));
    assert!(first.text.contains("href=\"/provider?page=2\" rel=\"next\""), "{}", first.text);
    assert!(!first.text.contains("rel=\"prev\""));
    assert!(row(&first, "data-tenant=\"initech\"").contains("3 / 500"));
    assert!(row(&first, "data-tenant=\"shop-05\"").contains("suspended"));
    assert!(row(&first, "data-tenant=\"acme\"").contains("href=\"/provider/tenants/acme\">Zenith Widgets</a>"));
    let second = as_provider(&browser, "/provider?page=2").await;
    assert_eq!(table_slugs(&second), shops(&[24, 25, 26, 27]));
    assert!(second.text.contains("Page 2 of 2") && second.text.contains("href=\"/provider\" rel=\"prev\""));

    // Search: any part of slug, name or owner email, whatever the case; wildcards are literal.
    for (query, slugs) in [
        ("ACME", vec!["acme".to_string()]),
        ("zenith", vec!["acme".into()]),
        ("HANK@", vec!["globex".into()]),
        ("%25", vec!["globex".into()]),
        ("_", vec!["globex".into()]),
        ("100%25_o", vec!["globex".into()]),
        ("shop-0", shops(&[1, 2, 3, 4, 5, 7, 8, 9])),
        ("shop-06", vec![]),
    ] {
        let page = as_provider(&browser, &format!("/provider?q={query}")).await;
        assert_eq!(table_slugs(&page), slugs, "q={query}");
    }
    let none = as_provider(&browser, "/provider?q=nothing-like-it").await;
    assert!(none.text.contains("No tenant matches.") && none.text.contains("Page 1 of 1"), "{}", none.text);

    // Filters; a deleted tenant only under "canceled".
    let business = as_provider(&browser, "/provider?plan=business").await;
    assert_eq!(table_slugs(&business), ["acme", "globex"]);
    assert_eq!(table_slugs(&as_provider(&browser, "/provider?plan=enterprise&q=INI").await), ["initech"]);
    assert_eq!(table_slugs(&as_provider(&browser, "/provider?state=suspended").await), ["shop-05"]);
    let canceled = as_provider(&browser, "/provider?state=canceled").await;
    assert_eq!(table_slugs(&canceled), ["shop-06"]);
    assert!(row(&canceled, "data-tenant=\"shop-06\"").contains("canceled (deleted)"));
    assert!(as_provider(&browser, "/provider?state=trialing").await.text.contains("28 tenants match."));

    // Sorting, ties by slug; the sorted column says so.
    let by_seats = as_provider(&browser, "/provider?sort=seats&dir=desc").await;
    assert_eq!(table_slugs(&by_seats)[..5], ["initech", "acme", "shop-03", "globex", "shop-01"]);
    assert!(by_seats.text.contains("<th scope=\"col\" aria-sort=\"descending\" class=\"number\"><a href=\"/provider?sort=seats&amp;dir=asc\">Seats held / licensed"), "{}", by_seats.text);
    assert_eq!(by_seats.text.matches("aria-sort=").count(), 1);
    let by_name = as_provider(&browser, "/provider?sort=name").await;
    assert_eq!(table_slugs(&by_name)[..3], ["globex", "initech", "shop-01"]);
    assert_eq!(table_slugs(&as_provider(&browser, "/provider?sort=name&dir=desc").await)[..2], ["acme", "shop-27"]);
    assert_eq!(
        table_slugs(&as_provider(&browser, "/provider?sort=created&dir=desc").await)[..2],
        ["initech", "globex"]
    );
    assert_eq!(table_slugs(&as_provider(&browser, "/provider?sort=state&dir=desc&q=shop").await)[0], "shop-05");
    assert_eq!(
        table_slugs(&as_provider(&browser, "/provider?sort=plan&dir=desc").await)[..3],
        ["shop-01", "shop-02", "shop-03"]
    );

    // Every link keeps the query.
    let kept = as_provider(&browser, "/provider?q=shop&plan=starter&sort=created").await;
    assert!(
        kept.text.contains("href=\"/provider?q=shop&amp;plan=starter&amp;sort=created&amp;page=2\" rel=\"next\""),
        "{}",
        kept.text
    );
    assert!(kept.text.contains("href=\"/provider?q=shop&amp;plan=starter&amp;sort=seats&amp;dir=asc\""));
    assert!(
        kept.text.contains("href=\"/provider?q=shop&amp;plan=starter&amp;sort=created&amp;dir=desc\""),
        "a second click reverses"
    );
    assert!(kept.text.contains("<option value=\"starter\" selected>"), "the form shows the query");

    // Nonsense is never an error: the defaults, and a plain note.
    for (query, note, rows) in [
        ("page=0", "There is no page “0”", 25),
        ("page=abc", "There is no page “abc”", 25),
        ("page=99", "There are only 2 pages: the last is shown.", 4),
        ("sort=price", "Tenants cannot be sorted by “price”", 25),
        ("dir=sideways", "“sideways” is no order", 25),
        ("plan=nope", "There is no plan “nope”", 25),
        ("state=paused", "There is no state “paused”", 25),
    ] {
        let page = as_provider(&browser, &format!("/provider?{query}")).await;
        assert!(page.text.contains(note), "{query}: {}", page.text);
        assert_eq!(table_slugs(&page).len(), rows, "{query}");
    }
    let long = as_provider(&browser, &format!("/provider?q={}", "x".repeat(300))).await;
    assert!(long.text.contains("cut to its first 100 characters"), "{}", long.text);
    let twice = as_provider(&browser, "/provider?page=2&page=1&q=").await;
    assert_eq!(table_slugs(&twice).len(), 4, "the first of a repeated name counts");
    app.stop().await;
}

#[tokio::test]
async fn totals_and_revenue_are_exact() {
    let app = start().await;
    app.plan("pro", 20).await; // 19.00 EUR, no trial: its tenants are active
    let mut dollar = harness::plan_body("dollar", 20);
    dollar["price_per_seat_month"] = json!({"minor": 500, "currency": "USD"});
    assert_eq!(app.post("/v1/plans", &app.provider, dollar).await.status, 201);
    for (slug, plan) in [
        ("p-one", "pro"),
        ("p-two", "pro"),
        ("p-three", "pro"),
        ("gone", "pro"),
        ("u-one", "dollar"),
        ("s-one", "starter"),
    ] {
        app.tenant(slug, plan).await;
    }
    seat(&app, "p-one", &["a@p.test", "b@p.test", "c@p.test"]).await;
    seat(&app, "p-two", &["a@p.test", "b@p.test"]).await;
    seat(&app, "p-three", &["a@p.test"]).await;
    seat(&app, "gone", &["a@p.test", "b@p.test"]).await;
    seat(&app, "u-one", &["a@u.test", "b@u.test", "c@u.test", "d@u.test"]).await;
    seat(&app, "s-one", &["a@s.test", "b@s.test"]).await;
    let past_due =
        app.call("PATCH", "/v1/tenants/p-two", Some(&app.provider), Some(json!({"state": "past_due"}))).await;
    assert_eq!(past_due.status, 200, "{past_due:?}");
    assert_eq!(app.post("/v1/tenants/p-three/suspend", &app.provider, json!(null)).await.status, 200);
    assert_eq!(app.call("DELETE", "/v1/tenants/gone", Some(&app.provider), None).await.status, 200);
    // A tenant on version 2 pays version 2's price; the others keep version 1's.
    let mut revised = harness::plan_body("pro", 20);
    revised["price_per_seat_month"]["minor"] = json!(2500);
    assert_eq!(app.call("PATCH", "/v1/plans/pro", Some(&app.provider), Some(revised)).await.status, 200);
    app.tenant("p-four", "pro").await;
    seat(&app, "p-four", &["a@p.test"]).await;

    let browser = Browser::new(&app);
    let page = as_provider(&browser, "/provider").await;
    let expect = |plan: &str, tenants: u32, seats: u32, trialing: u32, mrr: &str| {
        let row = row(&page, &format!("data-plan=\"{plan}\""));
        for (key, value) in
            [("tenants", tenants.to_string()), ("seats", seats.to_string()), ("trialing", trialing.to_string())]
        {
            assert!(row.contains(&format!("data-total=\"{key}\">{value}</td>")), "{plan} {key} {value}: {row}");
        }
        assert!(row.contains(&format!("data-total=\"mrr\">{mrr}</td>")), "{plan} revenue {mrr}: {row}");
    };
    // (3 + 2) seats at 19.00 (active and past due) + 1 at 25.00; the suspended seat is held, unpaid.
    expect("pro", 4, 7, 0, "€120.00");
    expect("dollar", 1, 4, 0, "$20.00");
    expect("starter", 1, 2, 2, "€0.00");
    expect("business", 0, 0, 0, "€0.00");
    expect("all", 6, 13, 2, "€120.00<br>$20.00");
    assert!(page.text.contains("<caption id=\"totals-caption\">"));
    assert!(page.text.contains("<th scope=\"row\">All plans</th>"));
    app.stop().await;
}

#[tokio::test]
async fn suspend_and_resume_through_the_forms() {
    let app = start().await;
    app.tenant("acme", "starter").await;
    seat(&app, "acme", &["ada@acme.test"]).await;
    let browser = Browser::new(&app);
    let page = as_provider(&browser, "/provider/tenants/acme").await;
    for text in [
        "owner@acme.test",
        "ada@acme.test",
        "Starter",
        "version 1",
        "€19.00 per seat per month",
        "trialing",
        "ERP server",
        "Web client",
        ">Suspend</button>",
        "The tenant is on the plan it started with.",
    ] {
        assert!(page.text.contains(text), "{text} not in {}", page.text);
    }
    assert!(!page.text.contains(">Resume</button>"));
    let csrf = page.cookie_value("tenantry_csrf").unwrap();
    let session = app.provider.clone();
    let cookies = [("tenantry_session", session.as_str()), ("tenantry_csrf", csrf.as_str())];

    // Forms without the page's token are refused, and change nothing.
    let forged = browser.post("/provider/tenants/acme/suspend", &[("csrf", "forged")], &cookies).await;
    forged.assert_html(403);
    let no_cookie = browser.post("/provider/tenants/acme/suspend", &[("csrf", &csrf)], &cookies[..1]).await;
    no_cookie.assert_html(403);
    assert_eq!(api_tenant(&app, "acme").await["state"], "trialing");

    let suspended = browser.post("/provider/tenants/acme/suspend", &[("csrf", &csrf)], &cookies).await;
    assert_eq!(
        (suspended.status, suspended.location()),
        (303, "/provider/tenants/acme?done=suspended"),
        "{}",
        suspended.text
    );
    assert_eq!(api_tenant(&app, "acme").await["state"], "suspended");
    let page = as_provider(&browser, suspended.location()).await;
    assert!(page.text.contains("role=\"status\">The tenant is suspended"), "{}", page.text);
    assert!(page.text.contains("id=\"subscription-state\" class=\"state state-suspended\">suspended</dd>"));
    assert!(page.text.contains(">Resume</button>") && !page.text.contains(">Suspend</button>"));

    let resumed = browser.post("/provider/tenants/acme/resume", &[("csrf", &csrf)], &cookies).await;
    assert_eq!((resumed.status, resumed.location()), (303, "/provider/tenants/acme?done=resumed"));
    assert_eq!(api_tenant(&app, "acme").await["state"], "trialing", "back to the trial it was on");
    // A second resume (an old tab) is refused in words, on the tenant's page.
    let again = browser.post("/provider/tenants/acme/resume", &[("csrf", &csrf)], &cookies).await;
    again.assert_html(409);
    assert!(again.text.contains("role=\"alert\">This tenant is not suspended"), "{}", again.text);
    assert_eq!(api_tenant(&app, "acme").await["state"], "trialing");

    // A deleted tenant is still shown to the provider, with nothing to press.
    assert_eq!(app.call("DELETE", "/v1/tenants/acme", Some(&app.provider), None).await.status, 200);
    let deleted = as_provider(&browser, "/provider/tenants/acme").await;
    assert!(deleted.text.contains("This tenant is deleted"), "{}", deleted.text);
    assert!(!deleted.text.contains(">Suspend</button>") && !deleted.text.contains(">Resume</button>"));
    let refused = browser.post("/provider/tenants/acme/suspend", &[("csrf", &csrf)], &cookies).await;
    refused.assert_html(409);
    assert!(refused.text.contains("This tenant is deleted: it cannot be suspended."), "{}", refused.text);
    let unknown = browser.post("/provider/tenants/nope/suspend", &[("csrf", &csrf)], &cookies).await;
    unknown.assert_html(404);
    app.stop().await;
}

#[tokio::test]
async fn a_plan_revision_makes_version_2_and_bad_input_changes_nothing() {
    let app = start().await;
    let browser = Browser::new(&app);
    let page = as_provider(&browser, "/provider/plans/starter").await;
    assert!(page.text.contains("value=\"19.00\"") && page.text.contains("Save as version 2"), "{}", page.text);
    let csrf = provider_csrf(&browser, "/provider/plans/starter").await;
    let cookies = [("tenantry_session", app.provider.as_str()), ("tenantry_csrf", csrf.as_str())];
    let starter = api_plan(&app, "starter").await;

    for (changes, field, message) in [
        (vec![("price", "12,5x")], "price", "an amount such as 29.00"),
        (vec![("price", "-3.00")], "price", "cannot be negative"),
        (vec![("currency", "euro")], "price", "three-letter code"),
        (vec![("max_seats", "0")], "max_seats", "At least 1"),
        (vec![("trial_days", "400")], "trial_days", "At most 365"),
        (vec![("database_size_limit", "lots")], "database_size_limit", ""),
    ] {
        let form = plan_form(&starter, &csrf, &changes);
        let refused = browser.post("/provider/plans/starter", &as_pairs(&form), &cookies).await;
        refused.assert_html(422);
        assert!(field_error(&refused, field).contains(message), "{changes:?}: {}", field_error(&refused, field));
        assert!(refused.text.contains("aria-invalid=\"true\"") && refused.text.contains("Nothing was saved."));
        assert!(refused.text.contains(&format!("value=\"{}\"", changes[0].1)), "what was typed is kept");
        assert_eq!(api_plan(&app, "starter").await["version"], 1, "{changes:?} changed nothing");
    }
    let without_token = plan_form(&starter, "forged", &[("price", "21.50")]);
    browser.post("/provider/plans/starter", &as_pairs(&without_token), &cookies).await.assert_html(403);

    let form = plan_form(&starter, &csrf, &[("price", "21.50"), ("display_name", "Starter 2")]);
    let saved = browser.post("/provider/plans/starter", &as_pairs(&form), &cookies).await;
    assert_eq!((saved.status, saved.location()), (303, "/provider/plans/starter?done=revised"), "{}", saved.text);
    let version_2 = api_plan(&app, "starter").await;
    assert_eq!(version_2["version"], 2);
    assert_eq!(version_2["price_per_seat_month"], json!({"minor": 2150, "currency": "EUR"}));
    assert_eq!(version_2["display_name"], "Starter 2");
    assert_eq!(version_2["resources"], starter["resources"], "the resources are kept");
    let version_1 = app.get("/v1/plans/starter?version=1", &app.provider).await;
    assert_eq!(version_1.body["price_per_seat_month"]["minor"], 1900);
    let shown = as_provider(&browser, saved.location()).await;
    assert!(shown.text.contains("Saved as a new version") && shown.text.contains("version 2"), "{}", shown.text);

    let same = plan_form(&version_2, &csrf, &[]);
    let unchanged = browser.post("/provider/plans/starter", &as_pairs(&same), &cookies).await;
    assert_eq!((unchanged.status, unchanged.location()), (303, "/provider/plans/starter?done=unchanged"));
    assert_eq!(api_plan(&app, "starter").await["version"], 2);
    let list = as_provider(&browser, "/provider/plans").await;
    let starter_row = row(&list, "data-plan=\"starter\"");
    assert!(starter_row.contains("€21.50") && starter_row.contains(">2</td>"), "{starter_row}");
    app.stop().await;
}

#[tokio::test]
async fn new_plans_copy_their_resources_and_plans_retire() {
    let app = start().await;
    let browser = Browser::new(&app);
    let page = as_provider(&browser, "/provider/new-plan?based_on=business").await;
    assert!(
        page.text.contains("value=\"29.00\"") && page.text.contains("<option value=\"business\" selected>"),
        "{}",
        page.text
    );
    let csrf = provider_csrf(&browser, "/provider/new-plan?based_on=business").await;
    let cookies = [("tenantry_session", app.provider.as_str()), ("tenantry_csrf", csrf.as_str())];
    let business = api_plan(&app, "business").await;
    let team = |name: &str| {
        plan_form(
            &business,
            &csrf,
            &[("based_on", "business"), ("name", name), ("display_name", "Team"), ("price", "35.00")],
        )
    };

    let bad = browser.post("/provider/new-plan", &as_pairs(&team("Team Plan")), &cookies).await;
    bad.assert_html(422);
    assert!(field_error(&bad, "name").contains("lowercase letters"), "{}", field_error(&bad, "name"));
    let created = browser.post("/provider/new-plan", &as_pairs(&team("team")), &cookies).await;
    assert_eq!((created.status, created.location()), (303, "/provider/plans/team?done=created"), "{}", created.text);
    let plan = api_plan(&app, "team").await;
    assert_eq!((plan["version"].clone(), plan["display_name"].clone()), (json!(1), json!("Team")));
    assert_eq!(plan["price_per_seat_month"]["minor"], 3500);
    assert_eq!(plan["resources"], business["resources"], "the resources are the business plan's");
    let taken = browser.post("/provider/new-plan", &as_pairs(&team("business")), &cookies).await;
    taken.assert_html(409);
    assert!(field_error(&taken, "name").contains("exists already"));

    // Retiring asks for a confirmation, then the plan takes no new tenant.
    let retire = "/provider/plans/team/retire";
    browser.post(retire, &[("csrf", "forged"), ("confirm", "yes")], &cookies).await.assert_html(403);
    let unconfirmed = browser.post(retire, &[("csrf", &csrf)], &cookies).await;
    unconfirmed.assert_html(422);
    assert!(field_error(&unconfirmed, "confirm").contains("Tick the box"));
    assert_eq!(api_plan(&app, "team").await["retired_at"], Value::Null);
    let retired = browser.post(retire, &[("csrf", &csrf), ("confirm", "yes")], &cookies).await;
    assert_eq!((retired.status, retired.location()), (303, "/provider/plans/team?done=retired"));
    assert!(api_plan(&app, "team").await["retired_at"].is_string());
    let refused = app
        .post(
            "/v1/tenants",
            &app.provider,
            json!({"slug": "late", "display_name": "Late", "owner_email": "a@late.test", "plan": "team", "seats": 1}),
        )
        .await;
    refused.assert_problem(409, "plan_retired");
    let list = as_provider(&browser, "/provider/plans").await;
    assert!(row(&list, "data-plan=\"team\"").contains("retired since"));
    let shown = as_provider(&browser, "/provider/plans/team").await;
    assert!(shown.text.contains("This plan is retired") && !shown.text.contains("id=\"confirm\""));
    app.stop().await;
}

#[tokio::test]
async fn version_change_offers_the_catalogue_and_never_goes_back() {
    let app = start().await;
    app.tenant("acme", "starter").await;
    let browser = Browser::new(&app);
    let page = as_provider(&browser, "/provider/tenants/acme").await;
    // The default catalogue is 7.0.59 and 8.0.12; the tenant has 7.0.59: only 8.0.12 is offered.
    assert!(page.text.contains("The provider's catalogue offers 7.0.59, 8.0.12"), "{}", page.text);
    assert!(page.text.contains("<option value=\"8.0.12\">8.0.12</option>"), "{}", page.text);
    assert!(!page.text.contains("<option value=\"7.0.59\">"), "{}", page.text);
    let csrf = page.cookie_value("tenantry_csrf").unwrap();
    let session = app.provider.clone();
    let cookies = [("tenantry_session", session.as_str()), ("tenantry_csrf", csrf.as_str())];

    let moved =
        browser.post("/provider/tenants/acme/version", &[("csrf", &csrf), ("version", "8.0.12")], &cookies).await;
    assert_eq!((moved.status, moved.location()), (303, "/provider/tenants/acme?done=version"), "{}", moved.text);
    assert_eq!(api_tenant(&app, "acme").await["erp_version"], "8.0.12");
    let page = as_provider(&browser, "/provider/tenants/acme").await;
    assert!(page.text.contains("No newer version is in the catalogue."), "{}", page.text);

    // A forged older version is refused with the reason, and changes nothing.
    let back =
        browser.post("/provider/tenants/acme/version", &[("csrf", &csrf), ("version", "7.0.59")], &cookies).await;
    back.assert_html(409);
    assert!(back.text.contains("The ERP version was not changed. Production runs ERP 8.0.12"), "{}", back.text);
    let unknown =
        browser.post("/provider/tenants/acme/version", &[("csrf", &csrf), ("version", "99.0.0")], &cookies).await;
    unknown.assert_html(422);
    assert_eq!(api_tenant(&app, "acme").await["erp_version"], "8.0.12");
}
