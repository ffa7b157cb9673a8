"""The quarterly progress report without a database: the quarter parsed, the report assembled
from results in the shapes :mod:`tuoyu_dashboard.indicators` returns, and the figures read
back from the xlsx (openpyxl) and the PDF (pypdf)."""

from __future__ import annotations

import json
import re
from datetime import date
from io import BytesIO
from typing import Any

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from tuoyu_dashboard import indicators as ind
from tuoyu_dashboard.report import (
    assemble_report,
    parse_quarter,
    quarterly_report,
    report_pdf,
    report_xlsx,
    yuan,
)
from tuoyu_shared.validation import ValidationFailed

F = ind.figure

# The city now (2026-09-30) and at the end of the quarter before (2026-06-30).
NOW = {
    "filing_rate": F(1, 2, "percent"),                  # 50.00%
    "places_per_1000": F(95 * 1000, 30000, "number"),   # 3.17
    "enrolment_rate": F(60, 1200, "percent"),           # 5.00%
    "utilisation": F(60, 95, "percent"),                # 63.16%
    "affordable_share": F(57, 95, "percent"),           # 60.00%
    "affordable_street_coverage": F(2, 3, "percent"),   # 66.67%
    "places_per_community": F(95, 10, "number"),        # 9.50
    "certified_rate": F(None, None, "percent"),         # —
    "health_management_rate": F(45, 60, "percent"),     # 75.00%
}
BEFORE = {
    "filing_rate": F(1, 3, "percent"),                  # 33.33%
    "places_per_1000": F(80 * 1000, 30000, "number"),   # 2.67
    "enrolment_rate": F(50, 1200, "percent"),
    "utilisation": F(50, 80, "percent"),
    "affordable_share": F(40, 80, "percent"),           # 50.00%
    "affordable_street_coverage": F(1, 3, "percent"),
    "places_per_community": F(80, 10, "number"),        # 8.00
    "certified_rate": F(3, 4, "percent"),
    "health_management_rate": F(None, 0, "percent"),
}
COUNTS = {"registered": 4, "filed": 2, "places": 95, "affordable_places": 57,
          "affordable_institutions": 1, "enrolled": 60, "health_managed": 45, "staff": 0,
          "certified_staff": 0, "population": 30000, "under_three": 1200, "communities": 10,
          "streets": 3, "streets_with_affordable": 2}


def _indicators(as_of: str, figures: dict[str, dict], districts: list[tuple[str, dict]]
                ) -> dict[str, Any]:
    return {"as_of": as_of, "now": False, "district": None, "reference": None,
            "definitions": ind.definitions(),
            "total": {"counts": COUNTS, "indicators": figures},
            "districts": [{"district": d, "counts": COUNTS, "indicators": f}
                          for d, f in districts],
            "streets": []}


def _series() -> dict[str, Any]:
    months = ["2025-10", "2025-11", "2025-12", "2026-01", "2026-02", "2026-03", "2026-04",
              "2026-05", "2026-06", "2026-07", "2026-08", "2026-09"]
    points = []
    for n, month in enumerate(months):
        figures = {i.code: F(None, None, i.unit) for i in ind.INDICATORS}
        if n >= 2:  # no data for the first two months: gaps in the charts
            figures["filing_rate"] = F(n, 2 * len(months), "percent")
            figures["affordable_share"] = F(40 + n, 100, "percent")
            figures["places_per_1000"] = F(n * 1000, 3000, "number")
        points.append({"as_of": f"{month}-28", "reference_year": 2026, "total": figures,
                       "districts": {}})
    return {"months": months, "district": None, "definitions": ind.definitions(),
            "points": points}


