{{- define "reportflow.env.worker" -}}
{{- $w := .Values.worker -}}
{{- if lt (int $w.gracefulTimeoutSeconds) (int $w.jobTimeLimitSeconds) -}}
{{- fail (printf "worker.gracefulTimeoutSeconds (%d) must be at least worker.jobTimeLimitSeconds (%d): a scale-down or rollout would kill running jobs" (int $w.gracefulTimeoutSeconds) (int $w.jobTimeLimitSeconds)) -}}
{{- end -}}
{{- if le (int .Values.config.visibilityTimeoutSeconds) (int $w.jobTimeLimitSeconds) -}}
{{- fail (printf "config.visibilityTimeoutSeconds (%d) must exceed worker.jobTimeLimitSeconds (%d): the broker would hand running jobs to a second worker" (int .Values.config.visibilityTimeoutSeconds) (int $w.jobTimeLimitSeconds)) -}}
{{- end -}}
{{ include "reportflow.secretEnv" (dict "root" . "name" "DATABASE_URL") }}
{{ include "reportflow.storageEnv" . }}
{{ include "reportflow.schedulingEnv" . }}
- name: VISIBILITY_TIMEOUT_SECONDS
  value: {{ .Values.config.visibilityTimeoutSeconds | int | quote }}
- name: JOB_TIME_LIMIT_SECONDS
  value: {{ $w.jobTimeLimitSeconds | int | quote }}
- name: EVENT_HISTORY_MAX
  value: {{ .Values.config.eventHistoryMax | int | quote }}
- name: EVENT_HISTORY_TTL_SECONDS
  value: {{ .Values.config.eventHistoryTtlSeconds | int | quote }}
{{- end }}
