"""The registration application through its whole lifecycle, against a real PostgreSQL:
commands, deadlines in working days, query tables, history, concurrency and the CSV import."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime

import psycopg
import pytest

from tuoyu_registration.application import InstitutionNotFound, RegistrationApplication
from tuoyu_registration.domain import DomainRuleViolated, EnrolmentReports
from tuoyu_registration.samples import (
    file_sample_institution as filed,
)
from tuoyu_registration.samples import (
    request_sample_hire,
    sample_csv,
    sample_enrolment,
    sample_filing_submission,
    sample_registration,
    sample_resident_id,
)
from tuoyu_shared.calendar_cn import WorkingCalendar
from tuoyu_shared.catalogue import validate_envelope
from tuoyu_shared.context import command_context
from tuoyu_shared.testing import FixedClock
from tuoyu_shared.validation import ValidationFailed

# Friday 2025-01-24 in Shanghai: 5 working days later, across the Spring Festival with its
# working Sunday 01-26, is 2025-02-07.
FRIDAY = datetime(2025, 1, 24, 2, 0, tzinfo=UTC)


Clock = FixedClock


@pytest.fixture
def clock():
    return Clock(FRIDAY)


@pytest.fixture
def app(settings_factory, clock, practitioners):
    application = RegistrationApplication(settings_factory("registration"), clock=clock,
                                          practitioners=practitioners,
                                          calendar=WorkingCalendar.from_file())
    yield application
    application.close()


def counts(app) -> tuple[int, int]:
    with psycopg.connect(app.settings.database_url) as conn:
        return (conn.execute("SELECT count(*) FROM registration_events").fetchone()[0],
                conn.execute("SELECT count(*) FROM person_keys").fetchone()[0])


def refused(app, command, *args) -> list[dict]:
    before = counts(app)
    with pytest.raises(ValidationFailed) as e:
        getattr(app, command)(*args)
    assert counts(app) == before, "a refused command wrote something"
    return e.value.to_dict()["errors"]


def refused_by_rule(app, command, *args) -> DomainRuleViolated:
    before = counts(app)
    with pytest.raises(DomainRuleViolated) as e:
        getattr(app, command)(*args)
    assert counts(app) == before, "a refused command wrote something"
    return e.value



def views(app):
    app.views_projector().catch_up()


def test_receipt_due_in_five_working_days_and_visible_when_overdue(app, clock):
    institution_id = str(app.register_institution(sample_registration(1)))
    due = app.submit_filing(institution_id, sample_filing_submission())
    assert due == "2025-02-07"
    views(app)
    [waiting] = app.filings_awaiting()
    assert (waiting["stage"], waiting["due_on"], waiting["overdue"]) == (
        "receipt", "2025-02-07", False)
    clock.now = datetime(2025, 2, 10, 2, tzinfo=UTC)
    assert app.filings_awaiting()[0]["overdue"] is True
    app.issue_filing_receipt(institution_id, {"receipt_number": "BA-1"})
    views(app)
    [waiting] = app.filings_awaiting()
    assert waiting["stage"] == "verification"
    # 15 working days from Monday 2025-02-10
    assert waiting["due_on"] == "2025-03-03"


def test_malformed_or_incomplete_filing_materials_are_refused_naming_each_field(app):
    institution_id = str(app.register_institution(sample_registration(1)))
    submission = sample_filing_submission()
    del submission["fire_safety_passed"]
    submission["classes"][0]["class_type"] = "baby"
    errors = refused(app, "submit_filing", institution_id, submission)
    assert {e["field"] for e in errors} == {"fire_safety_passed", "classes[0].class_type"}
    for overrides, field, code in (
            ({"hygiene_evaluation_passed": False}, "hygiene_evaluation_passed", "not_passed"),
            ({"fire_safety_passed": False}, "fire_safety_passed", "not_passed"),
            ({"staff": {"carer": 9, "health": 1, "security": 1}}, "staff.carer",
             "inconsistent")):
        [error] = refused(app, "submit_filing", institution_id,
                          sample_filing_submission(**overrides))
        assert (error["field"], error["code"]) == (field, code)


def breaching_submission() -> dict:
    """Materials complete, two standards breached: a toddler class of 16 (at most 15) and
    no security staff."""
    submission = sample_filing_submission(
        staff={"carer": 11, "health": 1, "cook": 2, "security": 0, "manager": 2})
    submission["classes"][1] = {"class_type": "toddler", "places": 16, "carers": 4}
    return submission


def test_a_filing_breaching_the_standards_is_accepted_with_findings_for_verification(app):
    """备案 follows the procedure: the submission is accepted with its findings, the receipt
    falls due as for any filing, and verification (核实) decides each finding."""
    institution_id = str(app.register_institution(sample_registration(1)))
    assert app.submit_filing(institution_id, breaching_submission()) == "2025-02-07"
    view = app.institution(institution_id)
    assert view["status"] == "filing_submitted" and view["places"] == 46
    assert [(f["field"], f["code"]) for f in view["filing_findings"]] == [
        ("classes[1].places", "out_of_range"), ("staff.security", "not_staffed")]
    assert "at most 15" in view["filing_findings"][0]["reason"]
    [submitted] = [h for h in app.institution_record(institution_id)["history"]
                   if h["event_type"] == "InstitutionFilingSubmitted"]
    assert submitted["data"]["findings"] == view["filing_findings"]
    app.issue_filing_receipt(institution_id, {"receipt_number": "BA-1"})
    # Compliant needs every finding dismissed; non-compliant needs each decided too.
    errors = refused(app, "verify_filing", institution_id, {"outcome": "compliant"})
    assert [(e["field"], e["code"]) for e in errors] == [("finding_decisions", "required")]
    confirmed = [{"field": "classes[1].places", "decision": "confirmed",
                  "reason": "现场核实：托小班实有16名"},
                 {"field": "staff.security", "decision": "dismissed",
                  "reason": "保安公司派驻合同已补交"}]
    errors = refused(app, "verify_filing", institution_id,
                     {"outcome": "compliant", "finding_decisions": confirmed})
    assert [(e["field"], e["code"]) for e in errors] == [
        ("finding_decisions[0].decision", "inconsistent")]
    errors = refused(app, "verify_filing", institution_id, {
        "outcome": "non_compliant", "disclosure": "d", "findings": ["无急救箱"],
        "finding_decisions": [{"field": "classes[1].places", "decision": "maybe"}]})
    assert {(e["field"], e["code"]) for e in errors} == {
        ("finding_decisions[0].decision", "invalid_choice"),
        ("finding_decisions[0].reason", "required")}
    app.verify_filing(institution_id, {"outcome": "non_compliant",
                                       "finding_decisions": confirmed,
                                       "disclosure": "托小班超额收托，责令整改"})
    verification = app.institution(institution_id)["verification"]
    assert verification["outcome"] == "non_compliant"
    [notice] = verification["findings"]  # the confirmed finding, the dismissed one not
    assert notice.startswith("classes[1].places: a toddler class takes at most 15")
    assert [d["decision"] for d in verification["finding_decisions"]] == [
        "confirmed", "dismissed"]
    views(app)
    [row] = app.public_disclosure()
    assert row["non_compliance"] == "托小班超额收托，责令整改"
    for envelope in app.read_log(1, 100):
        validate_envelope(envelope.to_dict())


def test_findings_all_dismissed_verify_compliant(app):
    institution_id = str(app.register_institution(sample_registration(1)))
    app.submit_filing(institution_id, breaching_submission())
    app.issue_filing_receipt(institution_id, {"receipt_number": "BA-1"})
    app.verify_filing(institution_id, {"outcome": "compliant", "finding_decisions": [
        {"field": "staff.security", "decision": "dismissed", "reason": "派驻合同已补交"},
        {"field": "classes[1].places", "decision": "dismissed", "reason": "实设15个托位"}]})
    verification = app.institution(institution_id)["verification"]
    assert verification["outcome"] == "compliant"
    assert [d["field"] for d in verification["finding_decisions"]] == [
        "classes[1].places", "staff.security"]


def test_illegal_transitions_name_the_state(app):
    institution_id = filed(app)
    with pytest.raises(DomainRuleViolated) as e:
        app.submit_filing(institution_id, sample_filing_submission())
    assert e.value.state == "filed"
    app.deregister(institution_id, {"reason": "closing",
                                    "placement_of_children": "all 40 placed nearby"})
    with pytest.raises(DomainRuleViolated) as e:
        app.report_enrolment(institution_id, sample_enrolment("2025-01"))
    assert e.value.state == "deregistered"


def test_full_lifecycle_and_public_disclosure(app, clock):
    institution_id = filed(app)
    other = filed(app, 2)
    app.designate_affordable(institution_id, {"guide_price_fen": 180000,
                                              "document": "徐卫〔2025〕1号"})
    app.grant_demonstration_level(institution_id, {"level": "provincial", "document": "d"})
    app.report_enrolment(institution_id, sample_enrolment("2025-01"))
    app.correct_enrolment(institution_id, {**sample_enrolment("2025-01", second_children=10),
                                           "reason": "miscounted"})
    app.file_change(institution_id, {"changes": {"address": "天平路 99 号"}})
    app.suspend_for_rectification(other, {"order_reference": "ORDER-1", "reason": "fire"})
    views(app)
    public = {row["institution_id"]: row for row in app.public_disclosure()}
    assert public[institution_id]["affordable"] is True
    assert public[institution_id]["guide_price_fen"] == 180000
    assert public[institution_id]["demonstration_level"] == "provincial"
    assert public[institution_id]["address"] == "天平路 99 号"
    assert public[institution_id]["person_in_charge"] == "王**"
    assert public[other]["status"] == "suspended"
    assert [r["institution_id"] for r in app.public_disclosure(affordable=True)] == [
        institution_id]
    assert app.public_disclosure(district="黄浦区") == []
    record = app.institution_record(institution_id)
    types = [h["event_type"] for h in record["history"]]
    assert types[:3] == ["InstitutionRegistered", "InstitutionFilingSubmitted",
                         "InstitutionFiled"]
    assert "InstitutionEnrolmentReportCorrected" in types
    change = next(h for h in record["history"] if h["event_type"] == "InstitutionChangeFiled")
    assert change["data"]["previous"] == {"address": "天平路 1 号"}
    # What was it on an earlier version?
    assert app.institution(institution_id, version=1)["status"] == "registered"
    for envelope in app.read_log(1, 100):
        validate_envelope(envelope.to_dict())


def test_non_compliant_verification_is_disclosed(app):
    institution_id = filed(app)
    errors = refused(app, "verify_filing", institution_id, {"outcome": "non_compliant"})
    assert {e["field"] for e in errors} == {"findings", "disclosure"}
    app.verify_filing(institution_id, {"outcome": "non_compliant", "findings": ["无急救箱"],
                                       "disclosure": "未配备急救箱，责令整改"})
    views(app)
    [row] = app.public_disclosure()
    assert row["non_compliance"] == "未配备急救箱，责令整改"


def test_enrolment_over_places_is_refused_and_a_month_only_once(app):
    institution_id = filed(app)
    too_many = sample_enrolment("2025-01")
    too_many["classes"][2]["children"] = 21
    too_many["classes"][2]["carers"] = 4
    too_many["classes"][2]["age_bands"] = {"m24_36": 21}
    [error] = refused(app, "report_enrolment", institution_id, too_many)
    assert error["code"] == "exceeds_places"
    app.report_enrolment(institution_id, sample_enrolment("2025-01"))
    with pytest.raises(DomainRuleViolated):
        app.report_enrolment(institution_id, sample_enrolment("2025-01"))
    [error] = refused(app, "report_enrolment", institution_id, sample_enrolment("2025-13"))
    assert error["field"] == "month"


def test_a_month_reported_once_however_it_is_written(app, clock):
    institution_id = filed(app)  # filed on 2025-01-24
    app.report_enrolment(institution_id, sample_enrolment("2025-1"))
    assert list(app.institution(institution_id)["enrolment"]) == ["2025-01"]
    with pytest.raises(DomainRuleViolated):
        app.report_enrolment(institution_id, sample_enrolment("2025-01"))
    app.correct_enrolment(institution_id, {**sample_enrolment("2025-1", second_children=10),
                                           "reason": "miscounted"})
    enrolment = app.institution(institution_id)["enrolment"]
    assert list(enrolment) == ["2025-01"] and enrolment["2025-01"]["second_children"] == 10
    # not a month that has not begun (Shanghai time), reported or corrected
    for command, extra in (("report_enrolment", {}), ("correct_enrolment", {"reason": "r"})):
        [error] = refused(app, command, institution_id, {**sample_enrolment("2025-2"), **extra})
        assert (error["field"], error["code"]) == ("month", "in_future")
    # 2025-01-31 18:00 UTC is already February in Shanghai
    clock.now = datetime(2025, 1, 31, 18, tzinfo=UTC)
    app.report_enrolment(institution_id, sample_enrolment("2025-02"))
    # nor a month before the filing receipt
    error = refused_by_rule(app, "report_enrolment", institution_id,
                            sample_enrolment("2024-12"))
    assert error.state == "filed" and "2024-12" in str(error) and "2025-01" in str(error)


def test_health_managed_children_are_published_with_the_report_and_its_correction(app):
    """健康管理: the figure a report and its correction give is in the published payloads
    (InstitutionEnrolmentReported and ...Corrected, version 3) and in the month's figures;
    a report without it, or with more than the children reported, is refused naming it."""
    institution_id = filed(app)
    start = app.log_head() + 1
    [error] = refused(app, "report_enrolment", institution_id,
                      sample_enrolment("2025-01", health_managed_children=41))  # of 40
    assert (error["field"], error["code"]) == ("health_managed_children", "inconsistent")
    without = sample_enrolment("2025-01")
    del without["health_managed_children"]
    for command, extra in (("report_enrolment", {}), ("correct_enrolment", {"reason": "r"})):
        [error] = refused(app, command, institution_id, {**without, **extra})
        assert (error["field"], error["code"]) == ("health_managed_children", "required")
    app.report_enrolment(institution_id, sample_enrolment("2025-01"))  # 36 of the 40
    app.correct_enrolment(institution_id, {
        **sample_enrolment("2025-01", health_managed_children=38),
        "reason": "two yearly health checks recorded late"})
    published = [e for e in app.read_log(start, 100)
                 if e.event_type.startswith("InstitutionEnrolmentReport")]
    assert [(e.event_type, e.schema_version, e.payload["children"],
             e.payload["health_managed_children"]) for e in published] == [
        ("InstitutionEnrolmentReported", 3, 40, 36),
        ("InstitutionEnrolmentReportCorrected", 3, 40, 38)]
    assert published[1].payload["previous"]["health_managed_children"] == 36
    for envelope in published:
        assert envelope.payload["institution_id"] == institution_id
        validate_envelope(envelope.to_dict())
    assert app.institution(institution_id)["enrolment"]["2025-01"] == {
        "children": 40, "second_children": 9, "third_children": 2,
        "health_managed_children": 38}


def _stored_as_version_2(mapper, event):
    """How version 2 stored the event: without health_managed_children."""
    stored = mapper.to_stored_event(event)
    state = dict(vars(event))
    for name in ("originator_id", "originator_version", "health_managed_children"):
        del state[name]
    data = mapper.transcoder.encode({**state, "class_version": 2})
    if mapper.compressor:
        data = mapper.compressor.compress(data)
    if mapper.cipher:
        data = mapper.cipher.encrypt(data)
    return dataclasses.replace(stored, state=data)


def test_a_report_stored_before_health_management_has_it_unknown(app):
    """A report of version 2 in the log: read, its month's figure is None; published (a
    replay, a gap filled) as version 3 with null; a correction keeps None as previous."""
    institution_id = filed(app)
    institution = app.repository.get(app._id(institution_id))
    reports = EnrolmentReports.for_institution(institution)
    figures = sample_enrolment("2025-01")
    reports.report(figures["month"], figures["classes"], figures["second_children"],
                   figures["third_children"], 36, institution.facts)
    opened, reported = reports.collect_events()
    start = app.log_head() + 1
    app.recorder.insert_events([app.mapper.to_stored_event(opened),
                                _stored_as_version_2(app.mapper, reported)])
    assert app.institution(institution_id)["enrolment"]["2025-01"][
        "health_managed_children"] is None
    app.correct_enrolment(institution_id, {**figures, "reason": "health figure added"})
    published = {e.event_type: e for e in app.read_log(start, 100)}
    assert published["InstitutionEnrolmentReported"].schema_version == 3
    assert published["InstitutionEnrolmentReported"].payload["health_managed_children"] is None
    corrected = published["InstitutionEnrolmentReportCorrected"].payload
    assert corrected["health_managed_children"] == 36
    assert corrected["previous"]["health_managed_children"] is None
    for envelope in published.values():
        validate_envelope(envelope.to_dict())


def test_concurrent_commands_on_one_institution_are_all_kept(app, clock):
    institution_id = filed(app)  # in 2025-01
    clock.now = datetime(2026, 1, 5, 2, tzinfo=UTC)
    months = [f"2025-{m:02d}" for m in range(1, 13)]
    barrier = threading.Barrier(len(months))
    errors: list[Exception] = []

    def report(month):
        barrier.wait()
        try:
            with command_context(actor=f"officer-{month}"):
                app.report_enrolment(institution_id, sample_enrolment(month))
        except Exception as e:  # pragma: no cover - the assertion below shows it
            errors.append(e)

    threads = [threading.Thread(target=report, args=(m,)) for m in months]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(app.institution(institution_id)["enrolment"]) == months


def test_unknown_institution_and_bad_id(app):
    with pytest.raises(InstitutionNotFound):
        app.submit_filing("00000000-0000-0000-0000-000000000000", sample_filing_submission())
    [error] = refused(app, "resume", "not-a-uuid", {})
    assert error["field"] == "institution_id"


def test_hire_sealed_and_roster_views(app):
    institution_id = filed(app)
    errors = refused(app, "request_hire", institution_id, {
        "practitioner": {"name": "李四", "id_number": "310104198803011234"}, "role": "boss",
        "certificates": "x"})
    assert {e["field"] for e in errors} == {"practitioner.id_number", "role", "certificates"}
    hire_id = app.request_hire(institution_id, {
        "practitioner": {"name": "李四", "id_number": sample_resident_id(77)}, "role": "carer",
        "certificates": ["育婴师 0001"]})
    views(app)
    roster = app.institution(institution_id)["roster"]
    assert roster[hire_id]["status"] == "pending" and roster[hire_id]["name"] == "李*"
    assert app.employers_of(app._practitioner_ref("测试人员", sample_resident_id(77))) == []


def test_csv_import_reports_rejected_rows_and_imports_the_rest(app):
    lines = sample_csv(5).splitlines()
    lines[2] = lines[2].replace("toddler:15:3", "toddler:16:3")  # row 3: class too big
    bad_id = sample_resident_id(4)
    lines[4] = lines[4].replace(bad_id, bad_id[:-1] + ("0" if bad_id[-1] != "0" else "1"))
    lines.append(lines[1])  # row 7: the same credit code as row 2
    report = app.import_filings_csv("\n".join(lines) + "\n")
    assert report["rows"] == 6 and report["imported"] == 3
    rejected = {r["row"]: r["errors"][0]["field"] for r in report["rejected"]}
    assert rejected == {3: "classes[0].places", 5: "person_in_charge_id_number",
                        7: "credit_code"}
    again = app.import_filings_csv(sample_csv(1))
    assert again["imported"] == 0 and again["rejected"][0]["errors"][0]["code"] == "duplicate"
    views(app)
    assert len(app.public_disclosure()) == 3


def test_a_csv_import_lists_at_most_a_thousand_rejected_rows_and_counts_them_all(app):
    """Seen through the gateway: 600,000 bad rows made a 215 MB report that RabbitMQ refused
    to carry, and the registration process died of it."""
    header, *_ = sample_csv(1).splitlines()
    text = header + "\n" + "x,x\n" * 1500
    report = app.import_filings_csv(text)
    assert (report["rows"], report["imported"], report["rejected_count"]) == (1500, 0, 1500)
    assert len(report["rejected"]) == 1000 and report["rejected_truncated"] is True
    assert report["rejected"][0]["row"] == 2 and report["rejected"][-1]["row"] == 1001
    small = app.import_filings_csv(header + "\nx,x\n")
    assert small["rejected_truncated"] is False and small["rejected_count"] == 1


def test_a_csv_import_of_more_rows_than_one_command_takes_is_refused_whole(app):
    from tuoyu_registration.application import IMPORT_MAX_ROWS
    from tuoyu_shared.validation import ValidationFailed

    header, *_ = sample_csv(1).splitlines()
    with pytest.raises(ValidationFailed) as refused:
        app.import_filings_csv(header + "\n" + "x,x\n" * (IMPORT_MAX_ROWS + 1))
    [error] = refused.value.errors
    assert (error.field, error.code) == ("body", "too_many_rows")
    assert app.log_head() == 0


def csv_with(count: int, changes: dict[int, dict[str, str]]) -> str:
    """sample_csv with some rows' values changed (row numbers as in the report)."""
    from tuoyu_registration.importer import COLUMNS

    lines = sample_csv(count).splitlines()
    keys = list(COLUMNS)
    for row, values in changes.items():
        cells = lines[row - 1].split(",")
        for key, value in values.items():
            cells[keys.index(key)] = value
        lines[row - 1] = ",".join(cells)
    return "\n".join(lines) + "\n"


