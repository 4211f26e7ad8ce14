//! What a deployment adds to every desired Tenant at apply time: the tenants' public host under
//! the provider's domain, and labels (to shard Tenants between operators with their
//! `--tenant-selector`). The outbox keeps the tenant's own desired state; these belong to where
//! it runs, so changing them needs no rewrite of stored jobs.

use std::collections::BTreeMap;

use serde_json::{Value, json};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decorations {
    /// Added to `metadata.labels` (never replacing the control plane's own).
    pub labels: BTreeMap<String, String>,
    /// `<slug>.<domain>` becomes the Tenant's `spec.ingress.host`.
    pub domain: Option<String>,
    pub ingress_class: Option<String>,
    /// cert-manager ClusterIssuer for the tenants' certificates (one per host).
    pub tls_issuer: Option<String>,
    /// The ingress controller's default certificate (a wildcard) serves every tenant.
    pub tls_default_certificate: bool,
}

impl Decorations {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Decorates a Tenant object (as written to the outbox) for tenant `slug`.
    pub fn apply(&self, slug: &str, object: &mut Value) {
        if !self.labels.is_empty() {
            let metadata = &mut object["metadata"];
            if !metadata["labels"].is_object() {
                metadata["labels"] = json!({});
            }
            for (key, value) in &self.labels {
                if metadata["labels"].get(key).is_none() {
                    metadata["labels"][key] = Value::String(value.clone());
                }
            }
        }
        if let Some(domain) = &self.domain
            && object.pointer("/spec/ingress").is_none_or(Value::is_null)
        {
            object["spec"]["ingress"] = json!({"host": format!("{slug}.{domain}")});
        }
        // A host given by hand gets the same class and certificates as the generated ones.
        if let Some(ingress) = object.pointer_mut("/spec/ingress").and_then(Value::as_object_mut) {
            if let Some(class) = &self.ingress_class {
                ingress.entry("className").or_insert_with(|| Value::String(class.clone()));
            }
            let has_tls =
                ["tlsIssuer", "tlsSecretName", "tlsDefaultCertificate"].iter().any(|k| ingress.contains_key(*k));
            if !has_tls {
                if let Some(issuer) = &self.tls_issuer {
                    ingress.insert("tlsIssuer".into(), Value::String(issuer.clone()));
                } else if self.tls_default_certificate {
                    ingress.insert("tlsDefaultCertificate".into(), Value::Bool(true));
                }
            }
        }
    }

    /// The host a tenant gets when none was given by hand.
    pub fn generated_host(&self, slug: &str) -> Option<String> {
        self.domain.as_ref().map(|domain| format!("{slug}.{domain}"))
    }

    /// Whether tenants can be served over HTTPS at a host given by hand.
    pub fn serves_tls(&self) -> bool {
        self.tls_issuer.is_some() || self.tls_default_certificate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> Value {
        json!({"metadata": {"name": "acme", "labels": {"app.kubernetes.io/managed-by": "tenantry-control-plane"}},
               "spec": {"plan": "business"}})
    }

    #[test]
    fn nothing_configured_changes_nothing() {
        let mut decorated = object();
        Decorations::default().apply("acme", &mut decorated);
        assert_eq!(decorated, object());
    }

    #[test]
    fn labels_and_host_are_added_without_replacing_what_is_there() {
        let decorations = Decorations {
            labels: [
                ("shard".to_string(), "eu-1".to_string()),
                ("app.kubernetes.io/managed-by".to_string(), "x".to_string()),
            ]
            .into(),
            domain: Some("erp.example.com".into()),
            ingress_class: Some("nginx".into()),
            tls_issuer: Some("letsencrypt".into()),
            tls_default_certificate: false,
        };
        let mut decorated = object();
        decorations.apply("acme", &mut decorated);
        assert_eq!(decorated["metadata"]["labels"]["shard"], "eu-1");
        assert_eq!(decorated["metadata"]["labels"]["app.kubernetes.io/managed-by"], "tenantry-control-plane");
        assert_eq!(
            decorated["spec"]["ingress"],
            json!({"host": "acme.erp.example.com", "className": "nginx", "tlsIssuer": "letsencrypt"})
        );
        // The result is still a Tenant the operator reads.
        let tenant: tenantry_contract::api::Tenant = serde_json::from_value(json!({
            "apiVersion": "tenantry.dev/v1alpha1", "kind": "Tenant",
            "metadata": decorated["metadata"], "spec": {"displayName": "Acme", "plan": "business",
            "erp": {"version": "7.0.1"}, "ingress": decorated["spec"]["ingress"]}}))
        .unwrap();
        assert_eq!(tenant.spec.ingress.unwrap().host, "acme.erp.example.com");
    }

    #[test]
    fn a_host_given_by_hand_gets_the_deployment_tls() {
        let decorations = Decorations {
            domain: Some("erp.example.com".into()),
            tls_default_certificate: true,
            ..Decorations::default()
        };
        let mut decorated = object();
        decorated["spec"]["ingress"] = json!({"host": "erp.acme.example"});
        decorations.apply("acme", &mut decorated);
        assert_eq!(decorated["spec"]["ingress"], json!({"host": "erp.acme.example", "tlsDefaultCertificate": true}));
        let mut generated = object();
        decorations.apply("acme", &mut generated);
        assert_eq!(
            generated["spec"]["ingress"],
            json!({"host": "acme.erp.example.com", "tlsDefaultCertificate": true})
        );
    }
}
