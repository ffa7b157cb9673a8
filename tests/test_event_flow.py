"""The event backbone's guarantees (DESIGN.md §2), against real PostgreSQL and RabbitMQ:
no dual write, effectively once, in order with gaps filled from the log, parking of poison
messages."""

from __future__ import annotations

import json
import random

import psycopg
from kombu import Connection

from tuoyu_dashboard.projections import project_registration
from tuoyu_registration.samples import sample_registration
from tuoyu_shared.catalogue import validate_envelope
from tuoyu_shared.context import command_context
from tuoyu_shared.testing import wait_for
from tuoyu_shared.worker import worker_main


def directory(settings) -> list[str]:
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT credit_code FROM institution_directory "
                            "ORDER BY version, registered_at").fetchall()
    return [r[0] for r in rows]


def position(settings, consumer: str = "dashboard") -> int:
    with psycopg.connect(settings.database_url) as conn:
        try:
            row = conn.execute("SELECT notification_id FROM consumer_tracking "
                               "WHERE consumer=%s AND upstream='registration'",
                               (consumer,)).fetchone()
        except psycopg.errors.UndefinedTable:  # the consumer has not started yet
            return 0
    return row[0] if row else 0


def recording(applied: list[int]):
    """The dashboard projection, also noting the order notifications were applied in."""

    def handler(env, cur):
        applied.append(env.notification_id)
        project_registration(env, cur)

    return handler


def file_many(app, start: int, count: int) -> list[str]:
    codes = []
    for n in range(start, start + count):
        data = sample_registration(n)
        with command_context(actor="officer-7", department="health"):
            app.register_institution(data)
        codes.append(data["credit_code"])
    return codes


def test_filed_institution_reaches_the_projector_exactly_once(
        registration, relay, make_projector, dashboard_db, running):
    applied: list[int] = []
    projector = make_projector(recording(applied))
    running.start(projector.run)
    running.start(relay.run)
    codes = file_many(registration, 1, 3)
    wait_for(lambda: position(dashboard_db) == 3, what="three events projected")
    assert directory(dashboard_db) == codes
    assert applied == [1, 2, 3]
    # The envelope carries who did it, and validates against the published schema.
    envelope = registration.read_log(1, 1)[0]
    assert envelope.event_type == "InstitutionRegistered"
    assert (envelope.actor, envelope.department) == ("officer-7", "health")
    assert envelope.correlation_id
    validate_envelope(envelope.to_dict())


def test_rabbitmq_outage_delays_but_loses_nothing(
        registration, relay, make_projector, dashboard_db, running, broker):
    applied: list[int] = []
    projector = make_projector(recording(applied), catchup_interval=60)
    running.start(projector.run)
    running.start(relay.run)
    first = file_many(registration, 1, 2)
    wait_for(lambda: position(dashboard_db) == 2, what="events before the outage")

    broker.stop_app()
    try:
        during = file_many(registration, 3, 20)  # commands are still accepted
        assert registration.log_head() == 22
    finally:
        broker.start_app()

    wait_for(lambda: position(dashboard_db) == 22, timeout=60, what="events after the outage")
    assert directory(dashboard_db) == first + during
    assert applied == list(range(1, 23))  # every event once, in order
    assert relay.position() == 22


def test_duplicates_and_reordering_give_the_in_order_state(
        registration, make_projector, dashboard_db):
    codes = file_many(registration, 1, 6)
    envelopes = registration.read_log(1, 10)
    applied: list[int] = []
    projector = make_projector(recording(applied))
    deliveries = envelopes + envelopes[::2] + list(reversed(envelopes))
    random.Random(7).shuffle(deliveries)
    for envelope in deliveries:
        projector.handle(envelope)
    assert applied == [1, 2, 3, 4, 5, 6]
    assert directory(dashboard_db) == codes


def test_the_same_message_published_twice_is_applied_once(
        registration, relay, make_projector, dashboard_db, running, servers, unique):
    applied: list[int] = []
    projector = make_projector(recording(applied))
    running.start(projector.run)
    running.start(relay.run)
    file_many(registration, 1, 1)
    wait_for(lambda: position(dashboard_db) == 1, what="first delivery")
    # Republish the very same bytes, as a relay crashing before saving its position would.
    envelope = registration.read_log(1, 1)[0]
    with Connection(servers.amqp_uri) as conn:
        conn.Producer().publish(envelope.to_json(), exchange=f"registration-{unique}.events",
                                routing_key=envelope.event_type,
                                content_type="application/json")
    file_many(registration, 2, 1)
    wait_for(lambda: position(dashboard_db) == 2, what="second event")
    assert applied == [1, 2]


