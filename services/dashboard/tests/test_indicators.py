"""The indicators from registration's real events (the application's own log, projected by the
dashboard's view as the worker does), now and as of a past day, with figures known in advance;
the drill-down; the monthly series; the rebuild row by row."""

from __future__ import annotations

import datetime as dt
import uuid
from fractions import Fraction

import psycopg
import pytest

from tuoyu_dashboard import indicators as ind
from tuoyu_dashboard.projections import REGISTRATION_TABLES, REGISTRATION_VIEW
from tuoyu_dashboard.reference import load_reference
from tuoyu_registration import bootstrap
from tuoyu_registration.samples import (
    sample_enrolment,
    sample_filing_submission,
    sample_registration,
    sample_resident_id,
)
from tuoyu_shared.consumer import ApplicationLog
from tuoyu_shared.testing import FixedClock

DAY1 = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai
DAY2 = dt.datetime(2026, 3, 10, 2, 0, tzinfo=dt.UTC)


@pytest.fixture
def world(settings_factory, monkeypatch):
    """Registration on a clock the test moves; its events are stamped by that clock too
    (eventsourcing stamps them with ``datetime_now_with_tzinfo``)."""
    import eventsourcing.domain

    from tuoyu_credit.application import CreditApplication
    from tuoyu_registration.practitioners import InProcessRegister

    clock = FixedClock(DAY1)
    monkeypatch.setattr(eventsourcing.domain, "datetime_now_with_tzinfo", lambda: clock.now)
    credit = CreditApplication(settings_factory("credit"))  # the practitioners' register
    registration = bootstrap.application(settings_factory("registration"), clock=clock,
                                         practitioners=InProcessRegister(credit))
    dashboard = settings_factory("dashboard")
    yield registration, dashboard, clock
    registration.close()
    credit.close()


def _project(registration, dashboard) -> None:
    consumer = REGISTRATION_VIEW.consumer(dashboard, ApplicationLog(registration))
    try:
        consumer.catch_up()
    finally:
        consumer.store.close()


def _register(app, n: int, district: str, street: str) -> str:
    return str(app.register_institution(sample_registration(n, district=district,
                                                            street=street)))


def _file(app, institution_id: str, n: int) -> None:
    app.submit_filing(institution_id, sample_filing_submission())
    app.issue_filing_receipt(institution_id, {"receipt_number": f"BA-{n}"})


def _hire(app, institution_id: str, n: int, certificates: list[str]) -> str:
    hire_id = app.request_hire(institution_id, {
        "practitioner": {"name": "李四", "id_number": sample_resident_id(n)}, "role": "carer",
        "certificates": certificates})
    app.save(*app.on_background_check_completed({
        "institution_id": institution_id, "hire_id": hire_id, "outcome": "cleared",
        "reference": hire_id}))
    return hire_id


def _report(app, institution_id: str, children: int, health: int) -> None:
    """A March report: 40 children (the sample's) or 20 (toddlers and older ones)."""
    classes = None if children == 40 else [
        {"class_type": "toddler", "children": 10, "carers": 2, "age_bands": {"m18_24": 10}},
        {"class_type": "older", "children": 10, "carers": 2, "age_bands": {"m24_36": 10}}]
    assert children in (20, 40)
    overrides = {"classes": classes} if classes else {}
    app.report_enrolment(institution_id, sample_enrolment(
        "2026-03", second_children=0, third_children=0, health_managed_children=health,
        **overrides))


