"""The reliability suite's clock jump: a worker's wall clock follows the shift file (the
monotonic clock does not), and any other process's clock is left alone."""

from __future__ import annotations

import os
import subprocess
import sys

from tuoyu_shared.reliability.system import CLOCKSHIFT_DIR

PROBE = """
import sys, time
from datetime import UTC, datetime
first, mono = time.time(), time.monotonic()
open(sys.argv[1], "w").write("86400\\n")
time.sleep(0.6)
print(int(time.time() - first), int(datetime.now(UTC).timestamp() - first),
      int(time.monotonic() - mono))
"""


def run(tmp_path, *args: str) -> list[int]:
    shift = tmp_path / "shift"
    shift.write_text("0\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CLOCKSHIFT_DIR),
                                                        os.environ.get("PYTHONPATH", "")]),
           "TUOYU_CLOCK_SHIFT_FILE": str(shift)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(shift), *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [int(x) for x in done.stdout.split()]


def test_a_workers_wall_clock_jumps_and_its_monotonic_clock_does_not(tmp_path):
    assert run(tmp_path, "worker") == [86400, 86400, 0]


def test_a_process_that_is_no_worker_keeps_the_true_clock(tmp_path):
    assert run(tmp_path, "serve") == [0, 0, 0]
