{{/*
Names, labels, images and the settings every voicemesh pod shares.
*/}}

{{/* The chart name (nameOverride wins). */}}
{{- define "voicemesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every resource: fullnameOverride, else the release name when it contains the
chart name, else "<release>-<chart>"; 63 characters at most.
*/}}
{{- define "voicemesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<suffix>", 63 characters at most. Call with (list $ "suffix"). */}}
{{- define "voicemesh.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "voicemesh.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "voicemesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of the whole release. */}}
{{- define "voicemesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "voicemesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "voicemesh.labels" -}}
{{ include "voicemesh.selectorLabels" . }}
app.kubernetes.io/part-of: voicemesh
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "voicemesh.chart" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component. Call with (list $ "component"). */}}
{{- define "voicemesh.componentSelectorLabels" -}}
{{ include "voicemesh.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Labels of one component's objects. Call with (list $ "component"). */}}
{{- define "voicemesh.componentLabels" -}}
{{ include "voicemesh.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* A voicemesh image: [registry/]repository:tag. Call with (list $ "default-repo" $override). */}}
{{- define "voicemesh.image" -}}
{{- $root := index . 0 -}}
{{- $override := index . 2 | default dict -}}
{{- $repo := $override.repository | default (index . 1) -}}
{{- $tag := $override.tag | default $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- if $root.Values.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $root.Values.image.registry) $repo $tag -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/* A third-party image (Valkey, NATS): registry/repository:tag. */}}
{{- define "voicemesh.externalImage" -}}
{{- if .registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .registry) .repository .tag -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}

{{- define "voicemesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "voicemesh.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "voicemesh.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The secrets the edge reads, each from an existing Secret or, on dev and kind clusters only,
from one the chart makes (createDevSecret): the one home of that pattern. Per secret, as JSON:
whether the edge reads it at all (wanted), the user's Secret and key, the dev switch and
value, the name suffix and key of the Secret the chart makes, and the length of a random
value. Call with $ and read one with (include "voicemesh.secretSpecs" $ | fromJson).
*/}}
{{- define "voicemesh.secretSpecs" -}}
{{- $edgeOn := (index .Values.services "media-edge").enabled -}}
{{- $auth := .Values.auth -}}
{{- $calls := .Values.mediaEdge.webrtc.callTokens -}}
{{- $specs := dict
  "edgeToken" (dict
    "wanted" $edgeOn
    "existingSecret" $auth.edgeToken.existingSecret "key" $auth.edgeToken.key
    "createDevSecret" $auth.createDevSecret "devValue" $auth.devToken "createdBy" "auth.createDevSecret"
    "suffix" "edge-token" "generatedKey" "token" "randomLength" 32)
  "callTokens" (dict
    "wanted" (and $edgeOn .Values.mediaEdge.webrtc.enabled)
    "existingSecret" $calls.existingSecret "key" $calls.key
    "createDevSecret" $calls.createDevSecret "devValue" $calls.devSecret
    "createdBy" "mediaEdge.webrtc.callTokens.createDevSecret"
    "suffix" "call-tokens" "generatedKey" "secret" "randomLength" 48)
-}}
{{- toJson $specs -}}
{{- end -}}

{{/* One secret's spec (see voicemesh.secretSpecs). Call with (list $ "edgeToken"). */}}
{{- define "voicemesh.secretSpec" -}}
{{- toJson (index (include "voicemesh.secretSpecs" (index . 0) | fromJson) (index . 1)) -}}
{{- end -}}

{{/* Non-empty when the chart makes the Secret of this spec (dev and kind clusters only). */}}
{{- define "voicemesh.devSecretMade" -}}
{{- if and .wanted .createDevSecret (not .existingSecret) -}}true{{- end -}}
{{- end -}}

{{/* Non-empty when the edge reads this secret: from the user's Secret or a dev one. */}}
{{- define "voicemesh.secretSet" -}}
{{- if and .wanted (or .existingSecret .createDevSecret) -}}true{{- end -}}
{{- end -}}

{{/* The name of the Secret holding a secret. Call with (list $ "edgeToken"). */}}
{{- define "voicemesh.secretName" -}}
{{- $spec := include "voicemesh.secretSpec" . | fromJson -}}
{{- $spec.existingSecret | default (include "voicemesh.componentName" (list (index . 0) $spec.suffix)) -}}
{{- end -}}

{{/* The key of a secret in that Secret. Call with (list $ "edgeToken"). */}}
{{- define "voicemesh.secretKey" -}}
{{- $spec := include "voicemesh.secretSpec" . | fromJson -}}
{{- ternary $spec.key $spec.generatedKey (ne $spec.existingSecret "") -}}
{{- end -}}

{{/* An env entry reading a secret. Call with (list $ "edgeToken" "VOICEMESH_EDGE_TOKEN"). */}}
{{- define "voicemesh.secretEnv" -}}
- name: {{ index . 2 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "voicemesh.secretName" (list (index . 0) (index . 1)) }}
      key: {{ include "voicemesh.secretKey" (list (index . 0) (index . 1)) }}
{{- end -}}

{{/*
The dev Secrets (createDevSecret): for dev and kind clusters only. Each holds its dev value,
else the value already in the cluster (lookup: a random one is kept across upgrades), else a
new random one; production names existing Secrets instead.
*/}}
{{- define "voicemesh.devSecrets" -}}
{{- $root := . -}}
{{- range $which, $spec := include "voicemesh.secretSpecs" . | fromJson }}
{{- if include "voicemesh.devSecretMade" $spec }}
{{- $name := include "voicemesh.secretName" (list $root $which) }}
{{- $value := $spec.devValue }}
{{- if not $value }}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace $name }}
{{- if $existing }}
{{- $value = index ($existing.data | default dict) $spec.generatedKey | default "" | b64dec }}
{{- end }}
{{- end }}
---
apiVersion: v1
kind: Secret
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "voicemesh.componentLabels" (list $root "media-edge") | nindent 4 }}
  annotations:
    # Dev only: generated by the chart ({{ $spec.createdBy }}).
    voicemesh.io/dev-secret: "true"
