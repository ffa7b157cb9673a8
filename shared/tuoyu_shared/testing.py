"""pytest plugin: real PostgreSQL and RabbitMQ for every test suite of the project.

Servers come from, in this order:

1. given URIs: ``TUOYU_TEST_POSTGRES_URL`` (a superuser URL, any database) and
   ``TUOYU_TEST_AMQP_URI``;
2. testcontainers, when a Docker engine answers;
3. private local servers under ``.local/test`` (ports 26432 and 26672), started for the session
   and stopped after it.

Each test that asks for ``settings_factory`` gets databases of its own, so tests never see each
other's events. Tests that stop the broker are marked ``broker_control`` and need (3).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from tuoyu_shared.config import Settings, settings_for
from tuoyu_shared.localservers import LocalPostgres, LocalRabbitMQ, port_open

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServersUnderTest:
    postgres_url: str  # a URL of the server; the path is replaced per database
    amqp_uri: str
    rabbit: LocalRabbitMQ | None = None  # set when tests may stop and start the broker

    def database_url(self, name: str) -> str:
        return urlsplit(self.postgres_url)._replace(path=f"/{name}").geturl()


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def servers():
    given_pg, given_amqp = os.environ.get("TUOYU_TEST_POSTGRES_URL"), os.environ.get(
        "TUOYU_TEST_AMQP_URI")
    if given_pg and given_amqp:
        yield ServersUnderTest(given_pg, given_amqp)
        return
    if os.environ.get("TUOYU_TEST_USE_DOCKER", "auto") != "no" and _docker_answers():
        from testcontainers.postgres import PostgresContainer
        from testcontainers.rabbitmq import RabbitMqContainer

        with PostgresContainer("postgres:15", driver=None) as pg, \
                RabbitMqContainer("rabbitmq:3.10") as mq:
            amqp = (f"amqp://guest:guest@{mq.get_container_host_ip()}:"
                    f"{mq.get_exposed_port(5672)}//")
            yield ServersUnderTest(pg.get_connection_url(), amqp)
        return
    root = PROJECT_ROOT / ".local" / "test"
    pg = LocalPostgres(root, int(os.environ.get("TUOYU_TEST_PG_PORT", 26432)), fast=True)
    amqp_port = int(os.environ.get("TUOYU_TEST_AMQP_PORT", 26672))
    # One Erlang node name per port: a second checkout's broker on other ports is its own node.
    rabbit = LocalRabbitMQ(root, amqp_port,
                           "tuoyu-test" if amqp_port == 26672 else f"tuoyu-test-{amqp_port}")
    # Servers already up (another test session) are shared and left running; the session
    # that started them stops them only if no other session still uses them.
    sessions = root / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    me = sessions / str(os.getpid())
    me.touch()
    started_pg, started_rabbit = not port_open(pg.port), not port_open(rabbit.port)
    pg.start()
    rabbit.start()
    try:
        yield ServersUnderTest(pg.uri, rabbit.uri, rabbit)
    finally:
        me.unlink(missing_ok=True)
        if not _other_live_sessions(sessions):
            if started_rabbit:
                rabbit.stop()
            if started_pg:
                pg.stop()


def _other_live_sessions(sessions: Path) -> bool:
    live = False
    for entry in sessions.iterdir():
        try:
            os.kill(int(entry.name), 0)
            live = True
        except (ValueError, ProcessLookupError):
            entry.unlink(missing_ok=True)
        except PermissionError:
            live = True
    return live


def _schema_template(servers: ServersUnderTest, service: str | None) -> str:
    """A database with the service's schema migrated, made once per set of migrations (its
    name carries their hash) and copied for each test: a copy takes milliseconds, a migration
    a few hundred."""
    import hashlib

    from tuoyu_shared.migrate import KIT_MIGRATIONS, migrate, service_migrations

    digest = hashlib.sha256()
    folders = (KIT_MIGRATIONS, *([service_migrations(service)] if service else []))
    for folder in folders:
        for path in sorted(folder.glob("*.sql")):
            digest.update(path.name.encode() + path.read_bytes())
    name = f"tmpl_{service or 'kit'}_{digest.hexdigest()[:12]}"
    admin = servers.database_url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        # one session makes it; any other (a parallel test session) waits, then finds it
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))
        try:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname=%s",
                            (name,)).fetchone() is None:
                building = f"{name}_building"
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(building)))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
                migrate(service, servers.database_url(building))  # kit only: service None
                conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(building), sql.Identifier(name)))
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))
    return name


def _has_migrations(service: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(f"tuoyu_{service}") is not None


@pytest.fixture
def fresh_database(servers):
    """A factory of databases, dropped after the test: with a service's schema migrated when
    the label names a service (``fresh_database("credit")``), the kit's tables alone with
    ``migrated="kit"``, empty otherwise or with ``migrated=False``."""
    created: list[str] = []
    admin = servers.database_url("postgres")

    def make(label: str = "db", migrated: bool | str = True) -> str:
        name = f"t_{label}_{uuid.uuid4().hex[:10]}"
        template = None
        if migrated == "kit":
            template = _schema_template(servers, None)
        elif migrated and _has_migrations(label):
            template = _schema_template(servers, label)
        with psycopg.connect(admin, autocommit=True) as conn:
            if template:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)))
            else:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return servers.database_url(name)

    yield make
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in created:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


@pytest.fixture
def settings_factory(servers, fresh_database):
    """Settings for a service, with a database of its own and quick retries."""

    def make(service: str, **overrides) -> Settings:
        # In-process tests connect as the servers' administrator (guest on its own vhost),
        # not as the service's broker user: they name exchanges and queues of their own
        # (``registration-<unique>.events``). Process groups get per-service users
        # (group_environment).
        base = settings_for(service)
        return replace(base, database_url=fresh_database(service), amqp_uri=servers.amqp_uri,
                       consumer_retry_delay=0.01, consumer_catchup_interval=0.5,
                       **overrides)

    return make


@pytest.fixture
def unique() -> str:
    """A suffix that keeps this test's exchanges and queues apart from others'."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def broker(servers) -> LocalRabbitMQ:
    if servers.rabbit is None:
        pytest.skip("needs the private local RabbitMQ to stop and start it")
    return servers.rabbit


