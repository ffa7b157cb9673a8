"""The published schemas are the ones subsidy's contract generates, and SubsidyClawedBack
keeps the schema credit was written against."""

from __future__ import annotations

from tuoyu_credit.reactions import SUBSIDY_EVENTS
from tuoyu_shared.catalogue_gen import contract_problems
from tuoyu_shared.people import PersonalData
from tuoyu_shared.testing import check_catalogue_matches
from tuoyu_subsidy.contract import CONTRACT
from tuoyu_subsidy.domain import (
    Budget,
    ChildMonthClaim,
    InstitutionStanding,
    OneTimeGrant,
    PaymentBatch,
    SubsidyApplication,
    SubsidyProgram,
)


def test_every_event_has_a_publication_that_can_read_it():
    assert contract_problems(CONTRACT, [SubsidyApplication, PaymentBatch, Budget,
                                        SubsidyProgram, InstitutionStanding, ChildMonthClaim,
                                        OneTimeGrant, PersonalData]) == []


def test_committed_schemas_match_the_contract():
    check_catalogue_matches(CONTRACT)


def test_subsidy_publishes_every_event_credit_scores():
    assert set(SUBSIDY_EVENTS) <= set(CONTRACT.published_types())


def test_no_publication_carries_a_sealed_value():
    import json

    from tuoyu_shared.catalogue import CATALOGUE_DIR

    for path in (CATALOGUE_DIR / "subsidy").glob("*.json"):
        assert "id_number" not in json.loads(path.read_text())["properties"], path.name