type: Opaque
data:
  {{ $spec.generatedKey }}: {{ $value | default (randAlphaNum (int $spec.randomLength)) | b64enc | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
A checksum of the fixed dev values the chart writes into its dev Secrets: a changed one
restarts the edge, which reads its secrets at start. Empty when there is none.
*/}}
{{- define "voicemesh.devSecretsChecksum" -}}
{{- $values := dict -}}
{{- range $which, $spec := include "voicemesh.secretSpecs" . | fromJson -}}
{{- if and (include "voicemesh.devSecretMade" $spec) $spec.devValue -}}
{{- $_ := set $values $which $spec.devValue -}}
{{- end -}}
{{- end -}}
{{- with $values -}}{{ toJson . | sha256sum }}{{- end -}}
{{- end -}}

{{/* The media-edge's in-cluster WebSocket URL (the helm test pod calls it). */}}
{{- define "voicemesh.edgeCallUrl" -}}
{{- printf "ws://%s:%v/v1/call" (include "voicemesh.componentName" (list . "media-edge")) .Values.mediaEdge.http.port -}}
{{- end -}}

{{/* True (non-empty) when the edge runs on the node's network. */}}
{{- define "voicemesh.edgeHostNetwork" -}}
{{- if and .Values.mediaEdge.sip.enabled (eq .Values.mediaEdge.sip.mode "hostNetwork") -}}true{{- end -}}
{{- end -}}

{{/* The port of a redis:// or nats:// URL, else the given default. Call with (list url default). */}}
{{- define "voicemesh.urlPort" -}}
{{- $host := (urlParse (index . 0)).host -}}
{{- $port := regexFind ":[0-9]+$" $host | trimPrefix ":" -}}
{{- default (index . 1) $port -}}
{{- end -}}

