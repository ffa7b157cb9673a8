"""Checklist templates (检查表), versioned: a visit is conducted on one version of one template,
copied into the visit when it is scheduled, so a new version never changes a past visit.

A template's areas follow the national standard WS/T 821-2023 (托育机构质量评估标准: 办托条件,
托育队伍, 保育照护, 卫生保健, 养育支持, 安全保障, 机构管理); each item has the points it weighs
and the department that checks and signs it (a fire item is signed by fire rescue).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from eventsourcing.domain import Aggregate, event

from tuoyu_shared.validation import FieldError

from .common import DEPARTMENTS

_TEMPLATE_NAMESPACE = uuid.UUID("0b8f3e55-2f3c-4d6b-a0c8-5d1f1f6b7e21")
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,40}(\.[a-z0-9_]{1,60})?$")
MAX_ITEMS = 300


def template_id_for(template_id: str) -> uuid.UUID:
    return uuid.uuid5(_TEMPLATE_NAMESPACE, template_id)


def check_areas(areas: Any) -> list[dict[str, Any]]:
    """A template's areas, checked: codes well-formed and unique, items with positive points
    and a known department. Returns them as plain data."""
    if not isinstance(areas, Sequence) or isinstance(areas, str) or not areas:
        raise FieldError("areas", "needs at least one area", "required")
    seen_areas: set[str] = set()
    seen_items: set[str] = set()
    out = []
    count = 0
    for i, area in enumerate(areas):
        where = f"areas[{i}]"
        if not isinstance(area, Mapping):
            raise FieldError(where, "must be an object", "invalid_type")
        code = area.get("code")
        if not isinstance(code, str) or not _CODE.match(code) or "." in code:
            raise FieldError(f"{where}.code", "must be a lower-case code (letters, digits, _)",
                             "invalid_format")
        if code in seen_areas:
            raise FieldError(f"{where}.code", f"area {code} twice", "duplicate")
        seen_areas.add(code)
        items = area.get("items")
        if not isinstance(items, Sequence) or isinstance(items, str) or not items:
            raise FieldError(f"{where}.items", "needs at least one item", "required")
        checked_items = []
        for j, item in enumerate(items):
            at = f"{where}.items[{j}]"
            if not isinstance(item, Mapping):
                raise FieldError(at, "must be an object", "invalid_type")
            item_code = item.get("code")
            if not isinstance(item_code, str) or not item_code.startswith(code + ".") or \
                    not _CODE.match(item_code):
                raise FieldError(f"{at}.code", f"must be {code}.<code>", "invalid_format")
            if item_code in seen_items:
                raise FieldError(f"{at}.code", f"item {item_code} twice", "duplicate")
            seen_items.add(item_code)
            points = item.get("points")
            if isinstance(points, bool) or not isinstance(points, int) or not 1 <= points <= 100:
                raise FieldError(f"{at}.points", "must be a whole number 1..100",
                                 "out_of_range")
            department = item.get("department")
            if department not in DEPARTMENTS:
                raise FieldError(f"{at}.department",
                                 f"must be one of {', '.join(DEPARTMENTS)}", "invalid_choice")
            text = item.get("text")
            if not isinstance(text, str) or not text.strip():
                raise FieldError(f"{at}.text", "is required", "required")
            checked_items.append({"code": item_code, "text": text.strip(), "points": points,
                                  "department": department,
                                  "source": str(item.get("source") or "")})
            count += 1
        name = area.get("name")
        if not isinstance(name, str) or not name.strip():
            raise FieldError(f"{where}.name", "is required", "required")
        out.append({"code": code, "name": name.strip(), "items": checked_items})
    if count > MAX_ITEMS:
        raise FieldError("areas", f"at most {MAX_ITEMS} items, got {count}", "too_long")
    return out


def items_of(checklist: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Item code → the item (with its area's code and name), of a checklist as copied."""
    return {item["code"]: {**item, "area": area["code"], "area_name": area["name"]}
            for area in checklist["areas"] for item in area["items"]}


class ChecklistTemplate(Aggregate):
    """A checklist template and its versions (each version immutable once published)."""

    class Created(Aggregate.Created):
        """A checklist template opened (its versions follow)."""

        template_id: str

    @event(Created)
    def __init__(self, template_id: str) -> None:
        self.template_id = template_id
        self.versions: list[dict[str, Any]] = []

    @staticmethod
    def create_id(template_id: str) -> uuid.UUID:
        return template_id_for(template_id)

    class VersionPublished(Aggregate.Event):
        """A new version of the template (earlier ones stay as they were)."""

        template_id: str
        version: int
        title: str
        source: str
        areas: list
        published_on: Any

    def publish(self, title: str, source: str, areas: Any, published_on: Any) -> int:
        checked = check_areas(areas)
        version = len(self.versions) + 1
        self._published(template_id=self.template_id, version=version, title=title,
                        source=source, areas=checked, published_on=published_on)
        return version

    @event(VersionPublished)
    def _published(self, template_id: str, version: int, title: str, source: str, areas: list,
                   published_on: Any) -> None:
        self.versions.append({"template_id": template_id, "version": version, "title": title,
                              "source": source, "areas": areas,
                              "published_on": published_on})

    def version_of(self, version: int | None = None) -> dict[str, Any]:
        if not self.versions:
            raise FieldError("template_version", f"template {self.template_id} has no version",
                             "not_found")
        if version is None:
            return self.versions[-1]
        if not 1 <= version <= len(self.versions):
            raise FieldError("template_version",
                             f"template {self.template_id} has versions 1..{len(self.versions)}",
                             "not_found")
        return self.versions[version - 1]

    def same_as_latest(self, title: str, source: str, areas: Any) -> bool:
        if not self.versions:
            return False
        latest = self.versions[-1]
        return (latest["title"], latest["source"], latest["areas"]) == (
            title, source, check_areas(areas))
