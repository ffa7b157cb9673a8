"""The dashboard as deployed: a district built through the gateway (reference data,
registrations, filings, places, enrolment, 普惠 designations, certified staff) whose figures are
known in advance comes back exactly in every indicator, now and as of an instant before the
last changes; scoped by role; with the drill-down, the lag, the quarterly report files, and
the page in a real browser (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from fractions import Fraction
from pathlib import Path
from urllib.parse import quote

import pytest

from tuoyu_registration.samples import (
    sample_enrolment,
    sample_filing_submission,
    sample_registration,
    sample_resident_id,
)
from tuoyu_shared.calendar_cn import SHANGHAI
from tuoyu_shared.devrun import ProcessGroup
from tuoyu_shared.devrun import http_json as _http_json
from tuoyu_shared.testing import PROJECT_ROOT, bearer, group_environment, wait_for

HEALTH = bearer("health_officer", subject="health-9")
ARTIFACTS = Path(os.environ.get("TUOYU_TEST_ARTIFACTS") or PROJECT_ROOT / "test-artifacts")


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory):
    with group_environment(servers, "dash", vhost="tuoyu-dashboard") as env:
        group = ProcessGroup(env, tmp_path_factory.mktemp("logs"), port_offset=900)
        group.start()
        yield group
        group.stop()


def call(system, method: str, path: str, body: dict | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict]:
    return _http_json(method, f"{system.url('gateway')}{path}", body, headers or HEALTH)


def raw(system, method: str, path: str, data: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(f"{system.url('gateway')}{path}", data=data,
                                     method=method, headers={**HEALTH, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def load_csv(system, year: int, text: str, headers=None) -> tuple[int, dict]:
    status, body, _ = raw(system, "POST", f"/api/dashboard/reference-data?year={year}",
                          text.encode(), {"Content-Type": "text/csv", **(headers or {})})
    try:
        return status, json.loads(body or b"{}")
    except ValueError:
        raise AssertionError(f"not JSON ({status}): {body[:300]!r}") from None


def ok(reply: tuple[int, dict], status: int = 200) -> dict:
    assert reply[0] == status, reply
    return reply[1]


class District:
    """Two streets; first three institutions registered, two filed (one 普惠), one monthly
    report, two staff (one certified); then the third filed and 普惠, a second report, the
    certified one released."""

    def __init__(self, system):
        self.system = system
        self.name = f"看板区{uuid.uuid4().hex[:6]}"
        self.n = 9000 + uuid.uuid4().int % 300 * 3
        self.month = dt.datetime.now(SHANGHAI).strftime("%Y-%m")
        self.ids: list[str] = []
        self.certified_hire = ""

    def post(self, path: str, body: dict, status: int = 200) -> dict:
        return ok(call(self.system, "POST", path, body), status)

    def command(self, institution: str, name: str, body: dict) -> dict:
        return self.post(f"/api/institutions/{institution}/{name}", body)

    def file(self, institution: str, n: int) -> None:
        self.command(institution, "submit_filing", sample_filing_submission())
        self.command(institution, "issue_filing_receipt", {"receipt_number": f"BA-{n}"})

    def hire(self, institution: str, n: int, certificates: list[str]) -> str:
        return self.command(institution, "request_hire", {
            "practitioner": {"name": "赵六", "id_number": sample_resident_id(n)},
            "role": "carer", "certificates": certificates})["result"]

    def report(self, institution: str, children: int, health: int) -> None:
        classes = None if children == 40 else [
            {"class_type": "toddler", "children": 10, "carers": 2, "age_bands": {"m18_24": 10}},
            {"class_type": "older", "children": 10, "carers": 2, "age_bands": {"m24_36": 10}}]
        self.command(institution, "report_enrolment", sample_enrolment(
            self.month, second_children=0, third_children=0, health_managed_children=health,
            **({"classes": classes} if classes else {})))

    def first_part(self) -> None:
        ok(load_csv(self.system, dt.datetime.now(SHANGHAI).year,
                    "区,街道,常住人口,3岁以下婴幼儿数,社区数\n"
                    f"{self.name},东街道,10000,300,2\n{self.name},西街道,5000,200,1\n"), 201)
        for k, street in enumerate(("东街道", "东街道", "西街道")):
            self.ids.append(self.post("/api/institutions", sample_registration(
                self.n + k, district=self.name, street=street), 201)["institution_id"])
        i1, i2, _ = self.ids
        self.file(i1, self.n)
        self.file(i2, self.n + 1)
        self.command(i1, "designate_affordable", {"guide_price_fen": 250000,
                                                  "document": "普惠认定"})
        self.report(i1, 40, 30)
        self.certified_hire = self.hire(i1, self.n, ["保育师证"])
        self.hire(i1, self.n + 1, [])

    def second_part(self) -> None:
        i1, i2, i3 = self.ids
        self.file(i3, self.n + 2)
        self.command(i3, "designate_affordable", {"guide_price_fen": 250000,
                                                  "document": "普惠认定"})
        self.report(i2, 20, 20)
        self.command(i1, "release_practitioner", {"hire_id": self.certified_hire,
                                                  "reason": "离职"})

    def indicators(self, as_of: str | None = None, headers=None) -> dict:
        query = f"?district={quote(self.name)}" + (f"&as_of={quote(as_of)}" if as_of else "")
        return ok(call(self.system, "GET", f"/api/dashboard/indicators{query}",
                       headers=headers))


FIRST = {"filing_rate": Fraction(2, 3), "places_per_1000": Fraction(90 * 1000, 15000),
         "enrolment_rate": Fraction(40, 500), "utilisation": Fraction(40, 90),
         "affordable_share": Fraction(45, 90), "affordable_street_coverage": Fraction(1, 2),
         "places_per_community": Fraction(90, 3), "certified_rate": Fraction(1, 2),
         "health_management_rate": Fraction(30, 40)}
LAST = {"filing_rate": Fraction(3, 3), "places_per_1000": Fraction(135 * 1000, 15000),
        "enrolment_rate": Fraction(60, 500), "utilisation": Fraction(60, 135),
        "affordable_share": Fraction(90, 135), "affordable_street_coverage": Fraction(2, 2),
        "places_per_community": Fraction(135, 3), "certified_rate": Fraction(0, 1),
        "health_management_rate": Fraction(50, 60)}


def exactly(figures: dict, expected: dict[str, Fraction]) -> bool:
    return all(figures[code]["denominator"]
               and Fraction(figures[code]["numerator"], figures[code]["denominator"]) == value
               and figures[code]["value"] == float(value)
               for code, value in expected.items())


@pytest.fixture(scope="module")
def district(system) -> District:
    built = District(system)
    built.first_part()
    # the hires are confirmed by credit's background check, then projected
    wait_for(lambda: exactly(built.indicators()["total"]["indicators"], FIRST),
             what="the first part's figures in the dashboard", timeout=90)
    built.between = dt.datetime.now(SHANGHAI).isoformat()
    time.sleep(0.05)
    built.second_part()
    wait_for(lambda: exactly(built.indicators()["total"]["indicators"], LAST),
             what="the last figures in the dashboard", timeout=90)
    return built


def test_each_indicator_exactly_now_and_as_of_before_the_last_changes(system, district):
    now = district.indicators()
    assert exactly(now["total"]["indicators"], LAST)
    before = district.indicators(district.between)
    assert exactly(before["total"]["indicators"], FIRST)
    assert before["total"]["indicators"]["filing_rate"]["display"] == "66.67%"
    yesterday = (dt.datetime.now(SHANGHAI).date() - dt.timedelta(days=1)).isoformat()
    assert district.indicators(yesterday)["total"]["counts"]["registered"] == 0
    east = next(s for s in now["streets"] if s["street"] == "东街道")
    assert east["indicators"]["places_per_1000"]["numerator"] == 90 * 1000
    assert {d["code"] for d in now["definitions"]} == set(LAST)
    assert all(d["definition"] for d in now["definitions"])

    # the drill-down: the institutions and the events behind the number
    behind = ok(call(system, "GET", f"/api/dashboard/indicators/filing_rate/institutions"
                                    f"?district={quote(district.name)}"
                                    f"&as_of={quote(district.between)}"))
    assert {i["institution_id"] for i in behind["institutions"]} == set(district.ids)
    assert behind["numerator_total"] == 2 and behind["denominator_total"] == 3
    history = ok(call(system, "GET",
                      f"/api/dashboard/institutions/{district.ids[2]}/history"))
    assert history["states"][0]["event_type"] == "InstitutionRegistered"

    # the monthly series ends with today's figures
    series = ok(call(system, "GET", f"/api/dashboard/indicators/series?months=3"
                                    f"&district={quote(district.name)}"))
    assert len(series["months"]) == 3
    assert exactly(series["points"][-1]["total"], LAST)


def test_a_district_reader_sees_their_district_only(system, district):
    leader = bearer("district_leader", district=district.name, subject="leader-9")
    mine = ok(call(system, "GET", "/api/dashboard/indicators", headers=leader))
    assert mine["district"] == district.name
    assert [d["district"] for d in mine["districts"]] == [district.name]
    other = bearer("district_leader", district="别的区", subject="leader-10")
    status, reply = call(system, "GET",
                         f"/api/dashboard/indicators?district={quote(district.name)}",
                         headers=other)
    assert status == 403 and reply["code"] == "other_district"
    status, reply = call(system, "GET", f"/api/dashboard/institutions/{district.ids[0]}/history",
                         headers=other)
    assert status == 403, reply
    operator = bearer("operator", institution_id=district.ids[0], subject="op-9")
    assert call(system, "GET", "/api/dashboard/indicators", headers=operator)[0] == 403
    # a leader reads, never loads
    status, reply = load_csv(system, 2026, "district,street,population,under_three,"
                                           "communities\n甲区,一街道,1000,50,2\n", leader)
    assert status == 403 and reply["code"] == "role_not_allowed"


def test_bad_input_is_refused_with_the_field_and_changes_nothing(system, district):
    for as_of, reason in (("2026-13-01", "YYYY-MM-DD"), ("2999-01-01", "2100"),
                          ("2099-01-01", "after today"),
                          ("2026-06-30T10:00:00", "offset"),
                          ("0001-01-01T00:00:00+01:00", "2000"),
                          ("9999-12-31T23:00:00-10:00", "2000")):
        status, reply = call(system, "GET", f"/api/dashboard/indicators?as_of={quote(as_of)}")
        assert status == 400 and reply["errors"][0]["field"] == "as_of", reply
        assert reason in reply["errors"][0]["reason"]
    import http.client
    from urllib.parse import urlsplit

    address = urlsplit(system.url("gateway"))
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    connection.request("GET", "/dashboard?prefix=https://evil.example")
    answer = connection.getresponse()
    assert answer.status == 307 and answer.getheader("location") == "/dashboard/"
    connection.close()  # nothing of the request goes into the redirect
    status, reply = call(system, "GET", "/api/dashboard/indicators/nope/institutions")
    assert status == 400 and reply["errors"][0]["field"] == "code"
    before = ok(call(system, "GET", "/api/dashboard/reference-data"))["count"]
    status, reply = load_csv(system, 2026, "district,street,population,under_three,communities\n"
                                           "甲区,一街道,1000,50,2\n甲区,二街道,-5,1,1\n")
    assert status == 400 and reply["errors"][0]["field"] == "line 3.population", reply
    status, reply = load_csv(system, 1999, "district,street,population,under_three,communities\n"
                                           "甲区,一街道,1000,50,2\n")
    assert status == 400 and reply["errors"][0]["field"] == "year", reply
    assert ok(call(system, "GET", "/api/dashboard/reference-data"))["count"] == before
    status, reply = call(system, "GET", "/api/dashboard/reports/quarterly.xlsx?quarter=2026Q5")
    assert status == 400 and reply["errors"][0]["field"] == "quarter"


def test_the_other_services_figures_and_the_lag(system, district):
    for path in ("subsidy", "inspection", "credit"):
        reply = ok(call(system, "GET", f"/api/dashboard/{path}?district={quote(district.name)}"))
        assert reply["district"] == district.name
    credit = ok(call(system, "GET", f"/api/dashboard/credit?district={quote(district.name)}"))
    assert sum(g["institutions"] for g in credit["grades"]) == 3  # each opened with a grade

    def caught_up() -> dict | None:
        lag = ok(call(system, "GET", "/api/dashboard/lag"))
        return lag if all(v["answered"] and v["lag_events"] == 0 for v in lag["views"]) \
            else None

    lag = wait_for(caught_up, what="every view caught up", timeout=90)
    assert {v["upstream"] for v in lag["views"]} == {"registration", "credit", "inspection",
                                                     "subsidy"}
    with urllib.request.urlopen(f"{system.url('dashboard')}/metrics", timeout=30) as resp:
        metrics = resp.read().decode()
    assert 'tuoyu_projection_lag_events{consumer="dashboard",service="dashboard",' \
           'upstream="registration"} 0.0' in metrics


def test_the_quarterly_report_as_a_spreadsheet_and_a_pdf(system, district):
    from openpyxl import load_workbook
    from pypdf import PdfReader

    today = dt.datetime.now(SHANGHAI).date()
    quarter = f"{today.year}Q{(today.month - 1) // 3 + 1}"
    query = f"?quarter={quarter}&district={quote(district.name)}"
    data = ok(call(system, "GET", f"/api/dashboard/reports/quarterly{query}"))
    shown = {i["code"]: i["display"] for i in data["indicators"]}
    assert shown["filing_rate"] == "100.00%" and shown["utilisation"] == "44.44%"

    status, body, headers = raw(system, "GET", f"/api/dashboard/reports/quarterly.xlsx{query}")
    assert status == 200 and headers["content-type"].startswith(
        "application/vnd.openxmlformats")
    sheet = load_workbook(io.BytesIO(body))["指标"]
    cells = {str(c.value) for row in sheet.iter_rows() for c in row if c.value is not None}
    assert "100.00%" in cells and "44.44%" in cells and "持证率" in cells

    status, body, headers = raw(system, "GET", f"/api/dashboard/reports/quarterly.pdf{query}")
    assert status == 200 and headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)
    text = "".join(text.split())
    assert "100.00%" in text and "44.44%" in text and "备案率" in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="Debian's chromium is not installed (make setup installs it)")
def test_the_page_in_a_real_browser(system, district):
    from playwright.sync_api import sync_playwright

    leader = bearer("district_leader", district=district.name, subject="leader-9")
    token = leader["Authorization"].split(" ", 1)[1]
    api = district.indicators(headers=leader)
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
            external: list[str] = []
            page.on("request", lambda r: external.append(r.url)
                    if not r.url.startswith(system.url("gateway")) else None)
            page.goto(f"{system.url('gateway')}/dashboard/#token={token}")
            page.wait_for_selector("body[data-loaded=true]", timeout=60_000)
            on_page = page.eval_on_selector_all(
                "#cards .card", "cards => Object.fromEntries(cards.map(c => "
                "[c.dataset.indicator, c.querySelector('.value').textContent]))")
            assert on_page == {code: f["display"]
                               for code, f in api["total"]["indicators"].items()}
            drawn = page.evaluate(
                "() => ['chart-areas', 'chart-trend', 'chart-subsidy', 'chart-findings', "
                "'chart-grades'].map(id => { const c = echarts.getInstanceByDom("
                "document.getElementById(id)); return c ? [id, c.getOption().series.length, "
                "!!document.querySelector('#' + id + ' canvas')] : [id, 0, false]; })")
            assert all(n > 0 and canvas for _, n, canvas in drawn), drawn
            bars = page.evaluate("() => echarts.getInstanceByDom(document.getElementById("
                                 "'chart-areas')).getOption().series[0].data")
            streets = {s["street"]: s["indicators"]["filing_rate"]["value"]
                       for s in api["streets"]}
            assert sorted(bars) == sorted(round(v * 100, 2) for v in streets.values())
            page.click("#cards .card[data-indicator=filing_rate]")
            page.wait_for_selector("#drill-table tbody tr")
            assert page.locator("#drill-table tbody tr").count() == 3
            page.click("#drill-table tbody tr:first-child")  # its states and their events
            page.wait_for_selector("#history-table tbody tr")
            assert page.locator("#history-table tbody tr").count() >= 3
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert external == [], external
        finally:
            browser.close()
    assert problems == []
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_rebuild_all_replays_every_view_from_every_upstream_row_by_row(system, district):
    """``worker rebuild --all``: every view dropped and replayed from its upstream's log
    (over RPC, as the worker reads it) equals the live one, row by row."""
    import subprocess
    import sys

    import psycopg
    from psycopg import sql

    from tuoyu_dashboard.projections import KEPT_COUNTS, VIEWS

    # something in each upstream's log: a plan (inspection), a budget (subsidy)
    finance = bearer("finance_officer", subject="finance-9")
    ok(call(system, "POST", "/api/subsidy/budgets", {
        "year": dt.datetime.now(SHANGHAI).year, "fund": "district",
        "allocated_fen": 1_000_000, "document": "财预〔2026〕9号"}, finance), 201)
    ok(call(system, "POST", "/api/inspection/plans", {
        "title": "看板抽查", "period": str(dt.datetime.now(SHANGHAI).year),
        "district": district.name, "target_count": 1, "departments": ["health"],
        "inspectors_per_department": 1}), 201)
    url = system.env["TUOYU_DASHBOARD_DATABASE_URL"]
    tables = [t for view in VIEWS for t in view.tables if t not in KEPT_COUNTS]

    def rows() -> dict[str, list]:
        with psycopg.connect(url) as conn:
            return {t: conn.execute(sql.SQL("SELECT to_jsonb(t) - 'updated_at' FROM {} t "
                                            "ORDER BY 1").format(sql.Identifier(t))).fetchall()
                    for t in tables}

    def settled() -> bool:
        lag = ok(call(system, "GET", "/api/dashboard/lag"))
        return all(v["answered"] and v["lag_events"] == 0 for v in lag["views"])

    wait_for(settled, what="every view caught up", timeout=90)
    live = rows()
    assert live["dash_budgets"] and live["dash_plans"] and live["dash_credit_history"]
    done = subprocess.run([sys.executable, "-m", "tuoyu_dashboard.worker", "rebuild", "--all"],
                          env=system.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {line.split()[1] for line in done.stdout.splitlines()
            if line.startswith("rebuilt ")} == {v.name for v in VIEWS}
    assert rows() == live
