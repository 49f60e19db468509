{{/* One Ingress rule on the public host: (dict "root" $ "paths" (list (list "/v1/auth" "Prefix" "auth") ...)),
     the entries of reportflow.publicPaths; the backend is the component's Service, port "http" (the dev S3: "s3"). */}}
{{- define "reportflow.ingressSpec" -}}
{{- $v := .root.Values -}}
{{- with $v.ingress.className }}
ingressClassName: {{ . }}
{{- end }}
{{- if $v.public.tls.enabled }}
tls:
  - hosts: [{{ $v.public.host | quote }}]
    secretName: {{ required "public.tls.secretName is required when public.tls.enabled" $v.public.tls.secretName }}
{{- end }}
rules:
  - host: {{ $v.public.host | quote }}
    http:
      paths:
        {{- range .paths }}
        {{- $component := index . 2 }}
        - path: {{ index . 0 }}
          pathType: {{ index . 1 }}
          backend:
            service:
              name: {{ include "reportflow.componentName" (dict "root" $.root "component" $component) }}
              port:
                name: {{ ternary "s3" "http" (eq $component "s3") }}
        {{- end }}
{{- end }}
