"""Job outcomes as callers read them: :class:`JobOutcome`, and waiting for one.

The worker keeps the outcome of a job that asks (``keep_result=``; see ``docs/how-to/results.md``) in
``backfill_job_results``; :class:`~backfill.client.async_client.BackfillClient`'s ``result()`` and ``wait()`` read
it through :class:`~backfill.results.reader.OutcomeReader` and :class:`~backfill.results.waiter.OutcomeWaiter`.
"""

from backfill.results.models import JobOutcome, OutcomeState

__all__ = ["JobOutcome", "OutcomeState"]
