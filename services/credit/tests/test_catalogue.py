"""The published schemas are the ones credit's contract generates, and the schemas of the events
this service expects from inspection and subsidy say exactly what those services must publish."""

from __future__ import annotations

import json
import uuid

import fastjsonschema
import pytest

from tuoyu_credit.contract import CONTRACT
from tuoyu_credit.domain import RECORD_CATEGORIES, InstitutionCredit, Practitioner
from tuoyu_credit.reactions import INSPECTION_EVENTS, SUBSIDY_EVENTS
from tuoyu_shared.catalogue import (
    CATALOGUE_DIR,
    SchemaViolation,
    catalogue_index,
    validate_envelope,
)
from tuoyu_shared.catalogue_gen import contract_problems
from tuoyu_shared.people import PersonalData
from tuoyu_shared.public_security import CATEGORIES
from tuoyu_shared.testing import check_catalogue_matches

INSTITUTION = str(uuid.UUID(int=42))


def test_every_event_has_a_publication_that_can_read_it():
    assert contract_problems(CONTRACT, [InstitutionCredit, Practitioner, PersonalData]) == []
    assert len(CONTRACT.publications) >= 21
    assert "PersonalDataErased" in CONTRACT.published_types()


def latest(event_type: str) -> dict:
    versions = sorted(CATALOGUE_DIR.joinpath("credit").glob(f"{event_type}.v*.json"),
                      key=lambda p: int(p.name.rsplit(".v", 1)[1].removesuffix(".json")))
    return json.loads(versions[-1].read_text())


def test_committed_schemas_match_the_contract():
    check_catalogue_matches(CONTRACT)


def test_what_registration_reads_is_in_the_credit_schemas():
    """registration.reactions reads these fields; the schemas require them."""
    expected = {
        "PractitionerCheckCompleted": {"check_id", "institution_id", "outcome", "reference",
                                       "person_ref"},
        "PractitionerBanImposed": {"person_ref", "ban_ref"},
        "InstitutionCreditListingDecided": {"institution_id", "list_name", "decision",
                                            "listing_id"},
        "InstitutionCreditListingExpired": {"institution_id", "list_name", "listing_id"},
        "InstitutionCreditListingRemovedEarly": {"institution_id", "list_name", "listing_id"},
        "InstitutionCreditListingEndedByDishonesty": {"institution_id", "list_name",
                                                      "listing_id"},
    }
    for event_type, needed in expected.items():
        schema = latest(event_type)
        assert needed <= set(schema["required"]), event_type
    completed = latest("PractitionerCheckCompleted")
    assert completed["$id"].endswith(":v2")
    assert completed["properties"]["outcome"]["enum"] == ["cleared", "barred"]
    decided = json.loads((CATALOGUE_DIR / "credit" /
                          "InstitutionCreditListingDecided.v1.json").read_text())
    assert decided["properties"]["list_name"]["enum"] == ["trust_reward", "serious_dishonesty"]


def test_no_published_practitioner_event_can_carry_a_name_a_number_or_a_mask():
    """Since version 2 a practitioner is published by ref alone; a public-security answer
    leaves without its result and categories."""
    validator = fastjsonschema.compile(latest("PractitionerRegistered"))
    payload = {"person_ref": "r", "registered_from": "hire"}
    validator(payload)
    for extra in ({"name": {"ref": "r", "masked": "张**"}},
                  {"id_number": {"ref": "r", "masked": "310104********0012"}}):
        with pytest.raises(fastjsonschema.JsonSchemaException):
            validator({**payload, **extra})
    assert set(latest("PractitionerIdentitySealed")["properties"]) == {"person_ref"}
    answered = latest("PractitionerInquiryAnswered")
    assert set(answered["properties"]) == {"check_id", "person_ref", "inquiry_reference",
                                           "answered_at"}
    for schema in map(json.loads, (p.read_text() for p in (CATALOGUE_DIR / "credit").glob(
            "Practitioner*.json"))):
        if schema["$id"].endswith(":v1") and schema["title"] in (
                "PractitionerRegistered", "PractitionerIdentitySealed"):
            continue  # superseded: the masks of events of before
        assert not {"name", "id_number", "masked", "result", "categories"} & set(
            schema["properties"]), schema["$id"]


