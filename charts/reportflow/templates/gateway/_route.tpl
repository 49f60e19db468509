{{/*
Gateway API (gateway.networking.k8s.io/v1). The routes attach to the release's Gateway (gateway.create) or to
gateway.parentRefs, for public.host only; their paths are reportflow.publicPaths, as the Ingress's.
*/}}

{{- define "reportflow.gatewayParentRefs" -}}
{{- $g := .Values.gateway -}}
{{- if $g.parentRefs -}}
{{ toYaml $g.parentRefs }}
{{- else if $g.create -}}
- name: {{ include "reportflow.fullname" . }}
{{- else -}}
{{- fail "gateway.parentRefs is required when gateway.create is false" -}}
{{- end -}}
{{- end }}

{{/* One HTTPRoute rule: (dict "root" $ "paths" <publicPaths entries> "extra" <YAML of the rule's other fields>). */}}
{{- define "reportflow.httpRouteRule" -}}
{{- $component := index (first .paths) 2 -}}
- matches:
    {{- range .paths }}
    - path: {type: {{ ternary "Exact" "PathPrefix" (eq (index . 1) "Exact") }}, value: {{ index . 0 | quote }}}
    {{- end }}
  backendRefs:
    - name: {{ include "reportflow.componentName" (dict "root" .root "component" $component) }}
      port: {{ ternary .root.Values.dev.s3.port .root.Values.http.port (eq $component "s3") | int }}
  {{- with .extra }}
  {{- . | nindent 2 }}
  {{- end }}
{{- end }}
