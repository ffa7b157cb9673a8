"""The Institution aggregate and its rules, its Roster and EnrolmentReports, and each
practitioner's EmploymentRecord (where they work, 在岗). Plain Python: no I/O, no nameko, no
clock.

Lifecycle (状态)::

    registered ──submit_filing──▶ filing_submitted ──issue_filing_receipt──▶ filed
                                                                      │  ▲
                                                         suspend (停业整顿) │  │ resume
                                                                      ▼  │
                                                                   suspended
    any state but deregistered ──deregister (注销)──▶ deregistered

Deregistration also ends, each with its own event, the affordable designation and the
demonstration level, and, on the institution's :class:`Roster` in the same transaction, every
employment and every open removal case.

Three aggregates per institution, each its own stream: the :class:`Institution` (lifecycle,
filing, changes, designations, credit listings), its :class:`Roster` (在岗人员名册: hires,
background checks, releases, staff-removal cases) and its :class:`EnrolmentReports`
(月度在托报告). Their ids derive from the institution's, so writers of one never contend with
writers of another, while each stream's writers are serialised by optimistic concurrency.

Dates (submitted on, due on, …) are given by the application layer, which owns the clock and
the working-day calendar. Personal data arrives already sealed (see
:mod:`tuoyu_shared.personal_data`); the domain only carries it.
"""

from __future__ import annotations

import functools
import math
import re
import uuid
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import get_topic

# The shared rule error (HTTP 409, code rule_violated), which the aggregates here raise.
from tuoyu_shared.errors import DomainRuleViolated as DomainRuleViolated
from tuoyu_shared.validation import FieldError

_INSTITUTION_NAMESPACE = uuid.UUID("0b3c9a52-7f0e-4e7e-9d65-2a8f1c3e4b71")
_CASES_NAMESPACE = uuid.UUID("8f2d6c1e-4a37-4b9e-a5d0-3c7e91b62f48")


class ProviderKind(StrEnum):
    """Kinds of childcare provider."""

    CHILDCARE_INSTITUTION = "childcare_institution"  # 托育机构
    KINDERGARTEN_CLASS = "kindergarten_childcare_class"  # 幼儿园托班 (托幼一体)
    COMMUNITY_POINT = "community_childcare_point"  # 社区托育点
    FAMILY_POINT = "family_childcare_point"  # 家庭托育点
    EMPLOYER_RUN = "employer_run"  # 用人单位办托


class Nature(StrEnum):
    """Legal nature of the provider, which its credit code must agree with."""

    FOR_PROFIT = "for_profit"  # 营利性: registered with market regulation (code starts 9)
    NON_PROFIT = "non_profit"  # 非营利性: civil affairs (5) or staffing office (1)
    PUBLIC_INSTITUTION = "public_institution"  # 事业单位: staffing office (1)


class Status(StrEnum):
    REGISTERED = "registered"  # 已登记, filing not yet submitted
    FILING_SUBMITTED = "filing_submitted"  # 备案已提交, receipt due
    FILED = "filed"  # 已备案
    SUSPENDED = "suspended"  # 停业整顿
    DEREGISTERED = "deregistered"  # 已注销


class ClassType(StrEnum):
    INFANT = "infant"  # 乳儿班, 6–12 months
    TODDLER = "toddler"  # 托小班, 12–24 months
    OLDER = "older"  # 托大班, 24–36 months
    MIXED = "mixed"  # 混合编班, 18 months and over


SERVICE_TYPES = ("full_day", "half_day", "hourly", "temporary")  # 全日托, 半日托, 计时托, 临时托
DEMONSTRATION_LEVELS = ("national", "provincial", "city", "district")
AGE_BANDS = ("m6_12", "m12_18", "m18_24", "m24_36")  # age in months: 6–12, 12–18, …
STAFF_ROLES = ("carer", "health", "cook", "security", "manager", "teacher", "other")

_CODE_ORIGINS_BY_NATURE = {
    Nature.FOR_PROFIT: {"enterprise"},
    Nature.NON_PROFIT: {"social_organisation", "public_institution"},
    Nature.PUBLIC_INSTITUTION: {"public_institution"},
}
# Who registers a provider of each credit-code origin (登记机关).
REGISTERING_AUTHORITY_BY_ORIGIN = {
    "enterprise": "market_regulation",  # 市场监管部门
    "social_organisation": "civil_affairs",  # 民政部门
    "public_institution": "staffing_office",  # 机构编制部门
}


