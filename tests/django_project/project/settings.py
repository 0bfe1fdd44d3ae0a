"""A small Django project whose tasks run on backfill: the database is the test's, from DATABASE_URL."""

from __future__ import annotations

import importlib.util
import os
from urllib.parse import parse_qs, unquote, urlsplit

_url = urlsplit(os.environ["DATABASE_URL"])
# The embedded server's URL names its socket directory (and port) in the query: postgresql://u@/db?host=/tmp/x
_query = {key: values[-1] for key, values in parse_qs(_url.query).items()}

SECRET_KEY = "tests-only"  # a throwaway project
DEBUG = True  # so that Django would record queries: enqueue must keep payloads out of them anyway
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The backport is an app of its own (its checks and signals); Django 6 has the framework built in.
_BACKPORT = [] if importlib.util.find_spec("django.tasks") else ["django_tasks"]
INSTALLED_APPS = [*_BACKPORT, "backfill.integrations.django", "shop"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(_url.path.lstrip("/")),
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _url.hostname or _query.get("host", ""),
        "PORT": str(_url.port or _query.get("port", "")),
    }
}

TASKS = {
    "default": {
        "BACKEND": "backfill.integrations.django.backend.BackfillBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {"KEEP_RESULT": 600, "RETRY_POLICY": "fast"},
    }
}
