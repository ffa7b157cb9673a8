"""The dashboard's nameko adapter: queries over the read models, the reference data and the
quarterly report, over RPC (people come in through the gateway: :mod:`tuoyu_dashboard.routes`);
its HTTP port serves ``/health`` and ``/metrics`` (with each view's projection lag).

Run: ``python -m tuoyu_shared.serve tuoyu_dashboard.service:DashboardService``.

A district's officer or leader is answered for their own district whatever they ask (the
gateway sets the filter too; this is the second check).
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import psycopg
from amqp.exceptions import AMQPError
from nameko.extensions import DependencyProvider
from nameko.web.handlers import http
from prometheus_client.core import GaugeMetricFamily
from werkzeug.wrappers import Response

from tuoyu_dashboard import indicators as ind
from tuoyu_dashboard import report
from tuoyu_dashboard.projections import VIEWS, list_institutions
from tuoyu_dashboard.reference import load_reference, reference_versions
from tuoyu_shared.config import settings_for
from tuoyu_shared.context import current_principal
from tuoyu_shared.errors import Forbidden
from tuoyu_shared.metrics import ReadModelCollector, render
from tuoyu_shared.nameko_metrics import RequestMetrics
from tuoyu_shared.nameko_support import (
    CommandContextProvider,
    HealthEntrypoints,
    http_json,
    rpc,
)
from tuoyu_shared.rpc import RemoteError, RpcPool, RpcTimeout, UnknownService
from tuoyu_shared.validation import FieldError, ValidationFailed, Validator

#: How long the lag check waits for an upstream's answer (seconds).
UPSTREAM_TIMEOUT = 2.0
_upstreams: RpcPool | None = None


def upstreams() -> RpcPool:
    """The kit's RPC clients that ask the upstreams for their log heads (one pool)."""
    global _upstreams
    if _upstreams is None:
        _upstreams = RpcPool(settings_for("dashboard").amqp_uri, UPSTREAM_TIMEOUT)
    return _upstreams


FILES = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         "pdf": "application/pdf"}


class ReadStore(DependencyProvider):
    """A connection to the dashboard's query store, one per worker."""

    def setup(self) -> None:
        self.database_url = settings_for("dashboard").database_url  # migrated beforehand

    def get_dependency(self, worker_ctx: Any) -> Any:
        return psycopg.connect(self.database_url, autocommit=True)

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        pass


def _district(value: Any) -> str | None:
    """The district asked for, narrowed to the caller's own where their role is a
    district's."""
    v = Validator({"district": value})
    district = v.text("district", max_length=50, required=False)
    v.check()
    principal = current_principal()
    if principal is not None and not principal.city_wide:
        if district not in (None, principal.district):
            raise Forbidden(f"a {principal.district} reader sees only {principal.district}")
        return principal.district
    return district


