"""Background work of the credit service, in a plain process:

- ``relay``: publishes its events to RabbitMQ (``credit.events``);
- ``views``: projects its own log into its query tables;
- ``registration``, ``inspection``, ``subsidy``: react to those services' events;
- ``timers``: at start and then each day just after 00:00 in China (Asia/Shanghai, 00:00:30;
  see :func:`tuoyu_shared.timers.next_run_at`), expire the list entries whose term is over
  and lift the term bans that have ended, so a term that ends today is off the public
  disclosure as the day starts; and re-check everyone on a roster whose last completed check
  is a year old (``TUOYU_CREDIT_RECHECK_DAYS``, default 365).
  ``TUOYU_CREDIT_TIMER_INTERVAL`` (seconds), when set, replaces the daily schedule with a
  fixed interval (tests, ops). One worker of the service runs them at a time (an advisory
  lock), and the commands are idempotent (a second run the same day records nothing), so a
  restart or two workers is harmless. A failed run is tried again
  after ``TUOYU_CREDIT_TIMER_RETRY`` seconds (default 60), not a day later.
- ``inquiries``: every ``TUOYU_CREDIT_INQUIRY_INTERVAL`` seconds (default 5), one round of the
  background checks' dispatch to the public-security records inquiry (未成年人保护法 第62条):
  the pending checks that are due, read from ``checks_pending``, are sent or asked about
  again, answers recorded, outages retried with backoff (:mod:`tuoyu_credit.inquiries`). Once
  per service at a time too (an advisory lock); its counters are on the worker's
  ``/metrics`` (``tuoyu_background_check_*``).

Run: ``python -m tuoyu_credit.worker`` (``dead-letters``, ``redrive``, ``rebuild VIEW`` for ops;
see :mod:`tuoyu_shared.worker`). The three consumers share a name and a handler, so any of them
lists and re-drives every parked message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from tuoyu_credit import bootstrap
from tuoyu_credit.application import CreditApplication
from tuoyu_credit.inquiries import InquirySchedule
from tuoyu_credit.reactions import inspection_consumer, registration_consumer, subsidy_consumer
from tuoyu_shared.context import command_context
from tuoyu_shared.logs import get_logger
from tuoyu_shared.timers import DAY_START_MARGIN, DEFAULT_RETRY, Timer, next_run_at
from tuoyu_shared.worker import Worker

log = get_logger("tuoyu.credit.timers")

INTERVAL_VAR = "TUOYU_CREDIT_TIMER_INTERVAL"
RETRY_VAR = "TUOYU_CREDIT_TIMER_RETRY"


class Timers(Timer):
    """The daily commands of the credit service (see :mod:`tuoyu_shared.timers`: at start,
    then just after each midnight in China, or at a fixed ``interval``; once per service)."""

    def __init__(self, app: CreditApplication, interval: float | None = None,
                 retry: float = DEFAULT_RETRY,
                 clock: Callable[[], datetime] | None = None,
                 margin: timedelta = DAY_START_MARGIN):
        self.app = app
        super().__init__("daily", "credit", app.settings.database_url, self._commands,
                         interval=interval, retry=retry, clock=clock or (lambda: app.clock()),
                         margin=margin,
                         failed=lambda result: any(part["failed"] for part in result.values()))

    @classmethod
    def from_env(cls, app: CreditApplication,
                 env: Mapping[str, str] | None = None) -> Timers:
        env = os.environ if env is None else env
        interval = env.get(INTERVAL_VAR) or None
        return cls(app, float(interval) if interval is not None else None,
                   float(env.get(RETRY_VAR) or DEFAULT_RETRY))

    def _commands(self) -> dict[str, Any]:
        with command_context(actor="credit-timer", department="credit"):
            expired = self.app.expire_listings()
            lifted = self.app.lift_expired_bans()
            yearly = self.app.request_yearly_checks()
        log.info("timers.ran", today=expired["today"], expired=len(expired["expired"]),
                 lifted=len(lifted["lifted"]), rechecked=len(yearly["checked"]),
                 failed=len(expired["failed"]) + len(lifted["failed"]) + len(yearly["failed"]))
        return {"expire_listings": expired, "lift_expired_bans": lifted,
                "request_yearly_checks": yearly}


class InquiryDispatch(Timer):
    """The background checks' dispatch (:meth:`CreditApplication.dispatch_inquiries`) every
    ``schedule.interval`` seconds, once per service at a time."""

    def __init__(self, app: CreditApplication, schedule: InquirySchedule | None = None,
                 retry: float | None = None):
        self.app = app
        interval = (schedule or app.schedule).interval
        super().__init__("inquiries", "credit", app.settings.database_url, self._round,
                         interval=interval, retry=retry or interval,
                         clock=lambda: app.clock(),
                         failed=lambda result: bool(result["failed"]))

    def _round(self) -> dict[str, Any]:
        with command_context(actor="credit-inquiry", department="credit"):
            result = self.app.dispatch_inquiries()
        if any(result.values()):
            log.info("inquiries.ran", answered=len(result["answered"]),
                     pending=len(result["pending"]), unavailable=len(result["unavailable"]),
                     flagged=len(result["flagged"]), failed=len(result["failed"]))
        return result


__all__ = ["DAY_START_MARGIN", "WORKER", "InquiryDispatch", "Timers", "main", "next_run_at"]

WORKER = Worker(
    service="credit",
    application=bootstrap.application,
    reactions=lambda app: {"registration": registration_consumer(app),
                           "inspection": inspection_consumer(app),
                           "subsidy": subsidy_consumer(app)},
    timers=lambda app: {"timers": Timers.from_env(app).run,
                        "inquiries": InquiryDispatch(app).run},
)

main = WORKER.main

if __name__ == "__main__":
    WORKER.run()

