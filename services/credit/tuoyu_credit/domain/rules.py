"""The configurable numbers of the credit system, held as data and passed into commands.

No score, band, deduction or period is a literal inside an aggregate: the application loads
:class:`ScoringRules` and :class:`ListingRules` from configuration (``from_dict``) and hands
them to each command, and every event records the outcome (the points applied, the dates
computed), so a later change of the rules never rewrites history.

The defaults are placeholders to be confirmed against the district's published credit
measures; they are not taken from a regulation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Self

from tuoyu_shared.validation import FieldError, ValidationFailed

GRADES = ("A", "B", "C", "D")


class Severity(StrEnum):
    """Severity of an inspection finding, as the inspection service records it."""

    MINOR = "minor"
    MAJOR = "major"
    SERIOUS = "serious"
    CRITICAL = "critical"


class CauseType(StrEnum):
    """Upstream facts that change an institution's credit score."""

    FINDING_RECORDED = "finding_recorded"  # inspection finding, with a severity
    RECTIFICATION_OVERDUE = "rectification_overdue"  # 整改逾期
    SUBSIDY_CLAWBACK_FRAUD = "subsidy_clawback_fraud"  # subsidy clawed back for fraud (骗补)
    INSPECTION_REFUSED = "inspection_refused"  # refused or obstructed an inspection
    DEMONSTRATION_GRANTED = "demonstration_granted"  # 示范 status granted
    CLEAN_INSPECTION_PERIOD = "clean_inspection_period"  # no findings over a whole period


def _default_grade_floors() -> Mapping[str, int]:
    return {"A": 110, "B": 90, "C": 70, "D": 0}


def _default_finding_deductions() -> Mapping[str, int]:
    return {"minor": 2, "major": 5, "serious": 10, "critical": 20}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_mapping(value: object, name: str, keys: tuple[str, ...],
                   errors: list[FieldError]) -> dict[str, int] | None:
    if not isinstance(value, Mapping):
        errors.append(FieldError(name, f"must be an object, got {type(value).__name__}",
                                 "invalid_type"))
        return None
    for key in value:
        if key not in keys:
            errors.append(FieldError(f"{name}.{key}", f"is not one of {', '.join(keys)}",
                                     "invalid_choice"))
    out: dict[str, int] = {}
    for key in keys:
        if key not in value:
            errors.append(FieldError(f"{name}.{key}", "is required", "required"))
        elif not _is_int(value[key]) or value[key] < 0:
            errors.append(FieldError(f"{name}.{key}", f"must be a non-negative integer, got "
                                     f"{value[key]!r}", "invalid_type"))
        else:
            out[key] = value[key]
    return out if len(out) == len(keys) else None


def _from_dict(cls: type[Any], data: object) -> Any:
    if not isinstance(data, Mapping):
        raise ValidationFailed([FieldError("rules", "must be an object", "invalid_type")])
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = [FieldError(str(key), "is not a setting of " + cls.__name__, "invalid_choice")
               for key in data if key not in known]
    try:
        rules = cls(**{k: v for k, v in data.items() if k in known})
    except ValidationFailed as failed:
        raise ValidationFailed(unknown + failed.errors) from None
    if unknown:
        raise ValidationFailed(unknown)
    return rules


