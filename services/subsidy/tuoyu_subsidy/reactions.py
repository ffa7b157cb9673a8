"""How the subsidy service learns what it judges institutions on: each institution's
:class:`InstitutionStanding`, from registration's events (registered, filed, suspended,
resumed, deregistered; affordable designation and guide price; demonstration levels; enrolment
reported and corrected by month) and credit's (grade; serious-dishonesty listings decided,
expired, removed). Tracked consumers record each change with their position in one
transaction (effectively once); the envelope's ``event_id`` is each change's cause."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuoyu_shared.consumer import ApplicationTrackingStore, TrackedConsumer, tracked_consumer
from tuoyu_shared.envelope import Envelope, institution_id_of
from tuoyu_subsidy.application import SubsidyApp

CONSUMER_NAME = "subsidy"
SERIOUS = "serious_dishonesty"


def _status(status: str, on_field: str | None) -> Callable[[SubsidyApp, Envelope], list[Any]]:
    def react(app: SubsidyApp, env: Envelope) -> list[Any]:
        standing = app.standing_for(institution_id_of(env))
        on = env.payload.get(on_field) if on_field else env.occurred_at[:10]
        standing.change_status(status, on, env.event_id)
        return [standing]

    return react


def _registered(app: SubsidyApp, env: Envelope) -> list[Any]:
    p = env.payload
    standing = app.standing_for(env.aggregate_id)
    standing.register(p["name"], p["district"],
                      "filed" if env.event_type == "InstitutionImported" else "registered",
                      env.event_id)
    return [standing]


def _affordable(granted: bool) -> Callable[[SubsidyApp, Envelope], list[Any]]:
    def react(app: SubsidyApp, env: Envelope) -> list[Any]:
        p = env.payload
        standing = app.standing_for(institution_id_of(env))
        standing.change_affordable(granted, p.get("guide_price_fen") if granted else None,
                                   p.get("designated_on") or p.get("withdrawn_on"),
                                   env.event_id)
        return [standing]

    return react


def _demonstration(granted: bool) -> Callable[[SubsidyApp, Envelope], list[Any]]:
    def react(app: SubsidyApp, env: Envelope) -> list[Any]:
        p = env.payload
        standing = app.standing_for(institution_id_of(env))
        standing.change_demonstration(p["level"], granted,
                                      p.get("granted_on") or p.get("revoked_on"), env.event_id)
        return [standing]

    return react


def _enrolment(app: SubsidyApp, env: Envelope) -> list[Any]:
    p = env.payload
    standing = app.standing_for(institution_id_of(env))
    standing.record_enrolment(p["month"], p["children"], p.get("second_children", 0),
                              p.get("third_children", 0), env.event_id)
    return [standing]


def _grade(field: str) -> Callable[[SubsidyApp, Envelope], list[Any]]:
    def react(app: SubsidyApp, env: Envelope) -> list[Any]:
        standing = app.standing_for(env.payload["institution_id"])
        standing.change_credit(env.event_id, grade=env.payload[field])
        return [standing]

    return react


def _listing_decided(app: SubsidyApp, env: Envelope) -> list[Any]:
    p = env.payload
    if p["list_name"] != SERIOUS or p["decision"] != "listed":
        return []
    standing = app.standing_for(p["institution_id"])
    standing.change_credit(env.event_id, listed=p["listing_id"])
    return [standing]


def _listing_ended(app: SubsidyApp, env: Envelope) -> list[Any]:
    p = env.payload
    if p["list_name"] != SERIOUS:
        return []
    standing = app.standing_for(p["institution_id"])
    standing.change_credit(env.event_id, unlisted=p["listing_id"])
    return [standing]


REACTIONS: dict[tuple[str, str], Callable[[SubsidyApp, Envelope], list[Any]]] = {
    ("registration", "InstitutionRegistered"): _registered,
    ("registration", "InstitutionImported"): _registered,
    ("registration", "InstitutionFiled"): _status("filed", "issued_on"),
    ("registration", "InstitutionSuspendedForRectification"): _status("suspended",
                                                                      "suspended_on"),
    ("registration", "InstitutionResumed"): _status("filed", "resumed_on"),
    ("registration", "InstitutionDeregistered"): _status("deregistered", "deregistered_on"),
    ("registration", "InstitutionAffordableDesignated"): _affordable(True),
    ("registration", "InstitutionAffordableDesignationWithdrawn"): _affordable(False),
    ("registration", "InstitutionDemonstrationLevelGranted"): _demonstration(True),
    ("registration", "InstitutionDemonstrationLevelRevoked"): _demonstration(False),
    ("registration", "InstitutionEnrolmentReported"): _enrolment,
    ("registration", "InstitutionEnrolmentReportCorrected"): _enrolment,
    ("credit", "InstitutionCreditOpened"): _grade("grade"),
    ("credit", "InstitutionCreditGradeChanged"): _grade("new_grade"),
    ("credit", "InstitutionCreditListingDecided"): _listing_decided,
    ("credit", "InstitutionCreditListingExpired"): _listing_ended,
    ("credit", "InstitutionCreditListingRemovedEarly"): _listing_ended,
}


def subsidy_handler(app: SubsidyApp) -> Callable[[Envelope], list[Any]]:
    def handle(env: Envelope) -> list[Any]:
        reaction = REACTIONS.get((env.source, env.event_type))
        return reaction(app, env) if reaction is not None else []

    return handle


def _consumer(app: SubsidyApp, upstream: str, amqp_uri: str | None, exchange: str | None,
              log_reader: Any) -> TrackedConsumer:
    return tracked_consumer(
        app.settings, name=CONSUMER_NAME, upstream=upstream, handler=subsidy_handler(app),
        store=ApplicationTrackingStore(app, CONSUMER_NAME), log_reader=log_reader,
        amqp_uri=amqp_uri, exchange=exchange, routing_keys=("*",))


def registration_consumer(app: SubsidyApp, amqp_uri: str | None = None,
                          exchange: str | None = None, log_reader: Any = None) -> TrackedConsumer:
    return _consumer(app, "registration", amqp_uri, exchange, log_reader)


def credit_consumer(app: SubsidyApp, amqp_uri: str | None = None, exchange: str | None = None,
                    log_reader: Any = None) -> TrackedConsumer:
    return _consumer(app, "credit", amqp_uri, exchange, log_reader)
