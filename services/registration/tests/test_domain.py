"""Unit tests of the Institution aggregate's rules and lifecycle, and of its Roster's and
EnrolmentReports' (given the institution's facts): plain Python, no database."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    JSONTranscoder,
    Mapper,
    UUIDAsHex,
)

from tuoyu_registration.domain import (
    CareStandards,
    DomainRuleViolated,
    EnrolmentReports,
    Institution,
    Nature,
    ProviderKind,
    Roster,
    check_classes,
    check_credit_code_matches_nature,
    check_filing,
    filing_findings,
    institution_id_for,
    roster_changes,
)
from tuoyu_registration.samples import sample_credit_code, sample_enrolment
from tuoyu_shared.catalogue import validate_envelope
from tuoyu_shared.envelope import envelope_from_event, institution_id_of
from tuoyu_shared.validation import FieldError

PERSON = {"ref": "r", "name": {"ref": "r", "sealed": "x"}}
D1, D2, D3 = date(2025, 3, 3), date(2025, 3, 10), date(2025, 3, 31)


def register(**overrides) -> Institution:
    args = dict(name="小星星托育园", credit_code=sample_credit_code(1), nature=Nature.FOR_PROFIT,
                kind=ProviderKind.CHILDCARE_INSTITUTION, district="徐汇区", street="天平路街道",
                address="天平路 1 号", person_in_charge=PERSON)
    args.update(overrides)
    return Institution.register(**args)


def filing(**overrides) -> dict:
    data = {"service_types": ["full_day"],
            "classes": [{"class_type": "infant", "places": 10, "carers": 4},
                        {"class_type": "toddler", "places": 15, "carers": 3},
                        {"class_type": "older", "places": 20, "carers": 3}],
            "floor_area": {"indoor_m2": 480, "outdoor_m2": 200},
            "staff": {"carer": 10, "health": 1, "security": 1}, "meals_served": True,
            "hygiene_evaluation_passed": True, "fire_safety_passed": True}
    data.update(overrides)
    return data


def filed(**overrides) -> Institution:
    institution = register(**overrides)
    institution.submit_filing(filing(), D1, D2)
    institution.issue_filing_receipt("BA-1", D2, D3)
    return institution


def event_types(institution: Institution) -> list[str]:
    return [type(e).__qualname__ for e in institution.collect_events()]


def enrolment(month="2025-03", **overrides):
    data = sample_enrolment(month, **overrides)
    return (data["month"], data["classes"], data["second_children"], data["third_children"],
            data["health_managed_children"])


# ---- registration ---------------------------------------------------------------------------
def test_registration_derives_the_id_and_the_registering_authority():
    institution = register()
    assert institution.id == institution_id_for(sample_credit_code(1))
    assert institution.status == "registered"
    assert institution.registering_authority == "market_regulation"
    assert event_types(institution) == ["Institution.Registered"]


@pytest.mark.parametrize("prefix, nature, authority", [
    ("913101", Nature.FOR_PROFIT, "market_regulation"),
    ("523101", Nature.NON_PROFIT, "civil_affairs"),
    ("123101", Nature.NON_PROFIT, "staffing_office"),
    ("123101", Nature.PUBLIC_INSTITUTION, "staffing_office"),
    ("523101", Nature.FOR_PROFIT, None),          # a civil-affairs code cannot be for-profit
    ("913101", Nature.PUBLIC_INSTITUTION, None),  # an enterprise is no public institution
    ("913101", Nature.NON_PROFIT, None),
])
def test_credit_code_must_agree_with_the_declared_nature(prefix, nature, authority):
    code = sample_credit_code(5, prefix=prefix)
    if authority:
        assert check_credit_code_matches_nature(code, nature) == authority
        assert register(credit_code=code, nature=nature).registering_authority == authority
    else:
        with pytest.raises(FieldError) as e:
            register(credit_code=code, nature=nature)
        assert e.value.field == "credit_code" and e.value.code == "inconsistent_with_nature"


# ---- classes, places and ratios -------------------------------------------------------------
@pytest.mark.parametrize("class_type, places, carers, problem", [
    ("infant", 10, 4, None), ("infant", 11, 4, "places"), ("infant", 10, 3, "carers"),
    ("toddler", 15, 3, None), ("toddler", 16, 4, "places"), ("toddler", 15, 2, "carers"),
    ("older", 20, 3, None), ("older", 21, 3, "places"), ("older", 20, 2, "carers"),
    ("mixed", 18, 4, None), ("mixed", 19, 4, "places"), ("mixed", 18, 3, "carers"),
])
def test_class_size_limits_and_carer_ratios(class_type, places, carers, problem):
    classes = [{"class_type": class_type, "places": places, "carers": carers}]
    if problem is None:
        assert check_classes("childcare_institution", classes) == places
    else:
        with pytest.raises(FieldError) as e:
            check_classes("childcare_institution", classes)
        assert e.value.field == f"classes[0].{problem}"


def test_family_childcare_point_takes_five_children_one_carer_per_three():
    kind = ProviderKind.FAMILY_POINT.value
    assert check_classes(kind, [{"class_type": "mixed", "places": 5, "carers": 2}]) == 5
    with pytest.raises(FieldError) as e:
        check_classes(kind, [{"class_type": "mixed", "places": 5, "carers": 1}])
    assert e.value.code == "ratio_not_met"
    with pytest.raises(FieldError) as e:
        check_classes(kind, [{"class_type": "mixed", "places": 3, "carers": 1},
                             {"class_type": "mixed", "places": 3, "carers": 1}])
    assert e.value.field == "classes" and "at most 5" in e.value.reason


def test_standards_are_configuration():
    strict = CareStandards.from_dict({"max_children": {"infant": 8, "toddler": 15, "older": 20,
                                                       "mixed": 18}})
    with pytest.raises(FieldError):
        check_classes("childcare_institution",
                      [{"class_type": "infant", "places": 9, "carers": 3}], strict)


# ---- filing ---------------------------------------------------------------------------------
def test_filing_lifecycle_and_deadlines():
    institution = register()
    institution.submit_filing(filing(), D1, D2)
    assert (institution.status, institution.receipt_due_on, institution.places) == (
        "filing_submitted", D2, 45)
    institution.issue_filing_receipt("BA-1", D2, D3)
    assert institution.status == "filed" and institution.verification_due_on == D3
    assert event_types(institution) == ["Institution.Registered", "Institution.FilingSubmitted",
                                        "Institution.Filed"]


def test_no_second_filing_of_a_filed_institution():
    institution = filed()
    with pytest.raises(DomainRuleViolated) as e:
        institution.submit_filing(filing(), D1, D2)
    assert e.value.state == "filed" and "变更备案" in str(e.value)


def test_receipt_only_for_a_submitted_filing():
    with pytest.raises(DomainRuleViolated) as e:
        register().issue_filing_receipt("BA-1", D2, D3)
    assert e.value.state == "registered"


@pytest.mark.parametrize("overrides, field", [
    ({"hygiene_evaluation_passed": False}, "hygiene_evaluation_passed"),
    ({"fire_safety_passed": False}, "fire_safety_passed"),
    ({"staff": {"carer": 9, "health": 1, "security": 1}}, "staff.carer"),
    ({"classes": [{"class_type": "infant", "places": 11, "carers": 4}]}, "classes[0].places"),
    ({"staff": {"carer": 10, "security": 1}}, "staff.health"),
])
def test_an_import_is_refused_what_a_filing_is_refused_or_found(overrides, field):
    """An import has no verification of its own: a row with a finding is not taken over."""
    with pytest.raises(FieldError) as e:
        check_filing("childcare_institution", filing(**overrides))
    assert e.value.field == field
    with pytest.raises(FieldError) as e:
        Institution.imported(
            name="x", credit_code=sample_credit_code(1), nature=Nature.FOR_PROFIT,
            kind=ProviderKind.CHILDCARE_INSTITUTION, person_in_charge=PERSON, district="d",
            street="s", address="a", filing=filing(**overrides),
            receipt={"receipt_number": "BA-1", "issued_on": D2}, source="csv")
    assert e.value.field == field
    assert check_filing("childcare_institution", filing()) == 45


@pytest.mark.parametrize("field", ["hygiene_evaluation_passed", "fire_safety_passed"])
def test_filing_needs_hygiene_and_fire_safety(field):
    with pytest.raises(FieldError) as e:
        register().submit_filing(filing(**{field: False}), D1, D2)
    assert e.value.field == field


def test_staff_must_cover_the_carers_the_classes_need():
    with pytest.raises(FieldError) as e:
        register().submit_filing(filing(staff={"carer": 9, "health": 1, "security": 1}), D1, D2)
    assert e.value.field == "staff.carer"


BREACHING = filing(
    classes=[{"class_type": "infant", "places": 11, "carers": 4},   # over the limit of 10
             {"class_type": "toddler", "places": 15, "carers": 2},  # 15 need 3 carers
             {"class_type": "older", "places": 20, "carers": 3}],
    staff={"carer": 9, "health": 0, "security": 1})                  # no health-care staff


def test_a_filing_breaching_the_standards_is_accepted_with_its_findings():
    institution = register()
    institution.collect_events()
    institution.submit_filing(BREACHING, D1, D2)
    assert (institution.status, institution.receipt_due_on, institution.places) == (
        "filing_submitted", D2, 46)
    expected = [("classes[0].places", "out_of_range"), ("classes[1].carers", "ratio_not_met"),
                ("staff.health", "not_staffed")]
    assert [(f["field"], f["code"]) for f in institution.filing_findings] == expected
    [submitted] = institution.collect_events()
    assert [(f["field"], f["code"]) for f in submitted.findings] == expected
    assert all(f["reason"] for f in submitted.findings)
    clean = register()
    clean.submit_filing(filing(), D1, D2)
    assert clean.filing_findings == []


def test_findings_of_a_filing():
    assert filing_findings("childcare_institution", filing()) == []
    family = filing(classes=[{"class_type": "mixed", "places": 3, "carers": 1},
                             {"class_type": "mixed", "places": 3, "carers": 1}],
                    staff={"carer": 2})  # a family point needs no health or security staff
    assert [(f.field, f.code) for f in filing_findings("family_childcare_point", family)] == [
        ("classes", "out_of_range")]
    no_security = filing(staff={"carer": 10, "health": 1})
    assert [f.field for f in filing_findings("kindergarten_childcare_class", no_security)] == [
        "staff.security"]


def test_a_floor_area_rule_only_when_configured():
    small = filing(floor_area={"indoor_m2": 40, "outdoor_m2": 0},
                   classes=[{"class_type": "mixed", "places": 5, "carers": 2}],
                   staff={"carer": 2})
    assert filing_findings("family_childcare_point", small) == []  # no default: none sourced
    configured = CareStandards(indoor_m2_per_place=(("family_childcare_point", 9),))
    [finding] = filing_findings("family_childcare_point", small, configured)
    assert (finding.field, finding.code) == ("floor_area.indoor_m2", "below_minimum")
    assert "45" in finding.reason
    assert CareStandards.from_dict({"indoor_m2_per_place": {"family_childcare_point": 9}}
                                   ).indoor_m2_per_place == configured.indoor_m2_per_place


def submitted_with_findings() -> Institution:
    institution = register()
    institution.submit_filing(BREACHING, D1, D2)
    institution.issue_filing_receipt("BA-1", D2, D3)
    institution.collect_events()
    return institution


def decide(*decisions: str) -> list[dict]:
    fields = ["classes[0].places", "classes[1].carers", "staff.health"]
    return [{"field": field, "decision": decision, "reason": f"on site: {decision}"}
            for field, decision in zip(fields, decisions, strict=False)]


def test_verification_turns_confirmed_findings_into_the_notice():
    institution = submitted_with_findings()
    institution.find_non_compliant(D3, ["no first-aid kit"], D3, "超额收托，责令整改",
                                   decide("confirmed", "dismissed", "confirmed"))
    [found] = institution.collect_events()
    assert len(found.findings) == 3 and found.findings[-1] == "no first-aid kit"
    assert found.findings[0].startswith("classes[0].places: an infant class takes at most 10")
    assert found.findings[1].startswith("staff.health: ")
    assert [(d["field"], d["decision"]) for d in found.finding_decisions] == [
        ("classes[0].places", "confirmed"), ("classes[1].carers", "dismissed"),
        ("staff.health", "confirmed")]
    assert found.finding_decisions[0]["finding"].startswith("an infant class takes at most")
    assert institution.verification["outcome"] == "non_compliant"
    assert institution.verification["disclosure"] == "超额收托，责令整改"


def test_confirmed_findings_alone_make_a_notice():
    institution = submitted_with_findings()
    institution.find_non_compliant(D3, [], D3, "d", decide("confirmed", "confirmed",
                                                           "dismissed"))
    [found] = institution.collect_events()
    assert len(found.findings) == 2
    institution = submitted_with_findings()
    with pytest.raises(FieldError) as e:  # all dismissed and none of its own: no notice
        institution.find_non_compliant(D3, [], D3, "d", decide(*["dismissed"] * 3))
    assert e.value.field == "findings"


def test_a_filing_with_findings_is_compliant_only_if_every_finding_is_dismissed():
    institution = submitted_with_findings()
    with pytest.raises(FieldError) as e:
        institution.verify_compliant(D3, "fine", decide("dismissed", "confirmed", "dismissed"))
    assert (e.value.field, e.value.code) == ("finding_decisions[1].decision", "inconsistent")
    with pytest.raises(FieldError) as e:
        institution.verify_compliant(D3, "fine")
    assert (e.value.field, e.value.code) == ("finding_decisions", "required")
    assert "classes[0].places" in e.value.reason and "staff.health" in e.value.reason
    assert institution.collect_events() == []
    institution.verify_compliant(D3, "counted again on site", decide(*["dismissed"] * 3))
    [verified] = institution.collect_events()
    assert [d["decision"] for d in verified.finding_decisions] == ["dismissed"] * 3
    assert institution.verification["outcome"] == "compliant"


@pytest.mark.parametrize("decisions, field, code", [
    (decide("confirmed", "confirmed"), "finding_decisions", "required"),
    (decide("confirmed", "confirmed", "confirmed")
     + [{"field": "staff.cook", "decision": "confirmed", "reason": "r"}],
     "finding_decisions[3].field", "invalid_choice"),
    (decide("confirmed", "confirmed", "confirmed")
     + [{"field": "staff.health", "decision": "dismissed", "reason": "r"}],
     "finding_decisions[3].field", "duplicate"),
])
def test_each_finding_is_decided_once(decisions, field, code):
    institution = submitted_with_findings()
    with pytest.raises(FieldError) as e:
        institution.find_non_compliant(D3, ["x"], D3, "d", decisions)
    assert (e.value.field, e.value.code) == (field, code)
    assert institution.collect_events() == []


def test_no_decisions_for_a_filing_without_findings():
    institution = filed()
    with pytest.raises(FieldError) as e:
        institution.verify_compliant(D3, "n", decide("dismissed"))
    assert (e.value.field, e.value.code) == ("finding_decisions[0].field", "invalid_choice")


def test_events_and_snapshots_recorded_before_findings_read_as_without_any():
    state = {"filing": {}, "submitted_on": D1, "receipt_due_on": D2}
    Institution.FilingSubmitted.upcast_v1_v2(state)
    assert state["findings"] == []
    state = {"verified_on": D3, "notes": ""}
    Institution.FilingVerified.upcast_v1_v2(state)
    assert state["finding_decisions"] == []
    state = {"verified_on": D3, "findings": ["x"], "notified_on": D3, "disclosure": "d",
             "notified_late": False}
    Institution.FilingFoundNonCompliant.upcast_v2_v3(state)
    assert state["finding_decisions"] == []
    state = {"status": "filed"}
    Institution.upcast_v1_v2(state)
    assert state["filing_findings"] == []


def test_verification_compliant_or_non_compliant_within_the_deadline():
    institution = filed()
    institution.collect_events()
    institution.find_non_compliant(D3, ["no first-aid kit"], D3, "未配备急救箱，已责令整改")
    assert institution.verification["outcome"] == "non_compliant"
    assert institution.verification["notified_late"] is False
    [found] = institution.collect_events()
    assert found.notified_late is False
    with pytest.raises(DomainRuleViolated):
        institution.verify_compliant(D3, "second look")


def test_a_late_non_compliance_notice_is_recorded_as_late():
    institution = filed()  # the notice was due by D3
    institution.collect_events()
    late = date(2025, 4, 1)
    institution.find_non_compliant(late, ["no first-aid kit"], late, "未配备急救箱")
    [found] = institution.collect_events()
    assert found.notified_late is True and found.notified_on == late
    assert institution.verification["notified_late"] is True


def test_non_compliance_recorded_before_the_lateness_flag_reads_as_on_time():
    state = {"verified_on": D3, "findings": ["x"], "notified_on": D3, "disclosure": "d"}
    Institution.FilingFoundNonCompliant.upcast_v1_v2(state)
    assert state["notified_late"] is False


# ---- change filing --------------------------------------------------------------------------
def test_change_filing_keeps_the_previous_values():
    institution = filed()
    institution.collect_events()
    institution.file_change({"name": "新名称托育园", "classes": [
        {"class_type": "older", "places": 20, "carers": 3}]}, D3)
    [change] = institution.collect_events()
    assert change.previous["name"] == "小星星托育园" and change.previous["total_places"] == 45
    assert institution.name == "新名称托育园" and institution.places == 20


def test_change_filing_refuses_unchanged_or_unknown_fields():
    institution = filed()
    with pytest.raises(FieldError) as e:
        institution.file_change({"name": "小星星托育园"}, D3)
    assert e.value.code == "no_change"
    with pytest.raises(FieldError):
        institution.file_change({"credit_code": "x"}, D3)
    with pytest.raises(DomainRuleViolated) as e:
        register().file_change({"name": "x"}, D3)
    assert e.value.state == "registered"


# ---- affordable and demonstration -----------------------------------------------------------
def test_affordable_designation_and_withdrawal():
    institution = filed()
    institution.designate_affordable(180000, D3, "徐卫〔2025〕1号")
    with pytest.raises(DomainRuleViolated):
        institution.designate_affordable(180000, D3, "again")
    institution.withdraw_affordable(D3, "price above guide")
    assert institution.affordable is None
    with pytest.raises(DomainRuleViolated):
        register().designate_affordable(1, D3, "x")


def test_demonstration_level_granted_and_revoked():
    institution = filed()
    institution.grant_demonstration_level("provincial", D3, "doc")
    institution.grant_demonstration_level("national", D3, "doc")
    assert institution.demonstration["level"] == "national"
    institution.revoke_demonstration_level(D3, "complaint upheld")
    with pytest.raises(DomainRuleViolated):
        institution.revoke_demonstration_level(D3, "again")


# ---- enrolment (the institution's EnrolmentReports, given its facts) -------------------------
def reports_of(institution: Institution) -> EnrolmentReports:
    return EnrolmentReports.for_institution(institution)


def test_monthly_enrolment_report_and_correction():
    institution = filed()
    reports = reports_of(institution)
    reports.report(*enrolment(), institution.facts)
    assert reports.months["2025-03"]["children"] == 40
    with pytest.raises(DomainRuleViolated) as e:
        reports.report(*enrolment(), institution.facts)
    assert "correction" in str(e.value)
    month, classes, second, third, health = enrolment(second_children=10)
    reports.correct(month, classes, second, third, health, "miscounted", institution.facts)
    assert reports.months["2025-03"]["second_children"] == 10
    corrected = reports.collect_events()[-1]
    assert corrected.previous["second_children"] != 10  # the previous figures kept


def test_health_managed_children_are_some_of_the_children_enrolled():
    """健康管理: 0 to the children reported (40 in the sample); beyond, the report or the
    correction is refused naming the field, and nothing changes."""
    institution = filed()
    reports = reports_of(institution)
    reports.collect_events()
    month, classes, second, third, _ = enrolment()
    for health, code in ((41, "inconsistent"), (-1, "out_of_range")):
        with pytest.raises(FieldError) as e:
            reports.report(month, classes, second, third, health, institution.facts)
        assert (e.value.field, e.value.code) == ("health_managed_children", code)
        assert reports.months == {} and reports.pending_events == []
    reports.report(month, classes, second, third, 40, institution.facts)  # all of them
    assert reports.months["2025-03"]["health_managed_children"] == 40
    reports.collect_events()
    with pytest.raises(FieldError) as e:
        reports.correct(month, classes, second, third, 41, "miscounted", institution.facts)
    assert e.value.field == "health_managed_children" and "40" in e.value.reason
    assert reports.months["2025-03"]["health_managed_children"] == 40
    assert reports.pending_events == []
    reports.correct(month, classes, second, third, 35, "miscounted", institution.facts)
    [corrected] = reports.collect_events()
    assert (corrected.health_managed_children, corrected.previous["health_managed_children"]
            ) == (35, 40)
    assert reports.months["2025-03"]["health_managed_children"] == 35


def _stored_as_version_2(event):
    """The event as version 2 stored it (no health_managed_children), read back now."""
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO()):
        transcoder.register(transcoding)
    mapper = Mapper(transcoder=transcoder)
    stored = mapper.to_stored_event(event)
    state = transcoder.decode(stored.state)
    assert state.pop("class_version") == 3
    del state["health_managed_children"]
    state["class_version"] = 2
    return mapper.to_domain_event(dataclasses.replace(stored, state=transcoder.encode(state)))


def test_reports_recorded_before_health_management_read_as_unknown():
    """Version 2 events (and snapshots of the state then) had no health_managed_children:
    upcast, it is None (unknown), in the state too, and published as null (version 3)."""
    institution = filed()
    reports = reports_of(institution)
    reports.report(*enrolment(), institution.facts)
    month, classes, second, third, health = enrolment(second_children=10)
    reports.correct(month, classes, second, third, health, "miscounted", institution.facts)
    opened, *figures = reports.collect_events()
    old = [opened, *(_stored_as_version_2(e) for e in figures)]
    assert [type(e).__qualname__ for e in old] == [
        "EnrolmentReports.Opened", "EnrolmentReports.Reported", "EnrolmentReports.Corrected"]
    reported, corrected = old[1], old[2]
    assert reported.health_managed_children is None and reported.children == 40
    assert corrected.health_managed_children is None and corrected.second_children == 10
    replayed = None
    for e in old[:2]:
        replayed = e.mutate(replayed)
    assert replayed.months["2025-03"]["health_managed_children"] is None
    for n, e in enumerate(old[1:], 1):
        envelope = envelope_from_event("registration", n, e)
        assert envelope.schema_version == 3
        assert envelope.payload["health_managed_children"] is None
        validate_envelope(envelope.to_dict())
    # the functions themselves, and a snapshot of the state before the figure was asked
    for cls in (EnrolmentReports.Reported, EnrolmentReports.Corrected):
        state = {"month": "2025-03", "children": 40}
        cls.upcast_v2_v3(state)
        assert state["health_managed_children"] is None
    state = {"institution_id": "i", "months": {"2025-03": {"children": 40}}}
    EnrolmentReports.upcast_v1_v2(state)
    assert state["months"]["2025-03"]["health_managed_children"] is None


def test_a_month_is_one_month_however_it_is_written():
    institution = filed()
    reports = reports_of(institution)
    facts = institution.facts
    month, classes, second, third, health = enrolment()
    reports.report("2025-3", classes, second, third, health, facts)
    assert list(reports.months) == ["2025-03"]
    with pytest.raises(DomainRuleViolated) as e:
        reports.report("2025-03", classes, second, third, health, facts)
    assert "correction" in str(e.value)
    reports.correct("2025-3", classes, 10, third, health, "miscounted", facts)
    assert list(reports.months) == ["2025-03"]
    assert reports.months["2025-03"]["second_children"] == 10
    with pytest.raises(FieldError) as fe:
        reports.report("2025-13", classes, second, third, health, facts)
    assert fe.value.field == "month"


def test_no_enrolment_for_a_month_before_the_filing_receipt():
    institution = filed()  # receipt issued on 2025-03-10
    reports = reports_of(institution)
    month, classes, second, third, health = enrolment("2025-02")
    with pytest.raises(DomainRuleViolated) as e:
        reports.report(month, classes, second, third, health, institution.facts)
    assert e.value.state == "filed"
    assert "2025-02" in str(e.value) and "2025-03" in str(e.value)
    # months compare as (year, month): 2024-12 is before 2025-03 too
    with pytest.raises(DomainRuleViolated):
        reports.report("2024-12", classes, second, third, health, institution.facts)


def test_enrolment_beyond_places_or_ratio_is_refused():
    institution = filed()
    reports = reports_of(institution)
    too_many = [{"class_type": "older", "children": 21, "carers": 3, "age_bands": {}}]
    with pytest.raises(FieldError) as e:
        reports.report("2025-03", too_many, 0, 0, 0, institution.facts)
    assert e.value.code in ("exceeds_places", "ratio_not_met")
    short_of_carers = [{"class_type": "toddler", "children": 11, "carers": 2, "age_bands": {}}]
    with pytest.raises(FieldError) as e:
        reports.report("2025-03", short_of_carers, 0, 0, 0, institution.facts)
    assert e.value.code == "ratio_not_met"
    no_such_class = [{"class_type": "mixed", "children": 1, "carers": 1, "age_bands": {}}]
    with pytest.raises(FieldError) as e:
        reports.report("2025-03", no_such_class, 0, 0, 0, institution.facts)
    assert e.value.code == "not_filed"


def test_enrolment_is_checked_against_the_places_filed_now():
    institution = filed()
    reports = reports_of(institution)
    institution.file_change({"classes": [{"class_type": "older", "places": 20, "carers": 3}]},
                            D3)
    month, classes, second, third, health = enrolment()  # it has infant and toddler classes
    with pytest.raises(FieldError) as e:
        reports.report(month, classes, second, third, health, institution.facts)
    assert e.value.code == "not_filed"


def test_no_enrolment_report_for_a_deregistered_institution():
    institution = filed()
    institution.deregister("closing", "children placed at 2 nearby institutions", D3)
    with pytest.raises(DomainRuleViolated) as e:
        reports_of(institution).report(*enrolment(), institution.facts)
    assert e.value.state == "deregistered"
    with pytest.raises(DomainRuleViolated) as e:
        reports_of(register()).report(*enrolment(), register().facts)
    assert e.value.state == "registered"


# ---- roster and bans (the institution's Roster, given its status) ----------------------------
PRACTITIONER = {"ref": "p1", "name": {"ref": "p1", "sealed": "x"}}


def roster_of(institution: Institution) -> Roster:
    return Roster.for_institution(institution)


def test_hire_waits_for_the_background_check():
    institution = filed()
    roster, status = roster_of(institution), institution.status
    roster.request_hire("h1", PRACTITIONER, "carer", ["育婴师 123"], D3, status)
    assert roster.roster["h1"]["status"] == "pending"
    assert "name" not in roster.roster["h1"]  # nothing of the person: the vault shows masks
    assert roster.complete_background_check("h1", "cleared", "CHK-1", status)
    assert roster.roster["h1"]["status"] == "employed"
    assert not roster.complete_background_check("h1", "cleared", "CHK-1", status)  # replayed
    assert not roster.complete_background_check("h9", "cleared", "CHK-9", status)  # unknown


def test_hire_of_a_barred_practitioner_is_refused():
    institution = filed()
    roster, status = roster_of(institution), institution.status
    roster.request_hire("h1", PRACTITIONER, "carer", [], D3, status)
    roster.complete_background_check("h1", "barred", "BAN-7", status)
    assert roster.roster["h1"]["status"] == "refused"
    assert roster.roster["h1"]["ban_reference"] == "BAN-7"
    roster.request_hire("h2", PRACTITIONER, "cook", [], D3, status)  # may be asked again


def test_a_later_ban_opens_a_removal_case_closed_by_release():
    institution = filed()
    roster, status = roster_of(institution), institution.status
    roster.request_hire("h1", PRACTITIONER, "carer", [], D3, status)
    roster.complete_background_check("h1", "cleared", "CHK-1", status)
    assert roster.open_staff_removal_case("c1", "p1", "BAN-9", D3, date(2025, 4, 7))
    assert not roster.open_staff_removal_case("c1", "p1", "BAN-9", D3, date(2025, 4, 7))
    assert not roster.open_staff_removal_case("c2", "nobody", "BAN-1", D3, D3)
    roster.release("h1", date(2025, 4, 1), "barred")
    assert roster.staff_cases["c1"]["closed_on"] == date(2025, 4, 1)
    with pytest.raises(DomainRuleViolated) as e:
        roster.release("h1", date(2025, 4, 2), "again")
    assert e.value.state == "released"


def test_hire_and_change_guards_can_be_checked_before_anything_is_sealed():
    institution = filed()
    roster = roster_of(institution)
    roster.check_can_hire("p1", institution.status)
    institution.check_can_file_change()
    roster.request_hire("h1", PRACTITIONER, "carer", [], D3, institution.status)
    with pytest.raises(DomainRuleViolated):
        roster.check_can_hire("p1", institution.status)  # on the roster already
    with pytest.raises(DomainRuleViolated) as e:
        register().check_can_file_change()
    assert e.value.state == "registered"
    roster_of(register()).check_can_hire("p1", "registered")  # hiring before filing is fine
    institution.deregister("closing", "placed", D3)
    with pytest.raises(DomainRuleViolated) as e:
        roster.check_can_hire("p2", institution.status)
    assert e.value.state == "deregistered"
    with pytest.raises(DomainRuleViolated) as e:
        institution.check_can_file_change()
    assert e.value.state == "deregistered"


def test_roster_and_reports_are_streams_of_their_own_with_ids_from_the_institution():
    institution = filed()
    roster, reports = roster_of(institution), reports_of(institution)
    assert roster.id == Roster.id_for(institution.id) == Roster.id_for(str(institution.id))
    assert reports.id == EnrolmentReports.id_for(institution.id)
    assert len({institution.id, roster.id, reports.id}) == 3
    assert roster_of(filed(credit_code=sample_credit_code(2))).id != roster.id
    # a new institution's roster and reports carry nothing over
    assert event_types(roster) == ["Roster.Opened"]
    assert event_types(reports) == ["EnrolmentReports.Opened"]


def test_the_roster_and_reports_events_are_published_as_before_with_the_institution_named():
    institution = filed()
    roster, reports = roster_of(institution), reports_of(institution)
    roster.request_hire("h1", PRACTITIONER, "carer", [], D3, institution.status)
    roster.complete_background_check("h1", "cleared", "CHK-1", institution.status)
    roster.open_staff_removal_case("c1", "p1", "BAN-9", D3, D3)
    roster.release("h1", D3, "left")
    reports.report(*enrolment(), institution.facts)
    month, classes, second, third, health = enrolment(second_children=10)
    reports.correct(month, classes, second, third, health, "miscounted", institution.facts)
    events = [*roster.collect_events()[1:], *reports.collect_events()[1:]]
    envelopes = [envelope_from_event("registration", n, e) for n, e in enumerate(events, 1)]
    assert [(e.event_type, e.schema_version) for e in envelopes] == [
        ("InstitutionPractitionerHireRequested", 2), ("InstitutionPractitionerHired", 2),
        ("InstitutionStaffRemovalCaseOpened", 2), ("InstitutionPractitionerReleased", 2),
        ("InstitutionStaffRemovalCaseClosed", 2), ("InstitutionEnrolmentReported", 3),
        ("InstitutionEnrolmentReportCorrected", 3)]
    for envelope in envelopes:
        assert envelope.payload["institution_id"] == str(institution.id)
        assert institution_id_of(envelope) == str(institution.id)
        assert envelope.aggregate_id in (str(roster.id), str(reports.id))
        validate_envelope(envelope.to_dict())


def test_a_closed_roster_hires_nobody_whatever_the_status_it_is_given():
    """A command may read the institution before a deregistration commits and the roster
    after it: the roster's own closing still refuses."""
    institution = filed()
    roster = roster_of(institution)
    roster.request_hire("h1", PRACTITIONER, "carer", [], D3, "filed")
    roster.close(D3)
    assert roster.closed_on == D3
    with pytest.raises(DomainRuleViolated) as e:
        roster.check_can_hire("p2", "filed")
    assert e.value.state == "deregistered"
    assert roster.complete_background_check("h1", "cleared", "CHK-1", "filed") is False
    with pytest.raises(DomainRuleViolated):
        roster.close(D3)


