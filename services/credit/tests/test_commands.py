"""Credit's command models (no database): the field types of credit's payloads, the rules
between fields, the path parameters, and a JSON Schema per command."""

from __future__ import annotations

import uuid

import jsonschema
import pytest

from tuoyu_credit import commands
from tuoyu_credit.application import CreditApplication
from tuoyu_registration.samples import sample_resident_id
from tuoyu_shared.commands import parse
from tuoyu_shared.validation import ValidationFailed

ID = sample_resident_id(401)
REF = "0123456789abcdef" * 2
BAN = {"source": "court_ruling", "legal_basis": "《刑法》第三十七条之一",
       "evidence": ["(2025)沪0104刑初12号"], "officer": "officer-1", "term": 3}


def refused(model, data) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        parse(model, data)
    return [(e.field, e.code) for e in caught.value.errors]


def test_every_command_is_an_application_method_with_a_checked_schema():
    for name, model in commands.COMMANDS.items():
        assert callable(getattr(CreditApplication, name)), name
        schema = model.json_schema()
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["additionalProperties"] is False and model.__doc__, name


def test_a_good_ban_is_cleaned():
    ban = parse(commands.ImposeBan, {**BAN, "legal_basis": "  第一行\n第二行 ",
                                     "starts_on": "2025-03-03"})
    assert ban.legal_basis == "第一行\n第二行"  # a legal basis may span lines
    assert ban.starts_on.isoformat() == "2025-03-03" and ban.ban_ref is None
    assert parse(commands.ImposeBan, {**BAN, "term": "lifetime"}).term == "lifetime"


@pytest.mark.parametrize(("term", "code"), [
    (0, "invalid_choice"), (101, "invalid_choice"), (True, "invalid_choice"),
    ("5", "invalid_choice"), ("forever", "invalid_choice"), (1.5, "invalid_choice"),
    (None, "required"), (" ", "required"),
])
def test_a_term_is_lifetime_or_years(term, code):
    assert refused(commands.ImposeBan, {**BAN, "term": term}) == [("term", code)]


@pytest.mark.parametrize(("evidence", "expected"), [
    ([], [("evidence", "invalid_format")]),
    ("doc", [("evidence", "invalid_format")]),
    (["e"] * 101, [("evidence", "invalid_format")]),
    (None, [("evidence", "required")]),
    (["ok", " ", 3, "x" * 501, f"判决书 {ID}"],
     [("evidence[1]", "required"), ("evidence[2]", "invalid_type"),
      ("evidence[3]", "too_long"), ("evidence[4]", "personal_data")]),
])
def test_references_are_a_list_checked_item_by_item(evidence, expected):
    assert refused(commands.ImposeBan, {**BAN, "evidence": evidence}) == expected


def test_free_text_never_holds_a_resident_id_number_and_short_text_is_one_line():
    assert refused(commands.PractitionerReads, {"purpose": f"checking {ID}"}) == [
        ("purpose", "personal_data")]
    assert refused(commands.PractitionerReads, {"purpose": "a\nb"}) == [
        ("purpose", "invalid_character")]
    # a number that is not a valid ID number (wrong check character) is only a number
    other = ID[:-1] + ("0" if ID[-1] != "0" else "1")
    assert parse(commands.PractitionerReads, {"purpose": f"file {other}"}).purpose


def test_a_check_is_by_id_number_or_by_person_ref():
    assert parse(commands.CheckPractitioner, {"purpose": "p", "id_number": ID}).id_number == ID
    assert parse(commands.CheckPractitioner, {"purpose": "p", "person_ref": REF}).person_ref
    for who in ({}, {"id_number": ID, "person_ref": REF}, {"id_number": "", "person_ref": None}):
        assert refused(commands.CheckPractitioner, {"purpose": "p", **who}) == [
            ("id_number", "required")]
    assert refused(commands.CheckPractitioner, {"purpose": "p", "person_ref": REF.upper()}) \
        == [("person_ref", "invalid_format")]


def test_severity_is_required_for_a_finding_only():
    finding = {"cause_type": "finding_recorded", "cause_ref": "纸质检查 1"}
    assert refused(commands.RecordScoringCause, finding) == [("severity", "required")]
    assert parse(commands.RecordScoringCause, {**finding, "severity": "major", "note": "n"}) \
        .details() == {"severity": "major", "note": "n"}
    refusal = {"cause_type": "inspection_refused", "cause_ref": "r-1", "severity": "minor"}
    assert parse(commands.RecordScoringCause, refusal).details() == {}


def test_an_institution_id_in_a_payload_is_canonical_and_a_blank_one_is_refused():
    given = uuid.uuid4()
    check = parse(commands.RequestCheck, {"institution_id": str(given).upper()})
    assert check.institution_id == str(given)
    assert refused(commands.RequestCheck, {"institution_id": ""}) == [
        ("institution_id", "invalid_format")]
    assert parse(commands.RequestCheck, {}).institution_id is None


def test_path_parameters_are_checked_under_their_own_names():
    given = uuid.uuid4()
    clean, errors = commands.read_parameters(institution_id=given, list_name="trust_reward",
                                             person_ref=REF)
    assert clean == {"institution_id": str(given), "list_name": "trust_reward",
                     "person_ref": REF} and errors == []
    clean, errors = commands.read_parameters(institution_id="x", list_name=None,
                                             person_ref="")
    assert clean == {}
    assert [(e.field, e.code) for e in errors] == [
        ("institution_id", "invalid_format"), ("list_name", "invalid_choice"),
        ("person_ref", "invalid_format")]


def test_the_register_query_keeps_its_defaults():
    query = parse(commands.CreditRegisterQuery, {})
    assert query.data() == {"grade": None, "list_name": None, "limit": 100, "offset": 0}
    assert refused(commands.CreditRegisterQuery, {"limit": None, "offset": "1"}) == [
        ("limit", "required"), ("offset", "invalid_type")]
