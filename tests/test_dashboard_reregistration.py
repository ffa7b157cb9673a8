"""The dashboard's directory when a credit code registers again after 注销: each registration
case is a row of its own (the directory had credit_code UNIQUE, so the second case's
registration failed in the consumer and was parked). A directory of the release before, with
that constraint, loses it in its migration (shared/tests/test_migrations.py)."""

from __future__ import annotations

import psycopg

from tuoyu_dashboard.projections import list_institutions, project_registration
from tuoyu_registration.samples import sample_credit_code, sample_registration


def project_log(registration, settings) -> None:
    with psycopg.connect(settings.database_url) as conn, conn.transaction(), \
            conn.cursor() as cur:
        for envelope in registration.read_log(1, 1000):
            project_registration(envelope, cur)


def directory(settings) -> list[tuple]:
    with psycopg.connect(settings.database_url) as conn:
        return [(row["institution_id"], row["credit_code"], row["name"], row["status"])
                for row in list_institutions(conn)]


def test_each_registration_case_of_a_code_is_a_row(registration, dashboard_db):
    first = str(registration.register_institution(sample_registration(1)))
    registration.deregister(first, {"reason": "closing", "placement_of_children": "placed"})
    second = str(registration.register_institution(sample_registration(1, name="新星托育园")))
    project_log(registration, dashboard_db)
    code = sample_credit_code(1)
    assert directory(dashboard_db) == [(first, code, "示范托育园 1", "deregistered"),
                                       (second, code, "新星托育园", "registered")]
