"""The event catalogue: a JSON Schema for every published event type and version.

Files live in ``catalogue/<source>/<EventType>.v<N>.json`` (the payload's schema) beside
``catalogue/envelope.v1.json``. External subscribers read the same files (they ship in the
``tuoyu-shared`` distribution and the gateway serves them). The relay checks every envelope
against them before publishing, so nothing leaves a service that its schema does not describe.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema

CATALOGUE_DIR = Path(__file__).with_name("catalogue")


class SchemaViolation(ValueError):
    """A message does not match its published schema."""


@cache
def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def schema_path(source: str, event_type: str, version: int) -> Path:
    return CATALOGUE_DIR / source / f"{event_type}.v{version}.json"


def payload_schema(source: str, event_type: str, version: int) -> dict[str, Any]:
    path = schema_path(source, event_type, version)
    if not path.exists():
        raise SchemaViolation(f"no schema for {source} {event_type} v{version} ({path.name})")
    return _load(path)


def envelope_schema() -> dict[str, Any]:
    return _load(CATALOGUE_DIR / "envelope.v1.json")


@cache
def _validator(source: str, event_type: str, version: int):
    return fastjsonschema.compile(payload_schema(source, event_type, version))


@cache
def _envelope_validator():
    return fastjsonschema.compile(envelope_schema())


def validate_envelope(message: dict[str, Any]) -> None:
    """Raise :class:`SchemaViolation` naming the event and the failing rule."""
    try:
        _envelope_validator()(message)
    except fastjsonschema.JsonSchemaException as e:
        raise SchemaViolation(f"envelope: {e.message}") from e
    validator = _validator(message["source"], message["event_type"], message["schema_version"])
    try:
        validator(message["payload"])
    except fastjsonschema.JsonSchemaException as e:
        raise SchemaViolation(
            f"{message['source']} {message['event_type']} v{message['schema_version']} "
            f"payload: {e.message}"
        ) from e


def legacy_served(source: str) -> dict[tuple[str, int], dict[str, Any]]:
    """The earlier versions ``source`` still publishes beside the current one (its
    ``legacy.json``: routing key, last day), by (event type, version)."""
    path = CATALOGUE_DIR / source / "legacy.json"
    if not path.exists():
        return {}
    return {(e["event_type"], e["version"]): e for e in _load(path)["served"]}


def catalogue_index() -> list[dict[str, Any]]:
    """Every schema in the catalogue: source, type, version, title (for subscribers)."""
    entries = []
    for path in sorted(CATALOGUE_DIR.glob("*/*.v*.json")):
        event_type, _, version = path.stem.rpartition(".v")
        schema = _load(path)
        entries.append({"source": path.parent.name, "event_type": event_type,
                        "schema_version": int(version), "title": schema.get("title", ""),
                        "description": schema.get("description", "")})
    return entries
