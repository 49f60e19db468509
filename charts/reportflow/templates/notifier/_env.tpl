{{- define "reportflow.env.notifier" -}}
- name: JWKS_URL
  value: "{{ include "reportflow.authUrl" . }}/.well-known/jwks.json"
- name: JWT_ISSUER
  value: {{ .Values.config.jwtIssuer | quote }}
- name: TRUSTED_PROXY_HOPS
  value: {{ .Values.config.trustedProxyHops | int | quote }}
- name: SOCKETIO_ALLOWED_ORIGINS
  value: {{ .Values.notifier.allowedOrigins | default (list .Values.public.url) | join "," | quote }}
- name: SOCKETIO_TRANSPORTS
  value: {{ .Values.notifier.transports | join "," | quote }}
- name: EVENT_HISTORY_MAX
  value: {{ .Values.config.eventHistoryMax | int | quote }}
- name: EVENT_HISTORY_TTL_SECONDS
  value: {{ .Values.config.eventHistoryTtlSeconds | int | quote }}
{{- end }}
