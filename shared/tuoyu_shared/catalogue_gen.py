"""Generate the catalogue's payload schemas from the event classes themselves.

    python -m tuoyu_shared.catalogue_gen registration tuoyu_registration.domain:Institution

writes ``catalogue/registration/<EventType>.v<class_version>.json`` for every event class
nested in the aggregate. Each service's tests check that the committed files equal what this
generates, so a changed event cannot be published without its schema changing with it (and a
new ``class_version``, with an upcaster, keeps the old file beside the new one).

A class may refine its fields' schemas with ``payload_schema = {"field": {...}}`` (enums,
formats); the docstring becomes the schema's description.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import inspect
import json
import sys
import types
import typing
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from eventsourcing.domain import DomainEvent

from tuoyu_shared.catalogue import CATALOGUE_DIR

_ENVELOPE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def _type_schema(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if tp is Any:
        return {}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = _type_schema(options[0]) if len(options) == 1 else {
            "anyOf": [_type_schema(a) for a in options]}
        return {"anyOf": [inner, {"type": "null"}]}
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(tp)
        return {"type": "array", **({"items": _type_schema(args[0])} if args else {})}
    if origin is dict or tp is dict:
        return {"type": "object"}
    simple = {str: {"type": "string"}, bool: {"type": "boolean"}, int: {"type": "integer"},
              float: {"type": "number"}, Decimal: {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"},
              uuid.UUID: {"type": "string", "format": "uuid"},
              dt.datetime: {"type": "string", "format": "date-time"},
              dt.date: {"type": "string", "format": "date"}}
    if tp in simple:
        return dict(simple[tp])
    raise TypeError(f"no JSON schema for type {tp!r}")


def event_classes(aggregate: type) -> list[type]:
    found = []
    for _, member in inspect.getmembers(aggregate, inspect.isclass):
        if member.__name__ in ("Event", "Created", "Snapshot"):
            continue  # the library's base classes, never triggered themselves
        if issubclass(member, DomainEvent) and member.__qualname__.startswith(
                aggregate.__name__ + ".") and member.__module__ == aggregate.__module__:
            found.append(member)
    return sorted(found, key=lambda c: c.__qualname__)


def payload_schema_for(source: str, cls: type) -> dict[str, Any]:
    event_type = getattr(cls, "event_type", None) or cls.__qualname__.replace(".", "")
    version = getattr(cls, "class_version", 1)
    hints = typing.get_type_hints(cls, include_extras=False)
    refinements = getattr(cls, "payload_schema", {})
    properties = {}
    for f in dataclasses.fields(cls):
        if f.name in _ENVELOPE_FIELDS:
            continue
        properties[f.name] = {**_type_schema(hints[f.name]), **refinements.get(f.name, {})}
    doc = ""
    for klass in cls.__mro__:  # eventsourcing subclasses event classes: find the written one
        if klass.__module__ != cls.__module__:
            continue  # the library's own classes and their docstrings
        text = klass.__dict__.get("__doc__")
        if text and not text.startswith(klass.__name__ + "("):  # not a dataclass signature
            doc = inspect.cleandoc(text)
            break
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"tuoyu:{source}:{event_type}:v{version}",
        "title": event_type,
        "description": doc,
        "type": "object",
        "additionalProperties": False,
        "required": sorted(properties),
        "properties": properties,
    }


def generate(source: str, aggregates: list[type]) -> dict[Path, str]:
    files = {}
    for aggregate in aggregates:
        for cls in event_classes(aggregate):
            schema = payload_schema_for(source, cls)
            version = getattr(cls, "class_version", 1)
            path = CATALOGUE_DIR / source / f"{schema['title']}.v{version}.json"
            files[path] = json.dumps(schema, ensure_ascii=False, indent=2) + "\n"
    return files


def _load(spec: str) -> type:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    source, specs = args[0], args[1:]
    for path, text in generate(source, [_load(s) for s in specs]).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path.relative_to(CATALOGUE_DIR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
