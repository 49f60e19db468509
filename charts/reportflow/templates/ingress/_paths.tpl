{{/* One Ingress rule on the chart's host: (dict "root" $ "paths" (list (list "/v1/auth" "auth" "http") ...));
     a path's optional fourth element is its pathType (default Prefix). */}}
{{- define "reportflow.ingressSpec" -}}
{{- $v := .root.Values -}}
ingressClassName: {{ $v.ingress.className }}
{{- if $v.ingress.tls.enabled }}
tls:
  - hosts: [{{ $v.ingress.host | quote }}]
    secretName: {{ required "ingress.tls.secretName is required when ingress.tls.enabled" $v.ingress.tls.secretName }}
{{- end }}
rules:
  - host: {{ $v.ingress.host | quote }}
    http:
      paths:
        {{- range .paths }}
        - path: {{ index . 0 }}
          pathType: {{ if gt (len .) 3 }}{{ index . 3 }}{{ else }}Prefix{{ end }}
          backend:
            service:
              name: {{ include "reportflow.componentName" (dict "root" $.root "component" (index . 1)) }}
              port:
                name: {{ index . 2 }}
        {{- end }}
{{- end }}
