"""Seeing Fat Controller from outside: /healthz, /metrics and JSON logs."""
