"""The system the reliability suite breaks: every service, worker and the gateway as processes,
behind links that can be slowed or cut, credit on a PostgreSQL of its own
(:mod:`tuoyu_shared.reliability.system`), and the suite's accumulated state and report."""

from __future__ import annotations

import os

import psycopg
import pytest
from psycopg import sql

from tuoyu_shared.localservers import LocalPostgres
from tuoyu_shared.migrate import migrate
from tuoyu_shared.reliability.scenarios import Suite
from tuoyu_shared.reliability.system import SystemUnderTest
from tuoyu_shared.testing import PROJECT_ROOT, group_environment

PORT_OFFSET = 1400
CREDIT_PG_PORT = 26600
REPORT_DIR = PROJECT_ROOT / "bench-results" / "reliability"
REBUILT = ("registration", "credit", "inspection", "subsidy", "dashboard")


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory):
    if servers.rabbit is None:
        pytest.fail("the reliability suite needs the private local servers (it stops them)")
    shift = int(os.environ.get("TUOYU_PORT_SHIFT", "0"))
    credit_pg = LocalPostgres(PROJECT_ROOT / ".local" / "test" / "reliability-credit-pg",
                              CREDIT_PG_PORT + shift, fast=True)
    with group_environment(servers, "reliability", vhost="tuoyu-reliability",
                           TUOYU_CONSUMER_MAX_ATTEMPTS="3") as env:
        sut = SystemUnderTest(env, servers.rabbit, tmp_path_factory.mktemp("reliability-logs"),
                              PORT_OFFSET, credit_pg)
        try:
            sut.start()
            yield sut
        finally:
            sut.stop()


@pytest.fixture(scope="module")
def rebuild_urls(servers):
    """An empty, migrated database per service to rebuild its views into."""
    admin = servers.database_url("postgres")
    urls = {}
    with psycopg.connect(admin, autocommit=True) as conn:
        for service in REBUILT:
            name = f"reliability_rebuild_{service}"
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            urls[service] = servers.database_url(name)
            migrate(service, urls[service])
    return urls


@pytest.fixture(scope="module")
def suite(system, rebuild_urls):
    s = Suite(system, rebuild_urls, REPORT_DIR)
    s.prepare()
    yield s
    s.close()
