"""Subsidy's public HTTP surface, served by the gateway (:mod:`tuoyu_shared.routes`): finance
officers pay, health officers review, operators apply for their own institution only."""

from __future__ import annotations

from typing import Any

from tuoyu_shared.auth import OFFICER_ROLES
from tuoyu_shared.routes import (
    SCOPE_CITY,
    SCOPE_FILTER_DISTRICT,
    SCOPE_INSTITUTION,
    SCOPE_NONE,
    QueryParam,
    Route,
    event_log_routes,
)
from tuoyu_subsidy import commands

SERVICE = "subsidy"
#: Children's resident ID numbers: the gateway's /api/people/… routes call this service too.
PERSONAL_DATA = True
HEALTH, FINANCE = ("health_officer",), ("finance_officer",)
READERS = (*OFFICER_ROLES, "auditor", "district_leader")
APPLICATION = "/api/institutions/{institution_id}/subsidy-applications/{application_id}"
TAGS = ("subsidy",)
PAGING = (QueryParam("limit", "integer", minimum=1, maximum=1000),
          QueryParam("offset", "integer", minimum=0))


def _q(query: dict[str, Any], *names: str) -> dict[str, Any]:
    return {n: query[n] for n in (*names, "limit", "offset") if query.get(n) is not None}


def _step(path: str, rpc: str, summary: str, body: Any, allow: tuple[str, ...]) -> Route:
    """A step on an application named by its institution (the gateway checks the district;
    an operator only their own)."""
    return Route("POST", APPLICATION + path, SERVICE, rpc, summary, allow, SCOPE_INSTITUTION,
                 body=body,
                 call=lambda p, q, b: ([p["institution_id"], p["application_id"], b], {}),
                 writes=True,
                 tags=TAGS)


