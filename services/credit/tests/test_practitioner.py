"""Unit tests of the Practitioner aggregate: sealed personal data (never a mask), bans (从业禁止)
and their terms, and background checks: barred at once by a ban in force, otherwise answered
by the public-security inquiry (never cleared without its answer), flagged for an officer."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tuoyu_credit.domain import DomainRuleViolated, Practitioner, practitioner_id_for
from tuoyu_shared.validation import FieldError

REF = "5f0c2b9e8d7a6c5b4a3f2e1d0c9b8a7f"
NAME = {"ref": REF, "sealed": "bmFtZQ=="}
ID_NUMBER = {"ref": REF, "sealed": "aWQ="}
INSTITUTION = uuid.UUID(int=11)
START = dt.date(2024, 5, 20)
BASIS = "《中华人民共和国刑法》第三十七条之一"
ANSWERED_AT = dt.datetime(2024, 5, 20, 8, 15, tzinfo=dt.UTC)


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


def answer(person: Practitioner, check_id: str, on: dt.date, result: str = "no_record",
           categories: tuple[str, ...] = ()) -> str:
    """The public-security inquiry's answer to a pending check (reference ``GA-<check id>``)."""
    return person.record_inquiry_answer(check_id, f"GA-{check_id}", result, list(categories),
                                        ANSWERED_AT, "credit-service", on)


def checked(person: Practitioner, on: dt.date, check_id: str = "check-1",
            result: str = "no_record", categories: tuple[str, ...] = ()) -> tuple[str, str]:
    """A check requested and answered: at once by a ban in force, else by the inquiry."""
    person.request_check(check_id, "hire", INSTITUTION, on)
    outcome = person.bar_by_ban(check_id, "credit-service", on) and "barred"
    if outcome is None:
        outcome = answer(person, check_id, on, result, categories)
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
    ({**ID_NUMBER, "masked": "310104********1234"}, "invalid_type"),  # never a mask
    ({"ref": REF}, "invalid_type"),
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

def test_a_check_is_barred_at_once_while_a_ban_is_in_force_and_answered_after_it_lifted():
    person = practitioner()
    ban(person, term=3)
    person.collect_events()
    assert checked(person, dt.date(2025, 1, 6), "check-1") == ("barred", "ban-1")
    assert person.check("check-1")["inquiry"] is None  # the ban list answered, no inquiry
    person.lift_expired_bans(dt.date(2027, 5, 20))
    assert checked(person, dt.date(2027, 5, 20), "check-2") == ("cleared", "GA-check-2")


def test_no_ban_leaves_the_check_pending_until_the_inquiry_answers():
    person = practitioner()
    person.request_check("check-1", "yearly", INSTITUTION, START)
    assert person.bar_by_ban("check-1", "credit-service", START) is None
    [requested] = person.collect_events()  # nothing but the request
    assert (requested.check_id, requested.reason, requested.institution_id,
            requested.requested_on) == ("check-1", "yearly", str(INSTITUTION), START)
    assert person.check("check-1")["state"] == "requested"
    assert person.pending_checks() == ["check-1"] and person.last_checked_on is None
    later = START + dt.timedelta(days=2)
    assert answer(person, "check-1", later) == "cleared"
    answered, completed = person.collect_events()
    assert type(answered).__qualname__ == "Practitioner.InquiryAnswered"
    assert (answered.check_id, answered.person_ref, answered.inquiry_reference,
            answered.result, answered.categories, answered.answered_at) == (
        "check-1", REF, "GA-check-1", "no_record", [], ANSWERED_AT)
    assert (completed.outcome, completed.reference, completed.officer, completed.completed_on,
            completed.answered_by) == ("cleared", "GA-check-1", "credit-service", later,
                                       "public_security")
    check = person.check("check-1")
    assert check["state"] == "completed" and check["inquiry"]["result"] == "no_record"
    assert person.pending_checks() == []


def test_a_record_found_bars_with_the_inquiry_reference_and_its_categories():
    person = practitioner()
    assert checked(person, START, "check-1", "record_found", ("violence", "abuse")) == (
        "barred", "GA-check-1")
    assert person.check("check-1")["inquiry"]["categories"] == ["abuse", "violence"]


