"""What the subsidy service publishes on ``subsidy.events`` (:mod:`tuoyu_shared.contract`).

``SubsidyClawedBack`` was in the catalogue before the service was built, for credit's scoring:
its schema, words included, is kept exactly (the refinements below). No publication carries a
child's identity but the ref: the resident ID number sealed in a draft is never published, and
what an application claims is published as its months, its level and its children's refs.
"""

from __future__ import annotations

from typing import Any

from tuoyu_shared.contract import Contract, Published
from tuoyu_shared.people import PUBLICATIONS as PEOPLE_PUBLICATIONS
from tuoyu_subsidy.domain import (
    Budget,
    ChildMonthClaim,
    InstitutionStanding,
    OneTimeGrant,
    PaymentBatch,
    SubsidyApplication,
    SubsidyProgram,
)

SubsidyApplication.ClawedBack.__doc__ = (
    "Published by the subsidy service when money paid on a subsidy application is clawed back "
    "(追回), once per clawback, when the clawback is decided. reason 'fraud' means the subsidy "
    "was obtained by deception (骗取补贴): the credit service deducts points for it and for "
    "nothing else ('error': paid by mistake or on changed facts; 'other'). The credit service "
    "applies each event once to the institution's score (the envelope's event_id is the cause "
    "it records), whatever the number of deliveries; the points are configuration "
    "(TUOYU_CREDIT_RULES_FILE), not part of this schema.")


def _claimed(event: Any) -> dict[str, Any]:
    request = event.request
    return {"months": list(request.get("months") or []), "level": request.get("level"),
            "children": [{"child_ref": c["child_ref"], "month": c["month"],
                          "birth_order": c["birth_order"]}
                         for c in request.get("children") or []]}


_CLAIMED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "What is claimed: months (operating grant), a level (demonstration award), "
                   "children by ref with month and birth order (fee subsidy).",
    "properties": {"months": {"type": "array", "items": {"type": "string"}},
                   "level": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                   "children": {"type": "array", "items": {"type": "object"}}}}

