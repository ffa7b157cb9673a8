"""Registration again after 注销 (deregistration): the credit code opens a new registration case,
a new institution with its own id and history, and the earlier case stays readable as it was.
Domain rules in plain Python, then the application against a real PostgreSQL."""

from __future__ import annotations

import threading

import psycopg
import pytest

from tuoyu_registration.application import RegistrationApplication
from tuoyu_registration.domain import (
    DomainRuleViolated,
    Institution,
    Nature,
    ProviderKind,
    RegistrationCases,
    institution_id_for,
    registration_cases_id_for,
)
from tuoyu_registration.samples import (
    sample_credit_code,
    sample_csv,
    sample_filing_submission,
    sample_registration,
)
from tuoyu_shared.catalogue import validate_envelope

CODE = sample_credit_code(1)
PERSON = {"ref": "r", "name": {"ref": "r", "sealed": "x"}}


# ---- domain ---------------------------------------------------------------------------------
def test_the_first_case_keeps_the_id_derived_from_the_code():
    assert institution_id_for(CODE) == institution_id_for(CODE, 1)
    assert len({institution_id_for(CODE, n) for n in (1, 2, 3)}) == 3
    assert registration_cases_id_for(CODE) not in {institution_id_for(CODE, n)
                                                   for n in (1, 2, 3)}
    with pytest.raises(ValueError):
        institution_id_for(CODE, 0)


def test_a_new_case_opens_only_after_the_latest_is_deregistered():
    cases = RegistrationCases(credit_code=CODE, first_case=str(institution_id_for(CODE)))
    assert cases.id == registration_cases_id_for(CODE)
    for status in ("registered", "filing_submitted", "filed", "suspended"):
        with pytest.raises(DomainRuleViolated) as e:
            cases.open_case(status)
        assert e.value.state == status and str(institution_id_for(CODE)) in str(e.value)
    second = cases.open_case("deregistered")
    assert second == institution_id_for(CODE, 2)
    assert cases.cases == [str(institution_id_for(CODE)), str(second)]
    assert [type(e).__qualname__ for e in cases.collect_events()] == [
        "RegistrationCases.Opened", "RegistrationCases.CaseOpened"]
    with pytest.raises(DomainRuleViolated) as e:  # the second case is the open one now
        cases.open_case("registered")
    assert str(second) in str(e.value)


def test_an_institution_registers_under_the_id_of_its_case():
    institution = Institution.register(
        name="x", credit_code=CODE, nature=Nature.FOR_PROFIT,
        kind=ProviderKind.CHILDCARE_INSTITUTION, person_in_charge=PERSON, district="d",
        street="s", address="a", institution_id=institution_id_for(CODE, 2))
    assert institution.id == institution_id_for(CODE, 2)
    assert institution.credit_code == CODE and institution.status == "registered"


# ---- application ----------------------------------------------------------------------------
@pytest.fixture
def app(settings_factory):
    application = RegistrationApplication(settings_factory("registration"))
    yield application
    application.close()


def counts(app) -> tuple[int, int]:
    with psycopg.connect(app.settings.database_url) as conn:
        return (conn.execute("SELECT count(*) FROM registration_events").fetchone()[0],
                conn.execute("SELECT count(*) FROM person_keys").fetchone()[0])


def filed(app, data) -> str:
    institution_id = str(app.register_institution(data))
    app.submit_filing(institution_id, sample_filing_submission())
    app.issue_filing_receipt(institution_id, {"receipt_number": "BA-1"})
    return institution_id


def deregister(app, institution_id: str) -> None:
    app.deregister(institution_id, {"reason": "closing", "placement_of_children": "placed"})


