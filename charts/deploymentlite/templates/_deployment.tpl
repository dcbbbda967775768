{{/*
The Deployment of one component. Both run the same image; they differ in
command, args and the component's values. Call with
(dict "root" $ "component" "controller" "binary" "dlite-controller" "args" (list ...)
      "volumes" (list ...) "volumeMounts" (list ...) "podAnnotations" (dict ...)).
*/}}
{{- define "deploymentlite.deployment" -}}
{{- $root := .root }}
{{- $c := index $root.Values .component }}
{{- $ctx := dict "root" $root "component" .component }}
{{- $ports := include "deploymentlite.ports" $ctx | fromYaml }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "deploymentlite.componentName" $ctx }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "deploymentlite.componentLabels" $ctx | nindent 4 }}
spec:
  replicas: {{ $c.replicas }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "deploymentlite.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "deploymentlite.componentLabels" $ctx | nindent 8 }}
        {{- with $c.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- $annotations := merge (dict) (default (dict) .podAnnotations) $c.podAnnotations }}
      {{- with $annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "deploymentlite.serviceAccountName" $ctx }}
      automountServiceAccountToken: true
      enableServiceLinks: false
      {{- if $root.Values.hostNetwork }}
      hostNetwork: true
      {{- end }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ include "deploymentlite.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command:
            - /usr/local/bin/{{ .binary }}
          args:
            {{- range .args }}
            - {{ . | quote }}
            {{- end }}
            {{- range $c.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: POD_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            - name: RUST_LOG
              value: {{ $root.Values.logLevel | quote }}
            {{- with $c.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: metrics
              containerPort: {{ $ports.metrics }}
              protocol: TCP
            - name: health
              containerPort: {{ $ports.health }}
              protocol: TCP
          livenessProbe:
            httpGet:
              {{- with $root.Values.probeHost }}
              host: {{ . | quote }}
              {{- end }}
              path: /healthz
              port: health
            initialDelaySeconds: 5
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          readinessProbe:
            httpGet:
              {{- with $root.Values.probeHost }}
              host: {{ . | quote }}
              {{- end }}
              path: /readyz
              port: health
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 3
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          {{- with .volumeMounts }}
          volumeMounts:
            {{- toYaml . | nindent 12 }}
          {{- end }}
      {{- with .volumes }}
      volumes:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{/*
The flags both components share (src/runtime/args.rs).
Call with (dict "root" $ "component" "controller").
*/}}
{{- define "deploymentlite.runtimeArgs" -}}
{{- $root := .root }}
{{- $ports := include "deploymentlite.ports" . | fromYaml }}
{{- $address := default "0.0.0.0" $root.Values.bindAddress }}
- --metrics-bind-address={{ $address }}:{{ $ports.metrics }}
- --health-probe-bind-address={{ $address }}:{{ $ports.health }}
- --leader-elect={{ $root.Values.leaderElection.enabled }}
{{- if $root.Values.leaderElection.enabled }}
- --leader-election-namespace={{ $root.Release.Namespace }}
- --leader-election-id={{ include "deploymentlite.leaseName" . }}
- --lease-duration-seconds={{ $root.Values.leaderElection.leaseDurationSeconds }}
{{- end }}
- --log-format={{ $root.Values.logFormat }}
{{- end }}

{{/*
A component's metrics and health ports, 8080 and 8081 unless its values say
otherwise (a release upgraded with --reuse-values from a chart without
`ports` has none). Call with (dict "root" $ "component" "controller").
*/}}
{{- define "deploymentlite.ports" -}}
{{- $c := index .root.Values .component }}
{{- toYaml (merge (dict) (default (dict) $c.ports) (dict "metrics" 8080 "health" 8081)) }}
{{- end }}
