"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright) against a real runner serving
it on a real port and a real PostgreSQL: what an operator sees and does, click by click.

Each test waits on what the page shows or on the database, never a fixed time: Playwright's ``expect`` retries
until the page shows what it should (the live regions refresh every 5 s) or its timeout passes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import asyncpg
from playwright.async_api import Page, expect

from backfill.client.async_client import BackfillClient
from tests.browser.conftest import TOKEN, ServeFactory, Watched, off_loopback_address, snapshot
from tests.support.waiting import wait_for

JOBS = "graphile_worker._private_jobs"
OpenPage = Callable[..., Any]


async def ready(page: Page, path: str) -> None:
    """Go to ``path`` and wait for the dashboard's script to have started."""
    await page.goto(path)
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")


def lane_figure(page: Page, lane: str, figure: str) -> Any:
    return page.locator(f'[data-lane="{lane}"] [data-figure="{figure}"]')


async def test_the_overview_shows_the_right_counts_and_refreshes_them_live(
    serve: ServeFactory, open_page: OpenPage, pool: asyncpg.Pool[Any]
) -> None:
    served = await serve()
    client = BackfillClient(pool)
    for i in range(3):  # no runner knows this task: it stays ready
        await client.enqueue_fast("shop.unknown", {"n": i})
    for i in range(4):
        await client.enqueue_bulk("shop.ok", {"name": f"later{i}"}, delay=3600)
    await client.enqueue_bulk("shop.hang", {"name": "long"})
    await client.enqueue_bulk("shop.unknown", {}, queue="tenant-7")
    await wait_for(lambda: _true("long" in served.handlers.started))

    watched: Watched = await open_page(served.base_url)
    page = watched.page
    await ready(page, "/")
    await expect(lane_figure(page, "fast", "ready")).to_have_text("3")
    await expect(lane_figure(page, "fast", "slots")).to_have_text("2")
    await expect(lane_figure(page, "bulk", "slots")).to_have_text("2")
    await expect(lane_figure(page, "bulk", "scheduled")).to_have_text("4")
    await expect(lane_figure(page, "bulk", "busy")).to_have_text("1")
    await expect(lane_figure(page, "bulk", "ready")).to_have_text("1")  # tenant-7's job
    await expect(page.get_by_role("row", name=re.compile(r"tenant-7"))).to_contain_text("1")
    await expect(page.locator('[data-figure="alive"]')).to_have_text("2")  # one worker per lane

    # Live: new work shows without a reload (the marker set on this window survives only if it is not reloaded).
    await page.evaluate("window.notReloaded = true")
    for i in range(2):
        await client.enqueue_fast("shop.unknown", {"n": 10 + i})
    await expect(lane_figure(page, "fast", "ready")).to_have_text("5")
    assert await page.evaluate("window.notReloaded === true")
    assert int(await page.locator("body").get_attribute("data-refreshed") or 0) >= 1
    served.handlers.release.set()
    watched.assert_clean()


async def test_a_filter_narrows_the_job_list(serve: ServeFactory, open_page: OpenPage, pool: asyncpg.Pool[Any]) -> None:
    served = await serve()
    client = BackfillClient(pool)
    wanted = [await client.enqueue_bulk("shop.a", {}, delay=3600) for _ in range(2)]
    await client.enqueue_bulk("shop.b", {}, delay=3600)
    fast = await client.enqueue_fast("shop.a", {}, delay=3600)

    watched: Watched = await open_page(served.base_url)
    page = watched.page
    await ready(page, "/jobs")
    await expect(page.locator("tr[data-job]")).to_have_count(4)
    await snapshot(page, "jobs")
    await page.get_by_label("Task").fill("shop.a")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"/jobs\?task=shop\.a$"))
    await expect(page.locator("tr[data-job]")).to_have_count(3)
    await expect(page.get_by_label("Task")).to_have_value("shop.a")  # the form shows the filter in force
    await page.get_by_label("Lane").select_option("bulk")
    await page.get_by_role("button", name="Filter").click()
    shown = [int(await row.get_attribute("data-job") or 0) for row in await page.locator("tr[data-job]").all()]
    assert shown == [job.id for job in wanted] and fast.id not in shown

    # Stable pages by id, the filter kept from page to page.
    await ready(page, "/jobs?task=shop.a&limit=2")
    first_page = [int(await row.get_attribute("data-job") or 0) for row in await page.locator("tr[data-job]").all()]
    await page.get_by_role("link", name="Next page").click()
    await expect(page.locator("tr[data-job]")).to_have_count(1)
    second_page = [int(await row.get_attribute("data-job") or 0) for row in await page.locator("tr[data-job]").all()]
    assert first_page + second_page == sorted([*(job.id for job in wanted), fast.id])
    await expect(page.get_by_role("link", name="Next page")).to_have_count(0)
    await page.get_by_role("link", name="First page").click()
    await expect(page.locator("tr[data-job]")).to_have_count(2)
    watched.assert_clean()


