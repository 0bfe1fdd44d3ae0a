"""Throughput and latency of backfill next to Node graphile-worker and Python peers, on one database.

Run ``python -m bench --help``. Each system is driven by a separate process (a *driver*: ``bench/drivers/``
for the Python systems, ``bench/node/driver.mjs`` for Node) that speaks the JSON-lines protocol of
:mod:`bench.protocol`; the harness (:mod:`bench.harness`) starts drivers, watches the database and times.
"""
