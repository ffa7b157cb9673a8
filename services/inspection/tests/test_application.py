"""The inspection application against a real PostgreSQL: a joint visit by three departments
from the plan's draw to the public result, an overdue rectification escalated, evidence stored
by its checked hash, checklist versions, clean periods once per period, concurrency on one
visit, and bad input refused with nothing written."""

from __future__ import annotations

import base64
import hashlib
import threading
import uuid
from datetime import timedelta

import psycopg
import pytest

from tuoyu_inspection.application import InspectionApplication, VisitNotFound
from tuoyu_inspection.domain import DomainRuleViolated
from tuoyu_shared.context import command_context
from tuoyu_shared.errors import Forbidden, NotFound
from tuoyu_shared.validation import ValidationFailed

PEOPLE = {"health": "health-1", "market_regulation": "market-1", "fire_rescue": "fire-1"}


def as_officer(name: str, department: str):
    return command_context(actor=name, department=department)


def fields(refused: pytest.ExceptionInfo) -> set[str]:
    return {e.field for e in refused.value.errors}


def events(app: InspectionApplication) -> list[str]:
    return [e.event_type for e in app.read_log(1, 10_000)]


def joint_plan(app: InspectionApplication, targets: int = 2, **overrides) -> dict:
    with as_officer("health-1", "health"):
        plan = app.create_plan({"title": "2026年一季度托育机构联合双随机抽查", "period": "2026-Q1",
                                "departments": ["health", "market_regulation", "fire_rescue"],
                                "district": "徐汇区", "target_count": targets,
                                "inspectors_per_department": 1, **overrides})
        app.record_seed(plan["plan_id"])
        drawn = app.draw_plan(plan["plan_id"])
    return drawn


def conduct(app: InspectionApplication, institution_id: str, visit_id: str,
            finding: tuple[str, str] | None = None) -> dict:
    """Each department records its items (and one finding, if given) and signs."""
    visit = app.visit(institution_id, visit_id)
    by_department: dict[str, list[str]] = {}
    for item in visit["items"]:
        by_department.setdefault(item["department"], []).append(item["code"])
    result = {}
    for department in visit["departments"]:
        officer = visit["inspectors"][department][0]
        with as_officer(officer, department):
            app.record_item_results(institution_id, visit_id, {"results": [
                {"item": code, "result": "met"} for code in by_department[department]]})
            if finding is not None and finding[0] == department:
                item = by_department[department][0]
                app.record_finding(institution_id, visit_id, {
                    "item": item, "severity": finding[1], "description": "灭火器过期未更换"})
            result = app.sign_off(institution_id, visit_id)
    return result


def test_a_joint_visit_from_the_plan_to_the_public_result(app, rosters, add_institutions, clock):
    add_institutions(app, 5, grade="B")
    add_institutions(app, 3, district="黄浦区")  # another district: never drawn
    drawn = joint_plan(app, targets=2)
    assert drawn["frame_size"] == 5 and len(drawn["targets"]) == 2
    target = drawn["targets"][0]
    assert set(target["inspectors"]) == {"health", "market_regulation", "fire_rescue"}
    institution, visit_id = target["institution_id"], target["visit_id"]
    outcome = conduct(app, institution, visit_id, finding=("fire_rescue", "major"))
    assert outcome["concluded"] and outcome["outcome"] == "passed" and outcome["orders"] == 1
    visit = app.visit(institution, visit_id)
    assert set(visit["sign_offs"]) == {"health", "market_regulation", "fire_rescue"}
    assert visit["publish_by"] > visit["ended_on"]
    assert [a["area"] for a in visit["area_scores"]][:1] == ["conditions"]
    types = events(app)
    for published in ("InspectionPlanSeedRecorded", "InspectionPlanDrawn", "VisitScheduled",
                      "VisitItemResultRecorded", "InspectionFindingRecorded", "VisitSignedOff",
                      "VisitConcluded", "RectificationOrdered"):
        assert published in types
    assert types.index("InspectionPlanSeedRecorded") < types.index("InspectionPlanDrawn")
    # 公示: by the timer once the deadline (20 working days) has come, not before
    app.catch_up_views()
    with as_officer("inspection-timer", "system"):
        assert app.publish_due_results()["published"] == []
        clock.advance(35)
        assert app.publish_due_results()["published"] == [visit_id]
    app.catch_up_views()
    (public,) = app.public_results(institution_id=institution)
    assert public["outcome"] == "passed" and public["findings"][0]["severity"] == "major"
    shown = repr(public)
    assert "灭火器过期" not in shown and "fire-1" not in shown and "health-1" not in shown
    assert app.public_results(district="黄浦区") == []


