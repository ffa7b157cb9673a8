"""Throughput benchmarks of the event pipeline, against real PostgreSQL and RabbitMQ.

    .venv/bin/python bench/run.py [--quick] [--n-events N] [--n-commands N]

Measured in one run, so that the ratios between them mean something:

- ``raw_kombu_publish_no_confirm``: kombu ``Producer.publish`` of persistent JSON messages (a
  real ``InstitutionRegistered`` envelope) to a durable topic exchange with one durable queue bound;
  no publisher confirms. The time until the queue holds every message is reported beside it.
- ``raw_kombu_publish_confirm_each``: the same, with kombu's ``confirm_publish`` transport
  option: one round trip to the broker per message.
- ``relay_publish_confirmed``: :meth:`tuoyu_shared.relay.Relay.drain` of ``InstitutionRegistered``
  events recorded beforehand (untimed) in a fresh registration database: read the log, check
  each envelope against the catalogue, publish in batches with batched publisher confirms.
- ``command_register_institution``: ``RegistrationApplication.file_institution``, one command and
  one ``save()`` after another (validation, personal data sealed, event recorded).
- ``raw_eventsourcing_save``: a plain eventsourcing ``Application`` saving trivial aggregates,
  one per ``save()``, on the same PostgreSQL settings.
- ``views_catch_up_registration`` / ``views_catch_up_dashboard``: registration's own views and
  the dashboard's directory catching up on a backlog of recorded registrations (20,000; 2,000
  with ``--quick``) from position 0, against ``raw_log_read`` (the log read page by page).
- ``views_steady_flow_dashboard``: the dashboard's directory in steady flow: the same backlog
  published by the relay as fast as it goes while the dashboard's consumer runs its AMQP loop
  (what has arrived applied together), timed to the last event applied.

A measurement over 20% slower than in the previous ``latest.json`` is flagged (``regressions``).

Servers: ``TUOYU_BENCH_POSTGRES_URL`` (a superuser URL, any database) and
``TUOYU_BENCH_AMQP_URI`` when both are set; otherwise private servers under ``.local/bench``
(ports 27432 and 27672, durable settings), started here and stopped at the end. Every
benchmark gets a database and exchange of its own, dropped and deleted afterwards.

Results go to ``bench-results/latest.json`` and ``bench-results/bench-<UTC timestamp>.json``.
The exit status is 0 when every correctness check passed, even if a throughput target was
missed (the JSON says so), and 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from kombu import Connection, Exchange, Producer, Queue
from psycopg import sql

from tuoyu_registration.application import RegistrationApplication
from tuoyu_registration.domain import Institution, Nature, ProviderKind
from tuoyu_registration.samples import (
    sample_csv,
    sample_enrolment,
    sample_filing_submission,
    sample_registration,
    sample_resident_id,
)
from tuoyu_shared.config import Settings, eventsourcing_env, settings_for
from tuoyu_shared.context import command_context
from tuoyu_shared.localservers import LocalPostgres, LocalRabbitMQ, port_open
from tuoyu_shared.logs import configure_logging
from tuoyu_shared.migrate import migrate
from tuoyu_shared.relay import Relay

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = PROJECT_ROOT / "bench-results"
#: Issue 9: view projectors at least 5,000 events/s catching up.
VIEWS_CATCH_UP_TARGET_PER_SECOND = 5000
BENCH_PG_PORT = 27432
BENCH_AMQP_PORT = 27672
SAVE_CHUNK = 500
RELAY_BATCH = 500
RELAY_TARGET_PER_SECOND = 5000
CSV_IMPORT_TARGET_PER_SECOND = 10000
RELAY_LATENCY_TARGET_MS = 50  # "within milliseconds of their commit, not on a slow poll"
ROUTING_KEY = "InstitutionRegistered"


# Servers and fresh resources.
@dataclass
class Servers:
    postgres_url: str  # a superuser URL of the server; the path is replaced per database
    amqp_uri: str
    origin: str  # "given" or "local"

    def database_url(self, name: str) -> str:
        return urlsplit(self.postgres_url)._replace(path=f"/{name}").geturl()


@contextmanager
def bench_servers() -> Iterator[Servers]:
    given_pg = os.environ.get("TUOYU_BENCH_POSTGRES_URL")
    given_amqp = os.environ.get("TUOYU_BENCH_AMQP_URI")
    if given_pg and given_amqp:
        yield Servers(given_pg, given_amqp, "given")
        return
    root = PROJECT_ROOT / ".local" / "bench"
    pg = LocalPostgres(root, BENCH_PG_PORT)  # durable defaults: fsync and synchronous commit on
    rabbit = LocalRabbitMQ(root, BENCH_AMQP_PORT, "tuoyu-bench")
    for name, port in (("PostgreSQL", pg.port), ("RabbitMQ", rabbit.port)):
        if port_open(port):
            print(f"note: port {port} already answers; using that {name} as the bench server")
    try:
        print(f"starting private servers under {root} ...", flush=True)
        started = time.perf_counter()
        pg.start()
        rabbit.start()
        print(f"servers up in {time.perf_counter() - started:.1f}s", flush=True)
        yield Servers(pg.uri, rabbit.uri, "local")
    finally:
        print("stopping private servers ...", flush=True)
        try:
            rabbit.stop()
        finally:
            pg.stop()


@contextmanager
def fresh_database(servers: Servers, label: str) -> Iterator[str]:
    """An empty database of its own, dropped (connections and all) afterwards."""
    name = f"bench_{label}_{uuid.uuid4().hex[:10]}"
    admin = servers.database_url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield servers.database_url(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def unique_name(kind: str) -> str:
    return f"bench.{kind}.{uuid.uuid4().hex[:10]}"


def registration_settings(url: str, servers: Servers) -> Settings:
    return replace(settings_for("registration"), database_url=url, amqp_uri=servers.amqp_uri)


@contextmanager
def registration_app(url: str, servers: Servers,
                     clock: Any = None) -> Iterator[RegistrationApplication]:
    migrate("registration", url)
    app = RegistrationApplication(registration_settings(url, servers), clock=clock)
    try:
        yield app
    finally:
        app.vault.close()
        app.close()


def queue_message_count(channel: Any, queue_name: str) -> int:
    return channel.queue_declare(queue=queue_name, passive=True).message_count


def wait_for_count(channel: Any, queue_name: str, expected: int, timeout: float = 60.0) -> int:
    """The queue's message count, polled until it reaches ``expected`` or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        count = queue_message_count(channel, queue_name)
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.01)


