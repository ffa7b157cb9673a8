"""The one envelope every published message wears (DESIGN.md §2), and its JSON encoding.

A recorded domain event becomes an :class:`Envelope` by :func:`envelope_from_event`. The
envelope is built from what is stored, so the relay, an RPC read of the notification log and a
replay all produce the same bytes for the same event: the event id is derived from the
aggregate id and version, not drawn at publish time.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

ENVELOPE_VERSION = 1
_EVENT_ID_NAMESPACE = uuid.UUID("6f1d3c2e-5b7a-4d21-9a43-0c8e2f7b9d10")
# Attributes of a stored event that the envelope carries in its own fields.
_NOT_PAYLOAD = {"originator_id", "originator_version", "timestamp", "meta", "originator_topic"}


@dataclass(frozen=True)
class Envelope:
    event_id: str
    event_type: str
    schema_version: int
    source: str
    aggregate_id: str
    aggregate_version: int
    notification_id: int
    occurred_at: str
    actor: str
    department: str
    correlation_id: str
    causation_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    envelope_version: int = ENVELOPE_VERSION

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: dataclasses.asdict deep-copies the payload, and this is the
        # relay's hot path (it halved relay throughput when measured).
        return {name: getattr(self, name) for name in _FIELDS}

    def to_json(self) -> bytes:
        return encode(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        """Check every field's type before any code uses it (:class:`UnreadableEnvelope`
        otherwise). Fields this version does not know (an upstream deployed with a newer
        envelope) are ignored, so a consumer keeps working until it is upgraded."""
        if not isinstance(data, dict):
            raise UnreadableEnvelope(f"an envelope is a JSON object, got {type(data).__name__}")
        problems = [f"{name}: {problem}" for name, check in _CHECKS.items()
                    if (problem := check(data.get(name, _ABSENT)))]
        if problems:
            raise UnreadableEnvelope("; ".join(problems))
        return cls(**{k: v for k, v in data.items() if k in _FIELD_SET})

    @classmethod
    def lenient(cls, data: dict[str, Any]) -> Envelope:
        """What can be read of a stored envelope (a parked letter), however off its contract:
        each field that fails its check is replaced by an empty value of its type."""
        try:
            return cls.from_dict(data)
        except UnreadableEnvelope:
            pass
        empty: dict[str, Any] = {"schema_version": 1, "aggregate_version": 1,
                                 "notification_id": 1, "payload": {}, "envelope_version": 1}
        return cls(**{name: data[name] if name in data and not check(data[name])
                      else empty.get(name, "") for name, check in _CHECKS.items()})

    @classmethod
    def from_json(cls, body: bytes | str) -> Envelope:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise UnreadableEnvelope(f"not JSON: {e}") from None
        return cls.from_dict(data)


class UnreadableEnvelope(ValueError):
    """A message that is not an envelope of this version: a field missing or of the wrong
    type. Consumers set it aside before any handler sees it."""


_ABSENT = object()


def _text(empty_ok: bool = False) -> Any:
    def check(value: Any) -> str | None:
        if value is _ABSENT:
            return "missing"
        if not isinstance(value, str):
            return f"must be a string, got {type(value).__name__}"
        if not value and not empty_ok:
            return "must not be empty"
        return None
    return check


def _whole(minimum: int, required: bool = True) -> Any:
    def check(value: Any) -> str | None:
        if value is _ABSENT:
            return "missing" if required else None
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {type(value).__name__}"
        if not minimum <= value < 2**63:
            return f"must be from {minimum} to 2^63-1, got {value}"
        return None
    return check


def _object(value: Any) -> str | None:
    if value is _ABSENT:
        return "missing"
    return None if isinstance(value, dict) else f"must be an object, got {type(value).__name__}"


_CHECKS = {
    "event_id": _text(), "event_type": _text(), "schema_version": _whole(1),
    "source": _text(), "aggregate_id": _text(), "aggregate_version": _whole(1),
    "notification_id": _whole(1), "occurred_at": _text(), "actor": _text(True),
    "department": _text(True), "correlation_id": _text(True),
    "causation_id": _text(True), "payload": _object, "envelope_version": _whole(1, False),
}


_FIELDS = tuple(f.name for f in fields(Envelope))
_FIELD_SET = frozenset(_FIELDS)


def encode(message: dict[str, Any]) -> bytes:
    """The JSON bytes of an envelope's dict, as published."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


