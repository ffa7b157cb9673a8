"""nameko's AMQP RPC from an asyncio event loop: the gateway's calls, with no thread between.

:class:`~tuoyu_shared.rpc.RpcPool` blocks, so the gateway ran each call in a worker thread:
the event loop woke a pool thread and the pool thread woke the loop again when the reply came,
and those two wake-ups cost more than the gateway's own work (8.7 ms mean per request at 8
clients, measured; docs/performance.md). Here the calls share one connection driven by the
loop itself (aio-pika): each waits on a future that the reply, matched by correlation id,
completes.

The wire protocol is :mod:`tuoyu_shared.rpc`'s (same headers, same body, same reply decoding),
and so are the outcomes a caller sees:

- the reply's error as :class:`~tuoyu_shared.rpc.RemoteError`;
- no reply in ``timeout`` seconds, or the connection lost while waiting, as
  :class:`~tuoyu_shared.rpc.RpcTimeout` (the command may have been recorded: the caller reads
  it back, never sends it blindly again);
- a call the broker could not route to any queue (the service never started here) as
  :class:`~tuoyu_shared.rpc.UnknownService`;
- no connection to be had (broker unreachable, connection refused) as
  :class:`ConnectionError`: nothing reached a service, the request may be tried again.

A link (connection, channel, reply queue) found closed is replaced by the next call; nothing
reconnects in the background, so a broker that is down costs a refused connection per request,
answered 503 at once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import AMQPError, DeliveryError
from kombu.utils.json import loads as kombu_loads

from tuoyu_shared.rpc import RPC_EXCHANGE, RpcTimeout, UnknownService, call_headers, result_of


class _Link:
    """One connection with its channel and exclusive reply queue; the calls waiting on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reply_key = f"rpc.reply-tuoyu-{uuid.uuid4()}"
        self.pending: dict[str, asyncio.Future[Any]] = {}
        self.connection: aio_pika.abc.AbstractConnection | None = None
        self.exchange: aio_pika.abc.AbstractExchange | None = None
        self.lost = False

    async def open(self, amqp_uri: str, heartbeat: float) -> None:
        self.connection = await aio_pika.connect(amqp_uri, heartbeat=int(heartbeat))
        self.connection.close_callbacks.add(self._on_close)
        # publisher confirms only so that a message no queue takes comes back to its call
        # (aiormq hands a Basic.Return to the publish it confirms); the call does not wait
        # for the confirmation before it waits for the reply
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        channel.close_callbacks.add(self._on_close)
        self.exchange = await channel.declare_exchange(RPC_EXCHANGE, "topic", durable=True)
        queue = await channel.declare_queue(self.reply_key, exclusive=True, auto_delete=True)
        await queue.bind(self.exchange, routing_key=self.reply_key)
        await queue.consume(self._on_reply, no_ack=True)

    @property
    def usable(self) -> bool:
        return not self.lost and self.connection is not None and not self.connection.is_closed

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        waiting = self.pending.pop(message.correlation_id or "", None)
        if waiting is None or waiting.done():
            return  # a reply after its call timed out
        try:
            waiting.set_result((time.perf_counter(), kombu_loads(message.body)))
        except Exception as e:  # an undecodable reply fails its call, not the link
            waiting.set_exception(RpcTimeout(f"an undecodable reply: {e}"))

    def _on_close(self, _: Any, exc: BaseException | None = None) -> None:
        """The connection or channel went: every call still waiting ends as a timeout (its
        command may or may not have run)."""
        self.lost = True
        pending, self.pending = self.pending, {}
        for waiting in pending.values():
            if not waiting.done():
                waiting.set_exception(RpcTimeout(f"the broker connection was lost ({exc})"))

    async def close(self) -> None:
        self.lost = True
        if self.connection is not None and not self.connection.is_closed:
            try:
                await self.connection.close()
            except Exception:
                pass


class AsyncRpcClient:
    """Calls from one event loop over one shared connection (opened by the first call)."""

    def __init__(self, amqp_uri: str, timeout: float = 30.0, heartbeat: float = 30.0):
        self.amqp_uri = amqp_uri
        self.timeout = timeout
        self.heartbeat = heartbeat
        self._link: _Link | None = None
        self._opening: asyncio.Future[_Link] | None = None

    async def _current_link(self) -> _Link:
        loop = asyncio.get_running_loop()
        link = self._link
        if link is not None and link.loop is loop and link.usable:
            return link
        opening = self._opening
        if opening is not None and not opening.done() and opening.get_loop() is loop:
            return await asyncio.shield(opening)  # one connection, however many callers
        opening = self._opening = loop.create_future()
        fresh = _Link(loop)
        try:
            await fresh.open(self.amqp_uri, self.heartbeat)
        except BaseException as e:
            await fresh.close()
            failed = ConnectionError(f"the message broker cannot be reached: {e!r}")
            opening.set_exception(failed)
            opening.exception()  # retrieved: waiters that came see it, nobody else must
            if isinstance(e, (OSError, AMQPError, TimeoutError)):
                raise failed from e
            raise
        if link is not None and link.loop is loop:
            await link.close()
        self._link = fresh
        opening.set_result(fresh)
        return fresh

    async def acall(self, service: str, method: str, args: list, kwargs: dict,
                    rpc_context: dict[str, str] | None = None,
                    away: list[float] | None = None) -> Any:
        """``service.method(*args, **kwargs)`` and its result (see the module for errors).

        ``away``, when given, gets the seconds from the publish to the reply's arrival on
        this connection appended: the time the call spent outside this process, without the
        time it then waited for the event loop to resume it (busy with other requests)."""
        link = await self._current_link()
        assert link.exchange is not None
        correlation_id = str(uuid.uuid4())
        message = aio_pika.Message(
            json.dumps({"args": list(args), "kwargs": kwargs}).encode(),
            content_type="application/json", content_encoding="utf-8",
            headers=call_headers(method, correlation_id, rpc_context),
            correlation_id=correlation_id, message_id=correlation_id,
            reply_to=link.reply_key)
        reply: asyncio.Future[Any] = link.loop.create_future()
        link.pending[correlation_id] = reply

        def sent(confirmation: asyncio.Future[Any]) -> None:
            if confirmation.cancelled() or reply.done():
                return
            error = confirmation.exception()
            if error is None:
                return
            link.pending.pop(correlation_id, None)
            if isinstance(error, DeliveryError):
                reply.set_exception(UnknownService(
                    f"no service {service!r} listens for RPC calls"))
            else:
                # the link broke around the publish: the message may have gone out, so the
                # outcome is unknown (never "not sent", which would invite a blind resend)
                link.lost = True  # the next call opens a new link
                reply.set_exception(RpcTimeout(
                    f"the call to {service}.{method} was not confirmed: {error!r}"))

        sent_at = time.perf_counter()
        publishing = asyncio.ensure_future(
            link.exchange.publish(message, routing_key=f"{service}.{method}", mandatory=True))
        publishing.add_done_callback(sent)
        try:
            arrived_at, body = await asyncio.wait_for(reply, self.timeout)
            if away is not None:
                away.append(arrived_at - sent_at)
            return result_of(body)
        except RpcTimeout:
            raise
        except TimeoutError:
            raise RpcTimeout(f"no reply from {service}.{method} in {self.timeout}s") from None
        finally:
            link.pending.pop(correlation_id, None)

    async def aclose(self) -> None:
        if self._link is not None:
            await self._link.close()
            self._link = None
