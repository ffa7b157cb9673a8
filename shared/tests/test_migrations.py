"""Schema migrations: ``python -m tuoyu_<service> migrate`` makes each service's schema on an
empty database (the services run no DDL themselves), brings one made by the previous release
(before migrations: tables created by the code on start; a dump kept in ``fixtures/``) to the
same schema without losing its rows, and does nothing the second time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from tuoyu_shared.config import settings_for
from tuoyu_shared.migrate import migrate, pending

FIXTURES = Path(__file__).parent / "fixtures"
SERVICES = ("registration", "credit", "dashboard")
PREVIOUS_RELEASE = "1373ad8"


def schema(database_url: str) -> dict[str, list[tuple]]:
    """Tables with their columns, indexes, triggers and functions; yoyo's own left out."""
    with psycopg.connect(database_url) as conn:
        def rows(query: str) -> list[tuple]:
            return sorted(conn.execute(query).fetchall())
        not_yoyo = "NOT LIKE '%yoyo%'"
        return {
            "columns": rows(
                "SELECT table_name, column_name, data_type, is_nullable, "
                "coalesce(column_default, '') FROM information_schema.columns "
                f"WHERE table_schema='public' AND table_name {not_yoyo}"),
            "indexes": rows(f"SELECT tablename, indexdef FROM pg_indexes "
                            f"WHERE schemaname='public' AND tablename {not_yoyo}"),
            "triggers": rows("SELECT event_object_table, trigger_name, event_manipulation, "
                             "action_statement FROM information_schema.triggers"),
            "functions": rows("SELECT p.proname FROM pg_proc p JOIN pg_namespace n "
                              "ON n.oid = p.pronamespace WHERE n.nspname = 'public'"),
        }


def works_on(service: str, database_url: str) -> None:
    """The service's application, its relay, consumers and views on the database: what each
    reads and writes is there."""
    from tuoyu_shared.consumer import ApplicationTrackingStore, SqlTrackingStore
    from tuoyu_shared.relay import Relay

    settings = replace(settings_for(service), database_url=database_url)
    if service == "dashboard":
        from tuoyu_dashboard.projections import REGISTRATION_VIEW, list_institutions

        REGISTRATION_VIEW.reset(database_url)
        with psycopg.connect(database_url) as conn:
            assert list_institutions(conn) == []
    else:
        module = __import__(f"tuoyu_{service}.application", fromlist=["x"])
        app = getattr(module, f"{service.capitalize()}Application")(settings)
        try:
            if service == "registration":
                from tuoyu_registration.samples import sample_registration

                app.register_institution(sample_registration(1))
            else:
                from tuoyu_registration.samples import sample_resident_id

                app.register_practitioner({"name": "赵敏", "id_number": sample_resident_id(7)})
            assert Relay(app).position() == 0 and app.log_head() >= 1
            assert ApplicationTrackingStore(app, service).dead_letters() == []
            app.views_projector().catch_up()
        finally:
            app.close()
    assert SqlTrackingStore(database_url, "x").position("y") == 0


@pytest.mark.parametrize("service", SERVICES)
def test_migrate_makes_what_the_service_needs_and_is_idempotent(service, fresh_database):
    url = fresh_database(service, migrated=False)
    assert pending(service, url)
    applied = migrate(service, url)
    assert applied and pending(service, url) == []
    assert migrate(service, url) == []  # the second time: nothing
    works_on(service, url)


def test_a_service_refuses_to_start_on_a_database_not_migrated(fresh_database):
    from tuoyu_registration.application import RegistrationApplication
    from tuoyu_shared.application import SchemaNotMigrated

    url = fresh_database("registration", migrated=False)
    with pytest.raises(SchemaNotMigrated, match="python -m tuoyu_registration migrate"):
        RegistrationApplication(replace(settings_for("registration"), database_url=url))


@pytest.mark.parametrize("service", SERVICES)
def test_migrate_upgrades_a_database_of_the_previous_release(service, fresh_database):
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    if not os.path.exists(psql):
        pytest.skip("needs psql to load the previous release's dump")
    old = fresh_database(service, migrated=False)
    new = fresh_database(service, migrated=False)
    subprocess.run([psql, "-q", "-v", "ON_ERROR_STOP=1", "-f",
                    str(FIXTURES / f"{service}-schema-{PREVIOUS_RELEASE}.sql"), old],
                   check=True, capture_output=True)
    with psycopg.connect(old) as conn:  # the old shape: a parked letter as jsonb
        assert conn.execute("SELECT data_type FROM information_schema.columns WHERE "
                            "table_name='consumer_dead_letters' AND column_name='envelope'"
                            ).fetchone()[0] == "jsonb"
    migrate(service, old)
    migrate(service, new)
    assert schema(old) == schema(new)
    with psycopg.connect(old) as conn:  # its rows kept, in the new shape
        [(aggregate_id, held, envelope)] = conn.execute(
            "SELECT aggregate_id, held, envelope FROM consumer_dead_letters").fetchall()
    assert (aggregate_id, held) == ("a-1", False) and '"event_id": "e-1"' in envelope


def test_the_command_line_migrates_and_checks(fresh_database):
    url = fresh_database("credit", migrated=False)
    env = {**os.environ, "TUOYU_CREDIT_DATABASE_URL": url}
    check = [sys.executable, "-m", "tuoyu_credit", "migrate", "--check"]
    assert subprocess.run(check, env=env, capture_output=True).returncode == 1
    done = subprocess.run([sys.executable, "-m", "tuoyu_credit", "migrate"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "applied" in done.stdout, done.stderr
    assert subprocess.run(check, env=env, capture_output=True).returncode == 0
