"""A budget (预算) per year and fund source (a district's own, an upper level's): the amount
allocated, what approvals reserve, what payments commit, what clawbacks and failures give
back. ``free = allocated - reserved - paid`` never goes below zero: an approval that does not
fit is refused, and concurrent approvals are serialised by the event store's version key (the
application retries on fresh state), so none is lost and none overspends."""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

from .common import DomainRuleViolated

_BUDGET_NAMESPACE = uuid.UUID("4d2c8b1a-9e7f-4a3b-b5c6-0d1e2f3a4b5c")


def budget_id_for(year: int, fund: str) -> uuid.UUID:
    return uuid.uuid5(_BUDGET_NAMESPACE, f"{year}/{fund}")


class InsufficientBudget(DomainRuleViolated):
    """The budget's free amount is less than the approval needs."""


class Budget(Aggregate):
    class Opened(Aggregate.Created):
        """A year's budget of one fund source opened with its allocation."""

        year: int
        fund: str
        allocated_fen: int
        document: str

    @event(Opened)
    def __init__(self, year: int, fund: str, allocated_fen: int, document: str) -> None:
        self.year = year
        self.fund = fund
        self.allocated_fen = allocated_fen
        self.reserved: dict[str, int] = {}
        self.paid: dict[str, int] = {}
        self.returned_fen = 0

    @staticmethod
    def create_id(year: int, fund: str, **_: Any) -> uuid.UUID:
        return budget_id_for(year, fund)

    @property
    def reserved_fen(self) -> int:
        return sum(self.reserved.values())

    @property
    def paid_fen(self) -> int:
        return sum(self.paid.values())

    @property
    def free_fen(self) -> int:
        return self.allocated_fen - self.reserved_fen - self.paid_fen

    class Allocated(Aggregate.Event):
        """The allocation changed (a supplementary budget, 追加; or a cut)."""

        allocated_fen: int
        document: str

    def allocate(self, allocated_fen: int, document: str) -> None:
        if allocated_fen < self.reserved_fen + self.paid_fen:
            raise DomainRuleViolated(
                f"{self.reserved_fen + self.paid_fen} fen is reserved or paid already",
                "allocated")
        self._allocated(allocated_fen=allocated_fen, document=document)

    @event(Allocated)
    def _allocated(self, allocated_fen: int, document: str) -> None:
        self.allocated_fen = allocated_fen

    class Reserved(Aggregate.Event):
        """An approval's amount of this fund reserved."""

        application_id: str
        amount_fen: int

    def reserve(self, application_id: str, amount_fen: int) -> None:
        if application_id in self.reserved or application_id in self.paid:
            return
        if amount_fen > self.free_fen:
            raise InsufficientBudget(
                f"the {self.year} {self.fund} budget has {self.free_fen} fen free; the "
                f"approval needs {amount_fen}", "insufficient",
                details={"fund": self.fund, "free_fen": self.free_fen,
                         "needed_fen": amount_fen})
        self._reserved(application_id=application_id, amount_fen=amount_fen)

    @event(Reserved)
    def _reserved(self, application_id: str, amount_fen: int) -> None:
        self.reserved[application_id] = amount_fen

    class Released(Aggregate.Event):
        """A reservation given back (the application rejected after approval)."""

        application_id: str
        amount_fen: int

    def release(self, application_id: str) -> None:
        amount = self.reserved.get(application_id)
        if amount is not None:
            self._released(application_id=application_id, amount_fen=amount)

    @event(Released)
    def _released(self, application_id: str, amount_fen: int) -> None:
        del self.reserved[application_id]

    class Committed(Aggregate.Event):
        """A reservation paid."""

        application_id: str
        amount_fen: int

    def commit(self, application_id: str) -> None:
        amount = self.reserved.get(application_id)
        if amount is not None:
            self._committed(application_id=application_id, amount_fen=amount)

    @event(Committed)
    def _committed(self, application_id: str, amount_fen: int) -> None:
        del self.reserved[application_id]
        self.paid[application_id] = amount_fen

    class Returned(Aggregate.Event):
        """An amount paid given back to the budget (a clawback recovered), or taken again
        (a clawback reversed on appeal: negative)."""

        application_id: str
        amount_fen: int

    def give_back(self, application_id: str, amount_fen: int) -> None:
        if amount_fen:
            self._returned(application_id=application_id, amount_fen=amount_fen)

    @event(Returned)
    def _returned(self, application_id: str, amount_fen: int) -> None:
        self.paid[application_id] = self.paid.get(application_id, 0) - amount_fen
        self.returned_fen += amount_fen

    def as_dict(self) -> dict[str, Any]:
        return {"year": self.year, "fund": self.fund, "allocated_fen": self.allocated_fen,
                "reserved_fen": self.reserved_fen, "paid_fen": self.paid_fen,
                "free_fen": self.free_fen, "returned_fen": self.returned_fen,
                "version": self.version}
