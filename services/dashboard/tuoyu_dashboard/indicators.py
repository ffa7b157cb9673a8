"""The indicators the seeds judge a district by (备案率, 每千人口托位数, 入托率, 托位使用率,
普惠托育率, street coverage, places per community, 持证率, 健康管理率), by district and street,
today or as of any past day, with their monthly series and the institutions behind each
figure; and the subsidy, inspection and credit figures beside them.

**As of a day.** A day is a day in China (Asia/Shanghai): as of 2026-06-30 means after every
event recorded before 2026-07-01 00:00 +08:00. The history rows of
:mod:`tuoyu_dashboard.projections` valid at that instant are counted; the reference data in
force is the latest loaded for the latest year up to the day's year
(:mod:`tuoyu_dashboard.reference`).

**Precision.** Every figure is a ratio of two integers, kept exact (``numerator``,
``denominator``); ``value`` is that ratio as a number (a rate as a fraction, 0.5 for 50%) and
``display`` it rounded half up to 2 decimals (rates in percent).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tuoyu_shared.calendar_cn import SHANGHAI

TARGETS_VAR = "TUOYU_DASHBOARD_TARGETS_FILE"


@dataclass(frozen=True)
class Indicator:
    code: str
    name: str  # the seeds' term
    definition: str  # written on the page and in the API
    numerator: str  # what is counted (a column of the area's counts)
    denominator: str
    unit: str  # "percent" or "number"
    scale: int = 1  # places per 1,000 residents: 1000
    street_level: bool = True  # street coverage is a district's figure only

    def figure(self, counts: dict[str, int | None]) -> dict[str, Any]:
        num, den = counts.get(self.numerator), counts.get(self.denominator)
        return figure(None if num is None else num * self.scale, den, self.unit)


INDICATORS: tuple[Indicator, ...] = (
    Indicator("filing_rate", "备案率",
              "已备案机构数 ÷ 已登记且未注销的机构数（停业整顿中的机构仍属已备案）",
              "filed", "registered", "percent"),
    Indicator("places_per_1000", "每千人口托位数",
              "已备案机构的托位数 ÷ 常住人口 × 1000", "places", "population", "number",
              scale=1000),
    Indicator("enrolment_rate", "入托率",
              "在托婴幼儿数（各已备案机构最近一期月度报告）÷ 3岁以下婴幼儿数",
              "enrolled", "under_three", "percent"),
    Indicator("utilisation", "托位使用率",
              "在托婴幼儿数（各已备案机构最近一期月度报告）÷ 已备案机构的托位数",
              "enrolled", "places", "percent"),
    Indicator("affordable_share", "普惠托育率",
              "普惠托育机构的托位数 ÷ 已备案机构的托位数", "affordable_places", "places",
              "percent"),
    Indicator("affordable_street_coverage", "普惠托育街道覆盖率",
              "有普惠托育服务（至少一家已备案的普惠机构）的街道数 ÷ 街道总数",
              "streets_with_affordable", "streets", "percent", street_level=False),
    Indicator("places_per_community", "社区平均托位数",
              "已备案机构的托位数 ÷ 社区数", "places", "communities", "number"),
    Indicator("certified_rate", "持证率",
              "在岗人员名册中持有资格证书的人数 ÷ 名册在岗总人数（未注销机构）",
              "certified_staff", "staff", "percent"),
    Indicator("health_management_rate", "健康管理率",
              "在托婴幼儿中建立健康档案并完成年度体检的人数 ÷ 在托婴幼儿数（各已备案机构"
              "最近一期月度报告；报告中未填健康管理人数的，其在托婴幼儿不计入）",
              "health_managed", "health_reported", "percent"),
)
BY_CODE = {i.code: i for i in INDICATORS}


def figure(num: int | None, den: int | None, unit: str) -> dict[str, Any]:
    """A ratio kept exact, its value (``num / den`` of Python's integers: the nearest float to
    the exact ratio), and its display rounded half up to 2 decimals, in integers."""
    if num is None or den is None or den == 0:
        return {"numerator": num, "denominator": den, "value": None, "display": "—"}
    scaled = num * (10000 if unit == "percent" else 100)
    sign = "-" if (scaled < 0) != (den < 0) and scaled else ""
    hundredths = (2 * abs(scaled) + abs(den)) // (2 * abs(den))
    shown = f"{sign}{hundredths // 100}.{hundredths % 100:02d}"
    return {"numerator": num, "denominator": den, "value": num / den,
            "display": f"{shown}%" if unit == "percent" else shown}


_TARGETS: dict[tuple[str, float], dict[str, dict[str, Any]]] = {}


def targets() -> dict[str, dict[str, Any]]:
    """Targets by indicator (``value``: a fraction for rates; ``source``), from
    ``targets.json`` beside this module or the file ``TUOYU_DASHBOARD_TARGETS_FILE`` names
    (read again when it changes)."""
    path = os.environ.get(TARGETS_VAR) or str(Path(__file__).with_name("targets.json"))
    key = (path, os.stat(path).st_mtime)
    if key not in _TARGETS:
        with open(path, encoding="utf-8") as f:
            _TARGETS.clear()
            _TARGETS[key] = json.load(f)["targets"]
    return _TARGETS[key]


def definitions() -> list[dict[str, Any]]:
    found = targets()
    return [{"code": i.code, "name": i.name, "definition": i.definition, "unit": i.unit,
             "target": found.get(i.code)} for i in INDICATORS]


# ---- time ------------------------------------------------------------------------------------
def today() -> dt.date:
    return dt.datetime.now(SHANGHAI).date()


def cutoff(day: dt.date | dt.datetime) -> dt.datetime:
    """The first instant after the day (in China), UTC: events before it are counted. An
    instant (a datetime: an auditor's "as of 10:42") is its own cutoff."""
    if isinstance(day, dt.datetime):
        return day.astimezone(dt.UTC)
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), SHANGHAI).astimezone(
        dt.UTC)


