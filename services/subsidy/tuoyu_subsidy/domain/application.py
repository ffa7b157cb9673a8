"""A subsidy application (补助申请), from draft to paid, with recourse::

    draft ──submit──▶ ineligible (every refusal named)
                └───▶ under_review ──review──▶ rejected
                                        └───▶ in_notice (公示) ──objection upheld──▶ rejected
                                                  └──notice over──▶ payable ──batch──▶ in_batch
    in_batch ──paid──▶ paid ──clawback (追回)
             └─failed/returned──▶ payable (the next cycle)
    rejected / a clawback ──appeal (复核)──▶ upheld: under_review again / the clawback reversed

Amounts are integer fen. The application records the program version it is assessed under
and each line's amount or refusal; an approval reserves its amount in the budgets of its fund
sources, a payment commits it, a failure or rejection releases it, a clawback returns it.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any

from eventsourcing.domain import Aggregate, event

from .common import DomainRuleViolated


class ApplicationState(StrEnum):
    DRAFT = "draft"
    INELIGIBLE = "ineligible"
    UNDER_REVIEW = "under_review"
    REJECTED = "rejected"
    IN_NOTICE = "in_notice"
    PAYABLE = "payable"
    IN_BATCH = "in_batch"
    PAID = "paid"


class SubsidyApplication(Aggregate):
    class Drafted(Aggregate.Created):
        """An application drafted: the program version, the institution, what is claimed
        (months, a level, children by ref)."""

        institution_id: str
        institution_name: str
        district: str
        program: str
        kind: str
        program_version: int
        year: int
        request: dict
        terms: dict
        drafted_by: str
        drafted_on: date

    @event(Drafted)
    def __init__(self, institution_id: str, institution_name: str, district: str,
                 program: str, kind: str, program_version: int, year: int, request: dict,
                 terms: dict, drafted_by: str, drafted_on: date) -> None:
        self.institution_id = institution_id
        self.institution_name = institution_name
        self.district = district
        self.program = program
        self.kind = kind
        self.program_version = program_version
        self.year = year
        self.request = request
        self.terms = terms
        self.state = ApplicationState.DRAFT.value
        self.amount_fen = 0
        self.lines: list[dict[str, Any]] = []
        self.refusals: list[dict[str, str]] = []
        self.funds: dict[str, int] = {}
        self.notice_until: date | None = None
        self.objections: dict[str, dict[str, Any]] = {}
        self.batch_id: str | None = None
        self.payments: list[dict[str, Any]] = []
        self.paid_fen = 0
        self.clawbacks: dict[str, dict[str, Any]] = {}
        self.appeals: dict[str, dict[str, Any]] = {}
        self.rejection: dict[str, Any] | None = None
        self.flags: list[dict[str, str]] = []

    def _require(self, *states: ApplicationState, doing: str) -> None:
        if self.state not in {s.value for s in states}:
            raise DomainRuleViolated(f"a {self.state} application cannot {doing}", self.state)

    @property
    def clawed_fen(self) -> int:
        return sum(c["amount_fen"] for c in self.clawbacks.values() if not c.get("reversed"))

    # ---- submission and assessment ---------------------------------------------------------
    class Assessed(Aggregate.Event):
        """Submitted and assessed: each line's amount or refusal (rule and fact), the total,
        its split over the fund sources, and the refusals of the whole application."""

        eligible: bool
        amount_fen: int
        lines: list
        refusals: list
        funds: dict
        submitted_by: str
        submitted_on: date

    def submit(self, assessment: dict[str, Any], funds: dict[str, int], by: str,
               on: date) -> None:
        self._require(ApplicationState.DRAFT, doing="be submitted again")
        self._assessed(eligible=assessment["eligible"], amount_fen=assessment["amount_fen"],
                       lines=assessment["lines"], refusals=assessment["refusals"],
                       funds=funds if assessment["eligible"] else {}, submitted_by=by,
                       submitted_on=on)

    @event(Assessed)
    def _assessed(self, eligible: bool, amount_fen: int, lines: list, refusals: list,
                  funds: dict, submitted_by: str, submitted_on: date) -> None:
        self.state = (ApplicationState.UNDER_REVIEW if eligible
                      else ApplicationState.INELIGIBLE).value
        self.amount_fen = amount_fen
        self.lines = lines
        self.refusals = refusals
        self.funds = funds
        self.submitted_on = submitted_on

    def accepted_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["refusal"] is None]

    class DuplicateFlagged(Aggregate.Event):
        """A child this application claims for a month was claimed by another institution
        too (the later claim is refused; both institutions are told)."""

        child_ref: str
        month: str
        other_application_id: str
        other_institution_id: str

    def flag_duplicate(self, child_ref: str, month: str, other_application_id: str,
                       other_institution_id: str) -> None:
        self._flagged(child_ref=child_ref, month=month,
                      other_application_id=other_application_id,
                      other_institution_id=other_institution_id)

    @event(DuplicateFlagged)
    def _flagged(self, child_ref: str, month: str, other_application_id: str,
                 other_institution_id: str) -> None:
        self.flags = [*self.flags, {"child_ref": child_ref, "month": month,
                               "other_application_id": other_application_id,
                               "other_institution_id": other_institution_id}]

    # ---- review and notice -----------------------------------------------------------------
    class Reviewed(Aggregate.Event):
        """An officer's review: approved (the amount reserved; public notice opens) or
        rejected with reasons."""

        approved: bool
        reasons: list
        officer: str
        reviewed_on: date
        notice_until: date | None

    def review(self, approved: bool, reasons: list[str], officer: str, on: date,
               notice_until: date | None) -> None:
        self._require(ApplicationState.UNDER_REVIEW, doing="be reviewed")
        if not approved and not reasons:
            raise DomainRuleViolated("a rejection gives its reasons", self.state)
        self._reviewed(approved=approved, reasons=reasons, officer=officer, reviewed_on=on,
                       notice_until=notice_until if approved else None)

    @event(Reviewed)
    def _reviewed(self, approved: bool, reasons: list, officer: str, reviewed_on: date,
                  notice_until: date | None) -> None:
        if approved:
            self.state = ApplicationState.IN_NOTICE.value
            self.notice_until = notice_until
        else:
            self.state = ApplicationState.REJECTED.value
            self.rejection = {"by": "review", "reasons": reasons, "officer": officer,
                              "on": reviewed_on}

    class ObjectionRecorded(Aggregate.Event):
        """An objection received during the public notice (公示异议)."""

        objection_id: str
        text: str
        received_on: date

    def record_objection(self, text: str, on: date) -> str:
        self._require(ApplicationState.IN_NOTICE, doing="take an objection")
        if self.notice_until is not None and on > self.notice_until:
            raise DomainRuleViolated(f"the notice ended on {self.notice_until.isoformat()}",
                                     self.state)
        objection_id = f"O{len(self.objections) + 1}"
        self._objection(objection_id=objection_id, text=text, received_on=on)
        return objection_id

    @event(ObjectionRecorded)
    def _objection(self, objection_id: str, text: str, received_on: date) -> None:
        self.objections[objection_id] = {"objection_id": objection_id, "text": text,
                                         "received_on": received_on, "decision": None}

    class ObjectionDecided(Aggregate.Event):
        """An objection decided: upheld (the application is rejected, its reservation
        released) or dismissed."""

        objection_id: str
        upheld: bool
        reason: str
        officer: str
        decided_on: date

    def decide_objection(self, objection_id: str, upheld: bool, reason: str, officer: str,
                         on: date) -> None:
        self._require(ApplicationState.IN_NOTICE, doing="decide an objection")
        objection = self.objections.get(objection_id)
        if objection is None:
            raise DomainRuleViolated(f"no objection {objection_id}", self.state)
        if objection["decision"] is not None:
            raise DomainRuleViolated(f"objection {objection_id} was decided already",
                                     self.state)
        self._objection_decided(objection_id=objection_id, upheld=upheld, reason=reason,
                                officer=officer, decided_on=on)

    @event(ObjectionDecided)
    def _objection_decided(self, objection_id: str, upheld: bool, reason: str, officer: str,
                           decided_on: date) -> None:
        self.objections[objection_id]["decision"] = {"upheld": upheld, "reason": reason,
                                                     "officer": officer, "on": decided_on}
        if upheld:
            self.state = ApplicationState.REJECTED.value
            self.rejection = {"by": "objection", "reasons": [reason], "officer": officer,
                              "on": decided_on}

    class NoticeClosed(Aggregate.Event):
        """The public notice is over with no objection open: the amount is payable."""

        closed_on: date

    def close_notice(self, on: date) -> bool:
        if self.state != ApplicationState.IN_NOTICE.value:
            return False
        if self.notice_until is not None and on <= self.notice_until:
            return False
        if any(o["decision"] is None for o in self.objections.values()):
            return False
        self._notice_closed(closed_on=on)
        return True

    @event(NoticeClosed)
    def _notice_closed(self, closed_on: date) -> None:
        self.state = ApplicationState.PAYABLE.value

    # ---- payment ---------------------------------------------------------------------------
    class AddedToBatch(Aggregate.Event):
        """Gathered into a payment batch for the amount approved."""

        batch_id: str
        amount_fen: int

    def add_to_batch(self, batch_id: str) -> int:
        self._require(ApplicationState.PAYABLE, doing="be put in a payment batch")
        due = self.amount_fen
        self._added(batch_id=batch_id, amount_fen=due)
        return due

    @event(AddedToBatch)
    def _added(self, batch_id: str, amount_fen: int) -> None:
        self.state = ApplicationState.IN_BATCH.value
        self.batch_id = batch_id

    class PaymentRecorded(Aggregate.Event):
        """The finance system's result for this application's line of a batch: paid, or
        failed / returned (payable again, in the next cycle)."""

        batch_id: str
        status: str
        amount_fen: int
        reason: str
        reference: str
        recorded_on: date

    def record_payment(self, batch_id: str, status: str, reason: str, reference: str,
                       on: date) -> bool:
        """False when this batch's result was recorded already (an import sent twice)."""
        if any(p["batch_id"] == batch_id for p in self.payments):
            return False
        if self.state != ApplicationState.IN_BATCH.value or self.batch_id != batch_id:
            raise DomainRuleViolated(f"the application is not in batch {batch_id}",
                                     self.state)
        self._payment(batch_id=batch_id, status=status, amount_fen=self.amount_fen,
                      reason=reason, reference=reference, recorded_on=on)
        return True

    @event(PaymentRecorded)
    def _payment(self, batch_id: str, status: str, amount_fen: int, reason: str,
                 reference: str, recorded_on: date) -> None:
        self.payments.append({"batch_id": batch_id, "status": status,
                              "amount_fen": amount_fen, "reason": reason,
                              "reference": reference, "on": recorded_on})
        self.batch_id = None
        if status == "paid":
            self.state = ApplicationState.PAID.value
            self.paid_fen = amount_fen
        else:
            self.state = ApplicationState.PAYABLE.value

    # ---- clawback and appeals --------------------------------------------------------------
    class ClawedBack(Aggregate.Event):
        """追回: an amount paid taken back, with its reason (``fraud`` is published for
        credit)."""

        application_id: str
        institution_id: str
        clawback_id: str
        amount_fen: int
        reason: str
        details: str
        officer: str
        clawed_on: date

    def claw_back(self, amount_fen: int, reason: str, details: str, officer: str,
                  on: date) -> str:
        self._require(ApplicationState.PAID, doing="be clawed back (nothing was paid)")
        left = self.paid_fen - self.clawed_fen
        if amount_fen > left:
            raise DomainRuleViolated(f"only {left} fen paid and not clawed back yet",
                                     self.state, details={"clawable_fen": left})
        clawback_id = f"C{len(self.clawbacks) + 1}"
        self._clawed(application_id=str(self.id), institution_id=self.institution_id,
                     clawback_id=clawback_id, amount_fen=amount_fen, reason=reason,
                     details=details, officer=officer, clawed_on=on)
        return clawback_id

    @event(ClawedBack)
    def _clawed(self, application_id: str, institution_id: str, clawback_id: str,
                amount_fen: int, reason: str, details: str, officer: str,
                clawed_on: date) -> None:
        self.clawbacks[clawback_id] = {"clawback_id": clawback_id, "amount_fen": amount_fen,
                                       "reason": reason, "details": details,
                                       "officer": officer, "on": clawed_on}

    class AppealFiled(Aggregate.Event):
        """复核: an appeal against the rejection or a clawback, to be decided by a date."""

        appeal_id: str
        against: str
        clawback_id: str | None
        grounds: str
        filed_on: date
        decide_by: date

    def file_appeal(self, against: str, clawback_id: str | None, grounds: str, on: date,
                    window_ends: date, decide_by: date) -> str:
        if on > window_ends:
            raise DomainRuleViolated(f"the time to appeal ended on {window_ends.isoformat()}",
                                     self.state)
        if against == "rejection":
            self._require(ApplicationState.REJECTED, ApplicationState.INELIGIBLE,
                          doing="be appealed against a rejection")
        else:
            clawback = self.clawbacks.get(clawback_id or "")
            if clawback is None:
                raise DomainRuleViolated(f"no clawback {clawback_id}", self.state)
            if clawback.get("reversed"):
                raise DomainRuleViolated("the clawback was reversed already", self.state)
        if any(a["decision"] is None for a in self.appeals.values()):
            raise DomainRuleViolated("an appeal is pending already", self.state)
        appeal_id = f"A{len(self.appeals) + 1}"
        self._appeal(appeal_id=appeal_id, against=against, clawback_id=clawback_id,
                     grounds=grounds, filed_on=on, decide_by=decide_by)
        return appeal_id

    @event(AppealFiled)
    def _appeal(self, appeal_id: str, against: str, clawback_id: str | None, grounds: str,
                filed_on: date, decide_by: date) -> None:
        self.appeals[appeal_id] = {"appeal_id": appeal_id, "against": against,
                                   "clawback_id": clawback_id, "grounds": grounds,
                                   "filed_on": filed_on, "decide_by": decide_by,
                                   "decision": None}

    class AppealDecided(Aggregate.Event):
        """The appeal decided: upheld (a rejection: reviewed again; a clawback: reversed)
        or dismissed."""

        appeal_id: str
        upheld: bool
        reason: str
        officer: str
        decided_on: date

    def decide_appeal(self, appeal_id: str, upheld: bool, reason: str, officer: str,
                      on: date) -> dict[str, Any]:
        appeal = self.appeals.get(appeal_id)
        if appeal is None:
            raise DomainRuleViolated(f"no appeal {appeal_id}", self.state)
        if appeal["decision"] is not None:
            raise DomainRuleViolated(f"appeal {appeal_id} was decided already", self.state)
        self._appeal_decided(appeal_id=appeal_id, upheld=upheld, reason=reason,
                             officer=officer, decided_on=on)
        return appeal

    @event(AppealDecided)
    def _appeal_decided(self, appeal_id: str, upheld: bool, reason: str, officer: str,
                        decided_on: date) -> None:
        appeal = self.appeals[appeal_id]
        appeal["decision"] = {"upheld": upheld, "reason": reason, "officer": officer,
                              "on": decided_on}
        if not upheld:
            return
        if appeal["against"] == "rejection":
            self.state = ApplicationState.UNDER_REVIEW.value
            self.rejection = None
        else:
            self.clawbacks[appeal["clawback_id"]]["reversed"] = True

    def as_dict(self) -> dict[str, Any]:
        return {"application_id": str(self.id), "institution_id": self.institution_id,
                "institution_name": self.institution_name, "district": self.district,
                "program": self.program, "kind": self.kind,
                "program_version": self.program_version, "year": self.year,
                "request": self.request, "state": self.state, "amount_fen": self.amount_fen,
                "funds": self.funds, "lines": self.lines, "refusals": self.refusals,
                "flags": self.flags, "notice_until": self.notice_until,
                "objections": list(self.objections.values()), "batch_id": self.batch_id,
                "payments": self.payments, "paid_fen": self.paid_fen,
                "clawed_fen": self.clawed_fen, "clawbacks": list(self.clawbacks.values()),
                "appeals": list(self.appeals.values()), "rejection": self.rejection,
                "version": self.version}