def test_consumer_whose_queue_was_purged_catches_up_from_the_log(
        registration, relay, make_projector, dashboard_db, running, servers):
    projector = make_projector()
    with Connection(servers.amqp_uri) as conn:
        projector.queue(conn.default_channel).declare()  # bound, but nobody consuming
    file_many(registration, 1, 5)
    relay.drain()
    with Connection(servers.amqp_uri) as conn:
        assert projector.queue(conn.default_channel).purge() == 5
    running.start(projector.run)
    wait_for(lambda: position(dashboard_db) == 5, what="catch-up from the log")
    assert len(directory(dashboard_db)) == 5


def test_gap_is_filled_from_the_log_before_the_next_message(
        registration, relay, make_projector, dashboard_db, running, servers):
    applied: list[int] = []
    projector = make_projector(recording(applied), catchup_interval=60)
    with Connection(servers.amqp_uri) as conn:
        projector.queue(conn.default_channel).declare()
    file_many(registration, 1, 3)
    relay.drain()
    with Connection(servers.amqp_uri) as conn:
        projector.queue(conn.default_channel).purge()  # 1..3 lost on the fast path
    file_many(registration, 4, 1)
    relay.drain()  # only 4 is in the queue
    projector.catch_up = lambda: 0  # the idle catch-up must not be what saves us here
    running.start(projector.run)
    wait_for(lambda: position(dashboard_db) == 4, what="gap filled")
    assert applied == [1, 2, 3, 4]


