"""Reference data: population, under-three population and number of communities by district
and street, for a year (人口基础数据). The dashboard's own data, not projected: an officer loads
it from a CSV through the gateway. Each load is a new version of its year (who, when, the
SHA-256 of the file); an indicator for a day uses the latest version of the latest year up to
that day's year.

The CSV (UTF-8, a BOM allowed) has a header row naming, in any order, the columns
``district,street,population,under_three,communities`` (or 区,街道,常住人口,3岁以下婴幼儿数,
社区数). A bad row is reported with its line and field, and then nothing is loaded.
"""

from __future__ import annotations

import csv
import hashlib
import io
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tuoyu_shared.validation import FieldError, ValidationFailed, clean_text

COLUMNS = ("district", "street", "population", "under_three", "communities")
ALIASES = {"区": "district", "区县": "district", "街道": "street", "常住人口": "population",
           "3岁以下婴幼儿数": "under_three", "三岁以下婴幼儿数": "under_three",
           "社区数": "communities"}
MAX_ROWS = 10_000
MAX_COUNT = 100_000_000


def parse_reference_csv(text: str) -> list[dict[str, Any]]:
    """The rows, checked; :class:`ValidationFailed` naming every bad line and field."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationFailed([FieldError("body", "the CSV is empty", "required")])
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader)
    except csv.Error as e:
        raise ValidationFailed([FieldError("body", f"not a CSV: {e}", "invalid")]) from None
    names = [ALIASES.get(h.strip(), h.strip()) for h in header]
    missing = [c for c in COLUMNS if c not in names]
    unknown = [h for h in names if h not in COLUMNS]
    if missing or unknown or len(set(names)) != len(names):
        raise ValidationFailed([FieldError(
            "header", f"the header must name {', '.join(COLUMNS)} once each"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else ""), "invalid")])
    errors: list[FieldError] = []
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], int] = {}
    try:
        for number, values in enumerate(reader, start=2):
            if not any(v.strip() for v in values):
                continue
            if len(rows) >= MAX_ROWS:
                errors.append(FieldError("body", f"at most {MAX_ROWS} rows", "too_many"))
                break
            field = f"line {number}"
            if len(values) != len(names):
                errors.append(FieldError(field, f"{len(values)} values for {len(names)} "
                                                "columns", "invalid"))
                continue
            raw = dict(zip(names, values, strict=True))
            row: dict[str, Any] = {}
            for name in ("district", "street"):
                try:
                    row[name] = clean_text(raw[name], f"{field}.{name}", max_length=50)
                    if not row[name]:
                        raise FieldError(f"{field}.{name}", "must not be empty", "required")
                except FieldError as e:
                    errors.append(e)
            for name in ("population", "under_three", "communities"):
                value = raw[name].strip().replace(",", "")
                if not value.isdigit() or not value.isascii():
                    errors.append(FieldError(f"{field}.{name}",
                                             f"must be a whole number ≥ 0, got {value[:20]!r}",
                                             "invalid"))
                elif int(value) > MAX_COUNT:
                    errors.append(FieldError(f"{field}.{name}", f"at most {MAX_COUNT}",
                                             "too_large"))
                else:
                    row[name] = int(value)
            if len(row) != len(COLUMNS):
                continue
            if row["under_three"] > row["population"]:
                errors.append(FieldError(f"{field}.under_three",
                                         "cannot exceed the population", "invalid"))
                continue
            key = (row["district"], row["street"])
            if key in seen:
                errors.append(FieldError(f"{field}.street", f"{key[0]} {key[1]} is on line "
                                                            f"{seen[key]} already", "duplicate"))
                continue
            seen[key] = number
            rows.append(row)
    except csv.Error as e:
        errors.append(FieldError("body", f"not a CSV: {e}", "invalid"))
    if errors:
        raise ValidationFailed(errors)
    if not rows:
        raise ValidationFailed([FieldError("body", "the CSV has no rows", "required")])
    return rows


def load_reference(conn: psycopg.Connection, year: int, text: str, loaded_by: str,
                   source: str = "csv") -> dict[str, Any]:
    """Check the CSV, then store it as the year's new version in one transaction."""
    if not isinstance(year, int) or not 2000 <= year <= 2100:
        raise ValidationFailed([FieldError("year", "must be a year from 2000 to 2100",
                                           "invalid")])
    rows = parse_reference_csv(text)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("INSERT INTO dash_reference_versions (year, loaded_by, source, sha256, "
                    "row_count) VALUES (%s, %s, %s, %s, %s) RETURNING version_id, loaded_at",
                    (year, loaded_by, source, digest, len(rows)))
        version = cur.fetchone()
        cur.executemany("INSERT INTO dash_reference_rows (version_id, district, street, "
                        "population, under_three, communities) VALUES (%s, %s, %s, %s, %s, %s)",
                        [(version["version_id"], r["district"], r["street"], r["population"],
                          r["under_three"], r["communities"]) for r in rows])
    return {"version_id": version["version_id"], "year": year, "rows": len(rows),
            "sha256": digest, "loaded_at": version["loaded_at"].isoformat(),
            "loaded_by": loaded_by,
            "population": sum(r["population"] for r in rows),
            "under_three": sum(r["under_three"] for r in rows),
            "communities": sum(r["communities"] for r in rows)}


def reference_versions(conn: psycopg.Connection, year: int | None = None) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT v.version_id, v.year, v.loaded_at, v.loaded_by, v.source, v.sha256, "
                    "v.row_count, sum(r.population) AS population, "
                    "sum(r.under_three) AS under_three, sum(r.communities) AS communities "
                    "FROM dash_reference_versions v JOIN dash_reference_rows r USING (version_id) "
                    "WHERE %s::int IS NULL OR v.year = %s GROUP BY v.version_id "
                    "ORDER BY v.year, v.version_id", (year, year))
        rows = cur.fetchall()
    return [{**r, "loaded_at": r["loaded_at"].isoformat(), "population": int(r["population"]),
             "under_three": int(r["under_three"]), "communities": int(r["communities"])}
            for r in rows]
