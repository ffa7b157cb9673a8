"""The audit of reads of practitioners' records (who read whose record, when, and why).

Every query that answers about a person (a check by ID number or by person ref, a look at the
audit itself) writes one row here *before* it answers: if the row cannot be written, nothing is
answered. The table is append-only (a trigger refuses UPDATE, DELETE and TRUNCATE).

Why a table and not an event on the Practitioner aggregate:

- a person may be looked up who has no record (never hired, never banned): the lookup of their
  ID number is still a read to account for, and there is no aggregate to put an event on; a
  number credit's blind index does not hold is recorded without a ref (a look-up enrols
  nobody);
- the events of this service are published to every subscriber: who looked up whom, and the
  purpose typed by an officer, are not for the credit-sharing platform;
- a read then costs one insert, not a read-modify-write of the person's record that contends
  with the commands on it (bans, checks).

The background checks themselves (on hire, yearly) are commands: each is a ``CheckRequested`` and
``CheckCompleted`` event on the record (with the public-security inquiry's answer between), with
the actor and the reason, so those reads are in the record's history already.

No ID number is stored: the person is their ref (a random pseudonym, ``person_ref``); purposes
are refused if they contain a resident ID number. When a person's data is erased, the purposes
of the reads of them are blanked (free text that may name them); the rest of each row stays
(``migrations/credit_0003_background_checks.sql`` allows that one change).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tuoyu_shared.context import CommandContext

# The table, its index and its append-only triggers are made by the migrations
# (migrations/credit_0002_views_and_reads.sql).

#: What was asked (the ``query`` column).
CHECK_BY_ID_NUMBER = "check_by_id_number"
CHECK_BY_PERSON_REF = "check_by_person_ref"
READ_AUDIT = "read_audit"


def record(cur: Any, person_ref: str | None, read_at: datetime, context: CommandContext,
           purpose: str, query: str, record_found: bool, barred: bool | None = None,
           ban_reference: str | None = None) -> int:
    """Append one read; returns its id. ``cur`` commits with the caller's transaction."""
    cur.execute(
        "INSERT INTO practitioner_reads (person_ref, read_at, actor, department, "
        "correlation_id, purpose, query, record_found, answered_barred, answered_ban_reference) "
        "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING read_id",
        (person_ref, read_at, context.actor, context.department, context.correlation_id,
         purpose, query, record_found, barred, ban_reference))
    row = cur.fetchone()
    return row["read_id"] if isinstance(row, dict) else row[0]


def reads_of(conn: psycopg.Connection, person_ref: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT read_id, read_at, actor, department, correlation_id, purpose, query, "
            "record_found, answered_barred, answered_ban_reference FROM practitioner_reads "
            "WHERE person_ref = %s ORDER BY read_id", (person_ref,))
        return cur.fetchall()
