"""The registration service's own query tables, projected from its own notification log.

- ``public_register``: the public disclosure (信息公示) of filed institutions: public facts only,
  the person in charge by ref (the queries show the mask the vault keeps for them).
- ``filing_deadlines``: filings awaiting a receipt or a verification, with their due dates.
- ``staff_roster``: who works where (by person ref), for the reaction to a ban.
- ``staff_cases``: open and closed removal cases of barred practitioners.

The roster's events (hires, releases, staff-removal cases) name their institution in the
payload since schema version 2, when the roster got a stream of its own; version 1, recorded in
the institution's stream, has it as the aggregate (:func:`tuoyu_shared.envelope.institution_id_of`).

A tracked consumer (:class:`tuoyu_shared.consumer.TrackedConsumer` with ``run_local``) applies
each event with its position in one transaction; the tables can be dropped and rebuilt from the
log at any time (:func:`rebuild`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tuoyu_shared.envelope import Envelope, institution_id_of
from tuoyu_shared.personal_data import ERASED_MASK
from tuoyu_shared.views import View, by_event_type

PROJECTION_NAME = "registration-views"

# The tables are made by the migrations (migrations/registration_0002_views.sql).
TABLES = ("public_register", "filing_deadlines", "staff_roster", "staff_cases")


def rebuild(database_url: str) -> None:
    """Drop the query tables and the projection's position: the next run replays the log."""
    VIEW.reset(database_url)


def _set(cur: psycopg.Cursor, env: Envelope, **columns: Any) -> None:
    assignments = ", ".join(f"{name} = %s" for name in columns)
    cur.execute(f"UPDATE public_register SET {assignments}, updated_at = %s "
                "WHERE institution_id = %s",
                (*columns.values(), env.occurred_at, env.aggregate_id))


