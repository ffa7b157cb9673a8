"""What the inspection service publishes on ``inspection.events``: each domain event's
published type, version and payload fields (:mod:`tuoyu_shared.contract`).

Four of them were in the catalogue before the service was built, for credit's scoring
(``InspectionFindingRecorded``, ``RectificationOverdue``, ``InspectionRefused``,
``CleanInspectionPeriodCompleted``): their schemas, descriptions included, are kept word for
word (the refinements below). The rest are the service's own lifecycle. No publication carries
personal data: inspectors are named by their officer accounts, a finding's words refuse ID
numbers, evidence is named by its SHA-256 (the file itself is never published).
"""

from __future__ import annotations

from typing import Any

from tuoyu_inspection.domain import (
    ChecklistTemplate,
    CleanInspectionPeriod,
    InspectionPlan,
    InspectorRoster,
    SupervisionVisit,
)
from tuoyu_shared.contract import Contract, Published

_CREDIT_NOTE = (" The credit service applies each event once to the institution's score (the "
                "envelope's event_id is the cause it records), whatever the number of "
                "deliveries; the points are configuration (TUOYU_CREDIT_RULES_FILE), not part "
                "of this schema.")
_INSTITUTION: dict[str, Any] = {
    "type": "string", "format": "uuid",
    "description": "The institution's id as the registration service publishes it (the "
                   "aggregate_id of its Institution events)."}

SupervisionVisit.FindingRecorded.__doc__ = (
    "Published by the inspection service when an inspector records a finding on a supervision "
    "visit (督导检查): one event per finding, when it is recorded, never again for the same "
    "finding (a corrected finding is a new finding_id). The credit service deducts points by "
    "severity." + _CREDIT_NOTE)
SupervisionVisit.RectificationOverdue.__doc__ = (
    "Published by the inspection service when the deadline of a rectification order (整改通知) "
    "has passed and the rectification was not accepted: once per order, by the inspection "
    "service's daily timer on the first day after due_on." + _CREDIT_NOTE)
SupervisionVisit.Refused.__doc__ = (
    "Published by the inspection service when an institution refuses, obstructs or evades a "
    "supervision visit (拒绝、阻碍检查), as recorded by the inspectors of that visit: once per "
    "visit." + _CREDIT_NOTE)
CleanInspectionPeriod.Completed.__doc__ = (
    "Published by the inspection service once per institution and period, when a whole "
    "inspection period of its plan has closed in which the institution was inspected and no "
    "finding was recorded and no rectification was overdue. The credit service adds points (a "
    "commendation)." + _CREDIT_NOTE)

