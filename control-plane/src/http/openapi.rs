//! The OpenAPI document, generated from the handlers' annotations. It is committed as
//! `control-plane/openapi.json`; a test fails when the committed file differs, and
//! `tests/openapi_conformance.rs` fuzzes the server from it, failing on any response the
//! document does not describe.
//!
//! What every operation shares is added here rather than in each annotation, where one would be
//! forgotten: the problem+json media type of errors, the refusals of the extractors and of the
//! bearer token, and unique operation ids. The same paths answer 405 to other methods.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::problem::CONTENT_TYPE as PROBLEM_JSON;
use super::{billing, ops, plans, seats, signup, tenants, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(title = "Tenantry control plane", description = "Plans, tenants, seats, subscriptions and billing of a multi-tenant ERP host.\n\nEvery error is an RFC 7807 problem (`application/problem+json`) with a stable `code`."),
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
    modifiers(&BearerAuth, &SharedResponses, &UniqueOperationIds),
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

/// The responses an operation has because of what it takes: a bearer token (401), a JSON body
/// (400, 413, 415), query or header parameters (400), path parameters (404: no such resource).
/// Then every `Problem` response is declared as `application/problem+json`, the media type the
/// server sends.
struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                add_shared_responses(operation);
                for (status, response) in operation.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else { continue };
                    if response.description.is_empty() {
                        response.description = reason_phrase(status).to_string();
                    }
                    if let Some(content) = response.content.shift_remove("application/json") {
                        let is_problem =
                            matches!(&content.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"));
                        let media_type = if is_problem { PROBLEM_JSON } else { "application/json" };
                        response.content.insert(media_type.to_string(), content);
                    }
                }
            }
        }
    }
}

/// A response must have a description; the status's reason phrase when the annotation gives none.
fn reason_phrase(status: &str) -> &'static str {
    status
        .parse::<u16>()
        .ok()
        .and_then(|code| actix_web::http::StatusCode::from_u16(code).ok())
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Response")
}

fn add_shared_responses(operation: &mut Operation) {
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let takes = |place: ParameterIn| parameters.iter().any(|p| p.parameter_in == place);
    let (query, header, path) = (takes(ParameterIn::Query), takes(ParameterIn::Header), takes(ParameterIn::Path));
    let secured = operation.security.as_ref().is_some_and(|requirements| !requirements.is_empty());
    let mut bad_request = Vec::new();
    if operation.request_body.is_some() {
        bad_request.push("the body is not JSON of the request schema (`invalid_body`)");
        add_problem(operation, "413", "the body is larger than the server accepts (`body_too_large`)");
        add_problem(operation, "415", "the body is not sent as `application/json` (`unsupported_media_type`)");
    }
    if query {
        bad_request.push("a query parameter is unknown or invalid (`invalid_query`)");
    }
    if header {
        bad_request.push("a header parameter is invalid");
    }
    if !bad_request.is_empty() {
        add_problem(operation, "400", &bad_request.join("; "));
    }
    if path {
        add_problem(operation, "404", "no such resource");
    }
    if secured {
        let challenge = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some("`Bearer realm=\"tenantry\"`, with the reason when a token was sent"))
            .build();
        let response = problem_response("no valid bearer token (`token_missing`, `token_expired`, `token_invalid`)")
            .header("WWW-Authenticate", challenge)
            .build();
        operation.responses.responses.entry("401".into()).or_insert(RefOr::T(response));
    }
}

/// `status` answered with a problem, unless the operation documents it already (its own text
/// is more precise).
fn add_problem(operation: &mut Operation, status: &str, description: &str) {
    let response = problem_response(description).build();
    operation.responses.responses.entry(status.into()).or_insert(RefOr::T(response));
}

fn problem_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
}

/// Operation ids are unique in a document; the generator takes them from the handlers' names
/// (`list`, `get`…), which repeat across modules. They become `<tag>_<name>`.
struct UniqueOperationIds;

