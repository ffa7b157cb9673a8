"""A person's rights over their data in every service: erasure (crypto-shredding) and export.

Every service that seals personal data (:mod:`tuoyu_shared.personal_data`) gets the same two
commands from :class:`PeopleCommands`, mixed into its :class:`ServiceApplication`; the
gateway calls them on every such service (``/api/people/erasures``, ``/api/people/exports``),
since each service finds the person through its own blind index and no service can find them
in another's.

- **Erasure** (删除个人信息, 个人信息保护法 第47条), with its reason and legal basis: for each
  ref the service holds for the ID number, the person's data key, blind-index entries and
  shown masks go (:meth:`PersonalDataVault.erase`), and a ``PersonalDataErased`` event is
  recorded (``{person_ref, kind, reason, legal_basis, erased_on}``, no ID number), which is
  published like any other: read models elsewhere drop what they show of that ref. The
  history still replays: the sealed values in it no longer open. A service keeps what a law
  obliges it to keep (:meth:`PeopleCommands.retention_of`, e.g. credit while a practitioner
  ban is in force, 未成年人保护法 第62条): that ref is answered as ``retained`` with the reason,
  the rest is erased (个人信息保护法 第47条 asks to delete what no law requires to be kept).
  Erasing a person erased already changes nothing (idempotent: the gateway may call again
  after a service was down).
- **Export** (查阅、复制, 第45条): every event of the service's log that holds a sealed value
  of one of the person's refs, with the values opened (field path -> value), and the refs.
  The read is recorded like an auditor's (``audited_calls``) before it is answered.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, StoredEvent

from tuoyu_shared.commands import Command, FreeText, ResidentId, parse
from tuoyu_shared.contract import Published
from tuoyu_shared.logs import get_logger

log = get_logger("tuoyu.people")

_NAMESPACE = uuid.UUID("0b9c8f36-3f4a-4d1e-9a43-5d8f2b7f3a11")


def personal_data_id_for(person_ref: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, person_ref)


class PersonalData(Aggregate):
    """A person's personal data in one service: a stream that records only its erasure (the
    sealed values themselves are in the streams of the cases they belong to)."""

    class Erased(Aggregate.Created):
        """The person's data in this service was erased (crypto-shredded): key, blind-index
        entries and masks deleted; the events that sealed their values replay, unreadable."""

        person_ref: str
        kind: str
        reason: str
        legal_basis: str
        erased_on: dt.date

        payload_schema: ClassVar[dict[str, Any]] = {
            "person_ref": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "kind": {"type": "string"},
            "erased_on": {"type": "string", "format": "date"},
        }

    @staticmethod
    def create_id(person_ref: str, **_: Any) -> uuid.UUID:
        return personal_data_id_for(person_ref)

    @event(Erased)
    def __init__(self, person_ref: str, kind: str, reason: str, legal_basis: str,
                 erased_on: dt.date):
        self.person_ref = person_ref
        self.kind = kind
        self.reason = reason
        self.legal_basis = legal_basis
        self.erased_on = erased_on


#: Every service that seals personal data publishes its erasures (add to its contract).
PUBLICATIONS = (
    Published(PersonalData.Erased, "PersonalDataErased", 1, (
        "person_ref", "kind", "reason", "legal_basis", "erased_on")),
)


class ErasePerson(Command):
    """Erase a person's data in this service (crypto-shredding), with the reason."""

    command_name = "erase_person"
    id_number: ResidentId()
    """公民身份号码 of the person (found through the service's blind index; never stored)."""
    reason: FreeText(2000)
    """Why: the request's reference and date and how the requester's identity was verified,
    never the person's name (the reason stays in the log and is published)."""
    legal_basis: FreeText(500)
    """个人信息保护法 第47条, …"""


class ExportPerson(Command):
    """A copy of a person's data held by this service, for them (the read is recorded)."""

    command_name = "export_person"
    id_number: ResidentId()
    """公民身份号码 of the person."""
    purpose: FreeText(500)
    """Why: the request's reference and date, never the person's name (it is recorded)."""


COMMANDS = {"erase_person": ErasePerson, "export_person": ExportPerson}


