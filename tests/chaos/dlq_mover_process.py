"""One full dead-letter pass in a process of its own: ``python -m tests.chaos.dlq_mover_process --dsn DSN``.

The chaos test kills it (or its backend) while its move statement waits half-way, so the pass must run in a
real process with a real connection. Prints ``CHAOS-DLQ-MOVED <count>`` to stderr if it ever finishes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import asyncpg

from backfill.dlq import DeadLetterMover


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.dlq_mover_process")
    parser.add_argument("--dsn", required=True)
    args = parser.parse_args(argv)
    async with asyncpg.create_pool(args.dsn, min_size=1, max_size=1) as pool:
        moved = await DeadLetterMover(pool).move_now()
    print(f"CHAOS-DLQ-MOVED {moved}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    sys.exit(asyncio.run(main(sys.argv[1:])))
