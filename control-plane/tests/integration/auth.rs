//! Tokens: every way a token can be wrong is refused with its own error, and keys rotate by kid.

use std::time::Duration;

use actix_web::test as web_test;
use actix_web::{App, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use control_plane::auth::{AuthError, Keys, Principal, Role};
use control_plane::config::{AuthSettings, Secret};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const OLD: &[u8] = &[7; 32];
const NEW: &[u8] = &[9; 48];
const HOUR: Duration = Duration::from_secs(3600);

fn auth_settings(keys: &[(&str, &[u8])], signing: &str) -> AuthSettings {
    AuthSettings {
        keys: keys.iter().map(|(kid, secret)| (kid.to_string(), Secret::new(secret.to_vec()))).collect(),
        signing_kid: Some(signing.to_string()),
        ..AuthSettings::default()
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Valid claims for a provider-admin, to be spoiled one way or another.
fn claims() -> Value {
    json!({
        "iss": "tenantry", "aud": "tenantry-api", "sub": "ops@provider.test",
        "iat": now(), "exp": now() + 600, "jti": uuid::Uuid::new_v4().to_string(),
        "role": "provider-admin",
    })
}

fn sign(algorithm: Algorithm, kid: &str, secret: &[u8], claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn part(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

#[test]
fn expired_and_tampered_tokens_rejected() {
    let keys = Keys::new(&auth_settings(&[("k1", OLD)], "k1")).unwrap();
    let forge = |claims: &Value| sign(Algorithm::HS256, "k1", OLD, claims);
    let with = |field: &str, value: Value| {
        let mut claims = claims();
        claims[field] = value;
        claims
    };
    assert_eq!(keys.verify(&forge(&claims())).unwrap().role, Role::ProviderAdmin, "the control case verifies");

    // Expired: beyond the 30 s of tolerated clock skew, but not within it.
    assert_eq!(keys.verify(&forge(&with("exp", json!(now() - 45)))), Err(AuthError::Expired));
    assert_eq!(keys.verify(&forge(&with("exp", json!(now() - 3600)))), Err(AuthError::Expired));
    assert!(keys.verify(&forge(&with("exp", json!(now() - 5)))).is_ok());
    assert_eq!(keys.verify(&forge(&with("nbf", json!(now() + 600)))), Err(AuthError::NotYetValid));

    // Signature tampered.
    let token = forge(&claims());
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[0] ^= 1;
    assert_eq!(keys.verify(&format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes))), Err(AuthError::BadSignature));

    // Payload tampered: a tenant-admin makes itself provider-admin, keeping the signature.
    let mut tenant_claims = with("role", json!("tenant-admin"));
    tenant_claims["tenant"] = json!("acme");
    let tenant_admin = forge(&tenant_claims);
    let [header, _, signature] = tenant_admin.split('.').collect::<Vec<_>>()[..] else { unreachable!() };
    let escalated = format!("{header}.{}.{signature}", part(&claims()));
    assert_eq!(keys.verify(&escalated), Err(AuthError::BadSignature));

    // Issuer and audience.
    assert_eq!(keys.verify(&forge(&with("iss", json!("someone-else")))), Err(AuthError::WrongIssuer));
    assert_eq!(keys.verify(&forge(&with("aud", json!("another-api")))), Err(AuthError::WrongAudience));

    // Key id: unknown, or missing.
    assert!(
        matches!(keys.verify(&sign(Algorithm::HS256, "k9", OLD, &claims())), Err(AuthError::UnknownKid(kid)) if kid == "k9")
    );
    let no_kid =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(), &EncodingKey::from_secret(OLD)).unwrap();
    assert!(matches!(keys.verify(&no_kid), Err(AuthError::Malformed(_))));

    // Algorithm pinned: `none` and HS512 with the very same key are refused.
    let unsigned = format!("{}.{}.", part(&json!({"alg": "none", "typ": "JWT", "kid": "k1"})), part(&claims()));
    assert_eq!(keys.verify(&unsigned), Err(AuthError::Algorithm("none".into())));
    assert_eq!(keys.verify(&sign(Algorithm::HS512, "k1", OLD, &claims())), Err(AuthError::Algorithm("HS512".into())));

    // Role and tenant must fit together.
    let missing_tenant = forge(&with("role", json!("tenant-admin")));
    assert!(matches!(keys.verify(&missing_tenant), Err(AuthError::Claims(m)) if m.contains("tenant")));
    let mut bad_slug = with("role", json!("tenant-admin"));
    bad_slug["tenant"] = json!("../other");
    assert!(matches!(keys.verify(&forge(&bad_slug)), Err(AuthError::Claims(_))));
    let mut provider_with_tenant = claims();
    provider_with_tenant["tenant"] = json!("acme");
    assert!(matches!(keys.verify(&forge(&provider_with_tenant)), Err(AuthError::Claims(_))));
    assert!(matches!(keys.verify(&forge(&with("role", json!("superuser")))), Err(AuthError::Malformed(_))));

    // Garbage, and no message ever repeats the token.
    for token in ["", "not-a-token", "a.b.c", &escalated, &unsigned, &missing_tenant] {
        let error = keys.verify(token).unwrap_err();
        assert!(token.len() < 8 || !error.to_string().contains(token), "{error}");
    }
}

#[test]
fn keys_rotate_by_kid() {
    let before = Keys::new(&auth_settings(&[("old", OLD)], "old")).unwrap();
    let old_token = before.issue(Role::BillingReader, None, "billing@provider.test", HOUR).unwrap();
    assert_eq!(jsonwebtoken::decode_header(&old_token).unwrap().kid.as_deref(), Some("old"));

    // Rotation: the new key signs, the old one still verifies.
    let during = Keys::new(&auth_settings(&[("new", NEW), ("old", OLD)], "new")).unwrap();
    assert_eq!(during.verify(&old_token).unwrap().role, Role::BillingReader);
    let new_token = during.issue(Role::TenantAdmin, Some("acme"), "ada@acme.test", HOUR).unwrap();
    assert_eq!(jsonwebtoken::decode_header(&new_token).unwrap().kid.as_deref(), Some("new"));
    assert_eq!(during.verify(&new_token).unwrap().tenant.as_deref(), Some("acme"));
    assert!(matches!(before.verify(&new_token), Err(AuthError::UnknownKid(_))), "the old server knows no new key");

    // Once the old key is removed, its tokens stop verifying; the new ones go on.
    let after = Keys::new(&auth_settings(&[("new", NEW)], "new")).unwrap();
    assert!(matches!(after.verify(&old_token), Err(AuthError::UnknownKid(kid)) if kid == "old"));
    assert!(after.verify(&new_token).is_ok());

    // A token claiming the new kid but signed with the old key is not accepted either.
    let confused = sign(Algorithm::HS256, "new", OLD, &claims());
    assert_eq!(after.verify(&confused), Err(AuthError::BadSignature));
}

async fn whoami(principal: Principal) -> HttpResponse {
    HttpResponse::Ok().json(json!({"role": principal.role, "tenant": principal.tenant, "subject": principal.subject}))
}

#[actix_web::test]
async fn the_extractor_answers_401_problem_json() {
    let keys = Keys::new(&auth_settings(&[("k1", OLD)], "k1")).unwrap();
    let good = keys.issue(Role::TenantAdmin, Some("acme"), "ada@acme.test", HOUR).unwrap();
    let expired = sign(Algorithm::HS256, "k1", OLD, &{
        let mut claims = claims();
        claims["exp"] = json!(now() - 600);
        claims
    });
    let app =
        web_test::init_service(App::new().app_data(web::Data::new(keys)).route("/whoami", web::get().to(whoami))).await;

    let request =
        web_test::TestRequest::get().uri("/whoami").insert_header(("Authorization", format!("Bearer {good}")));
    let body: Value = web_test::call_and_read_body_json(&app, request.to_request()).await;
    assert_eq!(body, json!({"role": "tenant-admin", "tenant": "acme", "subject": "ada@acme.test"}));

    for (authorization, code) in [
        (None, "token_missing"),
        (Some(format!("Bearer {expired}")), "token_expired"),
        (Some("Bearer x.y.z".into()), "token_invalid"),
    ] {
        let mut request = web_test::TestRequest::get().uri("/whoami");
        if let Some(value) = &authorization {
            request = request.insert_header(("Authorization", value.as_str()));
        }
        let response = web_test::call_service(&app, request.to_request()).await;
        assert_eq!(response.status(), 401, "{code}");
        assert_eq!(response.headers().get("content-type").unwrap(), "application/problem+json");
        let challenge = response.headers().get("www-authenticate").unwrap().to_str().unwrap().to_string();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert_eq!(challenge.contains("error=\"invalid_token\""), code != "token_missing", "{challenge}");
        let body: Value = web_test::read_body_json(response).await;
        assert_eq!(body["code"], code);
        assert_eq!(body["status"], 401);
        assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    }

    // A server wired without keys is a server fault, not the caller's.
    let unwired = web_test::init_service(App::new().route("/whoami", web::get().to(whoami))).await;
    let request =
        web_test::TestRequest::get().uri("/whoami").insert_header(("Authorization", format!("Bearer {good}")));
    assert_eq!(web_test::call_service(&unwired, request.to_request()).await.status(), 500);
}
