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
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from eventsourcing.persistence import InterfaceError as LibraryInterfaceError
from eventsourcing.persistence import OperationalError as LibraryOperationalError
from kombu import Connection, Exchange, Queue, binding

from tuoyu_shared.context import command_context
from tuoyu_shared.envelope import Envelope
from tuoyu_shared.logs import get_logger

log = get_logger("tuoyu.consumer")

Handler = Callable[[Envelope, psycopg.Cursor], None]

# The database is away (restarting, failing over): not the message's fault. The message is not
# parked; it stays unacknowledged and comes again.
DATABASE_AWAY = (psycopg.OperationalError, LibraryOperationalError, LibraryInterfaceError)


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

    def read(self, start: int, limit: int, stop: int | None = None) -> list[Envelope]:
        items = self.rpc.call(self.service, "notifications", start=start, limit=limit, stop=stop)
        return [Envelope.from_dict(item) for item in items]

    def head(self) -> int:
        return int(self.rpc.call(self.service, "log_head"))


TRACKING_DDL = """
CREATE TABLE IF NOT EXISTS consumer_tracking (
    consumer text NOT NULL,
    upstream text NOT NULL,
    notification_id bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, upstream)
);
"""

DEAD_LETTERS_DDL = """
CREATE TABLE IF NOT EXISTS consumer_dead_letters (
    id bigserial PRIMARY KEY,
    consumer text NOT NULL,
    upstream text NOT NULL,
    notification_id bigint NOT NULL,
    event_type text NOT NULL,
    envelope jsonb NOT NULL,
    error text NOT NULL,
    attempts int NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    redriven_at timestamptz,
    UNIQUE (consumer, upstream, notification_id)
);
CREATE TABLE IF NOT EXISTS consumer_unreadable_messages (
    id bigserial PRIMARY KEY,
    consumer text NOT NULL,
    upstream text NOT NULL,
    body text NOT NULL,
    error text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class DeadLetter:
    id: int
    consumer: str
    upstream: str
    notification_id: int
    event_type: str
    error: str
    attempts: int
    parked_at: str
    redriven_at: str | None
    envelope: Envelope


class DeadLetterTable:
    """Parked messages of one consumer, in the consumer's own database."""

    def __init__(self, consumer: str):
        self.consumer = consumer

    def park(self, cur: psycopg.Cursor, envelope: Envelope, error: str, attempts: int) -> None:
        cur.execute(
            "INSERT INTO consumer_dead_letters (consumer, upstream, notification_id, "
            "event_type, envelope, error, attempts) VALUES (%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT (consumer, upstream, notification_id) DO NOTHING",
            (self.consumer, envelope.source, envelope.notification_id, envelope.event_type,
             json.dumps(envelope.to_dict(), ensure_ascii=False), error, attempts))

    def held_aggregates(self, cur: psycopg.Cursor, upstream: str) -> set[str]:
        """Aggregates with a parked event not yet re-driven: their later events wait too, so
        an aggregate's events are never applied out of order."""
        cur.execute("SELECT DISTINCT envelope->>'aggregate_id' FROM consumer_dead_letters "
                    "WHERE consumer=%s AND upstream=%s AND redriven_at IS NULL",
                    (self.consumer, upstream))
        return {row[0] for row in cur.fetchall()}

    def hold(self, cur: psycopg.Cursor, envelope: Envelope) -> None:
        self.park(cur, envelope, "held: an earlier event of this aggregate is parked", 0)

    def record_unreadable(self, cur: psycopg.Cursor, upstream: str, body: str,
                          error: str) -> None:
        cur.execute("INSERT INTO consumer_unreadable_messages (consumer, upstream, body, error) "
                    "VALUES (%s, %s, %s, %s)", (self.consumer, upstream, body, error))

    def list(self, conn: psycopg.Connection, include_redriven: bool) -> list[DeadLetter]:
        with conn.transaction():
            rows = conn.execute(
                "SELECT id, consumer, upstream, notification_id, event_type, error, attempts, "
                "parked_at::text, redriven_at::text, envelope FROM consumer_dead_letters "
                "WHERE consumer=%s AND (%s OR redriven_at IS NULL) ORDER BY id",
                (self.consumer, include_redriven)).fetchall()
        return [DeadLetter(*row[:9], envelope=Envelope.from_dict(row[9])) for row in rows]

    def take(self, cur: psycopg.Cursor, dead_letter_id: int) -> Envelope:
        cur.execute(
            "SELECT envelope FROM consumer_dead_letters WHERE id=%s AND consumer=%s "
            "AND redriven_at IS NULL FOR UPDATE", (dead_letter_id, self.consumer))
        row = cur.fetchone()
        if row is None:
            raise KeyError(f"no parked message {dead_letter_id} for {self.consumer}")
        envelope = Envelope.from_dict(row[0])
        cur.execute(
            "SELECT min(notification_id) FROM consumer_dead_letters WHERE consumer=%s "
            "AND upstream=%s AND envelope->>'aggregate_id'=%s AND redriven_at IS NULL",
            (self.consumer, envelope.source, envelope.aggregate_id))
        earliest = cur.fetchone()[0]
        if earliest < envelope.notification_id:
            raise ValueError(f"re-drive notification {earliest} of aggregate "
                             f"{envelope.aggregate_id} first: it is earlier")
        return envelope

    def mark_redriven(self, cur: psycopg.Cursor, dead_letter_id: int) -> None:
        cur.execute("UPDATE consumer_dead_letters SET redriven_at=now() WHERE id=%s",
                    (dead_letter_id,))


