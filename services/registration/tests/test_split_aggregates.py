"""An institution's roster (在岗人员名册) and its monthly enrolment reports (月度在托报告) are
aggregates of their own, one stream each beside the institution's: the reactions and reports
that change them do not contend with officers' commands on the institution, while writers of
one roster are still serialised by optimistic concurrency with nothing lost. The record, its
history and reads as of a version combine the three streams; a deregistration changes two in
one transaction."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from tuoyu_registration import projections
from tuoyu_registration.application import RegistrationApplication
from tuoyu_registration.domain import (
    DomainRuleViolated,
    EnrolmentReports,
    Institution,
    Roster,
    employment_record_id_for,
)
from tuoyu_registration.samples import (
    file_sample_institution as filed,
)
from tuoyu_registration.samples import (
    request_sample_hire as request_hire,
)
from tuoyu_registration.samples import (
    sample_enrolment,
    sample_resident_id,
)
from tuoyu_shared.calendar_cn import WorkingCalendar
from tuoyu_shared.catalogue import validate_envelope

FRIDAY = datetime(2025, 1, 24, 2, 0, tzinfo=UTC)


@pytest.fixture
def app(settings_factory, practitioners):
    application = RegistrationApplication(settings_factory("registration"),
                                          practitioners=practitioners,
                                          clock=lambda: FRIDAY,
                                          calendar=WorkingCalendar.from_file())
    yield application
    application.close()




def check_completed(hire_id: str, institution_id: str) -> dict:
    return {"institution_id": institution_id, "hire_id": hire_id, "outcome": "cleared",
            "reference": f"CHK-{hire_id}"}


class SaveConflicts:
    """Counts the saves that failed on a version, by the aggregates with new events."""

    def __init__(self, app, monkeypatch):
        self.failed: list[set[str]] = []
        original = app.save

        def save(*objs, **kwargs):
            changed = {type(o).__name__ for o in objs if getattr(o, "pending_events", None)}
            try:
                return original(*objs, **kwargs)
            except IntegrityError:
                self.failed.append(changed)
                raise

        monkeypatch.setattr(app, "save", save)

    def on(self, aggregate: str) -> int:
        return sum(1 for changed in self.failed if aggregate in changed)


def test_a_check_answered_meanwhile_does_not_make_an_officers_command_conflict(app):
    """The very interleaving that used to conflict: an officer's command has read the
    institution when the credit service's answer to a background check is recorded."""
    institution_id = filed(app)
    hire_id = request_hire(app, institution_id, 81)
    institution: Institution = app.repository.get(app._id(institution_id))
    institution.designate_affordable(180000, app.today(), "徐卫〔2025〕1号")  # not saved yet
    app.save(*app.on_background_check_completed(check_completed(hire_id, institution_id)))
    app.save(institution)  # no IntegrityError: the check wrote the roster, not this stream
    view = app.institution(institution_id)
    assert view["affordable"]["guide_price_fen"] == 180000
    assert view["roster"][hire_id]["status"] == "employed"
    # and the other way round: a report recorded while a check's answer is being applied
    second = request_hire(app, institution_id, 82)
    roster: Roster = app.repository.get(Roster.id_for(institution_id))
    roster.complete_background_check(second, "cleared", "CHK-82", "filed")
    app.report_enrolment(institution_id, sample_enrolment("2025-01"))
    app.grant_demonstration_level(institution_id, {"level": "district", "document": "d"})
    app.save(roster)
    view = app.institution(institution_id)
    assert view["roster"][second]["status"] == "employed"
    assert list(view["enrolment"]) == ["2025-01"] and view["demonstration"]["level"] == (
        "district")