def test_csv_import_refuses_what_a_filing_would_refuse(app):
    report = app.import_filings_csv(csv_with(4, {
        2: {"hygiene_evaluation_passed": "否"}, 3: {"fire_safety_passed": "否"},
        4: {"staff_carer": "5"}}))
    assert (report["rows"], report["imported"]) == (4, 1)
    rejected = {r["row"]: (r["errors"][0]["field"], r["errors"][0]["code"])
                for r in report["rejected"]}
    assert rejected == {2: ("hygiene_evaluation_passed", "not_passed"),
                        3: ("fire_safety_passed", "not_passed"),
                        4: ("staff.carer", "inconsistent")}


@pytest.mark.parametrize("chunk_size", [2000, 2])
def test_csv_import_racing_a_registration_reports_the_collision(app, monkeypatch, chunk_size):
    taken = str(app.register_institution(sample_registration(3)))  # row 4's credit code
    monkeypatch.setattr(app, "_existing", lambda ids: set())  # registered after the check
    report = app.import_filings_csv(sample_csv(5), chunk_size=chunk_size)
    assert (report["rows"], report["imported"]) == (5, 4)
    [row] = report["rejected"]
    assert row["row"] == 4
    assert (row["errors"][0]["field"], row["errors"][0]["code"]) == ("credit_code",
                                                                     "duplicate")
    assert app.institution(taken)["status"] == "registered"  # not overwritten
    assert counts(app)[0] == 5  # one event each: the registration and four imports
    views(app)
    assert len(app.public_disclosure()) == 4


