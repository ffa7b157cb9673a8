"""Background work of the registration service: the relay of its events to RabbitMQ.

Run: ``python -m tuoyu_registration.worker``.
"""

from __future__ import annotations

import sys

from tuoyu_registration.application import RegistrationApplication
from tuoyu_shared.logs import configure_logging
from tuoyu_shared.relay import Relay
from tuoyu_shared.worker import worker_main


def main() -> int:
    def parts():
        app = RegistrationApplication()
        configure_logging("registration", app.settings.log_level)
        return {"relay": Relay(app).run}

    return worker_main(parts)


if __name__ == "__main__":
    sys.exit(main())
