"""A payment batch (支付批次) of one cycle (a month or a quarter): the payable applications
gathered, exported for the finance system, and its results imported back line by line. Every
application is in at most one open batch; a line's result is recorded once; a batch whose lines
all have their results is closed."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from eventsourcing.domain import Aggregate, event

from .common import DomainRuleViolated

RESULTS = ("paid", "failed", "returned")


class PaymentBatch(Aggregate):
    class Created(Aggregate.Created):
        """A batch of the payable applications of a cycle: each line's institution, amount and
        its split over the fund sources."""

        cycle: str
        lines: list
        total_fen: int
        created_by: str
        created_on: date

    @event(Created)
    def __init__(self, cycle: str, lines: list, total_fen: int, created_by: str,
                 created_on: date) -> None:
        self.cycle = cycle
        self.lines = {line["application_id"]: dict(line, result=None) for line in lines}
        self.total_fen = total_fen
        self.created_by = created_by
        self.closed = False
        self.exported: list[dict[str, Any]] = []

    @staticmethod
    def create_id(**_: Any) -> uuid.UUID:
        return uuid.uuid4()

    class Exported(Aggregate.Event):
        """The batch's file was exported for the finance system (its SHA-256 and totals)."""

        sha256: str
        lines: int
        total_fen: int
        exported_by: str
        exported_on: date

    def record_export(self, sha256: str, by: str, on: date) -> None:
        self._exported(sha256=sha256, lines=len(self.lines), total_fen=self.total_fen,
                       exported_by=by, exported_on=on)

    @event(Exported)
    def _exported(self, sha256: str, lines: int, total_fen: int, exported_by: str,
                  exported_on: date) -> None:
        self.exported.append({"sha256": sha256, "on": exported_on, "by": exported_by})

    class ResultRecorded(Aggregate.Event):
        """The finance system's result of one line: paid (with its reference), failed or
        returned (with the reason)."""

        application_id: str
        status: str
        reason: str
        reference: str
        recorded_on: date

    def record_result(self, application_id: str, status: str, reason: str, reference: str,
                      on: date) -> bool:
        """False when this line's result was recorded already (the same import twice); a
        different result for a recorded line is refused."""
        line = self.lines.get(application_id)
        if line is None:
            raise DomainRuleViolated(f"the batch has no line for application {application_id}",
                                     "closed" if self.closed else "open")
        if line["result"] is not None:
            if line["result"]["status"] == status:
                return False
            raise DomainRuleViolated(
                f"the line of application {application_id} was recorded "
                f"{line['result']['status']} already", "recorded")
        self._result(application_id=application_id, status=status, reason=reason,
                     reference=reference, recorded_on=on)
        if all(entry["result"] is not None for entry in self.lines.values()):
            self._closed(closed_on=on, paid_fen=sum(
                entry["amount_fen"] for entry in self.lines.values()
                if entry["result"]["status"] == "paid"))
        return True

    @event(ResultRecorded)
    def _result(self, application_id: str, status: str, reason: str, reference: str,
                recorded_on: date) -> None:
        self.lines[application_id]["result"] = {"status": status, "reason": reason,
                                                "reference": reference, "on": recorded_on}

    class Closed(Aggregate.Event):
        """Every line has its result."""

        closed_on: date
        paid_fen: int

    @event(Closed)
    def _closed(self, closed_on: date, paid_fen: int) -> None:
        self.closed = True

    def as_dict(self) -> dict[str, Any]:
        lines = list(self.lines.values())
        return {"batch_id": str(self.id), "cycle": self.cycle, "total_fen": self.total_fen,
                "lines": lines, "closed": self.closed, "exported": self.exported,
                "results": {s: sum(1 for x in lines if x["result"] and x["result"]["status"]
                                   == s) for s in RESULTS},
                "version": self.version}
