"""Each source's AsyncAPI 3.0 document is valid AsyncAPI 3.0.0 (the official JSON Schema, from
@asyncapi/specs), describes every schema of the catalogue, and its messages accept what the
relay publishes: the envelope and the CloudEvents headers."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import jsonschema
import pytest

from tuoyu_shared import asyncapi
from tuoyu_shared.catalogue import catalogue_index

SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "asyncapi" /
                     "asyncapi-3.0.0.schema.json").read_text())


@pytest.mark.parametrize("source", asyncapi.sources())
def test_the_document_is_valid_asyncapi_3(source):
    document = asyncapi.document(source)
    jsonschema.Draft7Validator(SCHEMA).validate(document)
    described = {k for k, m in document["components"]["messages"].items()
                 if "x-schema-version" in m}
    assert described == {f"{e['event_type']}.v{e['schema_version']}"
                         for e in catalogue_index() if e["source"] == source}


def test_an_invalid_document_is_refused_by_the_schema():
    document = json.loads(json.dumps(asyncapi.document("registration")))
    document["channels"]["events"]["address"] = 7
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(document)


def test_a_message_and_its_headers_match_their_description():
    message = asyncapi.document("registration")["components"]["messages"][
        "InstitutionResumed.v1"]
    event_id, aggregate = str(uuid.uuid4()), str(uuid.uuid4())
    envelope = {"event_id": event_id, "event_type": "InstitutionResumed", "schema_version": 1,
                "source": "registration", "aggregate_id": aggregate,
                "aggregate_version": 3, "notification_id": 9,
                "occurred_at": "2026-12-02T01:00:00+00:00", "actor": "officer-1",
                "department": "health", "correlation_id": "c", "causation_id": "",
                "payload": {"resumed_on": "2026-12-02", "notes": "整改完成"},
                "envelope_version": 1}
    jsonschema.Draft202012Validator(message["payload"]).validate(envelope)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(message["payload"]).validate(
            {**envelope, "event_type": "InstitutionDeregistered"})
    headers = {"source": "registration", "notification_id": 9, "previous_notification_id": 8,
               "schema_version": 1, **asyncapi.cloudevents_headers(
                   "registration", event_id, "InstitutionResumed", 1,
                   envelope["occurred_at"], aggregate)}
    jsonschema.Draft202012Validator(message["headers"]).validate(headers)
    assert headers["cloudEvents_type"] == "cn.gov.tuoyu.registration.InstitutionResumed.v1"


def test_the_page_lists_every_source_and_old_versions():
    page = asyncapi.page()
    for source in asyncapi.sources():
        assert f"/catalogue/{source}/asyncapi.json" in page
    assert "InstitutionEnrolmentReported v2" in page and "superseded by" in page
