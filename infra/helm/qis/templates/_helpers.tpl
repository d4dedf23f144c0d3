{{/* Names: fixed per component (qis-api, qis-worker, ...), as the IRSA trust policies of
infra/cloudformation/identity.yaml name the service accounts. */}}
{{- define "qis.name" -}}qis{{- end -}}

{{- define "qis.labels" -}}
app.kubernetes.io/name: qis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
qis.example/environment: {{ .Values.environment }}
{{- end -}}

{{- define "qis.selector" -}}
app.kubernetes.io/name: qis
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "qis.image" -}}
{{- if not .Values.image.repository }}{{ fail "image.repository is required" }}{{ end -}}
{{- if not .Values.image.tag }}{{ fail "image.tag is required" }}{{ end -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end -}}

{{- define "qis.collectorEndpoint" -}}
{{ printf "http://qis-adot-collector.%s.svc:4318/v1/traces" .Release.Namespace }}
{{- end -}}

{{/* QIS_* environment of every service process: values.env, then what the chart owns. */}}
{{- define "qis.env" -}}
{{- $owned := dict
  "QIS_KAFKA__BOOTSTRAP_SERVERS" .Values.kafka.bootstrapServers
  "QIS_KAFKA__OBSERVATIONS_PARTITIONS" (toString .Values.kafka.observationsPartitions)
  "QIS_TELEMETRY__ENVIRONMENT" .Values.environment
  "QIS_TELEMETRY__SERVICE_NAME" (printf "qis-%s" .Values.environment)
  "QIS_TELEMETRY__METRICS_EXPORTER" "stdout"
-}}
{{- if .Values.collector.enabled }}
{{- $_ := set $owned "QIS_TELEMETRY__TRACES_EXPORTER" "otlp" }}
{{- $_ := set $owned "QIS_TELEMETRY__OTLP_ENDPOINT" (include "qis.collectorEndpoint" .) }}
{{- end }}
{{- if not .Values.kafka.bootstrapServers }}{{ fail "kafka.bootstrapServers is required" }}{{ end }}
{{- range $name, $value := .Values.env }}
{{- if hasKey $owned $name }}{{ fail (printf "env.%s is set by the chart; use the chart's value instead" $name) }}{{ end }}
{{- if not (hasPrefix "QIS_" $name) }}{{ fail (printf "env.%s: only QIS_* settings belong in env" $name) }}{{ end }}
{{- end }}
{{- $all := merge (dict) $owned .Values.env }}
{{- range $name := keys $all | sortAlpha }}
- name: {{ $name }}
  value: {{ get $all $name | toString | quote }}
{{- end }}
{{- end -}}

{{- define "qis.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "qis.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end -}}

{{- define "qis.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{- define "qis.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "qis.workerCeiling" -}}
{{- $partitions := int .Values.kafka.observationsPartitions -}}
{{- if gt (int .Values.worker.replicas) $partitions -}}
{{- fail (printf "worker.replicas=%d exceeds kafka.observationsPartitions=%d: the extra consumers would idle" (int .Values.worker.replicas) $partitions) -}}
{{- end -}}
{{- if and .Values.worker.keda.enabled (gt (int .Values.worker.keda.maxReplicas) $partitions) -}}
{{- fail (printf "worker.keda.maxReplicas=%d exceeds kafka.observationsPartitions=%d" (int .Values.worker.keda.maxReplicas) $partitions) -}}
{{- end -}}
{{- end -}}
