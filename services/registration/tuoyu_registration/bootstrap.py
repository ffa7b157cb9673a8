"""Registration's composition root (see :mod:`tuoyu_shared.bootstrap`).

Configuration read here:

- the service's settings (``TUOYU_REGISTRATION_DATABASE_URL``, the broker, the personal-data
  keys; :func:`tuoyu_shared.config.settings_for`);
- credit's practitioner register, over RPC on the same broker
  (:mod:`tuoyu_registration.practitioners`);
- ``TUOYU_REGISTRATION_STANDARDS``: a JSON file of the filing standards
  (:meth:`~tuoyu_registration.domain.CareStandards.from_dict`); without it, the defaults, each
  with its source;
- ``TUOYU_HOLIDAYS_FILE``: the working-day calendar (:mod:`tuoyu_shared.calendar_cn`).

Data migrations: the carry-over of hires recorded before employment records existed
(:meth:`RegistrationApplication.carry_over_employment`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuoyu_registration.application import EMPLOYMENT_CARRY_OVER, RegistrationApplication
from tuoyu_registration.domain import CareStandards
from tuoyu_registration.practitioners import PractitionerRegister, RpcPractitionerRegister
from tuoyu_shared.bootstrap import CompositionRoot, DataMigration
from tuoyu_shared.calendar_cn import WorkingCalendar, default_calendar
from tuoyu_shared.config import Settings
from tuoyu_shared.people import carry_over_step
from tuoyu_shared.personal_data import PersonalDataVault

STANDARDS_VAR = "TUOYU_REGISTRATION_STANDARDS"


def standards_from_env(env: dict[str, str] | None = None) -> CareStandards:
    path = (os.environ if env is None else env).get(STANDARDS_VAR)
    if not path:
        return CareStandards()
    return CareStandards.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def build(settings: Settings, *, clock: Callable[[], datetime] | None = None,
          calendar: WorkingCalendar | None = None, standards: CareStandards | None = None,
          vault: PersonalDataVault | None = None,
          practitioners: PractitionerRegister | None = None) -> RegistrationApplication:
    return RegistrationApplication(
        settings,
        vault=vault or PersonalDataVault.for_settings(settings),
        practitioners=practitioners or RpcPractitionerRegister(settings.amqp_uri),
        clock=clock or (lambda: datetime.now(UTC)),
        calendar=calendar or default_calendar(),
        standards=standards or standards_from_env())


def _employment_carry_over_pending(app: RegistrationApplication) -> bool:
    # An empty log has nothing to carry; otherwise the mark says how far it went.
    return bool(app.log_head()) and not app.recorder.max_tracking_id(  # type: ignore[attr-defined]
        EMPLOYMENT_CARRY_OVER)


ROOT = CompositionRoot(
    service="registration",
    build=build,
    data_migrations=[carry_over_step(),
                     DataMigration("employment-records", _employment_carry_over_pending,
                                   RegistrationApplication.carry_over_employment)],
)


def application(settings: Settings | None = None, **overrides: Any) -> RegistrationApplication:
    """The registration application, configured and ready (the nameko service's, the
    worker's, the migration command's and the tests')."""
    return ROOT.application(settings, **overrides)
