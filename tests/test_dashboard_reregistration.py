"""The dashboard's directory when a credit code registers again after 注销: each registration
case is a row of its own (the directory had credit_code UNIQUE, so the second case's
registration failed in the consumer and was parked)."""

from __future__ import annotations

import psycopg

from tuoyu_dashboard.projections import (
    ensure_read_models,
    list_institutions,
    project_registration,
)
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


def test_a_directory_created_with_the_unique_credit_code_loses_it(registration, dashboard_db):
    with psycopg.connect(dashboard_db.database_url) as conn:
        conn.execute("DROP TABLE institution_directory")
        conn.execute("CREATE TABLE institution_directory (institution_id uuid PRIMARY KEY, "
                     "name text NOT NULL, credit_code text NOT NULL UNIQUE, "
                     "nature text NOT NULL, kind text NOT NULL, district text NOT NULL, "
                     "street text NOT NULL, address text NOT NULL, "
                     "places int NOT NULL DEFAULT 0, person_in_charge text NOT NULL, "
                     "status text NOT NULL, registered_at timestamptz NOT NULL, "
                     "version int NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())")
        conn.commit()
        ensure_read_models(conn)
        ensure_read_models(conn)  # and again: nothing left to drop
    first = str(registration.register_institution(sample_registration(2)))
    registration.deregister(first, {"reason": "closing", "placement_of_children": "placed"})
    registration.register_institution(sample_registration(2))
    project_log(registration, dashboard_db)
    assert [row[3] for row in directory(dashboard_db)] == ["deregistered", "registered"]
