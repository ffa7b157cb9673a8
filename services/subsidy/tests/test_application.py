"""The subsidy application against a real PostgreSQL: each program's eligibility and amount,
refusals that name their rule and fact, the duplicate-child, age and enrolment-cap rules, the
public notice with an objection, a payment batch round trip with a failed line, a clawback,
appeals, and concurrent approvals that never overspend a small budget nor lose one that
fitted."""

from __future__ import annotations

import threading
import uuid

import fastjsonschema
import psycopg
import pytest

from tuoyu_registration.samples import sample_resident_id
from tuoyu_shared.catalogue import payload_schema
from tuoyu_shared.context import command_context
from tuoyu_shared.errors import Conflict, Forbidden
from tuoyu_shared.validation import ValidationFailed, validate_resident_id
from tuoyu_subsidy.application import ApplicationNotFound
from tuoyu_subsidy.domain import DomainRuleViolated, InsufficientBudget


def as_(department: str, actor: str | None = None):
    return command_context(actor=actor or f"{department}-1", department=department)


def child_id(n: int, born: str) -> str:
    """A valid resident ID number of a child born on ``born`` (YYYYMMDD)."""
    from tuoyu_shared.validation import resident_id_check_character

    first17 = f"310104{born}{n:03d}"
    return first17 + resident_id_check_character(first17)


def draft(app, institution: str, program: str, **data) -> dict:
    with as_("institution", "operator-1"):
        return app.draft_application(institution, {"program": program, "year": 2026, **data})


def submit(app, institution: str, application_id: str) -> dict:
    with as_("institution", "operator-1"):
        return app.submit_application(institution, application_id)


def approve(app, institution: str, application_id: str) -> dict:
    with as_("health"):
        return app.review_application(institution, application_id,
                                      {"approved": True, "reasons": []})


def rules(result: dict) -> set[str]:
    return {r["rule"] for r in result["refusals"]} | {
        line["refusal"]["rule"] for line in result["lines"] if line["refusal"]}


def test_the_opening_grant_once_per_affordable_institution(app, upstream, budgets):
    institution = upstream.institution()
    first = draft(app, institution, "opening-grant")
    result = submit(app, institution, first["application_id"])
    assert result["eligible"] and result["amount_fen"] == 3_000_000
    assert result["funds"] == {"district": 3_000_000}
    second = draft(app, institution, "opening-grant")
    refused = submit(app, institution, second["application_id"])
    assert not refused["eligible"] and "one_time_grant" in rules(refused)


def test_the_operating_grant_pays_each_month_reported(app, upstream):
    institution = upstream.institution(enrolment={"2026-05": (40, 5, 1), "2026-06": (42, 5, 1)})
    application = draft(app, institution, "operating-grant", months=["2026-05", "2026-06"])
    result = submit(app, institution, application["application_id"])
    assert result["eligible"] and result["amount_fen"] == (40 + 42) * 50_000
    assert result["funds"] == {"district": 2_460_000, "upper_level": 1_640_000}
    twice = draft(app, institution, "operating-grant", months=["2026-06"])
    refused = submit(app, institution, twice["application_id"])
    assert not refused["eligible"] and refused["lines"][0]["refusal"]["rule"] == "month_claimed"
    missing = draft(app, institution, "operating-grant", months=["2026-07"])
    refused = submit(app, institution, missing["application_id"])
    assert not refused["eligible"]
    (line,) = refused["lines"]
    assert line["refusal"] == {"rule": "enrolment_reported",
                               "fact": "no enrolment reported for 2026-07"}


