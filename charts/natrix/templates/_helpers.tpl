{{/* Chart name (nameOverride wins). */}}
{{- define "natrix.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: fullnameOverride, else the release name when it holds the chart name, else <release>-<chart>. */}}
{{- define "natrix.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name and version for the helm.sh/chart label. */}}
{{- define "natrix.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "natrix.labels" -}}
helm.sh/chart: {{ include "natrix.chart" . }}
{{ include "natrix.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: natrix
{{- end }}

{{/* Labels selecting the operator pods (immutable in the Deployment selector: keep stable). */}}
{{- define "natrix.selectorLabels" -}}
app.kubernetes.io/name: {{ include "natrix.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "natrix.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "natrix.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image tag (appVersion when unset). */}}
{{- define "natrix.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* repository:tag of the natrix image. */}}
{{- define "natrix.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "natrix.imageTag" .) }}
{{- end }}

{{/* Leader election: on with more than one replica, or when asked for. */}}
{{- define "natrix.leaderElect" -}}
{{- if or .Values.operator.leaderElect (gt (int .Values.operator.replicas) 1) }}true{{- end }}
{{- end }}

{{/*
The operator's permissions. They must stay equal to e2e/examples/operator-rbac.yaml (the
rules the operator e2e test runs with against a real API server); e2e/chart_test.py checks it.
*/}}
{{- define "natrix.rbacRules" -}}
- apiGroups: ["natrix.io"]
  resources: ["natsclusters", "streams", "accounts"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["natrix.io"]
  resources: ["natsclusters/status", "streams/status", "accounts/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["natrix.io"]
  resources: ["natsclusters/finalizers", "streams/finalizers", "accounts/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Operator mode: the operator, account and creds Secrets (created, re-issued, deleted).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "create", "patch", "delete"]
# Rolling upgrades: the broker pods' readiness and revision.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# metrics.podMonitor: the Prometheus Operator's PodMonitors (when their CRD is installed).
- apiGroups: ["monitoring.coreos.com"]
  resources: ["podmonitors"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end }}

{{/* The Lease rule alone (leader election outside the watched namespaces). */}}
{{- define "natrix.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end }}

{{/* Namespace of the example NatsCluster. */}}
{{- define "natrix.clusterNamespace" -}}
{{- default .Release.Namespace .Values.cluster.namespace }}
{{- end }}