def _day(value: Any, field: str = "as_of") -> dt.date | dt.datetime | None:
    """A day (``YYYY-MM-DD``, in China: the figures at its end) or an instant with its
    offset (``2026-06-30T10:42:00+08:00``); none: now."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise ValidationFailed([FieldError(field, "must be a day (YYYY-MM-DD) or a time with "
                                                  "its offset", "invalid")])
    try:
        parsed: dt.date | dt.datetime = (dt.date.fromisoformat(value) if len(value) == 10
                                         else dt.datetime.fromisoformat(value))
    except ValueError:
        raise ValidationFailed([FieldError(
            field, f"must be a day (YYYY-MM-DD) or a time with its offset, got {value!r}",
            "invalid")]) from None
    if isinstance(parsed, dt.datetime) and parsed.tzinfo is None:
        raise ValidationFailed([FieldError(field, "a time needs its offset (+08:00)",
                                           "invalid")])
    if not 2000 <= parsed.year <= 2100:  # before converting: the edges of time overflow
        raise ValidationFailed([FieldError(field, "must be from 2000 to 2100", "invalid")])
    if ind.day_of(parsed) > ind.today():
        raise ValidationFailed([FieldError(field, "cannot be after today", "future")])
    if ind.day_of(parsed).year < 2000:
        raise ValidationFailed([FieldError(field, "must be in 2000 or later", "invalid")])
    return parsed


def _lag_of(positions: dict[tuple[str, str], dict], heads: dict[str, Any],
            now: dt.datetime) -> list[dict[str, Any]]:
    rows = []
    for view in VIEWS:
        position = positions.get((view.name, view.upstream)) or {}
        at = int(position.get("notification_id") or 0)
        head = heads.get(view.upstream)
        if isinstance(head, dict):
            events = max(int(head["head"]) - at, 0)
            oldest = head.get("oldest")
            seconds = (max((now - dt.datetime.fromisoformat(oldest)).total_seconds(), 0.0)
                       if events and oldest else 0.0)
        else:
            events, seconds = None, None
        rows.append({"view": view.name, "upstream": view.upstream, "position": at,
                     "head": head["head"] if isinstance(head, dict) else None,
                     "lag_events": events, "lag_seconds": seconds,
                     "updated_at": position.get("updated_at") and
                     position["updated_at"].isoformat(),
                     "answered": isinstance(head, dict)})
    return rows


class DashboardService(HealthEntrypoints):
    name = "dashboard"

    store = ReadStore()
    context = CommandContextProvider()
    request_metrics = RequestMetrics()

    @rpc
    def institutions(self, district: str | None = None, limit: int = 100) -> list:
        v = Validator({"limit": limit})
        limit = v.integer("limit", min_value=1, max_value=1000)  # type: ignore[assignment]
        v.check()
        district = _district(district)
        with self.store as conn:
            return [{**row, "registered_at": row["registered_at"].isoformat()}
                    for row in list_institutions(conn, district, limit)]

    # ---- indicators ---------------------------------------------------------------------
    @rpc
    def indicators(self, as_of: str | None = None, district: str | None = None,
                   streets: bool | None = None) -> dict:
        day, district = _day(as_of), _district(district)
        with self.store as conn:
            return ind.indicators(conn, day, district, streets)

    @rpc
    def indicator_series(self, as_of: str | None = None, months: int = 12,
                         district: str | None = None) -> dict:
        v = Validator({"months": months})
        months = v.integer("months", min_value=1, max_value=60)  # type: ignore[assignment]
        v.check()
        day, district = _day(as_of), _district(district)
        with self.store as conn:
            return ind.series(conn, day, months, district)

    @rpc
    def indicator_institutions(self, code: str, as_of: str | None = None,
                               district: str | None = None, street: str | None = None,
                               limit: int = 500) -> dict:
        v = Validator({"code": code, "street": street, "limit": limit})
        code = v.choice("code", ind.BY_CODE)  # type: ignore[assignment]
        street = v.text("street", max_length=50, required=False)
        limit = v.integer("limit", min_value=1, max_value=5000)  # type: ignore[assignment]
        v.check()
        day, district = _day(as_of), _district(district)
        with self.store as conn:
            return ind.institutions_behind(conn, code, day, district, street, limit)

    @rpc
    def institution_history(self, institution_id: str) -> dict:
        v = Validator({"institution_id": institution_id})
        v.text("institution_id", max_length=36)
        v.check()
        try:
            uuid_value = str(__import__("uuid").UUID(institution_id))
        except ValueError:
            raise ValidationFailed([FieldError("institution_id", "must be a UUID",
                                               "invalid")]) from None
        with self.store as conn:
            rows = ind.institution_history(conn, uuid_value)
        principal = current_principal()
        if rows and principal is not None and not principal.city_wide \
                and rows[-1]["district"] != principal.district:
            raise Forbidden(f"a {principal.district} reader sees only {principal.district}'s "
                            "institutions")
        return {"institution_id": uuid_value, "states": rows, "count": len(rows)}

    @rpc
    def subsidy_figures(self, as_of: str | None = None, district: str | None = None) -> dict:
        day, district = _day(as_of), _district(district)
        with self.store as conn:
            return ind.subsidy(conn, day, district)

    @rpc
    def inspection_figures(self, as_of: str | None = None,
                           district: str | None = None) -> dict:
        day, district = _day(as_of), _district(district)
        with self.store as conn:
            return ind.inspection(conn, day, district)

    @rpc
    def credit_figures(self, as_of: str | None = None, district: str | None = None) -> dict:
        day, district = _day(as_of), _district(district)
        with self.store as conn:
            return ind.credit(conn, day, district)

    # ---- the quarterly report -----------------------------------------------------------
    @rpc
    def quarterly_report(self, quarter: str, district: str | None = None) -> dict:
        district = _district(district)
        with self.store as conn:
            return report.quarterly_report(conn, quarter, district)

    @rpc
    def quarterly_report_file(self, quarter: str, file_format: str = "xlsx",
                              district: str | None = None) -> dict:
        v = Validator({"format": file_format})
        file_format = v.choice("format", FILES)  # type: ignore[assignment]
        v.check()
        district = _district(district)
        with self.store as conn:
            data = report.quarterly_report(conn, quarter, district)
        content = (report.report_xlsx(data) if file_format == "xlsx"
                   else report.report_pdf(data))
        name = f"tuoyu-{data['quarter']}-{district or 'city'}.{file_format}"
        return {"filename": name, "media_type": FILES[file_format],
                "content_base64": base64.b64encode(content).decode("ascii")}

    # ---- reference data -----------------------------------------------------------------
    @rpc
    def load_reference_data(self, text: str, year: int, source: str = "csv") -> dict:
        principal = current_principal()
        loaded_by = principal.subject if principal is not None else "system"
        v = Validator({"source": source})
        source = v.text("source", max_length=100)  # type: ignore[assignment]
        v.check()
        with self.store as conn:
            return load_reference(conn, year, text, loaded_by, source)

    @rpc
    def reference_data(self, year: int | None = None) -> list:
        with self.store as conn:
            return reference_versions(conn, year)

    # ---- projection lag -----------------------------------------------------------------
    @staticmethod
    def _heads(positions: dict[tuple[str, str], int]) -> dict[str, Any]:
        """Each upstream's log head and the time of the first event its view has not
        applied (over the kit's RPC client; an upstream that does not answer in
        ``UPSTREAM_TIMEOUT`` is reported as such)."""
        heads: dict[str, Any] = {}
        for view in VIEWS:
            try:
                head = upstreams().call(view.upstream, "log_head", [], {})
                first = upstreams().call(view.upstream, "notifications", [], {
                    "start": positions.get((view.name, view.upstream), 0) + 1, "limit": 1})
                heads[view.upstream] = {"head": int(head or 0),
                                        "oldest": str(first[0]["occurred_at"]) if first
                                        else None}
            except (RemoteError, RpcTimeout, UnknownService, OSError, ConnectionError,
                    AMQPError) as e:
                heads[view.upstream] = f"no answer: {type(e).__name__}"
        return heads

    @rpc
    def projection_lag(self) -> dict:
        """Each view's position against its upstream's log head: events behind, and the age
        of the oldest event not yet applied (seconds)."""
        with self.store as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute("SELECT consumer, upstream, notification_id, updated_at "
                        "FROM consumer_tracking")
            positions = {(r["consumer"], r["upstream"]): r for r in cur.fetchall()}
        heads = self._heads({k: int(r["notification_id"]) for k, r in positions.items()})
        return {"views": _lag_of(positions, heads, dt.datetime.now(dt.UTC))}

    @http("GET", "/health")
    @http_json
    def health(self, request: Any) -> dict[str, Any]:
        return {"service": self.name, "status": "ok"}

    @http("GET", "/metrics")
    def metrics(self, request: Any) -> Response:
        """Prometheus text: each projector's position and lag per upstream (events and
        seconds), parked and held messages, and the process's own metrics (see
        :mod:`tuoyu_shared.metrics`)."""
        lag = self.projection_lag()["views"]
        collector = _LagCollector(
            ReadModelCollector(self.name, settings_for(self.name).database_url), lag)
        body, content_type = render(collector, accept=request.headers.get("Accept"))
        return Response(body, content_type=content_type)


def _view_of(upstream: str) -> str:
    return next(v.name for v in VIEWS if v.upstream == upstream)


class _LagCollector:
    def __init__(self, inner: ReadModelCollector, lag: list[dict[str, Any]]):
        self.inner, self.lag = inner, lag

    def collect(self):
        yield from self.inner.collect()
        events = GaugeMetricFamily("tuoyu_projection_lag_events",
                                   "Events of the upstream's log not yet in the view.",
                                   labels=["service", "consumer", "upstream"])
        seconds = GaugeMetricFamily("tuoyu_projection_lag_seconds",
                                    "Age of the oldest upstream event not yet in the view.",
                                    labels=["service", "consumer", "upstream"])
        for row in self.lag:
            if row["lag_events"] is None:
                continue
            labels = ["dashboard", row["view"], row["upstream"]]
            events.add_metric(labels, row["lag_events"])
            seconds.add_metric(labels, row["lag_seconds"])
        yield events
        yield seconds