def test_a_message_that_keeps_failing_is_parked_and_others_flow(
        registration, relay, make_projector, dashboard_db, running, capsys):
    poison = sample_registration(2)["credit_code"]
    attempts: list[int] = []

    def fragile(env, cur):
        if env.payload["credit_code"] == poison:
            attempts.append(env.notification_id)
            raise RuntimeError("read model rejects this row")
        project_registration(env, cur)

    projector = make_projector(fragile, max_attempts=3)
    running.start(projector.run)
    running.start(relay.run)
    codes = file_many(registration, 1, 4)
    wait_for(lambda: position(dashboard_db) == 4, what="all four handled")
    # three tries one by one (plus, when catch-up read it in a page, one inside that batch)
    assert set(attempts) == {2} and len(attempts) in (3, 4)
    assert directory(dashboard_db) == [c for c in codes if c != poison]

    [parked] = projector.store.dead_letters()
    assert (parked.notification_id, parked.event_type, parked.attempts) == (
        2, "InstitutionRegistered", 3)
    assert "read model rejects this row" in parked.error

    # Ops list it with the worker's command line, fix the cause, and re-drive it.
    cli = {"projector": projector}
    capsys.readouterr()
    assert worker_main(dict, lambda: cli, ["dead-letters"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()
              if line.startswith('{"consumer": "projector"')]
    assert [(d["id"], d["notification_id"]) for d in listed] == [(parked.id, 2)]
    assert worker_main(dict, lambda: cli, ["redrive", str(parked.id)]) == 1  # still failing
    assert len(projector.store.dead_letters()) == 1
    projector.handler = project_registration
    assert worker_main(dict, lambda: cli, ["redrive", str(parked.id)]) == 0
    assert projector.store.dead_letters() == []
    assert sorted(directory(dashboard_db)) == sorted(codes)


def test_an_unreachable_upstream_log_does_not_stop_the_fast_path(
        registration, relay, make_projector, dashboard_db, running):
    projector = make_projector(catchup_interval=0.2)

    class Unreachable:
        def read(self, start, limit, stop=None):
            raise TimeoutError("upstream RPC timed out")

        def head(self):
            raise TimeoutError("upstream RPC timed out")

    projector.log_reader = Unreachable()
    running.start(projector.run)
    running.start(relay.run)
    codes = file_many(registration, 1, 3)
    wait_for(lambda: position(dashboard_db) == 3, what="in-order messages applied")
    assert directory(dashboard_db) == codes


def test_relay_resumes_from_its_tracked_position_after_a_restart(
        registration, servers, unique, make_projector, dashboard_db):
    from tuoyu_shared.relay import Relay

    projector = make_projector()
    with Connection(servers.amqp_uri) as conn:
        projector.queue(conn.default_channel).declare()
    exchange = f"registration-{unique}.events"
    file_many(registration, 1, 3)
    first = Relay(registration, servers.amqp_uri, exchange=exchange)
    assert first.drain() == 3
    first.close()  # "crash" and start a new process: the position is in the database
    file_many(registration, 4, 2)
    second = Relay(registration, servers.amqp_uri, exchange=exchange)
    assert second.position() == 3
    assert second.drain() == 2
    assert second.lag() == 0
    second.close()
    with Connection(servers.amqp_uri) as conn:
        queued = projector.queue(conn.default_channel).queue_declare(passive=True).message_count
    assert queued == 5  # nothing published twice, nothing skipped


def test_an_earlier_version_still_served_is_published_with_its_own_routing_key(
        registration, relay, servers, unique, make_projector, dashboard_db, running):
    """v3 enrolment reports also go out as v2 (``InstitutionEnrolmentReported.v2``) for
    subscribers not yet upgraded; a ``*`` binding takes the current versions only, and a
    consumer whose queue was bound with ``#`` before ignores the copies."""
    from kombu import Exchange, Queue

    from tuoyu_registration.samples import sample_enrolment, sample_filing_submission

    exchange = Exchange(f"registration-{unique}.events", "topic", durable=True)
    queues = {key: Queue(f"legacy-{key}-{unique}", exchange, routing_key=key,
                         auto_delete=False) for key in ("*", "InstitutionEnrolmentReported.v2")}
    applied: list[int] = []
    projector = make_projector(recording(applied), routing_keys=("#",))  # an older binding
    with Connection(servers.amqp_uri) as conn:
        for queue in queues.values():
            queue(conn.default_channel).declare()
        projector.queue(conn.default_channel).declare()
    with command_context(actor="operator-1", department="institution"):
        institution = registration.register_institution(sample_registration(41))
        registration.submit_filing(str(institution), sample_filing_submission())
        registration.issue_filing_receipt(str(institution), {"receipt_number": "BA-41"})
        registration.report_enrolment(str(institution), sample_enrolment(
            registration.today().strftime("%Y-%m"), health_managed_children=12))
    running.start(projector.run)
    head = registration.log_head()
    assert relay.drain() == head
    wait_for(lambda: position(dashboard_db) == head, what="the projector to apply them all")
    with Connection(servers.amqp_uri) as conn:
        channel = conn.default_channel
        got = list(iter(lambda: queues["*"](channel).get(no_ack=True), None))
        current = [json.loads(m.body) for m in got]
        [old] = [m for m in iter(lambda: queues["InstitutionEnrolmentReported.v2"](
            channel).get(no_ack=True), None)]
    assert [(e["event_type"], e["schema_version"]) for e in current][-1] == (
        "InstitutionEnrolmentReported", 3)
    assert all("." not in m.delivery_info["routing_key"] for m in got)
    assert [e["notification_id"] for e in current] == list(range(1, head + 1))
    v2 = json.loads(old.body)
    assert v2["schema_version"] == 2 and "health_managed_children" not in v2["payload"]
    assert v2["event_id"] == current[-1]["event_id"]
    assert old.headers["cloudEvents_type"].endswith("InstitutionEnrolmentReported.v2")
    assert old.headers["previous_notification_id"] == current[-1]["notification_id"] - 1
    validate_envelope(v2)
    # the copy reached the old binding and was not applied again
    assert applied == list(range(1, head + 1))


def test_with_quorum_queues_events_flow_the_same(
        registration, relay, make_projector, dashboard_db, running, servers, monkeypatch):
    """TUOYU_QUEUE_TYPE=quorum (production's setting): the consumer's queue is a quorum queue
    (replicated on a RabbitMQ cluster; one node here) and delivers in order, once."""
    monkeypatch.setenv("TUOYU_QUEUE_TYPE", "quorum")
    applied: list[int] = []
    projector = make_projector(recording(applied), catchup_interval=60)
    running.start(projector.run)
    running.start(relay.run)
    codes = file_many(registration, 1, 3)
    wait_for(lambda: position(dashboard_db) == 3, what="three events projected")
    assert directory(dashboard_db) == codes and applied == [1, 2, 3]
    with Connection(servers.amqp_uri) as conn:
        name = projector.queue().name
        queue = projector.queue(conn.channel())
        # declaring it again as a classic queue is refused: the broker holds a quorum queue
        import amqp

        channel = conn.channel()
        try:
            channel.queue_declare(name, passive=False, durable=True, auto_delete=False,
                                  arguments={"x-queue-type": "classic",
                                             "x-single-active-consumer": True})
            raise AssertionError("a classic declaration of a quorum queue was accepted")
        except amqp.exceptions.PreconditionFailed as e:
            assert "x-queue-type" in str(e)
        assert queue.queue_arguments["x-queue-type"] == "quorum"


def test_an_unknown_queue_type_is_refused(monkeypatch):
    import pytest

    from tuoyu_shared.config import ConfigurationError, queue_arguments

    monkeypatch.setenv("TUOYU_QUEUE_TYPE", "stream")
    with pytest.raises(ConfigurationError, match="TUOYU_QUEUE_TYPE"):
        queue_arguments()
