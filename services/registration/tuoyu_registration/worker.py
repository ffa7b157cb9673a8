"""Background work of the registration service, in a plain process:

- ``relay``: publishes its events to RabbitMQ (``registration.events``);
- ``views``: projects its own log into its query tables;
- ``credit``: reacts to the credit service's events (checks, bans, lists).

Run: ``python -m tuoyu_registration.worker`` (``dead-letters`` / ``redrive ID`` for ops).
"""

from __future__ import annotations

import sys

from tuoyu_registration.application import RegistrationApplication
from tuoyu_registration.reactions import credit_consumer
from tuoyu_shared.logs import configure_logging
from tuoyu_shared.relay import Relay
from tuoyu_shared.tail import CommitSignal
from tuoyu_shared.worker import worker_main


def main() -> int:
    app = RegistrationApplication()
    configure_logging("registration", app.settings.log_level)
    credit = credit_consumer(app)

    def parts():
        views = app.views_projector()
        commits = CommitSignal(app.settings.database_url, app.events_channel)
        return {"relay": Relay(app).run,
                "views": lambda stop: views.run_local(stop, commits.wait),
                "credit": credit.run}

    return worker_main(parts, lambda: {"credit": credit})


if __name__ == "__main__":
    sys.exit(main())