{{/*
env entries for one service's stores: VOICEMESH_REDIS_URL and VOICEMESH_NATS_URL, each with
the service's own user. On a built-in store the service logs in with its password
(MESH_PASSWORD, from its Secret, expanded into the URLs by Kubernetes); an external
one takes the service's own URL Secret (external*.existingSecrets), else the shared URL.
The session stream: on the built-in NATS the `stream` container of the NATS pod makes it, so
the service only publishes; on an external NATS, externalNats.createStream says.
Call with (list $ "stt").
*/}}
{{- define "voicemesh.storeEnv" -}}
{{- $root := index . 0 -}}
{{- $key := index . 1 -}}
{{- $v := $root.Values -}}
{{- if or $v.valkey.enabled $v.nats.enabled }}
{{ include "voicemesh.meshPasswordEnv" (list $root $key "MESH_PASSWORD") }}
{{- end }}
{{- if $v.valkey.enabled }}
- name: VOICEMESH_REDIS_URL
  value: {{ printf "redis://%s:$(MESH_PASSWORD)@%s:6379/0" $key (include "voicemesh.componentName" (list $root "valkey")) | quote }}
{{- else if hasKey ($v.externalRedis.existingSecrets | default dict) $key }}
- name: VOICEMESH_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ index $v.externalRedis.existingSecrets $key }}
      key: {{ $v.externalRedis.existingSecretKey }}
{{- else if $v.externalRedis.url }}
- name: VOICEMESH_REDIS_URL
  value: {{ $v.externalRedis.url | quote }}
{{- else }}
- name: VOICEMESH_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.externalRedis.existingSecret }}
      key: {{ $v.externalRedis.existingSecretKey }}
{{- end }}
{{- if $v.nats.enabled }}
- name: VOICEMESH_NATS_URL
  value: {{ printf "nats://%s:$(MESH_PASSWORD)@%s:4222" $key (include "voicemesh.componentName" (list $root "nats")) | quote }}
{{- else if hasKey ($v.externalNats.existingSecrets | default dict) $key }}
- name: VOICEMESH_NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ index $v.externalNats.existingSecrets $key }}
      key: {{ $v.externalNats.existingSecretKey }}
{{- else if $v.externalNats.url }}
- name: VOICEMESH_NATS_URL
  value: {{ $v.externalNats.url | quote }}
{{- else }}
- name: VOICEMESH_NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.externalNats.existingSecret }}
      key: {{ $v.externalNats.existingSecretKey }}
{{- end }}
- name: VOICEMESH_EVENTS_CREATE_STREAM
  value: {{ and (not $v.nats.enabled) $v.externalNats.createStream | quote }}
- name: VOICEMESH_EVENTS_MAX_AGE_S
  value: {{ $v.events.maxAgeSeconds | quote }}
{{- end -}}

