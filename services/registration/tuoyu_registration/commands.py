"""The payloads of registration's commands and queries, declared once (pydantic v2 models on
:mod:`tuoyu_shared.commands`): validation with field-level errors, and the JSON Schema of each
command that the gateway publishes. The application reads a payload with
:func:`~tuoyu_shared.commands.parse` and acts on the model it returns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import create_model

from tuoyu_registration.domain import (
    AGE_BANDS,
    DEMONSTRATION_LEVELS,
    SERVICE_TYPES,
    STAFF_ROLES,
    ClassType,
    Nature,
    ProviderKind,
    normalise_month,
)
from tuoyu_shared.commands import (
    Bool,
    Choice,
    Choices,
    Command,
    CreditCode,
    Int,
    Items,
    MoneyFen,
    Phone,
    ResidentId,
    Text,
    Texts,
    catalogue_of,
    field_type,
)
from tuoyu_shared.validation import FieldError, clean_text

CLASS_TYPES = [c.value for c in ClassType]


def _month(value: Any) -> str:
    if not isinstance(value, str):
        raise FieldError("", f"must be a string, got {type(value).__name__}", "invalid_type")
    return normalise_month(clean_text(value, "", 7))  # one key per month: 2025-1 is 2025-01


#: A calendar month, ``YYYY-MM`` (``2025-1`` is read as ``2025-01``).
Month = field_type(_month, {"type": "string", "pattern": "^[0-9]{4}-[0-9]{1,2}$"}, False)


# ---- shapes used by several commands ----------------------------------------------------------
class Person(Command):
    """A natural person's identity (sealed as personal data once the command is allowed)."""

    name: Text(50)
    id_number: ResidentId()
    """公民身份号码."""
    phone: Phone()


class PractitionerIdentity(Command):
    """A practitioner's identity (从业人员)."""

    name: Text(50)
    id_number: ResidentId()


class CareClass(Command):
    """One class (班级) of the provider: type, places (托位) and carers (保育人员)."""

    class_type: Choice(CLASS_TYPES)
    places: Int(1, 100)
    carers: Int(0, 100)


class FloorArea(Command):
    indoor_m2: Int(1, 100000)
    """Indoor floor area in square metres (室内面积)."""
    outdoor_m2: Int(0, 100000)
    """Outdoor play area in square metres (户外场地)."""


#: Staff on the site by role (each 0-1000; a role left out is 0).
Staff = create_model("Staff", __base__=Command,
                     **{role: (Int(0, 1000, optional=True), None) for role in STAFF_ROLES})

#: Children of a class by age band in months (each 0-1000; a band left out is 0).
AgeBands = create_model("AgeBands", __base__=Command,
                        **{band: (Int(0, 1000, optional=True), None) for band in AGE_BANDS})


# ---- registration and filing -------------------------------------------------------------------
class RegisterInstitution(Command):
    """登记: enter a provider in the register with its registration facts."""

    command_name = "register_institution"
    name: Text(100)
    credit_code: CreditCode()
    nature: Choice([n.value for n in Nature])
    kind: Choice([k.value for k in ProviderKind])
    district: Text(50)
    street: Text(50)
    address: Text(200)
    person_in_charge: Person
    """负责人."""


class SubmitFiling(Command):
    """备案: the filing facts; the receipt falls due 5 working days later."""

    command_name = "submit_filing"
    service_types: Choices(SERVICE_TYPES, min_items=1, max_items=len(SERVICE_TYPES))
    classes: Items(CareClass, min_items=1, max_items=200)
    floor_area: FloorArea
    staff: Staff  # type: ignore[valid-type]
    meals_served: Bool()
    hygiene_evaluation_passed: Bool()
    """卫生评价合格."""
    fire_safety_passed: Bool()
    """消防安全检查合格."""

    def filing(self) -> dict[str, Any]:
        data = self.data()
        data["staff"] = {role: data["staff"][role] or 0 for role in STAFF_ROLES}
        return data


class IssueFilingReceipt(Command):
    """备案回执."""

    command_name = "issue_filing_receipt"
    receipt_number: Text(50)


class FindingDecision(Command):
    """An officer's decision on one finding of the submission."""

    field: Text(100)
    decision: Choice(["confirmed", "dismissed"])
    reason: Text(2000, multiline=True)


class VerifyFiling(Command):
    """核查 (核实): compliant, or non-compliant with findings, a notice and a public
    disclosure. Each finding of the submission gets a decision: compliant only with all
    dismissed; a non-compliance notice lists the confirmed ones, then ``findings``, the
    officer's own (which may be left out when one is confirmed)."""

    command_name = "verify_filing"
    outcome: Choice(["compliant", "non_compliant"])
    notes: Text(2000, multiline=True, optional=True) = None
    finding_decisions: Items(FindingDecision, max_items=100) = []
    findings: Texts(2000, max_items=100, multiline=True) = []
    disclosure: Text(2000, multiline=True, optional=True) = None
    """信息公示: the text disclosed with a non-compliance notice."""

    def rules(self) -> Iterable[FieldError]:
        if self.outcome != "non_compliant":
            return
        if not self.findings and not any(d.decision == "confirmed"
                                         for d in self.finding_decisions):
            yield FieldError("findings", "at least one finding is required: the officer's "
                             "own or a confirmed finding of the submission", "required")
        if self.disclosure is None:
            yield FieldError("disclosure", "is required", "required")