CONTRACT = Contract("subsidy", [
    Published(SubsidyApplication.ClawedBack, "SubsidyClawedBack", 1, (
        "application_id", "institution_id", "amount_fen", "reason"
    ), schema={
        "application_id": {"minLength": 1,
                           "description": "The SubsidyApplication the money was paid on."},
        "institution_id": {"format": "uuid",
                           "description": "The institution's id as the registration service "
                                          "publishes it (the aggregate_id of its Institution "
                                          "events)."},
        "amount_fen": {"minimum": 1,
                       "description": "The amount clawed back, in fen (1 yuan = 100 fen)."},
        "reason": {"enum": ["fraud", "error", "other"]},
    }),
    # ---- SubsidyApplication ----------------------------------------------------------------
    Published(SubsidyApplication.Drafted, "SubsidyApplicationDrafted", 1, (
        "institution_id", "institution_name", "district", "program", "kind", "program_version",
        "year", "drafted_by", "drafted_on"), computed={"claimed": (_claimed, _CLAIMED_SCHEMA)}),
    Published(SubsidyApplication.Assessed, "SubsidyApplicationAssessed", 1, (
        "eligible", "amount_fen", "lines", "refusals", "funds", "submitted_by", "submitted_on")),
    Published(SubsidyApplication.DuplicateFlagged, "SubsidyDuplicateChildFlagged", 1, (
        "child_ref", "month", "other_application_id", "other_institution_id")),
    Published(SubsidyApplication.Reviewed, "SubsidyApplicationReviewed", 1, (
        "approved", "reasons", "officer", "reviewed_on", "notice_until")),
    Published(SubsidyApplication.ObjectionRecorded, "SubsidyObjectionRecorded", 1, (
        "objection_id", "text", "received_on")),
    Published(SubsidyApplication.ObjectionDecided, "SubsidyObjectionDecided", 1, (
        "objection_id", "upheld", "reason", "officer", "decided_on")),
    Published(SubsidyApplication.NoticeClosed, "SubsidyNoticeClosed", 1, ("closed_on",)),
    Published(SubsidyApplication.AddedToBatch, "SubsidyAddedToBatch", 1, (
        "batch_id", "amount_fen")),
    Published(SubsidyApplication.PaymentRecorded, "SubsidyPaymentRecorded", 1, (
        "batch_id", "status", "amount_fen", "reason", "reference", "recorded_on")),
    Published(SubsidyApplication.AppealFiled, "SubsidyAppealFiled", 1, (
        "appeal_id", "against", "clawback_id", "grounds", "filed_on", "decide_by")),
    Published(SubsidyApplication.AppealDecided, "SubsidyAppealDecided", 1, (
        "appeal_id", "upheld", "reason", "officer", "decided_on")),
    # ---- PaymentBatch ----------------------------------------------------------------------
    Published(PaymentBatch.Created, "PaymentBatchCreated", 1, (
        "cycle", "lines", "total_fen", "created_by", "created_on")),
    Published(PaymentBatch.Exported, "PaymentBatchExported", 1, (
        "sha256", "lines", "total_fen", "exported_by", "exported_on")),
    Published(PaymentBatch.ResultRecorded, "PaymentBatchResultRecorded", 1, (
        "application_id", "status", "reason", "reference", "recorded_on")),
    Published(PaymentBatch.Closed, "PaymentBatchClosed", 1, ("closed_on", "paid_fen")),
    # ---- Budget ----------------------------------------------------------------------------
    Published(Budget.Opened, "BudgetOpened", 1, ("year", "fund", "allocated_fen", "document")),
    Published(Budget.Allocated, "BudgetAllocated", 1, ("allocated_fen", "document")),
    Published(Budget.Reserved, "BudgetReserved", 1, ("application_id", "amount_fen")),
    Published(Budget.Released, "BudgetReleased", 1, ("application_id", "amount_fen")),
    Published(Budget.Committed, "BudgetCommitted", 1, ("application_id", "amount_fen")),
    Published(Budget.Returned, "BudgetReturned", 1, ("application_id", "amount_fen")),
    # ---- SubsidyProgram --------------------------------------------------------------------
    Published(SubsidyProgram.Created, "SubsidyProgramCreated", 1, ("code", "kind", "title")),
    Published(SubsidyProgram.VersionPublished, "SubsidyProgramVersionPublished", 1, (
        "code", "version", "year", "terms", "document", "published_on")),
    # ---- InstitutionStanding ---------------------------------------------------------------
    Published(InstitutionStanding.Opened, "SubsidyStandingOpened", 1, ("institution_id",)),
    Published(InstitutionStanding.Registered, "SubsidyStandingRegistered", 1, (
        "name", "district", "status", "cause")),
    Published(InstitutionStanding.StatusChanged, "SubsidyStandingStatusChanged", 1, (
        "status", "on", "cause")),
    Published(InstitutionStanding.AffordableChanged, "SubsidyStandingAffordableChanged", 1, (
        "affordable", "guide_price_fen", "on", "cause")),
    Published(InstitutionStanding.DemonstrationChanged, "SubsidyStandingDemonstrationChanged",
              1, ("level", "granted", "on", "cause")),
    Published(InstitutionStanding.EnrolmentRecorded, "SubsidyStandingEnrolmentRecorded", 1, (
        "month", "children", "second_children", "third_children", "cause")),
    Published(InstitutionStanding.CreditChanged, "SubsidyStandingCreditChanged", 1, (
        "grade", "dishonesty_listings", "cause")),
    # ---- claim markers ---------------------------------------------------------------------
    Published(ChildMonthClaim.Claimed, "SubsidyChildMonthClaimed", 1, (
        "child_ref", "month", "application_id", "institution_id")),
    Published(ChildMonthClaim.Reclaimed, "SubsidyChildMonthReclaimed", 1, (
        "application_id", "institution_id")),
    Published(ChildMonthClaim.Released, "SubsidyChildMonthReleased", 1, ("application_id",)),
    Published(OneTimeGrant.Claimed, "SubsidyOneTimeGrantClaimed", 1, (
        "institution_id", "grant", "application_id")),
    Published(OneTimeGrant.Reclaimed, "SubsidyOneTimeGrantReclaimed", 1, (
        "application_id", "institution_id")),
    Published(OneTimeGrant.Released, "SubsidyOneTimeGrantReleased", 1, ("application_id",)),
    # ---- PersonalData (tuoyu_shared.people): erasures ------------------------------------------
    *PEOPLE_PUBLICATIONS,
])
