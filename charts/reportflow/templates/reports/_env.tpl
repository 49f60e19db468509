{{- define "reportflow.env.reports" -}}
{{ include "reportflow.secretEnv" (dict "root" . "name" "DATABASE_URL") }}
- name: JWKS_URL
  value: "{{ include "reportflow.authUrl" . }}/.well-known/jwks.json"
- name: JWT_ISSUER
  value: {{ .Values.config.jwtIssuer | quote }}
- name: TRUSTED_PROXY_HOPS
  value: {{ .Values.config.trustedProxyHops | int | quote }}
{{ include "reportflow.storageEnv" . }}
{{ include "reportflow.schedulingEnv" . }}
- name: S3_PUBLIC_ENDPOINT_URL
  value: {{ include "reportflow.s3PublicEndpointUrl" . | quote }}
- name: VISIBILITY_TIMEOUT_SECONDS
  value: {{ .Values.config.visibilityTimeoutSeconds | int | quote }}
- name: EVENT_HISTORY_MAX
  value: {{ .Values.config.eventHistoryMax | int | quote }}
- name: EVENT_HISTORY_TTL_SECONDS
  value: {{ .Values.config.eventHistoryTtlSeconds | int | quote }}
{{- end }}
