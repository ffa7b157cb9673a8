"""A service's composition root (as in *Cosmic Python*'s ``bootstrap.py``), in the kit's terms.

Each service's ``tuoyu_<service>/bootstrap.py`` declares one :class:`CompositionRoot`: the one
place where its application is built from configuration (the environment, configuration
files) with its real adapters (PostgreSQL event store, the personal-data vault, the system
clock, the working-day calendar), and where a test replaces any of them (a fixed clock, a
calendar, a rules set) by passing it. The service's nameko adapter, its worker, its migration
command and the tests all build the application through it, so configuration is read in one
place and an application's constructor reads no environment, creates no database, runs no
DDL and starts no processes.

``data_migrations`` are the steps that bring an earlier release's *data* forward once its
schema is migrated (a new aggregate filled from the events of an older one): ``python -m
tuoyu_<service> migrate`` runs them after the schema's migrations, and :meth:`application`
runs what is still pending at start (each step is idempotent and resumes where it stopped),
so an upgrade needs nothing but ``migrate``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tuoyu_shared.config import Settings, settings_for
from tuoyu_shared.logs import get_logger

log = get_logger("tuoyu.bootstrap")


@dataclass(frozen=True)
class DataMigration:
    """A step that carries an earlier release's data forward (see the module docstring)."""

    name: str
    #: ``pending(app)``: whether the step has work left.
    pending: Callable[[Any], bool]
    #: ``run(app)``: do it; returns a summary for the log and the command line.
    run: Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class CompositionRoot:
    service: str
    #: ``build(settings, **overrides)``: the application with its adapters.
    build: Callable[..., Any]
    data_migrations: Sequence[DataMigration] = ()

    def settings(self) -> Settings:
        return settings_for(self.service)

    def application(self, settings: Settings | None = None, **overrides: Any) -> Any:
        """The service's application, ready: built from ``settings`` (by default from the
        environment) and ``overrides``, with the data migrations still pending run."""
        app = self.build(settings or self.settings(), **overrides)
        self.migrate_data(app)
        return app

    def migrate_data(self, app: Any) -> dict[str, dict[str, Any]]:
        done = {}
        for step in self.data_migrations:
            if step.pending(app):
                done[step.name] = step.run(app)
                log.info("data.migrated", service=self.service, step=step.name,
                         **{k: v for k, v in done[step.name].items()
                            if isinstance(v, (int, str))})
        return done
