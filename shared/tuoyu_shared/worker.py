"""Run a service's background work (relay, tracked consumers) in a plain process.

No eventlet here: eventsourcing's threads and psycopg's C implementation run as designed.
Each part runs in its own thread until SIGTERM or SIGINT.

A worker's command line also lets ops look after its consumers' parked messages:

    python -m tuoyu_dashboard.worker                   # run
    python -m tuoyu_dashboard.worker dead-letters      # parked and held messages (JSON lines)
    python -m tuoyu_dashboard.worker redrive ID [ID…]  # apply them again
    python -m tuoyu_dashboard.worker redrive --all     # every open one, in notification order
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from tuoyu_shared.logs import get_logger

log = get_logger("tuoyu.worker")


def run_parts(parts: dict[str, Callable[[threading.Event], None]]) -> bool:
    """Run each part in a thread until a signal, or until one part dies (then all stop).
    Returns False if a part died, so the process can exit non-zero and be restarted."""
    stop = threading.Event()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # ops: dump stacks with kill -USR1

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
                argv: list[str] | None = None) -> int:
    """The command line of a worker: run its parts, or manage its consumers' dead letters."""
    parser = argparse.ArgumentParser()
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
    args = parser.parse_args(argv)
    if args.command in (None, "run"):
        return 0 if run_parts(parts()) else 1
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
