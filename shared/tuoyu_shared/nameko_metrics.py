"""Every entrypoint call of a nameko service counted and timed, by outcome
(:data:`tuoyu_shared.metrics.REQUESTS`, :data:`~tuoyu_shared.metrics.REQUEST_SECONDS`).

A dependency provider, so no handler changes: nameko calls its ``worker_result`` hook after
every HTTP or RPC worker, with the handler's result (an HTTP response) or its exception.
"""

from __future__ import annotations

import time
from typing import Any

from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko.web.handlers import HttpRequestHandler

from tuoyu_shared.metrics import REQUEST_SECONDS, REQUESTS


def http_outcome(result: Any, exc_info: Any) -> str:
    """``ok``, ``refused`` (4xx) or ``error`` (5xx, or the handler raised: nameko answers 500)."""
    if exc_info is not None:
        return "error"
    status = getattr(result, "status_code", None)
    if status is None:
        status = result[0] if isinstance(result, tuple) and result else 200
    try:
        status = int(status)
    except (TypeError, ValueError):
        return "error"
    return "ok" if status < 400 else "refused" if status < 500 else "error"


def rpc_outcome(exc_info: Any) -> str:
    """``ok``; ``refused`` for an error that carries a 4xx ``http_status`` (a validation or
    domain error, :mod:`tuoyu_shared.errors`); ``error`` otherwise."""
    if exc_info is None:
        return "ok"
    status = getattr(exc_info[1], "http_status", None)
    return "refused" if isinstance(status, int) and 400 <= status < 500 else "error"


class RequestMetrics(DependencyProvider):
    """Counts and times each worker of the service's entrypoints; declare it on the service
    class (``request_metrics = RequestMetrics()``). Its attribute on the service is None."""

    def __init__(self) -> None:
        self._started: dict[Any, float] = {}

    def worker_setup(self, worker_ctx: Any) -> None:
        self._started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        started = self._started.pop(worker_ctx, None)
        entrypoint = worker_ctx.entrypoint
        if isinstance(entrypoint, HttpRequestHandler):
            transport, outcome = "http", http_outcome(result, exc_info)
        elif isinstance(entrypoint, Rpc):
            transport, outcome = "rpc", rpc_outcome(exc_info)
        else:
            transport = type(entrypoint).__name__.lower()
            outcome = "ok" if exc_info is None else "error"
        labels = (worker_ctx.service_name, entrypoint.method_name, transport)
        REQUESTS.labels(*labels, outcome).inc()
        if started is not None:
            REQUEST_SECONDS.labels(*labels).observe(time.perf_counter() - started)

    def worker_teardown(self, worker_ctx: Any) -> None:
        self._started.pop(worker_ctx, None)

    def get_dependency(self, worker_ctx: Any) -> None:
        return None
