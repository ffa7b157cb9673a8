"""The reliability suite's load: a realistic mix of commands sent through the gateway at a set
rate, each outcome recorded (:class:`Recorder`), for the checks to hold against the event logs
(:mod:`tuoyu_shared.reliability.checks`: nothing accepted is lost, nothing doubled).

    recorder = Recorder()
    workload = Workload(gateway_url, recorder, seed=16, prefix="rel")
    workload.prepare()                      # budgets, programs, inspectors
    driver = LoadDriver(workload, rate=8, threads=4)
    driver.start(); ...; driver.stop()
    recorder.counts()                       # per command: accepted, refused, unknown, noop

Each *case* is one institution taken through the supervision it meets, a step at a time, its
steps interleaved with other cases' (each step one command, as its role sends it):

- registration: registered (a district health officer), filing submitted (the institution's
  operator), receipt issued (the officer), designated affordable (most), the month's enrolment
  reported (operator), practitioners hired (operator; credit runs the background check against
  the public-security inquiry);
- inspection: a targeted visit scheduled (health leads) or a joint random-inspection plan
  created, seeded and drawn over the district's filed cases; each department's inspector
  records its checklist items, some a finding; each department signs; the result published;
- subsidy: opening and operating grants drafted and submitted (operator), approved (health);
  once notices are over (days later, or a clock moved), a payment batch created, exported and
  its results imported (finance); a budget topped up (追加) when an approval finds it short.

A step whose precondition arrives over RabbitMQ (inspection or subsidy hearing of a filing) may
be refused at first: the refusal is recorded and the step tried again later. A step with no
answer (connection reset, timeout, 5xx) is recorded *unknown* and tried again; a retry refused
because the first try did land (409: submitted already) counts the step done.

Every command carries a fresh ``X-Correlation-Id`` (uuid4 hex), which the gateway puts in the
command's context, so its events carry it. A 2xx answer that says nothing changed (an import
of results sent before, a result published already, an inspector on the roster already) is
recorded with ``noop`` set: not *accepted*, since no event records it. Queries the workload
needs (a visit's checklist, a standing, what is payable) are not recorded.

Sample numbers (credit codes, resident ID numbers) come from a space of the workload's own,
derived from ``prefix`` and ``seed``: workloads of other seeds or prefixes in one database do
not collide. Tokens are the test session's (:func:`tuoyu_shared.testing.bearer`), so the
gateway must run with :func:`tuoyu_shared.testing.auth_env`.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tuoyu_registration.samples import (
    sample_credit_code,
    sample_enrolment,
    sample_filing_submission,
    sample_registration,
)
from tuoyu_shared.validation import resident_id_check_character

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: The departments of a joint visit, and the role whose token speaks for each.
DEPARTMENTS = ("health", "market_regulation", "fire_rescue")
ROLE_OF = {"health": "health_officer", "market_regulation": "market_officer",
           "fire_rescue": "fire_officer", "education": "education_officer"}
#: Programs the cases apply under (the seeds' codes; a version for this year is published by
#: :meth:`Workload.prepare` when none is).
OPENING, OPERATING = "opening-grant", "operating-grant"
#: Budgets opened by prepare(): fund → fen (generous: a long soak must not run dry; an
#: approval that finds a budget short has it topped up).
BUDGETS = {"district": 2_000_000_000, "upper_level": 1_000_000_000}
TOP_UP_FEN = 1_000_000_000
TIMEOUT = 10.0
MAX_ATTEMPTS = 12  # a step refused this often is given up
TOKEN_LIFETIME = 1800.0  # seconds a token is reused (they are issued for an hour)


# ---- outcomes -------------------------------------------------------------------------------
@dataclass
class Outcome:
    """One command sent and what came of it."""

    name: str  # e.g. "register_institution"
    service: str  # the service whose event log must hold this command's events
    correlation_id: str  # unique per command, sent as the X-Correlation-Id header
    status: int | None  # HTTP status, None when no answer (connection reset, timeout)
    code: str | None  # the problem's code (RFC 9457 body) on 4xx/5xx; the exception's name
    #                   when no answer
    aggregate_id: str | None  # the main aggregate touched, when known (the institution for
    #                           its registration commands, the visit, application, batch, plan)
    seconds: float  # latency
    #: a 2xx answer saying nothing changed (no event records it): not accepted
    noop: bool = False
    detail: str | None = None  # the problem's detail, or the exception's text

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and not self.noop

    @property
    def refused(self) -> bool:
        return self.status is not None and 400 <= self.status < 500

    @property
    def unknown(self) -> bool:
        return self.status is None or self.status >= 500


class Recorder:
    """Every outcome, in the order recorded (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes: list[Outcome] = []

    def add(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def _snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def accepted(self) -> list[Outcome]:
        return [o for o in self._snapshot() if o.accepted]

    def refused(self) -> list[Outcome]:
        return [o for o in self._snapshot() if o.refused]

    def unknown(self) -> list[Outcome]:
        return [o for o in self._snapshot() if o.unknown]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per command name: ``{"accepted", "refused", "unknown", "noop"}`` counts; ``"*"``
        is all commands together."""
        found: dict[str, Counter[str]] = {}
        for o in self._snapshot():
            kind = ("accepted" if o.accepted else "refused" if o.refused
                    else "unknown" if o.unknown else "noop")
            for key in (o.name, "*"):
                found.setdefault(key, Counter())[kind] += 1
        return {name: {k: c[k] for k in ("accepted", "refused", "unknown", "noop")}
                for name, c in sorted(found.items())}

    def table(self) -> str:
        """The counts as a small text table (for a report or a test's output)."""
        lines = [f"{'command':28} {'accepted':>8} {'refused':>8} {'unknown':>8} {'noop':>5}"]
        for name, c in self.counts().items():
            lines.append(f"{name:28} {c['accepted']:8} {c['refused']:8} {c['unknown']:8} "
                         f"{c['noop']:5}")
        return "\n".join(lines)


# ---- sample numbers -------------------------------------------------------------------------
def resident_id(n: int) -> str:
    """A valid resident ID number for each ``n`` below 10^13, a different one for each: the
    address code, a birth date from 1975 to 1999 and the sequence code spell ``n``."""
    area, rest = divmod(n, 9_000_000)
    day, seq = divmod(rest, 1000)
    born = date(1975, 1, 1) + timedelta(days=day)
    first17 = f"{110101 + area % 880_000:06d}{born:%Y%m%d}{seq:03d}"
    return first17 + resident_id_check_character(first17)


def _today() -> date:
    return datetime.now(SHANGHAI).date()


# ---- the cases --------------------------------------------------------------------------------
@dataclass
class _Visit:
    visit_id: str
    inspectors: dict[str, list[str]]
    items: dict[str, list[str]] | None = None  # department → its item codes (a query's)
    recorded: set[str] = field(default_factory=set)  # departments whose items are recorded
    finding: str | None = None  # the department that records a finding, if one does
    signed: set[str] = field(default_factory=set)
    published: bool = False


@dataclass
class _Application:
    program: str
    application_id: str | None = None
    state: str = "new"  # new → draft → under_review → in_notice (or ineligible, rejected)


@dataclass
class _Case:
    n: int
    registration: dict[str, Any]
    affordable: bool  # to be designated
    hires_wanted: int
    visit_wanted: bool
    finding_wanted: bool
    programs: tuple[str, ...]
    institution_id: str | None = None
    done: set[str] = field(default_factory=set)
    hired: list[str] = field(default_factory=list)
    hiring: str | None = None  # the ID number of the hire being asked for
    visits: list[_Visit] = field(default_factory=list)
    applications: dict[str, _Application] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)
    attempts: Counter[str] = field(default_factory=Counter)
    uncertain: set[str] = field(default_factory=set)  # steps whose last try got no answer
    busy: bool = False
    dead: bool = False  # its registration never answered, or was refused

    @property
    def filed(self) -> bool:
        return "receipt" in self.done


Action = Callable[[], "Outcome | None"]


class Workload:
    """The mix of commands (see the module's docstring); :meth:`step` sends one."""

    def __init__(self, gateway_url: str, recorder: Recorder, seed: int = 1, prefix: str = "rel",
                 *, active_cases: int = 30):
        self.gateway_url = gateway_url.rstrip("/")
        self.recorder = recorder
        self.seed, self.prefix = seed, prefix
        self.tag = f"{prefix}{seed}"
        #: the workload's own space of sample numbers (5 digits of a hash of prefix and seed)
        self.space = 10_000 + zlib.crc32(f"{prefix}:{seed}".encode()) % 90_000
        self.district = f"{self.tag}区"
        self.active_cases = active_cases
        self.rng = random.Random(f"{prefix}:{seed}")
        self.http = httpx.Client(base_url=self.gateway_url, timeout=TIMEOUT,
                                 limits=httpx.Limits(max_connections=64,
                                                     max_keepalive_connections=32))
        self._lock = threading.RLock()
        self._tokens: dict[tuple[str, str, str, str | None], tuple[float, dict[str, str]]] = {}
        self._numbers = Counter[str]()
        self.cases: list[_Case] = []
        self.finished = 0
        self.inspectors = {d: [f"{self.tag}-{d}-{i}" for i in (1, 2)] for d in DEPARTMENTS}
        # workload-wide steps
        self._plan: dict[str, Any] | None = None  # {"plan_id", "stage"} of the plan under way
        self._filed_since_plan = 0
        self._batches: list[dict[str, Any]] = []  # created, not yet imported
        self._next_payable_check = 0.0
        self._top_up: set[str] = set()  # funds found short
        self._busy_global: set[str] = set()
        self.bugs: list[str] = []  # tracebacks of the workload's own errors (none expected)

    def close(self) -> None:
        self.http.close()

    # ---- tokens -------------------------------------------------------------------------------
    def _auth(self, role: str, district: str | None = None, subject: str | None = None,
              institution_id: str | None = None) -> dict[str, str]:
        from tuoyu_shared.testing import bearer

        key = (role, district or self.district, subject or f"{self.tag}-{role}", institution_id)
        now = time.monotonic()
        with self._lock:
            found = self._tokens.get(key)
            if found is None or now - found[0] > TOKEN_LIFETIME:
                found = (now, bearer(key[0], district=key[1], subject=key[2],
                                     institution_id=institution_id))
                self._tokens[key] = found
            return found[1]

    def _health(self) -> dict[str, str]:
        # a few officers of the district (the gateway limits each subject's request rate)
        return self._auth("health_officer", subject=f"{self.tag}-health-officer-"
                                                    f"{self.rng.randrange(4)}")

    def _city_health(self) -> dict[str, str]:
        return self._auth("health_officer", "*", f"{self.tag}-city-health")

    def _finance(self) -> dict[str, str]:
        return self._auth("finance_officer", "*", f"{self.tag}-finance")

    def _operator(self, case: _Case) -> dict[str, str]:
        return self._auth("operator", subject=f"{self.tag}-operator-{case.n}",
                          institution_id=case.institution_id)

    def _inspector(self, department: str, name: str) -> dict[str, str]:
        return self._auth(ROLE_OF[department], subject=name)

    # ---- HTTP -----------------------------------------------------------------------------------
    def _number(self, kind: str) -> int:
        with self._lock:
            self._numbers[kind] += 1
            return self.space * 1_000_000 + self._numbers[kind]

    def _send(self, name: str, service: str, method: str, path: str, body: Any,
              headers: dict[str, str], aggregate_id: str | None = None,
              noop: Callable[[dict[str, Any]], bool] | None = None
              ) -> tuple[Outcome, dict[str, Any]]:
        """Send one command, record its outcome; never raises."""
        correlation = uuid.uuid4().hex
        started = time.perf_counter()
        status: int | None = None
        code = detail = None
        reply: Any = {}
        try:
            response = self.http.request(
                method, path, json=body,
                headers={**headers, "X-Correlation-Id": correlation})
            status = response.status_code
            try:
                reply = response.json()
            except ValueError:
                reply = {}
            if not isinstance(reply, dict):
                reply = {"result": reply}
            if status >= 400:
                code = reply.get("code") if isinstance(reply.get("code"), str) else None
                detail = str(reply.get("detail") or "")[:300] or None
        except Exception as e:  # no answer: reset, timeout, refused connection
            code, detail = type(e).__name__, str(e)[:300]
        outcome = Outcome(name=name, service=service, correlation_id=correlation,
                          status=status, code=code, aggregate_id=aggregate_id,
                          seconds=round(time.perf_counter() - started, 4), detail=detail)
        if outcome.accepted and noop is not None:
            try:
                outcome.noop = bool(noop(reply))
            except Exception:
                outcome.noop = False
        self.recorder.add(outcome)
        return outcome, reply

    def _get(self, path: str, headers: dict[str, str], **params: Any
             ) -> tuple[int | None, dict[str, Any]]:
        """A query (not recorded)."""
        try:
            response = self.http.get(path, headers=headers, params=params or None)
            reply = response.json()
            return response.status_code, reply if isinstance(reply, dict) else {"result": reply}
        except Exception:
            return None, {}

    # ---- one-time setup -----------------------------------------------------------------------
    def prepare(self) -> None:
        """This year's budgets (finance), a version of the programs for this year if there is
        none (health), and the workload's inspectors on their departments' rosters: each a
        command, recorded like the others. Never raises; a setup command that gets no answer is
        sent again a few times."""
        year = _today().year
        for fund, fen in BUDGETS.items():
            self._retrying(lambda fund=fund, fen=fen: self._send(
                "open_budget", "subsidy", "POST", "/api/subsidy/budgets",
                {"year": year, "fund": fund, "allocated_fen": fen,
                 "document": f"{year}年托育补助预算 ({self.tag})"}, self._finance())[0])
        status, programs = self._get("/api/subsidy/programs", self._city_health())
        rows = programs.get("programs", []) if status == 200 else []
        for code in (OPENING, OPERATING):
            if any(r.get("code") == code and r.get("year") == year for r in rows):
                continue
            latest = [r for r in rows if r.get("code") == code]
            if not latest:
                continue
            row = latest[-1]
            terms = dict(row["terms"])
            if terms.get("claim_months"):
                terms["claim_months"] = [f"{year}-{m:02d}" for m in range(1, 13)]
            self._retrying(lambda code=code, row=row, terms=terms: self._send(
                "publish_program", "subsidy", "POST", "/api/subsidy/programs",
                {"code": code, "kind": row["kind"], "title": row["title"], "year": year,
                 "terms": terms, "document": f"{year}年度 ({self.tag})"}, self._city_health(),
                noop=lambda reply: reply.get("published") is False)[0])
        for department, names in self.inspectors.items():
            for name in names:
                self._retrying(lambda department=department, name=name: self._send(
                    "enrol_inspector", "inspection", "POST", "/api/inspection/inspectors",
                    {"department": department, "inspector": name},
                    self._inspector(department, name),
                    noop=lambda reply: reply.get("enrolled") is False)[0])

    @staticmethod
    def _retrying(send: Callable[[], Outcome], tries: int = 4) -> Outcome:
        for attempt in range(tries):
            outcome = send()
            if not outcome.unknown or attempt == tries - 1:
                return outcome
            time.sleep(min(0.5 * 2 ** attempt, 2))
        return outcome

    # ---- one step -----------------------------------------------------------------------------
    def step(self) -> Outcome:
        """Send one command of the mix (thread-safe: each case is worked by one thread at a
        time). Never raises."""
        for _ in range(10):
            picked = self._pick()
            if picked is None:
                break
            release, action = picked
            try:
                outcome = action()
            except Exception as e:  # a bug here must not stop the load: record nothing
                outcome = None
                self._note_bug(e)
            finally:
                release()
            if outcome is not None:
                return outcome
        case = self._new_case()
        try:
            return self._register(case)
        finally:
            with self._lock:
                case.busy = False

    def _note_bug(self, e: Exception) -> None:
        import traceback

        with self._lock:
            if len(self.bugs) < 20:
                self.bugs.append("".join(traceback.format_exception(e))[-2000:])

    def _pick(self) -> tuple[Callable[[], None], Action] | None:
        now = time.monotonic()
        with self._lock:
            kept = []
            for case in self.cases:  # a busy case is its thread's: not even read here
                if case.busy:
                    kept.append(case)
                elif case.dead:
                    continue
                elif case.institution_id is not None and not self._case_actions(case):
                    self.finished += 1
                else:
                    kept.append(case)
            self.cases = kept
            live = [c for c in self.cases if not c.dead]
            if len(live) < self.active_cases and (len(live) < 3 or self.rng.random() < 0.12):
                return None  # a new case
            candidates: list[tuple[Any, str, Action]] = []
            for name, action in self._global_actions(now):
                candidates.append((None, name, action))
            for case in self.cases:
                if case.busy or case.dead:
                    continue
                for name, action in self._case_actions(case):
                    if case.not_before.get(name, 0) <= now:
                        candidates.append((case, name, action))
            if not candidates:
                return None
            owner, name, action = self.rng.choice(candidates)
            if owner is None:
                self._busy_global.add(name)

                def release() -> None:
                    with self._lock:
                        self._busy_global.discard(name)
            else:
                owner.busy = True

                def release() -> None:
                    with self._lock:
                        owner.busy = False
            return release, action

    # ---- outcome bookkeeping --------------------------------------------------------------
    def _settle(self, case: _Case, step: str, outcome: Outcome,
                done_on_conflict: bool = True) -> bool:
        """Note a step's outcome: True if the step is done (accepted; or refused 409 after a
        try with no answer, which must have landed). Else it is tried again later."""
        with self._lock:
            if outcome.accepted or outcome.noop:
                case.uncertain.discard(step)
                case.attempts.pop(step, None)
                case.not_before.pop(step, None)
                return True
            if outcome.unknown:
                case.uncertain.add(step)
                case.not_before[step] = time.monotonic() + 1.0
                return False
            landed = step in case.uncertain and outcome.status == 409 and done_on_conflict
            case.uncertain.discard(step)
            if landed:
                case.attempts.pop(step, None)
                return True
            case.attempts[step] += 1
            if case.attempts[step] >= MAX_ATTEMPTS:
                case.done.add(f"gave-up:{step}")
            case.not_before[step] = time.monotonic() + min(0.5 * 1.6 ** case.attempts[step],
                                                           15)
            return False

    # ---- registration -------------------------------------------------------------------------
    def _new_case(self) -> _Case:
        n = self._number("institution")
        rng = self.rng
        with self._lock:
            affordable = rng.random() < 0.8
            programs = tuple(p for p, chance in ((OPENING, 0.9), (OPERATING, 0.6))
                             if affordable and rng.random() < chance)
            case = _Case(
                n=n, registration=sample_registration(
                    n, name=f"{self.tag} 托育园 {n % 1_000_000}",
                    credit_code=sample_credit_code(n), district=self.district,
                    address=f"天平路 {n % 1_000_000} 号",
                    person_in_charge={"name": "王晓梅", "id_number": resident_id(n),
                                      "phone": "13812345678"}),
                affordable=affordable, hires_wanted=rng.randint(1, 3),
                visit_wanted=rng.random() < 0.75, finding_wanted=rng.random() < 0.4,
                programs=programs, busy=True)
            self.cases.append(case)
        return case

    def _register(self, case: _Case) -> Outcome:
        outcome, reply = self._send("register_institution", "registration", "POST",
                                    "/api/institutions", case.registration, self._health())
        with self._lock:
            if outcome.accepted and reply.get("institution_id"):
                case.institution_id = reply["institution_id"]
                outcome.aggregate_id = case.institution_id
                case.done.add("register")
            else:  # refused, or unknown (its id is not learnt): the case goes no further
                case.dead = True
        return outcome

    def _case_actions(self, case: _Case) -> list[tuple[str, Action]]:
        """The steps the case may take next (under the lock)."""
        if case.institution_id is None or case.dead:
            return []
        done = case.done
        found: list[tuple[str, Action]] = []

        def offer(step: str, action: Action) -> None:
            if step not in done and f"gave-up:{step}" not in done:
                found.append((step, action))

        if "submit_filing" not in done:
            offer("submit_filing", lambda: self._submit_filing(case))
            return found
        if not case.filed:
            offer("receipt", lambda: self._receipt(case))
            return found
        if case.affordable:
            offer("affordable", lambda: self._designate(case))
        offer("enrolment", lambda: self._enrolment(case))
        if len(case.hired) < case.hires_wanted:
            found.append(("hire", lambda: self._hire(case)))
        if case.visit_wanted and not case.visits and "visit" not in done:
            offer("visit", lambda: self._schedule_visit(case))
        for visit in case.visits:
            found.extend(self._visit_actions(case, visit))
        if "affordable" in done:
            for program in case.programs:
                application = case.applications.setdefault(program, _Application(program))
                if program == OPERATING and "enrolment" not in done:
                    continue
                step = f"subsidy:{program}"
                if f"gave-up:{step}" in done or application.state in (
                        "in_notice", "ineligible", "rejected"):
                    continue
                found.append((step, lambda a=application: self._subsidy_step(case, a)))
        return found

    def _submit_filing(self, case: _Case) -> Outcome:
        outcome, _ = self._send("submit_filing", "registration", "POST",
                                f"/api/institutions/{case.institution_id}/submit_filing",
                                sample_filing_submission(), self._operator(case),
                                case.institution_id)
        if self._settle(case, "submit_filing", outcome):
            case.done.add("submit_filing")
        return outcome

    def _receipt(self, case: _Case) -> Outcome:
        outcome, _ = self._send("issue_filing_receipt", "registration", "POST",
                                f"/api/institutions/{case.institution_id}/issue_filing_receipt",
                                {"receipt_number": f"{self.tag}-BA-{case.n % 1_000_000}"},
                                self._health(), case.institution_id)
        if self._settle(case, "receipt", outcome):
            with self._lock:
                case.done.add("receipt")
                self._filed_since_plan += 1
        return outcome

    def _designate(self, case: _Case) -> Outcome:
        outcome, _ = self._send("designate_affordable", "registration", "POST",
                                f"/api/institutions/{case.institution_id}/designate_affordable",
                                {"guide_price_fen": 180000,
                                 "document": f"{self.tag}卫健〔{_today().year}〕{case.n % 997}号"},
                                self._health(), case.institution_id)
        if self._settle(case, "affordable", outcome):
            case.done.add("affordable")
        return outcome

    def _enrolment(self, case: _Case) -> Outcome:
        month = _today().strftime("%Y-%m")
        outcome, _ = self._send("report_enrolment", "registration", "POST",
                                f"/api/institutions/{case.institution_id}/report_enrolment",
                                sample_enrolment(month), self._operator(case),
                                case.institution_id)
        if self._settle(case, "enrolment", outcome):
            case.done.add("enrolment")
        return outcome

    def _hire(self, case: _Case) -> Outcome:
        with self._lock:
            if case.hiring is None:
                case.hiring = resident_id(self._number("practitioner") + 500_000)
            number = case.hiring
        role = self.rng.choice(("carer", "carer", "health", "cook", "teacher"))
        outcome, _ = self._send(
            "request_hire", "registration", "POST",
            f"/api/institutions/{case.institution_id}/request_hire",
            {"practitioner": {"name": "李四", "id_number": number}, "role": role,
             "certificates": [f"育婴员 {number[-6:]}"]}, self._operator(case),
            case.institution_id)
        if self._settle(case, "hire", outcome):
            with self._lock:
                case.hired.append(number)
                case.hiring = None
        return outcome

    # ---- inspection -------------------------------------------------------------------------
    def _schedule_visit(self, case: _Case) -> Outcome:
        outcome, reply = self._send(
            "schedule_targeted_visit", "inspection", "POST",
            f"/api/institutions/{case.institution_id}/visits",
            {"trigger": self.rng.choice(("complaint", "incident")),
             "reference": f"{self.tag}-投诉-{case.n % 1_000_000}",
             "departments": list(DEPARTMENTS), "scheduled_on": _today().isoformat(),
             "inspectors_per_department": 1}, self._city_health(), case.institution_id)
        # a retry after no answer schedules another visit: the first, if it landed, is left
        if self._settle(case, "visit", outcome, done_on_conflict=False):
            with self._lock:
                case.done.add("visit")
                if outcome.accepted and reply.get("visit_id"):
                    outcome.aggregate_id = reply["visit_id"]
                    case.visits.append(self._new_visit(case, reply["visit_id"],
                                                       reply.get("inspectors") or {}))
        return outcome

    def _new_visit(self, case: _Case, visit_id: str, inspectors: dict[str, list[str]]
                   ) -> _Visit:
        finding = self.rng.choice(DEPARTMENTS) if case.finding_wanted else None
        return _Visit(visit_id, {d: list(v) for d, v in inspectors.items()}, finding=finding)

    def _visit_actions(self, case: _Case, visit: _Visit) -> list[tuple[str, Action]]:
        key = f"visit:{visit.visit_id}"
        if visit.published or f"gave-up:{key}" in case.done:
            return []
        return [(key, lambda: self._visit_step(case, visit))]

    def _visit_path(self, case: _Case, visit: _Visit) -> str:
        return f"/api/institutions/{case.institution_id}/visits/{visit.visit_id}"

    def _visit_step(self, case: _Case, visit: _Visit) -> Outcome | None:
        """The visit's next step: a department's items, the finding, a sign-off, the
        publication."""
        key = f"visit:{visit.visit_id}"
        path = self._visit_path(case, visit)
        if visit.items is None:
            status, detail = self._get(path, self._city_health())
            if status != 200:
                with self._lock:
                    case.not_before[key] = time.monotonic() + 1.0
                return None
            items: dict[str, list[str]] = {}
            for item in detail.get("items", []):
                items.setdefault(item["department"], []).append(item["code"])
            visit.items = items
            visit.inspectors = detail.get("inspectors") or visit.inspectors
        departments = [d for d in DEPARTMENTS if d in visit.inspectors]
        pending = [d for d in departments if d not in visit.recorded]
        if pending:
            department = self.rng.choice(pending)
            inspector = self.rng.choice(visit.inspectors[department])
            codes = visit.items.get(department, [])
            attempt = case.attempts[key]
            results = [{"item": code, "result": "met"} for code in codes]
            if visit.finding == department and results:
                results[0] = {"item": codes[0], "result": "partly_met",
                              "note": "晨检记录有两日缺签"}
            if attempt and results:  # a retry differs (the same results again change nothing)
                results[-1] = {**results[-1], "note": f"复核 {attempt}"}
            outcome, _ = self._send("record_item_results", "inspection", "POST",
                                    f"{path}/results", {"results": results},
                                    self._inspector(department, inspector), visit.visit_id,
                                    # a retry of a page recorded already (its answer lost)
                                    noop=lambda reply: reply.get("recorded") == 0)
            if self._settle(case, key, outcome, done_on_conflict=False):
                visit.recorded.add(department)
            return outcome
        if visit.finding is not None and visit.finding in departments:
            department = visit.finding
            codes = visit.items.get(department, [])
            if codes:
                inspector = self.rng.choice(visit.inspectors[department])
                outcome, _ = self._send(
                    "record_finding", "inspection", "POST", f"{path}/findings",
                    {"item": codes[0], "severity": self.rng.choice(("minor", "major")),
                     "description": f"晨检记录缺签 ({uuid.uuid4().hex[:6]})"},
                    self._inspector(department, inspector), visit.visit_id)
                if self._settle(case, key, outcome, done_on_conflict=False):
                    visit.finding = None
                return outcome
            visit.finding = None
        unsigned = [d for d in departments if d not in visit.signed]
        if unsigned:
            department = self.rng.choice(unsigned)
            inspector = self.rng.choice(visit.inspectors[department])
            outcome, _ = self._send("sign_off", "inspection", "POST", f"{path}/sign-off", {},
                                    self._inspector(department, inspector), visit.visit_id)
            if self._settle(case, key, outcome):
                visit.signed.add(department)
            return outcome
        outcome, _ = self._send("publish_result", "inspection", "POST", f"{path}/publication",
                                {}, self._city_health(), visit.visit_id,
                                noop=lambda reply: reply.get("published") is False)
        if self._settle(case, key, outcome):
            visit.published = True
        return outcome

    # ---- subsidy ------------------------------------------------------------------------------
    def _subsidy_step(self, case: _Case, application: _Application) -> Outcome | None:
        step = f"subsidy:{application.program}"
        base = f"/api/institutions/{case.institution_id}/subsidy-applications"
        year = _today().year
        if application.state == "new":
            # only once the subsidy service has heard the institution is filed, affordable
            # (and, for months claimed, of the month's report): else the submission would
            # find it ineligible
            status, standing = self._get(f"/api/institutions/{case.institution_id}/"
                                         "subsidy-standing", self._operator(case))
            month = _today().strftime("%Y-%m")
            ready = (status == 200 and standing.get("status") == "filed"
                     and standing.get("affordable")
                     and (application.program != OPERATING
                          or month in (standing.get("enrolment") or {})))
            if not ready:
                with self._lock:
                    case.not_before[step] = time.monotonic() + 1.0
                return None
            body: dict[str, Any] = {"program": application.program, "year": year}
            if application.program == OPERATING:
                body["months"] = [month]
            headers = self._operator(case) if self.rng.random() < 0.7 else self._health()
            outcome, reply = self._send("draft_application", "subsidy", "POST", base, body,
                                        headers, case.institution_id)
            if outcome.accepted and reply.get("application_id"):
                application.application_id = reply["application_id"]
                application.state = "draft"
                outcome.aggregate_id = application.application_id
            # a retry after no answer drafts another: the first, if it landed, stays a draft
            self._settle(case, step, outcome, done_on_conflict=False)
            return outcome
        path = f"{base}/{application.application_id}"
        if application.state == "draft":
            outcome, reply = self._send("submit_application", "subsidy", "POST",
                                        f"{path}/submission", {}, self._operator(case),
                                        application.application_id)
            if self._settle(case, step, outcome):
                state = reply.get("state") if outcome.accepted else None
                application.state = state or "under_review"
            return outcome
        if application.state == "under_review":
            outcome, reply = self._send("review_application", "subsidy", "POST",
                                        f"{path}/review", {"approved": True},
                                        self._health(), application.application_id)
            if outcome.status == 409 and "budget" in (outcome.detail or ""):
                with self._lock:  # short: finance tops it up; the approval waits for it
                    self._top_up.update(BUDGETS)
            if self._settle(case, step, outcome, done_on_conflict=outcome.status == 409
                            and "budget" not in (outcome.detail or "")):
                application.state = "in_notice"
            return outcome
        return None

    # ---- workload-wide steps: plans, payment, budgets -------------------------------------
    def _global_actions(self, now: float) -> list[tuple[str, Action]]:
        found: list[tuple[str, Action]] = []
        busy = self._busy_global
        if "plan" not in busy and (self._plan is not None or self._filed_since_plan >= 4):
            if self._plan is None or self._plan.get("not_before", 0) <= now:
                found.append(("plan", self._plan_step))
        if "pay" not in busy and (self._batches or now >= self._next_payable_check):
            found.append(("pay", self._payment_step))
        if "top_up" not in busy and self._top_up:
            found.append(("top_up", self._top_up_step))
        return found

    def _plan_step(self) -> Outcome | None:
        """A joint random-inspection plan of the district: created, seeded, drawn; each visit
        drawn goes to its case."""
        health = self._city_health()
        plan = self._plan
        if plan is None:
            status, listing = self._get("/api/inspection/institutions", health,
                                        district=self.district)
            filed = [r for r in listing.get("institutions", []) if r.get("status") == "filed"]
            if status != 200 or len(filed) < 2:
                with self._lock:
                    self._filed_since_plan = 2  # look again after a couple more filings
                return None
            year = _today().year
            outcome, reply = self._send("create_plan", "inspection", "POST",
                                        "/api/inspection/plans", {
                                            "title": f"{self.district}{year}年联合双随机抽查",
                                            "period": str(year), "district": self.district,
                                            "departments": list(DEPARTMENTS),
                                            "target_count": min(3, len(filed)),
                                            "inspectors_per_department": 1}, health)
            with self._lock:
                if outcome.accepted and reply.get("plan_id"):
                    outcome.aggregate_id = reply["plan_id"]
                    self._plan = {"plan_id": reply["plan_id"], "stage": "created"}
                    self._filed_since_plan = 0
            return outcome
        plan_id = plan["plan_id"]
        if plan["stage"] == "created":
            outcome, _ = self._send("record_seed", "inspection", "POST",
                                    f"/api/inspection/plans/{plan_id}/seed", {}, health, plan_id)
            self._plan_settle(plan, outcome, "seeded")
            return outcome
        outcome, reply = self._send("draw_plan", "inspection", "POST",
                                    f"/api/inspection/plans/{plan_id}/draw", {}, health, plan_id)
        if self._plan_settle(plan, outcome, "drawn"):
            with self._lock:
                by_id = {c.institution_id: c for c in self.cases if not c.dead}
                for target in reply.get("targets", []) if outcome.accepted else []:
                    case = by_id.get(target.get("institution_id"))
                    if case is not None and target.get("visit_id"):
                        case.visits.append(self._new_visit(case, target["visit_id"],
                                                           target.get("inspectors") or {}))
                self._plan = None
        return outcome

    def _plan_settle(self, plan: dict[str, Any], outcome: Outcome, stage: str) -> bool:
        with self._lock:
            if outcome.accepted or (outcome.status == 409 and plan.get("uncertain")):
                plan.update(stage=stage, uncertain=False, attempts=0)
                return True
            plan["uncertain"] = outcome.unknown
            plan["attempts"] = plan.get("attempts", 0) + 1
            plan["not_before"] = time.monotonic() + min(0.5 * 1.6 ** plan["attempts"], 15)
            if plan["attempts"] >= MAX_ATTEMPTS:
                self._plan = None
            return False

    def _payment_step(self) -> Outcome | None:
        """A payment batch of what is payable, exported, and its results imported (one line in
        ten failed: payable again in the next batch)."""
        finance = self._finance()
        with self._lock:
            batch = self._batches[0] if self._batches else None
        if batch is None:
            self._next_payable_check = time.monotonic() + 3.0
            status, listing = self._get("/api/subsidy/applications", finance,
                                        state="payable", limit=1)
            if status != 200 or not listing.get("applications"):
                return None
            outcome, reply = self._send("create_batch", "subsidy", "POST",
                                        "/api/subsidy/batches",
                                        {"cycle": _today().strftime("%Y-%m")}, finance)
            if outcome.accepted and reply.get("batch_id"):
                outcome.aggregate_id = reply["batch_id"]
                lines = reply.get("lines") or []
                if isinstance(lines, dict):
                    lines = list(lines.values())
                with self._lock:
                    self._batches.append({
                        "batch_id": reply["batch_id"], "exported": False,
                        "lines": [line["application_id"] for line in lines
                                  if isinstance(line, dict) and line.get("application_id")]})
            return outcome
        batch_id = batch["batch_id"]
        if not batch["exported"]:
            outcome, _ = self._send("export_batch", "subsidy", "POST",
                                    f"/api/subsidy/batches/{batch_id}/export", None, finance,
                                    batch_id)
            if outcome.accepted or outcome.refused:
                batch["exported"] = True
            return outcome
        if not batch["lines"]:
            status, detail = self._get(f"/api/subsidy/batches/{batch_id}", finance)
            lines = detail.get("lines") if status == 200 else None
            if isinstance(lines, dict):
                lines = list(lines.values())
            batch["lines"] = [line["application_id"] for line in lines or []]
            if not batch["lines"]:
                return None
        results = []
        for application_id in batch["lines"]:
            if self.rng.random() < 0.1:
                results.append({"application_id": application_id, "status": "failed",
                                "reason": "账户信息有误"})
            else:
                results.append({"application_id": application_id, "status": "paid",
                                "reference": f"BANK-{uuid.uuid4().hex[:10]}"})
        batch.setdefault("results", results)  # a retry sends the same results
        outcome, _ = self._send("import_results", "subsidy", "POST",
                                f"/api/subsidy/batches/{batch_id}/results",
                                {"lines": batch["results"]}, finance, batch_id,
                                noop=lambda reply: not reply.get("recorded"))
        if not outcome.unknown:
            with self._lock:
                self._batches.remove(batch)
        return outcome

    def _top_up_step(self) -> Outcome | None:
        year = _today().year
        status, listing = self._get("/api/subsidy/budgets", self._finance(), year=year)
        with self._lock:
            funds = set(self._top_up)
        for row in listing.get("budgets", []) if status == 200 else []:
            if row.get("fund") in funds:
                outcome, _ = self._send("allocate_budget", "subsidy", "POST",
                                        "/api/subsidy/budgets/allocation", {
                                            "year": year, "fund": row["fund"],
                                            "allocated_fen": row["allocated_fen"] + TOP_UP_FEN,
                                            "document": f"{year}年追加预算 ({self.tag})"},
                                        self._finance())
                if not outcome.unknown:
                    with self._lock:
                        self._top_up.discard(row["fund"])
                return outcome
        with self._lock:
            self._top_up.clear()
        return None


class LoadDriver:
    """Threads calling :meth:`Workload.step` at ``rate`` commands a second in all, until
    :meth:`stop`. Behind schedule (slow answers), it catches up by at most a second's worth."""

    def __init__(self, workload: Workload, rate: float, threads: int = 4):
        if rate <= 0 or threads < 1:
            raise ValueError("rate must be positive and threads at least 1")
        self.workload, self.rate, self.threads = workload, rate, threads
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._lock = threading.Lock()
        self._next = 0.0
        self._threads: list[threading.Thread] = []
        self.sent = 0
        self.errors: list[str] = []

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("the driver is started already")
        self._stop.clear()
        self._next = time.monotonic()
        self._threads = [threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
                         for i in range(self.threads)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()
        for thread in self._threads:
            thread.join(timeout=TIMEOUT * 3)
        self._threads = []

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        with self._lock:
            self._next = max(self._next, time.monotonic())
        self._running.set()

    def _slot(self) -> float:
        with self._lock:
            now = time.monotonic()
            self._next = max(self._next, now - 1.0)
            slot = self._next
            self._next += 1.0 / self.rate
            return slot

    def _run(self) -> None:
        while not self._stop.is_set():
            self._running.wait()
            if self._stop.is_set():
                return
            wait = self._slot() - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            try:
                self.workload.step()
                with self._lock:
                    self.sent += 1
            except Exception as e:  # step() never raises; this is a bug of the workload
                with self._lock:
                    if len(self.errors) < 20:
                        self.errors.append(repr(e))


__all__ = ["LoadDriver", "Outcome", "Recorder", "Workload", "resident_id"]
