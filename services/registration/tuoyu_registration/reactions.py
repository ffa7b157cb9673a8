"""How the registration service reacts to the credit service's events.

The consumer records each reaction's new events with its position in one transaction
(:class:`tuoyu_shared.consumer.ApplicationTrackingStore`), so a redelivered message changes
nothing.

Decisions read write-side state only: a ban (``PractitionerBanImposed``) opens removal cases
at the employers named by the person's employment record (从业人员在岗记录, saved with every
hire and release), not by the query tables, so a stopped or broken views projector cannot
make it miss one (:meth:`RegistrationApplication.on_practitioner_barred`).
"""

from __future__ import annotations

from typing import Any

from tuoyu_registration.application import RegistrationApplication
from tuoyu_shared.consumer import ApplicationTrackingStore, TrackedConsumer, tracked_consumer
from tuoyu_shared.envelope import Envelope

# The credit events this service reacts to (see shared/tuoyu_shared/catalogue/credit/).
CHECK_COMPLETED = "PractitionerCheckCompleted"
BAN_IMPOSED = "PractitionerBanImposed"
LISTING_DECIDED = "InstitutionCreditListingDecided"
LISTING_ENDED = ("InstitutionCreditListingExpired", "InstitutionCreditListingRemovedEarly",
                 "InstitutionCreditListingEndedByDishonesty")
CREDIT_EVENTS = (CHECK_COMPLETED, BAN_IMPOSED, LISTING_DECIDED, *LISTING_ENDED)


def credit_handler(app: RegistrationApplication):
    def handle(env: Envelope) -> list[Any]:
        p = env.payload
        if env.event_type == CHECK_COMPLETED:
            return app.on_background_check_completed(
                {"institution_id": p.get("institution_id"), "hire_id": p.get("check_id"),
                 "outcome": p["outcome"], "reference": p["reference"]})
        if env.event_type == BAN_IMPOSED:
            # The employers come from the person's employment record (the event store).
            return app.on_practitioner_barred(
                {"practitioner_ref": p["person_ref"], "ban_reference": p["ban_ref"]})
        if env.event_type == LISTING_DECIDED:
            if p["decision"] != "listed":
                return []
            return app.on_credit_listing(p["institution_id"], p["list_name"], True,
                                         p["listing_id"])
        if env.event_type in LISTING_ENDED:
            return app.on_credit_listing(p["institution_id"], p["list_name"], False,
                                         p["listing_id"])
        return []

    return handle


def credit_consumer(app: RegistrationApplication, amqp_uri: str | None = None,
                    exchange: str | None = None, log_reader: Any = None) -> TrackedConsumer:
    # Bound to every event type: order and gaps are judged over the whole log, and the
    # handler ignores the types it does not react to.
    return tracked_consumer(
        app.settings, name="registration", upstream="credit", handler=credit_handler(app),
        store=ApplicationTrackingStore(app, "registration"), log_reader=log_reader,
        amqp_uri=amqp_uri, exchange=exchange, routing_keys=("*",))