def test_a_late_non_compliance_notice_is_recorded_and_shown_as_late(app, clock):
    institution_id = filed(app)
    due = app.institution(institution_id)["verification_due_on"]
    clock.now = datetime(2025, 4, 1, 2, tzinfo=UTC)  # weeks after the due date
    app.verify_filing(institution_id, {"outcome": "non_compliant", "findings": ["无急救箱"],
                                       "disclosure": "未配备急救箱，责令整改"})
    record = app.institution_record(institution_id)
    verification = record["institution"]["verification"]
    assert verification["notified_late"] is True and verification["notified_on"] > due
    last = record["history"][-1]
    assert last["event_type"] == "InstitutionFilingFoundNonCompliant"
    assert last["data"]["notified_late"] is True
    for envelope in app.read_log(1, 100):
        validate_envelope(envelope.to_dict())
    views(app)
    [row] = app.public_disclosure()
    assert row["non_compliance"] == "未配备急救箱，责令整改"


def hire_cleared(app, institution_id: str, n: int) -> str:
    hire_id = app.request_hire(institution_id, {
        "practitioner": {"name": "李四", "id_number": sample_resident_id(n)}, "role": "carer",
        "certificates": []})
    app.save(*app.on_background_check_completed({
        "institution_id": institution_id, "hire_id": hire_id, "outcome": "cleared",
        "reference": f"CHK-{n}"}))
    return hire_id


