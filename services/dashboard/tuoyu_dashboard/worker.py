"""Background work of the dashboard: tracked consumers that project other services' events.

Run: ``python -m tuoyu_dashboard.worker``.
"""

from __future__ import annotations

import sys

import psycopg

from tuoyu_dashboard.projections import ensure_read_models, project_registration
from tuoyu_shared.config import ensure_database, settings_for
from tuoyu_shared.consumer import SqlTrackingStore, TrackedConsumer, tracked_consumer
from tuoyu_shared.logs import configure_logging
from tuoyu_shared.worker import worker_main


def registration_consumer(settings, amqp_uri: str | None = None,
                          log_reader=None) -> TrackedConsumer:
    return tracked_consumer(
        settings, name="dashboard", upstream="registration", handler=project_registration,
        store=SqlTrackingStore(settings.database_url, "dashboard"), amqp_uri=amqp_uri,
        log_reader=log_reader)


def consumers() -> dict[str, TrackedConsumer]:
    settings = settings_for("dashboard")
    ensure_database(settings.database_url)
    with psycopg.connect(settings.database_url) as conn:
        ensure_read_models(conn)
    return {"registration-projector": registration_consumer(settings)}


def main() -> int:
    configure_logging("dashboard", settings_for("dashboard").log_level)
    return worker_main(lambda: {name: c.run for name, c in consumers().items()}, consumers)


if __name__ == "__main__":
    sys.exit(main())
