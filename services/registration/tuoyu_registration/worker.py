"""Background work of the registration service: the relay of its events to RabbitMQ.

Run: ``python -m tuoyu_registration.worker``.
"""

from __future__ import annotations

from tuoyu_registration.application import RegistrationApplication
from tuoyu_shared.logs import configure_logging
from tuoyu_shared.relay import Relay
from tuoyu_shared.worker import run_parts


def main() -> None:
    app = RegistrationApplication()
    configure_logging("registration", app.settings.log_level)
    run_parts({"relay": Relay(app).run})


if __name__ == "__main__":
    main()
