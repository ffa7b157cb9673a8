"""Inspection's public HTTP surface, served by the gateway (:mod:`tuoyu_shared.routes`).

A visit is reached under its institution (``/api/institutions/{institution_id}/visits/…``),
so the gateway checks the caller's district against the institution's and an operator sees
their own institution's only; the service then checks the visit is that institution's, and
that who records, signs or re-inspects is an inspector of the visit from the item's department.
"""

from __future__ import annotations

from typing import Any

from tuoyu_inspection import commands
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

SERVICE = "inspection"
PERSONAL_DATA = False
#: The roles of the departments that inspect (卫生健康, 市场监管, 消防救援, 教育).
INSPECTORS = ("health_officer", "market_officer", "fire_officer", "education_officer")
READERS = (*OFFICER_ROLES, "auditor", "district_leader")
VISIT = "/api/institutions/{institution_id}/visits/{visit_id}"
ORDER = VISIT + "/rectifications/{order_id}"
PAGING = (QueryParam("limit", "integer", minimum=1, maximum=1000),
          QueryParam("offset", "integer", minimum=0))
TAGS = ("inspection",)


def _paged(query: dict[str, Any], *names: str) -> dict[str, Any]:
    data = {name: query[name] for name in names if query.get(name) is not None}
    for name in ("limit", "offset"):
        if query.get(name) is not None:
            data[name] = query[name]
    return data


def _visit_step(path: str, rpc: str, summary: str, body: Any, allow: tuple[str, ...] = INSPECTORS,
                status: int = 200) -> Route:
    return Route("POST", VISIT + path, SERVICE, rpc, summary, allow, SCOPE_INSTITUTION,
                 body=body, call=lambda p, q, b: ([p["institution_id"], p["visit_id"], b], {}),
                 status=status, writes=True, tags=TAGS)


def _order_step(path: str, rpc: str, summary: str, body: Any,
                allow: tuple[str, ...] = INSPECTORS) -> Route:
    return Route("POST", ORDER + path, SERVICE, rpc, summary, allow, SCOPE_INSTITUTION,
                 body=body, call=lambda p, q, b: (
                     [p["institution_id"], p["visit_id"], p["order_id"], b], {}),
                 writes=True, tags=TAGS)


