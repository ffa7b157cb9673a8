"""The subsidy service's nameko adapter: every command and query over RPC.

Run: ``python -m tuoyu_shared.serve tuoyu_subsidy.service:SubsidyService --port 8005``.
People come in through the gateway (:mod:`tuoyu_subsidy.routes`); the service's own HTTP port
serves ``/health`` and ``/metrics`` only.
"""

from __future__ import annotations

from tuoyu_shared.nameko_support import (
    ApplicationProvider,
    CommandContextProvider,
    EventLogEntrypoints,
    PeopleEntrypoints,
    passing_rpc,
)
from tuoyu_subsidy import bootstrap
from tuoyu_subsidy.application import SubsidyApp

RPC_METHODS = (
    "publish_program", "programs", "open_budget", "allocate_budget", "budgets", "budget",
    "draft_application", "submit_application", "review_application", "record_objection",
    "decide_objection", "close_notices", "create_batch", "payment_batch", "batches",
    "export_batch",
    "import_results", "claw_back", "file_appeal", "decide_appeal", "standing", "application",
    "applications", "ledger", "daily",
)


class SubsidyService(PeopleEntrypoints, EventLogEntrypoints):
    name = "subsidy"

    app: SubsidyApp = ApplicationProvider(bootstrap.application)
    context = CommandContextProvider()

    locals().update(passing_rpc(SubsidyApp, RPC_METHODS))