SUBSIDY = {
    "as_of": "2026-09-30", "district": None,
    "budgets": [
        {"budget_id": "b1", "year": 2026, "fund": "district", "allocated_fen": 3000000,
         "reserved_fen": 500000, "paid_fen": 1234567,
         "paid_share": F(1234567, 3000000, "percent"),
         "used_share": F(1734567, 3000000, "percent")},
        {"budget_id": "b2", "year": 2026, "fund": "upper_level", "allocated_fen": 0,
         "reserved_fen": 0, "paid_fen": 0, "paid_share": F(0, 0, "percent"),
         "used_share": F(0, 0, "percent")}],
    "programs": [{"program": "opening-grant", "fund": "district", "year": 2026,
                  "reserved_fen": 500000, "paid_fen": 1234567, "paid_applications": 2}],
    "totals": {"allocated_fen": 3000000, "reserved_fen": 500000, "paid_fen": 1234567},
}
INSPECTION = {
    "as_of": "2026-09-30", "district": None,
    "plans": [{"plan_id": "p1", "title": "2026年第三季度双随机检查", "district": "环翠区",
               "period": "2026-Q3", "target_count": 8, "scheduled": 7, "done": 6,
               "progress": F(6, 8, "percent")}],
    "visits": {"target": 8, "done": 6, "progress": F(6, 8, "percent")},
    "findings": [{"area": "safety", "title": "安全管理", "severity": "serious", "findings": 3},
                 {"area": "health", "title": "卫生保健", "severity": "minor", "findings": 5}],
    "rectification": {"on_time_rate": F(7, 9, "percent"), "overdue": 2, "open": 4},
    "overdue_orders": [{"order_id": "o-1", "institution_id": "i1", "name": "小树苗托育园",
                        "district": "环翠区", "severity": "serious", "due_on": "2026-09-01",
                        "event_id": "e1"}],
}
CREDIT = {
    "as_of": "2026-09-30", "district": None,
    "grades": [{"grade": "A", "institutions": 3}, {"grade": "C", "institutions": 1},
               {"grade": "ungraded", "institutions": 2}],
    "listed": {"serious_dishonesty": 1},
    "listings": [{"listing_id": "l1", "list_name": "serious_dishonesty", "institution_id": "i2",
                  "name": "大风车托育", "district": "环翠区",
                  "listed_at": "2026-08-01T02:00:00+00:00", "term_end": "2029-08-01",
                  "event_id": "e2"}],
    "barred_practitioners": 5,
}


@pytest.fixture
def report() -> dict[str, Any]:
    district_figures = {**NOW, "filing_rate": F(3, 8, "percent")}  # 37.50%
    return assemble_report(
        "2026Q3", None, date(2026, 7, 1), date(2026, 9, 30), date(2026, 9, 30),
        now_indicators=_indicators("2026-09-30", NOW, [("环翠区", district_figures),
                                                       ("文登区", NOW)]),
        previous_indicators=_indicators("2026-06-30", BEFORE, []),
        series=_series(), subsidy=SUBSIDY, inspection=INSPECTION, credit=CREDIT)


# ---- the quarter -----------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "start", "end"), [
    ("2026Q3", date(2026, 7, 1), date(2026, 9, 30)),
    ("2026-Q3", date(2026, 7, 1), date(2026, 9, 30)),
    ("2026Q1", date(2026, 1, 1), date(2026, 3, 31)),
    ("2024Q1", date(2024, 1, 1), date(2024, 3, 31)),
    ("2026Q2", date(2026, 4, 1), date(2026, 6, 30)),
    ("2026Q4", date(2026, 10, 1), date(2026, 12, 31)),
    ("2000Q1", date(2000, 1, 1), date(2000, 3, 31)),
    ("2100-Q4", date(2100, 10, 1), date(2100, 12, 31)),
])
def test_a_quarter_is_its_first_and_last_day(text: str, start: date, end: date) -> None:
    assert parse_quarter(text) == (start, end)


@pytest.mark.parametrize("text", ["", "2026", "2026Q0", "2026Q5", "2026-3", "26Q3",
                                  "1999Q4", "2101Q1", "2026Q3x", "2026--Q3", "Q3 2026",
                                  "２０２６Q3", None, 20263])