def test_enrolment_reports_of_version_3_are_read_their_health_figure_ignored(app, upstream):
    """Registration publishes its monthly reports as version 3, with health_managed_children
    (健康管理): the standing takes the month's children from them as before."""
    institution = upstream.institution()
    figures = {"institution_id": institution, "month": "2026-06", "classes": [],
               "children": 40, "second_children": 5, "third_children": 1,
               "health_managed_children": 36}
    sent = [upstream.send("registration", "InstitutionEnrolmentReported", str(uuid.uuid4()),
                          figures, schema_version=3),
            upstream.send("registration", "InstitutionEnrolmentReportCorrected",
                          str(uuid.uuid4()), {
                              **figures, "children": 42, "health_managed_children": 38,
                              "previous": {"children": 40, "second_children": 5,
                                           "third_children": 1,
                                           "health_managed_children": 36},
                              "reason": "miscounted"}, schema_version=3)]
    for envelope in sent:  # what registration publishes, as the catalogue has it
        fastjsonschema.validate(payload_schema("registration", envelope.event_type, 3),
                                envelope.payload)
    assert app.standing_for(institution).enrolment["2026-06"] == {
        "children": 42, "second_children": 5, "third_children": 1}
    application = draft(app, institution, "operating-grant", months=["2026-06"])
    result = submit(app, institution, application["application_id"])
    assert result["eligible"] and result["amount_fen"] == 42 * 50_000


def test_the_fee_subsidy_by_birth_order_age_and_enrolment_cap(app, upstream):
    institution = upstream.institution(enrolment={"2026-06": (2, 1, 1)})
    young_2nd, young_3rd = child_id(1, "20250101"), child_id(2, "20240601")
    three_years = child_id(3, "20230531")  # three on 2026-05-31: not paid in June
    extra = child_id(4, "20250301")
    application = draft(app, institution, "fee-subsidy", children=[
        {"id_number": young_2nd, "month": "2026-06", "birth_order": 2, "evidence": "户口簿 1"},
        {"id_number": young_3rd, "month": "2026-06", "birth_order": 3, "evidence": "户口簿 2"},
        {"id_number": three_years, "month": "2026-06", "birth_order": 2, "evidence": "户口簿 3"},
        {"id_number": extra, "month": "2026-06", "birth_order": 2, "evidence": "户口簿 4"},
    ])
    result = submit(app, institution, application["application_id"])
    assert result["eligible"] and result["amount_fen"] == 30_000 + 50_000
    refused = {line["child_ref"]: line["refusal"] for line in result["lines"]
               if line["refusal"]}
    refs = application["children"]
    assert refused[refs[2]]["rule"] == "child_age"
    assert "36 months" in refused[refs[2]]["fact"] or "under 36" in refused[refs[2]]["fact"]
    assert refused[refs[3]]["rule"] == "enrolment_cap"
    shown = repr(app.application(institution, application["application_id"]))
    assert young_2nd not in shown and young_2nd[:6] + "*" not in shown  # never in clear


def test_a_child_claimed_by_two_institutions_is_refused_for_the_second_and_flagged(
        app, upstream):
    first = upstream.institution(enrolment={"2026-06": (10, 5, 5)})
    second = upstream.institution(enrolment={"2026-06": (10, 5, 5)})
    number = child_id(7, "20250101")
    claim = [{"id_number": number, "month": "2026-06", "birth_order": 2, "evidence": "出生证"}]
    a = draft(app, first, "fee-subsidy", children=claim)
    b = draft(app, second, "fee-subsidy", children=claim)
    assert a["children"] == b["children"]  # one child, one ref, across institutions
    assert submit(app, first, a["application_id"])["eligible"]
    refused = submit(app, second, b["application_id"])
    assert not refused["eligible"]
    (line,) = refused["lines"]
    assert line["refusal"]["rule"] == "child_claimed_elsewhere" and first in \
        line["refusal"]["fact"]
    assert app.application(first, a["application_id"])["flags"][0]["other_institution_id"] \
        == second
    assert app.application(second, b["application_id"])["flags"][0]["other_institution_id"] \
        == first


def test_the_demonstration_award_by_level_held(app, upstream):
    institution = upstream.institution(affordable=False, levels=("city",))
    ok = draft(app, institution, "demonstration-award", level="city")
    assert submit(app, institution, ok["application_id"])["amount_fen"] == 5_000_000
    wrong = draft(app, institution, "demonstration-award", level="national")
    refused = submit(app, institution, wrong["application_id"])
    assert "demonstration_level" in rules(refused)


