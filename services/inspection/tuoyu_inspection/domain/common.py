"""What the inspection aggregates share."""

from __future__ import annotations

import re
import uuid

from tuoyu_shared.errors import DomainRuleViolated as DomainRuleViolated
from tuoyu_shared.validation import FieldError

#: The departments that inspect (the departments of :data:`tuoyu_shared.auth.ROLES`, and the
#: police, who join a visit where needed).
DEPARTMENTS = ("health", "market_regulation", "fire_rescue", "education", "police")

_PERIOD = re.compile(r"^([0-9]{4})(?:-(H[12]|Q[1-4]|0[1-9]|1[0-2]))?$")


def canonical_uuid(value: object, field: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise FieldError(field, f"must be a UUID, got {value!r}", "invalid_format") from None


def period_bounds(period: str, field: str = "period") -> tuple:
    """The first and last day of a plan period: a year (2026), a half (2026-H1), a quarter
    (2026-Q3) or a month (2026-07)."""
    import datetime as dt

    match = _PERIOD.match(period) if isinstance(period, str) else None
    if match is None:
        raise FieldError(field, "must be a year (2026), a half (2026-H1), a quarter (2026-Q3) "
                                "or a month (2026-07)", "invalid_format")
    year = int(match.group(1))
    part = match.group(2)
    if part is None:
        first_month, months = 1, 12
    elif part.startswith("H"):
        first_month, months = (int(part[1]) - 1) * 6 + 1, 6
    elif part.startswith("Q"):
        first_month, months = (int(part[1]) - 1) * 3 + 1, 3
    else:
        first_month, months = int(part), 1
    start = dt.date(year, first_month, 1)
    end_month = first_month + months
    end = (dt.date(year + 1, 1, 1) if end_month > 12 else dt.date(year, end_month, 1)) \
        - dt.timedelta(days=1)
    return start, end