{{/*
Checks no schema can express; each fails rendering with a message naming the value.
*/}}
{{- define "voicemesh.validate" -}}
{{- $edge := index .Values.services "media-edge" -}}
{{- include "voicemesh.validateMeshTls" . -}}
{{- include "voicemesh.validateMeshUsers" . -}}
{{- if and $edge.enabled (not .Values.auth.edgeToken.existingSecret) (not .Values.auth.createDevSecret) -}}
{{- fail "auth.edgeToken.existingSecret is required: name an existing Secret holding the media-edge token (key auth.edgeToken.key, at least 16 characters), e.g. kubectl create secret generic voicemesh-edge-token --from-literal=token=$(openssl rand -hex 24); or, on a dev/kind cluster only, set auth.createDevSecret=true" -}}
{{- end -}}
{{- $redisExternal := or .Values.externalRedis.url .Values.externalRedis.existingSecret -}}
{{- if and (not .Values.valkey.enabled) (not $redisExternal) -}}
{{- include "voicemesh.requirePerServiceUrls" (list . "externalRedis" "no Redis is configured: set valkey.enabled=true for the built-in Valkey, or externalRedis.url (or externalRedis.existingSecret, or one Secret per service in externalRedis.existingSecrets) for your own") -}}
{{- end -}}
{{- if and .Values.valkey.enabled $redisExternal -}}
{{- fail "valkey.enabled=true and externalRedis are both set: choose the built-in Valkey or your own Redis, not both" -}}
{{- end -}}
{{- if and .Values.externalRedis.url .Values.externalRedis.existingSecret -}}
{{- fail "externalRedis.url and externalRedis.existingSecret are both set: give the URL in one place" -}}
{{- end -}}
{{- $natsExternal := or .Values.externalNats.url .Values.externalNats.existingSecret -}}
{{- if and (not .Values.nats.enabled) (not $natsExternal) -}}
{{- include "voicemesh.requirePerServiceUrls" (list . "externalNats" "no NATS is configured: set nats.enabled=true for the built-in NATS JetStream, or externalNats.url (or externalNats.existingSecret, or one Secret per service in externalNats.existingSecrets) for your own") -}}
{{- end -}}
{{- if and .Values.nats.enabled $natsExternal -}}
{{- fail "nats.enabled=true and externalNats are both set: choose the built-in NATS or your own, not both" -}}
{{- end -}}
{{- if and .Values.externalNats.url .Values.externalNats.existingSecret -}}
{{- fail "externalNats.url and externalNats.existingSecret are both set: give the URL in one place" -}}
{{- end -}}
{{- range $key, $svc := .Values.services -}}
{{- if $svc.enabled -}}
{{- if and $svc.pdb.enabled (kindIs "invalid" $svc.pdb.minAvailable) (kindIs "invalid" $svc.pdb.maxUnavailable) -}}
{{- fail (printf "services.%s.pdb: set minAvailable or maxUnavailable (or pdb.enabled=false)" $key) -}}
{{- end -}}
{{- $as := $svc.autoscaling -}}
{{- if $as.enabled -}}
{{- if gt (int $as.minReplicas) (int $as.maxReplicas) -}}
{{- fail (printf "services.%s.autoscaling: minReplicas (%v) is above maxReplicas (%v)" $key $as.minReplicas $as.maxReplicas) -}}
{{- end -}}
{{- $cpu := not (kindIs "invalid" $as.targetCPUUtilizationPercentage) -}}
{{- if and $cpu (not (dig "requests" "cpu" "" ($svc.resources | default dict))) -}}
{{- fail (printf "services.%s.autoscaling.targetCPUUtilizationPercentage needs services.%s.resources.requests.cpu (utilisation is a share of the request)" $key $key) -}}
{{- end -}}
{{- if and (not $cpu) (not (include "voicemesh.loadMetricOn" (list $ $svc))) -}}
{{- fail (printf "services.%s.autoscaling has no metric: set targetCPUUtilizationPercentage, or a loadMetric with metrics.adapter.enabled" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $webrtc := .Values.mediaEdge.webrtc -}}
{{- if and $edge.enabled $webrtc.enabled -}}
{{- $turn := include "voicemesh.turnUrls" . -}}
{{- if and (eq $webrtc.icePolicy "relay") (not $turn) -}}
{{- fail "mediaEdge.webrtc.icePolicy=relay needs a TURN server: add its turn: or turns: URL to mediaEdge.webrtc.iceServers (with relay every call's media goes through TURN)" -}}
{{- end -}}
{{- if and $turn (not $webrtc.turn.existingSecret) -}}
{{- fail "mediaEdge.webrtc.iceServers names a TURN server but mediaEdge.webrtc.turn.existingSecret is empty: name the Secret holding its shared secret (coturn static-auth-secret), from which the edge mints TURN credentials" -}}
{{- end -}}
{{- $relay := $webrtc.turn.egress.relayPorts -}}
{{- if lt (int $relay.max) (int $relay.min) -}}
{{- fail (printf "mediaEdge.webrtc.turn.egress.relayPorts: max (%v) is below min (%v)" $relay.max $relay.min) -}}
{{- end -}}
{{- if and $webrtc.turn.existingSecret (not $turn) -}}
{{- fail "mediaEdge.webrtc.turn.existingSecret is set but mediaEdge.webrtc.iceServers names no turn: or turns: URL: add the TURN server's URLs" -}}
{{- end -}}
{{- end -}}
{{- if .Values.mediaEdge.sip.enabled -}}
{{- $rtp := .Values.mediaEdge.sip.rtp -}}
{{- if lt (int $rtp.portMax) (int $rtp.portMin) -}}
{{- fail (printf "mediaEdge.sip.rtp: portMax (%v) is below portMin (%v)" $rtp.portMax $rtp.portMin) -}}
{{- end -}}
{{- if and (eq .Values.mediaEdge.sip.mode "service") (gt (sub (int $rtp.portMax) (int $rtp.portMin)) 999) -}}
{{- fail "mediaEdge.sip.rtp: a Service carries each RTP port as one entry; keep the range to 1000 ports in mode \"service\", or use mode \"hostNetwork\"" -}}
{{- end -}}
{{- if and (include "voicemesh.edgeHostNetwork" .) .Values.networkPolicy.enabled (not .Values.networkPolicy.nodeCidrs) -}}
{{- fail "mediaEdge.sip.mode=hostNetwork with networkPolicy.enabled needs networkPolicy.nodeCidrs: the edge then sends from the node's address, which the other services must accept" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
With no shared external URL: fails with the message when the store has no per-service URL
Secrets at all, or names the enabled services it has none for. Call with (list $ "externalNats" "message").
*/}}
{{- define "voicemesh.requirePerServiceUrls" -}}
{{- $root := index . 0 -}}
{{- $store := index . 1 -}}
{{- $perService := (index $root.Values $store).existingSecrets | default dict -}}
{{- if not $perService -}}
{{- fail (index . 2) -}}
{{- end -}}
{{- $missing := list -}}
{{- range $key, $svc := $root.Values.services -}}
{{- if and $svc.enabled (not (hasKey $perService $key)) -}}
{{- $missing = append $missing $key -}}
{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "%s.existingSecrets names no Secret for %s and there is no shared %s.url or %s.existingSecret: give every enabled service its URL" $store (join ", " $missing) $store $store) -}}
{{- end -}}
{{- end -}}