def table_rows(app) -> dict[str, list]:
    from tuoyu_registration import projections

    with psycopg.connect(app.settings.database_url) as conn:
        return {table: sorted(map(repr, conn.execute(f"SELECT * FROM {table}").fetchall()))
                for table in projections.TABLES}


def test_deregistration_ends_designations_staff_and_cases(app):
    institution_id = filed(app)
    app.designate_affordable(institution_id, {"guide_price_fen": 1, "document": "d"})
    app.grant_demonstration_level(institution_id, {"level": "district", "document": "d"})
    employed = hire_cleared(app, institution_id, 71)
    barred = hire_cleared(app, institution_id, 72)
    views(app)
    barred_ref = app._practitioner_ref("测试人员", sample_resident_id(72))
    app.save(*app.on_practitioner_barred({"practitioner_ref": barred_ref,
                                          "ban_reference": "BAN-1"}, [institution_id]))
    pending = app.request_hire(institution_id, {
        "practitioner": {"name": "张三", "id_number": sample_resident_id(73)},
        "role": "cook", "certificates": []})
    views(app)
    assert len(app.open_staff_cases()) == 1
    app.deregister(institution_id, {"reason": "closing", "placement_of_children": "placed"})
    view = app.institution(institution_id)
    assert view["affordable"] is None and view["demonstration"] is None
    assert {h: r["status"] for h, r in view["roster"].items()} == {
        employed: "released", barred: "released", pending: "pending"}
    assert all(case["closed_on"] for case in view["staff_cases"].values())
    # the background check of the pending hire answers late: nothing is hired
    assert app.on_background_check_completed({
        "institution_id": institution_id, "hire_id": pending, "outcome": "cleared",
        "reference": "CHK-73"}) == []
    for command in ("withdraw_affordable", "revoke_demonstration_level"):
        error = refused_by_rule(app, command, institution_id, {"reason": "again"})
        assert error.state == "deregistered"
    views(app)
    assert app.open_staff_cases() == []
    assert app.employers_of(barred_ref) == []
    with psycopg.connect(app.settings.database_url) as conn:
        assert conn.execute(
            "SELECT status, affordable, guide_price_fen, demonstration_level "
            "FROM public_register WHERE institution_id = %s", (institution_id,)
        ).fetchone() == ("deregistered", False, None, None)
    live = table_rows(app)
    from tuoyu_registration import projections

    projections.rebuild(app.settings.database_url)
    views(app)
    assert table_rows(app) == live