def test_the_draw_is_verified_from_what_the_plan_recorded(app, rosters, add_institutions):
    add_institutions(app, 6, grade="A")
    add_institutions(app, 6, grade="D")
    drawn = joint_plan(app, targets=4)
    check = app.verify_draw(drawn["plan_id"])
    assert check["reproduced"] and check["frame_digest_matches"] and check["targets"] == 4
    plan = app.plan(drawn["plan_id"])
    assert plan["seed"] and plan["frame_size"] == 12 and plan["status"] == "drawn"


def test_the_seed_is_recorded_before_the_draw_and_the_draw_made_once(
        app, rosters, add_institutions):
    add_institutions(app, 3)
    with as_officer("health-1", "health"):
        plan = app.create_plan({"title": "卫生健康部门专项抽查", "period": "2026",
                                "departments": ["health"], "district": "徐汇区",
                                "target_count": 1, "inspectors_per_department": 1})
        with pytest.raises(DomainRuleViolated, match="seed"):
            app.draw_plan(plan["plan_id"])
        app.record_seed(plan["plan_id"], {"seed": "公证处现场摇号 20260302-07"})
        with pytest.raises(DomainRuleViolated, match="never changed"):
            app.record_seed(plan["plan_id"])
        app.draw_plan(plan["plan_id"])
        with pytest.raises(DomainRuleViolated, match="drawn already"):
            app.draw_plan(plan["plan_id"])
    assert events(app).count("VisitScheduled") == 1


def test_a_conflict_of_interest_keeps_the_inspector_off_that_institution(
        app, rosters, add_institutions):
    (institution,) = add_institutions(app, 1)
    with as_officer("health-1", "health"):
        app.declare_conflict({"department": "health", "inspector": "health-1",
                              "institution_id": institution, "reason": "配偶在该机构任职"})
    for _ in range(5):
        with as_officer("health-2", "health"):
            scheduled = app.schedule_targeted_visit(institution, {
                "trigger": "complaint", "reference": "投诉 2026-031",
                "departments": ["health"], "scheduled_on": "2026-03-03",
                "inspectors_per_department": 1})
        assert scheduled["inspectors"] == {"health": ["health-2"]}
        assert scheduled["draw_seed"]
    with as_officer("health-2", "health"), pytest.raises(ValidationFailed) as refused:
        app.schedule_targeted_visit(institution, {
            "trigger": "complaint", "reference": "投诉 2026-032", "departments": ["health"],
            "scheduled_on": "2026-03-03", "inspectors": {"health": ["health-1"]}})
    assert fields(refused) == {"inspectors.health[0]"}


def test_an_overdue_rectification_is_published_once_and_escalated_step_by_step(
        app, rosters, add_institutions, clock):
    (institution,) = add_institutions(app, 1, grade="C")
    with as_officer("fire-1", "fire_rescue"):
        visit = app.schedule_targeted_visit(institution, {
            "trigger": "incident", "reference": "火警 2026-002",
            "departments": ["fire_rescue"], "scheduled_on": "2026-03-02",
            "inspectors": {"fire_rescue": ["fire-1"]}})
    conduct(app, institution, visit["visit_id"], finding=("fire_rescue", "serious"))
    app.catch_up_views()
    (order,) = app.rectifications({"institution_id": institution})
    assert order["state"] == "ordered" and order["department"] == "fire_rescue"
    with as_officer("fire-1", "fire_rescue"), pytest.raises(DomainRuleViolated,
                                                            match="has not passed"):
        app.escalate(institution, visit["visit_id"], order["order_id"], {"reason": "未整改"})
    with as_officer("inspection-timer", "system"):
        assert app.publish_overdue_rectifications()["overdue"] == []
        clock.advance(20)  # 10 working days is 14 calendar days or so
        assert app.publish_overdue_rectifications()["overdue"] == [order["order_id"]]
        assert app.publish_overdue_rectifications()["overdue"] == []
    assert events(app).count("RectificationOverdue") == 1
    (overdue,) = app.rectifications({"state": "overdue", "institution_id": institution})
    assert overdue["overdue"]
    steps = []
    for _ in range(3):
        with as_officer("fire-1", "fire_rescue"):
            steps.append(app.escalate(institution, visit["visit_id"], order["order_id"],
                                      {"reason": "逾期未整改"})["step"])
        clock.advance(20)
    assert steps == ["interview", "warning", "referral"]
    with as_officer("fire-1", "fire_rescue"), pytest.raises(DomainRuleViolated,
                                                            match="last step"):
        app.escalate(institution, visit["visit_id"], order["order_id"], {"reason": "x"})
    app.catch_up_views()
    (row,) = app.rectifications({"state": "all", "institution_id": institution})
    assert row["escalation"] == "referral"


