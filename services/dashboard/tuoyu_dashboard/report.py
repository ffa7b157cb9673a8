"""The quarterly progress report (每季度进度报送): every indicator at the quarter's end (or
today, while the quarter runs) against its target and against the end of the quarter before,
by district, with its monthly series and the subsidy, inspection and credit figures; as a
JSON-serialisable dict, an xlsx workbook (openpyxl) and a PDF (reportlab), in Chinese.

:func:`quarterly_report` gathers the figures, through the functions of
:mod:`tuoyu_dashboard.indicators` only, and :func:`assemble_report` (pure) builds the report
from their results; :func:`report_xlsx` and :func:`report_pdf` render a report.

Every figure keeps its exact ``numerator`` and ``denominator``; ``value`` is the ratio (a rate
as a fraction: 0.5 for 50%) and ``display`` the ratio rounded half up to 2 decimals. The
change from the quarter before is computed from the exact ratios, in percentage points for
rates. Money is integer fen, shown as yuan with 2 decimals.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from io import BytesIO
from typing import Any

from tuoyu_dashboard import indicators as ind
from tuoyu_shared.validation import FieldError, ValidationFailed

__all__ = ["assemble_report", "parse_quarter", "quarterly_report", "report_pdf",
           "report_xlsx", "yuan"]

FIRST_YEAR, LAST_YEAR = 2000, 2100
SERIES_MONTHS = 12
#: The rates the PDF's line chart follows month by month.
TREND_CODES = ("filing_rate", "affordable_share")

FUNDS = {"district": "区级财政资金", "upper_level": "上级补助资金"}
SEVERITIES = {"minor": "轻微", "major": "较重", "serious": "严重", "critical": "重大"}
LISTS = {"trust_reward": "守信激励名单", "serious_dishonesty": "严重失信主体名单"}
UNITS = {"percent": "百分比", "number": "数值"}
COUNTS = {
    "registered": "已登记机构数", "filed": "已备案机构数", "places": "托位数",
    "affordable_places": "普惠托位数", "affordable_institutions": "普惠机构数",
    "enrolled": "在托婴幼儿数", "health_managed": "健康管理人数",
    "health_reported": "填报健康管理的在托人数", "staff": "在岗人员数",
    "certified_staff": "持证人数", "population": "常住人口", "under_three": "3岁以下婴幼儿数",
    "communities": "社区数", "streets": "街道数", "streets_with_affordable": "有普惠服务的街道数",
}

_QUARTER = re.compile(r"([0-9]{4})-?[Qq]([0-9])")


# ---- the quarter -----------------------------------------------------------------------------
def _invalid(reason: str, code: str = "invalid") -> ValidationFailed:
    return ValidationFailed([FieldError("quarter", reason, code)])


def parse_quarter(text: str) -> tuple[dt.date, dt.date]:
    """``"2026Q3"`` (or ``"2026-Q3"``) → (2026-07-01, 2026-09-30), its first and last day."""
    if not isinstance(text, str):
        raise _invalid("must be a quarter written like 2026Q3")
    found = _QUARTER.fullmatch(text.strip())
    if found is None:
        raise _invalid("must be a quarter written like 2026Q3 or 2026-Q3")
    year, number = int(found.group(1)), int(found.group(2))
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise _invalid(f"the year must be between {FIRST_YEAR} and {LAST_YEAR}")
    if not 1 <= number <= 4:
        raise _invalid("the quarter must be Q1, Q2, Q3 or Q4")
    start = dt.date(year, 3 * number - 2, 1)
    following = dt.date(year + 1, 1, 1) if number == 4 else dt.date(year, 3 * number + 1, 1)
    return start, following - dt.timedelta(days=1)


def _quarter_name(start: dt.date) -> str:
    return f"{start.year}Q{(start.month - 1) // 3 + 1}"


def quarter_label(start: dt.date) -> str:
    return f"{start.year}年第{(start.month - 1) // 3 + 1}季度"


# ---- gathering -------------------------------------------------------------------------------
def quarterly_report(conn: Any, quarter: str, district: str | None = None,
                     today: dt.date | None = None) -> dict[str, Any]:
    """The report of a quarter (``"2026Q3"``) for the city (``district`` None) or a district,
    as of the quarter's last day, or as of today while the quarter runs. A quarter that has
    not started is refused. ``conn`` is used through :mod:`tuoyu_dashboard.indicators`
    only."""
    start, end = parse_quarter(quarter)
    day = today or ind.today()
    if start > day:
        raise _invalid(f"the quarter has not started yet (today is {day.isoformat()})",
                       "out_of_range")
    as_of = min(end, day)
    previous = start - dt.timedelta(days=1)
    return assemble_report(
        _quarter_name(start), district, start, end, as_of,
        now_indicators=ind.indicators(conn, as_of, district),
        previous_indicators=ind.indicators(conn, previous, district),
        series=ind.series(conn, as_of, SERIES_MONTHS, district),
        subsidy=ind.subsidy(conn, as_of, district),
        inspection=ind.inspection(conn, as_of, district),
        credit=ind.credit(conn, as_of, district))


# ---- assembling ------------------------------------------------------------------------------
def _round2(value: Fraction | Decimal) -> Decimal:
    if isinstance(value, Fraction):
        value = Decimal(value.numerator) / Decimal(value.denominator)
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _exact(fig: Mapping[str, Any] | None) -> Fraction | None:
    """A figure's ratio, exact when its numerator and denominator are there."""
    if not fig or fig.get("value") is None:
        return None
    num, den = fig.get("numerator"), fig.get("denominator")
    if isinstance(num, int) and isinstance(den, int) and den:
        return Fraction(num, den)
    return Fraction(Decimal(str(fig["value"])))


