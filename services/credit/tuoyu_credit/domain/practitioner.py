"""A practitioner's record (从业人员): background checks and bans (从业禁止, 污点禁入).

The person is known by ``person_ref``, a random pseudonym the credit service issues (credit is
the practitioner register, 从业人员库: other services ask it for a practitioner's ref and use
that one); it is found again by ID number through credit's blind index, outside the domain.
Name and ID number arrive already sealed (``{"ref", "sealed"}``, see
:mod:`tuoyu_shared.personal_data`) and the domain only carries them. No mask is ever stored:
what may be shown of a person comes from the vault.

A record may also have been opened from a hire that registration asked about before credit
issued practitioner refs (:meth:`Practitioner.register_from_hire`, events of that time only):
it holds the ref alone (``{"ref"}``), and its checks cannot be sent for the public-security
inquiry (flagged ``identity_unknown``) until an officer registers the same person with the
name and ID number, which are then sealed onto the record (``IdentitySealed``).

A ban comes from a court ruling (a 从业禁止 order) or an abuse finding, with a legal basis and
a term: lifetime, or a number of years from ``starts_on``. A term ban covers
``[starts_on, starts_on + years)`` and is lifted by the daily timer once it has ended.

A background check (未成年人保护法 第62条; on hire, and yearly for everyone on a roster) is
requested, then answered in one of two ways, never otherwise:

- **barred at once** by credit's own ban list (:meth:`Practitioner.bar_by_ban`): a ban in
  force on the day, cited by its reference;
- **by the public-security records inquiry** (:meth:`Practitioner.record_inquiry_answer`): the
  answer (its reference, result, the categories of a record, when it was answered) is
  recorded, and the check completes ``barred`` on a record found (or a ban in force by then),
  ``cleared`` only on "no record" with no ban in force.

Until then the check is pending; it may be flagged for an officer (:meth:`flag_check`: the
identity unknown, the inquiry refused), and an officer may have a flagged check sent again
(:meth:`retry_check`). Whether the external system was down is not the domain's business: an
outage records nothing, and a check is never completed for want of an answer.

Reads of the record are audited by the application layer, not here.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate, event

from tuoyu_shared.validation import FieldError

from .common import (
    DomainRuleViolated,
    add_years,
    require_choice,
    require_date,
    require_not_before,
    require_positive_int,
    require_references,
    require_text,
)

_PRACTITIONER_NAMESPACE = uuid.UUID("7224e79d-159e-407b-a887-0d73adabe40f")

LIFETIME = "lifetime"

#: The offences 未成年人保护法 第62条 names, as the public-security inquiry reports them.
RECORD_CATEGORIES = ("sexual_offence", "abuse", "violence", "trafficking")


def practitioner_id_for(person_ref: str) -> uuid.UUID:
    """One record per person: the id is derived from the person's ref."""
    return uuid.uuid5(_PRACTITIONER_NAMESPACE, require_text(person_ref, "person_ref", 200))


class CheckReason(StrEnum):
    HIRE = "hire"  # requested by registration when an institution hires
    YEARLY = "yearly"  # the yearly re-check of everyone on a roster


class CheckOutcome(StrEnum):
    CLEARED = "cleared"
    BARRED = "barred"


class AnsweredBy(StrEnum):
    BAN_LIST = "ban_list"  # credit's own ban list: a ban in force
    PUBLIC_SECURITY = "public_security"  # the public-security records inquiry


class InquiryResult(StrEnum):
    NO_RECORD = "no_record"
    RECORD_FOUND = "record_found"


class CheckFlag(StrEnum):
    #: The record holds the ref alone: no ID number to send (an officer registers the person).
    IDENTITY_UNKNOWN = "identity_unknown"
    #: The public-security system refused the inquiry itself (the data must be corrected).
    INQUIRY_REJECTED = "inquiry_rejected"


class RegisteredFrom(StrEnum):
    OFFICER = "officer"  # entered with the name and ID number (sealed)
    HIRE = "hire"  # a hire registration asked about before refs were credit's: the ref only


