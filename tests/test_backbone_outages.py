"""Issue 7: outages are waited out and bad messages set aside, never the other way round.

- what a failure says about the message (outage, contention, a message that cannot apply);
- an envelope of the wrong shape, or from another source, is set aside at the door;
- two relays on one service: one publishes at a time, each event once, the position only
  moves forwards, and the standby takes over;
- a consuming service's PostgreSQL restarted (a real restart) while events flow, and RabbitMQ
  stopped while commands are accepted: afterwards the read models equal a rebuild from the
  log, and nothing was parked.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError as LibraryIntegrityError
from eventsourcing.persistence import OperationalError as LibraryOperationalError
from kombu import Connection, Exchange, Queue

from tuoyu_credit.application import CreditApplication
from tuoyu_credit.reactions import registration_consumer as credit_registration_consumer
from tuoyu_dashboard.projections import project_registration
from tuoyu_registration.samples import sample_registration
from tuoyu_shared.consumer import (
    CONTENTION,
    FAILURE,
    OUTAGE,
    ApplicationLog,
    SqlTrackingStore,
    TrackedConsumer,
    failure_kind,
)
from tuoyu_shared.envelope import Envelope, UnreadableEnvelope
from tuoyu_shared.localservers import LocalPostgres
from tuoyu_shared.migrate import migrate
from tuoyu_shared.relay import Relay
from tuoyu_shared.rpc import RpcTimeout
from tuoyu_shared.testing import PROJECT_ROOT, wait_for


# ---- what a failure says ---------------------------------------------------------------------
@pytest.mark.parametrize("error, kind", [
    (psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
     OUTAGE),
    (psycopg.errors.CannotConnectNow("the database system is starting up"), OUTAGE),
    (psycopg.OperationalError("connection refused"), OUTAGE),  # no SQLSTATE: the connection
    (psycopg.errors.DiskFull("no space left"), OUTAGE),
    (psycopg.errors.ReadOnlySqlTransaction("read-only transaction"), OUTAGE),  # a failover
    (psycopg.errors.IdleInTransactionSessionTimeout("idle session"), OUTAGE),
    (ConnectionRefusedError(111, "refused"), OUTAGE),
    (RpcTimeout("no reply"), OUTAGE),
    (LibraryOperationalError("connection lost"), OUTAGE),
    (LibraryIntegrityError("duplicate key (originator_id, originator_version)"), CONTENTION),
    (psycopg.errors.SerializationFailure("could not serialize"), CONTENTION),
    (psycopg.errors.DeadlockDetected("deadlock"), CONTENTION),
    (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), FAILURE),
    (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), FAILURE),
    (psycopg.errors.UniqueViolation("duplicate key"), FAILURE),
    (psycopg.errors.NumericValueOutOfRange("bigint out of range"), FAILURE),
    (psycopg.errors.UndefinedColumn("no such column"), FAILURE),  # a bug
    (KeyError("ref"), FAILURE),
    (TypeError("string indices must be integers"), FAILURE),
    (ValueError("badly formed hexadecimal UUID string"), FAILURE),
])
def test_a_failure_is_an_outage_contention_or_the_messages_own(error, kind):
    assert failure_kind(error) == kind


@pytest.mark.parametrize("library, cause, kind", [
    (LibraryOperationalError, psycopg.errors.NumericValueOutOfRange("out of range"), FAILURE),
    (LibraryOperationalError, psycopg.errors.AdminShutdown("shutdown"), OUTAGE),
    (LibraryIntegrityError, psycopg.errors.UniqueViolation("version taken"), CONTENTION),
    (LibraryIntegrityError, psycopg.errors.NotNullViolation("null value"), FAILURE),
])
def test_a_library_error_is_judged_by_the_database_error_under_it(library, cause, kind):
    try:
        try:
            raise cause
        except psycopg.Error as e:
            raise library(str(e)) from e
    except library as wrapped:
        assert failure_kind(wrapped) == kind


def test_a_heartbeat_under_a_second_is_refused(monkeypatch):
    from tuoyu_shared.config import ConfigurationError, settings_for

    monkeypatch.setenv("TUOYU_AMQP_HEARTBEAT", "0.5")
    with pytest.raises(ConfigurationError, match="HEARTBEAT"):
        settings_for("registration")
    monkeypatch.setenv("TUOYU_AMQP_HEARTBEAT", "0")
    assert settings_for("registration").amqp_heartbeat == 0


# ---- statement timeouts: patient, then parked ------------------------------------------------
def timing_out(until: float):
    def handler(env, cur):
        if time.monotonic() < until:
            raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
        project_registration(env, cur)
    return handler


def test_a_statement_timeout_is_retried_past_max_attempts_while_within_patience(
        registration, make_projector):
    registration.register_institution(sample_registration(1))
    [envelope] = registration.read_log(1, 1)
    projector = make_projector(timing_out(time.monotonic() + 0.3), max_attempts=2,
                               statement_timeout_patience=5.0)
    projector.handle(envelope)
    assert projector.store.dead_letters() == []  # a busy server, not a bad message
    assert projector.store.position("registration") == 1


def test_a_statement_timeout_that_lasts_past_patience_is_parked(registration, make_projector):
    registration.register_institution(sample_registration(1))
    [envelope] = registration.read_log(1, 1)
    projector = make_projector(timing_out(time.monotonic() + 3600), max_attempts=2,
                               statement_timeout_patience=0.2)
    started = time.monotonic()
    projector.handle(envelope)
    assert time.monotonic() - started >= 0.2
    [parked] = projector.store.dead_letters()
    assert "QueryCanceled" in parked.error and parked.attempts >= 2


def test_a_redrive_that_fails_again_records_its_new_error(registration, make_projector):
    registration.register_institution(sample_registration(1))
    registration.register_institution(sample_registration(2))
    first, _ = registration.read_log(1, 2)

    def broken(env, cur):
        raise KeyError("street")

    projector = make_projector(broken, max_attempts=1)
    projector.handle(first)
    [letter] = projector.store.dead_letters()
    projector.handler = lambda env, cur: (_ for _ in ()).throw(ValueError("still broken"))
    with pytest.raises(ValueError):
        projector.redrive(letter.id)
    [again] = projector.store.dead_letters()
    assert "still broken" in again.error and again.attempts == 2


# ---- an unreadable entry in the upstream's log -----------------------------------------------
class FakeRpc:
    """An upstream's RPC answering with the entries given (as they travel: JSON dicts)."""

    def __init__(self, entries: list[dict]):
        self.entries = entries

    def call(self, service: str, method: str, **kwargs):
        if method == "log_head":
            return len(self.entries)
        start, limit, stop = kwargs["start"], kwargs["limit"], kwargs.get("stop")
        return [e for e in self.entries if start <= e["notification_id"]
                and (stop is None or e["notification_id"] <= stop)][:limit]


