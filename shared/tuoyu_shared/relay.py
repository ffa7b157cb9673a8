"""The relay: publishes a service's events from its notification log to RabbitMQ.

The notification log is the outbox: a command commits its events once, and publishing is this
separate, resumable step. The relay

- reads the log after its tracked position (stored in the service's own database),
- checks each envelope against the event catalogue,
- publishes the batch to the topic exchange ``<service>.events`` (routing key = event type,
  persistent; the CloudEvents 1.0 attributes as ``cloudEvents_*`` headers beside the
  envelope, :func:`tuoyu_shared.asyncapi.cloudevents_headers`), with publisher confirms
  collected for the whole batch rather than one round trip per message,
- and only then moves its position.

A crash between publishing and moving the position republishes the batch on restart: consumers
are effectively-once, so at-least-once here is enough. One relay per exchange publishes at a
time: it holds a PostgreSQL advisory lock on its own database session, and a second relay (a
second worker, a rolling upgrade) waits as a standby until the lock is free. The position only
ever moves forwards. With RabbitMQ down the relay retries with
backoff and resumes where its position says. It waits on PostgreSQL's LISTEN/NOTIFY (the
recorder notifies on every insert), so new events leave within milliseconds of their commit.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import amqp
import psycopg
from kombu import Connection
from opentelemetry.trace import SpanKind

from tuoyu_shared import tracing
from tuoyu_shared.application import ServiceApplication
from tuoyu_shared.asyncapi import cloudevents_headers
from tuoyu_shared.catalogue import SchemaViolation, validate_envelope
from tuoyu_shared.envelope import Envelope, encode
from tuoyu_shared.logs import get_logger
from tuoyu_shared.metrics import RELAY_PUBLISHED
from tuoyu_shared.tail import CommitSignal, Pacer

log = get_logger("tuoyu.relay")




class PublishFailed(ConnectionError):
    """The broker refused (nacked) a message or went away before confirming it."""


class ConfirmingPublisher:
    """Publishes batches to one topic exchange and waits for the broker's confirms."""

    def __init__(self, amqp_uri: str, exchange: str, confirm_timeout: float = 30.0,
                 heartbeat: float = 30.0):
        self.amqp_uri = amqp_uri
        self.heartbeat = heartbeat
        self.exchange = exchange
        self.confirm_timeout = confirm_timeout
        self._conn: Connection | None = None
        self._pending: set[int] = set()
        self._nacked = False
        self._next_tag = 1

    def connect(self) -> None:
        self.close()
        conn = Connection(self.amqp_uri, heartbeat=self.heartbeat, connect_timeout=5)
        conn.connect()
        raw = conn.connection  # the py-amqp connection under kombu
        channel = raw.channel()
        channel.confirm_select()
        channel.exchange_declare(self.exchange, "topic", durable=True, auto_delete=False)
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self._conn, self._raw, self._channel = conn, raw, channel
        self._pending.clear()
        self._nacked = False
        self._next_tag = 1

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._pending = {t for t in self._pending if t > delivery_tag}
        else:
            self._pending.discard(delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool, *args: Any) -> None:
        self._nacked = True
        self._on_ack(delivery_tag, multiple)

    def publish_batch(self, envelopes: list[Envelope], bodies: list[bytes] | None = None,
                      previous: int = 0,
                      legacy: dict[int, list[tuple[str, Envelope, bytes]]] | None = None
                      ) -> None:
        """``previous`` is the notification id before the first envelope in the log: each
        message carries the id before it (``previous_notification_id``), so a consumer tells
        a lost message from a hole in the log (an insert that rolled back). ``legacy``: for
        the envelope at an index, its copies as earlier versions still served
        (:class:`~tuoyu_shared.contract.Legacy`: routing key, envelope, body), sent right
        after it with the same ``previous_notification_id``."""
        if self._conn is None:
            self.connect()
        bodies = bodies or [env.to_json() for env in envelopes]
        for index, (env, body) in enumerate(zip(envelopes, bodies, strict=True)):
            self._send(env, body, env.event_type, previous)
            for routing_key, copy, copy_body in (legacy or {}).get(index, ()):
                self._send(copy, copy_body, routing_key, previous)
            previous = env.notification_id
        self._wait_for_confirms()

    def _send(self, env: Envelope, body: bytes, routing_key: str, previous: int) -> None:
        message = amqp.Message(
            body,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
            message_id=env.event_id,
            correlation_id=env.correlation_id or None,
            type=env.event_type,
            application_headers={"source": env.source,
                                 "notification_id": env.notification_id,
                                 "previous_notification_id": previous,
                                 "schema_version": env.schema_version,
                                 **cloudevents_headers(
                                     env.source, env.event_id, env.event_type,
                                     env.schema_version, env.occurred_at, env.aggregate_id)},
        )
        with tracing.span(f"publish {env.source}.{env.event_type}", env.correlation_id,
                          SpanKind.PRODUCER, aggregate_id=env.aggregate_id,
                          event_type=env.event_type, notification_id=env.notification_id,
                          routing_key=routing_key):
            self._channel.basic_publish(message, exchange=self.exchange,
                                        routing_key=routing_key)
        self._pending.add(self._next_tag)
        self._next_tag += 1

    def _wait_for_confirms(self) -> None:
        deadline = time.monotonic() + self.confirm_timeout
        while self._pending:
            if time.monotonic() > deadline:
                raise PublishFailed(f"{len(self._pending)} messages not confirmed in time")
            try:
                self._raw.drain_events(timeout=1)
            except TimeoutError:
                continue  # a slow broker: keep waiting until the deadline
        if self._nacked:
            raise PublishFailed("broker nacked a message")

    def heartbeat_check(self) -> None:
        """Between batches: read what the broker sent (its heartbeats), send ours when one is
        due, and raise if the broker's stopped coming (a half-open connection)."""
        if self._conn is None:
            return
        try:
            self._raw.drain_events(timeout=0.001)
        except TimeoutError:
            pass
        self._conn.heartbeat_check()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception:
                pass
        self._conn = None