@contextmanager
def bound_queue(amqp_uri: str, exchange_name: str) -> Iterator[tuple[Any, Queue]]:
    """A durable topic exchange with one durable queue bound to every key; both deleted after.

    Yields a channel (of a connection without confirms) to count the queue's messages with.
    """
    exchange = Exchange(exchange_name, type="topic", durable=True, auto_delete=False)
    queue = Queue(exchange_name, exchange=exchange, routing_key="#", durable=True,
                  auto_delete=False)
    with Connection(amqp_uri, heartbeat=0, connect_timeout=5) as conn:
        channel = conn.channel()
        bound = queue(channel)
        bound.declare()
        try:
            yield channel, queue
        finally:
            with suppress(Exception):
                bound.purge()
            with suppress(Exception):
                bound.delete()
            with suppress(Exception):
                exchange(channel).delete()


# Results.
@dataclass
class Measurement:
    name: str
    count: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "count": self.count, "seconds": round(self.seconds, 4),
                "per_second": round(self.per_second, 1), **self.extra}


@dataclass
class Checks:
    failures: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)

    def equal(self, what: str, measured: int, expected: int) -> None:
        line = f"{what}: {measured} (expected {expected})"
        if measured == expected:
            self.passed.append(line)
        else:
            self.failures.append(line)
            print(f"CHECK FAILED: {line}", flush=True)


# The benchmarks.
def real_envelope(servers: Servers) -> bytes:
    """The JSON of a real InstitutionRegistered envelope, as the relay would publish it."""
    with fresh_database(servers, "envelope") as url, registration_app(url, servers) as app:
        with command_context(actor="bench", department="registration"):
            app.register_institution(sample_registration(1))
        return app.read_log(1, 1)[0].to_json()


