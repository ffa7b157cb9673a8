"""Tracked consumers: apply an upstream's events effectively once and in notification order.

RabbitMQ is the fast path; the upstream's notification log is the truth. For every message the
consumer compares its notification id with the position it has recorded for that upstream:

- at or below the position: a redelivery or a replay, acknowledged and ignored;
- the next one: applied;
- further on: a gap (a lost, purged or reordered message). The missing range is pulled from the
  upstream's log (over RPC in production) and applied in order first.

The position is written in the same transaction as the handler's effect (see
:class:`SqlTrackingStore`), so a crash between the two cannot happen. A failing handler is
retried with exponential backoff; after ``max_attempts`` the message is parked in the dead-letter
table with its error (the position moves past it in the same transaction, so the others keep
flowing) and can be listed and re-driven later.

While idle, and at start, the consumer asks the upstream for its log head and catches up, so a
purged queue or messages dropped while no queue was bound are found without a new message.
"""

from __future__ import annotations

import json
import random
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import amqp
import psycopg
from eventsourcing.persistence import IntegrityError as LibraryIntegrityError
from eventsourcing.persistence import InterfaceError as LibraryInterfaceError
from eventsourcing.persistence import OperationalError as LibraryOperationalError
from kombu import Connection, Exchange, Queue, binding
from kombu.exceptions import OperationalError as KombuOperationalError
from opentelemetry.trace import SpanKind

from tuoyu_shared import tracing
from tuoyu_shared.config import queue_arguments
from tuoyu_shared.context import command_context
from tuoyu_shared.envelope import Envelope, UnreadableEnvelope
from tuoyu_shared.logs import get_logger
from tuoyu_shared.tail import Pacer

log = get_logger("tuoyu.consumer")

Handler = Callable[[Envelope, psycopg.Cursor], None]

# What a failure says about the message (see failure_kind).
OUTAGE = "outage"          # not the message's fault: wait and retry, never park
CONTENTION = "contention"  # a concurrent writer: run again at once, not counted
FAILURE = "failure"        # the message cannot be applied: a few tries, then parked

#: Contention retries of one message before they count as one failure (a "conflict" that
#: never resolves is a bug, and must not loop for ever either).
CONTENTION_RETRIES = 50

# SQLSTATE classes and codes (PostgreSQL appendix A).
_OUTAGE_CLASSES = ("08", "53", "57", "58")  # connection, resources, operator intervention, system
# A server that is (still, or again) a read-only standby during a failover; an idle session
# ended by the server; a commit whose outcome is unknown (the connection went during it).
_OUTAGE_CODES = {"25006", "25P03", "40003"}
_CONTENTION_CODES = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock not available
_STATEMENT_TIMEOUT = "57014"
#: How long statement timeouts of one message are retried before it is parked (seconds).
STATEMENT_TIMEOUT_PATIENCE = 300.0


def failure_kind(error: BaseException) -> str:
    """Tell an outage from contention from a message that cannot be applied.

    - **Outage**: the database, the broker or the upstream is away: a connection refused or
      broken, an administrator's shutdown, the server out of resources, an RPC timeout. The
      message stays where it is (unacknowledged, position unmoved) and comes again.
    - **Contention**: an optimistic-concurrency conflict with a concurrent command on the
      same aggregate (the event store's version key), a serialization failure, a deadlock.
    - **Failure**: everything else: data and integrity errors, a type error, a schema
      violation, a handler bug. Retried a few times, then parked.

    A statement timeout (57014) counts as a failure, but a patient one (see
    :func:`is_statement_timeout`): a message whose effect cannot finish within the server's
    ``statement_timeout`` would time out every time, so waiting on it for ever would stall its
    consumer silently; yet a busy server (an import holding the events table, an I/O stall)
    times statements out too. Such a message is retried with backoff for at least
    :data:`STATEMENT_TIMEOUT_PATIENCE` seconds, then parked with the timeout as its error
    (visible in /metrics and the CLI), and re-driven once the cause is fixed.
    """
    if isinstance(error, LibraryIntegrityError):
        cause = error.__cause__
        if isinstance(cause, psycopg.Error) and cause.sqlstate not in (None, "23505"):
            return FAILURE  # a constraint the data breaks, not a version conflict
        return CONTENTION
    pg = error if isinstance(error, psycopg.Error) else error.__cause__
    if isinstance(pg, psycopg.Error):
        sqlstate = pg.sqlstate or ""
        if sqlstate in _CONTENTION_CODES:
            return CONTENTION
        if sqlstate == _STATEMENT_TIMEOUT:
            return FAILURE
        if sqlstate in _OUTAGE_CODES or sqlstate.startswith(_OUTAGE_CLASSES):
            return OUTAGE
        if not sqlstate and isinstance(pg, (psycopg.OperationalError, psycopg.InterfaceError)):
            return OUTAGE  # no SQLSTATE: the connection itself failed
        if isinstance(error, (LibraryOperationalError, LibraryInterfaceError)) and not sqlstate:
            return OUTAGE
        return FAILURE
    if isinstance(error, (LibraryOperationalError, LibraryInterfaceError, OSError,
                          amqp.exceptions.ConnectionError, KombuOperationalError)):
        return OUTAGE  # OSError covers ConnectionError and TimeoutError (an RPC timeout)
    return FAILURE


def is_statement_timeout(error: BaseException) -> bool:
    pg = error if isinstance(error, psycopg.Error) else error.__cause__
    return isinstance(pg, psycopg.Error) and pg.sqlstate == _STATEMENT_TIMEOUT


#: The newest upstream notification id each consumer of this process has heard of (from a
#: delivered message or a log head), by (consumer, upstream): with its applied position,
#: the consumer's lag (``tuoyu_consumer_lag_events`` in :mod:`tuoyu_shared.metrics`).
UPSTREAM_SEEN: dict[tuple[str, str], int] = {}


