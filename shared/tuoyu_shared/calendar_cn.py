"""Working days (工作日) in mainland China, for deadlines that regulations give in working days.

A filing receipt is due within 5 working days of submission; a non-compliance notice within
15 working days of filing. A working day is Monday to Friday, except the statutory public
holidays (法定节假日) and the days taken off around them, plus the Saturdays and Sundays declared
working days (调休上班).

The State Council publishes each year's arrangement in November of the year before, so the
dates are configuration: ``holidays_cn.json`` beside this module, or the file named by the
``TUOYU_HOLIDAYS_FILE`` environment variable. For a year the file does not list the calendar
still works, counting Monday to Friday only; :meth:`WorkingCalendar.covers` and
:func:`uncovered_years` let callers warn that such a deadline is only approximate.

Everything here takes and returns :class:`datetime.date` values, which are dates in China.
Events carry UTC timestamps: callers convert them first with :func:`shanghai_date` (a naive
datetime is taken as UTC), e.g.
``default_calendar().add_working_days(shanghai_date(submitted_at), 5)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = [
    "BUNDLED_FILE",
    "ENV_VAR",
    "SHANGHAI",
    "WorkingCalendar",
    "default_calendar",
    "shanghai_date",
    "uncovered_years",
]

BUNDLED_FILE = Path(__file__).with_name("holidays_cn.json")
ENV_VAR = "TUOYU_HOLIDAYS_FILE"
SHANGHAI = ZoneInfo("Asia/Shanghai")

_ONE_DAY = timedelta(days=1)
_SATURDAY = 5


def shanghai_date(ts: datetime) -> date:
    """The calendar date in China (Asia/Shanghai) of ``ts``; a naive ``ts`` is taken as UTC."""
    if not isinstance(ts, datetime):
        raise TypeError(f"shanghai_date needs a datetime, not {type(ts).__name__}")
    if ts.tzinfo is None or ts.utcoffset() is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(SHANGHAI).date()


class WorkingCalendar:
    """Monday to Friday, minus ``holidays``, plus ``working_weekends``.

    ``known_years`` are the years whose official arrangement the calendar holds; other years
    are computed with weekends only (see :meth:`covers`).
    """

    def __init__(
        self,
        holidays: Iterable[date] = (),
        working_weekends: Iterable[date] = (),
        known_years: Iterable[int] = (),
    ) -> None:
        self._holidays = frozenset(holidays)
        self._working_weekends = frozenset(working_weekends)
        self._known_years = frozenset(known_years)
        for d in self._holidays | self._working_weekends:
            if not isinstance(d, date) or isinstance(d, datetime):
                raise TypeError(f"calendar dates must be datetime.date, not {d!r}")
        both = self._holidays & self._working_weekends
        if both:
            raise ValueError(f"dates both holiday and working day: {_iso(both)}")
        weekdays = {d for d in self._working_weekends if d.weekday() < _SATURDAY}
        if weekdays:
            raise ValueError(f"working_weekends must be Saturdays or Sundays: {_iso(weekdays)}")

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> WorkingCalendar:
        """Read a calendar file: ``path``, else ``$TUOYU_HOLIDAYS_FILE``, else the bundled one.

        The file is ``{"years": {"2025": {"holidays": [...], "working_weekends": [...]}}}``
        with ISO dates, each inside its year key; every year key becomes a known year.
        """
        if path is None:
            path = os.environ.get(ENV_VAR) or BUNDLED_FILE
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            years = data["years"]
            holidays: list[date] = []
            working_weekends: list[date] = []
            for key, entry in years.items():
                year = int(key)
                holidays += _dates_in_year(entry.get("holidays", []), year, "holidays")
                working_weekends += _dates_in_year(
                    entry.get("working_weekends", []), year, "working_weekends"
                )
            return cls(holidays, working_weekends, (int(key) for key in years))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"bad holiday calendar {path}: {e}") from e

    @property
    def known_years(self) -> frozenset[int]:
        return self._known_years

    def covers(self, d: date) -> bool:
        """True if the official arrangement for ``d``'s year is known."""
        return d.year in self._known_years

    def is_working_day(self, d: date) -> bool:
        if d in self._working_weekends:
            return True
        if d in self._holidays:
            return False
        return d.weekday() < _SATURDAY

    def add_working_days(self, start: date, n: int) -> date:
        """The date ``n`` working days after ``start`` (``start`` itself not counted).

        ``n == 0`` returns ``start`` unchanged, even if it is not a working day.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        d = start
        while n > 0:
            d += _ONE_DAY
            if self.is_working_day(d):
                n -= 1
        return d

    def working_days_between(self, start: date, end: date) -> int:
        """The number of working days in ``(start, end]``; 0 if ``end <= start``."""
        count = 0
        d = start + _ONE_DAY
        while d <= end:
            if self.is_working_day(d):
                count += 1
            d += _ONE_DAY
        return count

    def __repr__(self) -> str:
        years = ", ".join(str(y) for y in sorted(self._known_years)) or "none"
        return f"<WorkingCalendar known years: {years}>"


@cache
def default_calendar() -> WorkingCalendar:
    """The calendar of :meth:`WorkingCalendar.from_file` with no path, read once per process.

    ``default_calendar.cache_clear()`` makes the next call read the file again.
    """
    return WorkingCalendar.from_file()


def uncovered_years(start: date, end: date, calendar: WorkingCalendar | None = None) -> list[int]:
    """The years from ``start`` to ``end`` (either order) that ``calendar`` does not cover.

    A non-empty answer means a deadline in that span was computed with weekends only and may
    be wrong: callers should log a warning (and ops should add the year to the file).
    """
    cal = calendar if calendar is not None else default_calendar()
    low, high = sorted((start.year, end.year))
    return [y for y in range(low, high + 1) if y not in cal.known_years]


def _dates_in_year(values: list[str], year: int, field: str) -> list[date]:
    if not isinstance(values, list):
        raise TypeError(f"{year}.{field} must be a list of ISO dates")
    dates = [date.fromisoformat(v) for v in values]
    outside = [d for d in dates if d.year != year]
    if outside:
        raise ValueError(f"{year}.{field} has dates outside {year}: {_iso(outside)}")
    return dates


def _iso(dates: Iterable[date]) -> str:
    return ", ".join(d.isoformat() for d in sorted(dates))
