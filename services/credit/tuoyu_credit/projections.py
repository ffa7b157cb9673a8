"""The credit service's own query tables, projected from its own notification log.

- ``credit_register``: every institution's score, grade and the lists it is on (for inspection
  planning by grade, and for anyone asking "who is on the dishonesty list").
- ``listings_due``: open list entries with their response window (陈述申辩 until
  ``respond_by``) and their term's end: what an officer may decide now, and what the daily
  timer must expire.
- ``bans_due``: term bans not yet lifted, with their end: what the daily timer must lift.
- ``roster_members``: who is on which institution's roster (one row per hire not released)
  and ``last_checks``: the day of each person's last completed check; together, whom the
  daily timer must re-check yearly.
- ``checks_pending``: the background checks requested and not completed, awaiting the
  public-security inquiry or flagged for an officer: what the inquiry dispatch reads (with
  its own bookkeeping columns, see ``migrations/credit_0003_background_checks.sql``).

A tracked consumer applies each event with its position in one transaction; the tables can be
dropped and rebuilt from the log at any time (:func:`rebuild`). They hold no personal data but
person refs (random pseudonyms).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tuoyu_shared.envelope import Envelope
from tuoyu_shared.views import View, by_event_type

PROJECTION_NAME = "credit-views"

# The tables are made by the migrations (migrations/credit_0002_views_and_reads.sql).
TABLES = ("credit_register", "listings_due", "bans_due", "roster_members", "last_checks",
          "checks_pending")


def rebuild(database_url: str) -> None:
    """Drop the query tables and the projection's position: the next run replays the log."""
    VIEW.reset(database_url)


