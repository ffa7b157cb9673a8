"""The published schemas are the ones the event classes generate: nothing is published that
the catalogue does not describe."""

from __future__ import annotations

from tuoyu_registration.domain import (
    EmploymentRecord,
    EnrolmentReports,
    Institution,
    RegistrationCases,
    Roster,
)
from tuoyu_shared.catalogue import CATALOGUE_DIR
from tuoyu_shared.catalogue_gen import event_classes, generate


def test_committed_schemas_match_the_event_classes():
    # The employment records' events are published too: the relay publishes the whole log
    # (and checks each event against its schema), and a subscriber ignores types it does not use.
    aggregates = [Institution, EmploymentRecord, RegistrationCases, Roster, EnrolmentReports]
    generated = generate("registration", aggregates)
    assert len(generated) == sum(len(event_classes(a)) for a in aggregates) >= 28
    for path, text in generated.items():
        assert path.exists(), f"missing schema {path.name}: run tuoyu_shared.catalogue_gen"
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is out of date"
        assert '"description": ""' not in text, f"{path.name}: the event class needs a docstring"
    committed = set((CATALOGUE_DIR / "registration").glob("*.json"))
    # An event class whose class_version went up keeps its earlier schemas beside the new
    # one (events recorded then are upcast; subscribers may still hold them).
    current = {path.name.split(".v")[0]: int(path.name.split(".v")[1].split(".")[0])
               for path in generated}
    superseded = {path for path in committed - set(generated)
                  if int(path.name.split(".v")[1].split(".")[0])
                  < current.get(path.name.split(".v")[0], 0)}
    assert committed - superseded == set(generated), "a schema without an event class"
