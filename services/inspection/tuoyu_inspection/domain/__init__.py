"""The inspection domain: plain Python, no I/O. Dates are passed in; the domain reads no
clock."""

from .checklist import ChecklistTemplate, check_areas, items_of, template_id_for
from .common import DEPARTMENTS, DomainRuleViolated, canonical_uuid, period_bounds
from .draw import ALGORITHM, draw_inspectors, draw_targets, frame_digest
from .period import CleanInspectionPeriod, clean_period_id_for
from .plan import InspectionPlan, PlanStatus
from .roster import InspectorRoster, roster_id_for
from .rules import GRADES, EscalationStep, InspectionRules, Severity
from .visit import (
    OPEN_ORDER_STATES,
    ItemResult,
    OrderState,
    SupervisionVisit,
    Trigger,
    VisitKind,
    VisitStatus,
    departments_checked,
    order_id_for,
    plan_visit_id_for,
)

__all__ = [
    "ALGORITHM", "DEPARTMENTS", "GRADES", "OPEN_ORDER_STATES", "ChecklistTemplate",
    "CleanInspectionPeriod", "DomainRuleViolated", "EscalationStep", "InspectionPlan",
    "InspectionRules", "InspectorRoster", "ItemResult", "OrderState", "PlanStatus", "Severity",
    "SupervisionVisit", "Trigger", "VisitKind", "VisitStatus", "canonical_uuid",
    "check_areas", "clean_period_id_for", "departments_checked", "draw_inspectors",
    "draw_targets", "frame_digest", "items_of", "order_id_for", "period_bounds",
    "plan_visit_id_for",
    "roster_id_for", "template_id_for",
]
