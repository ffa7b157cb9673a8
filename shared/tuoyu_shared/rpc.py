"""A small client for nameko's AMQP RPC, usable outside eventlet (relays, consumers, tests).

It speaks nameko's wire protocol: a JSON ``{"args", "kwargs"}`` message to the ``nameko-rpc``
topic exchange with routing key ``<service>.<method>``, a reply queue bound to the same exchange,
and context (correlation id, actor, department) in ``nameko.*`` headers, which the services'
:class:`~tuoyu_shared.nameko_support.CommandContextProvider` reads back.
"""

from __future__ import annotations

import json
import queue
import time
import uuid
from typing import Any

from kombu import Connection, Exchange, Producer, Queue

from tuoyu_shared.context import current_context
from tuoyu_shared.errors import wire_error

RPC_EXCHANGE = "nameko-rpc"


class RemoteError(Exception):
    """An exception raised by the remote method; ``exc_type`` names it.

    When it was a :class:`~tuoyu_shared.errors.TuoyuError` (an error the application answers
    with), ``code``, ``http_status`` and ``body`` are what an HTTP adapter would have answered
    (a gateway maps by them, never by ``exc_type``); otherwise they are None, None and ``{}``.
    """

    def __init__(self, exc_type: str, value: str, exc_args: list | None = None):
        super().__init__(f"{exc_type}: {value}")
        self.exc_type = exc_type
        self.value = value
        self.exc_args = exc_args or []
        wire = wire_error(self.exc_args)
        self.code: str | None = wire["code"] if wire else None
        self.http_status: int | None = wire["http_status"] if wire else None
        self.body: dict[str, Any] = wire["body"] if wire else {}

    def as_local(self) -> Exception:
        """The error to raise here when a call made for a command failed: the remote
        TuoyuError as a :class:`~tuoyu_shared.errors.RelayedError` (same code and status),
        or this RemoteError itself (a bug over there)."""
        if self.code is None or self.http_status is None:
            return self
        from tuoyu_shared.errors import RelayedError

        return RelayedError(self.code, self.http_status,
                            str(self.body.get("reason") or self.value), self.body)


class RpcTimeout(TimeoutError):
    pass


class UnknownService(LookupError):
    """No queue takes calls for this service: it has never started on this broker."""


def call_headers(method: str, correlation_id: str,
                 rpc_context: dict[str, str] | None) -> dict[str, Any]:
    """The ``nameko.*`` headers of a call: the current command context, then ``rpc_context``
    (the gateway's verified token as ``authorization``), and a call id stack."""
    headers: dict[str, Any] = {f"nameko.{k}": v
                               for k, v in current_context().as_dict().items() if v}
    for key, value in (rpc_context or {}).items():
        headers[f"nameko.{key}"] = value
    headers["nameko.call_id_stack"] = [f"tuoyu-client.{method}.{correlation_id}"]
    return headers


def result_of(reply: dict[str, Any]) -> Any:
    """The result of a nameko reply, or the :class:`RemoteError` it carries, raised."""
    error = reply.get("error")
    if error:
        raise RemoteError(error.get("exc_type", "Error"), error.get("value", ""),
                          error.get("exc_args"))
    return reply.get("result")


