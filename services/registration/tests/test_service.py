"""The nameko adapter's methods, called in this process (no nameko runner, no broker) behind
the gateway's routes (``tuoyu_gateway.testing``): each error answers with its status and body
from the shared vocabulary (tuoyu_shared.errors), and the record's history is plain JSON with
personal data masked."""

from __future__ import annotations

import json
import uuid
import warnings
from typing import Any

import psycopg
import pytest
from tuoyu_gateway.testing import gateway_client

from tuoyu_registration.application import RegistrationApplication
from tuoyu_registration.samples import sample_filing_submission, sample_registration
from tuoyu_shared.context import command_context
from tuoyu_shared.testing import bearer

with warnings.catch_warnings():  # nameko imports eventlet, which warns of its deprecation
    warnings.simplefilter("ignore")
    from tuoyu_registration.service import RegistrationService


@pytest.fixture
def app(settings_factory):
    application = RegistrationApplication(settings_factory("registration"))
    yield application
    application.close()


@pytest.fixture
def service(app):
    instance = RegistrationService.__new__(RegistrationService)  # as nameko would inject
    instance.app = app
    instance.gateway = gateway_client(registration=instance)
    return instance


OFFICER = bearer("health_officer", subject="officer-1")
PROBLEM_FIELDS = ("type", "title", "status", "detail")


def call(service, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Through the gateway, as a city-wide health officer; the problem's own fields (RFC
    9457) checked and left out, so the service's body is what is compared."""
    answer = service.gateway.request(method, path, json=body, headers=OFFICER)
    payload = answer.json()
    if answer.status_code >= 400:
        assert payload["status"] == answer.status_code and payload["detail"]
        payload = {k: v for k, v in payload.items() if k not in PROBLEM_FIELDS}
    return answer.status_code, payload


def test_registration_errors_reach_http_with_their_status_code_and_body(service, app):
    status, body = call(service, "POST", "/api/institutions", sample_registration(1))
    assert status == 201
    institution_id = body["institution_id"]
    status, body = call(service, "POST",
                        f"/api/institutions/{institution_id}/issue_filing_receipt",
                        {"receipt_number": "R-1"})
    assert status == 409
    assert (body["error"], body["code"], body["state"]) == (
        "DomainRuleViolated", "rule_violated", "registered")
    missing = str(uuid.uuid4())
    assert call(service, "GET", f"/api/institutions/{missing}") == (404, {
        "error": "InstitutionNotFound", "code": "not_found",
        "reason": f"no institution {missing}"})
    status, body = call(service, "POST", "/api/institutions", {"name": "x"})
    assert status == 400 and body["error"] == "validation_failed"
    data = sample_registration(2)
    # a ref whose key is gone while its index entry is not (an erasure half done elsewhere):
    # nothing is sealed for it again, 410
    ref = app.vault.enrol("person_in_charge", data["person_in_charge"]["id_number"])
    with psycopg.connect(app.settings.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO person_keys (person_ref, erased_at) VALUES (%s, now())",
                     (ref,))
    assert call(service, "POST", "/api/institutions", data) == (410, {
        "error": "PersonalDataErased", "code": "erased",
        "reason": f"personal data of {ref} was erased"})


def test_the_record_shows_each_event_with_who_when_and_what(service, app):
    with command_context(actor="officer-1", department="health", correlation_id="case-7"):
        institution_id = str(app.register_institution(sample_registration(3)))
        app.submit_filing(institution_id, sample_filing_submission())
    status, record = call(service, "GET", f"/api/institutions/{institution_id}/record")
    assert status == 200 and record == service.institution_record(institution_id)
    assert record["institution"]["institution_id"] == institution_id
    registered, submitted = record["history"]
    assert set(registered) == {"version", "event_type", "occurred_at", "actor", "department",
                               "correlation_id", "causation_id", "data"}
    assert (registered["version"], registered["event_type"]) == (1, "InstitutionRegistered")
    assert (registered["actor"], registered["department"], registered["correlation_id"]) == (
        "officer-1", "health", "case-7")
    [envelope, _] = app.read_log(1, 10)
    assert registered["occurred_at"] == envelope.occurred_at
    # The data is what subscribers get (plus the version and timestamp it always showed).
    assert registered["data"] == {**envelope.payload, "originator_version": 1,
                                  "timestamp": envelope.occurred_at}
    pic = registered["data"]["person_in_charge"]
    assert pic["name"] == {"ref": pic["ref"]}  # the ref alone: no mask in the log
    assert "sealed" not in json.dumps(record)
    assert submitted["data"]["receipt_due_on"] == record["institution"]["receipt_due_on"]
