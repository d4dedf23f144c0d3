"""`python -m app.ops ...`: the dashboards and alarms commands without `qis`."""

import sys

from app.ops.cli import main

sys.exit(main())
