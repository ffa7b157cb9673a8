"""Unit tests of the credit rules, InstitutionCredit's scoring and the events of both aggregates:
plain Python, no database."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid

import pytest
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, UUIDAsHex

from tuoyu_credit.domain import (
    CauseType,
    InstitutionCredit,
    ListingRules,
    Practitioner,
    ScoringRules,
    institution_credit_id_for,
)
from tuoyu_shared.application import DateAsISO
from tuoyu_shared.envelope import encode, envelope_from_event
from tuoyu_shared.validation import FieldError, ValidationFailed

INSTITUTION = uuid.UUID("3f2c1a4e-8d5b-4c7a-9e61-0b2d3c4e5f60")
RULES = ScoringRules()
# Distinct numbers, so each cause is seen to read its own setting.
DISTINCT = ScoringRules(
    initial_score=150, max_score=200, grade_floors={"A": 190, "B": 100, "C": 50},
    finding_deductions={"minor": 1, "major": 2, "serious": 3, "critical": 4},
    overdue_rectification_deduction=5, fraud_clawback_deduction=6,
    refused_inspection_deduction=7, demonstration_addition=8, clean_period_addition=9)


def opened(rules: ScoringRules = RULES) -> InstitutionCredit:
    credit = InstitutionCredit.open(INSTITUTION, rules)
    credit.collect_events()
    return credit


def kinds(events) -> list[str]:
    return [type(e).__qualname__ for e in events]


def error_fields(excinfo) -> set[str]:
    return {e.field for e in excinfo.value.errors}


# -- ScoringRules ----------------------------------------------------------------------------

def test_default_rules():
    assert RULES.initial_score == 100 and RULES.max_score == 120
    assert dict(RULES.grade_floors) == {"A": 110, "B": 90, "C": 70, "D": 0}
    assert dict(RULES.finding_deductions) == {"minor": 2, "major": 5, "serious": 10,
                                              "critical": 20}
    assert (RULES.overdue_rectification_deduction, RULES.fraud_clawback_deduction,
            RULES.refused_inspection_deduction, RULES.demonstration_addition,
            RULES.clean_period_addition) == (10, 30, 20, 10, 5)
    assert ListingRules().response_window_days == 7


@pytest.mark.parametrize("score, grade", [
    (120, "A"), (110, "A"), (109, "B"), (90, "B"), (89, "C"), (70, "C"), (69, "D"), (0, "D"),
])
def test_grade_bands_include_their_floor(score, grade):
    assert RULES.grade_for(score) == grade


def test_rules_from_dict_keep_defaults_for_what_is_not_configured():
    rules = ScoringRules.from_dict({"initial_score": 80,
                                    "grade_floors": {"A": 95, "B": 80, "C": 60}})
    assert rules.initial_score == 80 and rules.max_score == 120
    assert dict(rules.grade_floors) == {"A": 95, "B": 80, "C": 60, "D": 0}
    assert rules.fraud_clawback_deduction == 30
    assert ScoringRules.from_dict(RULES.as_dict()) == RULES
    assert ListingRules.from_dict({"response_window_days": 10}).response_window_days == 10


def test_rules_from_dict_name_every_problem():
    with pytest.raises(ValidationFailed) as e:
        ScoringRules.from_dict({
            "bonus": 1, "max_score": -1, "clean_period_addition": 2.5,
            "grade_floors": {"A": 50, "B": 60, "C": 10, "E": 0},
            "finding_deductions": {"minor": 1, "major": True},
        })
    assert {"bonus", "max_score", "clean_period_addition", "grade_floors.E",
            "finding_deductions.major", "finding_deductions.serious",
            "finding_deductions.critical"} <= error_fields(e)
    with pytest.raises(ValidationFailed) as e:
        ScoringRules.from_dict({"grade_floors": {"A": 50, "B": 60, "C": 10}})
    assert error_fields(e) == {"grade_floors.A"}  # floors must fall from A to D


@pytest.mark.parametrize("settings, field", [
    ({"initial_score": 121}, "initial_score"),
    ({"max_score": 100}, "grade_floors.A"),  # A's floor (110) above the maximum
    ({"grade_floors": {"A": 110, "B": 90, "C": 70, "D": 5}}, "grade_floors.D"),
    ({"finding_deductions": {"minor": -1, "major": 5, "serious": 10, "critical": 20}},
     "finding_deductions.minor"),
])
def test_inconsistent_rules_are_refused(settings, field):
    with pytest.raises(ValidationFailed) as e:
        ScoringRules.from_dict(settings)
    assert field in error_fields(e)


def test_listing_rules_need_a_positive_window():
    with pytest.raises(ValidationFailed):
        ListingRules(response_window_days=0)
    with pytest.raises(ValidationFailed) as e:
        ListingRules.from_dict({"window": 3})
    assert error_fields(e) == {"window"}


def test_rules_cannot_be_changed_once_made():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RULES.max_score = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        RULES.finding_deductions["minor"] = 0  # type: ignore[index]


# -- identity and opening --------------------------------------------------------------------

def test_credit_id_is_derived_from_the_institution_id():
    credit = InstitutionCredit.open(str(INSTITUTION).upper(), RULES)
    assert credit.id == institution_credit_id_for(INSTITUTION)
    assert credit.id == institution_credit_id_for(str(INSTITUTION))
    assert credit.id != institution_credit_id_for(uuid.uuid4())
    assert credit.institution_id == str(INSTITUTION)
    with pytest.raises(FieldError) as e:
        institution_credit_id_for("not-a-uuid")
    assert e.value.field == "institution_id" and e.value.code == "invalid_format"


def test_opening_takes_the_initial_score_and_its_grade():
    credit = InstitutionCredit.open(INSTITUTION, ScoringRules(initial_score=80))
    assert (credit.score, credit.grade) == (80, "C")
    [event] = credit.collect_events()
    assert type(event).__qualname__ == "InstitutionCredit.Opened"
    assert (event.institution_id, event.score, event.grade) == (str(INSTITUTION), 80, "C")


# -- scoring ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cause, details, points", [
    ("finding_recorded", {"severity": "minor"}, -1),
    ("finding_recorded", {"severity": "major"}, -2),
    ("finding_recorded", {"severity": "serious"}, -3),
    ("finding_recorded", {"severity": "critical"}, -4),
    ("rectification_overdue", {}, -5),
    ("subsidy_clawback_fraud", {"amount_fen": 3_000_000}, -6),
    ("inspection_refused", {}, -7),
    ("demonstration_granted", {"level": "provincial"}, 8),
    ("clean_inspection_period", {"period": "2025"}, 9),
])
def test_each_cause_moves_the_score_by_its_configured_points(cause, details, points):
    credit = opened(DISTINCT)
    assert credit.apply_scoring_cause(cause, "event-1", DISTINCT, **details) is True
    [changed] = credit.collect_events()
    assert type(changed).__qualname__ == "InstitutionCredit.ScoreChanged"
    assert (changed.delta, changed.new_score) == (points, 150 + points)
    assert (changed.cause_type, changed.cause_ref, changed.details) == (cause, "event-1",
                                                                        details)
    assert f"{points:+d}" in changed.reason
    assert credit.score == 150 + points


def test_score_is_clamped_to_zero_and_the_cause_still_recorded():
    rules = ScoringRules(initial_score=10)
    credit = opened(rules)
    credit.apply_scoring_cause(CauseType.SUBSIDY_CLAWBACK_FRAUD, "clawback-1", rules)
    credit.apply_scoring_cause(CauseType.INSPECTION_REFUSED, "refusal-1", rules)
    first, second = credit.collect_events()
    assert (first.delta, first.new_score) == (-10, 0)
    assert "-30" in first.reason and "within 0..120" in first.reason
    assert (second.delta, second.new_score, second.cause_ref) == (0, 0, "refusal-1")
    assert credit.score == 0 and "refusal-1" in credit.applied_causes


def test_score_is_clamped_to_the_maximum():
    rules = ScoringRules(initial_score=118)
    credit = opened(rules)
    credit.apply_scoring_cause("demonstration_granted", "demo-1", rules)
    [changed] = credit.collect_events()
    assert (changed.delta, changed.new_score) == (2, 120)
    assert credit.score == 120


def test_grade_change_is_recorded_only_when_the_grade_changes():
    credit = opened()  # 100, B
    credit.apply_scoring_cause("finding_recorded", "f-1", RULES, severity="minor")  # 98 B
    assert kinds(credit.collect_events()) == ["InstitutionCredit.ScoreChanged"]
    credit.apply_scoring_cause("finding_recorded", "f-2", RULES, severity="critical")  # 78 C
    score, grade = credit.collect_events()
    assert type(score).__qualname__ == "InstitutionCredit.ScoreChanged"
    assert type(grade).__qualname__ == "InstitutionCredit.GradeChanged"
    assert (grade.old_grade, grade.new_grade, grade.cause_ref) == ("B", "C", "f-2")
    credit.apply_scoring_cause("demonstration_granted", "d-1", RULES)  # 88 C
    assert kinds(credit.collect_events()) == ["InstitutionCredit.ScoreChanged"]
    credit.apply_scoring_cause("clean_inspection_period", "c-1", RULES)  # 93 B
    _, grade = credit.collect_events()
    assert (grade.old_grade, grade.new_grade) == ("C", "B")
    assert (credit.score, credit.grade) == (93, "B")


def test_a_cause_applied_twice_changes_nothing_the_second_time():
    credit = opened()
    assert credit.apply_scoring_cause("finding_recorded", "f-1", RULES, severity="major")
    credit.collect_events()
    assert credit.apply_scoring_cause("finding_recorded", "f-1", RULES,
                                      severity="major") is False
    assert credit.apply_scoring_cause("inspection_refused", "f-1", RULES) is False
    assert credit.collect_events() == [] and credit.score == 95


def test_applied_causes_are_remembered_up_to_a_bound(monkeypatch):
    monkeypatch.setattr(InstitutionCredit, "causes_remembered", 3)
    credit = opened()
    for n in range(1, 5):
        credit.apply_scoring_cause("rectification_overdue", f"r-{n}", RULES)
    assert list(credit.applied_causes) == ["r-2", "r-3", "r-4"]
    assert credit.apply_scoring_cause("rectification_overdue", "r-4", RULES) is False
    assert credit.apply_scoring_cause("rectification_overdue", "r-1", RULES) is True  # forgotten


@pytest.mark.parametrize("cause, ref, details, field, code", [
    ("finding", "f-1", {}, "cause_type", "invalid_choice"),
    ("finding_recorded", "f-1", {}, "severity", "required"),
    ("finding_recorded", "f-1", {"severity": "grave"}, "severity", "invalid_choice"),
    ("rectification_overdue", "  ", {}, "cause_ref", "required"),
    ("rectification_overdue", "r-1", {"when": dt.datetime(2025, 1, 1)}, "details.when",
     "invalid_type"),
])
def test_bad_causes_are_refused_and_record_nothing(cause, ref, details, field, code):
    credit = opened()
    with pytest.raises(FieldError) as e:
        credit.apply_scoring_cause(cause, ref, RULES, **details)
    assert (e.value.field, e.value.code) == (field, code)
    assert credit.collect_events() == [] and credit.score == 100 and not credit.applied_causes


# -- events: names, serialisation, replay ----------------------------------------------------

D = dt.date(2025, 3, 3)
SEALED = {"ref": "p-1", "sealed": "c2VhbGVk"}


def credit_history() -> InstitutionCredit:
    credit = InstitutionCredit.open(INSTITUTION, RULES)
    credit.apply_scoring_cause("finding_recorded", "f-1", RULES, severity="critical",
                               found_on=D)
    credit.propose_listing("serious_dishonesty", "《条例》第X条", ["decision-1"], "officer-1", 365,
                           D)
    credit.send_listing_notice("serious_dishonesty", D, "officer-1", ListingRules())
    credit.receive_listing_response("serious_dishonesty", "我们已整改", D + dt.timedelta(1))
    credit.decide_listing("serious_dishonesty", "listed", D + dt.timedelta(2), "officer-2",
                          "fraud confirmed", "《条例》第X条", ["decision-1"])
    credit.apply_for_repair("serious_dishonesty", "已退回资金", ["receipt-1"], D + dt.timedelta(30))
    credit.review_repair("serious_dishonesty", True, "officer-3", "corrected", "《办法》第Y条",
                         ["review-1"], D + dt.timedelta(40))
    credit.propose_listing("trust_reward", "《办法》第Z条", ["report-1"], "officer-1", 30, D)
    credit.send_listing_notice("trust_reward", D, "officer-1", ListingRules())
    credit.decide_listing("trust_reward", "listed", D + dt.timedelta(8), "officer-2", "clean",
                          "", ["report-1"])
    credit.expire_listings(D + dt.timedelta(100))
    # On the trust-reward list again, then listed as seriously dishonest: off the first list.
    credit.propose_listing("trust_reward", "《办法》第Z条", ["report-2"], "officer-1", 365,
                           D + dt.timedelta(100))
    credit.send_listing_notice("trust_reward", D + dt.timedelta(100), "officer-1",
                               ListingRules())
    credit.decide_listing("trust_reward", "listed", D + dt.timedelta(110), "officer-2", "clean",
                          "", ["report-2"])
    credit.propose_listing("serious_dishonesty", "《条例》第X条", ["decision-2"], "officer-1",
                           365, D + dt.timedelta(120))
    credit.send_listing_notice("serious_dishonesty", D + dt.timedelta(120), "officer-1",
                               ListingRules())
    credit.decide_listing("serious_dishonesty", "listed", D + dt.timedelta(130), "officer-2",
                          "fraud confirmed", "《条例》第X条", ["decision-2"])
    return credit


def practitioner_history() -> Practitioner:
    person = Practitioner.register_from_hire("p-1")
    person.request_check("check-0", "hire", INSTITUTION, D)
    person.flag_check("check-0", "identity_unknown", "no ID number", D)
    person.seal_identity(SEALED, SEALED)
    person.request_check("check-2", "yearly", None, D)
    person.flag_check("check-2", "inquiry_rejected", "HTTP 400, field name", D)
    person.retry_check("check-2", "officer-1", "the name was corrected", D)
    person.record_inquiry_answer("check-2", "GA-2", "no_record", [],
                                 dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC), "credit", D)
    person.impose_ban("ban-1", "court_ruling", "刑法第三十七条之一", ["ruling-1"], "officer-1", D,
                      3)
    person.request_check("check-1", "hire", INSTITUTION, D)
    person.bar_by_ban("check-1", "officer-1", D)
    person.record_inquiry_answer("check-0", "GA-0", "record_found", ["abuse"],
                                 dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC), "credit", D)
    person.lift_expired_bans(dt.date(2030, 1, 1))
    return person


def test_published_event_types_are_outer_and_inner_names():
    events = credit_history().collect_events() + practitioner_history().collect_events()
    types = {envelope_from_event("credit", 1, e).event_type for e in events}
    assert types == {
        "InstitutionCreditOpened", "InstitutionCreditScoreChanged",
        "InstitutionCreditGradeChanged", "InstitutionCreditListingProposed",
        "InstitutionCreditListingNoticeSent", "InstitutionCreditListingResponseReceived",
        "InstitutionCreditListingDecided", "InstitutionCreditRepairApplied",
        "InstitutionCreditRepairReviewed", "InstitutionCreditListingRemovedEarly",
        "InstitutionCreditListingExpired", "InstitutionCreditListingEndedByDishonesty",
        "PractitionerRegistered",
        "PractitionerBanImposed", "PractitionerCheckRequested", "PractitionerCheckCompleted",
        "PractitionerBanLifted", "PractitionerIdentitySealed", "PractitionerCheckFlagged",
        "PractitionerCheckRetried", "PractitionerInquiryAnswered",
    }


def test_every_institution_credit_event_names_the_institution():
    for event in credit_history().collect_events():
        assert event.institution_id == str(INSTITUTION), type(event).__qualname__


@pytest.mark.parametrize("history", [credit_history, practitioner_history])
def test_events_serialise_and_replay_to_the_same_state(history):
    aggregate = history()
    events = aggregate.collect_events()
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DateAsISO()):
        transcoder.register(transcoding)
    mapper = Mapper(transcoder=transcoder)
    stored = [mapper.to_stored_event(e) for e in events]
    restored = [mapper.to_domain_event(s) for s in stored]
    assert [vars(e) for e in restored] == [vars(e) for e in events]
    for event in events:  # the published payload is plain JSON
        json.loads(encode(envelope_from_event("credit", 1, event).to_dict()))
    replayed = None
    for event in restored:
        replayed = event.mutate(replayed)
    assert {k: v for k, v in vars(replayed).items() if k != "_pending_events"} == {
        k: v for k, v in vars(aggregate).items() if k != "_pending_events"}