def test_an_unreadable_entry_of_the_log_is_set_aside_and_the_position_moves_past_it(
        registration, make_projector, dashboard_db):
    from tuoyu_shared.consumer import RpcLog

    for n in range(1, 4):
        registration.register_institution(sample_registration(n))
    entries = [e.to_dict() for e in registration.read_log(1, 10)]
    entries[1] = {**entries[1], "correlation_id": None, "schema_version": 0}
    projector = make_projector()
    projector.log_reader = RpcLog(FakeRpc(entries), "registration")
    projector.catch_up()  # once, no loop: before, this stalled the consumer for good
    assert projector.store.position("registration") == 3
    [error] = unreadable(dashboard_db)
    assert "correlation_id" in error and "schema_version" in error
    assert len(directory_rows(dashboard_db.database_url)) == 2
    # a delivered message after it is no gap any more
    projector.handle(Envelope.from_dict(entries[2]), 2)
    assert projector.store.dead_letters() == []


def test_an_unreadable_entry_is_set_aside_by_a_reacting_service_too(settings_factory):
    from tuoyu_credit.reactions import inspection_consumer
    from tuoyu_shared.consumer import RpcLog

    credit = CreditApplication(settings_factory("credit"))
    try:
        good = {**GOOD, "source": "inspection", "event_type": "InspectionRefused"}
        entries = [{**good, "notification_id": 1, "aggregate_id": ""},
                   {**good, "notification_id": 2, "payload": {"visit_id": "v",
                                                              "institution_id": "x"}}]
        consumer = inspection_consumer(credit, log_reader=RpcLog(FakeRpc(entries),
                                                                 "inspection"))
        consumer.max_attempts, consumer.retry_delay = 1, 0.001
        consumer.catch_up()
        assert consumer.store.position("inspection") == 2
        with psycopg.connect(credit.settings.database_url) as conn:
            [(error,)] = conn.execute(
                "SELECT error FROM consumer_unreadable_messages").fetchall()
        assert "aggregate_id" in error
        [parked] = consumer.store.dead_letters()  # the second: off its schema, parked
        assert parked.notification_id == 2
    finally:
        credit.close()


