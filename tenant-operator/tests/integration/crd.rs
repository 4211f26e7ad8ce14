//! The CRD in the chart is generated from the Rust types; this fails when they drift apart.

use tenant_operator::controller::{crd_yaml, crds};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/tenantry/crds");

#[test]
fn committed_crds_match_the_types() {
    for (file, crd) in crds() {
        let committed = std::fs::read_to_string(format!("{COMMITTED}/{file}")).unwrap_or_default();
        assert!(
            committed == crd_yaml(&crd),
            "charts/tenantry/crds/{file} differs from the types; regenerate the CRDs with\n  \
             cargo run -p tenant-operator -- crd --dir charts/tenantry/crds"
        );
    }
    let files = std::fs::read_dir(COMMITTED).unwrap().count();
    assert_eq!(files, crds().len(), "charts/tenantry/crds holds a file no type generates");
}

#[test]
fn the_backup_crd_is_cluster_scoped_with_status() {
    let crd =
        serde_json::to_value(<tenant_operator::api::backup::TenantBackup as kube::CustomResourceExt>::crd()).unwrap();
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["names"]["plural"], "tenantbackups");
    assert!(crd["spec"]["versions"][0]["subresources"]["status"].is_object());
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
