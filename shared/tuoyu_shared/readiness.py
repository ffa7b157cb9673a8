"""``/health/live`` and ``/health/ready`` of every process (service, worker, gateway).

- **live**: the process runs and answers (a worker: every part's thread is alive). An
  orchestrator restarts a process that is not live.
- **ready**: it can do its work now: its database answers, its broker answers and its
  database's schema is current (no migration pending: a new image started before its
  migration job ran is not given traffic, nor is an old one on a newer schema's database
  only because it answers). An orchestrator sends no traffic to a process that is not ready,
  and does not restart it for that.

The checks are cached for :attr:`Readiness.ttl` seconds, so probes from several places cost
one check; a schema found current is believed for :attr:`Readiness.schema_ttl` (migrations
only move forward while a process runs). Errors are reported by kind and message without
credentials.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

CONNECT_TIMEOUT = 2


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())[:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _where(url: str) -> str:
    """host:port of a URL, never its user or password."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}:{parts.port or ''}"


def check_database(database_url: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(database_url, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.execute("SELECT 1")
    return {"ok": True, "at": _where(database_url)}


def check_broker(amqp_uri: str) -> dict[str, Any]:
    from kombu import Connection

    with Connection(amqp_uri, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT)
    return {"ok": True, "at": _where(amqp_uri)}


def check_schema(service: str, database_url: str) -> dict[str, Any]:
    from tuoyu_shared.migrate import pending

    todo = pending(service, database_url)
    return {"ok": not todo, "pending": todo}


class Readiness:
    """The readiness of one process: named checks, each a callable returning
    ``{"ok": bool, ...}`` or raising (not ok, with the error's kind and message)."""

    ttl = 2.0
    schema_ttl = 60.0

    def __init__(self, service: str, checks: dict[str, Callable[[], dict[str, Any]]],
                 clock: Callable[[], float] = time.monotonic):
        self.service = service
        self.checks = checks
        self.clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, tuple[int, dict[str, Any]]] | None = None
        self._schema_ok_at: float | None = None

    @classmethod
    def for_service(cls, service: str, database_url: str | None, amqp_uri: str | None,
                    schema: bool = True, **extra: Callable[[], dict[str, Any]]) -> Readiness:
        """A service's or worker's checks: database, broker and schema (each where given)."""
        checks: dict[str, Callable[[], dict[str, Any]]] = {}
        if database_url:
            checks["database"] = lambda: check_database(database_url)
            if schema:
                checks["schema"] = lambda: check_schema(service, database_url)
        if amqp_uri:
            checks["broker"] = lambda: check_broker(amqp_uri)
        checks.update(extra)
        return cls(service, checks)

    def _run(self, name: str, check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        now = self.clock()
        if name == "schema" and self._schema_ok_at is not None \
                and now - self._schema_ok_at < self.schema_ttl:
            return {"ok": True, "pending": []}
        try:
            result = dict(check())
        except Exception as e:  # the check's own failure is the answer, never a 500
            return {"ok": False, "error": _reason(e)}
        if name == "schema" and result.get("ok"):
            self._schema_ok_at = now
        return result

    def check(self) -> tuple[int, dict[str, Any]]:
        """``(200 or 503, {"service", "status": "ready"|"not_ready", "checks"})``."""
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last[0] < self.ttl:
                return self._last[1]
            results = {name: self._run(name, check) for name, check in self.checks.items()}
            ready = all(r.get("ok") for r in results.values())
            answer = (200 if ready else 503), {
                "service": self.service, "status": "ready" if ready else "not_ready",
                "checks": results}
            self._last = (self.clock(), answer)
            return answer
