"""Credit commands and queries (the application layer).

Every command reads its whole input first, through its model in :mod:`tuoyu_credit.commands`
(:class:`ValidationFailed` names each bad field and writes nothing), then loads the aggregate,
lets the domain decide, and saves with optimistic concurrency
(:meth:`ServiceApplication.update`). The clock and the working-day calendar live here, not in
the domain: dates are Asia/Shanghai calendar dates. The scoring and listing rules come from
configuration (:mod:`tuoyu_credit.rules_config`).

Personal data: a practitioner's name and resident ID number are sealed with the person's own key
(:class:`PersonalDataVault`) before anything is recorded, and the person is found again through
the keyed hash (``person_ref``). No ID number is ever stored, returned or logged in clear; free
texts that contain one are refused. Every read of a practitioner's record is recorded in the
append-only ``practitioner_reads`` table before it is answered (see :mod:`tuoyu_credit.reads`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from tuoyu_credit import commands, projections, reads
from tuoyu_credit.commands import contains_resident_id
from tuoyu_credit.contract import CONTRACT
from tuoyu_credit.domain import (
    CauseType,
    CheckOutcome,
    DomainRuleViolated,
    InstitutionCredit,
    Practitioner,
    institution_credit_id_for,
    practitioner_id_for,
)
from tuoyu_credit.rules_config import DEFAULT_RECHECK_DAYS, CreditRules
from tuoyu_shared.application import ServiceApplication
from tuoyu_shared.calendar_cn import WorkingCalendar, default_calendar, shanghai_date
from tuoyu_shared.commands import Command, parse
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
    mask_name,
    mask_resident_id,
    refusing_field_errors,
)

log = get_logger("tuoyu.credit")

#: Who completes the checks the service answers by itself (on a hire, a yearly check).
AUTOMATIC_OFFICER = "credit-service"
C = TypeVar("C", bound=Command)

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


def _read(model: type[C], data: Any, **parameters: Any) -> tuple[C, dict[str, Any]]:
    """The command ``model`` read from ``data``, and the parameters beside it (from the URL's
    path: ``person_ref``, ``institution_id``, ``list_name``) checked under their own names
    (:func:`~tuoyu_credit.commands.read_parameters`); every bad field of both is named at once,
    once each (:class:`ValidationFailed`), and nothing else happens."""
    clean, errors = commands.read_parameters(**parameters)
    try:
        command = parse(model, data)
    except ValidationFailed as refused:
        named = {e.field for e in errors}  # a payload key named like a parameter: one error
        raise ValidationFailed([*errors, *(e for e in refused.errors
                                           if e.field not in named)]) from None
    if errors:
        raise ValidationFailed(errors)
    return command, clean


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
                 rules: CreditRules | None = None, recheck_days: int | None = None,
                 vault: PersonalDataVault | None = None):
        """Built by the composition root (:mod:`tuoyu_credit.bootstrap`), which reads the
        configuration (the rules file, the re-check period); a constructor given nothing uses
        the default rules and adapters."""
        self.rules = rules or CreditRules()
        #: Days after the last completed check when someone on a roster is re-checked.
        self.recheck_days = recheck_days or DEFAULT_RECHECK_DAYS
        super().__init__(settings or settings_for(self.service_name), env)
        self.vault = vault or PersonalDataVault(self.settings.database_url,
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
        clean, errors = commands.read_parameters(institution_id=institution_id)
        if errors:
            raise ValidationFailed(errors)
        return institution_credit_id_for(clean["institution_id"])

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
        command = parse(commands.RegisterPractitioner, data)
        name, id_number = command.name, command.id_number
        ref = self.vault.person_ref(id_number)
        existing = self._practitioner(ref)
        if existing is not None and existing.identity_sealed:
            return {"person_ref": ref, "created": False}
        sealed_name = self.vault.seal(ref, name, mask_name(name))
        sealed_id = self.vault.seal(ref, id_number, mask_resident_id(id_number))
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
        command, clean = _read(commands.ImposeBan, data, person_ref=person_ref)
        ban_ref = command.ban_ref or f"ban-{uuid.uuid4()}"
        starts_on = command.starts_on or self.today()
        self._update_practitioner(clean["person_ref"], lambda p: p.impose_ban(
            ban_ref, command.source, command.legal_basis, list(command.evidence),
            command.officer, starts_on, command.term))
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
        command, clean = _read(commands.RequestCheck, data, person_ref=person_ref)
        ref, institution_id = clean["person_ref"], command.institution_id
        check_id = command.check_id or f"yearly-{uuid.uuid4()}"
        today = self.today()

        def check(person: Practitioner) -> dict[str, Any]:
            person.request_check(check_id, "yearly", institution_id, today)
            outcome = person.complete_check(check_id, AUTOMATIC_OFFICER, today)
            return {"check_id": check_id, "outcome": outcome,
                    "reference": person.check(check_id)["reference"]}  # type: ignore[index]

        return self._update_practitioner(ref, check)

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
        command, _ = _read(commands.RecordScoringCause, data, institution_id=institution_id)
        details = command.details()

        def apply(credit: InstitutionCredit) -> dict[str, Any]:
            applied = credit.apply_scoring_cause(command.cause_type, command.cause_ref,
                                                 self.rules.scoring, **details)
            return {"applied": applied, "score": credit.score, "grade": credit.grade}

        return self._update_credit(institution_id, apply)

    # ---- the listing procedure -------------------------------------------------------------
    @refusing_field_errors
    def propose_listing(self, institution_id: str, list_name: str,
                        data: dict[str, Any]) -> dict[str, Any]:
        """Propose an entry on a list, citing the legal basis and the evidence."""
        command, clean = _read(commands.ProposeListing, data, institution_id=institution_id,
                               list_name=list_name)
        today = self.today()
        listing_id = self._update_credit(institution_id, lambda c: c.propose_listing(
            clean["list_name"], command.legal_basis, list(command.evidence), command.officer,
            command.proposed_term_days, today))
        return {"listing_id": listing_id}

    @refusing_field_errors
    def send_listing_notice(self, institution_id: str, list_name: str,
                            data: dict[str, Any]) -> dict[str, Any]:
        """Prior notice (告知): the institution may state its case until ``respond_by``."""
        command, clean = _read(commands.SendListingNotice, data,
                               institution_id=institution_id, list_name=list_name)
        today = self.today()
        rules = self.rules.listing_rules_on(today, self.calendar)
        respond_by = self._update_credit(institution_id, lambda c: c.send_listing_notice(
            clean["list_name"], today, command.officer, rules))
        return {"respond_by": respond_by.isoformat()}

    @refusing_field_errors
    def receive_listing_response(self, institution_id: str, list_name: str,
                                 data: dict[str, Any]) -> None:
        """The institution's statement and defence (陈述申辩), within the window."""
        command, clean = _read(commands.ReceiveListingResponse, data,
                               institution_id=institution_id, list_name=list_name)
        today = self.today()
        self._update_credit(institution_id, lambda c: c.receive_listing_response(
            clean["list_name"], command.statement, today))

    @refusing_field_errors
    def decide_listing(self, institution_id: str, list_name: str,
                       data: dict[str, Any]) -> dict[str, Any]:
        """List (for ``term_days``, by default the proposed term) or drop; not before the
        window has passed unless the institution has responded."""
        command, clean = _read(commands.DecideListing, data, institution_id=institution_id,
                               list_name=list_name)
        name, decision = clean["list_name"], command.decision
        today = self.today()

        def decide(credit: InstitutionCredit) -> dict[str, Any]:
            credit.decide_listing(name, decision, today, command.officer, command.reason,
                                  command.legal_basis or "", list(command.evidence),
                                  command.term_days)
            listing = credit.listing(name)
            return {"listing_id": listing["listing_id"], "decision": decision,  # type: ignore[index]
                    "term_start": _iso(listing["term_start"]),  # type: ignore[index]
                    "term_end": _iso(listing["term_end"])}  # type: ignore[index]

        return self._update_credit(institution_id, decide)

    @refusing_field_errors
    def apply_for_repair(self, institution_id: str, list_name: str,
                         data: dict[str, Any]) -> None:
        """信用修复: the institution applies to end a dishonesty entry early."""
        command, clean = _read(commands.ApplyForRepair, data, institution_id=institution_id,
                               list_name=list_name)
        today = self.today()
        self._update_credit(institution_id, lambda c: c.apply_for_repair(
            clean["list_name"], command.application, list(command.evidence), today))

    @refusing_field_errors
    def review_repair(self, institution_id: str, list_name: str,
                      data: dict[str, Any]) -> dict[str, Any]:
        """An officer approves (the entry is removed today) or rejects a repair application."""
        command, clean = _read(commands.ReviewRepair, data, institution_id=institution_id,
                               list_name=list_name)
        name = clean["list_name"]
        today = self.today()

        def review(credit: InstitutionCredit) -> dict[str, Any]:
            credit.review_repair(name, command.approved, command.officer, command.reason,
                                 command.legal_basis, list(command.evidence), today)
            return {"state": credit.listing(name)["state"]}  # type: ignore[index]

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
        query = parse(commands.CreditRegisterQuery, {"grade": grade, "list_name": list_name,
                                                     "limit": limit, "offset": offset})
        return self._query(projections.credit_register, **query.data())

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
        command = parse(commands.CheckPractitioner, data)
        by_id_number = command.id_number is not None
        ref = (self.vault.person_ref(command.id_number) if command.id_number is not None
               else command.person_ref)
        person = self._practitioner(ref)  # type: ignore[arg-type]
        ban_reference = person.barring_ban(self.today()) if person is not None else None
        answer = {"barred": ban_reference is not None, "ban_reference": ban_reference}
        with self.recorder.datastore.transaction(commit=True) as cur:  # type: ignore[attr-defined]
            reads.record(cur, ref, self.clock(), current_context(), command.purpose,
                         reads.CHECK_BY_ID_NUMBER if by_id_number
                         else reads.CHECK_BY_PERSON_REF, person is not None,
                         answer["barred"], ban_reference)
        return answer

    @refusing_field_errors
    def practitioner_reads(self, person_ref: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """For an auditor: every recorded read of a person's record. Reading the audit is a
        read too, recorded first (so it lists itself last)."""
        command, clean = _read(commands.PractitionerReads, data, person_ref=person_ref)
        ref = clean["person_ref"]
        found = self._practitioner(ref) is not None
        with self.recorder.datastore.transaction(commit=True) as cur:  # type: ignore[attr-defined]
            reads.record(cur, ref, self.clock(), current_context(), command.purpose,
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