def test_evidence_is_stored_by_its_checked_hash(app, rosters, add_institutions):
    (institution,) = add_institutions(app, 1)
    with as_officer("health-1", "health"):
        visit = app.schedule_targeted_visit(institution, {
            "trigger": "complaint", "reference": "投诉 7", "departments": ["health"],
            "scheduled_on": "2026-03-02", "inspectors": {"health": ["health-1"]}})
    vid = visit["visit_id"]
    item = app.visit(institution, vid)["items"][0]["code"]
    photo = b"\xff\xd8\xff" + bytes(range(256)) * 40
    sha = hashlib.sha256(photo).hexdigest()
    upload = {"filename": "晨检记录.jpg", "content_type": "image/jpeg",
              "content_base64": base64.b64encode(photo).decode()}
    with as_officer("health-1", "health"):
        finding = app.record_finding(institution, vid, {
            "item": item, "severity": "minor", "description": "晨检记录缺失两日"})
        with pytest.raises(ValidationFailed) as refused:
            app.attach_evidence(institution, vid, {**upload, "sha256": "0" * 64,
                                                   "finding_id": finding["finding_id"]})
        assert fields(refused) == {"sha256"}
        assert not app.blobs.exists(sha)
        with pytest.raises(ValidationFailed) as refused:
            app.attach_evidence(institution, vid, {**upload, "sha256": sha,
                                                   "finding_id": "F9"})
        assert fields(refused) == {"finding_id"}
        assert not app.blobs.exists(sha)  # refused by the visit before anything is stored
        stored = app.attach_evidence(institution, vid, {**upload, "sha256": sha,
                                                        "finding_id": finding["finding_id"]})
        assert stored == {"visit_id": vid, "sha256": sha, "size": len(photo),
                          "attached": True}
        again = app.attach_evidence(institution, vid, {**upload, "sha256": sha,
                                                       "finding_id": finding["finding_id"]})
        assert again["attached"] is False
        got = app.evidence(institution, vid, sha)
    assert base64.b64decode(got["content_base64"]) == photo
    assert events(app).count("VisitEvidenceAttached") == 1
    with pytest.raises(NotFound):
        app.evidence(institution, vid, "1" * 64)


def test_the_institution_answers_its_order_and_the_reinspection_closes_it(
        app, rosters, add_institutions):
    (institution,) = add_institutions(app, 1)
    with as_officer("health-1", "health"):
        visit = app.schedule_targeted_visit(institution, {
            "trigger": "complaint", "reference": "投诉 8", "departments": ["health"],
            "scheduled_on": "2026-03-02", "inspectors": {"health": ["health-1"]}})
    vid = visit["visit_id"]
    def operator():
        return as_officer("operator-1", "institution")

    with operator(), pytest.raises(VisitNotFound):
        app.visit(institution, vid)  # a visit not begun is not shown to the institution
    with operator():
        assert app.visits({"institution_id": institution}) == []
    conduct(app, institution, vid, finding=("health", "major"))
    app.catch_up_views()
    (order,) = app.rectifications({"institution_id": institution})
    proof = b"%PDF-1.4 corrected"
    sha = hashlib.sha256(proof).hexdigest()
    with operator():
        assert app.visit(institution, vid)["status"] == "concluded"
        app.attach_evidence(institution, vid, {
            "filename": "整改报告.pdf", "content_type": "application/pdf",
            "content_base64": base64.b64encode(proof).decode(), "sha256": sha,
            "order_id": order["order_id"]})
        app.submit_rectification(institution, vid, order["order_id"], {
            "statement": "已按要求配齐保育人员", "evidence": [sha]})
    with as_officer("health-2", "health"):
        app.reinspect(institution, vid, order["order_id"], {"accepted": True,
                                                            "notes": "复查合格"})
    app.catch_up_views()
    (row,) = app.rectifications({"state": "accepted", "institution_id": institution})
    assert row["closed_on"] is not None
    assert app.rectifications({"institution_id": institution}) == []


