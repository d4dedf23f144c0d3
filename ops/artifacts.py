"""The committed files generated from the definitions, and whether they are up to date."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ops.alarm import MetricAlarm, put_metric_alarm_params
from ops.cloudformation import monitoring_template, template_yaml
from ops.dashboard import Dashboard, dashboard_body
from ops.naming import base_name

DASHBOARDS_DIR = Path("dashboards/generated")
ALARMS_FILE = Path("alarms/generated/alarms.json")
TEMPLATE_FILE = Path("infra/cloudformation/monitoring.yaml")


def _json(document: object) -> str:
    return json.dumps(document, indent=2) + "\n"


def generated_files(
    root: Path, dashboards: Sequence[Dashboard], alarms: Sequence[MetricAlarm]
) -> dict[Path, str]:
    """Path -> content of every generated file, under the repository `root`."""
    files = {
        root / DASHBOARDS_DIR / f"{base_name(d.name)}.json": _json(dashboard_body(d))
        for d in dashboards
    }
    files[root / ALARMS_FILE] = _json([put_metric_alarm_params(a) for a in alarms])
    files[root / TEMPLATE_FILE] = template_yaml(monitoring_template(dashboards, alarms))
    return files


def stale_files(root: Path, files: Mapping[Path, str]) -> list[Path]:
    """Generated files that are missing or differ, and generated dashboards no longer defined."""
    stale = [p for p, text in files.items() if not p.exists() or p.read_text("utf-8") != text]
    leftovers = set((root / DASHBOARDS_DIR).glob("*.json")) - set(files)
    return sorted(stale) + sorted(leftovers)


def write_files(root: Path, files: Mapping[Path, str]) -> list[Path]:
    """Rewrite what is stale, delete dashboards no longer defined; returns what changed."""
    changed = stale_files(root, files)
    for path in changed:
        if path in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[path], encoding="utf-8")
        else:
            path.unlink()
    return changed
