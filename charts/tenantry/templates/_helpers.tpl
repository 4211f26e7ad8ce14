{{/* Names: `<release>-tenantry` unless overridden, cut to the 63 characters of a label value. */}}
{{- define "tenantry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tenantry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Namespaced objects of a component. */}}
{{- define "tenantry.operator.fullname" -}}
{{- printf "%s-operator" (include "tenantry.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tenantry.controlPlane.fullname" -}}
{{- printf "%s-control-plane" (include "tenantry.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Cluster-scoped objects (ClusterRoles and their bindings) and Roles outside the release
namespace carry the namespace too: two releases of one name in two namespaces must not share
them.
*/}}
{{- define "tenantry.operator.clusterName" -}}
{{- printf "%s-%s-operator" .Release.Namespace (include "tenantry.fullname" .) -}}
{{- end -}}

{{- define "tenantry.controlPlane.clusterName" -}}
{{- printf "%s-%s-control-plane" .Release.Namespace (include "tenantry.fullname" .) -}}
{{- end -}}

{{- define "tenantry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels: `include "tenantry.labels" (list . "operator")`. */}}
{{- define "tenantry.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "tenantry.chart" $root }}
{{ include "tenantry.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: tenantry
{{- end -}}

{{- define "tenantry.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "tenantry.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* `repository:tag`, the tag defaulting to the chart's appVersion. */}}
{{- define "tenantry.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{/*
The restricted security contexts (the Pod Security Standards' "restricted" profile): a
non-root user, no privilege escalation, no capabilities, a read-only root and the runtime's
seccomp profile. 65532 is the distroless `nonroot` user the images run as.
*/}}
{{- define "tenantry.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tenantry.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/*
The API versions of the optional kinds, chosen from what the cluster serves (Helm's
discovery at install time), else (`helm template` without --api-versions) from its version.
*/}}
{{- define "tenantry.pdb.apiVersion" -}}
{{- if .Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget" -}}
policy/v1
{{- else if .Capabilities.APIVersions.Has "policy/v1beta1/PodDisruptionBudget" -}}
policy/v1beta1
{{- else if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}

{{- define "tenantry.hpa.apiVersion" -}}
{{- if .Capabilities.APIVersions.Has "autoscaling/v2/HorizontalPodAutoscaler" -}}
autoscaling/v2
{{- else if .Capabilities.APIVersions.Has "autoscaling/v2beta2/HorizontalPodAutoscaler" -}}
autoscaling/v2beta2
{{- else if semverCompare ">=1.23-0" .Capabilities.KubeVersion.Version -}}
autoscaling/v2
{{- else -}}
autoscaling/v2beta2
{{- end -}}
{{- end -}}

{{/* Whether the control plane runs more than one pod at any time. */}}
{{- define "tenantry.controlPlane.replicated" -}}
{{- if or .Values.controlPlane.autoscaling.enabled (gt (int .Values.controlPlane.replicas) 1) -}}true{{- end -}}
{{- end -}}

{{/*
Where a setting of the control plane comes from: `include "tenantry.secretSource" (list . <setting> <key in the chart's Secret>)`
gives `name/key` of the Secret holding it, or nothing when it is not configured. An inline
value wins over an existing Secret.
*/}}
{{- define "tenantry.secretSource" -}}
{{- $root := index . 0 -}}
{{- $setting := index . 1 -}}
{{- $key := index . 2 -}}
{{- if $setting.url -}}
{{- printf "%s/%s" (include "tenantry.controlPlane.fullname" $root) $key -}}
{{- else if $setting.existingSecret.name -}}
{{- printf "%s/%s" $setting.existingSecret.name $setting.existingSecret.key -}}
{{- end -}}
{{- end -}}

{{/* An env entry read from a `name/key` source. */}}
{{- define "tenantry.envFromSecret" -}}
{{- $env := index . 0 -}}
{{- $source := splitList "/" (index . 1) -}}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ index $source 0 }}
      key: {{ index $source 1 }}
{{- end -}}

{{/*
A generated secret value that survives upgrades: `include "tenantry.kept" (list . <key> <fresh value>)`
gives the value already in the chart's Secret when the cluster has one (Helm's lookup; nothing
under `helm template`), else the fresh value.
*/}}
{{- define "tenantry.kept" -}}
{{- $root := index . 0 -}}
{{- $key := index . 1 -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (include "tenantry.controlPlane.fullname" $root) -}}
{{- if and $existing (hasKey ($existing.data | default dict) $key) -}}
{{- index $existing.data $key | b64dec -}}
{{- else -}}
{{- index . 2 -}}
{{- end -}}
{{- end -}}

{{/* A map as `key=value,key=value`, in key order. */}}
{{/*
Tolerations as the operator's --tolerations reads them: key=value:Effect, comma-separated.
*/}}
{{- define "tenantry.taints" -}}
{{- $items := list -}}
{{- range . -}}
{{- $item := .key -}}
{{- with .value }}{{ $item = printf "%s=%s" $item . }}{{ end -}}
{{- with .effect }}{{ $item = printf "%s:%s" $item . }}{{ end -}}
{{- $items = append $items $item -}}
{{- end -}}
{{- join "," $items -}}
{{- end -}}

{{- define "tenantry.keyValues" -}}
{{- $pairs := list -}}
{{- range $key, $value := . -}}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/*
The control plane's environment (docs/control-plane.md#configuration), shared by the server
and the plan import: `include "tenantry.controlPlane.env" (list . <database source> <redis source>)`.
*/}}
{{- define "tenantry.controlPlane.env" -}}
{{- $root := index . 0 -}}
{{- $database := index . 1 -}}
{{- $redis := index . 2 -}}
{{- $cp := $root.Values.controlPlane -}}
{{- $own := include "tenantry.controlPlane.fullname" $root -}}
- name: TENANTRY_LISTEN
  value: "0.0.0.0:8080"
- name: TENANTRY_DATA_DIR
  value: /var/lib/tenantry
- name: TENANTRY_PROVISIONER
  value: cluster
- name: TENANTRY_LOG_FORMAT
  value: {{ $cp.logFormat | quote }}
{{- with $database }}
{{ include "tenantry.envFromSecret" (list "DATABASE_URL" .) }}
{{- end }}
{{- with $redis }}
{{ include "tenantry.envFromSecret" (list "REDIS_URL" .) }}
{{- end }}
{{- if $cp.auth.existingSecret.name }}
{{ include "tenantry.envFromSecret" (list "TENANTRY_JWT_KEYS" (printf "%s/%s" $cp.auth.existingSecret.name $cp.auth.existingSecret.key)) }}
{{- else }}
{{ include "tenantry.envFromSecret" (list "TENANTRY_JWT_KEYS" (printf "%s/jwt-keys" $own)) }}
{{- end }}
{{- with $cp.auth.signingKid }}
- name: TENANTRY_JWT_SIGNING_KID
  value: {{ . | quote }}
{{- end }}
- name: TENANTRY_JWT_ISSUER
  value: {{ $cp.auth.issuer | quote }}
- name: TENANTRY_JWT_AUDIENCE
  value: {{ $cp.auth.audience | quote }}
- name: TENANTRY_TOKEN_TTL
  value: {{ $cp.auth.tokenTtl | quote }}
- name: TENANTRY_SIGNUP_TOKEN_TTL
  value: {{ $cp.auth.signupTokenTtl | quote }}
{{- if $cp.secretKey.existingSecret.name }}
{{ include "tenantry.envFromSecret" (list "TENANTRY_SECRET_KEY" (printf "%s/%s" $cp.secretKey.existingSecret.name $cp.secretKey.existingSecret.key)) }}
{{- else }}
{{ include "tenantry.envFromSecret" (list "TENANTRY_SECRET_KEY" (printf "%s/secret-key" $own)) }}
{{- end }}
- name: TENANTRY_SIGNUP_PER_MINUTE
  value: {{ $cp.signup.perMinute | quote }}
- name: TENANTRY_SIGNUP_BURST
  value: {{ $cp.signup.burst | quote }}
{{- with $cp.trustedProxies }}
- name: TENANTRY_TRUSTED_PROXIES
  value: {{ join "," . | quote }}
{{- end }}
- name: TENANTRY_DEFAULT_ERP_VERSION
  value: {{ $cp.defaultErpVersion | quote }}
{{- with $cp.erpVersions }}
- name: TENANTRY_ERP_VERSIONS
  value: {{ join "," . | quote }}
{{- end }}
{{- with $cp.tenants.domain }}
- name: TENANTRY_TENANT_DOMAIN
  value: {{ . | quote }}
{{- end }}
{{- with $cp.tenants.tlsIssuer }}
- name: TENANTRY_TENANT_TLS_ISSUER
  value: {{ . | quote }}
{{- end }}
{{- if $cp.tenants.tlsDefaultCertificate }}
- name: TENANTRY_TENANT_TLS_DEFAULT_CERTIFICATE
  value: "true"
{{- end }}
{{- with $cp.tenants.ingressClassName }}
- name: TENANTRY_TENANT_INGRESS_CLASS
  value: {{ . | quote }}
{{- end }}
{{- with $cp.tenants.labels }}
- name: TENANTRY_TENANT_LABELS
  value: {{ include "tenantry.keyValues" . | quote }}
{{- end }}
{{- with $cp.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
