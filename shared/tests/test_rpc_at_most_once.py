"""A request is run at most once, even when its service is killed while running it.

nameko acks an RPC request after its reply: a service killed after the command committed and
before the ack got the request again once it was back, and ran the command a second time
(found by the reliability suite's kill -9 of each service under load). With
:class:`tuoyu_shared.nameko_support.AtMostOnceRpc` the request is acked once its worker has
started; requests queued and not yet started are still served after a restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from kombu import Connection, Exchange

from tuoyu_shared.testing import wait_for

SERVICE = '''
import os

import eventlet
import psycopg

from tuoyu_shared.nameko_support import rpc


class Slow:
    name = "slowtest"

    @rpc
    def record(self, marker):
        with psycopg.connect(os.environ["SLOW_DATABASE_URL"], autocommit=True) as conn:
            conn.execute("INSERT INTO slow_calls (marker) VALUES (%s)", (marker,))
        eventlet.sleep(float(os.environ.get("SLOW_SECONDS", "30")))
        return marker

    @rpc
    def echo(self, value):
        return value

    @rpc
    def away(self):
        raise psycopg.OperationalError("connection to server failed: Connection refused")

    @rpc
    def broken(self):
        raise KeyError("a bug")

    @rpc
    def wait(self, seconds):
        eventlet.sleep(seconds)
        return seconds
'''


def start(tmp_path, env):
    log = open(tmp_path / "slow.log", "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen([sys.executable, "-m", "tuoyu_shared.serve", "slow_service:Slow",
                             "--port", "0"], env=env, stdout=log, stderr=log,
                            start_new_session=True)


def calls(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT marker FROM slow_calls ORDER BY id")]


def request(amqp_uri: str, marker: str) -> None:
    with Connection(amqp_uri) as conn:
        conn.Producer().publish(
            json.dumps({"args": [], "kwargs": {"marker": marker}}), exchange=Exchange(
                "nameko-rpc", "topic", durable=True), routing_key="slowtest.record",
            content_type="application/json", reply_to=f"nobody-{uuid.uuid4().hex}",
            correlation_id=uuid.uuid4().hex)


def queue_length(amqp_uri: str) -> int | None:
    """Messages in the service's queue (None until the service has declared it)."""
    with Connection(amqp_uri) as conn:
        try:
            _, messages, _ = conn.channel().queue_declare("rpc-slowtest", passive=True)
        except Exception:  # noqa: BLE001 - NOT_FOUND closes the channel
            return None
        return messages


def delete_queue(amqp_uri: str) -> None:
    with Connection(amqp_uri) as conn:
        conn.channel().queue_delete("rpc-slowtest")


def service_env(tmp_path, servers, url: str, **extra: str) -> dict[str, str]:
    """The test service written out, its environment, and its queue of an earlier run gone."""
    (tmp_path / "slow_service.py").write_text(SERVICE)
    delete_queue(servers.amqp_uri)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path),
                                                         os.environ.get("PYTHONPATH", "")]),
            "TUOYU_SLOWTEST_AMQP_URI": servers.amqp_uri, "SLOW_DATABASE_URL": url, **extra}