def _sealed_values(value: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every sealed value in an event's state, with its path (``person_in_charge.name``,
    ``items[0].name``)."""
    if isinstance(value, dict):
        if "sealed" in value and isinstance(value.get("ref"), str):
            yield path, value
            return
        for k, v in value.items():
            yield from _sealed_values(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for n, v in enumerate(value):
            yield from _sealed_values(v, f"{path}[{n}]")


class PeopleCommands:
    """Mixed into a :class:`~tuoyu_shared.application.ServiceApplication` that has a
    ``vault`` (:class:`~tuoyu_shared.personal_data.PersonalDataVault`)."""

    vault: Any

    def retention_of(self, person_ref: str, kind: str) -> str | None:
        """Why this service must keep the person's data (refusing the erasure), or None.
        A service overrides it where a law obliges it to keep data."""
        return None

    def on_person_erased(self, person_ref: str, kind: str) -> None:
        """After an erasure here: a service whose own tables show something of the person
        beyond the vault's masks removes it."""

    def erase_person(self, data: dict[str, Any]) -> dict[str, Any]:
        """``{"erased": [{kind, person_ref}], "retained": [{kind, person_ref, reason}]}``:
        a ref the service must keep by law (:meth:`retention_of`) stays, with the reason; the
        others are erased. Again for a person erased already: nothing more (``erased`` empty
        once every ref is gone)."""
        from tuoyu_shared.validation import refusing_field_errors

        return refusing_field_errors(self._erase_person)(data)

    def _erase_person(self, data: dict[str, Any]) -> dict[str, Any]:
        command = parse(ErasePerson, data)
        refs = self.vault.refs_of(command.id_number)
        erased, retained = [], []
        today = self.today() if hasattr(self, "today") else dt.datetime.now(dt.UTC).date()
        for kind, ref in refs.items():
            # Under the person's lock: a command that would make the data one the law keeps
            # (credit's ban) takes it too, so it comes wholly before or wholly after.
            with self.vault.person_lock(ref):
                reason = self.retention_of(ref, kind)
                if reason:  # kept by law: this ref stays, the others go
                    retained.append({"kind": kind, "person_ref": ref, "reason": reason})
                    log.info("person.retained", person_ref=ref, kind=kind)
                    continue
                record = PersonalData(person_ref=ref, kind=kind, reason=command.reason,
                                      legal_basis=command.legal_basis, erased_on=today)
                try:  # the event first: an erasure is never done unrecorded
                    self.save(record)  # type: ignore[attr-defined]
                    erased.append({"kind": kind, "person_ref": ref})
                except IntegrityError:
                    pass  # recorded by an earlier call that did not finish: finish it
                # the service's own tables before the key and the index: until the index
                # entry goes, a call again finds the ref and finishes what failed
                self.on_person_erased(ref, kind)
                self.vault.erase(ref)
            log.info("person.erased", person_ref=ref, kind=kind)
        return {"erased": erased, "retained": retained}

    def export_person(self, data: dict[str, Any]) -> dict[str, Any]:
        from tuoyu_shared.validation import refusing_field_errors

        return refusing_field_errors(self._export_person)(data)

    def _export_person(self, data: dict[str, Any]) -> dict[str, Any]:
        command = parse(ExportPerson, data)
        refs = self.vault.refs_of(command.id_number)
        self._record_export(sorted(refs.values()), command.purpose)
        records = []
        if refs:
            records = list(self._events_holding(set(refs.values())))
        log.info("person.exported", refs=len(refs), events=len(records))
        return {"service": self.service_name,  # type: ignore[attr-defined]
                "refs": refs, "events": records}

    def _record_export(self, refs: list[str], purpose: str) -> None:
        """The export is a read of personal data: recorded (who, which refs, the purpose's
        first words; never the number) before it is answered."""
        import psycopg
        from psycopg.types.json import Jsonb

        from tuoyu_shared.context import current_context

        ctx = current_context()
        with psycopg.connect(self.settings.database_url,  # type: ignore[attr-defined]
                             autocommit=True) as conn:
            conn.execute(
                "INSERT INTO audited_calls (subject, role, department, district, method, "
                "arguments, correlation_id) VALUES (%s, 'officer', %s, '', 'export_person', "
                "%s, %s)", (ctx.actor, ctx.department, Jsonb([*refs, purpose[:100]]),
                            ctx.correlation_id[:100]))

    def _events_holding(self, refs: set[str]) -> Iterable[dict[str, Any]]:
        """Every stored event whose state holds one of the refs, with the sealed values of
        those refs opened (a scan of the log: an export is rare)."""
        from tuoyu_shared.envelope import event_type_of, to_json_value

        recorder = self.recorder  # type: ignore[attr-defined]
        table = recorder.events_table_name
        mapper = self.mapper  # type: ignore[attr-defined]
        with recorder.datastore.get_connection() as conn:
            patterns = [ref.encode() for ref in sorted(refs)]
            rows = conn.execute(
                f"SELECT notification_id, originator_id, originator_version, topic, state "
                f"FROM {table} WHERE " + " OR ".join(["position(%s in state) > 0"] * len(
                    patterns)) + " ORDER BY notification_id", patterns).fetchall()
        for row in rows:
            domain_event = mapper.to_domain_event(StoredEvent(
                originator_id=row["originator_id"], originator_version=row[
                    "originator_version"], topic=row["topic"], state=bytes(row["state"])))
            opened = {path: self.vault.open(sealed)
                      for path, sealed in _sealed_values(vars(domain_event))
                      if sealed["ref"] in refs}
            values = {path: v for path, v in opened.items() if v is not None}  # erased: none
            if not values and type(domain_event) is not PersonalData.Erased:
                continue
            yield {"notification_id": row["notification_id"],
                   "event_type": event_type_of(domain_event),
                   "aggregate_id": str(row["originator_id"]),
                   "occurred_at": to_json_value(domain_event.timestamp),
                   "values": values}


