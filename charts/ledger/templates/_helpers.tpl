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

{{/*
Whether preStop uses the native `sleep` lifecycle action. preStop.nativeSleep true or
false decides; "auto" (the default) follows the cluster's version: the action
(PodLifecycleSleepAction) is on by default from Kubernetes 1.30 (beta; GA in 1.34), so
older clusters get exec `sleep`. `helm template`/`helm lint --kube-version` pick the version.
Renders "true" or nothing.
*/}}
{{- define "ledger.nativeSleep" -}}
{{- $native := .Values.preStop.nativeSleep -}}
{{- if kindIs "bool" $native -}}
{{- if $native }}true{{ end -}}
{{- else if semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version -}}
true
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

{{/*
Keep-alive against the load balancer (a drain-budget rule too): the app must keep an idle
connection open longer than the ALB does (its idle timeout), or the ALB sends a request on
a connection the app has just closed and answers 502. The same rule is
`cutover_infra.budget.check_keep_alive`; a test keeps them equal.
*/}}
{{- define "ledger.keepAliveSeconds" -}}
{{- $keepAlive := float64 .Values.http.keepAliveSeconds -}}
{{- $idle := float64 .Values.aws.idleTimeoutSeconds -}}
{{- if not (gt $keepAlive $idle) -}}
{{- fail (printf "drain budget: http.keepAliveSeconds (%v) must be > aws.idleTimeoutSeconds (%v), the load balancer's idle timeout, or it reuses connections the service has closed (502s); raise http.keepAliveSeconds above %v or lower aws.idleTimeoutSeconds" $keepAlive $idle $idle) -}}
{{- end -}}
{{- $keepAlive -}}
{{- end }}

{{/* Where password-file mode mounts the Secret. */}}
{{- define "ledger.passwordDir" -}}/var/run/secrets/ledger/database{{- end }}

{{/* The URL Secret of url mode (pods, or the migration Job). */}}
{{- define "ledger.urlFromSecret" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.existingSecret is required when database.auth (or migrations.database.auth) is url: the Secret holding the database URL" .Values.database.existingSecret }}
      key: {{ .Values.database.urlKey }}
{{- end }}

{{/* The pods' login (database.auth). */}}
{{- define "ledger.databaseEnv" -}}
{{- $db := .Values.database -}}
{{- if eq $db.auth "url" }}
{{- include "ledger.urlFromSecret" . }}
{{- else }}
- name: DATABASE_AUTH
  value: {{ $db.auth | quote }}
{{- $url := required (printf "database.url is required when database.auth is %s: the URL without a password, e.g. postgresql://ledger_app@host:5432/ledger" $db.auth) $db.url }}
{{- /* ledger refuses to start without the user (a token or password is for one role): refuse here */}}
{{- if not (or (regexMatch "^postgres(ql)?://[^@/?#]+@" $url) (regexMatch "[?&]user=[^&]" $url)) }}
{{- fail (printf "database.url must name the user when database.auth is %s, e.g. postgresql://ledger_app@host:5432/ledger (got %s)" $db.auth $url) }}
{{- end }}
- name: DATABASE_URL
  value: {{ $url | quote }}
{{- if eq $db.auth "iam" }}
- name: DATABASE_REGION
  value: {{ required "database.region is required when database.auth is iam: the region IAM tokens are signed for" $db.region | quote }}
{{- else }}
- name: DATABASE_PASSWORD_FILE
  value: {{ printf "%s/%s" (include "ledger.passwordDir" .) $db.passwordFile.key | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* password-file mode: the Secret, mounted read-only (not with subPath: those never update). */}}
{{- define "ledger.passwordVolumeMount" -}}
{{- if and .Values.database.enabled (eq .Values.database.auth "password-file") }}
- name: database-password
  mountPath: {{ include "ledger.passwordDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "ledger.passwordVolume" -}}
{{- if and .Values.database.enabled (eq .Values.database.auth "password-file") }}
- name: database-password
  secret:
    secretName: {{ required "database.passwordFile.secretName is required when database.auth is password-file: the Secret holding ledger_app's password" .Values.database.passwordFile.secretName }}
    defaultMode: 0440
    items:
      - key: {{ .Values.database.passwordFile.key }}
        path: {{ .Values.database.passwordFile.key }}
{{- end }}
{{- end }}

{{/* The migration Job's login (migrations.database.auth): the schema owner. */}}
{{- define "ledger.migrationDatabaseEnv" -}}
{{- $db := .Values.migrations.database -}}
{{- if eq $db.auth "url" }}
{{- include "ledger.urlFromSecret" . }}
{{- else }}
- name: DATABASE_AUTH
  value: secrets-manager
- name: DATABASE_URL
  value: {{ required "migrations.database.url is required when migrations.database.auth is secrets-manager: the URL without a password" $db.url | quote }}
- name: DATABASE_SECRET_ARN
  value: {{ required "migrations.database.secretArn is required when migrations.database.auth is secrets-manager: the RDS master user secret's ARN" $db.secretArn | quote }}
{{- end }}
{{- end }}

{{/* Whether the migration Job (and its ServiceAccount and NetworkPolicy) is rendered. */}}
{{- define "ledger.migrations" -}}
{{- if and .Values.database.enabled .Values.migrations.enabled }}true{{ end -}}
{{- end }}

{{/*
The environment the chart sets: the platform's contract (HOST, PORT, COLOR, APP_VERSION,
INSTANCE_ID, DRAIN_SECONDS, SHUTDOWN_TIMEOUT_SECONDS, HTTP_KEEP_ALIVE_SECONDS), the database
login (database.enabled), and ledger's own settings (cluster.enabled, rateLimitPerMinute,
trustedProxies, logFormat, logLevel; each left out when switched off or null).
env and secretEnv may not name any of these (ledger.userEnv).
*/}}
{{- define "ledger.platformEnv" -}}
{{- if .Values.database.enabled -}}
{{ include "ledger.databaseEnv" . }}
{{ end -}}
- name: HOST
  value: "0.0.0.0"
- name: PORT
  value: {{ .Values.containerPort | quote }}
- name: COLOR
  value: {{ .Values.color | quote }}
- name: APP_VERSION
  value: {{ .Values.image.tag | quote }}
- name: INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: DRAIN_SECONDS
  value: {{ .Values.drainSeconds | quote }}
- name: SHUTDOWN_TIMEOUT_SECONDS
  value: {{ .Values.shutdownTimeoutSeconds | quote }}
- name: HTTP_KEEP_ALIVE_SECONDS
  value: {{ include "ledger.keepAliveSeconds" . | quote }}
{{- if .Values.cluster.enabled }}
- name: CLUSTER_DISCOVERY
  value: {{ printf "dns:%s.%s.svc.cluster.local" (include "ledger.headlessName" .) .Release.Namespace | quote }}
- name: CLUSTER_INTERVAL_SECONDS
  value: {{ .Values.clusterIntervalSeconds | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.rateLimitPerMinute) }}
- name: RATE_LIMIT_PER_MINUTE
  value: {{ .Values.rateLimitPerMinute | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.trustedProxies) }}
- name: TRUSTED_PROXIES
  value: {{ join "," .Values.trustedProxies | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.logFormat) }}
- name: LOG_FORMAT
  value: {{ .Values.logFormat }}
{{- end }}
{{- if not (kindIs "invalid" .Values.logLevel) }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end }}
{{- end }}

