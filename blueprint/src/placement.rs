//! Where the tenants' pods run: a node selector and tolerations that every pod the operator
//! makes carries — a provider's nodes reserved for tenants (tainted, so nothing else lands
//! there), a zone, a machine type. Set per installation (`--node-selector`, `--tolerations`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, Toleration};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
}

impl Placement {
    /// Adds the selector and the tolerations to `pod`.
    pub fn apply_to(&self, pod: &mut PodSpec) {
        if !self.node_selector.is_empty() {
            pod.node_selector.get_or_insert_with(Default::default).extend(self.node_selector.clone());
        }
        if !self.tolerations.is_empty() {
            pod.tolerations.get_or_insert_with(Vec::new).extend(self.tolerations.iter().cloned());
        }
    }
}

/// `key=value,…` (a node selector); empty text is no selector.
pub fn parse_node_selector(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.trim().to_string())),
            _ => Err(format!("`{pair}` is not key=value")),
        })
        .collect()
}

/// Tolerations in the form `kubectl taint` writes taints, comma-separated: `key=value:Effect`
/// tolerates that taint exactly, `key:Effect` any value of the key with that effect, and `key`
/// any value and effect. Effects are `NoSchedule`, `PreferNoSchedule` and `NoExecute`.
pub fn parse_tolerations(text: &str) -> Result<Vec<Toleration>, String> {
    text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(parse_toleration).collect()
}

fn parse_toleration(item: &str) -> Result<Toleration, String> {
    let (taint, effect) = match item.rsplit_once(':') {
        Some((taint, effect)) => {
            if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
                return Err(format!(
                    "`{item}`: the effect `{effect}` is none of NoSchedule, PreferNoSchedule, NoExecute"
                ));
            }
            (taint, Some(effect.to_string()))
        }
        None => (item, None),
    };
    let (key, value) = match taint.split_once('=') {
        Some((key, value)) => (key, Some(value.to_string())),
        None => (taint, None),
    };
    if key.is_empty() {
        return Err(format!("`{item}` names no taint key"));
    }
    Ok(Toleration {
        key: Some(key.to_string()),
        operator: Some(if value.is_some() { "Equal" } else { "Exists" }.to_string()),
        value,
        effect,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_read_like_taints() {
        let parsed = parse_tolerations("dedicated=tenants:NoSchedule, tenantry.dev/real-node:NoSchedule,gpu").unwrap();
        assert_eq!(parsed[0].key.as_deref(), Some("dedicated"));
        assert_eq!(parsed[0].operator.as_deref(), Some("Equal"));
        assert_eq!(parsed[0].value.as_deref(), Some("tenants"));
        assert_eq!(parsed[0].effect.as_deref(), Some("NoSchedule"));
        assert_eq!(parsed[1].key.as_deref(), Some("tenantry.dev/real-node"));
        assert_eq!(parsed[1].operator.as_deref(), Some("Exists"));
        assert_eq!(parsed[1].value, None);
        assert_eq!((parsed[2].operator.as_deref(), parsed[2].effect.as_deref()), (Some("Exists"), None));
        assert!(parse_tolerations("").unwrap().is_empty());
    }

    #[test]
    fn bad_tolerations_and_selectors_are_refused_with_the_reason() {
        assert!(parse_tolerations("dedicated:Sometimes").unwrap_err().contains("Sometimes"));
        assert!(parse_tolerations("=x:NoSchedule").unwrap_err().contains("no taint key"));
        assert!(parse_node_selector("zone").unwrap_err().contains("`zone`"));
        assert_eq!(
            parse_node_selector(" a=1 ,b=2").unwrap(),
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
        );
    }

    #[test]
    fn a_pod_keeps_what_it_had_and_gains_the_placement() {
        let placement = Placement {
            node_selector: BTreeMap::from([("pool".into(), "tenants".into())]),
            tolerations: parse_tolerations("dedicated:NoSchedule").unwrap(),
        };
        let mut pod = PodSpec {
            node_selector: Some(BTreeMap::from([("kubernetes.io/os".into(), "linux".into())])),
            ..Default::default()
        };
        placement.apply_to(&mut pod);
        assert_eq!(pod.node_selector.as_ref().unwrap().len(), 2);
        assert_eq!(pod.tolerations.as_ref().unwrap().len(), 1);
        let mut untouched = PodSpec::default();
        Placement::default().apply_to(&mut untouched);
        assert_eq!(untouched, PodSpec::default());
    }
}