@pytest.mark.parametrize(("facts", "rule"), [
    ({"affordable": False}, "affordable_designation"),
    ({"status": "suspended"}, "institution_filed"),
    ({"status": "deregistered"}, "institution_filed"),
    ({"grade": "D"}, "credit_grade"),
])
def test_an_institution_that_does_not_qualify_is_refused_naming_rule_and_fact(
        app, upstream, facts, rule):
    institution = upstream.institution(**facts)
    application = draft(app, institution, "opening-grant")
    refused = submit(app, institution, application["application_id"])
    assert not refused["eligible"] and refused["amount_fen"] == 0
    (found,) = [r for r in refused["refusals"] if r["rule"] == rule]
    assert found["fact"]


def test_the_serious_dishonesty_list_blocks_payment_until_it_ends(app, upstream):
    institution = upstream.institution()
    upstream.send("credit", "InstitutionCreditListingDecided", "x", {
        "institution_id": institution, "listing_id": "L1", "list_name": "serious_dishonesty",
        "decision": "listed"})
    application = draft(app, institution, "opening-grant")
    refused = submit(app, institution, application["application_id"])
    assert "not_seriously_dishonest" in rules(refused) and "L1" in repr(refused["refusals"])
    upstream.send("credit", "InstitutionCreditListingExpired", "x", {
        "institution_id": institution, "listing_id": "L1", "list_name": "serious_dishonesty"})
    again = draft(app, institution, "opening-grant")
    assert submit(app, institution, again["application_id"])["eligible"]


def test_the_notice_with_an_objection_then_payable(app, upstream, budgets, clock):
    institution = upstream.institution()
    application = draft(app, institution, "opening-grant")
    submit(app, institution, application["application_id"])
    aid = application["application_id"]
    reviewed = approve(app, institution, aid)
    assert reviewed["state"] == "in_notice" and reviewed["notice_until"] == "2026-07-13"
    with as_("health"):
        objection = app.record_objection(institution, aid, {"text": "该机构实际未按普惠价收费"})
    with as_("inspection-timer", "system"):
        clock.advance(10)
        assert app.close_notices()["closed"] == []  # an objection is open
    with as_("health"):
        app.decide_objection(institution, aid, {"objection_id": objection["objection_id"],
                                                "upheld": False, "reason": "经核查收费符合普惠价"})
    with as_("timer", "system"):
        assert app.close_notices()["closed"] == [aid]
    assert app.application(institution, aid)["state"] == "payable"
    assert app.budget(2026, "district")["reserved_fen"] == 3_000_000


def test_an_objection_upheld_rejects_and_releases_the_reservation(app, upstream, budgets):
    institution = upstream.institution()
    application = draft(app, institution, "opening-grant")
    aid = application["application_id"]
    submit(app, institution, aid)
    approve(app, institution, aid)
    with as_("health"):
        objection = app.record_objection(institution, aid, {"text": "虚报托位"})
        app.decide_objection(institution, aid, {"objection_id": objection["objection_id"],
                                                "upheld": True, "reason": "核实虚报"})
    assert app.application(institution, aid)["state"] == "rejected"
    assert app.budget(2026, "district")["reserved_fen"] == 0
    again = draft(app, institution, "opening-grant")  # the one-time grant was released
    assert submit(app, institution, again["application_id"])["eligible"]


def payable(app, upstream, clock, count: int = 1) -> list[tuple[str, str]]:
    made = []
    for _ in range(count):
        institution = upstream.institution()
        application = draft(app, institution, "opening-grant")
        submit(app, institution, application["application_id"])
        approve(app, institution, application["application_id"])
        made.append((institution, application["application_id"]))
    clock.advance(8)
    with as_("timer", "system"):
        app.close_notices()
    return made


