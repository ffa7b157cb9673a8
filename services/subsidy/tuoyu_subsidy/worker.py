"""Background work of the subsidy service: ``relay`` (``subsidy.events``), ``views`` (its own
query tables), ``registration`` and ``credit`` (the institutions' standing), and ``timers``:
at start and each day just after 00:00 in China, the applications whose public notice is over
become payable. ``TUOYU_SUBSIDY_TIMER_INTERVAL`` (seconds) replaces the daily schedule;
``TUOYU_SUBSIDY_TIMER_RETRY`` (default 60) is the wait after a failed run.

Run: ``python -m tuoyu_subsidy.worker`` (``dead-letters``, ``redrive``, ``rebuild VIEW``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tuoyu_shared.context import command_context
from tuoyu_shared.timers import DEFAULT_RETRY, Timer
from tuoyu_shared.worker import Worker
from tuoyu_subsidy import bootstrap
from tuoyu_subsidy.application import SubsidyApp
from tuoyu_subsidy.reactions import credit_consumer, registration_consumer

INTERVAL_VAR = "TUOYU_SUBSIDY_TIMER_INTERVAL"
RETRY_VAR = "TUOYU_SUBSIDY_TIMER_RETRY"


def daily_timer(app: SubsidyApp, env: Mapping[str, str] | None = None) -> Timer:
    env = os.environ if env is None else env
    interval = env.get(INTERVAL_VAR) or None

    def commands() -> dict[str, Any]:
        with command_context(actor="subsidy-timer", department="system"):
            return app.daily()

    return Timer("daily", "subsidy", app.settings.database_url, commands,
                 interval=float(interval) if interval is not None else None,
                 retry=float(env.get(RETRY_VAR) or DEFAULT_RETRY), clock=lambda: app.clock(),
                 failed=lambda result: any(part["failed"] for part in result.values()))


WORKER = Worker(
    service="subsidy",
    application=bootstrap.application,
    reactions=lambda app: {"registration": registration_consumer(app),
                           "credit": credit_consumer(app)},
    timers=lambda app: {"timers": daily_timer(app).run},
)

main = WORKER.main

if __name__ == "__main__":
    WORKER.run()
