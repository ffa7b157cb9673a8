"""The command kit: field-level errors from pydantic models, and a JSON Schema per command."""

from __future__ import annotations

import importlib

import jsonschema
import pytest

from tuoyu_shared.commands import (
    Bool,
    Choice,
    Command,
    CreditCode,
    Date,
    Int,
    Items,
    MoneyFen,
    Text,
    Texts,
    parse,
)
from tuoyu_shared.validation import FieldError, ValidationFailed

#: Every service that declares its commands (``tuoyu_<svc>.commands.COMMANDS``).
SERVICES_WITH_COMMANDS = ["registration", "credit", "inspection", "subsidy"]


class Place(Command):
    label: Text(20)
    places: Int(1, 100)


class Sample(Command):
    command_name = "sample"
    name: Text(10)
    code: CreditCode()
    notes: Text(50, multiline=True, optional=True) = None
    places: Items(Place, min_items=1, max_items=3)
    tags: Texts(5, max_items=2) = []
    ok: Bool()
    kind: Choice(["a", "b"])
    price_fen: MoneyFen(optional=True) = None
    on: Date(optional=True) = None

    def rules(self):
        if self.kind == "b" and self.notes is None:
            yield FieldError("notes", "is required for kind b", "required")


GOOD = {"name": " 阳光 ", "code": "91350100M000100Y43", "places": [{"label": "A", "places": 3}],
        "ok": True, "kind": "a"}


def refused(data):
    with pytest.raises(ValidationFailed) as caught:
        parse(Sample, data)
    return [(e.field, e.code) for e in caught.value.errors]


def test_a_good_payload_is_cleaned():
    command = parse(Sample, {**GOOD, "on": "2025-02-03", "price_fen": 30000})
    assert command.name == "阳光"  # NFC, trimmed
    assert command.places[0].places == 3
    assert command.on.isoformat() == "2025-02-03"
    assert command.price_fen == 30000


def test_every_bad_field_is_named_with_its_code_at_once():
    assert refused({"name": "", "code": "91350100M000100Y44",
                    "places": [{"label": "A", "places": "3"}, {}, 5],
                    "ok": 1, "kind": "c", "price_fen": 1.5, "extra": 1,
                    "tags": ["a", "b", "c"]}) == [
        ("name", "required"),
        ("code", "invalid_check_character"),
        ("places[0].places", "invalid_type"),
        ("places[1].label", "required"),
        ("places[1].places", "required"),
        ("places[2]", "invalid_type"),
        ("tags", "out_of_range"),
        ("ok", "invalid_type"),
        ("kind", "invalid_choice"),
        ("price_fen", "invalid_type"),
        ("extra", "unknown_field"),
    ]


def test_lengths_of_text_and_of_lists_keep_their_own_codes():
    assert refused({**GOOD, "name": "x" * 11}) == [("name", "too_long")]
    assert refused({**GOOD, "places": []}) == [("places", "out_of_range")]
    assert refused({**GOOD, "name": "a\x00"}) == [("name", "invalid_character")]


def test_rules_run_once_the_fields_are_valid():
    assert refused({**GOOD, "kind": "b"}) == [("notes", "required")]
    assert refused({**GOOD, "kind": "b", "name": ""}) == [("name", "required")]


def test_a_payload_that_is_not_an_object_or_too_deep_is_refused():
    assert refused([1]) == [("body", "invalid_type")]
    deep: dict = {}
    for _ in range(70):
        deep = {"x": deep}
    assert refused({**GOOD, "notes": deep})[0][1] == "too_deep"


def test_the_schema_says_what_the_model_checks():
    schema = Sample.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(GOOD)
    assert not validator.is_valid({**GOOD, "extra": 1})
    assert not validator.is_valid({**GOOD, "places": []})
    assert set(schema["required"]) == {"name", "code", "places", "ok", "kind"}


@pytest.mark.parametrize("service", SERVICES_WITH_COMMANDS)
def test_every_command_of_a_service_has_a_valid_json_schema(service):
    commands = importlib.import_module(f"tuoyu_{service}.commands").COMMANDS
    assert commands
    for name, model in commands.items():
        assert model.command_name == name
        schema = model.json_schema()
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object" and schema.get("additionalProperties") is False, name
