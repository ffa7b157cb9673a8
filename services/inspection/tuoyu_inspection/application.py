"""Inspection commands and queries (the application layer): joint supervision visits (联合督导)
under 双随机、一公开, from the plan's draw to the public result.

Every command reads its whole input first (its model in :mod:`tuoyu_inspection.commands`;
:class:`ValidationFailed` names each bad field and writes nothing), then loads the aggregate,
lets the domain decide and saves with optimistic concurrency. Who acts comes from the command
context (the verified token): an inspector records, signs and re-inspects as themself, for
their own department only (a fire officer signs fire items); an institution's operator sees
their own visits once begun (a random visit is not announced) and answers rectification
orders with evidence.

The clock, the working-day calendar and the rules (:mod:`tuoyu_inspection.domain.rules`) live
here, not in the domain; dates are Asia/Shanghai calendar dates. Evidence files are stored by
their SHA-256 in a blob store (:mod:`tuoyu_shared.blobs`): the events name the hash only.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from tuoyu_inspection import commands, projections
from tuoyu_inspection.checklists import default_checklists
from tuoyu_inspection.contract import CONTRACT
from tuoyu_inspection.domain import (
    ChecklistTemplate,
    CleanInspectionPeriod,
    DomainRuleViolated,
    EscalationStep,
    InspectionPlan,
    InspectionRules,
    InspectorRoster,
    SupervisionVisit,
    Trigger,
    VisitKind,
    VisitStatus,
    clean_period_id_for,
    departments_checked,
    draw_inspectors,
    items_of,
    period_bounds,
    plan_visit_id_for,
    roster_id_for,
    template_id_for,
)
from tuoyu_shared.application import ServiceApplication
from tuoyu_shared.blobs import BlobStore, blob_store_from_env
from tuoyu_shared.calendar_cn import WorkingCalendar, default_calendar, shanghai_date
from tuoyu_shared.commands import Command, check_institution_id, parse
from tuoyu_shared.config import Settings, settings_for
from tuoyu_shared.context import command_context, current_context, current_principal
from tuoyu_shared.envelope import to_json_value
from tuoyu_shared.errors import Forbidden, NotFound
from tuoyu_shared.history import history_entries
from tuoyu_shared.logs import get_logger
from tuoyu_shared.validation import FieldError, ValidationFailed, refusing_field_errors

log = get_logger("tuoyu.inspection")

C = TypeVar("C", bound=Command)

#: The department of an institution's operator (:data:`tuoyu_shared.auth.ROLES`).
OPERATOR = "institution"
#: The department of calls from inside the system (timers, migrations, tools).
SYSTEM = "system"
#: The department that leads joint supervision (卫生健康部门) and may plan for the others.
LEAD = "health"
DEFAULT_TEMPLATE = "joint-supervision"
#: Institutions a plan may draw: operating (filed), or suspended for rectification.
DRAWABLE = ("filed", "suspended")


class VisitNotFound(NotFound):
    """No such visit of this institution."""


class PlanNotFound(NotFound):
    """No such inspection plan."""


class InstitutionUnknown(NotFound):
    """The service has not heard of this institution from registration (yet)."""


def _read(model: type[C], data: Any) -> C:
    return parse(model, data if data is not None else {})


def _uuid(value: Any, field: str) -> UUID:
    try:
        return UUID(str(value)) if isinstance(value, (str, UUID)) and len(str(value)) <= 100 \
            else UUID("x")
    except ValueError:
        raise ValidationFailed([FieldError(field, "must be a UUID", "invalid_format")]) \
            from None


class InspectionApplication(ServiceApplication):
    name = "Inspection"
    service_name = "inspection"
    is_snapshotting_enabled = True
    snapshotting_intervals = {SupervisionVisit: 100, InspectorRoster: 100,
                              ChecklistTemplate: 10}
    views = projections.VIEW
    contract = CONTRACT

    def __init__(self, settings: Settings | None = None, env: dict[str, str] | None = None,
                 clock: Callable[[], datetime] | None = None,
                 calendar: WorkingCalendar | None = None,
                 rules: InspectionRules | None = None,
                 blobs: BlobStore | None = None):
        """Built by the composition root (:mod:`tuoyu_inspection.bootstrap`), which reads the
        configuration (the rules file, the blob store)."""
        self.rules = rules or InspectionRules()
        super().__init__(settings or settings_for(self.service_name), env)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.calendar = calendar or default_calendar()
        self.blobs = blobs or blob_store_from_env(self.service_name)

    def today(self) -> date:
        return shanghai_date(self.clock())

    # ---- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _caller() -> tuple[str, str]:
        ctx = current_context()
        return ctx.actor, ctx.department

    def _require_department(self, departments: Sequence[str], doing: str) -> tuple[str, str]:
        actor, department = self._caller()
        if department not in (*departments, SYSTEM):
            raise Forbidden(f"an officer of {department} may not {doing} (departments: "
                            f"{', '.join(departments)})")
        return actor, department

    @staticmethod
    def _require_district(district: str, doing: str) -> None:
        """A district officer acts in their own district only (city-wide callers, and calls
        from inside the system, anywhere). The gateway checks what a path or body names; this
        checks what only the service knows (a plan's district)."""
        principal = current_principal()
        if principal is not None and not principal.city_wide and principal.district != district:
            raise Forbidden(f"a {principal.district} officer may not {doing} of {district}")

    def _get(self, aggregate_id: UUID, missing: NotFound) -> Any:
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise missing from None

    def _visit_id(self, institution_id: Any, visit_id: Any) -> tuple[str, UUID]:
        errors = []
        try:
            institution = check_institution_id(institution_id)
        except FieldError as e:
            errors.append(FieldError("institution_id", e.reason, e.code))
            institution = ""
        try:
            visit = UUID(str(visit_id)) if isinstance(visit_id, str) and len(visit_id) <= 100 \
                else None
        except ValueError:
            visit = None
        if visit is None:
            errors.append(FieldError("visit_id", "must be a UUID", "invalid_format"))
        if errors:
            raise ValidationFailed(errors)
        return institution, visit  # type: ignore[return-value]

    def _visible(self, visit: Any, institution: str, visit_id: Any) -> SupervisionVisit:
        """The visit, if it is this institution's and the caller may see it."""
        missing = VisitNotFound(f"institution {institution} has no visit {visit_id}")
        if not isinstance(visit, SupervisionVisit) or visit.institution_id != institution:
            raise missing
        _, department = self._caller()
        if department == OPERATOR and visit.status in (VisitStatus.SCHEDULED.value,
                                                       VisitStatus.CANCELLED.value):
            raise missing  # a random visit is not announced to the institution
        return visit

    def _load_visit(self, institution_id: Any, visit_id: Any) -> SupervisionVisit:
        institution, vid = self._visit_id(institution_id, visit_id)
        visit = self._get(vid, VisitNotFound(f"institution {institution} has no visit "
                                             f"{visit_id}"))
        return self._visible(visit, institution, visit_id)

    def _update_visit(self, institution_id: Any, visit_id: Any,
                      command: Callable[[SupervisionVisit], Any]) -> Any:
        """Load the visit once, check it is the institution's, run the command, save."""
        institution, vid = self._visit_id(institution_id, visit_id)
        try:
            return self.update(vid, lambda v: command(self._visible(v, institution, visit_id)))
        except AggregateNotFoundError:
            raise VisitNotFound(f"institution {institution} has no visit {visit_id}") from None

    def _institution(self, institution_id: str) -> dict[str, Any]:
        rows = self.query(
            "SELECT d.institution_id::text, d.name, d.district, d.kind, d.status, "
            "COALESCE(g.grade, %s) AS grade, g.grade IS NOT NULL AS graded "
            "FROM institution_directory d LEFT JOIN institution_grades g USING (institution_id) "
            "WHERE d.institution_id = %s", (self.rules.ungraded, institution_id))
        if not rows:
            raise InstitutionUnknown(
                f"inspection has not heard of institution {institution_id} from registration")
        return rows[0]

    def _checklist(self, template_id: str, version: int | None) -> dict[str, Any]:
        template = self._get(template_id_for(template_id),
                             NotFound(f"no checklist template {template_id}"))
        try:
            return template.version_of(version)
        except FieldError as e:
            raise ValidationFailed([e]) from None

    def _deadline(self, on: date) -> Callable[[str], tuple[date, int]]:
        def deadline_of(severity: str) -> tuple[date, int]:
            days = self.rules.rectification_working_days[severity]
            return self.calendar.add_working_days(on, days), days

        return deadline_of

    def _publish_by(self, on: date) -> date:
        return self.calendar.add_working_days(on, self.rules.publication_working_days)

    # ---- checklists ------------------------------------------------------------------------
    def publish_checklist(self, data: dict[str, Any]) -> dict[str, Any]:
        """A new version of a checklist template (创建 on first publication)."""
        command = _read(commands.PublishChecklist, data)
        self._require_department((LEAD,), "publish checklists")
        return self._publish_checklist(command.data())

    @refusing_field_errors
    def _publish_checklist(self, template: dict[str, Any]) -> dict[str, Any]:
        template_id = template["template_id"]
        areas = [{**area, "items": [{k: v for k, v in item.items() if v is not None}
                                    for item in area["items"]]} for area in template["areas"]]
        today = self.today()
        for _ in range(30):
            try:
                found = self.repository.get(template_id_for(template_id))
            except AggregateNotFoundError:
                found = ChecklistTemplate(template_id)
            if found.same_as_latest(template["title"], template["source"], areas):
                return {"template_id": template_id, "version": len(found.versions),
                        "published": False}
            version = found.publish(template["title"], template["source"], areas, today)
            try:
                self.save(found)
                return {"template_id": template_id, "version": version, "published": True}
            except IntegrityError:
                continue
        raise DomainRuleViolated("the template kept changing under this command: try again")

    def checklist(self, template_id: str, version: int | None = None) -> dict[str, Any]:
        if not isinstance(template_id, str) or not template_id or len(template_id) > 60:
            raise ValidationFailed([FieldError("template_id", "is required", "required")])
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise ValidationFailed([FieldError("version", "must be a whole number",
                                               "invalid_type")])
        return to_json_value(self._checklist(template_id, version))

    def default_checklists_pending(self) -> bool:
        for template in default_checklists():
            try:
                found = self.repository.get(template_id_for(template["template_id"]))
            except AggregateNotFoundError:
                return True
            if not found.same_as_latest(template["title"], template["source"],
                                        template["areas"]):
                return True
        return False

    def publish_default_checklists(self) -> dict[str, Any]:
        published = []
        with command_context(actor="inspection-migrate", department=SYSTEM):
            for template in default_checklists():
                result = self._publish_checklist({"template_id": template["template_id"],
                                                  "title": template["title"],
                                                  "source": template["source"],
                                                  "areas": template["areas"]})
                if result["published"]:
                    published.append(f"{result['template_id']} v{result['version']}")
        return {"published": len(published), "templates": ", ".join(published)}

    # ---- rosters ---------------------------------------------------------------------------
    def _update_roster(self, department: str, command: Callable[[InspectorRoster], Any]) -> Any:
        for _ in range(30):
            try:
                roster = self.repository.get(roster_id_for(department))
            except AggregateNotFoundError:
                roster = InspectorRoster(department)
            result = command(roster)
            try:
                self.save(roster)
                return result
            except IntegrityError:
                continue
        raise DomainRuleViolated("the roster kept changing under this command: try again")

    def enrol_inspector(self, data: dict[str, Any]) -> dict[str, Any]:
        """Put an officer on their department's roster (the draw picks from it)."""
        command = _read(commands.EnrolInspector, data)
        self._require_department((command.department,), "manage another department's roster")
        today = self.today()
        added = self._update_roster(command.department,
                                    lambda r: r.enrol(command.inspector, today))
        return {"department": command.department, "inspector": command.inspector,
                "enrolled": added}

    def withdraw_inspector(self, data: dict[str, Any]) -> dict[str, Any]:
        command = _read(commands.WithdrawInspector, data)
        self._require_department((command.department,), "manage another department's roster")
        today = self.today()
        self._update_roster(command.department,
                            lambda r: r.withdraw(command.inspector, command.reason, today))
        return {"department": command.department, "inspector": command.inspector,
                "withdrawn": True}

    def declare_conflict(self, data: dict[str, Any]) -> dict[str, Any]:
        """回避: the inspector is never drawn for this institution."""
        command = _read(commands.DeclareConflict, data)
        self._require_department((command.department,), "manage another department's roster")
        today = self.today()
        added = self._update_roster(command.department, lambda r: r.declare_conflict(
            command.inspector, command.institution_id, command.reason, today))
        return {"department": command.department, "inspector": command.inspector,
                "institution_id": command.institution_id, "declared": added}

    def roster(self, department: str) -> dict[str, Any]:
        if department not in commands.DEPARTMENTS:
            raise ValidationFailed([FieldError(
                "department", f"must be one of {', '.join(commands.DEPARTMENTS)}",
                "invalid_choice")])
        try:
            return to_json_value(self.repository.get(roster_id_for(department)).as_dict())
        except AggregateNotFoundError:
            return {"department": department, "inspectors": [], "conflicts": []}

    def _rosters(self, departments: Sequence[str]) -> tuple[dict[str, list[str]],
                                                            list[list[str]]]:
        rosters: dict[str, list[str]] = {}
        conflicts: list[list[str]] = []
        for department in departments:
            try:
                roster = self.repository.get(roster_id_for(department))
            except AggregateNotFoundError:
                rosters[department] = []
                continue
            rosters[department] = sorted(roster.inspectors)
            conflicts.extend(roster.conflict_pairs())
        return rosters, conflicts

    # ---- plans -----------------------------------------------------------------------------
    def create_plan(self, data: dict[str, Any]) -> dict[str, Any]:
        """抽查计划 of a period. Then record its seed, then draw."""
        command = _read(commands.CreatePlan, data)
        actor, department = self._require_department((*command.departments, LEAD),
                                                     "plan for these departments")
        checklist = self._checklist(command.template_id, command.template_version)
        try:
            departments_checked(command.departments, checklist)
        except FieldError as e:
            raise ValidationFailed([e]) from None
        starts_on, ends_on = period_bounds(command.period)
        plan = InspectionPlan(
            title=command.title, period=command.period, starts_on=starts_on, ends_on=ends_on,
            departments=list(command.departments), district=command.district,
            target_count=command.target_count,
            inspectors_per_department=command.inspectors_per_department,
            template_id=command.template_id, template_version=checklist["version"],
            weights={g: self.rules.weight_of(g) for g in ("A", "B", "C", "D")},
            ungraded=self.rules.ungraded, created_by=actor, planned_on=self.today())
        self.save(plan)
        return to_json_value(plan.as_dict())

    def _plan(self, plan_id: Any) -> InspectionPlan:
        pid = _uuid(plan_id, "plan_id")
        plan = self._get(pid, PlanNotFound(f"no inspection plan {plan_id}"))
        if not isinstance(plan, InspectionPlan):
            raise PlanNotFound(f"no inspection plan {plan_id}")
        return plan

    def record_seed(self, plan_id: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record the draw's seed, before the draw (generated here unless given)."""
        command = _read(commands.RecordSeed, data)
        plan = self._plan(plan_id)
        self._require_department((*plan.departments, LEAD), "seed this plan")
        self._require_district(plan.district, "seed the plan")
        seed = command.seed or secrets.token_hex(16)
        source = "given" if command.seed else "generated"
        today = self.today()
        self.update(plan.id, lambda p: p.record_seed(seed, source, today))
        return {"plan_id": str(plan.id), "seed": seed, "source": source}

    def draw_plan(self, plan_id: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Draw the targets (weighted by credit grade) and their inspectors (without the
        conflicted), and schedule a visit for each, in one transaction."""
        _read(commands.DrawPlan, data)
        plan = self._plan(plan_id)
        self._require_department((*plan.departments, LEAD), "draw this plan")
        self._require_district(plan.district, "draw the plan")
        checklist = self._checklist(plan.template_id, plan.template_version)
        frame_rows = self.query(
            "SELECT d.institution_id::text AS institution_id, d.name, d.district, "
            "COALESCE(g.grade, %s) AS grade FROM institution_directory d "
            "LEFT JOIN institution_grades g USING (institution_id) "
            "WHERE d.status = ANY(%s) AND (%s = '*' OR d.district = %s) "
            "ORDER BY d.institution_id", (plan.ungraded, list(DRAWABLE), plan.district,
                                          plan.district))
        names = {r["institution_id"]: r for r in frame_rows}
        frame = [[r["institution_id"], r["grade"]] for r in frame_rows]
        rosters, conflicts = self._rosters(plan.departments)
        today = self.today()

        def draw(p: InspectionPlan) -> tuple[list[dict[str, Any]], list[Any]]:
            targets = p.draw(frame, rosters, conflicts,
                             lambda institution_id: plan_visit_id_for(p.id, institution_id), today)
            visits = []
            for target in targets:
                row = names[target["institution_id"]]
                visits.append(SupervisionVisit(
                    institution_id=target["institution_id"],
                    institution_name=row["name"], district=row["district"],
                    kind=VisitKind.RANDOM.value, trigger=Trigger.PLAN.value,
                    reference=p.title, plan_id=str(p.id), period=p.period,
                    departments=list(p.departments), inspectors=target["inspectors"],
                    checklist=checklist, scheduled_on=today, draw_seed=p.seed))
            return targets, visits

        targets = self.update_creating(plan.id, draw)
        log.info("plan.drawn", aggregate_id=str(plan.id), frame=len(frame),
                 targets=len(targets))
        return {"plan_id": str(plan.id), "frame_size": len(frame), "targets": targets}

    def plan(self, plan_id: str) -> dict[str, Any]:
        plan = self._plan(plan_id)
        self._require_district(plan.district, "read the plan")
        out = plan.as_dict()
        out["progress"] = self.query(
            "SELECT status, count(*)::int AS visits FROM inspection_visits WHERE plan_id = %s "
            "GROUP BY status ORDER BY status", (str(plan.id),))
        return to_json_value(out)

    def verify_draw(self, plan_id: str) -> dict[str, Any]:
        """An auditor's check: the draw run again from what the plan recorded."""
        plan = self._plan(plan_id)
        self._require_district(plan.district, "check the draw")
        if plan.seed is None or not plan.targets:
            raise DomainRuleViolated("the plan has not been drawn", plan.status)
        again = plan.replay_draw()
        recorded = [{"institution_id": t["institution_id"], "inspectors": t["inspectors"]}
                    for t in plan.targets]
        from tuoyu_inspection.domain import frame_digest

        return {"plan_id": str(plan.id), "seed": plan.seed,
                "frame_digest": plan.frame_digest,
                "frame_digest_matches": frame_digest(plan.frame) == plan.frame_digest,
                "reproduced": again == recorded, "targets": len(recorded)}

    def plans(self, district: str | None = None, status: str | None = None,
              limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return self.query(
            "SELECT p.plan_id::text, p.title, p.period, p.starts_on, p.ends_on, p.departments, "
            "p.district, p.status, p.target_count, p.drawn, p.clean, p.planned_on, "
            "(SELECT count(*) FROM inspection_visits v WHERE v.plan_id = p.plan_id "
            " AND v.status IN ('concluded', 'refused'))::int AS done "
            "FROM inspection_plans p WHERE (%s::text IS NULL OR p.district = %s) "
            "AND (%s::text IS NULL OR p.status = %s) "
            "ORDER BY p.planned_on DESC, p.plan_id LIMIT %s OFFSET %s",
            (district, district, status, status, max(1, min(int(limit), 1000)),
             max(0, int(offset))))

    def close_due_plans(self) -> dict[str, Any]:
        """The timer: close each drawn plan whose period is over, recording a clean period
        (CleanInspectionPeriodCompleted, once per institution and period) for each target
        inspected without a finding, an overdue order or a refusal in the period."""
        today = self.today()
        self.catch_up_views()
        due = self.query("SELECT plan_id::text FROM inspection_plans WHERE status = 'drawn' "
                          "AND ends_on < %s ORDER BY ends_on, plan_id", (today,))
        closed, failed = [], []
        for row in due:
            try:
                closed.append(self._close_plan(row["plan_id"], today))
            except Exception as e:  # one plan's trouble must not stop the others
                log.exception("plan.close_failed", aggregate_id=row["plan_id"])
                failed.append({"plan_id": row["plan_id"], "error": repr(e)})
        return {"today": today.isoformat(), "closed": closed, "failed": failed}

    def close_plan(self, plan_id: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        _read(commands.ClosePlan, data)
        plan = self._plan(plan_id)
        self._require_department((*plan.departments, LEAD), "close this plan")
        self._require_district(plan.district, "close the plan")
        self.catch_up_views()
        return self._close_plan(str(plan.id), self.today())

    def _close_plan(self, plan_id: str, today: date) -> dict[str, Any]:
        plan = self._plan(plan_id)
        clean: list[str] = []
        inspected = 0
        records = []
        for target in plan.targets:
            institution_id = target["institution_id"]
            rows = self.query(
                "SELECT visit_id::text FROM inspection_visits WHERE institution_id = %s "
                "AND scheduled_on BETWEEN %s AND %s", (institution_id, plan.starts_on,
                                                      plan.ends_on))
            ids = {r["visit_id"] for r in rows} | {target["visit_id"]}
            visits = [self.repository.get(UUID(v)) for v in sorted(ids)]
            done = [v for v in visits if v.status in (VisitStatus.CONCLUDED.value,
                                                      VisitStatus.REFUSED.value)]
            if not done:
                continue
            inspected += 1
            spotless = all(v.status == VisitStatus.CONCLUDED.value and not v.findings
                           and not any(o["overdue"] for o in v.orders.values())
                           for v in done)
            if spotless:
                clean.append(institution_id)
                records.append((institution_id, sorted(str(v.id) for v in done)))

        def close(p: InspectionPlan) -> tuple[None, list[Any]]:
            p.close(clean, inspected, today)
            new = []
            for institution_id, visit_ids in records:
                if self._exists(clean_period_id_for(institution_id, p.period)):
                    continue  # another plan of the period recorded it: once per period
                new.append(CleanInspectionPeriod(institution_id=institution_id,
                                                 period=p.period, plan_id=str(p.id),
                                                 visits=visit_ids, completed_on=today))
            return None, new

        self.update_creating(plan.id, close)
        return {"plan_id": plan_id, "inspected": inspected, "clean": clean}

    def _exists(self, aggregate_id: UUID) -> bool:
        return bool(self.recorder.select_events(aggregate_id, desc=True, limit=1))

    # ---- targeted visits -------------------------------------------------------------------
    def schedule_targeted_visit(self, institution_id: str,
                                data: dict[str, Any]) -> dict[str, Any]:
        """专项检查 after a complaint, an incident or a rectification deadline; inspectors
        named, or drawn from the rosters (the seed recorded on the visit)."""
        try:
            institution = check_institution_id(institution_id)
        except FieldError as e:
            raise ValidationFailed([FieldError("institution_id", e.reason, e.code)]) from None
        command = _read(commands.ScheduleTargetedVisit, data)
        self._require_department((*command.departments, LEAD), "schedule this visit")
        found = self._institution(institution)
        if found["status"] == "deregistered":
            raise DomainRuleViolated(f"institution {institution} is deregistered",
                                     "deregistered")
        checklist = self._checklist(command.template_id, command.template_version)
        try:
            departments_checked(command.departments, checklist)
        except FieldError as e:
            raise ValidationFailed([e]) from None
        rosters, conflicts = self._rosters(command.departments)
        seed = None
        inspectors: dict[str, list[str]] = {}
        errors = []
        if command.inspectors is not None:
            for department in command.departments:
                conflicted = {c[1] for c in conflicts
                              if c[0] == department and c[2] == institution}
                for i, name in enumerate(command.inspectors[department]):
                    if name not in rosters[department]:
                        errors.append(FieldError(f"inspectors.{department}[{i}]",
                                                 f"{name} is not on the {department} roster",
                                                 "not_found"))
                    elif name in conflicted:
                        errors.append(FieldError(f"inspectors.{department}[{i}]",
                                                 f"{name} declared a conflict of interest "
                                                 "with this institution", "conflict"))
                inspectors[department] = sorted(set(command.inspectors[department]))
        else:
            seed = secrets.token_hex(16)
            for department in command.departments:
                conflicted = [c[1] for c in conflicts
                              if c[0] == department and c[2] == institution]
                drawn = draw_inspectors(seed, institution, department, rosters[department],
                                        conflicted, command.inspectors_per_department)
                if drawn is None:
                    errors.append(FieldError(
                        "inspectors_per_department",
                        f"the {department} roster has too few inspectors without a conflict "
                        f"of interest ({len(rosters[department])} on it)", "out_of_range"))
                else:
                    inspectors[department] = drawn
        if errors:
            raise ValidationFailed(errors)
        visit = SupervisionVisit(
            institution_id=institution, institution_name=found["name"],
            district=found["district"], kind=VisitKind.TARGETED.value,
            trigger=command.trigger, reference=command.reference, plan_id=None, period=None,
            departments=list(command.departments), inspectors=inspectors, checklist=checklist,
            scheduled_on=command.scheduled_on, draw_seed=seed)
        self.save(visit)
        return {"visit_id": str(visit.id), "institution_id": institution,
                "inspectors": inspectors, "draw_seed": seed}

    # ---- conduct ---------------------------------------------------------------------------
    @refusing_field_errors
    def record_item_result(self, institution_id: str, visit_id: str,
                           data: dict[str, Any]) -> dict[str, Any]:
        command = _read(commands.RecordItemResult, data)
        actor, department = self._caller()
        today = self.today()
        version = self._update_visit(institution_id, visit_id, lambda v: (
            v.record_item_result(command.item, command.result, command.note or "", department,
                                 actor, today), v.version)[1])
        return {"visit_id": str(visit_id), "item": command.item, "result": command.result,
                "version": version}

    @refusing_field_errors
    def record_item_results(self, institution_id: str, visit_id: str,
                            data: dict[str, Any]) -> dict[str, Any]:
        """A department's page of the checklist at once (all or nothing)."""
        command = _read(commands.RecordItemResults, data)
        actor, department = self._caller()
        today = self.today()

        def record(v: SupervisionVisit) -> tuple[int, int]:
            recorded = 0  # a retry's results, already there, are not recorded again
            for i, r in enumerate(command.results):
                try:
                    recorded += v.record_item_result(r.item, r.result, r.note or "",
                                                     department, actor, today)
                except FieldError as e:
                    raise FieldError(f"results[{i}].{e.field}", e.reason, e.code) from None
            return v.version, recorded

        version, recorded = self._update_visit(institution_id, visit_id, record)
        return {"visit_id": str(visit_id), "recorded": recorded,
                "unchanged": len(command.results) - recorded, "version": version}

    @refusing_field_errors
    def record_finding(self, institution_id: str, visit_id: str,
                       data: dict[str, Any]) -> dict[str, Any]:
        command = _read(commands.RecordFinding, data)
        actor, department = self._caller()
        today = self.today()
        finding_id = self._update_visit(institution_id, visit_id, lambda v: v.record_finding(
            command.item, command.severity, command.description, department, actor, today))
        return {"visit_id": str(visit_id), "finding_id": finding_id}

    @refusing_field_errors
    def attach_evidence(self, institution_id: str, visit_id: str,
                        data: dict[str, Any]) -> dict[str, Any]:
        """Evidence stored by its SHA-256 (checked against the one stated), then named on the
        visit: an inspector's of a finding, an institution's of its correction."""
        command = _read(commands.AttachEvidence, data)
        actor, department = self._caller()
        visit = self._load_visit(institution_id, visit_id)
        if department != OPERATOR:
            self._require_department(visit.departments, "add evidence to this visit")
        try:
            content = base64.b64decode(command.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationFailed([FieldError("content_base64", "is not valid base64",
                                               "invalid_format")]) from None
        # Check what the visit allows before storing anything (on the loaded copy, not saved).
        probe = visit
        probe.attach_evidence(command.sha256, command.filename, command.content_type,
                              len(content), command.finding_id, command.order_id, actor,
                              "operator" if department == OPERATOR else "inspector",
                              self.today())
        sha = self.blobs.put(content, expected_sha256=command.sha256)
        today = self.today()
        added = self.update(visit.id, lambda v: v.attach_evidence(
            sha, command.filename, command.content_type, len(content), command.finding_id,
            command.order_id, actor, "operator" if department == OPERATOR else "inspector",
            today))
        return {"visit_id": str(visit.id), "sha256": sha, "size": len(content),
                "attached": added}

    def evidence(self, institution_id: str, visit_id: str, sha256: str) -> dict[str, Any]:
        """An evidence file of the visit (base64), verified against its hash on reading."""
        visit = self._load_visit(institution_id, visit_id)
        attached = visit.evidence.get(sha256) if isinstance(sha256, str) else None
        if attached is None:
            raise NotFound(f"the visit has no evidence {sha256}")
        content = self.blobs.get(sha256)
        return to_json_value({**attached,
                              "content_base64": base64.b64encode(content).decode("ascii")})

    def sign_off(self, institution_id: str, visit_id: str,
                 data: dict[str, Any] | None = None) -> dict[str, Any]:
        """The department's signature; the last one concludes the visit (score, outcome,
        rectification orders)."""
        _read(commands.SignOff, data)
        actor, department = self._caller()
        today = self.today()

        def sign(v: SupervisionVisit) -> dict[str, Any]:
            concluded = v.sign_off(department, actor, today, self._deadline(today),
                                   self._publish_by(today), self.rules.pass_mark)
            return {"visit_id": str(v.id), "department": department, "concluded": concluded,
                    "outcome": v.outcome, "score": v.score, "orders": len(v.orders)}

        return to_json_value(self._update_visit(institution_id, visit_id, sign))

    def record_refusal(self, institution_id: str, visit_id: str,
                       data: dict[str, Any]) -> dict[str, Any]:
        """拒绝检查: recorded by an inspector of the visit, published (credit scores it)."""
        command = _read(commands.RecordRefusal, data)
        actor, department = self._caller()
        today = self.today()
        self._update_visit(institution_id, visit_id, lambda v: v.record_refusal(
            command.description, department, actor, today, self._publish_by(today)))
        return {"visit_id": str(visit_id), "status": VisitStatus.REFUSED.value}

    def cancel_visit(self, institution_id: str, visit_id: str,
                     data: dict[str, Any]) -> dict[str, Any]:
        command = _read(commands.CancelVisit, data)
        today = self.today()

        def cancel(v: SupervisionVisit) -> None:
            actor, _ = self._require_department((*v.departments, LEAD), "cancel this visit")
            v.cancel(command.reason, actor, today)

        self._update_visit(institution_id, visit_id, cancel)
        return {"visit_id": str(visit_id), "status": VisitStatus.CANCELLED.value}

    # ---- rectification ---------------------------------------------------------------------
    @refusing_field_errors
    def submit_rectification(self, institution_id: str, visit_id: str, order_id: str,
                             data: dict[str, Any]) -> dict[str, Any]:
        """The institution's account of its correction (整改报告), with evidence it attached."""
        command = _read(commands.SubmitRectification, data)
        actor, department = self._caller()
        today = self.today()
        self._update_visit(institution_id, visit_id, lambda v: v.submit_rectification(
            str(order_id), command.statement, command.evidence, actor, today))
        return {"order_id": order_id, "state": "evidence_submitted"}

    @refusing_field_errors
    def reinspect(self, institution_id: str, visit_id: str, order_id: str,
                  data: dict[str, Any]) -> dict[str, Any]:
        """复查: accepted closes the order; not accepted leaves it open (overdue once past its
        deadline)."""
        command = _read(commands.Reinspect, data)
        actor, department = self._caller()
        today = self.today()
        self._update_visit(institution_id, visit_id, lambda v: v.reinspect(
            str(order_id), command.accepted, command.notes, department, actor, today))
        return {"order_id": order_id, "state": "accepted" if command.accepted else "ordered"}

    @refusing_field_errors
    def escalate(self, institution_id: str, visit_id: str, order_id: str,
                 data: dict[str, Any]) -> dict[str, Any]:
        """The next step for an overdue order: 约谈, then 警告 (each with a new deadline),
        then 移送处罚."""
        command = _read(commands.Escalate, data)
        today = self.today()

        def new_due_on(step: EscalationStep) -> date | None:
            days = self.rules.escalation_working_days.get(step.value)
            return self.calendar.add_working_days(today, days) if days else None

        def escalate(v: SupervisionVisit) -> str:
            actor, _ = self._require_department((*v.departments, LEAD), "escalate this order")
            return v.escalate(str(order_id), command.reason, actor, today, new_due_on)

        step = self._update_visit(institution_id, visit_id, escalate)
        return {"order_id": order_id, "step": step}

    def publish_overdue_rectifications(self) -> dict[str, Any]:
        """The timer: each open order past its deadline without a correction accepted is
        recorded overdue (RectificationOverdue, once per order)."""
        today = self.today()
        self.catch_up_views()
        rows = self.query(
            "SELECT order_id::text, visit_id::text FROM inspection_orders "
            "WHERE state = 'ordered' AND NOT overdue AND due_on < %s ORDER BY due_on, order_id",
            (today,))
        marked, failed = [], []
        for row in rows:
            try:
                if self.update(UUID(row["visit_id"]),
                               lambda v, o=row["order_id"]: v.mark_overdue(o, today)):
                    marked.append(row["order_id"])
            except Exception as e:
                log.exception("order.overdue_failed", aggregate_id=row["visit_id"])
                failed.append({"order_id": row["order_id"], "error": repr(e)})
        return {"today": today.isoformat(), "overdue": marked, "failed": failed}

    # ---- public results --------------------------------------------------------------------
    def publish_result(self, institution_id: str, visit_id: str,
                       data: dict[str, Any] | None = None) -> dict[str, Any]:
        _read(commands.PublishResult, data)
        today = self.today()

        def publish(v: SupervisionVisit) -> bool:
            self._require_department((*v.departments, LEAD), "publish this result")
            return v.publish_result(today)

        published = self._update_visit(institution_id, visit_id, publish)
        return {"visit_id": str(visit_id), "published": published}

    def publish_due_results(self) -> dict[str, Any]:
        """The timer: each ended visit whose publication deadline has come is made public."""
        today = self.today()
        self.catch_up_views()
        rows = self.query(
            "SELECT visit_id::text FROM inspection_visits WHERE published_on IS NULL "
            "AND status IN ('concluded', 'refused') AND publish_by <= %s "
            "ORDER BY publish_by, visit_id", (today,))
        published, failed = [], []
        for row in rows:
            try:
                if self.update(UUID(row["visit_id"]), lambda v: v.publish_result(today)):
                    published.append(row["visit_id"])
            except Exception as e:
                log.exception("result.publish_failed", aggregate_id=row["visit_id"])
                failed.append({"visit_id": row["visit_id"], "error": repr(e)})
        return {"today": today.isoformat(), "published": published, "failed": failed}

    def public_results(self, district: str | None = None, institution_id: str | None = None,
                       limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """公示: the published results, newest first."""
        if institution_id is not None:
            try:
                institution_id = check_institution_id(institution_id)
            except FieldError as e:
                raise ValidationFailed([FieldError("institution_id", e.reason, e.code)]) \
                    from None
        rows = self.query(
            "SELECT result, published_on FROM inspection_public_results "
            "WHERE (%s::text IS NULL OR district = %s) "
            "AND (%s::uuid IS NULL OR institution_id = %s::uuid) "
            "ORDER BY published_on DESC, visit_id LIMIT %s OFFSET %s",
            (district, district, institution_id, institution_id,
             max(1, min(int(limit), 1000)), max(0, int(offset))))
        return [{**r["result"], "published_on": r["published_on"]} for r in rows]

    # ---- queries ---------------------------------------------------------------------------
    def visit(self, institution_id: str, visit_id: str) -> dict[str, Any]:
        """The whole visit: checklist items with their results, findings, evidence, sign-offs,
        orders, and its history."""
        visit = self._load_visit(institution_id, visit_id)
        out = visit.as_dict()
        out["items"] = [{**item, "result": visit.results.get(code)}
                        for code, item in items_of(visit.checklist).items()
                        if item["department"] in visit.departments]
        out["history"] = history_entries(self.repository.event_store.get(visit.id))
        return to_json_value(out)

    def visits(self, data: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Visits by institution, department, district, status, checklist area and period."""
        q = _read(commands.VisitsQuery, data)
        _, department = self._caller()
        hidden = ["scheduled", "cancelled"] if department == OPERATOR else []
        return self.query(
            "SELECT v.visit_id::text, v.institution_id::text, v.institution_name, v.district, "
            "v.kind, v.trigger, v.plan_id::text, v.period, v.departments, v.status, v.outcome, "
            "v.score, v.findings, v.scheduled_on, v.started_on, v.ended_on, v.publish_by, "
            "v.published_on FROM inspection_visits v "
            "WHERE (%(inst)s::uuid IS NULL OR v.institution_id = %(inst)s::uuid) "
            "AND (%(dept)s::text IS NULL OR %(dept)s = ANY(v.departments)) "
            "AND (%(district)s::text IS NULL OR v.district = %(district)s) "
            "AND (%(status)s::text IS NULL OR v.status = %(status)s) "
            "AND NOT (v.status = ANY(%(hidden)s::text[])) "
            "AND (%(since)s::date IS NULL OR v.scheduled_on >= %(since)s) "
            "AND (%(until)s::date IS NULL OR v.scheduled_on <= %(until)s) "
            "AND (%(area)s::text IS NULL OR EXISTS (SELECT 1 FROM inspection_findings f "
            "     WHERE f.visit_id = v.visit_id AND f.area = %(area)s)) "
            "ORDER BY v.scheduled_on DESC, v.visit_id LIMIT %(limit)s OFFSET %(offset)s",
            {"inst": q.institution_id, "dept": q.department, "district": q.district,
             "status": q.status, "hidden": hidden, "since": q.since, "until": q.until,
             "area": q.area, "limit": q.limit, "offset": q.offset})

    def rectifications(self, data: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rectification orders: open (by deadline), overdue, accepted or all."""
        q = _read(commands.RectificationsQuery, data)
        condition = {"open": "state IN ('ordered', 'evidence_submitted')",
                     "overdue": "state IN ('ordered', 'evidence_submitted') AND overdue",
                     "accepted": "state = 'accepted'", "all": "true"}[q.state]
        return self.query(
            "SELECT order_id::text, visit_id::text, institution_id::text, institution_name, "
            "district, finding_id, item, severity, department, ordered_on, due_on, state, "
            "overdue, overdue_on, escalation, closed_on FROM inspection_orders "
            f"WHERE {condition} "
            "AND (%(inst)s::uuid IS NULL OR institution_id = %(inst)s::uuid) "
            "AND (%(district)s::text IS NULL OR district = %(district)s) "
            "AND (%(dept)s::text IS NULL OR department = %(dept)s) "
            "ORDER BY due_on, order_id LIMIT %(limit)s OFFSET %(offset)s",
            {"inst": q.institution_id, "district": q.district, "dept": q.department,
             "limit": q.limit, "offset": q.offset})

    def workload(self, department: str | None = None,
                 district: str | None = None) -> dict[str, Any]:
        """A department's own work: visits to make and in progress, orders to re-inspect or
        past their deadline, and its plans' progress."""
        _, caller = self._caller()
        department = department or caller
        if department not in commands.DEPARTMENTS:
            raise ValidationFailed([FieldError(
                "department", f"must be one of {', '.join(commands.DEPARTMENTS)}",
                "invalid_choice")])
        params = {"dept": department, "district": district}
        visits = self.query(
            "SELECT status, count(*)::int AS visits FROM inspection_visits "
            "WHERE %(dept)s = ANY(departments) AND status IN ('scheduled', 'in_progress') "
            "AND (%(district)s::text IS NULL OR district = %(district)s) "
            "GROUP BY status ORDER BY status", params)
        orders = self.query(
            "SELECT count(*) FILTER (WHERE state = 'evidence_submitted')::int AS to_reinspect, "
            "count(*) FILTER (WHERE state = 'ordered' AND overdue)::int AS overdue, "
            "count(*) FILTER (WHERE state = 'ordered' AND NOT overdue)::int AS awaiting "
            "FROM inspection_orders WHERE department = %(dept)s "
            "AND (%(district)s::text IS NULL OR district = %(district)s)", params)[0]
        plans = self.query(
            "SELECT p.plan_id::text, p.title, p.period, p.status, p.drawn, "
            "(SELECT count(*) FROM inspection_visits v WHERE v.plan_id = p.plan_id "
            " AND v.status IN ('concluded', 'refused'))::int AS done "
            "FROM inspection_plans p WHERE %(dept)s = ANY(p.departments) "
            "AND p.status <> 'closed' "
            "AND (%(district)s::text IS NULL OR p.district = %(district)s OR p.district = '*') "
            "ORDER BY p.ends_on, p.plan_id", params)
        return {"department": department, "visits": {r["status"]: r["visits"] for r in visits},
                "orders": orders, "plans": plans}

    def statistics(self, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Findings by checklist area and severity; visits by outcome."""
        q = _read(commands.StatisticsQuery, data)
        params = {"district": q.district, "since": q.since, "until": q.until}
        findings = self.query(
            "SELECT area, severity, count(*)::int AS findings FROM inspection_findings "
            "WHERE (%(district)s::text IS NULL OR district = %(district)s) "
            "AND (%(since)s::date IS NULL OR recorded_on >= %(since)s) "
            "AND (%(until)s::date IS NULL OR recorded_on <= %(until)s) "
            "GROUP BY area, severity ORDER BY area, severity", params)
        outcomes = self.query(
            "SELECT COALESCE(outcome, status) AS outcome, count(*)::int AS visits "
            "FROM inspection_visits "
            "WHERE (%(district)s::text IS NULL OR district = %(district)s) "
            "AND (%(since)s::date IS NULL OR scheduled_on >= %(since)s) "
            "AND (%(until)s::date IS NULL OR scheduled_on <= %(until)s) "
            "GROUP BY 1 ORDER BY 1", params)
        return {"findings": findings, "visits": {r["outcome"]: r["visits"] for r in outcomes}}

    def institutions(self, data: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The institutions the service knows, with their grade (the draw's frame)."""
        q = _read(commands.InstitutionsQuery, data)
        return self.query(
            "SELECT d.institution_id::text, d.name, d.district, d.kind, d.status, "
            "COALESCE(g.grade, %(ungraded)s) AS grade, g.score FROM institution_directory d "
            "LEFT JOIN institution_grades g USING (institution_id) "
            "WHERE (%(district)s::text IS NULL OR d.district = %(district)s) "
            "AND (%(grade)s::text IS NULL OR COALESCE(g.grade, %(ungraded)s) = %(grade)s) "
            "ORDER BY d.district, d.name, d.institution_id LIMIT %(limit)s OFFSET %(offset)s",
            {"ungraded": self.rules.ungraded, "district": q.district, "grade": q.grade,
             "limit": q.limit, "offset": q.offset})

    def daily(self) -> dict[str, Any]:
        """The daily timer's commands, in order."""
        return {"publish_overdue_rectifications": self.publish_overdue_rectifications(),
                "publish_due_results": self.publish_due_results(),
                "close_due_plans": self.close_due_plans()}


