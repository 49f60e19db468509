{{/*
Shared helpers. Most take a context dict: (dict "root" $ "component" "auth").
*/}}

{{- define "reportflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "reportflow.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one component's objects: <fullname>-<component>. */}}
{{- define "reportflow.componentName" -}}
{{- printf "%s-%s" (include "reportflow.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "reportflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels; component is optional (release-wide objects have none). */}}
{{- define "reportflow.labels" -}}
helm.sh/chart: {{ include "reportflow.chart" .root }}
{{ include "reportflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: reportflow
{{- end }}

{{- define "reportflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reportflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* A NetworkPolicyPeer that is one component's pods. */}}
{{- define "reportflow.peer" -}}
- podSelector:
    matchLabels:
      {{- include "reportflow.selectorLabels" . | nindent 6 }}
{{- end }}

{{/* Components that run under a ServiceAccount of their own (the dev ones only with dev.enabled). */}}
{{- define "reportflow.serviceAccountComponents" -}}
{{- $components := list "auth" "reports" "worker" "notifier" }}
{{- if .Values.dev.enabled }}
{{- $components = concat $components (list "postgresql" "redis" "s3") }}
{{- end }}
{{- toJson $components }}
{{- end }}

{{/* A component's ServiceAccount: <component>.serviceAccount.name, else <fullname>-<component> (or "default"
     when the chart creates none). (dict "root" $ "component" "auth") */}}
{{- define "reportflow.serviceAccountName" -}}
{{- $own := (index .root.Values .component | default dict).serviceAccount | default dict }}
{{- if $own.name }}
{{- $own.name }}
{{- else if .root.Values.serviceAccount.create }}
{{- include "reportflow.componentName" . }}
{{- else -}}
default
{{- end }}
{{- end }}

{{/* Image reference from an image map {repository, tag, digest}: (dict "root" $ "image" $img). */}}
{{- define "reportflow.image" -}}
{{- $tag := .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if .image.digest -}}
{{ .image.repository }}:{{ $tag }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{/* An environment value as a string: whole numbers stay whole (values.yaml numbers are float64). */}}
{{- define "reportflow.envValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{ int64 . }}
{{- else -}}
{{ . }}
{{- end -}}
{{- end }}

{{/* The Secret every service reads its secrets from. */}}
{{- define "reportflow.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "reportflow.fullname" .)) }}
{{- end }}

{{/* One env entry from the Secret: (dict "root" $ "name" "DATABASE_URL" "optional" false). */}}
{{- define "reportflow.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "reportflow.secretName" .root }}
      key: {{ .name }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{/* In-cluster addresses. */}}
{{- define "reportflow.authUrl" -}}
http://{{ include "reportflow.componentName" (dict "root" . "component" "auth") }}:{{ .Values.http.port | int }}
{{- end }}

{{- define "reportflow.s3EndpointUrl" -}}
{{- if .Values.storage.endpointUrl -}}
{{ .Values.storage.endpointUrl }}
{{- else if .Values.dev.enabled -}}
http://{{ include "reportflow.componentName" (dict "root" . "component" "s3") }}:{{ .Values.dev.s3.port | int }}
{{- end -}}
{{- end }}

{{/* Whether the dev S3's bucket path is routed on the public host (by the gateway or the Ingress). */}}
{{- define "reportflow.storagePublished" -}}
{{- if and .Values.dev.enabled .Values.dev.s3.publish (or .Values.gateway.enabled .Values.ingress.enabled) -}}
true
{{- end -}}
{{- end }}

{{- define "reportflow.s3PublicEndpointUrl" -}}
{{- if .Values.storage.publicEndpointUrl -}}
{{ .Values.storage.publicEndpointUrl }}
{{- else if include "reportflow.storagePublished" . -}}
{{ .Values.public.url }}
{{- end -}}
{{- end }}

{{/*
The public paths, one list for the Gateway API routes and for the Ingress: (list path pathType component).
Groups: api (auth, reports), socket (Socket.IO: long-lived, sticky), page (the demo page), storage (the dev S3).
*/}}
{{- define "reportflow.publicPaths" -}}
{{- $paths := dict
  "api" (list
    (list "/v1/auth" "Prefix" "auth")
    (list "/.well-known/jwks.json" "Exact" "auth")
    (list "/v1/reports" "Prefix" "reports")
    (list "/v1/openapi.json" "Exact" "reports"))
  "socket" (list (list "/socket.io" "Prefix" "notifier"))
  "page" (list (list "/static" "Prefix" "notifier") (list "/favicon.ico" "Exact" "notifier") (list "/" "Exact" "notifier"))
  "storage" (list (list (printf "/%s" .Values.storage.bucket) "Prefix" "s3")) }}
{{- toJson $paths }}
{{- end }}

{{/* The notifier accepts WebSocket connections only: nothing needs to be sticky. */}}
{{- define "reportflow.websocketOnly" -}}
{{- if eq (.Values.notifier.transports | join ",") "websocket" -}}
true
{{- end -}}
{{- end }}

{{/* Settings of the services' containers that every service reads (secrets excepted). */}}
{{- define "reportflow.commonEnv" -}}
{{- $v := .root.Values -}}
- name: PORT
  value: {{ $v.http.port | int | quote }}
- name: LOG_LEVEL
  value: {{ $v.config.logLevel | quote }}
- name: GRACEFUL_TIMEOUT_SECONDS
  value: {{ (index $v .component).gracefulTimeoutSeconds | int | quote }}
- name: PROMETHEUS_MULTIPROC_DIR
  value: {{ $v.scratch.metricsDir | quote }}
{{ include "reportflow.secretEnv" (dict "root" .root "name" "REDIS_URL") }}
{{- end }}

{{/* S3 storage settings (reports and worker). */}}
{{- define "reportflow.storageEnv" -}}
{{- $v := .Values -}}
- name: STORAGE_BACKEND
  value: s3
- name: S3_BUCKET
  value: {{ $v.storage.bucket | quote }}
- name: S3_REGION
  value: {{ $v.storage.region | quote }}
- name: S3_ENDPOINT_URL
  value: {{ include "reportflow.s3EndpointUrl" . | quote }}
- name: REPORT_RETENTION_DAYS
  value: {{ $v.storage.retentionDays | int | quote }}
{{ include "reportflow.secretEnv" (dict "root" . "name" "S3_ACCESS_KEY_ID" "optional" true) }}
{{ include "reportflow.secretEnv" (dict "root" . "name" "S3_SECRET_ACCESS_KEY" "optional" true) }}
{{- end }}

{{/* How queued jobs are ordered and which are small enough for the lane (reports and worker must agree). */}}
{{- define "reportflow.schedulingEnv" -}}
- name: JOB_ORDER
  value: {{ .Values.config.jobOrder | quote }}
- name: LANE_MAX_CELLS
  value: {{ .Values.config.laneMaxCells | int | quote }}
{{- end }}

{{/* A component's own env map (values: <component>.env). */}}
{{- define "reportflow.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ include "reportflow.envValue" $value | quote }}
{{- end }}
{{- end }}

{{- define "reportflow.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "reportflow.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* Writable scratch space under a read-only root filesystem. */}}
{{- define "reportflow.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ . }}
{{- end }}

{{/* The pod spec's common part: (dict "root" $ "component" "auth"). */}}
{{- define "reportflow.podSpecCommon" -}}
serviceAccountName: {{ include "reportflow.serviceAccountName" . }}
{{ include "reportflow.hookPodSpec" .root }}
{{- end }}

{{/* Soft spread over nodes and zones for a component's pods, unless it sets its own constraints. */}}
{{- define "reportflow.topologySpread" -}}
{{- $c := index .root.Values .component -}}
{{- $ts := .root.Values.topologySpread -}}
{{- if $c.topologySpreadConstraints -}}
{{ toYaml $c.topologySpreadConstraints }}
{{- else if $ts.enabled -}}
{{- range $key := $ts.topologyKeys }}
- maxSkew: {{ $ts.maxSkew | int }}
  topologyKey: {{ $key }}
  whenUnsatisfiable: {{ $ts.whenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "reportflow.selectorLabels" $ | nindent 6 }}
  matchLabelKeys: [pod-template-hash]  # this rollout's pods only
{{- end }}
{{- end }}
{{- end }}

{{/* Hook pods run before the release's ServiceAccount exists, so they keep the namespace's default one. */}}
{{- define "reportflow.hookPodSpec" -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- include "reportflow.podSecurityContext" . | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* NetworkPolicy egress rules. */}}
{{- define "reportflow.egress.dns" -}}
{{- $dns := .Values.networkPolicy.dns -}}
- to:
    - namespaceSelector:
        {{- toYaml $dns.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml $dns.podSelector | nindent 8 }}
  ports:
    - {protocol: UDP, port: {{ $dns.port | int }}}
    - {protocol: TCP, port: {{ $dns.port | int }}}
{{- end }}

{{/* Egress to PostgreSQL, Redis or S3: the dev pods, or the external addresses. (dict "root" $ "dep" "redis") */}}
{{- define "reportflow.egress.dependency" -}}
{{- $v := .root.Values -}}
{{- $devComponent := dict "postgresql" "postgresql" "redis" "redis" "s3" "s3" -}}
{{- if $v.dev.enabled }}
{{- $component := get $devComponent .dep }}
- to:
    {{- include "reportflow.peer" (dict "root" .root "component" $component) | nindent 4 }}
  ports:
    - {protocol: TCP, port: {{ (index $v.dev $component).port | int }}}
{{- else }}
{{- $ext := index $v.networkPolicy.external .dep }}
- ports:
    - {protocol: TCP, port: {{ $ext.port | int }}}
  {{- with $ext.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Egress to a component's HTTP port (JWKS, helm test). */}}
{{- define "reportflow.egress.http" -}}
- to:
    {{- include "reportflow.peer" . | nindent 4 }}
  ports:
    - {protocol: TCP, port: {{ .root.Values.http.port | int }}}
{{- end }}

{{/* A NetworkPolicyPeer of pods elsewhere: a peerSelectors value {namespaceSelector, podSelector}. */}}
{{- define "reportflow.from.selectors" -}}
- namespaceSelector:
    {{- toYaml .namespaceSelector | nindent 4 }}
  podSelector:
    {{- toYaml .podSelector | nindent 4 }}
{{- end }}

{{/* Ingress from the gateway's proxies (or the ingress controller), from Prometheus. */}}
{{- define "reportflow.from.gateway" -}}
{{ include "reportflow.from.selectors" .Values.networkPolicy.gateway }}
{{- end }}

{{- define "reportflow.from.prometheus" -}}
{{ include "reportflow.from.selectors" .Values.networkPolicy.prometheus }}
{{- end }}

{{/* YAML list items from a list of rendered fragments, one after another without blank lines. */}}
{{- define "reportflow.joinRules" -}}
{{- $items := list }}
{{- range . }}
{{- $items = append $items (trim .) }}
{{- end }}
{{- join "\n" $items }}
{{- end }}

{{/* checksum/secret of the pods: of the values the chart's Secret is made from (not of generated values, so
     that two renders agree), or of existingSecret's name. A Secret changed outside helm needs a
     `kubectl rollout restart`. */}}
{{- define "reportflow.secretChecksum" -}}
{{- $d := .Values.dev -}}
{{- $inputs := dict "secrets" .Values.secrets "name" (include "reportflow.secretName" .) "dev" $d.enabled -}}
{{- if $d.enabled -}}
{{- $_ := set $inputs "postgresql" (pick $d.postgresql "username" "database" "password" "port") -}}
{{- $_ := set $inputs "redis" (pick $d.redis "password" "port") -}}
{{- $_ := set $inputs "s3" (pick $d.s3 "accessKeyId") -}}
{{- end -}}
{{- toJson $inputs | sha256sum -}}
{{- end }}
