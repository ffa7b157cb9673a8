"""Subsidy commands and queries (the application layer): programs and their versions, budgets,
applications from draft to paid, payment batches, clawbacks and appeals.

Program, eligibility, entitlement, deduplication, payment cycle and recourse are kept apart (as
in OpenG2P / OpenSPP): a :class:`SubsidyProgram` version says what is paid and to whom; the
institution's :class:`InstitutionStanding` (from registration's and credit's events) is what it
is judged on; :func:`assess` decides each line and names every refusal's rule and fact;
:class:`ChildMonthClaim` and :class:`OneTimeGrant` markers make a child-month, an opening grant
and a level's award claimable once across every institution (their derived ids collide in the
event store); :class:`Budget` reserves on approval and commits on payment; a
:class:`PaymentBatch` is exported for the finance system and its results imported back.

Children are identified by resident ID number once, when claimed: the number is sealed with
the child's own key (:class:`PersonalDataVault`, kind ``child``) and found again through the
service's blind index; what is stored, published and returned is the child's ref. A child's
data is kept while a payment on it stands (会计档案管理办法: accounting records kept 30 years).
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from tuoyu_shared.application import ServiceApplication
from tuoyu_shared.calendar_cn import WorkingCalendar, default_calendar, shanghai_date
from tuoyu_shared.commands import Command, check_institution_id, parse
from tuoyu_shared.config import Settings, settings_for
from tuoyu_shared.context import command_context, current_context
from tuoyu_shared.envelope import to_json_value
from tuoyu_shared.errors import Conflict, Forbidden, NotFound
from tuoyu_shared.history import history_entries
from tuoyu_shared.logs import get_logger
from tuoyu_shared.people import PeopleCommands
from tuoyu_shared.personal_data import PersonalDataVault
from tuoyu_shared.validation import FieldError, ValidationFailed, birth_date_from_resident_id
from tuoyu_subsidy import commands, projections
from tuoyu_subsidy.contract import CONTRACT
from tuoyu_subsidy.domain import (
    ApplicationState,
    Budget,
    ChildMonthClaim,
    DomainRuleViolated,
    InstitutionStanding,
    OneTimeGrant,
    PaymentBatch,
    ProgramKind,
    SubsidyApplication,
    SubsidyProgram,
    assess,
    budget_id_for,
    child_month_id_for,
    one_time_grant_id_for,
    program_id_for,
    refusal,
    split_fen,
    standing_id_for,
)
from tuoyu_subsidy.programs import default_programs

log = get_logger("tuoyu.subsidy")

C = TypeVar("C", bound=Command)
T = TypeVar("T")

CHILD = "child"
OPERATOR = "institution"
SYSTEM = "system"
#: The days after a rejection or a clawback within which an appeal (复核) may be filed, and the
#: days the office has to decide it (行政复议法: 60 days to apply, 60 to decide).
APPEAL_WINDOW_DAYS = 60
APPEAL_DECISION_DAYS = 60
#: How often a budget command is tried again on fresh state before it gives up: enough that
#: an approval that fits is never lost to contention (each try is a few milliseconds).
BUDGET_RETRIES = 500
ACCOUNTING_RETENTION = ("会计档案管理办法 / a payment on the child's claim must be kept with the "
                        "accounting records (30 years)")


class ApplicationNotFound(NotFound):
    """No such application of this institution."""


def _read(model: type[C], data: Any) -> C:
    return parse(model, data if data is not None else {})


def _uuid(value: Any, field: str) -> UUID:
    try:
        if isinstance(value, str) and len(value) <= 100:
            return UUID(value)
    except ValueError:
        pass
    raise ValidationFailed([FieldError(field, "must be a UUID", "invalid_format")])


def _retrying(attempt: Callable[[], T], retries: int) -> T:
    for n in range(retries + 1):
        try:
            return attempt()
        except IntegrityError:
            if n == retries:
                raise Conflict("the records kept changing under this command: try again") \
                    from None
            time.sleep(random.uniform(0, 0.002 * min(n + 1, 20)))
    raise AssertionError("unreachable")


class SubsidyApp(PeopleCommands, ServiceApplication):
    name = "Subsidy"
    service_name = "subsidy"
    is_snapshotting_enabled = True
    snapshotting_intervals = {Budget: 200, InstitutionStanding: 200, SubsidyApplication: 100,
                              PaymentBatch: 200}
    views = projections.VIEW
    contract = CONTRACT

    def __init__(self, settings: Settings | None = None, env: dict[str, str] | None = None,
                 clock: Callable[[], datetime] | None = None,
                 calendar: WorkingCalendar | None = None,
                 vault: PersonalDataVault | None = None):
        super().__init__(settings or settings_for(self.service_name), env)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.calendar = calendar or default_calendar()
        self.vault = vault or PersonalDataVault.for_settings(self.settings)

    def close(self) -> None:
        self.vault.close()
        super().close()

    def today(self) -> date:
        return shanghai_date(self.clock())

    # ---- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _caller() -> tuple[str, str]:
        ctx = current_context()
        return ctx.actor, ctx.department

    def _get(self, aggregate_id: UUID) -> Any | None:
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def _application(self, application_id: Any, institution_id: Any | None = None
                     ) -> SubsidyApplication:
        aid = _uuid(application_id, "application_id")
        found = self._get(aid)
        if not isinstance(found, SubsidyApplication) or (
                institution_id is not None and found.institution_id != str(institution_id)):
            raise ApplicationNotFound(f"no application {application_id}"
                                      + (f" of institution {institution_id}"
                                         if institution_id else ""))
        return found

    def _program_version(self, code: str, year: int) -> tuple[SubsidyProgram, dict[str, Any]]:
        program = self._get(program_id_for(code))
        if not isinstance(program, SubsidyProgram):
            raise ValidationFailed([FieldError("program", f"no program {code}", "not_found")])
        version = program.current(year)
        if version is None:
            raise ValidationFailed([FieldError(
                "year", f"program {code} has no version for {year}", "not_found")])
        return program, version

    # ---- programs --------------------------------------------------------------------------
    def publish_program(self, data: dict[str, Any]) -> dict[str, Any]:
        command = _read(commands.PublishProgram, data)
        _, department = self._caller()
        if department not in ("health", "finance", SYSTEM):
            raise Forbidden("programs are published by the health commission or finance")
        return self._publish_program(command.data())

    def _publish_program(self, p: dict[str, Any]) -> dict[str, Any]:
        today = self.today()

        def attempt() -> dict[str, Any]:
            program = self._get(program_id_for(p["code"]))
            if program is None:
                program = SubsidyProgram(code=p["code"], kind=p["kind"], title=p["title"])
            elif program.kind != p["kind"]:
                raise ValidationFailed([FieldError(
                    "kind", f"program {p['code']} is a {program.kind}", "invalid_choice")])
            try:
                if program.same_as_latest(p["year"], p["terms"], p["document"]):
                    return {"code": p["code"], "version": len(program.versions),
                            "published": False}
                version = program.publish(p["year"], p["terms"], p["document"], today)
            except FieldError as e:
                raise ValidationFailed([e]) from None
            self.save(program)
            return {"code": p["code"], "version": version, "published": True}

        return _retrying(attempt, 30)

    def programs(self) -> list[dict[str, Any]]:
        return self.query("SELECT code, kind, title, year, version, terms FROM "
                           "subsidy_programs ORDER BY code, year, version")

    def default_programs_pending(self) -> bool:
        for p in default_programs():
            program = self._get(program_id_for(p["code"]))
            if program is None or not program.same_as_latest(p["year"], p["terms"],
                                                              p["document"]):
                return True
        return False

    def publish_default_programs(self) -> dict[str, Any]:
        published = []
        with command_context(actor="subsidy-migrate", department=SYSTEM):
            for p in default_programs():
                if self._publish_program(p)["published"]:
                    published.append(f"{p['code']} {p['year']}")
        return {"published": len(published), "programs": ", ".join(published)}

    # ---- budgets ---------------------------------------------------------------------------
    def _require_finance(self, doing: str) -> str:
        actor, department = self._caller()
        if department not in ("finance", SYSTEM):
            raise Forbidden(f"only finance may {doing}")
        return actor

    def open_budget(self, data: dict[str, Any]) -> dict[str, Any]:
        command = _read(commands.OpenBudget, data)
        self._require_finance("open a budget")
        if self._get(budget_id_for(command.year, command.fund)) is not None:
            raise DomainRuleViolated(f"the {command.year} {command.fund} budget is open "
                                     "already: allocate to change it", "open")
        budget = Budget(year=command.year, fund=command.fund,
                        allocated_fen=command.allocated_fen, document=command.document)
        try:
            self.save(budget)
        except IntegrityError:
            raise DomainRuleViolated(f"the {command.year} {command.fund} budget is open "
                                     "already", "open") from None
        return budget.as_dict()

    def allocate_budget(self, data: dict[str, Any]) -> dict[str, Any]:
        command = _read(commands.AllocateBudget, data)
        self._require_finance("change a budget")
        bid = budget_id_for(command.year, command.fund)
        if self._get(bid) is None:
            raise NotFound(f"no {command.year} {command.fund} budget")
        return self.update(bid, lambda b: (b.allocate(command.allocated_fen, command.document),
                                           b.as_dict())[1], retries=BUDGET_RETRIES)

    def budgets(self, year: int | None = None) -> list[dict[str, Any]]:
        """Each fund's budget (allocated, reserved, paid, free), and by program."""
        rows = self.query("SELECT year, fund, allocated_fen, reserved_fen, paid_fen, "
                           "allocated_fen - reserved_fen - paid_fen AS free_fen "
                           "FROM subsidy_budgets WHERE (%(y)s::int IS NULL OR year = %(y)s) "
                           "ORDER BY year, fund", {"y": year})
        by_program = self.query(
            "SELECT year, program, sum(amount_fen) FILTER (WHERE state IN ('in_notice', "
            "'payable', 'in_batch'))::bigint AS reserved_fen, sum(paid_fen - clawed_fen)"
            "::bigint AS paid_fen FROM subsidy_applications WHERE (%(y)s::int IS NULL OR "
            "year = %(y)s) GROUP BY year, program ORDER BY year, program", {"y": year})
        for row in rows:
            row["programs"] = [p for p in by_program if p["year"] == row["year"]]
        return rows

    def budget(self, year: int, fund: str) -> dict[str, Any]:
        found = self._get(budget_id_for(year, fund))
        if found is None:
            raise NotFound(f"no {year} {fund} budget")
        return found.as_dict()

    # ---- applications ----------------------------------------------------------------------
    def draft_application(self, institution_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """An institution's application under the program's version of the year (children by
        resident ID number, sealed at once)."""
        try:
            institution = check_institution_id(institution_id)
        except FieldError as e:
            raise ValidationFailed([FieldError("institution_id", e.reason, e.code)]) from None
        command = _read(commands.DraftApplication, data)
        program, version = self._program_version(command.program, command.year)
        kind = program.kind
        errors = []
        if kind == ProgramKind.OPERATING_GRANT and not command.months:
            errors.append(FieldError("months", "an operating grant claims months", "required"))
        if kind == ProgramKind.FEE_SUBSIDY and not command.children:
            errors.append(FieldError("children", "a fee subsidy claims children", "required"))
        if kind == ProgramKind.DEMONSTRATION_AWARD and command.level is None:
            errors.append(FieldError("level", "an award names the level", "required"))
        if kind != ProgramKind.FEE_SUBSIDY and command.children:
            errors.append(FieldError("children", f"a {kind} claims no children", "not_allowed"))
        if errors:
            raise ValidationFailed(errors)
        standing = self._get(standing_id_for(institution))
        children = []
        for claim in command.children:
            ref = self.vault.enrol(CHILD, claim.id_number)
            sealed = self.vault.seal_person(ref, {"id_number": claim.id_number})
            children.append({"child_ref": ref, "id_number": sealed["id_number"],
                             "month": claim.month, "birth_order": claim.birth_order,
                             "evidence": claim.evidence})
        actor, _ = self._caller()
        application = SubsidyApplication(
            institution_id=institution,
            institution_name=standing.name if standing is not None else "",
            district=standing.district if standing is not None else "",
            program=program.code, kind=kind, program_version=version["version"],
            year=command.year,
            request={"months": list(command.months), "level": command.level,
                     "children": children},
            terms=version["terms"], drafted_by=actor, drafted_on=self.today())
        self.save(application)
        return {"application_id": str(application.id), "institution_id": institution,
                "program": program.code, "program_version": version["version"],
                "children": [c["child_ref"] for c in children], "state": application.state}

    def _grant_key(self, application: SubsidyApplication) -> str | None:
        if application.kind == ProgramKind.OPENING_GRANT:
            return "opening"
        if application.kind == ProgramKind.DEMONSTRATION_AWARD:
            return f"award:{application.request['level']}"
        return None

    def submit_application(self, institution_id: str, application_id: str,
                           data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Submit: the automatic eligibility check, every line's amount or refusal, and the
        claims on each child-month and one-time grant taken (or refused: taken elsewhere)."""
        _read(commands.SubmitApplication, data)
        actor, _ = self._caller()
        today = self.today()

        def attempt() -> dict[str, Any]:
            app = self._application(application_id, institution_id)
            if app.state != ApplicationState.DRAFT.value:
                raise DomainRuleViolated(f"a {app.state} application cannot be submitted again",
                                         app.state)
            standing = self._get(standing_id_for(app.institution_id))
            children: dict[str, dict[str, Any]] = {}
            taken: dict[tuple[str, str], str] = {}
            markers: dict[tuple[str, str], Any] = {}
            unreadable = set()
            for claim in app.request.get("children") or []:
                ref = claim["child_ref"]
                number = self.vault.open(claim["id_number"])
                if number is None:
                    unreadable.add(ref)
                    children[ref] = {"birth_date": date(1900, 1, 1)}
                else:
                    children[ref] = {"birth_date": birth_date_from_resident_id(number)}
                marker = self._get(child_month_id_for(ref, claim["month"]))
                markers[(ref, claim["month"])] = marker
                if marker is not None and marker.held and marker.application_id != str(app.id):
                    taken[(ref, claim["month"])] = marker.institution_id
            assessment = assess(app.kind, app.terms, standing, app.request, children, taken)
            for line in assessment["lines"]:
                if line.get("child_ref") in unreadable and line["refusal"] is None:
                    line["refusal"] = refusal("child_data", "the child's data was erased")
                    line["amount_fen"] = 0
            month_markers: dict[str, Any] = {}
            if app.kind == ProgramKind.OPERATING_GRANT:  # each month paid once
                for line in assessment["lines"]:
                    marker = self._get(one_time_grant_id_for(app.institution_id,
                                                             f"operating:{line['month']}"))
                    month_markers[line["month"]] = marker
                    if line["refusal"] is None and marker is not None and marker.held and \
                            marker.application_id != str(app.id):
                        line["refusal"] = refusal(
                            "month_claimed", f"{line['month']} is claimed by application "
                                             f"{marker.application_id} already")
                        line["amount_fen"] = 0
            grant = self._grant_key(app)
            grant_marker = None
            if grant is not None:
                grant_marker = self._get(one_time_grant_id_for(app.institution_id, grant))
                if grant_marker is not None and grant_marker.held and \
                        grant_marker.application_id != str(app.id):
                    assessment["refusals"].append(refusal(
                        "one_time_grant", f"the {grant} grant of this institution is claimed "
                                          f"by application {grant_marker.application_id}"))
            accepted = [line for line in assessment["lines"] if line["refusal"] is None]
            assessment["amount_fen"] = sum(line["amount_fen"] for line in accepted)
            assessment["eligible"] = not assessment["refusals"] and assessment["amount_fen"] > 0
            if not assessment["eligible"]:
                assessment["amount_fen"] = 0
            funds = split_fen(assessment["amount_fen"], app.terms["fund_sources"]) \
                if assessment["eligible"] else {}
            app.submit(assessment, funds, actor, today)
            changed: list[Any] = [app]
            if assessment["eligible"]:
                for line in accepted:
                    if "child_ref" not in line:
                        continue
                    key = (line["child_ref"], line["month"])
                    marker = markers[key]
                    if marker is None:
                        changed.append(ChildMonthClaim(
                            child_ref=key[0], month=key[1], application_id=str(app.id),
                            institution_id=app.institution_id))
                    else:
                        marker.claim(str(app.id), app.institution_id)
                        changed.append(marker)
                for line in accepted:
                    if app.kind != ProgramKind.OPERATING_GRANT:
                        break
                    marker = month_markers[line["month"]]
                    if marker is None:
                        changed.append(OneTimeGrant(
                            institution_id=app.institution_id,
                            grant=f"operating:{line['month']}", application_id=str(app.id)))
                    else:
                        marker.claim(str(app.id), app.institution_id)
                        changed.append(marker)
                if grant is not None:
                    if grant_marker is None:
                        changed.append(OneTimeGrant(institution_id=app.institution_id,
                                                    grant=grant, application_id=str(app.id)))
                    else:
                        grant_marker.claim(str(app.id), app.institution_id)
                        changed.append(grant_marker)
            # a child claimed by two institutions for one month: refused here, and both told
            for line in assessment["lines"]:
                if line["refusal"] and line["refusal"]["rule"] == "child_claimed_elsewhere":
                    marker = markers[(line["child_ref"], line["month"])]
                    other = self._application(marker.application_id)
                    app.flag_duplicate(line["child_ref"], line["month"], str(other.id),
                                       other.institution_id)
                    other.flag_duplicate(line["child_ref"], line["month"], str(app.id),
                                         app.institution_id)
                    changed.append(other)
            self.save(*changed)
            return {"application_id": str(app.id), "state": app.state,
                    "eligible": assessment["eligible"], "amount_fen": app.amount_fen,
                    "funds": funds, "refusals": assessment["refusals"],
                    "lines": [{k: v for k, v in line.items() if k != "evidence"}
                              for line in assessment["lines"]]}

        return to_json_value(_retrying(attempt, 30))

    def _release_claims(self, app: SubsidyApplication) -> list[Any]:
        released = []
        for line in app.accepted_lines():
            marker = None
            if "child_ref" in line:
                marker = self._get(child_month_id_for(line["child_ref"], line["month"]))
            elif app.kind == ProgramKind.OPERATING_GRANT:
                marker = self._get(one_time_grant_id_for(app.institution_id,
                                                         f"operating:{line['month']}"))
            if marker is not None:
                marker.release(str(app.id))
                released.append(marker)
        grant = self._grant_key(app)
        if grant is not None:
            marker = self._get(one_time_grant_id_for(app.institution_id, grant))
            if marker is not None:
                marker.release(str(app.id))
                released.append(marker)
        return released

    def _budgets_of(self, app: SubsidyApplication) -> list[Budget]:
        found = []
        for fund in app.funds:
            budget = self._get(budget_id_for(app.year, fund))
            if budget is None:
                raise DomainRuleViolated(f"no {app.year} {fund} budget is open", "no_budget")
            found.append(budget)
        return found

    def review_application(self, institution_id: str, application_id: str,
                           data: dict[str, Any]) -> dict[str, Any]:
        """An officer's review: approved (its amount reserved in each fund's budget, the public
        notice opened) or rejected with reasons (its claims released)."""
        command = _read(commands.ReviewApplication, data)
        actor, department = self._caller()
        if department not in ("health", SYSTEM):
            raise Forbidden("applications are reviewed by the health commission")
        today = self.today()

        def attempt() -> dict[str, Any]:
            app = self._application(application_id, institution_id)
            if app.state != ApplicationState.UNDER_REVIEW.value:
                raise DomainRuleViolated(f"a {app.state} application cannot be reviewed",
                                         app.state)
            changed: list[Any] = [app]
            if command.approved:
                for budget in self._budgets_of(app):
                    budget.reserve(str(app.id), app.funds[budget.fund])
                    changed.append(budget)
                until = today + timedelta(days=app.terms["notice_days"])
                app.review(True, list(command.reasons), actor, today, until)
            else:
                app.review(False, list(command.reasons), actor, today, None)
                changed.extend(self._release_claims(app))
            self.save(*changed)
            return {"application_id": str(app.id), "state": app.state,
                    "notice_until": app.notice_until, "amount_fen": app.amount_fen}

        return to_json_value(_retrying(attempt, BUDGET_RETRIES))

    def record_objection(self, institution_id: str, application_id: str,
                         data: dict[str, Any]) -> dict[str, Any]:
        command = _read(commands.RecordObjection, data)
        today = self.today()
        app = self._application(application_id, institution_id)
        objection = self.update(app.id, lambda a: a.record_objection(command.text, today))
        return {"application_id": str(app.id), "objection_id": objection}

    def decide_objection(self, institution_id: str, application_id: str,
                         data: dict[str, Any]) -> dict[str, Any]:
        command = _read(commands.DecideObjection, data)
        actor, department = self._caller()
        if department not in ("health", SYSTEM):
            raise Forbidden("objections are decided by the health commission")
        today = self.today()

        def attempt() -> dict[str, Any]:
            app = self._application(application_id, institution_id)
            app.decide_objection(command.objection_id, command.upheld, command.reason, actor,
                                 today)
            changed: list[Any] = [app]
            if command.upheld:
                for budget in self._budgets_of(app):
                    budget.release(str(app.id))
                    changed.append(budget)
                changed.extend(self._release_claims(app))
            self.save(*changed)
            return {"application_id": str(app.id), "state": app.state}

        return _retrying(attempt, BUDGET_RETRIES)

    def close_notices(self) -> dict[str, Any]:
        """The timer: each application whose public notice is over, with no objection open,
        becomes payable."""
        today = self.today()
        self.catch_up_views()
        rows = self.query("SELECT application_id::text FROM subsidy_applications WHERE "
                           "state = 'in_notice' AND notice_until < %s ORDER BY notice_until",
                           (today,))
        closed, failed = [], []
        for row in rows:
            try:
                if self.update(UUID(row["application_id"]), lambda a: a.close_notice(today)):
                    closed.append(row["application_id"])
            except Exception as e:
                log.exception("notice.close_failed", aggregate_id=row["application_id"])
                failed.append({"application_id": row["application_id"], "error": repr(e)})
        return {"today": today.isoformat(), "closed": closed, "failed": failed}

    # ---- payment ---------------------------------------------------------------------------
    def create_batch(self, data: dict[str, Any]) -> dict[str, Any]:
        """The payable applications gathered into a payment batch of the cycle (each in one
        open batch at most)."""
        command = _read(commands.CreateBatch, data)
        actor = self._require_finance("create payment batches")
        today = self.today()
        self.catch_up_views()
        candidates = [r["application_id"] for r in self.query(
            "SELECT application_id::text FROM subsidy_applications WHERE state = 'payable' "
            "ORDER BY application_id")]

        def attempt() -> dict[str, Any]:
            apps = [a for a in (self._application(c) for c in candidates)
                    if a.state == ApplicationState.PAYABLE.value]
            if not apps:
                raise DomainRuleViolated("no application is payable", "empty")
            lines = [{"application_id": str(a.id), "institution_id": a.institution_id,
                      "institution_name": a.institution_name, "program": a.program,
                      "amount_fen": a.amount_fen, "funds": a.funds} for a in apps]
            batch = PaymentBatch(cycle=command.cycle, lines=lines,
                                 total_fen=sum(line["amount_fen"] for line in lines),
                                 created_by=actor, created_on=today)
            for a in apps:
                a.add_to_batch(str(batch.id))
            self.save(batch, *apps)
            return batch.as_dict()

        return to_json_value(_retrying(attempt, 30))

    def _batch(self, batch_id: str) -> PaymentBatch:
        found = self._get(_uuid(batch_id, "batch_id"))
        if not isinstance(found, PaymentBatch):
            raise NotFound(f"no payment batch {batch_id}")
        return found

    def payment_batch(self, batch_id: str) -> dict[str, Any]:
        return to_json_value(self._batch(batch_id).as_dict())

    def batches(self, cycle: str | None = None) -> list[dict[str, Any]]:
        return self.query("SELECT batch_id::text, cycle, total_fen, lines, paid, failed, "
                           "closed, created_on FROM subsidy_batches WHERE (%(c)s::text IS NULL "
                           "OR cycle = %(c)s) ORDER BY created_on DESC, batch_id",
                           {"c": cycle})

    def export_batch(self, batch_id: str) -> dict[str, Any]:
        """The file for the finance system: CSV and JSON lines with a manifest (count, total
        in fen, the CSV's SHA-256); the export is recorded on the batch."""
        actor = self._require_finance("export payment batches")
        batch = self._batch(batch_id)
        rows = [{"application_id": x["application_id"], "institution_id": x["institution_id"],
                 "institution_name": x["institution_name"], "program": x["program"],
                 "amount_fen": x["amount_fen"],
                 "funds": ";".join(f"{k}:{v}" for k, v in sorted(x["funds"].items()))}
                for x in batch.lines.values()]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["application_id"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = out.getvalue()
        sha = hashlib.sha256(text.encode()).hexdigest()
        manifest = {"batch_id": str(batch.id), "cycle": batch.cycle, "lines": len(rows),
                    "total_fen": batch.total_fen, "csv_sha256": sha,
                    "currency": "CNY (fen)"}
        self.update(batch.id, lambda b: b.record_export(sha, actor, self.today()))
        return {"manifest": manifest, "csv": text, "json": rows}

    def import_results(self, batch_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """The finance system's results, line by line: paid (the reservation committed), failed
        or returned (payable again, in the next cycle). An import sent twice changes
        nothing."""
        command = _read(commands.ImportResults, data)
        self._require_finance("import payment results")
        batch = self._batch(batch_id)
        errors = [FieldError(f"lines[{i}].application_id",
                             f"the batch has no line for application {line.application_id}",
                             "not_found")
                  for i, line in enumerate(command.lines)
                  if line.application_id not in batch.lines]
        if errors:
            raise ValidationFailed(errors)
        today = self.today()
        recorded, repeated = 0, 0
        for line in command.lines:
            def attempt(line: Any = line) -> bool:
                b = self._batch(batch_id)
                app = self._application(line.application_id)
                if not b.record_result(line.application_id, line.status, line.reason or "",
                                       line.reference or "", today):
                    return False
                app.record_payment(str(b.id), line.status, line.reason or "",
                                   line.reference or "", today)
                changed: list[Any] = [b, app]
                if line.status == "paid":
                    for budget in self._budgets_of(app):
                        budget.commit(str(app.id))
                        changed.append(budget)
                self.save(*changed)
                return True

            if _retrying(attempt, BUDGET_RETRIES):
                recorded += 1
            else:
                repeated += 1
        after = self._batch(batch_id)
        return {"batch_id": batch_id, "recorded": recorded, "already_recorded": repeated,
                "closed": after.closed, "results": after.as_dict()["results"]}

    # ---- clawback and appeals --------------------------------------------------------------
    def claw_back(self, institution_id: str, application_id: str,
                  data: dict[str, Any]) -> dict[str, Any]:
        """追回 an amount paid (``fraud`` is published for credit); the amount goes back to the
        budgets it was paid from."""
        command = _read(commands.ClawBack, data)
        actor, department = self._caller()
        if department not in ("health", "finance", SYSTEM):
            raise Forbidden("clawbacks are decided by the health commission or finance")
        today = self.today()

        def attempt() -> dict[str, Any]:
            app = self._application(application_id, institution_id)
            clawback = app.claw_back(command.amount_fen, command.reason, command.details, actor,
                                     today)
            changed: list[Any] = [app]
            shares = split_fen(command.amount_fen, app.terms["fund_sources"])
            for budget in self._budgets_of(app):
                budget.give_back(str(app.id), shares.get(budget.fund, 0))
                changed.append(budget)
            self.save(*changed)
            return {"application_id": str(app.id), "clawback_id": clawback,
                    "amount_fen": command.amount_fen, "clawed_fen": app.clawed_fen}

        return _retrying(attempt, BUDGET_RETRIES)

    def file_appeal(self, institution_id: str, application_id: str,
                    data: dict[str, Any]) -> dict[str, Any]:
        """复核 against the rejection or a clawback, within the window; decided by a date."""
        command = _read(commands.FileAppeal, data)
        today = self.today()
        app = self._application(application_id, institution_id)
        if command.against == "rejection":
            since = (app.rejection or {}).get("on") or getattr(app, "submitted_on", today)
        else:
            since = app.clawbacks.get(command.clawback_id or "", {}).get("on", today)
        appeal = self.update(app.id, lambda a: a.file_appeal(
            command.against, command.clawback_id, command.grounds, today,
            since + timedelta(days=APPEAL_WINDOW_DAYS),
            today + timedelta(days=APPEAL_DECISION_DAYS)))
        return {"application_id": str(app.id), "appeal_id": appeal,
                "decide_by": (today + timedelta(days=APPEAL_DECISION_DAYS)).isoformat()}

    def decide_appeal(self, institution_id: str, application_id: str,
                      data: dict[str, Any]) -> dict[str, Any]:
        command = _read(commands.DecideAppeal, data)
        actor, department = self._caller()
        if department not in ("health", "finance", SYSTEM):
            raise Forbidden("appeals are decided by the health commission or finance")
        today = self.today()

        def attempt() -> dict[str, Any]:
            app = self._application(application_id, institution_id)
            appeal = app.decide_appeal(command.appeal_id, command.upheld, command.reason, actor,
                                       today)
            changed: list[Any] = [app]
            if command.upheld and appeal["against"] == "clawback":
                clawback = app.clawbacks[appeal["clawback_id"]]
                shares = split_fen(clawback["amount_fen"], app.terms["fund_sources"])
                for budget in self._budgets_of(app):
                    budget.give_back(str(app.id), -shares.get(budget.fund, 0))
                    changed.append(budget)
            if command.upheld and appeal["against"] == "rejection":
                for line in app.accepted_lines():  # its claims taken again, if still free
                    if "child_ref" in line:
                        marker = self._get(child_month_id_for(line["child_ref"], line["month"]))
                        if marker is not None and not marker.claim(str(app.id),
                                                                   app.institution_id):
                            raise DomainRuleViolated(
                                f"the child {line['child_ref']} is claimed for {line['month']} "
                                f"by another application since: the appeal cannot be upheld "
                                "as it stands", app.state)
                        if marker is not None:
                            changed.append(marker)
            self.save(*changed)
            return {"application_id": str(app.id), "state": app.state,
                    "appeal": app.appeals[command.appeal_id]}

        return to_json_value(_retrying(attempt, BUDGET_RETRIES))

    # ---- reactions: the institution's standing ---------------------------------------------
    def standing_for(self, institution_id: str) -> InstitutionStanding:
        """The institution's standing, opened if new (within a consumer's batch, the same
        object for every step)."""
        with self.batch() as seen:
            sid = standing_id_for(institution_id)
            try:
                return self.repository.get(sid)
            except AggregateNotFoundError:
                standing = InstitutionStanding(institution_id=str(UUID(str(institution_id))))
                seen[sid] = standing
                return standing

    def standing(self, institution_id: str) -> dict[str, Any]:
        try:
            institution = check_institution_id(institution_id)
        except FieldError as e:
            raise ValidationFailed([FieldError("institution_id", e.reason, e.code)]) from None
        found = self._get(standing_id_for(institution))
        if found is None:
            raise NotFound(f"the subsidy service has not heard of institution {institution}")
        return to_json_value(found.as_dict())

    # ---- queries ---------------------------------------------------------------------------
    def application(self, institution_id: str, application_id: str) -> dict[str, Any]:
        app = self._application(application_id, institution_id)
        out = app.as_dict()
        for claim in out["request"].get("children") or []:
            claim.pop("id_number", None)  # sealed; the ref is what is shown
        out["history"] = history_entries(self.repository.event_store.get(app.id))
        return to_json_value(out)

    def applications(self, data: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Applications by state, with their deadlines (notice end, appeal decision)."""
        q = _read(commands.ApplicationsQuery, data)
        return self.query(
            "SELECT application_id::text, institution_id::text, institution_name, district, "
            "program, kind, year, state, amount_fen, paid_fen, clawed_fen, submitted_on, "
            "notice_until, appeal_decide_by, updated_on FROM subsidy_applications "
            "WHERE (%(state)s::text IS NULL OR state = %(state)s) "
            "AND (%(inst)s::text IS NULL OR institution_id::text = %(inst)s) "
            "AND (%(program)s::text IS NULL OR program = %(program)s) "
            "AND (%(district)s::text IS NULL OR district = %(district)s) "
            "ORDER BY coalesce(notice_until, appeal_decide_by, updated_on), application_id "
            "LIMIT %(limit)s OFFSET %(offset)s",
            {"state": q.state, "inst": q.institution_id, "program": q.program,
             "district": q.district, "limit": q.limit, "offset": q.offset})

    def ledger(self, data: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Money per institution, program or child ref: each approval, payment, clawback and
        reversal, in fen."""
        q = _read(commands.LedgerQuery, data)
        return self.query(
            "SELECT entry, application_id::text, institution_id::text, program, year, "
            "child_ref, month, amount_fen, recorded_on FROM subsidy_ledger "
            "WHERE (%(inst)s::text IS NULL OR institution_id::text = %(inst)s) "
            "AND (%(program)s::text IS NULL OR program = %(program)s) "
            "AND (%(child)s::text IS NULL OR child_ref = %(child)s) "
            "AND (%(year)s::int IS NULL OR year = %(year)s) "
            "ORDER BY id LIMIT %(limit)s OFFSET %(offset)s",
            {"inst": q.institution_id, "program": q.program, "child": q.child_ref,
             "year": q.year, "limit": q.limit, "offset": q.offset})

    # ---- people's rights (tuoyu_shared.people) ---------------------------------------------
    def retention_of(self, person_ref: str, kind: str) -> str | None:
        # the ledger brought up to the log first: a payment just recorded is counted
        self.catch_up_views()
        rows = self.query("SELECT 1 FROM subsidy_ledger WHERE child_ref = %s AND entry = "
                           "'paid_child' LIMIT 1", (person_ref,))
        return ACCOUNTING_RETENTION if rows else None

    def daily(self) -> dict[str, Any]:
        return {"close_notices": self.close_notices()}


__all__ = ["ApplicationNotFound", "SubsidyApp"]
