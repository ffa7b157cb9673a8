"""What registration publishes on ``registration.events``: each domain event's published type,
version and payload fields (:mod:`tuoyu_shared.contract`). The domain's classes may change;
what subscribers receive changes only here, with a new version and its schema in the
catalogue (``python -m tuoyu_shared.catalogue_gen tuoyu_registration.contract:CONTRACT``).

The employment records', the registration cases' and the roster's and reports' bookkeeping
events (opened, carried over, closed) are published too: the relay publishes the whole log,
and a subscriber ignores types it does not use. An institution's roster and enrolment events
were the Institution's until the roster and the reports became aggregates of their own: the
Institution's classes still replay the old ones (published as v1, as they were), and the new
aggregates publish the same types as v2, with ``institution_id`` in the payload (the
envelope's ``aggregate_id`` is then the roster's or the reports' stream). The enrolment reports
are v3: ``health_managed_children`` (健康管理) added, null in the reports recorded before; v2 is
still published beside v3 until :data:`V2_REPORTS_SERVED_UNTIL` (routing keys
``InstitutionEnrolmentReported.v2`` and ``InstitutionEnrolmentReportCorrected.v2``), for
subscribers not yet upgraded (``catalogue/registration/CHANGES.md``).
"""

from __future__ import annotations

from tuoyu_registration.domain import (
    EmploymentRecord,
    EnrolmentReports,
    Institution,
    RegistrationCases,
    Roster,
)
from tuoyu_shared.contract import Contract, Legacy, Published
from tuoyu_shared.people import PUBLICATIONS as PEOPLE_PUBLICATIONS

#: The last day (Asia/Shanghai) the v2 enrolment reports are published beside v3.
V2_REPORTS_SERVED_UNTIL = "2027-06-30"


def _report_as_v2(payload: dict) -> dict:
    """v3 → v2: without ``health_managed_children`` (the figure v2 does not have)."""
    payload.pop("health_managed_children", None)
    return payload


def _correction_as_v2(payload: dict) -> dict:
    """v3 → v2: without ``health_managed_children``, here and in ``previous``."""
    payload.pop("health_managed_children", None)
    if isinstance(payload.get("previous"), dict):
        payload["previous"] = {k: v for k, v in payload["previous"].items()
                               if k != "health_managed_children"}
    return payload


LEGACY = (
    Legacy("InstitutionEnrolmentReported", 2, V2_REPORTS_SERVED_UNTIL, _report_as_v2),
    Legacy("InstitutionEnrolmentReportCorrected", 2, V2_REPORTS_SERVED_UNTIL,
           _correction_as_v2),
)

