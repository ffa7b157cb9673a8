"""Fixtures of the inspection tests: the application on a database of its own, a clock, an
evidence store in the test's own directory, and institutions projected into its directory as
registration's and credit's events would put them there."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from tuoyu_inspection import bootstrap
from tuoyu_inspection.application import InspectionApplication
from tuoyu_inspection.projections import DIRECTORY_VIEW, GRADES_VIEW
from tuoyu_shared.blobs import LocalBlobStore
from tuoyu_shared.context import command_context
from tuoyu_shared.envelope import Envelope
from tuoyu_shared.testing import FixedClock

# Monday 2026-03-02, 10:00 in Shanghai.
MONDAY = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


Clock = FixedClock


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY)


@pytest.fixture
def app(settings_factory, clock, tmp_path) -> InspectionApplication:
    application = bootstrap.application(settings_factory("inspection"), clock=clock,
                                        blobs=LocalBlobStore(tmp_path / "blobs"))
    yield application
    application.close()


def envelope(source: str, event_type: str, aggregate_id: str, version: int,
             payload: dict[str, Any]) -> Envelope:
    return Envelope(event_id=str(uuid.uuid4()), event_type=event_type, schema_version=1,
                    source=source, aggregate_id=aggregate_id, aggregate_version=version,
                    notification_id=0, occurred_at="2026-01-05T02:00:00+00:00",
                    actor="officer", department="health", correlation_id="", causation_id="",
                    payload=payload)


def _add_institutions(app: InspectionApplication, count: int, district: str = "徐汇区",
                      grade: str | None = "B", status: str = "filed") -> list[str]:
    """Institutions as registration's (registered, filed…) and credit's events project
    them."""
    ids = []
    with psycopg.connect(app.settings.database_url) as conn, conn.cursor() as cur:
        for n in range(count):
            institution_id = str(uuid.uuid4())
            ids.append(institution_id)
            DIRECTORY_VIEW.handler(envelope("registration", "InstitutionRegistered",
                                            institution_id, 1, {
                "name": f"{district}托育园{n}", "credit_code": f"CODE{n}",
                "nature": "for_profit", "kind": "childcare_institution", "district": district,
                "street": "街道", "address": f"路{n}号"}), cur)
            if status in ("filed", "suspended", "deregistered"):
                DIRECTORY_VIEW.handler(envelope("registration", "InstitutionFiled",
                                                institution_id, 2, {}), cur)
            if status in ("suspended", "deregistered"):
                event = {"suspended": "InstitutionSuspendedForRectification",
                         "deregistered": "InstitutionDeregistered"}[status]
                DIRECTORY_VIEW.handler(envelope("registration", event, institution_id, 3, {}),
                                       cur)
            if grade is not None:
                GRADES_VIEW.handler(envelope("credit", "InstitutionCreditOpened",
                                             str(uuid.uuid4()), 1, {
                    "institution_id": institution_id, "score": 80, "grade": grade}), cur)
    return ids


@pytest.fixture
def add_institutions():
    """``add_institutions(app, count, district=…, grade=…, status=…)``: their ids."""
    return _add_institutions


def as_officer(name: str, department: str):
    return command_context(actor=name, department=department)


@pytest.fixture
def rosters(app) -> dict[str, list[str]]:
    """Two inspectors in each of health, market regulation and fire rescue."""
    names = {"health": ["health-1", "health-2"], "market_regulation": ["market-1", "market-2"],
             "fire_rescue": ["fire-1", "fire-2"]}
    for department, officers in names.items():
        for officer in officers:
            with as_officer(officer, department):
                app.enrol_inspector({"department": department, "inspector": officer})
    return names
