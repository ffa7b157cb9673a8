"""What registration publishes is its contract (tuoyu_registration.contract), and the committed
schemas are the ones the contract generates: nothing is published that the catalogue does not
describe, and a published field cannot change without its schema."""

from __future__ import annotations

from tuoyu_registration.contract import CONTRACT
from tuoyu_registration.domain import (
    EmploymentRecord,
    EnrolmentReports,
    Institution,
    RegistrationCases,
    Roster,
)
from tuoyu_shared.catalogue_gen import contract_problems
from tuoyu_shared.testing import check_catalogue_matches

AGGREGATES = [Institution, EmploymentRecord, RegistrationCases, Roster, EnrolmentReports]


def test_every_event_has_a_publication_that_can_read_it():
    assert contract_problems(CONTRACT, AGGREGATES) == []
    assert len(CONTRACT.publications) >= 28


def test_committed_schemas_match_the_contract():
    check_catalogue_matches(CONTRACT)
