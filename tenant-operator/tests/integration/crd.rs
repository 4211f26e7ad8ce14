//! The CRD in the chart is generated from the Rust types; this fails when they drift apart.

use tenant_operator::controller::crd_yaml;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/tenantry/crds/tenants.tenantry.dev.yaml");

#[test]
fn committed_crd_matches_the_types() {
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == crd_yaml(),
        "charts/tenantry/crds/tenants.tenantry.dev.yaml differs from the Tenant types; regenerate it with\n  \
         cargo run -p tenant-operator -- crd > charts/tenantry/crds/tenants.tenantry.dev.yaml"
    );
}

#[test]
fn crd_is_cluster_scoped_with_status_and_printer_columns() {
    let crd: serde_json::Value =
        serde_json::to_value(<tenant_operator::api::Tenant as kube::CustomResourceExt>::crd()).unwrap();
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["group"], "tenantry.dev");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> =
        version["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["Plan", "Version", "Phase", "URL", "Age"]);
}