def test_a_ban_imposed_while_the_check_waits_bars_it_even_on_no_record():
    person = practitioner()
    person.request_check("check-1", "hire", INSTITUTION, START)
    ban(person, term=5)
    assert answer(person, "check-1", START) == "barred"
    completed = person.collect_events()[-1]
    assert (completed.reference, completed.answered_by) == ("ban-1", "public_security")
    person.request_check("check-2", "hire", INSTITUTION, START)
    assert person.bar_by_ban("check-2", "credit-service", START) == "ban-1"
    assert person.collect_events()[-1].answered_by == "ban_list"


@pytest.mark.parametrize("result, categories, field", [
    ("no_record", ("abuse",), "categories"),
    ("record_found", (), "categories"),
    ("record_found", ("rumour",), "categories"),
    ("clear", (), "result"),
])
def test_an_answer_that_does_not_hold_together_records_nothing(result, categories, field):
    person = practitioner()
    person.request_check("check-1", "hire", INSTITUTION, START)
    person.collect_events()
    with pytest.raises(FieldError) as e:
        answer(person, "check-1", START, result, categories)
    assert e.value.field == field
    assert person.collect_events() == [] and person.pending_checks() == ["check-1"]


def test_barred_reference_is_the_ban_that_bars_longest():
    person = practitioner()
    ban(person, "ban-term", term=5)
    ban(person, "ban-life", term="lifetime", source="abuse_finding")
    ban(person, "ban-short", term=1)
    assert checked(person, dt.date(2024, 6, 1)) == ("barred", "ban-life")
    assert person.bans_not_ended(dt.date(2030, 1, 1)) == ["ban-life"]
    assert person.bans_not_ended(START - dt.timedelta(days=1)) == [
        "ban-life", "ban-short", "ban-term"]  # not started yet: not ended either


def test_check_steps_are_refused_out_of_order():
    person = practitioner()
    with pytest.raises(DomainRuleViolated) as e:
        answer(person, "check-1", START)
    assert e.value.state == "none"
    person.request_check("check-1", "hire", INSTITUTION, START)
    with pytest.raises(DomainRuleViolated) as e:
        person.request_check("check-1", "yearly", INSTITUTION, START)
    assert e.value.state == "requested"
    with pytest.raises(FieldError) as fe:
        answer(person, "check-1", START - dt.timedelta(days=1))
    assert fe.value.field == "completed_on"
    answer(person, "check-1", START)
    for step in (lambda: answer(person, "check-1", START),
                 lambda: person.bar_by_ban("check-1", "credit-service", START),
                 lambda: person.flag_check("check-1", "inquiry_rejected", "r", START)):
        with pytest.raises(DomainRuleViolated) as e:
            step()
        assert e.value.state == "completed"


def test_a_flagged_check_stays_pending_and_an_officer_has_it_sent_again():
    person = practitioner()
    person.request_check("check-1", "hire", INSTITUTION, START)
    person.collect_events()
    assert person.flag_check("check-1", "inquiry_rejected", "HTTP 400, field name", START)
    assert person.flag_check("check-1", "inquiry_rejected", "again", START) is False
    [flagged] = person.collect_events()
    assert (flagged.check_id, flagged.flag, flagged.reason, flagged.flagged_on) == (
        "check-1", "inquiry_rejected", "HTTP 400, field name", START)
    assert person.check("check-1")["state"] == "requested"
    assert person.check("check-1")["flag"]["flag"] == "inquiry_rejected"
    person.retry_check("check-1", "officer-2", "the name was corrected", START)
    [retried] = person.collect_events()
    assert (retried.officer, retried.reason) == ("officer-2", "the name was corrected")
    assert person.check("check-1")["flag"] is None
    with pytest.raises(DomainRuleViolated):  # not flagged: sent already
        person.retry_check("check-1", "officer-2", "again", START)
    assert answer(person, "check-1", START) == "cleared"


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
    answer(person, "check-2", dt.date(2025, 6, 1))
    requested, _answered, completed = person.collect_events()
    assert (requested.person_ref, requested.institution_id) == (REF, str(INSTITUTION))
    assert (completed.check_id, completed.institution_id, completed.person_ref,
            completed.outcome, completed.reference) == ("check-2", str(INSTITUTION), REF,
                                                        "cleared", "GA-check-2")
    imposed, lifted = requested_completed_imposed_lifted
    assert (imposed.person_ref, imposed.ban_ref) == (REF, "ban-1")
    assert (lifted.person_ref, lifted.ban_ref) == (REF, "ban-1")


