"""Subsidy programs (补助项目) and their yearly versions: configuration recorded as events, so
an application is assessed on the version it was made under, never on a later one.

Four kinds, from the seeds:

- ``opening_grant`` (一次性开办补助): once per qualifying affordable institution
  (``amount_fen``; 30,000 yuan per institution in the 威海 seed);
- ``operating_grant`` (运营补助): per enrolled child per month (``rate_fen_per_child_month``,
  the public-kindergarten rate in the seed), for the months the institution reported;
- ``fee_subsidy`` (二孩、三孩保育费补助): per child per month by birth order
  (``rates_fen_by_birth_order``: at least 300 yuan a month in the seed), for children placed at
  the affordable guide price;
- ``demonstration_award`` (示范奖补): once per institution and level
  (``amounts_fen_by_level``: national, provincial, city, district).

Each version names its fund sources (``fund_sources``: fund and percent share, summing to 100),
the months that may be claimed, the notice period (公示, days) and its eligibility rules
(``requires_affordable``, ``max_grade``: the worst credit grade still paid).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from eventsourcing.domain import Aggregate, event

from tuoyu_shared.validation import FieldError

from .common import check_month

GRADES = ("A", "B", "C", "D")
LEVELS = ("national", "provincial", "city", "district")
_PROGRAM_NAMESPACE = uuid.UUID("2b1c9e7d-4f3a-4e8b-9d6c-5a4b3c2d1e0f")


class ProgramKind(StrEnum):
    OPENING_GRANT = "opening_grant"
    OPERATING_GRANT = "operating_grant"
    FEE_SUBSIDY = "fee_subsidy"
    DEMONSTRATION_AWARD = "demonstration_award"


def program_id_for(code: str) -> uuid.UUID:
    return uuid.uuid5(_PROGRAM_NAMESPACE, code)


def _positive_fen(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FieldError(field, "must be a whole number of fen, at least 1", "out_of_range")
    if value > 10**12:
        raise FieldError(field, "is beyond any subsidy (10^12 fen)", "out_of_range")
    return value


def check_terms(kind: str, terms: Mapping[str, Any]) -> dict[str, Any]:
    """A version's terms, checked for its kind; returns them as plain data."""
    if kind not in {k.value for k in ProgramKind}:
        raise FieldError("kind", f"must be one of {', '.join(k.value for k in ProgramKind)}",
                         "invalid_choice")
    out: dict[str, Any] = {}
    if kind == ProgramKind.OPENING_GRANT:
        out["amount_fen"] = _positive_fen(terms.get("amount_fen"), "terms.amount_fen")
    elif kind == ProgramKind.OPERATING_GRANT:
        out["rate_fen_per_child_month"] = _positive_fen(
            terms.get("rate_fen_per_child_month"), "terms.rate_fen_per_child_month")
    elif kind == ProgramKind.FEE_SUBSIDY:
        rates = terms.get("rates_fen_by_birth_order")
        if not isinstance(rates, Mapping) or not rates:
            raise FieldError("terms.rates_fen_by_birth_order", "is required (e.g. {\"2\": "
                                                               "30000, \"3\": 50000})", "required")
        out["rates_fen_by_birth_order"] = {}
        for order, rate in rates.items():
            if order not in ("2", "3"):
                raise FieldError(f"terms.rates_fen_by_birth_order.{order}",
                                 "birth orders are 2 and 3", "invalid_choice")
            out["rates_fen_by_birth_order"][order] = _positive_fen(
                rate, f"terms.rates_fen_by_birth_order.{order}")
        out["max_age_months"] = int(terms.get("max_age_months", 36))
    elif kind == ProgramKind.DEMONSTRATION_AWARD:
        amounts = terms.get("amounts_fen_by_level")
        if not isinstance(amounts, Mapping) or not amounts:
            raise FieldError("terms.amounts_fen_by_level", "is required", "required")
        out["amounts_fen_by_level"] = {}
        for level, amount in amounts.items():
            if level not in LEVELS:
                raise FieldError(f"terms.amounts_fen_by_level.{level}",
                                 f"levels are {', '.join(LEVELS)}", "invalid_choice")
            out["amounts_fen_by_level"][level] = _positive_fen(
                amount, f"terms.amounts_fen_by_level.{level}")
    funds = terms.get("fund_sources")
    if not isinstance(funds, list) or not funds:
        raise FieldError("terms.fund_sources", "needs at least one fund source", "required")
    total = 0
    seen = set()
    for i, fund in enumerate(funds):
        if not isinstance(fund, Mapping) or not isinstance(fund.get("fund"), str) \
                or not fund["fund"]:
            raise FieldError(f"terms.fund_sources[{i}].fund", "is required", "required")
        share = fund.get("share_percent")
        if isinstance(share, bool) or not isinstance(share, int) or not 1 <= share <= 100:
            raise FieldError(f"terms.fund_sources[{i}].share_percent", "must be 1..100",
                             "out_of_range")
        if fund["fund"] in seen:
            raise FieldError(f"terms.fund_sources[{i}].fund", "names a fund twice",
                             "duplicate")
        seen.add(fund["fund"])
        total += share
    if total != 100:
        raise FieldError("terms.fund_sources", f"shares must sum to 100, got {total}",
                         "out_of_range")
    out["fund_sources"] = [{"fund": f["fund"], "share_percent": f["share_percent"]}
                           for f in funds]
    months = terms.get("claim_months") or []
    out["claim_months"] = [check_month(m, f"terms.claim_months[{i}]")
                           for i, m in enumerate(months)]
    if kind in (ProgramKind.OPERATING_GRANT, ProgramKind.FEE_SUBSIDY) and not months:
        raise FieldError("terms.claim_months", "names the months that may be claimed",
                         "required")
    notice = terms.get("notice_days", 7)
    if isinstance(notice, bool) or not isinstance(notice, int) or not 1 <= notice <= 90:
        raise FieldError("terms.notice_days", "must be 1..90 days", "out_of_range")
    out["notice_days"] = notice
    out["requires_affordable"] = bool(terms.get("requires_affordable",
                                                kind != ProgramKind.DEMONSTRATION_AWARD))
    grade = terms.get("max_grade", "C")
    if grade not in GRADES:
        raise FieldError("terms.max_grade", f"must be one of {', '.join(GRADES)}",
                         "invalid_choice")
    out["max_grade"] = grade
    return out


