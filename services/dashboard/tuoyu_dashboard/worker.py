"""Background work of the dashboard: tracked consumers that project other services' events
into its read models (``dashboard``: the directory of institutions, from registration).

Run: ``python -m tuoyu_dashboard.worker`` (``dead-letters``, ``redrive``, ``rebuild VIEW`` for
ops; see :mod:`tuoyu_shared.worker`).
"""

from __future__ import annotations

from tuoyu_dashboard.projections import REGISTRATION_VIEW
from tuoyu_shared.consumer import TrackedConsumer
from tuoyu_shared.worker import Worker

WORKER = Worker(service="dashboard", read_models=(REGISTRATION_VIEW,))


def registration_consumer(settings, amqp_uri: str | None = None,
                          log_reader=None) -> TrackedConsumer:
    """The directory's projector (tests build it with their own settings and log)."""
    return REGISTRATION_VIEW.consumer(settings, log_reader, amqp_uri=amqp_uri)


main = WORKER.main

if __name__ == "__main__":
    WORKER.run()
