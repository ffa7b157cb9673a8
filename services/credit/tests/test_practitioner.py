"""Unit tests of the Practitioner aggregate: sealed personal data, bans (从业禁止) and their
terms, and background checks answered from the bans in force."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tuoyu_credit.domain import DomainRuleViolated, Practitioner, practitioner_id_for
from tuoyu_shared.validation import FieldError

REF = "5f0c2b9e8d7a6c5b4a3f2e1d0c9b8a7f"
NAME = {"ref": REF, "sealed": "bmFtZQ==", "masked": "王*"}
ID_NUMBER = {"ref": REF, "sealed": "aWQ=", "masked": "310104********1234"}
INSTITUTION = uuid.UUID(int=11)
START = dt.date(2024, 5, 20)
BASIS = "《中华人民共和国刑法》第三十七条之一"


def practitioner() -> Practitioner:
    person = Practitioner.register(REF, NAME, ID_NUMBER)
    person.collect_events()
    return person


def ban(person: Practitioner, ref: str = "ban-1", term: str | int = 3,
        starts_on: dt.date = START, **overrides) -> None:
    args = dict(source="court_ruling", legal_basis=BASIS, evidence=["(2024)沪0104刑初12号"],
                officer="officer-1", starts_on=starts_on, term=term)
    args.update(overrides)
    person.impose_ban(ref, **args)


def checked(person: Practitioner, on: dt.date, check_id: str = "check-1") -> tuple[str, str]:
    person.request_check(check_id, "hire", INSTITUTION, on)
    outcome = person.complete_check(check_id, "officer-9", on, check_reference=f"ref-{check_id}")
    completed = person.collect_events()[-1]
    assert completed.outcome == outcome
    return completed.outcome, completed.reference


# -- registration and personal data ----------------------------------------------------------

def test_register_derives_the_id_from_the_person_ref_and_carries_sealed_data():
    person = Practitioner.register(REF, NAME, ID_NUMBER)
    assert person.id == practitioner_id_for(REF) != practitioner_id_for("another")
    [registered] = person.collect_events()
    assert type(registered).__qualname__ == "Practitioner.Registered"
    assert (registered.person_ref, registered.name, registered.id_number) == (REF, NAME,
                                                                              ID_NUMBER)


@pytest.mark.parametrize("id_number, code", [
    ("310104198805201234", "invalid_type"),  # a clear number is never accepted
    ({"ref": REF, "masked": "310104********1234"}, "invalid_type"),
    ({**ID_NUMBER, "ref": "someone-else"}, "inconsistent_with_person"),
])
def test_register_refuses_anything_but_this_persons_sealed_data(id_number, code):
    with pytest.raises(FieldError) as e:
        Practitioner.register(REF, NAME, id_number)
    assert (e.value.field, e.value.code) == ("id_number", code)


# -- bans and their terms --------------------------------------------------------------------

def test_term_ban_covers_its_years_from_the_start():
    person = practitioner()
    ban(person, term=3)
    [imposed] = person.collect_events()
    assert type(imposed).__qualname__ == "Practitioner.BanImposed"
    assert (imposed.source, imposed.legal_basis, imposed.evidence, imposed.officer) == (
        "court_ruling", BASIS, ["(2024)沪0104刑初12号"], "officer-1")
    assert (imposed.term, imposed.term_years, imposed.ends_on) == ("years", 3,
                                                                   dt.date(2027, 5, 20))
    assert not person.is_barred(START - dt.timedelta(days=1))
    assert person.is_barred(START)
    assert person.is_barred(dt.date(2027, 5, 19))
    assert not person.is_barred(dt.date(2027, 5, 20))
    assert [b["ban_ref"] for b in person.active_bans(dt.date(2026, 1, 1))] == ["ban-1"]


def test_a_term_starting_on_29_february_ends_on_1_march():
    person = practitioner()
    ban(person, term=1, starts_on=dt.date(2024, 2, 29))
    assert person.collect_events()[0].ends_on == dt.date(2025, 3, 1)
    assert person.is_barred(dt.date(2025, 2, 28))


def test_lifetime_ban_never_ends_and_never_lifts():
    person = practitioner()
    ban(person, term="lifetime", source="abuse_finding")
    [imposed] = person.collect_events()
    assert (imposed.term, imposed.term_years, imposed.ends_on) == ("lifetime", None, None)
    assert person.is_barred(dt.date(2099, 12, 31))
    assert person.lift_expired_bans(dt.date(2099, 12, 31)) == []
    assert person.collect_events() == []


def test_timer_lifts_a_term_ban_once_it_has_ended():
    person = practitioner()
    ban(person, "ban-1", term=3)
    ban(person, "ban-2", term="lifetime")
    person.collect_events()
    assert person.lift_expired_bans(dt.date(2027, 5, 19)) == []
    assert person.lift_expired_bans(dt.date(2027, 6, 1)) == ["ban-1"]
    [lifted] = person.collect_events()
    assert type(lifted).__qualname__ == "Practitioner.BanLifted"
    assert (lifted.ban_ref, lifted.on, lifted.reason) == ("ban-1", dt.date(2027, 5, 20),
                                                          "term ended")
    assert person.lift_expired_bans(dt.date(2027, 6, 2)) == []  # idempotent
    assert person.collect_events() == []
    assert [b["ban_ref"] for b in person.active_bans(dt.date(2027, 6, 1))] == ["ban-2"]


@pytest.mark.parametrize("overrides, field, code", [
    ({"term": 0}, "term", "out_of_range"),
    ({"term": -2}, "term", "out_of_range"),
    ({"term": True}, "term", "invalid_type"),
    ({"term": "5"}, "term", "invalid_choice"),
    ({"term": "forever"}, "term", "invalid_choice"),
    ({"source": "rumour"}, "source", "invalid_choice"),
    ({"legal_basis": ""}, "legal_basis", "required"),
    ({"evidence": []}, "evidence", "required"),
    ({"officer": None}, "officer", "required"),
    ({"starts_on": "2024-05-20"}, "starts_on", "invalid_type"),
])
def test_bad_bans_are_refused_and_record_nothing(overrides, field, code):
    person = practitioner()
    with pytest.raises(FieldError) as e:
        ban(person, **overrides)
    assert (e.value.field, e.value.code) == (field, code)
    assert person.collect_events() == [] and person.bans == {}


def test_a_ban_reference_is_imposed_once():
    person = practitioner()
    ban(person)
    with pytest.raises(DomainRuleViolated) as e:
        ban(person, term="lifetime")
    assert e.value.state == "imposed"
    person.lift_expired_bans(dt.date(2030, 1, 1))
    with pytest.raises(DomainRuleViolated) as e:
        ban(person)
    assert e.value.state == "lifted"


# -- background checks -----------------------------------------------------------------------

def test_check_is_barred_while_a_ban_is_in_force_and_cleared_after_it_lifted():
    person = practitioner()
    ban(person, term=3)
    person.collect_events()
    assert checked(person, dt.date(2025, 1, 6), "check-1") == ("barred", "ban-1")
    person.lift_expired_bans(dt.date(2027, 5, 20))
    assert checked(person, dt.date(2027, 5, 20), "check-2") == ("cleared", "ref-check-2")


def test_check_outcome_follows_the_dates_even_before_the_timer_lifts():
    person = practitioner()
    ban(person, term=3)
    assert checked(person, dt.date(2027, 5, 20)) == ("cleared", "ref-check-1")
    assert person.bans["ban-1"]["lifted_on"] is None


def test_check_on_someone_never_banned_is_cleared_with_the_check_reference():
    person = practitioner()
    person.request_check("check-1", "yearly", INSTITUTION, START)
    assert person.complete_check("check-1", "officer-9", START) == "cleared"
    requested, completed = person.collect_events()
    assert (requested.check_id, requested.reason, requested.institution_id,
            requested.requested_on) == ("check-1", "yearly", str(INSTITUTION), START)
    assert (completed.outcome, completed.reference, completed.officer,
            completed.completed_on) == ("cleared", "check-1", "officer-9", START)
    assert person.check("check-1")["state"] == "completed"


def test_a_ban_imposed_after_the_request_bars_the_answer():
    person = practitioner()
    person.request_check("check-1", "hire", INSTITUTION, START)
    ban(person, term=5)
    assert person.complete_check("check-1", "officer-9", START) == "barred"


def test_barred_reference_is_the_ban_that_bars_longest():
    person = practitioner()
    ban(person, "ban-term", term=5)
    ban(person, "ban-life", term="lifetime", source="abuse_finding")
    ban(person, "ban-short", term=1)
    assert checked(person, dt.date(2024, 6, 1)) == ("barred", "ban-life")


def test_check_steps_are_refused_out_of_order():
    person = practitioner()
    with pytest.raises(DomainRuleViolated) as e:
        person.complete_check("check-1", "officer-9", START)
    assert e.value.state == "none"
    person.request_check("check-1", "hire", INSTITUTION, START)
    with pytest.raises(DomainRuleViolated) as e:
        person.request_check("check-1", "yearly", INSTITUTION, START)
    assert e.value.state == "requested"
    with pytest.raises(FieldError) as fe:
        person.complete_check("check-1", "officer-9", START - dt.timedelta(days=1))
    assert fe.value.field == "completed_on"
    person.complete_check("check-1", "officer-9", START)
    with pytest.raises(DomainRuleViolated) as e:
        person.complete_check("check-1", "officer-9", START)
    assert e.value.state == "completed"


def test_check_reason_must_be_hire_or_yearly():
    person = practitioner()
    with pytest.raises(FieldError) as e:
        person.request_check("check-1", "random", INSTITUTION, START)
    assert e.value.field == "reason"
    assert person.collect_events() == []


# -- what registration reads from the events -------------------------------------------------

def test_check_and_ban_events_carry_the_person_and_the_institution():
    person = practitioner()
    checked(person, START)
    ban(person, term=1)
    person.lift_expired_bans(dt.date(2025, 5, 20))
    requested_completed_imposed_lifted = person.collect_events()
    assert [type(e).__qualname__.split(".")[1] for e in requested_completed_imposed_lifted] == [
        "BanImposed", "BanLifted"]  # checked() collected the check's events already
    person.request_check("check-2", "hire", INSTITUTION, dt.date(2025, 6, 1))
    person.complete_check("check-2", "officer-9", dt.date(2025, 6, 1))
    requested, completed = person.collect_events()
    assert (requested.person_ref, requested.institution_id) == (REF, str(INSTITUTION))
    assert (completed.check_id, completed.institution_id, completed.person_ref,
            completed.outcome, completed.reference) == ("check-2", str(INSTITUTION), REF,
                                                        "cleared", "check-2")
    imposed, lifted = requested_completed_imposed_lifted
    assert (imposed.person_ref, imposed.ban_ref) == (REF, "ban-1")
    assert (lifted.person_ref, lifted.ban_ref) == (REF, "ban-1")


def test_a_yearly_check_may_name_no_institution_but_a_hire_check_must():
    person = practitioner()
    person.request_check("yearly-1", "yearly", None, START)
    person.complete_check("yearly-1", "officer-9", START)
    requested, completed = person.collect_events()
    assert requested.institution_id is None and completed.institution_id is None
    with pytest.raises(FieldError) as e:
        person.request_check("hire-1", "hire", None, START)
    assert e.value.field == "institution_id"
    assert person.collect_events() == []


def test_barring_ban_is_the_check_answer_without_a_check():
    person = practitioner()
    assert person.barring_ban(START) is None
    ban(person, "ban-term", term=5)
    ban(person, "ban-life", term="lifetime", source="abuse_finding")
    assert person.barring_ban(START) == "ban-life"
    assert person.barring_ban(START - dt.timedelta(days=1)) is None


# -- a person first met in a hire ------------------------------------------------------------

MASKED_NAME = {"ref": REF, "masked": "王*"}
MASKED_ID = {"ref": REF, "masked": "310104********1234"}


def test_a_record_opened_from_a_hire_holds_the_masks_only_until_an_officer_registers():
    person = Practitioner.register_from_hire(REF, MASKED_NAME, MASKED_ID)
    assert person.id == practitioner_id_for(REF)
    [registered] = person.collect_events()
    assert (registered.name, registered.id_number, registered.registered_from) == (
        MASKED_NAME, MASKED_ID, "hire")
    assert not person.identity_sealed
    assert person.seal_identity(NAME, ID_NUMBER) is True
    [sealed] = person.collect_events()
    assert type(sealed).__qualname__ == "Practitioner.IdentitySealed"
    assert (sealed.person_ref, sealed.name, sealed.id_number) == (REF, NAME, ID_NUMBER)
    assert person.identity_sealed and person.id_number == ID_NUMBER
    assert person.seal_identity(NAME, ID_NUMBER) is False  # idempotent
    assert person.collect_events() == []


def test_an_officer_registration_is_sealed_from_the_start():
    person = practitioner()
    assert person.registered_from == "officer" and person.identity_sealed
    assert person.seal_identity(NAME, ID_NUMBER) is False


@pytest.mark.parametrize("name, code", [
    (NAME, "invalid_type"),  # sealed data is not what registration publishes
    ({"ref": REF}, "invalid_type"),
    ({"ref": "someone-else", "masked": "王*"}, "inconsistent_with_person"),
    ({"ref": REF, "masked": "  "}, "required"),
])
def test_a_hire_record_takes_the_ref_and_the_mask_and_nothing_else(name, code):
    with pytest.raises(FieldError) as e:
        Practitioner.register_from_hire(REF, name, MASKED_ID)
    assert e.value.code == code and e.value.field.startswith("name")


def test_sealing_refuses_clear_values_and_another_persons_data():
    person = Practitioner.register_from_hire(REF, MASKED_NAME, MASKED_ID)
    person.collect_events()
    for id_number in ("310104198805201234", {**ID_NUMBER, "ref": "someone-else"}):
        with pytest.raises(FieldError) as e:
            person.seal_identity(NAME, id_number)
        assert e.value.field == "id_number"
    assert person.collect_events() == [] and not person.identity_sealed


# -- rosters (who must be re-checked yearly) -------------------------------------------------

def test_joining_and_leaving_a_roster_is_recorded_once_per_hire():
    person = practitioner()
    other = uuid.UUID(int=12)
    assert person.rosters == [] and person.last_checked_on is None
    assert person.join_roster(INSTITUTION, "hire-1", START) is True
    assert person.join_roster(str(INSTITUTION), "hire-1", START) is False  # a replay
    assert person.join_roster(other, "hire-2", START) is True
    joined = person.collect_events()
    assert [type(e).__qualname__ for e in joined] == ["Practitioner.JoinedRoster"] * 2
    assert (joined[0].person_ref, joined[0].institution_id, joined[0].hire_id,
            joined[0].on) == (REF, str(INSTITUTION), "hire-1", START)
    assert person.rosters == sorted([str(INSTITUTION), str(other)])
    later = START + dt.timedelta(days=30)
    assert person.leave_roster(INSTITUTION, "hire-1", later) is True
    assert person.leave_roster(INSTITUTION, "hire-1", later) is False  # a replay
    assert person.leave_roster(INSTITUTION, "hire-9", later) is False  # never joined
    [left] = person.collect_events()
    assert type(left).__qualname__ == "Practitioner.LeftRoster"
    assert (left.institution_id, left.hire_id, left.on) == (str(INSTITUTION), "hire-1", later)
    assert person.rosters == [str(other)]
    # A hire left is not joined again by a late replay of its hire.
    assert person.join_roster(INSTITUTION, "hire-1", START) is False
    assert person.collect_events() == [] and person.rosters == [str(other)]


def test_two_hires_at_one_institution_keep_the_person_on_its_roster_until_both_end():
    person = practitioner()
    person.join_roster(INSTITUTION, "hire-1", START)
    person.join_roster(INSTITUTION, "hire-2", START)
    person.leave_roster(INSTITUTION, "hire-1", START)
    assert person.rosters == [str(INSTITUTION)]
    person.leave_roster(INSTITUTION, "hire-2", START)
    assert person.rosters == []


def test_the_record_keeps_the_date_of_its_last_completed_check():
    person = practitioner()
    person.request_check("check-1", "hire", INSTITUTION, START)
    assert person.last_checked_on is None  # requested, not completed
    person.complete_check("check-1", "officer-9", START)
    assert person.last_checked_on == START
    later = dt.date(2025, 5, 20)
    checked(person, later, "check-2")
    assert person.last_checked_on == later
