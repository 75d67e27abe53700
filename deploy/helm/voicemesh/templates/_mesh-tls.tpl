{{/*
mTLS on the internal gRPC plane (meshTls): which Secret each service mounts, and the
certificates the chart makes when the operator brings none. The runtime contract is
libs/mesh (certs, mtls): a directory with ca.crt, tls.crt and tls.key, the certificate's
common name the service's name, its DNS name <service>.voicemesh.internal, one CA for all.
*/}}

{{/* The DNS domain every identity's certificate is named in (certs.DOMAIN). */}}
{{- define "voicemesh.meshTlsDomain" -}}voicemesh.internal{{- end -}}

{{/* Where a service's mesh Secret is mounted (VOICEMESH_MESH_TLS_DIR). */}}
{{- define "voicemesh.meshTlsDir" -}}/etc/voicemesh/mesh-tls{{- end -}}

{{/* Non-empty when the chart makes the mesh certificates (meshTls on, no existingSecrets). */}}
{{- define "voicemesh.meshTlsGenerated" -}}
{{- if and .Values.meshTls.enabled (not .Values.meshTls.existingSecrets) -}}true{{- end -}}
{{- end -}}

{{/* The Secret holding the CA the chart makes (its certificate and key). */}}
{{- define "voicemesh.meshTlsCaSecretName" -}}
{{- printf "%s-mesh-ca" (include "voicemesh.fullname" .) -}}
{{- end -}}

{{/* The Secret a service mounts. Call with (list $ "stt"). */}}
{{- define "voicemesh.meshTlsSecretName" -}}
{{- $root := index . 0 -}}
{{- $key := index . 1 -}}
{{- $existing := $root.Values.meshTls.existingSecrets | default dict -}}
{{- index $existing $key | default (printf "%s-mesh-tls-%s" (include "voicemesh.fullname" $root) $key) -}}
{{- end -}}

{{/*
The data of a Secret already in the cluster, as JSON ({} when there is none, and always
under `helm template` or --dry-run, which cannot read the cluster). The one place the mesh
certificates and the store users' passwords (_mesh-users.tpl) are looked up. Call with
(list $ "name").
*/}}
{{- define "voicemesh.clusterSecretData" -}}
{{- $root := index . 0 -}}
{{- $found := lookup "v1" "Secret" $root.Release.Namespace (index . 1) | default dict -}}
{{- toJson ($found.data | default dict) -}}
{{- end -}}

