"""Configuration from the environment, in one place, with defaults for local running.

Every service reads the same variables; a service-specific one wins over the shared one:

- ``TUOYU_<SERVICE>_DATABASE_URL``: the service's own database
  (default ``postgresql://tuoyu@127.0.0.1:25432/tuoyu_<service>``, the private server of
  ``make run``).
- ``TUOYU_<SERVICE>_AMQP_URI``, else ``TUOYU_AMQP_URI``: the RabbitMQ broker, as the
  service's own user (default ``amqp://guest:guest@127.0.0.1:25672//``; ``make run`` and the
  process-group tests give each service a user of its own: :mod:`tuoyu_shared.broker_users`).
- ``TUOYU_LOG_LEVEL`` (default ``info``).
- Personal data (:mod:`tuoyu_shared.personal_data`), one set of keys per service, never shared:
  ``TUOYU_<SERVICE>_BLIND_INDEX_KEY`` (the secret of the service's blind index, which finds a
  person by ID number; at least 32 characters) and ``TUOYU_<SERVICE>_KEKS`` (the
  key-encryption keys that wrap the people's data keys: ``kid:base64`` entries separated by
  commas, 32-byte keys, the first one current, the others still accepted for unwrapping until
  ``python -m tuoyu_<service> rotate-kek`` has rewrapped every data key). Development
  defaults, derived from the service's name, are used when unset, except with
  ``TUOYU_ENVIRONMENT=production``, where both must be set.
- ``TUOYU_CONSUMER_MAX_ATTEMPTS`` (default 5), ``TUOYU_CONSUMER_RETRY_DELAY`` (seconds, 0.2),
  ``TUOYU_CONSUMER_CATCHUP_INTERVAL`` (seconds, 5), ``TUOYU_RELAY_BATCH_SIZE`` (500).
- ``TUOYU_QUEUE_TYPE``: ``classic`` (default: ``make run``, one broker node) or ``quorum``
  (production: a RabbitMQ cluster of three, the queue replicated by Raft), the type of the
  durable queues the services declare (:func:`queue_arguments`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_PG = "postgresql://tuoyu@127.0.0.1:25432"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:25672//"
DEV_KEY_PREFIX = "tuoyu-development-key-not-for-production"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    service: str
    database_url: str
    amqp_uri: str
    log_level: str = "info"
    #: The secret of this service's blind index (never another service's).
    blind_index_key: str = field(default=DEV_KEY_PREFIX, repr=False)
    #: ``((kid, 32-byte key), …)``: the first wraps new data keys, all unwrap. (Neither
    #: secret is in the settings' repr: a traceback never prints them.)
    keks: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)
    consumer_max_attempts: int = 5
    consumer_retry_delay: float = 0.2
    consumer_catchup_interval: float = 5.0
    relay_batch_size: int = 500
    #: Seconds a follower (relay, projector, consumer) lets commits gather after a round
    #: before its next one (TUOYU_BATCH_WINDOW_MS): under load they land in one round.
    batch_window: float = 0.01
    #: The same for the audit appender (TUOYU_AUDIT_BATCH_WINDOW_MS): a read that needs the
    #: leaves current (a correlation search, an export) appends what is left first.
    audit_batch_window: float = 0.25
    #: Seconds between AMQP heartbeats (relay, consumers, RPC clients): a half-open connection
    #: is noticed within about two of them, and a standby consumer takes over.
    amqp_heartbeat: float = 30.0
    #: ``((kid, 32-byte Ed25519 seed), …)`` (``TUOYU_<SERVICE>_AUDIT_SIGNING_KEYS``): the
    #: first signs the log's checkpoints and audit exports, all are published as trusted.
    audit_signing_keys: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)
    #: Seconds between checkpoints of the log (when it grew): TUOYU_AUDIT_CHECKPOINT_INTERVAL.
    audit_checkpoint_interval: float = 60.0
    #: A folder the worker appends each checkpoint to (``<service>.checkpoints.jsonl``), for
    #: the auditors' copy outside the database: TUOYU_AUDIT_CHECKPOINT_DIR (empty: none).
    audit_checkpoint_dir: str = ""

    @property
    def events_exchange(self) -> str:
        return f"{self.service}.events"

    @property
    def checkpoints_exchange(self) -> str:
        """Where the worker publishes the log's signed checkpoints (witnesses bind to it)."""
        return f"{self.service}.checkpoints"

    def eventsourcing_env(self) -> dict[str, str]:
        return eventsourcing_env(self.database_url)


class ConfigurationError(RuntimeError):
    """The environment does not configure a service well enough to start."""


def _production() -> bool:
    return _env("TUOYU_ENVIRONMENT", "development") == "production"


def _service_secret(name: str) -> str | None:
    """A service's own secret from the environment; None outside production when unset (the
    caller derives a development one from the service's name)."""
    value = os.environ.get(name) or ""
    if not value and _production():
        raise ConfigurationError(f"{name} must be set in production (the development key "
                                 "is derived from the service's name)")
    return value or None


def _blind_index_key(service: str) -> str:
    name = f"TUOYU_{service.upper()}_BLIND_INDEX_KEY"
    key = _service_secret(name)
    if key is None:
        return f"{DEV_KEY_PREFIX}:blind-index:{service}"
    if len(key) < 32:
        raise ConfigurationError(f"{name} must be at least 32 characters")
    return key