def _signed(amount: Decimal) -> str:
    return f"+{amount}" if amount > 0 else f"{amount}" if amount < 0 else f"{abs(amount)}"


def change_display(change: Fraction | None, unit: str) -> str:
    """``+1.23个百分点`` for a rate (the change of a fraction, in percentage points),
    ``+0.45`` for a number, ``—`` when there is none."""
    if change is None:
        return "—"
    if unit == "percent":
        return f"{_signed(_round2(change * 100))}个百分点"
    return _signed(_round2(change))


def target_display(target: Mapping[str, Any] | None, unit: str) -> str:
    if not target or target.get("value") is None:
        return "—"
    value = Decimal(str(target["value"]))
    return f"{_round2(value * 100)}%" if unit == "percent" else f"{_round2(value)}"


def _jsonable(value: Any) -> Any:
    """Rows as the database gives them, with dates, UUIDs and decimals made JSON's."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def assemble_report(quarter: str, district: str | None, start: dt.date, end: dt.date,
                    as_of: dt.date, now_indicators: Mapping[str, Any],
                    previous_indicators: Mapping[str, Any], series: Mapping[str, Any],
                    subsidy: Mapping[str, Any], inspection: Mapping[str, Any],
                    credit: Mapping[str, Any]) -> dict[str, Any]:
    """The report from the results of :func:`tuoyu_dashboard.indicators.indicators` as of
    ``as_of`` and as of the day before ``start``, :func:`~tuoyu_dashboard.indicators.series`
    up to ``as_of`` and the subsidy, inspection and credit figures as of ``as_of``."""
    definitions = {d["code"]: d for d in (now_indicators.get("definitions")
                                          or ind.definitions())}
    now = now_indicators["total"]["indicators"]
    before = previous_indicators["total"]["indicators"]
    rows = []
    for i in ind.INDICATORS:
        fig = now.get(i.code) or ind.figure(None, None, i.unit)
        prev = before.get(i.code) or ind.figure(None, None, i.unit)
        a, b = _exact(fig), _exact(prev)
        change = None if a is None or b is None else a - b
        target = (definitions.get(i.code) or {}).get("target")
        rows.append({
            "code": i.code, "name": i.name, "definition": i.definition, "unit": i.unit,
            "target": target, "target_display": target_display(target, i.unit),
            "value": fig["value"], "display": fig["display"],
            "numerator": fig["numerator"], "denominator": fig["denominator"],
            "previous_value": prev["value"], "previous_display": prev["display"],
            "change": None if change is None else float(change),
            "change_display": change_display(change, i.unit)})
    points = [{"month": p["as_of"][:7],
               **{i.code: (p["total"].get(i.code) or {}).get("value") for i in ind.INDICATORS}}
              for p in series.get("points", [])]
    label = quarter_label(start)
    return _jsonable({
        "quarter": quarter, "quarter_label": label, "district": district,
        "scope": district or "全市",
        "title": f"托育服务发展季度进度报告 {label}（{district or '全市'}）",
        "period": {"start": start, "end": end}, "as_of": as_of,
        "complete": as_of >= end, "previous_as_of": start - dt.timedelta(days=1),
        "reference": now_indicators.get("reference"),
        "indicators": rows,
        "total": now_indicators["total"],
        "districts": list(now_indicators.get("districts", [])),
        "series": points,
        "subsidy": subsidy, "inspection": inspection, "credit": credit})


# ---- formatting ------------------------------------------------------------------------------
def yuan(fen: int | None) -> str:
    """Integer fen as yuan with thousands separators and 2 decimals: 3000000 → 30,000.00."""
    if fen is None:
        return "—"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def _yuan_number(fen: int | None) -> Decimal | None:
    return None if fen is None else Decimal(int(fen)).scaleb(-2)


def _rates(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report["indicators"] if r["unit"] == "percent"]


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 4)


def _footer(report: Mapping[str, Any]) -> str:
    state = "" if report["complete"] else "（本季度尚未结束）"
    return (f"数据截至 {report['as_of']}（北京时间当日24时）{state}；上期末为 "
            f"{report['previous_as_of']}。指标口径见“指标定义”，比率以分子、分母精确计算，"
            "显示值四舍五入保留两位小数。")


def _grade_name(grade: str) -> str:
    return "未评级" if grade == "ungraded" else f"{grade}级"


def _names(mapping: Mapping[str, str], code: str | None) -> str:
    if code is None:
        return "—"
    return f"{mapping[code]}（{code}）" if code in mapping else code


# ---- xlsx ------------------------------------------------------------------------------------
def report_xlsx(report: Mapping[str, Any]) -> bytes:
    """The report as a workbook: 指标, 各区, 月度趋势 (with a line chart of the rates), 补贴,
    监督检查, 信用. Figures are numbers with a number format; display strings beside them."""
    from openpyxl import Workbook
    from openpyxl.chart import LineChart, Reference
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    bold = Font(bold=True)
    head_fill = PatternFill("solid", fgColor="DDEBF7")
    pct, num, money = "0.00%", "#,##0.00", "#,##0.00"

    def fmt(unit: str) -> str:
        return pct if unit == "percent" else num

    def header(ws: Any, row: int, titles: Sequence[str]) -> None:
        for col, title in enumerate(titles, start=1):
            cell = ws.cell(row=row, column=col, value=title)
            cell.font, cell.fill = bold, head_fill
            cell.alignment = Alignment(wrap_text=True, vertical="center")

    def put(ws: Any, row: int, col: int, value: Any, number_format: str | None = None) -> Any:
        cell = ws.cell(row=row, column=col, value="—" if value is None else value)
        if number_format and value is not None:
            cell.number_format = number_format
        return cell

    def widths(ws: Any, sizes: Sequence[int]) -> None:
        for col, size in enumerate(sizes, start=1):
            ws.column_dimensions[get_column_letter(col)].width = size

    def section(ws: Any, row: int, title: str) -> int:
        ws.cell(row=row, column=1, value=title).font = Font(bold=True, size=12)
        return row + 1

    wb = Workbook()

    # 指标
    ws = wb.active
    ws.title = "指标"
    ws.cell(row=1, column=1, value=report["title"]).font = Font(bold=True, size=14)
    ws.cell(row=2, column=1, value=(
        f"统计期间 {report['period']['start']} 至 {report['period']['end']}；"
        f"数据截至 {report['as_of']}；上期末 {report['previous_as_of']}"))
    titles = ["代码", "指标", "定义", "单位", "本期值", "本期值（显示）", "目标", "目标（显示）",
              "上期末", "上期末（显示）", "变化", "分子", "分母", "目标依据"]
    header(ws, 3, titles)
    for n, r in enumerate(report["indicators"], start=4):
        target = r["target"] or {}
        put(ws, n, 1, r["code"])
        put(ws, n, 2, r["name"])
        put(ws, n, 3, r["definition"]).alignment = Alignment(wrap_text=True)
        put(ws, n, 4, UNITS.get(r["unit"], r["unit"]))
        put(ws, n, 5, r["value"], fmt(r["unit"]))
        put(ws, n, 6, r["display"])
        put(ws, n, 7, target.get("value"), fmt(r["unit"]))
        put(ws, n, 8, r["target_display"])
        put(ws, n, 9, r["previous_value"], fmt(r["unit"]))
        put(ws, n, 10, r["previous_display"])
        put(ws, n, 11, r["change_display"])
        put(ws, n, 12, r["numerator"])
        put(ws, n, 13, r["denominator"])
        put(ws, n, 14, target.get("source"))
    note = 4 + len(report["indicators"]) + 1
    ws.cell(row=note, column=1, value="注：每千人口托位数的分子为托位数×1000；"
            "变化以精确比值计算，比率以百分点表示。")
    ws.cell(row=note + 1, column=1, value=_footer(report))
    widths(ws, [26, 18, 50, 8, 10, 14, 10, 12, 10, 14, 18, 12, 12, 40])
    ws.freeze_panes = "C4"

    # 各区
    ws = wb.create_sheet("各区")
    count_keys = [k for k in COUNTS if any(k in d.get("counts", {})
                                           for d in [*report["districts"], report["total"]])]
    header(ws, 1, ["区", *[i.name for i in ind.INDICATORS], *[COUNTS[k] for k in count_keys]])
    area_rows = [(d["district"], d) for d in report["districts"]]
    area_rows.append(("合计" if report["district"] is None else f"{report['district']}合计",
                      report["total"]))
    for n, (name, area) in enumerate(area_rows, start=2):
        put(ws, n, 1, name)
        for col, i in enumerate(ind.INDICATORS, start=2):
            put(ws, n, col, (area["indicators"].get(i.code) or {}).get("value"), fmt(i.unit))
        for col, k in enumerate(count_keys, start=2 + len(ind.INDICATORS)):
            put(ws, n, col, area.get("counts", {}).get(k))
    if area_rows:
        for cell in ws[1 + len(area_rows)]:
            cell.font = bold
    widths(ws, [14, *[12] * (len(ind.INDICATORS) + len(count_keys))])
    ws.freeze_panes = "B2"

    # 月度趋势
    ws = wb.create_sheet("月度趋势")
    header(ws, 1, ["月份", *[i.name for i in ind.INDICATORS]])
    points = report["series"]
    for n, p in enumerate(points, start=2):
        ws.cell(row=n, column=1, value=p["month"])
        for col, i in enumerate(ind.INDICATORS, start=2):
            if p.get(i.code) is not None:
                ws.cell(row=n, column=col, value=p[i.code]).number_format = fmt(i.unit)
    widths(ws, [10, *[12] * len(ind.INDICATORS)])
    if points:
        chart = LineChart()
        chart.title = "主要比率指标月度趋势"
        chart.y_axis.title = "比率"
        chart.y_axis.number_format = "0%"
        chart.x_axis.title = "月份"
        chart.x_axis.delete = chart.y_axis.delete = False  # shown (Excel hides them if unset)
        chart.height, chart.width = 9, 22
        for col, i in enumerate(ind.INDICATORS, start=2):
            if i.unit == "percent":
                chart.add_data(Reference(ws, min_col=col, min_row=1, max_row=1 + len(points)),
                               titles_from_data=True)
        chart.set_categories(Reference(ws, min_col=1, min_row=2, max_row=1 + len(points)))
        ws.add_chart(chart, f"A{len(points) + 4}")

    # 补贴
    ws = wb.create_sheet("补贴")
    subsidy = report["subsidy"]
    row = section(ws, 1, "预算执行（元）")
    header(ws, row, ["年度", "资金来源", "已下达", "已预留", "已拨付", "可用余额", "拨付率",
                     "使用率（含预留）"])
    for b in subsidy.get("budgets", []):
        row += 1
        put(ws, row, 1, b["year"])
        put(ws, row, 2, _names(FUNDS, b["fund"]))
        for col, key in enumerate(("allocated_fen", "reserved_fen", "paid_fen"), start=3):
            put(ws, row, col, _yuan_number(b[key]), money)
        put(ws, row, 6, _yuan_number(b["allocated_fen"] - b["reserved_fen"] - b["paid_fen"]),
            money)
        put(ws, row, 7, (b.get("paid_share") or {}).get("value"), pct)
        put(ws, row, 8, (b.get("used_share") or {}).get("value"), pct)
    totals = subsidy.get("totals", {})
    row += 1
    put(ws, row, 1, "合计").font = bold
    for col, key in enumerate(("allocated_fen", "reserved_fen", "paid_fen"), start=3):
        put(ws, row, col, _yuan_number(totals.get(key, 0)), money).font = bold
    row = section(ws, row + 2, "补贴项目（元）")
    header(ws, row, ["年度", "项目", "资金来源", "已预留", "已拨付", "已拨付申请数"])
    for p in subsidy.get("programs", []):
        row += 1
        put(ws, row, 1, p["year"])
        put(ws, row, 2, p["program"])
        put(ws, row, 3, _names(FUNDS, p["fund"]))
        put(ws, row, 4, _yuan_number(p["reserved_fen"]), money)
        put(ws, row, 5, _yuan_number(p["paid_fen"]), money)
        put(ws, row, 6, p.get("paid_applications"))
    widths(ws, [10, 28, 18, 16, 16, 16, 10, 14])

    # 监督检查
    ws = wb.create_sheet("监督检查")
    insp = report["inspection"]
    row = section(ws, 1, "检查计划完成情况")
    header(ws, row, ["计划", "区", "期间", "目标数", "已完成", "完成率"])
    for p in insp.get("plans", []):
        row += 1
        put(ws, row, 1, p["title"])
        put(ws, row, 2, p.get("district") or "全市")
        put(ws, row, 3, p["period"])
        put(ws, row, 4, p["target_count"])
        put(ws, row, 5, p["done"])
        put(ws, row, 6, (p.get("progress") or {}).get("value"), pct)
    visits = insp.get("visits", {})
    row += 1
    put(ws, row, 1, "合计").font = bold
    put(ws, row, 4, visits.get("target")).font = bold
    put(ws, row, 5, visits.get("done")).font = bold
    put(ws, row, 6, (visits.get("progress") or {}).get("value"), pct).font = bold
    row = section(ws, row + 2, "检查发现问题（按检查领域和严重程度）")
    header(ws, row, ["检查领域", "领域代码", "严重程度", "问题数"])
    for f in insp.get("findings", []):
        row += 1
        put(ws, row, 1, f.get("title") or f["area"])
        put(ws, row, 2, f["area"])
        put(ws, row, 3, _names(SEVERITIES, f["severity"]))
        put(ws, row, 4, f["findings"])
    rect = insp.get("rectification", {})
    on_time = rect.get("on_time_rate") or ind.figure(None, None, "percent")
    row = section(ws, row + 2, "整改情况")
    header(ws, row, ["项目", "数值", "显示", "分子", "分母"])
    row += 1
    put(ws, row, 1, "按时整改率")
    put(ws, row, 2, on_time["value"], pct)
    put(ws, row, 3, on_time["display"])
    put(ws, row, 4, on_time["numerator"])
    put(ws, row, 5, on_time["denominator"])
    row += 1
    put(ws, row, 1, "逾期未整改数")
    put(ws, row, 2, rect.get("overdue"))
    row += 1
    put(ws, row, 1, "未整改数")
    put(ws, row, 2, rect.get("open"))
    if insp.get("overdue_orders"):
        row = section(ws, row + 2, "逾期未整改的整改通知")
        header(ws, row, ["通知编号", "机构", "区", "严重程度", "整改期限"])
        for o in insp["overdue_orders"]:
            row += 1
            put(ws, row, 1, o["order_id"])
            put(ws, row, 2, o.get("name") or o.get("institution_id"))
            put(ws, row, 3, o.get("district"))
            put(ws, row, 4, _names(SEVERITIES, o.get("severity")))
            put(ws, row, 5, o.get("due_on"))
    widths(ws, [30, 16, 16, 10, 10, 10])

    # 信用
    ws = wb.create_sheet("信用")
    cred = report["credit"]
    row = section(ws, 1, "信用等级分布（未注销机构）")
    header(ws, row, ["等级", "等级代码", "机构数"])
    for g in cred.get("grades", []):
        row += 1
        put(ws, row, 1, _grade_name(g["grade"]))
        put(ws, row, 2, g["grade"])
        put(ws, row, 3, g["institutions"])
    row = section(ws, row + 2, "列入名单的机构")
    header(ws, row, ["名单", "名单代码", "机构数"])
    for name, count in sorted(cred.get("listed", {}).items()):
        row += 1
        put(ws, row, 1, LISTS.get(name, name))
        put(ws, row, 2, name)
        put(ws, row, 3, count)
    row += 2
    put(ws, row, 1, "被禁止从业人员数（全市）").font = bold
    put(ws, row, 3, cred.get("barred_practitioners"))
    if cred.get("listings"):
        row = section(ws, row + 2, "名单明细")
        header(ws, row, ["名单", "机构", "区", "列入时间", "期限届满"])
        for li in cred["listings"]:
            row += 1
            put(ws, row, 1, LISTS.get(li["list_name"], li["list_name"]))
            put(ws, row, 2, li.get("name"))
            put(ws, row, 3, li.get("district"))
            put(ws, row, 4, li.get("listed_at"))
            put(ws, row, 5, li.get("term_end"))
    widths(ws, [26, 24, 12, 26, 12])

    out = BytesIO()
    wb.save(out)
    return out.getvalue()


# ---- PDF -------------------------------------------------------------------------------------
FONT = "STSong-Light"


def _font() -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return FONT


def _percent_axes(chart: Any, top: float, categories: list[str], angle: int) -> None:
    """A chart's axes: 0 to ``top`` percent on the value axis, the categories slanted."""
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = top
    chart.valueAxis.valueStep = 20 if top <= 100 else None
    chart.valueAxis.labels.fontName = FONT
    chart.valueAxis.labelTextFormat = "%d%%"
    chart.categoryAxis.categoryNames = categories
    chart.categoryAxis.labels.fontName = FONT
    chart.categoryAxis.labels.fontSize = 7
    chart.categoryAxis.labels.angle = angle
    chart.categoryAxis.labels.boxAnchor = "ne"


