"""Back up one service's database, destroy it, restore it: the service, its relay, its
consumers and the audit verification resume, and nothing is lost or applied twice (the
operations guide's restore, docs/operations.md#backup-and-restore, run for real)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import urlsplit

import psycopg
import pytest

from tuoyu_registration.samples import sample_registration
from tuoyu_shared.devrun import SERVICES, ProcessGroup
from tuoyu_shared.devrun import http_json as _http_json
from tuoyu_shared.localservers import _pg_bin
from tuoyu_shared.testing import bearer, group_environment, metric_samples, wait_for

PORT_OFFSET = 1200
RUNNING = tuple(s for s in SERVICES if s.name in ("registration", "credit", "dashboard",
                                                  "gateway"))
OFFICER = bearer("health_officer", subject="officer-restore")


def http_json(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    return _http_json(method, url, body, OFFICER)


@pytest.fixture(scope="module")
def group(servers, tmp_path_factory):
    with group_environment(servers, "restore", vhost="tuoyu-restore") as env:
        g = ProcessGroup(env, tmp_path_factory.mktemp("restore-logs"), port_offset=PORT_OFFSET)
        try:
            g.start(RUNNING)
            yield g
        finally:
            g.stop()


def register(group, n: int) -> str:
    status, reply = http_json("POST", f"{group.url('gateway')}/api/institutions",
                              sample_registration(n))
    assert status == 201, reply
    return reply["institution_id"]


def dashboard_count(group) -> int:
    _, listing = http_json("GET", f"{group.url('gateway')}/api/dashboard/institutions")
    return listing.get("count", 0)


def scalar(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchone()[0]


def positions(group) -> dict[str, int]:
    """Each consumer's position on registration's log, in the consumers' own databases."""
    found = {}
    for service, table in (("dashboard", "consumer_tracking"), ("credit", None)):
        url = group.env[f"TUOYU_{service.upper()}_DATABASE_URL"]
        if table:
            found[service] = scalar(url, "SELECT coalesce(max(notification_id), 0) FROM "
                                         "consumer_tracking WHERE upstream = 'registration'")
        else:
            found[service] = scalar(url, "SELECT coalesce(max(notification_id), 0) FROM "
                                         "credit_tracking WHERE application_name LIKE "
                                         "'%<-registration'")
    return found


def relay_lag(group) -> float:
    samples = metric_samples(urlopen_text(f"{group.worker_url('registration')}/metrics"))
    return sum(s.value for s in samples["tuoyu_relay_lag"])


def urlopen_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def head(url: str) -> int:
    return scalar(url, "SELECT coalesce(max(notification_id), 0) FROM registration_events")


def test_a_restored_database_resumes_its_service_relay_consumers_and_audit(group, tmp_path):
    url = group.env["TUOYU_REGISTRATION_DATABASE_URL"]
    before = [register(group, 9100 + i) for i in range(3)]
    wait_for(lambda: dashboard_count(group) == 3, timeout=60, what="three on the dashboard")
    wait_for(lambda: positions(group) == {"dashboard": head(url), "credit": head(url)},
             timeout=60, what="the consumers caught up")
    wait_for(lambda: relay_lag(group) == 0, timeout=30, what="the relay caught up")

    # 1. the backup (a consistent snapshot, taken while the service runs)
    dump = tmp_path / "registration.dump"
    done = subprocess.run([_pg_bin("pg_dump"), "--format=custom", f"--file={dump}",
                           f"--dbname={url}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    head_at_backup = head(url)

    # 2. the service stops, and its database is lost
    group.stop_process("registration-worker")
    group.stop_process("registration-service")
    name = urlsplit(url).path.lstrip("/")
    admin = group.env["TUOYU_REGISTRATION_DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')

    # 3. the restore, then the service and its worker as they were
    done = subprocess.run([_pg_bin("pg_restore"), "--exit-on-error", "--no-owner",
                           f"--dbname={url}", str(dump)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert head(url) == head_at_backup
    spec = next(s for s in RUNNING if s.name == "registration")
    group._spawn("registration-service", spec.argv(group.port(spec)))  # noqa: SLF001
    group.start_worker(spec)
    group.wait_healthy(spec, url=f"{group.url('registration')}/health/ready")
    group.wait_healthy(spec, url=f"{group.worker_url('registration')}/health/ready")

    # 4. work goes on: new events reach every consumer once, the old ones are not re-applied
    after = [register(group, 9200 + i) for i in range(2)]
    wait_for(lambda: dashboard_count(group) == 5, timeout=60, what="five on the dashboard")
    wait_for(lambda: positions(group) == {"dashboard": head(url), "credit": head(url)},
             timeout=60, what="the consumers caught up after the restore")
    wait_for(lambda: relay_lag(group) == 0, timeout=30, what="the relay caught up")
    dashboard_url = group.env["TUOYU_DASHBOARD_DATABASE_URL"]
    assert scalar(dashboard_url, "SELECT count(*) FROM consumer_dead_letters") == 0
    rows = scalar(dashboard_url, "SELECT count(*) FROM dash_institution_history")
    assert rows == head(url), "each registration event applied once by the dashboard"
    _, listing = http_json("GET", f"{group.url('gateway')}/api/dashboard/institutions")
    listed = sorted(i["institution_id"] for i in listing["institutions"])
    assert listed == sorted(before + after)

    # 5. the audit trail verifies the restored log and goes on from it
    env = {**os.environ, **group.env}
    done = subprocess.run([sys.executable, "-m", "tuoyu_registration", "audit", "checkpoint"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "tuoyu_registration", "audit", "verify"],
                          env=env, capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["ok"], report
