"""What registration publishes is its contract (tuoyu_registration.contract), and the committed
schemas are the ones the contract generates: nothing is published that the catalogue does not
describe, and a published field cannot change without its schema."""

from __future__ import annotations

from tuoyu_registration.contract import CONTRACT
from tuoyu_registration.domain import (
    EmploymentRecord,
    EnrolmentReports,
    Institution,
    RegistrationCases,
    Roster,
)
from tuoyu_shared.catalogue_gen import contract_problems
from tuoyu_shared.envelope import Envelope
from tuoyu_shared.testing import check_catalogue_matches

AGGREGATES = [Institution, EmploymentRecord, RegistrationCases, Roster, EnrolmentReports]


def test_every_event_has_a_publication_that_can_read_it():
    assert contract_problems(CONTRACT, AGGREGATES) == []
    assert len(CONTRACT.publications) >= 28


def test_committed_schemas_match_the_contract():
    check_catalogue_matches(CONTRACT)


EVENT_ID = "0d6f3b8e-6c55-5b6f-9d0e-1f2a3b4c5d6e"


def _report_v3(health: int | None = 30) -> Envelope:
    payload = {"institution_id": "4f7c1a52-8d1e-4b53-9a60-0c27c0f6f001", "month": "2026-11",
               "classes": [], "children": 40, "second_children": 5, "third_children": 1,
               "health_managed_children": health}
    return Envelope(event_id=EVENT_ID, event_type="InstitutionEnrolmentReported", schema_version=3,
                    source="registration", aggregate_id="4f7c1a52-8d1e-4b53-9a60-0c27c0f6f002",
                    aggregate_version=2,
                    notification_id=17, occurred_at="2026-11-30T02:00:00+00:00", actor="op",
                    department="institution", correlation_id="c", causation_id="",
                    payload=payload)


def test_v2_reports_are_still_published_beside_v3_until_the_announced_day():
    import datetime as dt

    from tuoyu_registration.contract import V2_REPORTS_SERVED_UNTIL
    from tuoyu_shared.catalogue import legacy_served, validate_envelope

    last = dt.date.fromisoformat(V2_REPORTS_SERVED_UNTIL)
    [(key, copy)] = CONTRACT.legacy_copies(_report_v3(), day=last)
    assert key == "InstitutionEnrolmentReported.v2"
    assert copy.schema_version == 2 and "health_managed_children" not in copy.payload
    assert (copy.event_id, copy.notification_id) == (EVENT_ID, 17)  # the same event, as v2
    validate_envelope(copy.to_dict())
    assert _report_v3().payload["health_managed_children"] == 30  # the original is untouched
    assert CONTRACT.legacy_copies(_report_v3(), day=last + dt.timedelta(days=1)) == []
    assert legacy_served("registration")[("InstitutionEnrolmentReported", 2)]["until"] == \
        V2_REPORTS_SERVED_UNTIL


def test_a_v3_correction_as_v2_has_no_health_figure_in_previous_either():
    import datetime as dt

    from tuoyu_shared.catalogue import validate_envelope

    base = _report_v3()
    payload = {**base.payload, "previous": {"children": 38, "health_managed_children": 20},
               "reason": "miscounted"}
    correction = Envelope(**{**base.to_dict(), "event_type":
                             "InstitutionEnrolmentReportCorrected", "payload": payload})
    [(key, copy)] = CONTRACT.legacy_copies(correction, day=dt.date(2027, 1, 1))
    assert key == "InstitutionEnrolmentReportCorrected.v2"
    assert copy.payload["previous"] == {"children": 38}
    validate_envelope(copy.to_dict())