def _legend(x: float, y: float, deltax: float, pairs: list[tuple[Any, str]]) -> Any:
    """A one-row legend at the drawing's top right."""
    from reportlab.graphics.charts.legends import Legend

    legend = Legend()
    legend.x, legend.y = x, y
    legend.fontName, legend.fontSize = FONT, 8
    legend.alignment = "right"
    legend.columnMaximum = 1
    legend.dx = legend.dy = 8
    legend.deltax = deltax
    legend.colorNamePairs = pairs
    return legend


def _bar_chart(report: Mapping[str, Any]) -> Any:
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors

    rates = _rates(report)
    values = [_pct(r["value"]) for r in rates]
    targets = [_pct((r["target"] or {}).get("value")) for r in rates]
    top = max([100.0, *[v for v in values + targets if v is not None]])
    drawing = Drawing(480, 250)
    drawing.add(String(240, 236, "比率指标：本期值与目标（%）", fontName=FONT, fontSize=10,
                       textAnchor="middle"))
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 45, 70, 420, 150
    chart.data = [values, targets]
    _percent_axes(chart, top, [r["name"] for r in rates], 25)
    chart.categoryAxis.labels.dy = -2
    chart.bars[0].fillColor = colors.HexColor("#2F6EBA")
    chart.bars[1].fillColor = colors.HexColor("#C9C9C9")
    chart.barLabels.fontName = FONT
    chart.barLabels.fontSize = 6
    chart.barLabels.nudge = 6
    chart.barLabelFormat = "%.2f"
    drawing.add(chart)
    drawing.add(_legend(360, 248, 50, [(chart.bars[0].fillColor, "本期值"),
                                       (chart.bars[1].fillColor, "目标")]))
    return drawing


