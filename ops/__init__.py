"""Dashboards and alarms as code: definitions' structs, deploy, offline evaluation, rendering.

The definitions themselves live in `dashboards/definitions.py` and `alarms/definitions.py`;
this package holds what they are made of and what is done with them.
"""
