"""A TCP proxy on loopback that the reliability suite puts in front of PostgreSQL and RabbitMQ
(toxiproxy's two faults that matter here, in the standard library): a **slow** link (latency
added to every chunk, each way) and a **cut** link (every connection closed, new ones accepted
and closed at once, as a pulled cable or a firewall reset looks to a client).

    link = Link(("127.0.0.1", 5672)).start()
    uri = f"amqp://user:pw@127.0.0.1:{link.port}/vhost"
    link.set_latency(0.05); link.cut(); link.restore()

Threads, one pair per connection: enough for the few dozen connections of a process group.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

CHUNK = 65536


class Link:
    """One listening port on 127.0.0.1 forwarding to ``upstream``."""

    def __init__(self, upstream: tuple[str, int], listen_port: int = 0, name: str = ""):
        self.upstream = upstream
        self.name = name or f"{upstream[0]}:{upstream[1]}"
        self._listen_port = listen_port
        self._server: socket.socket | None = None
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._latency = 0.0
        self._cut = False
        self._stopping = threading.Event()
        self.accepted = 0  # connections forwarded
        self.refused = 0  # connections closed at once while cut
        self.forwarded_bytes = 0

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the link is not started")
        return self._server.getsockname()[1]

    @property
    def latency(self) -> float:
        return self._latency

    @property
    def is_cut(self) -> bool:
        return self._cut

    def start(self) -> Link:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self._listen_port))
        server.listen(256)
        server.settimeout(0.2)
        self._server = server
        threading.Thread(target=self._accept_loop, name=f"link-{self.name}",
                         daemon=True).start()
        return self

    # ---- the faults --------------------------------------------------------------------------
    def set_latency(self, seconds: float) -> None:
        """Delay each chunk by ``seconds`` in each direction (0: none)."""
        if seconds < 0:
            raise ValueError("latency must be at least 0")
        self._latency = seconds

    def cut(self) -> None:
        """Close every open connection; connections made while cut are closed at once."""
        self._cut = True
        self.reset_connections()

    def restore(self) -> None:
        """Heal: no latency, connections accepted and forwarded again."""
        self._latency = 0.0
        self._cut = False

    def reset_connections(self) -> None:
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
        for pair in pairs:
            for sock in pair:
                _close(sock)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            _close(self._server)
        self.reset_connections()

    # ---- forwarding --------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut:
                self.refused += 1
                _close(client)
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _close(client)
            return
        for sock in (client, server):
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = (client, server)
        with self._lock:
            if self._cut or self._stopping.is_set():
                _close(client)
                _close(server)
                return
            self._pairs.add(pair)
            self.accepted += 1
        threading.Thread(target=self._pump, args=(client, server, pair), daemon=True).start()
        self._pump(server, client, pair)

    def _pump(self, source: socket.socket, target: socket.socket,
              pair: tuple[socket.socket, socket.socket]) -> None:
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                if self._latency:
                    time.sleep(self._latency)
                if self._cut:
                    break
                target.sendall(data)
                self.forwarded_bytes += len(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            _close(source)
            _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