def _line_chart(report: Mapping[str, Any]) -> Any:
    from reportlab.graphics.charts.linecharts import HorizontalLineChart
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.graphics.widgets.markers import makeMarker
    from reportlab.lib import colors

    points = report["series"]
    names = {i.code: i.name for i in ind.INDICATORS}
    data = [[_pct(p.get(code)) for p in points] for code in TREND_CODES]
    top = max([100.0, *[v for s in data for v in s if v is not None]])
    drawing = Drawing(480, 220)
    drawing.add(String(240, 206, "月度趋势：" + "、".join(names[c] for c in TREND_CODES) + "（%）",
                       fontName=FONT, fontSize=10, textAnchor="middle"))
    chart = HorizontalLineChart()
    chart.x, chart.y, chart.width, chart.height = 45, 40, 420, 145
    chart.data = data
    chart.joinedLines = 0  # per line below: a line of fewer than 2 points is markers only
    _percent_axes(chart, top, [p["month"] for p in points], 30)
    palette = [colors.HexColor("#2F6EBA"), colors.HexColor("#E07B39")]
    for n, color in enumerate(palette):
        chart.lines[n].strokeColor = color
        chart.lines[n].strokeWidth = 1.5
        chart.lines[n].symbol = makeMarker("FilledCircle", size=3, fillColor=color)
        known = sum(v is not None for v in data[n])
        chart.lines[n].lineStyle = "joinedLine" if known >= 2 else "line"
    drawing.add(chart)
    drawing.add(_legend(350, 218, 70, [(palette[n], names[c])
                                       for n, c in enumerate(TREND_CODES)]))
    return drawing