def test_a_refused_hire_or_change_seals_no_personal_data(app):
    registered = str(app.register_institution(sample_registration(2)))
    person = {"name": "赵六", "id_number": sample_resident_id(91), "phone": "13812345678"}
    error = refused_by_rule(app, "file_change", registered,
                            {"changes": {"person_in_charge": person}})
    assert error.state == "registered"
    institution_id = filed(app)
    app.deregister(institution_id, {"reason": "closing", "placement_of_children": "placed"})
    error = refused_by_rule(app, "request_hire", institution_id, {
        "practitioner": {"name": "李四", "id_number": sample_resident_id(92)},
        "role": "carer", "certificates": []})
    assert error.state == "deregistered"


def test_query_tables_rebuilt_from_the_log_equal_the_live_ones(app):
    from tuoyu_registration import projections

    institution_id = filed(app)
    app.designate_affordable(institution_id, {"guide_price_fen": 1, "document": "d"})
    app.import_filings_csv(sample_csv(3, start=10))
    views(app)
    live = app.public_disclosure()
    projections.rebuild(app.settings.database_url)
    assert app.public_disclosure() == []
    views(app)
    assert app.public_disclosure() == live


def test_parallel_csv_import_reports_like_the_single_process_one(app, settings_factory):
    lines = sample_csv(40).splitlines()
    lines[5] = lines[5].replace("toddler:15:3", "toddler:16:3")  # row 6: class too big
    lines += [lines[3], lines[9]]  # rows 42 and 43 repeat rows 4 and 10
    text = "\n".join(lines) + "\n"
    parallel = app.import_filings_csv(text, processes=2)
    single_app = RegistrationApplication(settings_factory("registration"))
    try:
        single = single_app.import_filings_csv(text, processes=1)
    finally:
        single_app.close()
    assert parallel == single
    assert (parallel["rows"], parallel["imported"]) == (42, 39)
    assert [r["row"] for r in parallel["rejected"]] == [6, 42, 43]
    assert app.log_head() == 39


