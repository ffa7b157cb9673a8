"""The directory of institutions (``institution_directory``), projected from registration's
log: one read model that several services keep in their own database (the dashboard for its
indicators, inspection for the frame its plans draw from). Each service creates the table in
its own migrations, with these columns::

    institution_id uuid PRIMARY KEY, name, credit_code, nature, kind, district, street,
    address text NOT NULL, places int NOT NULL DEFAULT 0, status text NOT NULL,
    registered_at timestamptz NOT NULL, version int NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()

and declares a :class:`~tuoyu_shared.views.View` of registration's log with
:func:`project_registration` (``status``: registered, filing_submitted, filed, suspended,
deregistered).

No personal data: registration publishes a person as a random ref only, and the directory
keeps none of it. It projects the institution's own events only, whose aggregate is the
institution (``version`` is the institution's). Registration's roster and enrolment events,
whose aggregate is the institution's roster or reports since their schema version 2, are not
projected here; a read model that takes them names the institution by
:func:`tuoyu_shared.envelope.institution_id_of`.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from tuoyu_shared.envelope import Envelope
from tuoyu_shared.views import by_event_type

# One row per institution, i.e. per registration case: a credit code registered again after
# 注销 has a row for each case (its earlier ones deregistered), so credit_code is not unique.
# The table is made by the migrations (migrations/dashboard_0001_directory.sql).


def on_institution_registered(env: Envelope, cur: psycopg.Cursor) -> None:
    p = env.payload
    imported = env.event_type == "InstitutionImported"
    cur.execute(
        "INSERT INTO institution_directory (institution_id, name, credit_code, nature, kind, "
        "district, street, address, places, status, registered_at, version) "
        "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        (env.aggregate_id, p["name"], p["credit_code"], p["nature"], p["kind"], p["district"],
         p["street"], p["address"], p["filing"]["total_places"] if imported else 0,
         "filed" if imported else "registered",
         env.occurred_at, env.aggregate_version),
    )


def _update(env: Envelope, cur: psycopg.Cursor, **columns: object) -> None:
    sets = "".join(f", {name} = %s" for name in columns)
    cur.execute(f"UPDATE institution_directory SET version = %s, updated_at = now(){sets} "
                "WHERE institution_id = %s",
                (env.aggregate_version, *columns.values(), env.aggregate_id))


def _status(status: str) -> Callable[[Envelope, psycopg.Cursor], None]:
    return lambda env, cur: _update(env, cur, status=status)


def on_change_filed(env: Envelope, cur: psycopg.Cursor) -> None:
    changes = env.payload["changes"]
    columns = {k: changes[k] for k in ("name", "district", "street", "address") if k in changes}
    if "total_places" in changes:
        columns["places"] = changes["total_places"]
    _update(env, cur, **columns)


REGISTRATION_HANDLERS: dict[str, Callable[[Envelope, psycopg.Cursor], None]] = {
    "InstitutionRegistered": on_institution_registered,
    "InstitutionImported": on_institution_registered,
    "InstitutionFilingSubmitted": lambda env, cur: _update(
        env, cur, status="filing_submitted", places=env.payload["filing"]["total_places"]),
    "InstitutionFiled": _status("filed"),
    "InstitutionChangeFiled": on_change_filed,
    "InstitutionSuspendedForRectification": _status("suspended"),
    "InstitutionResumed": _status("filed"),
    "InstitutionDeregistered": _status("deregistered"),
}


#: Dispatch one registration event; types without a read-model effect only move tracking.
project_registration = by_event_type(REGISTRATION_HANDLERS)
