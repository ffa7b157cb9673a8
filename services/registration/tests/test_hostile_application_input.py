"""What an RPC caller (which never passes the HTTP checks) can hand the registration
application: refused with the field named, nothing written (issue 7)."""

from __future__ import annotations

import psycopg
import pytest

from tuoyu_registration.application import RegistrationApplication
from tuoyu_registration.samples import sample_csv, sample_registration
from tuoyu_shared.validation import ValidationFailed


@pytest.fixture
def app(settings_factory):
    application = RegistrationApplication(settings_factory("registration"))
    yield application
    application.close()


def events(app) -> int:
    with psycopg.connect(app.settings.database_url) as conn:
        return conn.execute("SELECT count(*) FROM registration_events").fetchone()[0]


def refused(call, *args, **kwargs) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as e:
        call(*args, **kwargs)
    return [(error.field, error.code) for error in e.value.errors]


def test_lone_surrogates_and_control_characters_in_a_registration_are_refused(app):
    data = sample_registration(1, name="托育\ud800园", address="路\x1b号")
    data["person_in_charge"]["name"] = "王\x00"
    assert refused(app.register_institution, data) == [
        ("name", "invalid_character"), ("address", "invalid_character"),
        ("person_in_charge.name", "invalid_character")]
    data = sample_registration(1, extra={"deep": [[[["\x00"]]]]}, count=2**64)
    assert refused(app.register_institution, data) == [
        ("extra.deep[0][0][0][0]", "invalid_character"), ("count", "out_of_range")]
    assert events(app) == 0


def test_a_version_the_store_cannot_hold_is_refused(app):
    institution_id = app.register_institution(sample_registration(2))
    for version, code in ((2**63, "out_of_range"), (0, "out_of_range"), ("1", "invalid_type"),
                          (True, "invalid_type")):
        assert refused(app.institution, institution_id, version) == [("version", code)]
    assert app.institution(institution_id, 1)["version"] == 1


@pytest.mark.parametrize(("filters", "expected"), [
    ({"offset": 10**20}, [("offset", "out_of_range")]),
    ({"limit": 0}, [("limit", "out_of_range")]),
    ({"limit": "10"}, [("limit", "invalid_type")]),
    ({"street": "a\x00"}, [("street", "invalid_character")]),
    ({"district": "区" * 51}, [("district", "too_long")]),
    ({"affordable": "yes"}, [("affordable", "invalid_type")]),
    ({"colour": "red"}, [("colour", "unknown_field")]),
])
def test_public_disclosure_filters_are_checked(app, filters, expected):
    assert refused(app.public_disclosure, **filters) == expected


def test_public_disclosure_with_good_filters_answers(app):
    assert app.public_disclosure(district="徐汇区", affordable=True, limit=10, offset=0) == []


def test_an_import_that_is_not_text_or_has_a_bad_source_is_refused(app):
    assert refused(app.import_filings_csv, 12) == [("body", "invalid_type")]
    assert refused(app.import_filings_csv, sample_csv(1), "a\x00") == [
        ("source", "invalid_character")]
    assert refused(app.import_filings_csv, sample_csv(1), "s" * 101) == [("source", "too_long")]
    assert events(app) == 0


def test_a_lone_surrogate_in_a_csv_cell_rejects_the_row(app):
    lines = sample_csv(2).splitlines()
    lines[1] = lines[1].replace("托育园1", "托育\udc00园1")
    report = app.import_filings_csv("\n".join(lines) + "\n", processes=2)
    assert report["imported"] == 1
    assert report["rejected"] == [{"row": 2, "errors": [{
        "field": "name", "code": "invalid_character",
        "reason": "must not contain a lone surrogate (U+DC00 at position 3); it cannot be "
                  "stored as UTF-8"}]}]
