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
{{- with .Values.auth.consoleToken.value }}{{- $_ := set $data "console-token" . }}{{- end }}
{{- with .Values.vantage6.api.serviceAccount.password.value }}{{- $_ := set $data "v6-password" . }}{{- end }}
{{- with .Values.vantage6.queue.url.value }}{{- $_ := set $data "v6-queue-url" . }}{{- end }}
{{- with .Values.outbox.redisUrl.value }}{{- $_ := set $data "outbox-redis-url" . }}{{- end }}
{{- with .Values.outbox.webhook.url.value }}{{- $_ := set $data "outbox-webhook-url" . }}{{- end }}
{{- with .Values.outbox.webhook.token.value }}{{- $_ := set $data "outbox-webhook-token" . }}{{- end }}
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
Whether a secret item ({value, existingSecret, existingSecretKey}) is set:
"true" or "".
*/}}
{{- define "eventserver.secretSet" -}}
{{- if or .value .existingSecret }}true{{- end }}
{{- end }}

{{/*
A whole number setting as the decimal string the server reads, or "" when
the value is not a whole number 0 or more (numbers from values files are
float64, from --set int64, from --set-string strings).
*/}}
{{- define "eventserver.wholeNumber" -}}
{{- if kindIs "string" . }}
{{- if regexMatch "^[0-9]+$" (trim .) }}{{- regexReplaceAll "^0+([0-9])" (trim .) "${1}" }}{{- end }}
{{- else if or (kindIs "int" .) (kindIs "int64" .) }}
{{- if ge (int64 .) 0 }}{{- printf "%d" (int64 .) }}{{- end }}
{{- else if kindIs "float64" . }}
{{- if and (ge . 0.0) (lt . 9.2e18) (eq . (float64 (int64 .))) }}{{- printf "%d" (int64 .) }}{{- end }}
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
{{- range $name := list "jwtSecret" "jwtPublicKey" "publishToken" "consoleToken" }}
{{- $item := index $auth $name }}
{{- if and $item.value $item.existingSecret }}
{{- fail (printf "auth.%s: set either value or existingSecret, not both" $name) }}
{{- end }}
{{- end }}
{{- if not (or $auth.jwtSecret.value $auth.jwtSecret.existingSecret $auth.jwtPublicKey.value $auth.jwtPublicKey.existingSecret $auth.jwks.url) }}
{{- fail "no key to verify client tokens: set auth.jwtSecret.value or auth.jwtSecret.existingSecret (HS256, vantage6's jwt_secret_key), auth.jwtPublicKey.value or auth.jwtPublicKey.existingSecret (a PEM public key, RS256/ES256), or auth.jwks.url (Keycloak's JWK Set, vantage6 5.x); eventserver refuses to start without one" }}
{{- end }}
{{- with $auth.jwks.url }}
{{- if not (regexMatch "^(?i:https://[^/?#@\\s]+|http://(localhost|127\\.0\\.0\\.1|\\[::1\\])(:[0-9]+)?)(/[^\\s]*)?$" (toString .)) }}
{{- fail (printf "auth.jwks.url must be an https URL (http only on localhost), such as https://keycloak.example.org/realms/vantage6/protocol/openid-connect/certs; got %q" (toString .)) }}
{{- end }}
{{- end }}
{{- with $auth.publishToken.value }}
{{- if lt (len (toString .)) 16 }}
{{- fail "auth.publishToken.value must be at least 16 characters (eventserver refuses a shorter publish token)" }}
{{- end }}
{{- end }}
{{- with $auth.consoleToken.value }}
{{- if lt (len (toString .)) 16 }}
{{- fail "auth.consoleToken.value must be at least 16 characters (eventserver refuses a shorter console token)" }}
{{- end }}
{{- if eq (toString .) (toString $auth.publishToken.value) }}
{{- fail "auth.consoleToken.value must differ from auth.publishToken.value (eventserver refuses to start when they are equal)" }}
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
{{- $managed := dict "EVENTSERVER_LISTEN" "containerPort" "EVENTSERVER_SHUTDOWN_DELAY" "shutdown.delaySeconds" "EVENTSERVER_DRAIN_TIMEOUT" "shutdown.drainTimeoutSeconds" "EVENTSERVER_JWT_SECRET" "auth.jwtSecret" "EVENTSERVER_JWT_PUBLIC_KEY_FILE" "auth.jwtPublicKey" "EVENTSERVER_PUBLISH_TOKEN" "auth.publishToken" "EVENTSERVER_CONSOLE_TOKEN" "auth.consoleToken" "EVENTSERVER_REDIS_URL" "redis" }}
{{- /* The vantage6 and outbox settings: the chart checks them together. */}}
{{- $_ := merge $managed (dict "EVENTSERVER_V6_API_URL" "vantage6.api.url" "EVENTSERVER_V6_TIMEOUT" "vantage6.api.timeout" "EVENTSERVER_V6_CACHE_TTL" "vantage6.api.cacheTTL" "EVENTSERVER_V6_USERNAME" "vantage6.api.serviceAccount.username" "EVENTSERVER_V6_PASSWORD" "vantage6.api.serviceAccount.password" "EVENTSERVER_V6_QUEUE_CHANNEL" "vantage6.queue.channel" "EVENTSERVER_V6_QUEUE_URL" "vantage6.queue.url" "EVENTSERVER_V6_VERSION" "vantage6.api.version" "EVENTSERVER_V6_TOKEN_URL" "vantage6.api.tokenURL" "EVENTSERVER_JWT_JWKS_URL" "auth.jwks.url" "EVENTSERVER_JWT_ISSUER" "auth.jwks.issuer" "EVENTSERVER_JWT_AUDIENCE" "auth.jwks.audience") }}
{{- $_ = merge $managed (dict "EVENTSERVER_OUTBOX_STREAM" "outbox.stream" "EVENTSERVER_OUTBOX_MAXLEN" "outbox.maxLen" "EVENTSERVER_OUTBOX_QUEUE_SIZE" "outbox.queueSize" "EVENTSERVER_OUTBOX_REDIS_URL" "outbox.redisUrl" "EVENTSERVER_OUTBOX_WEBHOOK_URL" "outbox.webhook.url" "EVENTSERVER_OUTBOX_WEBHOOK_TOKEN" "outbox.webhook.token" "EVENTSERVER_OUTBOX_WEBHOOK_ATTEMPTS" "outbox.webhook.attempts" "EVENTSERVER_OUTBOX_WEBHOOK_TIMEOUT" "outbox.webhook.timeout") }}
{{- range .Values.extraEnv }}
{{- if hasKey $managed (toString .name) }}
{{- fail (printf "extraEnv must not set %s: the chart sets it from %s" .name (get $managed .name)) }}
{{- end }}
{{- end }}
{{- include "eventserver.validateVantage6" . }}
{{- include "eventserver.validateOutbox" . }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- fail "ingress.enabled needs at least one host in ingress.hosts" }}
{{- end }}
{{- end }}

