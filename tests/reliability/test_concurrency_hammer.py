"""The concurrency hammer (issue 16): many writers at once on one aggregate, on one budget and
on one checklist, through the gateway of a process group of every service. No update is lost,
no budget overspent, and every refusal is a clean conflict (409 with its code, never a 5xx);
each accepted command's events carry its correlation id, a refused one's are nowhere. Last,
the reliability suite's load (:mod:`tuoyu_shared.reliability.workload`) is driven against the
same group until every kind of command in its mix has been accepted."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tuoyu_registration.samples import (
    sample_credit_code,
    sample_filing_submission,
    sample_registration,
)
from tuoyu_shared.devrun import ProcessGroup
from tuoyu_shared.reliability.workload import (
    DEPARTMENTS,
    ROLE_OF,
    LoadDriver,
    Recorder,
    Workload,
    resident_id,
)
from tuoyu_shared.testing import bearer, group_environment, wait_for

PORT_OFFSET = 1500
#: 409 codes of a clean refusal: the state does not allow it, or the record kept changing
CONFLICT_CODES = {"rule_violated", "conflict"}
WRITERS = 16
HEALTH = bearer("health_officer", subject="hammer-health")
FINANCE = bearer("finance_officer", subject="hammer-finance")
AUDITOR = bearer("auditor", subject="hammer-auditor")


@pytest.fixture(scope="module")
def group(servers, tmp_path_factory):
    with group_environment(servers, "hammer", vhost="tuoyu-hammer") as env:
        g = ProcessGroup(env, tmp_path_factory.mktemp("hammer-logs"), port_offset=PORT_OFFSET)
        try:
            g.start()
            yield g
        finally:
            g.stop()


# ---- helpers ----------------------------------------------------------------------------------
class Gateway:
    """Requests to the group's gateway, each command with a correlation id of its own."""

    def __init__(self, group: ProcessGroup):
        self.client = httpx.Client(base_url=group.url("gateway"), timeout=60)

    def send(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
        correlation = uuid.uuid4().hex
        response = self.client.request(method, path, json=body, headers={
            **(headers or HEALTH), "X-Correlation-Id": correlation})
        try:
            reply = response.json()
        except ValueError:
            reply = {"text": response.text[:500]}
        return response.status_code, reply if isinstance(reply, dict) else {"result": reply}, \
            correlation

    def get(self, path: str, headers: dict[str, str] | None = None, **params: Any
            ) -> tuple[int, dict[str, Any]]:
        response = self.client.get(path, headers=headers or HEALTH, params=params or None)
        return response.status_code, response.json()

    def history(self, service: str, aggregate_id: str) -> list[dict[str, Any]]:
        status, reply = self.get(f"/api/audit/{service}/cases/{aggregate_id}/history",
                                 AUDITOR)
        assert status == 200, reply
        return reply["events"]


@pytest.fixture(scope="module")
def gateway(group):
    g = Gateway(group)
    yield g
    g.client.close()


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Each call in a thread of its own, released together; their results in order (an
    exception is a result too)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as e:  # reported by the assertions on the results
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


_numbers = iter(range(1, 1_000_000))


def register_filed(gateway: Gateway, district: str, affordable: bool = False) -> str:
    """A new institution of the district, filed (and designated affordable); its id."""
    n = 88_000_000 + next(_numbers)
    status, reply, _ = gateway.send("POST", "/api/institutions", sample_registration(
        n, credit_code=sample_credit_code(n), district=district,
        person_in_charge={"name": "王晓梅", "id_number": resident_id(n), "phone": "13812345678"}))
    assert status == 201, reply
    institution = reply["institution_id"]
    base = f"/api/institutions/{institution}"
    for command, body in (("submit_filing", sample_filing_submission()),
                          ("issue_filing_receipt", {"receipt_number": f"HM-{n}"}),
                          *((("designate_affordable", {"guide_price_fen": 180000,
                                                       "document": f"锤〔{n}〕号"}),)
                            if affordable else ())):
        status, reply, _ = gateway.send("POST", f"{base}/{command}", body)
        assert status == 200, (command, reply)
    return institution


def assert_clean(results: list[tuple[int, dict[str, Any], str]]) -> None:
    """No exception, no 5xx; every refusal a 409 with a conflict code."""
    for result in results:
        assert not isinstance(result, Exception), repr(result)
        status, reply, _ = result
        assert status < 500, reply
        if status >= 400:
            assert status == 409 and reply.get("code") in CONFLICT_CODES, (status, reply)


def by_correlation(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["correlation_id"] for e in events)


def this_year() -> int:
    return datetime.now(ZoneInfo("Asia/Shanghai")).year


# ---- 1. one aggregate ------------------------------------------------------------------------
def test_many_writers_on_one_institution_lose_nothing(gateway):
    """Twelve officers file a change of address and four designate the institution affordable,
    all at once, on one institution's stream: each change lands (one event each, in some
    order, the last one's address kept), one designation lands and the others are refused."""
    institution = register_filed(gateway, "锤击区")
    base = f"/api/institutions/{institution}"
    addresses = [f"漕溪北路 {100 + k} 号" for k in range(WRITERS - 4)]
    calls = [lambda a=a: ("change", a, gateway.send("POST", f"{base}/file_change",
                                                    {"changes": {"address": a}}))
             for a in addresses]
    calls += [lambda k=k: ("affordable", None, gateway.send(
        "POST", f"{base}/designate_affordable",
        {"guide_price_fen": 150000 + k, "document": f"徐卫健〔2026〕{k}号"},
        bearer("health_officer", subject=f"hammer-health-{k}"))) for k in range(4)]
    results = all_at_once(calls)
    assert_clean([r[2] if isinstance(r, tuple) else r for r in results])

    accepted = {r[2][2]: r for r in results if r[2][0] == 200}
    refused = {r[2][2]: r for r in results if r[2][0] != 200}
    designations = [r for r in results if r[0] == "affordable"]
    assert sum(r[2][0] == 200 for r in designations) == 1
    assert all(r[2][1]["code"] == "rule_violated" for r in designations if r[2][0] != 200)

    events = gateway.history("registration", institution)
    assert [e["version"] for e in events] == list(range(1, len(events) + 1))
    counted = by_correlation(events)
    for correlation in accepted:
        assert counted[correlation] == 1, correlation
    for correlation in refused:
        assert counted[correlation] == 0, correlation
    # no lost update: as many changes recorded as answered 200, and the last one is the state
    changes = [e for e in events if e["correlation_id"] in accepted
               and accepted[e["correlation_id"]][0] == "change"]
    assert len(changes) == sum(1 for r in accepted.values() if r[0] == "change") >= 1
    last = accepted[changes[-1]["correlation_id"]][1]
    status, view = gateway.get(base)
    assert status == 200 and view["address"] == last
    assert view["affordable"]


# ---- 2. one budget ---------------------------------------------------------------------------
def test_concurrent_approvals_never_overspend_one_budget(gateway):
    """Sixteen eligible opening grants approved at once against a budget that funds seven:
    seven approved, nine refused as insufficient, none lost; the reservations never exceed
    the budget."""
    tag = uuid.uuid4().hex[:6]
    year, fund, amount, fits = this_year(), f"hammer-{tag}", 3_000_000, 7
    program = f"hammer-opening-{tag}"
    city_health = bearer("health_officer", "*", "hammer-city-health")
    city_finance = bearer("finance_officer", "*", "hammer-city-finance")
    status, reply, _ = gateway.send("POST", "/api/subsidy/programs", {
        "code": program, "kind": "opening_grant", "title": "锤击开办补助", "year": year,
        "terms": {"amount_fen": amount, "fund_sources": [{"fund": fund, "share_percent": 100}],
                  "notice_days": 7, "requires_affordable": True, "max_grade": "C"},
        "document": "锤击预算测试"}, city_health)
    assert status == 201, reply
    status, reply, _ = gateway.send("POST", "/api/subsidy/budgets", {
        "year": year, "fund": fund, "allocated_fen": fits * amount, "document": "小额预算"},
        city_finance)
    assert status == 201, reply

    district = f"锤预算区{tag}"
    institutions = [register_filed(gateway, district, affordable=True) for _ in range(WRITERS)]

    waiting, deadline = set(institutions), time.monotonic() + 90
    while waiting and time.monotonic() < deadline:  # (polled gently: the gateway limits rate)
        for institution in sorted(waiting):
            status, standing = gateway.get(f"/api/institutions/{institution}/subsidy-standing")
            if status == 200 and standing["status"] == "filed" and standing["affordable"]:
                waiting.discard(institution)
        time.sleep(0.5)
    assert not waiting, f"the subsidy service has not heard of {len(waiting)} institutions"
    pending = []
    for institution in institutions:
        operator = bearer("operator", district, f"hammer-op-{institution[:8]}", institution)
        base = f"/api/institutions/{institution}/subsidy-applications"
        status, drafted, _ = gateway.send("POST", base, {"program": program, "year": year},
                                          operator)
        assert status == 201, drafted
        aid = drafted["application_id"]
        status, submitted, _ = gateway.send("POST", f"{base}/{aid}/submission", {}, operator)
        assert status == 200 and submitted["eligible"], submitted
        assert submitted["amount_fen"] == amount
        pending.append((institution, aid))

    results = all_at_once([
        lambda i=i, a=a, k=k: gateway.send(
            "POST", f"/api/institutions/{i}/subsidy-applications/{a}/review",
            {"approved": True}, bearer("health_officer", subject=f"hammer-reviewer-{k}"))
        for k, (i, a) in enumerate(pending)])
    assert_clean(results)
    approved = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] != 200]
    assert len(approved) == fits and len(refused) == WRITERS - fits
    assert all(r[1]["code"] == "rule_violated" and "budget" in r[1]["detail"] for r in refused)

    states = Counter()
    for institution, aid in pending:
        status, application = gateway.get(
            f"/api/institutions/{institution}/subsidy-applications/{aid}")
        assert status == 200
        states[application["state"]] += 1
    assert states == {"in_notice": fits, "under_review": WRITERS - fits}

    from tuoyu_subsidy.domain import budget_id_for

    events = gateway.history("subsidy", str(budget_id_for(year, fund)))
    reserved = [e for e in events if e["event_type"].endswith("Reserved")]
    assert {e["correlation_id"] for e in reserved} == {r[2] for r in approved}
    counted = by_correlation(events)
    assert all(counted[r[2]] == 0 for r in refused)
    total = 0
    for e in events:  # the budget's running reservation, event by event, never above it
        if e["event_type"].endswith("Reserved"):
            total += e["data"]["amount_fen"]
            assert total <= fits * amount
    assert total == fits * amount

    def budget_row() -> dict[str, Any] | None:
        _, listing = gateway.get("/api/subsidy/budgets", city_finance, year=year)
        row = next((b for b in listing.get("budgets", []) if b["fund"] == fund), None)
        return row if row and row["reserved_fen"] == fits * amount else None

    row = wait_for(budget_row, timeout=60, what="the budget view")
    assert row["free_fen"] == 0 and row["allocated_fen"] == fits * amount