def bench_raw_publish(servers: Servers, body: bytes, n: int, confirm: bool,
                      checks: Checks) -> Measurement:
    name = "raw_kombu_publish_confirm_each" if confirm else "raw_kombu_publish_no_confirm"
    exchange_name = unique_name("raw")
    options = {"confirm_publish": True} if confirm else {}
    with bound_queue(servers.amqp_uri, exchange_name) as (count_channel, queue), \
            Connection(servers.amqp_uri, heartbeat=0, connect_timeout=5,
                       transport_options=options) as conn:
        producer = Producer(conn.channel(), exchange=queue.exchange)
        started = time.perf_counter()
        for _ in range(n):
            producer.publish(body, routing_key=ROUTING_KEY, content_type="application/json",
                             content_encoding="utf-8", delivery_mode=2)
        seconds = time.perf_counter() - started
        stored = wait_for_count(count_channel, queue.name, n)
        until_queued = time.perf_counter() - started
        checks.equal(f"{name}: messages in queue", stored, n)
    extra = {"message_bytes": len(body)}
    if not confirm:
        extra["seconds_until_queued"] = round(until_queued, 4)
        extra["per_second_until_queued"] = round(n / until_queued, 1)
    return Measurement(name, n, seconds, extra)


def file_institutions_untimed(app: RegistrationApplication, n: int) -> None:
    """Record ``n`` InstitutionRegistered events quickly: aggregates built directly, 500 a
    save, one person's data sealed once and shared (the same shape and size as real ones)."""
    person = app._seal_person("王晓梅", sample_resident_id(1), "13812345678")
    for start in range(1, n + 1, SAVE_CHUNK):
        aggregates = []
        for i in range(start, min(start + SAVE_CHUNK, n + 1)):
            data = sample_registration(i)
            aggregates.append(Institution.register(
                name=data["name"], credit_code=data["credit_code"],
                nature=Nature(data["nature"]), kind=ProviderKind(data["kind"]),
                district=data["district"], street=data["street"], address=data["address"],
                person_in_charge=person,
            ))
        with command_context(actor="bench", department="registration"):
            app.save(*aggregates)


def bench_views_catch_up(servers: Servers, n: int,
                         checks: Checks) -> tuple[Measurement, Measurement, Measurement]:
    """A backlog of ``n`` recorded registrations (untimed), then: the raw log read (the
    notification log page by page, the baseline), registration's own views and the
    dashboard's directory each catching up on it from position 0."""
    from tuoyu_dashboard.projections import REGISTRATION_VIEW
    from tuoyu_registration.projections import VIEW
    from tuoyu_shared.consumer import ApplicationLog

    with fresh_database(servers, "views") as url, fresh_database(servers, "dash") as dash_url, \
            registration_app(url, servers) as app:
        migrate("dashboard", dash_url)
        file_institutions_untimed(app, n)
        head = app.log_head()
        started = time.perf_counter()
        read, start = 0, 1
        while page := app.recorder.select_notifications(start=start, limit=500):
            read += len(page)
            start = page[-1].id + 1
        raw_read = Measurement("raw_log_read", read, time.perf_counter() - started)
        checks.equal("raw log read: notifications", read, head)
        measured = []
        for name, view, settings in (
                ("views_catch_up_registration", VIEW, app.settings),
                ("views_catch_up_dashboard", REGISTRATION_VIEW,
                 replace(settings_for("dashboard"), database_url=dash_url))):
            consumer = view.consumer(settings, ApplicationLog(app))
            started = time.perf_counter()
            applied = consumer.catch_up()
            measured.append(Measurement(name, applied, time.perf_counter() - started))
            checks.equal(f"{name}: events applied", applied, head)
        with psycopg.connect(dash_url) as conn:
            rows = conn.execute("SELECT count(*) FROM institution_directory").fetchone()[0]
        checks.equal("views_catch_up_dashboard: rows", rows, n)
    return raw_read, measured[0], measured[1]


