{{/* auth alone holds the signing key; it serves the public half (and earlier keys' halves) in its JWKS. */}}
{{- define "reportflow.env.auth" -}}
{{ include "reportflow.secretEnv" (dict "root" . "name" "DATABASE_URL") }}
{{ include "reportflow.secretEnv" (dict "root" . "name" "JWT_PRIVATE_KEY") }}
{{- with .Values.auth.previousPublicKeys }}
- name: JWT_PREVIOUS_PUBLIC_KEYS
  value: {{ . | join "\n" | quote }}
{{- end }}
- name: JWT_ISSUER
  value: {{ .Values.config.jwtIssuer | quote }}
- name: TRUSTED_PROXY_HOPS
  value: {{ .Values.config.trustedProxyHops | int | quote }}
{{- end }}