def _seen(consumer: str, upstream: str, notification_id: int) -> None:
    key = (consumer, upstream)
    if notification_id > UPSTREAM_SEEN.get(key, 0):
        UPSTREAM_SEEN[key] = notification_id


class UpstreamUnavailable(ConnectionError):
    """The upstream's log could not be read (its service or its database is away)."""


class UpstreamLog(Protocol):
    """Reads an upstream's notification log: envelopes with start <= id (<= stop)."""

    def read(self, start: int, limit: int, stop: int | None = None) -> list[Envelope]: ...

    def head(self) -> int: ...


class ApplicationLog:
    """The log of an application in this process (tests, tools)."""

    def __init__(self, app: Any):
        self.app = app

    def read(self, start: int, limit: int, stop: int | None = None) -> list[Envelope]:
        return self.app.read_log(start, limit, stop)

    def head(self) -> int:
        return self.app.log_head()


class RpcLog:
    """The log of another service, over its ``notifications`` and ``log_head`` RPC methods."""

    def __init__(self, rpc: Any, service: str):
        self.rpc = rpc
        self.service = service

    def read(self, start: int, limit: int, stop: int | None = None) -> list[Any]:
        items = self.rpc.call(self.service, "notifications", start=start, limit=limit, stop=stop)
        return [read_entry(item) for item in items]

    def head(self) -> int:
        return int(self.rpc.call(self.service, "log_head"))


@dataclass(frozen=True)
class UnreadableEntry:
    """An entry of an upstream's log that is no envelope of this version. It has its place in
    the log (a notification id), so it is set aside there and the position moves past it:
    waiting for it would hold up every later event of the upstream for ever."""

    notification_id: int
    body: str
    error: str


def read_entry(item: Any) -> Envelope | UnreadableEntry:
    try:
        return Envelope.from_dict(item)
    except UnreadableEnvelope as e:
        nid = item.get("notification_id") if isinstance(item, dict) else None
        if isinstance(nid, bool) or not isinstance(nid, int) or nid < 1:
            raise  # no place in the log: nothing can be moved past it
        return UnreadableEntry(nid, json.dumps(item, ensure_ascii=True, default=repr), str(e))


# The tables (consumer_tracking, consumer_dead_letters, consumer_unreadable_messages) come from
# the kit's migrations (tuoyu_shared/migrations/kit_0001_backbone.sql). The envelope of a
# dead letter is kept there as ASCII-escaped JSON text, not jsonb: jsonb refuses "\u0000", and
# a message that could not be applied may carry exactly that.


