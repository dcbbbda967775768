{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "deploymentlite.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart> unless the release name already
contains the chart name. Truncated to 52 characters so that
"<fullname>-controller" and "<fullname>-scheduler" stay within 63.
Cluster-scoped objects are named from it, so they carry the release name
and two releases can coexist.
*/}}
{{- define "deploymentlite.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "deploymentlite.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels every object carries. Call with the root context.
*/}}
{{- define "deploymentlite.labels" -}}
helm.sh/chart: {{ include "deploymentlite.chart" . }}
app.kubernetes.io/name: {{ include "deploymentlite.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: deploymentlite
{{- end }}

{{/*
Selector labels of one component. Call with (dict "root" $ "component" "controller").
*/}}
{{- define "deploymentlite.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deploymentlite.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
All labels of one component's objects. Call with (dict "root" $ "component" "controller").
*/}}
{{- define "deploymentlite.componentLabels" -}}
{{ include "deploymentlite.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
"<fullname>-<component>". Call with (dict "root" $ "component" "controller").
*/}}
{{- define "deploymentlite.componentName" -}}
{{- printf "%s-%s" (include "deploymentlite.fullname" .root) .component }}
{{- end }}

{{/*
The ServiceAccount a component runs as. Call with (dict "root" $ "component" "controller").
*/}}
{{- define "deploymentlite.serviceAccountName" -}}
{{- $sa := (index .root.Values .component).serviceAccount }}
{{- if $sa.create }}
{{- default (include "deploymentlite.componentName" .) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/*
The Lease a component elects its leader on (--leader-election-id); the
leader-election Role is limited to exactly this name.
Call with (dict "root" $ "component" "controller").
*/}}
{{- define "deploymentlite.leaseName" -}}
{{- default (include "deploymentlite.componentName" .) (index .root.Values .component).leaseName }}
{{- end }}

{{/*
The image reference: repository@digest, else repository:tag (tag defaults
to the chart's appVersion).
*/}}
{{- define "deploymentlite.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Checks that need more than values.schema.json can say.
*/}}
{{- define "deploymentlite.validate" -}}
{{- if and .Values.hostNetwork .Values.controller.enabled .Values.scheduler.enabled }}
{{- $cp := include "deploymentlite.ports" (dict "root" $ "component" "controller") | fromYaml }}
{{- $sp := include "deploymentlite.ports" (dict "root" $ "component" "scheduler") | fromYaml }}
{{- range $n := list "metrics" "health" }}
{{- range $m := list "metrics" "health" }}
{{- if eq (int (index $cp $n)) (int (index $sp $m)) }}
{{- fail (printf "scheduler.ports.%s: Invalid value: %v: with hostNetwork=true both components listen on the node's ports, and controller.ports.%s is %v too" $m (index $sp $m) $n (index $cp $n)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- range $component := list "controller" "scheduler" }}
{{- $c := index $.Values $component }}
{{- if and $c.enabled (gt (int $c.replicas) 1) (not $.Values.leaderElection.enabled) }}
{{- fail (printf "%s.replicas: Invalid value: %v: more than one replica needs leaderElection.enabled=true, or the replicas would act at the same time" $component $c.replicas) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
crds.enabled and crds.keep, "true" or "". A release made by a chart version
without these values, upgraded with --reuse-values, has no .Values.crds at
all (Helm then applies none of the new defaults): it gets the defaults here,
both true, rather than a nil pointer error.
*/}}
{{- define "deploymentlite.crds.enabled" -}}
{{- $crds := .Values.crds | default dict }}
{{- if or (not (hasKey $crds "enabled")) $crds.enabled }}true{{ end }}
{{- end }}

{{- define "deploymentlite.crds.keep" -}}
{{- $crds := .Values.crds | default dict }}
{{- if or (not (hasKey $crds "keep")) $crds.keep }}true{{ end }}
{{- end }}
