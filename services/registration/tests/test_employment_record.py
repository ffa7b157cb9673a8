"""Who employs a barred practitioner is decided from write-side state: each practitioner's
employment record (从业人员在岗记录), saved in the same transaction as every hire and release,
never from the query tables. A ban reaches the real reaction (the tracked consumer of the
credit service's log, here an in-process log of envelopes) with the views projector stopped or
broken, and still opens a removal case at exactly the current employers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, date, datetime

import psycopg
import pytest

from tuoyu_registration import bootstrap, projections
from tuoyu_registration.application import EMPLOYMENT_CARRY_OVER, RegistrationApplication
from tuoyu_registration.domain import EmploymentRecord, employment_record_id_for
from tuoyu_registration.reactions import credit_consumer, credit_handler
from tuoyu_registration.samples import (
    file_sample_institution as filed,
)
from tuoyu_registration.samples import (
    request_sample_hire as request_hire,
)
from tuoyu_registration.samples import (
    sample_resident_id,
)
from tuoyu_shared.calendar_cn import WorkingCalendar
from tuoyu_shared.catalogue import validate_envelope
from tuoyu_shared.consumer import ApplicationTrackingStore
from tuoyu_shared.envelope import Envelope

# Friday 2025-01-24 in Shanghai: 5 working days later, across the Spring Festival, is 02-07.
FRIDAY = datetime(2025, 1, 24, 2, 0, tzinfo=UTC)
REMOVAL_DUE = date(2025, 2, 7)


def make_app(settings, practitioners=None) -> RegistrationApplication:
    return bootstrap.application(settings, clock=lambda: FRIDAY, practitioners=practitioners,
                                 calendar=WorkingCalendar.from_file())


@pytest.fixture
def settings(settings_factory):
    return settings_factory("registration")


@pytest.fixture
def app(settings, practitioners):
    application = make_app(settings, practitioners)
    yield application
    application.close()


class CreditLog:
    """The credit service's log, in process: the envelopes the consumer reads to catch up."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.person = str(uuid.uuid4())  # the credit service's Practitioner aggregate

    def append(self, event_type: str, payload: dict) -> Envelope:
        n = len(self.envelopes) + 1
        env = Envelope(
            event_id=str(uuid.uuid4()), event_type=event_type, schema_version=1,
            source="credit", aggregate_id=self.person, aggregate_version=n, notification_id=n,
            occurred_at=FRIDAY.isoformat(), actor="officer-1", department="credit",
            correlation_id=str(uuid.uuid4()), causation_id="", payload=payload)
        validate_envelope(env.to_dict())  # what the credit service would publish
        self.envelopes.append(env)
        return env

    def check_completed(self, institution_id: str, hire_id: str, person_ref: str,
                        outcome: str = "cleared", reference: str | None = None) -> Envelope:
        return self.append("PractitionerCheckCompleted", {
            "check_id": hire_id, "institution_id": institution_id, "person_ref": person_ref,
            "outcome": outcome, "reference": reference or hire_id,
            "officer": "automatic", "completed_on": "2025-01-24"})

    def ban_imposed(self, person_ref: str, ban_ref: str) -> Envelope:
        return self.append("PractitionerBanImposed", {
            "person_ref": person_ref, "ban_ref": ban_ref, "source": "court_ruling",
            "legal_basis": "《中华人民共和国刑法》第三十七条之一",
            "evidence": ["(2025)沪0104刑初12号"], "officer": "officer-1",
            "starts_on": "2025-01-24", "term": "lifetime", "term_years": None,
            "ends_on": None})

    # the UpstreamLog protocol
    def read(self, start: int, limit: int, stop: int | None = None) -> list[Envelope]:
        return [e for e in self.envelopes
                if e.notification_id >= start and (stop is None or e.notification_id <= stop)
                ][:limit]

    def head(self) -> int:
        return len(self.envelopes)




def hire_cleared(app, institution_id: str, n: int) -> str:
    hire_id = request_hire(app, institution_id, n)
    app.save(*app.on_background_check_completed({
        "institution_id": institution_id, "hire_id": hire_id, "outcome": "cleared",
        "reference": hire_id}))
    return hire_id


def event_count(app) -> int:
    with psycopg.connect(app.settings.database_url) as conn:
        return conn.execute("SELECT count(*) FROM registration_events").fetchone()[0]


def open_cases(app, institution_id: str) -> list[dict]:
    return [c for c in app.institution(institution_id)["staff_cases"].values()
            if not c["closed_on"]]


def fail(*args, **kwargs):
    raise AssertionError("the query tables were read")