def _opened(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("INSERT INTO credit_register (institution_id, score, grade, updated_at) "
                "VALUES (%s,%s,%s,%s) ON CONFLICT (institution_id) DO NOTHING",
                (p["institution_id"], p["score"], p["grade"], env.occurred_at))


def _register(column: str, key: str) -> Callable[[Envelope, psycopg.Cursor], None]:
    def handler(env: Envelope, cur: psycopg.Cursor) -> None:
        cur.execute(f"UPDATE credit_register SET {column} = %s, updated_at = %s "
                    "WHERE institution_id = %s",
                    (env.payload[key], env.occurred_at, env.payload["institution_id"]))
    return handler


def _listing(env: Envelope, cur: psycopg.Cursor, state: str, **columns: Any) -> None:
    p = env.payload
    names = ["state", *columns]
    cur.execute(
        f"INSERT INTO listings_due (institution_id, listing_id, list_name, {', '.join(names)}, "
        f"updated_at) VALUES (%s, %s, %s, {', '.join(['%s'] * len(names))}, %s) "
        "ON CONFLICT (institution_id, listing_id) DO UPDATE SET "
        + ", ".join(f"{n} = EXCLUDED.{n}" for n in [*names, "updated_at"]),
        (p["institution_id"], p["listing_id"], p["list_name"], state, *columns.values(),
         env.occurred_at))


def _listing_closed(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("DELETE FROM listings_due WHERE institution_id = %s AND listing_id = %s",
                (p["institution_id"], p["listing_id"]))


def _lists(env: Envelope, cur: psycopg.Cursor, listed: bool) -> None:
    p = env.payload
    if listed:
        cur.execute("UPDATE credit_register SET lists = array_append(lists, %s), updated_at = %s "
                    "WHERE institution_id = %s AND NOT (%s = ANY(lists))",
                    (p["list_name"], env.occurred_at, p["institution_id"], p["list_name"]))
    else:
        cur.execute("UPDATE credit_register SET lists = array_remove(lists, %s), updated_at = %s "
                    "WHERE institution_id = %s",
                    (p["list_name"], env.occurred_at, p["institution_id"]))


def _decided(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    if p["decision"] == "listed":
        _listing(env, cur, "listed", respond_by=None, term_end=p["term_end"])
        _lists(env, cur, True)
    else:
        _listing_closed(env, cur)


def _ended(env: Envelope, cur: psycopg.Cursor) -> None:
    _listing_closed(env, cur)
    _lists(env, cur, False)


def _reviewed(env: Envelope, cur: psycopg.Cursor) -> None:
    if not env.payload["approved"]:  # an approval is followed by ListingRemovedEarly
        _listing(env, cur, "listed")


def _ban_imposed(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    if p["ends_on"] is not None:
        cur.execute("INSERT INTO bans_due VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (p["person_ref"], p["ban_ref"], p["ends_on"]))


def _ban_lifted(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("DELETE FROM bans_due WHERE person_ref = %s AND ban_ref = %s",
                (p["person_ref"], p["ban_ref"]))


def _joined(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("INSERT INTO roster_members VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (p["person_ref"], p["hire_id"], p["institution_id"], p["on"]))


def _left(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("DELETE FROM roster_members WHERE person_ref = %s AND hire_id = %s",
                (p["person_ref"], p["hire_id"]))


def _check_completed(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("INSERT INTO last_checks VALUES (%s, %s) ON CONFLICT (person_ref) DO UPDATE "
                "SET last_checked_on = GREATEST(last_checks.last_checked_on, "
                "EXCLUDED.last_checked_on)", (p["person_ref"], p["completed_on"]))
    cur.execute("DELETE FROM checks_pending WHERE person_ref = %s AND check_id = %s",
                (p["person_ref"], p["check_id"]))


def _check_requested(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("INSERT INTO checks_pending (person_ref, check_id, reason, institution_id, "
                "requested_on) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (p["person_ref"], p["check_id"], p["reason"], p["institution_id"],
                 p["requested_on"]))


def _check_flagged(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute("UPDATE checks_pending SET state = 'flagged', flag = %s, flag_reason = %s, "
                "flagged_on = %s WHERE person_ref = %s AND check_id = %s",
                (p["flag"], p["reason"], p["flagged_on"], p["person_ref"], p["check_id"]))


_SEND_AGAIN = ("state = 'awaiting_inquiry', flag = NULL, flag_reason = NULL, "
               "flagged_on = NULL, phase = 'inquire', attempts = 0, next_attempt_at = NULL, "
               "last_error = NULL")


def _check_retried(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    cur.execute(f"UPDATE checks_pending SET {_SEND_AGAIN} "
                "WHERE person_ref = %s AND check_id = %s", (p["person_ref"], p["check_id"]))


def _identity_sealed(env: Envelope, cur: psycopg.Cursor) -> None:
    """The ID number is on the record now: the checks waiting for it may be sent."""
    cur.execute(f"UPDATE checks_pending SET {_SEND_AGAIN} "
                "WHERE person_ref = %s AND flag = 'identity_unknown'",
                (env.payload["person_ref"],))


HANDLERS: dict[str, Callable[[Envelope, psycopg.Cursor], None]] = {
    "InstitutionCreditOpened": _opened,
    "InstitutionCreditScoreChanged": _register("score", "new_score"),
    "InstitutionCreditGradeChanged": _register("grade", "new_grade"),
    "InstitutionCreditListingProposed": lambda env, cur: _listing(env, cur, "proposed"),
    "InstitutionCreditListingNoticeSent": lambda env, cur: _listing(
        env, cur, "noticed", respond_by=env.payload["respond_by"]),
    "InstitutionCreditListingResponseReceived": lambda env, cur: _listing(
        env, cur, "responded"),
    "InstitutionCreditListingDecided": _decided,
    "InstitutionCreditRepairApplied": lambda env, cur: _listing(env, cur, "repair_applied"),
    "InstitutionCreditRepairReviewed": _reviewed,
    "InstitutionCreditListingExpired": _ended,
    "InstitutionCreditListingRemovedEarly": _ended,
    "InstitutionCreditListingEndedByDishonesty": _ended,
    "PractitionerBanImposed": _ban_imposed,
    "PractitionerBanLifted": _ban_lifted,
    "PractitionerJoinedRoster": _joined,
    "PractitionerLeftRoster": _left,
    "PractitionerCheckRequested": _check_requested,
    "PractitionerCheckFlagged": _check_flagged,
    "PractitionerCheckRetried": _check_retried,
    "PractitionerIdentitySealed": _identity_sealed,
    "PractitionerCheckCompleted": _check_completed,
}


project = by_event_type(HANDLERS)


#: The service's query tables, projected from its own log (``python -m tuoyu_credit.worker
#: rebuild credit-views`` drops and replays them).
VIEW = View(PROJECTION_NAME, "credit", TABLES, project)


# ---- queries --------------------------------------------------------------------------------
def credit_register(conn: psycopg.Connection, *, grade: str | None = None,
                    list_name: str | None = None, limit: int = 100,
                    offset: int = 0) -> list[dict[str, Any]]:
    where, params = ["true"], []
    if grade is not None:
        where.append("grade = %s")
        params.append(grade)
    if list_name is not None:
        where.append("%s = ANY(lists)")
        params.append(list_name)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT institution_id::text, score, grade, lists FROM credit_register "
                    f"WHERE {' AND '.join(where)} ORDER BY score, institution_id "
                    "LIMIT %s OFFSET %s", (*params, limit, offset))
        return cur.fetchall()


def listings_due(conn: psycopg.Connection, today: dt.date) -> list[dict[str, Any]]:
    """Open entries, with what is due: ``decidable`` once the window has passed (or the
    institution has responded), ``term_ended`` once the term is over."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT institution_id::text, listing_id, list_name, state, respond_by, term_end, "
            "(state = 'responded' OR (state = 'noticed' AND respond_by < %s)) AS decidable, "
            "(term_end IS NOT NULL AND term_end <= %s) AS term_ended "
            "FROM listings_due ORDER BY coalesce(respond_by, term_end), institution_id",
            (today, today))
        return cur.fetchall()


def institutions_with_terms_ended(conn: psycopg.Connection, today: dt.date) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT institution_id::text FROM listings_due "
                    "WHERE state IN ('listed', 'repair_applied') AND term_end <= %s "
                    "ORDER BY 1", (today,))
        return [row[0] for row in cur.fetchall()]


def people_with_bans_ended(conn: psycopg.Connection, today: dt.date) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT person_ref FROM bans_due WHERE ends_on <= %s ORDER BY 1",
                    (today,))
        return [row[0] for row in cur.fetchall()]


def roster_members(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT r.person_ref, r.institution_id::text, r.hire_id, r.joined_on, "
                    "c.last_checked_on FROM roster_members r "
                    "LEFT JOIN last_checks c USING (person_ref) "
                    "ORDER BY r.institution_id, r.person_ref, r.hire_id")
        return cur.fetchall()


def people_due_a_yearly_check(conn: psycopg.Connection, due_by: dt.date) -> list[str]:
    """People on at least one roster whose last completed check was on ``due_by`` or
    before (or who have none), and who have no yearly check pending (one waiting for the
    inquiry is not asked for again each day)."""
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT r.person_ref FROM roster_members r "
                    "LEFT JOIN last_checks c USING (person_ref) "
                    "WHERE (c.last_checked_on IS NULL OR c.last_checked_on <= %s) "
                    "AND NOT EXISTS (SELECT 1 FROM checks_pending p WHERE "
                    "p.person_ref = r.person_ref AND p.reason = 'yearly') ORDER BY 1",
                    (due_by,))
        return [row[0] for row in cur.fetchall()]


# ---- the inquiry dispatch (checks_pending) -----------------------------------------------------
def inquiries_due(conn: psycopg.Connection, now: dt.datetime,
                  limit: int) -> list[dict[str, Any]]:
    """The pending checks to send (or ask about) now, the longest waiting first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT person_ref, check_id, reason, institution_id::text, phase, "
                    "attempts FROM checks_pending WHERE state = 'awaiting_inquiry' AND "
                    "(next_attempt_at IS NULL OR next_attempt_at <= %s) "
                    "ORDER BY next_attempt_at NULLS FIRST, requested_on, check_id LIMIT %s",
                    (now, limit))
        return cur.fetchall()


def schedule_inquiry(conn: psycopg.Connection, person_ref: str, check_id: str, *,
                     phase: str, attempts: int, next_attempt_at: dt.datetime | None,
                     last_error: str | None) -> None:
    """The dispatch's bookkeeping of one check (a row the projector removed meanwhile is
    left removed)."""
    conn.execute("UPDATE checks_pending SET phase = %s, attempts = %s, next_attempt_at = %s, "
                 "last_error = %s WHERE person_ref = %s AND check_id = %s",
                 (phase, attempts, next_attempt_at, last_error, person_ref, check_id))


def pending_counts(conn: psycopg.Connection, now: dt.datetime) -> dict[str, Any]:
    """``{"due", "waiting", "flagged", "oldest_requested_on"}`` over the pending checks."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE state = 'awaiting_inquiry' AND (next_attempt_at IS NULL "
        "OR next_attempt_at <= %s)), count(*) FILTER (WHERE state = 'awaiting_inquiry' AND "
        "next_attempt_at > %s), count(*) FILTER (WHERE state = 'flagged'), min(requested_on) "
        "FROM checks_pending", (now, now)).fetchone()
    return {"due": row[0], "waiting": row[1], "flagged": row[2], "oldest_requested_on": row[3]}


def pending_checks(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every pending check, for an officer: flagged ones first, with why; then those waiting
    for the inquiry, with the dispatch's attempts and last outage."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT person_ref, check_id, reason, institution_id::text, requested_on, "
                    "state, flag, flag_reason, flagged_on, phase, attempts, next_attempt_at, "
                    "last_error FROM checks_pending "
                    "ORDER BY state = 'flagged' DESC, requested_on, person_ref, check_id")
        return cur.fetchall()