def test_a_yearly_check_may_name_no_institution_but_a_hire_check_must():
    person = practitioner()
    person.request_check("yearly-1", "yearly", None, START)
    answer(person, "yearly-1", START)
    requested, _answered, completed = person.collect_events()
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


# -- a person first met in a hire (before credit issued refs) --------------------------------

def test_a_record_opened_from_a_hire_holds_the_ref_alone_until_an_officer_registers():
    person = Practitioner.register_from_hire(REF)
    assert person.id == practitioner_id_for(REF)
    [registered] = person.collect_events()
    assert (registered.name, registered.id_number, registered.registered_from) == (
        {"ref": REF}, {"ref": REF}, "hire")
    assert not person.identity_sealed
    person.request_check("check-1", "hire", INSTITUTION, START)
    person.flag_check("check-1", "identity_unknown", "no ID number", START)
    person.collect_events()
    with pytest.raises(DomainRuleViolated) as e:  # nothing to send yet
        person.retry_check("check-1", "officer-2", "try", START)
    assert e.value.state == "identity_unknown"
    assert person.seal_identity(NAME, ID_NUMBER) is True
    [sealed] = person.collect_events()
    assert type(sealed).__qualname__ == "Practitioner.IdentitySealed"
    assert (sealed.person_ref, sealed.name, sealed.id_number) == (REF, NAME, ID_NUMBER)
    assert person.identity_sealed and person.id_number == ID_NUMBER
    assert person.check("check-1")["flag"] is None  # it may be sent now
    assert person.seal_identity(NAME, ID_NUMBER) is False  # idempotent
    assert person.collect_events() == []


def test_an_officer_registration_is_sealed_from_the_start():
    person = practitioner()
    assert person.registered_from == "officer" and person.identity_sealed
    assert person.seal_identity(NAME, ID_NUMBER) is False


def test_sealing_refuses_clear_values_masks_and_another_persons_data():
    person = Practitioner.register_from_hire(REF)
    person.collect_events()
    for id_number in ("310104198805201234", {**ID_NUMBER, "ref": "someone-else"},
                      {**ID_NUMBER, "masked": "310104********1234"}):
        with pytest.raises(FieldError) as e:
            person.seal_identity(NAME, id_number)
        assert e.value.field == "id_number"
    assert person.collect_events() == [] and not person.identity_sealed


def test_events_of_version_1_are_read_without_their_masks():
    """Registrations and sealings recorded with masks (before version 2) lose them when read;
    completions of version 1 were answered by the ban list."""
    registered = {"person_ref": REF, "registered_from": "hire",
                  "name": {"ref": REF, "masked": "王*"},
                  "id_number": {"ref": REF, "masked": "310104********1234"}}
    Practitioner.Registered.upcast_v1_v2(registered)
    assert registered["name"] == {"ref": REF} and registered["id_number"] == {"ref": REF}
    sealed = {"person_ref": REF, "name": {**NAME, "masked": "王*"},
              "id_number": {**ID_NUMBER, "masked": "310104********1234"}}
    Practitioner.IdentitySealed.upcast_v1_v2(sealed)
    assert (sealed["name"], sealed["id_number"]) == (NAME, ID_NUMBER)
    completed = {"check_id": "c", "outcome": "cleared"}
    Practitioner.CheckCompleted.upcast_v1_v2(completed)
    assert completed["answered_by"] == "ban_list"
    snapshot = {"name": {**NAME, "masked": "王*"}, "id_number": {"ref": REF, "masked": "x"}}
    Practitioner.upcast_v1_v2(snapshot)
    assert snapshot == {"name": NAME, "id_number": {"ref": REF}}


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
    answer(person, "check-1", START)
    assert person.last_checked_on == START
    later = dt.date(2025, 5, 20)
    checked(person, later, "check-2")
    assert person.last_checked_on == later
