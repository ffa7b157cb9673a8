"""Unit tests for tuoyu_shared.calendar_cn. Expected dates are worked out by hand in comments."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tuoyu_shared.calendar_cn import (
    BUNDLED_FILE,
    ENV_VAR,
    WorkingCalendar,
    default_calendar,
    shanghai_date,
    uncovered_years,
)

D = date.fromisoformat


@pytest.fixture
def cal() -> WorkingCalendar:
    return WorkingCalendar.from_file(BUNDLED_FILE)


@pytest.fixture
def fresh_default():
    default_calendar.cache_clear()
    yield default_calendar
    default_calendar.cache_clear()


# -- the bundled data ------------------------------------------------------------------------


def test_bundled_file_is_well_formed():
    data = json.loads(BUNDLED_FILE.read_text(encoding="utf-8"))
    assert "State Council" in data["note"] and data["source"]
    assert sorted(data["years"]) == ["2025", "2026"]
    counts = {y: (len(v["holidays"]), len(v["working_weekends"])) for y, v in data["years"].items()}
    # 2025: 1 + 8 + 3 + 5 + 3 + 8 days off; 2 + 1 + 2 working weekends.
    # 2026: 3 + 9 + 3 + 5 + 3 + 3 + 7 days off; 1 + 2 + 1 + 2 working weekends.
    assert counts == {"2025": (28, 5), "2026": (33, 6)}
    for year, entry in data["years"].items():
        for field in ("holidays", "working_weekends"):
            values = entry[field]
            assert len(values) == len(set(values)), (year, field)
            assert all(D(v).year == int(year) for v in values), (year, field)
        assert all(D(v).weekday() >= 5 for v in entry["working_weekends"]), year


def test_default_calendar_is_the_bundled_one_and_cached(fresh_default, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    first = fresh_default()
    assert first is fresh_default()
    assert first.known_years == {2025, 2026}
    assert not first.is_working_day(D("2025-10-08"))


# -- ordinary weeks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        ("2025-03-03", 0, "2025-03-03"),  # Monday, n == 0
        ("2025-03-03", 1, "2025-03-04"),  # Mon -> Tue
        ("2025-03-03", 4, "2025-03-07"),  # Mon -> Fri
        ("2025-03-03", 5, "2025-03-10"),  # Tue..Fri = 4, skip Sat 8 / Sun 9, Mon 10 = 5
        ("2025-03-06", 2, "2025-03-10"),  # Thu: Fri 7 = 1, Mon 10 = 2
        ("2025-03-07", 1, "2025-03-10"),  # Fri -> Mon
        ("2025-03-08", 1, "2025-03-10"),  # Saturday start is not counted either
        ("2025-03-08", 0, "2025-03-08"),  # n == 0 keeps a non-working start
        ("2025-03-03", 15, "2025-03-24"),  # three full weeks
    ],
)
def test_ordinary_weeks(cal, start, n, expected):
    assert cal.add_working_days(D(start), n) == D(expected)


def test_weekdays_and_weekends(cal):
    week = [cal.is_working_day(D(f"2025-03-{d:02}")) for d in range(3, 10)]  # Mon 3 .. Sun 9
    assert week == [True] * 5 + [False] * 2


def test_negative_n_is_refused(cal):
    with pytest.raises(ValueError):
        cal.add_working_days(D("2025-03-03"), -1)


# -- Spring Festival 2025: off 01-28..02-04; Sun 01-26 and Sat 02-08 are working days --------


def test_spring_festival_2025_days(cal):
    assert not cal.is_working_day(D("2025-01-25"))  # Saturday
    assert cal.is_working_day(D("2025-01-26"))  # Sunday, 调休上班
    assert cal.is_working_day(D("2025-01-27"))  # Monday
    assert not any(cal.is_working_day(D("2025-01-28") + timedelta(i)) for i in range(8))
    assert cal.is_working_day(D("2025-02-05"))  # Wednesday
    assert cal.is_working_day(D("2025-02-08"))  # Saturday, 调休上班
    assert not cal.is_working_day(D("2025-02-09"))  # Sunday


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        # Submission on Friday 2025-01-24:
        (1, "2025-01-26"),  # Sun 01-26 (working) = 1
        (2, "2025-01-27"),  # Mon 01-27 = 2; then 01-28..02-04 off
        (3, "2025-02-05"),  # Wed = 3
        (5, "2025-02-07"),  # Thu 02-06 = 4, Fri 02-07 = 5: the filing receipt deadline
        (6, "2025-02-08"),  # Sat 02-08 (working) = 6
        (7, "2025-02-10"),  # Sun 02-09 off, Mon 02-10 = 7
    ],
)
def test_spring_festival_2025_deadlines(cal, n, expected):
    assert cal.add_working_days(D("2025-01-24"), n) == D(expected)


def test_new_year_and_labour_day_2025(cal):
    # Tue 2024-12-31 + 1: Wed 2025-01-01 is New Year, Thu 01-02 = 1.
    assert cal.add_working_days(D("2024-12-31"), 1) == D("2025-01-02")
    # Fri 04-25 + 5: Sun 04-27 (working) = 1, Mon 28 = 2, Tue 29 = 3, Wed 30 = 4,
    # 05-01..05-05 off, Tue 05-06 = 5.
    assert cal.add_working_days(D("2025-04-25"), 5) == D("2025-05-06")


# -- National Day 2025: off 10-01..10-08; Sun 09-28 and Sat 10-11 are working days -----------


def test_national_day_2025_days(cal):
    assert not cal.is_working_day(D("2025-09-27"))  # Saturday
    assert cal.is_working_day(D("2025-09-28"))  # Sunday, 调休上班
    assert not any(cal.is_working_day(D("2025-10-01") + timedelta(i)) for i in range(8))
    assert cal.is_working_day(D("2025-10-09"))  # Thursday
    assert cal.is_working_day(D("2025-10-11"))  # Saturday, 调休上班
    assert not cal.is_working_day(D("2025-10-12"))  # Sunday


def test_national_day_2025_non_compliance_deadline(cal):
    # Filing on Fri 09-26, + 15: Sun 09-28 = 1, Mon 29 = 2, Tue 30 = 3, 10-01..10-08 off,
    # Thu 10-09 = 4, Fri 10 = 5, Sat 11 = 6, Mon 13..Fri 17 = 7..11, Mon 20..Thu 23 = 12..15.
    assert cal.add_working_days(D("2025-09-26"), 15) == D("2025-10-23")
    # Weekends only it would have been Fri 10-17.
    assert WorkingCalendar().add_working_days(D("2025-09-26"), 15) == D("2025-10-17")
    # Filing on Thu 10-09, + 5: Fri 10 = 1, Sat 11 = 2, Mon 13 = 3, Tue 14 = 4, Wed 15 = 5.
    assert cal.add_working_days(D("2025-10-09"), 5) == D("2025-10-15")


def test_2026_arrangement(cal):
    assert not cal.is_working_day(D("2026-01-02"))  # Friday, New Year block
    assert cal.is_working_day(D("2026-01-04"))  # Sunday, 调休上班
    assert cal.is_working_day(D("2026-02-14"))  # Saturday, 调休上班
    assert not cal.is_working_day(D("2026-02-23"))  # Monday, last day of Spring Festival
    assert cal.is_working_day(D("2026-02-28"))  # Saturday, 调休上班
    assert cal.is_working_day(D("2026-09-20"))  # Sunday, 调休上班
    assert not cal.is_working_day(D("2026-10-07"))  # Wednesday, National Day
    # Fri 2026-02-13 + 2: Sat 02-14 (working) = 1, 02-15..02-23 off, Tue 02-24 = 2.
    assert cal.add_working_days(D("2026-02-13"), 2) == D("2026-02-24")


# -- years the file does not cover ---------------------------------------------------------


def test_uncovered_year_uses_weekends_only(cal):
    assert cal.covers(D("2025-06-30")) and cal.covers(D("2026-12-31"))
    assert not cal.covers(D("2030-01-01"))
    assert not cal.covers(D("2024-12-31"))
    assert cal.is_working_day(D("2030-01-01"))  # Tuesday: holiday unknown, so it counts
    assert not cal.is_working_day(D("2030-01-05"))  # Saturday
    # Fri 2030-09-27 + 5: Mon 09-30 .. Fri 10-04, National Day unknown.
    assert cal.add_working_days(D("2030-09-27"), 5) == D("2030-10-04")


def test_uncovered_years_for_warnings(cal):
    assert uncovered_years(D("2025-01-24"), D("2025-02-07"), cal) == []
    assert uncovered_years(D("2026-12-28"), D("2027-01-08"), cal) == [2027]
    assert uncovered_years(D("2025-01-02"), D("2024-12-31"), cal) == [2024]
    assert uncovered_years(D("2025-01-02"), D("2025-01-03"), WorkingCalendar()) == [2025]


def test_empty_calendar_covers_nothing():
    empty = WorkingCalendar()
    assert not empty.covers(D("2025-01-01"))
    assert empty.is_working_day(D("2025-01-01"))  # Wednesday


# -- working_days_between -------------------------------------------------------------------


def test_working_days_between_by_hand(cal):
    assert cal.working_days_between(D("2025-01-24"), D("2025-02-07")) == 5
    assert cal.working_days_between(D("2025-01-24"), D("2025-02-09")) == 6  # + Sat 02-08
    assert cal.working_days_between(D("2025-09-26"), D("2025-10-23")) == 15
    assert cal.working_days_between(D("2025-03-03"), D("2025-03-03")) == 0
    assert cal.working_days_between(D("2025-03-10"), D("2025-03-03")) == 0
    assert cal.working_days_between(D("2025-03-07"), D("2025-03-09")) == 0  # weekend only


def test_working_days_between_mirrors_add_working_days(cal):
    starts = [D("2025-01-15") + timedelta(i) for i in range(40)]
    starts += [D("2025-09-20") + timedelta(i) for i in range(30)]
    starts += [D("2026-02-05") + timedelta(i) for i in range(30)]
    for start in starts:
        for n in range(0, 21):
            end = cal.add_working_days(start, n)
            assert cal.working_days_between(start, end) == n, (start, n)
            assert end == start or cal.is_working_day(end), (start, n)
        for end in (start + timedelta(i) for i in range(1, 30)):
            if cal.is_working_day(end):
                k = cal.working_days_between(start, end)
                assert cal.add_working_days(start, k) == end, (start, end)


# -- shanghai_date ----------------------------------------------------------------------------


def test_shanghai_date_across_the_date_line():
    assert shanghai_date(datetime(2025, 1, 1, 17, 0, tzinfo=UTC)) == D("2025-01-02")
    assert shanghai_date(datetime(2025, 1, 1, 15, 59, tzinfo=UTC)) == D("2025-01-01")
    assert shanghai_date(datetime(2025, 1, 1, 16, 0, tzinfo=UTC)) == D("2025-01-02")
    # 12:00 in New York (UTC-5) is 17:00Z, 01:00 on the 2nd in Shanghai.
    ny = datetime(2025, 1, 1, 12, 0, tzinfo=ZoneInfo("America/New_York"))
    assert shanghai_date(ny) == D("2025-01-02")


def test_shanghai_date_treats_naive_as_utc():
    assert shanghai_date(datetime(2025, 1, 1, 17, 0)) == D("2025-01-02")
    assert shanghai_date(datetime(2025, 1, 1, 8, 0)) == D("2025-01-01")
    with pytest.raises(TypeError):
        shanghai_date(D("2025-01-01"))  # type: ignore[arg-type]


# -- configuration ------------------------------------------------------------------------------


def _write(path, years):
    path.write_text(json.dumps({"source": "test", "note": "test", "years": years}), "utf-8")
    return path


def test_env_var_overrides_the_bundled_file(tmp_path, monkeypatch, fresh_default):
    # 2031-01-04 is a Saturday, 01-06 a Monday.
    path = _write(
        tmp_path / "h.json",
        {"2031": {"holidays": ["2031-01-06"], "working_weekends": ["2031-01-04"]}},
    )
    monkeypatch.setenv(ENV_VAR, str(path))
    for calendar in (WorkingCalendar.from_file(), fresh_default()):
        assert calendar.known_years == {2031}
        assert calendar.covers(D("2031-01-06")) and not calendar.covers(D("2025-10-01"))
        assert calendar.is_working_day(D("2031-01-04"))
        assert not calendar.is_working_day(D("2031-01-06"))
        assert calendar.is_working_day(D("2025-10-01"))  # bundled holidays are not loaded
        # Fri 2031-01-03 + 2: Sat 04 = 1, Sun 05 off, Mon 06 off, Tue 07 = 2.
        assert calendar.add_working_days(D("2031-01-03"), 2) == D("2031-01-07")
    # An explicit path still wins over the variable.
    assert WorkingCalendar.from_file(BUNDLED_FILE).known_years == {2025, 2026}


@pytest.mark.parametrize(
    "years",
    [
        {"2025": {"holidays": ["2026-01-01"], "working_weekends": []}},  # outside its year
        {"2025": {"holidays": [], "working_weekends": ["2025-01-27"]}},  # a Monday
        {"2025": {"holidays": ["2025-01-26"], "working_weekends": ["2025-01-26"]}},  # both
        {"2025": {"holidays": ["2025-13-01"]}},  # not a date
        {"2025": {"holidays": "2025-01-01"}},  # not a list
        {"twenty": {"holidays": []}},  # not a year
    ],
)
def test_bad_files_are_refused(tmp_path, years):
    with pytest.raises(ValueError, match="bad holiday calendar"):
        WorkingCalendar.from_file(_write(tmp_path / "bad.json", years))


def test_constructor_checks_its_dates():
    with pytest.raises(ValueError):
        WorkingCalendar(working_weekends=[D("2025-01-27")])  # Monday
    with pytest.raises(ValueError):
        WorkingCalendar(holidays=[D("2025-01-26")], working_weekends=[D("2025-01-26")])
    with pytest.raises(TypeError):
        WorkingCalendar(holidays=[datetime(2025, 1, 1)])
