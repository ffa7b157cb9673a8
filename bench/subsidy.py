"""Subsidy claims through the gateway, and approvals against a budget that fits only some.

    .venv/bin/python bench/subsidy.py [--quick] [--institutions N]

Starts every service with its worker (``ProcessGroup``, as ``make run`` does, on the bench
servers of ``bench/run.py``); imports the institutions (registration's CSV import), designates
each affordable and reports this month's enrolment over HTTP, waits until the subsidy service's
standing of each has them (registration's events over RabbitMQ). Then, with 8 clients:

- ``claims``: each institution's fee-subsidy claim (二孩保育费补助) for this month, nine children
  by resident ID number, drafted and submitted through the gateway (the children sealed, every
  line assessed, each child-month claimed once): claims per second, child lines per second,
  and each request's p50/p95/p99;
- ``approvals``: every claim reviewed and approved at once against budgets that fit three
  quarters of them: approvals per second, and the check that the budgets hold exactly the
  approvals that fitted (none over, none lost).

Baseline in the same run: ``raw_eventsourcing_save``. Results: ``bench-results/subsidy-latest
.json`` and ``subsidy-<UTC timestamp>.json``; a figure over 20% worse than the previous run
with the same settings is flagged.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from inspection import Client, stats
from paths import group_of_services
from run import Checks, bench_raw_save, bench_servers, machine_info, save_report

from tuoyu_registration.samples import sample_csv, sample_enrolment
from tuoyu_shared.devrun import SERVICES
from tuoyu_shared.testing import bearer
from tuoyu_shared.validation import resident_id_check_character

CLIENTS = 8
CHILDREN = 9  # sample_enrolment reports nine second children a month
AMOUNT = CHILDREN * 30_000  # fen: the shipped fee subsidy's birth-order-2 rate
HEALTH = bearer("health_officer", subject="bench-health")
FINANCE = bearer("finance_officer", subject="bench-finance")


def child_id(n: int) -> str:
    """The n-th child's resident ID number: born in 2025 (under three this year)."""
    day = 1 + n // 900 % 28
    first17 = f"310104202501{day:02d}{n % 900 + 100:03d}"
    return first17 + resident_id_check_character(first17)


def parallel(items: list[Any], work) -> tuple[float, list[Any]]:
    """``work(client, item)`` over the items by CLIENTS threads; seconds and results."""
    results: list[Any] = [None] * len(items)
    barrier = threading.Barrier(CLIENTS + 1)

    def run(k: int) -> None:
        client = Client(PORT[0], {})
        barrier.wait()
        try:
            for i in range(k, len(items), CLIENTS):
                try:
                    results[i] = work(client, items[i])
                except Exception as e:
                    results[i] = e
        finally:
            client.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    barrier.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - began, results


PORT = [0]


