"""The ops files at work, without containers: the compose demo's web app and a runner, configured as
ops/docker/compose.yaml configures them, scraped by a real Prometheus (Debian's ``prometheus`` package, which
.ci/run installs) with ops/prometheus/alerts.yml loaded; then every query of ops/grafana/backfill.json runs there.

Without the ``prometheus`` binary the test skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.ops import ALERTS, COMPOSE, DASHBOARD, load_yaml_file, required_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_APP = REPO_ROOT / "ops" / "docker" / "app"
# Grafana's variables, as the dashboard's queries use them: every lane and task, and a range of 4 scrapes (what
# Grafana's $__rate_interval is at the 1 s scrape interval used here: the larger of 4 scrapes and one step).
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
# Panels with nothing to show while the demo runs normally: it uses no named queue and loses no lease.
QUIET_PANELS = {"Serial queues: ready jobs", "Serial queues: oldest ready job age", "Lost leases, by lane and action"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@asynccontextmanager
async def process(argv: list[str], env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``argv`` running, its output in ``log``, until the block ends: then SIGTERM, and SIGKILL after 15 s."""
    with log.open("wb") as output:
        started = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=log.parent, stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output
        )
        try:
            yield started
        finally:
            if started.returncode is None:
                started.terminate()
                try:
                    await asyncio.wait_for(started.wait(), 15)
                except TimeoutError:
                    started.kill()
                    await started.wait()


async def wait_until(
    check: Callable[[], bool], what: str, running: dict[Path, asyncio.subprocess.Process], within: float = 60.0
) -> None:
    """Until ``check()`` holds; fails, with the end of each process's log, if a process exits or time runs out."""
    try:
        async with asyncio.timeout(within):
            while all(started.returncode is None for started in running.values()):
                try:
                    if await asyncio.to_thread(check):
                        return
                except OSError:  # not listening yet
                    pass
                await asyncio.sleep(0.5)
    except TimeoutError:
        pass
    logs = "\n".join(f"== {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in running)
    pytest.fail(f"{what}\n{logs}")


async def test_a_runner_and_the_web_app_scraped_by_prometheus_answer_every_dashboard_query(
    database_url: str, tmp_path: Path
) -> None:
    prometheus = required_tool("prometheus")
    services = load_yaml_file(COMPOSE)["services"]
    runner_port, web_port, prometheus_port = free_port(), free_port(), free_port()
    base = {key: value for key, value in os.environ.items() if not key.startswith(("BACKFILL_", "DEMO_"))}
    base |= {"PYTHONPATH": str(DEMO_APP), "DATABASE_URL": database_url}
    runner_env = base | services["runner"]["environment"] | {
        "DATABASE_URL": database_url,
        "BACKFILL_METRICS_PORT": str(runner_port),
        "BACKFILL_METRICS_HOST": "127.0.0.1",
        "BACKFILL_QUEUE_STATS_INTERVAL_SECONDS": "1",  # the gauges refreshed at every scrape
        "BACKFILL_SHUTDOWN_GRACE_SECONDS": "5",
        "DEMO_REPORT_FAILURE_RATE": "0.5",  # failures, retries and dead letters within seconds
    }  # fmt: skip
    web_env = base | services["web"]["environment"] | {"DATABASE_URL": database_url, "DEMO_ORDERS_PER_SECOND": "20"}
    web_command = services["web"]["command"]
    web_argv = [sys.executable, "-m", *web_command[:2], "--host", "127.0.0.1", "--port", str(web_port)]
    config = tmp_path / "prometheus.yml"
    config.write_text(  # JSON is YAML
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {"job_name": "backfill-runner", "static_configs": [{"targets": [f"127.0.0.1:{runner_port}"]}]},
                    {"job_name": "backfill-web", "static_configs": [{"targets": [f"127.0.0.1:{web_port}"]}]},
                ],
            }
        ),
        encoding="utf-8",
    )
    api = f"http://127.0.0.1:{prometheus_port}/api/v1"

    def query(expr: str) -> list[dict[str, Any]]:
        answer = fetch_json(f"{api}/query?" + urllib.parse.urlencode({"query": expr}))
        assert answer["status"] == "success", f"{expr}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    prometheus_argv = [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                       f"--web.listen-address=127.0.0.1:{prometheus_port}"]  # fmt: skip
    commands = {
        tmp_path / "runner.log": ([sys.executable, "-m", "backfill", "run"], runner_env),
        tmp_path / "web.log": (web_argv, web_env),
        tmp_path / "prometheus.log": (prometheus_argv, dict(os.environ)),
    }
    async with AsyncExitStack() as stack:
        running = {
            log: await stack.enter_async_context(process(argv, env, log)) for log, (argv, env) in commands.items()
        }

        def scraped() -> bool:
            targets = fetch_json(f"{api}/targets")["data"]["activeTargets"]
            return len(targets) == 2 and all(target["health"] == "up" for target in targets)

        await wait_until(scraped, "Prometheus did not scrape the runner and the web app", running)

        def post_order(body: bytes) -> tuple[int, Any]:
            request = urllib.request.Request(f"http://127.0.0.1:{web_port}/orders", data=body, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, json.load(response)
            except urllib.error.HTTPError as error:
                return error.code, json.load(error)

        status, placed = await asyncio.to_thread(post_order, b'{"email": "ada@example.com"}')
        assert status == 202 and set(placed) == {"order_id", "receipt_job", "report_job"}
        assert await asyncio.to_thread(post_order, b"not json") == (400, {"error": "the body is not JSON"})

        def enough_data() -> bool:
            # Both tasks' jobs have run, and been scraped 4 times since: rates and quantiles have data.
            tasks = query("count by (task) (count_over_time(backfill_jobs_succeeded_total[5s]) >= 4)")
            return len(tasks) == 2

        await wait_until(enough_data, "the jobs the web app enqueued did not run", running, within=90)

        board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
        empty = set()
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = _VARIABLE.sub(lambda match: "4s" if match[1].startswith("__") else ".*", target["expr"])
                if not await asyncio.to_thread(query, expr):
                    empty.add(panel["title"])
        assert empty == QUIET_PANELS

        def label_values(label: str, metric: str) -> set[str]:
            return set(fetch_json(f"{api}/label/{label}/values?" + urllib.parse.urlencode({"match[]": metric}))["data"])

        assert await asyncio.to_thread(label_values, "lane", "backfill_lane_slots") == {"fast", "bulk"}
        tasks = await asyncio.to_thread(label_values, "task", "backfill_jobs_started_total")
        assert tasks == {"demo.send_receipt", "demo.build_report"}

        groups = (await asyncio.to_thread(fetch_json, f"{api}/rules"))["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        expected = [rule["alert"] for group in load_yaml_file(ALERTS)["groups"] for rule in group["rules"]]
        assert [rule["name"] for rule in rules] == expected
        assert [rule for rule in rules if rule["health"] != "ok"] == []
