"""Calendar rules: month ends, month arithmetic, parsing, the snapshot in force."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from streamflow.core.dates import (
    MONTH_TTL,
    add_months,
    month_end,
    parse_date,
    parse_month_end,
    snapshot_for,
    snapshot_in_force,
    snapshot_month_end,
    to_utc,
)
from streamflow.core.errors import InvalidInput, NotFound, NotReady

JAN, FEB, MAR = date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31)


def test_month_arithmetic():
    assert month_end(date(2024, 2, 3)) == FEB
    assert add_months(JAN, 1) == FEB and add_months(FEB, 1) == MAR
    assert add_months(date(2023, 12, 31), 1) == JAN
    assert add_months(MAR, -2) == JAN
    assert add_months(date(2024, 11, 30), 14) == date(2026, 1, 31)


def test_parsing():
    assert parse_date("2024-01-31") == JAN
    assert parse_date(" 2024-01-31\n") == JAN
    assert parse_date(datetime(2024, 1, 31, 12)) == JAN
    with pytest.raises(InvalidInput, match="not a date.*available snapshots: 2024-01-31"):
        parse_date("31/01/2024", available=[JAN])
    with pytest.raises(InvalidInput, match="not a month end.*2024-01-31"):
        parse_month_end("2024-01-15")
    assert parse_month_end("2024-02-29") == FEB
    # a month being written has begun: the current month's end at the latest (a typo'd 2099 is refused)
    assert snapshot_month_end("2024-12-31", today=date(2024, 12, 1)) == date(2024, 12, 31)
    with pytest.raises(InvalidInput, match="2099-12-31 is after the current month \\(2024-12-31\\)"):
        snapshot_month_end("2099-12-31", today=date(2024, 12, 1))
    with pytest.raises(InvalidInput, match="not a month end"):
        snapshot_month_end("2024-01-15", today=date(2024, 12, 1))


def test_to_utc():
    assert to_utc("2024-01-31") == datetime(2024, 1, 31, tzinfo=UTC)
    assert to_utc(JAN) == datetime(2024, 1, 31, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="end 'soon' is not a date"):
        to_utc("soon", "end")


def test_snapshot_in_force():
    dates = [JAN, FEB]
    assert snapshot_for(JAN, dates) == JAN
    assert snapshot_for(date(2024, 2, 15), dates) == JAN  # between two month ends: the earlier
    assert snapshot_for(date(2024, 3, 28), dates) == FEB
    with pytest.raises(NotFound, match="more than a month earlier; available: 2024-01-31, 2024-02-29"):
        snapshot_for(MAR, dates)
    with pytest.raises(NotFound, match="no snapshot at or before"):
        snapshot_for(date(2023, 12, 31), dates)
    with pytest.raises(NotReady):
        snapshot_for(JAN, [])
    # a user's text, read and snapped the same way by every face
    assert snapshot_in_force("2024-02-15", dates) == JAN and snapshot_in_force(FEB, dates) == FEB
    with pytest.raises(InvalidInput, match="train '2024-13-01' is not a date"):
        snapshot_in_force("2024-13-01", dates, "train")


def test_ttl_covers_every_instant_until_the_next_month_end():
    """A month-end row serves every instant before the next month end; after a 31-day month it is
    expired at the next month end itself, and it never reaches the month end after that."""
    one_second = timedelta(seconds=1)
    start = date(2023, 12, 31)
    for _ in range(24):
        nxt, after = add_months(start, 1), add_months(start, 2)
        t0, t1, t2 = (datetime.combine(d, time.min) for d in (start, nxt, after))
        assert t0 + MONTH_TTL >= t1 - one_second
        assert t0 + MONTH_TTL < t2
        if (nxt - start).days == 31:
            assert t0 + MONTH_TTL < t1
        start = nxt


def test_durations_in_words():
    from datetime import timedelta

    from streamflow.core.dates import MONTH_TTL, in_words

    assert in_words(MONTH_TTL) == "31 days"  # not "30 days, 23:59:59"
    assert in_words(timedelta(days=1)) == "1 day" and in_words(timedelta(hours=6)) == "6 hours"
    assert in_words(timedelta(minutes=45)) == "45 minutes" and in_words(None) == "none"
    assert in_words(timedelta(0)) == "none"
