{{- define "peergroup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "peergroup.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "peergroup.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "peergroup.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "peergroup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "peergroup.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "peergroup.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "peergroup.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "peergroup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "peergroup.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "peergroup.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "peergroup.seedDiscoveryImage" -}}
{{- $repo := default .Values.image.repository .Values.seedDiscovery.image.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.seedDiscovery.image.tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{- define "peergroup.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "provided" }}
{{- required "certificates.provided.secretName is required when certificates.mode is provided" .Values.certificates.provided.secretName }}
{{- else }}
{{- printf "%s-tls" (include "peergroup.fullname" .) }}
{{- end }}
{{- end }}

{{- define "peergroup.excludedNamespaces" -}}
{{- $list := list .Release.Namespace }}
{{- range .Values.webhook.excludedNamespaces }}{{ if ne . $.Release.Namespace }}{{ $list = append $list . }}{{ end }}{{ end }}
{{- toJson $list }}
{{- end }}

{{- define "peergroup.validateMode" -}}
{{- $modes := list "selfSigned" "certManager" "provided" }}
{{- if not (has .Values.certificates.mode $modes) }}
{{- fail (printf "certificates.mode %q is not one of selfSigned, certManager, provided" .Values.certificates.mode) }}
{{- end }}
{{- end }}

{{- /* "cpu=10m,memory=16Mi" from a resource map, sorted for stable output. */ -}}
{{- define "peergroup.resourceList" -}}
{{- $parts := list }}
{{- range $k, $v := . }}{{ $parts = append $parts (printf "%s=%v" $k $v) }}{{ end }}
{{- join "," (sortAlpha $parts) }}
{{- end }}

{{/* The names of a list of {name: …} references, comma-separated. */}}
{{- define "peergroup.secretNames" -}}
{{- $names := list }}
{{- range . }}{{ $names = append $names .name }}{{ end }}
{{- join "," $names }}
{{- end }}

{{/*
The two webhook entries, the same in the MutatingWebhookConfiguration and
the ValidatingWebhookConfiguration (so the API server sends the same pods
to both phases; the webhook relies on it). Called with
(dict "root" . "path" PATH "mutating" BOOL).
- pods carrying the group label (objectSelector), in any namespace but the
  excluded ones;
- every pod in namespaces carrying it (namespaceSelector), the pod's own
  label winning when both are set.
Opted-out pods (peergroup.dev/inject=false) match neither. The second entry
does not exclude pods that carry the group label: peergroup stamps that
label on namespace members, and on reinvocation the API server checks the
selectors against the object as it is then, so an entry excluding the label
would never be reinvoked, and a container another webhook added after
peergroup would stay without the env and the seeds mount. A pod with its
own label in a labelled namespace is sent by both entries; the second call
finds it injected and answers with an empty patch. The validating phase has
no reinvocation, and there the namespace entry takes only pods without the
group label: the mutating phase stamped it on every member, so each pod is
sent once (one Service create, one count), by the pod-label entry.
*/}}
{{- define "peergroup.webhookEntries" -}}
{{- $root := .root }}
{{- $excluded := include "peergroup.excludedNamespaces" $root | fromJsonArray }}
{{- $caBundle := "" }}
{{- if eq $root.Values.certificates.mode "provided" }}
{{- $caBundle = required "certificates.provided.caBundle is required when certificates.mode is provided" $root.Values.certificates.provided.caBundle }}
{{- else if and (eq $root.Values.certificates.mode "selfSigned") (not .mutating) }}
{{- /* An upgrade that adds the validating configuration: until a new
replica patches it, it would trust nothing and refuse every member pod.
The live mutating configuration's bundle is what the running replicas
serve with. (helm template, GitOps: no lookup, nothing rendered.) */}}
{{- $live := lookup "admissionregistration.k8s.io/v1" "MutatingWebhookConfiguration" "" (include "peergroup.fullname" $root) }}
{{- if $live }}
{{- range $live.webhooks }}{{ if and (not $caBundle) .clientConfig.caBundle }}{{ $caBundle = .clientConfig.caBundle }}{{ end }}{{ end }}
{{- end }}
{{- end -}}
- name: pod-label.peergroup.dev
  {{- include "peergroup.clientConfig" (dict "root" $root "caBundle" $caBundle "path" .path) | nindent 2 }}
  {{- include "peergroup.webhookCommon" (dict "root" $root "mutating" .mutating) | nindent 2 }}
  namespaceSelector:
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: NotIn
        values: {{ toJson $excluded }}
  objectSelector:
    matchExpressions:
      - key: peergroup.dev/group
        operator: Exists
      - key: peergroup.dev/inject
        operator: NotIn
        values: ["false"]
- name: namespace-label.peergroup.dev
  {{- include "peergroup.clientConfig" (dict "root" $root "caBundle" $caBundle "path" .path) | nindent 2 }}
  {{- include "peergroup.webhookCommon" (dict "root" $root "mutating" .mutating) | nindent 2 }}
  namespaceSelector:
    matchExpressions:
      - key: peergroup.dev/group
        operator: Exists
      - key: kubernetes.io/metadata.name
        operator: NotIn
        values: {{ toJson $excluded }}
  objectSelector:
    matchExpressions:
      - key: peergroup.dev/inject
        operator: NotIn
        values: ["false"]
      {{- if not .mutating }}
      - key: peergroup.dev/group
        operator: DoesNotExist
      {{- end }}
{{- end }}

{{/*
What both phases share. sideEffects NoneOnDryRun: the validating phase
creates the group's Service, never for a dry run; the mutating phase creates
it too while the validating configuration is not in force (webhook
ValidationWatch). reinvocationPolicy exists for the mutating phase only.
*/}}
{{- define "peergroup.webhookCommon" -}}
{{- $v := .root.Values.webhook -}}
admissionReviewVersions: ["v1"]
sideEffects: NoneOnDryRun
failurePolicy: {{ $v.failurePolicy }}
timeoutSeconds: {{ $v.timeoutSeconds }}
{{- if .mutating }}
reinvocationPolicy: {{ $v.reinvocationPolicy }}
{{- end }}
matchPolicy: Equivalent
rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["CREATE"]
    resources: ["pods"]
    scope: Namespaced
{{- end }}

{{/*
The clientConfig of a webhook entry: the chart's webhook Service on 443 at
path, and the caBundle when the chart knows it (provided mode; the other
modes have it injected). Called with (dict "root" . "caBundle" $caBundle
"path" PATH).
*/}}
{{- define "peergroup.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "peergroup.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: 443
  {{- with .caBundle }}
  caBundle: {{ . }}
  {{- end }}
{{- end }}