def parse_keks(text: str, name: str = "TUOYU_<SERVICE>_KEKS") -> tuple[tuple[str, bytes], ...]:
    """``"kid:base64,kid:base64"`` -> ``((kid, key), …)``; ConfigurationError, naming the
    entry, for anything else (a missing kid, bad base64, a key that is not 32 bytes, a kid
    given twice)."""
    keks: list[tuple[str, bytes]] = []
    for n, entry in enumerate(text.split(","), start=1):
        kid, sep, encoded = entry.strip().partition(":")
        if not sep or not kid or not encoded:
            raise ConfigurationError(f"{name}: entry {n} is not kid:base64")
        try:
            std = encoded.strip().replace("-", "+").replace("_", "/")  # either alphabet
            key = base64.b64decode(std + "=" * (-len(std) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(f"{name}: entry {n} ({kid}) is not base64") from None
        if len(key) != 32:
            raise ConfigurationError(f"{name}: entry {n} ({kid}) is {len(key)} bytes, "
                                     "not 32")
        if any(k == kid for k, _ in keks):
            raise ConfigurationError(f"{name}: kid {kid} is given twice")
        keks.append((kid, key))
    return tuple(keks)


def _keks(service: str) -> tuple[tuple[str, bytes], ...]:
    name = f"TUOYU_{service.upper()}_KEKS"
    text = _service_secret(name)
    if text is None:
        digest = hashlib.sha256(f"{DEV_KEY_PREFIX}:kek:{service}".encode()).digest()
        return (("dev-1", digest),)
    return parse_keks(text, name)


def _audit_signing_keys(service: str) -> tuple[tuple[str, bytes], ...]:
    name = f"TUOYU_{service.upper()}_AUDIT_SIGNING_KEYS"
    text = _service_secret(name)
    if text is None:
        digest = hashlib.sha256(f"{DEV_KEY_PREFIX}:audit-signing:{service}".encode()).digest()
        return ((f"{service}-dev-1", digest),)
    return parse_keks(text, name)


QUEUE_TYPES = ("classic", "quorum")


def queue_arguments() -> dict[str, str]:
    """Declaration arguments of a durable queue, by ``TUOYU_QUEUE_TYPE``. ``classic`` passes
    none (the broker's default type, so queues declared before the setting existed keep
    matching); ``quorum`` asks for ``x-queue-type: quorum``. A queue's type is fixed when it
    is declared: changing it means deleting the queue (docs/operations.md; a consumer loses
    nothing by that, it catches up from the upstream's log)."""
    kind = _env("TUOYU_QUEUE_TYPE", "classic").strip().lower()
    if kind not in QUEUE_TYPES:
        raise ConfigurationError(
            f"TUOYU_QUEUE_TYPE must be one of {', '.join(QUEUE_TYPES)}, got {kind!r}")
    return {"x-queue-type": "quorum"} if kind == "quorum" else {}


def _heartbeat() -> float:
    value = float(_env("TUOYU_AMQP_HEARTBEAT", "30"))
    if value != 0 and value < 1:  # the wire carries whole seconds: 0.5 would mean "none"
        raise ConfigurationError("TUOYU_AMQP_HEARTBEAT is 0 (off) or at least 1 second")
    return value


def settings_for(service: str) -> Settings:
    prefix = f"TUOYU_{service.upper()}_"
    base = _env("TUOYU_DATABASE_BASE_URL", DEFAULT_PG).rstrip("/")
    return Settings(
        service=service,
        database_url=_env(prefix + "DATABASE_URL", f"{base}/tuoyu_{service}"),
        amqp_uri=_env(prefix + "AMQP_URI", _env("TUOYU_AMQP_URI", DEFAULT_AMQP)),
        log_level=_env("TUOYU_LOG_LEVEL", "info"),
        blind_index_key=_blind_index_key(service),
        keks=_keks(service),
        consumer_max_attempts=int(_env("TUOYU_CONSUMER_MAX_ATTEMPTS", "5")),
        consumer_retry_delay=float(_env("TUOYU_CONSUMER_RETRY_DELAY", "0.2")),
        consumer_catchup_interval=float(_env("TUOYU_CONSUMER_CATCHUP_INTERVAL", "5")),
        relay_batch_size=int(_env("TUOYU_RELAY_BATCH_SIZE", "500")),
        batch_window=float(_env("TUOYU_BATCH_WINDOW_MS", "10")) / 1000,
        audit_batch_window=float(_env("TUOYU_AUDIT_BATCH_WINDOW_MS", "250")) / 1000,
        amqp_heartbeat=_heartbeat(),
        audit_signing_keys=_audit_signing_keys(service),
        audit_checkpoint_interval=float(_env("TUOYU_AUDIT_CHECKPOINT_INTERVAL", "60")),
        audit_checkpoint_dir=_env("TUOYU_AUDIT_CHECKPOINT_DIR", ""),
    )


def eventsourcing_env(database_url: str) -> dict[str, str]:
    """The eventsourcing library's settings for a PostgreSQL database URL.

    ``POSTGRES_ENABLE_DB_FUNCTIONS`` stays off: it skips the table lock, and notification ids
    then commit out of order (docs/architecture.md).
    """
    url = urlsplit(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/"),
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "POSTGRES_POOL_SIZE": "5",
        "POSTGRES_MAX_OVERFLOW": "10",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "",
        "POSTGRES_SINGLE_ROW_TRACKING": "y",
        # The tables come from the service's migrations (python -m tuoyu_<service> migrate).
        "CREATE_TABLE": "no",
    }


def ensure_database(database_url: str) -> None:
    """Create the database named in the URL if it does not exist yet."""
    import psycopg
    from psycopg import sql

    url = urlsplit(database_url)
    name = url.path.lstrip("/")
    admin = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:
                pass