def test_registration_after_deregistration_opens_a_new_case(app):
    first = filed(app, sample_registration(1))
    assert first == str(institution_id_for(CODE))  # as before re-registration existed
    deregister(app, first)
    second = str(app.register_institution(sample_registration(1, name="新星托育园")))
    assert second == str(institution_id_for(CODE, 2)) != first
    assert app.registration_cases(CODE) == [first, second]
    # Both records readable, each with its own history.
    old, new = app.institution_record(first), app.institution_record(second)
    assert old["institution"]["status"] == "deregistered"
    assert [h["event_type"] for h in old["history"]][-1] == "InstitutionDeregistered"
    assert new["institution"]["status"] == "registered"
    assert new["institution"]["name"] == "新星托育园"
    assert [h["event_type"] for h in new["history"]] == ["InstitutionRegistered"]
    assert app.institution_by_credit_code(CODE)["institution_id"] == second
    # The public disclosure shows the new case once it is filed (never a deregistered one).
    app.submit_filing(second, sample_filing_submission())
    app.issue_filing_receipt(second, {"receipt_number": "BA-2"})
    app.views_projector().catch_up()
    assert [(r["institution_id"], r["name"], r["status"]) for r in app.public_disclosure()] == [
        (second, "新星托育园", "filed")]
    with psycopg.connect(app.settings.database_url) as conn:
        rows = conn.execute("SELECT institution_id::text, status FROM public_register "
                            "WHERE credit_code = %s ORDER BY updated_at", (CODE,)).fetchall()
    assert rows == [(first, "deregistered"), (second, "filed")]
    for envelope in app.read_log(1, 1000):
        validate_envelope(envelope.to_dict())


def test_a_third_case_follows_the_second(app):
    first = str(app.register_institution(sample_registration(1)))
    deregister(app, first)
    second = str(app.register_institution(sample_registration(1)))
    deregister(app, second)
    third = str(app.register_institution(sample_registration(1)))
    assert app.registration_cases(CODE) == [first, second, third]
    assert third == str(institution_id_for(CODE, 3))


@pytest.mark.parametrize("cases_before", [1, 2])
def test_registration_while_the_latest_case_is_open_is_refused_naming_it(app, cases_before):
    open_case = str(app.register_institution(sample_registration(1)))
    if cases_before == 2:
        deregister(app, open_case)
        open_case = str(app.register_institution(sample_registration(1)))
    app.submit_filing(open_case, sample_filing_submission())
    before = counts(app)
    with pytest.raises(DomainRuleViolated) as e:
        app.register_institution(sample_registration(1, name="another name"))
    assert e.value.state == "filing_submitted"
    assert open_case in str(e.value) and CODE in str(e.value)
    assert e.value.http_status == 409
    assert e.value.to_dict()["details"] == {"credit_code": CODE, "open_case": open_case}
    assert counts(app) == before, "a refused registration wrote something"
    assert len(app.registration_cases(CODE)) == cases_before


def test_concurrent_re_registrations_of_one_code_open_exactly_one_case(app):
    first = str(app.register_institution(sample_registration(1)))
    deregister(app, first)
    head = app.log_head()
    results: list[object] = []
    barrier = threading.Barrier(4)

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            results.append(app.register_institution(sample_registration(1, name=f"园 {n}")))
        except DomainRuleViolated as e:
            results.append(e)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    [winner] = [r for r in results if not isinstance(r, Exception)]
    refusals = [r for r in results if isinstance(r, DomainRuleViolated)]
    assert len(refusals) == 3
    assert all(e.state == "registered" and str(winner) in str(e) for e in refusals)
    assert app.registration_cases(CODE) == [first, str(winner)]
    # the winner's three events: the index opened, its case added, the registration
    assert app.log_head() == head + 3


def test_the_csv_import_takes_no_code_the_register_has_had(app):
    """An import takes over filings as first cases; a code with a case here (deregistered or
    not) is reported, and a new case of it opens by registration."""
    first = str(app.register_institution(sample_registration(1)))
    deregister(app, first)
    report = app.import_filings_csv(sample_csv(2))
    assert report["imported"] == 1
    [row] = report["rejected"]
    assert (row["row"], row["errors"][0]["code"]) == (2, "duplicate")
    second = str(app.register_institution(sample_registration(1)))
    assert app.registration_cases(CODE) == [first, second]
    again = app.import_filings_csv(sample_csv(1))
    assert again["rejected"][0]["errors"][0]["code"] == "duplicate"
    assert app.institution(second)["status"] == "registered"


def test_a_first_case_registered_before_case_indexes_existed_is_carried_into_the_index(app):
    """Data recorded before this change: the institution alone, no index."""
    first = str(app.register_institution(sample_registration(1)))
    with psycopg.connect(app.settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM registration_events WHERE originator_id=%s",
                            (registration_cases_id_for(CODE),)).fetchone()[0] == 0
    assert app.registration_cases(CODE) == [first]
    deregister(app, first)
    second = str(app.register_institution(sample_registration(1)))
    index = app.repository.get(registration_cases_id_for(CODE))
    assert index.cases == [first, second]
    assert app.institution(first)["status"] == "deregistered"
