"""Read models of the dashboard, projected from every service's log.

Each upstream feeds its own view (a tracked consumer: effectively once, in order):

- ``dashboard`` (registration): the directory of institutions (:mod:`tuoyu_shared.directory`),
  ``dash_institution_now`` (each institution's current state) and ``dash_institution_history``
  (appended to: one row per institution per state, valid from the event that made it until
  the next row of the same institution), with what the indicators count (status, places,
  普惠, the latest monthly report's children and health-managed children, staff on the
  roster and those with a certificate) and the event behind it; ``dash_hires`` keeps each
  hire's certificate and state;
- ``dashboard-credit`` (credit): grades over time, listings, practitioner bans;
- ``dashboard-inspection`` (inspection): plans, visits, findings by checklist area, orders;
- ``dashboard-subsidy`` (subsidy): applications, budgets and every movement of them.

Times are the events' own (``occurred_at``, UTC), so a past day's figures are what the
services had recorded by then, however late the dashboard learnt it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from tuoyu_shared.directory import REGISTRATION_HANDLERS, project_registration
from tuoyu_shared.envelope import Envelope, institution_id_of
from tuoyu_shared.views import View, by_event_type

Handler = Callable[[Envelope, psycopg.Cursor], None]

# ---- registration ----------------------------------------------------------------------------
HISTORY_COLUMNS = ("name", "district", "street", "nature", "kind", "status", "places",
                   "affordable", "report_month", "enrolled", "health_managed",
                   "health_reported", "staff", "certified_staff")
_INSERT_COLUMNS = ", ".join(HISTORY_COLUMNS)
_SQL_CACHE: dict[tuple, str] = {}
#: The counts kept for instants after this event are no longer what the history says.
_FORGET = "forgotten AS (DELETE FROM dash_snapshot_instants WHERE at > %(at)s::timestamptz)"
FILED = ("filed", "suspended")


def _history_sql(set_keys: tuple[str, ...], add_keys: tuple[str, ...],
                 exprs: tuple[tuple[str, str], ...] = (), where: str = "",
                 ctes: str = "") -> str:
    """One statement (no answer awaited, so a batch pipelines): the institution's current row
    (``dash_institution_now``) changed in place, when ``where`` holds, with columns set, added
    to or computed (``exprs``, over the row's values before and ``ctes``), and the new state
    appended to its history. The history is only ever appended to: no index entry is
    rewritten to close a row."""
    key = (set_keys, add_keys, exprs, where, ctes)
    found = _SQL_CACHE.get(key)
    if found is None:
        computed = dict(exprs)
        sets = []
        for column in HISTORY_COLUMNS:
            if column in set_keys:
                sets.append(f"{column} = %(set_{column})s")
            elif column in add_keys:
                sets.append(f"{column} = greatest({column} + %(add_{column})s, 0)")
            elif column in computed:
                sets.append(f"{column} = {computed[column]}")
        found = _SQL_CACHE[key] = (
            f"WITH {_FORGET}, {ctes}c AS (UPDATE dash_institution_now "
            f"SET valid_from = greatest(%(at)s::timestamptz, valid_from), {', '.join(sets)}, "
            "notification_id = %(n)s, event_id = %(e)s, event_type = %(t)s, "
            f"revision = revision + 1 WHERE institution_id = %(id)s{where} RETURNING *) "
            f"INSERT INTO dash_institution_history (institution_id, valid_from, "
            f"{_INSERT_COLUMNS}, notification_id, event_id, event_type, revision) "
            f"SELECT institution_id, valid_from, {_INSERT_COLUMNS}, notification_id, event_id, "
            "event_type, revision FROM c")
    return found


def change_institution(env: Envelope, cur: psycopg.Cursor, institution_id: str,
                       set_: dict[str, Any] | None = None,
                       add: dict[str, int] | None = None, *,
                       exprs: tuple[tuple[str, str], ...] = (), where: str = "",
                       ctes: str = "", **params: Any) -> None:
    """The institution's next state, as of the event (``set_``: new values, ``add``: amounts
    added to counters; ``exprs``, ``where``, ``ctes`` and ``params``: SQL of a handler's
    own)."""
    set_ = set_ or {}
    add = {k: v for k, v in (add or {}).items() if v}
    values: dict[str, Any] = {"at": env.occurred_at, "id": institution_id,
                              "n": env.notification_id, "e": env.event_id, "t": env.event_type,
                              **params}
    values.update({f"set_{k}": v for k, v in set_.items()})
    values.update({f"add_{k}": v for k, v in add.items()})
    if not (set_ or add or exprs):
        return
    cur.execute(_history_sql(tuple(sorted(set_)), tuple(sorted(add)), exprs, where, ctes),
                values)


def _registered(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    imported = env.event_type == "InstitutionImported"
    cur.execute(
        f"WITH {_FORGET}, c AS (INSERT INTO dash_institution_now (institution_id, valid_from, "
        f"{_INSERT_COLUMNS}, notification_id, event_id, event_type) VALUES (%(id)s, %(at)s, "
        "%(name)s, %(district)s, %(street)s, %(nature)s, %(kind)s, %(status)s, %(places)s, "
        "false, NULL, 0, 0, 0, 0, 0, %(n)s, %(e)s, %(t)s) ON CONFLICT DO NOTHING RETURNING *) "
        f"INSERT INTO dash_institution_history (institution_id, valid_from, {_INSERT_COLUMNS}, "
        f"notification_id, event_id, event_type) SELECT institution_id, valid_from, "
        f"{_INSERT_COLUMNS}, notification_id, event_id, event_type FROM c",
        {"id": env.aggregate_id, "at": env.occurred_at, "name": p["name"],
         "district": p["district"], "street": p["street"], "nature": p["nature"],
         "kind": p["kind"], "status": "filed" if imported else "registered",
         "places": p["filing"]["total_places"] if imported else 0,
         "n": env.notification_id, "e": env.event_id, "t": env.event_type})


def _status(status: str) -> Handler:
    return lambda env, cur: change_institution(env, cur, env.aggregate_id,
                                               {"status": status})


def _filing_submitted(env: Envelope, cur: psycopg.Cursor) -> None:
    change_institution(env, cur, env.aggregate_id,
                       {"status": "filing_submitted",
                        "places": env.payload["filing"]["total_places"]})


def _change_filed(env: Envelope, cur: psycopg.Cursor) -> None:
    changes = env.payload["changes"]
    set_ = {k: changes[k] for k in ("name", "district", "street") if k in changes}
    if "total_places" in changes:
        set_["places"] = changes["total_places"]
    change_institution(env, cur, env.aggregate_id, set_)


def _health(figures: dict[str, Any]) -> dict[str, int]:
    """健康管理: the children managed, and the children of a report that states it (a report
    of before the figure existed states nothing: none of its children count either way)."""
    managed = figures.get("health_managed_children")
    return {"health_managed": int(managed or 0),
            "health_reported": int(figures.get("children") or 0) if managed is not None else 0}


def _report(env: Envelope, cur: psycopg.Cursor) -> None:
    """A month reported or corrected: it is the latest report unless a later month is in."""
    p = env.payload
    change_institution(env, cur, institution_id_of(env), {
        "report_month": p["month"], "enrolled": int(p["children"]),
        **_health(p)},
        where=" AND (report_month IS NULL OR report_month <= %(month)s)", month=p["month"])


def _reports_carried_over(env: Envelope, cur: psycopg.Cursor) -> None:
    months = env.payload.get("months") or {}
    if not months:
        return
    month = max(months)
    figures = months[month]
    change_institution(env, cur, institution_id_of(env), {
        "report_month": month, "enrolled": int(figures.get("children") or 0),
        **_health(figures)})


def _hire_requested(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("INSERT INTO dash_hires (institution_id, hire_id, certified, state) "
                "VALUES (%s, %s, %s, 'pending') ON CONFLICT (institution_id, hire_id) DO UPDATE "
                "SET certified = EXCLUDED.certified, state = 'pending'",
                (institution_id_of(env), p["hire_id"], bool(p.get("certificates"))))


def _hire_moved(state: str, staff: int) -> Handler:
    """A hire on the roster (``staff`` +1), off it (-1) or refused (0): the hire's state and,
    once per move, the institution's staff counts, in one statement."""
    moved = ("moved AS (UPDATE dash_hires SET state = %(state)s WHERE institution_id = %(id)s "
             "AND hire_id = %(hire)s AND state <> %(state)s RETURNING certified), ")

    def handle(env: Envelope, cur: psycopg.Cursor) -> None:
        institution_id = institution_id_of(env)
        if not staff:
            cur.execute("UPDATE dash_hires SET state = %s WHERE institution_id = %s "
                        "AND hire_id = %s", (state, institution_id, env.payload["hire_id"]))
            return
        change_institution(
            env, cur, institution_id, ctes=moved, where=" AND EXISTS (SELECT 1 FROM moved)",
            exprs=(("staff", "greatest(staff + %(delta)s, 0)"),
                   ("certified_staff", "greatest(certified_staff + CASE WHEN (SELECT "
                                       "certified FROM moved) THEN %(delta)s ELSE 0 END, 0)")),
            state=state, hire=env.payload["hire_id"], delta=staff)
    return handle


