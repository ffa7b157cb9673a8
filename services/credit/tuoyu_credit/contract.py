"""What credit publishes on ``credit.events``: each domain event's published type, version and
payload fields (:mod:`tuoyu_shared.contract`). The domain's classes may change; what
subscribers receive changes only here, with a new version and its schema in the catalogue
(``python -m tuoyu_shared.catalogue_gen tuoyu_credit.contract:CONTRACT``); what changed is in
``shared/tuoyu_shared/catalogue/credit/CHANGES.md``.

No publication carries personal data but the person's ref: names and ID numbers are sealed
in the log and never published (nor any mask of them), and a public-security answer is
published without its result and categories.
"""

from __future__ import annotations

from tuoyu_credit.domain import InstitutionCredit, Practitioner
from tuoyu_shared.contract import Contract, Published
from tuoyu_shared.people import PUBLICATIONS as PEOPLE_PUBLICATIONS

CONTRACT = Contract("credit", [
    # ---- InstitutionCredit ---------------------------------------------------------------------
    Published(InstitutionCredit.GradeChanged, "InstitutionCreditGradeChanged", 1, (
        "institution_id", "old_grade", "new_grade", "cause_ref"
    )),
    Published(InstitutionCredit.ListingDecided, "InstitutionCreditListingDecided", 1, (
        "institution_id", "listing_id", "list_name", "decision", "decided_on", "officer",
        "reason", "legal_basis", "evidence", "term_start", "term_end"
    )),
    Published(
        InstitutionCredit.ListingEndedByDishonesty, "InstitutionCreditListingEndedByDishonesty",
        1, (
        "institution_id", "listing_id", "list_name", "on", "dishonesty_listing_id"
    )),
    Published(InstitutionCredit.ListingExpired, "InstitutionCreditListingExpired", 1, (
        "institution_id", "listing_id", "list_name", "on"
    )),
    Published(InstitutionCredit.ListingNoticeSent, "InstitutionCreditListingNoticeSent", 1, (
        "institution_id", "listing_id", "list_name", "officer", "notified_on", "respond_by"
    )),
    Published(InstitutionCredit.ListingProposed, "InstitutionCreditListingProposed", 1, (
        "institution_id", "listing_id", "list_name", "legal_basis", "evidence", "officer",
        "proposed_term_days", "proposed_on"
    )),
    Published(InstitutionCredit.ListingRemovedEarly, "InstitutionCreditListingRemovedEarly", 1, (
        "institution_id", "listing_id", "list_name", "on"
    )),
    Published(
        InstitutionCredit.ListingResponseReceived, "InstitutionCreditListingResponseReceived", 1, (
        "institution_id", "listing_id", "list_name", "statement", "received_on"
    )),
    Published(InstitutionCredit.Opened, "InstitutionCreditOpened", 1, (
        "institution_id", "score", "grade"
    )),
    Published(InstitutionCredit.RepairApplied, "InstitutionCreditRepairApplied", 1, (
        "institution_id", "listing_id", "list_name", "application", "evidence", "applied_on"
    )),
    Published(InstitutionCredit.RepairReviewed, "InstitutionCreditRepairReviewed", 1, (
        "institution_id", "listing_id", "list_name", "approved", "officer", "reason",
        "legal_basis", "evidence", "reviewed_on"
    )),
    Published(InstitutionCredit.ScoreChanged, "InstitutionCreditScoreChanged", 1, (
        "institution_id", "delta", "new_score", "cause_type", "cause_ref", "reason", "details"
    )),
    # ---- Practitioner --------------------------------------------------------------------------
    Published(Practitioner.BanImposed, "PractitionerBanImposed", 1, (
        "person_ref", "ban_ref", "source", "legal_basis", "evidence", "officer", "starts_on",
        "term", "term_years", "ends_on"
    )),
    Published(Practitioner.BanLifted, "PractitionerBanLifted", 1, (
        "person_ref", "ban_ref", "on", "reason"
    )),
    Published(Practitioner.CheckCompleted, "PractitionerCheckCompleted", 2, (
        "check_id", "institution_id", "person_ref", "outcome", "reference", "officer",
        "completed_on", "answered_by"
    )),
    Published(Practitioner.CheckRequested, "PractitionerCheckRequested", 1, (
        "check_id", "person_ref", "reason", "institution_id", "requested_on"
    )),
    Published(Practitioner.CheckFlagged, "PractitionerCheckFlagged", 1, (
        "check_id", "person_ref", "flag", "reason", "flagged_on"
    )),
    Published(Practitioner.CheckRetried, "PractitionerCheckRetried", 1, (
        "check_id", "person_ref", "officer", "reason", "retried_on"
    )),
    Published(Practitioner.IdentitySealed, "PractitionerIdentitySealed", 2, (
        "person_ref",
    )),
    Published(Practitioner.InquiryAnswered, "PractitionerInquiryAnswered", 1, (
        "check_id", "person_ref", "inquiry_reference", "answered_at"
    )),
    Published(Practitioner.JoinedRoster, "PractitionerJoinedRoster", 1, (
        "person_ref", "institution_id", "hire_id", "on"
    )),
    Published(Practitioner.LeftRoster, "PractitionerLeftRoster", 1, (
        "person_ref", "institution_id", "hire_id", "on"
    )),
    Published(Practitioner.Registered, "PractitionerRegistered", 2, (
        "person_ref", "registered_from"
    )),
    # ---- PersonalData (tuoyu_shared.people): erasures ------------------------------------------
    *PEOPLE_PUBLICATIONS,
])
