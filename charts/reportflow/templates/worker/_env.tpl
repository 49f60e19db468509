{{- define "reportflow.env.worker" -}}
{{ include "reportflow.secretEnv" (dict "root" . "name" "DATABASE_URL") }}
{{ include "reportflow.storageEnv" . }}
- name: VISIBILITY_TIMEOUT_SECONDS
  value: {{ .Values.config.visibilityTimeoutSeconds | int | quote }}
- name: EVENT_HISTORY_MAX
  value: {{ .Values.config.eventHistoryMax | int | quote }}
- name: EVENT_HISTORY_TTL_SECONDS
  value: {{ .Values.config.eventHistoryTtlSeconds | int | quote }}
{{- end }}