class _Connected:
    def __init__(self, database_url: str, ddl: str):
        self.database_url = database_url
        self._ddl = ddl
        self._conn: psycopg.Connection | None = None

    def connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.database_url)
            with self._conn.transaction():
                self._conn.execute(self._ddl)
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
        super().__init__(database_url, TRACKING_DDL + DEAD_LETTERS_DDL)
        self.consumer = consumer
        self.dead = DeadLetterTable(consumer)

    def position(self, upstream: str) -> int:
        conn = self.connection()
        with conn.transaction():
            row = conn.execute(
                "SELECT notification_id FROM consumer_tracking WHERE consumer=%s AND upstream=%s",
                (self.consumer, upstream),
            ).fetchone()
        return row[0] if row else 0

    def _lock_position(self, cur: psycopg.Cursor, upstream: str) -> int:
        cur.execute(
            "INSERT INTO consumer_tracking (consumer, upstream, notification_id) "
            "VALUES (%s, %s, 0) ON CONFLICT DO NOTHING", (self.consumer, upstream))
        cur.execute(
            "SELECT notification_id FROM consumer_tracking "
            "WHERE consumer=%s AND upstream=%s FOR UPDATE", (self.consumer, upstream))
        return cur.fetchone()[0]

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
        with conn.transaction(), conn.cursor() as cur:
            position = self._lock_position(cur, envelopes[0].source)
            fresh = [e for e in envelopes if e.notification_id > position]
            held = self.dead.held_aggregates(cur, envelopes[0].source) if fresh else set()
            for envelope in fresh:
                if envelope.aggregate_id in held:
                    self.dead.hold(cur, envelope)
                else:
                    handler(envelope, cur)
            if fresh:
                self._move(cur, envelopes[0].source, fresh[-1].notification_id)
        return len(fresh)

    def park(self, envelope: Envelope, error: str, attempts: int) -> bool:
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
        """Apply a parked message again; it stays parked if it fails again."""
        conn = self.connection()
        with conn.transaction(), conn.cursor() as cur:
            handler(self.dead.take(cur, dead_letter_id), cur)
            self.dead.mark_redriven(cur, dead_letter_id)