@pytest.mark.parametrize("views", ["never_run", "broken"])
def test_a_ban_opens_cases_at_exactly_the_current_employers_whatever_the_views(
        app, monkeypatch, views):
    first, second, former, elsewhere = (filed(app, n) for n in (1, 2, 3, 4))
    ref = app._practitioner_ref("测试人员", sample_resident_id(61))
    credit = CreditLog()
    consumer = credit_consumer(app, log_reader=credit)
    hires = {i: request_hire(app, i, 61) for i in (first, second, former)}
    request_hire(app, elsewhere, 62)  # someone else works there
    for institution_id, hire_id in hires.items():  # the checks clear, through the reaction
        credit.check_completed(institution_id, hire_id, ref)
    assert consumer.catch_up() == 3
    app.release_practitioner(former, {"hire_id": hires[former], "reason": "left"})
    assert app.institution(former)["roster"][hires[former]]["status"] == "released"

    if views == "broken":  # the projector fails on every hire confirmed: parked, not applied
        monkeypatch.setitem(projections.HANDLERS, "InstitutionPractitionerHired", fail)
        app.views_projector().catch_up()
    assert app.employers_of(ref) == []  # the query tables know no employer of theirs
    monkeypatch.setattr(projections, "employers_of", fail)  # and are never asked

    ban = credit.ban_imposed(ref, "BAN-61")
    assert consumer.catch_up() == 1
    for institution_id in (first, second):
        [case] = open_cases(app, institution_id)
        assert (case["practitioner_ref"], case["ban_reference"], case["due_on"]) == (
            ref, "BAN-61", REMOVAL_DUE)
    assert open_cases(app, former) == [] and open_cases(app, elsewhere) == []
    assert app.current_employers(ref) == sorted([first, second])

    # Effectively once: a redelivery, or a duplicate racing past the position check, adds
    # nothing (the tracking record is written with the cases).
    before = event_count(app)
    consumer.handle(ban)
    assert ApplicationTrackingStore(app, "registration").apply(ban, credit_handler(app)) is False
    assert event_count(app) == before
    # Everything recorded, the employment records' events too, is publishable.
    for envelope in app.read_log(1, 1000):
        validate_envelope(envelope.to_dict())


def test_the_record_follows_every_roster_change_in_the_same_transaction(app):
    institution_id = filed(app, 1)
    ref = app._practitioner_ref("测试人员", sample_resident_id(63))
    hire_id = request_hire(app, institution_id, 63)
    record = app.repository.get(employment_record_id_for(ref))
    assert record.hires == {hire_id: {"institution_id": institution_id, "status": "pending"}}
    assert app.current_employers(ref) == []
    app.save(*app.on_background_check_completed({
        "institution_id": institution_id, "hire_id": hire_id, "outcome": "cleared",
        "reference": "CHK-63"}))
    assert app.current_employers(ref) == [institution_id]
    # Deregistration (注销) releases everyone: the record says so with it.
    app.deregister(institution_id, {"reason": "closing", "placement_of_children": "placed"})
    assert app.current_employers(ref) == []
    # A refused hire is recorded as refused.
    other = filed(app, 2)
    refused = request_hire(app, other, 63)
    app.save(*app.on_background_check_completed({
        "institution_id": other, "hire_id": refused, "outcome": "barred",
        "reference": "BAN-63"}))
    record = app.repository.get(employment_record_id_for(ref))
    assert {h: r["status"] for h, r in record.hires.items()} == {
        hire_id: "released", refused: "refused"}
    # opened, requested, hired, released, requested, refused
    assert record.version == 6


def test_a_ban_while_a_hire_is_pending_opens_no_case_and_the_check_refuses_it(app):
    """The race, as it is resolved: the credit service records the ban and answers the check
    on the same aggregate, so a check answered after the ban refuses the hire; a hire still
    pending when the ban reaches here is not on the roster and gets no case."""
    employer, hiring = filed(app, 1), filed(app, 2)
    ref = app._practitioner_ref("测试人员", sample_resident_id(64))
    credit = CreditLog()
    consumer = credit_consumer(app, log_reader=credit)
    employed = request_hire(app, employer, 64)
    credit.check_completed(employer, employed, ref)  # cleared before the ban
    pending = request_hire(app, hiring, 64)
    credit.ban_imposed(ref, "BAN-64")
    credit.check_completed(hiring, pending, ref, outcome="barred", reference="BAN-64")
    assert consumer.catch_up() == 3
    assert [c["ban_reference"] for c in open_cases(app, employer)] == ["BAN-64"]
    assert open_cases(app, hiring) == []
    assert app.institution(hiring)["roster"][pending]["status"] == "refused"
    assert app.current_employers(ref) == [employer]


def test_concurrent_hires_of_one_person_are_all_on_their_record(app):
    """Hires of the same person requested at several institutions at once contend for one
    record: the losers retry on fresh state (:meth:`update`), and none is lost."""
    institutions = [filed(app, n) for n in range(1, 5)]
    ref = app._practitioner_ref("测试人员", sample_resident_id(65))
    barrier = threading.Barrier(len(institutions))
    hires: dict[str, str] = {}
    errors: list[BaseException] = []

    def hire(institution_id: str) -> None:
        try:
            barrier.wait()
            hires[institution_id] = request_hire(app, institution_id, 65)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=hire, args=(i,)) for i in institutions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    record = app.repository.get(employment_record_id_for(ref))
    assert {h: r["status"] for h, r in record.hires.items()} == {
        h: "pending" for h in hires.values()}
    credit = CreditLog()
    for institution_id, hire_id in hires.items():
        credit.check_completed(institution_id, hire_id, ref)
    assert credit_consumer(app, log_reader=credit).catch_up() == len(institutions)
    assert app.current_employers(ref) == sorted(institutions)