def test_a_request_running_when_its_service_is_killed_is_not_run_again(
        tmp_path, servers, fresh_database):
    url = fresh_database("slow", migrated=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE slow_calls (id serial PRIMARY KEY, marker text)")
    env = service_env(tmp_path, servers, url, TUOYU_MAX_WORKERS="1")
    service = start(tmp_path, env)
    try:
        wait_for(lambda: queue_length(servers.amqp_uri) is not None, timeout=60,
                 what="the service consuming")
        request(servers.amqp_uri, "first")
        wait_for(lambda: calls(url) == ["first"], timeout=60, what="the first request runs")
        request(servers.amqp_uri, "second")  # waits: one worker only
        os.killpg(service.pid, signal.SIGKILL)  # the first has committed, not replied
        service.wait()
        service = start(tmp_path, {**env, "SLOW_SECONDS": "0.5"})
        wait_for(lambda: "second" in calls(url), timeout=60,
                 what="the request that had not started is served after the restart")
        time.sleep(2)
        assert calls(url) == ["first", "second"], "the first request ran again"
        assert queue_length(servers.amqp_uri) == 0
    finally:
        os.killpg(service.pid, signal.SIGKILL)
        service.wait()
        delete_queue(servers.amqp_uri)


def test_a_request_failing_on_an_outage_is_answered_unavailable_and_a_bug_is_not(
        tmp_path, servers, fresh_database):
    from tuoyu_shared.rpc import RemoteError, RpcPool

    url = fresh_database("slow", migrated=False)
    env = service_env(tmp_path, servers, url)
    service = start(tmp_path, env)
    pool = RpcPool(servers.amqp_uri, 20)
    try:
        wait_for(lambda: queue_length(servers.amqp_uri) is not None, timeout=60,
                 what="the service consuming")
        try:
            pool.call("slowtest", "away", [], {})
        except RemoteError as e:
            assert (e.http_status, e.code) == (503, "unavailable")
            assert "try again" in str(e.body.get("reason"))
        else:
            raise AssertionError("no error")
        try:
            pool.call("slowtest", "broken", [], {})
        except RemoteError as e:
            assert e.http_status is None and e.exc_type == "KeyError"  # a bug stays a bug
        else:
            raise AssertionError("no error")
    finally:
        os.killpg(service.pid, signal.SIGKILL)
        service.wait()
        delete_queue(servers.amqp_uri)


@pytest.mark.broker_control
def test_a_client_calls_again_soon_after_the_broker_restarted(tmp_path, servers,
                                                             fresh_database):
    """Before, the client's first publish after a broker restart went out on a connection
    kombu revived by itself, without the client's reply queue (exclusive: gone with the old
    connection): every reply was dropped and each call waited its whole timeout, for as long
    as the client was in use (a consumer's catch-up waited 30 s after each broker restart)."""
    from tuoyu_shared.rpc import RpcClient

    if servers.rabbit is None:
        pytest.skip("needs the private local servers (stops the broker)")
    url = fresh_database("slow", migrated=False)
    env = service_env(tmp_path, servers, url)
    service = start(tmp_path, env)
    client = RpcClient(servers.amqp_uri, timeout=5)
    try:
        wait_for(lambda: queue_length(servers.amqp_uri) is not None, timeout=60,
                 what="the service consuming")
        assert client.call("slowtest", "echo", 1) == 1
        servers.rabbit.stop_app()
        servers.rabbit.start_app()
        started = time.monotonic()
        answered, slowest = None, 0.0
        while answered is None and time.monotonic() - started < 30:
            began = time.monotonic()
            try:
                answered = client.call("slowtest", "echo", 2)
            except Exception:  # noqa: BLE001 - the broker or the service not back yet
                time.sleep(0.2)
            slowest = max(slowest, time.monotonic() - began)
        assert answered == 2, "no call answered within 30 s of the broker's restart"
        assert slowest < 5, f"a call waited its whole timeout ({slowest:.1f} s)"
    finally:
        client.close()
        os.killpg(service.pid, signal.SIGKILL)
        service.wait()
        delete_queue(servers.amqp_uri)


def test_the_event_loop_client_calls_a_nameko_service(tmp_path, servers, fresh_database):
    """The gateway's client (no thread per call): concurrent calls on one connection each get
    their own reply, and each way a call can end comes out as the blocking client's does."""
    from tuoyu_shared.aiorpc import AsyncRpcClient
    from tuoyu_shared.rpc import RemoteError, RpcTimeout, UnknownService

    url = fresh_database("slow", migrated=False)
    service = start(tmp_path, service_env(tmp_path, servers, url))

    async def scenario() -> None:
        client = AsyncRpcClient(servers.amqp_uri, timeout=2)
        try:
            echoes = await asyncio.gather(*(client.acall("slowtest", "echo", [i], {})
                                            for i in range(30)))
            assert echoes == list(range(30))
            assert client._link is not None and len(client._link.pending) == 0
            with pytest.raises(RemoteError) as away:
                await client.acall("slowtest", "away", [], {})
            assert (away.value.http_status, away.value.code) == (503, "unavailable")
            with pytest.raises(RemoteError) as broken:
                await client.acall("slowtest", "broken", [], {})
            assert broken.value.http_status is None and broken.value.exc_type == "KeyError"
            with pytest.raises(UnknownService):
                await client.acall(f"nosuch{uuid.uuid4().hex[:8]}", "echo", [1], {})
            began = time.monotonic()
            with pytest.raises(RpcTimeout):
                await client.acall("slowtest", "wait", [5], {})
            assert 1.9 < time.monotonic() - began < 4
            # the late reply is dropped, the link stays: the next call is answered
            assert await client.acall("slowtest", "echo", ["after"], {}) == "after"
            away: list[float] = []
            assert await client.acall("slowtest", "wait", [0.3], {}, away=away) == 0.3
            assert len(away) == 1 and 0.3 <= away[0] < 1.5, away
        finally:
            await client.aclose()

    async def no_broker() -> None:
        client = AsyncRpcClient("amqp://guest:guest@127.0.0.1:1//", timeout=2)
        began = time.monotonic()
        with pytest.raises(ConnectionError):
            await client.acall("slowtest", "echo", [1], {})
        assert time.monotonic() - began < 2, "a refused connection is answered at once"

    try:
        wait_for(lambda: queue_length(servers.amqp_uri) is not None, timeout=60,
                 what="the service consuming")
        asyncio.run(scenario())
        asyncio.run(no_broker())
    finally:
        os.killpg(service.pid, signal.SIGKILL)
        service.wait()
        delete_queue(servers.amqp_uri)


@pytest.mark.broker_control
def test_the_event_loop_client_calls_again_soon_after_the_broker_restarted(
        tmp_path, servers, fresh_database):
    """A restart of the broker ends the shared connection: a call waiting then ends as a
    timeout at once (its outcome unknown), and the next calls open a new connection."""
    from tuoyu_shared.aiorpc import AsyncRpcClient
    from tuoyu_shared.rpc import RpcTimeout

    if servers.rabbit is None:
        pytest.skip("needs the private local servers (stops the broker)")
    url = fresh_database("slow", migrated=False)
    service = start(tmp_path, service_env(tmp_path, servers, url))

    async def scenario() -> None:
        client = AsyncRpcClient(servers.amqp_uri, timeout=10)
        try:
            assert await client.acall("slowtest", "echo", [1], {}) == 1
            waiting = asyncio.ensure_future(client.acall("slowtest", "wait", [8], {}))
            await asyncio.sleep(0.5)
            began = time.monotonic()
            await asyncio.to_thread(servers.rabbit.stop_app)
            with pytest.raises(RpcTimeout):
                await waiting
            assert time.monotonic() - began < 8, "the waiting call ended with the connection"
            await asyncio.to_thread(servers.rabbit.start_app)
            started = time.monotonic()
            answered, slowest = None, 0.0
            while answered is None and time.monotonic() - started < 30:
                call_began = time.monotonic()
                try:
                    answered = await client.acall("slowtest", "echo", [2], {})
                except Exception:  # noqa: BLE001 - the broker or the service not back yet
                    await asyncio.sleep(0.2)
                slowest = max(slowest, time.monotonic() - call_began)
            assert answered == 2, "no call answered within 30 s of the broker's restart"
            assert slowest < 10, f"a call waited its whole timeout ({slowest:.1f} s)"
        finally:
            await client.aclose()

    try:
        wait_for(lambda: queue_length(servers.amqp_uri) is not None, timeout=60,
                 what="the service consuming")
        asyncio.run(scenario())
    finally:
        os.killpg(service.pid, signal.SIGKILL)
        service.wait()
        delete_queue(servers.amqp_uri)
