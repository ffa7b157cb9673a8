"""Run a service's background work (relay, view projectors, reactions, timers) in a plain
process, from a declaration (:class:`Worker`).

No eventlet here: eventsourcing's threads and psycopg's C implementation run as designed.
Each part runs in its own thread until SIGTERM or SIGINT. A running worker serves ``/health``
(200 while every part's thread is alive, 503 otherwise) and ``/metrics`` on
``TUOYU_WORKER_HTTP_PORT`` (default 9100) or ``--http-port`` (:mod:`tuoyu_shared.worker_http`).

A worker's command line also lets ops look after its consumers and views:

    python -m tuoyu_dashboard.worker                   # run
    python -m tuoyu_dashboard.worker dead-letters      # parked and held messages (JSON lines)
    python -m tuoyu_dashboard.worker redrive ID [ID…]  # apply them again
    python -m tuoyu_dashboard.worker redrive --all     # every open one, in notification order
    python -m tuoyu_dashboard.worker rebuild VIEW      # drop a view and replay it from the log
    python -m tuoyu_dashboard.worker rebuild --all     # every view of the service
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuoyu_shared.logs import get_logger

log = get_logger("tuoyu.worker")


def run_parts(parts: dict[str, Callable[[threading.Event], None]],
              stop: threading.Event | None = None, handle_signals: bool = False,
              http: Any = None) -> bool:
    """Run each part in a thread until ``stop`` (or, with ``handle_signals``, SIGTERM or
    SIGINT), or until one part dies (then all stop). Returns False if a part died, so the
    process can exit non-zero and be restarted. Only a worker's main installs the signal
    handlers: a test running parts leaves its own process's signals alone. ``http`` (a
    :class:`~tuoyu_shared.worker_http.WorkerHttp`) is told the parts' threads, for
    ``/health``."""
    stop = stop or threading.Event()
    if handle_signals:
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # ops: kill -USR1 for stacks

        def shutdown(signum, frame):
            log.info("worker.stopping", signal=signum)
            stop.set()

        signal.signal(signal.SIGTERM, shutdown)
        signal.signal(signal.SIGINT, shutdown)

    def guarded(name: str, part: Callable[[threading.Event], None]) -> None:
        try:
            part(stop)
        except Exception:
            log.exception("worker.part_failed", part=name)

    threads = [threading.Thread(target=guarded, args=(name, part), name=name, daemon=True)
               for name, part in parts.items()]
    for thread in threads:
        thread.start()
    if http is not None:
        http.watch(threads, stop)
    log.info("worker.started", parts=list(parts))
    died = False
    while not stop.is_set():
        stop.wait(0.2)
        for thread in threads:
            if not thread.is_alive() and not stop.is_set():
                log.error("worker.part_died", part=thread.name)
                died = True
                stop.set()
    deadline = time.monotonic() + 5  # a part blocked on a remote call must not hold us up
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0.1))
    return not died


def worker_main(parts: Callable[[], dict[str, Callable[[threading.Event], None]]],
                consumers: Callable[[], dict[str, Any]] | None = None,
                argv: list[str] | None = None,
                views: Callable[[], dict[str, Callable[[], int]]] | None = None, *,
                service: str | None = None, metrics: Any = None) -> int:
    """The command line of a worker: run its parts, manage its consumers' dead letters, or
    rebuild a view (``views``: name → a function that rebuilds it, returning events read).

    Running, it serves ``/health`` and ``/metrics`` (``metrics``: the service's database
    collector, :mod:`tuoyu_shared.metrics`) on ``--http-port`` or ``TUOYU_WORKER_HTTP_PORT``
    (:mod:`tuoyu_shared.worker_http`). A port it cannot bind is logged as an error and the
    parts run all the same: relaying and consuming matter more than being watched."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--http-port", type=int, default=None,
                        help="port of /health and /metrics (default: TUOYU_WORKER_HTTP_PORT "
                             "or 9100)")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run")
    listing = sub.add_parser("dead-letters",
                             help="list parked messages and the later events held behind them")
    listing.add_argument("--all", action="store_true", help="include re-driven ones")
    redrive = sub.add_parser("redrive", help="apply parked messages again, in order")
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", type=int, default=[])
    which.add_argument("--all", action="store_true",
                       help="every open letter of every consumer, in notification order")
    rebuild = sub.add_parser("rebuild", help="drop a view and replay it from the log")
    rebuild.add_argument("view", nargs="?", help="the view's name (none: list them)")
    rebuild.add_argument("--all", action="store_true", dest="all_views",
                         help="every view of the service, one after another")
    args = parser.parse_args(argv)
    if args.command in (None, "run"):
        return _run(parts, service, metrics, args.http_port)
    if args.command == "rebuild":
        found_views = views() if views else {}
        if args.all_views:
            for name, rebuild_view in found_views.items():
                print(f"rebuilt {name} from {rebuild_view()} events")
            return 0
        if args.view is None:
            print("\n".join(found_views) or "no views")
            return 0
        if args.view not in found_views:
            print(f"no view {args.view!r}; views: {', '.join(found_views) or 'none'}")
            return 2
        count = found_views[args.view]()
        print(f"rebuilt {args.view} from {count} events")
        return 0
    found = consumers() if consumers else {}
    if args.command == "dead-letters":
        for name, consumer in found.items():
            for letter in consumer.store.dead_letters(include_redriven=args.all):
                print(json.dumps({**letter.to_dict(), "consumer": name}, ensure_ascii=False))
        return 0
    if args.all:
        status = 0
        for name, consumer in found.items():
            done, failed = consumer.redrive_all()
            for letter_id in done:
                print(f"re-driven {letter_id} ({name})")
            for letter_id, error in failed.items():
                print(f"failed {letter_id} ({name}): {error}")
                status = 1
        return status
    status = 0
    for letter_id in args.ids:
        for name, consumer in found.items():
            if any(d.id == letter_id for d in consumer.store.dead_letters()):
                try:
                    consumer.redrive(letter_id)
                    print(f"re-driven {letter_id} ({name})")
                except Exception as e:
                    print(f"failed {letter_id} ({name}): {e!r}")
                    status = 1
                break
        else:
            print(f"no parked message {letter_id}")
            status = 1
    return status