@dataclass(frozen=True)
class CareStandards:
    """The standards a filing (备案) is held to, as configuration: class sizes, carer ratios,
    required staff and (if a local rule sets one) floor area.

    ``max_children[t]`` is the largest class of type t; ``children_per_carer[t]`` the most
    children one carer may look after in it. A family childcare point takes at most
    ``family_point_max_children`` children, ``family_point_children_per_carer`` per carer.
    ``required_staff`` is the least staff of each role a provider has, except the kinds in
    ``required_staff_exempt_kinds``; ``indoor_m2_per_place[kind]`` the least indoor floor area
    per place of a kind.

    The defaults and their sources:

    - class sizes, 《托育机构设置标准（试行）》 (国家卫生健康委, with 《托育机构管理规范（试行）》
      国卫人口发〔2019〕58号): 乳儿班 (6–12 months) at most 10 children, 托小班 (12–24
      months) 15, 托大班 (24–36 months) 20; children of 18 months and over may be in a mixed
      class (混合编班) of at most 18.
    - carer ratios (保育人员与婴幼儿的比例), the same standard: 乳儿班 1:3, 托小班 1:5,
      托大班 1:7. It sets none for a mixed class: the default 1:5 is a reading (a mixed class
      of 18 months and over holds 托小班 ages, 18–24 months, whose ratio is 1:5), not a number
      of the standard; local rules differ (深圳's is 1:6): configure yours.
    - family childcare points (家庭托育点), 《家庭托育点管理办法（试行）》 (国家卫生健康委 and
      others, 2023): at most 5 children, each carer (照护人员) looking after at most 3.
    - required staff: the 设置标准 has a 托育机构 staffed for health care (卫生保健) and
      security (安全保卫), with no number: one of each is the least that meets it. Family
      points, under their own 办法, are exempt.
    - floor area: no default. The national texts above give no number we could source (the
      2023 draft of the 家庭托育点 rules had 9 m² per child; we could not confirm it in the
      final text): a province's rule is configured here, by provider kind.
    """

    max_children: tuple[tuple[str, int], ...] = (
        ("infant", 10), ("toddler", 15), ("older", 20), ("mixed", 18))
    children_per_carer: tuple[tuple[str, int], ...] = (
        ("infant", 3), ("toddler", 5), ("older", 7), ("mixed", 5))
    family_point_max_children: int = 5
    family_point_children_per_carer: int = 3
    required_staff: tuple[tuple[str, int], ...] = (("health", 1), ("security", 1))
    required_staff_exempt_kinds: tuple[str, ...] = ("family_childcare_point",)
    indoor_m2_per_place: tuple[tuple[str, int], ...] = ()

    @functools.cached_property
    def _max(self) -> dict[str, int]:
        return dict(self.max_children)

    @functools.cached_property
    def _ratio(self) -> dict[str, int]:
        return dict(self.children_per_carer)

    def max_for(self, class_type: str) -> int:
        return self._max[class_type]

    def ratio_for(self, class_type: str) -> int:
        return self._ratio[class_type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CareStandards:
        return cls(
            max_children=tuple(sorted(data.get("max_children", dict(cls.max_children)).items())),
            children_per_carer=tuple(sorted(
                data.get("children_per_carer", dict(cls.children_per_carer)).items())),
            family_point_max_children=data.get("family_point_max_children", 5),
            family_point_children_per_carer=data.get("family_point_children_per_carer", 3),
            required_staff=tuple(sorted(
                data.get("required_staff", dict(cls.required_staff)).items())),
            required_staff_exempt_kinds=tuple(data.get(
                "required_staff_exempt_kinds", cls.required_staff_exempt_kinds)),
            indoor_m2_per_place=tuple(sorted(data.get("indoor_m2_per_place", {}).items())),
        )


DEFAULT_STANDARDS = CareStandards()
_FAMILY_POINT = ProviderKind.FAMILY_POINT.value


def institution_id_for(credit_code: str, case_number: int = 1) -> uuid.UUID:
    """The id of the institution of a credit code's ``case_number``-th registration case
    (登记): derived from the code, so two registrations of the same case collide in the event
    store. The first case's id is the code's alone, as every institution's was before a code
    could register again after 注销: those ids, and the records other services key by them,
    stay valid. A later case (see :class:`RegistrationCases`) is ``code#n``'s."""
    if case_number < 1:
        raise ValueError(f"no registration case {case_number}: cases count from 1")
    name = credit_code if case_number == 1 else f"{credit_code}#{case_number}"
    return uuid.uuid5(_INSTITUTION_NAMESPACE, name)


def registration_cases_id_for(credit_code: str) -> uuid.UUID:
    """The id of the credit code's :class:`RegistrationCases` (derived from the code)."""
    return uuid.uuid5(_CASES_NAMESPACE, credit_code)


def check_credit_code_matches_nature(credit_code: str, nature: Nature) -> str:
    """Return the registering authority the code implies; refuse a code of the wrong kind.

    The code is expected to be validated already (by the application layer): only its first
    character, the registration authority code (登记管理部门码), is read here.
    """
    origin = {"9": "enterprise", "1": "public_institution",
              "5": "social_organisation"}.get(credit_code[:1], "other")
    if origin == "other":
        raise FieldError("credit_code", f"registration authority {credit_code[:1]!r} does not "
                         "register childcare providers", "inconsistent_with_nature")
    if origin not in _CODE_ORIGINS_BY_NATURE[nature]:
        raise FieldError(
            "credit_code",
            f"a {nature.value} provider cannot hold a code issued to a {origin} "
            f"(first character {credit_code[0]!r})",
            "inconsistent_with_nature",
        )
    return REGISTERING_AUTHORITY_BY_ORIGIN[origin]


_ARTICLE = {"infant": "an", "older": "an"}


def class_findings(kind: str, classes: list[dict[str, Any]],
                   standards: CareStandards = DEFAULT_STANDARDS,
                   field: str = "classes") -> list[FieldError]:
    """Each class's breaches of its size limit and carer ratio (and a family point's of its
    total), in order, as field errors. Each class is ``{"class_type", "places", "carers"}``.
    """
    findings = []
    total = 0
    family_point = kind == _FAMILY_POINT
    for i, c in enumerate(classes):
        where = f"{field}[{i}]"
        a = _ARTICLE.get(c["class_type"], "a")
        if family_point:
            needed = math.ceil(c["places"] / standards.family_point_children_per_carer)
        else:
            limit = standards.max_for(c["class_type"])
            if c["places"] > limit:
                findings.append(FieldError(
                    f"{where}.places", f"{a} {c['class_type']} class takes at most {limit} "
                    f"children, not {c['places']}", "out_of_range"))
            needed = math.ceil(c["places"] / standards.ratio_for(c["class_type"]))
        if c["carers"] < needed:
            findings.append(FieldError(
                f"{where}.carers", f"{c['places']} places in {a} {c['class_type']} class "
                f"need at least {needed} carers, not {c['carers']}", "ratio_not_met"))
        total += c["places"]
    if family_point and total > standards.family_point_max_children:
        findings.append(FieldError(field, f"a family childcare point takes at most "
                                   f"{standards.family_point_max_children} children, not "
                                   f"{total}", "out_of_range"))
    return findings


def check_classes(kind: str, classes: list[dict[str, Any]],
                  standards: CareStandards = DEFAULT_STANDARDS, field: str = "classes") -> int:
    """Refuse classes breaching a size limit or carer ratio (the first breach found); return
    the total places. Where breaches refuse: a change filing (变更备案) and an import."""
    if not classes:
        raise FieldError(field, "at least one class is required", "required")
    findings = class_findings(kind, classes, standards, field)
    if findings:
        raise findings[0]
    return sum(c["places"] for c in classes)


def check_filing_materials(kind: str, filing: dict[str, Any]) -> int:
    """What a filing (备案) must have to be accepted at all: classes, a passed hygiene
    evaluation (its report is one of the filing's materials), passed fire-safety acceptance,
    and a staff that counts the carers its classes declare. Returns the total places.

    Incomplete or self-contradicting materials are refused; whether the facts they declare
    meet the standards is :func:`filing_findings`' question, which verification answers."""
    if not filing["classes"]:
        raise FieldError("classes", "at least one class is required", "required")
    if not filing["hygiene_evaluation_passed"]:
        raise FieldError("hygiene_evaluation_passed", "a filing needs a passed hygiene "
                         "evaluation (卫生评价)", "not_passed")
    if not filing["fire_safety_passed"]:
        raise FieldError("fire_safety_passed", "a filing needs passed fire-safety "
                         "acceptance (消防安全)", "not_passed")
    carers = sum(c["carers"] for c in filing["classes"])
    if filing["staff"].get("carer", 0) < carers:
        raise FieldError("staff.carer", f"the classes need {carers} carers but the staff "
                         f"counts only {filing['staff'].get('carer', 0)}", "inconsistent")
    return sum(c["places"] for c in filing["classes"])


def filing_findings(kind: str, filing: dict[str, Any],
                    standards: CareStandards = DEFAULT_STANDARDS) -> list[FieldError]:
    """The substantive breaches of the standards a filing's declared facts show, as field
    errors in order: classes over their size limit or short of carers, required staff
    missing, too little floor area (where a rule is configured). On a submitted filing these
    are findings (presumptions), for verification (核实) to confirm or dismiss."""
    findings = class_findings(kind, filing["classes"], standards)
    if kind not in standards.required_staff_exempt_kinds:
        for role, least in standards.required_staff:
            if filing["staff"].get(role, 0) < least:
                findings.append(FieldError(
                    f"staff.{role}", f"a {kind.replace('_', ' ')} needs at least {least} "
                    f"{role} staff, not {filing['staff'].get(role, 0)}", "not_staffed"))
    per_place = dict(standards.indoor_m2_per_place).get(kind)
    places = sum(c["places"] for c in filing["classes"])
    if per_place is not None and filing["floor_area"]["indoor_m2"] < per_place * places:
        findings.append(FieldError(
            "floor_area.indoor_m2", f"{places} places need at least {per_place * places} m² "
            f"indoors ({per_place} m² each), not {filing['floor_area']['indoor_m2']}",
            "below_minimum"))
    return findings


def check_filing(kind: str, filing: dict[str, Any],
                 standards: CareStandards = DEFAULT_STANDARDS) -> int:
    """A filing that must be clean, a filing imported from a provincial export (which has
    no verification here): its materials (:func:`check_filing_materials`) and no finding
    (:func:`filing_findings`), else the first is raised. Returns the total places."""
    total = check_filing_materials(kind, filing)
    findings = filing_findings(kind, filing, standards)
    if findings:
        raise findings[0]
    return total


_MONTH = re.compile(r"([0-9]{4})-([0-9]{1,2})")


def month_key(month: str) -> tuple[int, int]:
    """A month (``YYYY-MM``, ``YYYY-M`` accepted) as (year, month), to compare months."""
    found = _MONTH.fullmatch(month) if isinstance(month, str) else None
    if found is None or not 1 <= int(found[2]) <= 12 or int(found[1]) < 1:
        raise FieldError("month", "a month as YYYY-MM", "invalid_format")
    return int(found[1]), int(found[2])


def normalise_month(month: str) -> str:
    """One spelling per month, ``YYYY-MM``: "2025-1" and "2025-01" are the same month."""
    year, number = month_key(month)
    return f"{year:04d}-{number:02d}"


def check_enrolment(kind: str, classes_filed: list[dict[str, Any]],
                    classes: list[dict[str, Any]], second_children: int, third_children: int,
                    standards: CareStandards = DEFAULT_STANDARDS) -> int:
    """A monthly enrolment report must fit the filed places and the carer ratios.

    ``classes`` is ``[{"class_type", "children", "carers", "age_bands": {band: n}}]``.
    Returns the number of children enrolled.
    """
    places: dict[str, int] = {}
    for c in classes_filed:
        places[c["class_type"]] = places.get(c["class_type"], 0) + c["places"]
    enrolled: dict[str, int] = {}
    for i, c in enumerate(classes):
        where = f"classes[{i}]"
        if c["class_type"] not in places:
            raise FieldError(f"{where}.class_type", f"no {c['class_type']} class is filed",
                             "not_filed")
        if sum(c.get("age_bands", {}).values()) not in (0, c["children"]):
            raise FieldError(f"{where}.age_bands", "age bands must add up to the children "
                             f"reported ({c['children']})", "inconsistent")
        per_carer = (standards.family_point_children_per_carer
                     if kind == ProviderKind.FAMILY_POINT.value
                     else standards.ratio_for(c["class_type"]))
        if c["children"] > c["carers"] * per_carer:
            raise FieldError(f"{where}.carers", f"{c['children']} children need at least "
                             f"{math.ceil(c['children'] / per_carer)} carers, not {c['carers']}",
                             "ratio_not_met")
        enrolled[c["class_type"]] = enrolled.get(c["class_type"], 0) + c["children"]
    for class_type, children in enrolled.items():
        if children > places[class_type]:
            raise FieldError("classes", f"{children} children in {class_type} classes exceed "
                             f"the {places[class_type]} places filed", "exceeds_places")
    total = sum(enrolled.values())
    if second_children + third_children > total:
        raise FieldError("second_children", "second and third children cannot outnumber the "
                         f"{total} children enrolled", "inconsistent")
    return total


def check_health_managed(health_managed_children: int, children: int) -> None:
    """健康管理: the children under health management (a current health record and this
    year's health check) are some of the ``children`` enrolled: 0 to ``children``."""
    if (isinstance(health_managed_children, bool)
            or not isinstance(health_managed_children, int)):
        raise FieldError("health_managed_children", "must be an integer", "invalid_type")
    if health_managed_children < 0:
        raise FieldError("health_managed_children", "must be at least 0, got "
                         f"{health_managed_children}", "out_of_range")
    if health_managed_children > children:
        raise FieldError("health_managed_children", "children under health management "
                         f"({health_managed_children}) cannot outnumber the {children} "
                         "children enrolled", "inconsistent")


@dataclass(frozen=True)
class InstitutionFacts:
    """What the rules of an institution's :class:`Roster` and :class:`EnrolmentReports` need
    to know of the :class:`Institution` itself: read by the application from that aggregate
    and passed in (:attr:`Institution.facts`), so each aggregate stays a stream of its own.

    ``filed_classes`` are the filing's classes (their places bound a report);
    ``filed_on`` the date of the filing receipt (no report of a month before it)."""

    status: str
    kind: str
    filed_classes: list[dict[str, Any]]
    filed_on: date | None


def _enrolment_figures(report: Any) -> dict[str, int]:
    # The figures later rules need, not the whole report (that is in the event): the state
    # stays small however many months are reported, which keeps snapshots cheap.
    return {"children": report.children, "second_children": report.second_children,
            "third_children": report.third_children}


def _hire_entry(practitioner: dict[str, Any], role: str,
                certificates: list[str]) -> dict[str, Any]:
    # no name: what may be shown of a person comes from the vault (person_display), never
    # from the log or the state (events recorded before masks left them still carry one,
    # which replay ignores)
    return {"practitioner_ref": practitioner["ref"], "role": role,
            "certificates": certificates, "status": "pending"}


def _set_hire(roster: dict[str, dict[str, Any]], hire_id: str, **changes: Any) -> None:
    roster[hire_id] = {**roster[hire_id], **changes}


def _case_entry(practitioner_ref: str, ban_reference: str, opened_on: date,
                due_on: date) -> dict[str, Any]:
    return {"practitioner_ref": practitioner_ref, "ban_reference": ban_reference,
            "opened_on": opened_on, "due_on": due_on, "closed_on": None}


#: An officer's decision on one finding of a filing's submission, in the verification events.
_FINDING_DECISION_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["code", "decision", "field", "finding", "reason"],
    "properties": {"field": {"type": "string"}, "code": {"type": "string"},
                   "finding": {"type": "string"},
                   "decision": {"enum": ["confirmed", "dismissed"]},
                   "reason": {"type": "string"}}}