def report_pdf(report: Mapping[str, Any]) -> bytes:
    """The report as a PDF (A4): the indicators against target and the quarter before, a bar
    chart of the rates against their targets, the monthly trend of 备案率 and 普惠托育率, the
    districts, subsidy, inspection and credit summaries, and the definitions; a footer on
    every page with the as-of day."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    font = _font()
    title_style = ParagraphStyle("title", fontName=font, fontSize=16, leading=22,
                                 alignment=1, spaceAfter=4)
    sub = ParagraphStyle("sub", fontName=font, fontSize=9, leading=13, alignment=1,
                         textColor=colors.HexColor("#444444"), wordWrap="CJK")
    h2 = ParagraphStyle("h2", fontName=font, fontSize=12, leading=16, spaceBefore=10,
                        spaceAfter=4)
    body = ParagraphStyle("body", fontName=font, fontSize=9, leading=13, wordWrap="CJK")
    cell = ParagraphStyle("cell", fontName=font, fontSize=8, leading=10, wordWrap="CJK")
    head = ParagraphStyle("head", parent=cell, textColor=colors.white)

    def table(rows: list[list[Any]], widths: Sequence[float] | None = None,
              total: bool = False) -> Table:
        wrapped = [[Paragraph(_escape(c), head if n == 0 else cell) if isinstance(c, str)
                    else c for c in r] for n, r in enumerate(rows)]
        t = Table(wrapped, colWidths=widths, repeatRows=1, hAlign="LEFT")
        style = [("FONTNAME", (0, 0), (-1, -1), font), ("FONTSIZE", (0, 0), (-1, -1), 8),
                 ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#2F6EBA")),
                 ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#999999")),
                 ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                 ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#F2F6FB")])]
        if total and len(rows) > 1:
            style.append(("BACKGROUND", (0, -1), (-1, -1), colors.HexColor("#DDEBF7")))
        t.setStyle(TableStyle(style))
        return t

    def empty(what: str) -> Paragraph:
        return Paragraph(f"（本期无{what}）", body)

    story: list[Any] = [
        Paragraph(_escape(report["title"]), title_style),
        Paragraph(_escape(f"统计期间 {report['period']['start']} 至 {report['period']['end']}"
                          f"　数据截至 {report['as_of']}　上期末 {report['previous_as_of']}"
                          + ("" if report["complete"] else "　（本季度尚未结束）")), sub),
        Spacer(1, 6),
        Paragraph("一、主要指标", h2),
    ]
    rows: list[list[Any]] = [["指标", "本期值", "目标", "上期末", "变化"]]
    rows += [[r["name"], r["display"], r["target_display"], r["previous_display"],
              r["change_display"]] for r in report["indicators"]]
    story += [table(rows, [58 * mm, 28 * mm, 28 * mm, 28 * mm, 34 * mm]), Spacer(1, 8),
              _bar_chart(report)]
    if report["series"]:
        story += [Spacer(1, 6), _line_chart(report)]

    story.append(Paragraph("二、各区主要指标", h2))
    if report["districts"]:
        rows = [["区", *[i.name for i in ind.INDICATORS]]]
        areas = [(d["district"], d) for d in report["districts"]]
        areas.append(("合计", report["total"]))
        rows += [[name, *[(a["indicators"].get(i.code) or {}).get("display", "—")
                          for i in ind.INDICATORS]] for name, a in areas]
        story.append(table(rows, [20 * mm, *[17 * mm] * len(ind.INDICATORS)], total=True))
    else:
        story.append(empty("分区数据"))

    subsidy = report["subsidy"]
    story.append(Paragraph("三、补贴资金（元）", h2))
    if subsidy.get("budgets"):
        rows = [["年度", "资金来源", "已下达", "已预留", "已拨付", "拨付率"]]
        rows += [[str(b["year"]), FUNDS.get(b["fund"], b["fund"]), yuan(b["allocated_fen"]),
                  yuan(b["reserved_fen"]), yuan(b["paid_fen"]),
                  (b.get("paid_share") or {}).get("display", "—")]
                 for b in subsidy["budgets"]]
        totals = subsidy.get("totals", {})
        rows.append(["合计", "", yuan(totals.get("allocated_fen", 0)),
                     yuan(totals.get("reserved_fen", 0)), yuan(totals.get("paid_fen", 0)),
                     ind.figure(totals.get("paid_fen", 0), totals.get("allocated_fen", 0),
                                "percent")["display"]])
        story.append(table(rows, [16 * mm, 34 * mm, 32 * mm, 32 * mm, 32 * mm, 20 * mm],
                           total=True))
    else:
        story.append(empty("预算"))
    if subsidy.get("programs"):
        rows = [["年度", "项目", "资金来源", "已预留", "已拨付", "已拨付申请数"]]
        rows += [[str(p["year"]), p["program"], FUNDS.get(p["fund"], p["fund"]),
                  yuan(p["reserved_fen"]), yuan(p["paid_fen"]),
                  str(p.get("paid_applications", "—"))] for p in subsidy["programs"]]
        story += [Spacer(1, 4),
                  table(rows, [16 * mm, 40 * mm, 30 * mm, 30 * mm, 30 * mm, 24 * mm])]

    insp = report["inspection"]
    visits = insp.get("visits", {})
    rect = insp.get("rectification", {})
    on_time = rect.get("on_time_rate") or ind.figure(None, None, "percent")
    story.append(Paragraph("四、监督检查", h2))
    rows = [["项目", "数值"],
            ["计划检查数", str(visits.get("target", 0))],
            ["已完成检查数", str(visits.get("done", 0))],
            ["检查完成率", (visits.get("progress") or {}).get("display", "—")],
            ["按时整改率", on_time["display"]
             + (f"（{on_time['numerator']}/{on_time['denominator']}）"
                if on_time["value"] is not None else "")],
            ["逾期未整改数", str(rect.get("overdue", 0))],
            ["未整改数", str(rect.get("open", 0))]]
    story.append(table(rows, [50 * mm, 50 * mm]))
    if insp.get("plans"):
        rows = [["计划", "区", "期间", "目标数", "已完成", "完成率"]]
        rows += [[p["title"], p.get("district") or "全市", str(p["period"]),
                  str(p["target_count"]), str(p["done"]),
                  (p.get("progress") or {}).get("display", "—")] for p in insp["plans"]]
        story += [Spacer(1, 4),
                  table(rows, [56 * mm, 22 * mm, 24 * mm, 20 * mm, 20 * mm, 22 * mm])]
    if insp.get("findings"):
        rows = [["检查领域", "严重程度", "问题数"]]
        rows += [[f.get("title") or f["area"], SEVERITIES.get(f["severity"], f["severity"]),
                  str(f["findings"])] for f in insp["findings"]]
        story += [Spacer(1, 4), table(rows, [80 * mm, 30 * mm, 24 * mm])]

    cred = report["credit"]
    story.append(Paragraph("五、信用监管", h2))
    rows = [["信用等级", "机构数"]]
    rows += [[_grade_name(g["grade"]), str(g["institutions"])] for g in cred.get("grades", [])]
    story.append(table(rows, [50 * mm, 30 * mm]) if len(rows) > 1 else empty("信用等级数据"))
    rows = [["名单", "机构数"]]
    rows += [[LISTS.get(k, k), str(v)] for k, v in sorted(cred.get("listed", {}).items())]
    rows.append(["被禁止从业人员数（全市）", str(cred.get("barred_practitioners", 0))])
    story += [Spacer(1, 4), table(rows, [50 * mm, 30 * mm])]

    story.append(Paragraph("六、指标定义", h2))
    rows = [["指标", "定义", "目标及依据"]]
    rows += [[r["name"], r["definition"],
              r["target_display"] + (f"（{r['target']['source']}）"
                                     if r["target"] and r["target"].get("source") else "")]
             for r in report["indicators"]]
    story.append(table(rows, [30 * mm, 80 * mm, 66 * mm]))
    story += [Spacer(1, 6), Paragraph(_escape(_footer(report)), body)]

    footer = f"{report['title']}　数据截至 {report['as_of']}　指标口径见“指标定义”"

    def on_page(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(font, 7)
        canvas.setFillColor(colors.HexColor("#666666"))
        canvas.drawString(doc.leftMargin, 10 * mm, footer)
        canvas.drawRightString(A4[0] - doc.rightMargin, 10 * mm, f"第 {doc.page} 页")
        canvas.restoreState()

    out = BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=16 * mm, rightMargin=16 * mm,
                            topMargin=16 * mm, bottomMargin=18 * mm, title=report["title"],
                            author="托育服务综合监管平台", subject=report["quarter"])
    doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return out.getvalue()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
