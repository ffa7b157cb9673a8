"""The reliability suite's scenarios: each runs the load driver, causes its fault while the
load runs, heals it, stops the load, waits for the system to converge and counts
(:mod:`tuoyu_shared.reliability.checks`). :class:`Suite` keeps what accumulates over a run
(every outcome the driver saw, the logs read so far, the poison injected) and the report.

Profiles (``TUOYU_RELIABILITY_PROFILE``): ``bounded`` (``make test``: a few seconds of load
around each fault) and ``soak`` (``make soak``: every scenario again and again, at a higher
rate, for ``TUOYU_SOAK_MINUTES`` (30) minutes, then the resources' bounds).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuoyu_shared.reliability import checks
from tuoyu_shared.reliability.report import ResourceSampler, ScenarioResult, write
from tuoyu_shared.reliability.system import TIMED, SystemUnderTest


@dataclass(frozen=True)
class Profile:
    name: str
    rate: float  # commands per second, all driver threads together
    threads: int
    lead: float  # seconds of load before the fault
    tail: float  # seconds of load after it is healed
    hold: float  # how long an outage lasts
    soak_minutes: float = 0.0


PROFILES = {
    "bounded": Profile("bounded", rate=6.0, threads=4, lead=2.0, tail=2.0, hold=3.0),
    "soak": Profile("soak", rate=10.0, threads=6, lead=15.0, tail=15.0, hold=10.0,
                    soak_minutes=float(os.environ.get("TUOYU_SOAK_MINUTES", "30"))),
}


def profile() -> Profile:
    name = os.environ.get("TUOYU_RELIABILITY_PROFILE", "bounded")
    if name not in PROFILES:
        raise ValueError(f"TUOYU_RELIABILITY_PROFILE must be one of {sorted(PROFILES)}")
    return PROFILES[name]


Fault = Callable[["Suite"], dict[str, Any] | None]


class Suite:
    def __init__(self, system: SystemUnderTest, rebuild_urls: dict[str, str],
                 report_dir: Path, chosen: Profile | None = None):
        from tuoyu_shared.reliability.workload import LoadDriver, Recorder, Workload

        self.system = system
        self.profile = chosen or profile()
        self.rebuild_urls = rebuild_urls
        self.report_dir = report_dir
        self.recorder = Recorder()
        self.workload = Workload(system.gateway, self.recorder, seed=16, prefix="rel")
        self.driver_class = LoadDriver
        self.logs = checks.Logs(system)
        self.expected = checks.Expected()
        self.results: list[ScenarioResult] = []
        self.resources = ResourceSampler(system, interval=5.0)
        self._poison_serial = 0
        #: the resource bounds the report judges (the soak's; none in the bounded run)
        self.bounds: dict[str, Any] = {}

    def prepare(self) -> None:
        self.workload.prepare()
        self.resources.start()
        self.logs.refresh()

    # ---- one scenario ------------------------------------------------------------------------
    def run(self, name: str, fault_text: str, fault: Fault | None,
            lead: float | None = None, tail: float | None = None) -> ScenarioResult:
        p = self.profile
        result = ScenarioResult(name=name, fault=fault_text)
        before = len(self.recorder.outcomes)
        events_before = sum(len(v) for v in self.logs.refresh().values())
        driver = self.driver_class(self.workload, rate=p.rate, threads=p.threads)
        started = time.monotonic()
        driver.start()
        try:
            time.sleep(p.lead if lead is None else lead)
            notes = fault(self) if fault is not None else None
            result.notes.update(notes or {})
            time.sleep(p.tail if tail is None else tail)
        finally:
            driver.stop()
        result.seconds = round(time.monotonic() - started, 1)
        ready = time.monotonic()
        self.system.wait_all_up()
        result.notes["ready_seconds"] = round(time.monotonic() - ready, 1)
        converged, slowest = checks.wait_converged(self.system)
        result.converge_seconds = round(converged, 1)
        if slowest:
            result.notes["last_to_catch_up"] = slowest
        self.count(result, before, events_before)
        self.results.append(result)
        self.write_report()
        return result

    def count(self, result: ScenarioResult, before: int, events_before: int) -> None:
        timings: dict[str, float] = {}
        clock = [time.monotonic()]

        def took(what: str) -> None:
            now = time.monotonic()
            timings[what] = round(now - clock[0], 2)
            clock[0] = now

        result.notes["check_seconds"] = timings
        outcomes = self.recorder.outcomes
        mine = outcomes[before:]
        result.sent = len(mine)
        result.accepted = sum(o.accepted for o in mine)
        result.refused = sum(o.refused for o in mine)
        result.unknown = sum(o.unknown for o in mine)
        logs = self.logs.refresh()
        result.events = sum(len(v) for v in logs.values()) - events_before
        took("logs")
        lost = checks.lost(outcomes, logs)
        result.lost = len(lost)
        result.problems += [f"lost: {o.name} {o.correlation_id} ({o.service})" for o in lost[:10]]
        dup = checks.duplicated(outcomes, logs)
        result.duplicated = len(dup)
        result.problems += [f"duplicated: {d}" for d in dup[:10]]
        order = checks.reordered(logs)
        result.reordered = len(order)
        result.problems += [f"reordered: {d}" for d in order[:10]]
        took("lost, duplicated, reordered")
        mismatches, compared = checks.read_model_mismatches(self.system, self.rebuild_urls)
        result.mismatches, result.tables_compared = len(mismatches), compared
        result.problems += [f"read model: {m}" for m in mismatches[:10]]
        took("read models")
        unexpected, result.parked, result.set_aside = checks.unexpected_letters(
            self.system, self.expected)
        result.unexpected_letters = len(unexpected)
        result.problems += [f"dead letters: {u}" for u in unexpected[:10]]
        took("dead letters")
        audit = checks.audit_failures(self.system)
        result.audit_failures = len(audit)
        result.problems += [f"audit: {a}" for a in audit]
        took("audit")
        if self.workload.bugs:  # the driver itself failed: the load was not what it says
            result.problems += [f"load driver: {b.splitlines()[-1]}" for b in self.workload.bugs]
        statuses: dict[str, int] = {}
        for o in mine:
            key = str(o.status) if o.status is not None else "no answer"
            statuses[key] = statuses.get(key, 0) + 1
        result.notes["statuses"] = statuses

    def write_report(self) -> dict[str, Any]:
        resources = self.resources.summary(**self.bounds)
        write(self.report_dir, self.results, resources, self.profile.name,
              commands=self.recorder.counts())
        return resources

    def close(self) -> dict[str, Any]:
        self.resources.stop()
        return self.write_report()

    # ---- injections --------------------------------------------------------------------------
    def inject_poison(self) -> int:
        """An institution whose street holds a NUL character (what the edge refuses), written
        straight through the domain into registration's store: every consumer that projects
        it into a table must park it, and nothing else."""
        from tuoyu_registration.domain import Institution, Nature, ProviderKind
        from tuoyu_registration.samples import sample_registration

        self._poison_serial += 1
        app = self.system.app("registration")
        data = sample_registration(880000 + self._poison_serial)
        institution = Institution.register(
            name=data["name"], credit_code=data["credit_code"], nature=Nature(data["nature"]),
            kind=ProviderKind(data["kind"]), district=data["district"],
            street="天平\x00路街道", address=data["address"],
            person_in_charge=app._seal_person(  # noqa: SLF001 - past the edge, on purpose
                data["person_in_charge"]["name"], data["person_in_charge"]["id_number"],
                data["person_in_charge"].get("phone")))
        app.save(institution)
        head = [e for e in app.read_log(max(app.log_head() - 20, 1), 50)
                if e.aggregate_id == str(institution.id)]
        notification_id = head[0].notification_id
        self.expected.poison.add(("registration", notification_id))
        return notification_id

    def inject_unreadable(self, service: str = "registration",
                          routing_key: str = "InstitutionRegistered") -> None:
        import json

        body = json.dumps({self.expected.unreadable_marker: uuid.uuid4().hex, "payload": []})
        self.system.inject(service, body, routing_key)
        self.expected.unreadable += 1


# ---- the faults ------------------------------------------------------------------------------
def kill_each(kind: str) -> Fault:
    """kill -9 of each service's ``kind`` process in turn (``service``: its nameko adapter;
    ``worker``: its relay, consumers and timers), each back before the next."""

    def fault(suite: Suite) -> dict[str, Any]:
        killed = []
        for service in ("registration", "credit", "inspection", "subsidy", "dashboard"):
            name = f"{service}-{kind}"
            pid = suite.system.kill(name)
            suite.system.wait_restarted(name, pid)
            killed.append(name)
            time.sleep(suite.profile.hold / 3)
        return {"killed": killed}

    return fault


def kill_gateway(suite: Suite) -> dict[str, Any]:
    for _ in range(2):
        pid = suite.system.kill("gateway-service")
        suite.system.wait_restarted("gateway-service", pid)
        time.sleep(suite.profile.hold / 2)
    return {"killed": ["gateway-service", "gateway-service"]}


def broker_restart(suite: Suite) -> dict[str, Any]:
    suite.system.stop_broker()
    time.sleep(suite.profile.hold)
    suite.system.start_broker()
    return {"broker_down_s": suite.profile.hold}


def queues_purged(suite: Suite) -> dict[str, Any]:
    purged = suite.system.purge_queues()
    return {"queues_purged": len(purged)}


def credit_postgres_restart(suite: Suite) -> dict[str, Any]:
    suite.system.stop_credit_postgres()
    time.sleep(suite.profile.hold)
    suite.system.start_credit_postgres()
    return {"database_down_s": suite.profile.hold}


def slow_links(suite: Suite) -> dict[str, Any]:
    links = suite.system.links
    for link in links.values():
        link.set_latency(0.03)
    time.sleep(suite.profile.hold * 2)
    for link in links.values():
        link.restore()
    return {"latency_ms": 30, "for_s": suite.profile.hold * 2}


def cut_links(suite: Suite) -> dict[str, Any]:
    notes = {}
    for name in ("amqp", "registration-db"):
        link = suite.system.links[name]
        link.cut()
        time.sleep(suite.profile.hold)
        link.restore()
        notes[f"{name}_refused"] = link.refused
        time.sleep(1.0)
    return notes


def poison(suite: Suite) -> dict[str, Any]:
    notification_id = suite.inject_poison()
    suite.inject_unreadable("registration", "InstitutionRegistered")
    suite.inject_unreadable("credit", "CreditGradeChanged")
    return {"poison": f"registration#{notification_id}", "unreadable": 2}


def duplicates(suite: Suite, times: int = 20) -> dict[str, Any]:
    """Events already published, sent again many times as the relay sent them."""
    injected = []
    for service in ("registration", "credit", "inspection", "subsidy"):
        head = suite.system.app(service).log_head()
        for n in sorted({max(1, head - 3), max(1, head // 2)}):
            suite.system.inject_copy(service, n, times)
            injected.append(f"{service}#{n}x{times}")
    return {"injected": injected}


def clock_jump(suite: Suite, days: int = 40) -> dict[str, Any]:
    """The workers' wall clock 40 days ahead (the daily timers run: deadlines pass, notice
    periods end), then back (nothing runs again)."""
    system = suite.system
    before = {s: system.app(s).log_head() for s in TIMED}
    system.shift_clock(days * 86400)
    time.sleep(suite.profile.hold + 2)
    system.shift_clock(0)
    time.sleep(1.5)
    after = {s: system.app(s).log_head() for s in TIMED}
    return {"jump_days": days, "events_while_ahead": {s: after[s] - before[s] for s in TIMED}}


def combined(suite: Suite) -> dict[str, Any]:
    """Several at once: a worker killed, the links slowed, the broker restarted, credit's
    database restarted, and duplicates sent."""
    system = suite.system
    for link in system.links.values():
        link.set_latency(0.02)
    pid = system.kill("registration-worker")
    system.stop_broker()
    system.stop_credit_postgres()
    time.sleep(suite.profile.hold)
    system.start_broker()
    system.start_credit_postgres()
    system.wait_restarted("registration-worker", pid)
    duplicates(suite, times=5)
    pid = system.kill("credit-service")
    time.sleep(suite.profile.hold / 2)
    for link in system.links.values():
        link.restore()
    return {"faults": ["registration-worker killed", "links +20 ms", "broker restarted",
                       "credit's database restarted", "duplicates", "credit-service killed"]}


#: name, what is done, the fault (in the order the suite runs them)
SCENARIOS: tuple[tuple[str, str, Fault | None], ...] = (
    ("baseline", "none (the load alone)", None),
    ("kill-services", "kill -9 of each service's nameko process, one after another", kill_each(
        "service")),
    ("kill-workers", "kill -9 of each worker (relay, consumers, timers), one after another",
     kill_each("worker")),
    ("kill-gateway", "kill -9 of the gateway, twice", kill_gateway),
    # early: the notices it ends make applications payable, so the payments (batches, their
    # export and results) run under the faults after it
    ("clock-jump", "the workers' wall clock 40 days ahead, then back", clock_jump),
    ("broker-restart", "RabbitMQ stopped, then started again", broker_restart),
    ("queues-purged", "every queue of the system purged (events and RPC)", queues_purged),
    ("credit-db-restart", "credit's PostgreSQL stopped, then started again",
     credit_postgres_restart),
    ("slow-links", "30 ms added each way on the links to RabbitMQ and registration's database",
     slow_links),
    ("cut-links", "the link to RabbitMQ cut, then registration's database's", cut_links),
    ("poison", "a poison event written into registration's store; unreadable messages "
     "published to two exchanges", poison),
    ("duplicates", "published events sent again, 20 times each, on four exchanges", duplicates),
    ("combined", "a worker and a service killed, links slowed, RabbitMQ and credit's "
     "database restarted, duplicates sent, all at once", combined),
)
