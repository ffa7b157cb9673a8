"""Schema migrations (yoyo-migrations): the kit's tables and each service's own.

Every service database gets, in order, the kit's migrations (``tuoyu_shared/migrations/``:
consumer tracking and dead letters, the relay's position, the personal-data vault) and then
its service's (``tuoyu_<service>/migrations/``: the event store, query tables, audit tables).
A migration is plain SQL that brings a database from the previous release to this one, and
also works on a database the previous release made itself (``IF NOT EXISTS``, guarded
``ALTER``s), so an upgrade is ``migrate`` and nothing else.

After the schema, ``migrate`` runs the data migrations of the service's composition root
(:mod:`tuoyu_shared.bootstrap`): steps that carry an earlier release's data forward.

Run by ``python -m tuoyu_<service> migrate`` (and by ``make run``, the tests and the images'
migration job) before the service starts. The services themselves run no DDL, and need no
right to create databases or tables: ``migrate --create-database`` is for development.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.resources
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tuoyu_shared.logs import get_logger

log = get_logger("tuoyu.migrate")

KIT_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _folders(service: str | None) -> list[str]:
    """The kit's migrations, then the service's (none: the kit's alone, for tests)."""
    return [str(KIT_MIGRATIONS), *([str(service_migrations(service))] if service else [])]


def service_migrations(service: str) -> Path:
    """The migrations folder of a service's package (``tuoyu_<service>/migrations``)."""
    return Path(str(importlib.resources.files(f"tuoyu_{service}") / "migrations"))


def _yoyo_url(database_url: str) -> str:
    """yoyo names psycopg 3 by its URL scheme."""
    parts = urlsplit(database_url)
    return parts._replace(scheme="postgresql+psycopg").geturl()


def pending(service: str | None, database_url: str) -> list[str]:
    """Ids of the migrations not yet applied (empty: the schema is current)."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(_yoyo_url(database_url))
    try:
        migrations = read_migrations(*_folders(service))
        return [m.id for m in backend.to_apply(migrations)]
    finally:
        backend.connection.close()


def migrate(service: str | None, database_url: str,
            create_database: bool = False) -> list[str]:
    """Apply what is pending, under yoyo's lock (two processes migrating at once wait for
    each other); returns the ids applied."""
    from yoyo import get_backend, read_migrations

    if create_database:
        from tuoyu_shared.config import ensure_database

        ensure_database(database_url)
    backend = get_backend(_yoyo_url(database_url))
    try:
        migrations = read_migrations(*_folders(service))
        with backend.lock():
            todo = backend.to_apply(migrations)
            backend.apply_migrations(todo)
        applied = [m.id for m in todo]
    finally:
        backend.connection.close()
    log.info("schema.migrated", service=service, applied=applied)
    return applied


#: The processes a service's image runs, each its own command (``make run``, the compose file
#: and the Kubernetes manifests all use these): ``serve`` the nameko adapter (RPC and its
#: ``/health`` and ``/metrics``), ``worker`` its background parts (:mod:`tuoyu_shared.worker`).
PROCESSES = {
    "serve": lambda service: ["-m", "tuoyu_shared.serve", f"tuoyu_{service}.service"],
    "worker": lambda service: ["-m", f"tuoyu_{service}.worker"],
}


def service_main(service: str, argv: list[str] | None = None) -> int:
    """``python -m tuoyu_<service> serve|worker …`` (the two processes, replacing this one,
    so a container's PID 1 is the process itself and receives its signals),
    ``python -m tuoyu_<service> migrate [--create-database] [--check]``,
    ``python -m tuoyu_<service> rotate-kek`` and ``python -m tuoyu_<service> audit …``
    (:mod:`tuoyu_shared.audit`)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PROCESSES:
        import os

        os.execv(sys.executable, [sys.executable, *PROCESSES[argv[0]](service), *argv[1:]])
    from tuoyu_shared.config import settings_for
    from tuoyu_shared.logs import configure_logging

    parser = argparse.ArgumentParser(prog=f"python -m tuoyu_{service}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="the service process: RPC, /health, /metrics (--port, --host)")
    sub.add_parser("worker", help="the worker: relay, views, consumers, timers (see "
                   "`worker --help`)")
    run = sub.add_parser("migrate", help="bring the service's database schema up to date")
    run.add_argument("--create-database", action="store_true",
                     help="create the database first if it is absent (development)")
    run.add_argument("--check", action="store_true",
                     help="apply nothing: exit 1 if migrations are pending")
    sub.add_parser("rotate-kek", help="rewrap every person's data key under the current "
                   "key-encryption key (the first of TUOYU_<SERVICE>_KEKS)")
    from tuoyu_shared import audit

    audit.add_command(sub)
    args = parser.parse_args(argv)
    settings = settings_for(service)
    configure_logging(service, settings.log_level)
    if args.command == "rotate-kek":
        return _rotate_kek(service, settings)
    if args.command == "audit":
        root = _composition_root(service)
        if root is None:
            print(f"{service} keeps no event log to audit", file=sys.stderr)
            return 2
        app = root.application(settings)
        try:
            return audit.run_command(app, args)
        finally:
            app.close()
    if args.check:
        todo = pending(service, settings.database_url)
        print("\n".join(todo) if todo else "schema is current")
        return 1 if todo else 0
    applied = migrate(service, settings.database_url, args.create_database)
    print(f"{service}: applied {len(applied)} migration(s)" +
          (f": {', '.join(applied)}" if applied else ""))
    root = _composition_root(service)
    if root is not None and root.data_migrations:
        app = root.build(settings)
        try:
            for step, result in root.migrate_data(app).items():
                print(f"{service}: data migration {step}: {result}")
        finally:
            app.close()
    return 0


def _rotate_kek(service: str, settings) -> int:
    """Rewrap the data keys; exit 1 if some are wrapped by a KEK no longer configured
    (they are listed: put that KEK back in the list and run again)."""
    from tuoyu_shared.personal_data import PersonalDataVault

    vault = PersonalDataVault.for_settings(settings)
    try:
        report = vault.rotate_kek()
        usage = vault.kek_usage()
    finally:
        vault.close()
    print(f"{service}: {report['rewrapped']} data key(s) rewrapped under KEK "
          f"{report['kek_id']}; keys by KEK now: {usage or 'none'}")
    if report["remaining"]:
        print(f"{service}: {report['remaining']} key(s) wrapped by a KEK that is not "
              f"configured, left as they are: {', '.join(report['unavailable'])}")
        return 1
    return 0


def _composition_root(service: str):  # -> CompositionRoot | None
    """The service's composition root (``tuoyu_<service>.bootstrap.ROOT``), if it has one."""
    try:
        module = importlib.import_module(f"tuoyu_{service}.bootstrap")
    except ModuleNotFoundError:
        return None
    return getattr(module, "ROOT", None)


if __name__ == "__main__":  # python -m tuoyu_shared.migrate SERVICE migrate …
    sys.exit(service_main(sys.argv[1], sys.argv[2:]))
