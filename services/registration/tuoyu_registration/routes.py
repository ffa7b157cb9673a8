"""Registration's public HTTP surface, served by the gateway (:mod:`tuoyu_shared.routes`).

The paths are those the service served itself before the gateway: ``POST
/api/institutions`` (登记), ``POST /api/institutions/{id}/<command>``, ``GET
/api/institutions/{id}[?version=N]``, ``GET /api/institutions/{id}/record``, ``GET
/api/public/institutions`` (信息公示, no token), the officers' work lists and the CSV import.
"""

from __future__ import annotations

from typing import Any

from tuoyu_registration import commands
from tuoyu_shared.auth import OFFICER_ROLES
from tuoyu_shared.routes import (
    PUBLIC,
    SCOPE_BODY_DISTRICT,
    SCOPE_CITY,
    SCOPE_FILTER_DISTRICT,
    SCOPE_INSTITUTION,
    SCOPE_NONE,
    QueryParam,
    Route,
    event_log_routes,
)

SERVICE = "registration"
#: This service holds personal data: the gateway's /api/people/… routes call it too.
PERSONAL_DATA = True
READERS = (*OFFICER_ROLES, "auditor", "operator")

#: Commands on one institution: name → (who may send it, summary).
INSTITUTION_COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "submit_filing": (("operator", "health_officer"), "备案: submit the filing facts"),
    "issue_filing_receipt": (("health_officer",), "备案回执: issue the filing's receipt"),
    "verify_filing": (("health_officer",), "核查: the filing verified, or not compliant"),
    "file_change": (("operator", "health_officer"), "变更: a change of the filed facts"),
    "designate_affordable": (("health_officer",), "普惠: designate affordable"),
    "withdraw_affordable": (("health_officer",), "取消普惠: withdraw the designation"),
    "grant_demonstration_level": (("health_officer",), "示范: grant a demonstration level"),
    "revoke_demonstration_level": (("health_officer",), "撤销示范: revoke it"),
    "report_enrolment": (("operator", "health_officer"), "月度在托: the month's enrolment"),
    "correct_enrolment": (("operator", "health_officer"), "更正: correct a month's report"),
    "request_hire": (("operator", "health_officer"), "聘用: hire, pending the background check"),
    "release_practitioner": (("operator", "health_officer"), "离岗: release a practitioner"),
    "suspend_for_rectification": (("health_officer", "market_officer", "fire_officer"),
                                  "停业整顿: suspend for rectification"),
    "resume": (("health_officer",), "恢复: resume after rectification"),
    "deregister": (("health_officer",), "注销: deregister"),
}


def _institution_command(name: str, allow: tuple[str, ...], summary: str) -> Route:
    def respond(result: Any, path: dict[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = {"institution_id": path["institution_id"], "command": name}
        if result is not None:
            body["result"] = result
        return body

    return Route("POST", f"/api/institutions/{{institution_id}}/{name}", SERVICE, name,
                 summary, allow, SCOPE_INSTITUTION, body=commands.COMMANDS[name],
                 call=lambda path, query, body: ([path["institution_id"], body], {}),
                 respond=respond, writes=True, tags=("registration",))


PUBLIC_FILTERS = (
    QueryParam("district", max_length=50), QueryParam("street", max_length=50),
    QueryParam("kind", max_length=50), QueryParam("name", max_length=100),
    QueryParam("affordable", "boolean"),
    QueryParam("limit", "integer", minimum=1, maximum=1000),
    QueryParam("offset", "integer", minimum=0),
)

ROUTES: list[Route] = [
    Route("POST", "/api/institutions", SERVICE, "register_institution",
          "登记: enter a provider in the register", ("health_officer", "market_officer"),
          SCOPE_BODY_DISTRICT, body=commands.RegisterInstitution,
          call=lambda path, query, body: ([body], {}),
          respond=lambda result, path: {"institution_id": result}, status=201, writes=True,
          tags=("registration",)),
    *(_institution_command(name, allow, summary)
      for name, (allow, summary) in INSTITUTION_COMMANDS.items()),
    Route("GET", "/api/institutions/{institution_id}", SERVICE, "get_institution",
          "An institution's facts (as of a version); personal data masked", READERS,
          SCOPE_INSTITUTION, query=(QueryParam("version", "integer", minimum=1),),
          call=lambda path, query, body: ([path["institution_id"], query.get("version")], {}),
          tags=("registration",)),
    Route("GET", "/api/institutions/{institution_id}/record", SERVICE, "institution_record",
          "An institution's facts and its full history (who, when, what, why)", READERS,
          SCOPE_INSTITUTION, call=lambda path, query, body: ([path["institution_id"]], {}),
          tags=("registration",)),
    Route("GET", "/api/public/institutions", SERVICE, "public_disclosure",
          "信息公示: filed institutions and their public facts", (PUBLIC,), SCOPE_NONE,
          query=PUBLIC_FILTERS, call=lambda path, query, body: ([], dict(query)),
          respond=lambda rows, path: {"institutions": rows, "count": len(rows)},
          tags=("public",)),
    Route("GET", "/api/officer/filings-awaiting", SERVICE, "filings_awaiting",
          "Filings awaiting a receipt or a verification, with due dates",
          ("health_officer", "auditor"), SCOPE_FILTER_DISTRICT,
          respond=lambda rows, path: {"filings": rows}, tags=("registration",)),
    Route("GET", "/api/officer/staff-cases", SERVICE, "open_staff_cases",
          "Open staff removal cases (a barred practitioner on a roster)",
          ("health_officer", "auditor"), SCOPE_FILTER_DISTRICT,
          respond=lambda rows, path: {"cases": rows}, tags=("registration",)),
    Route("POST", "/api/imports/filings", SERVICE, "import_filings_csv",
          "Import filed institutions from a provincial CSV (a report of rows imported and "
          "refused)", ("health_officer",), SCOPE_CITY, body="text",
          query=(QueryParam("source", max_length=100),),
          call=lambda path, query, body: ([body, query.get("source") or "provincial-csv"], {}),
          writes=True, max_body_bytes=32 << 20, tags=("registration",)),
    *event_log_routes(SERVICE),
]