class Changes(Command):
    """The values a change filing changes (only those given)."""

    name: Text(100, optional=True) = None
    district: Text(50, optional=True) = None
    street: Text(50, optional=True) = None
    address: Text(200, optional=True) = None
    classes: Items(CareClass, min_items=1, max_items=200) | None = None
    person_in_charge: Person | None = None

    def given(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.model_fields_set
                if getattr(self, key) is not None}


class FileChange(Command):
    """变更备案: any of name, site, classes (places) or person in charge."""

    command_name = "file_change"
    changes: Changes

    def rules(self) -> Iterable[FieldError]:
        if not self.changes.given():
            yield FieldError("changes", "give at least one value to change (one of "
                             f"{', '.join(Changes.model_fields)})", "required")


# ---- designations ----------------------------------------------------------------------------
class DesignateAffordable(Command):
    """普惠托育机构认定, with the guide price (指导价) in fen per child per month."""

    command_name = "designate_affordable"
    guide_price_fen: MoneyFen()
    document: Text(200)


class WithdrawAffordable(Command):
    command_name = "withdraw_affordable"
    reason: Text(2000, multiline=True)


class GrantDemonstrationLevel(Command):
    """示范性托育机构 at a level."""

    command_name = "grant_demonstration_level"
    level: Choice(DEMONSTRATION_LEVELS)
    document: Text(200)


class RevokeDemonstrationLevel(Command):
    command_name = "revoke_demonstration_level"
    reason: Text(2000, multiline=True)


# ---- monthly enrolment -----------------------------------------------------------------------
class EnrolmentClass(Command):
    class_type: Choice(CLASS_TYPES)
    children: Int(0, 1000)
    carers: Int(0, 1000)
    age_bands: AgeBands | None = None  # type: ignore[valid-type]


class ReportEnrolment(Command):
    """月度在托报告: children by class and age band, second and third children, children under
    health management."""

    command_name = "report_enrolment"
    month: Month  # type: ignore[valid-type]
    classes: Items(EnrolmentClass, min_items=1, max_items=200)
    second_children: Int(0, 10000)
    """二孩 enrolled."""
    third_children: Int(0, 10000)
    """三孩 enrolled."""
    health_managed_children: Int(0, 10000)
    """健康管理: enrolled children with a current health record (健康档案) and a yearly health
    check this year; at most the children reported."""

    def report(self) -> tuple[str, list[dict[str, Any]], int, int, int]:
        classes = []
        for item in self.classes:
            bands = item.age_bands.model_dump() if item.age_bands is not None else {}
            classes.append({"class_type": item.class_type, "children": item.children,
                            "carers": item.carers,
                            "age_bands": {b: n for b, n in bands.items() if n}})
        return (self.month, classes, self.second_children, self.third_children,
                self.health_managed_children)


class CorrectEnrolment(ReportEnrolment):
    """A correction of a month already reported, with the reason."""

    command_name = "correct_enrolment"
    reason: Text(2000, multiline=True)


# ---- roster ----------------------------------------------------------------------------------
class RequestHire(Command):
    """Put a practitioner on the roster, pending the credit service's background check."""

    command_name = "request_hire"
    practitioner: PractitionerIdentity
    role: Choice(STAFF_ROLES)
    certificates: Texts(100, max_items=100)


class ReleasePractitioner(Command):
    command_name = "release_practitioner"
    hire_id: Text(50)
    reason: Text(2000, multiline=True)


# ---- lifecycle -------------------------------------------------------------------------------
class SuspendForRectification(Command):
    """停业整顿."""

    command_name = "suspend_for_rectification"
    order_reference: Text(100)
    reason: Text(2000, multiline=True)


class Resume(Command):
    command_name = "resume"
    notes: Text(2000, multiline=True, optional=True) = None


class Deregister(Command):
    """注销, with the reason and the placement of the children."""

    command_name = "deregister"
    reason: Text(2000, multiline=True)
    placement_of_children: Text(2000, multiline=True)


# ---- queries ---------------------------------------------------------------------------------
class PublicDisclosureQuery(Command):
    """信息公示 search: filed institutions and their public facts."""

    command_name = "public_disclosure"
    district: Text(50, optional=True) = None
    street: Text(50, optional=True) = None
    kind: Text(50, optional=True) = None
    name: Text(100, optional=True) = None
    """A part of the name."""
    affordable: Bool(optional=True) = None
    limit: Int(1, 1000, optional=True) = None
    """At most this many (default 100)."""
    offset: Int(0, optional=True) = None


COMMANDS = catalogue_of(
    RegisterInstitution, SubmitFiling, IssueFilingReceipt, VerifyFiling, FileChange,
    DesignateAffordable, WithdrawAffordable, GrantDemonstrationLevel, RevokeDemonstrationLevel,
    ReportEnrolment, CorrectEnrolment, RequestHire, ReleasePractitioner,
    SuspendForRectification, Resume, Deregister, PublicDisclosureQuery,
)
