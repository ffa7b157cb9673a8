"""The dashboard's nameko adapter: queries over the read models, over RPC (people come in
through the gateway: :mod:`tuoyu_dashboard.routes`); its HTTP port serves ``/health`` and
``/metrics``.

Run: ``python -m tuoyu_shared.serve tuoyu_dashboard.service:DashboardService``.
"""

from __future__ import annotations

from typing import Any

import psycopg
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from tuoyu_dashboard.projections import list_institutions
from tuoyu_shared.config import settings_for
from tuoyu_shared.metrics import ReadModelCollector, render
from tuoyu_shared.nameko_metrics import RequestMetrics
from tuoyu_shared.nameko_support import CommandContextProvider, http_json
from tuoyu_shared.validation import Validator


class ReadStore(DependencyProvider):
    """A connection to the dashboard's query store, one per worker."""

    def setup(self) -> None:
        self.database_url = settings_for("dashboard").database_url  # migrated beforehand

    def get_dependency(self, worker_ctx: Any) -> Any:
        return psycopg.connect(self.database_url, autocommit=True)

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        pass


class DashboardService:
    name = "dashboard"

    store = ReadStore()
    context = CommandContextProvider()
    request_metrics = RequestMetrics()

    @rpc
    def institutions(self, district: str | None = None, limit: int = 100) -> list:
        v = Validator({"district": district, "limit": limit})
        district = v.text("district", max_length=50, required=False)
        limit = v.integer("limit", min_value=1, max_value=1000)  # type: ignore[assignment]
        v.check()
        with self.store as conn:
            return [{**row, "registered_at": row["registered_at"].isoformat()}
                    for row in list_institutions(conn, district, limit)]

    @http("GET", "/health")
    @http_json
    def health(self, request: Any) -> dict[str, Any]:
        return {"service": self.name, "status": "ok"}

    @http("GET", "/metrics")
    def metrics(self, request: Any) -> Response:
        """Prometheus text: each projector's position per upstream, parked and held
        messages, and the process's own metrics (see :mod:`tuoyu_shared.metrics`)."""
        collector = ReadModelCollector(self.name, settings_for(self.name).database_url)
        body, content_type = render(collector, accept=request.headers.get("Accept"))
        return Response(body, content_type=content_type)
