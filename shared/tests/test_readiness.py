"""Readiness (/health/ready): a database that answers, a broker that answers and a current
schema; each check's failure named, credentials never shown; answers cached briefly."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tuoyu_shared.migrate import migrate
from tuoyu_shared.readiness import Readiness


@pytest.fixture
def fresh_database(servers):
    name = f"ready_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(servers.database_url("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield servers.database_url(name)
    with psycopg.connect(servers.database_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_not_ready_until_the_schema_is_current(fresh_database, servers):
    readiness = Readiness.for_service("credit", fresh_database, servers.amqp_uri)
    status, body = readiness.check()
    assert status == 503 and body["status"] == "not_ready"
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"], body
    assert not body["checks"]["schema"]["ok"]
    assert body["checks"]["schema"]["pending"], body

    migrate("credit", fresh_database)
    readiness = Readiness.for_service("credit", fresh_database, servers.amqp_uri)
    status, body = readiness.check()
    assert status == 200 and body["status"] == "ready", body
    assert body["checks"]["schema"]["pending"] == []


def test_a_database_or_broker_away_is_named_without_its_password(servers):
    readiness = Readiness.for_service(
        "credit", "postgresql://tuoyu:s3cret@127.0.0.1:1/nowhere",
        "amqp://tuoyu:s3cret@127.0.0.1:1//")
    status, body = readiness.check()
    assert status == 503
    checks = body["checks"]
    assert not checks["database"]["ok"] and checks["database"]["error"]
    assert not checks["broker"]["ok"] and checks["broker"]["error"]
    assert not checks["schema"]["ok"]
    assert "s3cret" not in str(body)


def test_answers_are_cached_for_a_moment_and_a_current_schema_longer():
    now = [0.0]
    calls = {"database": 0, "schema": 0}

    def database():
        calls["database"] += 1
        return {"ok": True}

    def schema():
        calls["schema"] += 1
        return {"ok": True, "pending": []}

    readiness = Readiness("x", {"database": database, "schema": schema}, clock=lambda: now[0])
    readiness.check()
    readiness.check()
    assert calls == {"database": 1, "schema": 1}
    now[0] = readiness.ttl + 0.1
    readiness.check()
    assert calls == {"database": 2, "schema": 1}  # the schema believed current a while
    now[0] += readiness.schema_ttl
    readiness.check()
    assert calls == {"database": 3, "schema": 2}


def test_a_check_that_raises_is_not_ready_never_an_error():
    def broken():
        raise RuntimeError("boom")

    status, body = Readiness("x", {"broker": broken}).check()
    assert status == 503 and body["checks"]["broker"] == {"ok": False,
                                                           "error": "RuntimeError: boom"}