def test_anything_else_is_refused_naming_the_field(text: Any) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_quarter(text)
    [error] = caught.value.errors
    assert error.field == "quarter" and error.code == "invalid" and error.reason


def test_a_quarter_not_yet_started_is_refused_before_the_database_is_touched() -> None:
    with pytest.raises(ValidationFailed) as caught:
        quarterly_report(object(), "2026Q4", today=date(2026, 9, 30))
    assert [e.field for e in caught.value.errors] == ["quarter"]


def test_the_report_reads_the_database_only_through_the_indicator_functions(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []
    conn = object()

    def fake(name: str, result: Any):
        def call(c, as_of, *args):
            assert c is conn
            calls.append((name, as_of, *args))
            return result(as_of) if callable(result) else result
        return call

    monkeypatch.setattr(ind, "indicators", fake("indicators", lambda day: _indicators(
        day.isoformat(), NOW if day.month == 8 else BEFORE, [])))
    monkeypatch.setattr(ind, "series", fake("series", _series()))
    for name, result in (("subsidy", SUBSIDY), ("inspection", INSPECTION),
                         ("credit", CREDIT)):
        monkeypatch.setattr(ind, name, fake(name, result))
    got = quarterly_report(conn, "2026Q3", "环翠区", today=date(2026, 8, 15))
    assert got["as_of"] == "2026-08-15" and not got["complete"]
    assert got["title"] == "托育服务发展季度进度报告 2026年第3季度（环翠区）"
    assert sorted(calls) == sorted([
        ("indicators", date(2026, 8, 15), "环翠区"), ("indicators", date(2026, 6, 30), "环翠区"),
        ("series", date(2026, 8, 15), 12, "环翠区"), ("subsidy", date(2026, 8, 15), "环翠区"),
        ("inspection", date(2026, 8, 15), "环翠区"), ("credit", date(2026, 8, 15), "环翠区")])
    got = quarterly_report(conn, "2026Q2", today=date(2026, 8, 15))
    assert got["as_of"] == "2026-06-30" and got["complete"] and got["district"] is None


# ---- the report ------------------------------------------------------------------------------
def test_the_report_holds_each_indicator_against_target_and_the_quarter_before(
        report: dict) -> None:
    assert json.loads(json.dumps(report)) == report
    assert report["title"] == "托育服务发展季度进度报告 2026年第3季度（全市）"
    assert report["period"] == {"start": "2026-07-01", "end": "2026-09-30"}
    assert report["as_of"] == "2026-09-30" and report["previous_as_of"] == "2026-06-30"
    rows = {r["code"]: r for r in report["indicators"]}
    assert list(rows) == [i.code for i in ind.INDICATORS]
    filing = rows["filing_rate"]
    assert (filing["display"], filing["value"], filing["numerator"], filing["denominator"]) \
        == ("50.00%", 0.5, 1, 2)
    assert filing["previous_display"] == "33.33%"
    assert filing["change_display"] == "+16.67个百分点"
    assert filing["change"] == pytest.approx(1 / 6)
    assert filing["target"]["value"] == 1.0 and filing["target_display"] == "100.00%"
    assert rows["places_per_1000"]["change_display"] == "+0.50"
    assert rows["places_per_community"]["change_display"] == "+1.50"
    assert rows["affordable_share"]["change_display"] == "+10.00个百分点"
    assert rows["certified_rate"]["change"] is None
    assert rows["certified_rate"]["change_display"] == "—"
    assert rows["health_management_rate"]["previous_display"] == "—"
    assert rows["enrolment_rate"]["target"] is None
    assert [d["district"] for d in report["districts"]] == ["环翠区", "文登区"]
    assert report["series"][5] == {"month": "2026-03", **{
        i.code: NOW_SERIES_5.get(i.code) for i in ind.INDICATORS}}


NOW_SERIES_5 = {"filing_rate": 5 / 24, "affordable_share": 0.45, "places_per_1000": 5 / 3}


def test_a_fall_is_shown_with_a_minus_and_no_change_without_a_sign() -> None:
    now = _indicators("2026-09-30", {**NOW, "filing_rate": F(1, 4, "percent"),
                                     "places_per_1000": F(80 * 1000, 30000, "number")}, [])
    got = assemble_report("2026Q3", None, date(2026, 7, 1), date(2026, 9, 30),
                          date(2026, 9, 30), now, _indicators("2026-06-30", BEFORE, []),
                          _series(), SUBSIDY, INSPECTION, CREDIT)
    rows = {r["code"]: r for r in got["indicators"]}
    assert rows["filing_rate"]["change_display"] == "-8.33个百分点"
    assert rows["places_per_1000"]["change_display"] == "0.00"


# ---- xlsx ------------------------------------------------------------------------------------
def _table(ws: Any, header_row: int) -> list[dict[str, Any]]:
    titles = [c.value for c in ws[header_row]]
    rows = []
    for r in ws.iter_rows(min_row=header_row + 1):
        if r[0].value is None:
            break
        rows.append({t: (c.value, c.number_format) for t, c in zip(titles, r, strict=False)})
    return rows


def test_the_workbook_holds_the_figures_as_numbers_and_as_shown(report: dict) -> None:
    wb = load_workbook(BytesIO(report_xlsx(report)))
    assert wb.sheetnames == ["指标", "各区", "月度趋势", "补贴", "监督检查", "信用"]
    ws = wb["指标"]
    assert ws["A1"].value == "托育服务发展季度进度报告 2026年第3季度（全市）"
    rows = {r["代码"][0]: r for r in _table(ws, 3)}
    assert list(rows) == [i.code for i in ind.INDICATORS]
    for r in report["indicators"]:
        row = rows[r["code"]]
        assert row["指标"][0] == r["name"] and row["定义"][0] == r["definition"]
        assert row["本期值（显示）"][0] == r["display"]
        assert row["上期末（显示）"][0] == r["previous_display"]
        assert row["变化"][0] == r["change_display"]
        if r["value"] is None:
            assert row["本期值"][0] == "—"
        else:
            assert row["本期值"] == (pytest.approx(r["value"]),
                                   "0.00%" if r["unit"] == "percent" else "#,##0.00")
            assert row["分子"][0] == r["numerator"] and row["分母"][0] == r["denominator"]
    assert rows["filing_rate"]["本期值"][0] == 0.5
    assert rows["filing_rate"]["上期末"][0] == pytest.approx(1 / 3)
    assert rows["filing_rate"]["目标"] == (1, "0.00%")
    assert rows["places_per_1000"]["本期值"] == (pytest.approx(95 / 30), "#,##0.00")
    assert rows["places_per_1000"]["分子"][0] == 95000

    ws = wb["各区"]
    districts = {r["区"][0]: r for r in _table(ws, 1)}
    assert list(districts) == ["环翠区", "文登区", "合计"]
    assert districts["环翠区"]["备案率"] == (0.375, "0.00%")
    assert districts["合计"]["托位数"][0] == 95

    ws = wb["月度趋势"]
    trend = _table(ws, 1)
    assert [r["月份"][0] for r in trend] == [p["month"] for p in report["series"]]
    assert trend[5]["备案率"] == (pytest.approx(5 / 24), "0.00%")
    assert trend[0]["备案率"][0] is None
    assert len(ws._charts) == 1
    rates = [i for i in ind.INDICATORS if i.unit == "percent"]
    assert len(ws._charts[0].series) == len(rates)

    ws = wb["补贴"]
    budgets = _table(ws, 2)
    assert budgets[0]["已下达"] == (30000, "#,##0.00")
    assert budgets[0]["已拨付"][0] == pytest.approx(12345.67)
    assert budgets[0]["资金来源"][0] == "区级财政资金（district）"
    assert budgets[2]["年度"][0] == "合计"
    values = [c.value for row in ws.iter_rows() for c in row]
    assert "opening-grant" in values

    ws = wb["监督检查"]
    values = [c.value for row in ws.iter_rows() for c in row]
    assert "按时整改率" in values and "77.78%" in values and "安全管理" in values
    assert _table(ws, 2)[0]["目标数"][0] == 8 and _table(ws, 2)[0]["已完成"][0] == 6

    ws = wb["信用"]
    grades = _table(ws, 2)
    assert [(g["等级"][0], g["机构数"][0]) for g in grades] == [("A级", 3), ("C级", 1),
                                                               ("未评级", 2)]
    values = [c.value for row in ws.iter_rows() for c in row]
    assert "严重失信主体名单" in values and 5 in values


# ---- PDF -------------------------------------------------------------------------------------
def test_the_pdf_carries_the_title_the_figures_and_the_footer(report: dict) -> None:
    reader = PdfReader(BytesIO(report_pdf(report)))
    assert len(reader.pages) >= 1
    text = "\n".join(p.extract_text() for p in reader.pages)
    flat = re.sub(r"\s+", "", text)
    assert "托育服务发展季度进度报告2026年第3季度（全市）" in flat
    for r in report["indicators"]:
        assert r["name"] in flat
        for shown in (r["display"], r["previous_display"], r["change_display"],
                      r["target_display"]):
            assert shown in flat, shown
    for shown in ("30,000.00", "5,000.00", "12,345.67", "41.15%", "77.78%", "37.50%"):
        assert shown in flat, shown
    assert "备案率" in flat and "普惠托育率" in flat and "2026-09" in flat
    assert "数据截至2026-09-30" in flat and "指标定义" in flat
    assert "严重失信主体名单" in flat and "A级" in flat
    assert reader.metadata.title == report["title"]


def test_a_report_with_nothing_in_it_still_renders() -> None:
    nothing = {i.code: F(None, None, i.unit) for i in ind.INDICATORS}
    empty = {**_indicators("2026-03-31", nothing, []), "total": {"counts": {},
                                                                "indicators": nothing}}
    got = assemble_report(
        "2026Q1", "文登区", date(2026, 1, 1), date(2026, 3, 31), date(2026, 2, 10),
        empty, empty, {"points": []},
        {"budgets": [], "programs": [], "totals": {"allocated_fen": 0, "reserved_fen": 0,
                                                   "paid_fen": 0}},
        {"plans": [], "visits": {"target": 0, "done": 0, "progress": F(0, 0, "percent")},
         "findings": [], "rectification": {"on_time_rate": F(0, 0, "percent"),
                                           "overdue": 0, "open": 0}, "overdue_orders": []},
        {"grades": [], "listed": {}, "listings": [], "barred_practitioners": 0})
    assert not got["complete"] and got["scope"] == "文登区"
    wb = load_workbook(BytesIO(report_xlsx(got)))
    assert wb["指标"]["A1"].value.endswith("（文登区）")
    assert not wb["月度趋势"]._charts
    text = "".join(p.extract_text() for p in PdfReader(BytesIO(report_pdf(got))).pages)
    assert "文登区" in text and "尚未结束" in text


def test_money_is_shown_in_yuan() -> None:
    assert [yuan(3000000), yuan(1234567), yuan(5), yuan(0), yuan(-150)] == \
        ["30,000.00", "12,345.67", "0.05", "0.00", "-1.50"]


def test_the_charts_take_a_lone_month_an_empty_line_and_a_rate_above_100(report: dict) -> None:
    lone = [{"month": p["month"], **dict.fromkeys(i.code for i in ind.INDICATORS)}
            for p in report["series"]]
    lone[3]["filing_rate"] = 1.5
    rates = [dict(r, value=1.37, display="137.00%") if r["code"] == "utilisation" else r
             for r in report["indicators"]]
    pdf = report_pdf({**report, "series": lone, "indicators": rates})
    text = "".join(p.extract_text() for p in PdfReader(BytesIO(pdf)).pages)
    assert "137.00%" in text
    assert report_xlsx({**report, "series": lone})
