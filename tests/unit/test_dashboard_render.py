"""The dashboard's pure parts: the Jinja2 filters (counts, durations, times, charts, rates, JSON), where a login
may send the browser next (``safe_next``), and the signed session cookies and CSRF tokens (``Sessions``)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from jinja2 import UndefinedError
from markupsafe import Markup

from backfill.admin.security import SESSION_SECONDS, Sessions
from backfill.dashboard.login import safe_next
from backfill.dashboard.render import CHART_HEIGHT, CHART_WIDTH, chart, count, duration, environment, rate, when

TOKEN = "t" * 24
INJECTED = '"><script>alert(1)</script>'
SVG = "{http://www.w3.org/2000/svg}"


# --- filters ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "capped", "shown"),
    [
        (0, False, "0"),
        (999, False, "999"),
        (12_345, False, "12,345"),
        (10_000, True, "10,000+"),
        (1_234_567, False, "1,234,567"),
        (None, False, "-"),
        (None, True, "-"),
    ],
)
def test_count_groups_thousands_and_marks_a_capped_count(value: int | None, capped: bool, shown: str) -> None:
    assert count(value, capped) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "-"),
        (0, "0s"),
        (0.9, "0s"),
        (-5, "0s"),  # a clock a little ahead is no negative age
        (45, "45s"),
        (59, "59s"),
        (59.99, "59s"),
        (60, "1m 0s"),
        (200, "3m 20s"),
        (3599, "59m 59s"),
        (3600, "1h 0m"),
        (7500, "2h 5m"),
        (86_399, "23h 59m"),
        (86_400, "1d 0h"),
        (3 * 86_400 + 4 * 3600 + 59, "3d 4h"),
        (400 * 86_400, "400d 0h"),
    ],
)
def test_duration_at_each_boundary(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown


@pytest.mark.parametrize(("share", "shown"), [(0.0, "0.0%"), (0.1234, "12.3%"), (0.5, "50.0%"), (1.0, "100.0%")])
def test_rate_is_a_percentage(share: float, shown: str) -> None:
    assert rate(share) == shown


def test_when_is_a_time_element_and_escapes_what_it_is_given() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    shown = when(moment)
    assert isinstance(shown, Markup)
    assert shown == '<time datetime="2024-05-06T07:08:09+00:00">2024-05-06T07:08:09+00:00</time>'
    other_zone = when(datetime(2024, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2))))
    assert 'datetime="2024-05-06T09:08:09+02:00"' in other_zone
    assert when(None) == "-" and isinstance(when(None), Markup)

    injected = when(INJECTED)
    assert "<script>" not in injected and '"><' not in injected
    assert injected == (
        '<time datetime="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;'
        "</time>"
    )
    rendered = environment(read_only=False).from_string("<p>{{ value | when }}</p>").render(value=INJECTED)
    assert rendered == f"<p>{injected}</p>"  # escaped once, not twice


def _minutes(*pairs: tuple[int, int]) -> list[dict[str, Any]]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return [{"minute": start + timedelta(minutes=i), "succeeded": s, "failed": f} for i, (s, f) in enumerate(pairs)]


def _bars(svg: str) -> tuple[ET.Element, list[ET.Element]]:
    root = ET.fromstring(svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))
    return root, root.findall(f"{SVG}rect")


def test_chart_draws_stacked_bars_and_summarises_them() -> None:
    shown = chart(_minutes((2, 0), (1, 1), (0, 0), (0, 3)), "Lane fast")
    assert isinstance(shown, Markup)
    root, bars = _bars(str(shown))
    assert root.get("role") == "img" and root.get("viewBox") == f"0 0 {CHART_WIDTH} {CHART_HEIGHT}"
    summary = "Lane fast: 3 succeeded and 4 failed in the last hour, at most 3 a minute"
    assert root.get("aria-label") == summary and root.findtext(f"{SVG}title") == summary
    drawn = [(bar.get("class"), round(float(bar.get("x", ""))), round(float(bar.get("height", "")))) for bar in bars]
    width, height = CHART_WIDTH // 4, CHART_HEIGHT  # 45 and 36: whole numbers at these proportions
    expected = [("ok", 0, height * 2 // 3), ("ok", width, height // 3), ("failed", width, height // 3)]
    assert drawn == [*expected, ("failed", 3 * width, height)]  # nothing drawn for the empty minute
    for bar in bars:  # every bar inside the picture, failed stacked on top of succeeded
        top, tall = float(bar.get("y", "")), float(bar.get("height", ""))
        assert top >= -0.05 and top + tall <= CHART_HEIGHT + 0.05
        assert float(bar.get("width", "")) == pytest.approx(CHART_WIDTH / 4 * 0.8, abs=0.05)
    ok_second, failed_second = bars[1], bars[2]
    assert float(failed_second.get("y", "")) + float(failed_second.get("height", "")) == pytest.approx(
        float(ok_second.get("y", "")), abs=0.05
    )


def test_chart_of_quiet_minutes_draws_no_bar() -> None:
    root, bars = _bars(str(chart(_minutes(*[(0, 0)] * 60), "Lane bulk")))
    assert bars == []
    assert root.get("aria-label") == "Lane bulk: 0 succeeded and 0 failed in the last hour, at most 0 a minute"
    assert chart([], "Lane bulk") == ""


def test_chart_escapes_its_label_and_formats_large_counts() -> None:
    shown = str(chart(_minutes((12_000, 0), (0, 1)), f"Lane {INJECTED}"))
    assert "<script>" not in shown
    root, _ = _bars(shown)
    assert (
        root.get("aria-label")
        == f"Lane {INJECTED}: 12,000 succeeded and 1 failed in the last hour, at most 12,000 a minute"
    )


def test_the_environment_autoescapes_and_refuses_undefined_names() -> None:
    env = environment(read_only=False)
    assert env.from_string("{{ v }}").render(v=INJECTED) == "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
    assert env.from_string("{{ v | count(true) }}").render(v=10_000) == "10,000+"
    assert env.from_string("{{ v | pretty_json }}").render(v={"b": INJECTED, "a": "é"}) == (
        "{\n  &#34;a&#34;: &#34;é&#34;,\n  &#34;b&#34;: &#34;\\&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&#34;\n}"
    )
    with pytest.raises(UndefinedError):
        env.from_string("{{ missing.field }}").render()


# --- safe_next ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("root", "target", "destination"),
    [
        ("", None, "/"),
        ("", "", "/"),
        ("", "/", "/"),
        ("", "/jobs?state=waiting", "/jobs?state=waiting"),
        ("/backfill", "/jobs", "/backfill/jobs"),
        ("/backfill", None, "/backfill/"),
        ("", "//evil.example", "/"),
        ("", "//evil.example/jobs", "/"),
        ("/backfill", "//evil.example", "/backfill/"),
        ("", "https://evil.example/", "/"),
        ("", "http:evil.example", "/"),
        ("", "javascript:alert(1)", "/"),
        ("", "/\\evil.example", "/"),
        ("", "\\\\evil.example", "/"),
        ("", "/jobs\\..\\x", "/"),
        ("", "jobs", "/"),
    ],
)
def test_safe_next_stays_on_the_dashboard(root: str, target: str | None, destination: str) -> None:
    assert safe_next(root, target) == destination


# --- Sessions -----------------------------------------------------------------------------------------------------


def test_a_session_is_valid_until_it_expires() -> None:
    sessions = Sessions(TOKEN)
    now = 1_700_000_000.0
    cookie = sessions.issue(now=now)
    expires, nonce, mac = cookie.split(".")
    assert int(expires) == now + SESSION_SECONDS and nonce and len(mac) == 64
    assert sessions.valid(cookie, now=now) and sessions.valid(cookie, now=now + SESSION_SECONDS - 1)
    assert not sessions.valid(cookie, now=now + SESSION_SECONDS)
    assert not sessions.valid(cookie)  # issued in 2023: long expired
    assert sessions.valid(sessions.issue())
    assert not sessions.valid(sessions.issue(now=time.time() - SESSION_SECONDS - 1))
    assert Sessions(TOKEN).valid(cookie, now=now)  # nothing kept server-side: any process with the token


def test_a_tampered_or_foreign_session_is_invalid() -> None:
    sessions = Sessions(TOKEN)
    cookie = sessions.issue()
    expires, nonce, mac = cookie.split(".")
    flipped = mac[:-1] + ("0" if mac[-1] != "0" else "1")
    for forged in (
        f"{expires}.{nonce}.{flipped}",
        f"{int(expires) + 3600}.{nonce}.{mac}",  # a longer life
        f"{expires}.{nonce}A.{mac}",
        f"{expires}.{nonce}.{mac.upper()}",
        f"{expires}.{nonce}",
        f"{expires}..{mac}",
        f".{nonce}.{mac}",
        f"-{expires}.{nonce}.{mac}",
        "",
        "..",
        "not-a-session",
    ):
        assert not sessions.valid(forged), forged
    assert not Sessions("another-token-0123456789").valid(cookie)
    assert not sessions.valid(Sessions(TOKEN + "x").issue())


def test_each_session_has_its_own_csrf_token() -> None:
    sessions = Sessions(TOKEN)
    first, second = sessions.issue(), sessions.issue()
    assert first != second
    token = sessions.csrf_token(first)
    assert token == sessions.csrf_token(first) == Sessions(TOKEN).csrf_token(first)  # stable, derived
    assert token != sessions.csrf_token(second)
    assert token != Sessions("another-token-0123456789").csrf_token(first)
    assert token not in first and TOKEN not in first and TOKEN not in token

    assert sessions.csrf_matches(first, token)
    for wrong in ("", " ", token[:-1], token + "0", token.upper(), sessions.csrf_token(second), first):
        assert not sessions.csrf_matches(first, wrong), wrong
