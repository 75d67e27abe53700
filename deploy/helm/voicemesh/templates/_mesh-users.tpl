{{/*
The users of the built-in Valkey and NATS: one per service, the operator's reader `cli` and
the stream-maker `mesh`, each with only the rights libs/mesh's access.py gives it. The rules
come from files/access/access.json, which scripts/gen_chart_access.py writes from access.py
(its --check fails on drift); this file only picks the users and fills in passwords.
*/}}

{{/* The generated table of rights (files/access/access.json), as JSON. */}}
{{- define "voicemesh.accessTable" -}}
{{- .Files.Get "files/access/access.json" -}}
{{- end -}}

{{/*
The users the chart's own stores need, as JSON {"valkey": [...], "nats": [...], "all": [...]}
in access.py's order: every enabled service on each built-in store, `cli` (the operator's
reader) on each, `mesh` (makes the session stream) on the built-in NATS. Empty lists for a
store the chart does not run.
*/}}
{{- define "voicemesh.meshUsers" -}}
{{- $table := include "voicemesh.accessTable" . | fromJson -}}
{{- $services := list -}}
{{- range $table.serviceUsers -}}
{{- if (index $.Values.services . | default dict).enabled -}}
{{- $services = append $services . -}}
{{- end -}}
{{- end -}}
{{- $valkey := list -}}
{{- if .Values.valkey.enabled -}}
{{- $valkey = concat $services (list $table.cliUser) -}}
{{- end -}}
{{- $nats := list -}}
{{- if .Values.nats.enabled -}}
{{- $nats = concat $services (list $table.cliUser $table.meshUser) -}}
{{- end -}}
{{- $all := list -}}
{{- range concat $services (list $table.cliUser $table.meshUser) -}}
{{- if or (has . $valkey) (has . $nats) -}}
{{- $all = append $all . -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "valkey" $valkey "nats" $nats "all" $all) -}}
{{- end -}}

{{/* The Secret holding a user's password. Call with (list $ "stt"). */}}
{{- define "voicemesh.meshUserSecretName" -}}
{{- $root := index . 0 -}}
{{- $existing := $root.Values.meshUsers.existingSecrets | default dict -}}
{{- index $existing (index . 1) | default (printf "%s-mesh-user-%s" (include "voicemesh.fullname" $root) (index . 1)) -}}
{{- end -}}

{{/* The key of the password in that Secret. Call with (list $ "stt"). */}}
{{- define "voicemesh.meshUserSecretKey" -}}
{{- $root := index . 0 -}}
{{- ternary $root.Values.meshUsers.existingSecretKey "password" (hasKey ($root.Values.meshUsers.existingSecrets | default dict) (index . 1)) -}}
{{- end -}}

{{/* The env variable a store's server reads a user's password from: MESH_PASSWORD_<USER>. */}}
{{- define "voicemesh.meshPasswordVar" -}}
{{- printf "MESH_PASSWORD_%s" (. | upper | replace "-" "_") -}}
{{- end -}}

{{/* An env entry with a user's password. Call with (list $ "stt" "ENV_NAME"). */}}
{{- define "voicemesh.meshPasswordEnv" -}}
- name: {{ index . 2 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "voicemesh.meshUserSecretName" (list (index . 0) (index . 1)) }}
      key: {{ include "voicemesh.meshUserSecretKey" (list (index . 0) (index . 1)) }}
{{- end -}}

{{/*
The passwords the chart makes (users without meshUsers.existingSecrets), as JSON {user:
password}: the one already in the cluster (lookup, so an upgrade keeps it), else a new random
one of 32 letters and digits (URL-safe). Computed once per render and stashed in .Values, so
the Secrets and the pods' checksums see the same values.
*/}}
{{- define "voicemesh.meshUserPasswords" -}}
{{- if not (hasKey .Values "_voicemeshMeshUserPasswords") -}}
{{- $root := . -}}
{{- $made := dict -}}
{{- range (include "voicemesh.meshUsers" . | fromJson).all -}}
{{- if not (hasKey ($root.Values.meshUsers.existingSecrets | default dict) .) -}}
{{- $stored := include "voicemesh.clusterSecretData" (list $root (include "voicemesh.meshUserSecretName" (list $root .))) | fromJson -}}
{{- $password := index $stored "password" | default "" | b64dec -}}
{{- $_ := set $made . ($password | default (randAlphaNum 32)) -}}
{{- end -}}
{{- end -}}
{{- $_ := set .Values "_voicemeshMeshUserPasswords" (toJson $made) -}}
{{- end -}}
{{- index .Values "_voicemeshMeshUserPasswords" -}}
{{- end -}}