def _roster_carried_over(env: Envelope, cur: psycopg.Cursor) -> None:
    """The roster the institution's own stream kept, taken over by the roster's stream: its
    hires as they stood (the counts are the institution's already, from the v1 events)."""
    institution_id = institution_id_of(env)
    for hire_id, entry in (env.payload.get("roster") or {}).items():
        state = {"employed": "hired"}.get(entry.get("status"), entry.get("status") or "pending")
        cur.execute("INSERT INTO dash_hires (institution_id, hire_id, certified, state) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (institution_id, hire_id) DO NOTHING",
                    (institution_id, hire_id, bool(entry.get("certificates")), state))


def _affordable(value: bool) -> Handler:
    return lambda env, cur: change_institution(env, cur, env.aggregate_id,
                                               {"affordable": value})


HISTORY_HANDLERS: dict[str, Handler] = {
    "InstitutionRegistered": _registered,
    "InstitutionImported": _registered,
    "InstitutionFilingSubmitted": _filing_submitted,
    "InstitutionFiled": _status("filed"),
    "InstitutionChangeFiled": _change_filed,
    "InstitutionSuspendedForRectification": _status("suspended"),
    "InstitutionResumed": _status("filed"),
    "InstitutionDeregistered": _status("deregistered"),
    "InstitutionAffordableDesignated": _affordable(True),
    "InstitutionAffordableDesignationWithdrawn": _affordable(False),
    "InstitutionEnrolmentReported": _report,
    "InstitutionEnrolmentReportCorrected": _report,
    "EnrolmentReportsCarriedOver": _reports_carried_over,
    "InstitutionPractitionerHireRequested": _hire_requested,
    "InstitutionPractitionerHired": _hire_moved("hired", +1),
    "InstitutionPractitionerHireRefused": _hire_moved("refused", 0),
    "InstitutionPractitionerReleased": _hire_moved("released", -1),
    "RosterCarriedOver": _roster_carried_over,
}


