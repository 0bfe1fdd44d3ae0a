"""The admin HTTP API: a JSON API over what an operator does (overview, jobs, dead-letter queue, workers, cron,
pauses, cancellations, audit), secure by default. Needs the ``admin`` extra (Starlette, uvicorn).

:class:`AdminApi` is an ASGI application to mount in your own (FastAPI, Starlette, Django ASGI); ``backfill run``
serves one when ``BACKFILL_ADMIN_PORT`` is set. The rules every request passes are in
:mod:`backfill.admin.security`, which imports nothing of the extra (the settings use it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backfill.admin.app import AdminApi

__all__ = ["AdminApi"]


def __getattr__(name: str) -> Any:
    if name == "AdminApi":
        try:
            from backfill.admin.app import AdminApi
        except ImportError as error:  # the extra is not installed
            from backfill.core import ConfigurationError

            raise ConfigurationError(
                f"the admin API needs the 'admin' extra: pip install 'backfill[admin]' ({error})"
            ) from error
        return AdminApi
    raise AttributeError(name)