def build_district(registration, dashboard, clock, district: str) -> dict[str, str]:
    """Two streets; day 1: three registered, two filed (one 普惠), one report, two staff (one
    certified); day 2: the third filed and 普惠, a second report, the certified one released."""
    n = 7000 + uuid.uuid4().int % 1000 * 3
    i1 = _register(registration, n, district, "东街道")
    i2 = _register(registration, n + 1, district, "东街道")
    i3 = _register(registration, n + 2, district, "西街道")
    _file(registration, i1, n)
    _file(registration, i2, n + 1)
    registration.designate_affordable(i1, {"guide_price_fen": 250000, "document": "普惠认定"})
    _report(registration, i1, 40, 30)
    certified = _hire(registration, i1, n, ["保育师证"])
    _hire(registration, i1, n + 1, [])
    clock.now = DAY2
    _file(registration, i3, n + 2)
    registration.designate_affordable(i3, {"guide_price_fen": 250000, "document": "普惠认定"})
    _report(registration, i2, 20, 20)
    registration.release_practitioner(i1, {"hire_id": certified, "reason": "离职"})
    _project(registration, dashboard)
    with psycopg.connect(dashboard.database_url) as conn:
        load_reference(conn, 2026, "district,street,population,under_three,communities\n"
                       f"{district},东街道,10000,300,2\n{district},西街道,5000,200,1\n",
                       "tester")
    return {"i1": i1, "i2": i2, "i3": i3}


def _check(figures: dict, expected: dict[str, Fraction]) -> None:
    for code, value in expected.items():
        got = figures[code]
        assert Fraction(got["numerator"], got["denominator"]) == value, code
        assert got["value"] == float(value), code


def test_each_indicator_now_and_as_of_a_day_before_the_last_changes(world):
    registration, dashboard, clock = world
    district = f"指标区{uuid.uuid4().hex[:6]}"
    ids = build_district(registration, dashboard, clock, district)
    with psycopg.connect(dashboard.database_url) as conn:
        now = ind.indicators(conn, None, district)
        before = ind.indicators(conn, dt.date(2026, 3, 2), district)
        nothing = ind.indicators(conn, dt.date(2026, 3, 1), district)
    _check(now["total"]["indicators"], {
        "filing_rate": Fraction(3, 3), "places_per_1000": Fraction(135 * 1000, 15000),
        "enrolment_rate": Fraction(60, 500), "utilisation": Fraction(60, 135),
        "affordable_share": Fraction(90, 135), "affordable_street_coverage": Fraction(2, 2),
        "places_per_community": Fraction(135, 3), "certified_rate": Fraction(0, 1),
        "health_management_rate": Fraction(50, 60)})
    _check(before["total"]["indicators"], {
        "filing_rate": Fraction(2, 3), "places_per_1000": Fraction(90 * 1000, 15000),
        "enrolment_rate": Fraction(40, 500), "utilisation": Fraction(40, 90),
        "affordable_share": Fraction(45, 90), "affordable_street_coverage": Fraction(1, 2),
        "places_per_community": Fraction(90, 3), "certified_rate": Fraction(1, 2),
        "health_management_rate": Fraction(30, 40)})
    assert nothing["total"]["counts"]["registered"] == 0
    assert nothing["total"]["indicators"]["filing_rate"]["display"] == "—"
    # shown rounded to 2 decimals, computed in full
    assert before["total"]["indicators"]["filing_rate"]["display"] == "66.67%"
    assert now["total"]["indicators"]["utilisation"]["display"] == "44.44%"
    # by street
    east = next(s for s in before["streets"] if s["street"] == "东街道")
    _check(east["indicators"], {"filing_rate": Fraction(2, 2),
                                "places_per_1000": Fraction(90 * 1000, 10000)})
    assert "affordable_street_coverage" not in east["indicators"]
    assert [d["district"] for d in now["districts"]] == [district]
    assert now["reference"]["year"] == 2026 and now["reference"]["rows"] == 2

    # the drill-down names the institutions and the events behind the number
    with psycopg.connect(dashboard.database_url) as conn:
        behind = ind.institutions_behind(conn, "filing_rate", dt.date(2026, 3, 2), district)
        history = ind.institution_history(conn, ids["i3"])
    assert {i["institution_id"] for i in behind["institutions"]} == set(ids.values())
    assert behind["numerator_total"] == 2 and behind["denominator_total"] == 3
    i3 = next(i for i in behind["institutions"] if i["institution_id"] == ids["i3"])
    assert i3["numerator"] == 0 and i3["event"]["type"] == "InstitutionRegistered"
    assert [h["event_type"] for h in history][:1] == ["InstitutionRegistered"]
    assert history[-1]["event_type"] == "InstitutionAffordableDesignated"


