"""When periodic tasks fire: cron expressions in a time zone, and fixed intervals.

A schedule maps a moment to the next and the previous *slot*, as Unix timestamps. Every worker
computes the same slots, so a slot is a name all of them agree on; the scheduler then claims
each slot once in the store.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chute.errors import ConfigurationError

__all__ = ["Cron", "Every", "Schedule"]


class Schedule(Protocol):
    """Slots as Unix timestamps."""

    def next_after(self, moment: float) -> float:
        """The first slot strictly after ``moment``."""
        ...

    def latest(self, moment: float) -> float:
        """The last slot at or before ``moment``."""
        ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Every:
    """A slot every ``seconds``, aligned to the Unix epoch (so every worker agrees).

    ``Every(60)`` fires at :00 of every minute, ``Every(3600)`` at the top of every hour (UTC).
    """

    seconds: float

    def __post_init__(self) -> None:
        if not (self.seconds > 0 and math.isfinite(self.seconds)):
            raise ConfigurationError(f"an interval must be > 0 seconds, got {self.seconds!r}")

    def latest(self, moment: float) -> float:
        return math.floor(moment / self.seconds) * self.seconds

    def next_after(self, moment: float) -> float:
        slot = self.latest(moment) + self.seconds
        return slot if slot > moment else slot + self.seconds

    def describe(self) -> str:
        return f"every {self.seconds:g} s"


_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
)}  # fmt: skip
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NO_NAMES: dict[str, int] = {}
_FIELDS: list[tuple[str, int, int, dict[str, int]]] = [
    ("minute", 0, 59, _NO_NAMES),
    ("hour", 0, 23, _NO_NAMES),
    ("day of month", 1, 31, _NO_NAMES),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
]


def _parse_field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    def number(token: str) -> int:
        token = token.lower()
        if token in names:
            return names[token]
        if not token.isdigit():
            raise ValueError(f"{token!r} is not a number")
        value = int(token)
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}-{high}")
        return value

    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"bad step {step_text!r}")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            start, end = number(first), number(last)
            if start > end:
                raise ValueError(f"range {body!r} runs backwards")
        else:
            start = number(body)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return values


class Cron:
    """A five-field cron expression (``minute hour day-of-month month day-of-week``).

    Supports ``*``, lists, ranges, steps, month and weekday names, and the macros
    ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``. When both day fields are
    restricted, a day matches if either does (as in Vixie cron). Times are wall-clock times in
    ``tz``: a time skipped by a daylight-saving jump does not fire that day, and a time that
    occurs twice fires once.

    Raises:
        ConfigurationError: the expression or the time zone is invalid; the message says which
            field and why.
    """

    def __init__(self, expression: str, tz: str | tzinfo = "UTC") -> None:
        self.expression = expression
        fields = _MACROS.get(expression.strip().lower(), expression).split()
        if len(fields) != 5:
            raise ConfigurationError(
                f"cron expression {expression!r} has {len(fields)} fields; expected 5 "
                "(minute hour day-of-month month day-of-week)"
            )
        parsed: list[set[int]] = []
        for text, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
            try:
                parsed.append(_parse_field(text, name, low, high, names))
            except ValueError as exc:
                raise ConfigurationError(
                    f"cron expression {expression!r}, {name} field {text!r}: {exc}"
                ) from None
        self.minutes, self.hours, self.days, self.months, weekdays = parsed
        self.weekdays = {d % 7 for d in weekdays}
        self.any_day = fields[2] == "*"
        self.any_weekday = fields[4] == "*"
        if isinstance(tz, str):
            try:
                tz = ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigurationError(f"unknown time zone {tz!r}") from None
        self.tz = tz

    def describe(self) -> str:
        return f"cron {self.expression!r} ({self.tz})"

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def _wall_times(self, start: datetime, forward: bool) -> Iterator[datetime]:
        """Matching naive wall-clock minutes from ``start`` (inclusive), in one direction."""
        hours = sorted(self.hours, reverse=not forward)
        minutes = sorted(self.minutes, reverse=not forward)
        step = timedelta(days=1 if forward else -1)
        day = start.date()
        for offset in range(366 * 8):  # leap years and Feb 29 patterns included
            if self._day_matches(day):
                for h in hours:
                    if offset == 0 and (h < start.hour if forward else h > start.hour):
                        continue
                    for m in minutes:
                        if (
                            offset == 0
                            and h == start.hour
                            and (m < start.minute if forward else m > start.minute)
                        ):
                            continue
                        yield datetime(day.year, day.month, day.day, h, m)
            day += step

    def _real(self, wall: datetime) -> float | None:
        """The timestamp of a wall-clock time, or ``None`` if the time does not exist."""
        aware = wall.replace(tzinfo=self.tz, fold=0)
        back = aware.astimezone(UTC).astimezone(self.tz).replace(tzinfo=None)
        return aware.timestamp() if back == wall else None

    def next_after(self, moment: float) -> float:
        local = datetime.fromtimestamp(moment, self.tz).replace(tzinfo=None)
        start = local.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for wall in self._wall_times(start, forward=True):
            ts = self._real(wall)
            if ts is not None and ts > moment:
                return ts
        raise ConfigurationError(f"cron expression {self.expression!r} never fires")

    def latest(self, moment: float) -> float:
        local = datetime.fromtimestamp(moment, self.tz).replace(tzinfo=None)
        start = local.replace(second=0, microsecond=0)
        for wall in self._wall_times(start, forward=False):
            ts = self._real(wall)
            if ts is not None and ts <= moment:
                return ts
        raise ConfigurationError(f"cron expression {self.expression!r} never fires")
