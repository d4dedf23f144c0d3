"""`python -m dashboards.generate [--check]`: rewrite (or verify) every generated file.

Writes dashboards/generated/*.json, alarms/generated/alarms.json and
infra/cloudformation/monitoring.yaml from the definitions.
"""

from __future__ import annotations

import sys

from dashboards.cli import main

if __name__ == "__main__":
    sys.exit(main(["dashboards", "generate", *sys.argv[1:]]))