class Institution(Aggregate):
    """A childcare provider (托育服务机构) as the register knows it: its lifecycle, filing,
    changes, designations, suspension and deregistration, and the credit lists it is on.

    Its staff roster and its monthly enrolment reports are aggregates of their own
    (:class:`Roster`, :class:`EnrolmentReports`, one stream each per institution), so the
    reactions and reports that change them do not contend with officers' commands here; their
    rules are given the facts of this aggregate they need (:attr:`facts`).
    """

    # Version 2 of the state has the submitted filing's findings (filing_findings).
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        # Snapshots taken before findings existed: a filing then was refused or had none.
        state.setdefault("filing_findings", [])

    # ---- creation ---------------------------------------------------------------------------
    class Registered(Aggregate.Created):
        """The provider entered the register with its registration facts (登记信息)."""

        name: str
        credit_code: str
        nature: str
        kind: str
        registering_authority: str
        person_in_charge: dict[str, Any]
        district: str
        street: str
        address: str

    @staticmethod
    def create_id(credit_code: str, **_: Any) -> uuid.UUID:
        return institution_id_for(credit_code)

    @event(Registered)
    def __init__(self, name: str, credit_code: str, nature: str, kind: str,
                 registering_authority: str, person_in_charge: dict[str, Any], district: str,
                 street: str, address: str):
        self.name = name
        self.credit_code = credit_code
        self.nature = nature
        self.kind = kind
        self.registering_authority = registering_authority
        self.person_in_charge = person_in_charge
        self.district = district
        self.street = street
        self.address = address
        self.status = Status.REGISTERED.value
        self.filing: dict[str, Any] | None = None
        self.filing_findings: list[dict[str, str]] = []  # {field, code, reason}, presumptions
        self.receipt_due_on: date | None = None
        self.receipt: dict[str, Any] | None = None
        self.verification_due_on: date | None = None
        self.verification: dict[str, Any] | None = None
        self.affordable: dict[str, Any] | None = None
        self.demonstration: dict[str, Any] | None = None
        # As the institution's own stream recorded them until the roster and the reports had
        # streams of their own (frozen since; see "roster and enrolment as the institution's
        # own stream recorded them" below): month → figures, hire id → hire, case id → case.
        self.enrolment: dict[str, dict[str, Any]] = {}
        self.roster: dict[str, dict[str, Any]] = {}
        self.staff_cases: dict[str, dict[str, Any]] = {}
        self.credit_lists: list[str] = []
        self.suspension: dict[str, Any] | None = None
        self.deregistration: dict[str, Any] | None = None

    @classmethod
    def register(cls, *, name: str, credit_code: str, nature: Nature, kind: ProviderKind,
                 person_in_charge: dict[str, Any], district: str, street: str,
                 address: str, institution_id: uuid.UUID | None = None) -> Institution:
        """登记. ``institution_id`` is the id of the code's registration case (see
        :meth:`RegistrationCases.open_case`); without it, the code's first case."""
        authority = check_credit_code_matches_nature(credit_code, nature)
        return cls._create(
            cls.Registered, id=institution_id or institution_id_for(credit_code), name=name,
            credit_code=credit_code, nature=nature.value, kind=kind.value,
            registering_authority=authority, person_in_charge=person_in_charge,
            district=district, street=street, address=address)

    class Imported(Aggregate.Created):
        """An existing filing taken over from the provincial filing system, whole."""

        name: str
        credit_code: str
        nature: str
        kind: str
        registering_authority: str
        person_in_charge: dict[str, Any]
        district: str
        street: str
        address: str
        filing: dict[str, Any]
        receipt: dict[str, Any]
        source: str

        def apply(self, aggregate: Institution) -> None:
            # __init__ has set the registration facts; the filing comes with them.
            aggregate.filing = self.filing
            aggregate.receipt = self.receipt
            aggregate.status = Status.FILED.value

    @classmethod
    def import_filed(cls, **facts: Any) -> Institution:
        """Take over an existing filing (the aggregate, with its one event pending)."""
        event = cls.imported(**facts)
        institution = event.mutate(None)
        institution._pending_events.append(event)
        return institution

    @classmethod
    def imported(cls, *, name: str, credit_code: str, nature: Nature, kind: ProviderKind,
                 person_in_charge: dict[str, Any], district: str, street: str, address: str,
                 filing: dict[str, Any], receipt: dict[str, Any], source: str,
                 standards: CareStandards = DEFAULT_STANDARDS) -> Institution.Imported:
        """The event alone (bulk imports record it without building the aggregate: the
        aggregate is what replaying it gives)."""
        authority = check_credit_code_matches_nature(credit_code, nature)
        filing = {**filing, "total_places": check_filing(kind.value, filing, standards)}
        return cls.Imported(
            originator_id=institution_id_for(credit_code), originator_version=1,
            timestamp=cls.Imported.create_timestamp(), originator_topic=_INSTITUTION_TOPIC,
            name=name, credit_code=credit_code, nature=nature.value, kind=kind.value,
            registering_authority=authority, person_in_charge=person_in_charge,
            district=district, street=street, address=address, filing=filing,
            receipt=receipt, source=source)

    # ---- guards -----------------------------------------------------------------------------
    def _require(self, *allowed: Status, action: str) -> None:
        if self.status not in {s.value for s in allowed}:
            raise DomainRuleViolated(
                f"cannot {action}: the institution is {self.status}", state=self.status)

    def _refuse_if_deregistered(self, action: str) -> None:
        if self.status == Status.DEREGISTERED.value:
            raise DomainRuleViolated(
                f"cannot {action}: the institution is deregistered", state=self.status)

    @property
    def places(self) -> int:
        return self.filing["total_places"] if self.filing else 0

    @property
    def facts(self) -> InstitutionFacts:
        """What the roster's and the reports' rules need to know of this institution."""
        return InstitutionFacts(
            status=self.status, kind=self.kind,
            filed_classes=list(self.filing["classes"]) if self.filing else [],
            filed_on=self.receipt["issued_on"] if self.receipt else None)

    # ---- filing (备案) ----------------------------------------------------------------------
    class FilingSubmitted(Aggregate.Event):
        """备案申请: the facts the provider declares; a receipt is due within 5 working days.
        ``findings`` are the standards the declared facts breach (``{field, code, reason}``):
        presumptions that the filing's verification (核实) confirms or dismisses."""

        filing: dict[str, Any]
        submitted_on: date
        receipt_due_on: date
        findings: list[dict[str, Any]]

        class_version = 2
        payload_schema = {"findings": {"items": {
            "type": "object", "additionalProperties": False,
            "required": ["code", "field", "reason"],
            "properties": {"field": {"type": "string"}, "code": {"type": "string"},
                           "reason": {"type": "string"}}}}}

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # Version 1 refused a filing that breached a standard: none had findings.
            state["findings"] = []

    def submit_filing(self, filing: dict[str, Any], submitted_on: date, receipt_due_on: date,
                      standards: CareStandards = DEFAULT_STANDARDS) -> None:
        """备案: incomplete or malformed materials are refused (a field error); breaches of
        the standards are accepted and recorded as the submission's findings."""
        if self.status in (Status.FILED.value, Status.SUSPENDED.value):
            raise DomainRuleViolated("this institution is filed already: changes go through "
                                     "a change filing (变更备案)", state=self.status)
        self._require(Status.REGISTERED, action="submit a filing")
        total = check_filing_materials(self.kind, filing)
        findings = [f.to_dict() for f in filing_findings(self.kind, filing, standards)]
        self._submit_filing(filing={**filing, "total_places": total},
                            submitted_on=submitted_on, receipt_due_on=receipt_due_on,
                            findings=findings)

    @event(FilingSubmitted)
    def _submit_filing(self, filing: dict[str, Any], submitted_on: date,
                       receipt_due_on: date, findings: list[dict[str, Any]]) -> None:
        self.filing = filing
        self.filing_findings = findings
        self.receipt_due_on = receipt_due_on
        self.status = Status.FILING_SUBMITTED.value

    class Filed(Aggregate.Event):
        """备案回执: the filing receipt was issued; the institution is filed."""

        receipt_number: str
        issued_on: date
        verification_due_on: date

    def issue_filing_receipt(self, receipt_number: str, issued_on: date,
                             verification_due_on: date) -> None:
        self._require(Status.FILING_SUBMITTED, action="issue a filing receipt")
        self._file(receipt_number=receipt_number, issued_on=issued_on,
                   verification_due_on=verification_due_on)

    @event(Filed)
    def _file(self, receipt_number: str, issued_on: date, verification_due_on: date) -> None:
        self.receipt = {"receipt_number": receipt_number, "issued_on": issued_on}
        self.verification_due_on = verification_due_on
        self.status = Status.FILED.value

    class FilingVerified(Aggregate.Event):
        """备案核查: the filed facts were checked on site and found compliant; every finding of
        the submission dismissed, each with the officer's reason (``finding_decisions``)."""

        verified_on: date
        notes: str
        finding_decisions: list[dict[str, Any]]

        class_version = 2
        payload_schema = {"finding_decisions": {"items": _FINDING_DECISION_SCHEMA}}

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # Version 1 came before findings: there was nothing to decide.
            state["finding_decisions"] = []

    class FilingFoundNonCompliant(Aggregate.Event):
        """核查不符合: notified to the provider and disclosed. The notice is due within 15
        working days of the receipt; one sent later is still recorded, with notified_late.
        ``findings`` is the notice's list: the submission's findings the officer confirmed,
        then the officer's own; ``finding_decisions`` the officer's decision on each finding
        of the submission, with the reason."""

        verified_on: date
        findings: list[str]
        notified_on: date
        disclosure: str
        notified_late: bool
        finding_decisions: list[dict[str, Any]]

        class_version = 3
        payload_schema = {"finding_decisions": {"items": _FINDING_DECISION_SCHEMA}}

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # Version 1 refused late notices: every one recorded was on time.
            state["notified_late"] = False

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            # Version 2 came before findings: there was nothing to decide.
            state["finding_decisions"] = []

    def _require_verification_pending(self) -> None:
        self._require(Status.FILED, Status.SUSPENDED, action="verify a filing")
        if self.verification is not None:
            raise DomainRuleViolated(
                f"the filing was verified already ({self.verification['outcome']})",
                state=self.status)

    def _decide_findings(self, decisions: list[dict[str, str]]) -> list[dict[str, str]]:
        """The officer's decisions (``{field, decision, reason}``, decision ``confirmed`` or
        ``dismissed``) on the submission's findings: exactly one for each finding. Returned
        with each finding's own code and reason (``finding``), in the findings' order."""
        by_field = {f["field"]: f for f in self.filing_findings}
        decided: dict[str, dict[str, str]] = {}
        for i, d in enumerate(decisions):
            if d["field"] in decided:
                raise FieldError(f"finding_decisions[{i}].field", f"{d['field']} is decided "
                                 "already", "duplicate")
            if d["field"] not in by_field:
                known = ", ".join(by_field) or "none"
                raise FieldError(f"finding_decisions[{i}].field", f"the submission has no "
                                 f"finding on {d['field']} (its findings: {known})",
                                 "invalid_choice")
            decided[d["field"]] = d
        missing = [f for f in by_field if f not in decided]
        if missing:
            raise FieldError("finding_decisions", "each finding of the submission needs a "
                             "decision, confirmed or dismissed, with a reason: "
                             f"{', '.join(missing)} undecided", "required")
        return [{"field": field, "code": finding["code"], "finding": finding["reason"],
                 "decision": decided[field]["decision"], "reason": decided[field]["reason"]}
                for field, finding in by_field.items()]

    def verify_compliant(self, verified_on: date, notes: str,
                         finding_decisions: list[dict[str, str]] | None = None) -> None:
        """核实: compliant. The submission's findings, if any, must each be dismissed."""
        self._require_verification_pending()
        finding_decisions = finding_decisions or []
        decided = self._decide_findings(finding_decisions)
        for d in decided:
            if d["decision"] != "dismissed":
                i = next(i for i, given in enumerate(finding_decisions)
                         if given["field"] == d["field"])
                raise FieldError(f"finding_decisions[{i}].decision", f"the finding on "
                                 f"{d['field']} is confirmed: the filing is non-compliant",
                                 "inconsistent")
        self._verify_compliant(verified_on=verified_on, notes=notes,
                               finding_decisions=decided)

    @event(FilingVerified)
    def _verify_compliant(self, verified_on: date, notes: str,
                          finding_decisions: list[dict[str, Any]]) -> None:
        self.verification = {"outcome": "compliant", "verified_on": verified_on,
                             "finding_decisions": finding_decisions}

    def find_non_compliant(self, verified_on: date, findings: list[str], notified_on: date,
                           disclosure: str,
                           finding_decisions: list[dict[str, str]] | None = None) -> None:
        """核实: non-compliant. The notice lists the submission's findings the officer
        confirmed (each decided, confirmed or dismissed) and the officer's own ``findings``."""
        self._require_verification_pending()
        decided = self._decide_findings(finding_decisions or [])
        notice = [f"{d['field']}: {d['finding']} (confirmed: {d['reason']})"
                  for d in decided if d["decision"] == "confirmed"] + list(findings)
        if not notice:
            raise FieldError("findings", "at least one finding is required: the officer's "
                             "own or a confirmed finding of the submission", "required")
        # A notice after the deadline is a fact to record (and see), not a reason to lose it.
        late = self.verification_due_on is not None and notified_on > self.verification_due_on
        self._find_non_compliant(verified_on=verified_on, findings=notice,
                                 notified_on=notified_on, disclosure=disclosure,
                                 notified_late=late, finding_decisions=decided)

    @event(FilingFoundNonCompliant)
    def _find_non_compliant(self, verified_on: date, findings: list[str], notified_on: date,
                            disclosure: str, notified_late: bool,
                            finding_decisions: list[dict[str, Any]]) -> None:
        self.verification = {"outcome": "non_compliant", "verified_on": verified_on,
                             "findings": findings, "disclosure": disclosure,
                             "notified_on": notified_on, "notified_late": notified_late,
                             "finding_decisions": finding_decisions}

    # ---- change filing (变更备案) -----------------------------------------------------------
    class ChangeFiled(Aggregate.Event):
        """变更备案: new values and the previous ones, so history answers "what was it then"."""

        changes: dict[str, Any]
        previous: dict[str, Any]
        effective_on: date

    CHANGEABLE = ("name", "district", "street", "address", "classes", "person_in_charge")

    def check_can_file_change(self) -> None:
        """Refuse (DomainRuleViolated) a change filing the state does not allow: checked
        before a new person in charge is sealed, so a refused change stores nothing."""
        self._require(Status.FILED, Status.SUSPENDED, action="file a change")

    def file_change(self, changes: dict[str, Any], effective_on: date,
                    standards: CareStandards = DEFAULT_STANDARDS) -> None:
        self.check_can_file_change()
        unknown = set(changes) - set(self.CHANGEABLE)
        if unknown or not changes:
            raise FieldError("changes", f"changeable are {', '.join(self.CHANGEABLE)}",
                             "invalid_choice")
        if "classes" in changes:
            changes = {**changes, "total_places": check_classes(
                self.kind, changes["classes"], standards, field="changes.classes")}
        previous = {}
        for key in changes:
            if key in ("classes", "total_places"):
                previous[key] = self.filing[key]
            else:
                previous[key] = getattr(self, key)
        if all(previous[k] == v for k, v in changes.items()):
            raise FieldError("changes", "nothing differs from the filed values", "no_change")
        self._file_change(changes=changes, previous=previous, effective_on=effective_on)

    @event(ChangeFiled)
    def _file_change(self, changes: dict[str, Any], previous: dict[str, Any],
                     effective_on: date) -> None:
        for key, value in changes.items():
            if key in ("classes", "total_places"):
                self.filing = {**self.filing, key: value}
            else:
                setattr(self, key, value)

    # ---- affordable designation (普惠) and demonstration level (示范) -----------------------
    class AffordableDesignated(Aggregate.Event):
        """普惠托育: designated affordable, with its guide price (fen per child per month)."""

        guide_price_fen: int
        designated_on: date
        document: str

    class AffordableDesignationWithdrawn(Aggregate.Event):
        """The affordable (普惠) designation was withdrawn, with the reason."""

        withdrawn_on: date
        reason: str

    def designate_affordable(self, guide_price_fen: int, designated_on: date,
                             document: str) -> None:
        self._require(Status.FILED, action="designate as affordable")
        if self.affordable is not None:
            raise DomainRuleViolated("already designated affordable", state=self.status)
        self._designate_affordable(guide_price_fen=guide_price_fen,
                                   designated_on=designated_on, document=document)

    @event(AffordableDesignated)
    def _designate_affordable(self, guide_price_fen: int, designated_on: date,
                              document: str) -> None:
        self.affordable = {"guide_price_fen": guide_price_fen, "designated_on": designated_on}

    def withdraw_affordable(self, withdrawn_on: date, reason: str) -> None:
        self._refuse_if_deregistered("withdraw the affordable designation")
        if self.affordable is None:
            raise DomainRuleViolated("not designated affordable", state=self.status)
        self._withdraw_affordable(withdrawn_on=withdrawn_on, reason=reason)

    @event(AffordableDesignationWithdrawn)
    def _withdraw_affordable(self, withdrawn_on: date, reason: str) -> None:
        self.affordable = None

    class DemonstrationLevelGranted(Aggregate.Event):
        """示范性托育机构: national, provincial, city or district level."""

        level: str
        granted_on: date
        document: str

    class DemonstrationLevelRevoked(Aggregate.Event):
        """The demonstration level was revoked, with the reason."""

        level: str
        revoked_on: date
        reason: str

    def grant_demonstration_level(self, level: str, granted_on: date, document: str) -> None:
        self._require(Status.FILED, action="grant a demonstration level")
        if self.demonstration and self.demonstration["level"] == level:
            raise DomainRuleViolated(f"already a {level} demonstration institution",
                                     state=self.status)
        self._grant_demonstration(level=level, granted_on=granted_on, document=document)

    @event(DemonstrationLevelGranted)
    def _grant_demonstration(self, level: str, granted_on: date, document: str) -> None:
        self.demonstration = {"level": level, "granted_on": granted_on}

    def revoke_demonstration_level(self, revoked_on: date, reason: str) -> None:
        self._refuse_if_deregistered("revoke a demonstration level")
        if self.demonstration is None:
            raise DomainRuleViolated("holds no demonstration level", state=self.status)
        self._revoke_demonstration(level=self.demonstration["level"], revoked_on=revoked_on,
                                   reason=reason)

    @event(DemonstrationLevelRevoked)
    def _revoke_demonstration(self, level: str, revoked_on: date, reason: str) -> None:
        self.demonstration = None

    # ---- roster and enrolment as the institution's own stream recorded them ---------------
    # Until the roster (:class:`Roster`) and the monthly reports (:class:`EnrolmentReports`)
    # had streams of their own, these events were recorded in the institution's stream. They
    # are never recorded here again, but the streams written then are replayed as they are:
    # each event below applies itself (``apply``) to the state of the time, ``enrolment``,
    # ``roster`` and ``staff_cases``, so history and reads as of an earlier version stay as
    # they were. That state is frozen from then on: the first command that needs the roster
    # or the reports carries it over into their aggregate (:meth:`Roster.for_institution`,
    # :meth:`EnrolmentReports.for_institution`), which holds it from then on. The classes keep
    # their names and docstrings: their schemas (``*.v1.json``) are what was published then.
    class EnrolmentReported(Aggregate.Event):
        """月度在托报告: children by class and age band; second and third children."""

        month: str  # YYYY-MM
        classes: list[dict[str, Any]]
        children: int
        second_children: int
        third_children: int

        def apply(self, aggregate: Institution) -> None:
            aggregate.enrolment[self.month] = _enrolment_figures(self)

    class EnrolmentReportCorrected(Aggregate.Event):
        """A month already reported, corrected; the previous figures are kept."""

        month: str
        classes: list[dict[str, Any]]
        children: int
        second_children: int
        third_children: int
        previous: dict[str, Any]
        reason: str

        def apply(self, aggregate: Institution) -> None:
            aggregate.enrolment[self.month] = _enrolment_figures(self)

    class PractitionerHireRequested(Aggregate.Event):
        """A hire waits for the credit service's background check (背景审查)."""

        hire_id: str
        practitioner: dict[str, Any]  # ref and sealed name / id number
        role: str
        certificates: list[str]
        requested_on: date

        def apply(self, aggregate: Institution) -> None:
            aggregate.roster[self.hire_id] = _hire_entry(self.practitioner, self.role,
                                                         self.certificates)

    class PractitionerHired(Aggregate.Event):
        """The background check cleared the practitioner: they are on the roster."""

        hire_id: str
        practitioner_ref: str
        check_reference: str

        def apply(self, aggregate: Institution) -> None:
            _set_hire(aggregate.roster, self.hire_id, status="employed")

    class PractitionerHireRefused(Aggregate.Event):
        """The background check found a ban (从业禁止): the hire is refused."""

        hire_id: str
        practitioner_ref: str
        ban_reference: str

        def apply(self, aggregate: Institution) -> None:
            _set_hire(aggregate.roster, self.hire_id, status="refused",
                      ban_reference=self.ban_reference)

    class PractitionerReleased(Aggregate.Event):
        """The practitioner left the roster (an open removal case closes with it)."""

        hire_id: str
        practitioner_ref: str
        released_on: date
        reason: str

        def apply(self, aggregate: Institution) -> None:
            _set_hire(aggregate.roster, self.hire_id, status="released")

    class StaffRemovalCaseOpened(Aggregate.Event):
        """The credit service barred someone this institution employs: remove them by due_on."""

        case_id: str
        practitioner_ref: str
        ban_reference: str
        opened_on: date
        due_on: date

        def apply(self, aggregate: Institution) -> None:
            aggregate.staff_cases[self.case_id] = _case_entry(
                self.practitioner_ref, self.ban_reference, self.opened_on, self.due_on)

    class StaffRemovalCaseClosed(Aggregate.Event):
        """The barred practitioner no longer works here."""

        case_id: str
        closed_on: date
        resolution: str

        def apply(self, aggregate: Institution) -> None:
            aggregate.staff_cases[self.case_id] = {**aggregate.staff_cases[self.case_id],
                                                   "closed_on": self.closed_on}

    # ---- credit lists, for the public disclosure (信息公示) ----------------------------------
    class CreditListingNoted(Aggregate.Event):
        """The credit service listed or delisted this institution (e.g. 严重失信)."""

        credit_list: str
        listed: bool
        reference: str

    def note_credit_listing(self, credit_list: str, listed: bool, reference: str) -> bool:
        if (credit_list in self.credit_lists) == listed:
            return False
        self._note_listing(credit_list=credit_list, listed=listed, reference=reference)
        return True

    @event(CreditListingNoted)
    def _note_listing(self, credit_list: str, listed: bool, reference: str) -> None:
        if listed:
            self.credit_lists = [*self.credit_lists, credit_list]
        else:
            self.credit_lists = [x for x in self.credit_lists if x != credit_list]

    # ---- suspension (停业整顿) and deregistration (注销) ------------------------------------
    class SuspendedForRectification(Aggregate.Event):
        """停业整顿: operations suspended under an order, until resumed."""

        order_reference: str
        reason: str
        suspended_on: date

    class Resumed(Aggregate.Event):
        """Rectification done: the institution operates again (复业)."""

        resumed_on: date
        notes: str

    class Deregistered(Aggregate.Event):
        """注销: with the reason and where the children were placed (幼儿安置)."""

        reason: str
        placement_of_children: str
        deregistered_on: date

    def suspend(self, order_reference: str, reason: str, suspended_on: date) -> None:
        self._require(Status.FILED, action="suspend for rectification")
        self._suspend(order_reference=order_reference, reason=reason, suspended_on=suspended_on)

    @event(SuspendedForRectification)
    def _suspend(self, order_reference: str, reason: str, suspended_on: date) -> None:
        self.suspension = {"order_reference": order_reference, "since": suspended_on}
        self.status = Status.SUSPENDED.value

    def resume(self, resumed_on: date, notes: str) -> None:
        self._require(Status.SUSPENDED, action="resume")
        self._resume(resumed_on=resumed_on, notes=notes)

    @event(Resumed)
    def _resume(self, resumed_on: date, notes: str) -> None:
        self.suspension = None
        self.status = Status.FILED.value

    def deregister(self, reason: str, placement_of_children: str, deregistered_on: date) -> None:
        """注销, and what ends with it here, each as its own event: the affordable designation
        is withdrawn and the demonstration level revoked. Employment and open removal cases end
        on the institution's roster (:meth:`Roster.close`), saved with this in one
        transaction by the application."""
        if self.status == Status.DEREGISTERED.value:
            raise DomainRuleViolated("the institution is deregistered already",
                                     state=self.status)
        self._deregister(reason=reason, placement_of_children=placement_of_children,
                         deregistered_on=deregistered_on)
        if self.affordable is not None:
            self._withdraw_affordable(withdrawn_on=deregistered_on, reason="deregistered")
        if self.demonstration is not None:
            self._revoke_demonstration(level=self.demonstration["level"],
                                       revoked_on=deregistered_on, reason="deregistered")

    @event(Deregistered)
    def _deregister(self, reason: str, placement_of_children: str,
                    deregistered_on: date) -> None:
        self.deregistration = {"reason": reason, "on": deregistered_on}
        self.status = Status.DEREGISTERED.value


