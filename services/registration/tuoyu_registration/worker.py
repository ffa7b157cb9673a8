"""Background work of the registration service, in a plain process:

- ``relay``: publishes its events to RabbitMQ (``registration.events``);
- ``views``: projects its own log into its query tables (``registration-views``);
- ``credit``: reacts to the credit service's events (checks, bans, lists).

Run: ``python -m tuoyu_registration.worker`` (``dead-letters``, ``redrive``, ``rebuild VIEW``
for ops; see :mod:`tuoyu_shared.worker`).
"""

from __future__ import annotations

from tuoyu_registration import bootstrap
from tuoyu_registration.reactions import credit_consumer
from tuoyu_shared.worker import Worker

WORKER = Worker(
    service="registration",
    application=bootstrap.application,
    reactions=lambda app: {"credit": credit_consumer(app)},
)

main = WORKER.main

if __name__ == "__main__":
    WORKER.run()