ROUTES: list[Route] = [
    # ---- checklists and rosters --------------------------------------------------------------
    Route("GET", "/api/inspection/checklists/{template_id}", SERVICE, "checklist",
          "A checklist template's version (default: the latest): areas, items, points, the "
          "department that checks each", (*READERS, "operator"),
          query=(QueryParam("version", "integer", minimum=1),),
          call=lambda p, q, b: ([p["template_id"]], {"version": q.get("version")}), tags=TAGS),
    Route("POST", "/api/inspection/checklists", SERVICE, "publish_checklist",
          "Publish a new version of a checklist template (past visits keep theirs)",
          ("health_officer",), SCOPE_CITY, body=commands.PublishChecklist,
          call=lambda p, q, b: ([b], {}), status=201, writes=True, tags=TAGS),
    Route("GET", "/api/inspection/rosters/{department}", SERVICE, "roster",
          "A department's inspectors and their declared conflicts of interest (回避)",
          (*OFFICER_ROLES, "auditor"), call=lambda p, q, b: ([p["department"]], {}),
          tags=TAGS),
    Route("POST", "/api/inspection/inspectors", SERVICE, "enrol_inspector",
          "Put an officer on their department's roster of inspectors", INSPECTORS,
          body=commands.EnrolInspector, call=lambda p, q, b: ([b], {}), writes=True,
          tags=TAGS),
    Route("POST", "/api/inspection/inspectors/withdrawals", SERVICE, "withdraw_inspector",
          "Take an inspector off their department's roster", INSPECTORS,
          body=commands.WithdrawInspector, call=lambda p, q, b: ([b], {}), writes=True,
          tags=TAGS),
    Route("POST", "/api/inspection/conflicts", SERVICE, "declare_conflict",
          "回避: an inspector's conflict of interest with an institution (never drawn for it)",
          INSPECTORS, body=commands.DeclareConflict, call=lambda p, q, b: ([b], {}),
          writes=True, tags=TAGS),
    # ---- plans -------------------------------------------------------------------------------
    Route("POST", "/api/inspection/plans", SERVICE, "create_plan",
          "抽查计划: a random-inspection plan of a period (then its seed, then the draw)",
          INSPECTORS, SCOPE_BODY_DISTRICT, body=commands.CreatePlan,
          call=lambda p, q, b: ([b], {}), status=201, writes=True, tags=TAGS),
    Route("GET", "/api/inspection/plans", SERVICE, "plans", "Inspection plans and their progress",
          READERS, SCOPE_FILTER_DISTRICT,
          query=(QueryParam("district", max_length=50),
                 QueryParam("status", enum=("created", "seeded", "drawn", "closed")), *PAGING),
          call=lambda p, q, b: ([], {"district": q.get("district"), "status": q.get("status"),
                                     "limit": q.get("limit") or 100,
                                     "offset": q.get("offset") or 0}),
          respond=lambda rows, path: {"plans": rows, "count": len(rows)}, tags=TAGS),
    Route("GET", "/api/inspection/plans/{plan_id}", SERVICE, "plan",
          "A plan: its seed, targets and inspectors drawn, and its visits' progress", READERS,
          SCOPE_NONE, call=lambda p, q, b: ([p["plan_id"]], {}), tags=TAGS),
    Route("POST", "/api/inspection/plans/{plan_id}/seed", SERVICE, "record_seed",
          "Record the draw's seed (generated, or given), before the draw", INSPECTORS,
          body=commands.RecordSeed, call=lambda p, q, b: ([p["plan_id"], b], {}),
          writes=True, tags=TAGS),
    Route("POST", "/api/inspection/plans/{plan_id}/draw", SERVICE, "draw_plan",
          "双随机: draw the targets (weighted by credit grade) and their inspectors, and "
          "schedule their visits", INSPECTORS, body=commands.DrawPlan,
          call=lambda p, q, b: ([p["plan_id"], b], {}), writes=True, tags=TAGS),
    Route("GET", "/api/inspection/plans/{plan_id}/verification", SERVICE, "verify_draw",
          "The draw run again from what the plan recorded (seed, frame, rosters)", READERS,
          call=lambda p, q, b: ([p["plan_id"]], {}), tags=TAGS),
    Route("POST", "/api/inspection/plans/{plan_id}/close", SERVICE, "close_plan",
          "Close a plan whose period is over (clean periods recorded)", INSPECTORS,
          body=commands.ClosePlan, call=lambda p, q, b: ([p["plan_id"], b], {}), writes=True,
          tags=TAGS),
    # ---- visits ------------------------------------------------------------------------------
    Route("POST", "/api/institutions/{institution_id}/visits", SERVICE,
          "schedule_targeted_visit",
          "A targeted visit (after a complaint, an incident or a rectification deadline)",
          INSPECTORS, SCOPE_INSTITUTION, body=commands.ScheduleTargetedVisit,
          call=lambda p, q, b: ([p["institution_id"], b], {}), status=201, writes=True,
          tags=TAGS),
    Route("GET", "/api/institutions/{institution_id}/visits", SERVICE, "visits",
          "The institution's visits (an operator: those begun)", (*READERS, "operator"),
          SCOPE_INSTITUTION, query=PAGING,
          call=lambda p, q, b: ([{"institution_id": p["institution_id"],
                                  **_paged(q)}], {}),
          respond=lambda rows, path: {"visits": rows, "count": len(rows)}, tags=TAGS),
    Route("GET", VISIT, SERVICE, "visit",
          "A visit: checklist and results, findings, evidence, sign-offs, orders, history",
          (*READERS, "operator"), SCOPE_INSTITUTION,
          call=lambda p, q, b: ([p["institution_id"], p["visit_id"]], {}), tags=TAGS),
    _visit_step("/results", "record_item_results",
                "Record checklist items' results (the recorder's department's items)",
                commands.RecordItemResults),
    _visit_step("/findings", "record_finding",
                "Record a finding (minor, major, serious, critical)", commands.RecordFinding,
                status=201),
    Route("POST", VISIT + "/evidence", SERVICE, "attach_evidence",
          "Upload evidence (base64; its SHA-256 stated and checked): an inspector's of a "
          "finding, an institution's of its correction", (*INSPECTORS, "operator"),
          SCOPE_INSTITUTION, body=commands.AttachEvidence,
          call=lambda p, q, b: ([p["institution_id"], p["visit_id"], b], {}), status=201,
          writes=True, max_body_bytes=12 << 20, tags=TAGS),
    Route("GET", VISIT + "/evidence/{sha256}", SERVICE, "evidence",
          "An evidence file (base64), verified against its SHA-256",
          (*OFFICER_ROLES, "auditor", "operator"), SCOPE_INSTITUTION,
          call=lambda p, q, b: ([p["institution_id"], p["visit_id"], p["sha256"]], {}),
          tags=TAGS),
    _visit_step("/sign-off", "sign_off",
                "The department's sign-off; the last one concludes the visit", commands.SignOff),
    _visit_step("/refusal", "record_refusal", "拒绝检查: the institution refused the visit",
                commands.RecordRefusal),
    _visit_step("/cancellation", "cancel_visit", "Cancel a visit not begun",
                commands.CancelVisit),
    _visit_step("/publication", "publish_result",
                "公示: publish the visit's result now (else the timer does, by its deadline)",
                commands.PublishResult),
    # ---- rectification -----------------------------------------------------------------------
    _order_step("/submission", "submit_rectification",
                "The institution's correction (整改报告), with evidence it attached",
                commands.SubmitRectification, allow=(*INSPECTORS, "operator")),
    _order_step("/reinspection", "reinspect",
                "复查: accept the correction (the order closes) or not", commands.Reinspect),
    _order_step("/escalation", "escalate",
                "Escalate an overdue order: 约谈, then 警告, then 移送处罚", commands.Escalate),
    # ---- lists and statistics ----------------------------------------------------------------
    Route("GET", "/api/inspection/visits", SERVICE, "visits",
          "Visits by department, district, status, checklist area (with a finding) and period",
          READERS, SCOPE_FILTER_DISTRICT,
          query=(QueryParam("department", enum=commands.DEPARTMENTS),
                 QueryParam("district", max_length=50),
                 QueryParam("status", enum=("scheduled", "in_progress", "concluded",
                                            "refused", "cancelled")),
                 QueryParam("area", max_length=40), QueryParam("since", max_length=10),
                 QueryParam("until", max_length=10), *PAGING),
          call=lambda p, q, b: ([_paged(q, "department", "district", "status", "area",
                                        "since", "until")], {}),
          respond=lambda rows, path: {"visits": rows, "count": len(rows)}, tags=TAGS),
    Route("GET", "/api/inspection/rectifications", SERVICE, "rectifications",
          "Rectification orders: open (by deadline), overdue, accepted, all", READERS,
          SCOPE_FILTER_DISTRICT,
          query=(QueryParam("state", enum=("open", "overdue", "accepted", "all")),
                 QueryParam("district", max_length=50),
                 QueryParam("department", enum=commands.DEPARTMENTS), *PAGING),
          call=lambda p, q, b: ([_paged(q, "state", "district", "department")], {}),
          respond=lambda rows, path: {"rectifications": rows, "count": len(rows)}, tags=TAGS),
    Route("GET", "/api/inspection/workload", SERVICE, "workload",
          "A department's own work: visits to make, orders to re-inspect or overdue, its "
          "plans' progress", INSPECTORS, SCOPE_FILTER_DISTRICT,
          query=(QueryParam("department", enum=commands.DEPARTMENTS),
                 QueryParam("district", max_length=50)),
          call=lambda p, q, b: ([], {"department": q.get("department"),
                                     "district": q.get("district")}), tags=TAGS),
    Route("GET", "/api/inspection/statistics", SERVICE, "statistics",
          "Findings by checklist area and severity; visits by outcome", READERS,
          SCOPE_FILTER_DISTRICT,
          query=(QueryParam("district", max_length=50), QueryParam("since", max_length=10),
                 QueryParam("until", max_length=10)),
          call=lambda p, q, b: ([_paged(q, "district", "since", "until")], {}), tags=TAGS),
    Route("GET", "/api/inspection/institutions", SERVICE, "institutions",
          "The institutions inspection knows, with their credit grade (the draw's frame)",
          READERS, SCOPE_FILTER_DISTRICT,
          query=(QueryParam("district", max_length=50),
                 QueryParam("grade", enum=("A", "B", "C", "D")), *PAGING),
          call=lambda p, q, b: ([_paged(q, "district", "grade")], {}),
          respond=lambda rows, path: {"institutions": rows, "count": len(rows)}, tags=TAGS),
    Route("GET", "/api/public/inspection-results", SERVICE, "public_results",
          "公示: published inspection results (no personal data)", (PUBLIC,),
          query=(QueryParam("district", max_length=50),
                 QueryParam("institution_id", max_length=36), *PAGING),
          call=lambda p, q, b: ([], {"district": q.get("district"),
                                     "institution_id": q.get("institution_id"),
                                     "limit": q.get("limit") or 100,
                                     "offset": q.get("offset") or 0}),
          respond=lambda rows, path: {"results": rows, "count": len(rows)}, tags=TAGS),
    Route("POST", "/api/timers/inspection-daily", SERVICE, "daily",
          "Run the daily timer by hand: overdue orders, due publications, plans to close",
          INSPECTORS, SCOPE_CITY, writes=True, tags=TAGS),
    *event_log_routes(SERVICE),
]