def test_what_the_institutions_own_stream_recorded_is_carried_over():
    """An institution of the previous release: its roster and reports events in its own
    stream, replayed, then carried over into its Roster and EnrolmentReports."""
    institution = filed()
    trigger = institution.trigger_event
    trigger(Institution.EnrolmentReported, month="2025-03", classes=[], children=40,
            second_children=8, third_children=2)
    trigger(Institution.PractitionerHireRequested, hire_id="h1", practitioner=PRACTITIONER,
            role="carer", certificates=["育婴师 1"], requested_on=D3)
    trigger(Institution.PractitionerHired, hire_id="h1", practitioner_ref="p1",
            check_reference="CHK-1")
    trigger(Institution.PractitionerHireRequested, hire_id="h2",
            practitioner={**PRACTITIONER, "ref": "p2"}, role="cook", certificates=[],
            requested_on=D3)
    trigger(Institution.StaffRemovalCaseOpened, case_id="c1", practitioner_ref="p1",
            ban_reference="BAN-1", opened_on=D3, due_on=D3)
    assert institution.roster["h1"]["status"] == "employed"
    assert institution.enrolment["2025-03"]["children"] == 40
    roster, reports = roster_of(institution), reports_of(institution)
    assert event_types(roster) == ["Roster.Opened", "Roster.CarriedOver"]
    assert event_types(reports) == ["EnrolmentReports.Opened", "EnrolmentReports.CarriedOver"]
    assert roster.roster == institution.roster and roster.staff_cases == institution.staff_cases
    # the institution's stream never recorded health management: unknown (None)
    assert reports.months == {month: {**figures, "health_managed_children": None}
                              for month, figures in institution.enrolment.items()}
    # the rules go on from there
    with pytest.raises(DomainRuleViolated):
        roster.check_can_hire("p1", institution.status)  # employed already
    assert roster.complete_background_check("h2", "cleared", "CHK-2", institution.status)
    roster.release("h1", D3, "left")
    assert roster.staff_cases["c1"]["closed_on"] == D3
    with pytest.raises(DomainRuleViolated):
        reports.report(*enrolment(), institution.facts)  # 2025-03 is reported already
    # the carried-over event keeps what was carried, whatever changed after it
    roster2 = roster_of(institution)
    carried = roster2.pending_events[1]
    roster2.release("h1", D3, "left")
    assert carried.roster["h1"]["status"] == "employed"
    # an institution deregistered then: its roster is closed
    institution.deregister("closing", "placed", D3)
    assert roster_of(institution).closed_on == D3