def project_registration_indicators(env: Envelope, cur: psycopg.Cursor) -> None:
    """The directory and the institutions' history, from one registration event."""
    project_registration(env, cur)
    handler = HISTORY_HANDLERS.get(env.event_type)
    if handler is not None:
        handler(env, cur)


# ---- credit ----------------------------------------------------------------------------------
def _credit_change(env: Envelope, cur: psycopg.Cursor, grade: str | None,
                   score: int | None) -> None:
    institution_id = env.payload.get("institution_id") or env.aggregate_id
    cur.execute(
        "WITH c AS (UPDATE dash_credit_history SET valid_to = greatest(%(at)s::timestamptz, "
        "valid_from) WHERE institution_id = %(id)s AND valid_to IS NULL RETURNING *) "
        "INSERT INTO dash_credit_history (institution_id, valid_from, grade, score, "
        "notification_id, event_id, event_type) "
        "SELECT %(id)s, coalesce((SELECT valid_to FROM c), %(at)s::timestamptz), "
        "coalesce(%(grade)s, (SELECT grade FROM c)), coalesce(%(score)s, (SELECT score FROM c)), "
        "%(n)s, %(e)s, %(t)s WHERE %(grade)s::text IS NOT NULL OR EXISTS (SELECT 1 FROM c)",
        {"at": env.occurred_at, "id": institution_id, "grade": grade, "score": score,
         "n": env.notification_id, "e": env.event_id, "t": env.event_type})


def _listing_decided(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    if p["decision"] != "listed":
        return
    cur.execute("INSERT INTO dash_listings (listing_id, institution_id, list_name, listed_at, "
                "term_start, term_end, notification_id, event_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (p["listing_id"], p["institution_id"], p["list_name"], env.occurred_at,
                 p.get("term_start"), p.get("term_end"), env.notification_id, env.event_id))


