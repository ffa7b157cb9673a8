"""The inspection service's query tables (made by ``migrations/inspection_0002_views.sql``).

Three views, each a tracked consumer whose writes commit with its position:

- ``inspection-views`` (:data:`VIEW`), the service's own log: visits, findings, rectification
  orders, plans, and the public results (公示);
- ``inspection-directory`` (:data:`DIRECTORY_VIEW`), registration's log: the institutions
  (:mod:`tuoyu_shared.directory`), of which a plan's frame is drawn (filed or suspended, not
  deregistered);
- ``inspection-grades`` (:data:`GRADES_VIEW`), credit's log: each institution's grade, which
  weighs how often it is drawn.

A plan records the frame it drew from in its own event, so a view that lags changes nothing
of a draw once made: the draw is reproducible from the plan alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from tuoyu_shared.calendar_cn import shanghai_date
from tuoyu_shared.directory import project_registration
from tuoyu_shared.envelope import Envelope
from tuoyu_shared.views import View, by_event_type

Handler = Callable[[Envelope, psycopg.Cursor], None]


def _visit_scheduled(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    inspectors = sorted(f"{d}:{i}" for d, ids in p["inspectors"].items() for i in ids)
    cur.execute(
        "INSERT INTO inspection_visits (visit_id, institution_id, institution_name, district, "
        "kind, trigger, plan_id, period, departments, inspectors, status, scheduled_on, "
        "version) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,'scheduled',%s,%s) "
        "ON CONFLICT (visit_id) DO NOTHING",
        (env.aggregate_id, p["institution_id"], p["institution_name"], p["district"],
         p["kind"], p["trigger"], p["plan_id"], p["period"], p["departments"], inspectors,
         p["scheduled_on"], env.aggregate_version))


def _visit(env: Envelope, cur: psycopg.Cursor, **columns: object) -> None:
    sets = "".join(f", {name} = %s" for name in columns)
    cur.execute(f"UPDATE inspection_visits SET version = %s{sets} WHERE visit_id = %s",
                (env.aggregate_version, *columns.values(), env.aggregate_id))


def _finding(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute(
        "INSERT INTO inspection_findings (visit_id, finding_id, institution_id, district, "
        "item, area, severity, department, recorded_on) "
        "SELECT %s, %s, %s, v.district, %s, %s, %s, %s, %s FROM inspection_visits v "
        "WHERE v.visit_id = %s ON CONFLICT DO NOTHING",
        (env.aggregate_id, p["finding_id"], p["institution_id"], p["item"],
         p["item"].split(".")[0], p["severity"], _department_of(env), env.occurred_at[:10],
         env.aggregate_id))
    cur.execute("UPDATE inspection_visits SET version = %s, findings = findings + 1 "
                "WHERE visit_id = %s", (env.aggregate_version, env.aggregate_id))


def _department_of(env: Envelope) -> str:
    # The finding's department is not in its (v1) payload: it is the recorder's (the
    # envelope's department, from their token).
    return env.department


def _ordered(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute(
        "INSERT INTO inspection_orders (order_id, visit_id, institution_id, institution_name, "
        "district, finding_id, item, severity, department, ordered_on, due_on, state) "
        "SELECT %s, v.visit_id, v.institution_id, v.institution_name, v.district, %s, %s, %s, "
        "COALESCE(f.department, ''), %s, %s, 'ordered' FROM inspection_visits v "
        "LEFT JOIN inspection_findings f ON f.visit_id = v.visit_id AND f.finding_id = %s "
        "WHERE v.visit_id = %s ON CONFLICT DO NOTHING",
        (p["order_id"], p["finding_id"], p["item"], p["severity"], p["ordered_on"],
         p["due_on"], p["finding_id"], env.aggregate_id))
    _visit(env, cur)


def _order(env: Envelope, cur: psycopg.Cursor, **columns: object) -> None:
    sets = ", ".join(f"{name} = %s" for name in columns)
    cur.execute(f"UPDATE inspection_orders SET {sets} WHERE order_id = %s",
                (*columns.values(), env.payload["order_id"]))
    _visit(env, cur)


def _reinspected(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    if p["accepted"]:
        _order(env, cur, state="accepted", closed_on=p["reinspected_on"])
    else:
        _order(env, cur, state="ordered")


def _escalated(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    if p["due_on"] is not None:
        _order(env, cur, escalation=p["step"], due_on=p["due_on"])
    else:
        _order(env, cur, escalation=p["step"])


def _concluded(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    _visit(env, cur, status="concluded", outcome=p["outcome"], score=p["score"],
           ended_on=p["concluded_on"], publish_by=p["publish_by"])


def _refused(env: Envelope, cur: psycopg.Cursor) -> None:
    # The refusal's date is not in its (v1) payload: it is the day it was recorded, in China.
    on = shanghai_date(datetime.fromisoformat(env.occurred_at))
    _visit(env, cur, status="refused", outcome="refused", ended_on=on)


def _published(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    result = p["result"]
    cur.execute(
        "INSERT INTO inspection_public_results (visit_id, institution_id, institution_name, "
        "district, ended_on, published_on, outcome, score, result) "
        "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (visit_id) DO NOTHING",
        (env.aggregate_id, result["institution_id"], result["institution_name"],
         result["district"], result["ended_on"], p["published_on"], result["outcome"],
         result["score"], Jsonb(result)))
    _visit(env, cur, published_on=p["published_on"])


def _plan_created(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute(
        "INSERT INTO inspection_plans (plan_id, title, period, starts_on, ends_on, departments, "
        "district, status, target_count, planned_on) "
        "VALUES (%s,%s,%s,%s,%s,%s,%s,'created',%s,%s) ON CONFLICT DO NOTHING",
        (env.aggregate_id, p["title"], p["period"], p["starts_on"], p["ends_on"],
         p["departments"], p["district"], p["target_count"], p["planned_on"]))


def _plan(env: Envelope, cur: psycopg.Cursor, **columns: object) -> None:
    sets = ", ".join(f"{name} = %s" for name in columns)
    cur.execute(f"UPDATE inspection_plans SET {sets} WHERE plan_id = %s",
                (*columns.values(), env.aggregate_id))


HANDLERS: dict[str, Handler] = {
    "VisitScheduled": _visit_scheduled,
    "VisitStarted": lambda env, cur: _visit(env, cur, status="in_progress",
                                            started_on=env.payload["started_on"]),
    "InspectionFindingRecorded": _finding,
    "VisitConcluded": _concluded,
    "RectificationOrdered": _ordered,
    "RectificationEvidenceSubmitted": lambda env, cur: _order(env, cur,
                                                              state="evidence_submitted"),
    "RectificationReinspected": _reinspected,
    "RectificationOverdue": lambda env, cur: _order(env, cur, overdue=True,
                                                    overdue_on=env.occurred_at[:10]),
    "RectificationEscalated": _escalated,
    "InspectionRefused": _refused,
    "VisitCancelled": lambda env, cur: _visit(env, cur, status="cancelled"),
    "VisitResultPublished": _published,
    "InspectionPlanCreated": _plan_created,
    "InspectionPlanSeedRecorded": lambda env, cur: _plan(env, cur, status="seeded"),
    "InspectionPlanDrawn": lambda env, cur: _plan(env, cur, status="drawn",
                                                  drawn=len(env.payload["targets"])),
    "InspectionPlanClosed": lambda env, cur: _plan(env, cur, status="closed",
                                                   clean=len(env.payload["clean"])),
}


project = by_event_type(HANDLERS)


def project_grades(env: Envelope, cur: psycopg.Cursor) -> None:
    """An institution's credit grade (and score), from credit's log."""
    p = env.payload
    if env.event_type == "InstitutionCreditOpened":
        grade, score = p["grade"], p["score"]
    elif env.event_type == "InstitutionCreditGradeChanged":
        grade, score = p["new_grade"], None
    elif env.event_type == "InstitutionCreditScoreChanged":
        cur.execute("UPDATE institution_grades SET score = %s, updated_at = now() "
                    "WHERE institution_id = %s", (p["new_score"], p["institution_id"]))
        return
    else:
        return
    cur.execute(
        "INSERT INTO institution_grades (institution_id, grade, score) VALUES (%s, %s, %s) "
        "ON CONFLICT (institution_id) DO UPDATE SET grade = EXCLUDED.grade, "
        "score = COALESCE(EXCLUDED.score, institution_grades.score), updated_at = now()",
        (p["institution_id"], grade, score))


VIEW = View("inspection-views", "inspection",
            ("inspection_visits", "inspection_findings", "inspection_orders",
             "inspection_plans", "inspection_public_results"), project)
DIRECTORY_VIEW = View("inspection-directory", "registration", ("institution_directory",),
                      project_registration)
GRADES_VIEW = View("inspection-grades", "credit", ("institution_grades",), project_grades)
