"""What the tests do in the shop's process: enqueue inside a transaction, read results. Prints JSON lines."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from backfill.integrations.django.compat import TaskResult, TaskResultDoesNotExist, task_backends

from ... import tasks  # the shop package (run from the project directory, it is top-level `shop`)


class Rollback(Exception):
    """Leaves the atomic block by an error, as a failed view would."""


class Command(BaseCommand):  # type: ignore[misc]  # Django has no type information here
    def add_arguments(self, parser: ArgumentParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True)
        enqueue = commands.add_parser("enqueue")
        enqueue.add_argument("task")
        enqueue.add_argument("arguments", nargs="*", help="JSON values")
        enqueue.add_argument("--rollback", action="store_true")
        enqueue.add_argument("--autocommit", action="store_true", help="outside any atomic block")
        enqueue.add_argument("--delay", type=float, default=None)
        enqueue.add_argument("--priority", type=int, default=None)
        enqueue.add_argument("--read-back", action="store_true", help="get_result in the same transaction")
        batch = commands.add_parser("batch", help="enqueue each [task, args...] of a JSON list, one transaction")
        batch.add_argument("calls")
        result = commands.add_parser("result")
        result.add_argument("ids", nargs="+")
        result.add_argument("--wait", type=float, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "enqueue":
            self._enqueue(options)
        elif options["action"] == "batch":
            with transaction.atomic():
                results = [
                    getattr(tasks, name).enqueue(*arguments) for name, *arguments in json.loads(options["calls"])
                ]
            for result in results:
                self._print(result)
        else:
            self._result(options)

    def _enqueue(self, options: dict[str, Any]) -> None:
        task = getattr(tasks, options["task"])
        if options["delay"] is not None:
            task = task.using(run_after=timezone.now() + timedelta(seconds=options["delay"]))
        if options["priority"] is not None:
            task = task.using(priority=options["priority"])
        arguments = [json.loads(value) for value in options["arguments"]]
        if options["autocommit"]:
            self._print(task.enqueue(*arguments))
            return
        try:
            with transaction.atomic():
                result = task.enqueue(*arguments)
                if options["read_back"]:
                    self._print(task_backends["default"].get_result(result.id), read_back=True)
                if options["rollback"]:
                    raise Rollback
        except Rollback:
            pass
        self._print(result)

    def _result(self, options: dict[str, Any]) -> None:
        backend = task_backends["default"]
        for result_id in options["ids"]:
            try:
                if options["wait"] is not None:
                    result = backend.wait(result_id, timeout=options["wait"])
                else:
                    result = backend.get_result(result_id)
            except TaskResultDoesNotExist as error:
                self.stdout.write(json.dumps({"id": result_id, "missing": str(error)}))
                continue
            self._print(result)

    def _print(self, result: TaskResult[Any], **extra: Any) -> None:
        fields: dict[str, Any] = {
            "id": result.id,
            "status": str(result.status),
            "task": result.task.module_path,
            "args": result.args,
            "kwargs": result.kwargs,
            "attempts": result.attempts,
            "errors": [{"path": e.exception_class_path, "traceback": e.traceback} for e in result.errors],
            "enqueued_at": None if result.enqueued_at is None else result.enqueued_at.isoformat(),
            "finished_at": None if result.finished_at is None else result.finished_at.isoformat(),
            **extra,
        }
        if result.is_finished and str(result.status) == "SUCCESSFUL":
            fields["return_value"] = result.return_value
        self.stdout.write(json.dumps(fields))