def test_a_payment_batch_round_trip_with_a_failed_line(app, upstream, budgets, clock):
    made = payable(app, upstream, clock, 3)
    with as_("finance"):
        batch = app.create_batch({"cycle": "2026-07"})
        assert batch["total_fen"] == 3 * 3_000_000 and len(batch["lines"]) == 3
        exported = app.export_batch(batch["batch_id"])
        assert exported["manifest"]["lines"] == 3
        assert exported["manifest"]["total_fen"] == 9_000_000
        assert exported["csv"].count("\n") == 4  # header and three lines
        (ok1, _), (ok2, _), (bad, _) = made
        lines = [{"application_id": aid, "status": "paid", "reference": f"BANK-{n}"}
                 for n, (_, aid) in enumerate(made[:2])]
        lines.append({"application_id": made[2][1], "status": "failed",
                      "reason": "账户已销户"})
        result = app.import_results(batch["batch_id"], {"lines": lines})
        assert result["recorded"] == 3 and result["closed"]
        again = app.import_results(batch["batch_id"], {"lines": lines})
        assert again["recorded"] == 0 and again["already_recorded"] == 3  # never twice
        with pytest.raises(DomainRuleViolated, match="recorded paid already"):
            app.import_results(batch["batch_id"], {"lines": [
                {"application_id": made[0][1], "status": "failed", "reason": "x"}]})
        app.catch_up_views()
        nxt = app.create_batch({"cycle": "2026-08"})  # the failed line re-enters
        assert [x["application_id"] for x in nxt["lines"]] == [made[2][1]]
    district = app.budget(2026, "district")
    assert district["paid_fen"] == 6_000_000 and district["reserved_fen"] == 3_000_000
    assert app.application(made[0][0], made[0][1])["state"] == "paid"
    app.catch_up_views()
    paid = [e for e in app.ledger({"institution_id": made[0][0]}) if e["entry"] == "paid"]
    assert [e["amount_fen"] for e in paid] == [3_000_000]


def test_a_clawback_and_appeals(app, upstream, budgets, clock):
    ((institution, aid),) = payable(app, upstream, clock)
    with as_("finance"):
        batch = app.create_batch({"cycle": "2026-07"})
        app.import_results(batch["batch_id"], {"lines": [
            {"application_id": aid, "status": "paid", "reference": "B1"}]})
        with pytest.raises(DomainRuleViolated, match="only 3000000 fen"):
            app.claw_back(institution, aid, {"amount_fen": 3_000_001, "reason": "fraud",
                                             "details": "x"})
        clawed = app.claw_back(institution, aid, {"amount_fen": 1_000_000, "reason": "fraud",
                                                  "details": "虚报在托人数"})
    assert app.budget(2026, "district")["paid_fen"] == 2_000_000
    (env,) = [e for e in app.read_log(1, 10_000) if e.event_type == "SubsidyClawedBack"]
    assert env.payload == {"application_id": aid, "institution_id": institution,
                           "amount_fen": 1_000_000, "reason": "fraud"}
    with as_("institution", "operator-1"):
        appeal = app.file_appeal(institution, aid, {
            "against": "clawback", "clawback_id": clawed["clawback_id"],
            "grounds": "在托人数有考勤记录为证"})
    with as_("health"):
        decided = app.decide_appeal(institution, aid, {"appeal_id": appeal["appeal_id"],
                                                       "upheld": True, "reason": "考勤属实"})
    assert decided["appeal"]["decision"]["upheld"]
    assert app.application(institution, aid)["clawed_fen"] == 0
    assert app.budget(2026, "district")["paid_fen"] == 3_000_000


def test_an_appeal_against_a_rejection_returns_it_to_review(app, upstream, budgets):
    institution = upstream.institution()
    application = draft(app, institution, "opening-grant")
    aid = application["application_id"]
    submit(app, institution, aid)
    with as_("health"):
        app.review_application(institution, aid, {"approved": False,
                                                  "reasons": ["材料不全"]})
    with as_("institution", "operator-1"):
        appeal = app.file_appeal(institution, aid, {"against": "rejection",
                                                    "grounds": "已补齐材料"})
    with as_("health"):
        app.decide_appeal(institution, aid, {"appeal_id": appeal["appeal_id"], "upheld": True,
                                             "reason": "材料已补齐"})
    assert app.application(institution, aid)["state"] == "under_review"
    assert approve(app, institution, aid)["state"] == "in_notice"


