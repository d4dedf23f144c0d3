"""CloudWatch as code, shared by `dashboards/` and `alarms/`: the dashboard and alarm
model, EMF reading, CloudWatch statistics and metric math, deploy, the CloudFormation
template and the generated files, and the command-line plumbing.

A tool, not the service: nothing under `app/` imports it. It knows no definitions: those
live in `dashboards/definitions.py` and `alarms/definitions.py`, which import it and read
the metric names from the service's catalogue (`app.telemetry.catalogue`).
"""
