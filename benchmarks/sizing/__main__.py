"""Sizing on the local stack: measure, run the documented workload model, write the reports.

    .venv/bin/python -m benchmarks.sizing [--out benchmarks/sizing/results] [--from-json FILE]

The same as `qis sizing --workload benchmarks/sizing/workload.toml --out ...`, plus the
stack preparation (up, migrations, topics) a fresh checkout needs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.settings import load_settings
from benchmarks.e2e.processes import prepare_stack
from benchmarks.sizing.cli import register

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sizing", description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--from-json", type=Path, help="re-run the model on stored measurements")
    parser.add_argument("--no-stack", action="store_true", help="the stack is already prepared")
    options = parser.parse_args()
    if not options.from_json and not options.no_stack:
        prepare_stack()
    qis = argparse.ArgumentParser(prog="qis")
    register(qis.add_subparsers(dest="command"))
    argv = ["sizing", "--workload", str(HERE / "workload.toml"), "--out", str(options.out)]
    if options.from_json:
        argv += ["--from-json", str(options.from_json)]
    args = qis.parse_args(argv)
    result: int = args.run(load_settings(os.environ), args)
    return result


if __name__ == "__main__":
    sys.exit(main())
