"""A worker's ``/health`` and ``/metrics``, on a small HTTP server of its own (a thread of the
standard library's ``http.server``; a worker has no nameko, no eventlet).

- ``GET /health``: 200 ``{"service", "status": "ok", "parts": {name: alive}}`` while every
  part's thread is alive; 503 (``"starting"``, ``"stopping"`` or ``"degraded"``) otherwise.
  ``/health/live`` is the same. ``GET /health/ready``: 200 when, beside that, the service's
  database and broker answer and its schema is current (:mod:`tuoyu_shared.readiness`).
- ``GET /metrics``: the service's database metrics (:mod:`tuoyu_shared.metrics`: log head,
  relay position and lag, consumer positions, parked and held messages), each part's liveness
  (``tuoyu_worker_part_up``), the events the relay published, and the process's own metrics.

The port is ``TUOYU_WORKER_HTTP_PORT`` (default :data:`DEFAULT_PORT`, 9100) or the worker's
``--http-port``; the host ``TUOYU_WORKER_HTTP_HOST``, else ``TUOYU_HTTP_HOST``, else
127.0.0.1.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from tuoyu_shared.logs import get_logger
from tuoyu_shared.metrics import render

log = get_logger("tuoyu.worker.http")

DEFAULT_PORT = 9100
PORT_VAR = "TUOYU_WORKER_HTTP_PORT"
HOST_VAR = "TUOYU_WORKER_HTTP_HOST"


def address_from_env(env: Mapping[str, str] | None = None,
                     port: int | None = None) -> tuple[str, int]:
    """(host, port) of a worker's HTTP server; ``port`` (the command line's) wins."""
    env = os.environ if env is None else env
    host = env.get(HOST_VAR) or env.get("TUOYU_HTTP_HOST") or "127.0.0.1"
    if port is None:
        raw = (env.get(PORT_VAR) or "").strip()
        if raw and not (raw.isascii() and raw.isdigit() and 0 <= int(raw) <= 65535):
            raise ValueError(f"{PORT_VAR} must be a port number, got {raw!r}")
        port = int(raw) if raw else DEFAULT_PORT
    return host, port


class WorkerHttp:
    """Serves a worker's health and metrics while its parts run (:meth:`watch` them)."""

    def __init__(self, service: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 collector: Any = None, readiness: Any = None):
        self.service = service
        self.readiness = readiness
        self.address = (host, port)
        self.collector = collector
        self._threads: list[threading.Thread] | None = None
        self._stop: threading.Event | None = None
        self._server: ThreadingHTTPServer | None = None

    # What the parts are doing

    def watch(self, threads: list[threading.Thread], stop: threading.Event) -> None:
        """The parts' threads, and the event that stops them all."""
        self._threads, self._stop = list(threads), stop

    def parts(self) -> dict[str, bool]:
        return {t.name: t.is_alive() for t in self._threads or ()}

    def health(self) -> tuple[int, dict[str, Any]]:
        parts = self.parts()
        if self._threads is None:
            status = "starting"
        elif self._stop is not None and self._stop.is_set():
            status = "stopping"
        elif not all(parts.values()):
            status = "degraded"
        else:
            status = "ok"
        return (200 if status == "ok" else 503), {"service": self.service, "status": status,
                                                   "parts": parts}

    def ready(self) -> tuple[int, dict[str, Any]]:
        """Live, and its database, broker and schema ready (:mod:`tuoyu_shared.readiness`)."""
        status, body = self.health()
        checks: dict[str, Any] = {"parts": {"ok": status == 200, "status": body["status"],
                                            "parts": body["parts"]}}
        if self.readiness is not None:
            _, answer = self.readiness.check()
            checks.update(answer["checks"])
        ready = all(c.get("ok") for c in checks.values())
        return (200 if ready else 503), {"service": self.service,
                                         "status": "ready" if ready else "not_ready",
                                         "checks": checks}

    def collect(self) -> Iterator[Metric]:
        """Each part's liveness, as a collector."""
        up = GaugeMetricFamily("tuoyu_worker_part_up",
                               "Whether the worker part's thread is alive.",
                               labels=["service", "part"])
        for name, alive in self.parts().items():
            up.add_metric([self.service, name], 1 if alive else 0)
        yield up

    def metrics(self, accept: str | None = None) -> tuple[bytes, str]:
        collectors = [self] + ([self.collector] if self.collector is not None else [])
        return render(*collectors, accept=accept)

    # The server

    @property
    def port(self) -> int:
        """The port served (the one bound, when asked for port 0)."""
        return self._server.server_address[1] if self._server else self.address[1]

    def start(self) -> None:
        """Bind and serve in a daemon thread; raises OSError when the port is taken."""
        server = ThreadingHTTPServer(self.address, _handler(self))
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
        log.info("worker.http_serving", host=self.address[0], port=self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler(http: WorkerHttp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "tuoyu-worker"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            status, content_type = 200, "application/json"
            try:
                if path in ("/health", "/health/live"):
                    status, body = http.health()
                    data = json.dumps(body).encode()
                elif path == "/health/ready":
                    status, body = http.ready()
                    data = json.dumps(body, ensure_ascii=False).encode()
                elif path == "/metrics":
                    data, content_type = http.metrics(self.headers.get("Accept"))
                else:
                    status, data = 404, b'{"error": "not_found"}'
            except Exception:
                log.exception("worker.http_error", path=path)
                status, content_type = 500, "application/json"
                data = b'{"error": "internal_error"}'
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client went away

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds: not worth a log line each

    return Handler