def day_of(as_of: dt.date | dt.datetime | None) -> dt.date:
    """The day (in China) an as-of names."""
    if as_of is None:
        return today()
    if isinstance(as_of, dt.datetime):
        return as_of.astimezone(SHANGHAI).date()
    return as_of


def as_of_json(as_of: dt.date | dt.datetime | None) -> str:
    if isinstance(as_of, dt.datetime):
        return as_of.astimezone(SHANGHAI).isoformat()
    return day_of(as_of).isoformat()


def month_ends(last: dt.date, months: int) -> list[dt.date]:
    """The last day of each of ``months`` months up to ``last``'s (``last`` itself for its
    own month), oldest first."""
    days = [last]
    first = last.replace(day=1)
    for _ in range(months - 1):
        first = (first - dt.timedelta(days=1)).replace(day=1)
        nxt = (first + dt.timedelta(days=32)).replace(day=1)
        days.append(nxt - dt.timedelta(days=1))
    return sorted(days)


def _institutions(alias: str, at: dt.datetime | None) -> tuple[str, list[Any]]:
    """The institutions' states at ``at`` (None: now), as a table for a FROM clause: the
    current rows (also for an instant to come), or each institution's latest history row
    recorded before the instant."""
    if at is None or at > dt.datetime.now(dt.UTC):
        return f"dash_institution_now {alias}", []
    return ("(SELECT DISTINCT ON (institution_id) * FROM dash_institution_history "
            "WHERE valid_from < %s::timestamptz ORDER BY institution_id, revision DESC) "
            f"{alias}", [at])


def _valid(alias: str, at: dt.datetime | None) -> tuple[str, list[Any]]:
    """The condition that a credit history row is the state at ``at`` (None: now)."""
    if at is None:
        return f"{alias}.valid_to IS NULL", []
    return (f"{alias}.valid_from < %s::timestamptz AND ({alias}.valid_to IS NULL "
            f"OR {alias}.valid_to >= %s::timestamptz)", [at, at])


