"""Run one nameko service: ``python -m tuoyu_shared.serve MODULE[:CLASS] --port 8001`` (what
``python -m tuoyu_<service> serve`` runs).

eventlet must patch the standard library before psycopg (or anything that opens sockets) is
imported, and psycopg must wait on its sockets with ``select`` (which eventlet makes green):
on its own, psycopg's C implementation picks its C wait function, which blocks the hub on
every query. ``PSYCOPG_WAIT_FUNC=wait_select`` makes it wait through eventlet while keeping
the C implementation (its pure-Python one spent a third of a command's time parsing results:
docs/performance.md). This launcher does both before it imports the service.
"""

from __future__ import annotations

import os

os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import importlib  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402

from nameko.runners import ServiceRunner  # noqa: E402

from tuoyu_shared.config import settings_for  # noqa: E402
from tuoyu_shared.logs import configure_logging  # noqa: E402


def service_class(target: str) -> type:
    """``module:Class``, or a module holding one nameko service class whose ``name`` is the
    module's service (``tuoyu_credit.service`` -> the class named ``credit``)."""
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    if class_name:
        return getattr(module, class_name)
    service = module_name.split(".")[0].removeprefix("tuoyu_")
    found = [v for v in vars(module).values() if isinstance(v, type)
             and getattr(v, "name", None) == service and v.__module__ == module.__name__]
    if len(found) != 1:
        raise SystemExit(f"{module_name} holds {len(found)} service classes named {service!r}")
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("service", help="module:Class of the nameko service")
    parser.add_argument("--port", type=int, default=int(os.environ.get("TUOYU_HTTP_PORT", 8000)))
    parser.add_argument("--host", default=os.environ.get("TUOYU_HTTP_HOST", "127.0.0.1"))
    args = parser.parse_args()
    service_cls = service_class(args.service)
    settings = settings_for(service_cls.name)
    configure_logging(service_cls.name, settings.log_level)
    from tuoyu_shared import tracing

    tracing.configure(service_cls.name)
    config = {
        "AMQP_URI": settings.amqp_uri,
        "WEB_SERVER_ADDRESS": f"{args.host}:{args.port}",
        "max_workers": int(os.environ.get("TUOYU_MAX_WORKERS", 10)),
        "serializer": "json",
    }
    runner = ServiceRunner(config)
    runner.add_service(service_cls)

    def shutdown(signum, frame):
        eventlet.spawn_n(runner.stop)
        # A graceful stop can hang when the broker is already gone: give it 10 s.
        threading.Timer(10, lambda: os._exit(1)).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    runner.start()
    runner.wait()


if __name__ == "__main__":
    main()
