"""Published events are a contract (tuoyu_shared.contract): the payload is what the publication
says, not what the domain event happens to hold, and a change of a published field shows as a
schema change the catalogue test catches."""

from __future__ import annotations

import json
import uuid
from datetime import date

import pytest
from eventsourcing.domain import Aggregate

from tuoyu_shared.catalogue_gen import contract_problems, generate, payload_schema_for
from tuoyu_shared.contract import Contract, ContractBroken, Published


class Nursery(Aggregate):
    class Opened(Aggregate.Created):
        """A nursery opened."""

        name: str
        places: int
        internal_note: str

    def __init__(self, name: str, places: int, internal_note: str):
        self.name, self.places, self.internal_note = name, places, internal_note

    class Closed(Aggregate.Event):
        """A nursery closed."""

        closed_on: date

    def close(self, on: date) -> None:
        self.trigger_event(self.Closed, closed_on=on)


def opened() -> Nursery:
    return Nursery(name="阳光", places=20, internal_note="kept inside")


CONTRACT = Contract("tests", [
    Published(Nursery.Opened, "NurseryOpened", 3, {"title": "name", "places": "places"},
              computed={"large": (lambda e: e.places >= 20, {"type": "boolean"})}),
    Published(Nursery.Closed, "NurseryClosed", 1, ("closed_on",)),
])


def test_the_envelope_carries_the_publication_not_the_domain_event():
    nursery = opened()
    nursery.close(date(2025, 3, 1))
    first, second = nursery.collect_events()
    envelope = CONTRACT.envelope(7, first)
    assert (envelope.event_type, envelope.schema_version) == ("NurseryOpened", 3)
    assert envelope.payload == {"title": "阳光", "places": 20, "large": True}  # no internal_note
    assert envelope.aggregate_id == str(nursery.id) and envelope.notification_id == 7
    assert CONTRACT.envelope(8, second).payload == {"closed_on": "2025-03-01"}
    # the same stored event gives the same event id however often it is read
    assert CONTRACT.envelope(7, first).event_id == envelope.event_id


def test_a_renamed_attribute_breaks_the_contract_instead_of_changing_the_payload():
    broken = Contract("tests", [Published(Nursery.Opened, "NurseryOpened", 3, ("title",))])
    event = opened().collect_events()[0]
    with pytest.raises(ContractBroken, match="title"):
        broken.envelope(1, event)
    assert contract_problems(broken, [Nursery]) == [
        "Nursery.Closed has no publication",
        "NurseryOpened v3 reads 'title', which Nursery.Opened does not store"]
    assert contract_problems(CONTRACT, [Nursery]) == []


def test_an_event_without_a_publication_is_refused():
    class Other(Aggregate):
        pass

    with pytest.raises(ContractBroken, match="no publication"):
        CONTRACT.envelope(1, Other().collect_events()[0])


def test_a_changed_field_type_changes_the_generated_schema():
    schema = payload_schema_for("tests", CONTRACT.publications[0])
    assert schema["$id"] == "tuoyu:tests:NurseryOpened:v3"
    assert schema["properties"] == {"title": {"type": "string"}, "places": {"type": "integer"},
                                    "large": {"type": "boolean"}}
    assert schema["description"] == "A nursery opened."

    class Reopened(Aggregate):
        class Opened(Aggregate.Created):
            """A nursery opened."""

            name: str
            places: str  # a refactor changed the type: subscribers would see it
            internal_note: str

    changed = Published(Reopened.Opened, "NurseryOpened", 3, {"title": "name", "places": "places"},
                        computed=CONTRACT.publications[0].computed)
    assert payload_schema_for("tests", changed) != schema  # the catalogue test fails on this
    files = generate(CONTRACT)
    assert sorted(p.name for p in files) == ["NurseryClosed.v1.json", "NurseryOpened.v3.json"]
    json.loads(next(iter(files.values())))


def test_a_class_is_published_once_and_a_type_version_once():
    with pytest.raises(AssertionError):
        Contract("tests", [Published(Nursery.Closed, "A", 1, ()),
                           Published(Nursery.Closed, "B", 1, ())])
    with pytest.raises(AssertionError):
        Contract("tests", [Published(Nursery.Opened, "A", 1, ()),
                           Published(Nursery.Closed, "A", 1, ())])
    assert uuid.UUID(CONTRACT.envelope(1, opened().collect_events()[0]).event_id)