# ---- reference data --------------------------------------------------------------------------
def reference_in_force(cur: psycopg.Cursor, day: dt.date,
                       district: str | None) -> tuple[dict[str, Any] | None, list[dict]]:
    cur.execute("SELECT version_id, year, loaded_at, loaded_by, sha256, row_count "
                "FROM dash_reference_versions WHERE year <= %s "
                "ORDER BY year DESC, version_id DESC LIMIT 1", (day.year,))
    version = cur.fetchone()
    if version is None:
        return None, []
    cur.execute("SELECT district, street, population, under_three, communities "
                "FROM dash_reference_rows WHERE version_id = %s "
                "AND (%s::text IS NULL OR district = %s) ORDER BY district, street",
                (version["version_id"], district, district))
    return version, cur.fetchall()


# ---- the area counts -------------------------------------------------------------------------
_COUNTS = """
SELECT {key}h.district, h.street,
  count(*) FILTER (WHERE h.status <> 'deregistered') AS registered,
  count(*) FILTER (WHERE h.status IN ('filed', 'suspended')) AS filed,
  coalesce(sum(h.places) FILTER (WHERE h.status IN ('filed', 'suspended')), 0) AS places,
  coalesce(sum(h.places) FILTER (WHERE h.status IN ('filed', 'suspended') AND h.affordable), 0)
    AS affordable_places,
  count(*) FILTER (WHERE h.status IN ('filed', 'suspended') AND h.affordable)
    AS affordable_institutions,
  coalesce(sum(h.enrolled) FILTER (WHERE h.status IN ('filed', 'suspended')), 0) AS enrolled,
  coalesce(sum(h.health_managed) FILTER (WHERE h.status IN ('filed', 'suspended')), 0)
    AS health_managed,
  coalesce(sum(h.health_reported) FILTER (WHERE h.status IN ('filed', 'suspended')), 0)
    AS health_reported,
  coalesce(sum(h.staff) FILTER (WHERE h.status <> 'deregistered'), 0) AS staff,
  coalesce(sum(h.certified_staff) FILTER (WHERE h.status <> 'deregistered'), 0)
    AS certified_staff
FROM {source} WHERE (%s::text IS NULL OR h.district = %s)
GROUP BY {key}h.district, h.street
"""
COUNT_NAMES = ("registered", "filed", "places", "affordable_places", "affordable_institutions",
               "enrolled", "health_managed", "health_reported", "staff", "certified_staff")
REFERENCE_NAMES = ("population", "under_three", "communities")


def _street_counts(cur: psycopg.Cursor, at: dt.datetime | None,
                   district: str | None) -> list[dict]:
    """The counts by street now (``at`` None, or an instant to come: the current rows), or
    at a past instant: kept once computed (``dash_area_snapshots``)."""
    if at is not None and at > dt.datetime.now(dt.UTC):
        at = None
    if at is None:
        source, params = _institutions("h", None)
        cur.execute(_COUNTS.format(key="", source=source), (*params, district, district))
        return cur.fetchall()
    rows = _kept_counts_of(cur, [at], district).get(at)
    if rows is not None:
        return rows
    source, params = _institutions("h", at)
    if at.astimezone(SHANGHAI).timetz().replace(tzinfo=None) != dt.time(0):
        # an instant within a day (an auditor's "as of 10:42"): computed, not kept, so that
        # readers cannot fill the store with instants
        cur.execute(_COUNTS.format(key="", source=source), (*params, district, district))
        return cur.fetchall()
    with cur.connection.transaction():
        # No event is applied while a day's counts are computed and kept (the projector's
        # statements that forget kept instants take ROW EXCLUSIVE, which this lock excludes;
        # it also excludes another computation, which would otherwise deadlock with this one
        # on their inserts), so what is kept is what the history says at that instant.
        cur.execute("LOCK TABLE dash_snapshot_instants IN SHARE ROW EXCLUSIVE MODE")
        rows = _kept_counts_of(cur, [at], district).get(at)
        if rows is not None:
            return rows
        cur.execute(_COUNTS.format(key="", source=source), (*params, None, None))
        every = cur.fetchall()
        cur.execute("INSERT INTO dash_snapshot_instants (at) VALUES (%s) ON CONFLICT DO NOTHING",
                    (at,))
        cur.executemany(
            f"INSERT INTO dash_area_snapshots (at, district, street, {', '.join(COUNT_NAMES)}) "
            f"VALUES (%s, %s, %s{', %s' * len(COUNT_NAMES)}) ON CONFLICT DO NOTHING",
            [(at, r["district"], r["street"], *(r[n] for n in COUNT_NAMES)) for r in every])
    return [r for r in every if district is None or r["district"] == district]


