"""Run a service's background work (relay, tracked consumers) in a plain process.

No eventlet here: eventsourcing's threads and psycopg's C implementation run as designed.
Each part runs in its own thread until SIGTERM or SIGINT.
"""

from __future__ import annotations

import faulthandler
import signal
import threading
import time
from collections.abc import Callable

from tuoyu_shared.logs import get_logger

log = get_logger("tuoyu.worker")


def run_parts(parts: dict[str, Callable[[threading.Event], None]]) -> None:
    stop = threading.Event()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # ops: dump stacks with kill -USR1

    def shutdown(signum, frame):
        log.info("worker.stopping", signal=signum)
        stop.set()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    threads = [threading.Thread(target=part, args=(stop,), name=name, daemon=True)
               for name, part in parts.items()]
    for thread in threads:
        thread.start()
    log.info("worker.started", parts=list(parts))
    while not stop.is_set():
        stop.wait(1.0)
        for thread in threads:
            if not thread.is_alive():
                log.error("worker.part_died", part=thread.name)
                stop.set()
    deadline = time.monotonic() + 5  # a part blocked on a remote call must not hold us up
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0.1))
