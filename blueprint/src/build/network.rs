//! NetworkPolicies: deny everything, then allow exactly the paths the ERP uses:
//! ingress controller → web → server → database, Jobs → database, backups → their store, and
//! DNS for all. Nothing from other namespaces gets in except the ingress controller, and nothing
//! gets out except DNS and the backups' traffic to their store.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::common::{Component, DATABASE_PORT, child, metadata, tenant_labels};
use super::{BuildContext, Child};
use crate::api::labels;

const DNS_PORT: i32 = 53;

pub(crate) fn children(ctx: &BuildContext) -> Vec<Child> {
    let server_port = ctx.model.profile.server.port;
    let web_port = ctx.model.profile.web.port;
    let policies = [
        // No rules: with both policy types, every pod is cut off until another policy allows.
        policy(ctx, "default-deny", LabelSelector::default(), None, None),
        policy(ctx, "allow-dns", LabelSelector::default(), None, Some(vec![dns_egress()])),
        policy(
            ctx,
            "web",
            pods(Component::Web),
            Some(ingress_controller_ingress(ctx, web_port)),
            Some(vec![egress(vec![peer(Component::Server)], server_port)]),
        ),
        policy(
            ctx,
            "server",
            pods(Component::Server),
            Some(vec![ingress(vec![peer(Component::Web)], server_port)]),
            Some(vec![egress(vec![peer(Component::Database)], DATABASE_PORT)]),
        ),
        policy(
            ctx,
            "database",
            pods(Component::Database),
            Some(vec![ingress(vec![peer_any_of(&[Component::Server, Component::Job])], DATABASE_PORT)]),
            None,
        ),
        policy(
            ctx,
            "jobs",
            pods(Component::Job),
            None,
            Some(vec![egress(vec![peer(Component::Database)], DATABASE_PORT)]),
        ),
    ];
    let mut children: Vec<Child> = policies.iter().map(|policy| child(policy, false)).collect();
    if ctx.model.backups.is_some() {
        // The store is outside the cluster at an address no selector names: any address, on
        // the store's ports only.
        let store = NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                ip_block: Some(IPBlock { cidr: "0.0.0.0/0".into(), except: None }),
                ..Default::default()
            }]),
            ports: Some(ctx.backup_store_ports.iter().map(|&number| port("TCP", number)).collect()),
        };
        let backup_pods = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: labels::BACKUP.into(),
                operator: "Exists".into(),
                values: None,
            }]),
            ..Default::default()
        };
        children.push(child(&policy(ctx, "backup-store", backup_pods, None, Some(vec![store])), false));
    }
    children
}

/// A policy of both types, so that `None` rules mean "nothing" rather than "not restricted".
fn policy(
    ctx: &BuildContext,
    name: &str,
    pod_selector: LabelSelector,
    ingress: Option<Vec<NetworkPolicyIngressRule>>,
    egress: Option<Vec<NetworkPolicyEgressRule>>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: metadata(ctx, name, tenant_labels(ctx.model)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pod_selector),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress,
            egress,
        }),
    }
}

/// DNS to any destination, not only to pods: node-local DNS caches listen on a link-local
/// address that no pod or namespace selector matches. (Allowing port 53 anywhere gives nothing
/// the cluster resolver, which recurses to the internet, does not already give.)
fn dns_egress() -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule { ports: Some(vec![port("UDP", DNS_PORT), port("TCP", DNS_PORT)]), to: None }
}

/// From the ingress controller's namespaces on the web port. Without labels to select them,
/// no rule at all: an empty namespaceSelector would let every namespace in.
fn ingress_controller_ingress(ctx: &BuildContext, web_port: i32) -> Vec<NetworkPolicyIngressRule> {
    if ctx.ingress_controller_namespace.is_empty() {
        return Vec::new();
    }
    let controller = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(ctx.ingress_controller_namespace.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![ingress(vec![controller], web_port)]
}

fn ingress(from: Vec<NetworkPolicyPeer>, port_number: i32) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule { from: Some(from), ports: Some(vec![port("TCP", port_number)]) }
}

fn egress(to: Vec<NetworkPolicyPeer>, port_number: i32) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule { to: Some(to), ports: Some(vec![port("TCP", port_number)]) }
}