def test_roster_changes_name_the_institution_in_either_shape():
    institution = filed()
    roster = roster_of(institution)
    roster.request_hire("h1", PRACTITIONER, "carer", [], D3, "filed")
    institution.collect_events()
    institution.trigger_event(Institution.PractitionerHireRequested, hire_id="h0",
                              practitioner={**PRACTITIONER, "ref": "p0"}, role="cook",
                              certificates=[], requested_on=D3)
    institution.trigger_event(Institution.PractitionerHired, hire_id="h0",
                              practitioner_ref="p0", check_reference="CHK-0")
    events = [*roster.collect_events(), *institution.collect_events()]
    assert roster_changes(events) == [("p1", str(institution.id), "h1", "pending"),
                                      ("p0", str(institution.id), "h0", "pending"),
                                      ("p0", str(institution.id), "h0", "employed")]

# ---- suspension and deregistration ----------------------------------------------------------
def test_suspension_and_resumption():
    institution = filed()
    institution.suspend("ORDER-1", "fire exits blocked", D3)
    assert institution.status == "suspended"
    with pytest.raises(DomainRuleViolated) as e:
        institution.suspend("ORDER-2", "again", D3)
    assert e.value.state == "suspended"
    institution.resume(date(2025, 4, 15), "rectified")
    assert institution.status == "filed"


