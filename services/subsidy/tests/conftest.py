"""Fixtures of the subsidy tests: the application on a database of its own with a clock, and
institutions whose standing is fed the way registration's and credit's events feed it (through
the service's reaction handler)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tuoyu_shared.context import command_context
from tuoyu_shared.envelope import Envelope
from tuoyu_shared.testing import FixedClock
from tuoyu_subsidy import bootstrap
from tuoyu_subsidy.application import SubsidyApp
from tuoyu_subsidy.reactions import subsidy_handler

# Monday 2026-07-06, 10:00 in Shanghai.
MONDAY = datetime(2026, 7, 6, 2, 0, tzinfo=UTC)


Clock = FixedClock


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY)


@pytest.fixture
def app(settings_factory, clock) -> SubsidyApp:
    application = bootstrap.application(settings_factory("subsidy"), clock=clock)
    yield application
    application.close()


class Upstream:
    """Registration's and credit's events about institutions, applied as the consumers apply
    them."""

    def __init__(self, app: SubsidyApp):
        self.app = app
        self.handle = subsidy_handler(app)

    def send(self, source: str, event_type: str, aggregate_id: str,
             payload: dict[str, Any], schema_version: int = 1) -> Envelope:
        env = Envelope(event_id=str(uuid.uuid4()), event_type=event_type,
                       schema_version=schema_version,
                       source=source, aggregate_id=aggregate_id, aggregate_version=1,
                       notification_id=0, occurred_at="2026-01-05T02:00:00+00:00",
                       actor="officer", department="health", correlation_id="",
                       causation_id="", payload=payload)
        with self.app.batch():
            changed = self.handle(env)
            self.app.save(*changed)
        return env

    def institution(self, *, affordable: bool = True, grade: str = "B",
                    enrolment: dict[str, tuple[int, int, int]] | None = None,
                    levels: tuple[str, ...] = (), status: str = "filed",
                    district: str = "徐汇区") -> str:
        iid = str(uuid.uuid4())
        self.send("registration", "InstitutionRegistered", iid,
                  {"name": f"托育园{iid[:4]}", "district": district})
        if status in ("filed", "suspended", "deregistered"):
            self.send("registration", "InstitutionFiled", iid, {"issued_on": "2026-01-05"})
        if status == "suspended":
            self.send("registration", "InstitutionSuspendedForRectification", iid,
                      {"suspended_on": "2026-02-01"})
        if status == "deregistered":
            self.send("registration", "InstitutionDeregistered", iid,
                      {"deregistered_on": "2026-02-01"})
        if affordable:
            self.send("registration", "InstitutionAffordableDesignated", iid, {
                "guide_price_fen": 180000, "designated_on": "2026-01-10",
                "document": "普惠认定"})
        for level in levels:
            self.send("registration", "InstitutionDemonstrationLevelGranted", iid, {
                "level": level, "granted_on": "2026-01-10", "document": "示范"})
        for month, (children, second, third) in (enrolment or {}).items():
            self.send("registration", "InstitutionEnrolmentReported", str(uuid.uuid4()), {
                "institution_id": iid, "month": month, "classes": [], "children": children,
                "second_children": second, "third_children": third})
        self.send("credit", "InstitutionCreditOpened", str(uuid.uuid4()),
                  {"institution_id": iid, "score": 100, "grade": grade})
        return iid


@pytest.fixture
def upstream(app) -> Upstream:
    return Upstream(app)


@pytest.fixture
def budgets(app) -> None:
    """2026 budgets of both funds, large."""
    with command_context(actor="finance-1", department="finance"):
        for fund in ("district", "upper_level"):
            app.open_budget({"year": 2026, "fund": fund, "allocated_fen": 10**10,
                             "document": "2026年区级预算"})
