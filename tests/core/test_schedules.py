"""Cron expressions and intervals: parsing, next and latest slots, time zones, DST."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from chute.errors import ConfigurationError
from chute.schedules import Cron, Every

pytestmark = pytest.mark.memory

PARIS = ZoneInfo("Europe/Paris")


def ts(*args: int, tz: ZoneInfo | None = None) -> float:
    return datetime(*args, tzinfo=tz or UTC).timestamp()  # type: ignore[misc]


def at(moment: float, tz: ZoneInfo = PARIS) -> str:
    return datetime.fromtimestamp(moment, tz).strftime("%Y-%m-%d %H:%M %Z")


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", (2026, 5, 1, 10, 7), (2026, 5, 1, 10, 15)),
        ("*/15 * * * *", (2026, 5, 1, 10, 15), (2026, 5, 1, 10, 30)),
        ("0 0 * * *", (2026, 12, 31, 23, 59), (2027, 1, 1, 0, 0)),
        ("0 9 * * mon-fri", (2026, 11, 20, 10, 0), (2026, 11, 23, 9, 0)),  # Fri -> Mon
        ("0 0 29 feb *", (2026, 3, 1, 0, 0), (2028, 2, 29, 0, 0)),
        ("0 12 13 * fri", (2026, 11, 1, 0, 0), (2026, 11, 6, 12, 0)),  # dom OR dow
        ("@monthly", (2026, 1, 15, 0, 0), (2026, 2, 1, 0, 0)),
        ("5,10-12/2 3 * jan-mar 0,7", (2026, 1, 1, 0, 0), (2026, 1, 4, 3, 5)),  # Sundays
    ],
)
def test_next_slot(expression: str, after: tuple[int, ...], expected: tuple[int, ...]) -> None:
    cron = Cron(expression)
    assert cron.next_after(ts(*after)) == ts(*expected)


def test_latest_slot_is_at_or_before() -> None:
    cron = Cron("0 */6 * * *")
    assert cron.latest(ts(2026, 5, 1, 12, 0)) == ts(2026, 5, 1, 12, 0)
    assert cron.latest(ts(2026, 5, 1, 11, 59)) == ts(2026, 5, 1, 6, 0)
    assert cron.latest(ts(2026, 1, 1, 0, 30)) == ts(2026, 1, 1, 0, 0)


def test_wall_clock_times_in_a_time_zone() -> None:
    cron = Cron("0 9 * * *", tz="Europe/Paris")
    winter = cron.next_after(ts(2026, 1, 10, 0, 0))
    summer = cron.next_after(ts(2026, 7, 10, 0, 0))
    assert at(winter) == "2026-01-10 09:00 CET"
    assert at(summer) == "2026-07-10 09:00 CEST"


def test_a_time_skipped_by_dst_does_not_fire_that_day() -> None:
    cron = Cron("30 2 * * *", tz="Europe/Paris")  # 2026-03-29 02:30 does not exist in Paris
    first = cron.next_after(ts(2026, 3, 28, 12, 0))
    assert at(first) == "2026-03-30 02:30 CEST"


def test_a_time_that_occurs_twice_fires_once() -> None:
    cron = Cron("30 2 * * *", tz="Europe/Paris")  # 2026-10-25 02:30 happens twice in Paris
    first = cron.next_after(ts(2026, 10, 24, 12, 0))
    second = cron.next_after(first)
    third = cron.next_after(second)
    assert [at(t) for t in (first, second, third)] == [
        "2026-10-25 02:30 CEST",
        "2026-10-26 02:30 CET",
        "2026-10-27 02:30 CET",
    ]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * *", "has 3 fields"),
        ("61 * * * *", "minute field '61': 61 is outside 0-59"),
        ("* * * foo *", "month field 'foo'"),
        ("*/0 * * * *", "bad step"),
        ("5-1 * * * *", "runs backwards"),
    ],
)
def test_bad_expressions_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Cron(expression)


def test_unknown_zone_and_impossible_dates() -> None:
    with pytest.raises(ConfigurationError, match="unknown time zone"):
        Cron("* * * * *", tz="Mars/Olympus")
    with pytest.raises(ConfigurationError, match="never fires"):
        Cron("0 0 31 2 *").next_after(ts(2026, 1, 1, 0, 0))


def test_intervals_align_to_the_epoch() -> None:
    every = Every(300)
    assert every.next_after(ts(2026, 5, 1, 10, 7)) == ts(2026, 5, 1, 10, 10)
    assert every.next_after(ts(2026, 5, 1, 10, 10)) == ts(2026, 5, 1, 10, 15)
    assert every.latest(ts(2026, 5, 1, 10, 7)) == ts(2026, 5, 1, 10, 5)
    with pytest.raises(ConfigurationError):
        Every(0)