def test_hires_recorded_before_employment_records_are_carried_over_once(settings,
                                                                        monkeypatch,
                                                                        practitioners):
    earlier = make_app(settings, practitioners)  # an empty log: nothing to carry, no mark left
    assert earlier.recorder.max_tracking_id(EMPLOYMENT_CARRY_OVER) is None
    kept, left, since = filed(earlier, 1), filed(earlier, 2), filed(earlier, 3)
    ref = earlier._practitioner_ref("测试人员", sample_resident_id(66))
    # Hires as the earlier version recorded them: the institutions' events alone.
    with monkeypatch.context() as m:
        m.setattr(earlier, "_employment_records_for", lambda objs: [])
        old_hires = {i: hire_cleared(earlier, i, 66) for i in (kept, left)}
        earlier.release_practitioner(left, {"hire_id": old_hires[left], "reason": "left"})
        old_pending = request_hire(earlier, since, 66)
    assert earlier.current_employers(ref) == []  # no record at all
    # A change made by this version before the carry-over ran: its record knows that hire.
    earlier.save(*earlier.on_background_check_completed({
        "institution_id": since, "hire_id": old_pending, "outcome": "cleared",
        "reference": "CHK"}))
    head = earlier.log_head()
    earlier.close()

    app = make_app(settings)  # the first start with a carry-over mark absent
    record = app.repository.get(employment_record_id_for(ref))
    assert {h: r["status"] for h, r in record.hires.items()} == {
        old_hires[kept]: "employed", old_hires[left]: "released", old_pending: "employed"}
    assert app.current_employers(ref) == sorted([kept, since])
    assert app.recorder.max_tracking_id(EMPLOYMENT_CARRY_OVER) == head  # the mark
    credit = CreditLog()
    credit.ban_imposed(ref, "BAN-66")
    credit_consumer(app, log_reader=credit).catch_up()
    assert len(open_cases(app, kept)) == len(open_cases(app, since)) == 1
    assert open_cases(app, left) == []

    # Once: another start, or running it again, changes nothing.
    before = event_count(app)
    assert app.carry_over_employment()["records_changed"] == 0
    make_app(settings).close()
    assert event_count(app) == before
    app.close()


def test_the_migrate_command_carries_hires_over(settings, monkeypatch, practitioners):
    """An upgrade is ``migrate`` and nothing else: the data migration runs after the schema's."""
    earlier = make_app(settings, practitioners)
    institution = filed(earlier, 1)
    ref = earlier._practitioner_ref("测试人员", sample_resident_id(67))
    with monkeypatch.context() as m:  # recorded as the earlier version did: no record
        m.setattr(earlier, "_employment_records_for", lambda objs: [])
        hire_cleared(earlier, institution, 67)
    head = earlier.log_head()
    earlier.close()
    env = {**os.environ, "TUOYU_REGISTRATION_DATABASE_URL": settings.database_url}
    done = subprocess.run([sys.executable, "-m", "tuoyu_registration", "migrate"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "data migration employment-records" in done.stdout
    app = RegistrationApplication(settings)  # built without the root: nothing runs at start
    assert app.recorder.max_tracking_id(EMPLOYMENT_CARRY_OVER) == head
    assert app.current_employers(ref) == [institution]
    again = subprocess.run([sys.executable, "-m", "tuoyu_registration", "migrate"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert "data migration" not in again.stdout  # done once
    app.close()


def test_the_employment_record_alone():
    record = EmploymentRecord("ref-1")
    assert record.id == employment_record_id_for("ref-1")
    assert record.note_hire("i-1", "h-1", "pending") and record.note_hire("i-1", "h-1",
                                                                          "employed")
    assert record.note_hire("i-1", "h-1", "employed") is False  # a replay changes nothing
    record.note_hire("i-2", "h-2", "employed")
    record.note_hire("i-3", "h-3", "employed")
    record.note_hire("i-3", "h-3", "released")
    assert record.employers == ["i-1", "i-2"]
    # Carried-over hires never overwrite what the record knows.
    assert record.carry_over([{"institution_id": "i-3", "hire_id": "h-3",
                               "status": "employed"},
                              {"institution_id": "i-4", "hire_id": "h-4",
                               "status": "employed"}], up_to=9)
    assert record.employers == ["i-1", "i-2", "i-4"]
    assert record.carry_over([{"institution_id": "i-4", "hire_id": "h-4",
                               "status": "released"}], up_to=10) is False
    with pytest.raises(ValueError):
        record.note_hire("i-1", "h-1", "fired")