def test_csv_import_rejects_the_row_of_a_person_whose_key_is_gone(app):
    """A ref whose key was erased while its index entry stayed (an erasure half done in
    another process) is never sealed for again: that row is refused, the others go in."""
    ref = app.vault.enrol("person_in_charge", sample_resident_id(2))
    with psycopg.connect(app.settings.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO person_keys (person_ref, erased_at) VALUES (%s, now())",
                     (ref,))
    report = app.import_filings_csv(sample_csv(3))
    assert report["imported"] == 2
    [rejected] = report["rejected"]
    assert rejected["row"] == 3 and rejected["errors"][0]["code"] == "erased"


def test_a_person_erased_and_imported_again_is_a_new_person(app):
    """After an erasure the service no longer knows the person: they come back with a new
    ref, and what was sealed under the old one stays unreadable."""
    app.import_filings_csv(sample_csv(1))
    old_ref = app.vault.find("person_in_charge", sample_resident_id(1))
    assert old_ref is not None
    erased = app.erase_person({"id_number": sample_resident_id(1), "reason": "本人申请",
                               "legal_basis": "个人信息保护法 第47条"})
    assert erased["erased"] == [{"kind": "person_in_charge", "person_ref": old_ref}]
    assert app.vault.find("person_in_charge", sample_resident_id(1)) is None
    new_ref = app.vault.enrol("person_in_charge", sample_resident_id(1))
    assert new_ref != old_ref and app.vault.is_erased(old_ref)