# ---- 3. one checklist ------------------------------------------------------------------------
def test_inspectors_of_three_departments_record_one_checklist_at_once(gateway):
    """Two inspectors of each department record their department's items of one visit, an
    item each, all at once (and a few record another department's item, refused): every
    recording that was accepted is in the visit's events, once, and in its results."""
    tag = uuid.uuid4().hex[:6]
    district = f"锤检查区{tag}"
    institution = register_filed(gateway, district)

    def known() -> bool:
        _, reply = gateway.get("/api/inspection/institutions", district=district)
        return any(r["institution_id"] == institution and r["status"] == "filed"
                   for r in reply.get("institutions", []))

    wait_for(known, timeout=90, what="the institution in inspection's directory")
    inspectors = {d: [f"hammer-{tag}-{d}-{i}" for i in (1, 2)] for d in DEPARTMENTS}
    for department, names in inspectors.items():
        for name in names:
            status, reply, _ = gateway.send("POST", "/api/inspection/inspectors",
                                            {"department": department, "inspector": name},
                                            bearer(ROLE_OF[department], subject=name))
            assert status == 200 and reply["enrolled"], reply
    status, visit, _ = gateway.send("POST", f"/api/institutions/{institution}/visits", {
        "trigger": "complaint", "reference": f"锤-{tag}", "departments": list(DEPARTMENTS),
        "scheduled_on": datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat(),
        "inspectors": inspectors})
    assert status == 201, visit
    path = f"/api/institutions/{institution}/visits/{visit['visit_id']}"
    status, detail = gateway.get(path)
    assert status == 200
    items = [(i["code"], i["department"]) for i in detail["items"]]
    assert {d for _, d in items} == set(DEPARTMENTS)

    writers: list[tuple[str, str, str, str]] = []  # (item, department, inspector, result)
    for k, (code, department) in enumerate(items):
        result = ("met", "partly_met")[k % 2]
        writers.append((code, department, inspectors[department][k % 2], result))
    # a few wrong ones: an inspector recording another department's item
    for department in DEPARTMENTS:
        code = next(c for c, d in items if d != department)
        writers.append((code, department, inspectors[department][0], "not_met"))

    def record(code: str, department: str, inspector: str, result: str):
        return gateway.send("POST", f"{path}/results",
                            {"results": [{"item": code, "result": result}]},
                            bearer(ROLE_OF[department], subject=inspector))

    results = all_at_once([lambda w=w: record(*w) for w in writers])
    assert_clean(results)
    accepted = [(w, r) for w, r in zip(writers, results, strict=True) if r[0] == 200]
    refused = [(w, r) for w, r in zip(writers, results, strict=True) if r[0] != 200]
    assert {w for w, _ in refused} >= set(writers[len(items):])  # the wrong ones, at least
    assert len(accepted) >= 1

    events = gateway.history("inspection", visit["visit_id"])
    assert [e["version"] for e in events] == list(range(1, len(events) + 1))
    recorded = [e for e in events if e["event_type"].endswith("ItemResultRecorded")]
    per_command = by_correlation(recorded)
    for _, (_, _, correlation) in accepted:
        assert per_command[correlation] == 1, correlation
    everything = by_correlation(events)
    for _, (_, _, correlation) in refused:
        assert everything[correlation] == 0, correlation
    assert len(recorded) == len(accepted)

    status, detail = gateway.get(path)
    results_now = {i["code"]: i["result"] for i in detail["items"]}
    last_of = {}
    for e in recorded:  # in version order: the last recording of an item is its result
        last_of[e["data"]["item"]] = e["data"]["result"]
    for code, result in last_of.items():
        assert results_now[code] is not None and results_now[code]["result"] == result
    for (code, *_), _ in accepted:
        assert results_now[code] is not None


