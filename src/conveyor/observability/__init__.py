"""Seeing a run: live progress, report tables, Prometheus metrics, webhook notifications, alarm
evaluation."""
