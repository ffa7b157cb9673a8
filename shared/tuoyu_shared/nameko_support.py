"""Thin-adapter helpers for nameko services: the application as a dependency, the command
context from RPC headers or HTTP headers, and errors mapped to HTTP statuses.

Import this only in nameko processes (``python -m tuoyu_shared.serve``), after eventlet's
monkey patching.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from datetime import date, datetime
from functools import wraps
from typing import Any
from uuid import UUID

from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from tuoyu_shared.context import command_context
from tuoyu_shared.logs import get_logger
from tuoyu_shared.validation import FieldError, ValidationFailed

log = get_logger("tuoyu.http")


class ApplicationProvider(DependencyProvider):
    """One application instance per service process, built at container start."""

    def __init__(self, factory: Callable[[], Any]):
        self.factory = factory
        self.app: Any = None

    def setup(self) -> None:
        self.app = self.factory()

    def get_dependency(self, worker_ctx: Any) -> Any:
        return self.app


class CommandContextProvider(DependencyProvider):
    """Opens a command context for each worker: from ``nameko.*`` RPC headers (correlation id,
    actor, department) or, for HTTP, from X-Correlation-Id, X-Actor and X-Department."""

    def __init__(self) -> None:
        self._stacks: dict[Any, ExitStack] = {}

    def worker_setup(self, worker_ctx: Any) -> None:
        data = dict(worker_ctx.context_data)
        request = worker_ctx.args[0] if worker_ctx.args else None
        headers = getattr(request, "headers", None)
        if headers is not None:
            for key, header in (("correlation_id", "X-Correlation-Id"), ("actor", "X-Actor"),
                                ("department", "X-Department")):
                if headers.get(header):
                    data[key] = headers.get(header)
        stack = ExitStack()
        stack.enter_context(command_context(
            actor=data.get("actor"), department=data.get("department"),
            correlation_id=data.get("correlation_id"), causation_id=data.get("causation_id")))
        self._stacks[worker_ctx] = stack

    def worker_teardown(self, worker_ctx: Any) -> None:
        stack = self._stacks.pop(worker_ctx, None)
        if stack is not None:
            stack.close()

    def get_dependency(self, worker_ctx: Any) -> None:
        return None


class EventLogEntrypoints:
    """What every event-sourced service exposes beside its own API: its notification log as
    envelopes (consumers pull missing ranges from it), its head, and a health check.

    Mix into a nameko service class that has an ``app`` (a ServiceApplication) dependency.
    """

    app: Any
    name: str

    @rpc
    def notifications(self, start: int, limit: int = 500, stop: int | None = None) -> list:
        """The notification log as envelopes, ``start`` to ``stop`` (at most 1000)."""
        limit = max(1, min(int(limit), 1000))
        return [e.to_dict() for e in self.app.read_log(int(start), limit, stop)]

    @rpc
    def log_head(self) -> int:
        return self.app.log_head()

    @http("GET", "/health")
    def health(self, request: Any) -> Response:
        return json_response({"service": self.name, "status": "ok",
                              "log_head": self.app.log_head()})

    @http("GET", "/metrics")
    def metrics(self, request: Any) -> Response:
        """Prometheus text: the log head, the relay's position and lag, each consumer's
        position per upstream, and parked messages not yet re-driven."""
        return Response(event_log_metrics(self.name, self.app),
                        mimetype="text/plain; version=0.0.4")


def event_log_metrics(service: str, app: Any) -> str:
    import psycopg

    head = app.log_head()
    lines = [
        "# HELP tuoyu_log_head Newest notification id in the service's event log.",
        "# TYPE tuoyu_log_head gauge",
        f'tuoyu_log_head{{service="{service}"}} {head}',
    ]

    def rows(conn: Any, table: str, query: str) -> list:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
            return []
        return conn.execute(query).fetchall()

    tracking_table = getattr(app.recorder, "tracking_table_name", None)
    with psycopg.connect(app.settings.database_url, autocommit=True) as conn:
        lines += ["# TYPE tuoyu_relay_position gauge", "# TYPE tuoyu_relay_lag gauge"]
        for exchange, position in rows(conn, "relay_position",
                                       "SELECT exchange, notification_id FROM relay_position"):
            lines.append(f'tuoyu_relay_position{{service="{service}",exchange="{exchange}"}} '
                         f"{position}")
            lines.append(f'tuoyu_relay_lag{{service="{service}",exchange="{exchange}"}} '
                         f"{max(head - position, 0)}")
        lines.append("# TYPE tuoyu_consumer_position gauge")
        positions = rows(conn, "consumer_tracking",
                         "SELECT consumer, upstream, notification_id FROM consumer_tracking")
        if tracking_table:
            positions += [(*name.split("<-", 1), n) for name, n in rows(
                conn, tracking_table,
                f'SELECT application_name, notification_id FROM "{tracking_table}" '
                "WHERE application_name LIKE '%<-%'")]
        for consumer, upstream, position in positions:
            lines.append(f'tuoyu_consumer_position{{service="{service}",consumer="{consumer}",'
                         f'upstream="{upstream}"}} {position}')
        lines.append("# TYPE tuoyu_parked_messages gauge")
        for consumer, count in rows(
                conn, "consumer_dead_letters",
                "SELECT consumer, count(*) FROM consumer_dead_letters "
                "WHERE redriven_at IS NULL GROUP BY consumer"):
            lines.append(f'tuoyu_parked_messages{{service="{service}",consumer="{consumer}"}} '
                         f"{count}")
    return "\n".join(lines) + "\n"


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, default=_default), status=status,
                    mimetype="application/json")


# Exception class name → HTTP status, for errors the application layer raises.
HTTP_STATUS_BY_ERROR = {
    "ValidationFailed": 400,
    "InstitutionNotFound": 404,
    "PractitionerNotFound": 404,
    "PermissionError": 410,  # the person's data was erased
    "DomainRuleViolated": 409,
    "RecordConflictError": 409,
}


def http_json(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run an HTTP handler returning JSON-able data; map domain errors to statuses."""

    @wraps(func)
    def wrapper(self: Any, request: Any, *args: Any, **kwargs: Any) -> Response:
        try:
            result = func(self, request, *args, **kwargs)
        except ValidationFailed as e:
            return json_response(e.to_dict(), 400)
        except json.JSONDecodeError as e:
            return json_response({"error": "invalid_json", "reason": str(e)}, 400)
        except Exception as e:
            status = HTTP_STATUS_BY_ERROR.get(type(e).__name__)
            if status is None:
                log.exception("http.unhandled_error")
                return json_response({"error": "internal_error"}, 500)
            body = {"error": type(e).__name__, "reason": str(e)}
            if getattr(e, "state", None):
                body["state"] = e.state
            return json_response(body, status)
        if isinstance(result, Response):
            return result
        if isinstance(result, tuple):
            status, body = result
            return json_response(body, status)
        return json_response(result)

    return wrapper


def read_json(request: Any) -> dict[str, Any]:
    data = json.loads(request.get_data(as_text=True) or "{}")
    if not isinstance(data, dict):
        raise ValidationFailed(
            [FieldError("body", "the request body must be a JSON object", "invalid_format")])
    return data