{{/*
The service's own variables, sorted by name: env (plain values), then secretEnv (from
Secrets). Neither may name a variable the chart sets (ledger.platformEnv) or any DATABASE_*
(database.* owns those, on or off), and no name may be in both: rendering fails naming it.
*/}}
{{- define "ledger.userEnv" -}}
{{- $reserved := dict -}}
{{- range (include "ledger.platformEnv" . | fromYamlArray) -}}
{{- $_ := set $reserved .name true -}}
{{- end -}}
{{- $env := default dict .Values.env -}}
{{- $secretEnv := default dict .Values.secretEnv -}}
{{- range $source, $vars := dict "env" $env "secretEnv" $secretEnv -}}
{{- range $name, $_ := $vars -}}
{{- if hasKey $reserved $name -}}
{{- fail (printf "%s.%s: %s is set by the chart itself (the platform's contract or one of the chart's values, see README \"Environment\"); it cannot be overridden: remove it from %s" $source $name $name $source) -}}
{{- else if hasPrefix "DATABASE_" $name -}}
{{- fail (printf "%s.%s: DATABASE_* variables belong to the chart's database settings (database.*), even with database.enabled false; rename it or remove it from %s" $source $name $source) -}}
{{- else if and (eq $source "secretEnv") (hasKey $env $name) -}}
{{- fail (printf "secretEnv.%s: %s is also in env; keep it in one of them" $name $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $value := $env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- range $name, $ref := $secretEnv }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.secretName }}
      key: {{ $ref.key }}
{{- end }}
{{- end }}

{{- define "ledger.migrationServiceAccountName" -}}
{{- $sa := .Values.migrations.serviceAccount -}}
{{- if $sa.create }}
{{- default (printf "%s-migrate" (include "ledger.fullname" .)) $sa.name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/* Egress to AWS APIs over HTTPS (STS, Secrets Manager). */}}
{{- define "ledger.awsApiEgress" -}}
- ports:
    - port: 443
      protocol: TCP
  {{- if .Values.networkPolicy.awsApiCidr }}
  to:
    - ipBlock:
        cidr: {{ .Values.networkPolicy.awsApiCidr }}
  {{- end }}
{{- end }}
