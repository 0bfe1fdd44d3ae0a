"""Fixtures of the dashboard's browser tests: Debian's chromium driven by Playwright, a real WorkerRunner serving
the dashboard on a real port, a real PostgreSQL.

The browser is the system's (``.ci/run`` installs Debian's ``chromium``; Playwright downloads nothing). Without it
the tests are skipped on a developer's machine and fail in CI (``CI=true``), where it must be there.
``SCREENSHOTS_DIR=<folder>`` saves a screenshot of each page the tests visit there (the README's images
come from ``docs/images/dashboard``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, ConsoleMessage, Dialog, Page, async_playwright, expect

from backfill.core import SchemaName, TaskRegistry
from backfill.migrations import migrate_all
from backfill.runner import WorkerRunner
from tests.support.admin import runner_settings

SCHEMA = SchemaName("graphile_worker")
TOKEN = "browser-test-token-0123456789"
# As the machine's notes advise for a sandboxed root: no sandbox, no GPU, and none of Chromium's own background
# connections (this machine's network refuses them, and they would only slow the start).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXPECT_TIMEOUT_MS = 15_000  # a live region refreshes every 5 s: long enough for two refreshes on a slow machine

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


def chromium_path() -> str:
    found = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        message = f"no chromium at {found}: install Debian's chromium (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def off_loopback_address() -> str:
    """An IPv4 address of this machine that is not loopback, for the tests of what a remote viewer gets."""
    try:
        shown = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        shown = ""
    for line in shown.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    message = "this machine has no non-loopback IPv4 address to serve on"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


class Handlers:
    """What the runner's tasks saw: which started, which were cancelled, which orders were declined; ``release``
    ends the hanging ones."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: set[str] = set()
        self.cancelled: set[str] = set()
        self.declined: set[Any] = set()

    def registry(self) -> TaskRegistry:
        registry = TaskRegistry()

        @registry.task("shop.ok")
        async def ok(payload: Any) -> None:
            self.started.add(str(payload.get("name")))

        @registry.task("shop.broken")
        async def broken(payload: Any) -> None:
            order = payload.get("order")
            if order not in self.declined:  # the first attempt of an order fails; a requeued one goes through
                self.declined.add(order)
                raise ValueError(f"card declined for order {order}")
            self.started.add(f"order {order}")

        @registry.task("shop.hang")
        async def hang(payload: Any) -> None:
            self.started.add(str(payload.get("name")))
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled.add(str(payload.get("name")))
                raise

        return registry


@dataclass
class Served:
    """A runner serving the dashboard, and where."""

    runner: WorkerRunner
    base_url: str
    handlers: Handlers


ServeFactory = Callable[..., Any]


@pytest.fixture
async def migrated(database_url: str, pool: asyncpg.Pool[Any]) -> str:
    await migrate_all(pool, SCHEMA)
    return database_url


@pytest.fixture
async def serve(migrated: str) -> AsyncIterator[ServeFactory]:
    """``await serve(host=..., token=..., read_only=...)``: a runner serving the dashboard on a free port."""
    runners: list[WorkerRunner] = []

    async def start(*, host: str = "127.0.0.1", token: str | None = None, read_only: bool = False) -> Served:
        handlers = Handlers()
        settings = runner_settings(
            migrated,
            bulk_queue_concurrency=2,
            admin_port=0,
            admin_host=host,
            admin_token=token,
            admin_read_only=read_only,
        )
        runner = WorkerRunner(settings, tasks=handlers.registry())
        await runner.__aenter__()
        runners.append(runner)
        assert runner.admin_server is not None
        return Served(runner, f"http://{host}:{runner.admin_server.port}", handlers)

    yield start
    for runner in reversed(runners):
        await runner.__aexit__(None, None, None)


@dataclass
class Watched:
    """A page, with what it printed to its console as errors (a CSP violation shows there) and the dialogs it
    opened (each accepted, as a person confirming would)."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    decline_dialogs: bool = False

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
def open_page(browser: Browser) -> Callable[..., Any]:
    """``await open_page(base_url, viewport=...)``: a page in a fresh context (no cookies), watched."""

    async def opened(base_url: str, *, width: int = 1280, height: int = 900) -> Watched:
        context = await browser.new_context(base_url=base_url, viewport={"width": width, "height": height})
        page = await context.new_page()
        watched = Watched(page)

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                watched.errors.append(message.text)

        async def on_dialog(dialog: Dialog) -> None:
            watched.dialogs.append(dialog.message)
            await (dialog.dismiss() if watched.decline_dialogs else dialog.accept())

        page.on("console", on_console)
        page.on("pageerror", lambda error: watched.errors.append(str(error)))
        page.on("dialog", on_dialog)
        return watched

    return opened


async def snapshot(page: Page, name: str) -> None:
    """Save a screenshot of the page as ``<name>.png`` when SCREENSHOTS_DIR names a folder."""
    folder = os.environ.get("SCREENSHOTS_DIR")
    if folder:  # Playwright makes the folder
        await page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)