class BanSource(StrEnum):
    COURT_RULING = "court_ruling"  # 人民法院判决的从业禁止
    ABUSE_FINDING = "abuse_finding"  # an established finding of abuse or violence


def _without_mask(value: Any) -> Any:
    """A stored personal value of schema version 1 without its mask (``masked``): masks are
    never kept in the log any more."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "masked"}
    return value


def _require_sealed(value: object, field: str, person_ref: str) -> dict[str, str]:
    """Sealed personal data of this person, ``{"ref", "sealed"}``: never a clear value, never
    a mask."""
    if not isinstance(value, Mapping) or set(value) != {"ref", "sealed"}:
        raise FieldError(field, "must be sealed personal data (ref, sealed), never a clear "
                         "value or a mask", "invalid_type")
    if value["ref"] != person_ref:
        raise FieldError(field, "was sealed for another person", "inconsistent_with_person")
    return {str(k): require_text(v, f"{field}.{k}", 10000) for k, v in value.items()}


def _require_term(term: object) -> int | None:
    """``"lifetime"`` → None; a positive number of years → that number."""
    if term == LIFETIME:
        return None
    if isinstance(term, str):
        raise FieldError("term", f"must be 'lifetime' or a number of years, got {term!r}",
                         "invalid_choice")
    return require_positive_int(term, "term")


class Practitioner(Aggregate):
    """A person who works, or applies to work, in childcare."""

    #: Version 2: personal values without masks (snapshots of version 1 are upcast).
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        for field in ("name", "id_number"):
            if field in state:
                state[field] = _without_mask(state[field])

    class Registered(Aggregate.Created):
        """The person entered the credit service's register (从业人员库): with the name and
        ID number, sealed (``registered_from`` ``officer``), or, before credit issued the
        practitioners' refs, from a hire registration asked about (``hire``: the ref alone).
        Since version 2 no mask is published (nor stored): only the ref."""

        person_ref: str
        name: dict[str, str]
        id_number: dict[str, str]
        registered_from: str

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["name"] = _without_mask(state["name"])
            state["id_number"] = _without_mask(state["id_number"])

        payload_schema: ClassVar[dict[str, Any]] = {
            "registered_from": {"enum": [r.value for r in RegisteredFrom]}}

    class IdentitySealed(Aggregate.Event):
        """An officer registered a person first known from a hire: the name and the ID number,
        sealed, are now on the record (its checks flagged ``identity_unknown`` may be sent
        for the inquiry). Since version 2 no mask is published (nor stored)."""

        person_ref: str
        name: dict[str, str]
        id_number: dict[str, str]

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["name"] = _without_mask(state["name"])
            state["id_number"] = _without_mask(state["id_number"])

    class CheckRequested(Aggregate.Event):
        """A background check was asked for (on hire or yearly)."""

        check_id: str
        person_ref: str
        reason: str
        institution_id: str | None
        requested_on: dt.date

        payload_schema: ClassVar[dict[str, Any]] = {
            "reason": {"enum": [r.value for r in CheckReason]}}

    class InquiryAnswered(Aggregate.Event):
        """The public-security records inquiry (公安机关违法犯罪记录查询, 未成年人保护法 第62条)
        answered a check: its reference (查询编号), the result, the categories of a record
        found, when it answered. Published without the result and the categories (a
        criminal record is not for subscribers: the check's outcome follows in
        ``PractitionerCheckCompleted``)."""

        check_id: str
        person_ref: str
        inquiry_reference: str
        result: str
        categories: list[str]
        answered_at: dt.datetime

    class CheckFlagged(Aggregate.Event):
        """A pending check needs an officer: ``identity_unknown`` (the record holds no ID
        number to inquire with: register the person) or ``inquiry_rejected`` (the
        public-security system refused the inquiry; ``reason`` names its status, field and
        code, never a value). The check stays pending: it is never cleared for this."""

        check_id: str
        person_ref: str
        flag: str
        reason: str
        flagged_on: dt.date

        payload_schema: ClassVar[dict[str, Any]] = {
            "flag": {"enum": [f.value for f in CheckFlag]}}

    class CheckRetried(Aggregate.Event):
        """An officer had a flagged check sent for the inquiry again (after the cause was
        dealt with), with the reason."""

        check_id: str
        person_ref: str
        officer: str
        reason: str
        retried_on: dt.date

    class CheckCompleted(Aggregate.Event):
        """The check's answer, and what answered it (``answered_by``): credit's own ban list
        (``ban_list``: ``barred`` with the reference of the ban in force; before version 2
        also ``cleared`` when no ban was in force, with the check's id) or the public-security
        records inquiry (``public_security``: ``barred`` with the inquiry's reference when it
        found a record, or with the ban's when a ban came into force meanwhile; ``cleared``
        with the inquiry's reference, only on no record and no ban in force).
        ``institution_id`` is the institution that asked (a hire's check id is the hire id),
        None for a yearly check not made for an institution."""

        check_id: str
        institution_id: str | None
        person_ref: str
        outcome: str
        reference: str
        officer: str
        completed_on: dt.date
        answered_by: str

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["answered_by"] = AnsweredBy.BAN_LIST.value  # answered at once, from bans

        payload_schema: ClassVar[dict[str, Any]] = {
            "outcome": {"enum": [o.value for o in CheckOutcome]},
            "answered_by": {"enum": [a.value for a in AnsweredBy]}}

    class JoinedRoster(Aggregate.Event):
        """The person joined an institution's roster (registration confirmed hire
        ``hire_id``): from now on they are re-checked yearly."""

        person_ref: str
        institution_id: str
        hire_id: str
        on: dt.date

    class LeftRoster(Aggregate.Event):
        """The person left an institution's roster (registration released hire
        ``hire_id``); ``on`` is the day of the release."""

        person_ref: str
        institution_id: str
        hire_id: str
        on: dt.date

    class BanImposed(Aggregate.Event):
        """A ban (从业禁止): lifetime (``term_years`` and ``ends_on`` None) or for a term."""

        person_ref: str
        ban_ref: str
        source: str
        legal_basis: str
        evidence: list[str]
        officer: str
        starts_on: dt.date
        term: str
        term_years: int | None
        ends_on: dt.date | None

        payload_schema: ClassVar[dict[str, Any]] = {
            "source": {"enum": [s.value for s in BanSource]},
            "term": {"enum": [LIFETIME, "years"]}}

    class BanLifted(Aggregate.Event):
        """A term ban ended (``on`` is its end date)."""

        person_ref: str
        ban_ref: str
        on: dt.date
        reason: str

    # -- creation ---------------------------------------------------------------------------

    @staticmethod
    def create_id(person_ref: str, **_: Any) -> uuid.UUID:
        return practitioner_id_for(person_ref)

    @event(Registered)
    def __init__(self, person_ref: str, name: dict[str, str], id_number: dict[str, str],
                 registered_from: str):
        self.person_ref = person_ref
        self.name = name
        self.id_number = id_number
        self.registered_from = registered_from
        self.checks: dict[str, dict[str, Any]] = {}
        self.bans: dict[str, dict[str, Any]] = {}
        self.hires: dict[str, dict[str, Any]] = {}

    @classmethod
    def register(cls, person_ref: str, name: Mapping[str, str],
                 id_number: Mapping[str, str]) -> Practitioner:
        """The person enters the register with the name and ID number, sealed."""
        person_ref = require_text(person_ref, "person_ref", 200)
        return cls(person_ref=person_ref, name=_require_sealed(name, "name", person_ref),
                   id_number=_require_sealed(id_number, "id_number", person_ref),
                   registered_from=RegisteredFrom.OFFICER.value)

    @classmethod
    def register_from_hire(cls, person_ref: str) -> Practitioner:
        """Open the record of a person first met in a hire, by the ref alone (a hire
        registration asked about with a ref credit did not issue: events of before)."""
        person_ref = require_text(person_ref, "person_ref", 200)
        return cls(person_ref=person_ref, name={"ref": person_ref},
                   id_number={"ref": person_ref}, registered_from=RegisteredFrom.HIRE.value)

    @property
    def identity_sealed(self) -> bool:
        """Whether the record holds the sealed ID number (not the ref alone)."""
        return "sealed" in self.id_number

    def seal_identity(self, name: Mapping[str, str], id_number: Mapping[str, str]) -> bool:
        """Put the sealed name and ID number on a record opened from a hire. Returns False,
        recording nothing, when the record holds them already."""
        name = _require_sealed(name, "name", self.person_ref)
        id_number = _require_sealed(id_number, "id_number", self.person_ref)
        if self.identity_sealed:
            return False
        self._seal_identity(person_ref=self.person_ref, name=name, id_number=id_number)
        return True

    @event(IdentitySealed)
    def _seal_identity(self, person_ref: str, name: dict[str, str],
                       id_number: dict[str, str]) -> None:
        self.name = name
        self.id_number = id_number
        for check in self.checks.values():  # the identity is known now: they may be sent
            if check["state"] == "requested" and (check.get("flag") or {}).get(
                    "flag") == CheckFlag.IDENTITY_UNKNOWN:
                check["flag"] = None

    # -- queries ----------------------------------------------------------------------------

    def active_bans(self, on: dt.date) -> list[dict[str, Any]]:
        """Copies of the bans in force on ``on``, by their dates (whatever the timer did)."""
        on = require_date(on, "on")
        return [copy.deepcopy(ban) for ban in self.bans.values()
                if ban["starts_on"] <= on and (ban["ends_on"] is None or on < ban["ends_on"])]

    def is_barred(self, on: dt.date) -> bool:
        return bool(self.active_bans(on))

    def barring_ban(self, on: dt.date) -> str | None:
        """The reference of the ban in force on ``on`` that bars longest (a lifetime ban
        first), or None when no ban is in force: what a check answers."""
        bans = self.active_bans(on)
        if not bans:
            return None
        return max(bans, key=lambda b: b["ends_on"] or dt.date.max)["ban_ref"]

    def bans_not_ended(self, on: dt.date) -> list[str]:
        """The refs of the bans in force on ``on`` or starting later (a term not yet ended):
        what the ban list must keep (未成年人保护法 第62条)."""
        on = require_date(on, "on")
        return sorted(ban["ban_ref"] for ban in self.bans.values()
                      if ban["ends_on"] is None or on < ban["ends_on"])

    @property
    def rosters(self) -> list[str]:
        """The institutions whose roster the person is on now (by a hire not released)."""
        return sorted({h["institution_id"] for h in self._hires.values()
                       if h["left_on"] is None})

    @property
    def last_checked_on(self) -> dt.date | None:
        """The day the last completed check was answered (None before any)."""
        return max((c["completed_on"] for c in self.checks.values()
                    if c["completed_on"] is not None), default=None)

    @property
    def _hires(self) -> dict[str, dict[str, Any]]:
        # A snapshot taken before rosters were recorded has no ``hires``.
        return self.__dict__.setdefault("hires", {})

    def check(self, check_id: str) -> dict[str, Any] | None:
        found = self.checks.get(check_id)
        if not found:
            return None
        found = copy.deepcopy(found)
        found.setdefault("inquiry", None)  # a check recorded before the inquiry
        found.setdefault("flag", None)
        return found

    def pending_checks(self, reason: CheckReason | str | None = None) -> list[str]:
        """The ids of the checks requested and not completed (of one reason, if given)."""
        return sorted(c["check_id"] for c in self.checks.values()
                      if c["state"] == "requested" and (reason is None or c["reason"] == reason))

    # -- background checks ------------------------------------------------------------------

    def request_check(self, check_id: str, reason: CheckReason | str,
                      institution_id: uuid.UUID | str | None, requested_on: dt.date) -> None:
        """Ask for a check. A hire's check names the hiring institution; a yearly check may
        name the institution whose roster it covers, or none."""
        check_id = require_text(check_id, "check_id", 200)
        why = require_choice(reason, "reason", CheckReason)
        institution = None
        if institution_id is not None or why is CheckReason.HIRE:
            institution = require_text(
                str(institution_id) if isinstance(institution_id, uuid.UUID)
                else institution_id, "institution_id", 200)
        requested_on = require_date(requested_on, "requested_on")
        if check_id in self.checks:
            state = self.checks[check_id]["state"]
            raise DomainRuleViolated(f"check {check_id} was already requested; it is {state}",
                                     state=state)
        self._request_check(check_id=check_id, person_ref=self.person_ref, reason=why.value,
                            institution_id=institution, requested_on=requested_on)

    @event(CheckRequested)
    def _request_check(self, check_id: str, person_ref: str, reason: str,
                       institution_id: str | None, requested_on: dt.date) -> None:
        self.checks[check_id] = {
            "check_id": check_id, "state": "requested", "reason": reason,
            "institution_id": institution_id, "requested_on": requested_on,
            "outcome": None, "reference": None, "completed_on": None, "completed_by": None,
            "inquiry": None, "flag": None,
        }

    def _pending(self, check_id: object, action: str) -> dict[str, Any]:
        found = self.checks.get(check_id) if isinstance(check_id, str) else None
        state = found["state"] if found else "none"
        if state != "requested":
            raise DomainRuleViolated(f"cannot {action} check {check_id!r}: it is {state} "
                                     f"(needs requested)", state=state)
        return found  # type: ignore[return-value]

    def bar_by_ban(self, check_id: str, officer: str, on: dt.date) -> str | None:
        """Credit's own ban list, checked at once: when a ban is in force on ``on``, complete
        the check ``barred`` citing it and return the ban's reference; otherwise record
        nothing and return None (the check waits for the inquiry)."""
        found = self._pending(check_id, "bar")
        officer = require_text(officer, "officer", 200)
        on = require_date(on, "on")
        barring = self.barring_ban(on)
        if barring is None:
            return None
        require_not_before(on, found["requested_on"], "completed_on", "the request")
        self._complete_check(check_id=check_id, institution_id=found["institution_id"],
                             person_ref=self.person_ref, outcome=CheckOutcome.BARRED.value,
                             reference=barring, officer=officer, completed_on=on,
                             answered_by=AnsweredBy.BAN_LIST.value)
        return barring

    def record_inquiry_answer(self, check_id: str, inquiry_reference: str,
                              result: InquiryResult | str, categories: list[str] | tuple[str, ...],
                              answered_at: dt.datetime, officer: str, on: dt.date) -> str:
        """The public-security inquiry answered: record the answer and complete the check;
        returns the outcome. ``barred`` on a record found (the inquiry's reference) or a ban
        in force on ``on`` (the ban's reference); ``cleared`` (the inquiry's reference) only
        on no record and no ban in force."""
        found = self._pending(check_id, "answer")
        inquiry_reference = require_text(inquiry_reference, "inquiry_reference", 100)
        answer = require_choice(result, "result", InquiryResult)
        if isinstance(categories, str) or not isinstance(categories, (list, tuple)):
            raise FieldError("categories", "must be a list of categories", "invalid_type")
        unknown = [c for c in categories if c not in RECORD_CATEGORIES]
        if unknown:
            raise FieldError("categories", f"unknown categories {unknown!r}", "invalid_choice")
        kinds = [c for c in RECORD_CATEGORIES if c in categories]
        if (answer is InquiryResult.RECORD_FOUND) != bool(kinds):
            raise FieldError("categories", "a record found names its categories, no record "
                             "none", "inconsistent")
        if not isinstance(answered_at, dt.datetime) or answered_at.tzinfo is None:
            raise FieldError("answered_at", "must be an aware datetime", "invalid_type")
        officer = require_text(officer, "officer", 200)
        on = require_date(on, "on")
        require_not_before(on, found["requested_on"], "completed_on", "the request")
        self._answer_inquiry(check_id=check_id, person_ref=self.person_ref,
                             inquiry_reference=inquiry_reference, result=answer.value,
                             categories=kinds, answered_at=answered_at.astimezone(dt.UTC))
        barring = self.barring_ban(on)
        if barring is not None:
            outcome, reference = CheckOutcome.BARRED, barring
        elif answer is InquiryResult.RECORD_FOUND:
            outcome, reference = CheckOutcome.BARRED, inquiry_reference
        else:
            outcome, reference = CheckOutcome.CLEARED, inquiry_reference
        self._complete_check(check_id=check_id, institution_id=found["institution_id"],
                             person_ref=self.person_ref, outcome=outcome.value,
                             reference=reference, officer=officer, completed_on=on,
                             answered_by=AnsweredBy.PUBLIC_SECURITY.value)
        return outcome.value

    @event(InquiryAnswered)
    def _answer_inquiry(self, check_id: str, person_ref: str, inquiry_reference: str,
                        result: str, categories: list[str], answered_at: dt.datetime) -> None:
        self.checks[check_id]["inquiry"] = {
            "reference": inquiry_reference, "result": result, "categories": list(categories),
            "answered_at": answered_at}

    def flag_check(self, check_id: str, flag: CheckFlag | str, reason: str,
                   on: dt.date) -> bool:
        """Flag a pending check for an officer. Returns False, recording nothing, when it
        carries that flag already."""
        found = self._pending(check_id, "flag")
        kind = require_choice(flag, "flag", CheckFlag)
        reason = require_text(reason, "reason", 500)
        on = require_date(on, "on")
        if (found.get("flag") or {}).get("flag") == kind.value:
            return False
        self._flag_check(check_id=check_id, person_ref=self.person_ref, flag=kind.value,
                         reason=reason, flagged_on=on)
        return True

    @event(CheckFlagged)
    def _flag_check(self, check_id: str, person_ref: str, flag: str, reason: str,
                    flagged_on: dt.date) -> None:
        self.checks[check_id]["flag"] = {"flag": flag, "reason": reason, "on": flagged_on}

    def retry_check(self, check_id: str, officer: str, reason: str, on: dt.date) -> None:
        """An officer has a flagged check sent for the inquiry again. A check whose identity
        is unknown cannot be: the person must be registered with the ID number first."""
        found = self._pending(check_id, "retry")
        officer = require_text(officer, "officer", 200)
        reason = require_text(reason, "reason")
        on = require_date(on, "on")
        flag = (found.get("flag") or {}).get("flag")
        if flag is None:
            raise DomainRuleViolated(f"check {check_id} is not flagged: it is sent already",
                                     state="requested")
        if not self.identity_sealed:
            raise DomainRuleViolated(f"check {check_id} cannot be sent: the record holds no "
                                     "ID number (register the person first)",
                                     state=CheckFlag.IDENTITY_UNKNOWN.value)
        self._retry_check(check_id=check_id, person_ref=self.person_ref, officer=officer,
                          reason=reason, retried_on=on)

    @event(CheckRetried)
    def _retry_check(self, check_id: str, person_ref: str, officer: str, reason: str,
                     retried_on: dt.date) -> None:
        self.checks[check_id]["flag"] = None

    @event(CheckCompleted)
    def _complete_check(self, check_id: str, institution_id: str | None, person_ref: str,
                        outcome: str, reference: str, officer: str, completed_on: dt.date,
                        answered_by: str) -> None:
        self.checks[check_id].update(state="completed", outcome=outcome, reference=reference,
                                     completed_on=completed_on, completed_by=officer,
                                     answered_by=answered_by)

    # -- rosters ----------------------------------------------------------------------------

    def join_roster(self, institution_id: uuid.UUID | str, hire_id: str, on: dt.date) -> bool:
        """Registration confirmed a hire: the person is on that institution's roster.
        Returns False, recording nothing, when this hire was recorded already (joined, or
        joined and left)."""
        institution = require_text(str(institution_id), "institution_id", 200)
        hire_id = require_text(hire_id, "hire_id", 200)
        on = require_date(on, "on")
        if hire_id in self._hires:
            return False
        self._join_roster(person_ref=self.person_ref, institution_id=institution,
                          hire_id=hire_id, on=on)
        return True

    @event(JoinedRoster)
    def _join_roster(self, person_ref: str, institution_id: str, hire_id: str,
                     on: dt.date) -> None:
        self._hires[hire_id] = {"institution_id": institution_id, "joined_on": on,
                                "left_on": None}

    def leave_roster(self, institution_id: uuid.UUID | str, hire_id: str,
                     on: dt.date) -> bool:
        """Registration released a hire. Returns False, recording nothing, when the hire is
        not on a roster (never joined, or left already)."""
        institution = require_text(str(institution_id), "institution_id", 200)
        hire_id = require_text(hire_id, "hire_id", 200)
        on = require_date(on, "on")
        hire = self._hires.get(hire_id)
        if hire is None or hire["left_on"] is not None:
            return False
        if hire["institution_id"] != institution:
            raise DomainRuleViolated(f"hire {hire_id} is at institution "
                                     f"{hire['institution_id']}, not {institution}")
        self._leave_roster(person_ref=self.person_ref, institution_id=institution,
                           hire_id=hire_id, on=on)
        return True

    @event(LeftRoster)
    def _leave_roster(self, person_ref: str, institution_id: str, hire_id: str,
                      on: dt.date) -> None:
        self._hires[hire_id]["left_on"] = on

    # -- bans (从业禁止) ----------------------------------------------------------------------

    def impose_ban(self, ban_ref: str, source: BanSource | str, legal_basis: str,
                   evidence: list[str], officer: str, starts_on: dt.date,
                   term: str | int) -> None:
        """Impose a ban; ``term`` is ``"lifetime"`` or a number of years from ``starts_on``."""
        ban_ref = require_text(ban_ref, "ban_ref", 200)
        origin = require_choice(source, "source", BanSource)
        legal_basis = require_text(legal_basis, "legal_basis")
        evidence = require_references(evidence, "evidence")
        officer = require_text(officer, "officer", 200)
        starts_on = require_date(starts_on, "starts_on")
        years = _require_term(term)
        if ban_ref in self.bans:
            state = "lifted" if self.bans[ban_ref]["lifted_on"] else "imposed"
            raise DomainRuleViolated(f"ban {ban_ref} was already imposed; it is {state}",
                                     state=state)
        self._impose_ban(person_ref=self.person_ref, ban_ref=ban_ref, source=origin.value,
                         legal_basis=legal_basis, evidence=evidence, officer=officer,
                         starts_on=starts_on,
                         term=LIFETIME if years is None else "years", term_years=years,
                         ends_on=None if years is None else add_years(starts_on, years))

    @event(BanImposed)
    def _impose_ban(self, person_ref: str, ban_ref: str, source: str, legal_basis: str,
                    evidence: list[str], officer: str, starts_on: dt.date, term: str,
                    term_years: int | None, ends_on: dt.date | None) -> None:
        self.bans[ban_ref] = {
            "ban_ref": ban_ref, "source": source, "legal_basis": legal_basis,
            "evidence": list(evidence), "imposed_by": officer, "starts_on": starts_on,
            "term": term, "term_years": term_years, "ends_on": ends_on, "lifted_on": None,
        }

    def lift_expired_bans(self, today: dt.date) -> list[str]:
        """The timer's command: lift every term ban that has ended by ``today``. Returns the
        refs lifted now; lifetime bans never lift, and a second call records nothing."""
        today = require_date(today, "today")
        due = [ban for ban in self.bans.values()
               if ban["ends_on"] is not None and ban["ends_on"] <= today
               and ban["lifted_on"] is None]
        for ban in due:
            self._lift_ban(person_ref=self.person_ref, ban_ref=ban["ban_ref"],
                           on=ban["ends_on"], reason="term ended")
        return [ban["ban_ref"] for ban in due]

    @event(BanLifted)
    def _lift_ban(self, person_ref: str, ban_ref: str, on: dt.date, reason: str) -> None:
        self.bans[ban_ref]["lifted_on"] = on
