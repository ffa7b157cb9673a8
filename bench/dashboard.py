"""The dashboard's read models: rebuild speed, and each main view through the gateway with
20,000 institutions and a year of monthly reports loaded.

    .venv/bin/python bench/dashboard.py [--quick] [--institutions N] [--requests N]

A registration log of ``N`` institutions (imported filed, with places; one in three 普惠; two
staff each, one certified) and twelve monthly reports each (January to December of last year,
each checked against the catalogue's schema for its type and version, as the relay checks what
it publishes) is written to a table, in notification order, as the relay would read it. Then:

- ``raw_log_read``: the whole log read page by page (500) and decoded into envelopes: the
  baseline, in the same run;
- ``rebuild``: the dashboard's registration view (directory, institutions' history, hires)
  dropped and replayed from that log by its tracked consumer (``View.rebuild``: a page per
  transaction, the position with it): events per second (target 5,000), and its ratio to the
  raw read;
- every service with its worker (``ProcessGroup``, as ``make run``) on the rebuilt database,
  and each main view asked through the gateway ``--requests`` times one after the other:
  p50/p95/p99 ms (target under 50 ms): the indicators now and as of a past day (whole city and
  one district), the 12-month series, a drill-down, the subsidy, inspection and credit figures;
  the first answer of each is reported too (``first_ms``: a past instant's counts are computed
  then, and kept).

Checks: the rebuild applied every event once (position = log head), the indicators' counts
equal what was generated (institutions, places, children enrolled). Results:
``bench-results/dashboard-latest.json`` and ``dashboard-<UTC timestamp>.json``, compared with
the previous latest (a figure over 20% worse is flagged).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import psycopg
from paths import group_of_services, percentile
from psycopg.types.json import Jsonb
from run import Checks, bench_servers, machine_info, save_report

from tuoyu_dashboard.projections import REGISTRATION_VIEW
from tuoyu_dashboard.reference import load_reference
from tuoyu_shared.catalogue import validate_envelope
from tuoyu_shared.config import settings_for
from tuoyu_shared.devrun import SERVICES
from tuoyu_shared.envelope import Envelope
from tuoyu_shared.testing import bearer

VIEW_TARGET_MS = 50
REBUILD_TARGET = 5000
DISTRICTS = [f"第{k + 1}区" for k in range(16)]
STREETS = [f"第{k + 1}街道" for k in range(12)]
LEADER = bearer("health_officer", subject="bench-dashboard")
YEAR = datetime.now(UTC).year - 1


def envelope(n: int, event_type: str, version: int, aggregate: str, aggregate_version: int,
             at: dt.datetime, payload: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": event_type, "schema_version": version,
            "source": "registration", "aggregate_id": aggregate,
            "aggregate_version": aggregate_version, "notification_id": n,
            "occurred_at": at.isoformat(), "actor": "bench", "department": "health",
            "correlation_id": str(uuid.uuid4()), "causation_id": "", "payload": payload,
            "envelope_version": 1}


def generate(institutions: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The log: imports, 普惠 designations, hires, twelve reports per institution."""
    events: list[dict[str, Any]] = []
    totals = {"institutions": institutions, "places": 0, "enrolled": 0}
    start = dt.datetime(YEAR, 1, 2, 1, 0, tzinfo=UTC)

    def add(event_type, version, aggregate, aggregate_version, at, payload):
        events.append(envelope(len(events) + 1, event_type, version, aggregate,
                               aggregate_version, at, payload))

    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-dashboard-{k}")) for k in range(institutions)]
    for k, institution in enumerate(ids):
        at = start + dt.timedelta(seconds=k)
        places = 30 + k % 5 * 10
        totals["places"] += places
        add("InstitutionImported", 1, institution, 1, at, {
            "name": f"托育园{k}", "credit_code": f"9131{k:014d}", "nature": "for_profit",
            "kind": "childcare_institution", "registering_authority": "市场监管局",
            "person_in_charge": {"ref": f"p-{k}"}, "district": DISTRICTS[k % len(DISTRICTS)],
            "street": STREETS[k // len(DISTRICTS) % len(STREETS)], "address": f"路{k}号",
            "filing": {"total_places": places, "classes": [], "service_types": ["full_day"]},
            "receipt": {"receipt_number": f"BA-{k}", "issued_on": f"{YEAR}-01-02"},
            "source": "bench"})
        if k % 3 == 0:
            add("InstitutionAffordableDesignated", 1, institution, 2, at, {
                "guide_price_fen": 250000, "designated_on": f"{YEAR}-01-02", "document": "普惠"})
        for h, certificates in enumerate((["保育师证"], [])):
            hire = f"{institution}-h{h}"
            roster = str(uuid.uuid5(uuid.NAMESPACE_URL, f"roster-{institution}"))
            add("InstitutionPractitionerHireRequested", 2, roster, 2 * h + 1, at, {
                "institution_id": institution, "hire_id": hire,
                "practitioner": {"ref": f"r-{k}-{h}"}, "role": "carer",
                "certificates": certificates, "requested_on": f"{YEAR}-01-02"})
            add("InstitutionPractitionerHired", 2, roster, 2 * h + 2, at, {
                "institution_id": institution, "hire_id": hire,
                "practitioner_ref": f"r-{k}-{h}", "check_reference": hire})
    for month in range(1, 13):
        for k, institution in enumerate(ids):
            at = dt.datetime(YEAR, month, 28, 2, 0, tzinfo=UTC) + dt.timedelta(seconds=k)
            places = 30 + k % 5 * 10
            children = places * (50 + month * 3 + k % 7) // 100
            if month == 12:
                totals["enrolled"] += children
            reports = str(uuid.uuid5(uuid.NAMESPACE_URL, f"reports-{institution}"))
            add("InstitutionEnrolmentReported", 3, reports, month, at, {
                "institution_id": institution, "month": f"{YEAR}-{month:02d}",
                "classes": [{"class_type": "older", "children": children, "carers": 6}],
                "children": children, "second_children": 0, "third_children": 0,
                "health_managed_children": children * 9 // 10})
    return events, totals


def write_log(url: str, events: list[dict[str, Any]], checks: Checks) -> None:
    invalid = 0
    for event in events[:2000] + events[-200:]:  # every type and version: the schemas hold
        try:
            validate_envelope(event)
        except Exception:
            invalid += 1
    checks.equal("generated envelopes that the catalogue refuses", invalid, 0)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE bench_log (notification_id bigint PRIMARY KEY, "
                    "envelope jsonb NOT NULL)")
        with cur.copy("COPY bench_log (notification_id, envelope) FROM STDIN") as copy:
            for event in events:
                copy.write_row((event["notification_id"], Jsonb(event)))


class TableLog:
    """The generated log, read as a relay's RPC ``notifications`` would serve it."""

    def __init__(self, url: str):
        self.conn = psycopg.connect(url, autocommit=True)

    def read(self, start: int, limit: int, stop: int | None = None) -> list[Envelope]:
        rows = self.conn.execute(
            "SELECT envelope FROM bench_log WHERE notification_id >= %s AND "
            "(%s::bigint IS NULL OR notification_id <= %s) ORDER BY notification_id LIMIT %s",
            (start, stop, stop, limit)).fetchall()
        return [Envelope.from_dict(r[0]) for r in rows]

    def head(self) -> int:
        return self.conn.execute("SELECT coalesce(max(notification_id), 0) FROM bench_log"
                                 ).fetchone()[0]


def raw_read(url: str, total: int) -> dict[str, Any]:
    log = TableLog(url)
    started = time.perf_counter()
    count, start = 0, 1
    while True:
        page = log.read(start, 500)
        count += len(page)
        if len(page) < 500:
            break
        start = page[-1].notification_id + 1
    seconds = time.perf_counter() - started
    return {"events": count, "seconds": round(seconds, 3),
            "per_second": round(count / seconds, 1), "expected": total}


def rebuild(url: str, settings: Any) -> dict[str, Any]:
    log = TableLog(url)
    started = time.perf_counter()
    count = REGISTRATION_VIEW.rebuild(settings, log)
    seconds = time.perf_counter() - started
    return {"events": count, "seconds": round(seconds, 3), "per_second": round(count / seconds, 1)}


def get(port: int, path: str) -> tuple[int, Any, float]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("GET", path, headers=LEADER)
    resp = conn.getresponse()
    body = resp.read()
    elapsed = (time.perf_counter() - started) * 1000
    conn.close()
    return resp.status, json.loads(body), elapsed


def views(port: int, requests: int, checks: Checks) -> dict[str, Any]:
    past = f"{YEAR}-06-30"
    district = quote(DISTRICTS[0])
    paths = {
        "indicators_now": "/api/dashboard/indicators",
        "indicators_as_of_past_day": f"/api/dashboard/indicators?as_of={past}",
        "indicators_district_now": f"/api/dashboard/indicators?district={district}",
        "series_12_months": f"/api/dashboard/indicators/series?as_of={YEAR}-12-31",
        "series_12_months_district": f"/api/dashboard/indicators/series?as_of={YEAR}-12-31"
                                     f"&district={district}",
        "drill_down_district": f"/api/dashboard/indicators/utilisation/institutions"
                               f"?district={district}",
        "subsidy": "/api/dashboard/subsidy",
        "inspection": "/api/dashboard/inspection",
        "credit": "/api/dashboard/credit",
    }
    results = {}
    for name, path in paths.items():
        status, _, first = get(port, path)  # the first ask computes a past instant's counts
        checks.equal(f"{name} answers 200", status, 200)
        times = []
        for _ in range(requests):
            status, _, ms = get(port, path)
            times.append(ms)
        times.sort()
        results[name] = {"path": path, "requests": requests, "first_ms": round(first, 2),
                         "p50_ms": round(percentile(times, 0.5), 2),
                         "p95_ms": round(percentile(times, 0.95), 2),
                         "p99_ms": round(percentile(times, 0.99), 2)}
        print(f"  {name:28} p50 {results[name]['p50_ms']:7.2f} ms  p99 "
              f"{results[name]['p99_ms']:7.2f} ms  first {first:7.2f} ms", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (2,000 institutions)")
    parser.add_argument("--institutions", type=int, default=None)
    parser.add_argument("--requests", type=int, default=None)
    args = parser.parse_args(argv)
    institutions = args.institutions or (2000 if args.quick else 20_000)
    requests = args.requests or (20 if args.quick else 100)
    checks = Checks()
    stamp = datetime.now(UTC)
    events, totals = generate(institutions)
    print(f"  generated {len(events)} events for {institutions} institutions", flush=True)
    with bench_servers() as servers, group_of_services(servers, 1) as (group, env):
        url = env["TUOYU_DASHBOARD_DATABASE_URL"]
        write_log(url, events, checks)
        read = raw_read(url, len(events))
        print(f"  raw_log_read                 {read['per_second']:9.1f} events/s", flush=True)
        settings = settings_for("dashboard")
        from dataclasses import replace
        settings = replace(settings, database_url=url)
        rebuilt = rebuild(url, settings)
        rebuilt["ratio_to_raw_read"] = round(rebuilt["per_second"] / read["per_second"], 3)
        print(f"  rebuild                      {rebuilt['per_second']:9.1f} events/s "
              f"({rebuilt['ratio_to_raw_read']}x the raw read)", flush=True)
        checks.equal("events the rebuild applied", rebuilt["events"], len(events))
        with psycopg.connect(url) as conn:
            position = conn.execute("SELECT notification_id FROM consumer_tracking WHERE "
                                    "consumer = 'dashboard' AND upstream = 'registration'"
                                    ).fetchone()[0]
            checks.equal("the view's position after the rebuild", position, len(events))
            rows = "".join(f"{d},{s},{50000},{1500},{4}\n" for d in DISTRICTS for s in STREETS)
            load_reference(conn, YEAR, "district,street,population,under_three,communities\n"
                           + rows, "bench")
        port = group.port(next(s for s in SERVICES if s.name == "gateway"))
        status, now, _ = get(port, f"/api/dashboard/indicators?as_of={YEAR}-12-31")
        counts = now["total"]["counts"]
        checks.equal("institutions counted", counts["registered"], totals["institutions"])
        checks.equal("places counted", counts["places"], totals["places"])
        checks.equal("children enrolled (December reports)", counts["enrolled"],
                     totals["enrolled"])
        answered = views(port, requests, checks)
    targets = [{"what": f"{name}: p50 under {VIEW_TARGET_MS} ms", "ms": r["p50_ms"],
                "met": r["p50_ms"] < VIEW_TARGET_MS} for name, r in answered.items()]
    targets.append({"what": f"rebuild at least {REBUILD_TARGET} events/s",
                    "per_second": rebuilt["per_second"],
                    "met": rebuilt["per_second"] >= REBUILD_TARGET})
    report = {"started_at": stamp.isoformat(), "machine": machine_info(),
              "settings": {"quick": args.quick, "institutions": institutions,
                           "requests": requests},
              "log": {"events": len(events), **totals}, "baseline_raw_log_read": read,
              "rebuild": rebuilt, "views": answered, "targets": targets,
              "checks_failed": checks.failures}
    previous = save_report("dashboard", report, stamp, [
        ("rebuild events/s", ("rebuild", "per_second"), "higher"),
        *[(f"{name} p50 ms", ("views", name, "p50_ms"), "lower") for name in answered]])
    flagged = report["regressions"]
    print(f"\nbaseline raw log read: {read['per_second']}/s; rebuild {rebuilt['per_second']}/s "
          f"({rebuilt['ratio_to_raw_read']}x)")
    for t in targets:
        print(f"target {t['what']}: {t.get('ms', t.get('per_second'))}: "
              f"{'met' if t['met'] else 'NOT met'}")
    for line in flagged:
        print(f"REGRESSION (over 20% worse than the run of {previous['started_at']}): {line}")
    for failure in checks.failures:
        print(f"CHECK FAILED: {failure}")
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