def _kept_counts_of(cur: psycopg.Cursor, instants: list[dt.datetime],
                    district: str | None) -> dict[dt.datetime, list[dict]]:
    """The kept counts of those instants that are kept, in one query."""
    cur.execute("SELECT i.at, s.district, s.street, "
                + ", ".join(f"s.{n}" for n in COUNT_NAMES) +
                " FROM dash_snapshot_instants i LEFT JOIN dash_area_snapshots s ON s.at = i.at "
                "AND (%s::text IS NULL OR s.district = %s) WHERE i.at = ANY(%s)",
                (district, district, instants))
    found: dict[dt.datetime, list[dict]] = {}
    for row in cur.fetchall():
        rows = found.setdefault(row.pop("at"), [])
        if row["district"] is not None:
            rows.append(row)
    return found


def _areas(streets: Iterable[dict], reference: Sequence[dict]) -> dict[str, Any]:
    """Counts by street joined with the reference data; summed by district and in all."""
    by_street: dict[tuple[str, str], dict[str, Any]] = {}
    for row in reference:
        key = (row["district"], row["street"])
        by_street[key] = {**dict.fromkeys(COUNT_NAMES, 0),
                          **{n: row[n] for n in REFERENCE_NAMES}, "in_reference": True}
    for row in streets:
        key = (row["district"], row["street"])
        entry = by_street.setdefault(key, {**dict.fromkeys(COUNT_NAMES, 0),
                                           **dict.fromkeys(REFERENCE_NAMES, None),
                                           "in_reference": False})
        for n in COUNT_NAMES:
            entry[n] = int(row[n])
    have_reference = bool(reference)
    for entry in by_street.values():
        entry["streets"] = 1 if entry["in_reference"] else 0
        entry["streets_with_affordable"] = (1 if entry["in_reference"]
                                            and entry["affordable_institutions"] else 0)

    def total(entries: list[dict]) -> dict[str, Any]:
        summed: dict[str, Any] = {n: sum(e[n] for e in entries) for n in COUNT_NAMES}
        for n in (*REFERENCE_NAMES, "streets", "streets_with_affordable"):
            summed[n] = sum(e[n] or 0 for e in entries) if have_reference else None
        return summed

    districts: dict[str, list[dict]] = {}
    for (district, _), entry in by_street.items():
        districts.setdefault(district, []).append(entry)
    return {"total": total(list(by_street.values())),
            "districts": {d: total(es) for d, es in sorted(districts.items())},
            "streets": dict(sorted(by_street.items()))}


def _with_figures(counts: dict[str, Any], street: bool = False) -> dict[str, Any]:
    figures = {i.code: i.figure(counts) for i in INDICATORS if i.street_level or not street}
    return {"counts": {k: v for k, v in counts.items() if k != "in_reference"},
            "indicators": figures}