{{/*
Checks of one secret item: not both a value and an existing Secret. Call
with (list item "values.path").
*/}}
{{- define "eventserver.validateSecretItem" -}}
{{- $item := index . 0 }}
{{- if and $item.value $item.existingSecret }}
{{- fail (printf "%s: set either value or existingSecret, not both" (index . 1)) }}
{{- end }}
{{- end }}

{{/*
A Go duration as the server parses it (no sign: none of these may be
negative). Call with (list value "values.path"); empty or null is left to
the server's default.
*/}}
{{- define "eventserver.validateDuration" -}}
{{- $v := index . 0 }}
{{- if and (not (kindIs "invalid" $v)) (ne (toString $v) "") }}
{{- if not (regexMatch "^(0|(([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$" (toString $v)) }}
{{- fail (printf "%s must be a Go duration such as 5s or 1m, got %q" (index . 1) (toString $v)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A whole number setting within bounds. Call with (list value "values.path"
min max); empty or null is left to the server's default.
*/}}
{{- define "eventserver.validateWholeNumber" -}}
{{- $v := index . 0 }}
{{- if and (not (kindIs "invalid" $v)) (ne (toString $v) "") }}
{{- $n := include "eventserver.wholeNumber" $v }}
{{- if or (eq $n "") (gt (len $n) 18) (lt (int64 $n) (int64 (index . 2))) (gt (int64 $n) (int64 (index . 3))) }}
{{- fail (printf "%s must be a whole number from %d to %d, got %v" (index . 1) (int64 (index . 2)) (int64 (index . 3)) $v) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A Redis URL given as a value: a scheme eventserver knows. The URL may hold
a password, so the message never repeats it. Call with (list item
"values.path").
*/}}
{{- define "eventserver.validateRedisURLValue" -}}
{{- with (index . 0).value }}
{{- if not (regexMatch "^(?i:rediss?(\\+(sentinel|cluster))?|unix):" (toString .)) }}
{{- fail (printf "%s.value must be a redis://, rediss://, redis+sentinel://, redis+cluster:// or unix:// URL" (index $ 1)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The Flask-SocketIO queue's URL given as a value: vantage6 5's RabbitMQ
(amqp://, amqps://) or a Redis. The message never repeats it. Call with
(list item "values.path").
*/}}
{{- define "eventserver.validateQueueURLValue" -}}
{{- with (index . 0).value }}
{{- if not (regexMatch "^(?i:amqps?|rediss?(\\+(sentinel|cluster))?|unix):" (toString .)) }}
{{- fail (printf "%s.value must be an amqp:// or amqps:// URL (vantage6 5's RabbitMQ) or a redis://, rediss://, redis+sentinel://, redis+cluster:// or unix:// URL" (index $ 1)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The vantage6 API identity and the Flask-SocketIO queue bridge: what the
server refuses at start-up is refused here.
*/}}
{{- define "eventserver.validateVantage6" -}}
{{- $api := .Values.vantage6.api }}
{{- $sa := $api.serviceAccount }}
{{- $queue := .Values.vantage6.queue }}
{{- include "eventserver.validateSecretItem" (list $sa.password "vantage6.api.serviceAccount.password") }}
{{- include "eventserver.validateSecretItem" (list $queue.url "vantage6.queue.url") }}
{{- with $api.url }}
{{- if not (regexMatch "^(?i:https?)://[^/?#@:\\s][^/?#@\\s]*(/[^?#]*)?$" (toString .)) }}
{{- fail (printf "vantage6.api.url must be the vantage6 API's http or https base URL with its path, such as https://v6.example.org/api, without user information (use vantage6.api.serviceAccount), query or fragment; got %q" (toString .)) }}
{{- end }}
{{- end }}
{{- include "eventserver.validateDuration" (list $api.timeout "vantage6.api.timeout") }}
{{- include "eventserver.validateDuration" (list $api.cacheTTL "vantage6.api.cacheTTL") }}
{{- $password := include "eventserver.secretSet" $sa.password }}
{{- if and $sa.username (not $password) }}
{{- fail "vantage6.api.serviceAccount.username is set but the password is not: set vantage6.api.serviceAccount.password.value or .existingSecret (eventserver needs both or neither)" }}
{{- end }}
{{- if and $password (not $sa.username) }}
{{- fail "vantage6.api.serviceAccount.password is set but the username is not: set vantage6.api.serviceAccount.username (eventserver needs both or neither)" }}
{{- end }}
{{- if and $sa.username (not $api.url) }}
{{- fail "vantage6.api.serviceAccount needs vantage6.api.url: the service account is used only with the vantage6 API" }}
{{- end }}
{{- with $queue.channel }}
{{- if regexMatch "[*?\\[\\] \\t\\n]" (toString .) }}
{{- fail (printf "vantage6.queue.channel must be a channel name without *, ?, [, ] or spaces, got %q" (toString .)) }}
{{- end }}
{{- end }}
{{- include "eventserver.validateQueueURLValue" (list $queue.url "vantage6.queue.url") }}
{{- $queueURL := include "eventserver.secretSet" $queue.url }}
{{- if and $queue.channel (not $queueURL) (not (include "eventserver.hasRedis" .)) }}
{{- fail "vantage6.queue.channel needs a message queue: set vantage6.queue.url (the vantage6 server's rabbitmq.uri: its RabbitMQ, or a Redis) or the cluster's Redis (redis.url, redis.existingSecret or redis.enabled)" }}
{{- end }}
{{- if and $queueURL (not $queue.channel) }}
{{- fail "vantage6.queue.url is set but vantage6.queue.channel is empty, so the bridge would be off: set the channel (flask-socketio for Flask-SocketIO's default) or unset the URL" }}
{{- end }}
{{- end }}

{{/*
The backend outbox: what the server refuses at start-up is refused here.
*/}}
{{- define "eventserver.validateOutbox" -}}
{{- $o := .Values.outbox }}
{{- include "eventserver.validateSecretItem" (list $o.redisUrl "outbox.redisUrl") }}
{{- include "eventserver.validateSecretItem" (list $o.webhook.url "outbox.webhook.url") }}
{{- include "eventserver.validateSecretItem" (list $o.webhook.token "outbox.webhook.token") }}
{{- with $o.stream }}
{{- if regexMatch "[ \\t\\n]" (toString .) }}
{{- fail (printf "outbox.stream must be a Redis key without spaces, got %q" (toString .)) }}
{{- end }}
{{- end }}
{{- include "eventserver.validateWholeNumber" (list $o.maxLen "outbox.maxLen" 1 2147483647) }}
{{- include "eventserver.validateWholeNumber" (list $o.queueSize "outbox.queueSize" 1 10000000) }}
{{- include "eventserver.validateWholeNumber" (list $o.webhook.attempts "outbox.webhook.attempts" 1 100) }}
{{- include "eventserver.validateDuration" (list $o.webhook.timeout "outbox.webhook.timeout") }}
{{- include "eventserver.validateRedisURLValue" (list $o.redisUrl "outbox.redisUrl") }}
{{- $redisURL := include "eventserver.secretSet" $o.redisUrl }}
{{- if and $o.stream (not $redisURL) (not (include "eventserver.hasRedis" .)) }}
{{- fail "outbox.stream needs a Redis: set outbox.redisUrl or the cluster's Redis (redis.url, redis.existingSecret or redis.enabled), or leave the stream empty" }}
{{- end }}
{{- if and $redisURL (not $o.stream) }}
{{- fail "outbox.redisUrl is set but outbox.stream is empty: name the stream" }}
{{- end }}
{{- with $o.webhook.url.value }}
{{- /* The URL's query may hold a secret: the message never repeats it. */}}
{{- if not (regexMatch "^(?i:https?)://[^/?#@\\s]+([/?][^#]*)?$" (toString .)) }}
{{- fail "outbox.webhook.url.value must be an http or https URL with a host, without user information (use outbox.webhook.token) or fragment" }}
{{- end }}
{{- end }}
{{- if and (include "eventserver.secretSet" $o.webhook.token) (not (include "eventserver.secretSet" $o.webhook.url)) }}
{{- fail "outbox.webhook.token is set but outbox.webhook.url is not: set outbox.webhook.url.value or .existingSecret, or unset the token" }}
{{- end }}
{{- end }}