def test_the_monthly_series_and_a_rebuild_row_by_row(world):
    registration, dashboard, clock = world
    district = f"趋势区{uuid.uuid4().hex[:6]}"
    build_district(registration, dashboard, clock, district)
    with psycopg.connect(dashboard.database_url) as conn:
        series = ind.series(conn, dt.date(2026, 4, 15), 3, district)
    assert series["months"] == ["2026-02", "2026-03", "2026-04"]
    february, march, april = series["points"]
    assert february["total"]["filing_rate"]["value"] is None
    assert march["total"]["filing_rate"]["value"] == 1.0
    assert april["total"]["health_management_rate"]["value"] == float(Fraction(50, 60))

    def tables() -> dict[str, list]:
        """Every row (but the directory's ``updated_at``: when it was written)."""
        with psycopg.connect(dashboard.database_url) as conn:
            return {t: conn.execute(f"SELECT to_jsonb(t) - 'updated_at' FROM {t} t "
                                    "ORDER BY 1").fetchall()
                    for t in REGISTRATION_TABLES}

    live = tables()
    assert len(live["dash_institution_history"]) > 3
    count = REGISTRATION_VIEW.rebuild(dashboard, ApplicationLog(registration))
    assert count > 0
    assert tables() == live
    with psycopg.connect(dashboard.database_url) as conn:  # the kept counts went with it
        assert conn.execute("SELECT count(*) FROM dash_snapshot_instants").fetchone()[0] == 0
        again = ind.series(conn, dt.date(2026, 4, 15), 3, district)
    assert again == series


def test_bad_reference_data_is_reported_and_nothing_loaded(settings_factory):
    from tuoyu_shared.validation import ValidationFailed

    dashboard = settings_factory("dashboard")
    bad = ("district,street,population,under_three,communities\n"
           "甲区,一街道,1000,50,2\n甲区,二街道,abc,50,2\n甲区,一街道,10,50,1\n")
    with psycopg.connect(dashboard.database_url) as conn:
        with pytest.raises(ValidationFailed) as caught:
            load_reference(conn, 2026, bad, "tester")
        fields = {e.field for e in caught.value.errors}
        assert fields == {"line 3.population", "line 4.under_three"}
        with pytest.raises(ValidationFailed) as caught:
            load_reference(conn, 2026, "district,street,people\n", "tester")
        assert caught.value.errors[0].field == "header"
        assert conn.execute("SELECT count(*) FROM dash_reference_rows").fetchone()[0] == 0


def test_counts_kept_for_a_past_instant_are_forgotten_when_an_earlier_event_arrives(world):
    """A late event (recorded upstream before an instant whose counts are kept, projected
    after) replaces what was kept: the figures are always what the history says."""
    registration, dashboard, clock = world
    district = f"迟到区{uuid.uuid4().hex[:6]}"
    build_district(registration, dashboard, clock, district)
    day = dt.date(2026, 3, 20)
    with psycopg.connect(dashboard.database_url) as conn:
        kept = ind.indicators(conn, day, district)["total"]["counts"]["registered"]
        assert conn.execute("SELECT count(*) FROM dash_snapshot_instants WHERE at = %s",
                            (ind.cutoff(day),)).fetchone()[0] == 1
    assert kept == 3
    clock.now = DAY2  # recorded on 2026-03-10, before the instant kept
    _register(registration, 7999, district, "西街道")
    _project(registration, dashboard)
    with psycopg.connect(dashboard.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM dash_snapshot_instants WHERE at = %s",
                            (ind.cutoff(day),)).fetchone()[0] == 0
        assert ind.indicators(conn, day, district)["total"]["counts"]["registered"] == 4
        assert ind.indicators(conn, dt.date(2026, 3, 9), district)[
            "total"]["counts"]["registered"] == 3