# ---- the load of the reliability suite -------------------------------------------------------
#: The workload's kinds of command that a healthy run accepts (publish_program only when this
#: year has no version of the programs yet, allocate_budget only when a budget runs short)
EVERY_KIND = {
    "open_budget", "enrol_inspector", "register_institution", "submit_filing",
    "issue_filing_receipt", "designate_affordable", "report_enrolment", "request_hire",
    "schedule_targeted_visit", "create_plan", "record_seed", "draw_plan",
    "record_item_results", "record_finding", "sign_off", "publish_result",
    "draft_application", "submit_application", "review_application", "create_batch",
    "export_batch", "import_results"}


def let_notices_pass(group: ProcessGroup, days: int = 10) -> list[str]:
    """The subsidy timer's run on a day the public notices are over: the applications in
    notice become payable (the service's own daily timer, run here with a clock ``days``
    ahead, on the group's database)."""
    from tuoyu_shared.config import settings_for
    from tuoyu_shared.context import command_context
    from tuoyu_subsidy import bootstrap

    settings = replace(settings_for("subsidy"),
                       database_url=group.env["TUOYU_SUBSIDY_DATABASE_URL"],
                       amqp_uri=group.env["TUOYU_AMQP_URI"])
    app = bootstrap.application(settings,
                                clock=lambda: datetime.now(UTC) + timedelta(days=days))
    try:
        with command_context(actor="hammer-timer", department="system"):
            return app.close_notices()["closed"]
    finally:
        app.close()