def test_a_refusal_is_recorded_and_published(app, rosters, add_institutions):
    (institution,) = add_institutions(app, 1)
    with as_officer("market-1", "market_regulation"):
        visit = app.schedule_targeted_visit(institution, {
            "trigger": "complaint", "reference": "投诉 9", "departments": ["market_regulation"],
            "scheduled_on": "2026-03-02", "inspectors": {"market_regulation": ["market-1"]}})
        with pytest.raises(DomainRuleViolated, match="not one of this visit"):
            with as_officer("market-2", "market_regulation"):
                app.record_refusal(institution, visit["visit_id"], {"description": "拒不开门"})
        app.record_refusal(institution, visit["visit_id"], {"description": "拒不开门"})
    assert events(app).count("InspectionRefused") == 1
    (env,) = [e for e in app.read_log(1, 1000) if e.event_type == "InspectionRefused"]
    assert env.payload == {"visit_id": visit["visit_id"], "institution_id": institution}


def test_a_new_checklist_version_never_changes_a_visit_made_on_the_old(
        app, rosters, add_institutions):
    (institution,) = add_institutions(app, 1)
    with as_officer("health-1", "health"):
        before = app.schedule_targeted_visit(institution, {
            "trigger": "complaint", "reference": "投诉 10", "departments": ["health"],
            "scheduled_on": "2026-03-02", "inspectors": {"health": ["health-1"]}})
        v1 = app.checklist("joint-supervision")
        areas = v1["areas"]
        changed = [{**areas[0], "items": [{**areas[0]["items"][0], "points":
                                           areas[0]["items"][0]["points"] + 1},
                                          *areas[0]["items"][1:]]}, *areas[1:]]
        published = app.publish_checklist({"template_id": "joint-supervision",
                                           "title": v1["title"], "source": v1["source"],
                                           "areas": changed})
        assert published["version"] == v1["version"] + 1
        after = app.schedule_targeted_visit(institution, {
            "trigger": "complaint", "reference": "投诉 11", "departments": ["health"],
            "scheduled_on": "2026-03-02", "inspectors": {"health": ["health-1"]}})
    old = app.visit(institution, before["visit_id"])
    new = app.visit(institution, after["visit_id"])
    assert old["checklist"]["version"] == v1["version"]
    assert new["checklist"]["version"] == v1["version"] + 1
    code = areas[0]["items"][0]["code"]
    points = {v["visit_id"]: next(i["points"] for i in v["items"] if i["code"] == code)
              for v in (old, new)}
    assert points[before["visit_id"]] + 1 == points[after["visit_id"]]
    assert app.checklist("joint-supervision", v1["version"]) == v1
    with as_officer("fire-1", "fire_rescue"), pytest.raises(Forbidden):
        app.publish_checklist({"template_id": "x", "title": "t", "source": "s",
                               "areas": changed})


def test_a_clean_period_is_recorded_once_per_institution_and_period(
        app, rosters, add_institutions, clock):
    institutions = add_institutions(app, 2)
    first = joint_plan(app, targets=2)
    with as_officer("health-1", "health"):
        second = app.create_plan({"title": "卫生健康部门一季度抽查", "period": "2026-Q1",
                                  "departments": ["health"], "district": "徐汇区",
                                  "target_count": 2, "inspectors_per_department": 1})
        app.record_seed(second["plan_id"])
        second = app.draw_plan(second["plan_id"])
    clean, dirty = sorted(institutions)
    for drawn in (first, second):
        for target in drawn["targets"]:
            finding = ("health", "minor") if target["institution_id"] == dirty else None
            conduct(app, target["institution_id"], target["visit_id"], finding=finding)
    with as_officer("health-1", "health"), pytest.raises(DomainRuleViolated,
                                                         match="period ends"):
        app.close_plan(first["plan_id"])
    clock.now = clock.now.replace(month=4, day=2)
    with as_officer("inspection-timer", "system"):
        result = app.close_due_plans()
    assert sorted(r["plan_id"] for r in result["closed"]) == sorted(
        [first["plan_id"], second["plan_id"]])
    assert all(r["clean"] == [clean] for r in result["closed"])
    completed = [e for e in app.read_log(1, 10_000)
                 if e.event_type == "CleanInspectionPeriodCompleted"]
    assert [(e.payload["institution_id"], e.payload["period"]) for e in completed] == [
        (clean, "2026-Q1")]
    with as_officer("inspection-timer", "system"):
        assert app.close_due_plans()["closed"] == []