# ---- the door --------------------------------------------------------------------------------
GOOD = {"event_id": "e", "event_type": "InstitutionRegistered", "schema_version": 1,
        "source": "registration", "aggregate_id": "a", "aggregate_version": 1,
        "notification_id": 1, "occurred_at": "2025-01-01T00:00:00+00:00", "actor": "a",
        "department": "d", "correlation_id": "", "causation_id": "", "payload": {}}


@pytest.mark.parametrize("change", [
    {"notification_id": "5"}, {"notification_id": True}, {"notification_id": 0},
    {"notification_id": 2**63}, {"aggregate_id": None}, {"aggregate_id": ""},
    {"payload": []}, {"event_type": 7}, {"aggregate_version": 1.5}, {"actor": None},
])
def test_an_envelope_with_a_field_of_the_wrong_type_is_unreadable(change):
    with pytest.raises(UnreadableEnvelope):
        Envelope.from_dict({**GOOD, **change})
    missing = next(iter(change))
    with pytest.raises(UnreadableEnvelope, match=missing):
        Envelope.from_dict({k: v for k, v in GOOD.items() if k != missing})


def position_in(database_url: str, consumer: str = "dashboard",
                upstream: str = "registration") -> int:
    """Read on a connection of its own (a consumer's store is its thread's alone)."""
    store = SqlTrackingStore(database_url, consumer)
    try:
        return store.position(upstream)
    except psycopg.OperationalError:
        return -1  # its database is away
    finally:
        store.close()


