"""Rolling upgrades across two releases, each side running the other release's real code.

The previous release here is the last one before registration's monthly report went to
version 3 (``PREVIOUS``: its subsidy consumer knows version 2 only, its registration publishes
version 2 only). Its code is taken from git and run from its own folder (PYTHONPATH) beside
this release's:

- publisher first: this release's registration (v3, and v2 copies until the date announced)
  with the previous release's subsidy consumer: the report reaches it once;
- consumers first: the previous release's registration (v2 only) with this release's subsidy
  consumer: the v2 report is applied (upcast; no health figure).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tuoyu_shared.devrun import BACKENDS, ProcessGroup
from tuoyu_shared.testing import group_environment, wait_for

ROOT = Path(__file__).resolve().parents[1]
#: The release before e79ab0f ("the monthly report ... published as version 3").
PREVIOUS = "b6d7a45aa448c48c7876677069d078fe863f88a7"
PORT_OFFSET = 1300
REGISTRATION = next(s for s in BACKENDS if s.name == "registration")
SUBSIDY = next(s for s in BACKENDS if s.name == "subsidy")

#: Records an institution filed and its monthly report, with whichever release's code the
#: PYTHONPATH gives (the application's commands have the same names in both).
REPORT = """
import datetime as dt, json, sys
from zoneinfo import ZoneInfo
from tuoyu_registration import bootstrap
from tuoyu_registration.samples import file_sample_institution, sample_enrolment
from tuoyu_shared.context import command_context
app = bootstrap.application()
month = dt.datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
with command_context(actor="operator-1", department="institution"):
    institution = file_sample_institution(app, int(sys.argv[1]))
    app.report_enrolment(institution, sample_enrolment(month, **json.loads(sys.argv[2])))
print(json.dumps({"institution": institution, "head": app.log_head()}))
app.close()
"""


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory) -> str:
    """The previous release's packages, as a PYTHONPATH."""
    shallow = subprocess.run(["git", "-C", str(ROOT), "rev-parse",
                              "--is-shallow-repository"], capture_output=True, text=True)
    if shallow.stdout.strip() == "true":
        pytest.skip("a shallow clone holds no previous release")
    folder = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS, "shared",
                              "services"], capture_output=True, timeout=120)
    assert archive.returncode == 0, archive.stderr.decode()
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return ":".join([str(folder / "shared"),
                     *(str(p) for p in sorted((folder / "services").iterdir()))])


def run(env: dict[str, str], argv: list[str], pythonpath: str | None = None) -> str:
    full = {**env, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    done = subprocess.run([sys.executable, *argv], env=full, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def start_worker(group: ProcessGroup, spec, pythonpath: str | None = None) -> None:
    argv = [sys.executable, "-m", f"tuoyu_{spec.name}.worker", "--http-port",
            str(group.worker_port(spec))]
    if pythonpath:
        argv = ["env", f"PYTHONPATH={pythonpath}", *argv]
    group._spawn(f"{spec.name}-worker", argv)  # noqa: SLF001
    group.wait_healthy(spec, url=f"{group.worker_url(spec.name)}/health")


def subsidy_facts(env: dict[str, str]) -> tuple[int, int, int]:
    """(subsidy's position on registration's log, enrolments recorded, open dead letters)."""
    with psycopg.connect(env["TUOYU_SUBSIDY_DATABASE_URL"]) as conn:
        tracking = [t for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.columns WHERE column_name = "
            "'application_name' AND table_schema = 'public'")]
        position = max([conn.execute(
            f'SELECT coalesce(max(notification_id), 0) FROM "{t}" WHERE application_name = '
            "'subsidy<-registration'").fetchone()[0] for t in tracking] or [0])
        events = [t for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'topic' "
            "AND table_schema = 'public' AND table_name LIKE '%events'")]
        recorded = sum(conn.execute(
            f"SELECT count(*) FROM \"{t}\" WHERE topic LIKE '%EnrolmentRecorded%'").fetchone()[0]
            for t in events)
        letters = conn.execute("SELECT count(*) FROM consumer_dead_letters WHERE redriven_at "
                               "IS NULL").fetchone()[0]
    return position, recorded, letters


def scenario(servers, tmp_path, prefix: str, offset: int, *, old_publisher: bool,
             previous: str) -> None:
    with group_environment(servers, prefix, vhost=f"tuoyu-{prefix}") as env:
        group = ProcessGroup(env, tmp_path, port_offset=offset)
        try:
            publisher = previous if old_publisher else None
            consumer = None if old_publisher else previous
            run(env, ["-m", "tuoyu_registration", "migrate"], publisher)
            run(env, ["-m", "tuoyu_subsidy", "migrate"], consumer)
            start_worker(group, REGISTRATION, publisher)
            start_worker(group, SUBSIDY, consumer)
            extra = {} if old_publisher else {"health_managed_children": 3}
            made = json.loads(run(env, ["-c", REPORT, "61", json.dumps(extra)],
                                  publisher).strip().splitlines()[-1])
            wait_for(lambda: subsidy_facts(env)[0] == made["head"], timeout=90,
                     what="subsidy to apply registration's log")
            position, recorded, letters = subsidy_facts(env)
            assert (recorded, letters) == (1, 0), (recorded, letters)
        finally:
            group.stop()


def test_the_previous_releases_consumer_works_beside_a_new_publisher(
        servers, tmp_path, previous_release):
    scenario(servers, tmp_path, "mixold", PORT_OFFSET, old_publisher=False,
             previous=previous_release)


def test_a_new_consumer_works_beside_the_previous_releases_publisher(
        servers, tmp_path, previous_release):
    scenario(servers, tmp_path, "mixnew", PORT_OFFSET + 20, old_publisher=True,
             previous=previous_release)
