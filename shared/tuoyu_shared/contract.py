"""What a service publishes: an explicit mapping from each domain event to its published payload.

Subscribers (other services, other government systems) read a service's events as a contract:
type, version and payload fields, each version with its JSON Schema in the catalogue. The
domain's event classes are the service's internals and change with its aggregates. A
:class:`Contract` sits between the two. Each :class:`Published` entry names

* the domain event class it publishes,
* the published type and version (not the class's name or ``class_version``),
* the payload's fields, each read from an attribute of the event (by default the attribute
  of the same name; ``{"published": "attribute"}`` renames), and fields computed from the event
  (``computed``, with their schemas).

An envelope (:meth:`Contract.envelope`) is built only from a publication: renaming an
attribute breaks the mapping (:class:`ContractBroken`, which stops the relay before anything
leaves and fails the service's catalogue test), and changing a published field's type changes
the schema generated from the contract (:mod:`tuoyu_shared.catalogue_gen`), which the test
compares with the committed file of that version. Changing what subscribers receive therefore
takes a new version: a new ``Published`` version and a new schema file beside the old one.

Every event a service stores is published (consumers fill gaps from the log by notification
id, so the log has no holes in what they see); an event class without a publication is a bug
the catalogue test finds and the relay refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuoyu_shared.catalogue import SchemaViolation
from tuoyu_shared.envelope import Envelope, envelope_of, to_json_value

__all__ = ["Contract", "ContractBroken", "Legacy", "Published"]


class ContractBroken(SchemaViolation):
    """A stored event has no publication, or its publication cannot read it."""


@dataclass(frozen=True)
class Published:
    """One published event type and version, and how its payload is made from a domain event."""

    event_class: type
    event_type: str
    version: int
    #: Payload fields: names read from the attributes of the same name, or a mapping of
    #: published name to attribute name.
    fields: Sequence[str] | Mapping[str, str] = ()
    #: Payload fields computed from the event: ``name: (function(event), JSON Schema)``.
    computed: Mapping[str, tuple[Callable[[Any], Any], dict[str, Any]]] = field(
        default_factory=dict)
    #: Refinements of the generated schema of a field (enums, formats, descriptions).
    schema: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def attributes(self) -> dict[str, str]:
        """Published field name -> the event attribute it is read from."""
        if isinstance(self.fields, Mapping):
            return dict(self.fields)
        return {name: name for name in self.fields}

    @property
    def field_names(self) -> list[str]:
        return [*self.attributes, *self.computed]

    def payload(self, event: Any) -> dict[str, Any]:
        state = vars(event)
        out: dict[str, Any] = {}
        for name, attribute in self.attributes.items():
            if attribute not in state:
                raise ContractBroken(f"{self.event_type} v{self.version} reads {attribute!r}, "
                                     f"which {type(event).__qualname__} does not have")
            out[name] = to_json_value(state[attribute])
        for name, (compute, _schema) in self.computed.items():
            out[name] = to_json_value(compute(event))
        return out


@dataclass(frozen=True)
class Legacy:
    """An earlier version of a published type, still published beside the current one until
    ``until`` (an ISO date, Asia/Shanghai: the last day), so that subscribers not yet upgraded
    keep being served: each event of the current version is also sent as this version, with
    the routing key ``<event_type>.v<version>`` (the current versions' keys have no dot: a
    binding ``*`` takes them alone) and its payload made by ``downcast(current payload)``.
    The catalogue announces the date; the log and a replay give the current version only."""

    event_type: str
    version: int
    until: str
    downcast: Callable[[dict[str, Any]], dict[str, Any]]

    @property
    def routing_key(self) -> str:
        return f"{self.event_type}.v{self.version}"

    def served_on(self, day: Any) -> bool:
        import datetime as dt

        return day <= dt.date.fromisoformat(self.until)


class Contract:
    """A service's publications, one per domain event class."""

    def __init__(self, source: str, publications: Iterable[Published],
                 legacy: Iterable[Legacy] = ()):
        self.source = source
        self.legacy = {entry.event_type: entry for entry in legacy}
        self.publications = list(publications)
        self._by_class: dict[type, Published] = {}
        for publication in self.publications:
            assert publication.event_class not in self._by_class, (
                f"{publication.event_class.__qualname__} is published twice")
            self._by_class[publication.event_class] = publication
        keys = [(p.event_type, p.version) for p in self.publications]
        assert len(keys) == len(set(keys)), f"{source}: a type and version published twice"

    def publication(self, event: Any) -> Published:
        try:
            return self._by_class[type(event)]
        except KeyError:
            raise ContractBroken(f"{self.source} has no publication for "
                                 f"{type(event).__qualname__}: add one to its contract") from None

    def published_types(self) -> set[str]:
        return {p.event_type for p in self.publications}

    def legacy_copies(self, envelope: Envelope, day: Any = None) -> list[tuple[str, Envelope]]:
        """``(routing key, envelope)`` of the earlier version still served of an envelope's
        type (none past its date, or for a type with none): the same event, id and position,
        as that version. ``day`` is today in Asia/Shanghai unless given."""
        entry = self.legacy.get(envelope.event_type)
        if entry is None or entry.version >= envelope.schema_version:
            return []
        if day is None:
            import datetime as dt
            from zoneinfo import ZoneInfo

            day = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
        if not entry.served_on(day):
            return []
        from dataclasses import replace

        return [(entry.routing_key, replace(envelope, schema_version=entry.version,
                                            payload=entry.downcast(dict(envelope.payload))))]

    def envelope(self, notification_id: int, event: Any) -> Envelope:
        """The envelope of a stored event, as published."""
        publication = self.publication(event)
        return envelope_of(self.source, notification_id, event, publication.event_type,
                           publication.version, publication.payload(event))
