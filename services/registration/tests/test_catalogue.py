"""The published schemas are the ones the event classes generate: nothing is published that
the catalogue does not describe."""

from __future__ import annotations

from tuoyu_registration.domain import Institution
from tuoyu_shared.catalogue import CATALOGUE_DIR
from tuoyu_shared.catalogue_gen import event_classes, generate


def test_committed_schemas_match_the_event_classes():
    generated = generate("registration", [Institution])
    assert len(generated) == len(event_classes(Institution)) >= 20
    for path, text in generated.items():
        assert path.exists(), f"missing schema {path.name}: run tuoyu_shared.catalogue_gen"
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is out of date"
        assert '"description": ""' not in text, f"{path.name}: the event class needs a docstring"
    committed = set((CATALOGUE_DIR / "registration").glob("*.json"))
    assert committed == set(generated), "a schema without an event class"