def test_the_domain_knows_the_categories_the_inquiry_answers():
    assert tuple(RECORD_CATEGORIES) == tuple(CATEGORIES)


# Examples of what inspection and subsidy are to publish: valid, and invalid with the reason.
VALID = {
    "InspectionFindingRecorded": {"visit_id": "v-1", "institution_id": INSTITUTION,
                                  "finding_id": "f-1", "severity": "serious",
                                  "item": "一日三检", "description": "晨检记录缺失"},
    "RectificationOverdue": {"order_id": "o-1", "institution_id": INSTITUTION,
                             "due_on": "2025-03-31"},
    "InspectionRefused": {"visit_id": "v-2", "institution_id": INSTITUTION},
    "CleanInspectionPeriodCompleted": {"institution_id": INSTITUTION, "period": "2025-H1"},
    "SubsidyClawedBack": {"application_id": "a-1", "institution_id": INSTITUTION,
                          "amount_fen": 3_000_000, "reason": "fraud"},
}
INVALID = [
    ("InspectionFindingRecorded", {"severity": "catastrophic"}),
    ("InspectionFindingRecorded", {"institution_id": "institution 7"}),
    ("InspectionFindingRecorded", {"officer": "o-1"}),  # nothing undocumented
    ("RectificationOverdue", {"due_on": "31/03/2025"}),
    ("CleanInspectionPeriodCompleted", {"period": "last year"}),
    ("SubsidyClawedBack", {"amount_fen": 300.5}),
    ("SubsidyClawedBack", {"amount_fen": 0}),
    ("SubsidyClawedBack", {"reason": "suspicion"}),
]


def envelope(source: str, event_type: str, payload: dict) -> dict:
    return {"event_id": str(uuid.uuid4()), "event_type": event_type, "schema_version": 1,
            "source": source, "aggregate_id": "a-1", "aggregate_version": 1,
            "notification_id": 1, "occurred_at": "2025-03-03T02:00:00+00:00",
            "actor": "inspector-1", "department": "health", "correlation_id": "c",
            "causation_id": "", "payload": payload, "envelope_version": 1}


def source_of(event_type: str) -> str:
    return "subsidy" if event_type in SUBSIDY_EVENTS else "inspection"


def test_every_upstream_event_the_service_consumes_is_documented():
    documented = {(e["source"], e["event_type"]) for e in catalogue_index()}
    for event_type in (*INSPECTION_EVENTS, *SUBSIDY_EVENTS):
        assert (source_of(event_type), event_type) in documented
        schema = json.loads((CATALOGUE_DIR / source_of(event_type) /
                             f"{event_type}.v1.json").read_text())
        assert schema["$id"] == f"tuoyu:{source_of(event_type)}:{event_type}:v1"
        assert schema["additionalProperties"] is False
        assert set(schema["required"]) == set(schema["properties"])
        assert "Published by the" in schema["description"]  # when it is published
    assert set(VALID) == {*INSPECTION_EVENTS, *SUBSIDY_EVENTS}
    # inspection's and subsidy's catalogues are their whole contracts (their own tests check
    # them against the contracts): what credit reads is among them
    assert {f"{t}.v1.json" for t in INSPECTION_EVENTS} <= {
        p.name for p in (CATALOGUE_DIR / "inspection").glob("*.json")}
    assert {f"{t}.v1.json" for t in SUBSIDY_EVENTS} <= {
        p.name for p in (CATALOGUE_DIR / "subsidy").glob("*.json")}


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_documented_examples_validate(event_type):
    validate_envelope(envelope(source_of(event_type), event_type, VALID[event_type]))


@pytest.mark.parametrize("event_type, change", INVALID)
def test_anything_else_is_refused(event_type, change):
    with pytest.raises(SchemaViolation):
        validate_envelope(envelope(source_of(event_type), event_type,
                                   {**VALID[event_type], **change}))
