"""Markers that make a claim once only, by their derived ids (the event store's key refuses a
second creation):

- :class:`ChildMonthClaim`: one per child (by ref) and month, across every institution;
- :class:`OneTimeGrant`: one per institution for the opening grant, one per institution and
  level for the demonstration award.

A marker released (its application rejected) can be claimed again.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

_CHILD_NAMESPACE = uuid.UUID("8e6d4c2b-1a0f-4e9d-8c7b-6a5f4e3d2c1b")
_GRANT_NAMESPACE = uuid.UUID("1f2e3d4c-5b6a-4987-a6b5-c4d3e2f1a0b9")


def child_month_id_for(child_ref: str, month: str) -> uuid.UUID:
    return uuid.uuid5(_CHILD_NAMESPACE, f"{child_ref}/{month}")


def one_time_grant_id_for(institution_id: str, grant: str) -> uuid.UUID:
    return uuid.uuid5(_GRANT_NAMESPACE, f"{institution_id}/{grant}")


class _Marker(Aggregate):
    application_id: str
    institution_id: str

    def holder(self) -> tuple[str, str] | None:
        """(application, institution) holding the claim, None when released."""
        return (self.application_id, self.institution_id) if self.held else None

    class Reclaimed(Aggregate.Event):
        """A released claim taken again, by another application (or the same, on appeal)."""

        application_id: str
        institution_id: str

    def claim(self, application_id: str, institution_id: str) -> bool:
        if self.held:
            return self.application_id == application_id
        self._reclaimed(application_id=application_id, institution_id=institution_id)
        return True

    @event(Reclaimed)
    def _reclaimed(self, application_id: str, institution_id: str) -> None:
        self.application_id, self.institution_id, self.held = (application_id, institution_id,
                                                               True)

    class Released(Aggregate.Event):
        """The claim given up: its application was rejected."""

        application_id: str

    def release(self, application_id: str) -> None:
        if self.held and self.application_id == application_id:
            self._released(application_id=application_id)

    @event(Released)
    def _released(self, application_id: str) -> None:
        self.held = False


class ChildMonthClaim(_Marker):
    class Claimed(Aggregate.Created):
        """A child (by ref) claimed for a month, by one application of one institution."""

        child_ref: str
        month: str
        application_id: str
        institution_id: str

    @event(Claimed)
    def __init__(self, child_ref: str, month: str, application_id: str,
                 institution_id: str) -> None:
        self.child_ref, self.month = child_ref, month
        self.application_id, self.institution_id, self.held = (application_id, institution_id,
                                                               True)

    @staticmethod
    def create_id(child_ref: str, month: str, **_: Any) -> uuid.UUID:
        return child_month_id_for(child_ref, month)


class OneTimeGrant(_Marker):
    class Claimed(Aggregate.Created):
        """A one-time grant (the opening grant, a level's award) claimed by an application."""

        institution_id: str
        grant: str
        application_id: str

    @event(Claimed)
    def __init__(self, institution_id: str, grant: str, application_id: str) -> None:
        self.grant = grant
        self.application_id, self.institution_id, self.held = (application_id, institution_id,
                                                               True)

    @staticmethod
    def create_id(institution_id: str, grant: str, **_: Any) -> uuid.UUID:
        return one_time_grant_id_for(institution_id, grant)
