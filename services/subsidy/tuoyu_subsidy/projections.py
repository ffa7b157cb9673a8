"""The subsidy service's query tables (``migrations/subsidy_0002_views.sql``), projected from
its own log by the view ``subsidy-views``: applications with their states and deadlines, the
ledger of money (approved, paid, clawed back, reversed) per institution, program and child ref,
the budgets, the payment batches and the programs' versions. Decisions are never taken from
these tables (eligibility reads the write side); they serve lists, dashboards and the timer's
first pick."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg.types.json import Jsonb

from tuoyu_shared.envelope import Envelope
from tuoyu_shared.views import View, by_event_type

Handler = Callable[[Envelope, psycopg.Cursor], None]
_DAY = 10  # "YYYY-MM-DD" of an ISO timestamp


def _app(env: Envelope, cur: psycopg.Cursor, **columns: object) -> None:
    sets = "".join(f", {name} = %s" for name in columns)
    cur.execute(f"UPDATE subsidy_applications SET updated_on = %s{sets} "
                "WHERE application_id = %s",
                (env.occurred_at[:_DAY], *columns.values(), env.aggregate_id))


def _ledger(env: Envelope, cur: psycopg.Cursor, entry: str, amount: int,
            child_ref: str | None = None, month: str | None = None) -> None:
    cur.execute(
        "INSERT INTO subsidy_ledger (event_id, entry, application_id, institution_id, program, "
        "year, child_ref, month, amount_fen, recorded_on) SELECT %s, %s, a.application_id, "
        "a.institution_id, a.program, a.year, %s, %s, %s, %s FROM subsidy_applications a "
        "WHERE a.application_id = %s ON CONFLICT DO NOTHING",
        (f"{env.event_id}:{child_ref or ''}:{month or ''}", entry, child_ref, month, amount,
         env.occurred_at[:_DAY], env.aggregate_id))


def _drafted(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute(
        "INSERT INTO subsidy_applications (application_id, institution_id, institution_name, "
        "district, program, kind, year, state, updated_on) "
        "VALUES (%s,%s,%s,%s,%s,%s,%s,'draft',%s) ON CONFLICT DO NOTHING",
        (env.aggregate_id, p["institution_id"], p["institution_name"], p["district"],
         p["program"], p["kind"], p["year"], p["drafted_on"]))


def _assessed(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    _app(env, cur, state="under_review" if p["eligible"] else "ineligible",
         amount_fen=p["amount_fen"], submitted_on=p["submitted_on"])


def _reviewed(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    if p["approved"]:
        _app(env, cur, state="in_notice", notice_until=p["notice_until"])
        cur.execute("SELECT amount_fen FROM subsidy_applications WHERE application_id = %s",
                    (env.aggregate_id,))
        row = cur.fetchone()
        _ledger(env, cur, "approved", row[0] if row else 0)
    else:
        _app(env, cur, state="rejected")


def _objection_decided(env: Envelope, cur: psycopg.Cursor) -> None:
    if env.payload["upheld"]:
        _app(env, cur, state="rejected")
        _ledger(env, cur, "rejected_after_notice", 0)
    else:
        _app(env, cur)


def _payment(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    if p["status"] == "paid":
        _app(env, cur, state="paid", paid_fen=p["amount_fen"])
        _ledger(env, cur, "paid", p["amount_fen"])
        cur.execute("UPDATE subsidy_child_claims SET paid = true WHERE application_id = %s",
                    (env.aggregate_id,))
        cur.execute(
            "INSERT INTO subsidy_ledger (event_id, entry, application_id, institution_id, "
            "program, year, child_ref, month, amount_fen, recorded_on) "
            "SELECT %s || ':' || c.child_ref || ':' || c.month, 'paid_child', a.application_id, "
            "a.institution_id, a.program, a.year, c.child_ref, c.month, c.amount_fen, %s "
            "FROM subsidy_child_claims c JOIN subsidy_applications a USING (application_id) "
            "WHERE c.application_id = %s ON CONFLICT DO NOTHING",
            (env.event_id, env.occurred_at[:_DAY], env.aggregate_id))
    else:
        _app(env, cur, state="payable")
        _ledger(env, cur, f"payment_{p['status']}", 0)


def _assessed_children(env: Envelope, cur: psycopg.Cursor) -> None:
    for line in env.payload["lines"]:
        if "child_ref" in line and line.get("refusal") is None:
            cur.execute(
                "INSERT INTO subsidy_child_claims (child_ref, month, application_id, "
                "birth_order, amount_fen) VALUES (%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                (line["child_ref"], line["month"], env.aggregate_id, line["birth_order"],
                 line["amount_fen"]))


def _clawed(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("UPDATE subsidy_applications SET clawed_fen = clawed_fen + %s, updated_on = %s "
                "WHERE application_id = %s", (p["amount_fen"], env.occurred_at[:_DAY],
                                              env.aggregate_id))
    _ledger(env, cur, f"clawed_back:{p['reason']}", -p["amount_fen"])


def _appeal_filed(env: Envelope, cur: psycopg.Cursor) -> None:
    _app(env, cur, appeal_decide_by=env.payload["decide_by"])


def _appeal_decided(env: Envelope, cur: psycopg.Cursor) -> None:
    _app(env, cur, appeal_decide_by=None)


def _budget(env: Envelope, cur: psycopg.Cursor, reserved: int = 0, paid: int = 0) -> None:
    cur.execute("UPDATE subsidy_budgets SET reserved_fen = reserved_fen + %s, "
                "paid_fen = paid_fen + %s WHERE budget_id = %s",
                (reserved, paid, env.aggregate_id))


def _budget_opened(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("INSERT INTO subsidy_budgets (budget_id, year, fund, allocated_fen) "
                "VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                (env.aggregate_id, p["year"], p["fund"], p["allocated_fen"]))


def _batch_created(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("INSERT INTO subsidy_batches (batch_id, cycle, total_fen, lines, created_on) "
                "VALUES (%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                (env.aggregate_id, p["cycle"], p["total_fen"], len(p["lines"]),
                 p["created_on"]))


def _batch_result(env: Envelope, cur: psycopg.Cursor) -> None:
    column = "paid" if env.payload["status"] == "paid" else "failed"
    cur.execute(f"UPDATE subsidy_batches SET {column} = {column} + 1 WHERE batch_id = %s",
                (env.aggregate_id,))


def _program_version(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("INSERT INTO subsidy_programs (code, kind, title, year, version, terms) "
                "SELECT %s, kind, title, %s, %s, %s FROM subsidy_program_names WHERE code = %s "
                "ON CONFLICT DO NOTHING",
                (p["code"], p["year"], p["version"], Jsonb(p["terms"]), p["code"]))


HANDLERS: dict[str, Handler] = {
    "SubsidyApplicationDrafted": _drafted,
    "SubsidyApplicationAssessed": lambda env, cur: (_assessed(env, cur),
                                                    _assessed_children(env, cur)),
    "SubsidyApplicationReviewed": _reviewed,
    "SubsidyObjectionDecided": _objection_decided,
    "SubsidyNoticeClosed": lambda env, cur: _app(env, cur, state="payable"),
    "SubsidyAddedToBatch": lambda env, cur: _app(env, cur, state="in_batch"),
    "SubsidyPaymentRecorded": _payment,
    "SubsidyClawedBack": _clawed,
    "SubsidyAppealFiled": _appeal_filed,
    "SubsidyAppealDecided": _appeal_decided,
    "BudgetOpened": _budget_opened,
    "BudgetAllocated": lambda env, cur: cur.execute(
        "UPDATE subsidy_budgets SET allocated_fen = %s WHERE budget_id = %s",
        (env.payload["allocated_fen"], env.aggregate_id)),
    "BudgetReserved": lambda env, cur: _budget(env, cur, reserved=env.payload["amount_fen"]),
    "BudgetReleased": lambda env, cur: _budget(env, cur, reserved=-env.payload["amount_fen"]),
    "BudgetCommitted": lambda env, cur: _budget(env, cur, reserved=-env.payload["amount_fen"],
                                                paid=env.payload["amount_fen"]),
    "BudgetReturned": lambda env, cur: _budget(env, cur, paid=-env.payload["amount_fen"]),
    "PaymentBatchCreated": _batch_created,
    "PaymentBatchResultRecorded": _batch_result,
    "PaymentBatchClosed": lambda env, cur: cur.execute(
        "UPDATE subsidy_batches SET closed = true WHERE batch_id = %s", (env.aggregate_id,)),
    "SubsidyProgramCreated": lambda env, cur: cur.execute(
        "INSERT INTO subsidy_program_names (code, kind, title) VALUES (%s,%s,%s) "
        "ON CONFLICT DO NOTHING",
        (env.payload["code"], env.payload["kind"], env.payload["title"])),
    "SubsidyProgramVersionPublished": _program_version,
}


project = by_event_type(HANDLERS)


VIEW = View("subsidy-views", "subsidy",
            ("subsidy_applications", "subsidy_ledger", "subsidy_child_claims",
             "subsidy_budgets", "subsidy_batches", "subsidy_programs",
             "subsidy_program_names"), project)