# ---- an institution's staff roster (在岗人员名册) ------------------------------------------
_ROSTER_NAMESPACE = uuid.UUID("e606d03e-bf67-4ef9-aa32-eb814c082863")
_ENROLMENT_REPORTS_NAMESPACE = uuid.UUID("9a103964-ae53-4d26-84ea-5e91243925f6")
_DEREGISTERED = Status.DEREGISTERED.value


def roster_id_for(institution_id: uuid.UUID | str) -> uuid.UUID:
    """The id of the institution's :class:`Roster`, derived from the institution's: two first
    writers of one roster collide in the event store (and one retries)."""
    return uuid.uuid5(_ROSTER_NAMESPACE, str(institution_id))


def enrolment_reports_id_for(institution_id: uuid.UUID | str) -> uuid.UUID:
    """The id of the institution's :class:`EnrolmentReports`, derived from the institution's."""
    return uuid.uuid5(_ENROLMENT_REPORTS_NAMESPACE, str(institution_id))


class Roster(Aggregate):
    """在岗人员名册: an institution's staff roster, a stream of its own beside the institution's.

    A hire waits for the credit service's background check (背景审查), which hires or refuses
    it; an employed practitioner is released (离岗); one barred (从业禁止) while employed gets a
    staff-removal case, closed when they go. The institution's deregistration (注销) closes the
    roster (:meth:`close`): everyone employed is released, every open case closed, and nothing
    is hired after.

    The rules that depend on the institution are given its status (``institution_status``,
    read by the application from the :class:`Institution`). The roster's own ``closed_on`` is
    checked too: a command may read the institution before a deregistration commits and the
    roster after it; and as the deregistration always writes the roster, a command that read
    the roster before it fails on the roster's version and runs again on fresh state.

    Its events are published under the types subscribers have always received
    (``InstitutionPractitionerHired``, …), as schema version 2: the envelope's aggregate is the
    roster, and ``institution_id`` in the payload names the institution. Version 1 of each type
    is the institution's own event (:class:`Institution.PractitionerHired`, …), in the
    institution streams written before rosters had streams of their own.
    """

    id_for = staticmethod(roster_id_for)

    class Opened(Aggregate.Created):
        """The institution's roster has a stream of its own from now on."""

        institution_id: str

        in_institution_history = False  # bookkeeping: not an entry of the institution's record
        payload_schema = {"institution_id": {"format": "uuid"}}

    @staticmethod
    def create_id(institution_id: str) -> uuid.UUID:
        return roster_id_for(institution_id)

    @event(Opened)
    def __init__(self, institution_id: str):
        self.institution_id = str(institution_id)
        self.roster: dict[str, dict[str, Any]] = {}  # hire id → hire
        self.staff_cases: dict[str, dict[str, Any]] = {}  # case id → case
        self.closed_on: date | None = None

    # ---- carried over from the institution's own stream -----------------------------------
    class CarriedOver(Aggregate.Event):
        """The roster and staff-removal cases the institution's own stream recorded before
        rosters had streams of their own, taken over as they stood at the institution's
        version ``institution_version``; ``closed_on`` is the date of its deregistration
        (注销), if it was deregistered then."""

        institution_id: str
        roster: dict[str, Any]
        staff_cases: dict[str, Any]
        closed_on: date | None
        institution_version: int

        in_institution_history = False
        payload_schema = {"institution_id": {"format": "uuid"},
                          "institution_version": {"minimum": 1}}

        def apply(self, aggregate: Roster) -> None:
            # copies: the aggregate's state changes later, the event's payload never
            aggregate.roster = {k: dict(v) for k, v in self.roster.items()}
            aggregate.staff_cases = {k: dict(v) for k, v in self.staff_cases.items()}
            aggregate.closed_on = self.closed_on

    @classmethod
    def for_institution(cls, institution: Institution) -> Roster:
        """A new roster of the institution (its events pending), with what the institution's
        own stream recorded of its roster carried over, if it recorded anything."""
        roster = cls(institution_id=str(institution.id))
        closed_on = (institution.deregistration or {}).get("on") \
            if institution.status == _DEREGISTERED else None
        if institution.roster or institution.staff_cases or closed_on:
            roster.trigger_event(
                cls.CarriedOver, institution_id=roster.institution_id,
                roster={k: dict(v) for k, v in institution.roster.items()},
                staff_cases={k: dict(v) for k, v in institution.staff_cases.items()},
                closed_on=closed_on, institution_version=institution.version)
        return roster

    # ---- hires (从业人员) -------------------------------------------------------------------
    class HireRequested(Aggregate.Event):
        """A hire waits for the credit service's background check (背景审查). Since version 2
        recorded on the institution's roster (the envelope's aggregate): ``institution_id``
        names the institution."""

        event_type = "InstitutionPractitionerHireRequested"
        class_version = 2

        institution_id: str
        hire_id: str
        practitioner: dict[str, Any]  # ref and sealed name / id number
        role: str
        certificates: list[str]
        requested_on: date

        payload_schema = {"institution_id": {"format": "uuid"}}

    class Hired(Aggregate.Event):
        """The background check cleared the practitioner: they are on the roster. Since
        version 2 recorded on the institution's roster: ``institution_id`` names the
        institution."""

        event_type = "InstitutionPractitionerHired"
        class_version = 2

        institution_id: str
        hire_id: str
        practitioner_ref: str
        check_reference: str

        payload_schema = {"institution_id": {"format": "uuid"}}

    class HireRefused(Aggregate.Event):
        """The background check found a ban (从业禁止): the hire is refused. Since version 2
        recorded on the institution's roster: ``institution_id`` names the institution."""

        event_type = "InstitutionPractitionerHireRefused"
        class_version = 2

        institution_id: str
        hire_id: str
        practitioner_ref: str
        ban_reference: str

        payload_schema = {"institution_id": {"format": "uuid"}}

    class Released(Aggregate.Event):
        """The practitioner left the roster (an open removal case closes with it). Since
        version 2 recorded on the institution's roster: ``institution_id`` names the
        institution."""

        event_type = "InstitutionPractitionerReleased"
        class_version = 2

        institution_id: str
        hire_id: str
        practitioner_ref: str
        released_on: date
        reason: str

        payload_schema = {"institution_id": {"format": "uuid"}}

    def _refuse_if_closed(self, action: str, institution_status: str) -> None:
        if institution_status == _DEREGISTERED or self.closed_on is not None:
            raise DomainRuleViolated(f"cannot {action}: the institution is deregistered",
                                     state=_DEREGISTERED)

    def check_can_hire(self, practitioner_ref: str, institution_status: str) -> None:
        """Refuse (DomainRuleViolated) a hire the institution's state or the roster does not
        allow: checked before the practitioner's data is sealed, so a refused hire stores
        nothing. Any institution but a deregistered one may hire."""
        self._refuse_if_closed("hire staff", institution_status)
        if any(h["practitioner_ref"] == practitioner_ref
               and h["status"] in ("pending", "employed") for h in self.roster.values()):
            raise DomainRuleViolated("this practitioner is on the roster already",
                                     state=institution_status)

    def request_hire(self, hire_id: str, practitioner: dict[str, Any], role: str,
                     certificates: list[str], requested_on: date,
                     institution_status: str) -> None:
        self.check_can_hire(practitioner["ref"], institution_status)
        self._request_hire(institution_id=self.institution_id, hire_id=hire_id,
                           practitioner=practitioner, role=role, certificates=certificates,
                           requested_on=requested_on)

    @event(HireRequested)
    def _request_hire(self, institution_id: str, hire_id: str, practitioner: dict[str, Any],
                      role: str, certificates: list[str], requested_on: date) -> None:
        self.roster[hire_id] = _hire_entry(practitioner, role, certificates)

    def complete_background_check(self, hire_id: str, outcome: str, reference: str,
                                  institution_status: str) -> bool:
        """Apply the credit service's answer; False if no such hire is pending (a replay) or
        the institution is deregistered (an answer arriving after 注销 hires nobody)."""
        hire = self.roster.get(hire_id)
        if hire is None or hire["status"] != "pending":
            return False
        if institution_status == _DEREGISTERED or self.closed_on is not None:
            return False
        if outcome == "cleared":
            self._hire(institution_id=self.institution_id, hire_id=hire_id,
                       practitioner_ref=hire["practitioner_ref"], check_reference=reference)
        else:
            self._refuse_hire(institution_id=self.institution_id, hire_id=hire_id,
                              practitioner_ref=hire["practitioner_ref"],
                              ban_reference=reference)
        return True

    @event(Hired)
    def _hire(self, institution_id: str, hire_id: str, practitioner_ref: str,
              check_reference: str) -> None:
        _set_hire(self.roster, hire_id, status="employed")

    @event(HireRefused)
    def _refuse_hire(self, institution_id: str, hire_id: str, practitioner_ref: str,
                     ban_reference: str) -> None:
        _set_hire(self.roster, hire_id, status="refused", ban_reference=ban_reference)

    def release(self, hire_id: str, released_on: date, reason: str) -> None:
        """离岗: an employed practitioner leaves; their open removal cases close with it."""
        hire = self.roster.get(hire_id)
        if hire is None or hire["status"] != "employed":
            raise DomainRuleViolated(f"hire {hire_id} is not employed here",
                                     state=hire["status"] if hire else None)
        self._release(institution_id=self.institution_id, hire_id=hire_id,
                      practitioner_ref=hire["practitioner_ref"], released_on=released_on,
                      reason=reason)
        for case_id, case in list(self.staff_cases.items()):
            if case["practitioner_ref"] == hire["practitioner_ref"] and not case["closed_on"]:
                self._close_case(institution_id=self.institution_id, case_id=case_id,
                                 closed_on=released_on, resolution="practitioner released")

    @event(Released)
    def _release(self, institution_id: str, hire_id: str, practitioner_ref: str,
                 released_on: date, reason: str) -> None:
        _set_hire(self.roster, hire_id, status="released")

    def employs(self, practitioner_ref: str) -> bool:
        return any(h["practitioner_ref"] == practitioner_ref and h["status"] == "employed"
                   for h in self.roster.values())

    # ---- a barred practitioner on the roster (从业禁止) -------------------------------------
    class StaffRemovalCaseOpened(Aggregate.Event):
        """The credit service barred someone this institution employs: remove them by due_on.
        Since version 2 recorded on the institution's roster: ``institution_id`` names the
        institution."""

        event_type = "InstitutionStaffRemovalCaseOpened"
        class_version = 2

        institution_id: str
        case_id: str
        practitioner_ref: str
        ban_reference: str
        opened_on: date
        due_on: date

        payload_schema = {"institution_id": {"format": "uuid"}}

    class StaffRemovalCaseClosed(Aggregate.Event):
        """The barred practitioner no longer works here. Since version 2 recorded on the
        institution's roster: ``institution_id`` names the institution."""

        event_type = "InstitutionStaffRemovalCaseClosed"
        class_version = 2

        institution_id: str
        case_id: str
        closed_on: date
        resolution: str

        payload_schema = {"institution_id": {"format": "uuid"}}

    def open_staff_removal_case(self, case_id: str, practitioner_ref: str, ban_reference: str,
                                opened_on: date, due_on: date) -> bool:
        """Open a case if the barred person works here and none is open; else False."""
        if not self.employs(practitioner_ref):
            return False
        if any(c["ban_reference"] == ban_reference and not c["closed_on"]
               for c in self.staff_cases.values()):
            return False
        self._open_case(institution_id=self.institution_id, case_id=case_id,
                        practitioner_ref=practitioner_ref, ban_reference=ban_reference,
                        opened_on=opened_on, due_on=due_on)
        return True

    @event(StaffRemovalCaseOpened)
    def _open_case(self, institution_id: str, case_id: str, practitioner_ref: str,
                   ban_reference: str, opened_on: date, due_on: date) -> None:
        self.staff_cases[case_id] = _case_entry(practitioner_ref, ban_reference, opened_on,
                                                due_on)

    @event(StaffRemovalCaseClosed)
    def _close_case(self, institution_id: str, case_id: str, closed_on: date,
                    resolution: str) -> None:
        self.staff_cases[case_id] = {**self.staff_cases[case_id], "closed_on": closed_on}

    # ---- closed with the institution's deregistration (注销) -------------------------------
    class Closed(Aggregate.Event):
        """The roster closed with the institution's deregistration (注销): everyone employed
        was released and every open removal case closed (each its own event, before this)."""

        institution_id: str
        closed_on: date

        in_institution_history = False  # the record shows the deregistration itself
        payload_schema = {"institution_id": {"format": "uuid"}}

    def close(self, closed_on: date) -> None:
        """With the institution's deregistration: release every employed practitioner and
        close every open removal case, each with its own event, then close the roster."""
        if self.closed_on is not None:
            raise DomainRuleViolated("the roster is closed already: the institution is "
                                     "deregistered", state=_DEREGISTERED)
        for hire_id, hire in list(self.roster.items()):
            if hire["status"] == "employed":
                self.release(hire_id, closed_on, "deregistered")
        for case_id, case in list(self.staff_cases.items()):
            if not case["closed_on"]:
                self._close_case(institution_id=self.institution_id, case_id=case_id,
                                 closed_on=closed_on, resolution="institution deregistered")
        self._close(institution_id=self.institution_id, closed_on=closed_on)

    @event(Closed)
    def _close(self, institution_id: str, closed_on: date) -> None:
        self.closed_on = closed_on


