"""Credit's public HTTP surface, served by the gateway (:mod:`tuoyu_shared.routes`): the
paths the service served itself before the gateway."""

from __future__ import annotations

from typing import Any

from tuoyu_credit import commands
from tuoyu_credit.application import LISTING_STEPS
from tuoyu_shared.auth import OFFICER_ROLES
from tuoyu_shared.routes import (
    SCOPE_CITY,
    SCOPE_INSTITUTION,
    SCOPE_NONE,
    QueryParam,
    Route,
    event_log_routes,
)

SERVICE = "credit"
#: This service holds personal data: the gateway's /api/people/… routes call it too.
PERSONAL_DATA = True
CREDIT = ("credit_officer",)
#: Steps an institution takes itself: its answer to a listing notice, a repair application.
OPERATOR_STEPS = ("respond", "apply-repair")


def _listing_step(step: str, method: str) -> Route:
    def respond(result: Any, path: dict[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = {"institution_id": path["institution_id"],
                                "list_name": path["list_name"], "step": step}
        if result is not None:
            body["result"] = result
        return body

    allow = (*CREDIT, "operator") if step in OPERATOR_STEPS else CREDIT
    return Route("POST", f"/api/institutions/{{institution_id}}/listings/{{list_name}}/{step}",
                 SERVICE, method, f"Listing procedure: {step}", allow, SCOPE_INSTITUTION,
                 body=commands.COMMANDS[method],
                 call=lambda path, query, body: (
                     [path["institution_id"], path["list_name"], body], {}),
                 respond=respond, status=201 if step == "propose" else 200, writes=True,
                 tags=("credit",))


PAGING = (QueryParam("limit", "integer", minimum=1, maximum=1000),
          QueryParam("offset", "integer", minimum=0))

ROUTES: list[Route] = [
    Route("POST", "/api/practitioners", SERVICE, "register_practitioner",
          "Register a practitioner (从业人员) by ID number (201; 200 if known already)", CREDIT,
          body=commands.RegisterPractitioner, call=lambda path, query, body: ([body], {}),
          status=lambda result: 201 if result.get("created") else 200, writes=True,
          tags=("credit",)),
    Route("POST", "/api/practitioners/{person_ref}/bans", SERVICE, "impose_ban",
          "从业禁止: impose a ban, with its legal basis", CREDIT, body=commands.ImposeBan,
          call=lambda path, query, body: ([path["person_ref"], body], {}),
          respond=lambda ban_ref, path: {"person_ref": path["person_ref"], "ban_ref": ban_ref},
          status=201, writes=True, tags=("credit",)),
    Route("POST", "/api/practitioners/{person_ref}/checks", SERVICE, "request_check",
          "年度复查: the yearly check, barred at once by a ban, else pending for the "
          "public-security inquiry", (*CREDIT, "health_officer"),
          body=commands.RequestCheck,
          call=lambda path, query, body: ([path["person_ref"], body], {}), writes=True,
          tags=("credit",)),
    Route("POST", "/api/practitioners/{person_ref}/checks/retry", SERVICE, "retry_check",
          "Send a flagged background check for the public-security inquiry again", CREDIT,
          body=commands.RetryCheck,
          call=lambda path, query, body: ([path["person_ref"], body], {}), writes=True,
          tags=("credit",)),
    Route("POST", "/api/practitioners/{person_ref}/reads", SERVICE, "practitioner_reads",
          "Who read this practitioner's record, when and why", (*CREDIT, "auditor"),
          body=commands.PractitionerReads,
          call=lambda path, query, body: ([path["person_ref"], body], {}),
          respond=lambda reads, path: {"person_ref": path["person_ref"], "reads": reads},
          tags=("credit",)),
    Route("POST", "/api/practitioner-checks", SERVICE, "check_practitioner",
          "Is this person barred? {barred, ban_reference} and nothing more; the read recorded",
          (*CREDIT, "health_officer"), body=commands.CheckPractitioner,
          call=lambda path, query, body: ([body], {}), tags=("credit",)),
    Route("GET", "/api/institutions/{institution_id}/credit", SERVICE,
          "institution_credit_report", "An institution's credit: grade, score, lists, history",
          (*OFFICER_ROLES, "auditor", "operator"), SCOPE_INSTITUTION,
          call=lambda path, query, body: ([path["institution_id"]], {}), tags=("credit",)),
    Route("POST", "/api/institutions/{institution_id}/credit/causes", SERVICE,
          "record_scoring_cause", "A fact that moves the score, entered by an officer", CREDIT,
          SCOPE_INSTITUTION, body=commands.RecordScoringCause,
          call=lambda path, query, body: ([path["institution_id"], body], {}), writes=True,
          tags=("credit",)),
    *(_listing_step(step, method) for step, method in LISTING_STEPS.items()),
    Route("GET", "/api/credit-register", SERVICE, "credit_register",
          "The credit register: institutions by grade and list",
          (*OFFICER_ROLES, "auditor", "district_leader"), SCOPE_NONE,
          query=(QueryParam("grade", enum=("A", "B", "C", "D")),
                 QueryParam("list", max_length=50), *PAGING),
          call=lambda path, query, body: ([], {
              "grade": query.get("grade"), "list_name": query.get("list"),
              "limit": query.get("limit") or 100, "offset": query.get("offset") or 0}),
          respond=lambda rows, path: {"institutions": rows, "count": len(rows)},
          tags=("credit",)),
    Route("GET", "/api/officer/listings-due", SERVICE, "listings_due",
          "Listing procedures with a step due", (*CREDIT, "auditor"),
          respond=lambda rows, path: {"listings": rows}, tags=("credit",)),
    Route("GET", "/api/officer/pending-checks", SERVICE, "pending_checks",
          "Background checks not completed: flagged ones (why), then those awaiting the "
          "public-security inquiry", (*CREDIT, "auditor"),
          respond=lambda rows, path: {"checks": rows}, tags=("credit",)),
    Route("POST", "/api/timers/expire-listings", SERVICE, "expire_listings",
          "Run the daily timer by hand: end the listings whose term is over", CREDIT,
          SCOPE_CITY, writes=True, tags=("credit",)),
    Route("POST", "/api/timers/lift-expired-bans", SERVICE, "lift_expired_bans",
          "Run the daily timer by hand: lift the term bans that have ended", CREDIT,
          SCOPE_CITY, writes=True, tags=("credit",)),
    *event_log_routes(SERVICE),
]
