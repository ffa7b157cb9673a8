"""Unit tests of the listing procedure on InstitutionCredit: proposal, prior notice (告知), the
window to respond (陈述申辩), decision, expiry by the timer and credit repair (信用修复)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tuoyu_credit.domain import (
    DomainRuleViolated,
    InstitutionCredit,
    ListingRules,
    ScoringRules,
)
from tuoyu_shared.validation import FieldError

SD, TR = "serious_dishonesty", "trust_reward"
BASIS = "《社会信用体系建设条例》第二十条"
WINDOW = ListingRules(response_window_days=10)
PROPOSED_ON = dt.date(2025, 3, 3)
NOTIFIED_ON = dt.date(2025, 3, 5)
RESPOND_BY = dt.date(2025, 3, 15)  # notified_on + 10 days
AFTER_WINDOW = dt.date(2025, 3, 16)
TERM_DAYS = 365


def credit() -> InstitutionCredit:
    aggregate = InstitutionCredit.open(uuid.UUID(int=7), ScoringRules())
    aggregate.collect_events()
    return aggregate


def propose(c: InstitutionCredit, list_name: str = SD, **overrides) -> str:
    args = dict(legal_basis=BASIS, evidence=["处罚决定书 2025-001"], officer="officer-1",
                proposed_term_days=TERM_DAYS, proposed_on=PROPOSED_ON)
    args.update(overrides)
    return c.propose_listing(list_name, **args)


def notice(c: InstitutionCredit, list_name: str = SD) -> dt.date:
    return c.send_listing_notice(list_name, NOTIFIED_ON, "officer-1", WINDOW)


def respond(c: InstitutionCredit, list_name: str = SD, on: dt.date = RESPOND_BY) -> None:
    c.receive_listing_response(list_name, "已于三月整改完毕", on)


def decide(c: InstitutionCredit, list_name: str = SD, decision: str = "listed",
           on: dt.date = AFTER_WINDOW, **overrides) -> None:
    args = dict(officer="officer-2", reason="fraud confirmed", legal_basis=BASIS,
                evidence=["处罚决定书 2025-001"])
    args.update(overrides)
    c.decide_listing(list_name, decision, on, **args)


def apply_repair(c: InstitutionCredit, on: dt.date = dt.date(2025, 6, 1)) -> None:
    c.apply_for_repair(SD, "已退回全部补贴并完成整改", ["退款凭证 88"], on)


def review(c: InstitutionCredit, approved: bool, on: dt.date = dt.date(2025, 6, 10)) -> None:
    c.review_repair(SD, approved, "officer-3", "corrected in full" if approved else "not yet",
                    "《失信行为纠正后的信用信息修复管理办法》", ["审核意见 12"], on)


def listed(list_name: str = SD) -> InstitutionCredit:
    c = credit()
    propose(c, list_name)
    notice(c, list_name)
    decide(c, list_name)
    c.collect_events()
    return c


def kinds(events) -> list[str]:
    return [type(e).__qualname__.split(".")[1] for e in events]


# -- the full procedure ----------------------------------------------------------------------

def test_full_procedure_with_a_response_then_expiry():
    c = credit()
    assert propose(c) == "serious_dishonesty-1"
    assert notice(c) == RESPOND_BY
    respond(c, on=RESPOND_BY)  # the last day of the window is still in time
    decide(c, on=dt.date(2025, 3, 10))  # before the window closes: allowed after a response
    proposed, noticed, responded, decided = c.collect_events()
    assert (proposed.list_name, proposed.legal_basis, proposed.evidence, proposed.officer,
            proposed.proposed_term_days) == (SD, BASIS, ["处罚决定书 2025-001"], "officer-1", 365)
    assert (noticed.notified_on, noticed.respond_by) == (NOTIFIED_ON, RESPOND_BY)
    assert (responded.statement, responded.received_on) == ("已于三月整改完毕", RESPOND_BY)
    assert (decided.decision, decided.officer, decided.reason, decided.legal_basis) == (
        "listed", "officer-2", "fraud confirmed", BASIS)
    assert (decided.term_start, decided.term_end) == (dt.date(2025, 3, 10), dt.date(2026, 3, 10))
    assert {e.listing_id for e in (proposed, noticed, responded, decided)} == {
        "serious_dishonesty-1"}
    assert c.listing(SD)["state"] == "listed"
    assert c.current_lists(dt.date(2025, 3, 9)) == []
    assert c.current_lists(dt.date(2026, 3, 9)) == [SD]
    # The term is [start, end): over on term_end even before the timer has run.
    assert c.current_lists(dt.date(2026, 3, 10)) == []


def test_timer_expires_an_entry_once_its_term_is_over():
    c = listed()  # term 2025-03-16 .. 2026-03-16
    assert c.expire_listings(dt.date(2026, 3, 15)) == []
    assert c.collect_events() == []
    assert c.expire_listings(dt.date(2026, 3, 20)) == ["serious_dishonesty-1"]
    [expired] = c.collect_events()
    assert type(expired).__qualname__ == "InstitutionCredit.ListingExpired"
    assert expired.on == dt.date(2026, 3, 16)  # the day the term ended, not the timer's day
    assert c.listing(SD)["state"] == "expired"
    assert c.expire_listings(dt.date(2026, 3, 21)) == []  # idempotent
    assert c.collect_events() == []


def test_decision_term_can_differ_from_the_proposed_term():
    c = credit()
    propose(c)
    notice(c)
    decide(c, term_days=30)
    decided = c.collect_events()[-1]
    assert decided.term_end == AFTER_WINDOW + dt.timedelta(days=30)


def test_dropped_entry_has_no_term_and_a_new_proposal_may_follow():
    c = credit()
    propose(c)
    notice(c)
    decide(c, decision="dropped", legal_basis="")
    decided = c.collect_events()[-1]
    assert (decided.decision, decided.term_start, decided.term_end) == ("dropped", None, None)
    assert decided.legal_basis == BASIS  # taken from the proposal
    assert c.listing(SD)["state"] == "dropped" and c.current_lists(AFTER_WINDOW) == []
    assert propose(c) == "serious_dishonesty-2"


def test_both_lists_run_their_own_procedures():
    c = listed(TR)
    propose(c, SD)
    assert c.listing(SD)["state"] == "proposed" and c.listing(TR)["state"] == "listed"
    notice(c, SD)
    respond(c, SD)
    assert c.current_lists(AFTER_WINDOW) == [TR]  # a dishonesty procedure alone ends nothing


# -- the two lists exclude each other --------------------------------------------------------

def test_a_dishonesty_listing_ends_the_trust_reward_entry_in_force():
    c = listed(TR)  # trust_reward-1 in force 2025-03-16 .. 2026-03-16
    propose(c, SD, proposed_on=dt.date(2025, 5, 5))
    c.send_listing_notice(SD, dt.date(2025, 5, 5), "officer-1", WINDOW)
    c.collect_events()
    decide(c, SD, on=dt.date(2025, 5, 20))
    decided, ended = c.collect_events()
    assert kinds([decided, ended]) == ["ListingDecided", "ListingEndedByDishonesty"]
    assert (ended.institution_id, ended.listing_id, ended.list_name, ended.on,
            ended.dishonesty_listing_id) == (str(uuid.UUID(int=7)), "trust_reward-1", TR,
                                             dt.date(2025, 5, 20), "serious_dishonesty-1")
    assert c.listing(TR)["state"] == "ended_by_dishonesty"
    assert c.listing(TR)["ended_on"] == dt.date(2025, 5, 20)
    assert c.current_lists(dt.date(2025, 5, 20)) == [SD]
    assert c.expire_listings(dt.date(2027, 1, 1)) == ["serious_dishonesty-1"]  # only SD left


def test_a_dishonesty_decision_to_drop_leaves_the_trust_reward_entry():
    c = listed(TR)
    propose(c, SD)
    notice(c, SD)
    decide(c, SD, decision="dropped")
    assert kinds(c.collect_events()) == ["ListingProposed", "ListingNoticeSent",
                                         "ListingDecided"]
    assert c.current_lists(AFTER_WINDOW) == [TR]


def test_a_trust_reward_term_already_over_expires_rather_than_ends_by_dishonesty():
    c = listed(TR)  # term ends 2026-03-16; the timer has not run yet
    propose(c, SD, proposed_on=dt.date(2026, 3, 1))
    c.send_listing_notice(SD, dt.date(2026, 3, 1), "officer-1", WINDOW)
    c.collect_events()
    decide(c, SD, on=dt.date(2026, 3, 20))
    decided, expired = c.collect_events()
    assert kinds([decided, expired]) == ["ListingDecided", "ListingExpired"]
    assert (expired.listing_id, expired.on) == ("trust_reward-1", dt.date(2026, 3, 16))
    assert c.current_lists(dt.date(2026, 3, 20)) == [SD]


@pytest.mark.parametrize("sd_state", ["proposed", "noticed", "responded", "listed",
                                      "repair_applied"])
def test_trust_reward_is_refused_while_a_dishonesty_entry_is_open_or_in_force(sd_state):
    c = at_state(sd_state)
    with pytest.raises(DomainRuleViolated) as e:
        propose(c, TR, proposed_on=dt.date(2025, 6, 20))
    assert e.value.state == sd_state
    assert "serious_dishonesty" in str(e.value) and sd_state in str(e.value)
    assert c.collect_events() == [] and c.listing(TR) is None


@pytest.mark.parametrize("sd_state", ["proposed", "noticed", "responded", "listed",
                                      "repair_applied"])
def test_trust_reward_decision_to_list_is_refused_while_a_dishonesty_entry_is_open(sd_state):
    c = credit()
    propose(c, TR)
    notice(c, TR)
    respond(c, TR)
    propose(c, SD)
    if sd_state != "proposed":
        notice(c, SD)
    if sd_state == "responded":
        respond(c, SD)
    if sd_state in ("listed", "repair_applied"):
        decide(c, SD)
    if sd_state == "repair_applied":
        apply_repair(c)
    c.collect_events()
    before = c.listing(TR)
    with pytest.raises(DomainRuleViolated) as e:
        decide(c, TR, on=dt.date(2025, 6, 20))
    assert e.value.state == sd_state
    assert "serious_dishonesty" in str(e.value) and sd_state in str(e.value)
    assert c.collect_events() == [] and c.listing(TR) == before
    # Dropping the trust-reward proposal puts nobody on a list: allowed.
    decide(c, TR, decision="dropped", on=dt.date(2025, 6, 20))
    assert c.listing(TR)["state"] == "dropped"


@pytest.mark.parametrize("sd_state", ["dropped", "expired", "removed"])
def test_trust_reward_may_follow_a_dishonesty_entry_that_has_ended(sd_state):
    c = at_state(sd_state)
    on = dt.date(2027, 2, 1)
    assert propose(c, TR, proposed_on=on) == "trust_reward-1"
    c.send_listing_notice(TR, on, "officer-1", WINDOW)
    respond(c, TR, on=on)
    decide(c, TR, on=on)
    assert c.current_lists(on) == [TR]


def test_a_dishonesty_entry_whose_term_is_over_does_not_block_trust_reward():
    c = listed()  # term ends 2026-03-16, not yet expired by the timer
    on = dt.date(2026, 3, 16)
    assert propose(c, TR, proposed_on=on) == "trust_reward-1"
    c.send_listing_notice(TR, on, "officer-1", WINDOW)
    respond(c, TR, on=on)
    decide(c, TR, on=on)
    assert c.current_lists(on) == [TR]


# -- the response window (陈述申辩) ---------------------------------------------------------

def test_decision_before_the_window_has_passed_is_refused_without_a_response():
    c = credit()
    propose(c)
    notice(c)
    c.collect_events()
    with pytest.raises(DomainRuleViolated) as e:
        decide(c, on=RESPOND_BY)  # the institution may still respond that day
    assert e.value.state == "noticed" and "2025-03-15" in str(e.value)
    assert c.collect_events() == []
    decide(c, on=AFTER_WINDOW)
    assert c.listing(SD)["state"] == "listed"


def test_response_after_the_window_is_refused():
    c = credit()
    propose(c)
    notice(c)
    c.collect_events()
    with pytest.raises(DomainRuleViolated) as e:
        respond(c, on=AFTER_WINDOW)
    assert e.value.state == "noticed" and "closed on 2025-03-15" in str(e.value)
    assert c.collect_events() == [] and c.listing(SD)["response"] is None


def test_the_window_follows_the_configured_number_of_days():
    c = credit()
    propose(c)
    assert c.send_listing_notice(SD, NOTIFIED_ON, "officer-1",
                                 ListingRules(response_window_days=3)) == dt.date(2025, 3, 8)


# -- legal basis and inputs ------------------------------------------------------------------

def test_serious_dishonesty_is_never_decided_without_a_legal_basis():
    c = credit()
    propose(c)
    notice(c)
    c.collect_events()
    with pytest.raises(DomainRuleViolated) as e:
        decide(c, legal_basis="  ")
    assert "legal basis" in str(e.value) and e.value.state == "noticed"
    assert c.collect_events() == []


def test_a_trust_reward_decision_without_a_basis_takes_the_proposals():
    c = credit()
    propose(c, TR, legal_basis="《守信激励办法》第五条")
    notice(c, TR)
    decide(c, TR, legal_basis="")
    assert c.collect_events()[-1].legal_basis == "《守信激励办法》第五条"


@pytest.mark.parametrize("overrides, field, code", [
    ({"legal_basis": " "}, "legal_basis", "required"),
    ({"evidence": []}, "evidence", "required"),
    ({"evidence": "doc"}, "evidence", "invalid_type"),
    ({"officer": ""}, "officer", "required"),
    ({"proposed_term_days": 0}, "proposed_term_days", "out_of_range"),
    ({"proposed_on": dt.datetime(2025, 3, 3)}, "proposed_on", "invalid_type"),
])
def test_proposal_needs_basis_evidence_officer_and_term(overrides, field, code):
    c = credit()
    with pytest.raises(FieldError) as e:
        propose(c, **overrides)
    assert (e.value.field, e.value.code) == (field, code)
    assert c.collect_events() == [] and c.listing(SD) is None


def test_unknown_list_and_decision_are_refused():
    c = credit()
    with pytest.raises(FieldError) as e:
        propose(c, "blacklist")
    assert e.value.field == "list_name"
    propose(c)
    notice(c)
    with pytest.raises(FieldError) as e:
        decide(c, decision="maybe")
    assert e.value.field == "decision"


def test_steps_cannot_go_back_in_time():
    c = credit()
    propose(c)
    with pytest.raises(FieldError) as e:
        c.send_listing_notice(SD, PROPOSED_ON - dt.timedelta(days=1), "officer-1", WINDOW)
    assert e.value.field == "notified_on"
    notice(c)
    with pytest.raises(FieldError) as e:
        respond(c, on=NOTIFIED_ON - dt.timedelta(days=1))
    assert e.value.field == "received_on"


# -- credit repair (信用修复) ----------------------------------------------------------------

def test_repair_approved_removes_the_entry_early():
    c = listed()
    apply_repair(c)
    review(c, approved=True)
    applied, reviewed, removed = c.collect_events()
    assert kinds([applied, reviewed, removed]) == ["RepairApplied", "RepairReviewed",
                                                   "ListingRemovedEarly"]
    assert (applied.application, applied.evidence) == ("已退回全部补贴并完成整改", ["退款凭证 88"])
    assert (reviewed.approved, reviewed.officer, reviewed.reason) == (True, "officer-3",
                                                                      "corrected in full")
    assert reviewed.legal_basis and reviewed.evidence == ["审核意见 12"]
    assert removed.on == dt.date(2025, 6, 10)
    assert c.listing(SD)["state"] == "removed"
    assert c.current_lists(dt.date(2025, 6, 10)) == []
    assert c.expire_listings(dt.date(2027, 1, 1)) == []


def test_repair_rejected_keeps_the_entry_until_its_term():
    c = listed()
    apply_repair(c)
    review(c, approved=False)
    applied, reviewed = c.collect_events()
    assert reviewed.approved is False
    assert c.listing(SD)["state"] == "listed"
    assert c.current_lists(dt.date(2025, 6, 10)) == [SD]
    apply_repair(c, on=dt.date(2025, 9, 1))  # a new application may follow
    assert c.listing(SD)["state"] == "repair_applied"
    assert c.expire_listings(dt.date(2026, 3, 16)) == ["serious_dishonesty-1"]


def test_repair_is_for_the_dishonesty_list_only():
    c = listed(TR)
    with pytest.raises(DomainRuleViolated) as e:
        c.apply_for_repair(TR, "…", ["x"], dt.date(2025, 6, 1))
    assert e.value.state == "listed" and "serious_dishonesty" in str(e.value)


def test_repair_after_the_term_is_over_is_refused():
    c = listed()
    with pytest.raises(DomainRuleViolated) as e:
        apply_repair(c, on=dt.date(2026, 3, 16))
    assert e.value.state == "listed" and "term ended on 2026-03-16" in str(e.value)
    apply_repair(c, on=dt.date(2026, 3, 1))
    with pytest.raises(DomainRuleViolated) as e:
        review(c, approved=True, on=dt.date(2026, 3, 16))
    assert e.value.state == "repair_applied"


# -- illegal steps name the state they were refused in ---------------------------------------

def at_state(state: str) -> InstitutionCredit:
    c = credit()
    if state == "none":
        return c
    propose(c)
    if state != "proposed":
        notice(c)
    if state == "responded":
        respond(c)
    if state in ("listed", "repair_applied", "removed", "expired"):
        decide(c)
    if state == "dropped":
        decide(c, decision="dropped")
    if state in ("repair_applied", "removed"):
        apply_repair(c)
    if state == "removed":
        review(c, approved=True)
    if state == "expired":
        c.expire_listings(dt.date(2027, 1, 1))
    assert (c.listing(SD) or {"state": "none"})["state"] == state
    c.collect_events()
    return c


STEPS = {
    "propose": propose,
    "notice": notice,
    "respond": lambda c: respond(c, on=NOTIFIED_ON),
    "decide": lambda c: decide(c, on=dt.date(2025, 3, 20)),
    "apply repair": apply_repair,
    "review repair": lambda c: review(c, approved=True),
}
ALLOWED = {
    "none": {"propose"},
    "proposed": {"notice"},
    "noticed": {"respond", "decide"},
    "responded": {"decide"},
    "listed": {"apply repair"},
    "repair_applied": {"review repair"},
    "dropped": {"propose"},
    "expired": {"propose"},
    "removed": {"propose"},
}


@pytest.mark.parametrize("state, step", [
    (state, step) for state, allowed in ALLOWED.items() for step in STEPS if step not in allowed
])
def test_illegal_steps_are_refused_naming_the_state(state, step):
    c = at_state(state)
    before = c.listing(SD)
    with pytest.raises(DomainRuleViolated) as e:
        STEPS[step](c)
    assert e.value.state == state and state in str(e.value)
    assert c.collect_events() == [] and c.listing(SD) == before


@pytest.mark.parametrize("state, step", [
    (state, step) for state, allowed in ALLOWED.items() for step in allowed
])
def test_allowed_steps_are_accepted(state, step):
    c = at_state(state)
    STEPS[step](c)
    assert c.collect_events()
