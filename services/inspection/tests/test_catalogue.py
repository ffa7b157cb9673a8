"""The published schemas are the ones inspection's contract generates, and the four events credit
scored before this service existed keep the schemas credit was written against."""

from __future__ import annotations

from tuoyu_credit.reactions import INSPECTION_EVENTS
from tuoyu_inspection.contract import CONTRACT
from tuoyu_inspection.domain import (
    ChecklistTemplate,
    CleanInspectionPeriod,
    InspectionPlan,
    InspectorRoster,
    SupervisionVisit,
)
from tuoyu_shared.catalogue_gen import contract_problems
from tuoyu_shared.testing import check_catalogue_matches


def test_every_event_has_a_publication_that_can_read_it():
    assert contract_problems(CONTRACT, [SupervisionVisit, InspectionPlan, ChecklistTemplate,
                                        InspectorRoster, CleanInspectionPeriod]) == []


def test_committed_schemas_match_the_contract():
    check_catalogue_matches(CONTRACT)


def test_inspection_publishes_every_event_credit_scores():
    assert set(INSPECTION_EVENTS) <= set(CONTRACT.published_types())