def test_deregistration_is_final():
    institution = filed()
    institution.deregister("closing", "placed", D3)
    with pytest.raises(DomainRuleViolated) as e:
        institution.deregister("again", "", D3)
    assert e.value.state == "deregistered"
    with pytest.raises(DomainRuleViolated):
        institution.resume(D3, "")


def test_deregistration_ends_designations_employment_and_removal_cases():
    institution = filed()
    roster, status = roster_of(institution), "filed"
    institution.designate_affordable(180000, D3, "doc")
    institution.grant_demonstration_level("district", D3, "doc")
    roster.request_hire("h1", PRACTITIONER, "carer", [], D3, status)
    roster.complete_background_check("h1", "cleared", "CHK-1", status)
    other = {"ref": "p2", "name": {"ref": "p2", "sealed": "x"}}
    roster.request_hire("h2", other, "cook", [], D3, status)
    roster.complete_background_check("h2", "cleared", "CHK-2", status)
    roster.open_staff_removal_case("c1", "p1", "BAN-9", D3, date(2025, 4, 7))
    roster.request_hire("h3", {**other, "ref": "p3"}, "cook", [], D3, status)  # still pending
    institution.collect_events()
    roster.collect_events()
    gone = date(2025, 4, 2)
    # the application saves both in one transaction: the institution's events first
    institution.deregister("closing", "placed", gone)
    roster.close(gone)
    events = institution.collect_events()
    assert sorted(type(e).__qualname__ for e in events) == sorted([
        "Institution.Deregistered", "Institution.AffordableDesignationWithdrawn",
        "Institution.DemonstrationLevelRevoked"])
    withdrawn = next(e for e in events if type(e).__name__ == "AffordableDesignationWithdrawn")
    assert (withdrawn.reason, withdrawn.withdrawn_on) == ("deregistered", gone)
    on_roster = roster.collect_events()
    assert sorted(type(e).__qualname__ for e in on_roster) == sorted([
        "Roster.Released", "Roster.Released", "Roster.StaffRemovalCaseClosed",
        "Roster.Closed"])
    assert type(on_roster[-1]).__qualname__ == "Roster.Closed"
    assert {e.hire_id for e in on_roster if type(e).__name__ == "Released"} == {"h1", "h2"}
    assert {e.reason for e in on_roster if type(e).__name__ == "Released"} == {"deregistered"}
    assert institution.affordable is None and institution.demonstration is None
    assert {h: r["status"] for h, r in roster.roster.items()} == {
        "h1": "released", "h2": "released", "h3": "pending"}
    assert roster.staff_cases["c1"]["closed_on"] == gone


