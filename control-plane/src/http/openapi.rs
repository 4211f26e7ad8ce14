//! The OpenAPI document, generated from the handlers' annotations. It is committed as
//! `control-plane/openapi.json`; a test fails when the committed file differs.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{billing, ops, plans, seats, signup, tenants, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(title = "Tenantry control plane", description = "Plans, tenants, seats, subscriptions and billing of a multi-tenant ERP host."),
    paths(
        ops::healthz, ops::readyz, ops::metrics,
        signup::signup,
        plans::list, plans::create, plans::get, plans::update, plans::retire,
        tenants::list, tenants::create, tenants::get, tenants::update, tenants::delete, tenants::suspend,
        tenants::resume, tenants::plan_history,
        seats::list, seats::add, seats::remove, seats::usage,
        billing::seats, billing::usage,
        webhooks::list, webhooks::create, webhooks::delete,
    ),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document as pretty JSON with a final newline (the committed file's form).
pub fn document() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises");
    text.push('\n');
    text
}
