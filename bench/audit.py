"""The audit trail's speed: hashing the log into its tree, verifying it, exporting it, and the
stand-alone verifier on the export, each against the raw read of the same log in the same run.

    .venv/bin/python bench/audit.py [--quick] [--events N]

A registration log of ``N`` events (filings imported from the provincial CSV, ``N`` rows, in
bulk: real stored records, personal data sealed) is written to a fresh database. Then:

- ``raw_log_read``: every stored record read in notification order, page by page (5,000), as
  the verifier reads them: the baseline;
- ``append``: every record hashed into ``audit_leaves`` (:meth:`AuditTrail.append`), and a
  checkpoint signed;
- ``verify``: :meth:`AuditTrail.verify` (every record hashed again, compared with its leaf, the
  checkpoint's root recomputed): events per second, and its ratio to the raw read (target at
  least 0.5);
- ``export``: the whole log as a signed bundle (:meth:`AuditTrail.export`), and one case;
- ``verify_export``: ``tools/tuoyu_verify.py export`` on that bundle, in its own process.

Checks: the verification passes and counts every event; the bundle verifies and holds every
event. Results: ``bench-results/audit-latest.json`` and ``audit-<UTC timestamp>.json``,
compared with the previous latest (a figure over 20% worse is flagged).
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from run import Checks, bench_servers, fresh_database, machine_info, registration_app, save_report

from tuoyu_registration.samples import sample_csv
from tuoyu_shared import merkle
from tuoyu_shared.audit import public_keys
from tuoyu_shared.context import command_context

VERIFY_TARGET_RATIO = 0.5
VERIFIER = Path(__file__).resolve().parents[1] / "tools" / "tuoyu_verify.py"


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def raw_read(url: str, table: str) -> int:
    count, after = 0, 0
    with psycopg.connect(url) as conn:
        while True:
            rows = conn.execute(
                f"SELECT notification_id, originator_id, originator_version, topic, state "
                f"FROM {table} WHERE notification_id > %s ORDER BY notification_id LIMIT 5000",
                (after,)).fetchall()
            if not rows:
                return count
            count += len(rows)
            after = rows[-1][0]


def rate(count: int, seconds: float) -> dict:
    return {"events": count, "seconds": round(seconds, 3),
            "per_second": round(count / seconds, 1) if seconds else None}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2,000 events")
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    events = 2000 if args.quick else args.events
    checks = Checks()
    stamp = datetime.now(UTC)
    report: dict = {"benchmark": "audit", "started_at": stamp.isoformat(),
                    "machine": machine_info(), "settings": {"events": events}}
    with bench_servers() as servers, fresh_database(servers, "audit") as url, \
            registration_app(url, servers) as app:
        print(f"writing a log of {events} events ...", flush=True)
        with command_context(actor="bench", department="health"):
            for start in range(1, events + 1, 5000):
                app.import_filings_csv(sample_csv(min(5000, events - start + 1), start))
        head = app.log_head()
        checks.equal("events in the log", head, events)
        trail = app.audit_trail
        table = app.recorder.events_table_name

        raw_read(url, table)  # warm the cache: every figure reads a warm table
        count, seconds = timed(lambda: raw_read(url, table))
        report["raw_log_read"] = rate(count, seconds)

        appended, seconds = timed(trail.append_all)
        report["append"] = rate(appended, seconds)
        _, seconds = timed(trail.checkpoint)
        report["checkpoint_ms"] = round(seconds * 1000, 1)

        result, seconds = timed(trail.verify)
        report["verify"] = rate(result["events"], seconds)
        report["verify"]["ratio_to_raw_read"] = round(
            report["verify"]["per_second"] / report["raw_log_read"]["per_second"], 3)
        checks.equal("verify passes", int(result["ok"]), 1)
        checks.equal("verify counts every event", result["events"], events)

        with command_context(actor="bench-auditor", department="audit"):
            bundle, seconds = timed(trail.export)
            data = base64.b64decode(bundle["content_base64"])
            report["export"] = {**rate(events, seconds), "bytes": len(data)}
            with psycopg.connect(url) as conn:
                case = conn.execute(f"SELECT originator_id FROM {table} "
                                    f"WHERE notification_id = %s", (events // 2,)).fetchone()[0]
            _, seconds = timed(lambda: trail.export(aggregate_id=case))
            report["export_case_ms"] = round(seconds * 1000, 1)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "all.zip"
            path.write_bytes(data)
            keys = Path(folder) / "keys.json"
            keys.write_text(json.dumps(public_keys(app.settings)))
            started = time.perf_counter()
            done = subprocess.run([sys.executable, str(VERIFIER), "export", str(path),
                                   "--keys", str(keys)], capture_output=True, text=True)
            report["verify_export"] = rate(events, time.perf_counter() - started)
            verified = json.loads(done.stdout or "{}")
            checks.equal("the stand-alone verifier accepts the export", done.returncode, 0)
            checks.equal("the export holds every event", verified.get("events", 0), events)
        assert merkle  # the verifier's module is the kit's: the same code on both sides

    ratio = report["verify"]["ratio_to_raw_read"]
    report["targets"] = {"verify_at_least_half_raw_read": {
        "target": VERIFY_TARGET_RATIO, "measured": ratio, "met": ratio >= VERIFY_TARGET_RATIO}}
    report["checks"] = {"passed": checks.passed, "failed": checks.failures}
    save_report("audit", report, stamp, [
        ("verify events/s", ("verify", "per_second"), "higher"),
        ("append events/s", ("append", "per_second"), "higher"),
        ("export events/s", ("export", "per_second"), "higher"),
        ("verify_export events/s", ("verify_export", "per_second"), "higher")])
    print(f"\n{'figure':<28}{'events/s':>12}{'seconds':>10}")
    for name in ("raw_log_read", "append", "verify", "export", "verify_export"):
        figure = report[name]
        print(f"{name:<28}{figure['per_second']:>12}{figure['seconds']:>10}")
    print(f"verify / raw read: {ratio} (target >= {VERIFY_TARGET_RATIO}: "
          f"{'met' if ratio >= VERIFY_TARGET_RATIO else 'NOT met'}); export "
          f"{report['export']['bytes']} bytes; one case {report['export_case_ms']} ms")
    for line in report["regressions"]:
        print(f"REGRESSION: {line}")
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
