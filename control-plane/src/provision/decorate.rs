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
    /// cert-manager ClusterIssuer for the tenants' certificates.
    pub tls_issuer: Option<String>,
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
            && object["spec"]["ingress"].is_null()
        {
            let mut ingress = json!({"host": format!("{slug}.{domain}")});
            if let Some(class) = &self.ingress_class {
                ingress["className"] = Value::String(class.clone());
            }
            if let Some(issuer) = &self.tls_issuer {
                ingress["tlsIssuer"] = Value::String(issuer.clone());
            }
            object["spec"]["ingress"] = ingress;
        }
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
        let tenant: tenant_operator::api::Tenant = serde_json::from_value(json!({
            "apiVersion": "tenantry.dev/v1alpha1", "kind": "Tenant",
            "metadata": decorated["metadata"], "spec": {"displayName": "Acme", "plan": "business",
            "erp": {"version": "7.0.1"}, "ingress": decorated["spec"]["ingress"]}}))
        .unwrap();
        assert_eq!(tenant.spec.ingress.unwrap().host, "acme.erp.example.com");
    }
}
