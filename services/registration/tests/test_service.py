"""The nameko adapter's HTTP handlers, called in this process (no nameko runner, no broker):
each error answers with its status and body from the shared vocabulary (tuoyu_shared.errors),
and the record's history is plain JSON with personal data masked."""

from __future__ import annotations

import json
import uuid
import warnings
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from tuoyu_registration.application import RegistrationApplication
from tuoyu_registration.samples import sample_filing_submission, sample_registration
from tuoyu_shared.context import command_context

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
    return instance


def call(handler, method: str = "POST", body: Any = None, *args: str) -> tuple[int, Any]:
    data = json.dumps(body) if body is not None else None
    request = Request(EnvironBuilder(method=method, data=data,
                                     content_type="application/json").get_environ())
    response = handler(request, *args)
    return response.status_code, json.loads(response.get_data(as_text=True))


def test_registration_errors_reach_http_with_their_status_code_and_body(service, app):
    status, body = call(service.http_register, "POST", sample_registration(1))
    assert status == 201
    institution_id = body["institution_id"]
    status, body = call(service.http_command, "POST", {"receipt_number": "R-1"},
                        institution_id, "issue_filing_receipt")
    assert status == 409
    assert (body["error"], body["code"], body["state"]) == (
        "DomainRuleViolated", "rule_violated", "registered")
    missing = str(uuid.uuid4())
    assert call(service.http_institution, "GET", None, missing) == (404, {
        "error": "InstitutionNotFound", "code": "not_found",
        "reason": f"no institution {missing}"})
    status, body = call(service.http_register, "POST", {"name": "x"})
    assert status == 400 and body["error"] == "validation_failed"
    data = sample_registration(2)
    ref = app.vault.person_ref(data["person_in_charge"]["id_number"])
    app.vault.erase(ref)
    assert call(service.http_register, "POST", data) == (410, {
        "error": "PersonalDataErased", "code": "erased",
        "reason": f"personal data of {ref} was erased"})


def test_the_record_shows_each_event_with_who_when_and_what(service, app):
    with command_context(actor="officer-1", department="health", correlation_id="case-7"):
        institution_id = str(app.register_institution(sample_registration(3)))
        app.submit_filing(institution_id, sample_filing_submission())
    status, record = call(service.http_record, "GET", None, institution_id)
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
    assert pic["name"] == {"ref": pic["ref"], "masked": "王**"}
    assert "sealed" not in json.dumps(record)
    assert submitted["data"]["receipt_due_on"] == record["institution"]["receipt_due_on"]
