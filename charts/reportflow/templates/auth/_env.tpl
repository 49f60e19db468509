{{/* auth alone holds the signing key; it serves the public half at /.well-known/jwks.json. */}}
{{- define "reportflow.env.auth" -}}
{{ include "reportflow.secretEnv" (dict "root" . "name" "DATABASE_URL") }}
{{ include "reportflow.secretEnv" (dict "root" . "name" "JWT_PRIVATE_KEY") }}
- name: JWT_ISSUER
  value: {{ .Values.config.jwtIssuer | quote }}
- name: TRUSTED_PROXY_HOPS
  value: {{ .Values.config.trustedProxyHops | int | quote }}
{{- end }}
