"""Background work of the credit service, in a plain process:

- ``relay``: publishes its events to RabbitMQ (``credit.events``);
- ``views``: projects its own log into its query tables;
- ``registration``, ``inspection``, ``subsidy``: react to those services' events;
- ``timers``: at start and then each day just after 00:00 in China (Asia/Shanghai, 00:00:30;
  see :func:`next_run_at`), expire the list entries whose term is over and lift the term bans
  that have ended, so a term that ends today is off the public disclosure as the day starts;
  and re-check everyone on a roster whose last completed check is a year old
  (``TUOYU_CREDIT_RECHECK_DAYS``, default 365).
  ``TUOYU_CREDIT_TIMER_INTERVAL`` (seconds), when set, replaces the daily schedule with a
  fixed interval (tests, ops). The commands are idempotent (a second run the same day records
  nothing), so a restart or two workers running them is harmless. A failed run is tried again
  after ``TUOYU_CREDIT_TIMER_RETRY`` seconds (default 60), not a day later.

Run: ``python -m tuoyu_credit.worker`` (``dead-letters``, ``redrive``, ``rebuild VIEW`` for ops;
see :mod:`tuoyu_shared.worker`). The three consumers share a name and a handler, so any of them
lists and re-drives every parked message.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, time, timedelta
from typing import Any

from tuoyu_credit.application import CreditApplication
from tuoyu_credit.reactions import inspection_consumer, registration_consumer, subsidy_consumer
from tuoyu_shared.calendar_cn import SHANGHAI
from tuoyu_shared.context import command_context
from tuoyu_shared.logs import get_logger
from tuoyu_shared.worker import Worker

log = get_logger("tuoyu.credit.timers")

INTERVAL_VAR = "TUOYU_CREDIT_TIMER_INTERVAL"
RETRY_VAR = "TUOYU_CREDIT_TIMER_RETRY"
DEFAULT_RETRY = 60.0
#: How long after midnight (Asia/Shanghai) the daily run starts: the new day has begun on any
#: clock within that much of ours.
DAY_START_MARGIN = timedelta(seconds=30)
#: The longest single sleep: the clock is read again at least this often, so a wall clock
#: stepped (NTP) while waiting moves the run with it.
MAX_SLEEP = 600.0


def next_run_at(now: datetime, interval: float | None = None,
                margin: timedelta = DAY_START_MARGIN) -> datetime:
    """When the timers run next after ``now`` (an aware datetime): ``interval`` seconds later
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


class Timers:
    """The daily commands of the credit service, run at start and then just after each
    midnight in China, or at a fixed ``interval`` (seconds) when one is given."""

    def __init__(self, app: CreditApplication, interval: float | None = None,
                 retry: float = DEFAULT_RETRY,
                 clock: Callable[[], datetime] | None = None,
                 margin: timedelta = DAY_START_MARGIN):
        if (interval is not None and interval <= 0) or retry <= 0:
            raise ValueError("timer interval and retry must be positive seconds")
        self.app = app
        self.interval = interval
        self.retry = retry
        self.margin = margin
        self.clock = clock or (lambda: app.clock())
        self.runs = 0

    @classmethod
    def from_env(cls, app: CreditApplication,
                 env: Mapping[str, str] | None = None) -> Timers:
        env = os.environ if env is None else env
        interval = env.get(INTERVAL_VAR) or None
        return cls(app, float(interval) if interval is not None else None,
                   float(env.get(RETRY_VAR) or DEFAULT_RETRY))

    def next_run(self, now: datetime) -> datetime:
        return next_run_at(now, self.interval, self.margin)

    def run_once(self) -> dict[str, Any]:
        with command_context(actor="credit-timer", department="credit"):
            expired = self.app.expire_listings()
            lifted = self.app.lift_expired_bans()
            yearly = self.app.request_yearly_checks()
        self.runs += 1
        log.info("timers.ran", today=expired["today"], expired=len(expired["expired"]),
                 lifted=len(lifted["lifted"]), rechecked=len(yearly["checked"]),
                 failed=len(expired["failed"]) + len(lifted["failed"]) + len(yearly["failed"]))
        return {"expire_listings": expired, "lift_expired_bans": lifted,
                "request_yearly_checks": yearly}

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                result = self.run_once()
                failed = any(part["failed"] for part in result.values())
            except Exception as e:  # the database is away: try again soon
                log.warning("timers.failed", error=repr(e), retry_in=self.retry)
                failed = True
            if failed:
                stop.wait(self.retry)
            elif self.interval is not None:
                stop.wait(self.interval)
            else:
                due = self.next_run(self.clock())
                log.info("timers.next_run", at=due.isoformat())
                self._sleep_until(due, stop)

    def _sleep_until(self, due: datetime, stop: threading.Event) -> None:
        """Sleep until the clock reads ``due`` (or ``stop``), in slices of at most
        :data:`MAX_SLEEP` seconds, never waking for a run before its time."""
        while not stop.is_set():
            remaining = (due - self.clock()).total_seconds()
            if remaining <= 0:
                return
            stop.wait(min(remaining, MAX_SLEEP))


WORKER = Worker(
    service="credit",
    application=CreditApplication,
    reactions=lambda app: {"registration": registration_consumer(app),
                           "inspection": inspection_consumer(app),
                           "subsidy": subsidy_consumer(app)},
    timers=lambda app: {"timers": Timers.from_env(app).run},
)

main = WORKER.main

if __name__ == "__main__":
    WORKER.run()