class ApplicationTrackingStore(_Connected):
    """Tracking in an eventsourcing application's own recorder, for services that react.

    The handler is ``handler(envelope) -> aggregates``: it loads and changes aggregates, and
    their new events are recorded with the tracking record in one transaction
    (:meth:`ServiceApplication.record_processing`). An optimistic-concurrency conflict with a
    concurrent command raises, and the consumer's retry runs the handler again on fresh state.
    """

    def __init__(self, app: Any, consumer: str):
        super().__init__(app.settings.database_url, DEAD_LETTERS_DDL)
        self.app = app
        self.consumer = consumer
        self.dead = DeadLetterTable(consumer)

    def _name(self, upstream: str) -> str:
        return f"{self.consumer}<-{upstream}"

    def position(self, upstream: str) -> int:
        return self.app.tracking_position(self._name(upstream))

    def apply(self, envelope: Envelope, handler: Callable[[Envelope], Any]) -> bool:
        # No position check here: the consumer has just compared it, and a concurrent
        # duplicate is refused by the tracking record itself (record_processing → False).
        conn = self.connection()
        with conn.transaction(), conn.cursor() as cur:
            held = envelope.aggregate_id in self.dead.held_aggregates(cur, envelope.source)
            if held:  # idempotent if we crash before the tracking below
                self.dead.hold(cur, envelope)
        if held:
            return self.app.record_processing(self._name(envelope.source),
                                              envelope.notification_id)
        aggregates = handler(envelope) or ()
        return self.app.record_processing(self._name(envelope.source),
                                          envelope.notification_id, *aggregates)

    def park(self, envelope: Envelope, error: str, attempts: int) -> bool:
        if self.position(envelope.source) >= envelope.notification_id:
            return False
        conn = self.connection()
        with conn.transaction(), conn.cursor() as cur:  # idempotent if we crash after it
            self.dead.park(cur, envelope, error, attempts)
        return self.app.record_processing(self._name(envelope.source), envelope.notification_id)

    def dead_letters(self, include_redriven: bool = False) -> list[DeadLetter]:
        return self.dead.list(self.connection(), include_redriven)

    def redrive(self, dead_letter_id: int, handler: Callable[[Envelope], Any]) -> None:
        conn = self.connection()
        with conn.transaction(), conn.cursor() as cur:
            aggregates = handler(self.dead.take(cur, dead_letter_id)) or ()
            self.app.save(*aggregates)
            self.dead.mark_redriven(cur, dead_letter_id)


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
        routing_keys: Sequence[str] = ("#",),
        max_attempts: int = 5,
        retry_delay: float = 0.2,
        catchup_interval: float = 5.0,
        page_size: int = 500,
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
        self.sleep = sleep
        self.applied = 0
        self.parked = 0

    def queue(self, channel=None) -> Queue:
        exchange = Exchange(self.exchange_name, "topic", durable=True)
        return Queue(
            f"{self.name}.{self.exchange_name}",
            bindings=[binding(exchange, routing_key=key) for key in self.routing_keys],
            durable=True,
            # One active consumer per queue keeps notification order when ops scale out.
            queue_arguments={"x-single-active-consumer": True},
            channel=channel,
        )

    # Applying one envelope, with retries and parking.
    def _apply_with_retries(self, envelope: Envelope) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                with command_context(correlation_id=envelope.correlation_id or None,
                                     causation_id=envelope.event_id):
                    if self.store.apply(envelope, self.handler):
                        self.applied += 1
                return
            except DATABASE_AWAY:
                raise
            except Exception as e:
                if attempt >= self.max_attempts:
                    error = "".join(traceback.format_exception_only(type(e), e)).strip()
                    if self.store.park(envelope, error, attempt):
                        self.parked += 1
                        log.error("consumer.parked", consumer=self.name, upstream=self.upstream,
                                  notification_id=envelope.notification_id,
                                  event_type=envelope.event_type,
                                  aggregate_id=envelope.aggregate_id, error=error,
                                  attempts=attempt)
                    return
                delay = self.retry_delay * (2 ** (attempt - 1))
                log.warning("consumer.retry", consumer=self.name,
                            notification_id=envelope.notification_id,
                            event_type=envelope.event_type, attempt=attempt, retry_in=delay,
                            error=str(e))
                self.sleep(delay)

    def _apply_page(self, page: list[Envelope]) -> None:
        """A page from the log: in one transaction where the store can, else one by one
        (which is also the fallback when any message of the page fails)."""
        apply_batch = getattr(self.store, "apply_batch", None)
        if apply_batch is not None and len(page) > 1:
            try:
                self.applied += apply_batch(page, self.handler)
                return
            except DATABASE_AWAY:
                raise
            except Exception:
                pass  # find and park the failing one below
        for envelope in page:
            self._apply_with_retries(envelope)

    def _fill_from_log(self, start: int, stop: int | None) -> int:
        """Apply the upstream's log from start up to stop (inclusive), page by page."""
        count = 0
        while True:
            page = self.log_reader.read(start=start, limit=self.page_size, stop=stop)
            self._apply_page(page)
            count += len(page)
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
        position = self.store.position(envelope.source)
        if envelope.notification_id <= position:
            return
        gap = (previous > position) if previous is not None else (
            envelope.notification_id > position + 1)
        if gap:
            log.info("consumer.gap", consumer=self.name, upstream=self.upstream,
                     position=position, received=envelope.notification_id)
            self._fill_from_log(position + 1, envelope.notification_id)
        self._apply_with_retries(envelope)

    def _try_catch_up(self) -> None:
        """Catch up, but never let an absent upstream stop the fast path."""
        try:
            self.catch_up()
        except DATABASE_AWAY:
            raise
        except Exception as e:
            log.warning("consumer.catch_up_failed", consumer=self.name, upstream=self.upstream,
                        error=repr(e))

    def catch_up(self) -> int:
        """Apply whatever the upstream's log holds past this consumer's position."""
        position = self.store.position(self.upstream)
        if self.log_reader.head() <= position:
            return 0
        count = self._fill_from_log(position + 1, None)
        if count:
            log.info("consumer.caught_up", consumer=self.name, upstream=self.upstream,
                     applied=count)
        return count

    def redrive(self, dead_letter_id: int) -> None:
        self.store.redrive(dead_letter_id, self.handler)

    def run_local(self, stop: threading.Event, wake: Callable[[float], None]) -> None:
        """Follow a log without RabbitMQ (a service projecting its own events): catch up,
        then sleep until ``wake`` returns (a commit notification or the timeout)."""
        backoff = 0.2
        while not stop.is_set():
            try:
                self.catch_up()
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
        try:
            envelope = Envelope.from_json(message.body)
        except Exception as e:  # not an envelope at all: set it aside, never block the queue
            self._set_aside(message, e)
            message.ack()
            return
        previous = (message.headers or {}).get("previous_notification_id")
        self.handle(envelope, previous if isinstance(previous, int) else None)
        message.ack()

    def _set_aside(self, message: Any, error: Exception) -> None:
        raw = message.body
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        conn = self.store.connection()
        with conn.transaction(), conn.cursor() as cur:
            self.store.dead.record_unreadable(cur, self.upstream, text, repr(error))
        log.error("consumer.unreadable_message", consumer=self.name, upstream=self.upstream,
                  error=repr(error))

    def run(self, stop: threading.Event, ready: threading.Event | None = None) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                with Connection(self.amqp_uri, heartbeat=0, connect_timeout=5) as conn:
                    conn.ensure_connection(max_retries=1)
                    with conn.Consumer([self.queue()], on_message=self._on_message,
                                       accept=["json"], prefetch_count=200):
                        self._try_catch_up()
                        if ready is not None:
                            ready.set()
                        backoff = 0.2
                        last_activity = time.monotonic()
                        while not stop.is_set():
                            try:
                                conn.drain_events(timeout=0.5)
                                last_activity = time.monotonic()
                            except TimeoutError:
                                if time.monotonic() - last_activity >= self.catchup_interval:
                                    self._try_catch_up()
                                    last_activity = time.monotonic()
            except Exception as e:  # broker, database or upstream away: back off and resume
                if stop.is_set():
                    break
                log.warning("consumer.unavailable", consumer=self.name, error=repr(e),
                            retry_in=backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.store.close()
