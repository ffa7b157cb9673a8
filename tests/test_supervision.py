"""Supervision of the processes, as `make run` runs them: a process that dies is restarted
with backoff and catches up; the others keep running; stopping the group stops everything,
a restarted process included, and nothing is restarted while stopping."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time

import pytest

from tuoyu_registration.samples import sample_registration
from tuoyu_shared.devrun import SERVICES, ProcessGroup
from tuoyu_shared.devrun import http_json as _http_json
from tuoyu_shared.testing import bearer, group_environment, wait_for

PORT_OFFSET = 300  # 8301-8303: test_end_to_end uses 8101-8103
VHOST = "tuoyu-supervision"
BACKOFF = 2.0  # long enough to register an institution while the worker is dead


#: Through the gateway, as a city-wide health officer unless a test says otherwise.
OFFICER = bearer("health_officer", subject="officer-3")


def http_json(method: str, url: str, body: dict | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict]:
    return _http_json(method, url, body, {**OFFICER, **(headers or {})})


@pytest.fixture(scope="module")
def group(servers, tmp_path_factory):
    with group_environment(servers, "sup", vhost=VHOST) as env:
        run_dir = tmp_path_factory.mktemp("run")
        lines: list[str] = []
        g = ProcessGroup(env, run_dir / "logs", port_offset=PORT_OFFSET,
                         pids_file=run_dir / "pids.json", report=lines.append,
                         backoff_initial=BACKOFF)
        g.lines = lines
        try:
            g.start()
            g.supervise_in_background(interval=0.1)
            yield g
        finally:
            g.stop()


def dashboard_ids(group) -> set[str]:
    status, listing = http_json(
        "GET", f"{group.url('gateway')}/api/dashboard/institutions?limit=1000")
    return {row["institution_id"] for row in listing.get("institutions", [])} if status == 200 \
        else set()


def register(group, n: int) -> str:
    status, reply = http_json("POST", f"{group.url('gateway')}/api/institutions",
                              sample_registration(n))
    assert status == 201, reply
    return reply["institution_id"]


def recorded_pids(group) -> dict[str, int]:
    recorded = json.loads(group.pids_file.read_text())
    assert recorded["supervisor"] == os.getpid()
    return recorded["processes"]


def gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
        return False
    except ProcessLookupError:
        return True


def test_a_killed_worker_is_restarted_and_catches_up(group):
    first = register(group, 1)
    wait_for(lambda: first in dashboard_ids(group), what="first institution on the dashboard")
    before = group.pids()
    assert recorded_pids(group) == before
    old = before["registration-worker"]

    os.kill(old, signal.SIGKILL)
    wait_for(lambda: any("registration-worker" in line for line in group.lines),
             timeout=5, what="the restart line")
    while_dead = register(group, 2)
    assert group.pids()["registration-worker"] == old, "restarted before the second register"
    assert group.lines[-1] == (f"restarting registration-worker (exit -9), attempt 1, "
                               f"in {BACKOFF:g}s")

    wait_for(lambda: group.pids()["registration-worker"] != old, timeout=BACKOFF + 5,
             what="a new registration-worker")
    new = group.pids()["registration-worker"]
    assert not gone(new)
    assert recorded_pids(group)["registration-worker"] == new  # `make stop` finds it
    wait_for(lambda: while_dead in dashboard_ids(group), timeout=60,
             what="the institution registered while the worker was dead")
    after = register(group, 3)
    wait_for(lambda: after in dashboard_ids(group), timeout=60,
             what="an institution registered after the restart")

    others = {name: pid for name, pid in group.pids().items() if name != "registration-worker"}
    assert others == {name: pid for name, pid in before.items()
                      if name != "registration-worker"}
    assert group.restarts == {"registration-worker": 1}
    log = (group.log_dir / "registration-worker.log").read_text(errors="replace")
    assert "--- restarting registration-worker (exit -9), attempt 1" in log


def test_a_killed_http_process_is_restarted_and_serves_again(group):
    before = group.pids()
    old = before["registration-service"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: group.pids()["registration-service"] != old, timeout=BACKOFF + 5,
             what="a new registration-service")
    spec = next(s for s in SERVICES if s.name == "registration")
    group.wait_healthy(spec)
    institution = register(group, 4)
    wait_for(lambda: institution in dashboard_ids(group), timeout=60,
             what="an institution registered through the restarted service")
    assert re.fullmatch(r"restarting registration-service \(exit -9\), attempt 1, in \S+s",
                        group.lines[-1])
    assert {n: p for n, p in group.pids().items() if n != "registration-service"} == \
        {n: p for n, p in before.items() if n != "registration-service"}


def test_stopping_the_group_stops_the_restarted_processes_too(group):
    pids = group.pids()
    assert group.restarts  # the tests above restarted some
    lines = len(group.lines)
    group.stop()
    assert all(gone(pid) for pid in pids.values()), pids
    assert not group.pids_file.exists()
    time.sleep(0.5)  # the supervisor would have noticed the exits by now
    assert group.pids() == {} and len(group.lines) == lines


# The backoff, on a process that exits at once (no servers needed)

def quick_group(tmp_path, **kw) -> tuple[ProcessGroup, list[str]]:
    lines: list[str] = []
    g = ProcessGroup({}, tmp_path / "logs", pids_file=tmp_path / "pids.json",
                     report=lines.append, **kw)
    return g, lines


def wait_exited(g: ProcessGroup, name: str) -> None:
    wait_for(lambda: g.procs[name].poll() is not None, timeout=10, what=f"{name} exits")


def test_backoff_doubles_to_its_ceiling_and_resets_once_a_process_stays_up(tmp_path):
    g, lines = quick_group(tmp_path, backoff_initial=0.05, backoff_max=0.2, stable_after=10)
    g._spawn("flaky", [sys.executable, "-c", "raise SystemExit(3)"])
    for _ in range(4):
        wait_exited(g, "flaky")
        pid = g.procs["flaky"].pid
        g.supervise()
        wait_for(lambda pid=pid: (g.supervise(), g.procs["flaky"].pid != pid)[1], timeout=5,
                 what="restart")
    assert lines == ["restarting flaky (exit 3), attempt 1, in 0.05s",
                     "restarting flaky (exit 3), attempt 2, in 0.1s",
                     "restarting flaky (exit 3), attempt 3, in 0.2s",
                     "restarting flaky (exit 3), attempt 4, in 0.2s"]
    assert json.loads(g.pids_file.read_text())["processes"] == {"flaky": g.procs["flaky"].pid}
    # Up long enough, the next death counts as the first again.
    wait_exited(g, "flaky")
    g._started_at["flaky"] -= 20
    g.supervise()
    assert lines[-1] == "restarting flaky (exit 3), attempt 1, in 0.05s"
    g.stop()


def test_nothing_is_restarted_once_stopping(tmp_path):
    g, lines = quick_group(tmp_path, backoff_initial=0.05)
    g._spawn("flaky", [sys.executable, "-c", "raise SystemExit(3)"])
    g._spawn("steady", [sys.executable, "-c", "import time; time.sleep(60)"])
    wait_exited(g, "flaky")
    g.supervise()  # restart scheduled
    assert lines == ["restarting flaky (exit 3), attempt 1, in 0.05s"]
    g.stop()
    time.sleep(0.1)
    g.supervise()
    assert g.procs == {} and g.restarts == {} and not g.pids_file.exists()


def test_a_process_stopped_on_purpose_is_not_restarted(tmp_path):
    g, lines = quick_group(tmp_path, backoff_initial=0.05)
    g._spawn("steady", [sys.executable, "-c", "import time; time.sleep(60)"])
    g.supervise_in_background(interval=0.02)
    g.stop_process("steady")
    time.sleep(0.3)
    assert g.procs == {} and lines == []
    assert json.loads(g.pids_file.read_text())["processes"] == {}
    g.stop()
