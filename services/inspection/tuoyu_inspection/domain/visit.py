"""A supervision visit (督导检查), from its scheduling to its public result.

::

    scheduled ──item results, findings──▶ in_progress ──every department signed──▶ concluded
        │                                      │                                    │
        ├──refused (拒绝检查)◀──────────────────┘                                    ▼
        └──cancelled                                                    result published (公示)

A visit is *random* (drawn by a plan: 双随机) or *targeted* (after a complaint, an incident or
a rectification deadline). Its checklist is the template version copied when it was scheduled.
Each item's result, each finding and each sign-off is recorded by an inspector of the visit
from the item's own department (a fire item by fire rescue). The visit concludes when every
department on it has signed: its score by area, passed or failed (a critical finding fails
it), and a rectification order (整改通知) per finding, with a deadline in working days by
severity. An order is closed when a re-inspection accepts the institution's correction; past
its deadline without it, it is overdue (once), and then escalated step by step (约谈, 警告,
移送处罚), each step giving a new deadline but the last.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from enum import StrEnum
from typing import Any

from eventsourcing.domain import Aggregate, event

from tuoyu_shared.validation import FieldError

from .checklist import items_of
from .common import DomainRuleViolated
from .rules import ESCALATION_ORDER, EscalationStep, Severity


class VisitKind(StrEnum):
    RANDOM = "random"  # drawn by a plan (双随机抽查)
    TARGETED = "targeted"  # 专项 / 重点检查


class Trigger(StrEnum):
    """Why a targeted visit is made."""

    COMPLAINT = "complaint"  # 投诉举报
    INCIDENT = "incident"  # 安全事故 / 事件
    RECTIFICATION_DEADLINE = "rectification_deadline"  # 整改期满复查
    PLAN = "plan"  # a plan's draw


class VisitStatus(StrEnum):
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    CONCLUDED = "concluded"
    REFUSED = "refused"
    CANCELLED = "cancelled"


class ItemResult(StrEnum):
    MET = "met"  # 符合
    PARTLY_MET = "partly_met"  # 基本符合: half the points
    NOT_MET = "not_met"  # 不符合
    NOT_APPLICABLE = "not_applicable"  # 不适用: not counted


class OrderState(StrEnum):
    ORDERED = "ordered"
    EVIDENCE_SUBMITTED = "evidence_submitted"
    ACCEPTED = "accepted"  # closed: the correction accepted on re-inspection


OPEN_ORDER_STATES = frozenset({OrderState.ORDERED.value, OrderState.EVIDENCE_SUBMITTED.value})
_ORDER_NAMESPACE = uuid.UUID("9d0c4a57-61c4-4f5d-8a3e-2b7f0e9c1d44")
_PLAN_VISIT_NAMESPACE = uuid.UUID("e1a7c0d4-3b2f-4c6e-8a9d-1f0e2d3c4b5a")


def plan_visit_id_for(plan_id: uuid.UUID | str, institution_id: str) -> uuid.UUID:
    """A plan's visit of one institution: the same id on a retry of the draw."""
    return uuid.uuid5(_PLAN_VISIT_NAMESPACE, f"{plan_id}/{institution_id}")


def order_id_for(visit_id: uuid.UUID | str, finding_id: str) -> str:
    """The rectification order of one finding: unique across visits, the same on a retry."""
    return str(uuid.uuid5(_ORDER_NAMESPACE, f"{visit_id}/{finding_id}"))


def points_awarded(result: str, points: int) -> int | None:
    if result == ItemResult.MET:
        return points
    if result == ItemResult.PARTLY_MET:
        return points // 2
    if result == ItemResult.NOT_MET:
        return 0
    return None  # not applicable


