//! One Ingress per environment with a public host: HTTPS to the environment's web client.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};

use super::common::{Component, child, labels_for, metadata, names};
use super::config::MAX_BODY_SIZE;
use super::erp::WEB_SERVICE_PORT;
use super::{BuildContext, Child};
use crate::model::{Environment, Ingress as IngressModel, Tls};

pub(crate) const CLUSTER_ISSUER_ANNOTATION: &str = "cert-manager.io/cluster-issuer";
/// ingress-nginx refuses bodies over 1 MiB by default; ERP uploads (attachments, imports) are
/// larger. Other controllers ignore the annotation.
const NGINX_BODY_SIZE_ANNOTATION: &str = "nginx.ingress.kubernetes.io/proxy-body-size";

/// None without an ingress; otherwise one per environment that has a host.
pub(crate) fn children(ctx: &BuildContext) -> Vec<Child> {
    let Some(ingress) = &ctx.model.ingress else {
        return Vec::new();
    };
    ctx.model
        .environments
        .iter()
        .filter_map(|environment| {
            let host = environment.host.as_deref()?;
            Some(child(&build(ctx, ingress, environment, host), false))
        })
        .collect()
}

fn build(ctx: &BuildContext, ingress: &IngressModel, environment: &Environment, host: &str) -> Ingress {
    let mut annotations = BTreeMap::from([(NGINX_BODY_SIZE_ANNOTATION.to_string(), MAX_BODY_SIZE.to_string())]);
    let secret_name = match &ingress.tls {
        Tls::Secret(name) => Some(name.clone()),
        Tls::Issuer(issuer) => {
            // cert-manager's ingress-shim sees this and issues the certificate into the Secret
            // named in `tls` below.
            annotations.insert(CLUSTER_ISSUER_ANNOTATION.into(), issuer.clone());
            Some(format!("{}-tls", environment.name()))
        }
        // A TLS entry without a Secret: the controller serves its default certificate for it.
        Tls::ControllerDefault => None,
    };
    let mut meta =
        metadata(ctx, names::ingress(environment), labels_for(ctx.model, Some(Component::Web), Some(environment)));
    meta.annotations = Some(annotations);
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: names::web(environment),
            port: Some(ServiceBackendPort { number: Some(WEB_SERVICE_PORT), ..Default::default() }),
        }),
        ..Default::default()
    };
    Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            ingress_class_name: ingress.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: Some(host.to_string()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath { path: Some("/".into()), path_type: "Prefix".into(), backend }],
                }),
            }]),
            tls: Some(vec![IngressTLS { hosts: Some(vec![host.to_string()]), secret_name }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixture::{Fixture, fixture};
    use serde_json::json;

    #[test]
    fn issuer_gives_the_annotation_and_a_secret_per_environment() {
        let fx = Fixture::new(fixture());
        let children = children(&fx.ctx());
        let names: Vec<_> = children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["erp-production", "erp-test"]);
        for (child, host, secret) in
            [(&children[0], "acme.example.com", "production-tls"), (&children[1], "acme.test.example.com", "test-tls")]
        {
            let body = &child.body;
            assert_eq!(body["metadata"]["annotations"][CLUSTER_ISSUER_ANNOTATION], "letsencrypt");
            assert_eq!(body["spec"]["ingressClassName"], "nginx");
            assert_eq!(body["spec"]["tls"], json!([{"hosts": [host], "secretName": secret}]));
            let rule = &body["spec"]["rules"][0];
            assert_eq!(rule["host"], host);
            assert_eq!(rule["http"]["paths"][0]["path"], "/");
            assert_eq!(rule["http"]["paths"][0]["pathType"], "Prefix");
            let env = if host.contains(".test.") { "test" } else { "production" };
            assert_eq!(
                rule["http"]["paths"][0]["backend"]["service"],
                json!({"name": format!("erp-web-{env}"), "port": {"number": 80}})
            );
        }
    }

    #[test]
    fn existing_secret_is_used_as_is_without_cert_manager() {
        let mut model = fixture();
        model.ingress = Some(IngressModel { class_name: None, tls: Tls::Secret("wildcard-example-com".into()) });
        let fx = Fixture::new(model);
        for child in children(&fx.ctx()) {
            assert_eq!(child.body["spec"]["tls"][0]["secretName"], "wildcard-example-com");
            assert!(child.body["metadata"]["annotations"].get(CLUSTER_ISSUER_ANNOTATION).is_none());
            assert!(child.body["spec"].get("ingressClassName").is_none());
        }
    }

    #[test]
    fn controller_default_certificate_lists_the_hosts_without_a_secret() {
        let mut model = fixture();
        model.ingress = Some(IngressModel { class_name: None, tls: Tls::ControllerDefault });
        let fx = Fixture::new(model);
        let children = children(&fx.ctx());
        assert_eq!(children.len(), 2);
        for child in children {
            let tls = &child.body["spec"]["tls"][0];
            assert_eq!(tls["hosts"][0], child.body["spec"]["rules"][0]["host"]);
            assert!(tls.get("secretName").is_none(), "{tls}");
            assert!(child.body["metadata"]["annotations"].get(CLUSTER_ISSUER_ANNOTATION).is_none());
        }
    }

    #[test]
    fn no_ingress_or_no_host_means_no_ingress() {
        let mut model = fixture();
        model.ingress = None;
        assert!(children(&Fixture::new(model).ctx()).is_empty());
        let mut model = fixture();
        model.environments[1].host = None;
        let fx = Fixture::new(model);
        let names: Vec<_> = children(&fx.ctx()).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["erp-production"]);
    }
}
