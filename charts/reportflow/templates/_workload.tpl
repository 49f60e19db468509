{{/*
The objects each service (auth, reports, worker, notifier) has, built the same way for all four; each
component's folder includes them with (dict "root" $ "component" "<name>") and adds its own env.
*/}}

{{- define "reportflow.deployment" -}}
{{- $v := .root.Values -}}
{{- $c := index $v .component -}}
{{- $as := $c.autoscaling | default dict -}}
{{- $scaled := or $as.enabled ($as.keda | default dict).enabled -}}
{{- $env := include "reportflow.containerEnv" . -}}
{{- $grace := add $v.shutdown.preStopSleepSeconds $c.gracefulTimeoutSeconds $v.shutdown.paddingSeconds -}}
{{- if $c.terminationGracePeriodSeconds -}}
{{- if lt (int $c.terminationGracePeriodSeconds) (int (add $v.shutdown.preStopSleepSeconds $c.gracefulTimeoutSeconds)) -}}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) is shorter than shutdown.preStopSleepSeconds + %s.gracefulTimeoutSeconds" .component (int $c.terminationGracePeriodSeconds) .component) -}}
{{- end -}}
{{- $grace = $c.terminationGracePeriodSeconds -}}
{{- end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "reportflow.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "reportflow.labels" . | nindent 4 }}
spec:
  {{- if not $scaled }}
  replicas: {{ $c.replicas | int }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "reportflow.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "reportflow.labels" . | nindent 8 }}
      annotations:
        # A change of the settings or of the values the Secret is made from rolls the pods.
        checksum/config: {{ $env | sha256sum }}
        checksum/secret: {{ include "reportflow.secretChecksum" .root }}
        {{- if $v.metrics.scrapeAnnotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $v.http.port | int | quote }}
        prometheus.io/path: {{ $v.metrics.path | quote }}
        {{- end }}
        {{- with $c.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "reportflow.podSpecCommon" . | nindent 6 }}
      terminationGracePeriodSeconds: {{ $grace | int }}
      containers:
        - name: {{ .component }}
          image: {{ include "reportflow.image" (dict "root" .root "image" $c.image) | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          # The console script is the only way to start a service (the image's entrypoint too).
          command: ["reportflow-{{ .component }}"]
          ports:
            - name: http
              containerPort: {{ $v.http.port | int }}
              protocol: TCP
          env:
            {{- $env | nindent 12 }}
          startupProbe:
            {{- toYaml $v.probes.startup | nindent 12 }}
          livenessProbe:
            {{- toYaml $v.probes.liveness | nindent 12 }}
          readinessProbe:
            {{- toYaml $v.probes.readiness | nindent 12 }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $v.shutdown.preStopSleepSeconds | int }}
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- include "reportflow.containerSecurityContext" .root | nindent 12 }}
          volumeMounts:
            # /tmp first: the metrics folder is mounted inside it.
            - {name: tmp, mountPath: /tmp}
            - {name: metrics, mountPath: {{ $v.scratch.metricsDir }}}
      volumes:
        {{- include "reportflow.tmpVolume" $c.tmpSizeLimit | nindent 8 }}
        - name: metrics
          emptyDir: {}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with include "reportflow.topologySpread" . }}
      topologySpreadConstraints:
        {{- . | nindent 8 }}
      {{- end }}
{{- end }}

{{/* Every environment entry of a service's container: shared, its own, its env values. */}}
{{- define "reportflow.containerEnv" -}}
{{- $c := index .root.Values .component -}}
{{ include "reportflow.commonEnv" . }}
{{ include (printf "reportflow.env.%s" .component) .root }}
{{- with $c.env }}
{{ include "reportflow.extraEnv" . | trim }}
{{- end }}
{{- end }}

{{- define "reportflow.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "reportflow.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "reportflow.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "reportflow.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .root.Values.http.port | int }}
      targetPort: http
      protocol: TCP
{{- end }}

{{- define "reportflow.pdb" -}}
{{- $pdb := (index .root.Values .component).pdb -}}
{{- if $pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "reportflow.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "reportflow.labels" . | nindent 4 }}
spec:
  {{- if hasKey $pdb "minAvailable" }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "reportflow.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* A CPU HorizontalPodAutoscaler (reports, notifier; the worker scales on its queue: worker/keda.yaml). */}}
{{- define "reportflow.hpa" -}}
{{- $as := (index .root.Values .component).autoscaling -}}
{{- if $as.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "reportflow.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "reportflow.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "reportflow.componentName" . }}
  minReplicas: {{ $as.minReplicas | int }}
  maxReplicas: {{ $as.maxReplicas | int }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $as.targetCPUUtilizationPercentage | int }}
{{- end }}
{{- end }}

{{- define "reportflow.serviceMonitor" -}}
{{- $sm := .root.Values.metrics.serviceMonitor -}}
{{- if $sm.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "reportflow.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "reportflow.labels" . | nindent 4 }}
    {{- with $sm.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  jobLabel: app.kubernetes.io/component  # job="auth" etc., as the dashboard and the alert rules expect
  selector:
    matchLabels:
      {{- include "reportflow.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames: [{{ .root.Release.Namespace }}]
  endpoints:
    - port: http
      path: {{ .root.Values.metrics.path }}
      interval: {{ $sm.interval }}
      scrapeTimeout: {{ $sm.scrapeTimeout }}
{{- end }}
{{- end }}

{{/* A component's NetworkPolicy: (dict "root" $ "component" c "from" <peers YAML> "egress" <rules YAML>). */}}
{{- define "reportflow.networkPolicy" -}}
{{- if .root.Values.networkPolicy.enabled }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "reportflow.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "reportflow.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "reportflow.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress, Egress]
  {{- if .from }}
  ingress:
    - from:
        {{- .from | nindent 8 }}
      ports:
        - {protocol: TCP, port: {{ .port | default .root.Values.http.port | int }}}
  {{- else }}
  ingress: []
  {{- end }}
  egress:
    {{- .egress | nindent 4 }}
{{- end }}
{{- end }}