{{/*
The mesh certificates the chart makes, base64 as a Secret's data, as JSON:
{"ca": {"tls.crt", "tls.key"}, "services": {"<key>": {"ca.crt", "tls.crt", "tls.key"}}}.
Kept across upgrades: the CA in the cluster is reused, and so is each service's Secret that
it issued; a service without one (newly enabled, or its Secret deleted to renew it) gets a
new certificate from that CA. Only a missing CA makes a whole new set. Computed once per
render (the Secrets and the Deployments' checksums must see the same random keys), and
stashed in .Values for the other templates.
*/}}
{{- define "voicemesh.meshTlsIssued" -}}
{{- if not (hasKey .Values "_voicemeshMeshTlsIssued") -}}
{{- $root := . -}}
{{- $gen := .Values.meshTls.generate -}}
{{- $stored := include "voicemesh.clusterSecretData" (list . (include "voicemesh.meshTlsCaSecretName" .)) | fromJson -}}
{{- $ca := "" -}}
{{- if and (index $stored "tls.crt") (index $stored "tls.key") -}}
{{- $ca = buildCustomCert (index $stored "tls.crt") (index $stored "tls.key") -}}
{{- else -}}
{{- $ca = genCAWithKey "voicemesh mesh CA" (int $gen.caValidityDays) (genPrivateKey "ecdsa") -}}
{{- end -}}
{{- $caCrt := $ca.Cert | b64enc -}}
{{- $services := dict -}}
{{- range $key, $svc := .Values.services -}}
{{- if $svc.enabled -}}
{{- $old := include "voicemesh.clusterSecretData" (list $root (include "voicemesh.meshTlsSecretName" (list $root $key))) | fromJson -}}
{{- if and (eq (index $old "ca.crt" | default "") $caCrt) (index $old "tls.crt") (index $old "tls.key") -}}
{{- $_ := set $services $key (dict "ca.crt" $caCrt "tls.crt" (index $old "tls.crt") "tls.key" (index $old "tls.key")) -}}
{{- else -}}
{{- $dns := list (printf "%s.%s" $key (include "voicemesh.meshTlsDomain" $root)) -}}
{{- $cert := genSignedCertWithKey $key nil $dns (int $gen.certValidityDays) $ca (genPrivateKey "ecdsa") -}}
{{- $_ := set $services $key (dict "ca.crt" $caCrt "tls.crt" ($cert.Cert | b64enc) "tls.key" ($cert.Key | b64enc)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $issued := dict "ca" (dict "tls.crt" $caCrt "tls.key" ($ca.Key | b64enc)) "services" $services -}}
{{- $_ := set .Values "_voicemeshMeshTlsIssued" (toJson $issued) -}}
{{- end -}}
{{- index .Values "_voicemeshMeshTlsIssued" -}}
{{- end -}}

{{/*
A checksum of the certificate a service's pods read, for its pod template: a re-issued one
rolls the Deployment (the service reads its certificate at start). Empty when the operator's
Secrets are used: their names are in the pod spec, their contents are renewed outside the
chart. Call with (list $ "stt").
*/}}
{{- define "voicemesh.meshTlsChecksum" -}}
{{- $root := index . 0 -}}
{{- if include "voicemesh.meshTlsGenerated" $root -}}
{{- $issued := include "voicemesh.meshTlsIssued" $root | fromJson -}}
{{- toJson (index $issued.services (index . 1)) | sha256sum -}}
{{- end -}}
{{- end -}}

{{/* Checks of the meshTls values; each fails naming the value to fix. */}}
{{- define "voicemesh.validateMeshTls" -}}
{{- $mt := .Values.meshTls -}}
{{- $existing := $mt.existingSecrets | default dict -}}
{{- $known := keys .Values.services | sortAlpha -}}
{{- range $key := keys $existing | sortAlpha -}}
{{- if not (has $key $known) -}}
{{- fail (printf "meshTls.existingSecrets.%s: no such service; the keys are the services' (%s)" $key (join ", " $known)) -}}
{{- end -}}
{{- end -}}
{{- if and $existing (not $mt.enabled) -}}
{{- fail "meshTls.existingSecrets is set but meshTls.enabled=false: the services would not read them; turn meshTls.enabled on, or drop existingSecrets" -}}
{{- end -}}
{{- if $existing -}}
{{- $missing := list -}}
{{- range $key, $svc := .Values.services -}}
{{- if and $svc.enabled (not (hasKey $existing $key)) -}}
{{- $missing = append $missing $key -}}
{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "meshTls.existingSecrets names no Secret for %s: name one for every enabled service, all issued by the same CA (one the chart made would not be), or leave existingSecrets empty for the chart to make them all" (join ", " $missing)) -}}
{{- end -}}
{{- end -}}
{{- if gt (int $mt.generate.certValidityDays) (int $mt.generate.caValidityDays) -}}
{{- fail (printf "meshTls.generate: certValidityDays (%v) is beyond caValidityDays (%v); a certificate cannot outlive its CA" $mt.generate.certValidityDays $mt.generate.caValidityDays) -}}
{{- end -}}
{{- range $key, $svc := .Values.services -}}
{{- if $svc.enabled -}}
{{- $taken := dict (toString $svc.grpcPort) (printf "services.%s.grpcPort" $key) (toString $.Values.metrics.port) "metrics.port" -}}
{{- if eq $key "media-edge" -}}
{{- $_ := set $taken (toString $.Values.mediaEdge.http.port) "mediaEdge.http.port" -}}
{{- end -}}
{{- with index $taken (toString $svc.healthPort) -}}
{{- fail (printf "services.%s.healthPort (%v) is also %s: the plaintext health port needs a port of its own" $key $svc.healthPort .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
