"""When the credit timers run: just after each midnight in China (Asia/Shanghai), so a term that
ends today is off the lists within a minute of the day starting, not up to a day later; or at
a fixed interval when ``TUOYU_CREDIT_TIMER_INTERVAL`` is set (tests, ops)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tuoyu_credit.worker import DAY_START_MARGIN, next_run_at

CST = timezone(timedelta(hours=8))


def cst(*args: int) -> datetime:
    return datetime(*args, tzinfo=CST)


@pytest.mark.parametrize("now, expected", [
    (cst(2025, 3, 3, 10, 0), cst(2025, 3, 4, 0, 0, 30)),  # mid-morning: the next midnight
    (cst(2025, 3, 3, 23, 59, 59), cst(2025, 3, 4, 0, 0, 30)),
    (cst(2025, 3, 4, 0, 0, 0), cst(2025, 3, 4, 0, 0, 30)),  # midnight: just after it
    (cst(2025, 3, 4, 0, 0, 30), cst(2025, 3, 5, 0, 0, 30)),  # strictly after now
    (cst(2025, 3, 4, 0, 5), cst(2025, 3, 5, 0, 0, 30)),
    (cst(2025, 12, 31, 23, 0), cst(2026, 1, 1, 0, 0, 30)),  # the year turns
    (cst(2028, 2, 28, 12, 0), cst(2028, 2, 29, 0, 0, 30)),  # a leap day
    # Given in UTC: 15:59 UTC is 23:59 in Shanghai, 16:00 UTC already the next day there.
    (datetime(2025, 3, 3, 15, 59, tzinfo=UTC), cst(2025, 3, 4, 0, 0, 30)),
    (datetime(2025, 3, 3, 16, 0, 10, tzinfo=UTC), cst(2025, 3, 4, 0, 0, 30)),
    (datetime(2025, 3, 3, 16, 1, tzinfo=UTC), cst(2025, 3, 5, 0, 0, 30)),
])
def test_daily_runs_are_just_after_midnight_in_shanghai(now, expected):
    assert DAY_START_MARGIN == timedelta(seconds=30)
    assert next_run_at(now) == expected
    assert next_run_at(now) > now


def test_the_next_run_is_at_most_a_day_away():
    now = cst(2025, 3, 3, 0, 0)
    for minute in range(0, 24 * 60, 7):
        t = now + timedelta(minutes=minute)
        gap = next_run_at(t) - t
        assert timedelta(0) < gap <= timedelta(days=1)


def test_an_interval_overrides_the_daily_schedule():
    now = cst(2025, 3, 3, 10, 0)
    assert next_run_at(now, interval=3600) == now + timedelta(hours=1)
    assert next_run_at(now, interval=0.2) == now + timedelta(seconds=0.2)


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError):
        next_run_at(datetime(2025, 3, 3, 10, 0))
