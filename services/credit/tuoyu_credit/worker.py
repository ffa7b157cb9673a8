"""Background work of the credit service, in a plain process:

- ``relay``: publishes its events to RabbitMQ (``credit.events``);
- ``views``: projects its own log into its query tables;
- ``registration``, ``inspection``, ``subsidy``: react to those services' events;
- ``timers``: at start and then every ``TUOYU_CREDIT_TIMER_INTERVAL`` seconds (default a day),
  expire the list entries whose term is over and lift the term bans that have ended. Both are
  idempotent (a second run the same day records nothing), so a restart or two workers running
  them is harmless. A failed run is tried again after ``TUOYU_CREDIT_TIMER_RETRY`` seconds
  (default 60), not a day later.

Run: ``python -m tuoyu_credit.worker`` (``dead-letters`` / ``redrive ID`` for ops).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

from tuoyu_credit.application import CreditApplication
from tuoyu_credit.reactions import inspection_consumer, registration_consumer, subsidy_consumer
from tuoyu_shared.context import command_context
from tuoyu_shared.logs import configure_logging, get_logger
from tuoyu_shared.relay import Relay
from tuoyu_shared.tail import CommitSignal
from tuoyu_shared.worker import worker_main

log = get_logger("tuoyu.credit.timers")

INTERVAL_VAR = "TUOYU_CREDIT_TIMER_INTERVAL"
RETRY_VAR = "TUOYU_CREDIT_TIMER_RETRY"
DEFAULT_INTERVAL = 86400.0
DEFAULT_RETRY = 60.0


class Timers:
    """The daily commands of the credit service, run at start and then at an interval."""

    def __init__(self, app: CreditApplication, interval: float = DEFAULT_INTERVAL,
                 retry: float = DEFAULT_RETRY):
        if interval <= 0 or retry <= 0:
            raise ValueError("timer interval and retry must be positive seconds")
        self.app = app
        self.interval = interval
        self.retry = retry
        self.runs = 0

    @classmethod
    def from_env(cls, app: CreditApplication,
                 env: Mapping[str, str] | None = None) -> Timers:
        env = os.environ if env is None else env
        return cls(app, float(env.get(INTERVAL_VAR) or DEFAULT_INTERVAL),
                   float(env.get(RETRY_VAR) or DEFAULT_RETRY))

    def run_once(self) -> dict[str, Any]:
        with command_context(actor="credit-timer", department="credit"):
            expired = self.app.expire_listings()
            lifted = self.app.lift_expired_bans()
        self.runs += 1
        log.info("timers.ran", today=expired["today"], expired=len(expired["expired"]),
                 lifted=len(lifted["lifted"]),
                 failed=len(expired["failed"]) + len(lifted["failed"]))
        return {"expire_listings": expired, "lift_expired_bans": lifted}

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                result = self.run_once()
                failed = result["expire_listings"]["failed"] or result["lift_expired_bans"][
                    "failed"]
                wait = self.retry if failed else self.interval
            except Exception as e:  # the database is away: try again soon
                log.warning("timers.failed", error=repr(e), retry_in=self.retry)
                wait = self.retry
            stop.wait(wait)


def main() -> int:
    app = CreditApplication()
    configure_logging("credit", app.settings.log_level)
    consumers = {"registration": registration_consumer(app),
                 "inspection": inspection_consumer(app),
                 "subsidy": subsidy_consumer(app)}
    timers = Timers.from_env(app)

    def parts():
        views = app.views_projector()
        commits = CommitSignal(app.settings.database_url, app.events_channel)
        return {"relay": Relay(app).run,
                "views": lambda stop: views.run_local(stop, commits.wait),
                **{name: consumer.run for name, consumer in consumers.items()},
                "timers": timers.run}

    # The three consumers share a name and a handler: one of them lists and re-drives every
    # parked message.
    return worker_main(parts, lambda: {"credit": consumers["registration"]})


if __name__ == "__main__":
    sys.exit(main())
