"""What the subsidy aggregates share: months, money splits, the rule error."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

from tuoyu_shared.errors import DomainRuleViolated as DomainRuleViolated
from tuoyu_shared.validation import FieldError

MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")


def check_month(value: object, field: str = "month") -> str:
    if not isinstance(value, str) or not MONTH.match(value):
        raise FieldError(field, "must be a month, YYYY-MM", "invalid_format")
    return value


def month_start(month: str) -> dt.date:
    year, m = month.split("-")
    return dt.date(int(year), int(m), 1)


def months_of_age(birth: dt.date, on: dt.date) -> int:
    """Completed months of age on a day."""
    months = (on.year - birth.year) * 12 + (on.month - birth.month)
    if on.day < birth.day:
        months -= 1
    return months


def split_fen(amount_fen: int, shares: Sequence[Mapping[str, object]]) -> dict[str, int]:
    """An amount split over fund sources by their percent shares, in whole fen; what rounding
    leaves goes to the first fund (the sum is always the amount)."""
    parts = {str(s["fund"]): amount_fen * int(s["share_percent"]) // 100  # type: ignore[call-overload]
             for s in shares}
    first = str(shares[0]["fund"])
    parts[first] += amount_fen - sum(parts.values())
    return parts