def test_checks_answered_while_officers_work_never_conflict_with_them(app, monkeypatch):
    """Many background checks answered at once (each through the reaction, contending with
    each other on the roster) while officers' commands run on the institution and monthly
    reports are filed: no save of the institution or the reports fails on a version, and
    every change is kept."""
    institution_id = filed(app)
    hires = [request_hire(app, institution_id, n) for n in range(101, 109)]
    conflicts = SaveConflicts(app, monkeypatch)
    barrier = threading.Barrier(len(hires) + 2)
    errors: list[BaseException] = []

    def run(work):
        def target():
            try:
                barrier.wait()
                work()
            except BaseException as e:  # reported below
                errors.append(e)
        return threading.Thread(target=target)

    def answer(hire_id):
        def work():
            # as the consumer does it: run again on fresh state on a version conflict
            for _ in range(50):
                try:
                    app.save(*app.on_background_check_completed(
                        check_completed(hire_id, institution_id)))
                    return
                except IntegrityError:
                    continue
            raise AssertionError("never saved")
        return work

    def officer():
        app.designate_affordable(institution_id, {"guide_price_fen": 150000, "document": "d"})
        app.grant_demonstration_level(institution_id, {"level": "city", "document": "d"})
        app.file_change(institution_id, {"changes": {"address": "天平路 99 号"}})
        app.withdraw_affordable(institution_id, {"reason": "price raised"})

    app.clock = lambda: datetime(2025, 3, 3, 2, tzinfo=UTC)  # three months to report

    def reports():
        for month in ("2025-01", "2025-02", "2025-03"):
            app.report_enrolment(institution_id, sample_enrolment(month))

    threads = [run(answer(h)) for h in hires] + [run(officer), run(reports)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert conflicts.on("Institution") == 0 and conflicts.on("EnrolmentReports") == 0
    view = app.institution(institution_id)
    assert {view["roster"][h]["status"] for h in hires} == {"employed"}
    assert view["address"] == "天平路 99 号" and view["demonstration"]["level"] == "city"
    assert view["affordable"] is None
    assert sorted(view["enrolment"]) == ["2025-01", "2025-02", "2025-03"]
    # registered, submitted, filed, and the officer's four: the checks added nothing here
    assert view["version"] == 7


def test_many_writers_on_one_roster_are_serialised_and_nothing_is_lost(app, monkeypatch):
    """Hires requested at one institution all at once, and their checks answered while
    others are still being requested: they contend for one roster stream, the losers run
    again on fresh state, and every hire, answer and employment record is kept."""
    institution_id = filed(app)
    conflicts = SaveConflicts(app, monkeypatch)
    people = list(range(121, 131))
    barrier = threading.Barrier(len(people))
    errors: list[BaseException] = []
    hires: dict[int, str] = {}

    def hire_and_answer(n: int) -> None:
        try:
            barrier.wait()
            hires[n] = hire_id = request_hire(app, institution_id, n)
            for _ in range(50):
                try:
                    app.save(*app.on_background_check_completed(
                        check_completed(hire_id, institution_id)))
                    return
                except IntegrityError:
                    continue
            raise AssertionError("never saved")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=hire_and_answer, args=(n,)) for n in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert conflicts.on("Roster") > 0  # they did contend (and were run again)
    roster: Roster = app.repository.get(Roster.id_for(institution_id))
    assert {roster.roster[h]["status"] for h in hires.values()} == {"employed"}
    assert len(roster.roster) == len(people)
    assert roster.version == 1 + 2 * len(people)  # opened, then requested and hired each
    for n, hire_id in hires.items():
        record = app.repository.get(employment_record_id_for(
            app._practitioner_ref("测试人员", sample_resident_id(n))))
        assert record.hires == {hire_id: {"institution_id": institution_id,
                                          "status": "employed"}}
    assert app.repository.get(app._id(institution_id)).version == 3  # untouched


def test_a_deregistration_saves_the_institution_and_its_roster_in_one_transaction(
        app, monkeypatch):
    """The roster changed between the deregistration's read and its save: nothing of the
    deregistration is recorded (not the institution's events either), and it runs again on
    fresh state, releasing the practitioner hired meanwhile too."""
    institution_id = filed(app)
    employed = request_hire(app, institution_id, 91)
    app.save(*app.on_background_check_completed(check_completed(employed, institution_id)))
    late = request_hire(app, institution_id, 92)
    conflicts = SaveConflicts(app, monkeypatch)
    loads = []
    original = app._roster

    def roster_then_a_check_answered(institution):
        roster = original(institution)
        if not loads:  # the first try: another writer records a hire on the roster
            loads.append(roster.version)
            other = original(institution)
            other.complete_background_check(late, "cleared", "CHK-92", institution.status)
            RegistrationApplication.save(app, other)
        return roster

    monkeypatch.setattr(app, "_roster", roster_then_a_check_answered)
    app.deregister(institution_id, {"reason": "closing", "placement_of_children": "placed"})
    assert conflicts.failed == [{"Institution", "Roster"}]  # one try failed, whole
    view = app.institution(institution_id)
    assert view["status"] == "deregistered"
    assert {h: r["status"] for h, r in view["roster"].items()} == {
        employed: "released", late: "released"}
    with psycopg.connect(app.settings.database_url) as conn:
        [(deregistered,)] = conn.execute(
            "SELECT count(*) FROM registration_events WHERE topic LIKE %s",
            ("%Institution.Deregistered",)).fetchall()
    assert deregistered == 1
    # in the log, one run of ids: the institution's events, the roster's, then the
    # employment records' of the practitioners released
    log = [(e.event_type, e.aggregate_id) for e in app.read_log(1, 1000)]
    start = log.index(("InstitutionDeregistered", institution_id))
    roster_id = str(Roster.id_for(institution_id))
    assert [t for t, _ in log[start:]] == [
        "InstitutionDeregistered", "InstitutionPractitionerReleased",
        "InstitutionPractitionerReleased", "RosterClosed", "EmploymentRecordReleased",
        "EmploymentRecordReleased"]
    assert {a for _, a in log[start + 1:start + 4]} == {roster_id}
    assert app.current_employers(app._practitioner_ref("测试人员", sample_resident_id(92))) == []