def unreadable(settings) -> list[str]:
    with psycopg.connect(settings.database_url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT error FROM consumer_unreadable_messages ORDER BY id").fetchall()]


def test_wrong_types_and_a_foreign_source_are_set_aside_and_the_rest_flows(
        registration, relay, make_projector, dashboard_db, running, servers, unique):
    projector = make_projector(catchup_interval=60)
    exchange = f"registration-{unique}.events"
    import json

    with Connection(servers.amqp_uri) as conn:
        projector.queue(conn.default_channel).declare()
        producer = conn.Producer()
        for body in ({**GOOD, "notification_id": "1"}, {**GOOD, "aggregate_id": None},
                     {**GOOD, "source": "credit", "notification_id": 1}):
            producer.publish(json.dumps(body), exchange=exchange,
                             routing_key="InstitutionRegistered",
                             content_type="application/json")
    running.start(projector.run)
    registration.register_institution(sample_registration(1))
    running.start(relay.run)
    wait_for(lambda: position_in(dashboard_db.database_url) == 1, what="the good one")
    wait_for(lambda: len(unreadable(dashboard_db)) == 3, what="three set aside")
    errors = unreadable(dashboard_db)
    assert "notification_id" in errors[0] and "aggregate_id" in errors[1]
    assert "source 'credit'" in errors[2]
    running.close()
    assert projector.store.position("credit") == 0  # no other upstream's position moved
    assert projector.store.dead_letters() == []


# ---- two relays ------------------------------------------------------------------------------
def drain_queue(amqp_uri: str, queue: Queue) -> list[str]:
    ids = []
    with Connection(amqp_uri) as conn:
        bound = queue(conn.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            ids.append(message.properties["message_id"])
    return ids


def test_two_relays_publish_each_event_once_and_the_standby_takes_over(
        registration, servers, unique):
    exchange = f"registration-{unique}.events"
    queue = Queue(f"all-{unique}", Exchange(exchange, "topic", durable=True),
                  routing_key="#", durable=True)
    with Connection(servers.amqp_uri) as conn:
        queue(conn.default_channel).declare()
    first = Relay(registration, servers.amqp_uri, exchange=exchange, idle_wait=0.1)
    second = Relay(registration, servers.amqp_uri, exchange=exchange, idle_wait=0.1)
    stop_first, stop_second, stop_watch = threading.Event(), threading.Event(), threading.Event()
    positions: list[int] = []

    def watch(stop: threading.Event) -> None:
        with psycopg.connect(registration.settings.database_url, autocommit=True) as conn:
            while not stop.is_set():
                if conn.execute("SELECT to_regclass('relay_position')").fetchone()[0]:
                    row = conn.execute("SELECT notification_id FROM relay_position "
                                       "WHERE exchange=%s", (exchange,)).fetchone()
                    positions.append(row[0] if row else 0)
                time.sleep(0.01)

    threads = [threading.Thread(target=target, args=(stop,), daemon=True) for target, stop in (
        (first.run, stop_first), (second.run, stop_second), (watch, stop_watch))]
    for thread in threads:
        thread.start()
    try:
        for n in range(1, 31):
            registration.register_institution(sample_registration(n))
        wait_for(lambda: first.published + second.published == 30, what="30 published")
        owner, standby = (first, second) if first.published else (second, first)
        assert standby.published == 0 and not standby.owns_exchange()
        # The owner stops (a rolling upgrade): the standby takes the lock and goes on.
        (stop_first if owner is first else stop_second).set()
        threads[0 if owner is first else 1].join(10)
        for n in range(31, 41):
            registration.register_institution(sample_registration(n))
        wait_for(lambda: standby.published == 10, what="the standby took over")
    finally:
        for stop in (stop_first, stop_second, stop_watch):
            stop.set()
        for thread in threads:
            thread.join(10)
    ids = drain_queue(servers.amqp_uri, queue)
    assert len(ids) == 40 and len(set(ids)) == 40  # each event once
    assert positions == sorted(positions)  # only forwards, sampled all along
    assert standby.position() == 40 >= positions[-1]
    standby.close()


def test_a_position_never_moves_backwards(registration, servers, unique):
    relay = Relay(registration, servers.amqp_uri, exchange=f"registration-{unique}.events")
    try:
        relay._save_position(7)
        relay._save_position(3)  # a relay that lost its lock mid-batch
        assert relay.position() == 7
    finally:
        relay.close()


def test_connections_negotiate_heartbeats(registration, servers, unique):
    relay = Relay(registration, servers.amqp_uri, exchange=f"registration-{unique}.events")
    try:
        relay.publisher.connect()
        assert relay.publisher._raw.heartbeat == registration.settings.amqp_heartbeat > 0
        relay.publisher.heartbeat_check()
    finally:
        relay.close()


# ---- outages while events flow ---------------------------------------------------------------
def directory_rows(database_url: str) -> list[tuple]:
    """Every column that comes from the events (updated_at says when it was projected)."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT institution_id, name, credit_code, nature, kind, district, street, "
            "address, places, status, registered_at, version "
            "FROM institution_directory ORDER BY institution_id").fetchall()


def rebuilt_directory(registration, fresh_database) -> list[tuple]:
    url = fresh_database("dashboard")  # migrated: an empty directory
    rebuild = TrackedConsumer("rebuild", "registration", project_registration,
                              SqlTrackingStore(url, "rebuild"), ApplicationLog(registration),
                              "amqp://unused")
    rebuild.catch_up()
    rebuild.store.close()
    return directory_rows(url)


@pytest.fixture
def consumer_postgres(servers):
    """A PostgreSQL server of the consuming service's own, to restart while events flow."""
    if servers.rabbit is None:
        pytest.skip("needs the private local servers")
    pg = LocalPostgres(PROJECT_ROOT / ".local" / "test" / "consumer-pg", 26433, fast=True)
    pg.start()
    yield pg
    pg.stop()


def test_a_consumers_postgres_restarted_while_events_flow_loses_and_parks_nothing(
        registration, relay, servers, unique, consumer_postgres, running, fresh_database):
    import uuid as _uuid

    name = f"dash_{_uuid.uuid4().hex[:8]}"
    admin = consumer_postgres.uri
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    migrate("dashboard", url)
    projector = TrackedConsumer(
        f"dashboard-{unique}", "registration", project_registration,
        SqlTrackingStore(url, "dashboard"), ApplicationLog(registration), servers.amqp_uri,
        exchange=f"registration-{unique}.events", retry_delay=0.01, catchup_interval=0.5)
    running.start(projector.run)
    running.start(relay.run)
    wait_for(lambda: relay.owns_exchange(), what="relay up")

    def write(stop: threading.Event) -> None:
        for n in range(1, 61):
            registration.register_institution(sample_registration(n))
            time.sleep(0.03)

    writer = threading.Thread(target=write, args=(threading.Event(),), daemon=True)
    writer.start()
    time.sleep(0.5)
    consumer_postgres.stop()  # a real stop (pg_ctl -m fast) while events flow
    time.sleep(1.0)
    consumer_postgres.start()
    writer.join(30)

    wait_for(lambda: position_in(url) == 60, timeout=60,
             what="the projector caught up after the restart")
    assert directory_rows(url) == rebuilt_directory(registration, fresh_database)
    check = SqlTrackingStore(url, "dashboard")
    assert check.dead_letters() == []  # an outage parks nothing
    check.close()


@pytest.mark.broker_control
def test_rabbitmq_stopped_while_commands_are_accepted_read_models_equal_a_rebuild(
        registration, relay, make_projector, dashboard_db, running, broker, servers, unique,
        settings_factory, fresh_database):
    projector = make_projector(catchup_interval=60)
    credit = CreditApplication(settings_factory("credit"))
    reactions = credit_registration_consumer(credit, servers.amqp_uri,
                                             exchange=f"registration-{unique}.events",
                                             log_reader=ApplicationLog(registration))
    reactions.catchup_interval = 60
    try:
        running.start(projector.run)
        running.start(reactions.run)
        running.start(relay.run)
        for n in range(1, 4):
            registration.register_institution(sample_registration(n))
        wait_for(lambda: position_in(dashboard_db.database_url) == 3, what="before")
        broker.stop_app()
        try:
            for n in range(4, 24):
                registration.register_institution(sample_registration(n))  # still accepted
        finally:
            broker.start_app()
        wait_for(lambda: position_in(dashboard_db.database_url) == 23, timeout=60,
                 what="the read model after the outage")
        wait_for(lambda: reactions.store.position("registration") == 23, timeout=60,
                 what="credit's reactions after the outage")
        assert directory_rows(dashboard_db.database_url) == rebuilt_directory(
            registration, fresh_database)
        opened = sorted(e.payload["institution_id"] for e in credit.read_log(1, 1000)
                        if e.event_type == "InstitutionCreditOpened")
        assert opened == sorted(e.aggregate_id for e in registration.read_log(1, 1000))
        running.close()
        assert projector.store.dead_letters() == [] and reactions.store.dead_letters() == []
    finally:
        running.close()
        credit.close()