def test_concurrent_approvals_never_exceed_a_small_budget_and_lose_none(
        app, upstream, clock):
    with as_("finance"):
        app.open_budget({"year": 2026, "fund": "district", "allocated_fen": 7 * 3_000_000,
                         "document": "小额预算"})
    pending = []
    for _ in range(16):
        institution = upstream.institution()
        application = draft(app, institution, "opening-grant")
        submit(app, institution, application["application_id"])
        pending.append((institution, application["application_id"]))
    outcomes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(pending))

    def approve_one(institution: str, aid: str) -> None:
        barrier.wait()
        try:
            approve(app, institution, aid)
            outcome = "approved"
        except InsufficientBudget:
            outcome = "insufficient"
        except Conflict:  # pragma: no cover - the assertion below shows it
            outcome = "lost"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=approve_one, args=p) for p in pending]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes).count("approved") == 7
    assert outcomes.count("insufficient") == 9 and "lost" not in outcomes
    budget = app.budget(2026, "district")
    assert budget["reserved_fen"] == 7 * 3_000_000 and budget["free_fen"] == 0
    states = [app.application(i, a)["state"] for i, a in pending]
    assert states.count("in_notice") == 7 and states.count("under_review") == 9


def test_roles_and_bad_input(app, upstream):
    institution = upstream.institution()
    with pytest.raises(ValidationFailed) as refused:
        draft(app, institution, "fee-subsidy", children=[
            {"id_number": "110101199003074515", "month": "2026-13", "birth_order": 4,
             "evidence": ""}])
    assert {e.field for e in refused.value.errors} == {
        "children[0].id_number", "children[0].month", "children[0].birth_order",
        "children[0].evidence"}
    with pytest.raises(ValidationFailed) as refused:
        draft(app, institution, "no-such-program")
    assert refused.value.errors[0].field == "program"
    with pytest.raises(ValidationFailed) as refused:
        draft(app, institution, "operating-grant")
    assert refused.value.errors[0].field == "months"
    application = draft(app, institution, "opening-grant")
    with as_("finance"), pytest.raises(Forbidden):
        app.review_application(institution, application["application_id"],
                               {"approved": True})
    with as_("health"), pytest.raises(ApplicationNotFound):
        app.review_application(upstream.institution(), application["application_id"],
                               {"approved": True})
    with as_("health"), pytest.raises(Forbidden):
        app.open_budget({"year": 2026, "fund": "district", "allocated_fen": 1,
                         "document": "x"})
    validate_resident_id(sample_resident_id(1))


def test_the_views_follow_the_log(app, upstream, budgets, clock):
    payable(app, upstream, clock, 2)
    app.catch_up_views()
    rows = app.applications({"state": "payable"})
    assert len(rows) == 2 and all(r["amount_fen"] == 3_000_000 for r in rows)
    (district,) = [b for b in app.budgets(2026) if b["fund"] == "district"]
    assert district["reserved_fen"] == 6_000_000
    assert [p["program"] for p in district["programs"]] == ["opening-grant"]
    with psycopg.connect(app.settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM subsidy_programs").fetchone()[0] == 4


def test_a_childs_data_is_erased_unless_a_payment_on_it_stands(app, upstream, budgets, clock):
    institution = upstream.institution(enrolment={"2026-06": (10, 5, 5)})
    paid, drafted_only = child_id(11, "20250101"), child_id(12, "20250201")
    application = draft(app, institution, "fee-subsidy", children=[
        {"id_number": paid, "month": "2026-06", "birth_order": 2, "evidence": "户口簿"}])
    aid = application["application_id"]
    submit(app, institution, aid)
    approve(app, institution, aid)
    clock.advance(8)
    with as_("timer", "system"):
        app.close_notices()
    with as_("finance"):
        batch = app.create_batch({"cycle": "2026-07"})
        app.import_results(batch["batch_id"], {"lines": [
            {"application_id": aid, "status": "paid", "reference": "B9"}]})
    # (the ledger not brought up to date here: the erasure does it before it decides)
    draft(app, institution, "fee-subsidy", children=[
        {"id_number": drafted_only, "month": "2026-06", "birth_order": 2,
         "evidence": "出生证"}])
    request = {"reason": "本人书面申请 2026-07-06，身份已核验",
               "legal_basis": "个人信息保护法 第四十七条"}
    with as_("health"):
        kept = app.erase_person({"id_number": paid, **request})
        gone = app.erase_person({"id_number": drafted_only, **request})
    assert kept["erased"] == [] and "会计档案" in kept["retained"][0]["reason"]
    assert [e["kind"] for e in gone["erased"]] == ["child"]
    exported = app.export_person({"id_number": paid, "purpose": "本人查阅申请"})
    assert exported["refs"]["child"]
