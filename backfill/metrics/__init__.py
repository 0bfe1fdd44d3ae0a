"""Prometheus metrics for backfill: job counters and timings from a worker's events, queue gauges from the
database, and an HTTP endpoint to scrape them.

Typical wiring, in a worker process::

    metrics = BackfillMetrics(tasks=registry.identifiers)
    stop = metrics.observe_worker(worker.events, "bulk", busy_slots=lambda: worker.busy_slots)
    stats = QueueStatsCollector(pool, worker.options.schema_name, metrics)  # one per database is enough
    server = serve_metrics(metrics.registry, port=9464)
    ...  # run stats.run() as a side task beside the worker; server.close() and stop() on the way out

Metric names (namespace ``backfill``) and their labels:

* ``backfill_jobs_enqueued_total``, ``_started_total``, ``_succeeded_total``, ``_failed_total`` (every failed
  attempt), ``_retried_total``, ``_failed_permanently_total``, ``_timed_out_total``, ``_dead_lettered_total``:
  task, lane, priority_band.
* ``backfill_job_duration_seconds``, ``backfill_job_start_lag_seconds`` (histograms, 5 ms to 4 h): task, lane.
* ``backfill_lane_ready_jobs``, ``backfill_lane_scheduled_jobs``, ``backfill_lane_oldest_ready_job_age_seconds``:
  lane. ``backfill_queue_ready_jobs``, ``backfill_queue_scheduled_jobs``,
  ``backfill_queue_oldest_ready_job_age_seconds``: queue (the 20 deepest named queues, the rest as ``other``).
* ``backfill_dead_letter_jobs``, ``backfill_queue_stats_collected_timestamp_seconds``: no labels.
  ``backfill_dead_letter_jobs_by_task``: task.
* ``backfill_busy_slots``, ``backfill_lane_slots``: lane. ``backfill_lost_lease_jobs_total``: lane, action.
* ``backfill_recovered_jobs_total``: outcome (``released``, ``poisoned``). ``backfill_dead_workers_total``,
  ``backfill_event_loop_blocks_total``, ``backfill_event_loop_blocked_seconds_total``: no labels.
* ``backfill_build_info``: version, python, implementation, graphile_schema_revision (value 1). A private
  registry also gets prometheus-client's ``process_*``, ``python_gc_*`` and ``python_info``.

``serve_metrics(..., liveness=, readiness=)`` also answers ``/healthz`` and ``/readyz``
(:mod:`backfill.metrics.health`).

``task`` is a task named in ``BackfillMetrics(tasks=...)`` or ``other``; ``lane`` a lane named in ``lanes=``
or ``other``; ``priority_band`` one of :data:`backfill.priorities.PRIORITY_BANDS`.
"""

from backfill.metrics.gauges import QueueSnapshot, WaitingJobs
from backfill.metrics.instruments import DURATION_BUCKETS, OTHER, BackfillMetrics
from backfill.metrics.queue_stats import DEFAULT_QUEUE_LIMIT, QueueStatsCollector
from backfill.metrics.server import MetricsServer, serve_metrics

__all__ = [  # noqa: RUF022 - plain sorted order
    "BackfillMetrics",
    "DEFAULT_QUEUE_LIMIT",
    "DURATION_BUCKETS",
    "MetricsServer",
    "OTHER",
    "QueueSnapshot",
    "QueueStatsCollector",
    "WaitingJobs",
    "serve_metrics",
]
