"""An institution's clean inspection period (once per institution and period): inspected in
the period, no finding recorded, no rectification overdue, no refusal. Its id is derived
from the institution and the period, so a second plan of the same period cannot record it
again (the event store's key refuses it)."""

from __future__ import annotations

import uuid
from datetime import date

from eventsourcing.domain import Aggregate, event

_PERIOD_NAMESPACE = uuid.UUID("c3e9a1b2-4d5f-4a6b-9c8d-7e6f5a4b3c21")


def clean_period_id_for(institution_id: str, period: str) -> uuid.UUID:
    return uuid.uuid5(_PERIOD_NAMESPACE, f"{institution_id}/{period}")


class CleanInspectionPeriod(Aggregate):
    class Completed(Aggregate.Created):
        institution_id: str
        period: str
        plan_id: str
        visits: list
        completed_on: date

    @event(Completed)
    def __init__(self, institution_id: str, period: str, plan_id: str, visits: list,
                 completed_on: date) -> None:
        self.institution_id = institution_id
        self.period = period
        self.plan_id = plan_id
        self.visits = visits
        self.completed_on = completed_on

    @staticmethod
    def create_id(institution_id: str, period: str, **_: object) -> uuid.UUID:
        return clean_period_id_for(institution_id, period)
