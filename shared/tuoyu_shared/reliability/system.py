"""The whole system as the reliability suite runs it, with its faults at hand.

Every service and worker and the gateway run as processes (:class:`~tuoyu_shared.devrun.
ProcessGroup`, supervised: a process that dies is started again), each service on its own
database and broker user, as in a deployment. Around them:

- every process reaches RabbitMQ through one :class:`~tuoyu_shared.reliability.proxy.Link`
  (``amqp``) and registration reaches its PostgreSQL through another (``registration-db``):
  those links are slowed or cut;
- credit's database is on a PostgreSQL server of its own (``credit_postgres``), stopped and
  started again for real;
- the workers' wall clock can jump (:mod:`tuoyu_shared.reliability.clockshift`);
- messages are injected straight onto a service's exchange, and poison straight into a
  service's store (past the validation of the edge).

The checks read each service's store directly (never through a link), with the services' own
applications built in this process (:meth:`SystemUnderTest.app`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tuoyu_shared.devrun import BACKENDS, SERVICES, ProcessGroup
from tuoyu_shared.localservers import LocalPostgres
from tuoyu_shared.reliability.proxy import Link

CLOCKSHIFT_DIR = Path(__file__).parent / "clockshift"
#: Services whose worker runs scheduled commands (their daily timers), and so whose clock jumps.
TIMED = ("inspection", "subsidy", "credit")


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    auth, _, _ = parts.netloc.rpartition("@")
    host = parts.hostname or "127.0.0.1"
    netloc = f"{auth}@{host}:{port}" if auth else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def port_of(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"no port in {url!r}")
    return port


class SystemUnderTest:
    """Build with the environment of :func:`tuoyu_shared.testing.group_environment`; then
    ``start()``, and ``stop()`` at the end."""

    def __init__(self, env: dict[str, str], broker: Any, log_dir: Path, port_offset: int,
                 credit_postgres: LocalPostgres):
        self.broker = broker  # LocalRabbitMQ: stop_app / start_app / ctl
        self.vhost = urlsplit(env["TUOYU_REGISTRATION_AMQP_URI"]).path.lstrip("/") or "/"
        self.log_dir = log_dir
        self.credit_postgres = credit_postgres
        self.clock_file = log_dir / "clock-shift"
        self.clock_file.write_text("0\n")
        self.direct: dict[str, str] = {}  # service: database URL without any link
        env = dict(env)
        for spec in SERVICES:
            self.direct[spec.name] = env[f"TUOYU_{spec.name.upper()}_DATABASE_URL"]
        # credit on its own server
        credit_postgres.start()
        name = urlsplit(self.direct["credit"]).path.lstrip("/")
        with psycopg.connect(credit_postgres.uri, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        self.direct["credit"] = credit_postgres.uri.rsplit("/", 1)[0] + f"/{name}"
        env["TUOYU_CREDIT_DATABASE_URL"] = self.direct["credit"]
        # the links
        amqp_port = port_of(env["TUOYU_REGISTRATION_AMQP_URI"])
        self.links = {
            "amqp": Link(("127.0.0.1", amqp_port), name="amqp").start(),
            "registration-db": Link(("127.0.0.1", port_of(self.direct["registration"])),
                                    name="registration-db").start(),
        }
        for key, value in list(env.items()):
            if key.endswith("_AMQP_URI") and key != "TUOYU_AMQP_URI" \
                    and key != "TUOYU_SUBSCRIBER_AMQP_URI":
                env[key] = with_port(value, self.links["amqp"].port)
        env["TUOYU_REGISTRATION_DATABASE_URL"] = with_port(
            self.direct["registration"], self.links["registration-db"].port)
        # the workers' clock (only workers load the shift: see clockshift/sitecustomize.py)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(CLOCKSHIFT_DIR), env.get("PYTHONPATH", os.environ.get(
                "PYTHONPATH", ""))) if p)
        env["TUOYU_CLOCK_SHIFT_FILE"] = str(self.clock_file)
        env.setdefault("TUOYU_TIMER_CLOCK_CHECK", "1")
        self.admin_amqp_uri = env["TUOYU_AMQP_URI"]  # direct, an administrator of the vhost
        self.env = env
        self.group = ProcessGroup(env, log_dir, port_offset=port_offset, backoff_initial=0.2,
                                  backoff_max=2.0, stable_after=5.0, report=lambda line: None)
        self._apps: dict[str, Any] = {}

    # ---- life --------------------------------------------------------------------------------
    def start(self) -> None:
        self.group.start(SERVICES)
        self.group.supervise_in_background()

    def stop(self) -> None:
        for app in self._apps.values():
            with contextlib.suppress(Exception):
                app.close()
        self._apps.clear()
        self.group.stop()
        for link in self.links.values():
            link.stop()
        self.credit_postgres.stop()

    @property
    def gateway(self) -> str:
        return self.group.url("gateway")

    def process_names(self) -> list[str]:
        return sorted(self.group.pids())

    def wait_all_up(self, timeout: float = 90) -> None:
        """Until every process answers ``/health/ready`` (after restarts)."""
        for spec in SERVICES:
            self.group.wait_healthy(spec, timeout=timeout,
                                    url=f"{self.group.url(spec.name)}/health/ready")
            if spec.worker_module:
                self.group.wait_healthy(spec, timeout=timeout,
                                        url=f"{self.group.worker_url(spec.name)}/health/ready")

    # ---- process faults ----------------------------------------------------------------------
    def kill(self, name: str) -> int:
        """kill -9 of one process (``registration-service``, ``credit-worker``, ``gateway-
        service``); supervision starts it again. Returns the pid killed."""
        pid = self.group.pids()[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.group.pids().get(name, old_pid) != old_pid:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{name} was not restarted")

    # ---- broker faults -----------------------------------------------------------------------
    def stop_broker(self) -> None:
        self.broker.stop_app()

    def start_broker(self) -> None:
        self.broker.start_app()

    def queues(self) -> list[str]:
        done = self.broker.ctl("list_queues", "-p", self.vhost, "name", "--quiet",
                               "--no-table-headers")
        return [line.strip() for line in done.stdout.splitlines() if line.strip()]

    def purge_queues(self) -> dict[str, int]:
        """Purge every queue of the system's virtual host (RPC and event queues alike)."""
        purged = {}
        for queue in self.queues():
            done = self.broker.ctl("purge_queue", "-p", self.vhost, queue, check=False)
            purged[queue] = done.returncode
        return purged

    # ---- database faults ---------------------------------------------------------------------
    def stop_credit_postgres(self) -> None:
        self.credit_postgres.stop()

    def start_credit_postgres(self) -> None:
        self.credit_postgres.start()

    # ---- clock -------------------------------------------------------------------------------
    def shift_clock(self, seconds: float) -> None:
        """The workers' wall clock, ``seconds`` from the true one (0: back to it)."""
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(f"{seconds:.0f}\n")
        os.replace(tmp, self.clock_file)

    # ---- reading the stores ------------------------------------------------------------------
    @contextlib.contextmanager
    def _environment(self) -> Iterator[None]:
        saved = dict(os.environ)
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("TUOYU_")})
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def settings(self, service: str, database_url: str | None = None) -> Any:
        from tuoyu_shared.config import settings_for

        with self._environment():
            settings = settings_for(service)
        return replace(settings, database_url=database_url or self.direct[service])

    def app(self, service: str) -> Any:
        """The service's application on its database (direct), built as its composition root
        builds it; kept for the checks (read only: nothing is run through it but reads, and the
        poison injected on purpose)."""
        if service not in self._apps:
            from tuoyu_shared.migrate import _composition_root

            settings = self.settings(service)
            root = _composition_root(service)
            with self._environment():
                self._apps[service] = root.build(settings) if root is not None else None
        return self._apps[service]

    def event_services(self) -> list[str]:
        """The services with an event log (the dashboard has read models only)."""
        return [s.name for s in BACKENDS if s.name != "dashboard"]

    def inject(self, service: str, body: bytes | str, routing_key: str,
               headers: dict[str, Any] | None = None, message_id: str | None = None,
               times: int = 1) -> None:
        """Publish ``body`` onto ``<service>.events`` ``times`` times, as the broker's
        administrator (straight onto the exchange, past the relay)."""
        from kombu import Connection, Exchange

        exchange = Exchange(f"{service}.events", "topic", durable=True)
        with Connection(self.admin_amqp_uri, connect_timeout=10) as conn:
            producer = conn.Producer()
            for _ in range(times):
                producer.publish(body, exchange=exchange, routing_key=routing_key,
                                 content_type="application/json", content_encoding="utf-8",
                                 headers=headers or {},
                                 message_id=message_id or uuid.uuid4().hex,
                                 delivery_mode=2, declare=[exchange])

    def inject_copy(self, service: str, notification_id: int, times: int) -> dict[str, Any]:
        """Publish an event of ``service``'s log again, exactly as the relay published it
        (same body, message id and headers), ``times`` times."""
        from tuoyu_shared.relay import ConfirmingPublisher

        app = self.app(service)
        [envelope] = app.read_log(notification_id, 1)
        publisher = ConfirmingPublisher(self.admin_amqp_uri, f"{service}.events")
        try:
            for _ in range(times):
                publisher.publish_batch([envelope], previous=notification_id - 1)
        finally:
            publisher.close()
        return json.loads(envelope.to_json())