@dataclass(frozen=True)
class ScoringRules:
    """How upstream facts move an institution's score, and the score bands of the grades.

    Deductions and additions are given as non-negative points. The score is kept within
    ``[0, max_score]``. ``grade_floors`` gives the lowest score of each grade; ``D`` is 0
    (it may be left out of a configuration) and the floors fall strictly from A to D.
    """

    initial_score: int = 100
    max_score: int = 120
    grade_floors: Mapping[str, int] = field(default_factory=_default_grade_floors)
    finding_deductions: Mapping[str, int] = field(default_factory=_default_finding_deductions)
    overdue_rectification_deduction: int = 10
    fraud_clawback_deduction: int = 30
    refused_inspection_deduction: int = 20
    demonstration_addition: int = 10
    clean_period_addition: int = 5

    def __post_init__(self) -> None:
        errors: list[FieldError] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("grade_floors", "finding_deductions"):
                continue
            if not _is_int(value) or value < 0:
                errors.append(FieldError(f.name, f"must be a non-negative integer, got "
                                         f"{value!r}", "invalid_type"))
        floors_given = self.grade_floors
        if isinstance(floors_given, Mapping) and "D" not in floors_given:
            floors_given = {**floors_given, "D": 0}
        floors = _check_mapping(floors_given, "grade_floors", GRADES, errors)
        deductions = _check_mapping(self.finding_deductions, "finding_deductions",
                                    tuple(s.value for s in Severity), errors)
        if not errors:
            if self.max_score < 1:
                errors.append(FieldError("max_score", "must be at least 1", "out_of_range"))
            if self.initial_score > self.max_score:
                errors.append(FieldError("initial_score", f"must be at most max_score "
                                         f"({self.max_score})", "out_of_range"))
        if floors is not None:
            if floors["D"] != 0:
                errors.append(FieldError("grade_floors.D", "must be 0", "out_of_range"))
            for higher, lower in zip(GRADES, GRADES[1:], strict=False):
                if floors[higher] <= floors[lower]:
                    errors.append(FieldError(f"grade_floors.{higher}", f"must be above the "
                                             f"floor of {lower} ({floors[lower]})",
                                             "out_of_range"))
            if _is_int(self.max_score) and floors["A"] > self.max_score:
                errors.append(FieldError("grade_floors.A", f"must be at most max_score "
                                         f"({self.max_score})", "out_of_range"))
        if errors:
            raise ValidationFailed(errors)
        object.__setattr__(self, "grade_floors", MappingProxyType(dict(floors or {})))
        object.__setattr__(self, "finding_deductions", MappingProxyType(dict(deductions or {})))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rules from configuration; missing settings take the defaults, unknown ones are
        refused. Raises :class:`ValidationFailed` naming every problem."""
        return _from_dict(cls, data)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v)
                for f in dataclasses.fields(self)}

    def clamp(self, score: int) -> int:
        return max(0, min(self.max_score, score))

    def grade_for(self, score: int) -> str:
        for grade in GRADES:
            if score >= self.grade_floors[grade]:
                return grade
        return GRADES[-1]

    def points_for(self, cause_type: CauseType, details: Mapping[str, Any]) -> tuple[int, str]:
        """The signed points a cause moves the score by, and a reason in words."""
        if cause_type is CauseType.FINDING_RECORDED:
            severity = details.get("severity")
            if severity not in self.finding_deductions:
                listed = ", ".join(repr(s) for s in self.finding_deductions)
                raise FieldError("severity", f"must be one of {listed}, got {severity!r}",
                                 "invalid_choice" if severity is not None else "required")
            return -self.finding_deductions[severity], f"inspection finding ({severity})"
        points, reason = {
            CauseType.RECTIFICATION_OVERDUE: (-self.overdue_rectification_deduction,
                                              "rectification overdue"),
            CauseType.SUBSIDY_CLAWBACK_FRAUD: (-self.fraud_clawback_deduction,
                                               "subsidy clawed back for fraud"),
            CauseType.INSPECTION_REFUSED: (-self.refused_inspection_deduction,
                                           "inspection refused"),
            CauseType.DEMONSTRATION_GRANTED: (self.demonstration_addition,
                                              "demonstration status granted"),
            CauseType.CLEAN_INSPECTION_PERIOD: (self.clean_period_addition,
                                                "clean inspection period"),
        }[cause_type]
        return points, reason


@dataclass(frozen=True)
class ListingRules:
    """Periods of the listing procedure.

    ``response_window_days``: calendar days after the prior notice (告知) during which the
    institution may state its case (陈述申辩); the last day to respond is the notice date plus
    this many days. Where a regulation counts working days, the application converts them
    into calendar days before it configures this.
    """

    response_window_days: int = 7

    def __post_init__(self) -> None:
        value = self.response_window_days
        if not _is_int(value) or value < 1:
            raise ValidationFailed([FieldError("response_window_days", f"must be a positive "
                                               f"integer, got {value!r}", "out_of_range")])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return _from_dict(cls, data)