def _envelope(n: int, event_type: str, aggregate: str, at: dt.datetime, payload: dict,
              version: int = 1):
    from tuoyu_shared.envelope import Envelope

    return Envelope(event_id=str(uuid.uuid4()), event_type=event_type, schema_version=version,
                    source="registration", aggregate_id=aggregate, aggregate_version=1,
                    notification_id=n, occurred_at=at.isoformat(), actor="t", department="t",
                    correlation_id="", causation_id="", payload=payload)


def _apply(dashboard, handler, envelopes) -> None:
    with psycopg.connect(dashboard.database_url) as conn, conn.cursor() as cur:
        for envelope in envelopes:
            handler(envelope, cur)


def test_a_state_redriven_after_later_events_of_other_streams_is_the_latest(settings_factory):
    """Seen in review: a parked InstitutionFiled re-driven after the institution's report (a
    stream of its own, not held behind it) was taken for an older state at every past
    instant. The states are numbered in the order they were applied."""
    from tuoyu_dashboard.projections import project_registration_indicators

    dashboard = settings_factory("dashboard")
    institution, reports = str(uuid.uuid4()), str(uuid.uuid4())
    district = f"重放区{uuid.uuid4().hex[:6]}"
    t = DAY1
    registered = {"name": "甲园", "credit_code": "x", "nature": "for_profit",
                  "kind": "childcare_institution", "registering_authority": "x",
                  "person_in_charge": {"ref": "p"}, "district": district, "street": "东街道",
                  "address": "x"}
    _apply(dashboard, project_registration_indicators, [
        _envelope(1, "InstitutionRegistered", institution, t, registered),
        _envelope(2, "InstitutionFilingSubmitted", institution, t, {
            "filing": {"total_places": 45}, "submitted_on": "2026-03-02",
            "receipt_due_on": "2026-03-09", "findings": []}),
        # n=4 (the report) applied before n=3 (the filing's receipt, parked and re-driven)
        _envelope(4, "InstitutionEnrolmentReported", reports, t, {
            "institution_id": institution, "month": "2026-03", "classes": [], "children": 10,
            "second_children": 0, "third_children": 0, "health_managed_children": 5}, 3),
        _envelope(3, "InstitutionFiled", institution, t, {
            "receipt_number": "BA-1", "issued_on": "2026-03-02",
            "verification_due_on": "2026-03-30"}),
    ])
    with psycopg.connect(dashboard.database_url) as conn:
        now = ind.indicators(conn, None, district)["total"]["counts"]
        past = ind.indicators(conn, dt.date(2026, 3, 5), district)["total"]["counts"]
        states = ind.institution_history(conn, institution)
    assert now["filed"] == past["filed"] == 1
    assert now["enrolled"] == past["enrolled"] == 10
    assert states[-1]["event_type"] == "InstitutionFiled"