class SubsidyProgram(Aggregate):
    """A program and its versions (each immutable once published)."""

    class Created(Aggregate.Created):
        """A subsidy program opened (its versions follow)."""

        code: str
        kind: str
        title: str

    @event(Created)
    def __init__(self, code: str, kind: str, title: str) -> None:
        self.code = code
        self.kind = kind
        self.title = title
        self.versions: list[dict[str, Any]] = []

    @staticmethod
    def create_id(code: str, **_: Any) -> uuid.UUID:
        return program_id_for(code)

    class VersionPublished(Aggregate.Event):
        """A new version of the program's terms (rates, funds, months, notice, rules);
        applications keep the version they were made under."""

        code: str
        version: int
        year: int
        terms: dict
        document: str
        published_on: Any

    def publish(self, year: int, terms: Mapping[str, Any], document: str,
                published_on: Any) -> int:
        checked = check_terms(self.kind, terms)
        version = len(self.versions) + 1
        self._published(code=self.code, version=version, year=year, terms=checked,
                        document=document, published_on=published_on)
        return version

    def same_as_latest(self, year: int, terms: Mapping[str, Any], document: str) -> bool:
        if not self.versions:
            return False
        latest = self.versions[-1]
        return (latest["year"], latest["terms"], latest["document"]) == (
            year, check_terms(self.kind, terms), document)

    @event(VersionPublished)
    def _published(self, code: str, version: int, year: int, terms: dict, document: str,
                   published_on: Any) -> None:
        self.versions.append({"code": code, "version": version, "year": year, "terms": terms,
                              "document": document, "published_on": published_on})

    def current(self, year: int) -> dict[str, Any] | None:
        """The latest version for a year."""
        found = [v for v in self.versions if v["year"] == year]
        return found[-1] if found else None

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "kind": self.kind, "title": self.title,
                "versions": self.versions}