def indicators(conn: psycopg.Connection, as_of: dt.date | dt.datetime | None = None,
               district: str | None = None, streets: bool | None = None) -> dict[str, Any]:
    """Every indicator in all (the caller's scope), by district and, for one district (or
    when ``streets`` asks), by street."""
    day = day_of(as_of)
    at = cutoff(as_of) if as_of is not None else None
    with conn.cursor(row_factory=dict_row) as cur:
        version, reference = reference_in_force(cur, day, district)
        areas = _areas(_street_counts(cur, at, district), reference)
    return {
        "as_of": as_of_json(as_of), "now": as_of is None, "district": district,
        "reference": _version_json(version),
        "definitions": definitions(),
        "total": _with_figures(areas["total"]),
        "districts": [{"district": d, **_with_figures(c)}
                      for d, c in areas["districts"].items()],
        "streets": [{"district": d, "street": s, "in_reference": c["in_reference"],
                     **_with_figures(c, street=True)}
                    for (d, s), c in areas["streets"].items()]
        if streets or (streets is None and district is not None) else None,
    }


def _version_json(version: dict | None) -> dict | None:
    if version is None:
        return None
    return {"version_id": version["version_id"], "year": version["year"],
            "loaded_at": version["loaded_at"].isoformat(), "loaded_by": version["loaded_by"],
            "sha256": version["sha256"], "rows": version["row_count"]}


def series(conn: psycopg.Connection, as_of: dt.date | dt.datetime | None = None, months: int = 12,
           district: str | None = None) -> dict[str, Any]:
    """Each indicator at the end of each month (the last one: as of the day), in all and by
    district (each past month end's counts kept once computed)."""
    last = day_of(as_of)
    days = month_ends(last, months)
    instants = [cutoff(d) for d in days]
    if isinstance(as_of, dt.datetime):
        instants[-1] = cutoff(as_of)
    if as_of is None:
        instants[-1] = None  # now
    with conn.cursor(row_factory=dict_row) as cur:
        by_instant = _kept_counts_of(cur, [at for at in instants if at is not None], district)
        for at in instants:  # now, and instants not kept yet
            if at not in by_instant:
                by_instant[at] = _street_counts(cur, at, district)
        points = []
        reference_cache: dict[int, tuple] = {}
        for day, at in zip(days, instants, strict=True):
            if day.year not in reference_cache:
                reference_cache[day.year] = reference_in_force(cur, day, district)
            version, reference = reference_cache[day.year]
            areas = _areas(by_instant.get(at, []), reference)
            points.append({
                "as_of": day.isoformat(), "reference_year": version and version["year"],
                "total": _with_figures(areas["total"])["indicators"],
                "districts": {d: _with_figures(c)["indicators"]
                              for d, c in areas["districts"].items()}})
    return {"months": [d.isoformat()[:7] for d in days], "district": district,
            "definitions": definitions(), "points": points}


# ---- drill-down ------------------------------------------------------------------------------
def institutions_behind(conn: psycopg.Connection, code: str,
                        as_of: dt.date | dt.datetime | None = None,
                        district: str | None = None, street: str | None = None,
                        limit: int = 500) -> dict[str, Any]:
    """The institutions an indicator counts (in its numerator, its denominator or both), as
    of the day, each with its figures and the event behind its state."""
    indicator = BY_CODE[code]
    at = cutoff(as_of) if as_of is not None else None
    source, params = _institutions("h", at)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT h.institution_id::text, h.name, h.district, h.street, h.status, h.places, "
            "h.affordable, h.report_month, h.enrolled, h.health_managed, h.health_reported, "
            "h.staff, "
            "h.certified_staff, h.valid_from, h.notification_id, h.event_id, h.event_type "
            f"FROM {source} WHERE h.status <> 'deregistered' "
            "AND (%s::text IS NULL OR h.district = %s) AND (%s::text IS NULL OR h.street = %s) "
            "ORDER BY h.district, h.street, h.name, h.institution_id LIMIT %s",
            (*params, district, district, street, street, limit))
        rows = cur.fetchall()
    found = []
    for row in rows:
        filed = row["status"] in ("filed", "suspended")
        parts = {
            "registered": 1, "filed": int(filed), "places": row["places"] if filed else 0,
            "affordable_places": row["places"] if filed and row["affordable"] else 0,
            "enrolled": row["enrolled"] if filed else 0,
            "health_managed": row["health_managed"] if filed else 0,
            "health_reported": row["health_reported"] if filed else 0,
            "staff": row["staff"], "certified_staff": row["certified_staff"],
            "streets_with_affordable": int(filed and row["affordable"]),
        }
        numerator = parts.get(indicator.numerator)
        denominator = parts.get(indicator.denominator)
        if not numerator and not denominator:
            continue
        found.append({
            "institution_id": row["institution_id"], "name": row["name"],
            "district": row["district"], "street": row["street"], "status": row["status"],
            "affordable": row["affordable"], "report_month": row["report_month"],
            "numerator": numerator, "denominator": denominator,
            "state_since": row["valid_from"].isoformat(),
            "event": {"type": row["event_type"], "event_id": row["event_id"],
                      "notification_id": row["notification_id"], "source": "registration"}})
    return {"indicator": code, "name": indicator.name, "definition": indicator.definition,
            "as_of": as_of_json(as_of), "district": district, "street": street,
            "institutions": found, "count": len(found),
            "numerator_total": sum(f["numerator"] or 0 for f in found),
            "denominator_total": (sum(f["denominator"] or 0 for f in found)
                                  if indicator.denominator in COUNT_NAMES else None)}