def correlations_of(gateway: Gateway, service: str) -> set[str]:
    found, start = set(), 1
    while True:
        status, reply = gateway.get(f"/api/events/{service}", AUDITOR, start=start, limit=1000)
        assert status == 200, reply
        events = reply["events"]
        found.update(e.get("correlation_id") for e in events)
        if len(events) < 1000:
            return found
        start = events[-1]["notification_id"] + 1


def test_the_workload_drives_every_step(group, gateway):
    recorder = Recorder()
    workload = Workload(group.url("gateway"), recorder, seed=1, prefix="hammer")
    started = time.monotonic()
    workload.prepare()
    driver = LoadDriver(workload, rate=8, threads=4)
    driver.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(3)
            let_notices_pass(group)
            seen = {name for name, c in recorder.counts().items() if c["accepted"]}
            if EVERY_KIND <= seen:
                break
    finally:
        driver.stop()
        workload.close()
    took = time.monotonic() - started
    print(f"\nworkload: {took:.0f} s, {len(recorder.outcomes)} commands, "
          f"{workload.finished} cases done\n{recorder.table()}")
    assert not workload.bugs, workload.bugs[0]
    assert not driver.errors, driver.errors
    seen = {name for name, c in recorder.counts().items() if c["accepted"]}
    assert EVERY_KIND <= seen, f"never accepted: {sorted(EVERY_KIND - seen)}"
    assert not recorder.unknown(), [(o.name, o.status, o.code, o.detail)
                                    for o in recorder.unknown()[:5]]
    for o in recorder.refused():  # an asynchronous precondition, a conflict: never a bad call
        assert o.status in (404, 409), (o.name, o.status, o.code, o.detail)
    # each accepted command's events carry its correlation id, in its service's log; a
    # refused one's are in none
    logs = {s: correlations_of(gateway, s) for s in ("registration", "inspection", "subsidy")}
    lost = [(o.name, o.correlation_id) for o in recorder.accepted()
            if o.correlation_id not in logs[o.service]]
    assert not lost, lost[:5]
    everywhere = set().union(*logs.values())
    leaked = [(o.name, o.code) for o in recorder.refused() if o.correlation_id in everywhere]
    assert not leaked, leaked[:5]