# ---- an institution's monthly enrolment reports (月度在托报告) -------------------------------
class EnrolmentReports(Aggregate):
    """月度在托报告: an institution's monthly enrolment reports, a stream of its own beside the
    institution's. Each month is reported once and may then be corrected (the correction
    keeps the previous figures). A report must fit the institution's filed classes (places)
    and the carer ratios, and no month before the filing receipt, nor of an institution not
    filed (or suspended), may be reported: the institution's :class:`InstitutionFacts` are
    given by the application.

    Its events are published under the types subscribers have always received
    (``InstitutionEnrolmentReported``, ``InstitutionEnrolmentReportCorrected``): the envelope's
    aggregate is the reports, and ``institution_id`` in the payload names the institution
    (since version 2); version 3 adds ``health_managed_children`` (健康管理), None in the
    reports recorded before it was asked. Version 1 of each is the institution's own event,
    in the institution streams written before reports had streams of their own.
    """

    id_for = staticmethod(enrolment_reports_id_for)

    # Version 2 of the state: each month's figures have health_managed_children (None where
    # unknown: reported before the figure was asked, or carried over).
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        # Snapshots taken before the figure was asked: unknown for every month.
        for figures in state.get("months", {}).values():
            figures.setdefault("health_managed_children", None)

    class Opened(Aggregate.Created):
        """The institution's monthly reports have a stream of their own from now on."""

        institution_id: str

        in_institution_history = False
        payload_schema = {"institution_id": {"format": "uuid"}}

    @staticmethod
    def create_id(institution_id: str) -> uuid.UUID:
        return enrolment_reports_id_for(institution_id)

    @event(Opened)
    def __init__(self, institution_id: str):
        self.institution_id = str(institution_id)
        # The figures later rules need (month → {children, second_children,
        # third_children, health_managed_children}), not the whole reports (those are in the
        # events): the state stays small however many months are reported, which keeps
        # snapshots cheap. health_managed_children is None where unknown (a month reported
        # before the figure was asked, or carried over from the institution's stream).
        self.months: dict[str, dict[str, int | None]] = {}

    class CarriedOver(Aggregate.Event):
        """The months the institution's own stream recorded before reports had streams of
        their own (their figures), taken over as they stood at the institution's version
        ``institution_version``."""

        institution_id: str
        months: dict[str, Any]
        institution_version: int

        in_institution_history = False
        payload_schema = {"institution_id": {"format": "uuid"},
                          "institution_version": {"minimum": 1}}

        def apply(self, aggregate: EnrolmentReports) -> None:
            # The institution's stream never recorded health management: unknown.
            aggregate.months = {k: {"health_managed_children": None, **v}
                                for k, v in self.months.items()}

    @classmethod
    def for_institution(cls, institution: Institution) -> EnrolmentReports:
        """New reports of the institution (events pending), with the months the
        institution's own stream recorded carried over, if it recorded any."""
        reports = cls(institution_id=str(institution.id))
        if institution.enrolment:
            reports.trigger_event(
                cls.CarriedOver, institution_id=reports.institution_id,
                months={k: dict(v) for k, v in institution.enrolment.items()},
                institution_version=institution.version)
        return reports

    class Reported(Aggregate.Event):
        """月度在托报告: children by class and age band; second and third children; children
        under health management (健康管理). Since version 2 recorded in the institution's
        reports (the envelope's aggregate): ``institution_id`` names the institution. Since
        version 3 ``health_managed_children``: the enrolled children with a current health
        record (健康档案) and this year's health check, at most ``children``; null in a report
        recorded before version 3 (unknown)."""

        event_type = "InstitutionEnrolmentReported"
        class_version = 3

        institution_id: str
        month: str  # YYYY-MM
        classes: list[dict[str, Any]]
        children: int
        second_children: int
        third_children: int
        health_managed_children: int | None

        payload_schema = {"institution_id": {"format": "uuid"},
                          "health_managed_children": {"minimum": 0}}

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            # Reported before the figure was asked: unknown.
            state["health_managed_children"] = None

    class Corrected(Aggregate.Event):
        """A month already reported, corrected; the previous figures are kept. Since version 2
        recorded in the institution's reports: ``institution_id`` names the institution.
        Since version 3 ``health_managed_children`` (健康管理, as in the report; null in a
        correction recorded before version 3, and in ``previous`` where it was unknown)."""

        event_type = "InstitutionEnrolmentReportCorrected"
        class_version = 3

        institution_id: str
        month: str
        classes: list[dict[str, Any]]
        children: int
        second_children: int
        third_children: int
        health_managed_children: int | None
        previous: dict[str, Any]
        reason: str

        payload_schema = {"institution_id": {"format": "uuid"},
                          "health_managed_children": {"minimum": 0}}

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            # Corrected before the figure was asked: unknown.
            state["health_managed_children"] = None

    def _check(self, month: str, classes: list[dict[str, Any]], second_children: int,
               third_children: int, health_managed_children: int, facts: InstitutionFacts,
               standards: CareStandards) -> int:
        if facts.status not in (Status.FILED.value, Status.SUSPENDED.value):
            raise DomainRuleViolated(
                f"cannot report enrolment: the institution is {facts.status}",
                state=facts.status)
        filed_on = facts.filed_on
        if filed_on is None:  # a filed institution has its receipt: never so
            raise DomainRuleViolated("cannot report enrolment: no filing receipt",
                                     state=facts.status)
        if month_key(month) < (filed_on.year, filed_on.month):
            raise DomainRuleViolated(
                f"cannot report enrolment for {month}: the institution was filed in "
                f"{filed_on.year:04d}-{filed_on.month:02d} (filing receipt)", state=facts.status)
        children = check_enrolment(facts.kind, facts.filed_classes, classes, second_children,
                                   third_children, standards)
        check_health_managed(health_managed_children, children)
        return children

    def report(self, month: str, classes: list[dict[str, Any]], second_children: int,
               third_children: int, health_managed_children: int, facts: InstitutionFacts,
               standards: CareStandards = DEFAULT_STANDARDS) -> None:
        """Report a month (``YYYY-MM``; "2025-1" is "2025-01"), once."""
        month = normalise_month(month)
        if month in self.months:
            raise DomainRuleViolated(f"{month} is reported already: send a correction",
                                     state=facts.status)
        children = self._check(month, classes, second_children, third_children,
                               health_managed_children, facts, standards)
        self._report(institution_id=self.institution_id, month=month, classes=classes,
                     children=children, second_children=second_children,
                     third_children=third_children,
                     health_managed_children=health_managed_children)

    @event(Reported)
    def _report(self, institution_id: str, month: str, classes: list[dict[str, Any]],
                children: int, second_children: int, third_children: int,
                health_managed_children: int | None) -> None:
        self.months[month] = {"children": children, "second_children": second_children,
                              "third_children": third_children,
                              "health_managed_children": health_managed_children}

    def correct(self, month: str, classes: list[dict[str, Any]], second_children: int,
                third_children: int, health_managed_children: int, reason: str,
                facts: InstitutionFacts, standards: CareStandards = DEFAULT_STANDARDS) -> None:
        """Correct a month reported already, keeping its previous figures in the event."""
        month = normalise_month(month)
        if month not in self.months:
            raise DomainRuleViolated(f"{month} was never reported: report it first",
                                     state=facts.status)
        children = self._check(month, classes, second_children, third_children,
                               health_managed_children, facts, standards)
        self._correct(institution_id=self.institution_id, month=month, classes=classes,
                      children=children, second_children=second_children,
                      third_children=third_children,
                      health_managed_children=health_managed_children,
                      previous=dict(self.months[month]), reason=reason)

    @event(Corrected)
    def _correct(self, institution_id: str, month: str, classes: list[dict[str, Any]],
                 children: int, second_children: int, third_children: int,
                 health_managed_children: int | None, previous: dict[str, Any],
                 reason: str) -> None:
        self.months[month] = {"children": children, "second_children": second_children,
                              "third_children": third_children,
                              "health_managed_children": health_managed_children}


