"""The credit rules as configuration: ``TUOYU_CREDIT_RULES_FILE`` names a JSON file, else the
defaults of :mod:`tuoyu_credit.domain.rules` apply.

The file holds two objects, each optional and each with any subset of its settings::

    {
      "scoring": {"initial_score": 100, "max_score": 120,
                  "grade_floors": {"A": 110, "B": 90, "C": 70},
                  "finding_deductions": {"minor": 2, "major": 5, "serious": 10, "critical": 20},
                  "overdue_rectification_deduction": 10, "fraud_clawback_deduction": 30,
                  "refused_inspection_deduction": 20, "demonstration_addition": 10,
                  "clean_period_addition": 5},
      "listing": {"response_window_days": 7}
    }

``listing`` may give ``response_window_working_days`` instead of ``response_window_days``: the
window is then counted in working days (工作日, the State Council arrangement of
:mod:`tuoyu_shared.calendar_cn`) from the day of the notice, and turned into calendar days when
the notice is sent, so the event records the last day to respond as a date.

The yearly re-check of everyone on a roster is due once the last completed check is
``TUOYU_CREDIT_RECHECK_DAYS`` days old (default 365; :func:`recheck_days_from_env`).

A bad file (or a bad period) stops the service at start with every problem named
(:class:`RulesFileInvalid`): rules that silently fell back to defaults would score
institutions wrongly.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuoyu_credit.domain import ListingRules, ScoringRules
from tuoyu_shared.calendar_cn import WorkingCalendar
from tuoyu_shared.validation import FieldError, ValidationFailed

ENV_VAR = "TUOYU_CREDIT_RULES_FILE"
RECHECK_DAYS_VAR = "TUOYU_CREDIT_RECHECK_DAYS"
DEFAULT_RECHECK_DAYS = 365


class RulesFileInvalid(ValueError):
    """The rules file cannot be read or holds invalid settings."""


@dataclass(frozen=True)
class CreditRules:
    scoring: ScoringRules = field(default_factory=ScoringRules)
    listing: ListingRules = field(default_factory=ListingRules)
    #: When set, the response window is this many working days (see the module docstring).
    response_window_working_days: int | None = None

    def listing_rules_on(self, notified_on: dt.date, calendar: WorkingCalendar) -> ListingRules:
        """The listing rules for a notice sent on ``notified_on``."""
        if self.response_window_working_days is None:
            return self.listing
        last_day = calendar.add_working_days(notified_on, self.response_window_working_days)
        return ListingRules(response_window_days=(last_day - notified_on).days)

    def as_dict(self) -> dict[str, Any]:
        listing: dict[str, Any] = {"response_window_days": self.listing.response_window_days}
        if self.response_window_working_days is not None:
            listing = {"response_window_working_days": self.response_window_working_days}
        return {"scoring": self.scoring.as_dict(), "listing": listing}

    @classmethod
    def from_dict(cls, data: object) -> CreditRules:
        """Rules from a parsed configuration; raises :class:`ValidationFailed` naming every
        problem, with the section in the field path (``scoring.max_score``)."""
        if not isinstance(data, Mapping):
            raise ValidationFailed([FieldError("rules", "must be a JSON object",
                                               "invalid_type")])
        errors: list[FieldError] = [
            FieldError(str(key), "is not a section (scoring, listing)", "invalid_choice")
            for key in data if key not in ("scoring", "listing")]
        scoring = ScoringRules()
        try:
            scoring = ScoringRules.from_dict(data.get("scoring", {}))
        except ValidationFailed as failed:
            errors += [FieldError(f"scoring.{e.field}", e.reason, e.code) for e in failed.errors]
        listing_data = dict(data.get("listing", {})) if isinstance(
            data.get("listing", {}), Mapping) else data.get("listing")
        working_days = None
        listing = ListingRules()
        if isinstance(listing_data, dict) and "response_window_working_days" in listing_data:
            working_days = listing_data.pop("response_window_working_days")
            if "response_window_days" in listing_data:
                errors.append(FieldError("listing.response_window_days", "give either "
                                         "response_window_days or response_window_working_days",
                                         "conflict"))
            if isinstance(working_days, bool) or not isinstance(working_days, int) \
                    or working_days < 1:
                errors.append(FieldError("listing.response_window_working_days",
                                         f"must be a positive integer, got {working_days!r}",
                                         "out_of_range"))
                working_days = None
        try:
            listing = ListingRules.from_dict(listing_data)  # type: ignore[arg-type]
        except ValidationFailed as failed:
            errors += [FieldError(f"listing.{e.field}", e.reason, e.code) for e in failed.errors]
        if errors:
            raise ValidationFailed(errors)
        return cls(scoring=scoring, listing=listing, response_window_working_days=working_days)


def load_rules(path: str | Path | None = None,
               env: Mapping[str, str] | None = None) -> CreditRules:
    """The rules from ``path``, else from ``$TUOYU_CREDIT_RULES_FILE``, else the defaults."""
    if path is None:
        path = (env if env is not None else os.environ).get(ENV_VAR) or None
    if path is None:
        return CreditRules()
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RulesFileInvalid(f"cannot read the credit rules file {path}: {e}") from e
    try:
        return CreditRules.from_dict(data)
    except ValidationFailed as failed:
        raise RulesFileInvalid(f"invalid credit rules in {path}: {failed}") from failed


def recheck_days_from_env(env: Mapping[str, str] | None = None) -> int:
    """Days after a person's last completed check when the yearly re-check is due:
    ``$TUOYU_CREDIT_RECHECK_DAYS``, else 365. Anything but a positive whole number stops the
    start (:class:`RulesFileInvalid`)."""
    value = (env if env is not None else os.environ).get(RECHECK_DAYS_VAR) or None
    if value is None:
        return DEFAULT_RECHECK_DAYS
    try:
        days = int(value)
    except ValueError:
        days = 0
    if days < 1:
        raise RulesFileInvalid(f"{RECHECK_DAYS_VAR} must be a positive number of days, "
                               f"got {value!r}")
    return days