async def test_a_job_page_shows_its_error_history_with_the_traceback(
    serve: ServeFactory, open_page: OpenPage, pool: asyncpg.Pool[Any]
) -> None:
    served = await serve()
    job = await BackfillClient(pool).enqueue_bulk("shop.broken", {"order": 41}, max_attempts=5)
    await wait_for(
        lambda: pool.fetchval("select count(*) >= 1 from graphile_worker.backfill_job_errors where job_id = $1", job.id)
    )
    await pool.execute(f"update {JOBS} set run_at = now() + interval '1 hour' where id = $1", job.id)  # no retry now

    watched: Watched = await open_page(served.base_url)
    page = watched.page
    await ready(page, f"/jobs/{job.id}")
    history = page.locator("ol.errors li").first
    await expect(history).to_contain_text("Attempt 1")
    await expect(history).to_contain_text("ValueError")
    await expect(history).to_contain_text("card declined for order 41")
    traceback = history.locator("details pre.traceback")
    await expect(traceback).to_be_hidden()
    await history.locator("details summary").click()
    await expect(traceback).to_be_visible()
    await expect(traceback).to_contain_text('raise ValueError(f"card declined')
    # The payload only on request.
    await expect(page.locator("pre.payload")).to_have_count(0)
    await snapshot(page, "job")
    await page.get_by_role("link", name="Show the payload").click()
    await expect(page.locator("pre.payload")).to_contain_text('"order": 41')
    watched.assert_clean()


async def test_pause_then_resume_a_lane_with_the_keyboard_and_the_mouse(
    serve: ServeFactory, open_page: OpenPage, pool: asyncpg.Pool[Any]
) -> None:
    served = await serve()
    watched: Watched = await open_page(served.base_url)
    page = watched.page
    await ready(page, "/")
    fast_card = page.locator('[data-lane="fast"]')

    # By keyboard: tab to the fast lane's Pause button, press Enter, and confirm.
    pause = fast_card.get_by_role("button", name="Pause")
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await pause.evaluate("button => button === document.activeElement"):
            break
    else:
        raise AssertionError("the fast lane's Pause button cannot be reached with Tab")
    # A live refresh replaces the lane cards; the keyboard user's place is kept.
    refreshed = await page.locator("body").get_attribute("data-refreshed")
    assert refreshed is not None
    await expect(page.locator("body")).not_to_have_attribute("data-refreshed", refreshed)
    assert await pause.evaluate("button => button === document.activeElement")
    await page.keyboard.press("Enter")
    await expect(fast_card.locator(".badge.paused")).to_be_visible()
    await expect(page.locator("#status")).to_have_text("Paused lane fast")
    assert watched.dialogs and "Pause lane fast?" in watched.dialogs[-1]
    paused = await pool.fetch("select kind, name from graphile_worker.backfill_pauses")
    assert [(row["kind"], row["name"]) for row in paused] == [("lane", "fast")]
    await snapshot(page, "overview-paused")

    # Nothing of the fast lane starts while it is paused; resuming lets it run.
    await BackfillClient(pool).enqueue_fast("shop.ok", {"name": "held"})
    await fast_card.get_by_role("button", name="Resume").click()
    await expect(fast_card.locator(".badge.paused")).to_have_count(0)
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_pauses") == 0
    await wait_for(lambda: _true("held" in served.handlers.started))
    audit = await pool.fetch("select action from graphile_worker.backfill_audit order by id")
    assert [row["action"] for row in audit] == ["pause", "resume"]
    watched.assert_clean()