def institution_id_of(env: Envelope) -> str:
    """The institution an event of the registration service is about: the payload's
    ``institution_id`` where the event names one (since schema version 2 the roster's and the
    enrolment reports' events, whose aggregate is the institution's roster or reports), else
    the aggregate's id (the institution's own events, and version 1 of those, recorded in the
    institution's own stream)."""
    given = env.payload.get("institution_id")
    return str(given) if given else env.aggregate_id


def event_type_of(event: Any) -> str:
    """``Institution.Filed`` → ``InstitutionFiled``, unless the class names its type."""
    cls = type(event)
    return getattr(cls, "event_type", None) or cls.__qualname__.replace(".", "")


def event_payload(event: Any) -> dict[str, Any]:
    """A stored event's own attributes, as they are (the envelope's payload before
    :func:`to_json_value`): without its id, version, timestamp, topic and ``meta``."""
    return {k: v for k, v in vars(event).items() if k not in _NOT_PAYLOAD}


_PLAIN = frozenset({str, int, bool, float, type(None)})


def to_json_value(value: Any) -> Any:
    """Plain JSON for a payload value: the one public encoding of every service, for
    envelopes, HTTP answers (:func:`tuoyu_shared.nameko_support.json_response`) and RPC
    replies. Dates and times as ISO 8601 (times in UTC; a naive one is taken as UTC), UUIDs
    and decimals as strings, enums as their values, tuples and sets as lists, keys as strings.
    Sealed personal data leaves only its ref (a random pseudonym): a ``sealed`` key is
    dropped at any depth, and so is the ``masked`` of a person's value that events recorded
    before masks left the log still hold (``{"ref", "masked"}``)."""
    if type(value) in _PLAIN:
        return value  # the common case first: most payload values are plain already
    if isinstance(value, dict):
        if "ref" in value:
            return {str(k): to_json_value(v) for k, v in value.items()
                    if k != "sealed" and k != "masked"}
        return {str(k): to_json_value(v) for k, v in value.items() if k != "sealed"}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json_value(v) for v in value]
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


def event_id_for(source: str, aggregate_id: str, version: int) -> str:
    """The id of an event in every envelope it is ever sent in (relay, log read, replay)."""
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{source}:{aggregate_id}:{version}"))


def envelope_of(source: str, notification_id: int, event: Any, event_type: str,
                schema_version: int, payload: dict[str, Any]) -> Envelope:
    """The envelope of a stored event, published as ``event_type`` v``schema_version`` with
    ``payload``: the envelope's own fields come from the event's identity and its ``meta``."""
    meta = vars(event).get("meta") or {}
    aggregate_id = str(event.originator_id)
    version = int(event.originator_version)
    return Envelope(
        event_id=event_id_for(source, aggregate_id, version),
        event_type=event_type,
        schema_version=schema_version,
        source=source,
        aggregate_id=aggregate_id,
        aggregate_version=version,
        notification_id=int(notification_id),
        occurred_at=to_json_value(event.timestamp),
        actor=meta.get("actor", "system"),
        department=meta.get("department", "system"),
        correlation_id=meta.get("correlation_id", ""),
        causation_id=meta.get("causation_id", ""),
        payload=payload,
    )


def envelope_from_event(source: str, notification_id: int, event: Any) -> Envelope:
    """The envelope of an event published as it is stored: every attribute, the class's name
    and ``class_version``. For the kit's own tests and tools; a service publishes through its
    :class:`~tuoyu_shared.contract.Contract`."""
    return envelope_of(source, notification_id, event, event_type_of(event),
                       int(getattr(type(event), "class_version", 1)),
                       {k: to_json_value(v) for k, v in vars(event).items()
                        if k not in _NOT_PAYLOAD})
