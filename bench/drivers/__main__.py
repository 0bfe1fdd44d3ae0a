"""``python -m bench.drivers SYSTEM COMMAND ...``: run one Python system's driver.

Drivers are imported by name here rather than run as ``__main__`` themselves, so that libraries that
resolve tasks by module (procrastinate) see an ordinary module path.
"""

from __future__ import annotations

import importlib
import sys

from bench.drivers.base import Driver
from bench.drivers.cli import main

DRIVERS = {
    "backfill": ("bench.drivers.backfill_driver", "BackfillDriver"),
    "backfill-runner": ("bench.drivers.runner_driver", "RunnerDriver"),
    "backfill-runner-paused": ("bench.drivers.runner_driver", "PausedRunnerDriver"),
    "procrastinate": ("bench.drivers.procrastinate_driver", "ProcrastinateDriver"),
    "pgqueuer": ("bench.drivers.pgqueuer_driver", "PgqueuerDriver"),
    "postgres": ("bench.drivers.postgres_driver", "PostgresDriver"),
}


def load(system: str) -> type[Driver]:
    module_name, class_name = DRIVERS[system]
    driver_class: type[Driver] = getattr(importlib.import_module(module_name), class_name)
    return driver_class


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in DRIVERS:
        sys.exit(f"usage: python -m bench.drivers {{{','.join(DRIVERS)}}} COMMAND [options]")
    main(load(sys.argv[1]), sys.argv[2:])
