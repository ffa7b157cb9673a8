"""Import of existing filings from a provincial filing system's CSV export.

One row per filed institution. Headers may be the English column names below or the Chinese
ones a provincial export uses (统一社会信用代码, 机构名称, …). Classes are given as
``type:places:carers`` entries separated by ``;`` (e.g. ``toddler:15:3;older:20:3``), service
types as ``full_day;hourly``.

Each row is validated on its own; a bad row is reported (row number, field, reason) and the
others are imported. Valid rows are saved in chunks, many institutions per database
transaction, which is what makes a whole province's register load in seconds.
"""

from __future__ import annotations

import csv
import io
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tuoyu_registration.domain import (
    SERVICE_TYPES,
    ClassType,
    Institution,
    Nature,
    ProviderKind,
    check_credit_code_matches_nature,
    check_filing,
)
from tuoyu_shared.validation import (
    FieldError,
    ValidationFailed,
    clean_text,
    validate_credit_code,
    validate_date,
    validate_phone,
    validate_resident_id,
)

COLUMNS = {
    # English column: Chinese header of a provincial export
    "credit_code": "统一社会信用代码",
    "name": "机构名称",
    "nature": "机构性质",
    "kind": "机构类型",
    "district": "所在区",
    "street": "所在街道",
    "address": "详细地址",
    "person_in_charge_name": "负责人姓名",
    "person_in_charge_id_number": "负责人身份证号",
    "person_in_charge_phone": "负责人电话",
    "service_types": "服务类型",
    "classes": "班级设置",
    "indoor_m2": "室内面积",
    "outdoor_m2": "室外面积",
    "staff_carer": "保育人员数",
    "staff_health": "保健人员数",
    "staff_cook": "炊事人员数",
    "staff_security": "安保人员数",
    "staff_manager": "管理人员数",
    "meals_served": "是否提供膳食",
    "hygiene_evaluation_passed": "卫生评价合格",
    "fire_safety_passed": "消防安全合格",
    "receipt_number": "备案回执编号",
    "filed_on": "备案日期",
}
_BY_CHINESE = {chinese: english for english, chinese in COLUMNS.items()}
NATURES = {"营利性": "for_profit", "非营利性": "non_profit", "事业单位": "public_institution"}
KINDS = {"托育机构": "childcare_institution", "幼儿园托班": "kindergarten_childcare_class",
         "社区托育点": "community_childcare_point", "家庭托育点": "family_childcare_point",
         "用人单位办托": "employer_run"}
YES = {"true", "1", "yes", "y", "是"}
NO = {"false", "0", "no", "n", "否"}
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also takes "²", which int() refuses
MAX_CLASSES = 200


#: The rejected rows an import's report lists (each with its errors); the rest are counted.
#: Unbounded, a file of bad rows made a report larger than the broker carries.
MAX_REPORTED_REJECTIONS = 1000


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def merge(self, other: ImportReport) -> None:
        self.rows += other.rows
        self.imported += other.imported
        self.rejected.extend(other.rejected)

    def as_dict(self) -> dict[str, Any]:
        listed = sorted(self.rejected, key=lambda r: r["row"])[:MAX_REPORTED_REJECTIONS]
        return {"rows": self.rows, "imported": self.imported,
                "rejected_count": len(self.rejected), "rejected": listed,
                "rejected_truncated": len(self.rejected) > len(listed)}


@dataclass
class ParsedRow:
    row: int
    facts: dict[str, Any]
    person: tuple[str, str, str]