def institution_history(conn: psycopg.Connection, institution_id: str) -> list[dict]:
    """Every state of one institution the dashboard holds, each with the event that made it."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT valid_from, lead(valid_from) OVER (ORDER BY revision) AS valid_to, revision, "
            "name, district, street, status, places, affordable, "
            "report_month, enrolled, health_managed, health_reported, staff, certified_staff, "
            "notification_id, "
            "event_id, event_type FROM dash_institution_history WHERE institution_id = %s "
            "ORDER BY revision", (institution_id,))
        rows = cur.fetchall()
    return [{**r, "valid_from": r["valid_from"].isoformat(),
             "valid_to": r["valid_to"] and r["valid_to"].isoformat()} for r in rows]


# ---- subsidy, inspection, credit -------------------------------------------------------------
def subsidy(conn: psycopg.Connection, as_of: dt.date | dt.datetime | None = None,
            district: str | None = None) -> dict[str, Any]:
    """Budgets by year and fund (allocated, reserved, paid, free) and what was paid and
    reserved by program and fund, as of the day; a district's officer sees their district's
    applications' amounts against the (city-wide) budgets."""
    at = cutoff(as_of) if as_of is not None else dt.datetime.now(dt.UTC) + dt.timedelta(
        days=3650)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "WITH e AS (SELECT e.*, a.program, a.district FROM dash_budget_entries e "
            "LEFT JOIN dash_subsidy_applications a USING (application_id) WHERE e.at < %s) "
            "SELECT b.budget_id::text, b.year, b.fund, "
            "(SELECT amount_fen FROM e WHERE e.budget_id = b.budget_id AND kind = 'allocated' "
            " ORDER BY at DESC, notification_id DESC LIMIT 1) AS allocated_fen, "
            "coalesce(sum(CASE e.kind WHEN 'reserved' THEN e.amount_fen WHEN 'released' "
            " THEN -e.amount_fen WHEN 'committed' THEN -e.amount_fen END) FILTER (WHERE "
            " %s::text IS NULL OR e.district = %s), 0) AS reserved_fen, "
            "coalesce(sum(CASE e.kind WHEN 'committed' THEN e.amount_fen WHEN 'returned' "
            " THEN -e.amount_fen END) FILTER (WHERE %s::text IS NULL OR e.district = %s), 0) "
            " AS paid_fen "
            "FROM dash_budgets b LEFT JOIN e ON e.budget_id = b.budget_id "
            "WHERE b.opened_at < %s GROUP BY b.budget_id ORDER BY b.year, b.fund",
            (at, district, district, district, district, at))
        budgets = cur.fetchall()
        cur.execute(
            "SELECT a.program, b.fund, b.year, "
            "coalesce(sum(CASE e.kind WHEN 'reserved' THEN e.amount_fen WHEN 'released' "
            " THEN -e.amount_fen WHEN 'committed' THEN -e.amount_fen END), 0) AS reserved_fen, "
            "coalesce(sum(CASE e.kind WHEN 'committed' THEN e.amount_fen WHEN 'returned' "
            " THEN -e.amount_fen END), 0) AS paid_fen, "
            "count(DISTINCT e.application_id) FILTER (WHERE e.kind = 'committed') "
            " AS paid_applications "
            "FROM dash_budget_entries e JOIN dash_subsidy_applications a USING (application_id) "
            "JOIN dash_budgets b ON b.budget_id = e.budget_id "
            "WHERE e.at < %s AND (%s::text IS NULL OR a.district = %s) "
            "GROUP BY a.program, b.fund, b.year ORDER BY b.year, a.program, b.fund",
            (at, district, district))
        programs = cur.fetchall()
    for b in budgets:
        b["allocated_fen"] = int(b["allocated_fen"] or 0)
        b["reserved_fen"], b["paid_fen"] = int(b["reserved_fen"]), int(b["paid_fen"])
        b["paid_share"] = figure(b["paid_fen"], b["allocated_fen"], "percent")
        b["used_share"] = figure(b["paid_fen"] + b["reserved_fen"], b["allocated_fen"],
                                 "percent")
    for p in programs:
        p["reserved_fen"], p["paid_fen"] = int(p["reserved_fen"]), int(p["paid_fen"])
    return {"as_of": as_of_json(as_of), "district": district,
            "budgets": budgets, "programs": programs,
            "totals": {"allocated_fen": sum(b["allocated_fen"] for b in budgets),
                       "reserved_fen": sum(b["reserved_fen"] for b in budgets),
                       "paid_fen": sum(b["paid_fen"] for b in budgets)}}


