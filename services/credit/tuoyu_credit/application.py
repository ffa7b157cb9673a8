"""Credit commands and queries (the application layer).

Every command validates its whole input first (:class:`ValidationFailed` names each bad field
and writes nothing), then loads the aggregate, lets the domain decide, and saves with
optimistic concurrency (:meth:`ServiceApplication.update`). The clock and the working-day
calendar live here, not in the domain: dates are Asia/Shanghai calendar dates. The scoring and
listing rules come from configuration (:mod:`tuoyu_credit.rules_config`).

Personal data: a practitioner's name and resident ID number are sealed with the person's own key
(:class:`PersonalDataVault`) before anything is recorded, and the person is found again through
the keyed hash (``person_ref``). No ID number is ever stored, returned or logged in clear; free
texts that contain one are refused. Every read of a practitioner's record is recorded in the
append-only ``practitioner_reads`` table before it is answered (see :mod:`tuoyu_credit.reads`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from tuoyu_credit import projections, reads
from tuoyu_credit.contract import CONTRACT
from tuoyu_credit.domain import (
    LIFETIME,
    BanSource,
    CauseType,
    CheckOutcome,
    Decision,
    DomainRuleViolated,
    InstitutionCredit,
    ListName,
    Practitioner,
    Severity,
    institution_credit_id_for,
    practitioner_id_for,
)
from tuoyu_credit.rules_config import CreditRules, load_rules, recheck_days_from_env
from tuoyu_shared.application import ServiceApplication
from tuoyu_shared.calendar_cn import WorkingCalendar, default_calendar, shanghai_date
from tuoyu_shared.config import Settings, settings_for
from tuoyu_shared.context import current_context
from tuoyu_shared.envelope import to_json_value
from tuoyu_shared.errors import NotFound
from tuoyu_shared.history import history_entries
from tuoyu_shared.logs import get_logger
from tuoyu_shared.personal_data import PersonalDataVault
from tuoyu_shared.validation import (
    FieldError,
    ValidationFailed,
    Validator,
    mask_name,
    mask_resident_id,
    refusing_field_errors,
    validate_resident_id,
)

log = get_logger("tuoyu.credit")

#: Who completes the checks the service answers by itself (on a hire, a yearly check).
AUTOMATIC_OFFICER = "credit-service"
MAX_TERM_YEARS = 100
MAX_TERM_DAYS = 36500
TEXT_MAX = 4000
MULTILINE_FROM = 2000
PERSON_REF = re.compile(r"[0-9a-f]{32}")
_ID_NUMBER_LIKE = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")

# The listing procedure's steps as commands: HTTP step name → application method.
LISTING_STEPS = {
    "propose": "propose_listing",
    "notice": "send_listing_notice",
    "respond": "receive_listing_response",
    "decide": "decide_listing",
    "apply-repair": "apply_for_repair",
    "review-repair": "review_repair",
}


class InstitutionNotFound(NotFound):
    """No credit record for this institution (the registration event has not arrived)."""


class PractitionerNotFound(NotFound):
    """No record of this person: never registered and never in a hire."""


def contains_resident_id(text: str) -> bool:
    """Whether a free text holds a valid resident ID number (which must never be stored)."""
    for match in _ID_NUMBER_LIKE.finditer(text):
        try:
            validate_resident_id(match.group(0))
            return True
        except FieldError:
            continue
    return False


# ---- input shapes shared by commands ---------------------------------------------------------
def _text(v: Validator, field: str, max_length: int = TEXT_MAX,
          required: bool = True) -> str | None:
    """Free text, never holding a resident ID number in clear. Text that may be longer than
    :data:`MULTILINE_FROM` characters (a legal basis, a reason, a statement) may span lines;
    names, references and purposes may not."""
    value = v.text(field, max_length=max_length, required=required,
                   multiline=max_length >= MULTILINE_FROM)
    if value and contains_resident_id(value):
        v.add_error(field, "must not contain a resident ID number", "personal_data")
        return None
    return value


def _references(v: Validator, field: str = "evidence") -> list[str] | None:
    """At least one reference (a document number, a file id), each non-blank."""
    value = v.required(field)
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > 100:
        v.add_error(field, "must be a list of 1 to 100 references", "invalid_format")
        return None
    refs = [_text(v, f"{field}[{i}]", max_length=500) for i in range(len(value))]
    return None if any(r is None for r in refs) else refs  # type: ignore[return-value]


def _person_ref(v: Validator, person_ref: object, field: str = "person_ref") -> str | None:
    if not isinstance(person_ref, str) or not PERSON_REF.fullmatch(person_ref):
        v.add_error(field, "must be a person ref (32 lowercase hex characters)",
                    "invalid_format")
        return None
    return person_ref


def _institution_id(v: Validator, value: object, field: str = "institution_id") -> str | None:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str) and len(value) <= 100:
        try:
            return str(UUID(value))
        except ValueError:
            pass
    shown = repr(value)[:60] if isinstance(value, str) else type(value).__name__
    v.add_error(field, f"must be an institution id (a UUID), got {shown}", "invalid_format")
    return None


class CreditApplication(ServiceApplication):
    name = "Credit"
    service_name = "credit"
    is_snapshotting_enabled = True
    views = projections.VIEW
    contract = CONTRACT
    snapshotting_intervals = {InstitutionCredit: 100, Practitioner: 100}

    def __init__(self, settings: Settings | None = None, env: dict[str, str] | None = None,
                 clock: Callable[[], datetime] | None = None,
                 calendar: WorkingCalendar | None = None,
                 rules: CreditRules | None = None, recheck_days: int | None = None):
        self.rules = rules or load_rules()  # a bad rules file stops the start, first
        #: Days after the last completed check when someone on a roster is re-checked.
        self.recheck_days = recheck_days or recheck_days_from_env()
        super().__init__(settings or settings_for(self.service_name), env)
        self.vault = PersonalDataVault(self.settings.database_url,
                                       self.settings.personal_data_key)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.calendar = calendar or default_calendar()

    def today(self) -> date:
        return shanghai_date(self.clock())

    def close(self) -> None:
        self.vault.close()
        super().close()

    # ---- loading and saving ----------------------------------------------------------------
    def _credit_id(self, institution_id: object) -> UUID:
        v = Validator({})
        canonical = _institution_id(v, institution_id)
        v.check()
        return institution_credit_id_for(canonical)  # type: ignore[arg-type]

    def _update_credit(self, institution_id: object,
                       command: Callable[[InstitutionCredit], Any]) -> Any:
        try:
            return self.update(self._credit_id(institution_id), command)
        except AggregateNotFoundError:
            raise InstitutionNotFound(f"no credit record of institution {institution_id}") \
                from None

    def _get_credit(self, institution_id: object) -> InstitutionCredit:
        try:
            return self.repository.get(self._credit_id(institution_id))
        except AggregateNotFoundError:
            raise InstitutionNotFound(f"no credit record of institution {institution_id}") \
                from None

    def _credit_or_new(self, institution_id: object) -> tuple[InstitutionCredit, bool]:
        """The institution's credit record, opened (not yet saved) if there is none."""
        credit_id = self._credit_id(institution_id)
        try:
            return self.repository.get(credit_id), False
        except AggregateNotFoundError:
            return InstitutionCredit.open(str(institution_id), self.rules.scoring), True

    def _update_practitioner(self, person_ref: str,
                             command: Callable[[Practitioner], Any]) -> Any:
        try:
            return self.update(practitioner_id_for(person_ref), command)
        except AggregateNotFoundError:
            raise PractitionerNotFound(f"no practitioner {person_ref}") from None

    def _practitioner(self, person_ref: str) -> Practitioner | None:
        try:
            return self.repository.get(practitioner_id_for(person_ref))
        except AggregateNotFoundError:
            return None

    # ---- practitioners ---------------------------------------------------------------------
    @refusing_field_errors
    def register_practitioner(self, data: dict[str, Any]) -> dict[str, Any]:
        """Enter a person in the register: name and ID number sealed, found by person ref.

        Idempotent by person: registering someone known already changes nothing, except that
        a record opened from a hire (masks only) gets the sealed name and ID number.
        """
        v = Validator(data)
        name = v.text("name", max_length=50)
        id_number = v.resident_id("id_number")
        v.check()
        ref = self.vault.person_ref(id_number)  # type: ignore[arg-type]
        existing = self._practitioner(ref)
        if existing is not None and existing.identity_sealed:
            return {"person_ref": ref, "created": False}
        sealed_name = self.vault.seal(ref, name, mask_name(name))  # type: ignore[arg-type]
        sealed_id = self.vault.seal(ref, id_number, mask_resident_id(id_number))  # type: ignore[arg-type]
        if existing is None:
            try:
                self.save(Practitioner.register(ref, sealed_name, sealed_id))
                return {"person_ref": ref, "created": True}
            except IntegrityError:
                pass  # registered meanwhile (a hire, another officer): seal onto it below
        self._update_practitioner(ref, lambda p: p.seal_identity(sealed_name, sealed_id))
        return {"person_ref": ref, "created": False}

    @refusing_field_errors
    def impose_ban(self, person_ref: str, data: dict[str, Any]) -> str:
        """从业禁止: a lifetime ban or one for a number of years, with its legal basis."""
        v = Validator(data)
        ref = _person_ref(v, person_ref)
        ban_ref = _text(v, "ban_ref", max_length=200, required=False) or None
        source = v.choice("source", [s.value for s in BanSource])
        legal_basis = _text(v, "legal_basis")
        evidence = _references(v)
        officer = _text(v, "officer", max_length=200)
        starts_on = v.date("starts_on", required=False)
        term = v.required("term")
        if term is not None and term != LIFETIME and (
                isinstance(term, bool) or not isinstance(term, int)
                or not 1 <= term <= MAX_TERM_YEARS):
            v.add_error("term", f"must be 'lifetime' or a number of years from 1 to "
                        f"{MAX_TERM_YEARS}", "invalid_choice")
        v.check()
        ban_ref = ban_ref or f"ban-{uuid.uuid4()}"
        starts_on = starts_on or self.today()
        self._update_practitioner(ref, lambda p: p.impose_ban(  # type: ignore[arg-type]
            ban_ref, source, legal_basis, evidence, officer, starts_on, term))
        return ban_ref

    def lift_expired_bans(self) -> dict[str, Any]:
        """The daily timer: lift every term ban that has ended by today."""
        today = self.today()
        self._catch_up_views()
        lifted, failed = [], []
        for ref in self._query(projections.people_with_bans_ended, today):
            try:
                for ban_ref in self._update_practitioner(ref, lambda p: p.lift_expired_bans(
                        today)):
                    lifted.append({"person_ref": ref, "ban_ref": ban_ref})
            except Exception as e:  # one bad record must not hold up the others
                log.error("timer.lift_failed", person_ref=ref, error=repr(e))
                failed.append({"person_ref": ref, "error": repr(e)})
        return {"today": today.isoformat(), "lifted": lifted, "failed": failed}

    @refusing_field_errors
    def request_check(self, person_ref: str, data: dict[str, Any]) -> dict[str, Any]:
        """The yearly check (年度复查) of someone on a roster, answered at once from the bans in
        force today: ``{check_id, outcome, reference}``."""
        v = Validator(data)
        ref = _person_ref(v, person_ref)
        v.choice("reason", ["yearly"], required=False)
        given = data.get("institution_id") if isinstance(data, dict) else None
        institution_id = _institution_id(v, given) if given is not None else None
        check_id = _text(v, "check_id", max_length=200, required=False) or None
        v.check()
        check_id = check_id or f"yearly-{uuid.uuid4()}"
        today = self.today()

        def check(person: Practitioner) -> dict[str, Any]:
            person.request_check(check_id, "yearly", institution_id, today)
            outcome = person.complete_check(check_id, AUTOMATIC_OFFICER, today)
            return {"check_id": check_id, "outcome": outcome,
                    "reference": person.check(check_id)["reference"]}  # type: ignore[index]

        return self._update_practitioner(ref, check)  # type: ignore[arg-type]

    def request_yearly_checks(self, today: date | None = None) -> dict[str, Any]:
        """The daily timer: a yearly check (年度复查), requested and answered at once, of
        everyone on at least one roster whose last completed check is ``recheck_days`` days
        old or older. Not made for an institution (``institution_id`` None: registration's
        hires are not touched); a barred answer reaches the employers through the ban itself
        (``PractitionerBanImposed``). Idempotent: the check id is the day's, and a person
        checked since is skipped."""
        today = today or self.today()
        due_by = today - timedelta(days=self.recheck_days)
        check_id = f"yearly-{today.isoformat()}"
        self._catch_up_views()
        checked, failed = [], []

        def check(person: Practitioner) -> str | None:
            last = person.last_checked_on
            if not person.rosters or person.check(check_id) is not None or (
                    last is not None and last > due_by):
                return None  # left, or checked since the table was read
            person.request_check(check_id, "yearly", None, today)
            return person.complete_check(check_id, AUTOMATIC_OFFICER, today)

        for ref in self._query(projections.people_due_a_yearly_check, due_by):
            try:
                outcome = self._update_practitioner(ref, check)
            except Exception as e:  # one bad record must not hold up the others
                log.error("timer.yearly_check_failed", person_ref=ref, error=repr(e))
                failed.append({"person_ref": ref, "error": repr(e)})
                continue
            if outcome is not None:
                checked.append({"person_ref": ref, "check_id": check_id, "outcome": outcome})
        return {"today": today.isoformat(), "checked": checked, "failed": failed}

    # ---- reactions (called by the consumers; they return the aggregates to save) -----------
    def open_credit(self, institution_id: str) -> list[InstitutionCredit]:
        """A new institution in the register: open its credit record (once)."""
        credit, new = self._credit_or_new(institution_id)
        return [credit] if new else []

    def check_hire(self, hire_id: str, institution_id: str, person_ref: str,
                   name_masked: str, id_number_masked: str) -> list[Practitioner]:
        """Registration asks about a hire: request the check (its id is the hire id) and
        answer it at once, barred iff a ban is in force today. A person not known yet is
        registered from the ref and the masks registration published."""
        person = self._practitioner(person_ref)
        if person is None:
            person = Practitioner.register_from_hire(
                person_ref, {"ref": person_ref, "masked": name_masked},
                {"ref": person_ref, "masked": id_number_masked})
        elif person.check(hire_id) is not None:
            return []  # answered already
        today = self.today()
        person.request_check(hire_id, "hire", institution_id, today)
        person.complete_check(hire_id, AUTOMATIC_OFFICER, today)
        return [person]

    def join_roster(self, institution_id: str, hire_id: str, person_ref: str,
                    on: date) -> list[Practitioner]:
        """Registration confirmed a hire: the person is on that roster (once per hire). The
        person is known: the hire's check came first in registration's log."""
        person = self._practitioner(person_ref)
        if person is None:
            raise PractitionerNotFound(f"no practitioner {person_ref} (hired without a check)")
        return [person] if person.join_roster(institution_id, hire_id, on) else []

    def leave_roster(self, institution_id: str, hire_id: str, person_ref: str,
                     on: date) -> list[Practitioner]:
        """Registration released a hire: the person is off that roster (once)."""
        person = self._practitioner(person_ref)
        if person is None or not person.leave_roster(institution_id, hire_id, on):
            return []
        return [person]

    def apply_cause(self, institution_id: str, cause_type: CauseType | str, cause_ref: str,
                    **details: Any) -> list[InstitutionCredit]:
        """An upstream fact moves the score (once per ``cause_ref``, the upstream event id).
        An institution not known yet gets its credit record opened first."""
        credit, new = self._credit_or_new(institution_id)
        applied = credit.apply_scoring_cause(cause_type, cause_ref, self.rules.scoring,
                                             **details)
        return [credit] if applied or new else []

    # ---- scoring by an officer -------------------------------------------------------------
    @refusing_field_errors
    def record_scoring_cause(self, institution_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Record a fact that moves the score, entered by an officer (e.g. a finding from an
        inspection made on paper). ``cause_ref`` (the document's number) makes it once only."""
        v = Validator(data)
        _institution_id(v, institution_id)
        cause_type = v.choice("cause_type", [c.value for c in CauseType])
        cause_ref = _text(v, "cause_ref", max_length=200)
        details: dict[str, Any] = {}
        if cause_type == CauseType.FINDING_RECORDED:
            details["severity"] = v.choice("severity", [s.value for s in Severity])
        note = _text(v, "note", max_length=2000, required=False)
        if note:
            details["note"] = note
        v.check()

        def apply(credit: InstitutionCredit) -> dict[str, Any]:
            applied = credit.apply_scoring_cause(cause_type, cause_ref,  # type: ignore[arg-type]
                                                 self.rules.scoring, **details)
            return {"applied": applied, "score": credit.score, "grade": credit.grade}

        return self._update_credit(institution_id, apply)

    # ---- the listing procedure -------------------------------------------------------------
    @staticmethod
    def _list_name(v: Validator, list_name: object) -> str | None:
        allowed = [n.value for n in ListName]
        if list_name not in allowed:
            v.add_error("list_name", f"must be one of {', '.join(allowed)}, got "
                        f"{repr(list_name)[:60]}", "invalid_choice")
            return None
        return list_name  # type: ignore[return-value]

    @refusing_field_errors
    def propose_listing(self, institution_id: str, list_name: str,
                        data: dict[str, Any]) -> dict[str, Any]:
        """Propose an entry on a list, citing the legal basis and the evidence."""
        v = Validator(data)
        name = self._list_name(v, list_name)
        legal_basis = _text(v, "legal_basis")
        evidence = _references(v)
        officer = _text(v, "officer", max_length=200)
        term_days = v.integer("proposed_term_days", min_value=1, max_value=MAX_TERM_DAYS)
        _institution_id(v, institution_id)
        v.check()
        today = self.today()
        listing_id = self._update_credit(institution_id, lambda c: c.propose_listing(
            name, legal_basis, evidence, officer, term_days, today))
        return {"listing_id": listing_id}

    @refusing_field_errors
    def send_listing_notice(self, institution_id: str, list_name: str,
                            data: dict[str, Any]) -> dict[str, Any]:
        """Prior notice (告知): the institution may state its case until ``respond_by``."""
        v = Validator(data)
        name = self._list_name(v, list_name)
        officer = _text(v, "officer", max_length=200)
        _institution_id(v, institution_id)
        v.check()
        today = self.today()
        rules = self.rules.listing_rules_on(today, self.calendar)
        respond_by = self._update_credit(institution_id, lambda c: c.send_listing_notice(
            name, today, officer, rules))
        return {"respond_by": respond_by.isoformat()}

    @refusing_field_errors
    def receive_listing_response(self, institution_id: str, list_name: str,
                                 data: dict[str, Any]) -> None:
        """The institution's statement and defence (陈述申辩), within the window."""
        v = Validator(data)
        name = self._list_name(v, list_name)
        statement = _text(v, "statement", max_length=20000)
        _institution_id(v, institution_id)
        v.check()
        today = self.today()
        self._update_credit(institution_id, lambda c: c.receive_listing_response(
            name, statement, today))

    @refusing_field_errors
    def decide_listing(self, institution_id: str, list_name: str,
                       data: dict[str, Any]) -> dict[str, Any]:
        """List (for ``term_days``, by default the proposed term) or drop; not before the
        window has passed unless the institution has responded."""
        v = Validator(data)
        name = self._list_name(v, list_name)
        decision = v.choice("decision", [d.value for d in Decision])
        officer = _text(v, "officer", max_length=200)
        reason = _text(v, "reason")
        legal_basis = _text(v, "legal_basis", required=False) or ""
        evidence = _references(v)
        term_days = v.integer("term_days", min_value=1, max_value=MAX_TERM_DAYS,
                              required=False)
        _institution_id(v, institution_id)
        v.check()
        today = self.today()

        def decide(credit: InstitutionCredit) -> dict[str, Any]:
            credit.decide_listing(name, decision, today, officer, reason,  # type: ignore[arg-type]
                                  legal_basis, evidence, term_days)
            listing = credit.listing(name)  # type: ignore[arg-type]
            return {"listing_id": listing["listing_id"], "decision": decision,  # type: ignore[index]
                    "term_start": _iso(listing["term_start"]),  # type: ignore[index]
                    "term_end": _iso(listing["term_end"])}  # type: ignore[index]

        return self._update_credit(institution_id, decide)

    @refusing_field_errors
    def apply_for_repair(self, institution_id: str, list_name: str,
                         data: dict[str, Any]) -> None:
        """信用修复: the institution applies to end a dishonesty entry early."""
        v = Validator(data)
        name = self._list_name(v, list_name)
        application = _text(v, "application", max_length=20000)
        evidence = _references(v)
        _institution_id(v, institution_id)
        v.check()
        today = self.today()
        self._update_credit(institution_id, lambda c: c.apply_for_repair(
            name, application, evidence, today))

    @refusing_field_errors
    def review_repair(self, institution_id: str, list_name: str,
                      data: dict[str, Any]) -> dict[str, Any]:
        """An officer approves (the entry is removed today) or rejects a repair application."""
        v = Validator(data)
        name = self._list_name(v, list_name)
        approved = v.boolean("approved")
        officer = _text(v, "officer", max_length=200)
        reason = _text(v, "reason")
        legal_basis = _text(v, "legal_basis")
        evidence = _references(v)
        _institution_id(v, institution_id)
        v.check()
        today = self.today()

        def review(credit: InstitutionCredit) -> dict[str, Any]:
            credit.review_repair(name, approved, officer, reason,  # type: ignore[arg-type]
                                 legal_basis, evidence, today)
            return {"state": credit.listing(name)["state"]}  # type: ignore[arg-type,index]

        return self._update_credit(institution_id, review)

    def listing_step(self, institution_id: str, list_name: str, step: str,
                     data: dict[str, Any]) -> Any:
        """One step of the procedure by its name in :data:`LISTING_STEPS`."""
        if step not in LISTING_STEPS:
            raise ValidationFailed([FieldError(
                "step", f"must be one of {', '.join(LISTING_STEPS)}, got {step!r}",
                "invalid_choice")])
        return getattr(self, LISTING_STEPS[step])(institution_id, list_name, data)

    def expire_listings(self) -> dict[str, Any]:
        """The daily timer: end every entry whose term is over."""
        today = self.today()
        self._catch_up_views()
        expired, failed = [], []
        for institution_id in self._query(projections.institutions_with_terms_ended, today):
            try:
                for listing_id in self._update_credit(
                        institution_id, lambda c: c.expire_listings(today)):
                    expired.append({"institution_id": institution_id,
                                    "listing_id": listing_id})
            except Exception as e:  # one bad record must not hold up the others
                log.error("timer.expire_failed", institution_id=institution_id, error=repr(e))
                failed.append({"institution_id": institution_id, "error": repr(e)})
        return {"today": today.isoformat(), "expired": expired, "failed": failed}

    # ---- query tables (projected from this service's own log) ------------------------------
    def _catch_up_views(self) -> None:
        """Bring the query tables up to the log before a timer reads them."""
        projector = self.views_projector()
        try:
            projector.catch_up()
        finally:
            projector.store.close()

    def _query(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            return to_json_value(fn(conn, *args, **kwargs))

    def credit_register(self, grade: str | None = None, list_name: str | None = None,
                        limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Institutions by score, with their grade and lists (optionally filtered)."""
        v = Validator({"grade": grade, "list_name": list_name, "limit": limit,
                       "offset": offset})
        v.choice("grade", ["A", "B", "C", "D"], required=False)
        v.choice("list_name", [n.value for n in ListName], required=False)
        limit = v.integer("limit", min_value=1, max_value=1000)  # type: ignore[assignment]
        offset = v.integer("offset", min_value=0)  # type: ignore[assignment]
        v.check()
        return self._query(projections.credit_register, grade=grade, list_name=list_name,
                           limit=limit, offset=offset)

    def roster_members(self) -> list[dict[str, Any]]:
        """Who is on which roster (by person ref), with the day of their last completed
        check."""
        return self._query(projections.roster_members)

    def listings_due(self) -> list[dict[str, Any]]:
        """Open list entries: which may be decided now, and whose term has ended."""
        return self._query(projections.listings_due, self.today())

    # ---- queries ---------------------------------------------------------------------------
    def institution_credit_report(self, institution_id: str) -> dict[str, Any]:
        """Grade, score, the lists in force today, every entry, and the history of every change
        with its reason and cause (the upstream event, or the listing and its officer)."""
        credit = self._get_credit(institution_id)
        history = history_entries(self.repository.event_store.get(credit.id), _reason_and_cause)
        today = self.today()
        return {
            "institution_id": credit.institution_id,
            "score": credit.score,
            "grade": credit.grade,
            "lists": credit.current_lists(today),
            "listings": to_json_value(sorted(credit.listings.values(),
                                         key=lambda item: item["proposed_on"])),
            "history": history,
            "version": credit.version,
        }

    @refusing_field_errors
    def check_practitioner(self, data: dict[str, Any]) -> dict[str, Any]:
        """Is this person barred today? ``{barred, ban_reference}`` and nothing more.

        By ``id_number`` or by ``person_ref``, with the ``purpose`` of the read; the read is
        recorded (who, when, why, what was answered) before the answer is given.
        """
        v = Validator(data)
        purpose = _text(v, "purpose", max_length=500)
        given = [f for f in ("id_number", "person_ref") if data.get(f) not in (None, "")]
        ref = None
        if len(given) != 1:
            v.add_error("id_number", "give either id_number or person_ref", "required")
        elif given == ["id_number"]:
            id_number = v.resident_id("id_number")
            ref = self.vault.person_ref(id_number) if id_number else None
        else:
            ref = _person_ref(v, data["person_ref"])
        v.check()
        person = self._practitioner(ref)  # type: ignore[arg-type]
        ban_reference = person.barring_ban(self.today()) if person is not None else None
        answer = {"barred": ban_reference is not None, "ban_reference": ban_reference}
        with self.recorder.datastore.transaction(commit=True) as cur:  # type: ignore[attr-defined]
            reads.record(cur, ref, self.clock(), current_context(), purpose,  # type: ignore[arg-type]
                         reads.CHECK_BY_ID_NUMBER if given == ["id_number"]
                         else reads.CHECK_BY_PERSON_REF, person is not None,
                         answer["barred"], ban_reference)
        return answer

    @refusing_field_errors
    def practitioner_reads(self, person_ref: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """For an auditor: every recorded read of a person's record. Reading the audit is a
        read too, recorded first (so it lists itself last)."""
        v = Validator(data)
        ref = _person_ref(v, person_ref)
        purpose = _text(v, "purpose", max_length=500)
        v.check()
        found = self._practitioner(ref) is not None  # type: ignore[arg-type]
        with self.recorder.datastore.transaction(commit=True) as cur:  # type: ignore[attr-defined]
            reads.record(cur, ref, self.clock(), current_context(), purpose,  # type: ignore[arg-type]
                         reads.READ_AUDIT, found)
        return self._query(reads.reads_of, ref)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def _reason_and_cause(event: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The credit report's words for an event in its history: ``reason`` and ``cause_ref``."""
    reason, cause_ref = _describe(type(event).__qualname__.split(".")[-1], data)
    return {"reason": reason, "cause_ref": cause_ref}


def _describe(kind: str, data: dict[str, Any]) -> tuple[str, str | None]:
    """The reason of a change in words, and what caused it."""
    listing = data.get("listing_id")
    name = data.get("list_name")
    if kind == "Opened":
        return f"credit record opened with score {data['score']} ({data['grade']})", None
    if kind == "ScoreChanged":
        return data["reason"], data["cause_ref"]
    if kind == "GradeChanged":
        return f"grade {data['old_grade']} → {data['new_grade']}", data["cause_ref"]
    if kind == "ListingProposed":
        return (f"proposed for the {name} list by {data['officer']} "
                f"({data['legal_basis']})"), listing
    if kind == "ListingNoticeSent":
        return (f"prior notice sent by {data['officer']}; response until "
                f"{_iso(data['respond_by'])}"), listing
    if kind == "ListingResponseReceived":
        return "the institution stated its case (陈述申辩)", listing
    if kind == "ListingDecided":
        verdict = (f"listed until {_iso(data['term_end'])}" if data["decision"] == "listed"
                   else "dropped")
        return f"{verdict} by {data['officer']}: {data['reason']} ({data['legal_basis']})", \
            listing
    if kind == "ListingExpired":
        return f"the {name} entry expired (term ended {_iso(data['on'])})", listing
    if kind == "RepairApplied":
        return "credit repair (信用修复) applied for", listing
    if kind == "RepairReviewed":
        verdict = "approved" if data["approved"] else "rejected"
        return f"credit repair {verdict} by {data['officer']}: {data['reason']}", listing
    if kind == "ListingRemovedEarly":
        return f"removed from the {name} list after credit repair", listing
    if kind == "ListingEndedByDishonesty":
        return (f"removed from the {name} list: listed as seriously dishonest "
                f"({data['dishonesty_listing_id']})"), listing
    return kind, None


__all__ = [
    "AUTOMATIC_OFFICER",
    "CheckOutcome",
    "CreditApplication",
    "DomainRuleViolated",
    "InstitutionNotFound",
    "LISTING_STEPS",
    "PractitionerNotFound",
    "contains_resident_id",
]