def _run(parts: Callable[[], dict[str, Callable[[threading.Event], None]]],
         service: str | None, metrics: Any, port: int | None) -> int:
    from tuoyu_shared.worker_http import PORT_VAR, WorkerHttp, address_from_env

    http: WorkerHttp | None = None
    try:
        host, port = address_from_env(port=port)
        http = WorkerHttp(service or "worker", host, port, metrics,
                          readiness=_readiness(service))
        http.start()
    except (OSError, ValueError) as e:
        log.error("worker.http_unavailable", error=str(e), port=port,
                  hint=f"no /health nor /metrics: another process serves the port? set "
                       f"{PORT_VAR} or --http-port")
        http = None
    try:
        return 0 if run_parts(parts(), handle_signals=True, http=http) else 1
    finally:
        if http is not None:
            http.close()


def _readiness(service: str | None) -> Any:
    """The worker's readiness: its service's database, broker and schema."""
    if service is None:
        return None
    from tuoyu_shared.config import settings_for
    from tuoyu_shared.readiness import Readiness

    settings = settings_for(service)
    return Readiness.for_service(service, settings.database_url, settings.amqp_uri)


def _parts_of(consumers: dict[str, Any]) -> dict[str, Any]:
    """One consumer per store (several consumers of one service may share a store name,
    and so their dead letters): the first lists and re-drives them all."""
    seen: dict[tuple[str, str], str] = {}
    for name, consumer in consumers.items():
        key = (consumer.store.database_url, consumer.store.consumer)
        seen.setdefault(key, name)
    return {name: consumers[name] for name in seen.values()}


@dataclass
class Worker:
    """A service's background work, declared.

    - ``application``: builds the service's eventsourcing application (event-sourced
      services): its relay publishes the log, and its own view (``app.views``) is projected
      from the log, woken by each commit;
    - ``reactions(app)``: consumers of other services' events that change this service's
      aggregates (name → :class:`~tuoyu_shared.consumer.TrackedConsumer`);
    - ``read_models``: views fed from other services' events (a read-model service);
    - ``timers(app)``: scheduled parts (name → ``part(stop)``).
    """

    service: str
    application: Callable[[], Any] | None = None
    reactions: Callable[[Any], dict[str, Any]] = field(default=lambda app: {})
    read_models: Sequence[Any] = ()
    timers: Callable[[Any], dict[str, Callable[[threading.Event], None]]] = field(
        default=lambda app: {})

    def main(self, argv: list[str] | None = None) -> int:
        from tuoyu_shared.config import settings_for
        from tuoyu_shared.consumer import ApplicationLog
        from tuoyu_shared.logs import configure_logging
        from tuoyu_shared.metrics import EventLogCollector, ReadModelCollector
        from tuoyu_shared.relay import Relay
        from tuoyu_shared.tail import CommitSignal

        app = self.application() if self.application else None
        settings = app.settings if app is not None else settings_for(self.service)
        configure_logging(self.service, settings.log_level)
        from tuoyu_shared import tracing

        tracing.configure(self.service)
        reactions = self.reactions(app)
        remote = {view.name: view.consumer(settings) for view in self.read_models}
        own = app.views if app is not None else None

        def parts() -> dict[str, Callable[[threading.Event], None]]:
            found: dict[str, Callable[[threading.Event], None]] = {}
            if app is not None:
                found["relay"] = Relay(app).run
                found["audit"] = app.audit_trail.run
                if own is not None:
                    projector = app.views_projector()
                    commits = CommitSignal(settings.database_url, app.events_channel)
                    found["views"] = lambda stop: projector.run_local(stop, commits.wait)
            found.update({name: consumer.run for name, consumer in reactions.items()})
            found.update({name: consumer.run for name, consumer in remote.items()})
            found.update(self.timers(app))
            return found

        def consumers() -> dict[str, Any]:
            found = dict(reactions)
            found.update(remote)
            if own is not None:
                found[own.name] = app.views_projector()
            return _parts_of(found)

        def views() -> dict[str, Callable[[], int]]:
            found: dict[str, Callable[[], int]] = {
                view.name: (lambda view=view: view.rebuild(settings)) for view in self.read_models}
            if own is not None:
                found[own.name] = lambda: own.rebuild(settings, ApplicationLog(app))
            return found

        metrics = (EventLogCollector(self.service, app) if app is not None
                   else ReadModelCollector(self.service, settings.database_url))
        return worker_main(parts, consumers, argv, views, service=self.service, metrics=metrics)

    def run(self) -> None:
        """``python -m tuoyu_<service>.worker`` entry point."""
        sys.exit(self.main())
