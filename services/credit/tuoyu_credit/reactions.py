"""How the credit service reacts to the other services' events.

- registration (``registration.events``): a new institution opens its credit record; a hire
  asks for a background check (check id = hire id), barred at once by a ban in force or sent
  for the public-security inquiry (:meth:`CreditApplication.dispatch_inquiries`); a hire
  confirmed puts the person on the institution's roster and a release takes them off it (the
  roster is whom the yearly check covers); a demonstration level granted is a commendation.
  The hire events name their institution in the payload since schema version 2 (their
  aggregate is then the institution's roster); version 1 has it as the aggregate
  (:func:`tuoyu_shared.envelope.institution_id_of` reads either).
- inspection (``inspection.events``: findings, overdue rectifications, refusals, clean
  periods) and subsidy (``subsidy.events``, a service not built yet, whose events are
  documented in ``shared/tuoyu_shared/catalogue/subsidy/``): each moves the score of the
  institution once, with the envelope's ``event_id`` as the cause. Their envelopes are
  checked against the catalogue's schemas before they are applied (inspection's relay checks
  them too): a message that does not match is retried and then parked, never half-applied.

Each upstream has its own :class:`TrackedConsumer` (its own queue, position and log reader for
gap filling over RPC); all three record their effects with their position in one transaction
(:class:`ApplicationTrackingStore`), so a redelivered message changes nothing. They share one
handler, which dispatches on the envelope's source and type, so any of them can re-drive any
parked message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from tuoyu_credit.application import CreditApplication
from tuoyu_credit.domain import CauseType
from tuoyu_shared.calendar_cn import shanghai_date
from tuoyu_shared.catalogue import validate_envelope
from tuoyu_shared.consumer import (
    ApplicationTrackingStore,
    RpcLog,
    TrackedConsumer,
    tracked_consumer,
)
from tuoyu_shared.envelope import Envelope, institution_id_of
from tuoyu_shared.logs import get_logger
from tuoyu_shared.rpc import RpcClient, UnknownService

log = get_logger("tuoyu.credit.reactions")

CONSUMER_NAME = "credit"

# The upstream events this service reacts to, by source.
REGISTRATION_EVENTS = ("InstitutionRegistered", "InstitutionImported",
                       "InstitutionPractitionerHireRequested",
                       "InstitutionPractitionerHired", "InstitutionPractitionerReleased",
                       "InstitutionDemonstrationLevelGranted")
INSPECTION_EVENTS = ("InspectionFindingRecorded", "RectificationOverdue", "InspectionRefused",
                     "CleanInspectionPeriodCompleted")
SUBSIDY_EVENTS = ("SubsidyClawedBack",)
UPSTREAM_EVENTS = {"registration": REGISTRATION_EVENTS, "inspection": INSPECTION_EVENTS,
                   "subsidy": SUBSIDY_EVENTS}

Reaction = Callable[[CreditApplication, Envelope], list[Any]]


def _registered(app: CreditApplication, env: Envelope) -> list[Any]:
    return app.open_credit(env.aggregate_id)


def _hire_requested(app: CreditApplication, env: Envelope) -> list[Any]:
    p = env.payload
    # The practitioner by ref alone (the ref credit issued; masks, in events of before, are
    # not read: nothing of a person is kept from another service's events).
    return app.check_hire(hire_id=p["hire_id"], institution_id=institution_id_of(env),
                          person_ref=p["practitioner"]["ref"])


def _hired(app: CreditApplication, env: Envelope) -> list[Any]:
    p = env.payload
    on = shanghai_date(datetime.fromisoformat(env.occurred_at))
    return app.join_roster(institution_id_of(env), p["hire_id"], p["practitioner_ref"], on)


def _released(app: CreditApplication, env: Envelope) -> list[Any]:
    p = env.payload
    return app.leave_roster(institution_id_of(env), p["hire_id"], p["practitioner_ref"],
                            date.fromisoformat(p["released_on"]))


def _demonstration(app: CreditApplication, env: Envelope) -> list[Any]:
    p = env.payload
    return app.apply_cause(env.aggregate_id, CauseType.DEMONSTRATION_GRANTED, env.event_id,
                           level=p["level"], document=p["document"])


def _finding(app: CreditApplication, env: Envelope) -> list[Any]:
    p = env.payload
    return app.apply_cause(p["institution_id"], CauseType.FINDING_RECORDED, env.event_id,
                           severity=p["severity"], visit_id=p["visit_id"],
                           finding_id=p["finding_id"], item=p["item"])


def _overdue(app: CreditApplication, env: Envelope) -> list[Any]:
    p = env.payload
    return app.apply_cause(p["institution_id"], CauseType.RECTIFICATION_OVERDUE, env.event_id,
                           order_id=p["order_id"], due_on=p["due_on"])


def _refused(app: CreditApplication, env: Envelope) -> list[Any]:
    p = env.payload
    return app.apply_cause(p["institution_id"], CauseType.INSPECTION_REFUSED, env.event_id,
                           visit_id=p["visit_id"])


def _clean_period(app: CreditApplication, env: Envelope) -> list[Any]:
    p = env.payload
    return app.apply_cause(p["institution_id"], CauseType.CLEAN_INSPECTION_PERIOD,
                           env.event_id, period=p["period"])


def _clawed_back(app: CreditApplication, env: Envelope) -> list[Any]:
    p = env.payload
    if p["reason"] != "fraud":
        return []  # an error or other clawback says nothing about honesty
    return app.apply_cause(p["institution_id"], CauseType.SUBSIDY_CLAWBACK_FRAUD, env.event_id,
                           application_id=p["application_id"], amount_fen=p["amount_fen"])


REACTIONS: dict[tuple[str, str], Reaction] = {
    ("registration", "InstitutionRegistered"): _registered,
    ("registration", "InstitutionImported"): _registered,
    ("registration", "InstitutionPractitionerHireRequested"): _hire_requested,
    ("registration", "InstitutionPractitionerHired"): _hired,
    ("registration", "InstitutionPractitionerReleased"): _released,
    ("registration", "InstitutionDemonstrationLevelGranted"): _demonstration,
    ("inspection", "InspectionFindingRecorded"): _finding,
    ("inspection", "RectificationOverdue"): _overdue,
    ("inspection", "InspectionRefused"): _refused,
    ("inspection", "CleanInspectionPeriodCompleted"): _clean_period,
    ("subsidy", "SubsidyClawedBack"): _clawed_back,
}
#: Sources whose envelopes are checked against the catalogue here: nothing checks them before
#: they are published yet (registration's relay checks its own).
CHECKED_SOURCES = frozenset({"inspection", "subsidy"})


class NotYetDeployedLog(RpcLog):
    """The log of a service that may not run yet (subsidy; inspection where it is not
    deployed).

    While no such service takes RPC calls, its log head counts as 0, so the consumer's idle
    catch-up stays quiet instead of warning every few seconds. Reading a range still fails
    loudly: a gap found from a delivered message is never skipped, the message is redelivered
    until the log can be read.
    """

    def __init__(self, rpc: Any, service: str):
        super().__init__(rpc, service)
        self.deployed: bool | None = None

    def head(self) -> int:
        try:
            head = super().head()
        except UnknownService:
            if self.deployed is not False:
                log.info("upstream.not_deployed", upstream=self.service)
            self.deployed = False
            return 0
        self.deployed = True
        return head


def credit_handler(app: CreditApplication) -> Callable[[Envelope], list[Any]]:
    def handle(env: Envelope) -> list[Any]:
        reaction = REACTIONS.get((env.source, env.event_type))
        if reaction is None:
            return []  # another event of the upstream's log (read when filling a gap)
        if env.source in CHECKED_SOURCES:
            validate_envelope(env.to_dict())
        return reaction(app, env)

    return handle


def _consumer(app: CreditApplication, upstream: str, amqp_uri: str | None,
              exchange: str | None, log_reader: Any) -> TrackedConsumer:
    settings = app.settings
    if log_reader is None and upstream != "registration":
        log_reader = NotYetDeployedLog(
            RpcClient(amqp_uri or settings.amqp_uri, heartbeat=settings.amqp_heartbeat),
            upstream)
    # Bound to every event type: order and gaps are judged over the whole log, and the
    # handler ignores the types it does not react to.
    return tracked_consumer(
        settings, name=CONSUMER_NAME, upstream=upstream, handler=credit_handler(app),
        store=ApplicationTrackingStore(app, CONSUMER_NAME), log_reader=log_reader,
        amqp_uri=amqp_uri, exchange=exchange, routing_keys=("*",))


def registration_consumer(app: CreditApplication, amqp_uri: str | None = None,
                          exchange: str | None = None,
                          log_reader: Any = None) -> TrackedConsumer:
    return _consumer(app, "registration", amqp_uri, exchange, log_reader)


def inspection_consumer(app: CreditApplication, amqp_uri: str | None = None,
                        exchange: str | None = None, log_reader: Any = None) -> TrackedConsumer:
    return _consumer(app, "inspection", amqp_uri, exchange, log_reader)


def subsidy_consumer(app: CreditApplication, amqp_uri: str | None = None,
                     exchange: str | None = None, log_reader: Any = None) -> TrackedConsumer:
    return _consumer(app, "subsidy", amqp_uri, exchange, log_reader)