def storable(text: str) -> str:
    """Text PostgreSQL can store whatever it holds: NUL and lone surrogates escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def describe(error: BaseException) -> str:
    return storable("".join(traceback.format_exception_only(type(error), error)).strip())


@dataclass(frozen=True)
class DeadLetter:
    id: int
    consumer: str
    upstream: str
    notification_id: int
    event_type: str
    aggregate_id: str
    held: bool
    error: str
    attempts: int
    parked_at: str
    redriven_at: str | None
    envelope: Envelope

    def to_dict(self) -> dict[str, Any]:
        return {"consumer": self.consumer, "id": self.id, "upstream": self.upstream,
                "notification_id": self.notification_id, "event_type": self.event_type,
                "aggregate_id": self.aggregate_id,
                "state": "held" if self.held else "parked", "attempts": self.attempts,
                "parked_at": self.parked_at, "redriven_at": self.redriven_at,
                "error": self.error}


#: The open letters' aggregates of the row ``t`` (its consumer and upstream), each with its
#: earliest notification id, as one array of (aggregate id, id) pairs (NULL for none).
_HELD_ARRAY = (
    "(SELECT array_agg(ARRAY[d.aggregate_id, d.first::text]) FROM (SELECT aggregate_id, "
    "min(notification_id) AS first FROM consumer_dead_letters WHERE consumer=t.consumer "
    "AND upstream=t.upstream AND redriven_at IS NULL GROUP BY aggregate_id) d)")


def _held_of(pairs: Sequence[Sequence[str]] | None) -> dict[str, int]:
    return {aggregate_id: int(first) for aggregate_id, first in pairs or ()}


_SELECT_LETTERS = (
    "SELECT id, consumer, upstream, notification_id, event_type, aggregate_id, held, error, "
    "attempts, parked_at::text, redriven_at::text, envelope FROM consumer_dead_letters ")


def _letter(row: Sequence[Any]) -> DeadLetter:
    # Leniently: a letter parked because its envelope was off its contract must still list.
    return DeadLetter(*row[:11], envelope=Envelope.lenient(json.loads(row[11])))


class AlreadyRedriven(LookupError):
    """The parked message was re-driven (by another process) in the meantime."""


class DeadLetterTable:
    """Parked messages of one consumer, in the consumer's own database.

    A *parked* letter is a message that failed ``max_attempts`` times; a *held* one is a later
    event of the same aggregate, set aside unapplied so that the aggregate's events are never
    applied out of order. Every other aggregate flows past both.
    """

    def __init__(self, consumer: str):
        self.consumer = consumer

    def park(self, cur: psycopg.Cursor, envelope: Envelope, error: str, attempts: int,
             held: bool = False) -> None:
        cur.execute(
            "INSERT INTO consumer_dead_letters (consumer, upstream, notification_id, "
            "event_type, aggregate_id, held, envelope, error, attempts) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT (consumer, upstream, notification_id) DO NOTHING",
            (self.consumer, envelope.source, envelope.notification_id,
             storable(envelope.event_type), storable(envelope.aggregate_id), held,
             json.dumps(envelope.to_dict(), ensure_ascii=True), storable(error), attempts))

    def held_aggregates(self, cur: Any, upstream: str) -> dict[str, int]:
        """Aggregates with a letter not yet re-driven, each with its earliest parked
        notification id: their later events wait too. (A cursor, or a connection in
        autocommit: one statement.)"""
        row = cur.execute("SELECT " + _HELD_ARRAY + " FROM (SELECT %s AS consumer, "
                          "%s AS upstream) t", (self.consumer, upstream)).fetchone()
        return _held_of(row[0])

    def hold(self, cur: psycopg.Cursor, envelope: Envelope, behind: int) -> None:
        self.park(cur, envelope, f"held: notification {behind} of this aggregate is parked",
                  0, held=True)
        log.warning("consumer.held", consumer=self.consumer, upstream=envelope.source,
                    notification_id=envelope.notification_id, event_type=envelope.event_type,
                    aggregate_id=envelope.aggregate_id, behind=behind)

    def record_unreadable(self, cur: psycopg.Cursor, upstream: str, body: str,
                          error: str) -> None:
        cur.execute("INSERT INTO consumer_unreadable_messages (consumer, upstream, body, error) "
                    "VALUES (%s, %s, %s, %s)",
                    (self.consumer, upstream, storable(body), storable(error)))

    def list(self, conn: psycopg.Connection, include_redriven: bool) -> list[DeadLetter]:
        with conn.transaction():
            rows = conn.execute(
                _SELECT_LETTERS + "WHERE consumer=%s AND (%s OR redriven_at IS NULL) ORDER BY id",
                (self.consumer, include_redriven)).fetchall()
        return [_letter(row) for row in rows]

    def get(self, conn: psycopg.Connection, dead_letter_id: int) -> DeadLetter:
        with conn.transaction():
            row = conn.execute(_SELECT_LETTERS + "WHERE consumer=%s AND id=%s",
                               (self.consumer, dead_letter_id)).fetchone()
        if row is None:
            raise KeyError(f"no parked message {dead_letter_id} for {self.consumer}")
        return _letter(row)

    def take(self, cur: psycopg.Cursor, dead_letter_id: int) -> Envelope:
        """The envelope of a letter not yet re-driven, if it is its aggregate's earliest."""
        cur.execute(
            "SELECT envelope FROM consumer_dead_letters WHERE id=%s AND consumer=%s "
            "AND redriven_at IS NULL", (dead_letter_id, self.consumer))
        row = cur.fetchone()
        if row is None:
            raise KeyError(f"no parked message {dead_letter_id} for {self.consumer}")
        envelope = Envelope.lenient(json.loads(row[0]))
        cur.execute(
            "SELECT min(notification_id) FROM consumer_dead_letters WHERE consumer=%s "
            "AND upstream=%s AND aggregate_id=%s AND redriven_at IS NULL",
            (self.consumer, envelope.source, envelope.aggregate_id))
        earliest = cur.fetchone()[0]
        if earliest < envelope.notification_id:
            raise ValueError(f"re-drive notification {earliest} of aggregate "
                             f"{envelope.aggregate_id} first: it is earlier")
        return envelope

    def mark_redriven(self, cur: psycopg.Cursor, dead_letter_id: int) -> None:
        """In the transaction of the re-driven effect; refuses a letter re-driven already
        (two operators at once), so the effect is rolled back rather than applied twice."""
        cur.execute("UPDATE consumer_dead_letters SET redriven_at=now() "
                    "WHERE id=%s AND redriven_at IS NULL RETURNING id", (dead_letter_id,))
        if cur.fetchone() is None:
            raise AlreadyRedriven(f"parked message {dead_letter_id} was re-driven already")

    def note_failure(self, conn: psycopg.Connection, dead_letter_id: int, error: str) -> None:
        with conn.transaction():
            conn.execute("UPDATE consumer_dead_letters SET error=%s, attempts=attempts+1, "
                         "held=false WHERE id=%s", (storable(error), dead_letter_id))


