"""Calendar rules in one place: month ends, month arithmetic, parsing, and the snapshot in force.

Snapshots are stamped at month ends. A date between two month ends is served by the latest
snapshot before it, for up to one month; past that, or before the first snapshot, there is no
snapshot in force and the error lists the dates that exist.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, timedelta

from streamflow.core.errors import InvalidInput, NotFound, NotReady

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Feature views' TTL. The longest gap between two month ends is 31 days: a month-end row is
# valid for every date up to (not including) a month end 31 days later, so a frame for any
# date between two snapshots uses the earlier one, and a row never survives into the month
# end at which the next snapshot is due. (With a missing month a row can serve up to 31 days:
# `snapshot_for` refuses dates more than a month after the latest snapshot.)
MONTH_TTL = timedelta(days=31) - timedelta(seconds=1)


def month_end(d: date) -> date:
    return date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])


def add_months(d: date, n: int) -> date:
    """Month end `n` months after the month of `d` (2024-01-31 + 1 -> 2024-02-29)."""
    m = d.month - 1 + n
    return month_end(date(d.year + m // 12, m % 12 + 1, 1))


def fmt_dates(dates: list[date]) -> str:
    return ", ".join(d.isoformat() for d in dates) or "none (run `streamflow ingest data/seeds`)"


def parse_date(value: str | date | datetime, what: str = "as_of", available: list[date] | None = None) -> date:
    """'2024-01-31' / date / datetime -> date; anything else is InvalidInput naming `what`."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        hint = f"; available snapshots: {fmt_dates(available)}" if available is not None else ""
        shown = str(value).strip()[:40]
        raise InvalidInput(f"{what} {shown!r} is not a date in YYYY-MM-DD form{hint}") from None


ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_date_or_none(text: str) -> date | None:
    """A YYYY-MM-DD cell as a date (any year 0001-9999), None when it is not one."""
    if not ISO_DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def parse_month_end(value: str | date, what: str = "as_of") -> date:
    """A date that must be a month end (snapshots are stamped at month ends)."""
    d = parse_date(value, what)
    if d != month_end(d):
        raise InvalidInput(f"{what} {d} is not a month end; snapshots are stamped at month ends (e.g. {month_end(d)})")
    return d


def snapshot_month_end(value: str | date, what: str = "as_of", today: date | None = None) -> date:
    """The month end a month being written is stamped with: a month end (`parse_month_end`) not after
    the current month's (2099-12-31 is a typo that would become every page's latest month)."""
    d = parse_month_end(value, what)
    now = month_end(today or date.today())
    if d > now:
        raise InvalidInput(f"{what} {d} is after the current month ({now}): a snapshot is of a month that has begun")
    return d


def to_utc(value: str | date | datetime, what: str = "date") -> datetime:
    """'2024-01-31' / date / datetime -> an aware UTC datetime (dates at midnight UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInput(f"{what} {value[:40]!r} is not a date or timestamp (YYYY-MM-DD[THH:MM])") from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def snapshot_for(as_of: date, dates: list[date]) -> date:
    """The snapshot in force at `as_of`: the latest one not after it, less than a month before it."""
    if not dates:
        raise NotReady("no snapshot yet: ingest a month first (`streamflow ingest data/seeds`)")
    before = [d for d in dates if d <= as_of]
    if not before:
        raise NotFound(f"no snapshot at or before as_of={as_of}; available: {fmt_dates(dates)}")
    snap = before[-1]
    if as_of >= add_months(snap, 1):
        raise NotFound(
            f"no snapshot at as_of={as_of}: the latest before it is {snap}, more than a month earlier; "
            f"available: {fmt_dates(dates)}"
        )
    return snap


def snapshot_in_force(value: str | date | datetime, dates: list[date], what: str = "as_of") -> date:
    """A date a user gave (text or a date) read (`parse_date`) and snapped to the snapshot in force at
    it (`snapshot_for`): what every face asking for "an as_of" means by it."""
    return snapshot_for(parse_date(value, what, dates), dates)


DURATION = re.compile(r"\s*(\d{1,4})\s*([dw])\s*")


def parse_days(text: str, what: str = "duration") -> int:
    """'35d' / '5w' -> days (a view's `freshness_sla` tag); anything else is InvalidInput naming `what`."""
    m = DURATION.fullmatch(str(text))
    if not m:
        raise InvalidInput(f"{what} {str(text)[:40]!r} is not a duration such as 35d or 5w")
    return int(m.group(1)) * (7 if m.group(2) == "w" else 1)


def in_words(d: timedelta | None) -> str:
    """A duration as people say it: '31 days' (a TTL one second short of a whole day counts as that
    day: MONTH_TTL reads '31 days'), '6 hours', '45 minutes', 'none' for no TTL."""
    if d is None or d.total_seconds() <= 0:
        return "none"
    seconds = round(d.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        n, rest = divmod(seconds + 1, size)  # the second short of a whole unit rounds up
        if n and rest <= 1:
            return f"{n} {unit}{'s' if n != 1 else ''}"
    days, rest = divmod(seconds, 86400)
    hours = rest // 3600
    return f"{days} day{'s' if days != 1 else ''} {hours} h" if days else f"{seconds} s"