def _registered(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute(
        "INSERT INTO public_register (institution_id, name, credit_code, nature, kind, "
        "district, street, address, person_in_charge_ref, status, updated_at) "
        "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,'registered',%s)",
        (env.aggregate_id, p["name"], p["credit_code"], p["nature"], p["kind"], p["district"],
         p["street"], p["address"], p["person_in_charge"]["ref"], env.occurred_at))


def _imported(env: Envelope, cur: psycopg.Cursor) -> None:
    _registered(env, cur)
    p = env.payload
    _set(cur, env, status="filed", places=p["filing"]["total_places"],
         filed_on=p["receipt"]["issued_on"])


def _filing_submitted(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    _set(cur, env, status="filing_submitted", places=p["filing"]["total_places"])
    cur.execute("INSERT INTO filing_deadlines VALUES (%s, 'receipt', %s, %s) "
                "ON CONFLICT (institution_id, stage) DO UPDATE SET due_on = EXCLUDED.due_on",
                (env.aggregate_id, p["receipt_due_on"], p["submitted_on"]))


def _filed(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    _set(cur, env, status="filed", filed_on=p["issued_on"])
    cur.execute("DELETE FROM filing_deadlines WHERE institution_id=%s AND stage='receipt'",
                (env.aggregate_id,))
    cur.execute("INSERT INTO filing_deadlines VALUES (%s, 'verification', %s, %s) "
                "ON CONFLICT DO NOTHING", (env.aggregate_id, p["verification_due_on"],
                                            p["issued_on"]))


def _verified(env: Envelope, cur: psycopg.Cursor) -> None:
    cur.execute("DELETE FROM filing_deadlines WHERE institution_id=%s AND stage='verification'",
                (env.aggregate_id,))
    if env.event_type == "InstitutionFilingFoundNonCompliant":
        _set(cur, env, non_compliance=env.payload["disclosure"])


def _change_filed(env: Envelope, cur: psycopg.Cursor) -> None:
    changes = env.payload["changes"]
    columns = {k: changes[k] for k in ("name", "district", "street", "address") if k in changes}
    if "total_places" in changes:
        columns["places"] = changes["total_places"]
    if "person_in_charge" in changes:
        columns["person_in_charge_ref"] = changes["person_in_charge"]["ref"]
    if columns:
        _set(cur, env, **columns)


def _hire_requested(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("INSERT INTO staff_roster (hire_id, institution_id, practitioner_ref, role, "
                "status) VALUES (%s,%s,%s,%s,'pending')",
                (p["hire_id"], institution_id_of(env), p["practitioner"]["ref"], p["role"]))


def _roster_status(status: str) -> Callable[[Envelope, psycopg.Cursor], None]:
    def handler(env: Envelope, cur: psycopg.Cursor) -> None:
        cur.execute("UPDATE staff_roster SET status=%s WHERE hire_id=%s",
                    (status, env.payload["hire_id"]))
    return handler


def _case_opened(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("INSERT INTO staff_cases (case_id, institution_id, practitioner_ref, "
                "ban_reference, opened_on, due_on) VALUES (%s,%s,%s,%s,%s,%s)",
                (p["case_id"], institution_id_of(env), p["practitioner_ref"], p["ban_reference"],
                 p["opened_on"], p["due_on"]))


def _case_closed(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("UPDATE staff_cases SET closed_on=%s, resolution=%s WHERE case_id=%s",
                (p["closed_on"], p["resolution"], p["case_id"]))


def _listing(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    if p["listed"]:
        cur.execute("UPDATE public_register SET credit_lists = array_append(credit_lists, %s) "
                    "WHERE institution_id=%s", (p["credit_list"], env.aggregate_id))
    else:
        cur.execute("UPDATE public_register SET credit_lists = array_remove(credit_lists, %s) "
                    "WHERE institution_id=%s", (p["credit_list"], env.aggregate_id))


HANDLERS: dict[str, Callable[[Envelope, psycopg.Cursor], None]] = {
    "InstitutionRegistered": _registered,
    "InstitutionImported": _imported,
    "InstitutionFilingSubmitted": _filing_submitted,
    "InstitutionFiled": _filed,
    "InstitutionFilingVerified": _verified,
    "InstitutionFilingFoundNonCompliant": _verified,
    "InstitutionChangeFiled": _change_filed,
    "InstitutionAffordableDesignated": lambda env, cur: _set(
        cur, env, affordable=True, guide_price_fen=env.payload["guide_price_fen"]),
    "InstitutionAffordableDesignationWithdrawn": lambda env, cur: _set(
        cur, env, affordable=False, guide_price_fen=None),
    "InstitutionDemonstrationLevelGranted": lambda env, cur: _set(
        cur, env, demonstration_level=env.payload["level"]),
    "InstitutionDemonstrationLevelRevoked": lambda env, cur: _set(
        cur, env, demonstration_level=None),
    "InstitutionPractitionerHireRequested": _hire_requested,
    "InstitutionPractitionerHired": _roster_status("employed"),
    "InstitutionPractitionerHireRefused": _roster_status("refused"),
    "InstitutionPractitionerReleased": _roster_status("released"),
    "InstitutionStaffRemovalCaseOpened": _case_opened,
    "InstitutionStaffRemovalCaseClosed": _case_closed,
    "InstitutionCreditListingNoted": _listing,
    "InstitutionSuspendedForRectification": lambda env, cur: _set(cur, env, status="suspended"),
    "InstitutionResumed": lambda env, cur: _set(cur, env, status="filed"),
    "InstitutionDeregistered": lambda env, cur: (
        _set(cur, env, status="deregistered"),
        cur.execute("DELETE FROM filing_deadlines WHERE institution_id=%s",
                    (env.aggregate_id,))),
}


project = by_event_type(HANDLERS)


#: The service's query tables, projected from its own log (``python -m tuoyu_registration.worker
#: rebuild registration-views`` drops and replays them).
VIEW = View(PROJECTION_NAME, "registration", TABLES, project)


# ---- queries --------------------------------------------------------------------------------
# What is shown of a person comes from the vault's person_display (erased with the person),
# never from these tables, which hold refs only (a rebuild shows the same after an erasure).
PUBLIC_COLUMNS = ("institution_id::text, name, credit_code, nature, kind, district, street, "
                  "address, coalesce((SELECT shown FROM person_display d WHERE d.person_ref = "
                  f"person_in_charge_ref AND d.field = 'name'), '{ERASED_MASK}') AS "
                  "person_in_charge, status, places, filed_on, affordable, guide_price_fen, "
                  "demonstration_level, non_compliance, credit_lists")


def public_disclosure(conn: psycopg.Connection, *, district: str | None = None,
                      street: str | None = None, kind: str | None = None,
                      affordable: bool | None = None, name: str | None = None,
                      limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Filed (or suspended) institutions with their public facts."""
    where = ["status IN ('filed', 'suspended')"]
    params: list[Any] = []
    for column, value in (("district", district), ("street", street), ("kind", kind),
                          ("affordable", affordable)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if name:
        where.append("name LIKE %s")
        params.append(f"%{name}%")
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {PUBLIC_COLUMNS} FROM public_register WHERE {' AND '.join(where)} "
                    "ORDER BY district, street, name LIMIT %s OFFSET %s",
                    (*params, limit, offset))
        return cur.fetchall()


def filings_awaiting(conn: psycopg.Connection, today: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT d.institution_id::text, r.name, r.district, d.stage, d.since, d.due_on, "
            "d.due_on < %s AS overdue FROM filing_deadlines d "
            "JOIN public_register r USING (institution_id) ORDER BY d.due_on", (today,))
        return cur.fetchall()


def open_staff_cases(conn: psycopg.Connection, today: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT c.case_id, c.institution_id::text, r.name AS institution_name, r.district, "
            f"coalesce(d.shown, '{ERASED_MASK}') AS practitioner, c.ban_reference, "
            "c.opened_on, c.due_on, "
            "c.due_on < %s AS overdue FROM staff_cases c "
            "JOIN public_register r USING (institution_id) "
            "LEFT JOIN staff_roster s ON s.practitioner_ref = c.practitioner_ref "
            "AND s.institution_id = c.institution_id AND s.status = 'employed' "
            "LEFT JOIN person_display d ON d.person_ref = c.practitioner_ref "
            "AND d.field = 'name' "
            "WHERE c.closed_on IS NULL ORDER BY c.due_on", (today,))
        return cur.fetchall()


def employers_of(conn: psycopg.Connection, practitioner_ref: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT institution_id::text FROM staff_roster "
                    "WHERE practitioner_ref = %s AND status = 'employed'", (practitioner_ref,))
        return [row[0] for row in cur.fetchall()]