class _Connected:
    def __init__(self, database_url: str):
        self.database_url = database_url
        self._conn: psycopg.Connection | None = None

    def connection(self) -> psycopg.Connection:
        """The store's own session, in autocommit: a read outside ``transaction()`` is one
        statement and one round trip (no ``BEGIN`` and ``COMMIT`` around it, and no
        transaction left open after it); every write is in a ``transaction()`` block."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class SqlTrackingStore(_Connected):
    """Tracking and dead letters in the consumer's own PostgreSQL database, for read models.

    The handler is ``handler(envelope, cursor)``: whatever it writes with the cursor commits
    with the position.
    """

    def __init__(self, database_url: str, consumer: str):
        super().__init__(database_url)
        self.consumer = consumer
        self.dead = DeadLetterTable(consumer)
        #: upstream → the position this store last read or recorded (see known_position)
        self._known: dict[str, int] = {}

    def position(self, upstream: str) -> int:
        """The position as recorded (a read)."""
        self._known.pop(upstream, None)
        row = self.connection().execute(
            "SELECT notification_id FROM consumer_tracking WHERE consumer=%s AND upstream=%s",
            (self.consumer, upstream),
        ).fetchone()
        position = row[0] if row else 0
        self._known[upstream] = position
        return position

    def known_position(self, upstream: str) -> int:
        """The position this store last read or recorded itself, without a read (the
        consumer asks it for every delivered message).

        Only a view's reset (:meth:`View.reset`, from another process) moves the recorded
        one back: the batch that finds it so applies nothing and forgets what it knew, so
        the next message, or the next catch-up, reads the position and replays the log
        from it. Behind, it costs nothing wrong, as for :class:`ApplicationTrackingStore`."""
        known = self._known.get(upstream)
        return self.position(upstream) if known is None else known

    def _lock_position(self, cur: psycopg.Cursor, upstream: str) -> int:
        return self._lock_position_and_held(cur, upstream, with_held=False)[0]

    def _lock_position_and_held(self, cur: psycopg.Cursor, upstream: str,
                                with_held: bool = True) -> tuple[int, dict[str, int]]:
        """The position, locked for this transaction, and (``with_held``) the aggregates
        with an open letter (:meth:`DeadLetterTable.held_aggregates`): one statement. The
        tracking row is made the first time only (it is never deleted: a view's reset sets
        it to 0)."""
        query = ("SELECT notification_id, " + (_HELD_ARRAY if with_held else "NULL") +
                 " FROM consumer_tracking t WHERE consumer=%s AND upstream=%s FOR UPDATE OF t")
        cur.execute(query, (self.consumer, upstream))
        row = cur.fetchone()
        if row is None:
            cur.execute(
                "INSERT INTO consumer_tracking (consumer, upstream, notification_id) "
                "VALUES (%s, %s, 0) ON CONFLICT DO NOTHING", (self.consumer, upstream))
            cur.execute(query, (self.consumer, upstream))
            row = cur.fetchone()
        return row[0], _held_of(row[1])

    def _move(self, cur: psycopg.Cursor, upstream: str, notification_id: int) -> None:
        cur.execute(
            "UPDATE consumer_tracking SET notification_id=%s, updated_at=now() "
            "WHERE consumer=%s AND upstream=%s", (notification_id, self.consumer, upstream))

    def apply(self, envelope: Envelope, handler: Handler) -> bool:
        """Apply once: False when the position is already at or past this message."""
        return self.apply_batch([envelope], handler) == 1

    def apply_batch(self, envelopes: Sequence[Envelope], handler: Handler) -> int:
        """Apply consecutive envelopes of one upstream in one transaction (all or none)."""
        if not envelopes:
            return 0
        conn = self.connection()
        upstream = envelopes[0].source
        known = self._known.pop(upstream, None)  # restored once the batch has committed
        # A page is pipelined: the handlers' statements go out without a round trip each (a
        # read still waits for its answer). A statement that fails surfaces by the end of
        # the block at the latest and rolls the whole batch back; the consumer then applies
        # the page one by one and finds it. One message is not: for a handful of statements
        # the pipeline's own bookkeeping costs more CPU than the round trips it saves.
        with (conn.pipeline() if len(envelopes) > 1 else nullcontext()), \
                conn.transaction(), conn.cursor() as cur:
            position, held = self._lock_position_and_held(cur, upstream)
            if known is not None and position < known:
                # reset meanwhile: applying these would skip the log before them
                log.info("consumer.position_reset", consumer=self.consumer,
                         upstream=upstream, known=known, recorded=position)
                return 0
            fresh = [e for e in envelopes if e.notification_id > position]
            for envelope in fresh:
                if envelope.aggregate_id in held:
                    self.dead.hold(cur, envelope, held[envelope.aggregate_id])
                else:
                    handler(envelope, cur)
            if fresh:
                self._move(cur, upstream, fresh[-1].notification_id)
        self._known[upstream] = fresh[-1].notification_id if fresh else position
        return len(fresh)

    def park(self, envelope: Envelope, error: str, attempts: int) -> bool:
        self._known.pop(envelope.source, None)  # it moves the position: read it next time
        conn = self.connection()
        with conn.transaction(), conn.cursor() as cur:
            if self._lock_position(cur, envelope.source) >= envelope.notification_id:
                return False
            self.dead.park(cur, envelope, error, attempts)
            self._move(cur, envelope.source, envelope.notification_id)
        return True

    def dead_letters(self, include_redriven: bool = False) -> list[DeadLetter]:
        return self.dead.list(self.connection(), include_redriven)

    def redrive(self, dead_letter_id: int, handler: Handler) -> None:
        """Apply a parked message again and mark it, in one transaction; it stays parked
        (with the new error) if it fails again."""
        conn = self.connection()
        failed: Exception | None = None
        try:
            with conn.transaction(), conn.cursor() as cur:
                envelope = self.dead.take(cur, dead_letter_id)  # refusals raise here
                try:
                    handler(envelope, cur)
                    self.dead.mark_redriven(cur, dead_letter_id)
                except AlreadyRedriven:
                    raise
                except Exception as e:
                    failed = e
                    raise
        finally:
            if failed is not None and failure_kind(failed) != OUTAGE:
                self.dead.note_failure(conn, dead_letter_id, describe(failed))

    def set_aside(self, upstream: str, entry: UnreadableEntry) -> bool:
        """An unreadable log entry: recorded, and the position moved past it, together."""
        self._known.pop(upstream, None)  # it moves the position: read it next time
        conn = self.connection()
        with conn.transaction(), conn.cursor() as cur:
            if self._lock_position(cur, upstream) >= entry.notification_id:
                return False
            self.dead.record_unreadable(cur, upstream, entry.body, entry.error)
            self._move(cur, upstream, entry.notification_id)
        return True


class ApplicationTrackingStore(_Connected):
    """Tracking in an eventsourcing application's own recorder, for services that react.

    The handler is ``handler(envelope) -> aggregates``: it loads and changes aggregates, and
    their new events are recorded with the tracking record in one transaction
    (:meth:`ServiceApplication.record_processing`), and so are a parked or held letter. An
    optimistic-concurrency conflict with a concurrent command raises, and the consumer runs
    the handler again on fresh state (contention, not a failure).
    """

    def __init__(self, app: Any, consumer: str):
        super().__init__(app.settings.database_url)
        self.app = app
        self.consumer = consumer
        self.dead = DeadLetterTable(consumer)
        #: upstream → the position this store last read or recorded (see known_position)
        self._known: dict[str, int] = {}

    def _name(self, upstream: str) -> str:
        return f"{self.consumer}<-{upstream}"

    def position(self, upstream: str) -> int:
        """The position as recorded (a read)."""
        position = self.app.tracking_position(self._name(upstream))
        self._known[upstream] = position
        return position

    def known_position(self, upstream: str) -> int:
        """The position this store last read or recorded itself, without a read.

        It can only be behind the recorded one, never ahead: positions only move forwards
        (nothing resets a reaction's tracking record), and another process moves it only
        while this one is not the queue's active consumer. Behind, it costs nothing wrong:
        a message at or before it is a duplicate all the same; a message that does not
        follow it looks like a gap, and the consumer reads the position before filling one;
        a message already applied elsewhere is refused by the tracking record itself, and a
        failure reads the position before it is retried (TrackedConsumer)."""
        known = self._known.get(upstream)
        return self.position(upstream) if known is None else known

    def _recorded(self, upstream: str, notification_id: int,
                  record: Callable[[], bool]) -> bool:
        self._known.pop(upstream, None)
        recorded = record()
        if recorded:
            self._known[upstream] = notification_id
        return recorded

    def apply(self, envelope: Envelope, handler: Callable[[Envelope], Any]) -> bool:
        # No position check here: the consumer has just compared it, and a concurrent
        # duplicate is refused by the tracking record itself (record_processing → False).
        behind = self.dead.held_aggregates(self.connection(), envelope.source).get(
            envelope.aggregate_id)
        name = self._name(envelope.source)
        if behind is not None:
            return self._recorded(envelope.source, envelope.notification_id,
                                  lambda: self.app.record_processing(
                                      name, envelope.notification_id,
                                      in_transaction=lambda cur: self.dead.hold(cur, envelope,
                                                                                behind)))
        self._known.pop(envelope.source, None)
        aggregates = handler(envelope) or ()
        return self._recorded(envelope.source, envelope.notification_id,
                              lambda: self.app.record_processing(name, envelope.notification_id,
                                                                 *aggregates))

    def apply_batch(self, envelopes: Sequence[Envelope],
                    handler: Callable[[Envelope], Any]) -> int:
        """Apply consecutive envelopes of one upstream in one transaction (all or none): the
        handlers run one after another on one identity map (:meth:`ServiceApplication.batch`:
        each sees the earlier ones' changes), and every changed aggregate is saved once, with
        the position of the last envelope and the held letters, by one
        ``record_processing``. A failure anywhere saves nothing; the consumer then applies
        the page one by one and finds the failing message."""
        if not envelopes:
            return 0
        position = self.known_position(envelopes[0].source)
        fresh = [e for e in envelopes if e.notification_id > position]
        if not fresh:
            return 0
        source = fresh[0].source
        held = self.dead.held_aggregates(self.connection(), source)
        holds: list[tuple[Envelope, int]] = []
        changed: dict[Any, Any] = {}
        with self.app.batch() as seen:
            for envelope in fresh:
                behind = held.get(envelope.aggregate_id)
                if behind is not None:
                    holds.append((envelope, behind))
                    continue
                for aggregate in self.app.after_step(list(handler(envelope) or ())):
                    seen[aggregate.id] = aggregate
                    changed[aggregate.id] = aggregate

            def hold_all(cur: Any) -> None:
                for envelope, behind in holds:
                    self.dead.hold(cur, envelope, behind)

            recorded = self._recorded(source, fresh[-1].notification_id,
                                      lambda: self.app.record_processing(
                                          self._name(source), fresh[-1].notification_id,
                                          *changed.values(),
                                          in_transaction=hold_all if holds else None))
        return len(fresh) if recorded else 0

    def stamp(self, aggregates: Any) -> None:
        """Called by the consumer inside each message's context: the message's events carry
        its correlation and causation ids even when saved later with a batch."""
        if aggregates:
            self.app.stamp(list(aggregates))

    def park(self, envelope: Envelope, error: str, attempts: int) -> bool:
        return self._recorded(envelope.source, envelope.notification_id,
                              lambda: self.app.record_processing(
                                  self._name(envelope.source), envelope.notification_id,
                                  in_transaction=lambda cur: self.dead.park(
                                      cur, envelope, error, attempts)))

    def set_aside(self, upstream: str, entry: UnreadableEntry) -> bool:
        return self._recorded(upstream, entry.notification_id,
                              lambda: self.app.record_processing(
                                  self._name(upstream), entry.notification_id,
                                  in_transaction=lambda cur: self.dead.record_unreadable(
                                      cur, upstream, entry.body, entry.error)))

    def dead_letters(self, include_redriven: bool = False) -> list[DeadLetter]:
        return self.dead.list(self.connection(), include_redriven)

    def redrive(self, dead_letter_id: int, handler: Callable[[Envelope], Any]) -> None:
        """Run the handler again and record its events with the letter's mark in one
        transaction; a concurrent command on the same aggregate makes it run again."""
        conn = self.connection()
        for attempt in range(CONTENTION_RETRIES + 1):
            with conn.transaction(), conn.cursor() as cur:
                envelope = self.dead.take(cur, dead_letter_id)
            try:
                aggregates = handler(envelope) or ()
                self.app.save(*aggregates, in_transaction=lambda cur: self.dead.mark_redriven(
                    cur, dead_letter_id))
                return
            except AlreadyRedriven:
                raise
            except Exception as e:
                kind = failure_kind(e)
                if kind == CONTENTION and attempt < CONTENTION_RETRIES:
                    time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
                    continue
                if kind != OUTAGE:
                    self.dead.note_failure(conn, dead_letter_id, describe(e))
                raise


class TrackedConsumer:
    def __init__(
        self,
        name: str,
        upstream: str,
        handler: Handler,
        store: SqlTrackingStore,
        log_reader: UpstreamLog,
        amqp_uri: str,
        *,
        exchange: str | None = None,
        routing_keys: Sequence[str] = ("*",),
        max_attempts: int = 5,
        retry_delay: float = 0.2,
        catchup_interval: float = 5.0,
        page_size: int = 500,
        batch_window: float = 0.0,
        heartbeat: float = 30.0,
        statement_timeout_patience: float = STATEMENT_TIMEOUT_PATIENCE,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.name = name
        self.upstream = upstream
        self.handler = handler
        self.store = store
        self.log_reader = log_reader
        self.amqp_uri = amqp_uri
        self.exchange_name = exchange or f"{upstream}.events"
        self.routing_keys = tuple(routing_keys)
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.catchup_interval = catchup_interval
        self.page_size = page_size
        #: after a round, messages gather this long before the next (see tail.Pacer)
        self.pacer = Pacer(batch_window)
        self.heartbeat = heartbeat
        self.statement_timeout_patience = statement_timeout_patience
        self.sleep = sleep
        # The store's position without a read where it keeps one (ApplicationTrackingStore:
        # the position it last read or recorded, never ahead of the recorded one).
        self._knows_position = hasattr(store, "known_position")
        self._known_position: Callable[[str], int] = getattr(store, "known_position",
                                                             store.position)
        # While a long catch-up or gap fill runs, heartbeats must still go out (run() sets it).
        self._keepalive: Callable[[], None] | None = None
        self.applied = 0
        self.parked = 0
        # The name its positions are kept under (the metrics' ``consumer`` label).
        self._tracked_as = getattr(store, "consumer", name)
        # Delivered, not yet applied nor acknowledged: (envelope, previous id, message).
        self._delivered: list[tuple[Envelope, int | None, Any]] = []

    def queue(self, channel=None) -> Queue:
        exchange = Exchange(self.exchange_name, "topic", durable=True)
        return Queue(
            f"{self.name}.{self.exchange_name}",
            bindings=[binding(exchange, routing_key=key) for key in self.routing_keys],
            durable=True,
            # One active consumer per queue keeps notification order when ops scale out.
            queue_arguments={"x-single-active-consumer": True, **queue_arguments()},
            channel=channel,
        )

    @staticmethod
    def _context_of(envelope: Envelope) -> Any:
        """What the effect of a message runs under: the message's correlation id, and its
        event as the cause (stamped on every event the effect records)."""
        return command_context(correlation_id=envelope.correlation_id or None,
                               causation_id=envelope.event_id)

    def _span_of(self, envelope: Envelope) -> Any:
        """The trace span of applying one envelope (:mod:`tuoyu_shared.tracing`; nothing
        when tracing is off)."""
        return tracing.span(f"apply {envelope.source}.{envelope.event_type}",
                            envelope.correlation_id, SpanKind.CONSUMER,
                            consumer=self._tracked_as, aggregate_id=envelope.aggregate_id,
                            event_type=envelope.event_type,
                            notification_id=envelope.notification_id)

    def _in_context(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        stamp = getattr(self.store, "stamp", None)

        def run(envelope: Envelope, *args: Any) -> Any:
            with self._context_of(envelope), self._span_of(envelope):
                result = handler(envelope, *args)
                if stamp is not None:
                    stamp(result)
                return result
        return run

    # Applying one envelope, with retries and parking.
    def _apply_with_retries(self, envelope: Envelope) -> None:
        failures = contention = 0
        timing_out_since: float | None = None
        while True:
            try:
                with self._context_of(envelope), self._span_of(envelope):
                    if self.store.apply(envelope, self.handler):
                        self.applied += 1
                return
            except Exception as e:
                kind = failure_kind(e)
                if kind == OUTAGE:
                    raise
                if self._applied_meanwhile(envelope):
                    return  # by another process (a queue's consumer before us, a catch-up)
                if kind == CONTENTION and contention < CONTENTION_RETRIES:
                    contention += 1
                    self.sleep(random.uniform(0, self.retry_delay * min(contention, 10) / 10))
                    continue
                failures += 1
                patient = False
                if is_statement_timeout(e):
                    timing_out_since = timing_out_since or time.monotonic()
                    patient = (time.monotonic() - timing_out_since
                               < self.statement_timeout_patience)
                if failures >= self.max_attempts and not patient:
                    self._park(envelope, e, failures)
                    return
                delay = min(self.retry_delay * (2 ** (min(failures, 20) - 1)), 30.0)
                log.warning("consumer.retry", consumer=self.name, upstream=self.upstream,
                            notification_id=envelope.notification_id,
                            event_type=envelope.event_type, aggregate_id=envelope.aggregate_id,
                            attempt=failures, retry_in=delay, error=describe(e))
                self.sleep(delay)

    def _applied_meanwhile(self, envelope: Envelope) -> bool:
        """After a failure: whether the recorded position has reached this envelope, which
        is then no failure of ours (read only where the store keeps a position it knows)."""
        if not self._knows_position:
            return False
        try:
            return self.store.position(envelope.source) >= envelope.notification_id
        except Exception:
            return False

    def _park(self, envelope: Envelope, error: BaseException, attempts: int) -> None:
        text = describe(error)
        if self.store.park(envelope, text, attempts):
            self.parked += 1
            log.error("consumer.parked", consumer=self.name, upstream=self.upstream,
                      notification_id=envelope.notification_id,
                      event_type=envelope.event_type, aggregate_id=envelope.aggregate_id,
                      error=text, attempts=attempts)

    def _apply_page(self, page: list[Envelope]) -> None:
        """A page from the log: in one transaction where the store can, else one by one
        (which is also the fallback when any message of the page fails)."""
        if any(isinstance(entry, UnreadableEntry) for entry in page):
            for entry in page:
                if isinstance(entry, UnreadableEntry):
                    self._set_aside_entry(entry)
                else:
                    self._apply_with_retries(entry)
            return
        apply_batch = getattr(self.store, "apply_batch", None)
        if apply_batch is not None and len(page) > 1:
            try:
                self.applied += apply_batch(page, self._in_context(self.handler))
                return
            except Exception as e:
                if failure_kind(e) == OUTAGE:
                    raise
                # find and park the failing one below
        for envelope in page:
            self._apply_with_retries(envelope)

    def _set_aside_entry(self, entry: UnreadableEntry) -> None:
        if self.store.set_aside(self.upstream, entry):
            log.error("consumer.unreadable_entry", consumer=self.name, upstream=self.upstream,
                      notification_id=entry.notification_id, error=storable(entry.error))

    def _read_log(self, start: int, stop: int | None) -> list[Any]:
        try:
            return self.log_reader.read(start=start, limit=self.page_size, stop=stop)
        except Exception as e:
            raise UpstreamUnavailable(f"cannot read the {self.upstream} log from {start}: "
                                      f"{e!r}") from e

    def _fill_from_log(self, start: int, stop: int | None) -> int:
        """Apply the upstream's log from start up to stop (inclusive), page by page."""
        count = 0
        while True:
            page = self._read_log(start, stop)
            if page:
                _seen(self._tracked_as, self.upstream, page[-1].notification_id)
            self._apply_page(page)
            count += len(page)
            if self._keepalive is not None:
                self._keepalive()
            if len(page) < self.page_size:
                return count
            start = page[-1].notification_id + 1

    def handle(self, envelope: Envelope, previous: int | None = None) -> None:
        """Apply one delivered envelope, filling any gap before it from the upstream's log.

        ``previous`` is the notification id before this one in the upstream's log (the relay
        sends it): a gap is an event committed between our position and this one. Without
        it, any id past position + 1 counts as a gap (holes from rolled-back inserts then
        cost a read of the log, nothing worse).
        """
        _seen(self._tracked_as, self.upstream, envelope.notification_id)
        position = self._known_position(envelope.source)
        if envelope.notification_id <= position:
            return
        gap = self._gap(envelope, previous, position)
        if gap and self._knows_position:
            # the position known may be behind the recorded one: read it before filling
            position = self.store.position(envelope.source)
            if envelope.notification_id <= position:
                return
            gap = self._gap(envelope, previous, position)
        if gap:
            log.info("consumer.gap", consumer=self.name, upstream=self.upstream,
                     position=position, received=envelope.notification_id)
            self._fill_from_log(position + 1, envelope.notification_id)
        self._apply_with_retries(envelope)

    def handle_many(self, delivered: Sequence[tuple[Envelope, int | None]]) -> None:
        """Apply envelopes delivered together (``(envelope, previous id)`` each, in any
        order, duplicates allowed): each run of consecutive ones (every ``previous`` the id
        before it) in one transaction where the store can (``apply_batch``), a gap before a
        run filled from the upstream's log first, exactly as :meth:`handle` does for one."""
        if len(delivered) == 1:
            self.handle(*delivered[0])
            return
        _seen(self._tracked_as, self.upstream,
              max(envelope.notification_id for envelope, _ in delivered))
        position = self._known_position(self.upstream)
        first = min(delivered, key=lambda d: d[0].notification_id)
        if (self._knows_position
                and first[0].notification_id > position
                and self._gap(first[0], first[1], position)):
            position = self.store.position(self.upstream)  # known may be behind: read it
        fresh: dict[int, tuple[Envelope, int | None]] = {}
        for envelope, previous in delivered:
            if envelope.notification_id > position:
                fresh.setdefault(envelope.notification_id, (envelope, previous))
        ordered = [fresh[nid] for nid in sorted(fresh)]
        i = 0
        while i < len(ordered):
            envelope, previous = ordered[i]
            if (previous > position) if previous is not None else (
                    envelope.notification_id > position + 1):
                log.info("consumer.gap", consumer=self.name, upstream=self.upstream,
                         position=position, received=envelope.notification_id)
                self._fill_from_log(position + 1, envelope.notification_id)
                self._apply_with_retries(envelope)
                position, i = envelope.notification_id, i + 1
                continue
            j, last = i + 1, envelope.notification_id
            while j < len(ordered):
                following, before = ordered[j]
                if (before != last) if before is not None else (
                        following.notification_id != last + 1):
                    break
                last, j = following.notification_id, j + 1
            self._apply_page([e for e, _ in ordered[i:j]])
            position, i = last, j

    @staticmethod
    def _gap(envelope: Envelope, previous: int | None, position: int) -> bool:
        """Whether an event lies between the position and this envelope: ``previous`` (the
        id before it in the upstream's log) past the position; without it, any id past
        position + 1."""
        return (previous > position) if previous is not None else (
            envelope.notification_id > position + 1)

    def _try_catch_up(self) -> None:
        """Catch up, but never let an absent upstream stop the fast path."""
        try:
            self.catch_up()
        except UpstreamUnavailable as e:
            log.warning("consumer.catch_up_failed", consumer=self.name, upstream=self.upstream,
                        error=str(e))

    def catch_up(self, ask_head: bool = True) -> int:
        """Apply whatever the upstream's log holds past this consumer's position. With
        ``ask_head`` false the log is read past the position without asking for its head
        first (a follower of its own service's log, woken by a commit: the head is one more
        statement, and an empty page says as much)."""
        position = self.store.position(self.upstream)
        if ask_head:
            try:
                head = self.log_reader.head()
            except Exception as e:
                raise UpstreamUnavailable(f"no log head from {self.upstream}: {e!r}") from e
            _seen(self._tracked_as, self.upstream, head)
            if head <= position:
                return 0
        count = self._fill_from_log(position + 1, None)
        if count:
            log.info("consumer.caught_up", consumer=self.name, upstream=self.upstream,
                     applied=count)
        return count

    def redrive(self, dead_letter_id: int) -> None:
        """Apply a parked (or held) message again, under its original correlation id and
        caused by its own event, and mark it re-driven in the same transaction."""
        letter = self.store.dead.get(self.store.connection(), dead_letter_id)
        with self._context_of(letter.envelope):
            self.store.redrive(dead_letter_id, self.handler)
        log.info("consumer.redriven", consumer=self.name, dead_letter_id=dead_letter_id)

    def redrive_all(self) -> tuple[list[int], dict[int, str]]:
        """Re-drive every open letter in notification order; after a failure, the later
        letters of that aggregate stay where they are. Returns (re-driven, failed: error)."""
        done: list[int] = []
        failed: dict[int, str] = {}
        blocked: set[tuple[str, str]] = set()
        letters = sorted(self.store.dead_letters(), key=lambda d: (d.upstream,
                                                                    d.notification_id))
        for letter in letters:
            key = (letter.upstream, letter.aggregate_id)
            if key in blocked:
                continue
            try:
                self.redrive(letter.id)
                done.append(letter.id)
            except Exception as e:
                if failure_kind(e) == OUTAGE:
                    raise
                failed[letter.id] = describe(e)
                blocked.add(key)
        return done, failed

    def run_local(self, stop: threading.Event, wake: Callable[[float], None]) -> None:
        """Follow a log without RabbitMQ (a service projecting its own events): catch up,
        then sleep until ``wake`` returns (a commit notification or the timeout)."""
        backoff = 0.2
        while not stop.is_set():
            try:
                self.pacer.wait(stop)
                self.catch_up(ask_head=False)
                wake(1.0)
                backoff = 0.2
            except Exception as e:
                log.warning("consumer.unavailable", consumer=self.name, error=repr(e),
                            retry_in=backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.store.close()

    # The AMQP loop.
    def _on_message(self, message: Any) -> None:
        # Raw messages (on_message, not callbacks): kombu would otherwise decode the body
        # itself and raise before we could set an unreadable one aside.
        routing_key = (getattr(message, "delivery_info", None) or {}).get("routing_key", "")
        if "." in str(routing_key):
            # An earlier version's copy (``<Type>.v<N>``, :class:`~tuoyu_shared.contract.
            # Legacy`) reaching a queue bound before consumers bound ``*``: its event comes
            # as the current version too.
            message.ack()
            return
        try:
            envelope = Envelope.from_json(message.body)
            if envelope.source != self.upstream:
                raise UnreadableEnvelope(f"source {envelope.source!r} on the exchange of "
                                         f"{self.upstream!r}")
        except UnreadableEnvelope as e:  # never let it block the queue
            self._set_aside(message, e)
            message.ack()
            return
        previous = (message.headers or {}).get("previous_notification_id")
        if isinstance(previous, bool) or not isinstance(previous, int):
            previous = None
        self._delivered.append((envelope, previous, message))

    def _apply_delivered(self) -> None:
        """Apply what was delivered since the last call as one batch (:meth:`handle_many`),
        then acknowledge it: a crash before the acknowledgements redelivers messages the
        positions then skip."""
        delivered, self._delivered = self._delivered, []
        if delivered:
            self.handle_many([(envelope, previous) for envelope, previous, _ in delivered])
            for _, _, message in delivered:
                message.ack()

    def _set_aside(self, message: Any, error: Exception) -> None:
        raw = message.body
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        conn = self.store.connection()
        with conn.transaction(), conn.cursor() as cur:
            self.store.dead.record_unreadable(cur, self.upstream, text, repr(error))
        log.error("consumer.unreadable_message", consumer=self.name, upstream=self.upstream,
                  error=storable(str(error)))

    def run(self, stop: threading.Event, ready: threading.Event | None = None) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                with Connection(self.amqp_uri, heartbeat=self.heartbeat,
                                connect_timeout=5) as conn:
                    conn.ensure_connection(max_retries=1)
                    with conn.Consumer([self.queue()], on_message=self._on_message,
                                       accept=["json"], prefetch_count=200):
                        # Between pages of a long catch-up: ours go out (the broker's are
                        # read, and checked, once the loop drains again).
                        self._keepalive = conn.connection.send_heartbeat
                        self._try_catch_up()
                        if ready is not None:
                            ready.set()
                        backoff = 0.2
                        last_activity = time.monotonic()
                        while not stop.is_set():
                            caught_up = False
                            try:
                                conn.drain_events(timeout=0.5)
                                last_activity = time.monotonic()
                                # what else has arrived already, or arrives within the
                                # rest of the window since the last round, up to a page:
                                # in one batch
                                while len(self._delivered) < self.page_size:
                                    try:
                                        conn.drain_events(
                                            timeout=max(0.001, self.pacer.due_in()))
                                    except TimeoutError:
                                        break
                            except TimeoutError:
                                if time.monotonic() - last_activity >= self.catchup_interval:
                                    self._try_catch_up()
                                    last_activity = time.monotonic()
                                    caught_up = True  # nothing read meanwhile: drain first
                            # outside the try: a timeout in applying them is no idle broker
                            if self._delivered:
                                self.pacer.started()
                            self._apply_delivered()
                            if not caught_up:
                                # Send ours, and notice a broker that stopped sending its
                                # own (a half-open connection): reconnect, and the queue's
                                # standby consumer (single active consumer) takes over.
                                conn.heartbeat_check()
            except Exception as e:  # broker, database or upstream away: back off and resume
                if stop.is_set():
                    break
                level = log.warning if failure_kind(e) == OUTAGE else log.error
                level("consumer.unavailable", consumer=self.name, error=repr(e),
                      retry_in=backoff)
            finally:
                self._keepalive = None
                self._delivered = []  # unacknowledged: the broker delivers them again
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.store.close()


def tracked_consumer(settings: Any, *, name: str, upstream: str, handler: Any, store: Any,
                     log_reader: UpstreamLog | None = None, amqp_uri: str | None = None,
                     exchange: str | None = None, **options: Any) -> TrackedConsumer:
    """A consumer configured from a service's settings (retries, catch-up, heartbeats), whose
    gaps are filled from the upstream's log over RPC unless another reader is given."""
    from tuoyu_shared.rpc import RpcClient

    amqp_uri = amqp_uri or settings.amqp_uri
    if log_reader is None:
        log_reader = RpcLog(RpcClient(amqp_uri, heartbeat=settings.amqp_heartbeat), upstream)
    return TrackedConsumer(
        name=name, upstream=upstream, handler=handler, store=store, log_reader=log_reader,
        amqp_uri=amqp_uri, exchange=exchange,
        **{"max_attempts": settings.consumer_max_attempts,
           "retry_delay": settings.consumer_retry_delay,
           "catchup_interval": settings.consumer_catchup_interval,
           "batch_window": getattr(settings, "batch_window", 0.0),
           "heartbeat": settings.amqp_heartbeat, **options})
