"""mypy checks a handle's payload against its handler's first parameter: one mypy run over small snippets.

Each snippet but ``good`` holds exactly one mistake, on the line marked ``# error: <code>``; ``good`` holds none. The
run uses the project's mypy configuration (strict) and a cache of its own, so it takes a few seconds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

_HEADER = """
from __future__ import annotations

import dataclasses
from typing import Any

from typing_extensions import TypedDict

import backfill
from backfill import JobContext


@dataclasses.dataclass
class Email:
    to: str


class Sms(TypedDict):
    number: str


@backfill.task("typing.email")
async def send_email(payload: Email, ctx: JobContext) -> None:
    return None


@backfill.task("typing.sms")
def send_sms(payload: Sms) -> int:
    return 1


@backfill.task("typing.raw")
async def raw(payload: dict[str, Any], ctx: JobContext | None = None) -> str:
    return ""
"""

SNIPPETS = {
    "good": """
async def main(client: backfill.BackfillClient, ctx: JobContext) -> None:
    job: backfill.Job = await send_email.enqueue(Email("ada@example.com"), delay=60, priority=-5, client=client)
    await send_email.enqueue_many([Email("a"), send_email.request(Email("b"), job_key="b")])
    count: int = await send_email.enqueue_many([Email("a")], returning=False)
    send_email.sync.enqueue(Email("a"), call_timeout=5)
    await send_sms.enqueue({"number": "+1"})
    await raw.enqueue({"anything": [1, 2]})
    await send_email(Email("a"), ctx)
    number: int = send_sms({"number": "+1"})
    handle: backfill.Task[Email, Any] = send_email
    sync_handle: backfill.Task[Sms, int] = send_sms
""",
    "wrong_payload": """
class Wrong:
    pass


async def main() -> None:
    await send_email.enqueue(Wrong())  # error: arg-type
""",
    "wrong_typeddict": """
async def main() -> None:
    await send_sms.enqueue({"number": 1})  # error: typeddict-item
""",
    "wrong_blocking": """
def main() -> None:
    send_email.sync.enqueue(Sms(number="+1"))  # error: arg-type
""",
    "wrong_many": """
async def main() -> None:
    await send_email.enqueue_many([Email("a"), Sms(number="+1")])  # error: list-item
""",
    "wrong_request": """
def main() -> None:
    send_sms.request(Email("a"))  # error: arg-type
""",
    "wrong_option": """
async def main() -> None:
    await send_email.enqueue(Email("a"), dely=60)  # error: call-arg
""",
    "wrong_call": """
async def main(ctx: JobContext) -> None:
    await send_email(Sms(number="+1"), ctx)  # error: arg-type
""",
}

_ERROR = re.compile(r"^(?P<file>[^:]+\.py):(?P<line>\d+): error: (?P<message>.*)$")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[int, str]]]:
    """snippet -> [(line, message)] for each error mypy reports."""
    root = tmp_path_factory.mktemp("typing")
    files = []
    for name, body in SNIPPETS.items():
        path = root / f"handle_{name}.py"
        path.write_text(_HEADER + body, encoding="utf-8")
        files.append(str(path))
    project = Path(__file__).resolve().parents[2]
    stdout, stderr, _ = api.run(
        [
            "--config-file",
            str(project / "pyproject.toml"),
            "--cache-dir",
            str(root / ".mypy_cache"),
            "--no-error-summary",
            "--show-error-codes",
            *files,
        ]
    )
    assert not stderr, stderr
    errors: dict[str, list[tuple[int, str]]] = {name: [] for name in SNIPPETS}
    for line in stdout.splitlines():
        found = _ERROR.match(line)
        if found:
            name = Path(found["file"]).stem.removeprefix("handle_")
            errors[name].append((int(found["line"]), found["message"]))
    return errors


def test_right_payloads_type_check(mypy_errors: dict[str, list[tuple[int, str]]]) -> None:
    assert mypy_errors["good"] == []


@pytest.mark.parametrize("name", [name for name in SNIPPETS if name != "good"])
def test_a_wrong_payload_is_a_mypy_error(mypy_errors: dict[str, list[tuple[int, str]]], name: str) -> None:
    source = (_HEADER + SNIPPETS[name]).splitlines()
    marked, code = next((n, text.rpartition("# error: ")[2]) for n, text in enumerate(source, 1) if "# error: " in text)
    errors = mypy_errors[name]
    assert len(errors) == 1, errors
    assert errors[0][0] == marked, errors
    assert errors[0][1].endswith(f"[{code}]"), errors
