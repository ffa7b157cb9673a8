"""The reliability suite's loopback link: forwards both ways, adds latency, cuts and heals."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tuoyu_shared.reliability.proxy import Link


@pytest.fixture
def echo():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return

            def pump(c: socket.socket) -> None:
                with c:
                    while data := c.recv(4096):
                        c.sendall(data)

            threading.Thread(target=pump, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()
    server.close()


@pytest.fixture
def link(echo):
    link = Link(echo).start()
    yield link
    link.stop()


def round_trip(port: int, payload: bytes = b"ping") -> tuple[bytes, float]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received, time.monotonic() - started


def test_a_link_forwards_both_ways(link):
    payload = bytes(range(256)) * 1000
    received, _ = round_trip(link.port, payload)
    assert received == payload
    assert link.accepted == 1


def test_latency_is_added_each_way_and_restore_removes_it(link):
    _, quick = round_trip(link.port)
    link.set_latency(0.1)
    _, slow = round_trip(link.port)
    assert slow >= 0.2 > quick
    link.restore()
    _, again = round_trip(link.port)
    assert again < 0.1


def test_a_cut_closes_open_connections_and_refuses_new_ones_until_restored(link):
    sock = socket.create_connection(("127.0.0.1", link.port), timeout=5)
    sock.sendall(b"a")
    assert sock.recv(1) == b"a"
    link.cut()
    assert sock.recv(1) == b""  # closed under the client
    sock.close()
    with socket.create_connection(("127.0.0.1", link.port), timeout=5) as refused:
        assert refused.recv(1) == b""
    assert link.refused == 1
    link.restore()
    assert round_trip(link.port)[0] == b"ping"


def test_a_negative_latency_is_refused(link):
    with pytest.raises(ValueError, match="latency"):
        link.set_latency(-1)
