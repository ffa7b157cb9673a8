"""A service's public HTTP surface, declared once: what the gateway serves for it.

Each service lists its :class:`Route` s in ``tuoyu_<service>/routes.py`` (``ROUTES``); the
gateway (``services/gateway``) serves every route of every service it is configured with,
checks the caller's token and role there, validates the body with the route's command model,
calls the service over RPC with the verified token, and answers with the route's status and
shape. A new service is reached from outside by adding its routes module to the gateway's
``TUOYU_GATEWAY_ROUTES`` (or to the default list): nothing else.

Plain data and functions, no web framework: the services import it without the gateway's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Anyone, without a token (信息公示: the public register).
PUBLIC = "public"

# How a route's district is checked (the caller's district must cover the case's):
#: the institution named by the path's ``institution_id`` (its district asked of registration);
#: an operator only their own institution.
SCOPE_INSTITUTION = "institution"
#: the body's ``district`` (a registration: the new institution's district).
SCOPE_BODY_DISTRICT = "body_district"
#: a list: a district officer sees their own district only (the ``district`` filter is set).
SCOPE_FILTER_DISTRICT = "filter_district"
#: city-wide only: a district officer may not (an import, the timers).
SCOPE_CITY = "city"
#: no district (city-wide data, or none at all): the role alone decides.
SCOPE_NONE = "none"


@dataclass(frozen=True)
class QueryParam:
    name: str
    kind: str = "string"  # "string", "integer", "boolean"
    description: str = ""
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StaticPages:
    """Files a service ships for people's browsers (a page, its scripts, vendored libraries),
    served by the gateway under ``prefix`` from the directory ``directory`` of the installed
    package ``package`` (the gateway imports the routes module, so the package is there).
    They hold no data: the page asks the service's routes for it with the reader's token."""

    prefix: str
    package: str
    directory: str
    index: str = "index.html"


def _no_args(path: dict[str, str], query: dict[str, Any], body: Any) -> tuple[list, dict]:
    return [], {}


def event_log_routes(service: str) -> list[Route]:
    """The service's notification log as envelopes, for subscribing systems and auditors:
    the event contract (``docs`` and the catalogue say what each type carries)."""
    return [
        Route("GET", f"/api/events/{service}", service, "notifications",
              f"{service}'s events in notification order, as envelopes (start .. stop)",
              ("subscriber", "auditor"), SCOPE_CITY,
              query=(QueryParam("start", "integer", minimum=1),
                     QueryParam("limit", "integer", minimum=1, maximum=1000),
                     QueryParam("stop", "integer", minimum=1)),
              call=lambda path, query, body: ([], {"start": query.get("start") or 1,
                                                   "limit": query.get("limit") or 500,
                                                   "stop": query.get("stop")}),
              respond=lambda rows, path: {"events": rows, "count": len(rows)},
              tags=("events",)),
        Route("GET", f"/api/events/{service}/head", service, "log_head",
              f"The notification id of {service}'s latest event", ("subscriber", "auditor"),
              SCOPE_CITY, respond=lambda head, path: {"head": head}, tags=("events",)),
        Route("GET", f"/api/audit/{service}/calls", service, "audited_calls",
              f"Auditors' calls recorded by {service} (who, when, which method and ids)",
              ("auditor",), SCOPE_CITY,
              query=(QueryParam("subject", max_length=200),
                     QueryParam("after", "integer", minimum=0),
                     QueryParam("limit", "integer", minimum=1, maximum=1000)),
              call=lambda path, query, body: ([], {"subject": query.get("subject"),
                                                   "after": query.get("after") or 0,
                                                   "limit": query.get("limit") or 100}),
              respond=lambda rows, path: {"calls": rows, "count": len(rows)},
              tags=("audit",)),
        *audit_routes(service),
    ]


def _q(query: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: query.get(name) for name in names}


_AUDITOR = ("auditor",)
_CASE = "/api/audit/{service}/cases/{{aggregate_id}}"


def audit_routes(service: str) -> list[Route]:
    """What an auditor reads of a service's log (:mod:`tuoyu_shared.audit`): its signed
    checkpoints and public keys, inclusion and consistency proofs, the raw records, a
    verification, a case's history, state and diff, and signed exports. Every call is
    recorded (``audited_calls``)."""
    at = QueryParam("at", max_length=40,
                    description="a date (its end in Asia/Shanghai) or a date-time with offset")
    case = _CASE.format(service=service)
    base = f"/api/audit/{service}"

    def route(method: str, path: str, rpc: str, summary: str, **kw: Any) -> Route:
        return Route(method, path, service, rpc, summary, _AUDITOR, SCOPE_CITY,
                     tags=kw.pop("tags", ("audit",)), **kw)

    return [
        route("GET", f"{base}/keys", "audit_keys",
              f"The public keys that sign {service}'s checkpoints and exports"),
        route("GET", f"{base}/checkpoints", "audit_checkpoints",
              f"{service}'s signed checkpoints (tree size and root), oldest first",
              query=(QueryParam("after", "integer", minimum=0),
                     QueryParam("limit", "integer", minimum=1, maximum=1000)),
              call=lambda path, query, body: ([], {"after": query.get("after") or 0,
                                                   "limit": query.get("limit") or 100}),
              respond=lambda rows, path: {"checkpoints": rows, "count": len(rows)}),
        route("GET", f"{base}/checkpoints/latest", "audit_latest_checkpoint",
              f"{service}'s latest signed checkpoint (null before the first)",
              respond=lambda cp, path: {"checkpoint": cp}),
        route("GET", f"{base}/proofs/inclusion", "audit_inclusion",
              "The audit path of one event in a checkpoint's tree (RFC 9162 §2.1.3)",
              query=(QueryParam("notification_id", "integer", minimum=1),
                     QueryParam("tree_size", "integer", minimum=1)),
              call=lambda path, query, body: ([query.get("notification_id")],
                                              {"tree_size": query.get("tree_size")})),
        route("GET", f"{base}/proofs/consistency", "audit_consistency",
              "That one checkpoint's tree is a prefix of a later one's (RFC 9162 §2.1.4)",
              query=(QueryParam("first", "integer", minimum=1),
                     QueryParam("second", "integer", minimum=1)),
              call=lambda path, query, body: ([query.get("first")],
                                              {"second": query.get("second")})),
        route("GET", f"{base}/records", "audit_records",
              f"{service}'s stored records as written (state base64), for the verifier",
              query=(QueryParam("after", "integer", minimum=0),
                     QueryParam("limit", "integer", minimum=1, maximum=5000)),
              call=lambda path, query, body: ([], {"after": query.get("after") or 0,
                                                   "limit": query.get("limit") or 1000}),
              respond=lambda rows, path: {"records": rows, "count": len(rows)}),
        route("GET", f"{base}/verify", "audit_verify",
              f"Check {service}'s log against its leaves and every signed checkpoint"),
        route("GET", f"{case}/history", "audit_history",
              "Every event of one case: time, actor, department, reason, correlation",
              call=lambda path, query, body: ([path["aggregate_id"]], {})),
        route("GET", f"{case}/state", "audit_state",
              "One case's state as of a date-time or a version (the latest without either)",
              query=(at, QueryParam("version", "integer", minimum=1)),
              call=lambda path, query, body: ([path["aggregate_id"]],
                                              _q(query, "at", "version"))),
        route("GET", f"{case}/diff", "audit_diff",
              "What changed in one case, field by field, between two versions or times",
              query=(QueryParam("from_version", "integer", minimum=1),
                     QueryParam("to_version", "integer", minimum=1),
                     QueryParam("from_at", max_length=40), QueryParam("to_at", max_length=40)),
              call=lambda path, query, body: ([path["aggregate_id"]], _q(
                  query, "from_version", "to_version", "from_at", "to_at"))),
        route("GET", f"{base}/export", "audit_export",
              "A signed export (zip: JSON Lines, CSV, records, proof, manifest) of one case "
              "or of a period",
              query=(QueryParam("since", max_length=40), QueryParam("until", max_length=40),
                     QueryParam("case", max_length=40, description="an aggregate id")),
              call=lambda path, query, body: ([], {
                  "since": query.get("since"), "until": query.get("until"),
                  "aggregate_id": query.get("case")}),
              file_media_type="application/zip"),
    ]


def correlation_routes(services: tuple[str, ...]) -> list[Route]:
    """One request followed through every service (a case across services): the events
    each recorded under one correlation id."""
    return [Route("GET", "/api/audit/correlations/{correlation_id}", "*", "audit_correlated",
                  "Every event of every service recorded under one correlation id",
                  _AUDITOR, SCOPE_CITY, services=services,
                  call=lambda path, query, body: ([path["correlation_id"]], {}),
                  respond=lambda results, path: {
                      "correlation_id": path["correlation_id"],
                      "events": sorted((e for r in results.values() for e in r["events"]),
                                       key=lambda e: e["occurred_at"]),
                      "services": {name: r["count"] for name, r in results.items()}},
                  tags=("audit",))]


@dataclass(frozen=True)
class Route:
    """One HTTP operation of a service.

    ``call(path, query, body)`` gives the RPC method's positional and keyword arguments;
    ``respond(result, path)`` the JSON answer; ``status`` its HTTP status (an int, or a
    function of the result). ``body`` is the command model that validates the JSON body (its
    JSON Schema is the OpenAPI request body), ``"text"`` for a text body (a CSV), or None.
    ``allow`` names the roles that may call it (or :data:`PUBLIC`); ``scope`` how the
    caller's district is checked. ``writes`` says whether it changes anything.
    """

    method: str
    path: str
    service: str
    rpc: str
    summary: str
    allow: tuple[str, ...]
    scope: str = SCOPE_NONE
    body: Any = None
    query: tuple[QueryParam, ...] = ()
    call: Callable[[dict[str, str], dict[str, Any], Any], tuple[list, dict]] = _no_args
    respond: Callable[[Any, dict[str, str]], Any] = lambda result, path: result
    status: int | Callable[[Any], int] = 200
    writes: bool = False
    max_body_bytes: int | None = None
    description: str = ""
    tags: tuple[str, ...] = field(default=())
    #: When set, the gateway calls ``rpc`` on each of these services (``service`` is then
    #: ``"*"``) and ``respond`` gets ``{service: result}``; every one must answer, or the
    #: request fails naming those that did and those that did not (a person's rights, which
    #: each service that holds personal data answers for itself).
    services: tuple[str, ...] = ()
    #: When set, the answer is a file, not JSON: the RPC result is ``{"filename",
    #: "media_type", "content_base64"}`` and the gateway sends the bytes as an attachment
    #: (a spreadsheet, a PDF); this is the media type the OpenAPI document names.
    file_media_type: str | None = None

    @property
    def operation_id(self) -> str:
        cleaned = self.path.strip("/").replace("/", "_").replace("{", "").replace("}", "")
        return f"{self.method.lower()}_{cleaned.replace('-', '_')}"

    def status_of(self, result: Any) -> int:
        return self.status(result) if callable(self.status) else self.status


#: Who may act on a person's rights (erasure, export): city-wide health and credit officers
#: (an erasure spans every district and service).
PEOPLE_ROLES = ("health_officer", "credit_officer")


def people_routes(services: tuple[str, ...]) -> list[Route]:
    """A person's rights over their data (:mod:`tuoyu_shared.people`), answered by every
    service in ``services`` (those whose routes module says ``PERSONAL_DATA = True``): each
    finds the person through its own blind index."""
    from tuoyu_shared.people import ErasePerson, ExportPerson

    return [
        Route("POST", "/api/people/erasures", "*", "erase_person",
              "Erase a person's data in every service (crypto-shredding), with the reason",
              PEOPLE_ROLES, SCOPE_CITY, body=ErasePerson, writes=True, services=services,
              call=lambda path, query, body: ([body], {}),
              respond=lambda results, path: {"services": results},
              description="个人信息删除 (个人信息保护法 第47条): each service deletes the "
                          "person's key, blind-index entries and shown masks and records "
                          "PersonalDataErased; the history still replays. Idempotent: call "
                          "again if a service was away (503 names it). What a law obliges a "
                          "service to keep (a practitioner's ban record) is answered as "
                          "retained, with the reason.",
              tags=("people",)),
        Route("POST", "/api/people/exports", "*", "export_person",
              "A copy of what every service holds of a person, for them (recorded)",
              PEOPLE_ROLES, SCOPE_CITY, body=ExportPerson, services=services,
              call=lambda path, query, body: ([body], {}),
              respond=lambda results, path: {"services": results},
              tags=("people",)),
    ]
