"""The payloads of credit's commands and queries, declared once (pydantic v2 models on
:mod:`tuoyu_shared.commands`): validation with field-level errors, and the JSON Schema of each
command that the gateway publishes. The application reads a payload with
:func:`~tuoyu_shared.commands.parse` and acts on the model it returns.

Personal data: free texts (a legal basis, a reason, evidence, a purpose...) are
:func:`FreeText`, which refuses a text holding a resident ID number in clear
(``personal_data``): no ID number is ever stored, returned or logged. A practitioner is named by
their ref, the random pseudonym credit issues (:func:`PersonRef`).

Some commands also take parameters beside the payload, from the path of their URL
(``person_ref``, ``institution_id``, ``list_name``); :func:`read_parameters` checks them with
the same rules as the fields of those names, and reports them under those names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from tuoyu_credit.domain import (
    GRADES,
    LIFETIME,
    BanSource,
    CauseType,
    Decision,
    ListName,
    Severity,
)
from tuoyu_shared.commands import (
    Bool,
    Choice,
    Command,
    Date,
    FreeText,
    InstitutionId,
    Int,
    PersonRef,
    ResidentId,
    Text,
    catalogue_of,
    check_institution_id,
    check_person_ref,
    field_type,
)
from tuoyu_shared.validation import FieldError

MAX_TERM_YEARS = 100
MAX_TERM_DAYS = 36500
MAX_REFERENCES = 100
#: A check id: the public-security inquiry's request id too (a path segment there).
CHECK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
LIST_NAMES = [n.value for n in ListName]


def _reference_list(value: Any) -> Any:
    """The shape of a list of references (each one is checked by the list's item type)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise PydanticCustomError("required", "is required")
    if not isinstance(value, list) or not value or len(value) > MAX_REFERENCES:
        raise PydanticCustomError("invalid_format", "must be a list of 1 to {most} references",
                                  {"most": MAX_REFERENCES})
    return value


#: At least one reference (a document number, a file id), each non-blank free text of at most
#: 500 characters; a list's problems are ``invalid_format``, an item's are named by its index
#: (``evidence[0]``).
References = Annotated[list[FreeText(500)], BeforeValidator(_reference_list),
                       Field(min_length=1, max_length=MAX_REFERENCES)]


def check_list_name(value: Any) -> str:
    """One of the lists (守信激励名单 ``trust_reward``, 严重失信主体名单
    ``serious_dishonesty``)."""
    if value not in LIST_NAMES:
        raise FieldError("", f"must be one of {', '.join(LIST_NAMES)}, got "
                         f"{repr(value)[:60]}", "invalid_choice")
    return value


def _term(value: Any) -> str | int:
    if value == LIFETIME or (not isinstance(value, bool) and isinstance(value, int)
                             and 1 <= value <= MAX_TERM_YEARS):
        return value
    raise FieldError("", f"must be 'lifetime' or a number of years from 1 to "
                     f"{MAX_TERM_YEARS}", "invalid_choice")


#: A ban's term: ``"lifetime"`` or a number of years (1 to :data:`MAX_TERM_YEARS`).
Term = field_type(_term, {"anyOf": [{"const": LIFETIME},
                                    {"type": "integer", "minimum": 1,
                                     "maximum": MAX_TERM_YEARS}]}, False)


#: The checks of the parameters commands take beside their payload, by name.
PARAMETERS: dict[str, Callable[[Any], Any]] = {
    "person_ref": check_person_ref,
    "institution_id": check_institution_id,
    "list_name": check_list_name,
}


def read_parameters(**values: Any) -> tuple[dict[str, Any], list[FieldError]]:
    """Parameters beside a payload (``person_ref=...``), each checked by :data:`PARAMETERS`:
    the clean values, and an error under the parameter's name for each bad one."""
    clean: dict[str, Any] = {}
    errors: list[FieldError] = []
    for name, value in values.items():
        try:
            clean[name] = PARAMETERS[name](value)
        except FieldError as error:
            errors.append(FieldError(name, error.reason, error.code))
    return clean, errors


# ---- practitioners ---------------------------------------------------------------------------
class RegisterPractitioner(Command):
    """Enter a person in the register of practitioners (从业人员库): name and ID number are
    sealed, the person is found again by ID number (credit's blind index) and known by the
    ref credit issues."""

    command_name = "register_practitioner"
    name: Text(50)
    id_number: ResidentId()
    """公民身份号码."""
    person_ref: PersonRef(optional=True) = None
    """The ref of a record opened from a hire by the ref alone, when this is that person
    (their checks wait for the ID number)."""


class ImposeBan(Command):
    """从业禁止: a lifetime ban or one for a number of years, with its legal basis."""

    command_name = "impose_ban"
    ban_ref: FreeText(200, optional=True) = None
    """The ban's reference (made up when left out); imposing it again is refused."""
    source: Choice([s.value for s in BanSource])
    """A court ruling (人民法院判决) or an established finding of abuse."""
    legal_basis: FreeText()
    evidence: References
    officer: FreeText(200)
    starts_on: Date(optional=True) = None
    """By default today."""
    term: Term  # type: ignore[valid-type]


def check_check_id(value: Any) -> str:
    """A check's id: it is also the id of its public-security inquiry (a URL segment)."""
    if not isinstance(value, str) or not CHECK_ID.fullmatch(value.strip()):
        raise FieldError("", "must be 1-100 letters, digits and ._:-, starting with a letter "
                         "or digit", "invalid_format")
    return value.strip()


def CheckId(*, optional: bool = False) -> Any:
    """A check's id (:func:`check_check_id`)."""
    return field_type(check_check_id, {"type": "string", "pattern": CHECK_ID.pattern,
                                       "maxLength": 100}, optional)


class RequestCheck(Command):
    """A yearly check (年度复查) of someone on a roster: barred at once by a ban in force,
    otherwise pending until the public-security records inquiry answers."""

    command_name = "request_check"
    reason: Choice(["yearly"], optional=True) = None
    institution_id: InstitutionId(optional=True) = None
    """The institution the check is made for, if any."""
    check_id: CheckId(optional=True) = None
    """The check's id, also its inquiry's (made up when left out); unique to the person."""


class RetryCheck(Command):
    """Have a flagged check (the inquiry refused) sent for the inquiry again, once its cause
    is dealt with."""

    command_name = "retry_check"
    check_id: CheckId()
    officer: FreeText(200)
    reason: FreeText(2000)
    """What was done about the cause of the flag."""


class CheckPractitioner(Command):
    """Is this person barred today? By ``id_number`` or by ``person_ref``, with the
    ``purpose`` of the read (the read is recorded before it is answered)."""

    command_name = "check_practitioner"
    purpose: FreeText(500)
    id_number: ResidentId(optional=True) = None
    """公民身份号码 (or ``person_ref``)."""
    person_ref: PersonRef(optional=True) = None
    """The person ref (or ``id_number``)."""

    def rules(self) -> Iterable[FieldError]:
        if (self.id_number is None) == (self.person_ref is None):
            yield FieldError("id_number", "give either id_number or person_ref", "required")


class PractitionerReads(Command):
    """For an auditor: every recorded read of a person's record (a read itself)."""

    command_name = "practitioner_reads"
    purpose: FreeText(500)


# ---- scoring by an officer -------------------------------------------------------------------
class RecordScoringCause(Command):
    """A fact that moves the score, entered by an officer (e.g. a finding from an inspection
    made on paper); ``cause_ref`` (the document's number) makes it once only."""

    command_name = "record_scoring_cause"
    cause_type: Choice([c.value for c in CauseType])
    cause_ref: FreeText(200)
    severity: Choice([s.value for s in Severity], optional=True) = None
    """The finding's severity: required for ``finding_recorded`` (and not used otherwise)."""
    note: FreeText(2000, optional=True) = None

    def rules(self) -> Iterable[FieldError]:
        if self.cause_type == CauseType.FINDING_RECORDED and self.severity is None:
            yield FieldError("severity", "is required", "required")

    def details(self) -> dict[str, Any]:
        """The details recorded with the cause."""
        details: dict[str, Any] = {}
        if self.cause_type == CauseType.FINDING_RECORDED:
            details["severity"] = self.severity
        if self.note:
            details["note"] = self.note
        return details


# ---- the listing procedure (守信激励名单, 严重失信主体名单) --------------------------------------
class ProposeListing(Command):
    """Propose an entry on a list, citing the legal basis and the evidence."""

    command_name = "propose_listing"
    legal_basis: FreeText()
    evidence: References
    officer: FreeText(200)
    proposed_term_days: Int(1, MAX_TERM_DAYS)


class SendListingNotice(Command):
    """Prior notice (告知): the institution may state its case until ``respond_by``."""

    command_name = "send_listing_notice"
    officer: FreeText(200)


class ReceiveListingResponse(Command):
    """The institution's statement and defence (陈述申辩), within the window."""

    command_name = "receive_listing_response"
    statement: FreeText(20000)


class DecideListing(Command):
    """List (for ``term_days``, by default the proposed term) or drop."""

    command_name = "decide_listing"
    decision: Choice([d.value for d in Decision])
    officer: FreeText(200)
    reason: FreeText()
    legal_basis: FreeText(optional=True) = None
    evidence: References
    term_days: Int(1, MAX_TERM_DAYS, optional=True) = None


class ApplyForRepair(Command):
    """信用修复: the institution applies to end a dishonesty entry early."""

    command_name = "apply_for_repair"
    application: FreeText(20000)
    evidence: References


class ReviewRepair(Command):
    """An officer approves (the entry is removed today) or rejects a credit repair (信用修复)
    application."""

    command_name = "review_repair"
    approved: Bool()
    officer: FreeText(200)
    reason: FreeText()
    legal_basis: FreeText()
    evidence: References


# ---- queries ---------------------------------------------------------------------------------
class CreditRegisterQuery(Command):
    """Institutions by score, with their grade and lists (optionally filtered)."""

    command_name = "credit_register"
    grade: Choice(GRADES, optional=True) = None
    list_name: Choice(LIST_NAMES, optional=True) = None
    limit: Int(1, 1000) = 100
    offset: Int(0) = 0


COMMANDS = catalogue_of(
    RegisterPractitioner, ImposeBan, RequestCheck, RetryCheck, CheckPractitioner,
    PractitionerReads,
    RecordScoringCause, ProposeListing, SendListingNotice, ReceiveListingResponse,
    DecideListing, ApplyForRepair, ReviewRepair, CreditRegisterQuery,
)