class _Row:
    """Checks of one row, collecting every FieldError (a lean Validator for bulk rows)."""

    def __init__(self, data: dict[str, str]):
        self.data = data
        self.errors: list[FieldError] = []

    def _fail(self, name: str, reason: str, code: str) -> None:
        self.errors.append(FieldError(name, reason, code))

    def check(self, name: str, func: Any) -> Any:
        try:
            return func(self.data.get(name, ""), name)
        except FieldError as e:
            self.errors.append(e)
            return None

    def text(self, name: str, max_length: int) -> str | None:
        """Like :meth:`Validator.text`: NFC, trimmed, no control characters or lone
        surrogates, at most ``max_length`` characters."""
        value = self.data.get(name, "")
        if not value:
            self._fail(name, "is required", "required")
            return value
        try:
            return clean_text(value, name, max_length)
        except FieldError as e:
            self.errors.append(e)
            return None

    def choice(self, name: str, choices: Any) -> str | None:
        value = self.data.get(name, "")
        if value not in choices:
            self._fail(name, f"must be one of {', '.join(sorted(choices))}", "invalid_choice")
            return None
        return value

    def boolean(self, name: str) -> bool | None:
        raw = self.data.get(name, "").lower()
        if raw in YES:
            return True
        if raw in NO:
            return False
        self._fail(name, "must be 是/否 or true/false", "invalid_format")
        return None

    def integer(self, name: str, minimum: int = 0, maximum: int = 1000) -> int | None:
        raw = self.data.get(name, "")
        if not _DIGITS.fullmatch(raw):
            self._fail(name, f"must be a whole number of at least {minimum}", "invalid_format")
            return None
        digits = raw.lstrip("0") or "0"  # never int() of thousands of digits
        if len(digits) > len(str(maximum)) or int(digits) > maximum:
            self._fail(name, f"must be at most {maximum}", "out_of_range")
            return None
        if int(digits) < minimum:
            self._fail(name, f"must be a whole number of at least {minimum}", "invalid_format")
            return None
        return int(digits)


_NATURE_VALUES = frozenset(n.value for n in Nature)
_KIND_VALUES = frozenset(k.value for k in ProviderKind)
_CLASS_TYPES = frozenset(c.value for c in ClassType)


def parse_row(row_number: int, data: dict[str, str]) -> ParsedRow:
    """Validate one CSV row; raise ValidationFailed naming every bad field."""
    data = dict(data)
    data["nature"] = NATURES.get(data.get("nature", ""), data.get("nature", ""))
    data["kind"] = KINDS.get(data.get("kind", ""), data.get("kind", ""))
    r = _Row(data)
    credit_code = r.check("credit_code", validate_credit_code)
    name = r.text("name", 100)
    nature = r.choice("nature", _NATURE_VALUES)
    kind = r.choice("kind", _KIND_VALUES)
    district = r.text("district", 50)
    street = r.text("street", 50)
    address = r.text("address", 200)
    person = (r.text("person_in_charge_name", 50),
              r.check("person_in_charge_id_number", validate_resident_id),
              r.check("person_in_charge_phone", validate_phone))
    service_types = [s.strip() for s in data.get("service_types", "").split(";") if s]
    if not service_types or not set(service_types) <= set(SERVICE_TYPES):
        r._fail("service_types", f"';'-separated {', '.join(SERVICE_TYPES)}",
                "invalid_choice")
    classes = []
    entries = data.get("classes", "").split(";")
    if len(entries) > MAX_CLASSES:
        r._fail("classes", f"at most {MAX_CLASSES} classes, got {len(entries)}", "too_long")
        entries = []
    for i, entry in enumerate(entries):
        parts = entry.strip().split(":")
        if (len(parts) != 3 or parts[0] not in _CLASS_TYPES
                or not _DIGITS.fullmatch(parts[1]) or not _DIGITS.fullmatch(parts[2])):
            r._fail(f"classes[{i}]", "expected type:places:carers, e.g. toddler:15:3",
                    "invalid_format")
            continue
        if len(parts[1]) > 3 or len(parts[2]) > 3 or int(parts[1]) > 100 \
                or int(parts[2]) > 100:  # as a submitted filing's classes
            r._fail(f"classes[{i}]", "at most 100 places and 100 carers", "out_of_range")
            continue
        classes.append({"class_type": parts[0], "places": int(parts[1]),
                        "carers": int(parts[2])})
    staff = {role: r.integer(f"staff_{role}") or 0
             for role in ("carer", "health", "cook", "security", "manager")}
    filing = {
        "service_types": service_types,
        "classes": classes,
        "floor_area": {"indoor_m2": r.integer("indoor_m2", 1, 100000),
                       "outdoor_m2": r.integer("outdoor_m2", 0, 100000)},
        "staff": staff,
        "meals_served": r.boolean("meals_served"),
        "hygiene_evaluation_passed": r.boolean("hygiene_evaluation_passed"),
        "fire_safety_passed": r.boolean("fire_safety_passed"),
    }
    receipt_number = r.text("receipt_number", 50)
    filed_on = r.check("filed_on", validate_date)
    if not r.errors:
        # What a filing submitted here is refused for, or would carry as a finding for its
        # verification (Institution.submit_filing): an import has no verification, so a row
        # with either is reported, like any bad field, never filed.
        try:
            check_credit_code_matches_nature(credit_code, Nature(nature))
        except FieldError as e:
            r.errors.append(e)
        try:
            filing["total_places"] = check_filing(kind, filing)
        except FieldError as e:
            r.errors.append(e)
    if r.errors:
        raise ValidationFailed(r.errors)
    facts = {"name": name, "credit_code": credit_code, "nature": Nature(nature),
             "kind": ProviderKind(kind), "district": district, "street": street,
             "address": address, "filing": filing,
             "receipt": {"receipt_number": receipt_number, "issued_on": filed_on}}
    return ParsedRow(row_number, facts, person)


