"""Credit commands and queries (the application layer).

Every command reads its whole input first, through its model in :mod:`tuoyu_credit.commands`
(:class:`ValidationFailed` names each bad field and writes nothing), then loads the aggregate,
lets the domain decide, and saves with optimistic concurrency
(:meth:`ServiceApplication.update`). The clock and the working-day calendar live here, not in
the domain: dates are Asia/Shanghai calendar dates. The scoring and listing rules come from
configuration (:mod:`tuoyu_credit.rules_config`).

Personal data: credit is the practitioner register (从业人员库) and issues the practitioners'
refs, random pseudonyms, found again by ID number through credit's own blind index
(:class:`PersonalDataVault`, kind ``practitioner``). A practitioner's name and resident ID
number are sealed with the person's own key before anything is recorded; no mask is stored,
and what a query shows of a person comes from the vault. No ID number is ever stored, returned
or logged in clear; free texts that contain one are refused. Every read of a practitioner's
record is recorded in the append-only ``practitioner_reads`` table before it is answered (see
:mod:`tuoyu_credit.reads`). A person's data is erased on request (:class:`PeopleCommands`),
except while a ban of theirs has not ended (未成年人保护法 第62条).

Background checks (未成年人保护法 第62条): a check is requested (on hire, by registration's
event; yearly, by the daily timer or an officer) and answered at once only when credit's own
ban list bars the person; otherwise it waits for the public-security records inquiry, which
:meth:`CreditApplication.dispatch_inquiries` (the worker, every few seconds) sends and follows
up (:mod:`tuoyu_credit.inquiries`). A check is never cleared because the system was down or
refused: it stays pending, retried or flagged for an officer.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from tuoyu_credit import commands, inquiries, projections, reads
from tuoyu_credit.contract import CONTRACT
from tuoyu_credit.domain import (
    AnsweredBy,
    CauseType,
    CheckFlag,
    CheckOutcome,
    DomainRuleViolated,
    InstitutionCredit,
    Practitioner,
    institution_credit_id_for,
    practitioner_id_for,
)
from tuoyu_credit.inquiries import InquirySchedule
from tuoyu_credit.rules_config import DEFAULT_RECHECK_DAYS, CreditRules
from tuoyu_shared.application import ServiceApplication
from tuoyu_shared.calendar_cn import WorkingCalendar, default_calendar, shanghai_date
from tuoyu_shared.commands import Command, contains_resident_id, parse
from tuoyu_shared.config import Settings, settings_for
from tuoyu_shared.context import current_context
from tuoyu_shared.envelope import to_json_value
from tuoyu_shared.errors import NotFound
from tuoyu_shared.history import history_entries
from tuoyu_shared.logs import get_logger
from tuoyu_shared.people import PeopleCommands
from tuoyu_shared.personal_data import PersonalDataErased, PersonalDataVault
from tuoyu_shared.public_security import (
    InquiryRejected,
    InquiryRequest,
    InquiryUnavailable,
    InquiryUnknown,
    PublicSecurityInquiry,
    inquiry_from_env,
)
from tuoyu_shared.validation import (
    FieldError,
    ValidationFailed,
    mask_name,
    refusing_field_errors,
)

log = get_logger("tuoyu.credit")

#: Who completes the checks the service answers by itself (on a hire, a yearly check).
AUTOMATIC_OFFICER = "credit-service"
#: The kind of person credit's blind index holds.
PRACTITIONER = "practitioner"
#: Why a practitioner is kept whatever they ask (the refusal of an erasure names it).
BAN_RETENTION = "未成年人保护法 第62条 / the ban list must be kept while a ban is in force"
#: What the reads of an erased person keep of the purposes typed (see credit_0003).
ERASED_PURPOSE = "（已删除）"
_YEARLY_NAMESPACE = uuid.UUID("3f1d2c8a-6b0e-4f57-9d2a-8c4e1b7a5d60")
_IDENTITY_UNKNOWN = ("the record holds the ref alone (opened from a hire before credit issued "
                     "refs): register the person with the ID number and this ref")
_IDENTITY_ERASED = "the person's data was erased: there is no ID number to inquire with"


def yearly_check_id(person_ref: str, day: date) -> str:
    """The daily timer's check of one person on one day: unique to them (it is the inquiry's
    request id, which the public-security system keeps by person), the same on a re-run."""
    return f"yearly-{day.isoformat()}-{uuid.uuid5(_YEARLY_NAMESPACE, person_ref).hex}"


def _pending(person: Practitioner, check_id: str) -> bool:
    found = person.check(check_id)
    return found is not None and found["state"] == "requested"
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


class CreditApplication(PeopleCommands, ServiceApplication):
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
                 vault: PersonalDataVault | None = None,
                 inquiry: PublicSecurityInquiry | None = None,
                 schedule: InquirySchedule | None = None):
        """Built by the composition root (:mod:`tuoyu_credit.bootstrap`), which reads the
        configuration (the rules file, the re-check period, the public-security inquiry and
        its schedule); a constructor given nothing uses the default rules and adapters (the
        inquiry of ``make run``'s simulator address: nothing listening there leaves the
        checks pending)."""
        self.rules = rules or CreditRules()
        #: Days after the last completed check when someone on a roster is re-checked.
        self.recheck_days = recheck_days or DEFAULT_RECHECK_DAYS
        super().__init__(settings or settings_for(self.service_name), env)
        self.vault = vault or PersonalDataVault.for_settings(self.settings)
        #: The public-security records inquiry (未成年人保护法 第62条).
        self.inquiry: PublicSecurityInquiry = inquiry or inquiry_from_env({})
        self.schedule = schedule or InquirySchedule()
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
        """Enter a person in the register (从业人员库): name and ID number sealed, the person
        found by ID number through credit's blind index, which issues their ref (a random
        pseudonym; other services, registration first, use the ref credit answers).

        Idempotent by person: registering someone known already changes nothing. With
        ``person_ref``, the person is the one of a record opened from a hire by that ref alone
        (events of before): the ID number is entered in the index under that ref, and the
        sealed name and number go onto the record (its checks may then be sent).
        """
        command = parse(commands.RegisterPractitioner, data)
        name, id_number = command.name, command.id_number
        if command.person_ref is not None:
            with self.vault.person_lock(command.person_ref):  # one identification at a time
                return self._identify(command.person_ref, name, id_number)
        ref = self.vault.enrol(PRACTITIONER, id_number)
        existing = self._practitioner(ref)
        if existing is not None and existing.identity_sealed:
            return {"person_ref": ref, "created": False}
        sealed_name, sealed_id = self._seal(ref, name, id_number)
        if existing is None:
            try:
                self.save(Practitioner.register(ref, sealed_name, sealed_id))
                return {"person_ref": ref, "created": True}
            except IntegrityError:
                pass  # registered meanwhile (another officer, registration): seal onto it below
        self._update_practitioner(ref, lambda p: p.seal_identity(sealed_name, sealed_id))
        return {"person_ref": ref, "created": False}

    def _seal(self, ref: str, name: str, id_number: str) -> tuple[dict, dict]:
        sealed = self.vault.seal_person(ref, {"name": name, "id_number": id_number},
                                        display={"name": mask_name(name)})
        return sealed["name"], sealed["id_number"]

    def _identify(self, ref: str, name: str, id_number: str) -> dict[str, Any]:
        """The person of a record opened by the ref alone is this ID number."""
        person = self._practitioner(ref)
        if person is None:
            raise PractitionerNotFound(f"no practitioner {ref}")
        if self.vault.is_erased(ref):  # nothing more is sealed for an erased ref
            raise PersonalDataErased(f"personal data of {ref} was erased")
        known = self.vault.find(PRACTITIONER, id_number)
        if known is not None and known != ref:
            raise DomainRuleViolated("this ID number is another practitioner's already: "
                                     f"{known}", state="registered")
        if person.identity_sealed:
            if known == ref:
                return {"person_ref": ref, "created": False}
            raise DomainRuleViolated(f"practitioner {ref} holds another ID number",
                                     state="identity_sealed")
        adopted = self.vault.enrol(PRACTITIONER, id_number, ref=ref)
        if adopted != ref:  # entered for someone else in between
            raise DomainRuleViolated("this ID number is another practitioner's already: "
                                     f"{adopted}", state="registered")
        sealed_name, sealed_id = self._seal(ref, name, id_number)
        self._update_practitioner(ref, lambda p: p.seal_identity(sealed_name, sealed_id))
        return {"person_ref": ref, "created": False}

    @refusing_field_errors
    def impose_ban(self, person_ref: str, data: dict[str, Any]) -> str:
        """从业禁止: a lifetime ban or one for a number of years, with its legal basis. A check
        of theirs still pending completes barred at once if the ban is in force today."""
        command, clean = _read(commands.ImposeBan, data, person_ref=person_ref)
        ban_ref = command.ban_ref or f"ban-{uuid.uuid4()}"
        today = self.today()
        starts_on = command.starts_on or today

        def impose(person: Practitioner) -> list[str]:
            person.impose_ban(ban_ref, command.source, command.legal_basis,
                              list(command.evidence), command.officer, starts_on, command.term)
            return [check_id for check_id in person.pending_checks()
                    if person.bar_by_ban(check_id, AUTOMATIC_OFFICER, today)]

        ref = clean["person_ref"]
        # Under the person's lock, against an erasure deciding meanwhile that nothing keeps
        # them; a person erased already can no longer be found by ID number, so a ban on that
        # ref alone would bar nobody who is hired again: refused, with what to do instead.
        with self.vault.person_lock(ref):
            if self.vault.is_erased(ref):
                raise PersonalDataErased(
                    f"personal data of {ref} was erased: register the person again by ID "
                    "number (POST /api/practitioners) and impose the ban on the ref it gives")
            barred = self._update_practitioner(ref, impose)
        for _ in barred:
            inquiries.CHECKS_COMPLETED.labels("credit", CheckOutcome.BARRED.value,
                                              AnsweredBy.BAN_LIST.value).inc()
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

    # ---- background checks (未成年人保护法 第62条) -------------------------------------------
    def _screen(self, person: Practitioner, check_id: str, today: date) -> str:
        """What is decided at once of a check just requested: ``barred`` by a ban in force
        (credit's own ban list), ``flagged`` when there is no ID number to inquire with, or
        ``pending``: it waits for the public-security inquiry."""
        if person.bar_by_ban(check_id, AUTOMATIC_OFFICER, today) is not None:
            return "barred"
        if not person.identity_sealed:
            person.flag_check(check_id, CheckFlag.IDENTITY_UNKNOWN, _IDENTITY_UNKNOWN, today)
            return "flagged"
        return "pending"

    @staticmethod
    def _check_answer(person: Practitioner, check_id: str) -> dict[str, Any]:
        check = person.check(check_id)
        assert check is not None
        return {"check_id": check_id,
                "state": "completed" if check["state"] == "completed" else "pending",
                "outcome": check["outcome"], "reference": check["reference"],
                "flag": (check["flag"] or {}).get("flag")}

    def _count_screened(self, screened: str) -> None:
        if screened == "barred":
            inquiries.CHECKS_COMPLETED.labels("credit", CheckOutcome.BARRED.value,
                                              AnsweredBy.BAN_LIST.value).inc()
        elif screened == "flagged":
            inquiries.CHECKS_FLAGGED.labels("credit", CheckFlag.IDENTITY_UNKNOWN.value).inc()

    @refusing_field_errors
    def request_check(self, person_ref: str, data: dict[str, Any]) -> dict[str, Any]:
        """The yearly check (年度复查) of someone on a roster, requested now: ``{check_id,
        state, outcome, reference, flag}``. Barred at once (``state`` ``completed``, the ban's
        reference) when a ban is in force today; otherwise ``pending`` until the
        public-security inquiry answers (``flag`` names why an officer must act, if so)."""
        command, clean = _read(commands.RequestCheck, data, person_ref=person_ref)
        ref, institution_id = clean["person_ref"], command.institution_id
        check_id = command.check_id or f"yearly-{uuid.uuid4()}"
        today = self.today()

        def check(person: Practitioner) -> tuple[str, dict[str, Any]]:
            person.request_check(check_id, "yearly", institution_id, today)
            screened = self._screen(person, check_id, today)
            return screened, self._check_answer(person, check_id)

        screened, answer = self._update_practitioner(ref, check)
        self._count_screened(screened)
        return answer

    def request_yearly_checks(self, today: date | None = None) -> dict[str, Any]:
        """The daily timer: a yearly check (年度复查) of everyone on at least one roster whose
        last completed check is ``recheck_days`` days old or older and who has no yearly
        check pending. Barred at once by a ban in force, otherwise pending for the
        public-security inquiry (:meth:`dispatch_inquiries`). Not made for an institution
        (``institution_id`` None: registration's hires are not touched); a barred answer
        reaches the employers through the ban itself (``PractitionerBanImposed``).
        Idempotent: the check id is the day's and the person's, and a person checked since,
        or with a yearly check pending, is skipped."""
        today = today or self.today()
        due_by = today - timedelta(days=self.recheck_days)
        self._catch_up_views()
        checked, failed = [], []

        def check(person: Practitioner) -> tuple[str, dict[str, Any]] | None:
            check_id = yearly_check_id(person.person_ref, today)
            last = person.last_checked_on
            if not person.rosters or person.check(check_id) is not None or \
                    person.pending_checks("yearly") or (last is not None and last > due_by):
                return None  # left, checked since the table was read, or one pending
            person.request_check(check_id, "yearly", None, today)
            return self._screen(person, check_id, today), self._check_answer(person, check_id)

        for ref in self._query(projections.people_due_a_yearly_check, due_by):
            try:
                done = self._update_practitioner(ref, check)
            except Exception as e:  # one bad record must not hold up the others
                log.error("timer.yearly_check_failed", person_ref=ref, error=repr(e))
                failed.append({"person_ref": ref, "error": repr(e)})
                continue
            if done is not None:
                screened, answer = done
                self._count_screened(screened)
                checked.append({"person_ref": ref, **answer})
        return {"today": today.isoformat(), "checked": checked, "failed": failed}

    @refusing_field_errors
    def retry_check(self, person_ref: str, data: dict[str, Any]) -> dict[str, Any]:
        """An officer has a flagged check sent for the inquiry again (the cause dealt with),
        with the reason: ``{check_id, state: "pending"}``."""
        command, clean = _read(commands.RetryCheck, data, person_ref=person_ref)
        today = self.today()
        self._update_practitioner(clean["person_ref"], lambda p: p.retry_check(
            command.check_id, command.officer, command.reason, today))
        return {"check_id": command.check_id, "state": "pending"}

    def pending_checks(self) -> list[dict[str, Any]]:
        """For an officer: the background checks not completed, flagged ones first (with
        why), then those waiting for the public-security inquiry (attempts, last outage);
        from the query table the worker keeps (``checks_pending``)."""
        return self._query(projections.pending_checks)

    def dispatch_inquiries(self) -> dict[str, Any]:
        """One round of the inquiry dispatch (the worker runs it every few seconds; see
        :mod:`tuoyu_credit.inquiries`): every pending check that is due is sent to the
        public-security records inquiry (or asked about again), its answer recorded and the
        check completed. An outage leaves the check pending, retried later with backoff, and
        ends the round; a refusal flags it for an officer. ``{answered, pending, unavailable,
        flagged, failed}`` (each a list of ``{person_ref, check_id, …}``)."""
        now = self.clock()
        today = shanghai_date(now)
        self._catch_up_views()
        result: dict[str, list[dict[str, Any]]] = {
            "answered": [], "pending": [], "unavailable": [], "flagged": [], "failed": []}
        for row in self._query(projections.inquiries_due, now, inquiries.ROUND_LIMIT):
            ref, check_id = row["person_ref"], row["check_id"]
            try:
                kind, detail = self._dispatch_one(row, now, today)
            except Exception as e:  # one bad record must not hold up the others
                log.error("inquiry.dispatch_failed", person_ref=ref, check_id=check_id,
                          error=repr(e))
                result["failed"].append({"person_ref": ref, "check_id": check_id,
                                         "error": repr(e)})
                continue
            if kind != "skipped":
                result[kind].append({"person_ref": ref, "check_id": check_id, **detail})
            if kind == "unavailable":
                break  # the system is down: the others wait for the next round
        if result["answered"] or result["flagged"]:
            self._catch_up_views()  # the gauges count what this round completed
        self._gauge_pending(now, today)
        return result

    def _gauge_pending(self, now: datetime, today: date) -> None:
        try:
            counts = self._query(projections.pending_counts, now)
        except psycopg.Error as e:
            log.warning("inquiry.gauge_failed", error=repr(e))
            return
        for state in ("due", "waiting", "flagged"):
            inquiries.CHECKS_PENDING.labels("credit", state).set(counts[state])
        oldest = counts["oldest_requested_on"]
        inquiries.OLDEST_PENDING.labels("credit").set(
            (today - date.fromisoformat(oldest)).days if oldest else 0)

    def _dispatch_one(self, row: dict[str, Any], now: datetime,
                      today: date) -> tuple[str, dict[str, Any]]:
        ref, check_id = row["person_ref"], row["check_id"]
        person = self._practitioner(ref)
        if person is None or not _pending(person, check_id):
            return "skipped", {}  # completed meanwhile: the table catches up
        if person.barring_ban(today) is not None:  # a ban came into force meanwhile
            barred = self._update_practitioner(ref, lambda p: p.bar_by_ban(
                check_id, AUTOMATIC_OFFICER, today) if _pending(p, check_id) else None)
            if barred:
                inquiries.CHECKS_COMPLETED.labels("credit", CheckOutcome.BARRED.value,
                                                  AnsweredBy.BAN_LIST.value).inc()
            return "answered", {"outcome": CheckOutcome.BARRED.value}
        id_number = self.vault.open(person.id_number) if person.identity_sealed else None
        name = self.vault.open(person.name) if person.identity_sealed else None
        if id_number is None or name is None:
            why = _IDENTITY_UNKNOWN if not person.identity_sealed else _IDENTITY_ERASED
            return self._flag(ref, check_id, CheckFlag.IDENTITY_UNKNOWN, why, today)
        check = person.check(check_id)
        assert check is not None
        institution_id = check["institution_id"]
        try:
            request = InquiryRequest(
                request_id=check_id, id_number=id_number, name=name, purpose=check["reason"],
                requested_by=f"institution:{institution_id}" if institution_id
                else "tuoyu-credit")
        except ValueError:
            return self._flag(ref, check_id, CheckFlag.INQUIRY_REJECTED,
                              "the check id cannot be the inquiry's request id (letters, "
                              "digits and ._:- only, at most 100): request a new check", today)
        operation = "status" if row["phase"] == "poll" else "inquire"
        started = time.monotonic()
        try:
            if operation == "status":
                try:
                    answer = self.inquiry.status(check_id)
                except InquiryUnknown:  # it never arrived there: send it again
                    inquiries.INQUIRIES.labels("credit", operation, "unknown").inc()
                    operation = "inquire"
                    answer = self.inquiry.inquire(request)
            else:
                answer = self.inquiry.inquire(request)
        except InquiryUnavailable as e:
            inquiries.INQUIRIES.labels("credit", operation, "unavailable").inc()
            attempts = row["attempts"] + 1
            retry_at = self.schedule.retry_at(now, attempts)
            self._schedule(ref, check_id, row["phase"], attempts, retry_at,
                           inquiries.unavailable_reason(e))
            log.warning("inquiry.unavailable", person_ref=ref, check_id=check_id,
                        attempts=attempts, retry_at=retry_at.isoformat(), code=e.code)
            return "unavailable", {"attempts": attempts, "retry_at": retry_at.isoformat()}
        except InquiryRejected as e:
            inquiries.INQUIRIES.labels("credit", operation, "rejected").inc()
            return self._flag(ref, check_id, CheckFlag.INQUIRY_REJECTED,
                              inquiries.rejection_reason(e), today)
        finally:
            inquiries.INQUIRY_SECONDS.labels("credit", operation).observe(
                time.monotonic() - started)
        if answer is None:  # accepted, not answered yet: ask again later
            inquiries.INQUIRIES.labels("credit", operation, "pending").inc()
            polls = row["attempts"] + 1 if row["phase"] == "poll" else 1
            poll_at = self.schedule.poll_at(now, polls)
            self._schedule(ref, check_id, "poll", polls, poll_at, None)
            return "pending", {"polls": polls, "poll_at": poll_at.isoformat()}
        inquiries.INQUIRIES.labels("credit", operation, "answered").inc()
        outcome = self._update_practitioner(ref, lambda p: p.record_inquiry_answer(
            check_id, answer.reference, answer.result, list(answer.categories),
            answer.answered_at, AUTOMATIC_OFFICER, today) if _pending(p, check_id) else None)
        if outcome is None:
            return "skipped", {}
        inquiries.CHECKS_COMPLETED.labels("credit", outcome,
                                          AnsweredBy.PUBLIC_SECURITY.value).inc()
        log.info("inquiry.answered", person_ref=ref, check_id=check_id,
                 inquiry_reference=answer.reference)
        return "answered", {"outcome": outcome, "inquiry_reference": answer.reference}

    def _flag(self, ref: str, check_id: str, flag: CheckFlag, reason: str,
              today: date) -> tuple[str, dict[str, Any]]:
        flagged = self._update_practitioner(ref, lambda p: p.flag_check(
            check_id, flag, reason, today) if _pending(p, check_id) else False)
        if flagged:
            inquiries.CHECKS_FLAGGED.labels("credit", flag.value).inc()
            log.warning("inquiry.flagged", person_ref=ref, check_id=check_id, flag=flag.value)
        return "flagged", {"flag": flag.value, "reason": reason}

    def _schedule(self, ref: str, check_id: str, phase: str, attempts: int,
                  next_attempt_at: datetime, last_error: str | None) -> None:
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            projections.schedule_inquiry(conn, ref, check_id, phase=phase, attempts=attempts,
                                         next_attempt_at=next_attempt_at,
                                         last_error=last_error)

    # ---- people's rights over their data (tuoyu_shared.people) ---------------------------
    def retention_of(self, person_ref: str, kind: str) -> str | None:
        """A practitioner with a ban not ended (in force, or starting later) is kept: the ban
        list must be (未成年人保护法 第62条)."""
        if kind != PRACTITIONER:
            return None
        person = self._practitioner(person_ref)
        if person is not None and person.bans_not_ended(self.today()):
            return BAN_RETENTION
        return None

    def on_person_erased(self, person_ref: str, kind: str) -> None:
        """Credit's query tables hold a person by ref only; the reads of them keep who read,
        when, what was asked and answered, and lose the purposes typed (free text that may
        name them)."""
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            blanked = conn.execute(
                "UPDATE practitioner_reads SET purpose = %s WHERE person_ref = %s "
                "AND purpose <> %s", (ERASED_PURPOSE, person_ref, ERASED_PURPOSE)).rowcount
        log.info("person.erased_reads_blanked", person_ref=person_ref, reads=blanked)

    # ---- reactions (called by the consumers; they return the aggregates to save) -----------
    def open_credit(self, institution_id: str) -> list[InstitutionCredit]:
        """A new institution in the register: open its credit record (once)."""
        credit, new = self._credit_or_new(institution_id)
        return [credit] if new else []

    def check_hire(self, hire_id: str, institution_id: str,
                   person_ref: str) -> list[Practitioner]:
        """Registration asks about a hire: request the check (its id is the hire id). A ban
        in force today bars it at once; otherwise it waits for the public-security inquiry
        (:meth:`dispatch_inquiries`), and registration's hire stays pending until then. A
        person credit does not know (a ref of before credit issued them) is registered by
        the ref alone, their check flagged ``identity_unknown``."""
        person = self._practitioner(person_ref)
        if person is None:
            person = Practitioner.register_from_hire(person_ref)
        elif person.check(hire_id) is not None:
            return []  # requested already
        today = self.today()
        person.request_check(hire_id, "hire", institution_id, today)
        self._count_screened(self._screen(person, hire_id, today))
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

        By ``id_number`` (found through credit's blind index; a number credit does not hold
        is no one barred) or by ``person_ref``, with the ``purpose`` of the read; the read is
        recorded (who, when, why, what was answered; the ref, or none for a number credit does
        not hold) before the answer is given.
        """
        command = parse(commands.CheckPractitioner, data)
        by_id_number = command.id_number is not None
        ref = (self.vault.find(PRACTITIONER, command.id_number) if command.id_number is not None
               else command.person_ref)
        person = self._practitioner(ref) if ref is not None else None
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
