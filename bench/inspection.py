"""Joint supervision through the gateway, with 10,000 institutions loaded.

    .venv/bin/python bench/inspection.py [--quick] [--visits N] [--institutions N]

Starts every service with its worker (``ProcessGroup``, the way ``make run`` does, on the bench
servers of ``bench/run.py``), imports the institutions through the gateway (registration's CSV
import), waits until inspection's directory holds them all (registration's events over
RabbitMQ), enrols health inspectors, and creates, seeds and draws a plan of every institution
over HTTP. Then:

- ``visits_recorded``: whole visits recorded through the gateway by 8 clients, each visit three
  requests: every health checklist item's result (one request), a finding, the sign-off (the
  visit concludes with a rectification order): visits per second and each request's p50/p99;
- ``list_open_rectifications``: ``GET /api/inspection/rectifications?state=open`` (the first
  100 by deadline) through the gateway, 200 times one after the other, with every order the
  run made open: p50/p95/p99 in ms (target: under 50 ms), beside ``sql_open_rectifications``,
  the same query run directly on the service's database (the query alone);
- the draw: the plan's draw over HTTP (the frame of every institution, the targets' visits
  scheduled in one transaction).

Baseline in the same run: ``raw_eventsourcing_save``. Checks: every request answered as
expected, one ``VisitConcluded`` and one ``RectificationOrdered`` per visit recorded.

Results: ``bench-results/inspection-latest.json`` and ``inspection-<UTC timestamp>.json``, with
the previous ``inspection-latest.json`` compared (a figure over 20% worse is flagged).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import psycopg
from paths import group_of_services, percentile
from run import Checks, bench_raw_save, bench_servers, machine_info, save_report

from tuoyu_registration.samples import sample_csv
from tuoyu_shared.devrun import SERVICES
from tuoyu_shared.testing import bearer

LIST_TARGET_MS = 50
CLIENTS = 8
HEALTH = bearer("health_officer", subject="bench-health")
INSPECTORS = [f"bench-inspector-{k}" for k in range(CLIENTS)]
OPEN_ORDERS_SQL = (
    "SELECT order_id::text, visit_id::text, institution_id::text, institution_name, district, "
    "finding_id, item, severity, department, ordered_on, due_on, state, overdue, overdue_on, "
    "escalation, closed_on FROM inspection_orders WHERE state IN ('ordered', "
    "'evidence_submitted') ORDER BY due_on, order_id LIMIT 100")


class Client:
    def __init__(self, port: int, headers: dict[str, str]):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = headers

    def __call__(self, method: str, path: str, body: Any = None,
                 content_type: str = "application/json") -> tuple[int, Any, float]:
        data = None if body is None else (body.encode() if isinstance(body, str)
                                          else json.dumps(body).encode())
        began = time.perf_counter()
        self.conn.request(method, path, data, {"Content-Type": content_type, **self.headers})
        response = self.conn.getresponse()
        raw = response.read()
        ms = (time.perf_counter() - began) * 1000
        return response.status, (json.loads(raw) if raw else None), ms

    def close(self) -> None:
        self.conn.close()


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": round(percentile(ordered, 0.5), 2),
            "p95_ms": round(percentile(ordered, 0.95), 2),
            "p99_ms": round(percentile(ordered, 0.99), 2)}


def wait_for_rows(url: str, sql: str, expected: int, timeout: float = 600) -> float:
    began = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() - began < timeout:
            if conn.execute(sql).fetchone()[0] >= expected:
                return time.monotonic() - began
            time.sleep(0.25)
    raise TimeoutError(f"{sql}: fewer than {expected} after {timeout} s")


def load(port: int, env: dict[str, str], institutions: int, checks: Checks) -> dict[str, Any]:
    client = Client(port, HEALTH)
    began = time.perf_counter()
    chunk = 5000
    for start in range(1, institutions + 1, chunk):
        count = min(chunk, institutions - start + 1)
        status, reply, _ = client("POST", "/api/imports/filings?source=bench",
                                  sample_csv(count, start=start), "text/csv")
        checks.equal(f"import rows {start}..: imported", (reply or {}).get("imported", 0),
                     count)
    imported = time.perf_counter() - began
    directory = wait_for_rows(env["TUOYU_INSPECTION_DATABASE_URL"],
                              "SELECT count(*) FROM institution_directory WHERE "
                              "status = 'filed'", institutions)
    client.close()
    return {"institutions": institutions, "import_seconds": round(imported, 2),
            "directory_filled_seconds": round(directory, 2)}


def draw(port: int, targets: int, checks: Checks) -> tuple[list[dict[str, Any]], dict]:
    client = Client(port, HEALTH)
    for inspector in INSPECTORS:
        status, _, _ = client("POST", "/api/inspection/inspectors",
                              {"department": "health", "inspector": inspector})
        checks.equal("inspector enrolled", status, 200)
    status, plan, _ = client("POST", "/api/inspection/plans", {
        "title": "性能测试抽查", "period": "2026", "departments": ["health"], "district": "徐汇区",
        "target_count": targets, "inspectors_per_department": 1})
    checks.equal("plan created", status, 201)
    client("POST", f"/api/inspection/plans/{plan['plan_id']}/seed", {})
    status, drawn, ms = client("POST", f"/api/inspection/plans/{plan['plan_id']}/draw", {})
    client.close()
    if status != 200:
        raise RuntimeError(f"the draw answered {status}: {str(drawn)[:500]}")
    return drawn["targets"], {"frame": drawn["frame_size"], "targets": len(drawn["targets"]),
                              "ms": round(ms, 1)}


def record_visits(port: int, targets: list[dict[str, Any]], items: list[str],
                  checks: Checks) -> dict[str, Any]:
    """Each client records the visits whose inspector it is, three requests a visit."""
    by_inspector: dict[str, list[dict[str, Any]]] = {i: [] for i in INSPECTORS}
    for t in targets:
        by_inspector[t["inspectors"]["health"][0]].append(t)
    latencies: dict[str, list[float]] = {"results": [], "finding": [], "sign_off": []}
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(INSPECTORS) + 1)

    def work(inspector: str) -> None:
        client = Client(port, bearer("health_officer", subject=inspector))
        mine: dict[str, list[float]] = {k: [] for k in latencies}
        barrier.wait()
        try:
            for t in by_inspector[inspector]:
                visit = f"/api/institutions/{t['institution_id']}/visits/{t['visit_id']}"
                status, reply, ms = client("POST", f"{visit}/results", {"results": [
                    {"item": code, "result": "met"} for code in items]})
                mine["results"].append(ms)
                if status != 200:
                    failures.append(f"results {status} {reply}")
                status, reply, ms = client("POST", f"{visit}/findings", {
                    "item": items[0], "severity": "major", "description": "保育人员配比不足"})
                mine["finding"].append(ms)
                if status != 201:
                    failures.append(f"finding {status} {reply}")
                status, reply, ms = client("POST", f"{visit}/sign-off", {})
                mine["sign_off"].append(ms)
                if status != 200 or not (reply or {}).get("concluded"):
                    failures.append(f"sign-off {status} {reply}")
        finally:
            client.close()
            with lock:
                for k, v in mine.items():
                    latencies[k].extend(v)

    threads = [threading.Thread(target=work, args=(i,)) for i in INSPECTORS]
    for t in threads:
        t.start()
    barrier.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - began
    checks.failures.extend(failures[:10])
    return {"visits": len(targets), "clients": len(INSPECTORS), "seconds": round(seconds, 2),
            "visits_per_second": round(len(targets) / seconds, 1),
            "requests_per_second": round(3 * len(targets) / seconds, 1),
            "items_per_visit": len(items),
            **{f"{k}_{name}": v for k, values in latencies.items()
               for name, v in stats(values).items()}}


def list_rectifications(port: int, url: str, orders: int, checks: Checks,
                        times: int = 200) -> tuple[dict[str, Any], dict[str, Any]]:
    wait_for_rows(url, "SELECT count(*) FROM inspection_orders", orders)
    client = Client(port, HEALTH)
    gateway: list[float] = []
    for _ in range(times):
        status, reply, ms = client("GET", "/api/inspection/rectifications?state=open&limit=100")
        gateway.append(ms)
        if status != 200 or reply["count"] != min(100, orders):
            checks.failures.append(f"rectifications: {status} {str(reply)[:200]}")
            break
    district = []
    for _ in range(times // 4):
        status, reply, ms = client("GET", "/api/inspection/rectifications?state=open&district="
                                          + quote("徐汇区"))
        district.append(ms)
    client.close()
    direct: list[float] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(times):
            began = time.perf_counter()
            conn.execute(OPEN_ORDERS_SQL).fetchall()
            direct.append((time.perf_counter() - began) * 1000)
    return ({"orders_open": orders, "requests": len(gateway), **stats(gateway),
             "district_filtered": stats(district)},
            {"queries": len(direct), **stats(direct)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--visits", type=int, default=None)
    parser.add_argument("--institutions", type=int, default=10_000)
    args = parser.parse_args(argv)
    visits = args.visits or (80 if args.quick else 800)
    checks = Checks()
    stamp = datetime.now(UTC)
    with bench_servers() as servers:
        raw = bench_raw_save(servers, 500, checks)
        print(f"  raw_eventsourcing_save        {raw.per_second:8.1f}/s", flush=True)
        with group_of_services(servers, 1) as (group, env):
            port = group.port(next(s for s in SERVICES if s.name == "gateway"))
            loaded = load(port, env, args.institutions, checks)
            print(f"  loaded {loaded}", flush=True)
            targets, drawn = draw(port, visits, checks)
            print(f"  draw over HTTP: frame {drawn['frame']}, {drawn['targets']} visits, "
                  f"{drawn['ms']} ms", flush=True)
            client = Client(port, HEALTH)
            t = targets[0]
            _, visit, _ = client("GET", f"/api/institutions/{t['institution_id']}/visits/"
                                        f"{t['visit_id']}")
            client.close()
            items = [i["code"] for i in visit["items"] if i["department"] == "health"]
            recorded = record_visits(port, targets, items, checks)
            print(f"  visits recorded: {recorded}", flush=True)
            url = env["TUOYU_INSPECTION_DATABASE_URL"]
            listing, direct = list_rectifications(port, url, len(targets), checks)
            print(f"  list open rectifications: {listing}; the SQL alone: {direct}", flush=True)
            with psycopg.connect(url) as conn:
                concluded = conn.execute("SELECT count(*) FROM inspection_visits WHERE "
                                         "status = 'concluded'").fetchone()[0]
            checks.equal("visits concluded", concluded, len(targets))
    recorded["ratio_to_raw_save"] = round(recorded["requests_per_second"] / raw.per_second, 3)
    targets_met = [{"what": "list open rectifications through the gateway, 10,000 "
                            "institutions loaded: p50 under 50 ms",
                    "target_ms": LIST_TARGET_MS, "ms": listing["p50_ms"],
                    "met": listing["p50_ms"] < LIST_TARGET_MS},
                   {"what": "... p99 under 50 ms", "target_ms": LIST_TARGET_MS,
                    "ms": listing["p99_ms"], "met": listing["p99_ms"] < LIST_TARGET_MS}]
    report = {"started_at": stamp.isoformat(), "machine": machine_info(),
              "settings": {"quick": args.quick, "visits": visits,
                           "institutions": args.institutions},
              "baseline": raw.as_dict(), "load": loaded, "draw": drawn,
              "visits_recorded": recorded, "list_open_rectifications": listing,
              "sql_open_rectifications": direct, "targets": targets_met,
              "checks_failed": checks.failures}
    previous = save_report("inspection", report, stamp, [
        ("visits recorded/s", ("visits_recorded", "visits_per_second"), "higher"),
        ("open rectifications p50 ms", ("list_open_rectifications", "p50_ms"), "lower")])
    flagged = report["regressions"]
    print(f"\nbaseline raw_eventsourcing_save: {raw.per_second:.1f}/s")
    print(f"visits recorded through the gateway ({CLIENTS} clients, {len(items)} items each): "
          f"{recorded['visits_per_second']}/s ({recorded['requests_per_second']} requests/s, "
          f"{recorded['ratio_to_raw_save']}x raw save); results p50 "
          f"{recorded['results_p50_ms']} ms, sign-off p50 {recorded['sign_off_p50_ms']} ms")
    print(f"open rectifications ({listing['orders_open']} open, "
          f"{args.institutions} institutions): gateway p50 {listing['p50_ms']} ms, p99 "
          f"{listing['p99_ms']} ms; the SQL alone p50 {direct['p50_ms']} ms")
    print(f"draw of {drawn['frame']} institutions into {drawn['targets']} visits: "
          f"{drawn['ms']} ms")
    for t in targets_met:
        print(f"target {t['what']}: {t['ms']} ms: {'met' if t['met'] else 'NOT met'}")
    for line in flagged:
        print(f"REGRESSION (over 20% worse than the run of {previous['started_at']}): {line}")
    for failure in checks.failures:
        print(f"CHECK FAILED: {failure}")
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
