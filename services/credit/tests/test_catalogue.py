"""The published schemas are the ones credit's contract generates, and the schemas of the events
this service expects from inspection and subsidy say exactly what those services must publish."""

from __future__ import annotations

import json
import uuid

import fastjsonschema
import pytest

from tuoyu_credit.contract import CONTRACT
from tuoyu_credit.domain import InstitutionCredit, Practitioner
from tuoyu_credit.reactions import INSPECTION_EVENTS, SUBSIDY_EVENTS
from tuoyu_shared.catalogue import (
    CATALOGUE_DIR,
    SchemaViolation,
    catalogue_index,
    validate_envelope,
)
from tuoyu_shared.catalogue_gen import contract_problems
from tuoyu_shared.testing import check_catalogue_matches

INSTITUTION = str(uuid.UUID(int=42))


def test_every_event_has_a_publication_that_can_read_it():
    assert contract_problems(CONTRACT, [InstitutionCredit, Practitioner]) == []
    assert len(CONTRACT.publications) >= 17


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
        schema = json.loads((CATALOGUE_DIR / "credit" / f"{event_type}.v1.json").read_text())
        assert needed <= set(schema["required"]), event_type
    decided = json.loads((CATALOGUE_DIR / "credit" /
                          "InstitutionCreditListingDecided.v1.json").read_text())
    assert decided["properties"]["list_name"]["enum"] == ["trust_reward", "serious_dishonesty"]


def test_published_personal_data_can_only_be_a_ref_and_a_mask():
    validator = fastjsonschema.compile(json.loads(
        (CATALOGUE_DIR / "credit" / "PractitionerRegistered.v1.json").read_text()))
    masked = {"ref": "r", "masked": "张**"}
    payload = {"person_ref": "r", "name": masked, "id_number": masked,
               "registered_from": "hire"}
    validator(payload)
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validator({**payload, "id_number": {**masked, "sealed": "c2VhbGVk"}})


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
    assert {p.name for p in (CATALOGUE_DIR / "inspection").glob("*.json")} | {
        p.name for p in (CATALOGUE_DIR / "subsidy").glob("*.json")} == {
        f"{t}.v1.json" for t in VALID}


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_documented_examples_validate(event_type):
    validate_envelope(envelope(source_of(event_type), event_type, VALID[event_type]))


@pytest.mark.parametrize("event_type, change", INVALID)
def test_anything_else_is_refused(event_type, change):
    with pytest.raises(SchemaViolation):
        validate_envelope(envelope(source_of(event_type), event_type,
                                   {**VALID[event_type], **change}))
