"""The subsidy domain's rules without I/O: money splits in whole fen, ages in months, the
budget's arithmetic, program terms checked, batches recorded once."""

from __future__ import annotations

from datetime import date

import pytest

from tuoyu_shared.validation import FieldError
from tuoyu_subsidy.domain import (
    Budget,
    DomainRuleViolated,
    InsufficientBudget,
    PaymentBatch,
    check_terms,
    months_of_age,
    split_fen,
)

FUNDS = [{"fund": "district", "share_percent": 60}, {"fund": "upper_level", "share_percent": 40}]


@pytest.mark.parametrize("amount", [1, 99, 100, 3_000_001, 10**11 + 7])
def test_a_split_over_funds_always_sums_to_the_amount(amount):
    parts = split_fen(amount, FUNDS)
    assert sum(parts.values()) == amount and all(v >= 0 for v in parts.values())


@pytest.mark.parametrize(("birth", "on", "months"), [
    (date(2023, 6, 1), date(2026, 6, 1), 36), (date(2023, 6, 2), date(2026, 6, 1), 35),
    (date(2026, 1, 31), date(2026, 3, 1), 1), (date(2024, 2, 29), date(2025, 2, 28), 11),
])
def test_months_of_age(birth, on, months):
    assert months_of_age(birth, on) == months


def test_a_budget_reserves_commits_and_never_overspends():
    b = Budget(year=2026, fund="district", allocated_fen=100, document="d")
    b.reserve("a1", 60)
    b.reserve("a1", 60)  # the same approval again: once
    with pytest.raises(InsufficientBudget):
        b.reserve("a2", 41)
    b.reserve("a2", 40)
    assert b.free_fen == 0
    b.commit("a1")
    assert (b.reserved_fen, b.paid_fen) == (40, 60)
    b.release("a2")
    b.give_back("a1", 10)
    assert (b.reserved_fen, b.paid_fen, b.free_fen) == (0, 50, 50)
    with pytest.raises(DomainRuleViolated):
        b.allocate(49, "cut")


def test_program_terms_are_checked_by_kind():
    with pytest.raises(FieldError, match="sum to 100"):
        check_terms("opening_grant", {"amount_fen": 1, "fund_sources": FUNDS[:1]})
    with pytest.raises(FieldError) as refused:
        check_terms("fee_subsidy", {"rates_fen_by_birth_order": {"4": 1},
                                    "fund_sources": FUNDS, "claim_months": ["2026-01"]})
    assert refused.value.field == "terms.rates_fen_by_birth_order.4"
    with pytest.raises(FieldError) as refused:
        check_terms("operating_grant", {"rate_fen_per_child_month": 1, "fund_sources": FUNDS})
    assert refused.value.field == "terms.claim_months"


def test_a_batch_line_is_recorded_once():
    batch = PaymentBatch(cycle="2026-07", lines=[
        {"application_id": "a", "amount_fen": 5}, {"application_id": "b", "amount_fen": 7}],
        total_fen=12, created_by="f", created_on=date(2026, 7, 6))
    assert batch.record_result("a", "paid", "", "R1", date(2026, 7, 7))
    assert not batch.record_result("a", "paid", "", "R1", date(2026, 7, 7))
    with pytest.raises(DomainRuleViolated):
        batch.record_result("a", "failed", "x", "", date(2026, 7, 7))
    assert not batch.closed
    batch.record_result("b", "failed", "账户错误", "", date(2026, 7, 7))
    assert batch.closed
