{{/* Chart name. */}}
{{- define "ledger.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name (ledger-blue, ledger-green) unless overridden. */}}
{{- define "ledger.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "ledger.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "ledger.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "ledger.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The recommended labels, plus the color. */}}
{{- define "ledger.labels" -}}
helm.sh/chart: {{ include "ledger.chart" . }}
{{ include "ledger.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/component: api
app.kubernetes.io/part-of: cutover
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels: they include the color, so blue and green never select each other. */}}
{{- define "ledger.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ledger.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
color: {{ .Values.color }}
{{- end }}

{{- define "ledger.headlessName" -}}
{{- printf "%s-headless" (include "ledger.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image: by digest when one is given. */}}
{{- define "ledger.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end }}
{{- end }}

{{/*
The drain budget. A pod must leave the load balancer before it stops accepting:
  1. preStop.sleepSeconds >= aws.deregistrationDelaySeconds + drainBudget.marginSeconds
     (the kubelet sends SIGTERM only after preStop; until then the target group drains the
     pod, as the AWS Load Balancer Controller's pod graceful-shutdown guide advises);
  2. terminationGracePeriodSeconds >= preStop + drainSeconds + shutdownTimeoutSeconds + margin
     (the grace period counts from the start of preStop; past it the pod is SIGKILLed).
The same rules are `cutover_infra.budget.drain_budget` in Python; a test keeps them equal.
*/}}
{{- define "ledger.minimumGrace" -}}
{{- $v := .Values -}}
{{- add (int $v.preStop.sleepSeconds) (int (ceil $v.drainSeconds)) (int (ceil $v.shutdownTimeoutSeconds)) (int $v.drainBudget.marginSeconds) -}}
{{- end }}

{{- define "ledger.terminationGrace" -}}
{{- $v := .Values -}}
{{- $minimumPreStop := add (int $v.aws.deregistrationDelaySeconds) (int $v.drainBudget.marginSeconds) -}}
{{- if lt (int $v.preStop.sleepSeconds) (int $minimumPreStop) -}}
{{- fail (printf "drain budget: preStop.sleepSeconds (%d) must be >= aws.deregistrationDelaySeconds (%d) + drainBudget.marginSeconds (%d) = %d; raise preStop.sleepSeconds or lower aws.deregistrationDelaySeconds" (int $v.preStop.sleepSeconds) (int $v.aws.deregistrationDelaySeconds) (int $v.drainBudget.marginSeconds) (int $minimumPreStop)) -}}
{{- end -}}
{{- $minimum := include "ledger.minimumGrace" . | int -}}
{{- if kindIs "invalid" $v.terminationGracePeriodSeconds -}}
{{- $minimum -}}
{{- else if lt (int $v.terminationGracePeriodSeconds) $minimum -}}
{{- fail (printf "drain budget: terminationGracePeriodSeconds (%d) must be >= preStop.sleepSeconds (%d) + drainSeconds (%v) + shutdownTimeoutSeconds (%v) + drainBudget.marginSeconds (%d) = %d; raise terminationGracePeriodSeconds (or leave it empty) or lower drainSeconds/shutdownTimeoutSeconds" (int $v.terminationGracePeriodSeconds) (int $v.preStop.sleepSeconds) $v.drainSeconds $v.shutdownTimeoutSeconds (int $v.drainBudget.marginSeconds) $minimum) -}}
{{- else -}}
{{- int $v.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end }}

{{/* The hardened security contexts every ledger container runs with. */}}
{{- define "ledger.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "ledger.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "ledger.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.existingSecret is required: the Secret holding the database URL" .Values.database.existingSecret }}
      key: {{ .Values.database.urlKey }}
{{- end }}
