"""The dashboard's public HTTP surface, served by the gateway (:mod:`tuoyu_shared.routes`)."""

from __future__ import annotations

from tuoyu_shared.auth import OFFICER_ROLES
from tuoyu_shared.routes import SCOPE_FILTER_DISTRICT, QueryParam, Route

ROUTES: list[Route] = [
    Route("GET", "/api/dashboard/institutions", "dashboard", "institutions",
          "The directory of institutions (read model), by district",
          ("district_leader", *OFFICER_ROLES, "auditor"), SCOPE_FILTER_DISTRICT,
          query=(QueryParam("district", max_length=50),
                 QueryParam("limit", "integer", minimum=1, maximum=1000)),
          call=lambda path, query, body: ([], {"district": query.get("district"),
                                               "limit": query.get("limit") or 100}),
          respond=lambda rows, path: {"institutions": rows, "count": len(rows)},
          tags=("dashboard",)),
]
