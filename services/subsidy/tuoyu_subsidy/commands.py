"""The payloads of the subsidy service's commands and queries (pydantic v2 models on
:mod:`tuoyu_shared.commands`): every bad field named at once, and the JSON Schema the gateway
publishes. Money is integer fen (``MoneyFen``); a child is named by resident ID number once,
when claimed (sealed at once, never stored, returned or logged in clear), and by ref after."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tuoyu_shared.commands import (
    Bool,
    Choice,
    Command,
    FreeText,
    Int,
    Items,
    MoneyFen,
    PersonRef,
    ResidentId,
    Text,
    Texts,
    catalogue_of,
    field_type,
)
from tuoyu_shared.validation import FieldError
from tuoyu_subsidy.domain import LEVELS, RESULTS, ProgramKind, check_month

KINDS = [k.value for k in ProgramKind]
STATES = ["draft", "ineligible", "under_review", "rejected", "in_notice", "payable",
          "in_batch", "paid"]


def _month(value: Any) -> str:
    check_month(value, "")
    return value


Month = field_type(_month, {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"}, False)


def _cycle(value: Any) -> str:
    import re

    if not isinstance(value, str) or not re.match(r"^[0-9]{4}-(0[1-9]|1[0-2]|Q[1-4])$", value):
        raise FieldError("", "must be a month (2026-07) or a quarter (2026-Q3)",
                         "invalid_format")
    return value


Cycle = field_type(_cycle, {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2]|Q[1-4])$"},
                   False)


class PublishProgram(Command):
    """A program's new version for a year (rates, funds, months, notice, rules)."""

    command_name = "publish_program"
    code: Text(60)
    kind: Choice(KINDS)
    title: FreeText(200)
    year: Int(2000, 2100)
    terms: dict[str, Any]
    document: FreeText(200)
    """The policy document it rests on (文号)."""


class OpenBudget(Command):
    command_name = "open_budget"
    year: Int(2000, 2100)
    fund: Text(60)
    allocated_fen: MoneyFen()
    document: FreeText(200)


class AllocateBudget(Command):
    command_name = "allocate_budget"
    year: Int(2000, 2100)
    fund: Text(60)
    allocated_fen: MoneyFen()
    document: FreeText(200)


class ChildClaim(Command):
    id_number: ResidentId()
    """The child's resident ID number (sealed at once; the birth date in it decides the age)."""
    month: Month
    birth_order: Int(2, 3)
    evidence: FreeText(200)
    """The reference of the birth-order evidence (户口簿、出生医学证明 number)."""


class DraftApplication(Command):
    """An application of an institution under a program's current version of a year."""

    command_name = "draft_application"
    program: Text(60)
    year: Int(2000, 2100)
    months: Texts(7, max_items=12) = []
    """operating_grant: the months claimed."""
    level: Choice(LEVELS, optional=True) = None
    """demonstration_award: the level."""
    children: Items(ChildClaim, max_items=2000) = []
    """fee_subsidy: each child and month claimed."""

    def rules(self) -> Iterable[FieldError]:
        for i, month in enumerate(self.months):
            try:
                check_month(month, f"months[{i}]")
            except FieldError as e:
                yield e
        if len(set(self.months)) != len(self.months):
            yield FieldError("months", "names a month twice", "duplicate")


class SubmitApplication(Command):
    command_name = "submit_application"


class ReviewApplication(Command):
    command_name = "review_application"
    approved: Bool()
    reasons: Texts(500, max_items=20) = []


class RecordObjection(Command):
    command_name = "record_objection"
    text: FreeText(2000)


class DecideObjection(Command):
    command_name = "decide_objection"
    objection_id: Text(10)
    upheld: Bool()
    reason: FreeText(2000)


class CreateBatch(Command):
    command_name = "create_batch"
    cycle: Cycle


class PaymentResult(Command):
    application_id: Text(36)
    status: Choice(RESULTS)
    reason: FreeText(500, optional=True) = None
    reference: FreeText(100, optional=True) = None

    def rules(self) -> Iterable[FieldError]:
        if self.status != "paid" and not self.reason:
            yield FieldError("reason", f"is required for a {self.status} line", "required")


class ImportResults(Command):
    """The finance system's results of a batch's lines."""

    command_name = "import_results"
    lines: Items(PaymentResult, min_items=1, max_items=10000)


class ClawBack(Command):
    command_name = "claw_back"
    amount_fen: MoneyFen()
    reason: Choice(["fraud", "error", "other"])
    details: FreeText(2000)


class FileAppeal(Command):
    command_name = "file_appeal"
    against: Choice(["rejection", "clawback"])
    clawback_id: Text(10, optional=True) = None
    grounds: FreeText(4000)

    def rules(self) -> Iterable[FieldError]:
        if self.against == "clawback" and not self.clawback_id:
            yield FieldError("clawback_id", "is required for an appeal against a clawback",
                             "required")


class DecideAppeal(Command):
    command_name = "decide_appeal"
    appeal_id: Text(10)
    upheld: Bool()
    reason: FreeText(2000)


class ApplicationsQuery(Command):
    command_name = "applications"
    state: Choice(STATES, optional=True) = None
    institution_id: Text(36, optional=True) = None
    program: Text(60, optional=True) = None
    district: Text(50, optional=True) = None
    limit: Int(1, 1000) = 100
    offset: Int(0) = 0


class LedgerQuery(Command):
    command_name = "ledger"
    institution_id: Text(36, optional=True) = None
    program: Text(60, optional=True) = None
    child_ref: PersonRef(optional=True) = None
    year: Int(2000, 2100, optional=True) = None
    limit: Int(1, 1000) = 200
    offset: Int(0) = 0


COMMANDS = catalogue_of(
    PublishProgram, OpenBudget, AllocateBudget, DraftApplication, SubmitApplication,
    ReviewApplication, RecordObjection, DecideObjection, CreateBatch, ImportResults, ClawBack,
    FileAppeal, DecideAppeal, ApplicationsQuery, LedgerQuery,
)
