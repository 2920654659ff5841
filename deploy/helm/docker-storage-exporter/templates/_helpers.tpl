{{/* The chart name, or nameOverride. */}}
{{- define "docker-storage-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the objects: fullnameOverride, else the release name when it already
contains the chart name, else <release>-<chart>. At most 63 characters (DNS label).
*/}}
{{- define "docker-storage-exporter.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "docker-storage-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the pods: stable across upgrades. */}}
{{- define "docker-storage-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "docker-storage-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The standard labels of every object. */}}
{{- define "docker-storage-exporter.labels" -}}
helm.sh/chart: {{ include "docker-storage-exporter.chart" . }}
{{ include "docker-storage-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ include "docker-storage-exporter.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: {{ include "docker-storage-exporter.name" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "docker-storage-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "docker-storage-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image tag: image.tag, else the chart's appVersion. */}}
{{- define "docker-storage-exporter.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* repository:tag, with @digest when one is set. */}}
{{- define "docker-storage-exporter.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "docker-storage-exporter.imageTag" .) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/* Where the host path hostRoot.path is mounted: /host<path>, so --path.rootfs=/host holds. */}}
{{- define "docker-storage-exporter.hostRootMountPath" -}}
{{- $path := clean .Values.hostRoot.path }}
{{- if eq $path "/" }}/host{{ else }}{{ printf "/host%s" $path }}{{ end }}
{{- end }}

{{/* The namespace of an optional object: its own override, else the release's. */}}
{{- define "docker-storage-exporter.namespace" -}}
{{- default .root.Release.Namespace .override }}
{{- end }}

{{/* Where a registry.roots entry is mounted (its --registry.root): mountPath, else /registry/<name>. */}}
{{- define "docker-storage-exporter.registryMountPath" -}}
{{- .mountPath | default (printf "/registry/%s" .name) | clean }}
{{- end }}

{{/* registry.roots, checked: names and mount paths unique (the exporter takes each root once). */}}
{{- define "docker-storage-exporter.registryRoots" -}}
{{- $names := dict }}
{{- $paths := dict }}
{{- range .Values.registry.roots }}
{{- if hasKey $names .name }}
{{- fail (printf "registry.roots: the name %q is given twice" .name) }}
{{- end }}
{{- $path := include "docker-storage-exporter.registryMountPath" . }}
{{- if hasKey $paths $path }}
{{- fail (printf "registry.roots: the mountPath %s is given twice" $path) }}
{{- end }}
{{- $_ := set $names .name true }}
{{- $_ := set $paths $path true }}
{{- end }}
{{- end }}
