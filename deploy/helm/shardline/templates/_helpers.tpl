{{/* The release's names and labels. */}}
{{- define "shardline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shardline.fullname" -}}
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

{{- define "shardline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shardline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "shardline.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "shardline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ (include "shardline.userConfig" . | fromYaml).application | default "shardline" | trunc 63 | trimSuffix "-" | quote }}
{{- end }}

{{- define "shardline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shardline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The config as the worker reads it: the user's, with the endpoint on the pod address (probes
and Prometheus come from outside the pod) and the compiled-component cache on its volume.
*/}}
{{- define "shardline.config" -}}
{{- $cfg := deepCopy (include "shardline.userConfig" . | fromYaml) }}
{{- if not $cfg.application }}{{ fail "config.application is required (the lease table's name)" }}{{ end }}
{{- $metrics := $cfg.metrics | default dict }}
{{- $_ := set $metrics "listen" (printf "0.0.0.0:%d" (int .Values.metrics.port)) }}
{{- $_ := set $metrics "listen_beyond_loopback" true }}
{{- $_ := set $cfg "metrics" $metrics }}
{{- $wasm := $cfg.wasm | default dict }}
{{- $_ := set $wasm "cache_dir" "/var/cache/shardline/components" }}
{{- $_ := set $cfg "wasm" $wasm }}
{{- toYaml $cfg }}
{{- end }}

{{/* The config as given: `config`, or the placeholder while it is empty. */}}
{{- define "shardline.userConfig" -}}
{{- toYaml (.Values.config | default .Values.exampleConfig) }}
{{- end }}

{{/*
Seconds a duration of the config stands for ("30s", "1m", "500ms"; whole units only).
*/}}
{{- define "shardline.seconds" -}}
{{- $d := toString . }}
{{- if regexMatch "^[0-9]+ms$" $d }}{{ div (add (trimSuffix "ms" $d | atoi) 999) 1000 }}
{{- else if regexMatch "^[0-9]+s$" $d }}{{ trimSuffix "s" $d | atoi }}
{{- else if regexMatch "^[0-9]+m$" $d }}{{ mul (trimSuffix "m" $d | atoi) 60 }}
{{- else }}{{ fail (printf "cannot read the duration %q (write it as 500ms, 30s or 2m)" $d) }}
{{- end }}
{{- end }}

{{/*
The drain time: the worker waits for its deliveries at most the largest Pulsar
send_timeout (default 30s) + 5 s (host/src/consumer/shard_consumer.rs, drain_timeout).
*/}}
{{- define "shardline.drainSeconds" -}}
{{- $max := 30 }}
{{- $found := false }}
{{- $cfg := include "shardline.userConfig" . | fromYaml }}
{{- range $name, $sink := ($cfg.sinks | default dict) }}
{{- if and (kindIs "map" $sink) $sink.pulsar }}
{{- $s := 30 }}
{{- if $sink.pulsar.send_timeout }}{{ $s = include "shardline.seconds" $sink.pulsar.send_timeout | atoi }}{{ end }}
{{- if or (not $found) (gt $s $max) }}{{ $max = $s }}{{ $found = true }}{{ end }}
{{- end }}
{{- end }}
{{- add $max 5 }}
{{- end }}

{{/* Whether components are mounted from a volume of the release. */}}
{{- define "shardline.componentsVolume" -}}
{{- with .Values.components }}
{{- if or .configMap .files .volume .initContainer }}true{{ end }}
{{- end }}
{{- end }}
