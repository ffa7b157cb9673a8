"""The inspection service's nameko adapter: every command and query over RPC.

Run: ``python -m tuoyu_shared.serve tuoyu_inspection.service:InspectionService --port 8004``.

People come in through the gateway (``services/gateway``), which serves the routes of
:mod:`tuoyu_inspection.routes` and calls these methods with the caller's verified token; who
records, signs and re-inspects is the token's subject and department. The service's own HTTP
port serves only ``/health`` and ``/metrics``.
"""

from __future__ import annotations

from tuoyu_inspection import bootstrap
from tuoyu_inspection.application import InspectionApplication
from tuoyu_shared.nameko_support import (
    ApplicationProvider,
    CommandContextProvider,
    EventLogEntrypoints,
    passing_rpc,
)

#: The application's commands and queries served over RPC, as they are.
RPC_METHODS = (
    "publish_checklist", "checklist", "enrol_inspector", "withdraw_inspector",
    "declare_conflict", "roster", "create_plan", "record_seed", "draw_plan", "plan",
    "verify_draw", "plans", "close_plan", "close_due_plans", "schedule_targeted_visit",
    "record_item_result", "record_item_results", "record_finding", "attach_evidence",
    "evidence", "sign_off", "record_refusal", "cancel_visit", "submit_rectification",
    "reinspect", "escalate", "publish_overdue_rectifications", "publish_result",
    "publish_due_results", "public_results", "visit", "visits", "rectifications", "workload",
    "statistics", "institutions", "daily",
)


class InspectionService(EventLogEntrypoints):
    name = "inspection"

    app: InspectionApplication = ApplicationProvider(bootstrap.application)
    context = CommandContextProvider()

    locals().update(passing_rpc(InspectionApplication, RPC_METHODS))
