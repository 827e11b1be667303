{{/* The image of both the operator and the agent: image.tag, else the chart's appVersion. */}}
{{- define "sriov-dra.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The NAD namespace rule, one string for the operator and the agents alike. */}}
{{- define "sriov-dra.nadNamespaces" -}}
{{ join "," .Values.nadNamespaces }}
{{- end }}

{{/* The release namespace, refused when it is "default" (a privileged agent lives here). */}}
{{- define "sriov-dra.namespace" -}}
{{- if and (eq .Release.Namespace "default") (not .Values.allowDefaultNamespace) -}}
{{- fail "sriov-dra: install into a namespace of its own (-n sriov-dra --create-namespace), or set allowDefaultNamespace=true" -}}
{{- end -}}
{{ .Release.Namespace }}
{{- end }}
