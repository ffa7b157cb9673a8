"""A read model's tracking store on real PostgreSQL (:class:`SqlTrackingStore`): its position
row made the first time only, the held aggregates read with the position in one statement,
a view's reset honoured, and a read outside a transaction leaving none open."""

from __future__ import annotations

from uuid import uuid4

import psycopg
from psycopg.pq import TransactionStatus

from tuoyu_shared.consumer import DeadLetterTable, SqlTrackingStore
from tuoyu_shared.envelope import Envelope
from tuoyu_shared.views import View


def envelope(notification_id: int, aggregate_id: str) -> Envelope:
    return Envelope(
        event_id=str(uuid4()), event_type="InstitutionRegistered", schema_version=1,
        source="registration", aggregate_id=aggregate_id, aggregate_version=1,
        notification_id=notification_id, occurred_at="2026-01-01T00:00:00+00:00",
        actor="officer", department="health", correlation_id="c", causation_id="",
        payload={})


def seen_into(rows: list[tuple[int, str]]):
    def handler(env: Envelope, cur: psycopg.Cursor) -> None:
        cur.execute("SELECT %s::bigint", (env.notification_id,))
        rows.append((cur.fetchone()[0], env.aggregate_id))
    return handler


def test_the_first_message_makes_the_position_row_and_later_ones_move_it(fresh_database):
    url = fresh_database("tracking", migrated="kit")
    store = SqlTrackingStore(url, "reader")
    applied: list[tuple[int, str]] = []
    a, b = str(uuid4()), str(uuid4())
    try:
        assert store.position("registration") == 0
        assert store.apply(envelope(1, a), seen_into(applied))
        assert store.position("registration") == 1
        assert not store.apply(envelope(1, a), seen_into(applied))  # a redelivery
        assert store.apply_batch([envelope(2, b), envelope(3, a)], seen_into(applied)) == 2
        assert store.apply_batch([envelope(3, a), envelope(4, b)], seen_into(applied)) == 1
        # the store's session is left with no transaction open after a read
        store.position("registration")
        assert store.connection().info.transaction_status == TransactionStatus.IDLE
    finally:
        store.close()
    assert applied == [(1, a), (2, b), (3, a), (4, b)]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT consumer, upstream, notification_id FROM consumer_tracking"
                            ).fetchall() == [("reader", "registration", 4)]


def test_aggregates_with_open_letters_are_held_and_the_others_flow_past(fresh_database):
    url = fresh_database("tracking", migrated="kit")
    store = SqlTrackingStore(url, "reader")
    applied: list[tuple[int, str]] = []
    parked, other, redriven = str(uuid4()), str(uuid4()), str(uuid4())
    try:
        assert store.park(envelope(5, parked), "boom", 3)
        assert store.park(envelope(6, redriven), "boom", 3)
        with store.connection().transaction(), store.connection().cursor() as cur:
            [letter] = [d for d in store.dead_letters() if d.aggregate_id == redriven]
            store.dead.mark_redriven(cur, letter.id)
        assert store.dead.held_aggregates(store.connection(), "registration") == {parked: 5}
        assert DeadLetterTable("nobody").held_aggregates(store.connection(),
                                                         "registration") == {}
        # one message, then a page: each holds the parked aggregate's later event
        assert store.apply(envelope(7, parked), seen_into(applied))
        assert store.apply_batch([envelope(8, other), envelope(9, parked),
                                  envelope(10, redriven)], seen_into(applied)) == 3
        held = sorted((d.notification_id, d.held) for d in store.dead_letters())
    finally:
        store.close()
    assert applied == [(8, other), (10, redriven)]
    assert held == [(5, False), (7, True), (9, True)]


def view_and_store(fresh_database) -> tuple[str, View, SqlTrackingStore]:
    url = fresh_database("tracking", migrated="kit")
    view = View(name="reader", upstream="registration", tables=("consumer_unreadable_messages",),
                handler=lambda env, cur: None)
    return url, view, SqlTrackingStore(url, "reader")


def test_a_reset_view_is_replayed_from_the_start(fresh_database):
    url, view, store = view_and_store(fresh_database)
    applied: list[tuple[int, str]] = []
    a = str(uuid4())
    try:
        assert store.apply_batch([envelope(1, a), envelope(2, a)], seen_into(applied)) == 2
        view.reset(url)
        assert store.position("registration") == 0
        assert store.apply(envelope(1, a), seen_into(applied))
    finally:
        store.close()
    assert applied == [(1, a), (2, a), (1, a)]


def test_a_view_reset_by_another_process_is_not_skipped_past(fresh_database):
    """The store keeps the position it recorded (no read per message); a reset from another
    process moves the recorded one back, and the next batch must not apply past the log
    before it: it applies nothing, and the position is read again."""
    url, view, store = view_and_store(fresh_database)
    applied: list[tuple[int, str]] = []
    a = str(uuid4())
    try:
        assert store.apply_batch([envelope(1, a), envelope(2, a)], seen_into(applied)) == 2
        assert store.known_position("registration") == 2
        with psycopg.connect(url) as conn:  # another process moved it on: not read here
            conn.execute("UPDATE consumer_tracking SET notification_id = 3")
        assert store.known_position("registration") == 2
        assert not store.apply(envelope(3, a), seen_into(applied))  # the lock reads it
        assert store.known_position("registration") == 3
        assert store.apply(envelope(4, a), seen_into(applied))
        view.reset(url)  # another process
        assert store.known_position("registration") == 4  # not seen yet
        assert not store.apply(envelope(5, a), seen_into(applied))
        assert store.known_position("registration") == 0  # read again
        assert store.apply_batch([envelope(1, a), envelope(2, a)], seen_into(applied)) == 2
    finally:
        store.close()
    assert applied == [(1, a), (2, a), (4, a), (1, a), (2, a)]
