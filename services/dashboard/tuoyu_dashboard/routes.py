"""The dashboard's public HTTP surface, served by the gateway (:mod:`tuoyu_shared.routes`):
the indicators (now or as of a day, by district and street), their monthly series and the
institutions behind each, the subsidy, inspection and credit figures, the reference data, the
quarterly report (JSON, xlsx, PDF), the projection lag, and the page (``/dashboard/``).

Leaders and officers read; a district's officer or leader reads their own district only
(``district`` is set to theirs); auditors read everything (each read recorded).
"""

from __future__ import annotations

from tuoyu_dashboard.indicators import BY_CODE
from tuoyu_shared.auth import OFFICER_ROLES
from tuoyu_shared.routes import (
    SCOPE_CITY,
    SCOPE_FILTER_DISTRICT,
    QueryParam,
    Route,
    StaticPages,
)

SERVICE = "dashboard"
READERS = ("district_leader", *OFFICER_ROLES, "auditor")
#: Who loads the reference data: the health commission's officers (city-wide).
REFERENCE_LOADERS = ("health_officer",)

AS_OF = QueryParam("as_of", description="a past day (YYYY-MM-DD, in China: the figures at its "
                   "end) or an instant with its offset (2026-06-30T10:42:00+08:00); none: now",
                   max_length=40)
DISTRICT = QueryParam("district", max_length=50)

PAGES = [StaticPages("/dashboard", "tuoyu_dashboard", "static")]


def _as_of(query: dict) -> dict:
    return {"as_of": query.get("as_of"), "district": query.get("district")}


