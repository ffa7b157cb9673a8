"""Subsidy's composition root (see :mod:`tuoyu_shared.bootstrap`).

Configuration read here: the service's settings (``TUOYU_SUBSIDY_DATABASE_URL``, the broker,
the blind-index key and key-encryption keys of its vault: ``TUOYU_SUBSIDY_BLIND_INDEX_KEY``,
``TUOYU_SUBSIDY_KEKS``), ``TUOYU_HOLIDAYS_FILE`` (the working-day calendar). The programs are
data: the versions shipped in ``programs/*.json`` are published by the data migration
``default-programs``; a district publishes its own over the API.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tuoyu_shared.bootstrap import CompositionRoot, DataMigration
from tuoyu_shared.calendar_cn import WorkingCalendar, default_calendar
from tuoyu_shared.config import Settings
from tuoyu_shared.personal_data import PersonalDataVault
from tuoyu_subsidy.application import SubsidyApp


def build(settings: Settings, *, clock: Callable[[], datetime] | None = None,
          calendar: WorkingCalendar | None = None,
          vault: PersonalDataVault | None = None) -> SubsidyApp:
    return SubsidyApp(settings, clock=clock or (lambda: datetime.now(UTC)),
                      calendar=calendar or default_calendar(),
                      vault=vault or PersonalDataVault.for_settings(settings))


DEFAULT_PROGRAMS = DataMigration("default-programs",
                                 lambda app: app.default_programs_pending(),
                                 lambda app: app.publish_default_programs())
ROOT = CompositionRoot(service="subsidy", build=build, data_migrations=[DEFAULT_PROGRAMS])


def application(settings: Settings | None = None, **overrides: Any) -> SubsidyApp:
    """The subsidy application, configured and ready."""
    return ROOT.application(settings, **overrides)