def inspection(conn: psycopg.Connection, as_of: dt.date | dt.datetime | None = None,
               district: str | None = None) -> dict[str, Any]:
    """Visits done against plan, findings by checklist area and severity, the on-time
    rectification rate (orders corrected by their deadline ÷ orders whose deadline has passed
    or that were corrected) and the orders overdue, as of the day."""
    day = day_of(as_of)
    at = cutoff(as_of) if as_of is not None else dt.datetime.now(dt.UTC) + dt.timedelta(
        days=3650)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT p.plan_id::text, p.title, p.district, p.period, p.target_count, "
            "count(v.visit_id) FILTER (WHERE v.scheduled_at < %s) AS scheduled, "
            "count(v.visit_id) FILTER (WHERE v.concluded_at < %s OR v.refused_at < %s) AS done "
            "FROM dash_plans p LEFT JOIN dash_visits v ON v.plan_id = p.plan_id "
            "WHERE p.created_at < %s AND (%s::text IS NULL OR p.district = %s) "
            "GROUP BY p.plan_id ORDER BY p.period, p.title",
            (at, at, at, at, district, district))
        plans = cur.fetchall()
        for p in plans:
            p["progress"] = figure(p["done"], p["target_count"], "percent")
        cur.execute(
            "SELECT f.area, coalesce(a.title, f.area) AS title, f.severity, count(*) AS findings "
            "FROM dash_findings f LEFT JOIN dash_checklist_areas a USING (area) "
            "WHERE f.recorded_at < %s AND (%s::text IS NULL OR f.district = %s) "
            "GROUP BY f.area, a.title, f.severity ORDER BY f.area, f.severity",
            (at, district, district))
        findings = cur.fetchall()
        cur.execute(
            "SELECT count(*) FILTER (WHERE corrected_at < %(at)s AND corrected_on <= due_on) "
            " AS on_time, "
            "count(*) FILTER (WHERE corrected_at < %(at)s OR due_on < %(day)s) AS due, "
            "count(*) FILTER (WHERE due_on < %(day)s AND NOT coalesce(corrected_at < %(at)s, "
            " false)) AS overdue, "
            "count(*) FILTER (WHERE NOT coalesce(corrected_at < %(at)s, false)) AS open "
            "FROM dash_rectifications WHERE ordered_at < %(at)s "
            "AND (%(district)s::text IS NULL OR district = %(district)s)",
            {"at": at, "day": day, "district": district})
        orders = cur.fetchone()
        cur.execute(
            "SELECT r.order_id, r.institution_id::text, h.name, r.district, r.severity, "
            "r.due_on, r.event_id FROM dash_rectifications r "
            "LEFT JOIN dash_institution_now h ON h.institution_id = r.institution_id "
            "WHERE r.ordered_at < %(at)s AND r.due_on < %(day)s "
            "AND NOT coalesce(r.corrected_at < %(at)s, false) "
            "AND (%(district)s::text IS NULL OR r.district = %(district)s) "
            "ORDER BY r.due_on, r.order_id LIMIT 200",
            {"at": at, "day": day, "district": district})
        overdue = cur.fetchall()
    for o in overdue:
        o["due_on"] = o["due_on"].isoformat()
    return {"as_of": as_of_json(as_of), "district": district, "plans": plans,
            "visits": {"target": sum(p["target_count"] for p in plans),
                       "done": sum(p["done"] for p in plans),
                       "progress": figure(sum(p["done"] for p in plans),
                                          sum(p["target_count"] for p in plans), "percent")},
            "findings": findings,
            "rectification": {"on_time_rate": figure(orders["on_time"], orders["due"],
                                                     "percent"),
                              "overdue": orders["overdue"], "open": orders["open"]},
            "overdue_orders": overdue}