def test_a_deregistered_institution_refuses_designation_changes_and_late_hires():
    institution = filed()
    roster = roster_of(institution)
    institution.designate_affordable(180000, D3, "doc")
    institution.grant_demonstration_level("district", D3, "doc")
    roster.request_hire("h1", PRACTITIONER, "carer", [], D3, institution.status)
    institution.deregister("closing", "placed", D3)
    institution.collect_events()
    roster.collect_events()
    with pytest.raises(DomainRuleViolated) as e:
        institution.withdraw_affordable(D3, "again")
    assert e.value.state == "deregistered" and "deregistered" in str(e.value)
    with pytest.raises(DomainRuleViolated) as e:
        institution.revoke_demonstration_level(D3, "again")
    assert e.value.state == "deregistered" and "deregistered" in str(e.value)
    # the background check answers after the deregistration: nothing is hired
    assert roster.complete_background_check("h1", "cleared", "CHK-1",
                                            institution.status) is False
    assert roster.roster["h1"]["status"] == "pending"
    assert roster.collect_events() == []


def test_credit_listing_noted_once():
    institution = filed()
    assert institution.note_credit_listing("serious_dishonesty", True, "L1")
    assert not institution.note_credit_listing("serious_dishonesty", True, "L1")
    assert institution.note_credit_listing("serious_dishonesty", False, "L1")
    assert institution.credit_lists == []
