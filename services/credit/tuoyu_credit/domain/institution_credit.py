"""An institution's credit (机构信用): score, grade A–D, and its places on the two lists.

The score moves only by upstream facts (an inspection finding, an overdue rectification, a
subsidy clawed back for fraud, a refused inspection, a demonstration status, a clean period),
each applied once and recorded with the id of the upstream event that caused it. The grade
follows the score through the bands of :class:`ScoringRules`; inspection frequency follows the
grade, so a grade change is its own event.

The two lists are the trust-reward list (守信激励名单, 守信联合激励) and the serious-dishonesty
list (严重失信主体名单, 失信联合惩戒). An entry follows a procedure in which every step is an
event, with the officer, the legal basis and the evidence where a person decides::

    proposed ──notice──▶ noticed ──response──▶ responded
                            │                      │
                            └───────decide─────────┴──▶ listed | dropped
    listed ──timer──▶ expired
    listed ──repair applied──▶ repair_applied ──review──▶ removed (approved) | listed (rejected)
    listed (trust_reward) ──serious_dishonesty listed──▶ ended_by_dishonesty

The two lists exclude each other: no trust-reward entry is proposed or decided "listed" while a
serious-dishonesty entry is open (proposed, noticed, responded) or in force, and deciding a
serious-dishonesty entry "listed" ends the trust-reward entry in force the same day
(``ListingEndedByDishonesty``; or ``ListingExpired`` if its term was already over).

Prior notice (告知) opens a window for the institution to state its case (陈述申辩): no
decision before the window has passed unless the institution has already responded, and no
response after it. Credit repair (信用修复) ends a dishonesty entry before its term.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from enum import StrEnum
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate, event

from tuoyu_shared.validation import FieldError

from .common import (
    DomainRuleViolated,
    add_days,
    require_choice,
    require_date,
    require_json_friendly,
    require_not_before,
    require_positive_int,
    require_references,
    require_text,
)
from .rules import CauseType, ListingRules, ScoringRules

_INSTITUTION_CREDIT_NAMESPACE = uuid.UUID("45c515fa-b7ca-4485-98ce-6823d7176652")


def institution_credit_id_for(institution_id: uuid.UUID | str) -> uuid.UUID:
    """One credit record per institution: its id is derived from the institution's id (as
    registration publishes it), so a second opening collides in the event store."""
    return uuid.uuid5(_INSTITUTION_CREDIT_NAMESPACE, _canonical_institution_id(institution_id))


def _canonical_institution_id(institution_id: object) -> str:
    try:
        return str(uuid.UUID(str(institution_id)))
    except ValueError:
        raise FieldError("institution_id", f"must be a UUID, got {institution_id!r}",
                         "invalid_format") from None


class ListName(StrEnum):
    TRUST_REWARD = "trust_reward"  # 守信激励名单
    SERIOUS_DISHONESTY = "serious_dishonesty"  # 严重失信主体名单


class ListingState(StrEnum):
    PROPOSED = "proposed"
    NOTICED = "noticed"  # prior notice sent (告知), response window open
    RESPONDED = "responded"  # the institution stated its case (陈述申辩)
    LISTED = "listed"  # in force for its term
    REPAIR_APPLIED = "repair_applied"  # in force, credit repair (信用修复) under review
    DROPPED = "dropped"  # decided against listing
    EXPIRED = "expired"  # term ended
    REMOVED = "removed"  # removed early after credit repair
    ENDED_BY_DISHONESTY = "ended_by_dishonesty"  # trust reward ended: listed as dishonest


class Decision(StrEnum):
    LISTED = "listed"
    DROPPED = "dropped"


# Catalogue refinements of event fields (see tuoyu_shared.catalogue_gen).
_LIST_NAME: dict[str, Any] = {"enum": [n.value for n in ListName]}
_GRADE: dict[str, Any] = {"enum": ["A", "B", "C", "D"]}

# States are stored as their string values (aggregate state stays plain data).
OPEN_STATES = frozenset(s.value for s in (
    ListingState.PROPOSED, ListingState.NOTICED, ListingState.RESPONDED, ListingState.LISTED,
    ListingState.REPAIR_APPLIED))
IN_FORCE_STATES = frozenset({ListingState.LISTED.value, ListingState.REPAIR_APPLIED.value})
IN_PROCEDURE_STATES = frozenset(s.value for s in (
    ListingState.PROPOSED, ListingState.NOTICED, ListingState.RESPONDED))


class InstitutionCredit(Aggregate):
    """The credit record of one childcare institution."""

    #: How many applied cause refs are remembered to ignore a cause applied twice. Upstream
    #: events arrive effectively once already (tracked consumers); this is the second guard,
    #: bounded so the aggregate does not grow with its history.
    causes_remembered: ClassVar[int] = 1000

    class Opened(Aggregate.Created):
        """The institution's credit record opened with the initial score."""

        institution_id: str
        score: int
        grade: str

        payload_schema: ClassVar[dict[str, Any]] = {"grade": _GRADE}

    class ScoreChanged(Aggregate.Event):
        """The score moved by ``delta`` (after clamping) because of the upstream event
        ``cause_ref``."""

        institution_id: str
        delta: int
        new_score: int
        cause_type: str
        cause_ref: str
        reason: str
        details: dict[str, Any]

        payload_schema: ClassVar[dict[str, Any]] = {
            "cause_type": {"enum": [c.value for c in CauseType]}}

    class GradeChanged(Aggregate.Event):
        """The grade changed; inspection frequency follows it."""

        institution_id: str
        old_grade: str
        new_grade: str
        cause_ref: str

        payload_schema: ClassVar[dict[str, Any]] = {"old_grade": _GRADE, "new_grade": _GRADE}

    class ListingProposed(Aggregate.Event):
        """An officer proposes to put the institution on a list, citing the legal basis."""

        institution_id: str
        listing_id: str
        list_name: str
        legal_basis: str
        evidence: list[str]
        officer: str
        proposed_term_days: int
        proposed_on: dt.date

        payload_schema: ClassVar[dict[str, Any]] = {"list_name": _LIST_NAME}

    class ListingNoticeSent(Aggregate.Event):
        """Prior notice (告知) sent: the institution may respond until ``respond_by``."""

        institution_id: str
        listing_id: str
        list_name: str
        officer: str
        notified_on: dt.date
        respond_by: dt.date

        payload_schema: ClassVar[dict[str, Any]] = {"list_name": _LIST_NAME}

    class ListingResponseReceived(Aggregate.Event):
        """The institution's statement and defence (陈述申辩)."""

        institution_id: str
        listing_id: str
        list_name: str
        statement: str
        received_on: dt.date

        payload_schema: ClassVar[dict[str, Any]] = {"list_name": _LIST_NAME}

    class ListingDecided(Aggregate.Event):
        """The decision: listed for ``[term_start, term_end)``, or dropped (no term)."""

        institution_id: str
        listing_id: str
        list_name: str
        decision: str
        decided_on: dt.date
        officer: str
        reason: str
        legal_basis: str
        evidence: list[str]
        term_start: dt.date | None
        term_end: dt.date | None

        payload_schema: ClassVar[dict[str, Any]] = {
            "list_name": _LIST_NAME, "decision": {"enum": [d.value for d in Decision]}}

    class ListingExpired(Aggregate.Event):
        """The term ended (``on`` is the term's end); recorded by the daily timer."""

        institution_id: str
        listing_id: str
        list_name: str
        on: dt.date

        payload_schema: ClassVar[dict[str, Any]] = {"list_name": _LIST_NAME}

    class RepairApplied(Aggregate.Event):
        """The institution applied for credit repair (信用修复)."""

        institution_id: str
        listing_id: str
        list_name: str
        application: str
        evidence: list[str]
        applied_on: dt.date

        payload_schema: ClassVar[dict[str, Any]] = {"list_name": _LIST_NAME}

    class RepairReviewed(Aggregate.Event):
        """An officer approved or rejected the credit repair application."""

        institution_id: str
        listing_id: str
        list_name: str
        approved: bool
        officer: str
        reason: str
        legal_basis: str
        evidence: list[str]
        reviewed_on: dt.date

        payload_schema: ClassVar[dict[str, Any]] = {"list_name": _LIST_NAME}

    class ListingRemovedEarly(Aggregate.Event):
        """The entry was removed before its term after an approved credit repair."""

        institution_id: str
        listing_id: str
        list_name: str
        on: dt.date

        payload_schema: ClassVar[dict[str, Any]] = {"list_name": _LIST_NAME}

    class ListingEndedByDishonesty(Aggregate.Event):
        """A trust-reward entry ended before its term (``on``) because the institution was
        listed as seriously dishonest (``dishonesty_listing_id``): the two lists exclude each
        other."""

        institution_id: str
        listing_id: str
        list_name: str
        on: dt.date
        dishonesty_listing_id: str

        payload_schema: ClassVar[dict[str, Any]] = {"list_name": _LIST_NAME}

    # -- creation ---------------------------------------------------------------------------

    @staticmethod
    def create_id(institution_id: str, **_: Any) -> uuid.UUID:
        return institution_credit_id_for(institution_id)

    @event(Opened)
    def __init__(self, institution_id: str, score: int, grade: str):
        self.institution_id = institution_id
        self.score = score
        self.grade = grade
        self.applied_causes: dict[str, None] = {}  # insertion-ordered, bounded
        self.listings: dict[str, dict[str, Any]] = {}  # by listing id
        self.latest_listing: dict[str, str] = {}  # list name → its latest listing id

    @classmethod
    def open(cls, institution_id: uuid.UUID | str, rules: ScoringRules) -> InstitutionCredit:
        score = rules.initial_score
        return cls(institution_id=_canonical_institution_id(institution_id), score=score,
                   grade=rules.grade_for(score))

    # -- scoring ----------------------------------------------------------------------------

    def apply_scoring_cause(self, cause_type: CauseType | str, cause_ref: str,
                            rules: ScoringRules, **details: Any) -> bool:
        """Move the score for one upstream fact; ``cause_ref`` is the upstream event id.

        Returns False, recording nothing, when this cause was already applied. Otherwise
        records ``ScoreChanged`` (even when clamping leaves the score where it was, so the
        cause stays on the record) and ``GradeChanged`` when the grade changes.
        """
        cause = require_choice(cause_type, "cause_type", CauseType)
        cause_ref = require_text(cause_ref, "cause_ref", 200)
        details = require_json_friendly(details, "details")
        if cause_ref in self.applied_causes:
            return False
        points, reason = rules.points_for(cause, details)
        new_score = rules.clamp(self.score + points)
        reason = f"{reason}: {points:+d}"
        if new_score != self.score + points:
            reason += f" (score kept within 0..{rules.max_score})"
        self._change_score(institution_id=self.institution_id, delta=new_score - self.score,
                           new_score=new_score, cause_type=cause.value, cause_ref=cause_ref,
                           reason=reason, details=details)
        new_grade = rules.grade_for(new_score)
        if new_grade != self.grade:
            self._change_grade(institution_id=self.institution_id, old_grade=self.grade,
                               new_grade=new_grade, cause_ref=cause_ref)
        return True

    @event(ScoreChanged)
    def _change_score(self, institution_id: str, delta: int, new_score: int, cause_type: str,
                      cause_ref: str, reason: str, details: dict[str, Any]) -> None:
        self.score = new_score
        self.applied_causes[cause_ref] = None
        while len(self.applied_causes) > self.causes_remembered:
            del self.applied_causes[next(iter(self.applied_causes))]

    @event(GradeChanged)
    def _change_grade(self, institution_id: str, old_grade: str, new_grade: str,
                      cause_ref: str) -> None:
        self.grade = new_grade

    # -- queries ----------------------------------------------------------------------------

    def listing(self, list_name: ListName | str) -> dict[str, Any] | None:
        """A copy of the latest entry of that list (open or closed), or None."""
        name = require_choice(list_name, "list_name", ListName)
        listing_id = self.latest_listing.get(name.value)
        return copy.deepcopy(self.listings[listing_id]) if listing_id else None

    def current_lists(self, today: dt.date) -> list[str]:
        """The lists the institution is on, in force on ``today`` (whatever the timer did)."""
        today = require_date(today, "today")
        return sorted(
            listing["list_name"] for listing in self._latest_listings()
            if listing["state"] in IN_FORCE_STATES
            and listing["term_start"] <= today < listing["term_end"])

    def _latest_listings(self) -> list[dict[str, Any]]:
        return [self.listings[i] for i in self.latest_listing.values()]

    def _latest(self, name: ListName) -> dict[str, Any] | None:
        listing_id = self.latest_listing.get(name.value)
        return self.listings[listing_id] if listing_id else None

    @staticmethod
    def _in_force_on(listing: dict[str, Any], day: dt.date) -> bool:
        """In force by its state and within its term (a term over counts as ended, whether or
        not the timer has run yet)."""
        return listing["state"] in IN_FORCE_STATES and day < listing["term_end"]

    def _refuse_trust_reward_beside_dishonesty(self, action: str, on: dt.date) -> None:
        """The two lists exclude each other: no trust reward while a serious-dishonesty entry
        is in procedure or in force on ``on``."""
        dishonesty = self._latest(ListName.SERIOUS_DISHONESTY)
        if dishonesty is None:
            return
        state = dishonesty["state"]
        if state in IN_PROCEDURE_STATES or self._in_force_on(dishonesty, on):
            raise DomainRuleViolated(
                f"cannot {action}: the serious_dishonesty listing "
                f"{dishonesty['listing_id']} is {state}", state=state)

    def _listing_in(self, list_name: ListName | str, action: str,
                    *allowed: ListingState) -> dict[str, Any]:
        """The current entry of the list, if its state allows ``action``."""
        name = require_choice(list_name, "list_name", ListName)
        listing_id = self.latest_listing.get(name.value)
        state = self.listings[listing_id]["state"] if listing_id else "none"
        if state not in allowed:
            wanted = " or ".join(s.value for s in allowed)
            raise DomainRuleViolated(
                f"cannot {action}: the {name.value} listing is {state} (needs {wanted})",
                state=state)
        return self.listings[listing_id]  # type: ignore[index]

    # -- listing procedure ------------------------------------------------------------------

    def propose_listing(self, list_name: ListName | str, legal_basis: str,
                        evidence: list[str], officer: str, proposed_term_days: int,
                        proposed_on: dt.date) -> str:
        """Propose an entry on a list (the first step); returns the new listing id."""
        name = require_choice(list_name, "list_name", ListName)
        legal_basis = require_text(legal_basis, "legal_basis")
        evidence = require_references(evidence, "evidence")
        officer = require_text(officer, "officer", 200)
        proposed_term_days = require_positive_int(proposed_term_days, "proposed_term_days")
        proposed_on = require_date(proposed_on, "proposed_on")
        current = self.latest_listing.get(name.value)
        if current is not None and self.listings[current]["state"] in OPEN_STATES:
            state = self.listings[current]["state"]
            raise DomainRuleViolated(
                f"cannot propose a {name.value} listing: one is already {state}", state=state)
        if name is ListName.TRUST_REWARD:
            self._refuse_trust_reward_beside_dishonesty("propose a trust_reward listing",
                                                        proposed_on)
        earlier = sum(1 for v in self.listings.values() if v["list_name"] == name.value)
        listing_id = f"{name.value}-{earlier + 1}"
        self._propose(institution_id=self.institution_id, listing_id=listing_id,
                      list_name=name.value, legal_basis=legal_basis, evidence=evidence,
                      officer=officer, proposed_term_days=proposed_term_days,
                      proposed_on=proposed_on)
        return listing_id

    @event(ListingProposed)
    def _propose(self, institution_id: str, listing_id: str, list_name: str, legal_basis: str,
                 evidence: list[str], officer: str, proposed_term_days: int,
                 proposed_on: dt.date) -> None:
        self.listings[listing_id] = {
            "listing_id": listing_id, "list_name": list_name,
            "state": ListingState.PROPOSED.value, "legal_basis": legal_basis,
            "evidence": list(evidence), "proposed_by": officer,
            "proposed_term_days": proposed_term_days, "proposed_on": proposed_on,
            "notified_on": None, "respond_by": None, "response": None,
            "decision": None, "decided_on": None, "decided_by": None,
            "term_start": None, "term_end": None, "repair": None, "ended_on": None,
        }
        self.latest_listing[list_name] = listing_id

    def send_listing_notice(self, list_name: ListName | str, notified_on: dt.date,
                            officer: str, rules: ListingRules) -> dt.date:
        """Record the prior notice (告知); returns the last day to respond."""
        listing = self._listing_in(list_name, "send the prior notice", ListingState.PROPOSED)
        notified_on = require_date(notified_on, "notified_on")
        require_not_before(notified_on, listing["proposed_on"], "notified_on", "the proposal")
        officer = require_text(officer, "officer", 200)
        respond_by = add_days(notified_on, rules.response_window_days)
        self._send_notice(institution_id=self.institution_id, listing_id=listing["listing_id"],
                          list_name=listing["list_name"], officer=officer,
                          notified_on=notified_on, respond_by=respond_by)
        return respond_by

    @event(ListingNoticeSent)
    def _send_notice(self, institution_id: str, listing_id: str, list_name: str, officer: str,
                     notified_on: dt.date, respond_by: dt.date) -> None:
        listing = self.listings[listing_id]
        listing.update(state=ListingState.NOTICED.value, notified_on=notified_on,
                       respond_by=respond_by)

    def receive_listing_response(self, list_name: ListName | str, statement: str,
                                 received_on: dt.date) -> None:
        """Record the institution's statement (陈述申辩), if it came within the window."""
        listing = self._listing_in(list_name, "receive a response", ListingState.NOTICED)
        statement = require_text(statement, "statement", 20000)
        received_on = require_date(received_on, "received_on")
        require_not_before(received_on, listing["notified_on"], "received_on", "the notice")
        if received_on > listing["respond_by"]:
            raise DomainRuleViolated(
                f"cannot receive a response on {received_on.isoformat()}: the window to "
                f"respond closed on {listing['respond_by'].isoformat()}", state=listing["state"])
        self._receive_response(institution_id=self.institution_id, listing_id=listing["listing_id"],
                               list_name=listing["list_name"], statement=statement,
                               received_on=received_on)

    @event(ListingResponseReceived)
    def _receive_response(self, institution_id: str, listing_id: str, list_name: str,
                          statement: str, received_on: dt.date) -> None:
        self.listings[listing_id].update(
            state=ListingState.RESPONDED.value,
            response={"statement": statement, "received_on": received_on})

    def decide_listing(self, list_name: ListName | str, decision: Decision | str,
                       decided_on: dt.date, officer: str, reason: str, legal_basis: str,
                       evidence: list[str], term_days: int | None = None) -> None:
        """Decide to list (for ``term_days``, by default the proposed term) or to drop.

        Refused before the response window has passed (the day after ``respond_by``) unless
        the institution has responded. A serious-dishonesty entry is never decided without a
        legal basis; for the others a blank basis takes the proposal's.
        """
        listing = self._listing_in(list_name, "decide", ListingState.NOTICED,
                                   ListingState.RESPONDED)
        choice = require_choice(decision, "decision", Decision)
        decided_on = require_date(decided_on, "decided_on")
        require_not_before(decided_on, listing["notified_on"], "decided_on", "the notice")
        officer = require_text(officer, "officer", 200)
        reason = require_text(reason, "reason")
        evidence = require_references(evidence, "evidence")
        basis = legal_basis.strip() if isinstance(legal_basis, str) else legal_basis
        if (choice is Decision.LISTED and listing["list_name"] == ListName.SERIOUS_DISHONESTY
                and not basis):
            raise DomainRuleViolated(
                "cannot list an institution as seriously dishonest without a legal basis",
                state=listing["state"])
        legal_basis = require_text(basis or listing["legal_basis"], "legal_basis")
        if listing["state"] == ListingState.NOTICED and decided_on <= listing["respond_by"]:
            raise DomainRuleViolated(
                f"cannot decide on {decided_on.isoformat()}: the institution may respond until "
                f"{listing['respond_by'].isoformat()} and has not yet responded",
                state=listing["state"])
        if choice is Decision.LISTED and listing["list_name"] == ListName.TRUST_REWARD:
            self._refuse_trust_reward_beside_dishonesty(
                "decide to list on the trust_reward list", decided_on)
        term_start = term_end = None
        if choice is Decision.LISTED:
            days = listing["proposed_term_days"] if term_days is None else term_days
            days = require_positive_int(days, "term_days")
            term_start, term_end = decided_on, add_days(decided_on, days)
        self._decide(institution_id=self.institution_id, listing_id=listing["listing_id"],
                     list_name=listing["list_name"], decision=choice.value,
                     decided_on=decided_on, officer=officer, reason=reason,
                     legal_basis=legal_basis, evidence=evidence,
                     term_start=term_start, term_end=term_end)
        if choice is Decision.LISTED and listing["list_name"] == ListName.SERIOUS_DISHONESTY:
            self._end_trust_reward(listing["listing_id"], decided_on)

    def _end_trust_reward(self, dishonesty_listing_id: str, on: dt.date) -> None:
        """Listed as seriously dishonest: the trust-reward entry in force ends today (or, if
        its term was already over and the timer has not run yet, expires on its term's end)."""
        trust = self._latest(ListName.TRUST_REWARD)
        if trust is None or trust["state"] not in IN_FORCE_STATES:
            return
        if not self._in_force_on(trust, on):
            self._expire(institution_id=self.institution_id, listing_id=trust["listing_id"],
                         list_name=trust["list_name"], on=trust["term_end"])
            return
        self._end_by_dishonesty(institution_id=self.institution_id,
                                listing_id=trust["listing_id"], list_name=trust["list_name"],
                                on=on, dishonesty_listing_id=dishonesty_listing_id)

    @event(ListingEndedByDishonesty)
    def _end_by_dishonesty(self, institution_id: str, listing_id: str, list_name: str,
                           on: dt.date, dishonesty_listing_id: str) -> None:
        self.listings[listing_id].update(state=ListingState.ENDED_BY_DISHONESTY.value,
                                         ended_on=on)

    @event(ListingDecided)
    def _decide(self, institution_id: str, listing_id: str, list_name: str, decision: str,
                decided_on: dt.date, officer: str, reason: str, legal_basis: str,
                evidence: list[str], term_start: dt.date | None, term_end: dt.date | None) -> None:
        listed = decision == Decision.LISTED
        self.listings[listing_id].update(
            state=(ListingState.LISTED if listed else ListingState.DROPPED).value,
            decision=decision, decided_on=decided_on, decided_by=officer,
            term_start=term_start, term_end=term_end,
            ended_on=None if listed else decided_on)

    def expire_listings(self, today: dt.date) -> list[str]:
        """The timer's command: end every entry whose term is over. Returns the listing ids
        expired now; calling it again the same day records nothing."""
        today = require_date(today, "today")
        due = [listing for listing in self._latest_listings()
               if listing["state"] in IN_FORCE_STATES and listing["term_end"] <= today]
        for listing in due:
            self._expire(institution_id=self.institution_id, listing_id=listing["listing_id"],
                         list_name=listing["list_name"], on=listing["term_end"])
        return [listing["listing_id"] for listing in due]

    @event(ListingExpired)
    def _expire(self, institution_id: str, listing_id: str, list_name: str, on: dt.date) -> None:
        self.listings[listing_id].update(state=ListingState.EXPIRED.value, ended_on=on)

    # -- credit repair (信用修复) -------------------------------------------------------------

    def apply_for_repair(self, list_name: ListName | str, application: str,
                         evidence: list[str], applied_on: dt.date) -> None:
        """The institution applies for credit repair of a dishonesty entry in force."""
        listing = self._listing_in(list_name, "apply for credit repair", ListingState.LISTED)
        if listing["list_name"] != ListName.SERIOUS_DISHONESTY:
            raise DomainRuleViolated("credit repair applies to the serious_dishonesty list only",
                                     state=listing["state"])
        application = require_text(application, "application", 20000)
        evidence = require_references(evidence, "evidence")
        applied_on = require_date(applied_on, "applied_on")
        require_not_before(applied_on, listing["term_start"], "applied_on", "the listing")
        self._check_term_not_over(listing, applied_on, "apply for credit repair")
        self._apply_for_repair(institution_id=self.institution_id, listing_id=listing["listing_id"],
                               list_name=listing["list_name"], application=application,
                               evidence=evidence, applied_on=applied_on)

    @event(RepairApplied)
    def _apply_for_repair(self, institution_id: str, listing_id: str, list_name: str,
                          application: str, evidence: list[str], applied_on: dt.date) -> None:
        self.listings[listing_id].update(
            state=ListingState.REPAIR_APPLIED.value,
            repair={"application": application, "evidence": list(evidence),
                    "applied_on": applied_on})

    def review_repair(self, list_name: ListName | str, approved: bool, officer: str,
                      reason: str, legal_basis: str, evidence: list[str],
                      reviewed_on: dt.date) -> None:
        """An officer's review of the repair application. Approved: the entry is removed
        early the same day. Rejected: it stays in force until its term ends."""
        listing = self._listing_in(list_name, "review a credit repair",
                                   ListingState.REPAIR_APPLIED)
        if not isinstance(approved, bool):
            raise FieldError("approved", f"must be true or false, got {approved!r}",
                             "invalid_type")
        officer = require_text(officer, "officer", 200)
        reason = require_text(reason, "reason")
        legal_basis = require_text(legal_basis, "legal_basis")
        evidence = require_references(evidence, "evidence")
        reviewed_on = require_date(reviewed_on, "reviewed_on")
        require_not_before(reviewed_on, listing["repair"]["applied_on"], "reviewed_on",
                           "the application")
        self._check_term_not_over(listing, reviewed_on, "review a credit repair")
        self._review_repair(institution_id=self.institution_id,
                            listing_id=listing["listing_id"], list_name=listing["list_name"],
                            approved=approved, officer=officer, reason=reason,
                            legal_basis=legal_basis, evidence=evidence,
                            reviewed_on=reviewed_on)
        if approved:
            self._remove_early(institution_id=self.institution_id, listing_id=listing["listing_id"],
                               list_name=listing["list_name"], on=reviewed_on)

    @event(RepairReviewed)
    def _review_repair(self, institution_id: str, listing_id: str, list_name: str,
                       approved: bool, officer: str, reason: str, legal_basis: str,
                       evidence: list[str], reviewed_on: dt.date) -> None:
        listing = self.listings[listing_id]
        listing["repair"] = {**listing["repair"], "approved": approved, "reviewed_by": officer,
                             "reviewed_on": reviewed_on, "reason": reason}
        if not approved:
            listing["state"] = ListingState.LISTED.value

    @event(ListingRemovedEarly)
    def _remove_early(self, institution_id: str, listing_id: str, list_name: str,
                      on: dt.date) -> None:
        self.listings[listing_id].update(state=ListingState.REMOVED.value, ended_on=on)

    @staticmethod
    def _check_term_not_over(listing: dict[str, Any], on: dt.date, action: str) -> None:
        if on >= listing["term_end"]:
            raise DomainRuleViolated(
                f"cannot {action} on {on.isoformat()}: the term ended on "
                f"{listing['term_end'].isoformat()} and the entry expires", state=listing["state"])