def setup(env: dict[str, str], institutions: int, month: str, checks: Checks) -> list[str]:
    client = Client(PORT[0], HEALTH)
    status, reply, _ = client("POST", "/api/imports/filings?source=bench",
                              sample_csv(institutions, start=1), "text/csv")
    if (reply or {}).get("imported") != institutions:
        raise RuntimeError(f"import: {status} {str(reply)[:500]}")
    url = env["TUOYU_REGISTRATION_DATABASE_URL"]
    deadline = time.monotonic() + 120
    ids: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline and len(ids) < institutions:
            ids = [r[0] for r in conn.execute(
                "SELECT institution_id::text FROM public_register ORDER BY institution_id")]
            time.sleep(0.2)
    client.close()

    def prepare(c: Client, iid: str) -> int:
        base = f"/api/institutions/{iid}"
        c.headers = HEALTH
        a, ra, _ = c("POST", f"{base}/designate_affordable",
                     {"guide_price_fen": 180000, "document": "bench"})
        b, rb, _ = c("POST", f"{base}/report_enrolment", sample_enrolment(month, classes=[
            {"class_type": "toddler", "children": 14, "carers": 3,
             "age_bands": {"m12_18": 6, "m18_24": 8}},
            {"class_type": "older", "children": 18, "carers": 3,
             "age_bands": {"m24_36": 18}}],  # the classes sample_csv files
            health_managed_children=30))  # of the 32 children
        if (a, b) != (200, 200):
            raise RuntimeError(f"preparing {iid}: {a} {str(ra)[:300]} / {b} {str(rb)[:300]}")
        return a + b

    _, answers = parallel(ids, prepare)
    failed = [a for a in answers if isinstance(a, Exception)]
    if failed:
        raise RuntimeError(f"{len(failed)} institutions not prepared: {failed[0]}")
    client = Client(PORT[0], HEALTH)
    deadline = time.monotonic() + 120
    for iid in ids:  # the subsidy service's standing has heard of it all
        while time.monotonic() < deadline:
            _, standing, _ = client("GET", f"/api/institutions/{iid}/subsidy-standing")
            if (standing or {}).get("affordable") and month in standing.get("enrolment", {}):
                break
            time.sleep(0.1)
        else:
            checks.failures.append(f"standing of {iid} never complete")
    client.close()
    with_budget = Client(PORT[0], FINANCE)
    fits = institutions * 3 // 4
    for fund in ("district", "upper_level"):
        with_budget("POST", "/api/subsidy/budgets", {
            "year": int(month[:4]), "fund": fund, "allocated_fen": fits * AMOUNT // 2,
            "document": "bench"})
    with_budget.close()
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--institutions", type=int, default=None)
    args = parser.parse_args(argv)
    institutions = args.institutions or (32 if args.quick else 240)
    checks = Checks()
    stamp = datetime.now(UTC)
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    year = int(month[:4])
    with bench_servers() as servers:
        raw = bench_raw_save(servers, 500, checks)
        print(f"  raw_eventsourcing_save        {raw.per_second:8.1f}/s", flush=True)
        with group_of_services(servers, 1) as (group, env):
            PORT[0] = group.port(next(s for s in SERVICES if s.name == "gateway"))
            # the shipped programs are 2026's: this year's fee subsidy, if another year
            ids = setup(env, institutions, month, checks)
            print(f"  {len(ids)} institutions ready", flush=True)
            latencies: dict[str, list[float]] = {"draft": [], "submit": [], "review": []}
            lock = threading.Lock()

            def claim(c: Client, item: tuple[int, str]) -> dict[str, Any] | None:
                n, iid = item
                c.headers = bearer("operator", district="徐汇区", subject=f"op-{n}",
                                   institution_id=iid)
                status, drafted, ms1 = c("POST", f"/api/institutions/{iid}/subsidy-applications",
                                         {"program": "fee-subsidy", "year": year, "children": [
                                             {"id_number": child_id(n * CHILDREN + k),
                                              "month": month, "birth_order": 2,
                                              "evidence": f"户口簿 {n}-{k}"}
                                             for k in range(CHILDREN)]})
                if status != 201:
                    checks.failures.append(f"draft {status} {str(drafted)[:300]}")
                    return None
                aid = drafted["application_id"]
                status, submitted, ms2 = c("POST", f"/api/institutions/{iid}/subsidy-"
                                                   f"applications/{aid}/submission", {})
                with lock:
                    latencies["draft"].append(ms1)
                    latencies["submit"].append(ms2)
                if status != 200 or submitted.get("amount_fen") != AMOUNT:
                    checks.failures.append(f"submit {status} {str(submitted)[:300]}")
                    return None
                return {"institution_id": iid, "application_id": aid}

            seconds, claimed = parallel(list(enumerate(ids)), claim)
            claims = {"claims": len(ids), "clients": CLIENTS, "seconds": round(seconds, 2),
                      "claims_per_second": round(len(ids) / seconds, 1),
                      "child_lines_per_second": round(len(ids) * CHILDREN / seconds, 1),
                      "requests_per_second": round(2 * len(ids) / seconds, 1),
                      "ratio_to_raw_save": round(2 * len(ids) / seconds / raw.per_second, 3),
                      **{f"draft_{k}": v for k, v in stats(latencies["draft"]).items()},
                      **{f"submit_{k}": v for k, v in stats(latencies["submit"]).items()}}
            print(f"  claims: {claims}", flush=True)

            def review(c: Client, item: dict[str, Any] | None) -> str:
                if item is None:
                    return "skipped"
                c.headers = HEALTH
                status, reply, ms = c("POST", f"/api/institutions/{item['institution_id']}/"
                                              f"subsidy-applications/{item['application_id']}"
                                              "/review", {"approved": True})
                with lock:
                    latencies["review"].append(ms)
                if status == 200:
                    return "approved"
                if status == 409 and "budget" in str(reply):
                    return "insufficient"
                return f"other {status} {str(reply)[:200]}"

            seconds, outcomes = parallel(claimed, review)
            fits = institutions * 3 // 4
            approved = outcomes.count("approved")
            checks.equal("approvals that fitted", approved, fits)
            checks.equal("approvals refused for the budget", outcomes.count("insufficient"),
                         institutions - fits)
            with psycopg.connect(env["TUOYU_SUBSIDY_DATABASE_URL"]) as conn:
                time.sleep(1)
                reserved = conn.execute("SELECT coalesce(sum(reserved_fen), 0), "
                                        "coalesce(sum(allocated_fen), 0) FROM subsidy_budgets"
                                        ).fetchone()
            checks.equal("reserved within the budget", int(reserved[0]), fits * AMOUNT)
            approvals = {"reviews": len(claimed), "approved": approved,
                         "insufficient": outcomes.count("insufficient"),
                         "seconds": round(seconds, 2),
                         "per_second": round(len(claimed) / seconds, 1),
                         "reserved_fen": int(reserved[0]), "allocated_fen": int(reserved[1]),
                         **{f"review_{k}": v for k, v in stats(latencies["review"]).items()}}
            print(f"  approvals: {approvals}", flush=True)
    report = {"started_at": stamp.isoformat(), "machine": machine_info(),
              "settings": {"quick": args.quick, "institutions": institutions},
              "baseline": raw.as_dict(), "claims": claims, "approvals": approvals,
              "checks_failed": checks.failures}
    previous = save_report("subsidy", report, stamp, [
        ("claims/s", ("claims", "claims_per_second"), "higher"),
        ("approvals/s", ("approvals", "per_second"), "higher")])
    flagged = report["regressions"]
    print(f"\nbaseline raw_eventsourcing_save: {raw.per_second:.1f}/s")
    print(f"claims through the gateway ({CLIENTS} clients, {CHILDREN} children each): "
          f"{claims['claims_per_second']}/s ({claims['child_lines_per_second']} child lines/s, "
          f"{claims['requests_per_second']} requests/s = {claims['ratio_to_raw_save']}x the "
          f"raw save); draft p50 {claims['draft_p50_ms']} ms, submit p50 "
          f"{claims['submit_p50_ms']} ms")
    print(f"approvals at once against a budget for {approved}: {approvals['per_second']}/s, "
          f"{approvals['approved']} approved, {approvals['insufficient']} refused, reserved "
          f"{approvals['reserved_fen']} of {approvals['allocated_fen']} fen")
    for line in flagged:
        print(f"REGRESSION (over 20% worse than the run of {previous['started_at']}): {line}")
    for failure in checks.failures:
        print(f"CHECK FAILED: {failure}")
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
