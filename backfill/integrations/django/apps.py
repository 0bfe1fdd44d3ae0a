"""The Django app that brings the ``backfill_worker`` management command: add
``"backfill.integrations.django"`` to ``INSTALLED_APPS``."""

from __future__ import annotations

from django.apps import AppConfig


class BackfillConfig(AppConfig):  # type: ignore[misc]  # Django has no type information here
    name = "backfill.integrations.django"
    label = "backfill"  # "django", the default (the package's last part), would read as Django's own
    verbose_name = "backfill"
