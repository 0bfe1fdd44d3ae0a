#!/usr/bin/env python3
"""The image's HEALTHCHECK: asks the runner's ``/healthz`` (liveness: its event loop answers).

Exit 0 when it answers 200, or when ``BACKFILL_METRICS_PORT`` is unset (no endpoint to ask: the container is not
marked unhealthy for it); exit 1, printing why, when it answers anything else or nothing within 2 seconds. It asks
``BACKFILL_METRICS_HOST``, or 127.0.0.1 when the server listens on every interface (the default 0.0.0.0). Only the
environment is read, not a ``.env`` file. Standard library only: it runs in the image's Python.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

TIMEOUT_SECONDS = 2.0
_EVERY_INTERFACE = ("", "0.0.0.0", "::", "[::]")


def healthz_url(environ: Mapping[str, str]) -> str | None:
    port = environ.get("BACKFILL_METRICS_PORT", "").strip()
    if not port:
        return None
    host = environ.get("BACKFILL_METRICS_HOST", "").strip()
    if host in _EVERY_INTERFACE:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    return f"http://{host}:{port}/healthz"


def main() -> int:
    url = healthz_url(os.environ)
    if url is None:
        print("BACKFILL_METRICS_PORT is not set: no /healthz to ask")
        return 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            print(f"{url}: {response.status} {response.read(200).decode(errors='replace').strip()}")
            return 0
    except urllib.error.HTTPError as error:  # 503 and the runner's one-line reason
        print(f"{url}: {error.code} {error.read(200).decode(errors='replace').strip()}")
    except OSError as error:  # refused, timed out
        print(f"{url}: no answer ({error})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
