"""``python -m backfill``: see :mod:`backfill.cli`."""

import sys

from backfill.cli import main


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
