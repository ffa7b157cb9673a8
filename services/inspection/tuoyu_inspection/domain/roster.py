"""A department's roster of inspectors (执法检查人员名录) and their declared conflicts of
interest (回避): whom a plan's draw picks from. Inspectors are named by their officer account
(the subject of their token), so what they record on a visit is theirs, proven."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from eventsourcing.domain import Aggregate, event

from .common import DomainRuleViolated

_ROSTER_NAMESPACE = uuid.UUID("5a2f7c1e-8d3b-4e9a-b6f0-3c1d2e4f5a67")


def roster_id_for(department: str) -> uuid.UUID:
    return uuid.uuid5(_ROSTER_NAMESPACE, department)


class InspectorRoster(Aggregate):
    class Created(Aggregate.Created):
        """A department's roster of inspectors opened."""

        department: str

    @event(Created)
    def __init__(self, department: str) -> None:
        self.department = department
        self.inspectors: dict[str, dict[str, Any]] = {}
        self.conflicts: dict[str, dict[str, str]] = {}  # inspector → institution → reason

    @staticmethod
    def create_id(department: str) -> uuid.UUID:
        return roster_id_for(department)

    class InspectorEnrolled(Aggregate.Event):
        """An officer put on their department's roster of inspectors."""

        inspector: str
        enrolled_on: date

    def enrol(self, inspector: str, on: date) -> bool:
        if inspector in self.inspectors:
            return False
        self._enrolled(inspector=inspector, enrolled_on=on)
        return True

    @event(InspectorEnrolled)
    def _enrolled(self, inspector: str, enrolled_on: date) -> None:
        self.inspectors[inspector] = {"inspector": inspector, "enrolled_on": enrolled_on}

    class InspectorWithdrawn(Aggregate.Event):
        """An inspector taken off the roster."""

        inspector: str
        reason: str
        withdrawn_on: date

    def withdraw(self, inspector: str, reason: str, on: date) -> None:
        if inspector not in self.inspectors:
            raise DomainRuleViolated(f"{inspector} is not on the {self.department} roster",
                                     "not_enrolled")
        self._withdrawn(inspector=inspector, reason=reason, withdrawn_on=on)

    @event(InspectorWithdrawn)
    def _withdrawn(self, inspector: str, reason: str, withdrawn_on: date) -> None:
        del self.inspectors[inspector]

    class ConflictDeclared(Aggregate.Event):
        """回避: an inspector's conflict of interest with an institution; never drawn for it."""

        inspector: str
        institution_id: str
        reason: str
        declared_on: date

    def declare_conflict(self, inspector: str, institution_id: str, reason: str,
                         on: date) -> bool:
        if inspector not in self.inspectors:
            raise DomainRuleViolated(f"{inspector} is not on the {self.department} roster",
                                     "not_enrolled")
        if institution_id in self.conflicts.get(inspector, {}):
            return False
        self._conflict(inspector=inspector, institution_id=institution_id, reason=reason,
                       declared_on=on)
        return True

    @event(ConflictDeclared)
    def _conflict(self, inspector: str, institution_id: str, reason: str,
                  declared_on: date) -> None:
        self.conflicts.setdefault(inspector, {})[institution_id] = reason

    def conflict_pairs(self) -> list[list[str]]:
        """``[department, inspector, institution_id]`` of the inspectors on the roster."""
        return sorted([self.department, inspector, institution]
                      for inspector, institutions in self.conflicts.items()
                      if inspector in self.inspectors for institution in institutions)

    def as_dict(self) -> dict[str, Any]:
        return {"department": self.department,
                "inspectors": sorted(self.inspectors.values(), key=lambda i: i["inspector"]),
                "conflicts": [{"inspector": i, "institution_id": inst, "reason": reason}
                              for i, insts in sorted(self.conflicts.items())
                              for inst, reason in sorted(insts.items())
                              if i in self.inspectors]}
