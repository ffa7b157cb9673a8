"""Faults of the event backbone found in review, each pinned by a test:
holes in the notification log, a database that restarts, an envelope from a newer upstream,
a part of a worker that dies, and the order of an aggregate's events around a parked one."""

from __future__ import annotations

import threading

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError
from eventsourcing.persistence import OperationalError as LibraryOperationalError
from kombu import Connection

from tuoyu_dashboard.projections import project_registration
from tuoyu_registration.domain import Institution
from tuoyu_registration.samples import sample_registration
from tuoyu_shared.envelope import Envelope
from tuoyu_shared.testing import wait_for
from tuoyu_shared.worker import run_parts


def position(settings, consumer: str = "dashboard") -> int:
    with psycopg.connect(settings.database_url) as conn:
        try:
            row = conn.execute("SELECT notification_id FROM consumer_tracking "
                               "WHERE consumer=%s AND upstream='registration'",
                               (consumer,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return row[0] if row else 0


class Unreachable:
    def read(self, start, limit, stop=None):
        raise TimeoutError("upstream RPC timed out")

    def head(self):
        raise TimeoutError("upstream RPC timed out")


def make_hole(app) -> None:
    """A rolled-back insert: it takes a notification id and never commits."""
    institution_id = app.register_institution(sample_registration(50))
    first: Institution = app.repository.get(institution_id)
    second: Institution = app.repository.get(institution_id)
    first.deregister("a", "b", first.created_on.date())
    second.deregister("c", "d", second.created_on.date())
    app.save(first)
    with pytest.raises(IntegrityError):
        app.save(second)  # same version: conflict, rolled back after taking an id


def test_a_hole_in_the_log_is_no_gap_on_the_fast_path(
        registration, relay, make_projector, dashboard_db, running, servers):
    make_hole(registration)
    registration.register_institution(sample_registration(51))
    ids = [e.notification_id for e in registration.read_log(1, 10)]
    assert ids == [1, 2, 4], "the test needs a hole at 3"
    projector = make_projector(catchup_interval=60)
    projector.log_reader = Unreachable()  # the fast path alone must carry on
    with Connection(servers.amqp_uri) as conn:
        projector.queue(conn.default_channel).declare()
    running.start(projector.run)
    running.start(relay.run)
    wait_for(lambda: position(dashboard_db) == 4, what="all three applied past the hole")


def test_a_database_away_is_not_the_messages_fault(registration, make_projector, dashboard_db):
    registration.register_institution(sample_registration(1))
    [envelope] = registration.read_log(1, 1)

    def database_away(env, cur):
        raise LibraryOperationalError("terminating connection due to administrator command")

    projector = make_projector(database_away, max_attempts=2)
    with pytest.raises(LibraryOperationalError):
        projector.handle(envelope)
    assert projector.store.dead_letters() == []
    assert position(dashboard_db) == 0  # redelivered later, not skipped


def test_an_envelope_with_fields_from_a_newer_upstream_still_reads():
    data = Envelope(event_id="e", event_type="X", schema_version=1, source="s",
                    aggregate_id="a", aggregate_version=1, notification_id=1,
                    occurred_at="2025-01-01T00:00:00+00:00", actor="a", department="d",
                    correlation_id="c", causation_id="", payload={}).to_dict()
    data["tenant"] = "district-7"
    assert Envelope.from_dict(data).event_type == "X"


def test_an_unreadable_message_is_set_aside_and_the_others_flow(
        registration, relay, make_projector, dashboard_db, running, servers, unique):
    projector = make_projector(catchup_interval=60)
    with Connection(servers.amqp_uri) as conn:
        projector.queue(conn.default_channel).declare()  # queue and bindings, before publishing
        conn.Producer().publish(b"{not json", exchange=f"registration-{unique}.events",
                                routing_key="InstitutionRegistered",
                                content_type="application/json")
    running.start(projector.run)
    registration.register_institution(sample_registration(1))
    running.start(relay.run)
    wait_for(lambda: position(dashboard_db) == 1, what="the good message applied")

    def set_aside() -> list:
        with psycopg.connect(dashboard_db.database_url) as conn:
            return conn.execute("SELECT body FROM consumer_unreadable_messages").fetchall()

    wait_for(lambda: set_aside() != [], what="the unreadable message set aside")
    [(body,)] = set_aside()
    assert body.startswith("{not json")


def test_a_worker_whose_part_died_exits_non_zero():
    def dies(stop: threading.Event) -> None:
        raise RuntimeError("boom")

    def waits(stop: threading.Event) -> None:
        stop.wait(10)

    import signal

    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    assert run_parts({"dies": dies, "waits": waits}) is False
    # parts run in a test leave the test process's signals alone
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_later_events_of_an_aggregate_wait_behind_its_parked_one(
        registration, make_projector, dashboard_db):
    institution_id = registration.register_institution(sample_registration(1))
    registration.submit_filing(str(institution_id), _filing())
    other = registration.register_institution(sample_registration(2))
    first, second, third = registration.read_log(1, 10)
    fail = {"on": True}

    def fragile(env, cur):
        if env.event_type == "InstitutionRegistered" and fail["on"] and \
                env.aggregate_id == str(institution_id):
            raise RuntimeError("cannot project")
        project_registration(env, cur)

    projector = make_projector(fragile, max_attempts=2)
    for envelope in (first, second, third):
        projector.handle(envelope)
    parked = projector.store.dead_letters()
    assert [(d.notification_id, d.envelope.aggregate_id) for d in parked] == [
        (1, str(institution_id)), (2, str(institution_id))]  # 2 held behind 1
    assert position(dashboard_db) == 3  # the other institution flowed
    with pytest.raises(Exception, match="earlier"):
        projector.redrive(parked[1].id)  # out of order: refused
    fail["on"] = False
    projector.redrive(parked[0].id)
    projector.redrive(parked[1].id)
    with psycopg.connect(dashboard_db.database_url) as conn:
        rows = dict(conn.execute("SELECT institution_id::text, status "
                                 "FROM institution_directory").fetchall())
    assert rows == {str(institution_id): "filing_submitted", str(other): "registered"}


def _filing():
    from tuoyu_registration.samples import sample_filing_submission

    return sample_filing_submission()