def bench_views_steady_flow(servers: Servers, n: int, checks: Checks) -> Measurement:
    """The dashboard's directory in steady flow: ``n`` recorded registrations (untimed)
    published by the relay as fast as it goes, while the dashboard's consumer runs as in
    production (its AMQP loop applying what has arrived together); timed from the relay's
    start to the last event applied."""
    from tuoyu_dashboard.projections import REGISTRATION_VIEW
    from tuoyu_shared.consumer import ApplicationLog, SqlTrackingStore

    name = "views_steady_flow_dashboard"
    with fresh_database(servers, "steady") as url, \
            fresh_database(servers, "steadydash") as dash_url, \
            registration_app(url, servers) as app:
        migrate("dashboard", dash_url)
        file_institutions_untimed(app, n)
        head = app.log_head()
        exchange_name = unique_name("steady")
        settings = replace(settings_for("dashboard"), database_url=dash_url,
                           amqp_uri=servers.amqp_uri)
        log_reader = ApplicationLog(app)
        consumer = REGISTRATION_VIEW.consumer(settings, log_reader, exchange=exchange_name)
        log_reader.head = lambda: 0  # the start-up catch-up must not read the backlog itself
        stop, ready = threading.Event(), threading.Event()
        thread = threading.Thread(target=consumer.run, args=(stop, ready), daemon=True)
        thread.start()
        relay = Relay(app, servers.amqp_uri, exchange=exchange_name, batch_size=RELAY_BATCH)
        try:
            if not ready.wait(30):
                raise RuntimeError("the dashboard's consumer did not start")
            started = time.perf_counter()
            relay.drain()
            deadline = time.monotonic() + 300
            # (the consumer's own connection is its thread's: read the position on another)
            watcher = SqlTrackingStore(dash_url, consumer.name)
            while watcher.position("registration") < head:
                if time.monotonic() > deadline:
                    raise TimeoutError("the dashboard did not apply the flow in 300 s")
                time.sleep(0.005)
            seconds = time.perf_counter() - started
            watcher.close()
        finally:
            relay.close()
            stop.set()
            thread.join(timeout=10)
        with Connection(servers.amqp_uri) as conn:
            consumer.queue(conn.default_channel).delete()
        with psycopg.connect(dash_url) as conn:
            rows = conn.execute("SELECT count(*) FROM institution_directory").fetchone()[0]
        checks.equal(f"{name}: rows", rows, n)
    return Measurement(name, head, seconds, {"registrations": n})


def bench_relay(servers: Servers, n: int, checks: Checks) -> Measurement:
    name = "relay_publish_confirmed"
    with fresh_database(servers, "relay") as url, registration_app(url, servers) as app:
        prepared = time.perf_counter()
        file_institutions_untimed(app, n)
        prepare_seconds = time.perf_counter() - prepared
        checks.equal(f"{name}: events recorded", app.log_head(), n)
        exchange_name = unique_name("relay")
        with bound_queue(servers.amqp_uri, exchange_name) as (count_channel, queue):
            relay = Relay(app, servers.amqp_uri, exchange=exchange_name, batch_size=RELAY_BATCH)
            try:
                started = time.perf_counter()
                published = relay.drain()
                seconds = time.perf_counter() - started
                position = relay.position()
            finally:
                relay.close()
            checks.equal(f"{name}: drain() returned", published, n)
            checks.equal(f"{name}: relay position", position, n)
            checks.equal(f"{name}: messages in queue",
                         wait_for_count(count_channel, queue.name, n, timeout=10), n)
    return Measurement(name, n, seconds, {"batch_size": RELAY_BATCH,
                                          "untimed_prepare_seconds": round(prepare_seconds, 2)})