def credit(conn: psycopg.Connection, as_of: dt.date | dt.datetime | None = None,
           district: str | None = None) -> dict[str, Any]:
    """The grade distribution of institutions not deregistered, the institutions on a list
    and the practitioners barred (city-wide: a ban is a person's), as of the day."""
    day = day_of(as_of)
    at = cutoff(as_of) if as_of is not None else None
    source_h, params_h = _institutions("h", at)
    valid_c, params_c = _valid("c", at)
    far = at or dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT coalesce(c.grade, 'ungraded') AS grade, count(*) AS institutions "
            f"FROM {source_h} LEFT JOIN dash_credit_history c "
            f"ON c.institution_id = h.institution_id AND {valid_c} "
            "WHERE h.status <> 'deregistered' "
            "AND (%s::text IS NULL OR h.district = %s) GROUP BY 1 ORDER BY 1",
            (*params_h, *params_c, district, district))
        grades = cur.fetchall()
        cur.execute(
            "SELECT l.listing_id, l.list_name, l.institution_id::text, h.name, h.district, "
            "l.listed_at, l.term_end, l.event_id FROM dash_listings l "
            f"JOIN {source_h} ON h.institution_id = l.institution_id "
            "WHERE l.listed_at < %s AND (l.ended_at IS NULL OR l.ended_at >= %s) "
            "AND (l.term_end IS NULL OR l.term_end >= %s) "
            "AND (%s::text IS NULL OR h.district = %s) ORDER BY l.list_name, l.listed_at",
            (*params_h, far, far, day, district, district))
        listings = cur.fetchall()
        cur.execute(
            "SELECT count(DISTINCT person_ref) AS barred FROM dash_bans WHERE imposed_at < %s "
            "AND (lifted_at IS NULL OR lifted_at >= %s) AND (ends_on IS NULL OR ends_on > %s)",
            (far, far, day))
        barred = cur.fetchone()["barred"]
    for listing in listings:
        listing["listed_at"] = listing["listed_at"].isoformat()
        listing["term_end"] = listing["term_end"] and listing["term_end"].isoformat()
    by_list: dict[str, int] = {}
    for listing in listings:
        by_list[listing["list_name"]] = by_list.get(listing["list_name"], 0) + 1
    return {"as_of": as_of_json(as_of), "district": district, "grades": grades,
            "listed": by_list, "listings": listings, "barred_practitioners": barred}