fn port(protocol: &str, number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort { protocol: Some(protocol.into()), port: Some(IntOrString::Int(number)), ..Default::default() }
}

/// The pods of one component (in the policy's own namespace, as pod selectors always are).
fn pods(component: Component) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(labels::COMPONENT.to_string(), component.label().to_string())])),
        ..Default::default()
    }
}

/// Pods of this namespace only: a peer with a pod selector and no namespace selector.
fn peer(component: Component) -> NetworkPolicyPeer {
    NetworkPolicyPeer { pod_selector: Some(pods(component)), ..Default::default() }
}

fn peer_any_of(components: &[Component]) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: labels::COMPONENT.into(),
                operator: "In".into(),
                values: Some(components.iter().map(|c| c.label().to_string()).collect()),
            }]),
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

    fn policy_named<'a>(children: &'a [Child], name: &str) -> &'a serde_json::Value {
        &children.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no policy {name}")).body["spec"]
    }

    #[test]
    fn everything_is_denied_then_allowed_path_by_path() {
        let fx = Fixture::new(fixture());
        let children = children(&fx.ctx());
        let names: Vec<_> = children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["default-deny", "allow-dns", "web", "server", "database", "jobs"]);

        let deny = policy_named(&children, "default-deny");
        assert_eq!(deny["podSelector"], json!({}));
        assert_eq!(deny["policyTypes"], json!(["Ingress", "Egress"]));
        assert!(deny.get("ingress").is_none() && deny.get("egress").is_none());

        let web = policy_named(&children, "web");
        assert_eq!(
            web["ingress"][0]["from"],
            json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}])
        );
        assert_eq!(web["ingress"][0]["ports"], json!([{"protocol": "TCP", "port": 8080}]));
        assert_eq!(web["egress"][0]["to"][0]["podSelector"]["matchLabels"][labels::COMPONENT], "server");
        assert_eq!(web["egress"][0]["ports"][0]["port"], 8000);

        let server = policy_named(&children, "server");
        assert_eq!(server["ingress"][0]["from"][0]["podSelector"]["matchLabels"][labels::COMPONENT], "web");
        assert_eq!(server["egress"][0]["ports"][0]["port"], 5432);

        let database = policy_named(&children, "database");
        assert_eq!(
            database["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"],
            json!(["server", "job"])
        );
        assert!(database.get("egress").is_none());
    }

    #[test]
    fn no_peer_reaches_into_other_namespaces_except_the_ingress_controller() {
        let fx = Fixture::new(fixture());
        for policy in children(&fx.ctx()) {
            let spec = &policy.body["spec"];
            for rule in spec["ingress"].as_array().into_iter().flatten() {
                for from in rule["from"].as_array().expect("every ingress rule names its peers") {
                    if from.get("namespaceSelector").is_some() {
                        assert_eq!(policy.name, "web");
                        assert_ne!(from["namespaceSelector"], json!({}));
                    }
                }
            }
        }
    }

    #[test]
    fn backup_pods_reach_their_store_on_its_ports_only() {
        let mut fx = Fixture::new(fixture());
        assert!(!children(&fx.ctx()).iter().any(|c| c.name == "backup-store"), "no backups, no way out");
        fx.model.backups = Some(crate::model::Backups {
            schedule: "0 3 * * *".parse().unwrap(),
            retention: Default::default(),
            store: "s3://b/p".into(),
            credentials_secret: None,
        });
        let children = children(&fx.ctx());
        let store = policy_named(&children, "backup-store");
        assert_eq!(store["podSelector"]["matchExpressions"][0], json!({"key": labels::BACKUP, "operator": "Exists"}));
        assert_eq!(store["egress"][0]["to"], json!([{"ipBlock": {"cidr": "0.0.0.0/0"}}]));
        assert_eq!(store["egress"][0]["ports"], json!([{"protocol": "TCP", "port": 443}]));
        assert!(store.get("ingress").is_none());
    }

    #[test]
    fn unknown_ingress_controller_lets_nobody_in() {
        let mut fx = Fixture::new(fixture());
        fx.ingress_controller_namespace.clear();
        let children = children(&fx.ctx());
        let web = policy_named(&children, "web");
        assert_eq!(web["ingress"], json!([]));
    }
}
