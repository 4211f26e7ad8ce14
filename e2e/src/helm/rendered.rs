//! What a rendering of the chart produced, and putting it on a cluster.

use std::time::Duration;

use base64::Engine;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope};
use kube::runtime::wait::{await_condition, conditions};
use serde::Deserialize;
use serde_json::Value;

use super::HelmError;

/// The field manager of everything a test applies from the chart.
const FIELD_MANAGER: &str = "tenantry-chart-test";
/// How long a CRD of the chart may take to be served.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);
/// Helm's install order (`releaseutil.InstallOrder`): what others refer to comes first.
const INSTALL_ORDER: &[&str] = &[
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
];

/// One object of the rendered chart and the template it came from.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub template: String,
    pub object: Value,
}

impl Manifest {
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or_default()
    }
}

/// The pod a container runs in, for the `fieldRef`s of its environment.
#[derive(Debug, Clone)]
pub struct PodIdentity {
    pub name: String,
    pub namespace: String,
}

/// The chart rendered for one release: its objects (templates), CRDs (`crds/`) and NOTES.txt.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub objects: Vec<Manifest>,
    pub crds: Vec<Value>,
    pub notes: String,
    namespace: String,
}

#[derive(Deserialize)]
struct SdkRendering {
    objects: Vec<Manifest>,
    crds: Vec<Value>,
    notes: String,
}

impl Rendered {
    pub(super) fn from_sdk(answer: Value, namespace: &str) -> Result<Self, HelmError> {
        let SdkRendering { objects, crds, notes } = serde_json::from_value(answer)
            .map_err(|e| HelmError::Manifest(format!("the SDK's rendering does not parse: {e}")))?;
        Ok(Self { objects, crds, notes, namespace: namespace.to_string() })
    }

