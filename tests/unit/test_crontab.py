"""Crontab parsing and matching: Graphile's line format, its errors, fill durations, time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backfill.core.errors import ConfigurationError
from backfill.core.upkeep.crontab import CronItem, CrontabError, cron_item, load_crontab_file, parse_crontab, parse_fill

# 2024-01-01 is a Monday.
MONDAY = datetime(2024, 1, 1, tzinfo=UTC)


def _at(day: int, hour: int = 0, minute: int = 0, month: int = 1) -> datetime:
    return datetime(2024, month, day, hour, minute, tzinfo=UTC)


def test_parses_the_graphile_example_with_every_option() -> None:
    text = (
        "0 4 * * * send_report ?id=daily-report&fill=2d&max=3&queue=reports&jobKey=daily"
        '&jobKeyMode=preserve_run_at&priority=-5 {"to": "ops", "n": [1, 2]}'
    )
    [item] = parse_crontab(text)
    assert item == CronItem(
        task="send_report",
        pattern="0 4 * * *",
        identifier="daily-report",
        payload={"to": "ops", "n": [1, 2]},
        fill=timedelta(days=2),
        max_attempts=3,
        queue_name="reports",
        job_key="daily",
        job_key_mode="preserve_run_at",
        priority=-5,
    )
    assert item.timezone is None


def test_defaults_follow_graphile() -> None:
    [item] = parse_crontab("* * * * * tick")
    assert (item.identifier, item.payload, item.fill) == ("tick", {}, timedelta())
    assert (item.max_attempts, item.queue_name, item.job_key, item.job_key_mode, item.priority) == (None,) * 5
    [keyed] = parse_crontab("* * * * * tick ?jobKey=k")
    assert keyed.job_key_mode == "replace"  # Graphile's default once a key is given


def test_skips_blank_lines_and_comments_and_keeps_order() -> None:
    text = "\n# a comment\n   \n*/5 * * * * first\n  # indented comment\n0 0 1 1 * second ?id=other\r\n"
    items = parse_crontab(text)
    assert [(i.task, i.identifier, i.pattern) for i in items] == [
        ("first", "first", "*/5 * * * *"),
        ("second", "other", "0 0 1 1 *"),
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("* * * * * t ?fil=1d", "unknown option 'fil' (known: fill, id, jobKey, jobKeyMode, max, priority, queue, tz)"),
        ("60 * * * * t", "minute field '60': 60 is outside 0-59"),
        ("* 24 * * * t", "hour field '24': 24 is outside 0-23"),
        ("* * 0 * * t", "day of month field '0': 0 is outside 1-31"),
        ("* * * 13 * t", "month field '13': 13 is outside 1-12"),
        ("* * * * 8 t", "day of week field '8': 8 is outside 0-7"),
        ("5-3 * * * * t", "minute field '5-3': range '5-3' ends before it starts"),
        ("*/0 * * * * t", "minute field '*/0': step must be at least 1"),
        ("1-/2 * * * * t", "minute field '1-/2': '1-/2' is not a number, a range or a */step"),
        ("* * * * t", "expected 5 time fields (digits, * / , -) followed by a task name"),
        ("@daily t", "expected 5 time fields (digits, * / , -) followed by a task name"),
        ("* * * * * 9task", "expected 'task ?options {json payload}' after the time fields, got '9task'"),
        ("* * * * * t {1: 2}", "payload is not valid JSON"),
        ("* * * * * t [1]", "expected 'task ?options {json payload}'"),
        ("* * * * * t ?fill=2x", "fill '2x' is not a duration like 1w2d3h4m5s (units s, m, h, d, w)"),
        ("* * * * * t ?max=0", "max must be an integer between 1 and 32767, got 0"),
        ("* * * * * t ?max=40000", "max must be an integer between 1 and 32767, got 40000"),
        ("* * * * * t ?max=two", "max 'two' is not an integer"),
        ("* * * * * t ?priority=99999", "priority must be an integer between -32768 and 32767, got 99999"),
        ("* * * * * t ?queue=a%20b", "queue 'a b' must hold only letters, digits and _:-"),
        ("* * * * * t ?id=9x", "id '9x' must start with a letter or _"),
        ("* * * * * t ?jobKeyMode=sometimes", "jobKeyMode 'sometimes' must be one of replace, preserve_run_at"),
        ("* * * * * t ?tz=Mars/Olympus", "tz 'Mars/Olympus' is not a known IANA time zone"),
        ("* * * * * t ?id=a&id=b", "option 'id' is given more than once"),
    ],
)
def test_rejects_a_malformed_line_with_its_number_and_reason(line: str, reason: str) -> None:
    with pytest.raises(CrontabError) as caught:
        parse_crontab(f"# header\n\n{line}\n", source="app/crontab")
    assert caught.value.line == 3
    assert caught.value.source == "app/crontab"
    assert str(caught.value).startswith("app/crontab line 3: ")
    assert reason in str(caught.value)
    assert isinstance(caught.value, ConfigurationError)


def test_a_duplicate_identifier_names_both_lines() -> None:
    with pytest.raises(CrontabError) as caught:
        parse_crontab("0 * * * * a ?id=x\n0 * * * * b\n5 * * * * c ?id=x")
    assert caught.value.line == 3
    assert str(caught.value) == (
        "crontab line 3: identifier 'x' is already used by line 1; add ?id=... to tell them apart"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5s", timedelta(seconds=5)),
        ("90m", timedelta(minutes=90)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        ("2d2d", timedelta(days=4)),
    ],
)
def test_fill_durations(text: str, expected: timedelta) -> None:
    assert parse_fill(text) == expected


def test_matches_steps_ranges_lists() -> None:
    [item] = parse_crontab("*/15,7 9-17/4 * * * t")
    hits = [m.strftime("%H:%M") for m in item.occurrences(_at(1, 0), _at(2, 0))]
    assert hits[:5] == ["09:00", "09:07", "09:15", "09:30", "09:45"]
    assert {h[:2] for h in hits} == {"09", "13", "17"}
    assert len(hits) == 15


def test_day_of_week_seven_is_sunday() -> None:
    [item] = parse_crontab("0 0 * * 7 t")
    assert item.matches(_at(7)) and not item.matches(_at(8))


def test_day_of_month_and_day_of_week_follow_graphile() -> None:
    # Both restricted: either one is enough.
    [either] = parse_crontab("0 0 15 * 1 t")
    assert either.matches(_at(8)) and either.matches(_at(15)) and not either.matches(_at(16))
    # A field listing every value is unrestricted (Vixie cron and croniter would OR these).
    [full_dow] = parse_crontab("0 0 2 * 0-6 t")
    assert full_dow.matches(_at(2)) and not full_dow.matches(_at(1))
    [full_dom] = parse_crontab("0 0 1-31 * 1 t")
    assert full_dom.matches(_at(8)) and not full_dom.matches(_at(9))


def test_matching_ignores_seconds_and_requires_an_aware_datetime() -> None:
    [item] = parse_crontab("30 12 * * * t")
    assert item.matches(_at(3, 12, 30) + timedelta(seconds=42))
    with pytest.raises(ValueError, match="timezone-aware"):
        item.matches(datetime(2024, 1, 3, 12, 30))


def test_tz_evaluates_the_pattern_in_that_zone() -> None:
    [item] = parse_crontab("0 9 * * * report ?tz=Europe/Paris")
    assert item.timezone == "Europe/Paris"
    assert item.matches(_at(15, 8))  # winter: UTC+1
    assert item.matches(_at(15, 7, month=7))  # summer: UTC+2
    assert not item.matches(_at(15, 9))
    # A moment given in another zone is the same instant.
    assert item.matches(_at(15, 8).astimezone(datetime.now().astimezone().tzinfo))


def test_tz_across_the_spring_forward_gap_and_the_autumn_repeat() -> None:
    [item] = parse_crontab("30 2 * * * t ?tz=Europe/Paris")
    assert list(item.occurrences(_at(31, month=3), _at(31, 6, month=3))) == []  # 02:30 did not exist that night
    autumn = list(item.occurrences(datetime(2024, 10, 27, tzinfo=UTC), datetime(2024, 10, 27, 6, tzinfo=UTC)))
    assert autumn == [_at(27, 0, 30, month=10), _at(27, 1, 30, month=10)]  # the wall clock read 02:30 twice


def test_occurrences_are_half_open_and_start_at_the_next_whole_minute() -> None:
    [item] = parse_crontab("* * * * * t")
    minutes = list(item.occurrences(MONDAY + timedelta(seconds=10), MONDAY + timedelta(minutes=3)))
    assert minutes == [MONDAY + timedelta(minutes=1), MONDAY + timedelta(minutes=2)]


def test_cron_item_from_python_validates_like_the_parser() -> None:
    built = cron_item("0 4 * * *", "send_report", fill="1h", payload={"a": 1}, timezone="UTC")
    assert (built.identifier, built.fill, built.timezone) == ("send_report", timedelta(hours=1), "UTC")
    with pytest.raises(ConfigurationError, match=r"cron item 'x': max must be an integer between 1 and 32767"):
        CronItem(task="t", pattern="* * * * *", identifier="x", max_attempts=0)
    with pytest.raises(ConfigurationError, match=r"cron item 't': minute field '61': 61 is outside 0-59"):
        CronItem(task="t", pattern="61 * * * *")
    with pytest.raises(ConfigurationError, match="must have 5 fields"):
        CronItem(task="t", pattern="* * * *")
    with pytest.raises(ConfigurationError, match="payload must be a JSON object"):
        CronItem(task="t", pattern="* * * * *", payload=[1])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="fill 'soon' is not a duration"):
        cron_item("* * * * *", "t", fill="soon")


def test_cron_item_keeps_its_own_copy_of_the_payload() -> None:
    payload = {"a": 1}
    item = CronItem(task="t", pattern="* * * * *", payload=payload)
    payload["a"] = 2
    assert item.payload == {"a": 1}


def test_load_crontab_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "crontab"
    path.write_text("0 * * * * hourly\n* * * * * bad ?nope=1\n")
    with pytest.raises(CrontabError, match=rf"^{path} line 2: unknown option 'nope'"):
        load_crontab_file(path)
    path.write_text("0 * * * * hourly\n")
    assert [i.task for i in load_crontab_file(path)] == ["hourly"]
    missing = tmp_path / "absent"
    with pytest.raises(ConfigurationError, match=f"crontab file '{missing}' does not exist"):
        load_crontab_file(missing)
