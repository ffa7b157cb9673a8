"""The inspection service's rules with numbers: configuration, with where each comes from.

- ``draw_weights``: how much more often an institution of each credit grade is drawn for a
  random inspection (双随机: 差异化抽查, the lower the grade the more often; the weights are the
  district's own choice, set in its plan rules);
- ``rectification_working_days``: the deadline of a rectification order (整改通知) by the
  severity of its finding, in working days;
- ``escalation_working_days``: the new deadline each escalation step gives (约谈, 警告);
- ``publication_working_days``: a visit's result is made public (公示) at the latest this many
  working days after the visit ends (双随机、一公开: results public within 20 working days);
- ``pass_mark``: the lowest checklist score (out of 100) that passes a visit; a critical
  finding fails it whatever the score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tuoyu_shared.validation import FieldError

GRADES = ("A", "B", "C", "D")


class Severity(StrEnum):
    """How bad a finding is (the catalogue's ``severity``)."""

    MINOR = "minor"  # a record or routine lapse
    MAJOR = "major"  # a standard not met (e.g. the carer ratio)
    SERIOUS = "serious"  # a risk to children's safety or health
    CRITICAL = "critical"  # harm done or imminent danger: the visit fails


class EscalationStep(StrEnum):
    """The steps an overdue rectification is escalated through, in order."""

    INTERVIEW = "interview"  # 约谈: the person in charge summoned
    WARNING = "warning"  # 警告: a written warning
    REFERRAL = "referral"  # 移送处罚: referred for an administrative penalty


ESCALATION_ORDER = (EscalationStep.INTERVIEW, EscalationStep.WARNING, EscalationStep.REFERRAL)


def _default_weights() -> dict[str, int]:
    return {"A": 1, "B": 2, "C": 4, "D": 8}


def _default_deadlines() -> dict[str, int]:
    return {"minor": 20, "major": 15, "serious": 10, "critical": 5}


def _default_escalation() -> dict[str, int]:
    return {"interview": 10, "warning": 10}


@dataclass(frozen=True)
class InspectionRules:
    draw_weights: Mapping[str, int] = field(default_factory=_default_weights)
    #: The grade of an institution credit has not graded yet (a new institution).
    ungraded: str = "B"
    rectification_working_days: Mapping[str, int] = field(default_factory=_default_deadlines)
    escalation_working_days: Mapping[str, int] = field(default_factory=_default_escalation)
    publication_working_days: int = 20
    pass_mark: int = 60

    def __post_init__(self) -> None:
        for grade in GRADES:
            weight = self.draw_weights.get(grade)
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                raise FieldError(f"draw_weights.{grade}",
                                 f"must be a whole number of at least 1, got {weight!r}",
                                 "out_of_range")
        if set(self.draw_weights) - set(GRADES):
            raise FieldError("draw_weights", f"grades are {', '.join(GRADES)}", "unknown_field")
        if self.ungraded not in GRADES:
            raise FieldError("ungraded", f"must be one of {', '.join(GRADES)}", "invalid_choice")
        for severity in Severity:
            days = self.rectification_working_days.get(severity.value)
            if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 250:
                raise FieldError(f"rectification_working_days.{severity.value}",
                                 f"must be 1..250 working days, got {days!r}", "out_of_range")
        for step in (EscalationStep.INTERVIEW, EscalationStep.WARNING):
            days = self.escalation_working_days.get(step.value)
            if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 250:
                raise FieldError(f"escalation_working_days.{step.value}",
                                 f"must be 1..250 working days, got {days!r}", "out_of_range")
        if not isinstance(self.publication_working_days, int) or not (
                1 <= self.publication_working_days <= 250):
            raise FieldError("publication_working_days", "must be 1..250 working days",
                             "out_of_range")
        if not isinstance(self.pass_mark, int) or not 0 <= self.pass_mark <= 100:
            raise FieldError("pass_mark", "must be 0..100", "out_of_range")

    def weight_of(self, grade: str | None) -> int:
        return self.draw_weights[grade if grade in GRADES else self.ungraded]

    def as_dict(self) -> dict[str, Any]:
        return {"draw_weights": dict(self.draw_weights), "ungraded": self.ungraded,
                "rectification_working_days": dict(self.rectification_working_days),
                "escalation_working_days": dict(self.escalation_working_days),
                "publication_working_days": self.publication_working_days,
                "pass_mark": self.pass_mark}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InspectionRules:
        known = {"draw_weights", "ungraded", "rectification_working_days",
                 "escalation_working_days", "publication_working_days", "pass_mark"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FieldError(unknown[0], f"unknown rule; rules are {', '.join(sorted(known))}",
                             "unknown_field")
        defaults = cls()
        return cls(
            draw_weights={**defaults.draw_weights, **data.get("draw_weights", {})},
            ungraded=data.get("ungraded", defaults.ungraded),
            rectification_working_days={**defaults.rectification_working_days,
                                        **data.get("rectification_working_days", {})},
            escalation_working_days={**defaults.escalation_working_days,
                                     **data.get("escalation_working_days", {})},
            publication_working_days=data.get("publication_working_days",
                                              defaults.publication_working_days),
            pass_mark=data.get("pass_mark", defaults.pass_mark))
