"""Registration commands and queries (the application layer).

Every command validates its whole input first (:class:`ValidationFailed` names each bad field
and writes nothing), then loads the institution, lets the domain decide, and saves with
optimistic concurrency (:meth:`ServiceApplication.update`). The clock and the working-day
calendar live here, not in the domain: dates are Asia/Shanghai calendar dates.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from tuoyu_registration import commands, projections
from tuoyu_registration.contract import CONTRACT
from tuoyu_registration.domain import (
    ROSTER_EVENT_TOPICS,
    CareStandards,
    EmploymentRecord,
    EnrolmentReports,
    Institution,
    Nature,
    ProviderKind,
    RegistrationCases,
    Roster,
    check_credit_code_matches_nature,
    employment_record_id_for,
    enrolment_reports_id_for,
    institution_id_for,
    month_key,
    registration_cases_id_for,
    roster_changes,
    roster_id_for,
)
from tuoyu_registration.importer import (
    ImportReport,
    ParsedRow,
    build_import_events,
    parsed_batches,
    partition_rows,
    read_rows,
)
from tuoyu_registration.practitioners import PractitionerRegister
from tuoyu_shared.application import ServiceApplication
from tuoyu_shared.calendar_cn import WorkingCalendar, default_calendar, shanghai_date
from tuoyu_shared.commands import parse
from tuoyu_shared.config import Settings
from tuoyu_shared.context import command_context, current_context
from tuoyu_shared.envelope import to_json_value
from tuoyu_shared.errors import Conflict, NotFound, Unavailable
from tuoyu_shared.history import history_entries
from tuoyu_shared.people import PeopleCommands
from tuoyu_shared.personal_data import PersonalDataErased, PersonalDataVault
from tuoyu_shared.validation import (
    FieldError,
    ValidationFailed,
    Validator,
    mask_name,
    refusing_field_errors,
)

RECEIPT_DUE_WORKING_DAYS = 5  # 备案回执: within 5 working days of submission
VERIFICATION_DUE_WORKING_DAYS = 15  # 核查不符合: notified within 15 working days
STAFF_REMOVAL_DUE_WORKING_DAYS = 5  # a barred practitioner must be removed within
IMPORT_MAX_CHARACTERS = 64 << 20  # a CSV import's text (HTTP bodies are limited before)
#: The lines one import command takes (about 5 s of work here, well within an RPC call's 30 s
#: timeout): a larger export is sent in parts.
IMPORT_MAX_ROWS = 20_000
#: The tracking name under which the one-off carry-over of earlier hires into employment
#: records notes how far into this service's own log it went.
EMPLOYMENT_CARRY_OVER = "employment-records<-registration"


T = TypeVar("T")


class InstitutionNotFound(NotFound):
    """No institution of this id in the register."""


class RegistrationApplication(PeopleCommands, ServiceApplication):
    """The register of childcare providers (托育机构登记备案).

    Per institution three aggregates, each a stream of its own: the :class:`Institution`
    (lifecycle, filing, changes, designations, credit listings), its :class:`Roster` (hires,
    background checks, releases, staff-removal cases) and its :class:`EnrolmentReports`
    (monthly reports). So a background check answered by the credit service (the roster) and
    an officer's command on the institution never contend. A command on the roster or the
    reports loads the institution too and gives their rules its facts (status, kind, filed
    classes, receipt date: :attr:`Institution.facts`); a command that changes two, the
    deregistration (the institution, and its roster closed), saves both in one transaction
    (:meth:`ServiceApplication.update_many`). The institution record and its history combine
    the three (:meth:`institution`, :meth:`institution_record`).

    Until this version an institution's roster and reports were recorded in its own stream.
    Those streams are replayed as they are (history, reads as of a version); the first
    command that needs the institution's roster or reports carries what its stream recorded
    into them (:meth:`Roster.for_institution`, :meth:`EnrolmentReports.for_institution`), in
    the transaction of its own events; until then reads take it from the institution.
    Instances of an earlier version still writing roster or reports events into
    institutions' streams after that would be missed: stop them before starting this one.

    And each practitioner's :class:`EmploymentRecord` (从业人员在岗记录), the write-side
    answer to "where does this person work". Every save of a roster whose hires changed also
    saves the employment records of the practitioners concerned, in the same transaction
    (:meth:`save`, :meth:`record_processing`): the record can never lag the roster.

    Records began with this version. Hires recorded before it are carried over once, by the
    data migration of ``migrate`` or when the composition root first builds the application
    on a database whose log has events and no carry-over mark (:meth:`carry_over_employment`).
    Instances of an earlier version still writing after that
    would leave their hires out: stop them first, or run :meth:`carry_over_employment` again
    once they are stopped (it resumes where the mark says and is idempotent).
    """

    name = "Registration"
    service_name = "registration"
    is_snapshotting_enabled = True
    views = projections.VIEW
    contract = CONTRACT
    snapshotting_intervals = {Institution: 100, Roster: 100, EnrolmentReports: 100}

    def __init__(self, settings: Settings | None = None, env: dict[str, str] | None = None,
                 clock: Callable[[], datetime] | None = None,
                 calendar: WorkingCalendar | None = None,
                 standards: CareStandards | None = None,
                 vault: PersonalDataVault | None = None,
                 practitioners: PractitionerRegister | None = None):
        """Built by the composition root (:mod:`tuoyu_registration.bootstrap`), which reads
        the configuration; a constructor given nothing uses the defaults of each adapter."""
        super().__init__(settings, env)
        self.vault = vault or PersonalDataVault.for_settings(self.settings)
        #: credit's practitioner register (从业人员库), which issues practitioners' refs
        self.practitioners = practitioners
        self.clock = clock or (lambda: datetime.now(UTC))
        self.calendar = calendar or default_calendar()
        self.standards = standards or CareStandards()

    def today(self) -> date:
        return shanghai_date(self.clock())

    # ---- personal data ---------------------------------------------------------------------
    def _seal_person(self, name: str, id_number: str, phone: str | None,
                     ref: str | None = None) -> dict[str, Any]:
        """Seal a person's data under their own key (written only once input is valid); a
        person in charge is found through this service's blind index (a new one gets a
        random ref), a practitioner comes with the ref credit's register gave them. Only
        the name's mask may be shown (by queries, from the vault): never in an event."""
        values = {"name": name, "id_number": id_number}
        if phone is not None:
            values["phone"] = phone
        display = {"name": mask_name(name)}
        if ref is None:  # a person in charge: one round trip when new to the index
            return self.vault.enrol_and_seal("person_in_charge", id_number, values, display)
        return self.vault.seal_person(ref, values, display=display)

    def _practitioner_ref(self, name: str, id_number: str) -> str:
        """The practitioner's ref: this service's blind index, else credit's practitioner
        register (which enters them if new, and gives the ref every service knows them by),
        then kept in the index. Unavailable (503) when the register cannot be asked."""
        ref = self.vault.find("practitioner", id_number)
        if ref is None:
            if self.practitioners is None:
                raise Unavailable("the practitioner register (credit) is not configured")
            ref = self.practitioners.register(name, id_number)
            if not self.vault.is_erased(ref):  # erased here, kept by the register: not
                ref = self.vault.enrol("practitioner", id_number, ref)  # found here again
        return ref

    # ---- loading and saving ----------------------------------------------------------------
    def _id(self, institution_id: UUID | str) -> UUID:
        try:
            return UUID(str(institution_id))
        except ValueError:
            raise ValidationFailed([FieldError("institution_id", "not an institution id",
                                               "invalid_format")]) from None

    def _get(self, institution_id: UUID | str) -> Institution:
        try:
            return self.repository.get(self._id(institution_id))
        except AggregateNotFoundError:
            raise InstitutionNotFound(f"no institution {institution_id}") from None

    def _update(self, institution_id: UUID | str, command: Callable[[Institution], Any]) -> Any:
        uid = self._id(institution_id)
        try:
            return self.update(uid, command)
        except AggregateNotFoundError:
            raise InstitutionNotFound(f"no institution {institution_id}") from None

    # ---- an institution's roster and enrolment reports -------------------------------------
    def _roster(self, institution: Institution) -> Roster:
        """The institution's roster; new (unsaved, with what the institution's own stream
        recorded carried over) if it has none yet."""
        try:
            return self.repository.get(roster_id_for(institution.id))
        except AggregateNotFoundError:
            return Roster.for_institution(institution)

    def _reports(self, institution: Institution) -> EnrolmentReports:
        """The institution's enrolment reports; new (unsaved, carried over) if none yet."""
        try:
            return self.repository.get(enrolment_reports_id_for(institution.id))
        except AggregateNotFoundError:
            return EnrolmentReports.for_institution(institution)

    def _with_roster(self, institution_id: UUID | str,
                     command: Callable[[Institution, Roster], T]) -> T:
        """Run a command on the institution and its roster and save what changed, in one
        transaction; on a conflict on either, again on fresh state. The institution is read
        first: see :class:`Roster` on why a deregistration in between cannot be missed."""
        uid = self._id(institution_id)

        def load() -> tuple[Institution, Roster]:
            institution = self._get(uid)
            return institution, self._roster(institution)

        return self.update_many(load, command)

    def _with_reports(self, institution_id: UUID | str,
                      command: Callable[[Institution, EnrolmentReports], T]) -> T:
        """Run a command on the institution's enrolment reports, given the institution (read
        only), and save them; on a conflict, again on fresh state."""
        uid = self._id(institution_id)

        def load() -> tuple[Institution, EnrolmentReports]:
            institution = self._get(uid)
            return institution, self._reports(institution)

        return self.update_many(load, command)

    def _cases(self, credit_code: str) -> tuple[RegistrationCases | None, list[UUID]]:
        """The code's registration cases (institution ids, in order) from the event store,
        with their index if the code has one (only a code with a second case has)."""
        index_id, first = registration_cases_id_for(credit_code), institution_id_for(credit_code)
        # one round trip: the index's events, and whether the code's first case exists
        streams = self.streams({index_id: None, first: 1})
        index = self.aggregate_of(streams[index_id])
        if index is None:
            return None, [first] if streams[first] else []
        return index, [UUID(case) for case in index.cases]

    # Every institution's roster change is saved with its employment records.
    def save(self, *objs: Any, **kwargs: Any):  # type: ignore[override]
        return super().save(*objs, *self._employment_records_for(objs), **kwargs)

    def record_processing(self, tracking_name: str, notification_id: int,
                          *aggregates: Any, **kwargs: Any) -> bool:
        return super().record_processing(tracking_name, notification_id, *aggregates,
                                         *self._employment_records_for(aggregates), **kwargs)

    def _employment_records_for(self, objs: tuple[Any, ...]) -> list[EmploymentRecord]:
        """The employment records the rosters' pending hire events change, loaded
        (or opened) and changed to match, except those in ``objs`` already (changed in
        place). A record saved meanwhile by another command makes the save fail on its
        version, and the caller's retry (:meth:`update`, the consumer's) runs again on fresh
        state."""
        given = {o.id: o for o in objs if isinstance(o, EmploymentRecord)}
        loaded: dict[UUID, EmploymentRecord] = {}
        noted = self.batch_marks()  # in a consumer's batch: events an earlier step noted
        for obj in objs:
            if not isinstance(obj, Roster):
                continue
            events = obj.pending_events
            if noted is not None:
                events = [e for e in events if id(e) not in noted]
                noted.update(id(e) for e in events)
            for ref, institution_id, hire_id, status in roster_changes(events):
                record_id = employment_record_id_for(ref)
                record = given.get(record_id) or loaded.get(record_id)
                if record is None:
                    record = loaded[record_id] = self._employment_record(ref)
                record.note_hire(institution_id, hire_id, status)
        return list(loaded.values())

    def after_step(self, aggregates: list[Any]) -> list[Any]:
        # In a consumer's batch, each step's hires reach the employment records at once: a
        # ban later in the same page reads its employers from them (on_practitioner_barred).
        return [*aggregates, *self._employment_records_for(tuple(aggregates))]

    def _employment_record(self, practitioner_ref: str) -> EmploymentRecord:
        try:
            return self.repository.get(employment_record_id_for(practitioner_ref))
        except AggregateNotFoundError:
            return EmploymentRecord(practitioner_ref)

    def current_employers(self, practitioner_ref: str) -> list[str]:
        """The institutions employing the person now (在岗), from their employment record
        (the event store, never the query tables); none if no hire of theirs is known."""
        try:
            record = self.repository.get(employment_record_id_for(practitioner_ref))
        except AggregateNotFoundError:
            return []
        return record.employers

    def carry_over_employment(self) -> dict[str, int]:
        """Carry hires recorded before employment records existed into the records.

        Reads this service's own log, the hire events only (the rosters', and those recorded
        in the institutions' own streams before rosters had streams), from the carry-over
        mark (none: the beginning) to its head, and gives each practitioner's record the hires
        it does not know, with their last status. A hire the record knows is left alone: its
        record has every change since (saved with the institution's), so it is newer. Each
        record is saved on its own, retried on a version conflict; the mark (a tracking
        record at the head read) is written last, so an interrupted run is run again whole
        and changes nothing twice. Runs on the first start with this version (one pass over
        the log, paged); with an empty log there is nothing to carry and no mark is left.
        """
        start = (self.recorder.max_tracking_id(EMPLOYMENT_CARRY_OVER)  # type: ignore[attr-defined]
                 or 0) + 1
        head = self.log_head()
        hires: dict[str, dict[str, dict[str, Any]]] = {}  # ref → hire id → hire
        while start <= head:
            page = self.recorder.select_notifications(start=start, limit=1000, stop=head,
                                                      topics=ROSTER_EVENT_TOPICS)
            for notification in page:
                event = self.mapper.to_domain_event(notification)
                for ref, institution_id, hire_id, status in roster_changes([event]):
                    hires.setdefault(ref, {})[hire_id] = {
                        "institution_id": institution_id, "hire_id": hire_id,
                        "status": status}
            if len(page) < 1000:
                break
            start = page[-1].id + 1
        carried = 0
        for ref, by_hire in hires.items():
            for attempt in range(31):
                record = self._employment_record(ref)
                if not record.carry_over(list(by_hire.values()), head):
                    break
                try:
                    self.save(record)
                    carried += 1
                    break
                except IntegrityError:
                    if attempt == 30:
                        raise
        if head:
            self.record_processing(EMPLOYMENT_CARRY_OVER, head)
        return {"up_to": head, "practitioners": len(hires), "records_changed": carried}

    # ---- commands --------------------------------------------------------------------------
    @refusing_field_errors
    def register_institution(self, data: dict[str, Any]) -> UUID:
        """Enter a provider in the register (登记) with its registration facts."""
        command = parse(commands.RegisterInstitution, data)
        credit_code, nature = command.credit_code, command.nature
        p = command.person_in_charge
        person = (p.name, p.id_number, p.phone)
        check_credit_code_matches_nature(credit_code, Nature(nature))
        sealed = None
        for _attempt in range(3):
            # A code's first case needs no index; a later one opens in the code's index,
            # saved with the new institution. Refused while the latest case is open.
            index, cases = self._cases(credit_code)
            institution_id = None
            if cases:
                latest = self._get(cases[-1])
                if index is None:
                    index = RegistrationCases(credit_code=credit_code,
                                              first_case=str(cases[0]))
                institution_id = index.open_case(latest.status)
            # sealed once the registration is allowed: a refused one stores no personal data
            sealed = sealed or self._seal_person(*person)
            institution = Institution.register(
                name=command.name, credit_code=credit_code, nature=Nature(nature),
                kind=ProviderKind(command.kind), district=command.district,
                street=command.street, address=command.address,
                person_in_charge=sealed, institution_id=institution_id)
            try:
                self.save(*([index] if index is not None else []), institution)
            except IntegrityError:
                continue  # a registration of the code was recorded meanwhile: decide again
            return institution.id
        raise Conflict(f"credit code {credit_code} was being registered by other commands "
                       "each time: try again")

    @refusing_field_errors
    def submit_filing(self, institution_id: str, data: dict[str, Any]) -> str:
        """备案: submit the filing facts; the receipt falls due 5 working days later."""
        filing = parse(commands.SubmitFiling, data).filing()
        today = self.today()
        due = self.calendar.add_working_days(today, RECEIPT_DUE_WORKING_DAYS)
        self._update(institution_id, lambda i: i.submit_filing(filing, today, due,
                                                               self.standards))
        return due.isoformat()

    @refusing_field_errors
    def issue_filing_receipt(self, institution_id: str, data: dict[str, Any]) -> None:
        receipt_number = parse(commands.IssueFilingReceipt, data).receipt_number
        today = self.today()
        due = self.calendar.add_working_days(today, VERIFICATION_DUE_WORKING_DAYS)
        self._update(institution_id,
                     lambda i: i.issue_filing_receipt(receipt_number, today, due))

    @refusing_field_errors
    def verify_filing(self, institution_id: str, data: dict[str, Any]) -> None:
        """核查 (核实): compliant, or non-compliant with findings, a notice and a public
        disclosure. Each finding of the submission gets a decision in ``finding_decisions``
        (``{field, decision: confirmed | dismissed, reason}``): compliant only with all
        dismissed; a non-compliance notice lists the confirmed ones, then ``findings``, the
        officer's own (which may be left out when one is confirmed)."""
        command = parse(commands.VerifyFiling, data)
        notes = command.notes or ""
        decisions = [d.data() for d in command.finding_decisions]
        findings, disclosure = list(command.findings), command.disclosure or ""
        today = self.today()
        if command.outcome == "compliant":
            self._update(institution_id, lambda i: i.verify_compliant(today, notes, decisions))
        else:
            self._update(institution_id, lambda i: i.find_non_compliant(
                today, findings, today, disclosure, decisions))

    @refusing_field_errors
    def file_change(self, institution_id: str, data: dict[str, Any]) -> None:
        """变更备案: any of name, site, classes (places) or person in charge."""
        given = parse(commands.FileChange, data).changes.given()
        changes: dict[str, Any] = {key: value for key, value in given.items()
                                   if key not in ("classes", "person_in_charge")}
        if "classes" in given:
            changes["classes"] = [c.data() for c in given["classes"]]
        if "person_in_charge" in given:
            p = given["person_in_charge"]
            person = (p.name, p.id_number, p.phone)
            # The state is checked before the person is sealed: a refused change stores no
            # personal data (nor a key for it).
            self._get(institution_id).check_can_file_change()
            changes["person_in_charge"] = self._seal_person(*person)
        today = self.today()
        self._update(institution_id, lambda i: i.file_change(changes, today, self.standards))

    @refusing_field_errors
    def designate_affordable(self, institution_id: str, data: dict[str, Any]) -> None:
        command = parse(commands.DesignateAffordable, data)
        self._update(institution_id, lambda i: i.designate_affordable(
            command.guide_price_fen, self.today(), command.document))

    @refusing_field_errors
    def withdraw_affordable(self, institution_id: str, data: dict[str, Any]) -> None:
        reason = parse(commands.WithdrawAffordable, data).reason
        self._update(institution_id, lambda i: i.withdraw_affordable(self.today(), reason))

    @refusing_field_errors
    def grant_demonstration_level(self, institution_id: str, data: dict[str, Any]) -> None:
        command = parse(commands.GrantDemonstrationLevel, data)
        self._update(institution_id, lambda i: i.grant_demonstration_level(
            command.level, self.today(), command.document))

    @refusing_field_errors
    def revoke_demonstration_level(self, institution_id: str, data: dict[str, Any]) -> None:
        reason = parse(commands.RevokeDemonstrationLevel, data).reason
        self._update(institution_id,
                     lambda i: i.revoke_demonstration_level(self.today(), reason))

    def _refuse_future_month(self, month: str) -> None:
        today = self.today()  # Asia/Shanghai
        if month_key(month) > (today.year, today.month):
            raise FieldError("month", f"{month} has not begun", "in_future")

    @refusing_field_errors
    def report_enrolment(self, institution_id: str, data: dict[str, Any]) -> None:
        """月度在托报告: children by class and age band, second and third children, children
        under health management (健康管理)."""
        month, classes, second, third, health = parse(commands.ReportEnrolment, data).report()
        self._refuse_future_month(month)
        self._with_reports(institution_id, lambda i, reports: reports.report(
            month, classes, second, third, health, i.facts, self.standards))

    @refusing_field_errors
    def correct_enrolment(self, institution_id: str, data: dict[str, Any]) -> None:
        command = parse(commands.CorrectEnrolment, data)
        month, classes, second, third, health = command.report()
        reason = command.reason
        self._refuse_future_month(month)
        self._with_reports(institution_id, lambda i, reports: reports.correct(
            month, classes, second, third, health, reason, i.facts, self.standards))

    @refusing_field_errors
    def request_hire(self, institution_id: str, data: dict[str, Any]) -> str:
        """Put a practitioner on the roster, pending the credit service's background check."""
        command = parse(commands.RequestHire, data)
        person = (command.practitioner.name, command.practitioner.id_number, None)
        role, certificates = command.role, list(command.certificates)
        # Refuse an unknown id, or a hire the institution does not allow, before sealing:
        # a refused hire stores no personal data (nor a key for it).
        institution = self._get(institution_id)
        self._roster(institution).check_can_hire(None, institution.status)
        ref = self._practitioner_ref(person[0], person[1])
        self._roster(institution).check_can_hire(ref, institution.status)
        hire_id = str(uuid.uuid4())
        try:
            practitioner = self._seal_person(*person, ref=ref)
        except PersonalDataErased:
            # Erased here, kept by the register (a ban in force): the hire is asked about by
            # ref alone, so credit's check answers it; nothing of theirs is stored again.
            practitioner = {"ref": ref}
        self._with_roster(institution.id, lambda i, roster: roster.request_hire(
            hire_id, practitioner, role, certificates, self.today(), i.status))
        return hire_id

    @refusing_field_errors
    def release_practitioner(self, institution_id: str, data: dict[str, Any]) -> None:
        command = parse(commands.ReleasePractitioner, data)
        hire_id, reason = command.hire_id, command.reason
        self._with_roster(institution_id,
                          lambda i, roster: roster.release(hire_id, self.today(), reason))

    @refusing_field_errors
    def suspend_for_rectification(self, institution_id: str, data: dict[str, Any]) -> None:
        """停业整顿."""
        command = parse(commands.SuspendForRectification, data)
        self._update(institution_id, lambda i: i.suspend(
            command.order_reference, command.reason, self.today()))

    @refusing_field_errors
    def resume(self, institution_id: str, data: dict[str, Any]) -> None:
        notes = parse(commands.Resume, data).notes or ""
        self._update(institution_id, lambda i: i.resume(self.today(), notes))

    @refusing_field_errors
    def deregister(self, institution_id: str, data: dict[str, Any]) -> None:
        """注销, with the reason and the placement of the children. The institution's roster
        closes with it (everyone employed released, every open removal case closed), saved
        in the same transaction."""
        command = parse(commands.Deregister, data)
        reason, placement = command.reason, command.placement_of_children
        today = self.today()

        def deregister(institution: Institution, roster: Roster) -> None:
            institution.deregister(reason, placement, today)
            roster.close(today)

        self._with_roster(institution_id, deregister)

    # ---- import ----------------------------------------------------------------------------
    def import_filings_csv(self, text: str, source: str = "provincial-csv",
                           chunk_size: int = 2000, processes: int | None = None) -> dict:
        """Import existing filings; bad rows are reported with their number, field and reason.

        Rows whose credit code is registered already (or repeated in the file) are rejected,
        never overwritten: an import takes over first registration cases only, and a code
        the register has had, deregistered (注销) or not, opens a new case by registration.
        A large file is split by credit code (so repeats meet in the same part) across
        ``processes`` worker processes; in each, chunks are saved in a second thread while
        the next one is validated.

        The text must be a string of at most :data:`IMPORT_MAX_CHARACTERS`; ``source`` (kept
        in each event) is checked like any text field. A control character or a lone
        surrogate in a cell rejects its row, naming the field.
        """
        v = Validator({"source": source})
        source = v.text("source", max_length=100)  # type: ignore[assignment]
        if not isinstance(text, str):
            v.add_error("body", f"must be CSV text, got {type(text).__name__}", "invalid_type")
        elif len(text) > IMPORT_MAX_CHARACTERS:
            v.add_error("body", f"must be at most {IMPORT_MAX_CHARACTERS} characters, got "
                        f"{len(text)}", "too_long")
        elif text.count("\n") > IMPORT_MAX_ROWS + 1:
            v.add_error("body", f"at most {IMPORT_MAX_ROWS} rows in one import, got "
                        f"{text.count(chr(10)) - 1} lines: send the file in parts",
                        "too_many_rows")
        v.check()
        processes = processes or import_processes(text.count("\n"))
        if processes <= 1:
            report = self._import_rows(list(read_rows(text)), source, chunk_size)
        else:
            # The workers start (interpreter, imports, database) while this process reads.
            with ProcessPoolExecutor(max_workers=processes - 1,
                                     mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_start_import_worker,
                                     initargs=(self.settings, current_context())) as pool:
                warm = [pool.submit(_ready) for _ in range(processes - 1)]
                parts = partition_rows(list(read_rows(text)), processes)
                for future in warm:
                    future.result()
                futures = [pool.submit(_import_part, part, source, chunk_size)
                           for part in parts[1:]]
                report = self._import_rows(parts[0], source, chunk_size)
                for future in futures:
                    report.merge(future.result())
        report.rejected.sort(key=lambda r: r["row"])
        return report.as_dict()

    def _import_rows(self, rows: list[tuple[int, dict[str, str]]], source: str,
                     chunk_size: int) -> ImportReport:
        report = ImportReport()
        seen: dict[str, int] = {}
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-save") as saver:
            saving = None
            for count, parsed, rejected in parsed_batches(rows, chunk_size):
                report.rows += count
                report.rejected.extend(rejected)
                prepared = self._prepare_import(parsed, source, report, seen)
                if saving is not None:
                    report.merge(saving.result())
                saving = saver.submit(self._save_import_chunk, prepared) if prepared else None
            if saving is not None:
                report.merge(saving.result())
        return report

    def _save_import_chunk(self, prepared: list[tuple[ParsedRow, Institution.Imported]]
                           ) -> ImportReport:
        """Record a chunk with one COPY. If a credit code was registered (or imported) by
        someone else since :meth:`_existing` looked, the COPY fails as a whole: the chunk's
        events are then recorded one by one and the colliding rows reported as duplicates."""
        try:
            self.bulk_save(*(event for _, event in prepared))
            return ImportReport(imported=len(prepared))
        except IntegrityError:
            pass
        report = ImportReport()
        for parsed, event in prepared:
            try:
                self.bulk_save(event)
                report.imported += 1
            except IntegrityError:
                code = parsed.facts["credit_code"]
                report.rejected.append({"row": parsed.row, "errors": [{
                    "field": "credit_code", "code": "duplicate",
                    "reason": f"{code} is in the register already"}]})
        return report

    def _prepare_import(self, chunk: list[ParsedRow], source: str, report: ImportReport,
                        seen: dict[str, int]) -> list[tuple[ParsedRow, Institution.Imported]]:
        ids = [institution_id_for(r.facts["credit_code"]) for r in chunk]
        existing = self._existing(ids)
        fresh = []
        for parsed, institution_id in zip(chunk, ids, strict=True):
            code = parsed.facts["credit_code"]
            if institution_id in existing or code in seen:
                where = f"row {seen[code]}" if code in seen else "the register"
                report.rejected.append({"row": parsed.row, "errors": [{
                    "field": "credit_code", "code": "duplicate",
                    "reason": f"{code} is in {where} already"}]})
                continue
            seen[code] = parsed.row
            fresh.append(parsed)
        refs = self.vault.enrol_many("person_in_charge", [p.person[1] for p in fresh])
        self.vault.ensure_keys(refs)
        sealed, sealable = {}, []
        for parsed, ref in zip(fresh, refs, strict=True):
            try:
                sealed[parsed.row] = self._seal_person(*parsed.person, ref=ref)
                sealable.append(parsed)
            except PersonalDataErased:  # never recreate an erased person's data
                report.rejected.append({"row": parsed.row, "errors": [{
                    "field": "person_in_charge_id_number", "code": "erased",
                    "reason": "this person's personal data was erased"}]})
        return list(zip(sealable, build_import_events(sealable, sealed, source), strict=True))

    def _existing(self, ids: list[UUID]) -> set[UUID]:
        with self.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
            rows = conn.execute(
                "SELECT originator_id FROM registration_events "
                "WHERE originator_id = ANY(%s::uuid[]) AND originator_version = 1",
                ([str(i) for i in ids],)).fetchall()
        return {row["originator_id"] for row in rows}

    # ---- reactions to the credit service ---------------------------------------------------
    def on_background_check_completed(self, payload: dict[str, Any]) -> list[Roster]:
        """The credit service answered a hire's background check: the hire is on the
        institution's roster, or refused. Only the roster is written: an officer's command
        on the institution meanwhile does not contend with it."""
        institution_id = payload.get("institution_id")
        hire_id = payload.get("hire_id")
        if not institution_id or not hire_id:
            return []  # a yearly re-check, not about a hire
        institution = self._get(institution_id)
        roster = self._roster(institution)
        changed = roster.complete_background_check(hire_id, payload["outcome"],
                                                   payload["reference"], institution.status)
        return [roster] if changed else []

    def on_practitioner_barred(self, payload: dict[str, Any],
                               employers: list[str] | None = None) -> list[Roster]:
        """Open a removal case, with a deadline, on the roster of every institution employing
        the person.

        The employers are read from the person's :class:`EmploymentRecord` (write-side state,
        saved in the same transaction as each hire and release), never from the query tables,
        which may lag or be stopped. ``employers``, if given, replaces that lookup (a caller
        naming the institutions itself); either way each institution's own roster has the last
        word (no case where the person is not employed on it).

        A hire in flight when the ban arrives: the reaction follows the credit service's log in
        order, and the credit service answers a hire's check and records a ban on the same
        aggregate (the person's), so they are ordered there too. A check that cleared the hire
        before the ban comes first: its ``PractitionerHired`` is committed, with the record,
        before this reaction reads the record, which then names the institution. A check
        answered after the ban finds the ban in force and refuses the hire. A hire still
        pending here is therefore not one to remove (its check will refuse it) and gets no
        case. (A ban recorded now but starting on a later day is not in force for such a
        check, which clears it: that case is not covered here.)
        """
        if employers is None:
            employers = self.current_employers(payload["practitioner_ref"])
        today = self.today()
        due = self.calendar.add_working_days(today, STAFF_REMOVAL_DUE_WORKING_DAYS)
        changed = []
        for institution_id in employers:
            institution = self._get(institution_id)
            roster = self._roster(institution)
            case_id = str(uuid.uuid5(institution.id, payload["ban_reference"]))
            if roster.open_staff_removal_case(case_id, payload["practitioner_ref"],
                                              payload["ban_reference"], today, due):
                changed.append(roster)
        return changed

    def on_credit_listing(self, institution_id: str, credit_list: str, listed: bool,
                          reference: str) -> list[Institution]:
        try:
            institution = self._get(institution_id)
        except InstitutionNotFound:
            return []
        return [institution] if institution.note_credit_listing(credit_list, listed,
                                                                 reference) else []

    # ---- query tables (projected from this service's own log) ------------------------------
    def _query(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            return to_json_value(fn(conn, *args, **kwargs))

    def public_disclosure(self, **filters: Any) -> list[dict[str, Any]]:
        """信息公示: filed institutions and their public facts, searchable by ``district``,
        ``street``, ``kind``, ``name`` (a part of it), ``affordable``; ``limit`` (1-1000,
        default 100) and ``offset``. Every filter is checked (RPC callers pass them as
        given)."""
        clean = parse(commands.PublicDisclosureQuery, filters).data()
        clean.update(limit=100 if clean["limit"] is None else clean["limit"],
                     offset=clean["offset"] or 0)
        return self._query(projections.public_disclosure, **clean)

    def filings_awaiting(self) -> list[dict[str, Any]]:
        """Filings awaiting a receipt or a verification, with due dates and overdue flags."""
        return self._query(projections.filings_awaiting, self.today())

    def open_staff_cases(self) -> list[dict[str, Any]]:
        return self._query(projections.open_staff_cases, self.today())

    def employers_of(self, practitioner_ref: str) -> list[str]:
        """Employers from the query tables (as fresh as the views projector): for queries.
        Decisions use :meth:`current_employers`."""
        return self._query(projections.employers_of, practitioner_ref)

    # ---- queries ---------------------------------------------------------------------------
    def institution_record(self, institution_id: str) -> dict[str, Any]:
        """An officer's view: the current state and every event with who, when and why
        (:func:`~tuoyu_shared.history.history_entries`): the institution's own, its roster's
        and its reports', in time order (each entry's ``version`` is of its own stream)."""
        institution = self._get(institution_id)
        store = self.repository.event_store
        events = heapq.merge(store.get(institution.id),
                             store.get(roster_id_for(institution.id)),
                             store.get(enrolment_reports_id_for(institution.id)),
                             key=lambda e: e.timestamp)  # each stream keeps its own order
        # Without the bookkeeping of the roster's and reports' streams (opened, carried over,
        # closed with the deregistration): the record shows what happened to the institution.
        history = history_entries(e for e in events
                                  if getattr(type(e), "in_institution_history", True))
        for entry in history:  # this record's data has always shown these two as well
            entry["data"] = {"originator_version": entry["version"],
                             "timestamp": entry["occurred_at"], **entry["data"]}
        return {"institution": self.institution(institution.id), "history": history}

    def institution(self, institution_id: UUID | str, version: int | None = None) -> dict:
        """The institution's facts (optionally as of a version); personal data masked.

        ``version`` is the institution's own (its lifecycle, filing, changes, designations).
        Its roster and reports are given as they stood while that version was the latest,
        i.e. until the institution's next event (now, for the latest version); those recorded
        in the institution's own stream before rosters and reports had streams of their own
        are read from it as of the version, as they always were."""
        if version is not None:
            v = Validator({"version": version})
            version = v.integer("version", min_value=1)
            v.check()
        uid = self._id(institution_id)
        try:
            inst = self.repository.get(uid, version=version)
        except AggregateNotFoundError:
            raise InstitutionNotFound(f"no institution {institution_id}") from None
        until = None
        if version is not None:
            later = list(self.repository.event_store.get(uid, gt=inst.version, limit=1))
            until = later[0].timestamp if later else None
        roster: Roster | None = self._as_of(roster_id_for(uid), until)
        reports: EnrolmentReports | None = self._as_of(enrolment_reports_id_for(uid), until)
        hires = roster.roster if roster is not None else inst.roster
        shown = self.vault.display([inst.person_in_charge["ref"], *(
            h["practitioner_ref"] for h in hires.values())])
        hires = {hire_id: {**{k: v for k, v in h.items() if k != "name"},
                           "name": shown[h["practitioner_ref"]]}
                 for hire_id, h in hires.items()}
        return {
            "institution_id": str(inst.id),
            "name": inst.name,
            "credit_code": inst.credit_code,
            "nature": inst.nature,
            "kind": inst.kind,
            "registering_authority": inst.registering_authority,
            "district": inst.district,
            "street": inst.street,
            "address": inst.address,
            "status": inst.status,
            "person_in_charge": shown[inst.person_in_charge["ref"]],
            "places": inst.places,
            "filing": to_json_value(inst.filing),
            "filing_findings": inst.filing_findings,
            "receipt_due_on": inst.receipt_due_on,
            "receipt": inst.receipt,
            "verification_due_on": inst.verification_due_on,
            "verification": inst.verification,
            "affordable": inst.affordable,
            "demonstration": inst.demonstration,
            "enrolment": reports.months if reports is not None else inst.enrolment,
            "roster": hires,
            "staff_cases": roster.staff_cases if roster is not None else inst.staff_cases,
            "credit_lists": inst.credit_lists,
            "suspension": inst.suspension,
            "deregistration": inst.deregistration,
            "version": inst.version,
            "registered_at": inst.created_on.isoformat(),
        }

    def _as_of(self, aggregate_id: UUID, until: datetime | None) -> Any:
        """The aggregate with the events recorded before ``until`` (all, if None); None if it
        had none then."""
        if until is None:
            try:
                return self.repository.get(aggregate_id)
            except AggregateNotFoundError:
                return None
        aggregate = None
        for e in self.repository.event_store.get(aggregate_id):
            if e.timestamp >= until:
                break
            aggregate = e.mutate(aggregate)
        return aggregate

    def registration_cases(self, credit_code: str) -> list[str]:
        """The institution ids of the code's registration cases, the first first (one per
        registration; each after the first followed a deregistration, 注销)."""
        return [str(case) for case in self._cases(credit_code.strip().upper())[1]]

    def institution_by_credit_code(self, credit_code: str) -> dict[str, Any]:
        """The institution of the code's latest registration case."""
        cases = self.registration_cases(credit_code)
        if not cases:
            raise InstitutionNotFound(f"no institution with credit code {credit_code}")
        return self.institution(cases[-1])


def import_processes(rows: int) -> int:
    """Worker processes for an import: one for small files, and one (inline) inside an
    eventlet process (the nameko adapter), where spawning a pool is not safe."""
    if rows < 10000 or "eventlet" in sys.modules and _eventlet_patched():
        return 1
    return min(2, os.cpu_count() or 1)


def _eventlet_patched() -> bool:
    from eventlet import patcher

    return patcher.is_monkey_patched("thread")


_worker_app: RegistrationApplication | None = None
_worker_context: Any = None


def _start_import_worker(settings: Settings, context: Any) -> None:
    """A worker process of a large import: its own application, ready before rows arrive."""
    global _worker_app, _worker_context
    _worker_app = RegistrationApplication(settings)
    _worker_context = context


def _ready() -> bool:
    return _worker_app is not None


def _import_part(rows: list, source: str, chunk_size: int) -> ImportReport:
    """One part of a large import (its rows share no credit code with other parts)."""
    with command_context(**_worker_context.as_dict()):
        return _worker_app._import_rows(rows, source, chunk_size)