    /// The release namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects.iter().find(|m| m.kind() == kind && m.name() == name).map(|m| &m.object)
    }

    /// Like [`Rendered::find`], failing with what is missing.
    pub fn get(&self, kind: &str, name: &str) -> Result<&Value, HelmError> {
        self.find(kind, name).ok_or_else(|| {
            let made: Vec<String> = self.objects.iter().map(|m| format!("{} {}", m.kind(), m.name())).collect();
            HelmError::Manifest(format!("no {kind} {name} among: {}", made.join(", ")))
        })
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|m| m.kind() == kind).map(|m| &m.object).collect()
    }

    /// The same rendering with only the objects of `kinds` (and no CRDs).
    pub fn only(&self, kinds: &[&str]) -> Rendered {
        Rendered {
            objects: self.objects.iter().filter(|m| kinds.contains(&m.kind())).cloned().collect(),
            crds: Vec::new(),
            notes: self.notes.clone(),
            namespace: self.namespace.clone(),
        }
    }

    /// The environment of `container` in the Deployment `deployment`, resolved as the kubelet
    /// would: literal values, the pod's own fields, and keys of the chart's Secrets and
    /// ConfigMaps. A reference to something the chart does not make is an error.
    pub fn container_env(
        &self,
        deployment: &str,
        container: &str,
        pod: &PodIdentity,
    ) -> Result<Vec<(String, String)>, HelmError> {
        let spec = &self.get("Deployment", deployment)?["spec"]["template"]["spec"];
        let containers = spec["initContainers"].as_array().into_iter().chain(spec["containers"].as_array()).flatten();
        let found = containers
            .into_iter()
            .find(|c| c["name"] == container)
            .ok_or_else(|| HelmError::Manifest(format!("Deployment {deployment} has no container {container}")))?;
        let mut env = Vec::new();
        for variable in found["env"].as_array().into_iter().flatten() {
            let name = variable["name"].as_str().unwrap_or_default().to_string();
            let source = &variable["valueFrom"];
            let value = if let Some(value) = variable.get("value") {
                value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string())
            } else if let Some(path) = source["fieldRef"]["fieldPath"].as_str() {
                match path {
                    "metadata.name" => pod.name.clone(),
                    "metadata.namespace" => pod.namespace.clone(),
                    other => return Err(HelmError::Manifest(format!("{name}: field {other} is not simulated"))),
                }
            } else if source["secretKeyRef"].is_object() {
                self.secret_value(&source["secretKeyRef"])?
            } else if source["configMapKeyRef"].is_object() {
                let reference = &source["configMapKeyRef"];
                let (map, key) =
                    (reference["name"].as_str().unwrap_or_default(), reference["key"].as_str().unwrap_or_default());
                let data = &self.get("ConfigMap", map)?["data"][key];
                data.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| HelmError::Manifest(format!("ConfigMap {map} has no key {key}")))?
            } else {
                return Err(HelmError::Manifest(format!("{name}: a source this helper does not resolve: {variable}")));
            };
            env.push((name, value));
        }
        Ok(env)
    }

    fn secret_value(&self, reference: &Value) -> Result<String, HelmError> {
        let (name, key) =
            (reference["name"].as_str().unwrap_or_default(), reference["key"].as_str().unwrap_or_default());
        let secret = self.find("Secret", name).ok_or_else(|| {
            HelmError::Manifest(format!("the environment reads Secret {name}, which the chart does not make"))
        })?;
        if let Some(text) = secret["stringData"][key].as_str() {
            return Ok(text.to_string());
        }
        let encoded = secret["data"][key]
            .as_str()
            .ok_or_else(|| HelmError::Manifest(format!("Secret {name} has no key {key}")))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| HelmError::Manifest(format!("Secret {name} key {key} is not base64: {e}")))?;
        String::from_utf8(bytes).map_err(|_| HelmError::Manifest(format!("Secret {name} key {key} is not text")))
    }

    /// Puts the rendering on the cluster as `helm install` would: the CRDs first (created when
    /// missing, never changed, then awaited), then every object in Helm's install order, each by
    /// server-side apply. Objects without a namespace of their own go to the release namespace.
    pub async fn apply(&self, client: &Client) -> Result<(), HelmError> {
        self.install_crds(client).await?;
        let discovery = Discovery::new(client.clone()).run().await?;
        let mut ordered: Vec<&Manifest> = self.objects.iter().collect();
        ordered.sort_by_key(|m| INSTALL_ORDER.iter().position(|kind| *kind == m.kind()).unwrap_or(INSTALL_ORDER.len()));
        let params = PatchParams::apply(FIELD_MANAGER).force();
        for manifest in ordered {
            let api = self.api_for(client, &discovery, manifest)?;
            api.patch(manifest.name(), &params, &Patch::Apply(&manifest.object)).await.map_err(|e| {
                HelmError::Apply(format!("{} {} ({}): {e}", manifest.kind(), manifest.name(), manifest.template))
            })?;
        }
        Ok(())
    }

    /// Deletes every object of the rendering, as `helm uninstall` does; CRDs stay (Helm never
    /// deletes them: that would delete every Tenant). Objects already gone are fine.
    pub async fn uninstall(&self, client: &Client) -> Result<(), HelmError> {
        let discovery = Discovery::new(client.clone()).run().await?;
        for manifest in self.objects.iter().rev() {
            let Ok(api) = self.api_for(client, &discovery, manifest) else { continue };
            match api.delete(manifest.name(), &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => {
                    return Err(HelmError::Apply(format!("deleting {} {}: {e}", manifest.kind(), manifest.name())));
                }
            }
        }
        Ok(())
    }

    /// The API of `manifest`'s kind, in its namespace (the release namespace unless it names one).
    fn api_for(
        &self,
        client: &Client,
        discovery: &Discovery,
        manifest: &Manifest,
    ) -> Result<Api<DynamicObject>, HelmError> {
        let (group, version) = match manifest.api_version().split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", manifest.api_version()),
        };
        let gvk = GroupVersionKind::gvk(group, version, manifest.kind());
        let (resource, capabilities) = discovery.resolve_gvk(&gvk).ok_or_else(|| {
            HelmError::Apply(format!(
                "{} ({}): the cluster serves no {} {}",
                manifest.name(),
                manifest.template,
                manifest.api_version(),
                manifest.kind()
            ))
        })?;
        let api = match capabilities.scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => {
                let namespace = manifest.object["metadata"]["namespace"].as_str().unwrap_or(&self.namespace);
                Api::namespaced_with(client.clone(), namespace, &resource)
            }
        };
        Ok(api)
    }

    async fn install_crds(&self, client: &Client) -> Result<(), HelmError> {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for document in &self.crds {
            let crd: CustomResourceDefinition = serde_json::from_value(document.clone())
                .map_err(|e| HelmError::Manifest(format!("a CRD of the chart does not parse: {e}")))?;
            let name = crd.metadata.name.clone().unwrap_or_default();
            match crds.create(&PostParams::default(), &crd).await {
                Ok(_) => {}
                // Helm never touches a CRD that exists.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(e) => return Err(HelmError::Apply(format!("CustomResourceDefinition {name}: {e}"))),
            }
            let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
            match tokio::time::timeout(CRD_TIMEOUT, established).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(HelmError::Apply(format!("waiting for CRD {name}: {e}"))),
                Err(_) => return Err(HelmError::Apply(format!("CRD {name} not established within {CRD_TIMEOUT:?}"))),
            }
        }
        Ok(())
    }
}
