"""Background work of the inspection service, in a plain process:

- ``relay``: publishes its events to RabbitMQ (``inspection.events``);
- ``views``: projects its own log into its query tables (visits, findings, orders, plans,
  public results);
- ``inspection-directory`` and ``inspection-grades``: project registration's institutions and
  credit's grades (the frame a plan draws from);
- ``timers``: at start and then each day just after 00:00 in China (Asia/Shanghai), record the
  rectification orders past their deadline (``RectificationOverdue``, once per order),
  publish the results whose publication deadline has come (公示) and close the plans whose
  period is over (``CleanInspectionPeriodCompleted``). ``TUOYU_INSPECTION_TIMER_INTERVAL``
  (seconds), when set, replaces the daily schedule with a fixed interval (tests, ops); a failed
  run is tried again after ``TUOYU_INSPECTION_TIMER_RETRY`` seconds (default 60). Once per
  service at a time (an advisory lock); each command is idempotent.

Run: ``python -m tuoyu_inspection.worker`` (``dead-letters``, ``redrive``, ``rebuild VIEW``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tuoyu_inspection import bootstrap
from tuoyu_inspection.application import InspectionApplication
from tuoyu_inspection.projections import DIRECTORY_VIEW, GRADES_VIEW
from tuoyu_shared.context import command_context
from tuoyu_shared.logs import get_logger
from tuoyu_shared.timers import DEFAULT_RETRY, Timer
from tuoyu_shared.worker import Worker

log = get_logger("tuoyu.inspection.timers")

INTERVAL_VAR = "TUOYU_INSPECTION_TIMER_INTERVAL"
RETRY_VAR = "TUOYU_INSPECTION_TIMER_RETRY"


def daily_timer(app: InspectionApplication, env: Mapping[str, str] | None = None) -> Timer:
    env = os.environ if env is None else env
    interval = env.get(INTERVAL_VAR) or None

    def commands() -> dict[str, Any]:
        with command_context(actor="inspection-timer", department="system"):
            result = app.daily()
        log.info("timers.ran", overdue=len(result["publish_overdue_rectifications"]["overdue"]),
                 published=len(result["publish_due_results"]["published"]),
                 closed=len(result["close_due_plans"]["closed"]),
                 failed=sum(len(part["failed"]) for part in result.values()))
        return result

    return Timer("daily", "inspection", app.settings.database_url, commands,
                 interval=float(interval) if interval is not None else None,
                 retry=float(env.get(RETRY_VAR) or DEFAULT_RETRY),
                 clock=lambda: app.clock(),
                 failed=lambda result: any(part["failed"] for part in result.values()))


WORKER = Worker(
    service="inspection",
    application=bootstrap.application,
    read_models=(DIRECTORY_VIEW, GRADES_VIEW),
    timers=lambda app: {"timers": daily_timer(app).run},
)

main = WORKER.main

if __name__ == "__main__":
    WORKER.run()