# ---- a credit code's registration cases (登记案卷) -----------------------------------------
def check_new_case_allowed(credit_code: str, latest_case: str, latest_status: str) -> None:
    """A credit code has one open registration case at a time: it may register again only
    once its latest case is deregistered (注销). Refused naming the open case."""
    if latest_status != Status.DEREGISTERED.value:
        raise DomainRuleViolated(
            f"credit code {credit_code} has an open registration case: institution "
            f"{latest_case} is {latest_status}; the code can register again only after that "
            "case is deregistered (注销)", state=latest_status,
            details={"credit_code": credit_code, "open_case": latest_case})


class RegistrationCases(Aggregate):
    """The registration cases (登记案卷) of one unified social credit code, in order.

    A provider deregistered (注销) may register again under its code: that opens a new case,
    a new :class:`Institution` with an id of its own (:func:`institution_id_for` of the code
    and the case number) and its own history; the earlier cases stay as they were.

    A code with one case needs no index: its case is ``institution_id_for(code)`` (every
    institution registered or imported before cases existed is such a first case). The index
    opens when a second case does, with the first case carried in, and every later case is
    added in the same transaction as the new institution's registration. Two registrations
    racing for the code's next case write the same index version (and the same new id): one
    is recorded, the other fails on the version and, run again, finds the winner's case open.
    """

    class Opened(Aggregate.Created):
        """The code's cases are indexed from now on, starting with its first case
        (registered when a code had one case only)."""

        credit_code: str
        first_case: str

        payload_schema = {"first_case": {"format": "uuid"}}

    class CaseOpened(Aggregate.Event):
        """A new registration case of the code, after 注销 of the previous one."""

        case_number: int
        institution_id: str

        payload_schema = {"case_number": {"minimum": 2}, "institution_id": {"format": "uuid"}}

    @staticmethod
    def create_id(credit_code: str, **_: Any) -> uuid.UUID:
        return registration_cases_id_for(credit_code)

    @event(Opened)
    def __init__(self, credit_code: str, first_case: str):
        self.credit_code = credit_code
        self.cases: list[str] = [first_case]  # institution ids, case 1 first

    def open_case(self, latest_status: str) -> uuid.UUID:
        """Open the next case, given the status of the latest one (which must be
        deregistered); return the new case's institution id."""
        check_new_case_allowed(self.credit_code, self.cases[-1], latest_status)
        number = len(self.cases) + 1
        institution_id = institution_id_for(self.credit_code, number)
        self._open_case(case_number=number, institution_id=str(institution_id))
        return institution_id

    @event(CaseOpened)
    def _open_case(self, case_number: int, institution_id: str) -> None:
        self.cases = [*self.cases, institution_id]


