"""Configuration from the environment, in one place, with defaults for local running.

Every service reads the same variables; a service-specific one wins over the shared one:

- ``TUOYU_<SERVICE>_DATABASE_URL``: the service's own database
  (default ``postgresql://tuoyu@127.0.0.1:25432/tuoyu_<service>``, the private server of
  ``make run``).
- ``TUOYU_AMQP_URI``: the RabbitMQ broker (default ``amqp://guest:guest@127.0.0.1:25672//``).
- ``TUOYU_LOG_LEVEL`` (default ``info``), ``TUOYU_PERSONAL_DATA_KEY`` (the secret of the keyed
  hash that finds personal data; a development default is used when unset, except with
  ``TUOYU_ENVIRONMENT=production``, where a secret of at least 32 characters is required).
- ``TUOYU_CONSUMER_MAX_ATTEMPTS`` (default 5), ``TUOYU_CONSUMER_RETRY_DELAY`` (seconds, 0.2),
  ``TUOYU_CONSUMER_CATCHUP_INTERVAL`` (seconds, 5), ``TUOYU_RELAY_BATCH_SIZE`` (500).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_PG = "postgresql://tuoyu@127.0.0.1:25432"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:25672//"
DEV_PERSONAL_DATA_KEY = "tuoyu-development-key-not-for-production"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    service: str
    database_url: str
    amqp_uri: str
    log_level: str = "info"
    personal_data_key: str = DEV_PERSONAL_DATA_KEY
    consumer_max_attempts: int = 5
    consumer_retry_delay: float = 0.2
    consumer_catchup_interval: float = 5.0
    relay_batch_size: int = 500
    #: Seconds between AMQP heartbeats (relay, consumers, RPC clients): a half-open connection
    #: is noticed within about two of them, and a standby consumer takes over.
    amqp_heartbeat: float = 30.0

    @property
    def events_exchange(self) -> str:
        return f"{self.service}.events"

    def eventsourcing_env(self) -> dict[str, str]:
        return eventsourcing_env(self.database_url)


class ConfigurationError(RuntimeError):
    """The environment does not configure a service well enough to start."""


def _personal_data_key() -> str:
    key = _env("TUOYU_PERSONAL_DATA_KEY", DEV_PERSONAL_DATA_KEY)
    if _env("TUOYU_ENVIRONMENT", "development") == "production":
        if key == DEV_PERSONAL_DATA_KEY:
            raise ConfigurationError("TUOYU_PERSONAL_DATA_KEY must be set in production: the "
                                     "development key is in the source code")
        if len(key) < 32:
            raise ConfigurationError("TUOYU_PERSONAL_DATA_KEY must be at least 32 characters")
    return key


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
        amqp_uri=_env("TUOYU_AMQP_URI", DEFAULT_AMQP),
        log_level=_env("TUOYU_LOG_LEVEL", "info"),
        personal_data_key=_personal_data_key(),
        consumer_max_attempts=int(_env("TUOYU_CONSUMER_MAX_ATTEMPTS", "5")),
        consumer_retry_delay=float(_env("TUOYU_CONSUMER_RETRY_DELAY", "0.2")),
        consumer_catchup_interval=float(_env("TUOYU_CONSUMER_CATCHUP_INTERVAL", "5")),
        relay_batch_size=int(_env("TUOYU_RELAY_BATCH_SIZE", "500")),
        amqp_heartbeat=_heartbeat(),
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
