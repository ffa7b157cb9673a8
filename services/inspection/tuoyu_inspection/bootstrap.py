"""Inspection's composition root (see :mod:`tuoyu_shared.bootstrap`).

Configuration read here:

- the service's settings (``TUOYU_INSPECTION_DATABASE_URL``, the broker;
  :func:`tuoyu_shared.config.settings_for`);
- ``TUOYU_INSPECTION_RULES_FILE``: a JSON file of the rules with numbers (the draw's weights
  by credit grade, rectification and escalation deadlines, the publication period, the pass
  mark; :class:`~tuoyu_inspection.domain.rules.InspectionRules`, whose docstring says where
  each comes from). A bad file stops the start, first, naming the rule;
- ``TUOYU_INSPECTION_BLOB_DIR`` or ``TUOYU_INSPECTION_BLOB_S3_*``: where evidence files are
  stored (:func:`tuoyu_shared.blobs.blob_store_from_env`);
- ``TUOYU_HOLIDAYS_FILE``: the working-day calendar (:mod:`tuoyu_shared.calendar_cn`).

The data migration ``default-checklists`` publishes the checklist templates the service ships
(``checklists/*.json``) as a new version whenever the shipped file differs from the latest
published one (visits keep the version they were scheduled with).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuoyu_inspection.application import InspectionApplication
from tuoyu_inspection.domain import InspectionRules
from tuoyu_shared.blobs import BlobStore, blob_store_from_env
from tuoyu_shared.bootstrap import CompositionRoot, DataMigration
from tuoyu_shared.calendar_cn import WorkingCalendar, default_calendar
from tuoyu_shared.config import Settings
from tuoyu_shared.validation import FieldError

RULES_VAR = "TUOYU_INSPECTION_RULES_FILE"


class RulesFileInvalid(ValueError):
    """The rules file cannot be used (it names the file and the rule)."""


def rules_from_env(env: Mapping[str, str] | None = None) -> InspectionRules:
    env = os.environ if env is None else env
    path = env.get(RULES_VAR)
    if not path:
        return InspectionRules()
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RulesFileInvalid(f"{RULES_VAR}={path}: {e}") from None
    if not isinstance(data, dict):
        raise RulesFileInvalid(f"{RULES_VAR}={path}: must hold a JSON object")
    try:
        return InspectionRules.from_dict(data)
    except FieldError as e:
        raise RulesFileInvalid(f"{RULES_VAR}={path}: {e.field}: {e.reason}") from None


def build(settings: Settings, *, clock: Callable[[], datetime] | None = None,
          calendar: WorkingCalendar | None = None, rules: InspectionRules | None = None,
          blobs: BlobStore | None = None) -> InspectionApplication:
    rules = rules or rules_from_env()  # a bad rules file stops the start before any connection
    return InspectionApplication(
        settings, clock=clock or (lambda: datetime.now(UTC)),
        calendar=calendar or default_calendar(), rules=rules,
        blobs=blobs or blob_store_from_env("inspection"))


DEFAULT_CHECKLISTS = DataMigration(
    "default-checklists", lambda app: app.default_checklists_pending(),
    lambda app: app.publish_default_checklists())

ROOT = CompositionRoot(service="inspection", build=build,
                       data_migrations=[DEFAULT_CHECKLISTS])


def application(settings: Settings | None = None, **overrides: Any) -> InspectionApplication:
    """The inspection application, configured and ready (the nameko service's, the worker's
    and the tests')."""
    return ROOT.application(settings, **overrides)