# ---- where a practitioner works (从业人员在岗记录) ------------------------------------------
_EMPLOYMENT_NAMESPACE = uuid.UUID("5d0e8f36-2b1c-4a7e-8c39-71f4a6e2d0b5")
HIRE_STATUSES = ("pending", "employed", "refused", "released")  # 待审查, 在岗, 拒绝, 离岗


def employment_record_id_for(practitioner_ref: str) -> uuid.UUID:
    """One employment record per practitioner: the id is derived from their person ref, so
    two first hires of the same person at once collide in the event store (and one retries)."""
    return uuid.uuid5(_EMPLOYMENT_NAMESPACE, practitioner_ref)


class EmploymentRecord(Aggregate):
    """从业人员在岗记录: every hire of one practitioner (从业人员), at any institution, with its
    status; the institutions where they are employed now (在岗) follow from it.

    It answers "who employs this person" from the event store, for decisions that must not
    miss anyone (a ban, 从业禁止, opens a removal case at each employer), without reading the
    query tables. It holds no rule of its own: each institution's roster decides, and the
    application records the matching change here in the same transaction as the
    roster's event (see ``RegistrationApplication.save``).
    """

    class Opened(Aggregate.Created):
        """The practitioner's employment record opened, with their first hire seen."""

        practitioner_ref: str

    @staticmethod
    def create_id(practitioner_ref: str) -> uuid.UUID:
        return employment_record_id_for(practitioner_ref)

    @event(Opened)
    def __init__(self, practitioner_ref: str):
        self.practitioner_ref = practitioner_ref
        self.hires: dict[str, dict[str, str]] = {}  # hire id → {institution_id, status}

    class HireRequested(Aggregate.Event):
        """A hire of the practitioner waits for its background check (背景审查)."""

        institution_id: str
        hire_id: str

    class Hired(Aggregate.Event):
        """The practitioner is on the institution's roster (在岗)."""

        institution_id: str
        hire_id: str

    class HireRefused(Aggregate.Event):
        """The institution's hire of the practitioner was refused (a ban, 从业禁止)."""

        institution_id: str
        hire_id: str

    class Released(Aggregate.Event):
        """The practitioner left the institution's roster (离岗), deregistration included."""

        institution_id: str
        hire_id: str

    class HiresCarriedOver(Aggregate.Event):
        """Hires recorded before employment records existed, taken over from the
        institutions' own events (each ``{institution_id, hire_id, status}``) up to
        notification ``up_to`` of the log. A hire this record knows already is never
        carried over: what it knows is newer."""

        hires: list[dict[str, Any]]
        up_to: int

        payload_schema = {"hires": {"items": {
            "type": "object", "additionalProperties": False,
            "required": ["hire_id", "institution_id", "status"],
            "properties": {"institution_id": {"type": "string"}, "hire_id": {"type": "string"},
                           "status": {"enum": list(HIRE_STATUSES)}}}}}

    def note_hire(self, institution_id: str, hire_id: str, status: str) -> bool:
        """Record a hire's new status (from the roster's event); False if it has it."""
        if status not in HIRE_STATUSES:
            raise ValueError(f"no hire status {status!r}")
        known = self.hires.get(hire_id)
        if known is not None and known["status"] == status:
            return False
        {"pending": self._requested, "employed": self._hired, "refused": self._refused,
         "released": self._released}[status](institution_id=str(institution_id),
                                             hire_id=hire_id)
        return True

    def _set(self, institution_id: str, hire_id: str, status: str) -> None:
        self.hires[hire_id] = {"institution_id": institution_id, "status": status}

    @event(HireRequested)
    def _requested(self, institution_id: str, hire_id: str) -> None:
        self._set(institution_id, hire_id, "pending")

    @event(Hired)
    def _hired(self, institution_id: str, hire_id: str) -> None:
        self._set(institution_id, hire_id, "employed")

    @event(HireRefused)
    def _refused(self, institution_id: str, hire_id: str) -> None:
        self._set(institution_id, hire_id, "refused")

    @event(Released)
    def _released(self, institution_id: str, hire_id: str) -> None:
        self._set(institution_id, hire_id, "released")

    def carry_over(self, hires: list[dict[str, Any]], up_to: int) -> bool:
        """Take over earlier hires (``{institution_id, hire_id, status}``) this record does
        not know; False if there are none."""
        unknown = [{"institution_id": str(h["institution_id"]), "hire_id": h["hire_id"],
                    "status": h["status"]} for h in hires if h["hire_id"] not in self.hires]
        if not unknown:
            return False
        self._carry_over(hires=unknown, up_to=up_to)
        return True

    @event(HiresCarriedOver)
    def _carry_over(self, hires: list[dict[str, Any]], up_to: int) -> None:
        for h in hires:
            self._set(h["institution_id"], h["hire_id"], h["status"])

    @property
    def employers(self) -> list[str]:
        """The institutions where the practitioner is employed now (在岗), sorted."""
        return sorted({h["institution_id"] for h in self.hires.values()
                       if h["status"] == "employed"})