class RpcClient:
    """Not thread-safe: one client per thread."""

    def __init__(self, amqp_uri: str, timeout: float = 30.0, heartbeat: float = 30.0):
        self.amqp_uri = amqp_uri
        self.timeout = timeout
        self.heartbeat = heartbeat
        self._conn: Connection | None = None
        self._last_used = 0.0
        self._replies: dict[str, dict[str, Any]] = {}
        self._returned: set[str] = set()

    def _connect(self) -> None:
        self._conn = Connection(self.amqp_uri, heartbeat=self.heartbeat)
        self._last_used = time.monotonic()
        self._conn.ensure_connection(max_retries=3)
        self._channel = self._conn.channel()
        self._exchange = Exchange(RPC_EXCHANGE, "topic", durable=True)
        self._reply_key = f"rpc.reply-tuoyu-{uuid.uuid4()}"
        self._reply_queue = Queue(self._reply_key, self._exchange, routing_key=self._reply_key,
                                  exclusive=True, auto_delete=True)
        # mandatory: a call to a service with no queue comes back instead of vanishing
        self._producer = Producer(self._channel, exchange=self._exchange,
                                  on_return=self._on_return)
        self._consumer = self._conn.Consumer([self._reply_queue], channel=self._channel,
                                             callbacks=[self._on_reply], accept=["json"],
                                             no_ack=True)
        self._consumer.consume()

    def _on_return(self, exception: Any, exchange: str, routing_key: str, message: Any) -> None:
        self._returned.add(message.properties.get("correlation_id"))

    def _on_reply(self, body: Any, message: Any) -> None:
        self._replies[message.properties.get("correlation_id")] = body

    def call(self, service: str, method: str, *args: Any,
             rpc_context: dict[str, str] | None = None, **kwargs: Any) -> Any:
        """Call ``service.method(*args, **kwargs)``; the current command context travels in
        ``nameko.*`` headers, and so does ``rpc_context`` (the gateway's verified token as
        ``authorization``)."""
        # Heartbeats flow only while a call waits; a connection idle for longer than the
        # interval may have been closed by the broker (or be half-open): open a new one.
        if self._conn is not None and self.heartbeat and \
                time.monotonic() - self._last_used > self.heartbeat / 2:
            self.close()
        correlation_id = str(uuid.uuid4())
        headers = call_headers(method, correlation_id, rpc_context)
        body = json.dumps({"args": list(args), "kwargs": kwargs})
        # Published without kombu's retry: a connection it revived by itself would lack this
        # client's reply queue (exclusive, gone with the old connection), and every reply
        # would be dropped. A connection found broken is opened again here, whole, once.
        for attempt in (1, 2):
            if self._conn is None:
                self._connect()
            assert self._conn is not None
            errors = (OSError, *self._conn.connection_errors)
            try:
                self._producer.publish(
                    body, routing_key=f"{service}.{method}", reply_to=self._reply_key,
                    correlation_id=correlation_id, content_type="application/json",
                    content_encoding="utf-8", headers=headers, retry=False, mandatory=True,
                    # no declare=[reply queue]: the consumer declared it on connecting, and
                    # kombu does not cache an auto-delete queue's declaration, so every call
                    # paid a queue.declare round trip to the broker for nothing
                )
                break
            except errors:
                self.close()
                if attempt == 2:
                    raise
        assert self._conn is not None
        try:
            deadline = time.monotonic() + self.timeout
            while correlation_id not in self._replies:
                if correlation_id in self._returned:
                    self._returned.discard(correlation_id)
                    raise UnknownService(f"no service {service!r} listens for RPC calls")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RpcTimeout(f"no reply from {service}.{method} in {self.timeout}s")
                try:
                    self._conn.drain_events(timeout=min(remaining, 1.0))
                except TimeoutError:
                    continue
        except (OSError, *self._conn.connection_errors):
            self.close()
            raise
        self._last_used = time.monotonic()
        return result_of(self._replies.pop(correlation_id))

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception:
                pass
        self._conn = None


class RpcPool:
    """A pool of RPC clients (each is not thread-safe): a call takes an idle one, or opens a
    new one when all are busy, and gives it back after; so there are as many connections as
    calls at once, kept open between requests."""

    def __init__(self, amqp_uri: str, timeout: float):
        self.amqp_uri, self.timeout = amqp_uri, timeout
        self._idle: queue.SimpleQueue[RpcClient] = queue.SimpleQueue()

    def call(self, service: str, method: str, args: list, kwargs: dict,
             rpc_context: dict[str, str] | None = None) -> Any:
        try:
            client = self._idle.get_nowait()
        except queue.Empty:
            client = RpcClient(self.amqp_uri, timeout=self.timeout)
        try:
            result = client.call(service, method, *args, rpc_context=rpc_context, **kwargs)
        except (RemoteError, UnknownService):
            self._idle.put(client)  # an answer: the connection is fine
            raise
        except BaseException:
            client.close()  # a timeout or a broken connection: not reused
            raise
        self._idle.put(client)
        return result