CONTRACT = Contract("inspection", [
    # ---- the four credit scores ----------------------------------------------------------------
    Published(SupervisionVisit.FindingRecorded, "InspectionFindingRecorded", 1, (
        "visit_id", "institution_id", "finding_id", "severity", "item", "description"
    ), schema={
        "visit_id": {"minLength": 1,
                     "description": "The supervision visit (SupervisionVisit aggregate id)."},
        "institution_id": _INSTITUTION,
        "finding_id": {"minLength": 1, "description": "Unique within the visit."},
        "severity": {"enum": ["minor", "major", "serious", "critical"],
                     "description": "minor: a record or routine lapse; major: a standard not "
                                    "met (e.g. carer ratio); serious: a risk to children's "
                                    "safety or health; critical: harm done or imminent "
                                    "danger."},
        "item": {"minLength": 1,
                 "description": "The checklist item found wanting (e.g. a WS/T 821-2023 area "
                                "and item, 两案九制, 一日三检)."},
        "description": {"description": "What was found, in words. No personal data of "
                                       "children or staff in clear."},
    }),
    Published(SupervisionVisit.RectificationOverdue, "RectificationOverdue", 1, (
        "order_id", "institution_id", "due_on"
    ), schema={
        "order_id": {"minLength": 1, "description": "The rectification order."},
        "institution_id": _INSTITUTION,
        "due_on": {"description": "The deadline that passed (Asia/Shanghai calendar date)."},
    }),
    Published(SupervisionVisit.Refused, "InspectionRefused", 1, (
        "visit_id", "institution_id"
    ), schema={
        "visit_id": {"minLength": 1, "description": "The supervision visit that was refused."},
        "institution_id": _INSTITUTION,
    }),
    Published(CleanInspectionPeriod.Completed, "CleanInspectionPeriodCompleted", 1, (
        "institution_id", "period"
    ), schema={
        "institution_id": _INSTITUTION,
        "period": {"pattern": "^[0-9]{4}(-(H[12]|Q[1-4]|(0[1-9]|1[0-2])))?$",
                   "description": "The period of the inspection plan: a year (2025), a half "
                                  "(2025-H1), a quarter (2025-Q3) or a month (2025-07)."},
    }),
    # ---- SupervisionVisit ------------------------------------------------------------------
    Published(SupervisionVisit.Scheduled, "VisitScheduled", 1, (
        "institution_id", "institution_name", "district", "kind", "trigger", "reference",
        "plan_id", "period", "departments", "inspectors", "checklist", "scheduled_on",
        "draw_seed"
    )),
    Published(SupervisionVisit.Started, "VisitStarted", 1, ("started_on",)),
    Published(SupervisionVisit.ItemResultRecorded, "VisitItemResultRecorded", 1, (
        "item", "result", "points", "department", "inspector", "note", "recorded_on"
    )),
    Published(SupervisionVisit.EvidenceAttached, "VisitEvidenceAttached", 1, (
        "sha256", "filename", "content_type", "size", "finding_id", "order_id", "uploaded_by",
        "uploader_role", "attached_on"
    )),
    Published(SupervisionVisit.SignedOff, "VisitSignedOff", 1, (
        "department", "inspector", "signed_on"
    )),
    Published(SupervisionVisit.Concluded, "VisitConcluded", 1, (
        "outcome", "score", "area_scores", "findings_by_severity", "concluded_on", "publish_by"
    )),
    Published(SupervisionVisit.RectificationOrdered, "RectificationOrdered", 1, (
        "order_id", "visit_id", "institution_id", "finding_id", "item", "severity",
        "working_days", "ordered_on", "due_on"
    )),
    Published(SupervisionVisit.RectificationEvidenceSubmitted, "RectificationEvidenceSubmitted",
              1, ("order_id", "statement", "evidence", "submitted_by", "submitted_on")),
    Published(SupervisionVisit.Reinspected, "RectificationReinspected", 1, (
        "order_id", "accepted", "notes", "department", "inspector", "reinspected_on"
    )),
    Published(SupervisionVisit.RectificationEscalated, "RectificationEscalated", 1, (
        "order_id", "institution_id", "step", "reason", "officer", "escalated_on", "due_on"
    )),
    Published(SupervisionVisit.Cancelled, "VisitCancelled", 1, (
        "reason", "officer", "cancelled_on"
    )),
    Published(SupervisionVisit.ResultPublished, "VisitResultPublished", 1, (
        "published_on", "result"
    )),
    # ---- InspectionPlan --------------------------------------------------------------------
    Published(InspectionPlan.Created, "InspectionPlanCreated", 1, (
        "title", "period", "starts_on", "ends_on", "departments", "district", "target_count",
        "inspectors_per_department", "template_id", "template_version", "weights", "ungraded",
        "created_by", "planned_on"
    )),
    Published(InspectionPlan.SeedRecorded, "InspectionPlanSeedRecorded", 1, (
        "seed", "source", "recorded_on"
    )),
    Published(InspectionPlan.TargetsDrawn, "InspectionPlanDrawn", 1, (
        "algorithm", "frame", "frame_digest", "rosters", "conflicts", "targets", "drawn_on"
    )),
    Published(InspectionPlan.Closed, "InspectionPlanClosed", 1, (
        "closed_on", "clean", "inspected"
    )),
    # ---- ChecklistTemplate -----------------------------------------------------------------
    Published(ChecklistTemplate.Created, "ChecklistTemplateCreated", 1, ("template_id",)),
    Published(ChecklistTemplate.VersionPublished, "ChecklistVersionPublished", 1, (
        "template_id", "version", "title", "source", "areas", "published_on"
    )),
    # ---- InspectorRoster -------------------------------------------------------------------
    Published(InspectorRoster.Created, "InspectorRosterOpened", 1, ("department",)),
    Published(InspectorRoster.InspectorEnrolled, "InspectorEnrolled", 1, (
        "inspector", "enrolled_on"
    )),
    Published(InspectorRoster.InspectorWithdrawn, "InspectorWithdrawn", 1, (
        "inspector", "reason", "withdrawn_on"
    )),
    Published(InspectorRoster.ConflictDeclared, "InspectorConflictDeclared", 1, (
        "inspector", "institution_id", "reason", "declared_on"
    )),
])