ROUTES: list[Route] = [
    Route("GET", "/api/subsidy/programs", SERVICE, "programs",
          "Subsidy programs and their versions (rates, funds, months, notice, rules)",
          (*READERS, "operator"), respond=lambda rows, path: {"programs": rows}, tags=TAGS),
    Route("POST", "/api/subsidy/programs", SERVICE, "publish_program",
          "Publish a program's version for a year", (*HEALTH, *FINANCE), SCOPE_CITY,
          body=commands.PublishProgram, call=lambda p, q, b: ([b], {}), status=201,
          writes=True, tags=TAGS),
    Route("GET", "/api/subsidy/budgets", SERVICE, "budgets",
          "Budgets by year and fund (allocated, reserved, paid, free) and by program",
          (*READERS,), query=(QueryParam("year", "integer", minimum=2000, maximum=2100),),
          call=lambda p, q, b: ([], {"year": q.get("year")}),
          respond=lambda rows, path: {"budgets": rows}, tags=TAGS),
    Route("POST", "/api/subsidy/budgets", SERVICE, "open_budget",
          "Open a year's budget of a fund source", FINANCE, SCOPE_CITY,
          body=commands.OpenBudget, call=lambda p, q, b: ([b], {}), status=201, writes=True,
          tags=TAGS),
    Route("POST", "/api/subsidy/budgets/allocation", SERVICE, "allocate_budget",
          "Change a budget's allocation (追加 or a cut, never below what is reserved and paid)",
          FINANCE, SCOPE_CITY, body=commands.AllocateBudget, call=lambda p, q, b: ([b], {}),
          writes=True, tags=TAGS),
    Route("GET", "/api/institutions/{institution_id}/subsidy-standing", SERVICE, "standing",
          "What the subsidy service judges the institution on (status, 普惠, levels, "
          "enrolment by month, grade, listings)", (*READERS, "operator"), SCOPE_INSTITUTION,
          call=lambda p, q, b: ([p["institution_id"]], {}), tags=TAGS),
    Route("POST", "/api/institutions/{institution_id}/subsidy-applications", SERVICE,
          "draft_application", "Draft an application (children by resident ID number, "
          "sealed at once)", (*HEALTH, "operator"), SCOPE_INSTITUTION,
          body=commands.DraftApplication, call=lambda p, q, b: ([p["institution_id"], b], {}),
          status=201, writes=True, tags=TAGS),
    Route("GET", "/api/institutions/{institution_id}/subsidy-applications", SERVICE,
          "applications", "The institution's applications", (*READERS, "operator"),
          SCOPE_INSTITUTION, query=PAGING,
          call=lambda p, q, b: ([{"institution_id": p["institution_id"], **_q(q)}], {}),
          respond=lambda rows, path: {"applications": rows}, tags=TAGS),
    Route("GET", APPLICATION, SERVICE, "application",
          "An application: lines with amounts or refusals (rule and fact), notice, payments, "
          "clawbacks, appeals, history", (*READERS, "operator"), SCOPE_INSTITUTION,
          call=lambda p, q, b: ([p["institution_id"], p["application_id"]], {}), tags=TAGS),
    Route("POST", APPLICATION + "/submission", SERVICE, "submit_application",
          "Submit: the automatic eligibility check", (*HEALTH, "operator"), SCOPE_INSTITUTION,
          body=commands.SubmitApplication,
          call=lambda p, q, b: ([p["institution_id"], p["application_id"], b], {}),
          writes=True, tags=TAGS),
    _step("/review", "review_application",
          "Review: approve (the budget reserved, the public notice opened) or reject with "
          "reasons", commands.ReviewApplication, HEALTH),
    _step("/objections", "record_objection", "An objection during the public notice (公示异议)",
          commands.RecordObjection, (*HEALTH, *FINANCE)),
    _step("/objections/decision", "decide_objection",
          "Decide an objection (upheld: the application rejected)", commands.DecideObjection,
          HEALTH),
    _step("/clawback", "claw_back", "追回 an amount paid (fraud is published for credit)",
          commands.ClawBack, (*HEALTH, *FINANCE)),
    Route("POST", APPLICATION + "/appeals", SERVICE, "file_appeal",
          "复核: appeal against the rejection or a clawback", (*HEALTH, "operator"),
          SCOPE_INSTITUTION, body=commands.FileAppeal,
          call=lambda p, q, b: ([p["institution_id"], p["application_id"], b], {}),
          status=201, writes=True, tags=TAGS),
    _step("/appeals/decision", "decide_appeal", "Decide an appeal", commands.DecideAppeal,
          (*HEALTH, *FINANCE)),
    Route("GET", "/api/subsidy/applications", SERVICE, "applications",
          "Applications by state, with their deadlines", READERS, SCOPE_FILTER_DISTRICT,
          query=(QueryParam("state", enum=tuple(commands.STATES)),
                 QueryParam("program", max_length=60), QueryParam("district", max_length=50),
                 *PAGING),
          call=lambda p, q, b: ([_q(q, "state", "program", "district")], {}),
          respond=lambda rows, path: {"applications": rows, "count": len(rows)}, tags=TAGS),
    Route("GET", "/api/subsidy/ledger", SERVICE, "ledger",
          "Money per institution, program or child ref (approved, paid, clawed back)",
          (*HEALTH, *FINANCE, "auditor"), SCOPE_CITY,
          query=(QueryParam("institution_id", max_length=36),
                 QueryParam("program", max_length=60), QueryParam("child_ref", max_length=32),
                 QueryParam("year", "integer", minimum=2000, maximum=2100), *PAGING),
          call=lambda p, q, b: ([_q(q, "institution_id", "program", "child_ref", "year")], {}),
          respond=lambda rows, path: {"entries": rows}, tags=TAGS),
    Route("POST", "/api/subsidy/batches", SERVICE, "create_batch",
          "Gather the payable applications into a payment batch of a cycle", FINANCE,
          SCOPE_CITY, body=commands.CreateBatch, call=lambda p, q, b: ([b], {}), status=201,
          writes=True, tags=TAGS),
    Route("GET", "/api/subsidy/batches", SERVICE, "batches", "Payment batches and their results",
          (*FINANCE, *HEALTH, "auditor"), SCOPE_NONE,
          query=(QueryParam("cycle", max_length=7),),
          call=lambda p, q, b: ([], {"cycle": q.get("cycle")}),
          respond=lambda rows, path: {"batches": rows}, tags=TAGS),
    Route("GET", "/api/subsidy/batches/{batch_id}", SERVICE, "payment_batch",
          "A payment batch: lines and results", (*FINANCE, *HEALTH, "auditor"),
          call=lambda p, q, b: ([p["batch_id"]], {}), tags=TAGS),
    Route("POST", "/api/subsidy/batches/{batch_id}/export", SERVICE, "export_batch",
          "The batch's file for the finance system (CSV and JSON, a manifest with totals and "
          "the CSV's SHA-256)", FINANCE, SCOPE_CITY,
          call=lambda p, q, b: ([p["batch_id"]], {}), writes=True, tags=TAGS),
    Route("POST", "/api/subsidy/batches/{batch_id}/results", SERVICE, "import_results",
          "The finance system's results (paid, failed, returned), line by line", FINANCE,
          SCOPE_CITY, body=commands.ImportResults,
          call=lambda p, q, b: ([p["batch_id"], b], {}), writes=True,
          max_body_bytes=8 << 20, tags=TAGS),
    Route("POST", "/api/timers/subsidy-daily", SERVICE, "daily",
          "Run the daily timer by hand: notices over become payable", (*HEALTH, *FINANCE),
          SCOPE_CITY, writes=True, tags=TAGS),
    *event_log_routes(SERVICE),
]