# ---- carrying the scheme before forward (a data migration of every sealing service) ---------
def _old_keys_table_exists(app: Any) -> bool:
    import psycopg

    with psycopg.connect(app.settings.database_url) as conn:
        return conn.execute("SELECT to_regclass('personal_data_keys')").fetchone()[0] is not None


def _kind_of(path: str, topic: str) -> str | None:
    if "person_in_charge" in path:
        return "person_in_charge"
    if "practitioner" in path or "practitioner" in topic.lower():
        return "practitioner"
    return None


def carry_over_personal_data(app: Any) -> dict[str, Any]:
    """:func:`_carry_over` under a lock of the database: processes starting together wait,
    and the one that finds the old table gone has nothing to do."""
    import psycopg

    with psycopg.connect(app.settings.database_url, autocommit=True) as lock:
        lock.execute("SELECT pg_advisory_lock(hashtextextended('carry-over-personal-data', 0))")
        if lock.execute("SELECT to_regclass('personal_data_keys')").fetchone()[0] is None:
            return {"keys": 0, "erased": 0, "indexed": 0, "shown": 0}
        return _carry_over(app)


def _carry_over(app: Any) -> dict[str, Any]:
    """Bring a database of the scheme before (data keys in clear in ``personal_data_keys``,
    masks in the events) into this one, then drop the old table. Idempotent; resumes.

    1. every data key wrapped by the current KEK into ``person_keys`` (an erased one stays
       erased);
    2. the log read once: each sealed ID number opened and entered in this service's blind
       index under the ref the events already use, and each name's mask (opened, or the mask
       the old event held) kept in ``person_display``;
    3. ``personal_data_keys`` dropped. Stop the processes of the release before first: a key
       one of them writes to the old table after step 1 would be dropped with it.

    The refs recorded before stay in the log (it is never rewritten): they were a keyed hash
    of the number under the secret the services used to share (``TUOYU_PERSONAL_DATA_KEY``),
    which nothing reads any more. Destroy that secret, and they link to nothing."""
    import psycopg
    from psycopg.rows import dict_row

    from tuoyu_shared.validation import mask_name

    vault = app.vault
    url = app.settings.database_url
    with psycopg.connect(url) as conn, conn.transaction():
        rows = conn.execute("SELECT person_ref, data_key FROM personal_data_keys").fetchall()
        wrapped = [(ref, *vault._wrap(ref, bytes(key))) if key is not None else (ref, None, None)
                   for ref, key in rows]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO person_keys (person_ref, wrapped_key, kek_id, erased_at) "
                "VALUES (%s, %s, %s, CASE WHEN %s::bytea IS NULL THEN now() END) "
                "ON CONFLICT (person_ref) DO NOTHING",
                [(ref, w, kid, w) for ref, w, kid in wrapped])
    keys = sum(1 for _, w, _ in wrapped if w is not None)
    vault._keys.clear()
    recorder = app.recorder
    indexed: set[tuple[str, str]] = set()
    shown: dict[str, str] = {}
    with psycopg.connect(url, row_factory=dict_row) as conn:
        cursor = conn.cursor(name="carry_over_personal_data")  # server-side: any log size
        cursor.execute(f"SELECT originator_id, originator_version, topic, state FROM "
                       f"{recorder.events_table_name} WHERE position(convert_to("
                       "'\"sealed\"', 'UTF8') in state) > 0 ORDER BY notification_id")
        for row in cursor:
            domain_event = app.mapper.to_domain_event(StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"], topic=row["topic"],
                state=bytes(row["state"])))
            for path, sealed in _sealed_values(vars(domain_event)):
                field = path.rsplit(".", 1)[-1]
                if field == "id_number":
                    kind = _kind_of(path, row["topic"])
                    number = vault.open(sealed)
                    if kind and number and (kind, sealed["ref"]) not in indexed:
                        vault.enrol(kind, number, sealed["ref"])
                        indexed.add((kind, sealed["ref"]))
                elif field == "name":
                    name = vault.open(sealed)
                    mask = mask_name(name) if name else sealed.get("masked")
                    if mask and not vault.is_erased(sealed["ref"]):
                        shown[sealed["ref"]] = mask
    vault.set_display({ref: {"name": mask} for ref, mask in shown.items()})
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS personal_data_keys")
    return {"keys": keys, "erased": len(wrapped) - keys, "indexed": len(indexed),
            "shown": len(shown)}


def carry_over_step() -> Any:
    """The data migration every service that seals personal data declares in its
    composition root (``data_migrations``)."""
    from tuoyu_shared.bootstrap import DataMigration

    return DataMigration("personal-data-keys", _old_keys_table_exists,
                         carry_over_personal_data)