def test_departments_recording_at_once_on_one_visit_lose_nothing(app, rosters, add_institutions):
    (institution,) = add_institutions(app, 1)
    with as_officer("health-1", "health"):
        visit = app.schedule_targeted_visit(institution, {
            "trigger": "complaint", "reference": "投诉 12",
            "departments": ["health", "market_regulation", "fire_rescue"],
            "scheduled_on": "2026-03-02",
            "inspectors": {d: [p] for d, p in PEOPLE.items()}})
    vid = visit["visit_id"]
    items = app.visit(institution, vid)["items"]
    errors = []

    def record(department: str) -> None:
        try:
            with as_officer(PEOPLE[department], department):
                for item in items:
                    if item["department"] == department:
                        app.record_item_result(institution, vid, {"item": item["code"],
                                                                  "result": "met"})
        except Exception as e:  # pragma: no cover - the assertion below shows it
            errors.append(e)

    threads = [threading.Thread(target=record, args=(d,)) for d in PEOPLE]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    after = app.visit(institution, vid)
    assert all(not missing for missing in after["missing"].values())
    assert len(after["results"]) == len(items)


def test_bad_input_names_each_field_and_writes_nothing(app, rosters, add_institutions):
    (institution,) = add_institutions(app, 1)
    before = app.log_head()
    with as_officer("health-1", "health"):
        with pytest.raises(ValidationFailed) as refused:
            app.create_plan({"title": "", "period": "2026-Q5", "departments": ["army"],
                             "district": "徐汇区", "target_count": 0, "extra": 1})
        assert {"title", "period", "departments[0]", "target_count", "extra"} <= fields(refused)
        with pytest.raises(ValidationFailed) as refused:
            app.schedule_targeted_visit("not-a-uuid", {})
        assert "institution_id" in fields(refused)
        with pytest.raises(ValidationFailed) as refused:
            app.schedule_targeted_visit(institution, {
                "trigger": "plan", "reference": "x 110101199003074514 y",
                "departments": ["health"], "scheduled_on": "2026-02-30"})
        assert fields(refused) == {"trigger", "reference", "scheduled_on"}
        with pytest.raises(VisitNotFound):
            app.visit(institution, str(uuid.uuid4()))
        with pytest.raises(ValidationFailed) as refused:
            app.visit(institution, "nope")
        assert fields(refused) == {"visit_id"}
        with pytest.raises(NotFound):
            app.schedule_targeted_visit(str(uuid.uuid4()), {
                "trigger": "complaint", "reference": "x", "departments": ["health"],
                "scheduled_on": "2026-03-02"})
    assert app.log_head() == before


def test_a_department_plans_only_for_itself_unless_it_leads(app, rosters, add_institutions):
    add_institutions(app, 2)
    with as_officer("fire-1", "fire_rescue"), pytest.raises(Forbidden):
        app.create_plan({"title": "市场监管抽查", "period": "2026", "departments":
                         ["market_regulation"], "district": "徐汇区", "target_count": 1})
    with as_officer("fire-1", "fire_rescue"):
        app.create_plan({"title": "消防抽查", "period": "2026", "departments": ["fire_rescue"],
                         "district": "徐汇区", "target_count": 1})


