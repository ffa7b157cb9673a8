"""Scheduled commands of a service (expiring terms, overdue deadlines, yearly re-checks): run at
start, then daily just after 00:00 in China (Asia/Shanghai) or at a fixed interval.

**Once per service, however many workers run**: each run takes a PostgreSQL advisory lock named
after the service and the timer, on the service's own database, and a worker that finds it
taken skips that run (another worker is running it). The commands must be idempotent too (a
second run the same day records nothing), so a run repeated after a crash is harmless.

A failed run (the database away, or a command reporting failures) is tried again after
``retry`` seconds, not a day later. The clock is the application's, so tests can move it; it is
read again at least every :data:`MAX_SLEEP` seconds, so a wall clock stepped (NTP) while
waiting moves the run with it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import psycopg

from tuoyu_shared.calendar_cn import SHANGHAI
from tuoyu_shared.logs import get_logger

log = get_logger("tuoyu.timers")

DEFAULT_RETRY = 60.0
#: How long after midnight (Asia/Shanghai) the daily run starts: the new day has begun on any
#: clock within that much of ours.
DAY_START_MARGIN = timedelta(seconds=30)
#: The longest single sleep: how late a stepped wall clock is noticed at worst
#: (``TUOYU_TIMER_CLOCK_CHECK`` seconds; the reliability suite's clock jumps use 1).
MAX_SLEEP = float(os.environ.get("TUOYU_TIMER_CLOCK_CHECK", "600"))


def next_run_at(now: datetime, interval: float | None = None,
                margin: timedelta = DAY_START_MARGIN) -> datetime:
    """When a timer runs next after ``now`` (an aware datetime): ``interval`` seconds later
    if given, otherwise at the first ``00:00 + margin`` in Asia/Shanghai strictly after
    ``now``."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("next_run_at needs an aware datetime")
    if interval is not None:
        return now + timedelta(seconds=interval)
    local = now.astimezone(SHANGHAI)
    run = datetime.combine(local.date(), time(), SHANGHAI) + margin
    while run <= local:
        run = datetime.combine(run.date() + timedelta(days=1), time(), SHANGHAI) + margin
    return run


class OncePerService:
    """A session advisory lock per (service, timer) on the service's database."""

    def __init__(self, database_url: str, key: str):
        self.database_url = database_url
        self.key = key

    def run(self, job: Callable[[], Any]) -> tuple[bool, Any]:
        """``(True, result)`` if this worker ran the job, ``(False, None)`` if another
        worker holds the lock (it is running the job right now)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            if not conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                                (self.key,)).fetchone()[0]:
                return False, None
            try:
                return True, job()
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (self.key,))


class Timer:
    """One scheduled job of a service. ``job()`` returns a result; ``failed(result)`` says
    whether to try again after ``retry`` seconds instead of waiting for the next run."""

    def __init__(self, name: str, service: str, database_url: str, job: Callable[[], Any],
                 *, interval: float | None = None, retry: float = DEFAULT_RETRY,
                 clock: Callable[[], datetime] | None = None,
                 margin: timedelta = DAY_START_MARGIN,
                 failed: Callable[[Any], bool] = lambda result: False):
        if (interval is not None and interval <= 0) or retry <= 0:
            raise ValueError("timer interval and retry must be positive seconds")
        self.name = name
        self.job = job
        self.interval = interval
        self.retry = retry
        self.margin = margin
        self.failed = failed
        self.clock = clock or (lambda: datetime.now(UTC))
        self.lock = OncePerService(database_url, f"tuoyu-timer:{service}:{name}")
        self.runs = 0  # runs of this worker
        self.skipped = 0  # runs left to another worker

    def next_run(self, now: datetime) -> datetime:
        return next_run_at(now, self.interval, self.margin)

    def run_once(self) -> Any:
        """Run the job now, if no other worker of the service is running it."""
        ran, result = self.lock.run(self.job)
        if ran:
            self.runs += 1
        else:
            self.skipped += 1
            log.info("timer.skipped", timer=self.name,
                     reason="another worker of the service is running it")
        return result

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                result = self.run_once()
                failed = result is not None and self.failed(result)
            except Exception as e:  # the database is away: try again soon
                log.warning("timer.failed", timer=self.name, error=repr(e),
                            retry_in=self.retry)
                failed = True
            if failed:
                stop.wait(self.retry)
            elif self.interval is not None:
                stop.wait(self.interval)
            else:
                due = self.next_run(self.clock())
                log.info("timer.next_run", timer=self.name, at=due.isoformat())
                self._sleep_until(due, stop)

    def _sleep_until(self, due: datetime, stop: threading.Event) -> None:
        """Sleep until the clock reads ``due`` (or ``stop``), in slices of at most
        :data:`MAX_SLEEP` seconds, never waking for a run before its time."""
        while not stop.is_set():
            remaining = (due - self.clock()).total_seconds()
            if remaining <= 0:
                return
            stop.wait(min(remaining, MAX_SLEEP))