#: Each event that sets a hire's status, with the status: the roster's own, and the
#: institution's own (version 1, recorded in the institution's stream before rosters had
#: streams of their own).
_HIRE_STATUS_BY_EVENT: dict[type, str] = {
    Roster.HireRequested: "pending", Roster.Hired: "employed",
    Roster.HireRefused: "refused", Roster.Released: "released",
    Institution.PractitionerHireRequested: "pending", Institution.PractitionerHired: "employed",
    Institution.PractitionerHireRefused: "refused",
    Institution.PractitionerReleased: "released",
}


def roster_changes(events: Any) -> list[tuple[str, str, str, str]]:
    """The hire statuses the events set, as ``(practitioner ref, institution id, hire id,
    status)``, in order: what the practitioners' employment records must note. The
    institution is the one a roster's event names, or for an institution's own (earlier)
    event, the institution whose stream it is in."""
    changes = []
    for e in events:
        status = _HIRE_STATUS_BY_EVENT.get(type(e))
        if status is None:
            continue
        ref = e.practitioner["ref"] if status == "pending" else e.practitioner_ref
        institution_id = getattr(e, "institution_id", None) or e.originator_id
        changes.append((ref, str(institution_id), e.hire_id, status))
    return changes


#: The topics of the events that change a hire's status (to find them in the log).
ROSTER_EVENT_TOPICS = tuple(get_topic(cls) for cls in _HIRE_STATUS_BY_EVENT)

_INSTITUTION_TOPIC = get_topic(Institution)
