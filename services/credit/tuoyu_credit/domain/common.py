"""What both credit aggregates share: the rule error and small checks of command arguments.

Bad input raises :class:`~tuoyu_shared.validation.FieldError` (a field, a reason, a code, as in
:mod:`tuoyu_shared.validation`); a command that the state or a rule does not allow raises
:class:`~tuoyu_shared.errors.DomainRuleViolated` naming the state it was refused in. Either
way nothing is recorded: every command checks everything before it triggers its first event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

# The shared rule error (HTTP 409, code rule_violated), which credit's aggregates raise.
from tuoyu_shared.errors import DomainRuleViolated as DomainRuleViolated
from tuoyu_shared.validation import FieldError

E = TypeVar("E", bound=StrEnum)

TEXT_MAX_LENGTH = 4000


def require_text(value: object, field: str, max_length: int = TEXT_MAX_LENGTH) -> str:
    """A non-blank string, stripped."""
    if value is None:
        raise FieldError(field, "is required", "required")
    if not isinstance(value, str):
        raise FieldError(field, f"must be a string, got {type(value).__name__}", "invalid_type")
    value = value.strip()
    if not value:
        raise FieldError(field, "is required", "required")
    if len(value) > max_length:
        raise FieldError(field, f"must be at most {max_length} characters, got {len(value)}",
                         "too_long")
    return value


def require_references(value: object, field: str) -> list[str]:
    """At least one reference (a document number, a file id): a list of non-blank strings."""
    if not isinstance(value, (list, tuple)):
        raise FieldError(field, f"must be a list of references, got {type(value).__name__}",
                         "invalid_type")
    if not value:
        raise FieldError(field, "needs at least one reference", "required")
    return [require_text(item, f"{field}[{i}]", 500) for i, item in enumerate(value)]


def require_date(value: object, field: str) -> dt.date:
    """A calendar date (``datetime.date``; a ``datetime`` is refused: the domain counts days)."""
    if type(value) is not dt.date:
        raise FieldError(field, f"must be a date, got {type(value).__name__}", "invalid_type")
    return value


def require_not_before(value: dt.date, earlier: dt.date | None, field: str, what: str) -> None:
    if earlier is not None and value < earlier:
        raise FieldError(field, f"cannot be before {what} ({earlier.isoformat()})",
                         "out_of_range")


def require_choice(value: object, field: str, choices: type[E]) -> E:
    """One of the values of a StrEnum, given as the enum member or its string value."""
    allowed = [member.value for member in choices]
    if isinstance(value, str) and value in allowed:
        return choices(value)
    listed = ", ".join(repr(a) for a in allowed)
    raise FieldError(field, f"must be one of {listed}, got {value!r}", "invalid_choice")


def require_positive_int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(field, f"must be an integer, got {type(value).__name__}",
                         "invalid_type")
    if value < 1:
        raise FieldError(field, f"must be at least 1, got {value}", "out_of_range")
    return value


def require_json_friendly(value: Any, field: str) -> Any:
    """Refuse what an event could not carry: only str, int, bool, None, date, lists, dicts."""
    if value is None or isinstance(value, (str, int)) or type(value) is dt.date:
        return value  # bool is an int
    if isinstance(value, (list, tuple)):
        return [require_json_friendly(v, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise FieldError(field, "keys must be strings", "invalid_type")
            out[key] = require_json_friendly(item, f"{field}.{key}")
        return out
    raise FieldError(field, f"cannot carry a {type(value).__name__} in an event",
                     "invalid_type")


def add_days(day: dt.date, days: int) -> dt.date:
    return day + dt.timedelta(days=days)


def add_years(day: dt.date, years: int) -> dt.date:
    """The same day ``years`` later; 29 February goes to 1 March (a term never ends early)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return dt.date(day.year + years, 3, 1)
