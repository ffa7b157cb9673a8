"""Background work of the dashboard: tracked consumers that project every service's events
into its read models (:mod:`tuoyu_dashboard.projections`): ``dashboard`` (registration: the
directory and the institutions' history), ``dashboard-credit``, ``dashboard-inspection`` and
``dashboard-subsidy``.

Run: ``python -m tuoyu_dashboard.worker`` (``dead-letters``, ``redrive``, ``rebuild VIEW`` or
``rebuild --all`` for ops; see :mod:`tuoyu_shared.worker`).
"""

from __future__ import annotations

from tuoyu_dashboard.projections import REGISTRATION_VIEW, VIEWS
from tuoyu_shared.consumer import TrackedConsumer
from tuoyu_shared.worker import Worker

WORKER = Worker(service="dashboard", read_models=VIEWS)


def registration_consumer(settings, amqp_uri: str | None = None,
                          log_reader=None) -> TrackedConsumer:
    """The directory's projector (tests build it with their own settings and log)."""
    return REGISTRATION_VIEW.consumer(settings, log_reader, amqp_uri=amqp_uri)


main = WORKER.main

if __name__ == "__main__":
    WORKER.run()