class Running:
    """Background threads (relays, consumers) stopped at the end of a test."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=(self.stop, *args), daemon=True)
        thread.start()
        self.threads.append(thread)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=20)


@pytest.fixture
def running():
    r = Running()
    yield r
    r.close()


def metric_samples(text: str) -> dict[str, list[Any]]:
    """A Prometheus text exposition parsed (prometheus_client's parser): each family's name
    (a counter's without ``_total``) to its samples (``.name``, ``.labels``, ``.value``)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {family.name: list(family.samples)
            for family in text_string_to_metric_families(text)}


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Wait until ``predicate()`` gives something true, and return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


_TEST_KEYS: dict[str, str] = {}


def auth_env() -> dict[str, str]:
    """The signing and verifying keys of this test session (made once, in this process):
    the environment every gateway and service process of the tests gets."""
    if not _TEST_KEYS:
        from tuoyu_shared.auth import generate_key_pem

        private, public = generate_key_pem()
        _TEST_KEYS.update(TUOYU_AUTH_SIGNING_KEY=private, TUOYU_AUTH_SIGNING_KID="test-1",
                          TUOYU_AUTH_PUBLIC_KEYS=json.dumps({"test-1": public}))
    return dict(_TEST_KEYS)


def token(role: str = "health_officer", district: str = "*", subject: str | None = None,
          institution_id: str | None = None, ttl_seconds: int = 3600) -> str:
    """A token of the test keys (:func:`auth_env`)."""
    from tuoyu_shared.auth import KeyRing

    ring = KeyRing.from_env(auth_env())
    return ring.issue(subject or f"test-{role}", role, district, ttl_seconds=ttl_seconds,
                      institution_id=institution_id)


def bearer(role: str = "health_officer", district: str = "*", subject: str | None = None,
           institution_id: str | None = None) -> dict[str, str]:
    """``{"Authorization": "Bearer …"}`` for a request through the gateway."""
    return {"Authorization": f"Bearer {token(role, district, subject, institution_id)}"}


#: The user of a test group's own connections (every permission in the group's vhost).
TEST_BROKER_ADMIN = "tuoyu-test-admin"


@contextlib.contextmanager
def group_environment(servers: ServersUnderTest, prefix: str, vhost: str | None = None,
                      **extra: str) -> Iterator[dict[str, str]]:
    """The environment of a process group of every service (``ProcessGroup``) for a test
    module: a fresh database per service (``<prefix>_<service>``; the group migrates them)
    and, when the broker is ours to configure, a RabbitMQ virtual host of its own (the
    services' queue and exchange names are fixed, and another group may be running), deleted
    afterwards, with a broker user per service (``TUOYU_<SERVICE>_AMQP_URI``). On a broker
    that is not ours (given URIs, a container) everything connects as the given user."""
    from tuoyu_shared.devrun import SERVICES

    admin = servers.database_url("postgres")
    names = {spec.name: f"{prefix}_{spec.name}" for spec in SERVICES}
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names.values():
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    amqp_uri = servers.amqp_uri
    broker_env: dict[str, str] = {}
    own_vhost = vhost is not None and servers.rabbit is not None
    if own_vhost:
        from tuoyu_shared.broker_users import create_broker_users, password_store, users_of

        servers.rabbit.ctl("delete_vhost", vhost, check=False)  # nothing from an earlier run
        servers.rabbit.ctl("add_vhost", vhost, check=False)
        # Each service's processes connect as its own user (tuoyu_shared.broker_users), as
        # under `make run`; guest has no access to the vhost. Users are node-wide: their
        # passwords are kept beside the servers so that groups in parallel agree on them.
        services = [spec.name for spec in SERVICES]
        uris = create_broker_users(
            servers.rabbit, vhost, services, admin=TEST_BROKER_ADMIN,
            passwords=password_store(servers.rabbit.root / "broker-users.json",
                                     users_of(services, TEST_BROKER_ADMIN)))
        broker_env = {f"TUOYU_{service.upper()}_AMQP_URI": uris[service]
                      for service in services}
        broker_env["TUOYU_SUBSCRIBER_AMQP_URI"] = uris["subscriber"]  # external subscribers
        # TUOYU_AMQP_URI is the tests' own: an administrator of the vhost (a test purges a
        # service's queue); every process of the group, the gateway too, has its own user.
        amqp_uri = uris["admin"]
    env = {f"TUOYU_{service.upper()}_DATABASE_URL": servers.database_url(db)
           for service, db in names.items()}
    # Credit's background-check dispatch at test speed (the group itself serves the
    # public-security simulator and sets TUOYU_PUBLIC_SECURITY_URL: ProcessGroup).
    env.update(TUOYU_CREDIT_INQUIRY_INTERVAL="0.5", TUOYU_CREDIT_INQUIRY_RETRY="1",
               TUOYU_CREDIT_INQUIRY_RETRY_MAX="2", TUOYU_CREDIT_INQUIRY_POLL="0.5")
    env.update(TUOYU_AMQP_URI=amqp_uri, TUOYU_CONSUMER_CATCHUP_INTERVAL="1", **broker_env,
               **auth_env(), **extra)
    try:
        yield env
    finally:
        if own_vhost:
            servers.rabbit.ctl("delete_vhost", vhost, check=False)


def check_catalogue_matches(contract: Any) -> None:
    """Assert that the committed catalogue of a service is what its contract generates: each
    publication's schema file up to date, and no file without a publication except earlier
    versions of a published type (kept: events recorded then are upcast, subscribers may
    still hold them)."""
    from tuoyu_shared.catalogue import CATALOGUE_DIR
    from tuoyu_shared.catalogue_gen import generate

    generated = generate(contract)
    for path, text in generated.items():
        assert path.exists(), f"missing schema {path.name}: run tuoyu_shared.catalogue_gen"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.name} differs from what the contract publishes: a change for subscribers "
            "needs a new version (and its schema beside the old one)")
        assert '"description": ""' not in text, f"{path.name}: the event class needs a docstring"
    committed = set((CATALOGUE_DIR / contract.source).glob("*.json"))

    def split(path: Any) -> tuple[str, int]:
        name, _, version = path.name.removesuffix(".json").rpartition(".v")
        return name, int(version)

    current: dict[str, int] = {}
    for path in generated:
        if ".v" not in path.name:  # legacy.json: the earlier versions still published
            continue
        name, version = split(path)
        current[name] = max(version, current.get(name, 0))
    superseded = {path for path in committed - set(generated)
                  if split(path)[1] < current.get(split(path)[0], 0)}
    assert committed - superseded == set(generated), "a schema without a publication"


class FixedClock:
    """A clock a test sets and moves (``clock.now``, ``clock.advance(days)``), for an
    application's ``clock=``."""

    def __init__(self, now: Any):
        self.now = now

    def __call__(self) -> Any:
        return self.now

    def advance(self, days: int) -> None:
        from datetime import timedelta

        self.now += timedelta(days=days)