async def test_cancel_a_running_job_from_its_page(
    serve: ServeFactory, open_page: OpenPage, pool: asyncpg.Pool[Any]
) -> None:
    served = await serve()
    job = await BackfillClient(pool).enqueue_bulk("shop.hang", {"name": "stuck"})
    await wait_for(lambda: _true("stuck" in served.handlers.started))

    watched: Watched = await open_page(served.base_url)
    page = watched.page
    await ready(page, f"/jobs/{job.id}")
    await expect(page.locator('[data-figure="state"]')).to_have_text("running")
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.locator("#status")).to_have_text(f"Cancel requested for job {job.id}")
    await wait_for(lambda: _true("stuck" in served.handlers.cancelled))
    await wait_for(lambda: pool.fetchval(f"select count(*) = 0 from {JOBS} where id = $1", job.id))
    # The page follows: the job is gone, and its cancellation is shown.
    await expect(page.locator("#job")).to_contain_text("no longer in the queue")
    await expect(page.locator("#job")).to_contain_text("Cancellation cancelled")
    watched.assert_clean()


async def test_requeue_from_the_dead_letter_queue_after_a_preview(
    serve: ServeFactory, open_page: OpenPage, pool: asyncpg.Pool[Any]
) -> None:
    served = await serve()
    client = BackfillClient(pool)
    for order in (1, 2):
        await client.enqueue_bulk("shop.broken", {"order": order}, max_attempts=1)
    await wait_for(lambda: pool.fetchval("select count(*) = 2 from graphile_worker.backfill_dlq where state = 'dead'"))
    first = await pool.fetchval("select min(id) from graphile_worker.backfill_dlq")

    watched: Watched = await open_page(served.base_url)
    page = watched.page
    await ready(page, "/dlq")
    await expect(page.get_by_role("table", name="By task")).to_contain_text("shop.broken")
    await expect(page.get_by_role("table", name="By exception type")).to_contain_text("ValueError")
    await expect(page.locator("tr[data-entry]")).to_have_count(2)
    await snapshot(page, "dlq")
    await page.get_by_label(f"Select entry {first}").check()
    await page.get_by_role("button", name="Requeue selected").click()
    await expect(page.locator("#status")).to_have_text("Done.")
    assert watched.dialogs[-1].startswith("Requeue 1 selected")  # the dry run's count, confirmed before acting
    # The entry became a job again, which ran and succeeded this time: the entry has nothing more to say.
    await wait_for(lambda: _true("order 1" in served.handlers.started))
    await wait_for(lambda: pool.fetchval("select count(*) = 0 from graphile_worker.backfill_dlq where id = $1", first))
    await expect(page.locator(f'tr[data-entry="{first}"]')).to_have_count(0)
    await expect(page.locator("tr[data-entry]")).to_have_count(1)
    audit = await pool.fetch("select action, count, dry_run from graphile_worker.backfill_audit order by id")
    assert [tuple(row) for row in audit] == [("dlq.requeue", 1, True), ("dlq.requeue", 1, False)]

    # Declining the confirmation changes nothing.
    watched.decline_dialogs = True
    await page.get_by_role("button", name="Delete selected").click()  # nothing selected: refused on the page
    await expect(page.locator("#status")).to_have_text("Select at least one row first.")
    second = await pool.fetchval("select id from graphile_worker.backfill_dlq")
    await ready(page, f"/dlq/{second}")
    await snapshot(page, "dlq-entry")
    await page.get_by_role("button", name="Delete").click()
    await expect(page.locator("#status")).to_have_text("Nothing was changed.")
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_dlq where id = $1", second) == 1
    watched.assert_clean()


async def test_read_only_mode_shows_no_action_and_refuses_one(
    serve: ServeFactory, open_page: OpenPage, pool: asyncpg.Pool[Any]
) -> None:
    served = await serve(read_only=True)
    job = await BackfillClient(pool).enqueue_bulk("shop.ok", {}, delay=3600)
    watched: Watched = await open_page(served.base_url)
    page = watched.page
    for path in ("/", "/jobs", f"/jobs/{job.id}", "/dlq", "/queues"):
        await ready(page, path)
        await expect(page.locator(".badge", has_text="read-only")).to_be_visible()
        await expect(page.locator("[data-action]")).to_have_count(0)
    # A request made anyway, from the dashboard's own page, is refused by the server.
    answer = await page.evaluate(
        """async () => {
            const response = await fetch("/api/pauses", {method: "POST", headers: {"Content-Type": "application/json"},
                                                         body: JSON.stringify({kind: "lane", name: "fast"})});
            return [response.status, (await response.json()).error.message];
        }"""
    )
    assert answer[0] == 403 and "read-only" in answer[1]
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_pauses") == 0
    assert watched.errors == ["Failed to load resource: the server responded with a status of 403 (Forbidden)"]