def test_a_practitioner_erased_here_but_kept_by_the_register_is_hired_by_ref_alone(
        app, practitioners):
    """Credit keeps a banned practitioner's record by law, registration erased its copy: a
    new hire of that person is still asked about (credit's check bars it), by ref alone,
    and nothing of theirs is stored here again."""
    first, second = (str(app.register_institution(sample_registration(n))) for n in (81, 82))
    request_sample_hire(app, first, 83)
    ref = app.vault.find("practitioner", sample_resident_id(83))
    erased = app.erase_person({"id_number": sample_resident_id(83), "reason": "本人申请",
                               "legal_basis": "个人信息保护法 第47条"})
    assert erased["erased"] == [{"kind": "practitioner", "person_ref": ref}]
    hire_id = request_sample_hire(app, second, 83)
    roster = app.institution(second)["roster"]
    assert roster[hire_id]["practitioner_ref"] == ref and roster[hire_id]["name"] == "（已删除）"
    [hired] = [e for e in app.read_log(1, 100)
               if e.event_type == "InstitutionPractitionerHireRequested"
               and e.payload["hire_id"] == hire_id]
    assert hired.payload["practitioner"] == {"ref": ref}
    # not found here again by the number: the erasure holds
    assert app.vault.find("practitioner", sample_resident_id(83)) is None
    exported = app.export_person({"id_number": sample_resident_id(83), "purpose": "查阅"})
    assert exported["refs"] == {} and exported["events"] == []
