{{/*
Name of the chart, or nameOverride.
*/}}
{{- define "eventserver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources (63 characters at most, DNS label).
*/}}
{{- define "eventserver.fullname" -}}
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

{{/*
Name of the in-chart Redis resources.
*/}}
{{- define "eventserver.redisFullname" -}}
{{- printf "%s-redis" (include "eventserver.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{/*
Name of the Secret that the chart creates.
*/}}
{{- define "eventserver.secretName" -}}
{{- include "eventserver.fullname" . }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "eventserver.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels common to every resource.
*/}}
{{- define "eventserver.commonLabels" -}}
helm.sh/chart: {{ include "eventserver.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/name: {{ include "eventserver.name" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vantage6
{{- end }}

{{/*
Labels of the eventserver resources.
*/}}
{{- define "eventserver.labels" -}}
{{ include "eventserver.commonLabels" . }}
app.kubernetes.io/component: eventserver
{{- end }}

{{/*
Selector labels of the eventserver pods.
*/}}
{{- define "eventserver.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eventserver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: eventserver
{{- end }}

{{/*
Labels of the in-chart Redis resources.
*/}}
{{- define "eventserver.redisLabels" -}}
{{ include "eventserver.commonLabels" . }}
app.kubernetes.io/component: redis
{{- end }}

{{/*
Selector labels of the in-chart Redis pod.
*/}}
{{- define "eventserver.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "eventserver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{/*
Name of the service account of the pods.
*/}}
{{- define "eventserver.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "eventserver.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The eventserver image: repository@digest, or repository:tag (appVersion by default).
*/}}
{{- define "eventserver.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
Whether the Redis settings give the pods a Redis: "true" or "".
*/}}
{{- define "eventserver.hasRedis" -}}
{{- if or .Values.redis.enabled .Values.redis.url .Values.redis.existingSecret }}true{{- end }}
{{- end }}

{{/*
Whether there can be more than one eventserver pod: "true" or "".
*/}}
{{- define "eventserver.multiplePods" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}true{{- end }}
{{- end }}

{{/*
Items of the chart-created Secret, as a dict from key to value. Empty when
every secret comes from an existing Secret.
*/}}
{{- define "eventserver.secretData" -}}
{{- $data := dict }}
{{- with .Values.auth.jwtSecret.value }}{{- $_ := set $data "jwt-secret" . }}{{- end }}
{{- with .Values.auth.jwtPublicKey.value }}{{- $_ := set $data "jwt-public-key.pem" . }}{{- end }}
{{- with .Values.auth.publishToken.value }}{{- $_ := set $data "publish-token" . }}{{- end }}
{{- if .Values.redis.url }}
{{- $_ := set $data "redis-url" .Values.redis.url }}
{{- else if .Values.redis.enabled }}
{{- $_ := set $data "redis-url" (printf "redis://%s:6379/0" (include "eventserver.redisFullname" .)) }}
{{- end }}
{{- toYaml $data }}
{{- end }}

{{/*
A secretKeyRef for one secret item: the existing Secret's key, or the
chart-created Secret's. Call with (list $ item defaultKey).
*/}}
{{- define "eventserver.secretKeyRef" -}}
{{- $root := index . 0 }}
{{- $item := index . 1 }}
{{- $key := index . 2 }}
{{- if $item.existingSecret }}
name: {{ $item.existingSecret }}
key: {{ required "existingSecretKey must not be empty when existingSecret is set" $item.existingSecretKey }}
{{- else }}
name: {{ include "eventserver.secretName" $root }}
key: {{ $key }}
{{- end }}
{{- end }}

{{/*
The least terminationGracePeriodSeconds that lets a pod finish its shutdown:
preStop pause, then SIGTERM, then at most shutdown delay + drain + 10 s.
*/}}
{{- define "eventserver.minGracePeriod" -}}
{{- $s := .Values.shutdown }}
{{- add (int $s.preStopSleepSeconds) (int $s.delaySeconds) (int $s.drainTimeoutSeconds) 10 }}
{{- end }}

{{/*
terminationGracePeriodSeconds of the pods: the explicit value, or the least
one plus a 5 s margin.
*/}}
{{- define "eventserver.gracePeriod" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add (include "eventserver.minGracePeriod" . | int) 5 }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Checks that stop a broken or unsafe configuration from rendering.
*/}}
{{- define "eventserver.validate" -}}
{{- $auth := .Values.auth }}
{{- range $name := list "jwtSecret" "jwtPublicKey" "publishToken" }}
{{- $item := index $auth $name }}
{{- if and $item.value $item.existingSecret }}
{{- fail (printf "auth.%s: set either value or existingSecret, not both" $name) }}
{{- end }}
{{- end }}
{{- if not (or $auth.jwtSecret.value $auth.jwtSecret.existingSecret $auth.jwtPublicKey.value $auth.jwtPublicKey.existingSecret) }}
{{- fail "no key to verify client tokens: set auth.jwtSecret.value or auth.jwtSecret.existingSecret (HS256, vantage6's jwt_secret_key), or auth.jwtPublicKey.value or auth.jwtPublicKey.existingSecret (a PEM public key, RS256/ES256); eventserver refuses to start without one" }}
{{- end }}
{{- with $auth.publishToken.value }}
{{- if lt (len (toString .)) 16 }}
{{- fail "auth.publishToken.value must be at least 16 characters (eventserver refuses a shorter publish token)" }}
{{- end }}
{{- end }}
{{- if and .Values.redis.url .Values.redis.existingSecret }}
{{- fail "redis: set either redis.url or redis.existingSecret, not both" }}
{{- end }}
{{- if and .Values.redis.enabled (or .Values.redis.url .Values.redis.existingSecret) }}
{{- fail "redis: both the in-chart Redis (redis.enabled) and an external Redis (redis.url or redis.existingSecret) are set; choose one" }}
{{- end }}
{{- if and (include "eventserver.multiplePods" .) (not (include "eventserver.hasRedis" .)) }}
{{- fail "several eventserver pods (replicaCount > 1 or autoscaling.enabled) need Redis, or they would not share rooms, broadcasts and node presence: set redis.url, redis.existingSecret or redis.enabled=true, or use replicaCount=1 without autoscaling" }}
{{- end }}
{{- $s := .Values.shutdown }}
{{- range $name := list "preStopSleepSeconds" "delaySeconds" "drainTimeoutSeconds" }}
{{- $v := index $s $name }}
{{- if or (kindIs "invalid" $v) (kindIs "string" $v) (lt (int $v) 0) }}
{{- fail (printf "shutdown.%s must be a whole number of seconds, 0 or more" $name) }}
{{- end }}
{{- end }}
{{- if not (kindIs "invalid" .Values.terminationGracePeriodSeconds) }}
{{- $min := include "eventserver.minGracePeriod" . | int }}
{{- if le (int .Values.terminationGracePeriodSeconds) $min }}
{{- fail (printf "terminationGracePeriodSeconds (%d) is too small: it must be more than shutdown.preStopSleepSeconds + shutdown.delaySeconds + shutdown.drainTimeoutSeconds + 10 = %d, or the kubelet kills pods in the middle of their drain; raise it or leave it null to have it computed" (int .Values.terminationGracePeriodSeconds) $min) }}
{{- end }}
{{- end }}
{{- with .Values.podDisruptionBudget }}
{{- if and .enabled (not (kindIs "invalid" .minAvailable)) (ne (toString .minAvailable) "") (not (kindIs "invalid" .maxUnavailable)) (ne (toString .maxUnavailable) "") }}
{{- fail "podDisruptionBudget: set either minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- end }}
{{- if not (has .Values.podAntiAffinityPreset (list "soft" "hard" "none" "")) }}
{{- fail (printf "podAntiAffinityPreset must be soft, hard or none, got %q" (toString .Values.podAntiAffinityPreset)) }}
{{- end }}
{{- $managed := dict "EVENTSERVER_LISTEN" "containerPort" "EVENTSERVER_SHUTDOWN_DELAY" "shutdown.delaySeconds" "EVENTSERVER_DRAIN_TIMEOUT" "shutdown.drainTimeoutSeconds" "EVENTSERVER_JWT_SECRET" "auth.jwtSecret" "EVENTSERVER_JWT_PUBLIC_KEY_FILE" "auth.jwtPublicKey" "EVENTSERVER_PUBLISH_TOKEN" "auth.publishToken" "EVENTSERVER_REDIS_URL" "redis" }}
{{- range .Values.extraEnv }}
{{- if hasKey $managed (toString .name) }}
{{- fail (printf "extraEnv must not set %s: the chart sets it from %s" .name (get $managed .name)) }}
{{- end }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- fail "ingress.enabled needs at least one host in ingress.hosts" }}
{{- end }}
{{- end }}