def test_two_days_computed_at_once_do_not_deadlock_and_instants_are_not_kept(world):
    import threading

    registration, dashboard, clock = world
    district = f"并发区{uuid.uuid4().hex[:6]}"
    build_district(registration, dashboard, clock, district)
    answers: dict[str, int] = {}
    errors: list[BaseException] = []

    def ask(day: dt.date) -> None:
        try:
            with psycopg.connect(dashboard.database_url, autocommit=True) as conn:
                answers[day.isoformat()] = ind.indicators(conn, day, district)[
                    "total"]["counts"]["registered"]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    for _ in range(3):
        threads = [threading.Thread(target=ask, args=(dt.date(2026, 3, d),))
                   for d in (11, 12, 13, 14)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [] and set(answers.values()) == {3}
    with psycopg.connect(dashboard.database_url, autocommit=True) as conn:
        kept = conn.execute("SELECT count(*) FROM dash_snapshot_instants").fetchone()[0]
        at = dt.datetime(2026, 3, 5, 10, 42, tzinfo=ind.SHANGHAI)
        assert ind.indicators(conn, at, district)["total"]["counts"]["registered"] == 3
        assert conn.execute("SELECT count(*) FROM dash_snapshot_instants").fetchone()[0] == kept


def test_a_trust_listing_ended_by_a_dishonesty_listing_is_no_longer_counted(settings_factory):
    from tuoyu_dashboard.projections import project_credit, project_registration_indicators

    dashboard = settings_factory("dashboard")
    institution = str(uuid.uuid4())
    district = f"信用区{uuid.uuid4().hex[:6]}"
    _apply(dashboard, project_registration_indicators, [_envelope(
        1, "InstitutionRegistered", institution, DAY1, {
            "name": "乙园", "credit_code": "y", "nature": "for_profit",
            "kind": "childcare_institution", "registering_authority": "x",
            "person_in_charge": {"ref": "p"}, "district": district, "street": "东街道",
            "address": "x"})])
    listed = {"institution_id": institution, "listing_id": "L1", "list_name": "trust_reward",
              "decision": "listed", "decided_on": "2026-03-02", "officer": "o", "reason": "r",
              "legal_basis": "b", "evidence": [], "term_start": "2026-03-02",
              "term_end": "2027-03-02"}
    _apply(dashboard, project_credit, [_envelope(1, "InstitutionCreditListingDecided",
                                                 institution, DAY1, listed)])
    with psycopg.connect(dashboard.database_url) as conn:
        assert ind.credit(conn, None, district)["listed"] == {"trust_reward": 1}
    _apply(dashboard, project_credit, [_envelope(
        2, "InstitutionCreditListingEndedByDishonesty", institution, DAY2, {
            "institution_id": institution, "listing_id": "L1", "list_name": "trust_reward",
            "on": "2026-03-10", "dishonesty_listing_id": "L2"})])
    with psycopg.connect(dashboard.database_url) as conn:
        assert ind.credit(conn, None, district)["listed"] == {}
        assert ind.credit(conn, dt.date(2026, 3, 5), district)["listed"] == {"trust_reward": 1}


def test_a_report_that_states_no_health_figure_is_left_out_of_the_rate(settings_factory):
    """A report of before the figure existed (v2, upcast with null): its children are left
    out of 健康管理率 (neither managed nor not), and still count as enrolled."""
    from tuoyu_dashboard.projections import project_registration_indicators

    dashboard = settings_factory("dashboard")
    district = f"健康区{uuid.uuid4().hex[:6]}"
    envelopes = []
    for k, managed in enumerate((None, 8)):
        institution = str(uuid.uuid4())
        envelopes += [
            _envelope(10 * k + 1, "InstitutionImported", institution, DAY1, {
                "name": f"园{k}", "credit_code": f"c{k}", "nature": "for_profit",
                "kind": "childcare_institution", "registering_authority": "x",
                "person_in_charge": {"ref": "p"}, "district": district, "street": "东街道",
                "address": "x", "filing": {"total_places": 45}, "receipt": {}, "source": "t"}),
            _envelope(10 * k + 2, "InstitutionEnrolmentReported", str(uuid.uuid4()), DAY1, {
                "institution_id": institution, "month": "2026-03", "classes": [],
                "children": 10, "second_children": 0, "third_children": 0,
                "health_managed_children": managed}, 3)]
    _apply(dashboard, project_registration_indicators, envelopes)
    with psycopg.connect(dashboard.database_url) as conn:
        total = ind.indicators(conn, None, district)["total"]
    assert total["counts"]["enrolled"] == 20
    rate = total["indicators"]["health_management_rate"]
    assert (rate["numerator"], rate["denominator"], rate["display"]) == (8, 10, "80.00%")
