"""The inspection domain's rules, without I/O: the reproducible weighted draw, conflicts of
interest, checklist versions, a visit from results to public result, rectification deadlines,
overdue and escalation."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import date, timedelta

import pytest

from tuoyu_inspection.checklists import default_checklists
from tuoyu_inspection.domain import (
    ChecklistTemplate,
    DomainRuleViolated,
    EscalationStep,
    InspectionPlan,
    InspectionRules,
    InspectorRoster,
    SupervisionVisit,
    check_areas,
    draw_inspectors,
    draw_targets,
    frame_digest,
    items_of,
    period_bounds,
)
from tuoyu_shared.validation import FieldError

DAY = date(2026, 3, 2)  # a Monday
WEIGHTS = {"A": 1, "B": 2, "C": 4, "D": 8}


def checklist() -> dict:
    template = default_checklists()[0]
    return {"template_id": template["template_id"], "version": 1,
            "title": template["title"], "source": template["source"],
            "areas": check_areas(template["areas"])}


def visit(departments=("health", "market_regulation", "fire_rescue")) -> SupervisionVisit:
    return SupervisionVisit(
        institution_id=str(uuid.uuid4()), institution_name="阳光托育园", district="徐汇区",
        kind="random", trigger="plan", reference="2026 Q1", plan_id=None, period="2026-Q1",
        departments=list(departments),
        inspectors={"health": ["h1", "h2"], "market_regulation": ["m1"],
                    "fire_rescue": ["f1"], "education": ["e1"]},
        checklist=checklist(), scheduled_on=DAY, draw_seed="seed")


def deadline(on: date):
    return lambda severity: (on + timedelta(days={"minor": 28, "major": 21, "serious": 14,
                                                   "critical": 7}[severity]), 5)


def fill(v: SupervisionVisit, department: str, inspector: str, result: str = "met") -> None:
    for code in v.missing_results(department):
        v.record_item_result(code, result, "", department, inspector, DAY)


def conclude(v: SupervisionVisit) -> None:
    people = {"health": "h1", "market_regulation": "m1", "fire_rescue": "f1"}
    for department in v.departments:
        fill(v, department, people[department])
        v.sign_off(department, people[department], DAY, deadline(DAY), DAY + timedelta(28), 60)


# ---- the draw ------------------------------------------------------------------------------------
def test_one_target_is_drawn_in_proportion_to_its_grade_weight():
    frame = [[f"{g}{i}", g] for g in "ABCD" for i in range(5)]  # 5 of each grade
    counts: Counter[str] = Counter()
    draws = 6000
    for n in range(draws):
        (chosen,) = draw_targets(f"seed-{n}", frame, WEIGHTS, 1)
        counts[chosen[0]] += 1
    total = sum(WEIGHTS.values())
    for grade, weight in WEIGHTS.items():
        expected = draws * weight / total
        # 4 standard deviations of a binomial: fails by chance about once in 30,000 runs
        sd = (draws * (weight / total) * (1 - weight / total)) ** 0.5
        assert abs(counts[grade] - expected) < 4 * sd, (grade, counts, expected)


def test_lower_grades_are_drawn_more_often_without_replacement():
    frame = [[f"{g}{i:02}", g] for g in "ABCD" for i in range(25)]
    counts: Counter[str] = Counter()
    for n in range(400):
        drawn = draw_targets(f"s{n}", frame, WEIGHTS, 10)
        assert len(set(drawn)) == 10  # no institution twice
        counts.update(i[0] for i in drawn)
    assert counts["A"] < counts["B"] < counts["C"] < counts["D"]


def test_the_draw_is_reproducible_from_its_seed_and_frame():
    frame = [[str(uuid.UUID(int=i)), "ABCD"[i % 4]] for i in range(50)]
    first = draw_targets("a1b2", frame, WEIGHTS, 7)
    assert draw_targets("a1b2", list(reversed(frame)), WEIGHTS, 7) == first  # order-free
    assert draw_targets("a1b3", frame, WEIGHTS, 7) != first
    assert frame_digest(sorted(frame)) == frame_digest(sorted(frame))


def test_inspectors_are_drawn_without_those_in_conflict():
    roster = ["a", "b", "c", "d"]
    for n in range(200):
        drawn = draw_inspectors(f"s{n}", "inst", "health", roster, ["b"], 2)
        assert drawn is not None and "b" not in drawn and len(set(drawn)) == 2
    assert draw_inspectors("s", "inst", "health", roster, ["a", "b", "c"], 2) is None


def plan(**overrides) -> InspectionPlan:
    args = dict(title="2026 一季度双随机抽查", period="2026-Q1", starts_on=date(2026, 1, 1),
                ends_on=date(2026, 3, 31), departments=["health", "fire_rescue"],
                district="徐汇区", target_count=3, inspectors_per_department=1,
                template_id="joint-supervision", template_version=1, weights=WEIGHTS,
                ungraded="B", created_by="h1", planned_on=DAY)
    return InspectionPlan(**{**args, **overrides})


def test_a_plan_draws_only_after_its_seed_is_recorded_and_only_once():
    p = plan()
    frame = [[str(uuid.UUID(int=i)), "B"] for i in range(10)]
    rosters = {"health": ["h1", "h2"], "fire_rescue": ["f1", "f2"]}
    with pytest.raises(DomainRuleViolated, match="seed"):
        p.draw(frame, rosters, [], lambda i: uuid.uuid4(), DAY)
    p.record_seed("feedface", "given", DAY)
    with pytest.raises(DomainRuleViolated, match="never changed"):
        p.record_seed("other", "given", DAY)
    conflicts = [["health", "h1", frame[0][0]]]
    targets = p.draw(frame, rosters, conflicts, lambda i: uuid.uuid4(), DAY)
    assert len(targets) == 3
    for t in targets:
        if t["institution_id"] == frame[0][0]:
            assert t["inspectors"]["health"] == ["h2"]
    again = p.replay_draw()
    assert again == [{"institution_id": t["institution_id"], "inspectors": t["inspectors"]}
                     for t in targets]
    with pytest.raises(DomainRuleViolated, match="drawn already"):
        p.draw(frame, rosters, [], lambda i: uuid.uuid4(), DAY)


def test_a_plan_refuses_a_roster_too_small():
    p = plan(inspectors_per_department=2)
    p.record_seed("s", "generated", DAY)
    with pytest.raises(DomainRuleViolated, match="fire_rescue roster has 1"):
        p.draw([["x", "A"]], {"health": ["h1", "h2"], "fire_rescue": ["f1"]}, [],
               lambda i: uuid.uuid4(), DAY)


@pytest.mark.parametrize(("period", "bounds"), [
    ("2026", (date(2026, 1, 1), date(2026, 12, 31))),
    ("2026-H2", (date(2026, 7, 1), date(2026, 12, 31))),
    ("2026-Q1", (date(2026, 1, 1), date(2026, 3, 31))),
    ("2026-02", (date(2026, 2, 1), date(2026, 2, 28))),
])
def test_periods(period, bounds):
    assert period_bounds(period) == bounds


@pytest.mark.parametrize("period", ["2026-Q5", "26", "2026-13", "2026-H3", ""])
def test_bad_periods_are_refused(period):
    with pytest.raises(FieldError):
        period_bounds(period)


# ---- checklists ----------------------------------------------------------------------------------
def test_the_shipped_checklist_covers_the_seven_areas_and_the_seeds_items():
    c = checklist()
    assert [a["code"] for a in c["areas"]] == ["conditions", "staff", "care", "health_care",
                                               "parenting_support", "safety", "management"]
    items = items_of(c)
    assert sum(i["points"] for i in items.values()) == 100
    texts = " ".join(i["text"] for i in items.values())
    for named in ("两案", "九制", "晨午", "缺勤", "消防", "留样", "90天"):
        assert named in texts or any(named in code for code in items), named
    assert {"health", "market_regulation", "fire_rescue"} <= {i["department"]
                                                              for i in items.values()}


def test_a_new_template_version_never_changes_an_earlier_one():
    t = ChecklistTemplate("t1")
    areas = [{"code": "safety", "name": "安全保障",
              "items": [{"code": "safety.exits", "text": "疏散通道畅通", "points": 5,
                         "department": "fire_rescue"}]}]
    assert t.publish("表", "src", areas, DAY) == 1
    first = t.version_of(1)
    changed = [{**areas[0], "items": [{**areas[0]["items"][0], "points": 9}]}]
    assert t.publish("表", "src", changed, DAY) == 2
    assert t.version_of(1) == first and first["areas"][0]["items"][0]["points"] == 5
    assert t.version_of()["version"] == 2
    with pytest.raises(FieldError):
        t.version_of(3)


@pytest.mark.parametrize(("areas", "field"), [
    ([], "areas"),
    ([{"code": "Bad", "name": "x", "items": []}], "areas[0].code"),
    ([{"code": "a", "name": "x", "items": [{"code": "b.x", "text": "t", "points": 1,
                                            "department": "health"}]}], "areas[0].items[0].code"),
    ([{"code": "a", "name": "x", "items": [{"code": "a.x", "text": "t", "points": 0,
                                            "department": "health"}]}],
     "areas[0].items[0].points"),
    ([{"code": "a", "name": "x", "items": [{"code": "a.x", "text": "t", "points": 1,
                                            "department": "army"}]}],
     "areas[0].items[0].department"),
])
def test_bad_templates_name_the_field(areas, field):
    with pytest.raises(FieldError) as refused:
        check_areas(areas)
    assert refused.value.field == field


# ---- a visit -------------------------------------------------------------------------------------
def test_each_department_records_and_signs_only_its_own_items():
    v = visit()
    fire_item = next(c for c, i in items_of(v.checklist).items()
                     if i["department"] == "fire_rescue")
    with pytest.raises(DomainRuleViolated, match="signed by fire_rescue"):
        v.record_item_result(fire_item, "met", "", "health", "h1", DAY)
    with pytest.raises(DomainRuleViolated, match="not one of this visit's fire_rescue"):
        v.record_item_result(fire_item, "met", "", "fire_rescue", "h1", DAY)
    with pytest.raises(DomainRuleViolated, match="education is not on this visit"):
        v.record_item_result(fire_item, "met", "", "education", "e1", DAY)
    v.record_item_result(fire_item, "met", "", "fire_rescue", "f1", DAY)
    assert v.status == "in_progress"
    with pytest.raises(DomainRuleViolated, match="without a result"):
        v.sign_off("fire_rescue", "f1", DAY, deadline(DAY), DAY, 60)


def test_a_clean_visit_passes_with_full_marks_and_no_orders():
    v = visit()
    conclude(v)
    assert (v.status, v.outcome, v.score, v.orders) == ("concluded", "passed", 100, {})
    assert [a["area"] for a in v.area_scores][0] == "conditions"


def test_a_critical_finding_fails_the_visit_whatever_the_score_and_each_finding_gets_an_order():
    v = visit()
    item = next(c for c, i in items_of(v.checklist).items() if i["department"] == "health")
    assert v.record_finding(item, "critical", "消防通道堵塞", "health", "h1", DAY) == "F1"
    assert v.record_finding(item, "critical", "消防通道堵塞", "health", "h1", DAY) == "F1"
    assert v.record_finding(item, "minor", "记录不全", "health", "h2", DAY) == "F2"
    conclude(v)
    assert v.score == 100 and v.outcome == "failed"
    due = sorted(o["due_on"] for o in v.orders.values())
    assert due == [DAY + timedelta(7), DAY + timedelta(28)]


def test_partly_met_gives_half_the_points_and_a_low_score_fails():
    v = visit(departments=("health",))
    fill(v, "health", "h1", "not_met")
    v.sign_off("health", "h1", DAY, deadline(DAY), DAY, 60)
    assert v.outcome == "failed" and v.score == 0


def test_rectification_overdue_once_then_escalated_step_by_step():
    v = visit(departments=("health",))
    item = next(iter(v.missing_results("health")))
    v.record_finding(item, "major", "保育人员配比不足", "health", "h1", DAY)
    fill(v, "health", "h1")
    v.sign_off("health", "h1", DAY, deadline(DAY), DAY, 60)
    (order_id,) = v.orders
    due = v.orders[order_id]["due_on"]
    assert not v.mark_overdue(order_id, due)  # the deadline day itself is not late
    with pytest.raises(DomainRuleViolated, match="has not passed"):
        v.escalate(order_id, "未整改", "h1", due, lambda step: None)
    assert v.mark_overdue(order_id, due + timedelta(1))
    assert not v.mark_overdue(order_id, due + timedelta(2))  # once per order
    steps = []
    day = due + timedelta(1)
    for _ in range(3):
        steps.append(v.escalate(order_id, "逾期未整改", "h1", day,
                                lambda step, d=day: None if step == EscalationStep.REFERRAL
                                else d + timedelta(10)))
        day += timedelta(11)
    assert steps == ["interview", "warning", "referral"]
    with pytest.raises(DomainRuleViolated, match="last step"):
        v.escalate(order_id, "x", "h1", day, lambda step: None)


def test_a_correction_accepted_closes_the_order_and_a_rejected_one_stays_open():
    v = visit(departments=("health",))
    item = next(iter(v.missing_results("health")))
    v.record_finding(item, "minor", "晨检记录缺失", "health", "h1", DAY)
    fill(v, "health", "h1")
    v.sign_off("health", "h1", DAY, deadline(DAY), DAY, 60)
    (order_id,) = v.orders
    with pytest.raises(FieldError, match="upload it first"):
        v.submit_rectification(order_id, "已整改", ["a" * 64], "operator-1", DAY)
    v.attach_evidence("a" * 64, "photo.jpg", "image/jpeg", 10, None, order_id, "operator-1",
                      "operator", DAY)
    v.submit_rectification(order_id, "已补齐晨检记录", ["a" * 64], "operator-1", DAY)
    with pytest.raises(DomainRuleViolated, match="theirs, not fire_rescue"):
        v.reinspect(order_id, True, "ok", "fire_rescue", "f1", DAY)
    v.reinspect(order_id, False, "仍不完整", "health", "h2", DAY)
    assert v.orders[order_id]["state"] == "ordered"
    v.submit_rectification(order_id, "再次补齐", ["a" * 64], "operator-1", DAY)
    v.reinspect(order_id, True, "合格", "health", "h2", DAY)
    assert v.orders[order_id]["state"] == "accepted"
    assert not v.mark_overdue(order_id, DAY + timedelta(100))


def test_an_operator_attaches_evidence_of_a_correction_only():
    v = visit(departments=("health",))
    with pytest.raises(FieldError, match="name the rectification order"):
        v.attach_evidence("b" * 64, "x.pdf", "application/pdf", 1, None, None, "op", "operator",
                          DAY)


def test_a_refusal_ends_the_visit_and_its_public_result_says_so():
    v = visit()
    v.record_refusal("拒绝开门", "health", "h1", DAY, DAY + timedelta(28))
    assert v.status == "refused"
    with pytest.raises(DomainRuleViolated):
        v.record_item_result(next(iter(v.missing_results("health"))), "met", "", "health", "h1",
                             DAY)
    assert v.publish_result(DAY)
    assert v.public_result["outcome"] == "refused"
    assert not v.publish_result(DAY)


def test_the_public_result_holds_no_inspector_no_finding_words_no_evidence():
    v = visit(departments=("health",))
    item = next(iter(v.missing_results("health")))
    v.record_finding(item, "serious", "张某某的孩子摔伤", "health", "h1", DAY)
    fill(v, "health", "h1")
    with pytest.raises(DomainRuleViolated, match="no result to publish"):
        v.publish_result(DAY)
    v.sign_off("health", "h1", DAY, deadline(DAY), DAY, 60)
    v.publish_result(DAY)
    text = repr(v.public_result)
    assert "张某某" not in text and "h1" not in text and "evidence" not in text
    assert v.public_result["findings"][0]["severity"] == "serious"


def test_roster_conflicts_and_withdrawals():
    r = InspectorRoster("health")
    assert r.enrol("h1", DAY) and not r.enrol("h1", DAY)
    assert r.declare_conflict("h1", "inst-1", "亲属任职", DAY)
    assert r.conflict_pairs() == [["health", "h1", "inst-1"]]
    with pytest.raises(DomainRuleViolated):
        r.declare_conflict("h9", "inst-1", "x", DAY)
    r.withdraw("h1", "调岗", DAY)
    assert r.conflict_pairs() == []


def test_rules_are_checked():
    with pytest.raises(FieldError, match="draw_weights.C"):
        InspectionRules(draw_weights={"A": 1, "B": 2, "C": 0, "D": 8})
    with pytest.raises(FieldError, match="unknown rule"):
        InspectionRules.from_dict({"weights": {}})
    assert InspectionRules.from_dict({"pass_mark": 70}).pass_mark == 70