CONTRACT = Contract("registration", legacy=LEGACY, publications=[
    # ---- Institution ---------------------------------------------------------------------------
    Published(Institution.AffordableDesignated, "InstitutionAffordableDesignated", 1, (
        "guide_price_fen", "designated_on", "document"
    )),
    Published(
        Institution.AffordableDesignationWithdrawn, "InstitutionAffordableDesignationWithdrawn",
        1, (
        "withdrawn_on", "reason"
    )),
    Published(Institution.ChangeFiled, "InstitutionChangeFiled", 1, (
        "changes", "previous", "effective_on"
    )),
    Published(Institution.CreditListingNoted, "InstitutionCreditListingNoted", 1, (
        "credit_list", "listed", "reference"
    )),
    Published(Institution.DemonstrationLevelGranted, "InstitutionDemonstrationLevelGranted", 1, (
        "level", "granted_on", "document"
    )),
    Published(Institution.DemonstrationLevelRevoked, "InstitutionDemonstrationLevelRevoked", 1, (
        "level", "revoked_on", "reason"
    )),
    Published(Institution.Deregistered, "InstitutionDeregistered", 1, (
        "reason", "placement_of_children", "deregistered_on"
    )),
    Published(Institution.EnrolmentReportCorrected, "InstitutionEnrolmentReportCorrected", 1, (
        "month", "classes", "children", "second_children", "third_children", "previous", "reason"
    )),
    Published(Institution.EnrolmentReported, "InstitutionEnrolmentReported", 1, (
        "month", "classes", "children", "second_children", "third_children"
    )),
    Published(Institution.Filed, "InstitutionFiled", 1, (
        "receipt_number", "issued_on", "verification_due_on"
    )),
    Published(Institution.FilingFoundNonCompliant, "InstitutionFilingFoundNonCompliant", 3, (
        "verified_on", "findings", "notified_on", "disclosure", "notified_late",
        "finding_decisions"
    )),
    Published(Institution.FilingSubmitted, "InstitutionFilingSubmitted", 2, (
        "filing", "submitted_on", "receipt_due_on", "findings"
    )),
    Published(Institution.FilingVerified, "InstitutionFilingVerified", 2, (
        "verified_on", "notes", "finding_decisions"
    )),
    Published(Institution.Imported, "InstitutionImported", 1, (
        "name", "credit_code", "nature", "kind", "registering_authority", "person_in_charge",
        "district", "street", "address", "filing", "receipt", "source"
    )),
    Published(Institution.PractitionerHireRefused, "InstitutionPractitionerHireRefused", 1, (
        "hire_id", "practitioner_ref", "ban_reference"
    )),
    Published(Institution.PractitionerHireRequested, "InstitutionPractitionerHireRequested", 1, (
        "hire_id", "practitioner", "role", "certificates", "requested_on"
    )),
    Published(Institution.PractitionerHired, "InstitutionPractitionerHired", 1, (
        "hire_id", "practitioner_ref", "check_reference"
    )),
    Published(Institution.PractitionerReleased, "InstitutionPractitionerReleased", 1, (
        "hire_id", "practitioner_ref", "released_on", "reason"
    )),
    Published(Institution.Registered, "InstitutionRegistered", 1, (
        "name", "credit_code", "nature", "kind", "registering_authority", "person_in_charge",
        "district", "street", "address"
    )),
    Published(Institution.Resumed, "InstitutionResumed", 1, ("resumed_on", "notes")),
    Published(Institution.StaffRemovalCaseClosed, "InstitutionStaffRemovalCaseClosed", 1, (
        "case_id", "closed_on", "resolution"
    )),
    Published(Institution.StaffRemovalCaseOpened, "InstitutionStaffRemovalCaseOpened", 1, (
        "case_id", "practitioner_ref", "ban_reference", "opened_on", "due_on"
    )),
    Published(Institution.SuspendedForRectification, "InstitutionSuspendedForRectification", 1, (
        "order_reference", "reason", "suspended_on"
    )),
    # ---- RegistrationCases ---------------------------------------------------------------------
    Published(RegistrationCases.CaseOpened, "RegistrationCasesCaseOpened", 1, (
        "case_number", "institution_id"
    )),
    Published(RegistrationCases.Opened, "RegistrationCasesOpened", 1, (
        "credit_code", "first_case"
    )),
    # ---- EmploymentRecord ----------------------------------------------------------------------
    Published(EmploymentRecord.HireRefused, "EmploymentRecordHireRefused", 1, (
        "institution_id", "hire_id"
    )),
    Published(EmploymentRecord.HireRequested, "EmploymentRecordHireRequested", 1, (
        "institution_id", "hire_id"
    )),
    Published(EmploymentRecord.Hired, "EmploymentRecordHired", 1, ("institution_id", "hire_id")),
    Published(EmploymentRecord.HiresCarriedOver, "EmploymentRecordHiresCarriedOver", 1, (
        "hires", "up_to"
    )),
    Published(EmploymentRecord.Opened, "EmploymentRecordOpened", 1, ("practitioner_ref",)),
    Published(EmploymentRecord.Released, "EmploymentRecordReleased", 1, (
        "institution_id", "hire_id"
    )),
    # ---- Roster --------------------------------------------------------------------------------
    Published(Roster.CarriedOver, "RosterCarriedOver", 1, (
        "institution_id", "roster", "staff_cases", "closed_on", "institution_version"
    )),
    Published(Roster.Closed, "RosterClosed", 1, ("institution_id", "closed_on")),
    Published(Roster.HireRefused, "InstitutionPractitionerHireRefused", 2, (
        "institution_id", "hire_id", "practitioner_ref", "ban_reference"
    )),
    Published(Roster.HireRequested, "InstitutionPractitionerHireRequested", 2, (
        "institution_id", "hire_id", "practitioner", "role", "certificates", "requested_on"
    )),
    Published(Roster.Hired, "InstitutionPractitionerHired", 2, (
        "institution_id", "hire_id", "practitioner_ref", "check_reference"
    )),
    Published(Roster.Opened, "RosterOpened", 1, ("institution_id",)),
    Published(Roster.Released, "InstitutionPractitionerReleased", 2, (
        "institution_id", "hire_id", "practitioner_ref", "released_on", "reason"
    )),
    Published(Roster.StaffRemovalCaseClosed, "InstitutionStaffRemovalCaseClosed", 2, (
        "institution_id", "case_id", "closed_on", "resolution"
    )),
    Published(Roster.StaffRemovalCaseOpened, "InstitutionStaffRemovalCaseOpened", 2, (
        "institution_id", "case_id", "practitioner_ref", "ban_reference", "opened_on", "due_on"
    )),
    # ---- EnrolmentReports ----------------------------------------------------------------------
    Published(EnrolmentReports.CarriedOver, "EnrolmentReportsCarriedOver", 1, (
        "institution_id", "months", "institution_version"
    )),
    Published(EnrolmentReports.Corrected, "InstitutionEnrolmentReportCorrected", 3, (
        "institution_id", "month", "classes", "children", "second_children", "third_children",
        "previous", "reason", "health_managed_children"
    )),
    Published(EnrolmentReports.Opened, "EnrolmentReportsOpened", 1, ("institution_id",)),
    Published(EnrolmentReports.Reported, "InstitutionEnrolmentReported", 3, (
        "institution_id", "month", "classes", "children", "second_children", "third_children",
        "health_managed_children"
    )),
    # ---- a person's erasure (tuoyu_shared.people) ------------------------------------------------
    *PEOPLE_PUBLICATIONS,
])
