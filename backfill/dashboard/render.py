"""The dashboard's Jinja2 environment: templates from the package, autoescaped, and the filters they use to show
figures (capped counts, durations, times, the throughput charts)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from backfill.jsonable import to_jsonable

CHART_WIDTH, CHART_HEIGHT = 180, 36


def environment(*, read_only: bool) -> Environment:
    """The templates of one dashboard; ``read_only`` is global, so the action macros (``ui``) render nothing
    in a read-only dashboard, in a whole page and in a live fragment alike."""
    env = Environment(
        loader=PackageLoader("backfill.dashboard", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,  # a misspelt field fails the page's test, not silently renders empty
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(count=count, duration=duration, when=when, chart=chart, pretty_json=pretty_json, rate=rate)
    env.globals["read_only"] = read_only
    # The macros as a global module rather than imported by each page: a live fragment is one block rendered
    # alone, and a block does not see its page's imports.
    env.globals["ui"] = env.get_template("macros.html").module
    return env


def count(value: int | None, capped: bool = False) -> str:
    """``12,345``; a count that reached its cap is a lower bound: ``10,000+``."""
    if value is None:
        return "-"
    return f"{value:,}+" if capped else f"{value:,}"


def duration(seconds: float | None) -> str:
    """``45s``, ``3m 20s``, ``2h 5m``, ``3d 4h``; ``-`` for none."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def rate(share: float) -> str:
    return f"{share * 100:.1f}%"


def when(value: datetime | str | None) -> Markup:
    """A ``<time>`` the script shows as "3 min ago" and as an absolute time in the viewer's zone; ISO 8601 UTC
    until then (and without the script)."""
    if value is None:
        return Markup("-")
    if isinstance(value, datetime):
        value = value.isoformat()
    return Markup('<time datetime="{0}">{0}</time>').format(value)


def chart(minutes: Sequence[Mapping[str, Any]], label: str) -> Markup:
    """Attempts ended per minute as stacked bars (succeeded, failed on top), as inline SVG with a text summary
    for screen readers; drawn on the server, so it needs no chart library and updates with the live fragment."""
    if not minutes:
        return Markup("")
    peak = max((m["succeeded"] + m["failed"] for m in minutes), default=0)
    scale = peak or 1  # an idle hour draws no bar (and must not divide by zero)
    bar = CHART_WIDTH / len(minutes)
    parts = []
    for i, minute in enumerate(minutes):
        x = i * bar
        ok_height = CHART_HEIGHT * minute["succeeded"] / scale
        failed_height = CHART_HEIGHT * minute["failed"] / scale
        if ok_height:
            y = CHART_HEIGHT - ok_height
            parts.append(f'<rect class="ok" x="{x:.1f}" y="{y:.1f}" width="{bar * 0.8:.1f}" height="{ok_height:.1f}"/>')
        if failed_height:
            y = CHART_HEIGHT - ok_height - failed_height
            parts.append(
                f'<rect class="failed" x="{x:.1f}" y="{y:.1f}" width="{bar * 0.8:.1f}" height="{failed_height:.1f}"/>'
            )
    succeeded = sum(m["succeeded"] for m in minutes)
    failed = sum(m["failed"] for m in minutes)
    summary = f"{label}: {succeeded:,} succeeded and {failed:,} failed in the last hour, at most {peak:,} a minute"
    return Markup(
        '<svg class="chart" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}" aria-label="{s}">'
        "<title>{s}</title>{bars}</svg>"
    ).format(w=CHART_WIDTH, h=CHART_HEIGHT, s=summary, bars=Markup("".join(parts)))


def pretty_json(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, sort_keys=True, ensure_ascii=False)