{{/* The turn: and turns: URLs of mediaEdge.webrtc.iceServers, space-separated; empty: none. */}}
{{- define "voicemesh.turnUrls" -}}
{{- $urls := list -}}
{{- range .Values.mediaEdge.webrtc.iceServers -}}
{{- range (kindIs "string" .urls | ternary (list .urls) .urls) -}}
{{- if or (hasPrefix "turn:" .) (hasPrefix "turns:" .) -}}
{{- $urls = append $urls . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- join " " $urls -}}
{{- end -}}

{{/* Non-empty when the service's HPA carries its load metric. Call with (list $ $svc). */}}
{{- define "voicemesh.loadMetricOn" -}}
{{- $root := index . 0 -}}
{{- $lm := (index . 1).autoscaling.loadMetric -}}
{{- if and $lm.name (or $lm.enabled $root.Values.metrics.adapter.enabled) -}}true{{- end -}}
{{- end -}}

{{/* A podSelector body matching the release's voicemesh service pods. Call with (list $ $keys). */}}
{{- define "voicemesh.servicePodsSelector" -}}
{{- $root := index . 0 -}}
matchLabels:
  {{- include "voicemesh.selectorLabels" $root | nindent 2 }}
matchExpressions:
  - key: app.kubernetes.io/component
    operator: In
    values:
      {{- toYaml (index . 1) | nindent 6 }}
{{- end -}}

{{/* NetworkPolicy egress rules to Valkey/Redis and NATS, built-in or external. */}}
{{- define "voicemesh.storeEgress" -}}
{{- $np := .Values.networkPolicy -}}
{{- if .Values.valkey.enabled }}
# Valkey.
- to:
    - podSelector:
        matchLabels:
          {{- include "voicemesh.componentSelectorLabels" (list . "valkey") | nindent 10 }}
  ports:
    - port: 6379
      protocol: TCP
{{- else }}
# The external Redis.
- ports:
    - port: {{ ternary (include "voicemesh.urlPort" (list .Values.externalRedis.url "6379")) (toString .Values.externalRedis.port) (ne .Values.externalRedis.url "") }}
      protocol: TCP
  {{- with $np.externalStoresTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- if .Values.nats.enabled }}
# NATS.
- to:
    - podSelector:
        matchLabels:
          {{- include "voicemesh.componentSelectorLabels" (list . "nats") | nindent 10 }}
  ports:
    - port: 4222
      protocol: TCP
{{- else }}
# The external NATS.
- ports:
    - port: {{ ternary (include "voicemesh.urlPort" (list .Values.externalNats.url "4222")) (toString .Values.externalNats.port) (ne .Values.externalNats.url "") }}
      protocol: TCP
  {{- with $np.externalStoresTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}
