"""One history builder (tuoyu_shared.history) and one public JSON encoding
(tuoyu_shared.envelope.to_json_value) for every service's answers."""

from __future__ import annotations

import json
import uuid
import warnings
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any

from tuoyu_shared.envelope import envelope_from_event, to_json_value
from tuoyu_shared.history import history_entries, history_entry

with warnings.catch_warnings():  # nameko imports eventlet, which warns of its deprecation
    warnings.simplefilter("ignore")
    from tuoyu_shared.nameko_support import json_response

# An event recorded before masks left the log holds one; the public encoding drops it too.
SEALED = {"ref": "f9b2", "sealed": "AAAA-ciphertext", "masked": "王**"}
AT = datetime(2025, 1, 6, 1, 30, tzinfo=UTC)


class Colour(Enum):
    RED = "red"


class Nursery:
    class Opened:
        """A stored event as the library gives it back: its attributes in ``vars``."""

        def __init__(self, version: int = 1, meta: dict[str, str] | None = None,
                     **payload: Any):
            self.originator_id = uuid.UUID("318c4814-1d49-55e1-9a14-eae4fc39d131")
            self.originator_version = version
            self.timestamp = AT
            self.originator_topic = "tests:Nursery"
            self.__dict__.update(payload)
            if meta is not None:
                self.meta = meta


def test_an_entry_has_who_when_and_what_as_its_envelope_says():
    meta = {"actor": "officer-1", "department": "health", "correlation_id": "case-7",
            "causation_id": "evt-1"}
    event = Nursery.Opened(meta=meta, person=SEALED, opened_on=date(2025, 1, 6),
                           places=(1, 2))
    entry = history_entry(event)
    assert entry == {
        "version": 1, "event_type": "NurseryOpened", "occurred_at": "2025-01-06T01:30:00+00:00",
        "actor": "officer-1", "department": "health", "correlation_id": "case-7",
        "causation_id": "evt-1",
        "data": {"person": {"ref": "f9b2"}, "opened_on": "2025-01-06",
                 "places": [1, 2]}}
    envelope = envelope_from_event("tests", 1, event)
    assert (entry["event_type"], entry["occurred_at"], entry["data"]) == (
        envelope.event_type, envelope.occurred_at, envelope.payload)
    json.dumps(entry)


def test_an_event_without_context_has_none_and_a_hook_adds_the_services_words():
    def describe(event: Any, data: dict[str, Any]) -> dict[str, Any]:
        assert data["on"] == date(2025, 1, 6)  # the payload as stored, not yet encoded
        return {"reason": f"opened on {data['on'].isoformat()}", "cause_ref": None}

    [entry] = history_entries([Nursery.Opened(on=date(2025, 1, 6))], describe)
    assert list(entry) == ["version", "event_type", "occurred_at", "reason", "cause_ref",
                           "actor", "department", "correlation_id", "causation_id", "data"]
    assert (entry["actor"], entry["causation_id"], entry["reason"]) == (
        None, None, "opened on 2025-01-06")
    assert history_entries([]) == []


def test_the_public_encoding_leaves_only_the_ref_of_sealed_data_at_any_depth():
    value = {"a": [{"b": (SEALED,)}], "c": {SEALED["ref"]: SEALED}}
    encoded = json.dumps(to_json_value(value), ensure_ascii=False)
    assert "sealed" not in encoded and "王" not in encoded and "masked" not in encoded
    assert to_json_value(value)["a"][0]["b"] == [{"ref": "f9b2"}]
    assert to_json_value({"masked": "kept: not a person's value"}) == {
        "masked": "kept: not a person's value"}


def test_the_public_encoding_of_values():
    shanghai = timezone(timedelta(hours=8))
    assert to_json_value({
        "day": date(2025, 1, 6), "at": datetime(2025, 1, 6, 9, 30, tzinfo=shanghai),
        "id": uuid.UUID(int=1), "fen": Decimal("1.50"), "colour": Colour.RED, 1: {"x"},
    }) == {"day": "2025-01-06", "at": "2025-01-06T01:30:00+00:00",
           "id": "00000000-0000-0000-0000-000000000001", "fen": "1.50", "colour": "red",
           "1": ["x"]}


def test_http_answers_use_the_public_encoding():
    response = json_response({"person": SEALED, "on": date(2025, 1, 6),
                              "id": uuid.UUID(int=1), "at": AT})
    assert json.loads(response.get_data(as_text=True)) == {
        "person": {"ref": "f9b2"}, "on": "2025-01-06",
        "id": "00000000-0000-0000-0000-000000000001", "at": "2025-01-06T01:30:00+00:00"}
