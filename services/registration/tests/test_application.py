"""The registration application against a real PostgreSQL: commands, refusals that write
nothing, personal data sealed at rest, and the envelopes it publishes."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest

from tuoyu_registration.application import InstitutionNotFound, RegistrationApplication
from tuoyu_registration.domain import DomainRuleViolated
from tuoyu_registration.samples import sample_registration, sample_resident_id
from tuoyu_shared.catalogue import validate_envelope
from tuoyu_shared.context import command_context
from tuoyu_shared.validation import ValidationFailed


@pytest.fixture
def app(settings_factory):
    application = RegistrationApplication(settings_factory("registration"))
    yield application
    application.close()


def table_counts(app) -> tuple[int, int]:
    with psycopg.connect(app.settings.database_url) as conn:
        events = conn.execute("SELECT count(*) FROM registration_events").fetchone()[0]
        keys = conn.execute("SELECT count(*) FROM personal_data_keys").fetchone()[0]
    return events, keys


def refused(app, data) -> list[dict]:
    before = table_counts(app)
    with pytest.raises(ValidationFailed) as e:
        app.register_institution(data)
    assert table_counts(app) == before, "a refused command wrote something"
    return e.value.to_dict()["errors"]


def test_file_institution_and_read_it_back(app):
    with command_context(actor="officer-1", department="health", correlation_id="case-42"):
        institution_id = app.register_institution(sample_registration(1))
    view = app.institution(institution_id)
    assert view["name"] == "示范托育园 1"
    assert view["status"] == "registered" and view["version"] == 1
    assert view["person_in_charge"] == "王**"
    [envelope] = app.read_log(1, 10)
    assert envelope.aggregate_id == str(institution_id)
    assert (envelope.actor, envelope.department, envelope.correlation_id) == (
        "officer-1", "health", "case-42")
    validate_envelope(envelope.to_dict())
    # Subscribers get masks and refs, never the ciphertext or the clear number.
    pic = envelope.payload["person_in_charge"]
    assert pic["id_number"]["masked"].startswith("310104") and "sealed" not in pic["id_number"]


def test_invalid_credit_code_is_refused_naming_field_and_reason(app):
    data = sample_registration(1)
    data["credit_code"] = data["credit_code"][:-1] + ("0" if data["credit_code"][-1] != "0"
                                                      else "1")
    [error] = refused(app, data)
    assert error["field"] == "credit_code"
    assert error["code"] == "invalid_check_character"
    assert "should be" in error["reason"]


def test_invalid_resident_id_is_refused(app):
    data = sample_registration(1)
    data["person_in_charge"]["id_number"] = "310104198802301234"  # 30 February
    [error] = refused(app, data)
    assert error["field"] == "person_in_charge.id_number"


def test_missing_fields_are_all_named(app):
    data = sample_registration(1)
    del data["name"]
    del data["person_in_charge"]["phone"]
    errors = refused(app, data)
    assert {(e["field"], e["code"]) for e in errors} == {
        ("name", "required"), ("person_in_charge.phone", "required")}


def test_credit_code_inconsistent_with_nature_is_refused(app):
    [error] = refused(app, sample_registration(1, nature="public_institution"))
    assert error["field"] == "credit_code" and error["code"] == "inconsistent_with_nature"


def test_second_filing_of_a_credit_code_is_refused_with_the_state(app):
    app.register_institution(sample_registration(1))
    with pytest.raises(DomainRuleViolated) as e:
        app.register_institution(sample_registration(1, name="another name"))
    assert e.value.state == "registered"
    assert app.log_head() == 1


def test_concurrent_filings_of_one_credit_code_record_exactly_one(app):
    results: list[object] = []
    barrier = threading.Barrier(4)

    def attempt():
        barrier.wait()
        try:
            results.append(app.register_institution(sample_registration(9)))
        except DomainRuleViolated as e:
            results.append(e)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert app.log_head() == 1


def test_unknown_institution(app):
    with pytest.raises(InstitutionNotFound):
        app.institution("00000000-0000-0000-0000-000000000000")


def test_database_holds_no_personal_data_in_clear(app):
    data = sample_registration(3)
    app.register_institution(data)
    with psycopg.connect(app.settings.database_url) as conn:
        raw = bytes(conn.execute("SELECT state FROM registration_events").fetchone()[0])
        keys = conn.execute("SELECT count(*) FROM personal_data_keys").fetchone()[0]
    assert data["person_in_charge"]["id_number"].encode() not in raw
    assert b"13812345678" not in raw
    for form in ("王晓梅".encode(), json.dumps("王晓梅").strip('"').encode()):
        assert form not in raw  # neither UTF-8 nor \u-escaped
    assert sample_resident_id(3)[:6].encode() in raw  # the mask is there
    assert keys == 1  # one data key, for the one person


def test_erasing_a_person_keeps_history_replayable(app):
    institution_id = app.register_institution(sample_registration(4))
    inst = app.repository.get(institution_id)
    sealed_name = inst.person_in_charge["name"]
    assert app.vault.open(sealed_name) == "王晓梅"
    app.vault.erase(sealed_name["ref"])
    app.vault._keys.clear()
    assert app.vault.open(sealed_name) is None
    assert app.institution(institution_id)["person_in_charge"] == "王**"