impl Modify for UniqueOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                let tag = operation.tags.as_ref().and_then(|tags| tags.first()).cloned();
                if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut())
                    && *id != tag
                {
                    *id = format!("{tag}_{id}");
                }
            }
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head]
        .into_iter()
        .filter_map(Option::as_mut)
}

/// The document as pretty JSON with a final newline (the committed file's form).
pub fn document() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

/// The methods the document lists for the paths matching `path` (a request path), or `None`
/// when no documented path matches. The method fallback answers 405 with these in `Allow`.
pub fn documented_methods(path: &str) -> Option<Vec<&'static str>> {
    static TEMPLATES: OnceLock<BTreeMap<String, Vec<&'static str>>> = OnceLock::new();
    let templates = TEMPLATES.get_or_init(|| {
        let mut templates: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        for (template, item) in ApiDoc::openapi().paths.paths {
            let methods = [
                (HttpMethod::Get, item.get.is_some()),
                (HttpMethod::Post, item.post.is_some()),
                (HttpMethod::Put, item.put.is_some()),
                (HttpMethod::Patch, item.patch.is_some()),
                (HttpMethod::Delete, item.delete.is_some()),
            ];
            let names = methods.into_iter().filter(|(_, present)| *present).map(|(method, _)| method_name(&method));
            templates.entry(template).or_default().extend(names);
        }
        // Served beside the API but not an operation of it.
        templates.entry("/openapi.json".into()).or_default().push("GET");
        templates
    });
    let mut methods: Vec<&'static str> = templates
        .iter()
        .filter(|(template, _)| template_matches(template, path))
        .flat_map(|(_, methods)| methods.iter().copied())
        .collect();
    if methods.is_empty() {
        return None;
    }
    methods.sort_unstable();
    methods.dedup();
    Some(methods)
}

fn method_name(method: &HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Head => "HEAD",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Trace => "TRACE",
    }
}

/// `/v1/tenants/{slug}` matches `/v1/tenants/acme`: literal segments equal, a `{parameter}`
/// any non-empty segment (as the router matches them).
fn template_matches(template: &str, path: &str) -> bool {
    let mut templates = template.split('/');
    let mut segments = path.split('/');
    loop {
        match (templates.next(), segments.next()) {
            (None, None) => return true,
            (Some(expected), Some(segment)) if expected.starts_with('{') && expected.ends_with('}') => {
                if segment.is_empty() {
                    return false;
                }
            }
            (Some(expected), Some(segment)) if expected == segment => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_paths_give_their_methods() {
        assert_eq!(documented_methods("/v1/plans"), Some(vec!["GET", "POST"]));
        assert_eq!(documented_methods("/v1/plans/starter"), Some(vec!["DELETE", "GET", "PATCH"]));
        // `usage` is also a seat's `{email}`: both routes match it.
        assert_eq!(documented_methods("/v1/tenants/acme/seats/usage"), Some(vec!["DELETE", "GET"]));
        assert_eq!(documented_methods("/openapi.json"), Some(vec!["GET"]));
        for unknown in ["/v1/plans/", "/v1/nothing", "/v1/plans/a/b", "/login"] {
            assert_eq!(documented_methods(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let document: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let mut ids = Vec::new();
        for item in document["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                ids.push(operation["operationId"].as_str().unwrap().to_string());
            }
        }
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "{ids:?}");
    }

    /// Every error response is problem+json, and no integer is documented as int32: the API has
    /// none (counts are `u32`, documented as int64 with their range).
    #[test]
    fn errors_are_problems_and_integers_have_their_range() {
        let text = document();
        let document: serde_json::Value = serde_json::from_str(&text).unwrap();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        let media_types: Vec<&String> = response["content"].as_object().unwrap().keys().collect();
                        assert_eq!(media_types, [PROBLEM_JSON], "{method} {path} {status}");
                    }
                }
            }
        }
        assert!(!text.contains("\"int32\""), "an integer documented as int32");
    }
}
