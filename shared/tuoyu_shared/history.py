"""An aggregate's history as officers and auditors read it: each stored event with who, when
and what, in the one public JSON encoding (:func:`~tuoyu_shared.envelope.to_json_value`:
sealed personal data only as its mask and ref).

Pure Python, no I/O: the events come from the caller (``app.repository.event_store.get(id)``,
or the notification log mapped to domain events).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tuoyu_shared.envelope import event_payload, event_type_of, to_json_value

__all__ = ["Describe", "history_entries", "history_entry"]

#: A service's words for an event: ``(event, its payload) → extra fields of the entry``
#: (credit's reason and cause), placed after ``occurred_at``.
Describe = Callable[[Any, dict[str, Any]], Mapping[str, Any]]


def history_entry(event: Any, describe: Describe | None = None) -> dict[str, Any]:
    """``{version, event_type, occurred_at, [described…], actor, department, correlation_id,
    causation_id, data}`` of one stored event; ``data`` is its payload as subscribers get it
    (the envelope's ``payload``), ``occurred_at`` and ``event_type`` as in its envelope, and the
    context fields None where the event has none."""
    meta = getattr(event, "meta", None) or {}
    data = event_payload(event)
    entry: dict[str, Any] = {
        "version": event.originator_version,
        "event_type": event_type_of(event),
        "occurred_at": to_json_value(event.timestamp),
    }
    if describe is not None:
        entry.update(to_json_value(dict(describe(event, data))))
    entry.update({
        "actor": meta.get("actor"), "department": meta.get("department"),
        "correlation_id": meta.get("correlation_id"),
        "causation_id": meta.get("causation_id"),
        "data": to_json_value(data),
    })
    return entry


def history_entries(events: Iterable[Any], describe: Describe | None = None
                    ) -> list[dict[str, Any]]:
    """The entries of :func:`history_entry` for each event, in the order given."""
    return [history_entry(event, describe) for event in events]