def test_queries_by_department_area_and_workload(app, rosters, add_institutions):
    institutions = add_institutions(app, 3)
    drawn = joint_plan(app, targets=3)
    done = drawn["targets"][0]
    conduct(app, done["institution_id"], done["visit_id"], finding=("fire_rescue", "critical"))
    app.catch_up_views()
    assert len(app.visits({"department": "fire_rescue"})) == 3
    (with_fire,) = app.visits({"area": app.visit(done["institution_id"], done["visit_id"])
                               ["findings"][0]["item"].split(".")[0]})
    assert with_fire["outcome"] == "failed"
    with as_officer("fire-1", "fire_rescue"):
        work = app.workload()
    assert work["department"] == "fire_rescue" and work["visits"]["scheduled"] == 2
    assert work["orders"]["awaiting"] == 1 and work["plans"][0]["done"] == 1
    stats = app.statistics({"district": "徐汇区"})
    assert stats["visits"]["failed"] == 1
    assert [f["severity"] for f in stats["findings"]] == ["critical"]
    listed = app.institutions({"district": "徐汇区"})
    assert sorted(r["institution_id"] for r in listed) == sorted(institutions)
    with psycopg.connect(app.settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM inspection_orders").fetchone()[0] == 1


def test_a_visit_of_another_institution_is_not_found(app, rosters, add_institutions):
    first, second = add_institutions(app, 2)
    with as_officer("health-1", "health"):
        visit = app.schedule_targeted_visit(first, {
            "trigger": "complaint", "reference": "投诉 13", "departments": ["health"],
            "scheduled_on": "2026-03-02", "inspectors": {"health": ["health-1"]}})
        with pytest.raises(VisitNotFound):
            app.visit(second, visit["visit_id"])
        with pytest.raises(VisitNotFound):
            app.sign_off(second, visit["visit_id"])


def test_deregistered_institutions_are_not_drawn_nor_visited(app, rosters, add_institutions):
    (gone,) = add_institutions(app, 1, status="deregistered")
    add_institutions(app, 1, status="suspended")
    drawn = joint_plan(app, targets=5)
    assert drawn["frame_size"] == 1
    with as_officer("health-1", "health"), pytest.raises(DomainRuleViolated,
                                                         match="deregistered"):
        app.schedule_targeted_visit(gone, {"trigger": "complaint", "reference": "x",
                                           "departments": ["health"],
                                           "scheduled_on": "2026-03-02"})


def test_timers_catch_up_in_one_daily_run(app, rosters, add_institutions, clock):
    add_institutions(app, 1)
    with as_officer("inspection-timer", "system"):
        result = app.daily()
    assert set(result) == {"publish_overdue_rectifications", "publish_due_results",
                           "close_due_plans"}
    assert all(part["failed"] == [] for part in result.values())
    clock.advance(1)
    _ = timedelta


def test_a_district_officer_acts_on_their_own_districts_plans_only(app, rosters,
                                                                   add_institutions):
    from tuoyu_shared.auth import Principal
    from tuoyu_shared.context import acting_as

    add_institutions(app, 2)
    with as_officer("health-1", "health"):
        plan = app.create_plan({"title": "徐汇区抽查", "period": "2026", "departments": ["health"],
                                "district": "徐汇区", "target_count": 1,
                                "inspectors_per_department": 1})
    other = Principal("health-9", "health_officer", "health", "黄浦区")
    with as_officer("health-9", "health"), acting_as(other), pytest.raises(Forbidden,
                                                                           match="黄浦区"):
        app.record_seed(plan["plan_id"])
    own = Principal("health-1", "health_officer", "health", "徐汇区")
    with as_officer("health-1", "health"), acting_as(own):
        app.record_seed(plan["plan_id"])
        assert app.plan(plan["plan_id"])["status"] == "seeded"


def test_results_sent_again_are_answered_as_unchanged_not_recorded(app, rosters, add_institutions):
    """A department's page sent again (a retry after an answer lost on the network) records
    nothing, and says so: before, the answer claimed every result recorded (found by the
    reliability suite, which counted such a command as accepted with no event)."""
    add_institutions(app, 2, grade="B")
    target = joint_plan(app, targets=1)["targets"][0]
    institution, visit_id = target["institution_id"], target["visit_id"]
    visit = app.visit(institution, visit_id)
    codes = [i["code"] for i in visit["items"] if i["department"] == "health"][:3]
    officer = visit["inspectors"]["health"][0]
    page = {"results": [{"item": code, "result": "met"} for code in codes]}
    with as_officer(officer, "health"):
        first = app.record_item_results(institution, visit_id, page)
        before = len(events(app))
        again = app.record_item_results(institution, visit_id, page)
        assert len(events(app)) == before
        changed = app.record_item_results(institution, visit_id, {"results": [
            {"item": codes[0], "result": "not_met", "note": "未见晨检记录"}, *page["results"][1:]]})
    assert (first["recorded"], first["unchanged"]) == (3, 0)
    assert (again["recorded"], again["unchanged"], again["version"]) == (0, 3, first["version"])
    assert (changed["recorded"], changed["unchanged"]) == (1, 2)
