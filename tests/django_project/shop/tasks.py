"""The shop's tasks, as a Django project writes them: plain functions under @task."""

from __future__ import annotations

import asyncio
from typing import Any

from django.db import connection

# django.tasks on Django 6, the backport before: a project on one of them imports from it directly.
from backfill.integrations.django.compat import TaskContext, task


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
def explode(reason: str) -> None:
    raise ValueError(reason)


@task(takes_context=True)
def attempt_number(context: TaskContext, label: str) -> dict[str, Any]:
    return {"label": label, "attempt": context.attempt, "id": context.task_result.id}


@task()
async def echo_later(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


@task()
def mark(name: str) -> int:
    # A task that uses Django's connection, in the worker's thread.
    with connection.cursor() as cursor:
        cursor.execute("insert into shop_marks (name) values (%s) returning id", [name])
        row = cursor.fetchone()
    return int(row[0])


@task(queue_name="emails", priority=10)
def send_receipt(order: int) -> str:
    return f"receipt {order}"
