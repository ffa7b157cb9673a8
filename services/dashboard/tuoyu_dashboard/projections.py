"""Read models of the dashboard: the directory of institutions (:mod:`tuoyu_shared.directory`,
projected from registration's log) and the queries on it.
"""

from __future__ import annotations

import psycopg

from tuoyu_shared.directory import REGISTRATION_HANDLERS, project_registration
from tuoyu_shared.views import View

__all__ = ["REGISTRATION_HANDLERS", "REGISTRATION_VIEW", "list_institutions",
           "project_registration"]

#: The directory of institutions, projected from registration's log.
REGISTRATION_VIEW = View("dashboard", "registration", ("institution_directory",),
                         project_registration)


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