class SupervisionVisit(Aggregate):
    """One supervision visit of one institution by one or more departments."""

    class Scheduled(Aggregate.Created):
        """A supervision visit scheduled: drawn by a plan (random) or targeted, with its
        departments, inspectors and the checklist version it is conducted on (copied whole)."""

        institution_id: str
        institution_name: str
        district: str
        kind: str
        trigger: str
        reference: str
        plan_id: str | None
        period: str | None
        departments: list
        inspectors: dict
        checklist: dict
        scheduled_on: date
        draw_seed: str | None

    @staticmethod
    def create_id(institution_id: str = "", plan_id: str | None = None,
                  **_: Any) -> uuid.UUID:
        return plan_visit_id_for(plan_id, institution_id) if plan_id else uuid.uuid4()

    @event(Scheduled)
    def __init__(self, institution_id: str, institution_name: str, district: str, kind: str,
                 trigger: str, reference: str, plan_id: str | None, period: str | None,
                 departments: list, inspectors: dict, checklist: dict, scheduled_on: date,
                 draw_seed: str | None) -> None:
        self.institution_id = institution_id
        self.institution_name = institution_name
        self.district = district
        self.kind = kind
        self.trigger = trigger
        self.reference = reference
        self.plan_id = plan_id
        self.period = period
        self.departments = list(departments)
        self.inspectors = {d: list(ids) for d, ids in inspectors.items()}
        self.checklist = checklist
        self.scheduled_on = scheduled_on
        self.draw_seed = draw_seed
        self.status = VisitStatus.SCHEDULED.value
        self.results: dict[str, dict[str, Any]] = {}
        self.findings: dict[str, dict[str, Any]] = {}
        self.evidence: dict[str, dict[str, Any]] = {}
        self.sign_offs: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.outcome: str | None = None
        self.score: int | None = None
        self.area_scores: list[dict[str, Any]] = []
        self.started_on: date | None = None
        self.ended_on: date | None = None
        self.publish_by: date | None = None
        self.published_on: date | None = None
        self.public_result: dict[str, Any] | None = None

    # ---- checks shared by the commands ------------------------------------------------------
    def _items(self) -> dict[str, dict[str, Any]]:
        return {code: item for code, item in items_of(self.checklist).items()
                if item["department"] in self.departments}

    def _require_status(self, *allowed: VisitStatus, doing: str) -> None:
        if self.status not in {s.value for s in allowed}:
            raise DomainRuleViolated(f"a {self.status} visit cannot {doing}", self.status)

    def _require_inspector(self, department: str, inspector: str) -> None:
        if department not in self.departments:
            raise DomainRuleViolated(
                f"the department {department} is not on this visit "
                f"({', '.join(self.departments)})", self.status)
        if inspector not in self.inspectors.get(department, ()):
            raise DomainRuleViolated(
                f"{inspector} is not one of this visit's {department} inspectors "
                f"({', '.join(self.inspectors.get(department, ())) or 'none'})", self.status)

    def _item(self, code: str, department: str) -> dict[str, Any]:
        item = self._items().get(code)
        if item is None:
            raise FieldError("item", f"the visit's checklist (version "
                                     f"{self.checklist['version']}) has no item {code!r} for "
                                     f"its departments", "not_found")
        if item["department"] != department:
            raise DomainRuleViolated(
                f"item {code} is checked and signed by {item['department']}, not {department}",
                self.status)
        if department in self.sign_offs:
            raise DomainRuleViolated(f"{department} has signed this visit already", self.status)
        return item

    def _started(self, on: date) -> None:
        if self.status == VisitStatus.SCHEDULED.value:
            self._start(started_on=on)

    class Started(Aggregate.Event):
        """The visit began (its first result, finding or sign-off recorded)."""

        started_on: date

    @event(Started)
    def _start(self, started_on: date) -> None:
        self.status = VisitStatus.IN_PROGRESS.value
        self.started_on = started_on

    # ---- conduct ---------------------------------------------------------------------------
    class ItemResultRecorded(Aggregate.Event):
        """A checklist item's result (met, partly_met, not_met, not_applicable) and the points
        it gives, recorded by an inspector of the item's department."""

        item: str
        result: str
        points: int | None
        department: str
        inspector: str
        note: str
        recorded_on: date

    def record_item_result(self, item: str, result: str, note: str, department: str,
                           inspector: str, on: date) -> bool:
        """Record one item's result; False when it is the result already recorded (nothing
        new)."""
        self._require_status(VisitStatus.SCHEDULED, VisitStatus.IN_PROGRESS,
                             doing="record a result")
        self._require_inspector(department, inspector)
        found = self._item(item, department)
        previous = self.results.get(item)
        if previous is not None and (previous["result"], previous["note"]) == (result, note):
            return False  # the same result again: nothing new
        self._started(on)
        self._item_result(item=item, result=result,
                          points=points_awarded(result, found["points"]), department=department,
                          inspector=inspector, note=note, recorded_on=on)
        return True

    @event(ItemResultRecorded)
    def _item_result(self, item: str, result: str, points: int | None, department: str,
                     inspector: str, note: str, recorded_on: date) -> None:
        self.results[item] = {"item": item, "result": result, "points": points,
                              "department": department, "inspector": inspector, "note": note,
                              "recorded_on": recorded_on}

    class FindingRecorded(Aggregate.Event):
        visit_id: str
        institution_id: str
        finding_id: str
        item: str
        severity: str
        description: str
        department: str
        inspector: str
        recorded_on: date

    def record_finding(self, item: str, severity: str, description: str, department: str,
                       inspector: str, on: date) -> str:
        self._require_status(VisitStatus.SCHEDULED, VisitStatus.IN_PROGRESS,
                             doing="record a finding")
        self._require_inspector(department, inspector)
        self._item(item, department)
        Severity(severity)
        for found in self.findings.values():
            if (found["item"], found["severity"], found["description"]) == (
                    item, severity, description):
                return found["finding_id"]  # the same finding sent twice
        finding_id = f"F{len(self.findings) + 1}"
        self._started(on)
        self._finding(visit_id=str(self.id), institution_id=self.institution_id,
                      finding_id=finding_id, item=item, severity=severity,
                      description=description, department=department, inspector=inspector,
                      recorded_on=on)
        return finding_id

    @event(FindingRecorded)
    def _finding(self, visit_id: str, institution_id: str, finding_id: str, item: str,
                 severity: str, description: str, department: str, inspector: str,
                 recorded_on: date) -> None:
        self.findings[finding_id] = {"finding_id": finding_id, "item": item,
                                     "severity": severity, "description": description,
                                     "department": department, "inspector": inspector,
                                     "recorded_on": recorded_on}

    class EvidenceAttached(Aggregate.Event):
        """Evidence stored by its SHA-256 named on the visit: an inspector's of a finding, or an
        institution's of its correction (an order). The file itself is never published."""

        sha256: str
        filename: str
        content_type: str
        size: int
        finding_id: str | None
        order_id: str | None
        uploaded_by: str
        uploader_role: str
        attached_on: date

    def attach_evidence(self, sha256: str, filename: str, content_type: str, size: int,
                        finding_id: str | None, order_id: str | None, uploaded_by: str,
                        uploader_role: str, on: date) -> bool:
        """Evidence (a photo, a document) stored by its SHA-256; an inspector's of a finding,
        an institution's of its correction (an order). False when attached already."""
        if self.status == VisitStatus.CANCELLED.value:
            raise DomainRuleViolated("a cancelled visit takes no evidence", self.status)
        if finding_id is not None and finding_id not in self.findings:
            raise FieldError("finding_id", f"the visit has no finding {finding_id}",
                             "not_found")
        if order_id is not None:
            order = self.orders.get(order_id)
            if order is None:
                raise FieldError("order_id", f"the visit has no rectification order "
                                             f"{order_id}", "not_found")
            if order["state"] == OrderState.ACCEPTED.value:
                raise DomainRuleViolated("the rectification was accepted already", "accepted")
        if uploader_role == "operator" and order_id is None:
            raise FieldError("order_id", "an institution attaches evidence of a correction: "
                                         "name the rectification order", "required")
        known = self.evidence.get(sha256)
        if known is not None and (known["finding_id"], known["order_id"]) == (finding_id,
                                                                              order_id):
            return False
        self._evidence(sha256=sha256, filename=filename, content_type=content_type, size=size,
                       finding_id=finding_id, order_id=order_id, uploaded_by=uploaded_by,
                       uploader_role=uploader_role, attached_on=on)
        return True

    @event(EvidenceAttached)
    def _evidence(self, sha256: str, filename: str, content_type: str, size: int,
                  finding_id: str | None, order_id: str | None, uploaded_by: str,
                  uploader_role: str, attached_on: date) -> None:
        self.evidence[sha256] = {"sha256": sha256, "filename": filename,
                                 "content_type": content_type, "size": size,
                                 "finding_id": finding_id, "order_id": order_id,
                                 "uploaded_by": uploaded_by, "uploader_role": uploader_role,
                                 "attached_on": attached_on}

    # ---- sign-off and conclusion -----------------------------------------------------------
    def missing_results(self, department: str) -> list[str]:
        return sorted(code for code, item in self._items().items()
                      if item["department"] == department and code not in self.results)

    class SignedOff(Aggregate.Event):
        """A department's sign-off of its part of the visit."""

        department: str
        inspector: str
        signed_on: date

    def sign_off(self, department: str, inspector: str, on: date,
                 deadline_of: Callable[[str], tuple[date, int]], publish_by: date,
                 pass_mark: int) -> bool:
        """The department's signature of its part. The last signature concludes the visit
        (True then): score, outcome, rectification orders."""
        self._require_status(VisitStatus.SCHEDULED, VisitStatus.IN_PROGRESS,
                             doing="be signed")
        self._require_inspector(department, inspector)
        if department in self.sign_offs:
            raise DomainRuleViolated(f"{department} has signed this visit already", self.status)
        missing = self.missing_results(department)
        if missing:
            raise DomainRuleViolated(
                f"{department} has {len(missing)} item(s) without a result: "
                f"{', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}", self.status,
                details={"missing_items": missing})
        self._started(on)
        self._signed(department=department, inspector=inspector, signed_on=on)
        if set(self.sign_offs) != set(self.departments):
            return False
        self._conclude(on, deadline_of, publish_by, pass_mark)
        return True

    @event(SignedOff)
    def _signed(self, department: str, inspector: str, signed_on: date) -> None:
        self.sign_offs[department] = {"inspector": inspector, "signed_on": signed_on}

    def scores(self) -> tuple[int, list[dict[str, Any]]]:
        """The score out of 100 (points awarded over points applicable) and by area."""
        by_area: dict[str, list[int]] = {}
        names: dict[str, str] = {}
        for code, item in self._items().items():
            result = self.results.get(code)
            if result is None or result["points"] is None:
                continue
            totals = by_area.setdefault(item["area"], [0, 0])
            names[item["area"]] = item["area_name"]
            totals[0] += result["points"]
            totals[1] += item["points"]
        awarded = sum(a for a, _ in by_area.values())
        possible = sum(p for _, p in by_area.values())
        areas = [{"area": area, "name": names[area], "points": a, "possible": p,
                  "score": round(100 * a / p)} for area, (a, p) in by_area.items()]
        order = [a["code"] for a in self.checklist["areas"]]
        areas.sort(key=lambda a: order.index(a["area"]))
        return (round(100 * awarded / possible) if possible else 100), areas

    class Concluded(Aggregate.Event):
        """Every department signed: the score out of 100 and by area, passed or failed (a
        critical finding fails the visit), and the day by which the result is made public."""

        outcome: str
        score: int
        area_scores: list
        findings_by_severity: dict
        concluded_on: date
        publish_by: date

    class RectificationOrdered(Aggregate.Event):
        """整改通知: one per finding, with its deadline."""

        order_id: str
        visit_id: str
        institution_id: str
        finding_id: str
        item: str
        severity: str
        working_days: int
        ordered_on: date
        due_on: date

    def _conclude(self, on: date, deadline_of: Callable[[str], tuple[date, int]],
                  publish_by: date, pass_mark: int) -> None:
        score, areas = self.scores()
        severities = Counter(f["severity"] for f in self.findings.values())
        failed = severities.get(Severity.CRITICAL.value, 0) > 0 or score < pass_mark
        self._concluded(outcome="failed" if failed else "passed", score=score,
                        area_scores=areas, findings_by_severity=dict(severities),
                        concluded_on=on, publish_by=publish_by)
        for finding in self.findings.values():
            due_on, days = deadline_of(finding["severity"])
            self._ordered(order_id=order_id_for(self.id, finding["finding_id"]),
                          visit_id=str(self.id), institution_id=self.institution_id,
                          finding_id=finding["finding_id"], item=finding["item"],
                          severity=finding["severity"], working_days=days, ordered_on=on,
                          due_on=due_on)

    @event(Concluded)
    def _concluded(self, outcome: str, score: int, area_scores: list,
                   findings_by_severity: dict, concluded_on: date, publish_by: date) -> None:
        self.status = VisitStatus.CONCLUDED.value
        self.outcome = outcome
        self.score = score
        self.area_scores = area_scores
        self.ended_on = concluded_on
        self.publish_by = publish_by

    @event(RectificationOrdered)
    def _ordered(self, order_id: str, visit_id: str, institution_id: str, finding_id: str,
                 item: str, severity: str, working_days: int, ordered_on: date,
                 due_on: date) -> None:
        self.orders[order_id] = {"order_id": order_id, "finding_id": finding_id, "item": item,
                                 "severity": severity, "ordered_on": ordered_on,
                                 "due_on": due_on, "state": OrderState.ORDERED.value,
                                 "overdue": False, "escalations": [], "submissions": [],
                                 "reinspections": []}

    # ---- rectification ---------------------------------------------------------------------
    def _order(self, order_id: str) -> dict[str, Any]:
        order = self.orders.get(order_id)
        if order is None:
            raise FieldError("order_id", f"the visit has no rectification order {order_id}",
                             "not_found")
        return order

    class RectificationEvidenceSubmitted(Aggregate.Event):
        """The institution's account of its correction (整改报告), naming the evidence it
        attached; the order awaits re-inspection."""

        order_id: str
        statement: str
        evidence: list
        submitted_by: str
        submitted_on: date

    def submit_rectification(self, order_id: str, statement: str, evidence: Sequence[str],
                             submitted_by: str, on: date) -> None:
        """The institution's account of its correction, with evidence attached before."""
        order = self._order(order_id)
        if order["state"] == OrderState.ACCEPTED.value:
            raise DomainRuleViolated("the rectification was accepted already", order["state"])
        if order["state"] == OrderState.EVIDENCE_SUBMITTED.value:
            raise DomainRuleViolated("a correction awaits re-inspection already",
                                     order["state"])
        for i, sha in enumerate(evidence):
            attached = self.evidence.get(sha)
            if attached is None or attached["order_id"] != order_id:
                raise FieldError(f"evidence[{i}]", f"no evidence {sha} is attached to this "
                                                   "order: upload it first", "not_found")
        self._submitted(order_id=order_id, statement=statement, evidence=list(evidence),
                        submitted_by=submitted_by, submitted_on=on)

    @event(RectificationEvidenceSubmitted)
    def _submitted(self, order_id: str, statement: str, evidence: list, submitted_by: str,
                   submitted_on: date) -> None:
        order = self.orders[order_id]
        order["state"] = OrderState.EVIDENCE_SUBMITTED.value
        order["submissions"].append({"statement": statement, "evidence": evidence,
                                     "submitted_on": submitted_on})

    class Reinspected(Aggregate.Event):
        """复查: the correction accepted (the order closed) or not (the order open again)."""

        order_id: str
        accepted: bool
        notes: str
        department: str
        inspector: str
        reinspected_on: date

    def reinspect(self, order_id: str, accepted: bool, notes: str, department: str,
                  inspector: str, on: date) -> None:
        order = self._order(order_id)
        if order["state"] == OrderState.ACCEPTED.value:
            raise DomainRuleViolated("the rectification was accepted already", order["state"])
        finding = self.findings[order["finding_id"]]
        if department != finding["department"]:
            raise DomainRuleViolated(
                f"the finding was recorded by {finding['department']}: its re-inspection is "
                f"theirs, not {department}'s", order["state"])
        self._reinspected(order_id=order_id, accepted=accepted, notes=notes,
                          department=department, inspector=inspector, reinspected_on=on)
        # A rejection past the deadline leaves the order overdue: the daily timer records it
        # (mark_overdue), as the contract says, once.

    @event(Reinspected)
    def _reinspected(self, order_id: str, accepted: bool, notes: str, department: str,
                     inspector: str, reinspected_on: date) -> None:
        order = self.orders[order_id]
        order["state"] = (OrderState.ACCEPTED if accepted else OrderState.ORDERED).value
        order["reinspections"].append({"accepted": accepted, "notes": notes,
                                       "inspector": inspector, "on": reinspected_on})
        if accepted:
            order["closed_on"] = reinspected_on

    class RectificationOverdue(Aggregate.Event):
        order_id: str
        institution_id: str
        due_on: date
        recorded_on: date

    def mark_overdue(self, order_id: str, today: date) -> bool:
        """The deadline passed without a correction (none submitted, or one not accepted):
        recorded once per order. False when not (yet) overdue, or recorded already."""
        order = self._order(order_id)
        if order["overdue"] or order["state"] != OrderState.ORDERED.value:
            return False
        if today <= order["due_on"]:
            return False
        self._overdue(order_id=order_id, institution_id=self.institution_id,
                      due_on=order["due_on"], recorded_on=today)
        return True

    @event(RectificationOverdue)
    def _overdue(self, order_id: str, institution_id: str, due_on: date,
                 recorded_on: date) -> None:
        self.orders[order_id]["overdue"] = True
        self.orders[order_id]["overdue_on"] = recorded_on

    class RectificationEscalated(Aggregate.Event):
        """An overdue order escalated one step: 约谈 (interview), 警告 (warning), 移送处罚
        (referral for a penalty); the first two give a new deadline."""

        order_id: str
        institution_id: str
        step: str
        reason: str
        officer: str
        escalated_on: date
        due_on: date | None

    def next_escalation(self, order_id: str) -> EscalationStep | None:
        done = len(self._order(order_id)["escalations"])
        return ESCALATION_ORDER[done] if done < len(ESCALATION_ORDER) else None

    def escalate(self, order_id: str, reason: str, officer: str, on: date,
                 new_due_on: Callable[[EscalationStep], date | None]) -> str:
        """The next step for an order past its deadline without a correction accepted."""
        order = self._order(order_id)
        if order["state"] == OrderState.ACCEPTED.value:
            raise DomainRuleViolated("the rectification was accepted: nothing to escalate",
                                     order["state"])
        step = self.next_escalation(order_id)
        if step is None:
            raise DomainRuleViolated("the order was referred for a penalty already: the last "
                                     "step", "referred")
        if on <= order["due_on"]:
            raise DomainRuleViolated(
                f"the deadline ({order['due_on'].isoformat()}) has not passed", order["state"])
        if order["state"] == OrderState.EVIDENCE_SUBMITTED.value:
            raise DomainRuleViolated("a correction awaits re-inspection: re-inspect it first",
                                     order["state"])
        due = new_due_on(step)
        self._escalated(order_id=order_id, institution_id=self.institution_id,
                        step=step.value, reason=reason, officer=officer, escalated_on=on,
                        due_on=due)
        return step.value

    @event(RectificationEscalated)
    def _escalated(self, order_id: str, institution_id: str, step: str, reason: str,
                   officer: str, escalated_on: date, due_on: date | None) -> None:
        order = self.orders[order_id]
        order["escalations"].append({"step": step, "reason": reason, "officer": officer,
                                     "on": escalated_on, "due_on": due_on})
        if due_on is not None:
            order["due_on"] = due_on

    # ---- refusal, cancellation -------------------------------------------------------------
    class Refused(Aggregate.Event):
        """拒绝、阻碍检查: published for credit (once per visit)."""

        visit_id: str
        institution_id: str
        description: str
        department: str
        inspector: str
        refused_on: date
        publish_by: date

    def record_refusal(self, description: str, department: str, inspector: str, on: date,
                       publish_by: date) -> None:
        self._require_status(VisitStatus.SCHEDULED, VisitStatus.IN_PROGRESS,
                             doing="be refused")
        self._require_inspector(department, inspector)
        self._refused(visit_id=str(self.id), institution_id=self.institution_id,
                      description=description, department=department, inspector=inspector,
                      refused_on=on, publish_by=publish_by)

    @event(Refused)
    def _refused(self, visit_id: str, institution_id: str, description: str, department: str,
                 inspector: str, refused_on: date, publish_by: date) -> None:
        self.status = VisitStatus.REFUSED.value
        self.outcome = "refused"
        self.ended_on = refused_on
        self.publish_by = publish_by

    class Cancelled(Aggregate.Event):
        """A visit not begun was cancelled."""

        reason: str
        officer: str
        cancelled_on: date

    def cancel(self, reason: str, officer: str, on: date) -> None:
        self._require_status(VisitStatus.SCHEDULED, doing="be cancelled (it has begun)")
        self._cancelled(reason=reason, officer=officer, cancelled_on=on)

    @event(Cancelled)
    def _cancelled(self, reason: str, officer: str, cancelled_on: date) -> None:
        self.status = VisitStatus.CANCELLED.value

    # ---- public result ---------------------------------------------------------------------
    def public_summary(self) -> dict[str, Any]:
        """What the public sees (公示): the institution, the departments, the outcome, the score
        by area and the findings by item and severity; no inspector, no finding's words, no
        evidence."""
        items = items_of(self.checklist)
        findings = [{"item": f["item"], "item_text": items[f["item"]]["text"],
                     "area": items[f["item"]]["area_name"], "severity": f["severity"]}
                    for f in self.findings.values()]
        accepted = sum(1 for o in self.orders.values()
                       if o["state"] == OrderState.ACCEPTED.value)
        return {"visit_id": str(self.id), "institution_id": self.institution_id,
                "institution_name": self.institution_name, "district": self.district,
                "kind": self.kind, "period": self.period, "departments": self.departments,
                "ended_on": self.ended_on, "outcome": self.outcome, "score": self.score,
                "area_scores": [{"area": a["area"], "name": a["name"], "score": a["score"]}
                                for a in self.area_scores],
                "findings": findings,
                "rectifications": {"ordered": len(self.orders), "accepted": accepted}}

    class ResultPublished(Aggregate.Event):
        """公示: the visit's public result (no inspector, no finding's words, no evidence)."""

        published_on: date
        result: dict

    def publish_result(self, on: date) -> bool:
        if self.status not in (VisitStatus.CONCLUDED.value, VisitStatus.REFUSED.value):
            raise DomainRuleViolated(f"a {self.status} visit has no result to publish yet",
                                     self.status)
        if self.published_on is not None:
            return False
        self._published(published_on=on, result=self.public_summary())
        return True

    @event(ResultPublished)
    def _published(self, published_on: date, result: dict) -> None:
        self.published_on = published_on
        self.public_result = result

    # ---- reading ---------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return {"visit_id": str(self.id), "institution_id": self.institution_id,
                "institution_name": self.institution_name, "district": self.district,
                "kind": self.kind, "trigger": self.trigger, "reference": self.reference,
                "plan_id": self.plan_id, "period": self.period,
                "departments": self.departments, "inspectors": self.inspectors,
                "checklist": {"template_id": self.checklist["template_id"],
                              "version": self.checklist["version"],
                              "title": self.checklist["title"]},
                "scheduled_on": self.scheduled_on, "status": self.status,
                "started_on": self.started_on, "ended_on": self.ended_on,
                "outcome": self.outcome, "score": self.score, "area_scores": self.area_scores,
                "results": list(self.results.values()),
                "findings": list(self.findings.values()),
                "evidence": list(self.evidence.values()),
                "sign_offs": self.sign_offs,
                "missing": {d: self.missing_results(d) for d in self.departments
                            if d not in self.sign_offs},
                "orders": list(self.orders.values()),
                "publish_by": self.publish_by, "published_on": self.published_on,
                "version": self.version}


def departments_checked(departments: Sequence[str], checklist: Mapping[str, Any]) -> None:
    """Every department on a visit has items to check on its checklist."""
    having = {item["department"] for item in items_of(checklist).values()}
    for i, department in enumerate(departments):
        if department not in having:
            raise FieldError(f"departments[{i}]", f"the checklist has no item for {department}",
                             "invalid_choice")
