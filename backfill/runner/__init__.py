"""The runner: a process's lanes of workers, configured from the environment (``WorkerRunner.from_env()``)."""

from backfill.runner.worker_runner import WorkerRunner, main

__all__ = ["WorkerRunner", "main"]