def test_the_record_history_and_reads_as_of_a_version_combine_the_three_streams(app):
    institution_id = filed(app)
    hire_id = request_hire(app, institution_id, 95)
    app.save(*app.on_background_check_completed(check_completed(hire_id, institution_id)))
    app.report_enrolment(institution_id, sample_enrolment("2025-01"))
    app.designate_affordable(institution_id, {"guide_price_fen": 1, "document": "d"})  # v4
    app.release_practitioner(institution_id, {"hire_id": hire_id, "reason": "left"})
    app.deregister(institution_id, {"reason": "closing", "placement_of_children": "placed"})
    record = app.institution_record(institution_id)
    assert [h["event_type"] for h in record["history"]] == [
        "InstitutionRegistered", "InstitutionFilingSubmitted", "InstitutionFiled",
        "InstitutionPractitionerHireRequested", "InstitutionPractitionerHired",
        "InstitutionEnrolmentReported", "InstitutionAffordableDesignated",
        "InstitutionPractitionerReleased", "InstitutionDeregistered",
        "InstitutionAffordableDesignationWithdrawn"]
    times = [h["occurred_at"] for h in record["history"]]
    assert times == sorted(times)
    hired = record["history"][4]
    assert hired["data"]["institution_id"] == institution_id
    assert hired["data"]["originator_version"] == 3  # the roster's: opened, requested, hired
    assert record["institution"] == app.institution(institution_id)
    # As of a version: the roster and reports as they stood while it was the latest.
    latest = record["institution"]["version"]
    assert latest == 6
    assert app.institution(institution_id, version=latest) == record["institution"]
    filed_then = app.institution(institution_id, version=3)
    assert filed_then["status"] == "filed" and filed_then["affordable"] is None
    assert filed_then["roster"][hire_id]["status"] == "employed"
    assert list(filed_then["enrolment"]) == ["2025-01"]
    designated = app.institution(institution_id, version=4)
    assert designated["roster"][hire_id]["status"] == "released"
    registered = app.institution(institution_id, version=1)
    assert registered["roster"] == {} and registered["enrolment"] == {}
    for envelope in app.read_log(1, 1000):
        validate_envelope(envelope.to_dict())


def test_the_views_name_the_institution_of_a_roster_event(app):
    institution_id = filed(app)
    hire_id = request_hire(app, institution_id, 96)
    app.save(*app.on_background_check_completed(check_completed(hire_id, institution_id)))
    ref = app._practitioner_ref("测试人员", sample_resident_id(96))
    app.save(*app.on_practitioner_barred({"practitioner_ref": ref, "ban_reference": "BAN-96"}))
    app.views_projector().catch_up()
    assert app.employers_of(ref) == [institution_id]
    [case] = app.open_staff_cases()
    assert (case["institution_id"], case["practitioner"]) == (institution_id, "李*")
    with psycopg.connect(app.settings.database_url) as conn:
        assert conn.execute("SELECT institution_id::text FROM staff_roster").fetchall() == [
            (institution_id,)]
    # rebuilt from the log, they come out the same
    before = [app.employers_of(ref), app.open_staff_cases()]
    projections.rebuild(app.settings.database_url)
    app.views_projector().catch_up()
    assert [app.employers_of(ref), app.open_staff_cases()] == before


def test_a_new_institutions_roster_and_reports_start_with_its_first_hire_and_report(app):
    institution_id = filed(app)
    store = app.repository.event_store
    assert list(store.get(Roster.id_for(institution_id))) == []
    request_hire(app, institution_id, 97)
    app.report_enrolment(institution_id, sample_enrolment("2025-01"))
    assert [type(e).__qualname__ for e in store.get(Roster.id_for(institution_id))] == [
        "Roster.Opened", "Roster.HireRequested"]
    assert [type(e).__qualname__ for e in store.get(EnrolmentReports.id_for(institution_id))
            ] == ["EnrolmentReports.Opened", "EnrolmentReports.Reported"]
    # a refused command opens nothing
    other = filed(app, 2)
    with pytest.raises(DomainRuleViolated):  # a month before the filing receipt
        app.report_enrolment(other, sample_enrolment("2024-12"))
    assert list(store.get(EnrolmentReports.id_for(other))) == []
