"""A clock that can jump, for the reliability suite's timer faults (loaded by Python at start
when this folder is on ``PYTHONPATH``; nothing happens without ``TUOYU_CLOCK_SHIFT_FILE``).

In a worker process (``python -m tuoyu_<service> worker`` or ``tuoyu_<service>.worker``) the
wall clock (``time.time``, ``datetime.now``; not the monotonic clock, as with an NTP step) is
moved by the number of seconds the file holds, read again every 0.2 s: write ``3456000`` to
jump 40 days ahead, ``0`` to come back. Done with time-machine, which patches the clock
functions of this process only.
"""

from __future__ import annotations

import os
import sys


def _is_worker() -> bool:
    argv = getattr(sys, "orig_argv", sys.argv)
    return any(a == "worker" or a.endswith(".worker") for a in argv[1:])


def _install(path: str) -> None:
    import threading
    import time
    from datetime import UTC, datetime, timedelta

    import time_machine

    traveller = time_machine.travel(datetime.now(UTC), tick=True)
    coordinates = traveller.start()
    state = {"shift": 0.0}

    def read() -> float:
        try:
            with open(path, encoding="ascii") as f:
                return float(f.read().strip() or 0)
        except (OSError, ValueError):
            return state["shift"]

    def follow() -> None:
        while True:
            wanted = read()
            if wanted != state["shift"]:
                coordinates.shift(timedelta(seconds=wanted - state["shift"]))
                state["shift"] = wanted
                print(f"clockshift: wall clock moved to {wanted:+.0f} s "
                      f"({datetime.now(UTC).isoformat()})", file=sys.stderr, flush=True)
            time.sleep(0.2)

    wanted = read()
    if wanted:
        coordinates.shift(timedelta(seconds=wanted))
        state["shift"] = wanted
    threading.Thread(target=follow, name="clockshift", daemon=True).start()


_path = os.environ.get("TUOYU_CLOCK_SHIFT_FILE")
if _path and _is_worker():
    _install(_path)
