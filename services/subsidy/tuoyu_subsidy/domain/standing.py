"""What the subsidy service knows of an institution (机构资格档案), learned from registration's
and credit's events: its filing status, affordable designation and guide price, demonstration
level, the enrolment it reported month by month, its credit grade and the serious-dishonesty
listings in force. Eligibility is decided from this aggregate (write-side state, kept with the
consumers' positions in one transaction), never from a query table.

Each change records the upstream event it came from (``cause``). Events of the two upstreams
arrive in any order relative to each other: the record opens on whichever comes first.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

_STANDING_NAMESPACE = uuid.UUID("7c3e1a9b-2d4f-4b6a-8e0c-1f2a3b4c5d6e")


def standing_id_for(institution_id: str) -> uuid.UUID:
    return uuid.uuid5(_STANDING_NAMESPACE, str(uuid.UUID(str(institution_id))))


class InstitutionStanding(Aggregate):
    class Opened(Aggregate.Created):
        """The subsidy service's record of an institution opened (by the first event heard of
        it)."""

        institution_id: str

    @event(Opened)
    def __init__(self, institution_id: str) -> None:
        self.institution_id = institution_id
        self.name = ""
        self.district = ""
        self.status = "unknown"
        self.affordable = False
        self.guide_price_fen: int | None = None
        self.demonstration_levels: list[str] = []
        self.enrolment: dict[str, dict[str, int]] = {}
        self.grade: str | None = None
        self.dishonesty_listings: list[str] = []
        self.causes: list[str] = []

    @staticmethod
    def create_id(institution_id: str) -> uuid.UUID:
        return standing_id_for(institution_id)

    def _seen(self, cause: str) -> bool:
        return cause in self.causes

    class Registered(Aggregate.Event):
        """Its name and district (registered, or imported filed)."""

        name: str
        district: str
        status: str
        cause: str

    def register(self, name: str, district: str, status: str, cause: str) -> None:
        if not self._seen(cause):
            self._registered(name=name, district=district, status=status, cause=cause)

    @event(Registered)
    def _registered(self, name: str, district: str, status: str, cause: str) -> None:
        self.name, self.district, self.status = name, district, status
        self._remember(cause)

    class StatusChanged(Aggregate.Event):
        """Filed (备案), suspended (停业整顿), resumed, deregistered (注销)."""

        status: str
        on: Any
        cause: str

    def change_status(self, status: str, on: Any, cause: str) -> None:
        if not self._seen(cause) and status != self.status:
            self._status(status=status, on=on, cause=cause)

    @event(StatusChanged)
    def _status(self, status: str, on: Any, cause: str) -> None:
        self.status = status
        self._remember(cause)

    class AffordableChanged(Aggregate.Event):
        """普惠 designation granted (with its guide price) or withdrawn."""

        affordable: bool
        guide_price_fen: int | None
        on: Any
        cause: str

    def change_affordable(self, affordable: bool, guide_price_fen: int | None, on: Any,
                          cause: str) -> None:
        if not self._seen(cause):
            self._affordable(affordable=affordable, guide_price_fen=guide_price_fen, on=on,
                             cause=cause)

    @event(AffordableChanged)
    def _affordable(self, affordable: bool, guide_price_fen: int | None, on: Any,
                    cause: str) -> None:
        self.affordable = affordable
        self.guide_price_fen = guide_price_fen if affordable else None
        self._remember(cause)

    class DemonstrationChanged(Aggregate.Event):
        """A demonstration level granted or revoked."""

        level: str
        granted: bool
        on: Any
        cause: str

    def change_demonstration(self, level: str, granted: bool, on: Any, cause: str) -> None:
        if not self._seen(cause):
            self._demonstration(level=level, granted=granted, on=on, cause=cause)

    @event(DemonstrationChanged)
    def _demonstration(self, level: str, granted: bool, on: Any, cause: str) -> None:
        levels = [x for x in self.demonstration_levels if x != level]
        self.demonstration_levels = sorted([*levels, level]) if granted else levels
        self._remember(cause)

    class EnrolmentRecorded(Aggregate.Event):
        """The enrolment reported (or corrected) for a month: children, of whom second and
        third children."""

        month: str
        children: int
        second_children: int
        third_children: int
        cause: str

    def record_enrolment(self, month: str, children: int, second_children: int,
                         third_children: int, cause: str) -> None:
        if not self._seen(cause):
            self._enrolment(month=month, children=children, second_children=second_children,
                            third_children=third_children, cause=cause)

    @event(EnrolmentRecorded)
    def _enrolment(self, month: str, children: int, second_children: int,
                   third_children: int, cause: str) -> None:
        self.enrolment[month] = {"children": children, "second_children": second_children,
                                 "third_children": third_children}
        self._remember(cause)

    class CreditChanged(Aggregate.Event):
        """Its credit grade, and the serious-dishonesty listings in force (失信联合惩戒)."""

        grade: str | None
        dishonesty_listings: list
        cause: str

    def change_credit(self, cause: str, grade: str | None = None,
                      listed: str | None = None, unlisted: str | None = None) -> None:
        if self._seen(cause):
            return
        listings = set(self.dishonesty_listings)
        if listed:
            listings.add(listed)
        if unlisted:
            listings.discard(unlisted)
        self._credit(grade=grade or self.grade, dishonesty_listings=sorted(listings),
                     cause=cause)

    @event(CreditChanged)
    def _credit(self, grade: str | None, dishonesty_listings: list, cause: str) -> None:
        self.grade = grade
        self.dishonesty_listings = dishonesty_listings
        self._remember(cause)

    def _remember(self, cause: str) -> None:
        self.causes = [*self.causes[-199:], cause]  # a bounded second guard against doubles

    def as_dict(self) -> dict[str, Any]:
        return {"institution_id": self.institution_id, "name": self.name,
                "district": self.district, "status": self.status,
                "affordable": self.affordable, "guide_price_fen": self.guide_price_fen,
                "demonstration_levels": self.demonstration_levels,
                "enrolment": self.enrolment, "grade": self.grade,
                "dishonesty_listings": self.dishonesty_listings}
