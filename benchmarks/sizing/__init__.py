"""Cache and Aurora sizing: measured unit costs x a workload model -> checks of the seed.

`model` is pure (the checks), `measure` measures the unit costs on a running stack,
`report` renders markdown and JSON, `cli` is `qis sizing`. docs/performance.md explains
the model and how to read the report.
"""
