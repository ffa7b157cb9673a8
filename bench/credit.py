"""Throughput of the credit service, against real PostgreSQL (and the servers of bench/run.py).

    .venv/bin/python bench/credit.py [--quick] [--n-checks N] [--n-events N] [--n-people N]

Measured in one run, beside a baseline, so that the ratios mean something:

- ``query_check_practitioner``: :meth:`CreditApplication.check_practitioner` by ID number, as
  an officer asks it: the number found in credit's blind index, the person's record loaded
  (a population of ``n-people`` registered beforehand, one in ten banned), the answer
  computed, and the read recorded in the audit table before it is returned. Checks answered
  per second.
- ``reaction_hire_check``: ``InstitutionPractitionerHireRequested`` envelopes (registration's
  documented shape) through the registration consumer's ``handle()``: a check requested on
  the person's record, barred at once when a ban is in force, else left for the
  public-security inquiry (a ref credit does not know is registered from it and flagged),
  saved with the consumer's position in one transaction. Checks requested per second.
- ``reaction_scoring_events``: inspection and subsidy envelopes (findings of every severity,
  overdue rectifications, refused inspections, clean periods, clawbacks for fraud, in the
  shapes of the catalogue) through those consumers' ``handle()``, over 100 institutions.
  Events applied per second.
- ``..._backlog`` and ``..._amqp``: the same two reactions caught up from a backlog of
  ``n-backlog`` messages in the upstream's log (pages of 500, one transaction each), and for
  ``n-flow`` messages in steady flow through RabbitMQ (published as fast as the benchmark
  can, the consumer's run loop applying what has arrived together in one transaction):
  against the target of 0.7x the raw save.
- ``raw_eventsourcing_save``: a plain eventsourcing ``Application`` saving trivial aggregates,
  one per ``save()``, on the same server (bench/run.py's baseline).

Servers: as bench/run.py (``TUOYU_BENCH_POSTGRES_URL`` and ``TUOYU_BENCH_AMQP_URI``, else
private servers under ``.local/bench``). Results: ``bench-results/credit-latest.json`` and
``bench-results/credit-<UTC timestamp>.json``. Exit status 1 when a correctness check failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from tuoyu_credit.application import CreditApplication
from tuoyu_credit.domain import Practitioner
from tuoyu_credit.reactions import (
    inspection_consumer,
    registration_consumer,
    subsidy_consumer,
)
from tuoyu_shared.config import settings_for
from tuoyu_shared.context import command_context
from tuoyu_shared.envelope import Envelope
from tuoyu_shared.logs import configure_logging
from tuoyu_shared.migrate import migrate
from tuoyu_shared.validation import mask_name, resident_id_check_character


def _load_bench_run() -> Any:
    """bench/run.py's servers, measurements and baseline (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("tuoyu_bench_run",
                                                  Path(__file__).with_name("run.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # its dataclasses look it up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


run = _load_bench_run()
Measurement, Checks = run.Measurement, run.Checks
NAMESPACE = uuid.UUID("5b0e4f5c-0d6a-4c39-9c1e-6a1f0e9d2b77")
SAVE_CHUNK = 500
INSTITUTIONS = 100
#: Issue 9: reactions at least 0.7x the raw save, applying messages in batches.
REACTIONS_TARGET = 0.7


@contextmanager
def credit_app(url: str, servers: Any):
    settings = replace(settings_for("credit"), database_url=url, amqp_uri=servers.amqp_uri)
    migrate("credit", url)
    app = CreditApplication(settings)
    try:
        yield app
    finally:
        app.close()


class Log:
    """An upstream's notification log, built by the benchmark (the consumers' gap filler)."""

    def __init__(self, source: str):
        self.source = source
        self.envelopes: list[Envelope] = []
        #: How much of the log readers see (all of it unless set): the AMQP mode publishes
        #: as it goes, and a consumer's start-up catch-up must not read ahead of that.
        self.visible: int | None = None

    def add(self, event_type: str, aggregate_id: str, payload: dict[str, Any]) -> Envelope:
        n = len(self.envelopes) + 1
        envelope = Envelope(
            event_id=str(uuid.uuid5(NAMESPACE, f"{self.source}:{n}")), event_type=event_type,
            schema_version=1, source=self.source, aggregate_id=aggregate_id,
            aggregate_version=n, notification_id=n, occurred_at=datetime.now(UTC).isoformat(),
            actor="bench", department="bench", correlation_id="", causation_id="",
            payload=payload)
        self.envelopes.append(envelope)
        return envelope

    def read(self, start: int, limit: int, stop: int | None = None) -> list[Envelope]:
        head = self.head()
        end = head if stop is None else min(stop, head)
        return self.envelopes[start - 1:min(end, start - 1 + limit)]

    def head(self) -> int:
        return len(self.envelopes) if self.visible is None else self.visible


MODES = ("each", "backlog", "amqp")
MODE_HELP = {
    "each": "one message at a time (handle() per message, as a trickle arrives)",
    "backlog": "catching up from a backlog in the upstream's log (pages, one transaction each)",
    "amqp": "steady flow through RabbitMQ (published as fast as possible, the consumer's run "
            "loop applying what has arrived together)",
}


def deliver(mode: str, servers: Any, consumers: dict[str, Any], logs: dict[str, Log],
            order: list[Envelope]) -> float:
    """Deliver ``order`` to the consumers the way ``mode`` says; seconds until all applied."""
    if mode == "each":
        started = time.perf_counter()
        for envelope in order:
            consumers[envelope.source].handle(envelope)
        return time.perf_counter() - started
    if mode == "backlog":
        started = time.perf_counter()
        for consumer in consumers.values():
            consumer.catch_up()
        return time.perf_counter() - started
    return _deliver_over_amqp(servers, consumers, logs, order)


def _deliver_over_amqp(servers: Any, consumers: dict[str, Any], logs: dict[str, Log],
                       order: list[Envelope]) -> float:
    import threading

    from kombu import Connection, Exchange, Producer

    for log in logs.values():
        log.visible = 0
    stop = threading.Event()
    threads = []
    for consumer in consumers.values():
        ready = threading.Event()
        thread = threading.Thread(target=consumer.run, args=(stop, ready), daemon=True)
        thread.start()
        if not ready.wait(30):
            raise RuntimeError(f"consumer of {consumer.upstream} not ready")
        threads.append(thread)
    targets = {source: len(log.envelopes) for source, log in logs.items()}
    try:
        with Connection(servers.amqp_uri) as conn:
            producer = Producer(conn)
            exchanges = {source: Exchange(c.exchange_name, "topic", durable=True)
                         for source, c in consumers.items()}
            started = time.perf_counter()
            for envelope in order:
                logs[envelope.source].visible = envelope.notification_id
                producer.publish(envelope.to_json(), exchange=exchanges[envelope.source],
                                 routing_key=envelope.event_type, delivery_mode=2,
                                 content_type="application/json", content_encoding="utf-8",
                                 headers={"previous_notification_id":
                                          envelope.notification_id - 1})
            deadline = time.monotonic() + 600
            while any(c.store.position(s) < targets[s] for s, c in consumers.items()):
                if time.monotonic() > deadline:
                    raise TimeoutError("the consumers did not apply every message in 600 s")
                time.sleep(0.01)
            seconds = time.perf_counter() - started
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
            channel = conn.default_channel
            for source, consumer in consumers.items():
                consumer.queue(channel).delete()
                exchanges[source](channel).delete()
    finally:
        stop.set()
    return seconds


def register_people_untimed(app: CreditApplication, n: int) -> list[str]:
    """``n`` practitioners with sealed data, one in ten banned for life; saved in chunks."""
    people = []
    for i in range(n):
        id_number = _distinct_resident_id(i)
        ref = app.vault.enrol("practitioner", id_number)
        sealed = app.vault.seal_person(ref, {"name": "李四", "id_number": id_number},
                                       display={"name": mask_name("李四")})
        person = Practitioner.register(ref, sealed["name"], sealed["id_number"])
        if i % 10 == 0:
            person.impose_ban(f"ban-{i}", "court_ruling", "《刑法》第三十七条之一", ["ruling"],
                              "bench", app.today(), "lifetime")
        people.append(person)
    for start in range(0, n, SAVE_CHUNK):
        app.save(*people[start:start + SAVE_CHUNK])
    return [_distinct_resident_id(i) for i in range(n)]


def _distinct_resident_id(i: int) -> str:
    """Valid resident ID numbers, distinct for i < 28 * 1000 * 12."""
    month, rest = divmod(i, 28 * 1000)
    day, seq = divmod(rest, 1000)
    first17 = f"3101041988{month % 12 + 1:02d}{day + 1:02d}{seq:03d}"
    return first17 + resident_id_check_character(first17)


def bench_check_queries(servers: Any, n_people: int, n: int, checks: Checks) -> Measurement:
    name = "query_check_practitioner"
    with run.fresh_database(servers, "creditchecks") as url, credit_app(url, servers) as app:
        id_numbers = register_people_untimed(app, n_people)
        asked = [id_numbers[i % n_people] for i in range(n)]
        barred = 0
        with command_context(actor="bench-officer", department="bench"):
            app.check_practitioner({"id_number": asked[0], "purpose": "warm-up"})
            started = time.perf_counter()
            for id_number in asked:
                barred += app.check_practitioner({"id_number": id_number,
                                                  "purpose": "hire screening"})["barred"]
            seconds = time.perf_counter() - started
        checks.equal(f"{name}: barred answers", barred,
                     sum(1 for i in range(n) if (i % n_people) % 10 == 0))
        with psycopg.connect(url) as conn:
            reads = conn.execute("SELECT count(*) FROM practitioner_reads").fetchone()[0]
        checks.equal(f"{name}: reads recorded", reads, n + 1)
    return Measurement(name, n, seconds, {"people": n_people})


def hire_payload(app: CreditApplication, id_number: str) -> dict[str, Any]:
    """As registration publishes a hire: the practitioner by ref alone (the ref credit's
    register issued; a number credit does not know gets a ref credit has never seen)."""
    ref = app.vault.find("practitioner", id_number) or uuid.uuid4().hex
    return {"hire_id": str(uuid.uuid4()),
            "practitioner": {"ref": ref, "name": {"ref": ref}, "id_number": {"ref": ref}},
            "role": "carer", "certificates": ["育婴师 0001"], "requested_on": "2025-03-03"}


def bench_hire_checks(servers: Any, n_people: int, n: int, checks: Checks,
                      mode: str = "each") -> Measurement:
    """Half the hires are of people registered beforehand, half of people not known yet."""
    name = "reaction_hire_check" + ("" if mode == "each" else f"_{mode}")
    with run.fresh_database(servers, "credithires") as url, credit_app(url, servers) as app:
        known = register_people_untimed(app, n_people)
        log = Log("registration")
        institution = str(uuid.uuid4())
        for i in range(n):
            id_number = known[i % n_people] if i % 2 == 0 else _distinct_resident_id(
                100_000 + i)
            log.add("InstitutionPractitionerHireRequested", institution,
                    hire_payload(app, id_number))
        consumer = registration_consumer(app, log_reader=log,
                                         exchange=f"bench.registration.{uuid.uuid4().hex[:8]}")
        seconds = deliver(mode, servers, {"registration": consumer}, {"registration": log},
                          log.envelopes)
        published = app.read_log(1, 10 ** 7)
        requested = [e for e in published if e.event_type == "PractitionerCheckRequested"]
        completed = [e for e in published if e.event_type == "PractitionerCheckCompleted"]
        flagged = [e for e in published if e.event_type == "PractitionerCheckFlagged"]
        checks.equal(f"{name}: checks requested", len(requested), n)
        # a ban in force answers at once; the others wait for the public-security inquiry
        checks.equal(f"{name}: barred at once", sum(c.payload["outcome"] == "barred"
                                                    for c in completed),
                     sum(1 for i in range(0, n, 2) if (i % n_people) % 10 == 0))
        checks.equal(f"{name}: unknown identities flagged", len(flagged), n // 2)
        checks.equal(f"{name}: consumer position", consumer.store.position("registration"), n)
    return Measurement(name, n, seconds, {"known_people": n_people, "mode": MODE_HELP[mode]})


SCORING = [  # (source, event type, payload maker, points)
    ("inspection", "InspectionFindingRecorded", lambda i, inst: {
        "visit_id": f"v-{i}", "institution_id": inst, "finding_id": f"f-{i}",
        "severity": ("minor", "major", "serious", "critical")[i % 4], "item": "一日三检",
        "description": "晨检记录缺失"}, None),
    ("inspection", "RectificationOverdue", lambda i, inst: {
        "order_id": f"o-{i}", "institution_id": inst, "due_on": "2025-02-28"}, -10),
    ("inspection", "InspectionRefused", lambda i, inst: {
        "visit_id": f"v-{i}", "institution_id": inst}, -20),
    ("inspection", "CleanInspectionPeriodCompleted", lambda i, inst: {
        "institution_id": inst, "period": "2024"}, 5),
    ("subsidy", "SubsidyClawedBack", lambda i, inst: {
        "application_id": f"a-{i}", "institution_id": inst, "amount_fen": 100000,
        "reason": "fraud"}, -30),
]


def bench_scoring(servers: Any, n: int, checks: Checks, mode: str = "each") -> Measurement:
    name = "reaction_scoring_events" + ("" if mode == "each" else f"_{mode}")
    with run.fresh_database(servers, "creditscoring") as url, credit_app(url, servers) as app:
        institutions = [str(uuid.uuid4()) for _ in range(INSTITUTIONS)]
        for start in range(0, INSTITUTIONS, SAVE_CHUNK):  # opened beforehand, untimed
            opened = [a for i in institutions[start:start + SAVE_CHUNK]
                      for a in app.open_credit(i)]
            app.save(*opened)
        logs = {"inspection": Log("inspection"), "subsidy": Log("subsidy")}
        order = []
        for i in range(n):
            source, event_type, payload, _ = SCORING[i % len(SCORING)]
            inst = institutions[i % INSTITUTIONS]
            order.append(logs[source].add(event_type, f"{source}-{i}", payload(i, inst)))
        tag = uuid.uuid4().hex[:8]
        consumers = {"inspection": inspection_consumer(app, log_reader=logs["inspection"],
                                                       exchange=f"bench.inspection.{tag}"),
                     "subsidy": subsidy_consumer(app, log_reader=logs["subsidy"],
                                                 exchange=f"bench.subsidy.{tag}")}
        seconds = deliver(mode, servers, consumers, logs, order)
        changes = sum(1 for e in app.read_log(1, 10 ** 7)
                      if e.event_type == "InstitutionCreditScoreChanged")
        checks.equal(f"{name}: score changes recorded", changes, n)
        checks.equal(f"{name}: positions", sum(c.store.position(s)
                                               for s, c in consumers.items()), n)
    return Measurement(name, n, seconds, {"institutions": INSTITUTIONS,
                                          "mix": [s[1] for s in SCORING],
                                          "mode": MODE_HELP[mode]})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, to check it works")
    parser.add_argument("--n-checks", type=int, default=None,
                        help="check queries and hire checks (default 2000; 200 with --quick)")
    parser.add_argument("--n-events", type=int, default=None,
                        help="scoring events applied (default 2000; 200 with --quick)")
    parser.add_argument("--n-people", type=int, default=None,
                        help="practitioners registered beforehand (default 1000; 100 quick)")
    parser.add_argument("--n-backlog", type=int, default=None,
                        help="messages in the reactions' backlog (default 20000; 2000 with "
                             "--quick)")
    parser.add_argument("--n-flow", type=int, default=None,
                        help="messages in the reactions' AMQP steady flow (default 5000; 1000 "
                             "with --quick)")
    args = parser.parse_args(argv)
    args.n_checks = args.n_checks or (200 if args.quick else 2000)
    args.n_events = args.n_events or (200 if args.quick else 2000)
    args.n_people = args.n_people or (100 if args.quick else 1000)
    args.n_backlog = args.n_backlog or (2000 if args.quick else 20000)
    args.n_flow = args.n_flow or (1000 if args.quick else 5000)
    for key in ("n_checks", "n_events", "n_people", "n_backlog", "n_flow"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("bench", "warning")
    stamp = datetime.now(UTC).replace(microsecond=0)
    checks = Checks()
    started = time.perf_counter()
    with run.bench_servers() as servers:
        versions = run.server_versions(servers)

        def step(label: str) -> None:
            print(f"[{time.perf_counter() - started:6.1f}s] {label}", flush=True)

        step(f"check queries: {args.n_checks} over {args.n_people} people")
        queries = bench_check_queries(servers, args.n_people, args.n_checks, checks)
        step(f"hire checks through the consumer: {args.n_checks}")
        hires = bench_hire_checks(servers, args.n_people, args.n_checks, checks)
        step(f"scoring events through the consumers: {args.n_events}")
        scoring = bench_scoring(servers, args.n_events, checks)
        batched = []
        for mode, count in (("backlog", args.n_backlog), ("amqp", args.n_flow)):
            step(f"hire checks, {MODE_HELP[mode]}: {count}")
            batched.append(bench_hire_checks(servers, args.n_people, count, checks, mode))
            step(f"scoring events, {MODE_HELP[mode]}: {count}")
            batched.append(bench_scoring(servers, count, checks, mode))
        step(f"raw eventsourcing save: {args.n_checks} aggregates")
        raw_save = run.bench_raw_save(servers, args.n_checks, checks)
        step("done")
    measurements = [queries, hires, scoring, *batched, raw_save]
    targets = {f"{m.name}_vs_raw_save": {
        "target": REACTIONS_TARGET, "measured": run.ratio(m, raw_save),
        "met": run.ratio(m, raw_save) >= REACTIONS_TARGET} for m in batched}
    report = {
        "timestamp": stamp.isoformat(),
        "machine": run.machine_info(),
        "servers": {"origin": servers.origin, **versions},
        "settings": {"quick": args.quick, "n_checks": args.n_checks,
                     "n_events": args.n_events, "n_people": args.n_people,
                     "n_backlog": args.n_backlog, "n_flow": args.n_flow},
        "measurements": [m.as_dict() for m in measurements],
        "headline": {
            "checks_answered_per_second": round(queries.per_second, 1),
            "hire_checks_answered_per_second": round(hires.per_second, 1),
            "events_applied_per_second": round(scoring.per_second, 1),
            "raw_eventsourcing_saves_per_second": round(raw_save.per_second, 1),
        },
        "ratios": {
            "check_queries_vs_raw_save": run.ratio(queries, raw_save),
            "hire_checks_vs_raw_save": run.ratio(hires, raw_save),
            "scoring_events_vs_raw_save": run.ratio(scoring, raw_save),
            **{f"{m.name}_vs_raw_save": run.ratio(m, raw_save) for m in batched},
        },
        "targets": targets,
        "checks": {"passed": checks.passed, "failed": checks.failures},
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    run.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    previous = run.RESULTS_DIR / "credit-latest.json"
    report["regressions"] = run.regressions(previous, report)
    report["compared_with"] = run.previous_timestamp(previous, report)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    paths = [run.RESULTS_DIR / "credit-latest.json",
             run.RESULTS_DIR / f"credit-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"]
    for path in paths:
        path.write_text(text, encoding="utf-8")
    print()
    print(f"{'benchmark':<30}{'count':>8}{'seconds':>10}{'per second':>13}")
    for m in measurements:
        print(f"{m.name:<30}{m.count:>8}{m.seconds:>10.3f}{m.per_second:>13.1f}")
    for key, value in report["ratios"].items():
        print(f"{key:<44}{value:>10.3f}")
    for key, target in targets.items():
        print(f"target {key} >= {target['target']}: {target['measured']:.3f} "
              f"{'met' if target['met'] else 'NOT MET'}")
    run.print_regressions(report["regressions"], report["compared_with"])
    print(f"correctness checks: {len(checks.passed)} passed, {len(checks.failures)} failed")
    print("written: " + ", ".join(str(p.relative_to(run.PROJECT_ROOT)) for p in paths))
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
