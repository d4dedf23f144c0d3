"""Observability: X-Ray-compatible tracing, EMF metrics, JSON logs."""
