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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tuoyu_registration.domain import (
    SERVICE_TYPES,
    ClassType,
    Institution,
    Nature,
    ProviderKind,
    check_classes,
    check_credit_code_matches_nature,
)
from tuoyu_shared.validation import FieldError, Validator

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


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "imported": self.imported,
                "rejected_count": len(self.rejected), "rejected": self.rejected}


@dataclass
class ParsedRow:
    row: int
    facts: dict[str, Any]
    person: tuple[str, str, str]


def _bool(v: Validator, data: dict[str, str], name: str) -> bool | None:
    raw = (data.get(name) or "").strip().lower()
    if raw in YES:
        return True
    if raw in NO:
        return False
    v.add_error(name, "must be 是/否 or true/false", "invalid_format")
    return None


def _int(v: Validator, data: dict[str, str], name: str, minimum: int = 0) -> int | None:
    raw = (data.get(name) or "").strip()
    if not raw.isdigit() or int(raw) < minimum:
        v.add_error(name, f"must be a whole number of at least {minimum}", "invalid_format")
        return None
    return int(raw)


def parse_row(row_number: int, data: dict[str, str]) -> ParsedRow:
    """Validate one CSV row; raise ValidationFailed naming the bad fields."""
    data = {k: (NATURES.get(v, v) if k == "nature" else KINDS.get(v, v) if k == "kind" else v)
            for k, v in data.items()}
    v = Validator(data)
    credit_code = v.credit_code("credit_code")
    name = v.text("name", max_length=100)
    nature = v.choice("nature", [n.value for n in Nature])
    kind = v.choice("kind", [k.value for k in ProviderKind])
    district = v.text("district", max_length=50)
    street = v.text("street", max_length=50)
    address = v.text("address", max_length=200)
    person = (v.text("person_in_charge_name", max_length=50),
              v.resident_id("person_in_charge_id_number"), v.phone("person_in_charge_phone"))
    service_types = [s.strip() for s in (data.get("service_types") or "").split(";") if s]
    if not service_types or not set(service_types) <= set(SERVICE_TYPES):
        v.add_error("service_types", f"';'-separated {', '.join(SERVICE_TYPES)}",
                    "invalid_choice")
    classes = []
    for i, entry in enumerate((data.get("classes") or "").split(";")):
        parts = entry.strip().split(":")
        if (len(parts) != 3 or parts[0] not in {c.value for c in ClassType}
                or not parts[1].isdigit() or not parts[2].isdigit()):
            v.add_error(f"classes[{i}]", "expected type:places:carers, e.g. toddler:15:3",
                        "invalid_format")
            continue
        classes.append({"class_type": parts[0], "places": int(parts[1]),
                        "carers": int(parts[2])})
    staff = {role: _int(v, data, f"staff_{role}") or 0
             for role in ("carer", "health", "cook", "security", "manager")}
    filing = {
        "service_types": service_types,
        "classes": classes,
        "floor_area": {"indoor_m2": _int(v, data, "indoor_m2", 1),
                       "outdoor_m2": _int(v, data, "outdoor_m2")},
        "staff": staff,
        "meals_served": _bool(v, data, "meals_served"),
        "hygiene_evaluation_passed": _bool(v, data, "hygiene_evaluation_passed"),
        "fire_safety_passed": _bool(v, data, "fire_safety_passed"),
    }
    receipt_number = v.text("receipt_number", max_length=50)
    filed_on = v.date("filed_on")
    v.check()
    try:
        check_credit_code_matches_nature(credit_code, Nature(nature))
        filing["total_places"] = check_classes(kind, classes)
    except FieldError as e:
        v.add_error(e.field, e.reason, e.code)
        v.check()
    facts = {"name": name, "credit_code": credit_code, "nature": Nature(nature),
             "kind": ProviderKind(kind), "district": district, "street": street,
             "address": address, "filing": filing,
             "receipt": {"receipt_number": receipt_number, "issued_on": filed_on}}
    return ParsedRow(row_number, facts, person)


def read_rows(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    reader.fieldnames = [_BY_CHINESE.get(h.strip(), h.strip()) for h in reader.fieldnames or []]
    for number, row in enumerate(reader, start=2):  # row 1 is the header
        yield number, {k: (v or "").strip() for k, v in row.items() if k}


def build_institutions(rows: Iterable[ParsedRow], sealed: dict[int, dict[str, Any]],
                       source: str) -> list[Institution]:
    return [Institution.import_filed(person_in_charge=sealed[r.row], source=source, **r.facts)
            for r in rows]


