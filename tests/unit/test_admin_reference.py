"""docs/reference/admin-api.md documents every endpoint the admin API serves, and nothing it does not serve."""

from __future__ import annotations

import re
from pathlib import Path

from backfill.admin.app import OPENAPI_PATH
from backfill.admin.routes import ENDPOINTS

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "admin-api.md"


def test_every_endpoint_is_in_the_reference_and_only_those() -> None:
    documented = set(re.findall(r"^\| `(GET|POST|DELETE|PUT|PATCH) (/api/[^`]*)` \|", REFERENCE.read_text(), re.M))
    served = {(endpoint.method, endpoint.path) for endpoint in ENDPOINTS} | {("GET", OPENAPI_PATH)}
    assert documented == served