class Relay:
    def __init__(self, app: ServiceApplication, amqp_uri: str | None = None,
                 exchange: str | None = None, batch_size: int | None = None,
                 idle_wait: float = 1.0, max_backoff: float = 5.0):
        self.app = app
        settings = app.settings
        self.exchange = exchange or settings.events_exchange
        self.batch_size = batch_size or settings.relay_batch_size
        self.publisher = ConfirmingPublisher(amqp_uri or settings.amqp_uri, self.exchange,
                                             heartbeat=settings.amqp_heartbeat)
        self.database_url = settings.database_url
        self.idle_wait = idle_wait
        self.max_backoff = max_backoff
        self.published = 0
        self._db: psycopg.Connection | None = None
        self._owner = False  # holds the advisory lock on self._db's session
        #: the position as this relay last read or saved it, while it holds the lock (only
        #: the lock's holder moves it): a round reads the log, not the position too
        self._held_position: int | None = None
        self.commits = CommitSignal(self.database_url, app.events_channel)
        self.pacer = Pacer(getattr(settings, "batch_window", 0.0))

    # Position, in the service's own database.
    def _connection(self) -> psycopg.Connection:
        if self._db is None or self._db.closed or self._db.broken:
            self._owner = False  # a session lock goes with its session
            self._held_position = None
            self._db = psycopg.connect(self.database_url, autocommit=True)
        return self._db

    def owns_exchange(self) -> bool:
        """Take the exchange's relay lock if it is free; True while this relay holds it."""
        conn = self._connection()
        if not self._owner:
            self._owner = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                                       (f"tuoyu-relay:{self.exchange}",)).fetchone()[0]
            if self._owner:
                self._held_position = None  # read afresh: another relay may have moved it
                log.info("relay.owner", exchange=self.exchange, position=self.position())
        return self._owner

    def position(self) -> int:
        """The position as recorded (a read)."""
        row = self._connection().execute(
            "SELECT notification_id FROM relay_position WHERE exchange = %s", (self.exchange,)
        ).fetchone()
        return row[0] if row else 0

    def _position_held(self) -> int:
        """The position, read once per hold of the lock and then kept."""
        if self._held_position is None:
            self._held_position = self.position()
        return self._held_position

    def _save_position(self, notification_id: int) -> None:
        # Forwards only: a relay that lost its lock (its session dropped mid-batch) while
        # another took over must not move the position back.
        self._connection().execute(
            "INSERT INTO relay_position (exchange, notification_id) VALUES (%s, %s) "
            "ON CONFLICT (exchange) DO UPDATE SET notification_id = EXCLUDED.notification_id, "
            "updated_at = now() "
            "WHERE relay_position.notification_id < EXCLUDED.notification_id",
            (self.exchange, notification_id),
        )
        self._held_position = notification_id

    def lag(self) -> int:
        """Events recorded but not yet confirmed by the broker."""
        return max(self.app.log_head() - self.position(), 0)

    def run_once(self) -> int:
        """Publish one batch after the position; return how many were published (0 also
        while another relay holds the exchange's lock)."""
        if not self.owns_exchange():
            return 0
        position = self._position_held()
        batch = self.app.read_log(start=position + 1, limit=self.batch_size)
        if not batch:
            return 0
        messages = [env.to_dict() for env in batch]
        for message in messages:
            validate_envelope(message)
        legacy = self._legacy_copies(batch)
        self.publisher.publish_batch(batch, [encode(message) for message in messages],
                                     previous=position, legacy=legacy)
        self._save_position(batch[-1].notification_id)
        self.published += len(batch)
        RELAY_PUBLISHED.labels(self.exchange).inc(len(batch))
        log.debug("relay.published", count=len(batch), position=batch[-1].notification_id,
                  exchange=self.exchange)
        return len(batch)

    def _legacy_copies(self, batch: list[Envelope]
                       ) -> dict[int, list[tuple[str, Envelope, bytes]]]:
        """Each envelope's copies as the earlier versions its contract still serves, each
        checked against its own schema."""
        contract = getattr(self.app, "contract", None)
        if contract is None or not getattr(contract, "legacy", None):
            return {}
        found: dict[int, list[tuple[str, Envelope, bytes]]] = {}
        for index, env in enumerate(batch):
            for routing_key, copy in contract.legacy_copies(env):
                message = copy.to_dict()
                validate_envelope(message)
                found.setdefault(index, []).append((routing_key, copy, encode(message)))
        return found

    def drain(self) -> int:
        """Publish until the log is exhausted (used by tools and benchmarks)."""
        total = 0
        while n := self.run_once():
            total += n
        return total

    def run(self, stop: threading.Event) -> None:
        backoff = 0.1
        log.info("relay.started", exchange=self.exchange, position=self.position())
        standby = False
        while not stop.is_set():
            try:
                if not self.owns_exchange():
                    if not standby:
                        log.info("relay.standby", exchange=self.exchange,
                                 reason="another relay holds the exchange's lock")
                        standby = True
                        self.publisher.close()  # reconnect on taking over, not stale
                    stop.wait(self.idle_wait)
                    continue
                standby = False
                self.commits.listen()
                self.pacer.wait(stop)
                if self.run_once() < self.batch_size:
                    self.commits.wait(self.idle_wait)
                self.publisher.heartbeat_check()
                backoff = 0.1
            except (OSError, amqp.exceptions.AMQPError, PublishFailed) as e:
                log.warning("relay.broker_unavailable", error=str(e), retry_in=backoff)
                self.publisher.close()
                stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except SchemaViolation as e:
                # A bug, not an outage: nothing after this event leaves until it is fixed.
                log.error("relay.schema_violation", error=str(e))
                stop.wait(self.max_backoff)
            except Exception as e:  # the database, or anything else: never die, back off
                log.warning("relay.unavailable", error=repr(e), retry_in=backoff)
                self._close_db()
                self.commits.close()
                stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
        self.close()

    def _close_db(self) -> None:
        if self._db is not None:
            try:
                self._db.close()  # ends the session, and with it the lock
            except Exception:
                pass
        self._db = None
        self._owner = False

    def close(self) -> None:
        self.publisher.close()
        self.commits.close()
        self._close_db()