ROUTES: list[Route] = [
    Route("GET", "/api/dashboard/institutions", SERVICE, "institutions",
          "The directory of institutions (read model), by district",
          READERS, SCOPE_FILTER_DISTRICT,
          query=(DISTRICT, QueryParam("limit", "integer", minimum=1, maximum=1000)),
          call=lambda path, query, body: ([], {"district": query.get("district"),
                                               "limit": query.get("limit") or 100}),
          respond=lambda rows, path: {"institutions": rows, "count": len(rows)},
          tags=("dashboard",)),
    Route("GET", "/api/dashboard/indicators", SERVICE, "indicators",
          "The indicators (备案率, 每千人口托位数, 入托率, 托位使用率, 普惠托育率, street "
          "coverage, places per community, 持证率, 健康管理率) in all, by district and (for a "
          "district, or with streets=true) by street, with their definitions and targets, now "
          "or as of a day",
          READERS, SCOPE_FILTER_DISTRICT,
          query=(AS_OF, DISTRICT, QueryParam("streets", "boolean",
                                             "by street too (default: for a district)")),
          call=lambda path, query, body: ([], {**_as_of(query),
                                               "streets": query.get("streets")}),
          tags=("dashboard",)),
    Route("GET", "/api/dashboard/indicators/series", SERVICE, "indicator_series",
          "Each indicator at the end of each month (the last: the day), in all and by district",
          READERS, SCOPE_FILTER_DISTRICT,
          query=(AS_OF, DISTRICT, QueryParam("months", "integer", minimum=1, maximum=60)),
          call=lambda path, query, body: ([], {**_as_of(query),
                                               "months": query.get("months") or 12}),
          tags=("dashboard",)),
    Route("GET", "/api/dashboard/indicators/{code}/institutions", SERVICE,
          "indicator_institutions",
          "The institutions an indicator counts, each with its share of the numerator and "
          "denominator and the event behind its state (drill-down)",
          READERS, SCOPE_FILTER_DISTRICT,
          query=(AS_OF, DISTRICT, QueryParam("street", max_length=50),
                 QueryParam("limit", "integer", minimum=1, maximum=5000)),
          call=lambda path, query, body: ([path["code"]], {
              **_as_of(query), "street": query.get("street"),
              "limit": query.get("limit") or 500}),
          description="code: " + ", ".join(BY_CODE), tags=("dashboard",)),
    Route("GET", "/api/dashboard/institutions/{institution_id}/history", SERVICE,
          "institution_history",
          "Every state of an institution the dashboard counts, each with its event",
          READERS, SCOPE_FILTER_DISTRICT,
          call=lambda path, query, body: ([path["institution_id"]], {}),
          tags=("dashboard",)),
    Route("GET", "/api/dashboard/subsidy", SERVICE, "subsidy_figures",
          "Subsidy allocated, reserved and paid by budget (year, fund) and by program",
          READERS, SCOPE_FILTER_DISTRICT, query=(AS_OF, DISTRICT),
          call=lambda path, query, body: ([], _as_of(query)), tags=("dashboard",)),
    Route("GET", "/api/dashboard/inspection", SERVICE, "inspection_figures",
          "Visits done against plan, findings by checklist area and severity, on-time "
          "rectification rate, overdue orders",
          READERS, SCOPE_FILTER_DISTRICT, query=(AS_OF, DISTRICT),
          call=lambda path, query, body: ([], _as_of(query)), tags=("dashboard",)),
    Route("GET", "/api/dashboard/credit", SERVICE, "credit_figures",
          "Credit grade distribution, institutions on a list, practitioners barred",
          READERS, SCOPE_FILTER_DISTRICT, query=(AS_OF, DISTRICT),
          call=lambda path, query, body: ([], _as_of(query)), tags=("dashboard",)),
    Route("GET", "/api/dashboard/lag", SERVICE, "projection_lag",
          "Each view's projection lag behind its upstream's log (events, seconds)",
          READERS, SCOPE_FILTER_DISTRICT, tags=("dashboard",)),
    Route("GET", "/api/dashboard/reports/quarterly", SERVICE, "quarterly_report",
          "The quarterly progress report (每季度进度报送): the indicators, their targets and "
          "the quarter's changes",
          READERS, SCOPE_FILTER_DISTRICT,
          query=(QueryParam("quarter", description="YYYYQn, e.g. 2026Q3", max_length=7),
                 DISTRICT),
          call=lambda path, query, body: ([query.get("quarter") or ""],
                                          {"district": query.get("district")}),
          tags=("dashboard",)),
    *[Route("GET", f"/api/dashboard/reports/quarterly.{fmt}", SERVICE, "quarterly_report_file",
            f"The quarterly progress report as {label}, in Chinese, with the charts",
            READERS, SCOPE_FILTER_DISTRICT,
            query=(QueryParam("quarter", description="YYYYQn, e.g. 2026Q3", max_length=7),
                   DISTRICT),
            call=lambda path, query, body, fmt=fmt: ([query.get("quarter") or "", fmt],
                                                     {"district": query.get("district")}),
            file_media_type=media, tags=("dashboard",))
      for fmt, label, media in (
          ("xlsx", "a spreadsheet",
           "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
          ("pdf", "a PDF", "application/pdf"))],
    Route("POST", "/api/dashboard/reference-data", SERVICE, "load_reference_data",
          "Load a year's population, under-three population and communities by district and "
          "street from a CSV (district,street,population,under_three,communities): every bad "
          "row reported, nothing loaded unless all are good",
          REFERENCE_LOADERS, SCOPE_CITY, body="text",
          query=(QueryParam("year", "integer", minimum=2000, maximum=2100),
                 QueryParam("source", max_length=100)),
          call=lambda path, query, body: ([body, query.get("year")],
                                          {"source": query.get("source") or "csv"}),
          status=201, writes=True, max_body_bytes=4 << 20, tags=("dashboard",)),
    Route("GET", "/api/dashboard/reference-data", SERVICE, "reference_data",
          "The reference data loaded, by year and version (who, when, SHA-256, totals)",
          READERS, SCOPE_FILTER_DISTRICT,
          query=(QueryParam("year", "integer", minimum=2000, maximum=2100),),
          call=lambda path, query, body: ([], {"year": query.get("year")}),
          respond=lambda rows, path: {"versions": rows, "count": len(rows)},
          tags=("dashboard",)),
]