{{/*
A checksum of the chart-made passwords of some users, for a pod template: a changed one
(under `helm template`, every render) restarts the pods that read it at start. Empty when
none of them is chart-made. Call with (list $ (list "stt" ...)).
*/}}
{{- define "voicemesh.meshUsersChecksum" -}}
{{- $made := include "voicemesh.meshUserPasswords" (index . 0) | fromJson -}}
{{- $picked := dict -}}
{{- range $user := index . 1 -}}
{{- with index $made $user -}}
{{- $_ := set $picked $user . -}}
{{- end -}}
{{- end -}}
{{- with $picked -}}{{ toJson . | sha256sum }}{{- end -}}
{{- end -}}

{{/*
The built-in Valkey's ACL rules, one file each for its ConfigMap: 00-default.rule (the
`default` user off) and <user>.rule, access.py's line with #@SHA256@ where the password's
digest goes. Valkey's init container (files/valkey/make-acl.sh) fills each in from the
user's Secret, so neither the chart nor the ConfigMap holds a password.
*/}}
{{- define "voicemesh.valkeyAclRules" -}}
{{- $table := include "voicemesh.accessTable" . | fromJson -}}
00-default.rule: {{ $table.valkeyDefault | quote }}
{{- range (include "voicemesh.meshUsers" . | fromJson).valkey }}
{{ . }}.rule: {{ index $table.valkey . | quote }}
{{- end }}
{{- end -}}

{{/*
The built-in NATS's `authorization` block, as JSON: access.py's entry per user with its
password as the environment variable MESH_PASSWORD_<USER> (nats-server resolves an unquoted
$NAME from its environment), which the NATS container takes from the user's Secret.
*/}}
{{- define "voicemesh.natsAuthorization" -}}
{{- $table := include "voicemesh.accessTable" . | fromJson -}}
{{- $users := list -}}
{{- range (include "voicemesh.meshUsers" . | fromJson).nats -}}
{{- $entry := toJson (index $table.nats .) -}}
{{- $users = append $users ($entry | replace (printf "%q" $table.placeholders.password) (printf "$%s" (include "voicemesh.meshPasswordVar" .))) -}}
{{- end -}}
{{- printf "{\"users\": [%s]}" (join ", " $users) | replace "\\u003e" ">" | replace "\\u003c" "<" | replace "\\u0026" "&" -}}
{{- end -}}

{{/* Checks of the meshUsers and per-service store values; each names the value to fix. */}}
{{- define "voicemesh.validateMeshUsers" -}}
{{- $table := include "voicemesh.accessTable" . | fromJson -}}
{{- $known := concat $table.serviceUsers (list $table.cliUser $table.meshUser) -}}
{{- range $user := keys (.Values.meshUsers.existingSecrets | default dict) | sortAlpha -}}
{{- if not (has $user $known) -}}
{{- fail (printf "meshUsers.existingSecrets.%s: no such user; the users are %s" $user (join ", " $known)) -}}
{{- end -}}
{{- end -}}
{{- range $store := list "externalRedis" "externalNats" -}}
{{- range $key := keys ((index $.Values $store).existingSecrets | default dict) | sortAlpha -}}
{{- if not (has $key $table.serviceUsers) -}}
{{- fail (printf "%s.existingSecrets.%s: no such service; the keys are the services' (%s)" $store $key (join ", " $table.serviceUsers)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $key, $svc := .Values.services -}}
{{- range $svc.extraEnv | default list -}}
{{- if has .name (list "VOICEMESH_EVENTS_MAX_AGE_S" "VOICEMESH_EVENTS_CREATE_STREAM" "VOICEMESH_REDIS_URL" "VOICEMESH_NATS_URL") -}}
{{- fail (printf "services.%s.extraEnv sets %s, which the chart sets: use events.maxAgeSeconds, externalNats.createStream, or the store values instead" $key .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.valkey.enabled .Values.externalRedis.existingSecrets -}}
{{- fail "externalRedis.existingSecrets is set but valkey.enabled=true: the built-in Valkey gives each service its own user; drop them, or set valkey.enabled=false" -}}
{{- end -}}
{{- if and .Values.nats.enabled .Values.externalNats.existingSecrets -}}
{{- fail "externalNats.existingSecrets is set but nats.enabled=true: the built-in NATS gives each service its own user; drop them, or set nats.enabled=false" -}}
{{- end -}}
{{- end -}}
