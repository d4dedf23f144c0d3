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
{{ include "qis.envWith" (dict "root" . "extra" (dict)) }}
{{- end -}}

{{/* The same, plus `extra` (chart-owned settings of one process: the backup's). */}}
{{- define "qis.envWith" -}}
{{- $v := .root.Values -}}
{{- $owned := dict
  "QIS_KAFKA__BOOTSTRAP_SERVERS" $v.kafka.bootstrapServers
  "QIS_KAFKA__OBSERVATIONS_PARTITIONS" (toString $v.kafka.observationsPartitions)
  "QIS_TELEMETRY__ENVIRONMENT" $v.environment
  "QIS_TELEMETRY__SERVICE_NAME" (printf "qis-%s" $v.environment)
  "QIS_TELEMETRY__METRICS_EXPORTER" "stdout"
  "QIS_LAKE__ENABLED" (toString $v.lake.enabled)
  "QIS_LAKE__ENDPOINT_URL" ""
  "QIS_LAKE__REGION" $v.awsRegion
-}}
{{- if $v.collector.enabled }}
{{- $_ := set $owned "QIS_TELEMETRY__TRACES_EXPORTER" "otlp" }}
{{- $_ := set $owned "QIS_TELEMETRY__OTLP_ENDPOINT" (include "qis.collectorEndpoint" .root) }}
{{- end }}
{{- if not $v.kafka.bootstrapServers }}{{ fail "kafka.bootstrapServers is required" }}{{ end }}
{{- /* The lake's and backup bucket: data.yaml outputs, in AWS's default endpoint. */}}
{{- if or $v.lake.enabled $v.lake.bucket $v.lake.backupBucket }}
{{- if not $v.awsRegion }}{{ fail "awsRegion is required for the lake (QIS_LAKE__REGION)" }}{{ end }}
{{- end }}
{{- if $v.lake.enabled }}
{{- if not $v.lake.bucket }}{{ fail "lake.bucket is required when lake.enabled (data.yaml output DataLakeBucketName)" }}{{ end }}
{{- end }}
{{- if $v.lake.bucket }}{{ $_ := set $owned "QIS_LAKE__BUCKET" $v.lake.bucket }}{{ end }}
{{- if $v.lake.backupBucket }}{{ $_ := set $owned "QIS_LAKE__BACKUP_BUCKET" $v.lake.backupBucket }}{{ end }}
{{- $owned = merge $owned .extra }}
{{- range $name, $value := $v.env }}
{{- if hasKey $owned $name }}{{ fail (printf "env.%s is set by the chart; use the chart's value instead" $name) }}{{ end }}
{{- if not (hasPrefix "QIS_" $name) }}{{ fail (printf "env.%s: only QIS_* settings belong in env" $name) }}{{ end }}
{{- end }}
{{- $all := merge (dict) $owned $v.env }}
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
