"""Eligibility and entitlement (资格审核与核定), a pure function of what the service knows: the
program version, the institution's standing, the request and the children's facts. Every
refusal names the rule and the fact it rests on."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .common import month_start, months_of_age
from .program import GRADES, ProgramKind

_BY_ORDER = {"2": "second_children", "3": "third_children"}


def refusal(rule: str, fact: str) -> dict[str, str]:
    return {"rule": rule, "fact": fact}


def institution_refusals(terms: Mapping[str, Any], standing: Any) -> list[dict[str, str]]:
    found = []
    if standing is None:
        return [refusal("institution_known", "the subsidy service has not heard of the "
                                             "institution from registration")]
    if standing.status != "filed":
        found.append(refusal("institution_filed",
                             f"the institution's status is {standing.status} (filed and not "
                             "suspended or deregistered is required)"))
    if terms["requires_affordable"] and not standing.affordable:
        found.append(refusal("affordable_designation",
                             "the institution is not designated affordable (普惠)"))
    if standing.dishonesty_listings:
        found.append(refusal("not_seriously_dishonest",
                             "the institution is on the serious-dishonesty list (listing "
                             f"{', '.join(standing.dishonesty_listings)})"))
    worst = terms["max_grade"]
    if standing.grade is not None and GRADES.index(standing.grade) > GRADES.index(worst):
        found.append(refusal("credit_grade",
                             f"the institution's credit grade is {standing.grade} (at most "
                             f"{worst} is paid)"))
    return found


def assess(kind: str, terms: Mapping[str, Any], standing: Any, request: Mapping[str, Any],
           children: Mapping[str, Mapping[str, Any]], taken: Mapping[tuple[str, str], str],
           ) -> dict[str, Any]:
    """``{"eligible", "amount_fen", "lines", "refusals"}``. ``children``: child ref →
    ``{"birth_date"}``; ``taken``: (child ref, month) → the institution that claimed it
    first (duplicate claims)."""
    refusals = institution_refusals(terms, standing)
    lines: list[dict[str, Any]] = []
    if kind == ProgramKind.OPENING_GRANT:
        lines.append({"line": "opening", "amount_fen": terms["amount_fen"], "refusal": None})
    elif kind == ProgramKind.DEMONSTRATION_AWARD:
        level = request["level"]
        amount = terms["amounts_fen_by_level"].get(level)
        refused = None
        if amount is None:
            refused = refusal("award_level", f"the program pays no award for level {level}")
        elif standing is not None and level not in standing.demonstration_levels:
            refused = refusal("demonstration_level",
                              f"the institution holds no {level} demonstration level "
                              f"(it holds: {', '.join(standing.demonstration_levels) or 'none'})")
        lines.append({"line": f"award:{level}", "amount_fen": amount or 0, "refusal": refused})
    elif kind == ProgramKind.OPERATING_GRANT:
        for month in request["months"]:
            lines.append(_operating_line(terms, standing, month))
    elif kind == ProgramKind.FEE_SUBSIDY:
        lines.extend(_fee_lines(terms, standing, request["children"], children, taken))
    for line in lines:
        if line["refusal"] is not None:
            line["amount_fen"] = 0
    accepted = [line for line in lines if line["refusal"] is None]
    amount = sum(line["amount_fen"] for line in accepted)
    if not accepted and not refusals:
        refusals.append(refusal("nothing_payable", "no line of the application can be paid"))
    return {"eligible": not refusals and amount > 0, "amount_fen": amount if not refusals else 0,
            "lines": lines, "refusals": refusals}


def _operating_line(terms: Mapping[str, Any], standing: Any, month: str) -> dict[str, Any]:
    line: dict[str, Any] = {"line": f"month:{month}", "month": month, "amount_fen": 0,
                            "refusal": None}
    if month not in terms["claim_months"]:
        line["refusal"] = refusal("claim_month", f"{month} is not a month the program pays")
        return line
    reported = standing.enrolment.get(month) if standing is not None else None
    if reported is None:
        line["refusal"] = refusal("enrolment_reported", f"no enrolment reported for {month}")
        return line
    line["children"] = reported["children"]
    line["amount_fen"] = reported["children"] * terms["rate_fen_per_child_month"]
    if line["amount_fen"] == 0:
        line["refusal"] = refusal("enrolment_reported", f"no child enrolled in {month}")
    return line


def _fee_lines(terms: Mapping[str, Any], standing: Any, requested: Sequence[Mapping[str, Any]],
               children: Mapping[str, Mapping[str, Any]],
               taken: Mapping[tuple[str, str], str]) -> list[dict[str, Any]]:
    lines = []
    per_month: Counter[str] = Counter()
    per_order: Counter[tuple[str, str]] = Counter()
    seen: set[tuple[str, str]] = set()
    for claim in requested:
        ref, month, order = claim["child_ref"], claim["month"], str(claim["birth_order"])
        line: dict[str, Any] = {"line": f"child:{ref}:{month}", "child_ref": ref,
                                "month": month, "birth_order": int(order),
                                "evidence": claim["evidence"], "amount_fen": 0,
                                "refusal": None}
        lines.append(line)
        rate = terms["rates_fen_by_birth_order"].get(order)
        reported = standing.enrolment.get(month) if standing is not None else None
        birth: dt.date = children[ref]["birth_date"]
        start = month_start(month)
        if (ref, month) in seen:
            line["refusal"] = refusal("one_claim_per_child_month",
                                      f"the child is claimed twice for {month} here")
        elif month not in terms["claim_months"]:
            line["refusal"] = refusal("claim_month", f"{month} is not a month the program pays")
        elif rate is None:
            line["refusal"] = refusal("birth_order", f"the program pays no rate for birth order "
                                                     f"{order}")
        elif birth > _month_end(start):
            line["refusal"] = refusal("child_age", f"the child was born after {month}")
        elif months_of_age(birth, start) >= terms["max_age_months"]:
            line["refusal"] = refusal(
                "child_age", f"the child is {months_of_age(birth, start)} months old on "
                             f"{start.isoformat()} (under {terms['max_age_months']} is paid)")
        elif (ref, month) in taken:
            line["refusal"] = refusal("child_claimed_elsewhere",
                                      f"the child is claimed for {month} by institution "
                                      f"{taken[(ref, month)]} already")
        elif reported is None:
            line["refusal"] = refusal("enrolment_reported", f"no enrolment reported for {month}")
        elif per_month[month] + 1 > reported["children"]:
            line["refusal"] = refusal("enrolment_cap",
                                      f"more children claimed for {month} than the "
                                      f"{reported['children']} enrolment reported")
        elif per_order[(month, order)] + 1 > reported[_BY_ORDER[order]]:
            line["refusal"] = refusal(
                "enrolment_cap", f"more birth-order-{order} children claimed for {month} than "
                                 f"the enrolment reported ({reported[_BY_ORDER[order]]})")
        else:
            line["amount_fen"] = rate
            per_month[month] += 1
            per_order[(month, order)] += 1
        seen.add((ref, month))
    return lines


def _month_end(start: dt.date) -> dt.date:
    following = dt.date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return following - dt.timedelta(days=1)
