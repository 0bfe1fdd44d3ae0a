"""One endpoint for several worker processes: a supervisor's ``/metrics``, ``/healthz`` and ``/readyz``, made
from what its processes' own endpoints answer.

Each worker process serves its own endpoint on a loopback port the supervisor gave it. At each request the
supervisor asks them all (in parallel, each bounded by ``timeout``) and answers:

* ``/metrics``: their pages merged (:func:`backfill.metrics.exposition.merge_pages`), plus the supervisor's
  own series (processes running, restarts);
* ``/healthz``: 200 unless the supervisor's loop is stuck or a process says its own loop is (503, or no answer
  in time). A process that is starting or being restarted does not serve yet and is not a liveness failure:
  the supervisor is handling it, and restarting the container would not help;
* ``/readyz``: 200 when every process is running and answers 200 on its own ``/readyz``.

Reasons name the process by its number (1..N), never a URL or an error message from elsewhere.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from backfill.metrics.exposition import merge_pages

Check = Callable[[], tuple[bool, str]]


@dataclass(frozen=True)
class WorkerEndpoint:
    """Worker process ``number`` (1..N) and the loopback port it serves on; ``port`` is None while it is not
    running (waiting to be restarted)."""

    number: int
    port: int | None


@dataclass(frozen=True)
class _Answer:
    status: int | None  # None: no answer (not listening yet, or not in time)
    body: str


class ProcessesEndpoint:
    """The answers of a supervisor's endpoint. ``endpoints()`` returns the processes as they are now; it is
    called from the server's threads."""

    def __init__(
        self,
        endpoints: Callable[[], Sequence[WorkerEndpoint]],
        *,
        own_metrics: Callable[[], str] = str,
        liveness: Check | None = None,
        timeout: float = 2.0,
    ) -> None:
        self._endpoints = endpoints
        self._own_metrics = own_metrics
        self._liveness = liveness
        self.timeout = timeout

    def metrics(self) -> str:
        answers = self._ask_all("/metrics")
        pages = [answer.body for _endpoint, answer in answers if answer.status == 200]
        return merge_pages([*pages, self._own_metrics()])

    def healthz(self) -> tuple[bool, str]:
        if self._liveness is not None:
            ok, reason = self._liveness()
            if not ok:
                return False, f"supervisor: {reason}"
        problems = [
            f"worker process {endpoint.number}: {_first_line(answer)}"
            for endpoint, answer in self._ask_all("/healthz")
            if (endpoint.port is not None and answer.status not in (200, None)) or _timed_out(answer)
        ]
        return (not problems, "; ".join(problems) or "ok")

    def readyz(self) -> tuple[bool, str]:
        problems = []
        for endpoint, answer in self._ask_all("/readyz"):
            if endpoint.port is None:
                problems.append(f"worker process {endpoint.number}: not running (restarting)")
            elif answer.status != 200:
                problems.append(f"worker process {endpoint.number}: {_first_line(answer)}")
        return (not problems, "; ".join(problems) or "ok")

    def _ask_all(self, path: str) -> list[tuple[WorkerEndpoint, _Answer]]:
        endpoints = list(self._endpoints())
        if not endpoints:
            return []
        with ThreadPoolExecutor(max_workers=min(len(endpoints), 8), thread_name_prefix="backfill-scrape") as pool:
            answers = list(pool.map(lambda endpoint: self._ask(endpoint, path), endpoints))
        return list(zip(endpoints, answers, strict=True))

    def _ask(self, endpoint: WorkerEndpoint, path: str) -> _Answer:
        if endpoint.port is None:
            return _Answer(None, "not running")
        url = f"http://127.0.0.1:{endpoint.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                return _Answer(int(response.status), response.read().decode(errors="replace"))
        except urllib.error.HTTPError as error:  # 503 and its reason
            return _Answer(error.code, error.read().decode(errors="replace"))
        except TimeoutError:
            return _Answer(None, _NO_ANSWER_IN_TIME)
        except OSError as error:
            if isinstance(error.__cause__ or getattr(error, "reason", None), TimeoutError):
                return _Answer(None, _NO_ANSWER_IN_TIME)
            return _Answer(None, "not serving yet")  # refused: starting up, or just restarted


_NO_ANSWER_IN_TIME = "no answer in time"


def _timed_out(answer: _Answer) -> bool:
    # A process that listens but does not answer is stuck (its server thread answers even when its loop is
    # blocked, so this is rarer still): a liveness failure, unlike a refused connection.
    return answer.status is None and answer.body == _NO_ANSWER_IN_TIME


def _first_line(answer: _Answer) -> str:
    line = answer.body.strip().splitlines()[0] if answer.body.strip() else ""
    return line[:200] or f"status {answer.status}"
