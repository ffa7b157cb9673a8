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
SERVICES = ("registration", "credit", "dashboard", "inspection", "subsidy")
#: The services of the previous release (whose schema dumps are in the fixtures).
RELEASED = ("registration", "credit", "dashboard")
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
        app = (module.SubsidyApp(settings) if service == "subsidy"
               else getattr(module, f"{service.capitalize()}Application")(settings))
        try:
            if service == "registration":
                from tuoyu_registration.samples import sample_registration

                app.register_institution(sample_registration(1))
            elif service == "subsidy":
                app.publish_default_programs()
            elif service == "inspection":
                app.publish_default_checklists()
                app.enrol_inspector({"department": "health", "inspector": "h1"})
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


@pytest.mark.parametrize("service", RELEASED)
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


def _as_json(value):
    import json

    from tuoyu_shared.envelope import to_json_value

    return json.loads(json.dumps(to_json_value(value)))


def _without_masks(value):
    """A person's value as published now: ``{"ref", "masked"}`` -> ``{"ref"}``."""
    if isinstance(value, dict):
        return {k: _without_masks(v) for k, v in value.items()
                if not (k == "masked" and "ref" in value)}
    if isinstance(value, list):
        return [_without_masks(v) for v in value]
    return value


def test_an_institution_of_the_previous_release_is_read_as_it_was_and_carried_over(
        fresh_database):
    """A database written by the release before rosters and enrolment reports had streams of
    their own: an institution's hires, checks, a release, a staff-removal case, monthly
    reports and a correction are events of its own stream (``fixtures/registration-events-
    ae110c4.json``, the stored events as that release wrote them, and what it answered).
    This release reads the record, its history and past versions exactly as that one did,
    and the first command that needs the roster or the reports carries them over."""
    import json
    from datetime import UTC, datetime

    from tuoyu_registration.application import RegistrationApplication
    from tuoyu_registration.domain import EnrolmentReports, Roster
    from tuoyu_shared.calendar_cn import WorkingCalendar
    from tuoyu_shared.catalogue import validate_envelope

    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    if not os.path.exists(psql):
        pytest.skip("needs psql to load the previous release's dump")
    url = fresh_database("registration", migrated=False)
    subprocess.run([psql, "-q", "-v", "ON_ERROR_STOP=1", "-f",
                    str(FIXTURES / f"registration-schema-{PREVIOUS_RELEASE}.sql"), url],
                   check=True, capture_output=True)
    migrate("registration", url)
    old = json.loads((FIXTURES / "registration-events-ae110c4.json").read_text("utf-8"))
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM registration_events")  # the dump's own sample rows, if any
        for e in old["events"]:
            conn.execute("INSERT INTO registration_events (originator_id, originator_version, "
                         "topic, state) VALUES (%s, %s, %s, %s)",
                         (e["originator_id"], e["originator_version"], e["topic"],
                          json.dumps(e["state"], ensure_ascii=False).encode()))
    a, b = old["institutions"]["a"], old["institutions"]["b"]
    hires = old["hires"]
    # Masks leave the published shape (the ref alone): that release's answers without them.
    old = _without_masks(old)
    app = RegistrationApplication(replace(settings_for("registration"), database_url=url),
                                  clock=lambda: datetime(2025, 3, 3, 2, tzinfo=UTC),
                                  calendar=WorkingCalendar.from_file())
    try:
        # The data migration of the personal-data scheme: the masks those events held are
        # what the queries show (from person_display), and the old key table goes.
        from tuoyu_shared.people import carry_over_personal_data

        assert carry_over_personal_data(app)["shown"] >= 2
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regclass('personal_data_keys')").fetchone()[0] \
                is None
        # Read as the previous release read it: the record, its history, past versions.
        assert _as_json(app.institution_record(a)) == old["record_a"]
        assert _as_json(app.institution_record(b)) == old["record_b"]
        for version, then in old["as_of_a"].items():
            assert _as_json(app.institution(a, int(version))) == then
        for envelope in app.read_log(1, 1000):  # published as then: version 1
            validate_envelope(envelope.to_dict())
        store = app.repository.event_store
        assert list(store.get(Roster.id_for(a))) == []  # nothing carried over by reading

        # The pending hire's check answered now: the roster carries over, then hires.
        app.save(*app.on_background_check_completed({
            "institution_id": a, "hire_id": hires["pending"], "outcome": "cleared",
            "reference": "CHK-74"}))
        assert [type(e).__qualname__ for e in store.get(Roster.id_for(a))] == [
            "Roster.Opened", "Roster.CarriedOver", "Roster.Hired"]
        now = _as_json(app.institution(a))
        before = old["record_a"]["institution"]
        assert now["roster"] == {**before["roster"], hires["pending"]: {
            **before["roster"][hires["pending"]], "status": "employed"}}
        assert now["staff_cases"] == before["staff_cases"]
        assert now["version"] == before["version"]  # the institution's stream: untouched
        history = _as_json(app.institution_record(a))["history"]
        assert history[:-1] == old["record_a"]["history"]
        assert (history[-1]["event_type"], history[-1]["data"]["institution_id"]) == (
            "InstitutionPractitionerHired", a)
        # older versions still read from the institution's own stream
        assert _as_json(app.institution(a, 12)) == old["as_of_a"]["12"]
        ref = before["roster"][hires["pending"]]["practitioner_ref"]
        assert app.current_employers(ref) == [a]

        # The carried-over roster goes on: the barred employee's release closes their case.
        [case] = [c for c in now["staff_cases"].values() if not c["closed_on"]]
        app.release_practitioner(a, {"hire_id": hires["employed"], "reason": "barred"})
        assert all(c["closed_on"] for c in app.institution(a)["staff_cases"].values())

        # The reports: a month reported then is reported already; corrected, it keeps the
        # figures reported then as the previous ones; a new month is reported.
        from tuoyu_registration.samples import sample_enrolment

        with pytest.raises(Exception, match="reported already"):
            app.report_enrolment(a, sample_enrolment("2025-02"))
        app.correct_enrolment(a, {**sample_enrolment("2025-02", second_children=5),
                                  "reason": "miscounted"})
        app.report_enrolment(a, sample_enrolment("2025-03"))
        reports = store.get(EnrolmentReports.id_for(a))
        opened, carried, corrected, reported = reports
        assert carried.months == before["enrolment"]
        # (health management was never reported then: unknown)
        assert corrected.previous == {**before["enrolment"]["2025-02"],
                                      "health_managed_children": None}
        assert (reported.health_managed_children, corrected.health_managed_children) == (36, 36)
        assert sorted(app.institution(a)["enrolment"]) == ["2025-01", "2025-02", "2025-03"]

        # Deregistered then: a check answered late hires nobody, and nothing is written.
        head = app.log_head()
        assert app.on_background_check_completed({
            "institution_id": b, "hire_id": hires["b_late"], "outcome": "cleared",
            "reference": "CHK-76"}) == []
        assert app.log_head() == head

        # The views, rebuilt from the whole log (version 1 and 2 events), name the
        # institutions right.
        from tuoyu_registration import projections

        projections.rebuild(url)
        app.views_projector().catch_up()
        with psycopg.connect(url) as conn:
            rows = dict(conn.execute("SELECT hire_id, institution_id::text "
                                     "FROM staff_roster").fetchall())
        assert rows == {hires[h]: a for h in ("employed", "refused", "released", "pending")
                        } | {hires[h]: b for h in ("b_kept", "b_late")}
        assert app.open_staff_cases() == [] and case["ban_reference"] == "BAN-71"
        for envelope in app.read_log(1, 1000):
            validate_envelope(envelope.to_dict())
    finally:
        app.close()