def _listing_ended(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    if env.event_type == "InstitutionCreditRepairReviewed" and not p.get("approved"):
        return
    cur.execute("UPDATE dash_listings SET ended_at = %s WHERE listing_id = %s "
                "AND ended_at IS NULL", (env.occurred_at, p["listing_id"]))


def _ban_imposed(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("INSERT INTO dash_bans (ban_ref, person_ref, imposed_at, ends_on, "
                "notification_id, event_id) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (p["ban_ref"], p["person_ref"], env.occurred_at, p.get("ends_on"),
                 env.notification_id, env.event_id))


CREDIT_HANDLERS: dict[str, Handler] = {
    "InstitutionCreditOpened": lambda env, cur: _credit_change(
        env, cur, env.payload["grade"], env.payload.get("score")),
    "InstitutionCreditGradeChanged": lambda env, cur: _credit_change(
        env, cur, env.payload["new_grade"], None),
    "InstitutionCreditScoreChanged": lambda env, cur: _credit_change(
        env, cur, None, env.payload.get("new_score")),
    "InstitutionCreditListingDecided": _listing_decided,
    "InstitutionCreditListingExpired": _listing_ended,
    "InstitutionCreditListingRemovedEarly": _listing_ended,
    "InstitutionCreditListingEndedByDishonesty": _listing_ended,
    "InstitutionCreditRepairReviewed": _listing_ended,
    "PractitionerBanImposed": _ban_imposed,
    "PractitionerBanLifted": lambda env, cur: cur.execute(
        "UPDATE dash_bans SET lifted_at = %s WHERE ban_ref = %s AND lifted_at IS NULL",
        (env.occurred_at, env.payload["ban_ref"])),
}


project_credit = by_event_type(CREDIT_HANDLERS)


# ---- inspection ------------------------------------------------------------------------------
def _plan_created(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("INSERT INTO dash_plans (plan_id, title, district, period, target_count, "
                "created_at, notification_id) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (env.aggregate_id, p["title"], p.get("district"), p["period"],
                 p["target_count"], env.occurred_at, env.notification_id))


def _visit_scheduled(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    areas = {}
    item_areas = {}
    for area in (p.get("checklist") or {}).get("areas") or []:
        areas[area["code"]] = area.get("name") or area["code"]
        for item in area.get("items") or []:
            item_areas[item["code"]] = area["code"]
    for code, title in areas.items():
        cur.execute("INSERT INTO dash_checklist_areas (area, title) VALUES (%s, %s) "
                    "ON CONFLICT (area) DO UPDATE SET title = EXCLUDED.title", (code, title))
    cur.execute("INSERT INTO dash_visits (visit_id, institution_id, district, plan_id, kind, "
                "item_areas, scheduled_at, notification_id, event_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (env.aggregate_id, p["institution_id"], p["district"], p.get("plan_id"),
                 p["kind"], psycopg.types.json.Jsonb(item_areas), env.occurred_at,
                 env.notification_id, env.event_id))


def _visit_column(column: str, value: Callable[[Envelope], Any] | None = None) -> Handler:
    def handle(env: Envelope, cur: psycopg.Cursor) -> None:
        extra = ", outcome = %s" if value is not None else ""
        params = [env.occurred_at] + ([value(env)] if value is not None else [])
        cur.execute(f"UPDATE dash_visits SET {column} = %s{extra} WHERE visit_id = %s",
                    (*params, env.aggregate_id))
    return handle


def _finding(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute(
        "INSERT INTO dash_findings (finding_id, visit_id, institution_id, district, area, "
        "severity, recorded_at, notification_id, event_id) "
        "SELECT %s, v.visit_id, v.institution_id, v.district, "
        "coalesce(v.item_areas ->> %s, 'unknown'), %s, %s, %s, %s FROM dash_visits v "
        "WHERE v.visit_id = %s ON CONFLICT DO NOTHING",
        (p["finding_id"], p.get("item"), p["severity"], env.occurred_at, env.notification_id,
         env.event_id, p["visit_id"]))


def _ordered(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute(
        "INSERT INTO dash_rectifications (order_id, visit_id, institution_id, district, "
        "severity, due_on, ordered_at, notification_id, event_id) "
        "SELECT %s, v.visit_id, v.institution_id, v.district, %s, %s, %s, %s, %s "
        "FROM dash_visits v WHERE v.visit_id = %s ON CONFLICT DO NOTHING",
        (p["order_id"], p["severity"], p["due_on"], env.occurred_at, env.notification_id,
         env.event_id, p["visit_id"]))


def _reinspected(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    if not p.get("accepted"):
        return
    cur.execute("UPDATE dash_rectifications SET corrected_on = %s, corrected_at = %s "
                "WHERE visit_id = %s AND order_id = %s AND corrected_at IS NULL",
                (p["reinspected_on"], env.occurred_at, env.aggregate_id, p["order_id"]))


INSPECTION_HANDLERS: dict[str, Handler] = {
    "InspectionPlanCreated": _plan_created,
    "InspectionPlanDrawn": lambda env, cur: cur.execute(
        "UPDATE dash_plans SET drawn_at = %s, drawn = %s WHERE plan_id = %s",
        (env.occurred_at, len(env.payload.get("targets") or []), env.aggregate_id)),
    "InspectionPlanClosed": lambda env, cur: cur.execute(
        "UPDATE dash_plans SET closed_at = %s WHERE plan_id = %s",
        (env.occurred_at, env.aggregate_id)),
    "VisitScheduled": _visit_scheduled,
    "VisitConcluded": _visit_column("concluded_at", lambda env: env.payload["outcome"]),
    "InspectionRefused": _visit_column("refused_at"),
    "VisitCancelled": _visit_column("cancelled_at"),
    "InspectionFindingRecorded": _finding,
    "RectificationOrdered": _ordered,
    "RectificationReinspected": _reinspected,
}


project_inspection = by_event_type(INSPECTION_HANDLERS)


# ---- subsidy ---------------------------------------------------------------------------------
def _drafted(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("INSERT INTO dash_subsidy_applications (application_id, institution_id, "
                "district, program, kind, year, drafted_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (env.aggregate_id, p["institution_id"], p["district"], p["program"], p["kind"],
                 p["year"], env.occurred_at))


def _budget_opened(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("INSERT INTO dash_budgets (budget_id, year, fund, opened_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (env.aggregate_id, p["year"], p["fund"], env.occurred_at))
    _entry("allocated")(env, cur)


def _entry(kind: str) -> Handler:
    def handle(env: Envelope, cur: psycopg.Cursor) -> None:
        p = env.payload
        amount = p["allocated_fen"] if kind == "allocated" else p["amount_fen"]
        cur.execute("INSERT INTO dash_budget_entries (notification_id, budget_id, kind, "
                    "application_id, amount_fen, at, event_id) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (env.notification_id, env.aggregate_id, kind, p.get("application_id"),
                     amount, env.occurred_at, env.event_id))
    return handle


SUBSIDY_HANDLERS: dict[str, Handler] = {
    "SubsidyApplicationDrafted": _drafted,
    "BudgetOpened": _budget_opened,
    "BudgetAllocated": _entry("allocated"),
    "BudgetReserved": _entry("reserved"),
    "BudgetReleased": _entry("released"),
    "BudgetCommitted": _entry("committed"),
    "BudgetReturned": _entry("returned"),
}


project_subsidy = by_event_type(SUBSIDY_HANDLERS)


# ---- the views -------------------------------------------------------------------------------
#: What registration's log is projected into (a rebuild reproduces it row by row) ...
REGISTRATION_TABLES = ("institution_directory", "dash_institution_now", "dash_institution_history",
                       "dash_hires")
#: ... and the counts at past instants kept from it (emptied with it, computed again).
KEPT_COUNTS = ("dash_area_snapshots", "dash_snapshot_instants")
#: The directory and the institutions' history, projected from registration's log.
REGISTRATION_VIEW = View("dashboard", "registration", REGISTRATION_TABLES + KEPT_COUNTS,
                         project_registration_indicators)
CREDIT_VIEW = View("dashboard-credit", "credit",
                   ("dash_credit_history", "dash_listings", "dash_bans"), project_credit)
INSPECTION_VIEW = View("dashboard-inspection", "inspection",
                       ("dash_plans", "dash_visits", "dash_checklist_areas", "dash_findings",
                        "dash_rectifications"), project_inspection)
SUBSIDY_VIEW = View("dashboard-subsidy", "subsidy",
                    ("dash_subsidy_applications", "dash_budgets", "dash_budget_entries"),
                    project_subsidy)
VIEWS = (REGISTRATION_VIEW, CREDIT_VIEW, INSPECTION_VIEW, SUBSIDY_VIEW)

__all__ = ["CREDIT_VIEW", "INSPECTION_VIEW", "REGISTRATION_HANDLERS", "REGISTRATION_VIEW",
           "SUBSIDY_VIEW", "VIEWS", "list_institutions", "project_registration_indicators"]


def list_institutions(conn: psycopg.Connection, district: str | None = None,
                      limit: int = 100, offset: int = 0) -> list[dict]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "SELECT institution_id::text, name, credit_code, nature, kind, district, street, "
            "address, places, status, registered_at, version "
            "FROM institution_directory WHERE (%s::text IS NULL OR district = %s) "
            "ORDER BY registered_at, name LIMIT %s OFFSET %s",
            (district, district, limit, offset))
        return cur.fetchall()
