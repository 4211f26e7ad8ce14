//! `api_conforms_to_its_openapi_document`: the API fuzzed from its own `/openapi.json` by
//! Schemathesis (a property-based API tester from PyPI, pinned, in a cached virtualenv that
//! `testenv install` prepares and this test installs itself when missing).
//!
//! A control plane on port 0 over SQLite is called with a provider-admin and with a tenant-admin
//! token. Each operation gets schema examples, the boundary and type-confusion cases of the
//! coverage phase, and a bounded number of generated requests (valid and invalid), all from a
//! fixed seed. Any 5xx fails, and so does any response whose status, media type, headers or
//! body the document does not describe, and any answer but 405 to a method a documented path
//! does not list.

use crate::harness;

use std::process::Output;
use std::time::Instant;

use e2e::schemathesis::Schemathesis;
use harness::{CacheKind, Db, TestApp};
use serde_json::json;

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,unsupported_method";
/// Generated cases per operation and phase: enough to reach every refusal of every operation,
/// few enough for about a minute per caller on two busy cores.
const EXAMPLES_PER_OPERATION: &str = "30";
/// A fixed seed: a failure reproduces, and a green run stays green until the code changes.
const SEED: &str = "20261206";
/// The last lines of a failed run that the test shows (the failures and how to reproduce them).
const SHOWN_LINES: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_conforms_to_its_openapi_document() {
    let fuzzer = Schemathesis::ensure_async().await.expect("installing schemathesis");
    // Signups are rate-limited per client; the fuzzer is one client sending many.
    let app = TestApp::start_with(Db::Sqlite, CacheKind::InProcess, &[("TENANTRY_SIGNUP_BURST", "100000")]).await;
    // Something for the generated requests to find besides the default catalogue's plans.
    app.tenant("acme", "starter").await;
    let seated = app.post("/v1/tenants/acme/seats", &app.provider, json!({"email": "ada@acme.test"})).await;
    assert_eq!(seated.status, 201, "{seated:?}");
    // The tenant-admin first: the provider-admin's run may delete or suspend `acme` (the path
    // parameters' documented example), after which a tenant-admin of it finds little.
    let callers = [("tenant-admin", app.tenant_admin("acme")), ("provider-admin", app.provider.clone())];

    let mut failures = Vec::new();
    for (caller, token) in callers {
        let started = Instant::now();
        let output = run(&fuzzer, &app.url, &token).await;
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        eprintln!("as {caller}, in {:.0?}:\n{}", started.elapsed(), summary(&text));
        if !output.status.success() {
            failures.push(format!("as {caller} ({}):\n{}", output.status, last_lines(&text, SHOWN_LINES)));
        }
    }
    assert!(failures.is_empty(), "the server does not conform to its OpenAPI document:\n{}", failures.join("\n\n"));
    app.stop().await;
}

async fn run(fuzzer: &Schemathesis, base_url: &str, token: &str) -> Output {
    // Hypothesis keeps state in its working directory: a fresh one per run.
    let workdir = tempfile::tempdir().unwrap();
    tokio::process::Command::new(fuzzer.program())
        .arg("run")
        .arg(format!("{base_url}/openapi.json"))
        .args(["--url", base_url])
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", EXAMPLES_PER_OPERATION])
        .args(["--seed", SEED])
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .arg("--no-color")
        .args(["--output-truncate", "true"])
        .current_dir(workdir.path())
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output()
        .await
        .expect("running schemathesis")
}

/// Schemathesis's closing summary: operations and phases tested, failures by kind, warnings,
/// how many cases were generated.
fn summary(text: &str) -> &str {
    text.rfind("SUMMARY").and_then(|at| text[..at].rfind('\n')).map_or("no summary", |at| text[at..].trim())
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// A path of the document asked with a method it does not list is 405 with `Allow`, as HTTP
/// says; a path it does not have stays 404.
#[tokio::test]
async fn other_methods_of_documented_paths_are_405() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    app.tenant("acme", "starter").await;
    for (method, path, allow) in [
        ("TRACE", "/v1/plans", "GET, POST"),
        ("OPTIONS", "/v1/plans", "GET, POST"),
        ("PUT", "/v1/tenants/acme", "DELETE, GET, PATCH"),
        ("OPTIONS", "/v1/tenants/acme/seats/usage", "DELETE, GET"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/openapi.json", "GET"),
    ] {
        let reply = app.call(method, path, Some(&app.provider), None).await;
        reply.assert_problem(405, "method_not_allowed");
        assert_eq!(reply.headers["allow"], allow, "{method} {path}");
    }
    for (method, path) in [("TRACE", "/v1/nothing"), ("GET", "/v1/plans/a/b"), ("OPTIONS", "/v1/plans/")] {
        app.call(method, path, Some(&app.provider), None).await.assert_problem(404, "route_not_found");
    }
    app.stop().await;
}

/// JSON Schema's integers include `18.0`; the server reads them as the document says, and the
/// range it documents for a count is exactly the range it accepts.
#[tokio::test]
async fn integers_are_read_as_the_document_says() {
    let app = TestApp::start(Db::Sqlite, CacheKind::InProcess).await;
    let document = app.call("GET", "/openapi.json", None, None).await.body;
    let max_seats = &document["components"]["schemas"]["PlanSpec"]["properties"]["max_seats"];
    assert_eq!(max_seats["format"], "int64", "{max_seats}");
    let documented_max = max_seats["maximum"].as_u64().expect("max_seats documents its maximum");

    let mut plan = harness::plan_body("floats", 1);
    plan["max_seats"] = json!(18.0);
    plan["price_per_seat_month"]["minor"] = json!(1900.0);
    let created = app.post("/v1/plans", &app.provider, plan.clone()).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["max_seats"], 18);
    let tenant = json!({"slug": "floaty", "display_name": "Floaty", "owner_email": "o@floaty.test", "plan": "floats", "seats": 2.0});
    let tenant = app.post("/v1/tenants", &app.provider, tenant).await;
    assert_eq!(tenant.status, 201, "{tenant:?}");
    let changed = app.call("PATCH", "/v1/tenants/floaty", Some(&app.provider), Some(json!({"seats": 3.0}))).await;
    assert_eq!((changed.status, &changed.body["seats"]), (200, &json!(3)), "{changed:?}");

    plan["name"] = json!("widest");
    plan["max_seats"] = json!(documented_max);
    let widest = app.post("/v1/plans", &app.provider, plan.clone()).await;
    assert_eq!((widest.status, &widest.body["max_seats"]), (201, &json!(documented_max)), "{widest:?}");
    plan["name"] = json!("too-wide");
    for refused in [json!(documented_max + 1), json!(18.5), json!(-1), json!("18")] {
        plan["max_seats"] = refused.clone();
        app.post("/v1/plans", &app.provider, plan.clone()).await.assert_problem(400, "invalid_body");
    }
    app.stop().await;
}
