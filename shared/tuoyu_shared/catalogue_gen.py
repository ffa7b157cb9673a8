"""Generate the catalogue's payload schemas from a service's contract.

    python -m tuoyu_shared.catalogue_gen tuoyu_registration.contract:CONTRACT

writes ``catalogue/<source>/<EventType>.v<version>.json`` for every publication of the
contract (:mod:`tuoyu_shared.contract`): each published field's schema comes from the type of
the event attribute it reads (or, for a computed field, from the publication). Each service's
tests check that the committed files equal what this generates, so a published field cannot
change without its schema changing with it; a change for subscribers takes a new version, whose
file sits beside the old one.

An event class may refine its fields' schemas with ``payload_schema = {"field": {...}}``
(enums, formats), a publication with its own ``schema``; the class's docstring becomes the
schema's description.
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
from tuoyu_shared.contract import Contract, ContractBroken, Published

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
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
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


def event_fields(cls: type) -> list[str]:
    """The attributes an event class stores besides the envelope's own."""
    return [f.name for f in dataclasses.fields(cls) if f.name not in _ENVELOPE_FIELDS]


def payload_schema_for(source: str, publication: Published) -> dict[str, Any]:
    cls = publication.event_class
    event_type, version = publication.event_type, publication.version
    hints = typing.get_type_hints(cls, include_extras=False)
    refinements = getattr(cls, "payload_schema", {})
    properties = {}
    for name, attribute in publication.attributes.items():
        if attribute not in hints:
            raise ContractBroken(f"{event_type} v{version} reads {attribute!r}, which "
                                 f"{cls.__qualname__} does not have")
        properties[name] = {**_type_schema(hints[attribute]),
                            **refinements.get(attribute, {}),
                            **publication.schema.get(name, {})}
    for name, (_compute, schema) in publication.computed.items():
        properties[name] = {**schema, **publication.schema.get(name, {})}
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


def generate(contract: Contract) -> dict[Path, str]:
    files = {}
    for publication in contract.publications:
        schema = payload_schema_for(contract.source, publication)
        path = CATALOGUE_DIR / contract.source / f"{schema['title']}.v{publication.version}.json"
        files[path] = json.dumps(schema, ensure_ascii=False, indent=2) + "\n"
    if contract.legacy:
        current = {p.event_type: p.version for p in contract.publications}
        served = [{"event_type": e.event_type, "version": e.version,
                   "current_version": current[e.event_type], "routing_key": e.routing_key,
                   "until": e.until} for e in contract.legacy.values()]
        files[CATALOGUE_DIR / contract.source / "legacy.json"] = json.dumps(
            {"description": "Earlier versions still published beside the current one, with "
                            "their own routing key, until the date (Asia/Shanghai).",
             "served": served}, ensure_ascii=False, indent=2) + "\n"
    return files


def contract_problems(contract: Contract, aggregates: list[type]) -> list[str]:
    """What is wrong between a contract and the service's aggregates: an event class without
    a publication, or a publication reading an attribute its class does not store."""
    problems = []
    published = {p.event_class for p in contract.publications}
    for aggregate in aggregates:
        for cls in event_classes(aggregate):
            if cls not in published:
                problems.append(f"{cls.__qualname__} has no publication")
    for p in contract.publications:
        stored = set(event_fields(p.event_class))
        for attribute in p.attributes.values():
            if attribute not in stored:
                problems.append(f"{p.event_type} v{p.version} reads {attribute!r}, which "
                                f"{p.event_class.__qualname__} does not store")
    return problems


def _load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    for path, text in generate(_load(args[0])).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path.relative_to(CATALOGUE_DIR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