async def test_off_loopback_a_page_needs_the_token(
    serve: ServeFactory, open_page: OpenPage, pool: asyncpg.Pool[Any]
) -> None:
    address = off_loopback_address()
    served = await serve(host=address, token=TOKEN)
    job = await BackfillClient(pool).enqueue_bulk("shop.secret", {"card": "4111"}, delay=3600)
    watched: Watched = await open_page(served.base_url)
    page = watched.page

    await page.goto(f"/jobs/{job.id}")
    await expect(page).to_have_url(re.compile(rf"/login\?next=%2Fjobs%2F{job.id}$"))
    assert "shop.secret" not in await page.content()
    await snapshot(page, "login")
    refused = await page.request.get("/api/jobs")
    assert refused.status == 401

    await page.get_by_label("Admin token").fill("not-the-token-at-all")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not this dashboard's")
    assert await page.context.cookies() == []
    assert watched.errors == ["Failed to load resource: the server responded with a status of 401 (Unauthorized)"]
    watched.errors.clear()

    await page.get_by_label("Admin token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{served.base_url}/jobs/{job.id}")
    await expect(page.locator("dl.details")).to_contain_text("shop.secret")
    [cookie] = await page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]

    # Signed in, an action works (the page sends its CSRF token); signing out ends the session.
    await page.get_by_role("button", name="Retry now").click()
    await expect(page.locator("#status")).to_have_text(f"Job {job.id} is due now")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/login$"))
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))

    # A session that ends while a page is open (expired, or the token changed) sends the page to sign in again
    # at its next refresh, rather than leaving stale figures up.
    await page.get_by_label("Admin token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await ready(page, "/workers")
    await page.context.clear_cookies()
    await expect(page).to_have_url(re.compile(r"/login\?next=%2Fworkers$"))
    assert watched.errors == ["Failed to load resource: the server responded with a status of 401 (Unauthorized)"]


async def test_without_a_token_a_page_is_refused_off_loopback(serve: ServeFactory, open_page: OpenPage) -> None:
    """The settings refuse to serve off loopback without a token; an application that mounts the API on every
    address anyway still gets the guard's rule: only loopback viewers."""
    address = off_loopback_address()
    served = await serve()  # on 127.0.0.1, no token
    from backfill.admin import AdminApi
    from backfill.admin.server import AdminServer

    api = AdminApi(served.runner.settings.database_url)
    wide = AdminServer(api, host="0.0.0.0", port=0)  # every address: the point of the test
    await wide.start()
    try:
        watched: Watched = await open_page(f"http://{address}:{wide.port}")
        response = await watched.page.goto("/")
        assert response is not None and response.status == 403
        assert "loopback" in await watched.page.content()
        local: Watched = await open_page(f"http://127.0.0.1:{wide.port}")
        await ready(local.page, "/")
    finally:
        await wide.stop()


async def test_a_page_of_another_site_cannot_act(
    serve: ServeFactory, open_page: OpenPage, pool: asyncpg.Pool[Any]
) -> None:
    served = await serve()
    watched: Watched = await open_page(served.base_url)
    page = watched.page
    # Another origin's page (served by the browser itself) posting to the dashboard, as a form and as a fetch.
    hostile = f"""<!doctype html><form id="f" method="post" action="{served.base_url}/api/pauses" enctype="text/plain">
        <input name='{{"kind":"lane","name":"fast","x":"' value='"}}'></form>"""
    await page.route("http://elsewhere.test/", lambda route: route.fulfill(body=hostile, content_type="text/html"))
    await page.goto("http://elsewhere.test/")
    fetched = await page.evaluate(
        f"""async () => {{
            try {{
                await fetch("{served.base_url}/api/pauses", {{method: "POST", credentials: "include",
                    headers: {{"Content-Type": "application/json"}}, body: '{{"kind": "lane", "name": "fast"}}'}});
                return "sent";
            }} catch (error) {{ return "blocked"; }}
        }}"""
    )
    assert fetched == "blocked"  # the preflight is never granted
    async with page.expect_navigation():
        await page.evaluate("document.getElementById('f').submit()")
    assert "cross-site request refused" in await page.content()
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_pauses") == 0


async def test_every_page_reads_on_a_phone_and_labels_its_fields(
    serve: ServeFactory, open_page: OpenPage, pool: asyncpg.Pool[Any]
) -> None:
    served = await serve()
    client = BackfillClient(pool)
    job = await client.enqueue_bulk("shop.broken", {"order": 7}, max_attempts=1)
    await wait_for(lambda: pool.fetchval("select count(*) = 1 from graphile_worker.backfill_dlq"))
    entry = await pool.fetchval("select id from graphile_worker.backfill_dlq")
    await client.enqueue_bulk("shop.ok", {"name": "later"}, delay=3600, queue="tenant-1")
    for i in range(12):
        await client.enqueue_fast("shop.unknown", {"n": i}, queue=f"tenant-{i % 3}")
    # The runner records the broken job's failed attempt in this minute's throughput (it flushes every 5 s).
    await wait_for(
        lambda: pool.fetchval(
            "select coalesce(sum(failed), 0) = 1 from graphile_worker.backfill_throughput where lane = 'bulk'"
        )
    )
    # An hour of work before it, for the charts: per minute 2 to 58 minutes ago (inside the hour even if the
    # minute turns before the page is drawn, and apart from the runner's own row), fast 40-100 done, bulk 5-25
    # done, and a few failures in bulk every ten minutes.
    await pool.execute(
        """insert into graphile_worker.backfill_throughput (minute, lane, succeeded, failed)
           select date_trunc('minute', now()) - make_interval(mins => m), lane,
                  case lane when 'fast' then 40 + (m * 7) % 60 else 5 + (m * 3) % 20 end,
                  case when lane = 'bulk' and m % 10 = 3 then 4 else 0 end
             from generate_series(2, 58) as m, unnest(array['fast', 'bulk']) as lane"""
    )
    phone: Watched = await open_page(served.base_url, width=390, height=844)
    desktop: Watched = await open_page(served.base_url)
    for path, name in (
        ("/", "overview"),
        ("/jobs", "jobs"),
        (f"/dlq/{entry}", "dlq-entry"),
        ("/dlq", "dlq"),
        ("/workers", "workers"),
        ("/queues", "queues"),
        ("/cron", "cron"),
    ):
        await ready(phone.page, path)
        wide = await phone.page.evaluate(
            """() => [...document.body.querySelectorAll("*")]
                   .filter(element => element.getBoundingClientRect().right > window.innerWidth
                                      && !element.closest(".scroll"))
                   .map(element => `${element.tagName}.${element.className}`)"""
        )
        assert wide == [], f"{path} is wider than a phone's screen: {wide}"
        unlabelled = await phone.page.evaluate(
            """() => [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
                   .filter(field => field.labels.length === 0 && !field.getAttribute("aria-label"))
                   .map(field => field.outerHTML)"""
        )
        assert unlabelled == [], f"{path}: {unlabelled}"
        if name == "overview":
            await snapshot(phone.page, "phone-overview")
        if name in ("overview", "workers", "queues", "cron"):
            await ready(desktop.page, path)
            await snapshot(desktop.page, name)
    # The charts draw the hour: a bar per minute with work, failures stacked in red, summed for screen readers.
    await ready(phone.page, "/")
    fast_chart, bulk_chart = (
        phone.page.locator('[data-lane="fast"] svg.chart'),
        phone.page.locator('[data-lane="bulk"] svg.chart'),
    )
    assert await fast_chart.locator("rect.ok").count() == 57 and await fast_chart.locator("rect.failed").count() == 0
    assert await bulk_chart.locator("rect.failed").count() == 6 + 1  # the seeded minutes, and the runner's
    fast_done = sum(40 + (m * 7) % 60 for m in range(2, 59))
    await expect(fast_chart).to_have_attribute("aria-label", re.compile(rf"{fast_done:,} succeeded and 0 failed"))
    assert job.id > 0
    phone.assert_clean()
    desktop.assert_clean()


async def _true(value: bool) -> bool:
    return value
