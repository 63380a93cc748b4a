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

{{- define "peergroup.webhookCommon" -}}
admissionReviewVersions: ["v1"]
sideEffects: NoneOnDryRun
failurePolicy: {{ .Values.webhook.failurePolicy }}
timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
reinvocationPolicy: {{ .Values.webhook.reinvocationPolicy }}
matchPolicy: Equivalent
rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["CREATE"]
    resources: ["pods"]
    scope: Namespaced
{{- end }}

{{/*
The clientConfig of both webhook entries: the chart's webhook Service on
443, and the caBundle when the chart knows it (provided mode; the other
modes have it injected). Called with (dict "root" . "caBundle" $caBundle).
*/}}
{{- define "peergroup.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "peergroup.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: /mutate-v1-pod
    port: 443
  {{- with .caBundle }}
  caBundle: {{ . }}
  {{- end }}
{{- end }}