def parse_rows(rows: list[tuple[int, dict[str, str]]]) -> tuple[list[ParsedRow], list[dict]]:
    """Parse a batch of rows: the parsed ones and the rejections (row, errors)."""
    parsed, rejected = [], []
    for number, row in rows:
        try:
            parsed.append(parse_row(number, row))
        except ValidationFailed as e:
            rejected.append({"row": number, "errors": e.to_dict()["errors"]})
    return parsed, rejected


def parsed_batches(rows: Iterable[tuple[int, dict[str, str]]], batch_size: int = 1000
                   ) -> Iterator[tuple[int, list[ParsedRow], list]]:
    """(rows read, parsed rows, rejections) batch by batch, in file order."""
    batch: list[tuple[int, dict[str, str]]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            yield (len(batch), *parse_rows(batch))
            batch = []
    if batch:
        yield (len(batch), *parse_rows(batch))


def partition_rows(rows: list[tuple[int, dict[str, str]]], parts: int,
                   first_share: float | None = None) -> list[list[tuple[int, dict[str, str]]]]:
    """Split rows into parts by credit code: every repeat of a code lands in the same part.

    ``first_share`` (0–1) sizes the first part (the one the reading process keeps, which has
    also read the whole file); the others share the rest evenly.
    """
    share = first_share if first_share is not None else 1 / parts
    split: list[list[tuple[int, dict[str, str]]]] = [[] for _ in range(parts)]
    for row in rows:
        code = row[1].get("credit_code", "").strip().upper()
        point = (zlib.crc32(code.encode("utf-8", "surrogatepass")) % 10000) / 10000
        if point < share or parts == 1:
            split[0].append(row)
        else:
            index = 1 + int((point - share) / (1 - share) * (parts - 1))
            split[min(index, parts - 1)].append(row)
    return split


def read_rows(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number, cells by English column) of each row. A file the csv module cannot read
    (a cell longer than its field limit) is refused whole: :class:`ValidationFailed` naming
    ``body`` and the line."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    try:
        reader.fieldnames = [_BY_CHINESE.get(h.strip(), h.strip())
                             for h in reader.fieldnames or []]
        for number, row in enumerate(reader, start=2):  # row 1 is the header
            yield number, {k: (v or "").strip() for k, v in row.items() if k}
    except csv.Error as e:
        too_long = "field larger than field limit" in str(e)
        reason = (f"line {reader.line_num}: a cell is longer than {csv.field_size_limit()} "
                  "characters" if too_long else f"line {reader.line_num}: {e}")
        raise ValidationFailed([FieldError("body", reason, "too_long" if too_long
                                           else "invalid_format")]) from None


def build_import_events(rows: Iterable[ParsedRow], sealed: dict[int, dict[str, Any]],
                        source: str) -> list[Institution.Imported]:
    return [Institution.imported(person_in_charge=sealed[r.row], source=source, **r.facts)
            for r in rows]