def bench_relay_latency(servers: Servers, n: int, checks: Checks) -> Measurement:
    """Commit-to-delivery latency with the relay running as in production (LISTEN/NOTIFY
    wake-up, no polling): one command at a time, timed from the command's return to the
    message reaching a consumer of the exchange."""
    name = "relay_commit_to_delivery"
    latencies: list[float] = []
    with fresh_database(servers, "latency") as url, registration_app(url, servers) as app:
        exchange_name = unique_name("latency")
        with bound_queue(servers.amqp_uri, exchange_name) as (_, queue), \
                Connection(servers.amqp_uri, heartbeat=0) as conn:
            relay = Relay(app, servers.amqp_uri, exchange=exchange_name)
            stop = threading.Event()
            thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
            thread.start()
            received: list[float] = []
            consumer = conn.Consumer([queue], accept=["json"],
                                     callbacks=[lambda body, msg: (received.append(
                                         time.perf_counter()), msg.ack())])
            started = time.perf_counter()
            with consumer:
                for i in range(1, n + 1):
                    with command_context(actor="bench", department="registration"):
                        app.register_institution(sample_registration(i))
                    committed = time.perf_counter()
                    deadline = committed + 10
                    while len(received) < i and time.perf_counter() < deadline:
                        with suppress(TimeoutError):
                            conn.drain_events(timeout=1)
                    if len(received) < i:
                        break
                    latencies.append((received[-1] - committed) * 1000)
            seconds = time.perf_counter() - started
            stop.set()
            thread.join(timeout=10)
    checks.equal(f"{name}: messages delivered", len(latencies), n)
    ordered = sorted(latencies) or [float("nan")]
    return Measurement(name, n, seconds, {
        "latency_ms_median": round(ordered[len(ordered) // 2], 2),
        "latency_ms_p95": round(ordered[int(len(ordered) * 0.95) - 1], 2),
        "latency_ms_max": round(ordered[-1], 2),
    })


def bench_commands(servers: Servers, n: int, checks: Checks) -> Measurement:
    name = "command_register_institution"
    with fresh_database(servers, "commands") as url, registration_app(url, servers) as app:
        filings = [sample_registration(i) for i in range(1, n + 1)]
        started = time.perf_counter()
        for data in filings:
            with command_context(actor="bench", department="registration"):
                app.register_institution(data)
        seconds = time.perf_counter() - started
        checks.equal(f"{name}: events recorded", app.log_head(), n)
    return Measurement(name, n, seconds)


def bench_filings(servers: Servers, n: int, checks: Checks) -> tuple[Measurement, Measurement]:
    """Filing (submit + receipt) and monthly enrolment reports through the application layer,
    each a command that loads the institution, checks the rules and saves."""
    with fresh_database(servers, "filings") as url, registration_app(url, servers) as app:
        ids = [str(app.register_institution(sample_registration(i))) for i in range(1, n + 1)]
        submission = sample_filing_submission()
        this_month = app.today().strftime("%Y-%m")
        started = time.perf_counter()
        for institution_id in ids:
            app.submit_filing(institution_id, submission)
            app.issue_filing_receipt(institution_id, {"receipt_number": "BA"})
        filing_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for institution_id in ids:
            app.report_enrolment(institution_id, sample_enrolment(this_month))
        enrolment_seconds = time.perf_counter() - started
        # per institution: registered, filing submitted, filed, its reports opened, reported
        checks.equal("filings: events recorded", app.log_head(), n * 5)
    return (Measurement("command_filing_submit_and_receipt", n * 2, filing_seconds),
            Measurement("command_report_enrolment", n, enrolment_seconds))


def bench_load_long_history(servers: Servers, events: int,
                            checks: Checks) -> tuple[Measurement, Measurement]:
    """Loading a long-lived stream: an institution's enrolment reports (one event a month, the
    stream that grows longest) with ``events`` events, with snapshots (every 100) and
    without."""
    from tuoyu_registration.domain import EnrolmentReports

    # Filed in January 1900 (a clock set back), so that 1,000 distinct months can be reported.
    long_ago = lambda: datetime(1900, 1, 15, tzinfo=UTC)  # noqa: E731
    with fresh_database(servers, "history") as url, \
            registration_app(url, servers, clock=long_ago) as app:
        institution_id = app.register_institution(sample_registration(1))
        app.submit_filing(str(institution_id), sample_filing_submission())
        app.issue_filing_receipt(str(institution_id), {"receipt_number": "BA"})
        institution = app.repository.get(institution_id)
        reports: EnrolmentReports = EnrolmentReports.for_institution(institution)
        month = 0
        while reports.version < events:
            for _ in range(min(100, events - reports.version)):
                year, m = divmod(month, 12)
                data = sample_enrolment(f"{1900 + year}-{m + 1:02d}")
                reports.report(data["month"], data["classes"], data["second_children"],
                               data["third_children"], data["health_managed_children"],
                               institution.facts, app.standards)
                month += 1
            app.save(reports)
        checks.equal("history: reports version", reports.version, events)
        stream_id = reports.id

        class WithoutSnapshots(RegistrationApplication):
            name = "Registration"  # the same tables
            is_snapshotting_enabled = False
            snapshotting_intervals = {}  # (intervals alone switch snapshotting on)

        plain = WithoutSnapshots(registration_settings(url, servers))
        checks.equal("history: the plain application reads no snapshots",
                     int(plain.snapshots is None), 1)
        try:
            timings = {}
            for label, application in (("with_snapshots", app), ("without", plain)):
                rounds = 20
                started = time.perf_counter()
                for _ in range(rounds):
                    loaded = application.repository.get(stream_id)
                timings[label] = (time.perf_counter() - started) / rounds
                checks.equal(f"history: loaded version ({label})", loaded.version, events)
        finally:
            plain.vault.close()
            plain.close()
    return (Measurement("load_institution_1000_events_snapshots_on", 1,
                        timings["with_snapshots"],
                        {"events": events, "ms": round(timings["with_snapshots"] * 1000, 2)}),
            Measurement("load_institution_1000_events_snapshots_off", 1, timings["without"],
                        {"events": events, "ms": round(timings["without"] * 1000, 2)}))


def bench_csv_import(servers: Servers, n: int, checks: Checks) -> Measurement:
    """The provincial CSV export imported: parse, validate each row, seal personal data,
    save many institutions per transaction."""
    text = sample_csv(n)
    with fresh_database(servers, "import") as url, registration_app(url, servers) as app:
        started = time.perf_counter()
        with command_context(actor="bench", department="registration"):
            report = app.import_filings_csv(text)
        seconds = time.perf_counter() - started
        checks.equal("csv import: imported", report["imported"], n)
        checks.equal("csv import: events recorded", app.log_head(), n)
    return Measurement("csv_import_institutions", n, seconds)


class BenchNote(Aggregate):
    """The smallest useful aggregate: created with a short string, nothing else."""

    @event("Created")
    def __init__(self, text: str):
        self.text = text


def bench_raw_save(servers: Servers, n: int, checks: Checks) -> Measurement:
    name = "raw_eventsourcing_save"
    with fresh_database(servers, "rawsave") as url:
        # the baseline: the library alone, making its own tables as it does by default
        app: Application[Any] = Application(env={**eventsourcing_env(url),
                                                 "CREATE_TABLE": "yes"})
        try:
            notes = [BenchNote(text=f"note {i}") for i in range(n)]
            started = time.perf_counter()
            for note in notes:
                app.save(note)
            seconds = time.perf_counter() - started
            checks.equal(f"{name}: events recorded", app.recorder.max_notification_id() or 0, n)
        finally:
            app.close()
    return Measurement(name, n, seconds)


# Report.
def server_versions(servers: Servers) -> dict[str, str]:
    versions: dict[str, str] = {}
    with suppress(Exception), psycopg.connect(servers.database_url("postgres")) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        versions["postgresql"] = row[0] if row else "?"
    with suppress(Exception), Connection(servers.amqp_uri, connect_timeout=5) as conn:
        conn.connect()
        props = conn.connection.server_properties
        version = props.get("version", "?")
        versions["rabbitmq"] = version.decode() if isinstance(version, bytes) else str(version)
    for dist in ("eventsourcing", "kombu", "amqp", "psycopg"):
        with suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


def save_report(name: str, report: dict[str, Any], stamp: datetime,
                figures: list[tuple[str, tuple[str, ...], str]]) -> dict[str, Any] | None:
    """Compare ``report`` with the previous ``<name>-latest.json`` of the same settings (each
    of ``figures``: a label, its key path, ``"higher"`` or ``"lower"`` is better; one over 20%
    worse goes into ``report["regressions"]``), then write it as ``<name>-latest.json`` and
    ``<name>-<UTC timestamp>.json``. Returns the previous report (None: there was none)."""
    RESULTS_DIR.mkdir(exist_ok=True)
    latest = RESULTS_DIR / f"{name}-latest.json"
    previous = json.loads(latest.read_text()) if latest.exists() else None
    flagged = []
    if previous and previous.get("settings") == report.get("settings"):
        for label, keys, better in figures:
            now, before = report, previous
            for key in keys:
                now, before = now.get(key, {}), (before or {}).get(key)
            if not isinstance(before, int | float) or not isinstance(now, int | float):
                continue
            worse = now < 0.8 * before if better == "higher" else now > 1.2 * before
            if worse:
                flagged.append(f"{label} {now}, was {before}")
    report["regressions"] = flagged
    text = json.dumps(report, ensure_ascii=False, indent=2)
    latest.write_text(text)
    (RESULTS_DIR / f"{name}-{stamp:%Y%m%dT%H%M%SZ}.json").write_text(text)
    return previous


def machine_info() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def ratio(a: Measurement, b: Measurement) -> float:
    return round(a.per_second / b.per_second, 4) if b.per_second else float("nan")


def print_summary(report: dict[str, Any]) -> None:
    print()
    print(f"{'benchmark':<34}{'count':>8}{'seconds':>10}{'per second':>13}")
    for m in report["measurements"]:
        print(f"{m['name']:<34}{m['count']:>8}{m['seconds']:>10.3f}{m['per_second']:>13.1f}")
        if "latency_ms_median" in m:
            print(f"  (commit to delivery, ms: median {m['latency_ms_median']}, "
                  f"p95 {m['latency_ms_p95']}, max {m['latency_ms_max']})")
        if "per_second_until_queued" in m:
            label = "  (until all queued)"
            print(f"{label:<34}{'':>8}{m['seconds_until_queued']:>10.3f}"
                  f"{m['per_second_until_queued']:>13.1f}")
    print()
    for key, value in report["ratios"].items():
        print(f"{key:<34}{value:>10.3f}")
    for key, target in report["targets"].items():
        verdict = "met" if target["met"] else "MISSED"
        print(f"{key:<34}{target['measured']:>10.1f}  target {target['target']}: {verdict}")
    checks = report["checks"]
    print(f"correctness checks: {len(checks['passed'])} passed, "
          f"{len(checks['failed'])} failed")


def regressions(previous_path: Path, report: dict[str, Any]) -> list[str]:
    """Measurements more than 20% slower than in the previous report of the same kind, run
    with the same settings (the machine's figures move from run to run: the ratios beside
    them say more)."""
    if not previous_path.exists():
        return []
    try:
        previous = json.loads(previous_path.read_text(encoding="utf-8"))
    except ValueError:
        return []
    if previous.get("settings") != report.get("settings"):
        return []  # other counts (a --quick run against a full one): not comparable
    before = {m["name"]: m for m in previous.get("measurements", [])}
    flagged = []
    for m in report["measurements"]:
        old = before.get(m["name"])
        if old and old.get("per_second") and m["per_second"] < 0.8 * old["per_second"]:
            flagged.append(f"{m['name']}: {m['per_second']}/s, was {old['per_second']}/s")
    return flagged


def previous_timestamp(previous_path: Path, report: dict[str, Any]) -> str | None:
    """When the previous comparable report (same settings) was made; None if none."""
    try:
        previous = json.loads(previous_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if previous.get("settings") != report.get("settings"):
        return None
    return previous.get("timestamp")


def print_regressions(flagged: list[str], compared_with: str | None) -> None:
    if compared_with is None:
        print("no previous run with the same settings to compare with")
        return
    for line in flagged:
        print(f"REGRESSION (over 20% slower than the run of {compared_with}): {line}")
    if not flagged:
        print(f"no measurement over 20% slower than in the run of {compared_with}")


def write_report(report: dict[str, Any], stamp: datetime) -> list[Path]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    paths = [RESULTS_DIR / "latest.json",
             RESULTS_DIR / f"bench-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"]
    for path in paths:
        path.write_text(text, encoding="utf-8")
    return paths


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small counts (2000 / 200 / 2000 / 200 / 200), to check it works")
    parser.add_argument("--n-events", type=int, default=None,
                        help="messages published without confirms and events drained by the "
                             "relay (default 20000; 2000 with --quick)")
    parser.add_argument("--n-confirm", type=int, default=None,
                        help="messages published with a confirm each (default n-events / 10)")
    parser.add_argument("--n-commands", type=int, default=None,
                        help="commands and raw saves (default 2000; 200 with --quick)")
    parser.add_argument("--n-import", type=int, default=None,
                        help="CSV rows imported (default 20000; 2000 with --quick)")
    parser.add_argument("--n-latency", type=int, default=None,
                        help="commands timed commit to delivery (default 300; 50 with --quick)")
    args = parser.parse_args(argv)
    if args.n_import is None:
        args.n_import = 2000 if args.quick else 20000
    if args.n_latency is None:
        args.n_latency = 50 if args.quick else 300
    if args.n_events is None:
        args.n_events = 2000 if args.quick else 20000
    if args.n_commands is None:
        args.n_commands = 200 if args.quick else 2000
    if args.n_confirm is None:
        args.n_confirm = max(args.n_events // 10, 1)
    for name in ("n_events", "n_confirm", "n_commands", "n_latency", "n_import"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("bench", "warning")
    stamp = datetime.now(UTC).replace(microsecond=0)
    checks = Checks()
    run_started = time.perf_counter()
    with bench_servers() as servers:
        versions = server_versions(servers)
        body = real_envelope(servers)

        def step(label: str) -> None:
            print(f"[{time.perf_counter() - run_started:6.1f}s] {label}", flush=True)

        step(f"raw publish, no confirms: {args.n_events} messages of {len(body)} bytes")
        raw = bench_raw_publish(servers, body, args.n_events, confirm=False, checks=checks)
        step(f"raw publish, a confirm each: {args.n_confirm} messages")
        confirm_each = bench_raw_publish(servers, body, args.n_confirm, confirm=True,
                                         checks=checks)
        step(f"relay: recording then draining {args.n_events} events")
        relay = bench_relay(servers, args.n_events, checks)
        step(f"relay latency, commit to delivery: {args.n_latency} commands one by one")
        latency = bench_relay_latency(servers, args.n_latency, checks)
        step(f"register_institution: {args.n_commands} commands")
        commands = bench_commands(servers, args.n_commands, checks)
        step(f"raw eventsourcing save: {args.n_commands} aggregates")
        raw_save = bench_raw_save(servers, args.n_commands, checks)
        step(f"filings and enrolment reports: {args.n_commands // 2} institutions")
        filings, enrolments = bench_filings(servers, max(args.n_commands // 2, 1), checks)
        step("loading an institution with 1000 events, snapshots on and off")
        load_snap, load_plain = bench_load_long_history(servers, 1000, checks)
        n_backlog = 2000 if args.quick else 20000
        step(f"views catching up on a backlog of {n_backlog} events")
        raw_read, views_registration, views_dashboard = bench_views_catch_up(
            servers, n_backlog, checks)
        step(f"the dashboard's directory in steady flow: {n_backlog} events through the relay")
        views_steady = bench_views_steady_flow(servers, n_backlog, checks)
        step(f"CSV import: {args.n_import} rows")
        csv_import = bench_csv_import(servers, args.n_import, checks)
        step("done")
    measurements = [raw, confirm_each, relay, latency, commands, raw_save, filings, enrolments,
                    load_snap, load_plain, csv_import, raw_read, views_registration,
                    views_dashboard, views_steady]
    report = {
        "timestamp": stamp.isoformat(),
        "machine": machine_info(),
        "servers": {"origin": servers.origin, **versions},
        "settings": {"quick": args.quick, "n_events": args.n_events,
                     "n_confirm": args.n_confirm, "n_commands": args.n_commands,
                     "relay_batch_size": RELAY_BATCH, "envelope_bytes": len(body)},
        "measurements": [m.as_dict() for m in measurements],
        "ratios": {
            "relay_vs_raw_publish": ratio(relay, raw),
            "relay_vs_confirm_each": ratio(relay, confirm_each),
            "command_vs_raw_save": ratio(commands, raw_save),
            "filing_commands_vs_raw_save": ratio(filings, raw_save),
            "enrolment_reports_vs_raw_save": ratio(enrolments, raw_save),
            "load_1000_events_snapshots_speedup": round(load_plain.seconds / load_snap.seconds, 2),
            "registration_views_catch_up_vs_raw_log_read": ratio(views_registration, raw_read),
            "dashboard_catch_up_vs_raw_log_read": ratio(views_dashboard, raw_read),
            "dashboard_steady_flow_vs_relay": ratio(views_steady, relay),
            "registration_views_catch_up_vs_raw_save": ratio(views_registration, raw_save),
        },
        "targets": {
            "relay_events_per_second": {
                "target": RELAY_TARGET_PER_SECOND,
                "measured": round(relay.per_second, 1),
                "met": relay.per_second >= RELAY_TARGET_PER_SECOND,
            },
            "csv_import_institutions_per_second": {
                "target": CSV_IMPORT_TARGET_PER_SECOND,
                "measured": round(csv_import.per_second, 1),
                "met": csv_import.per_second >= CSV_IMPORT_TARGET_PER_SECOND,
            },
            "views_catch_up_events_per_second": {
                "target": VIEWS_CATCH_UP_TARGET_PER_SECOND,
                "measured": round(min(views_registration.per_second,
                                      views_dashboard.per_second), 1),
                "met": min(views_registration.per_second, views_dashboard.per_second)
                >= VIEWS_CATCH_UP_TARGET_PER_SECOND,
            },

            "relay_commit_to_delivery_ms_median": {
                "target": RELAY_LATENCY_TARGET_MS,
                "measured": latency.extra["latency_ms_median"],
                "met": latency.extra["latency_ms_median"] <= RELAY_LATENCY_TARGET_MS,
            },
        },
        "checks": {"passed": checks.passed, "failed": checks.failures},
        "total_seconds": round(time.perf_counter() - run_started, 1),
    }
    report["regressions"] = regressions(RESULTS_DIR / "latest.json", report)
    report["compared_with"] = previous_timestamp(RESULTS_DIR / "latest.json", report)
    paths = write_report(report, stamp)
    print_summary(report)
    print_regressions(report["regressions"], report["compared_with"])
    print("written: " + ", ".join(str(p.relative_to(PROJECT_ROOT)) for p in paths))
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
