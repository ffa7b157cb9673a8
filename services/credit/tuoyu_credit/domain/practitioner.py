"""A practitioner's record (从业人员): background checks and bans (从业禁止, 污点禁入).

The person is known by ``person_ref``, a keyed hash of the resident ID number computed outside
the domain; name and ID number arrive already sealed (``{"ref", "sealed", "masked"}``, see
:mod:`tuoyu_shared.personal_data`) and the domain only carries them.

A record may also be opened from a hire that registration asked about
(:meth:`Practitioner.register_from_hire`): the credit service then knows the person only by the
ref and the masks that registration published, never the sealed values. When an officer later
registers the same person with the name and ID number, they are sealed onto the record
(``IdentitySealed``).

A ban comes from a court ruling (a 从业禁止 order) or an abuse finding, with a legal basis and
a term: lifetime, or a number of years from ``starts_on``. A term ban covers
``[starts_on, starts_on + years)`` and is lifted by the daily timer once it has ended. A
background check (on hire, and yearly for everyone on a roster) answers ``barred`` if a ban is
in force on the day the check is completed, with that ban's reference, and ``cleared``
otherwise. The domain computes the answer; the caller does not supply it.

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


def practitioner_id_for(person_ref: str) -> uuid.UUID:
    """One record per person: the id is derived from the keyed hash of the ID number."""
    return uuid.uuid5(_PRACTITIONER_NAMESPACE, require_text(person_ref, "person_ref", 200))


class CheckReason(StrEnum):
    HIRE = "hire"  # requested by registration when an institution hires
    YEARLY = "yearly"  # the yearly re-check of everyone on a roster


class CheckOutcome(StrEnum):
    CLEARED = "cleared"
    BARRED = "barred"


class RegisteredFrom(StrEnum):
    OFFICER = "officer"  # an officer entered the name and ID number (sealed)
    HIRE = "hire"  # a hire registration asked about: the ref and the masks only


class BanSource(StrEnum):
    COURT_RULING = "court_ruling"  # 人民法院判决的从业禁止
    ABUSE_FINDING = "abuse_finding"  # an established finding of abuse or violence


#: Published personal data: the ref and the mask only (the relay drops ``sealed``; the schema
#: refuses anything else, so a clear value could never leave).
_PUBLISHED_PERSONAL: dict[str, Any] = {
    "additionalProperties": False, "required": ["ref", "masked"],
    "properties": {"ref": {"type": "string"}, "masked": {"type": "string"}}}


def _require_sealed(value: object, field: str, person_ref: str) -> dict[str, str]:
    """Sealed personal data of this person: never a clear value."""
    if not isinstance(value, Mapping) or not {"ref", "sealed", "masked"} <= set(value):
        raise FieldError(field, "must be sealed personal data (ref, sealed, masked), never "
                         "a clear value", "invalid_type")
    if value["ref"] != person_ref:
        raise FieldError(field, "was sealed for another person", "inconsistent_with_person")
    return {str(k): require_text(v, f"{field}.{k}", 10000) for k, v in value.items()}


def _require_masked(value: object, field: str, person_ref: str) -> dict[str, str]:
    """A published view of this person's data: the ref and the mask, nothing else."""
    if not isinstance(value, Mapping) or set(value) != {"ref", "masked"}:
        raise FieldError(field, "must be the ref and the mask only (ref, masked)",
                         "invalid_type")
    if value["ref"] != person_ref:
        raise FieldError(field, "was masked for another person", "inconsistent_with_person")
    return {"ref": person_ref, "masked": require_text(value["masked"], f"{field}.masked", 200)}


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

    class Registered(Aggregate.Created):
        """The person entered the credit service's register: by an officer (name and ID number
        sealed) or from a hire that registration asked about (the ref and the masks only)."""

        person_ref: str
        name: dict[str, str]
        id_number: dict[str, str]
        registered_from: str

        payload_schema: ClassVar[dict[str, Any]] = {
            "name": _PUBLISHED_PERSONAL, "id_number": _PUBLISHED_PERSONAL,
            "registered_from": {"enum": [r.value for r in RegisteredFrom]}}

    class IdentitySealed(Aggregate.Event):
        """An officer registered a person first known from a hire: the name and the ID number,
        sealed, are now on the record."""

        person_ref: str
        name: dict[str, str]
        id_number: dict[str, str]

        payload_schema: ClassVar[dict[str, Any]] = {
            "name": _PUBLISHED_PERSONAL, "id_number": _PUBLISHED_PERSONAL}

    class CheckRequested(Aggregate.Event):
        """A background check was asked for (on hire or yearly)."""

        check_id: str
        person_ref: str
        reason: str
        institution_id: str | None
        requested_on: dt.date

        payload_schema: ClassVar[dict[str, Any]] = {
            "reason": {"enum": [r.value for r in CheckReason]}}

    class CheckCompleted(Aggregate.Event):
        """The check's answer: ``barred`` with the ban's reference, or ``cleared`` with the
        check's reference. ``institution_id`` is the institution that asked (a hire's check id
        is the hire id), None for a yearly check not made for an institution."""

        check_id: str
        institution_id: str | None
        person_ref: str
        outcome: str
        reference: str
        officer: str
        completed_on: dt.date

        payload_schema: ClassVar[dict[str, Any]] = {
            "outcome": {"enum": [o.value for o in CheckOutcome]}}

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
        """An officer registers the person: name and ID number sealed."""
        person_ref = require_text(person_ref, "person_ref", 200)
        return cls(person_ref=person_ref, name=_require_sealed(name, "name", person_ref),
                   id_number=_require_sealed(id_number, "id_number", person_ref),
                   registered_from=RegisteredFrom.OFFICER.value)

    @classmethod
    def register_from_hire(cls, person_ref: str, name: Mapping[str, str],
                           id_number: Mapping[str, str]) -> Practitioner:
        """Open the record of a person first met in a hire: the ref and the masks that
        registration published (``{"ref", "masked"}``), no sealed value."""
        person_ref = require_text(person_ref, "person_ref", 200)
        return cls(person_ref=person_ref, name=_require_masked(name, "name", person_ref),
                   id_number=_require_masked(id_number, "id_number", person_ref),
                   registered_from=RegisteredFrom.HIRE.value)

    @property
    def identity_sealed(self) -> bool:
        """Whether the record holds the sealed ID number (not only its mask)."""
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
        return copy.deepcopy(found) if found else None

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
        }

    def complete_check(self, check_id: str, officer: str, completed_on: dt.date,
                       check_reference: str | None = None) -> str:
        """Answer a requested check; returns the outcome (``cleared`` or ``barred``).

        The outcome is computed from the bans in force on ``completed_on``. When barred, the
        reference is that of the ban that bars longest (a lifetime ban first); when cleared,
        it is ``check_reference`` (by default the check id).
        """
        found = self.checks.get(check_id) if isinstance(check_id, str) else None
        state = found["state"] if found else "none"
        if state != "requested":
            raise DomainRuleViolated(f"cannot complete check {check_id!r}: it is {state} "
                                     f"(needs requested)", state=state)
        officer = require_text(officer, "officer", 200)
        completed_on = require_date(completed_on, "completed_on")
        require_not_before(completed_on, found["requested_on"], "completed_on",  # type: ignore[index]
                           "the request")
        reference = require_text(check_id if check_reference is None else check_reference,
                                 "check_reference", 200)
        barring = self.barring_ban(completed_on)
        outcome = CheckOutcome.CLEARED if barring is None else CheckOutcome.BARRED
        if barring is not None:
            reference = barring
        self._complete_check(check_id=check_id, institution_id=found["institution_id"],  # type: ignore[index]
                             person_ref=self.person_ref, outcome=outcome.value,
                             reference=reference, officer=officer, completed_on=completed_on)
        return outcome.value

    @event(CheckCompleted)
    def _complete_check(self, check_id: str, institution_id: str | None, person_ref: str,
                        outcome: str, reference: str, officer: str,
                        completed_on: dt.date) -> None:
        self.checks[check_id].update(state="completed", outcome=outcome, reference=reference,
                                     completed_on=completed_on, completed_by=officer)

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
