"""Credit's composition root (see :mod:`tuoyu_shared.bootstrap`).

Configuration read here:

- the service's settings (``TUOYU_CREDIT_DATABASE_URL``, the broker, credit's blind-index key
  and key-encryption keys; :func:`tuoyu_shared.config.settings_for`), of which the
  personal-data vault is built (:meth:`PersonalDataVault.for_settings`);
- ``TUOYU_CREDIT_RULES_FILE``: the scoring, grading and listing rules
  (:func:`~tuoyu_credit.rules_config.load_rules`); a bad file stops the start, first;
- ``TUOYU_CREDIT_RECHECK_DAYS``: days after the last completed check when everyone on a
  roster is checked again (default 365);
- ``TUOYU_PUBLIC_SECURITY_URL`` (and ``_CLIENT_ID``, ``_CLIENT_SECRET``, ``_TIMEOUT``): the
  public-security records inquiry the background checks are sent to
  (:func:`tuoyu_shared.public_security.inquiry_from_env`; required in production);
- ``TUOYU_CREDIT_INQUIRY_INTERVAL``, ``_RETRY``, ``_RETRY_MAX``, ``_POLL``: when the inquiries
  are sent and asked again (:class:`tuoyu_credit.inquiries.InquirySchedule`);
- ``TUOYU_HOLIDAYS_FILE``: the working-day calendar (:mod:`tuoyu_shared.calendar_cn`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tuoyu_credit.application import CreditApplication
from tuoyu_credit.inquiries import InquirySchedule
from tuoyu_credit.rules_config import CreditRules, load_rules, recheck_days_from_env
from tuoyu_shared.bootstrap import CompositionRoot
from tuoyu_shared.calendar_cn import WorkingCalendar, default_calendar
from tuoyu_shared.config import Settings
from tuoyu_shared.people import carry_over_step
from tuoyu_shared.personal_data import PersonalDataVault
from tuoyu_shared.public_security import PublicSecurityInquiry, inquiry_from_env


def build(settings: Settings, *, clock: Callable[[], datetime] | None = None,
          calendar: WorkingCalendar | None = None, rules: CreditRules | None = None,
          recheck_days: int | None = None,
          vault: PersonalDataVault | None = None,
          inquiry: PublicSecurityInquiry | None = None,
          schedule: InquirySchedule | None = None) -> CreditApplication:
    rules = rules or load_rules()  # a bad rules file stops the start before any connection
    recheck_days = recheck_days or recheck_days_from_env()
    inquiry = inquiry or inquiry_from_env()  # so does a bad inquiry configuration
    schedule = schedule or InquirySchedule.from_env()
    return CreditApplication(
        settings,
        vault=vault or PersonalDataVault.for_settings(settings),
        clock=clock or (lambda: datetime.now(UTC)),
        calendar=calendar or default_calendar(),
        rules=rules, recheck_days=recheck_days, inquiry=inquiry, schedule=schedule)


# The personal-data scheme before (keys in clear, masks in events) carried forward once.
ROOT = CompositionRoot(service="credit", build=build, data_migrations=[carry_over_step()])


def application(settings: Settings | None = None, **overrides: Any) -> CreditApplication:
    """The credit application, configured and ready (the nameko service's, the worker's and
    the tests')."""
    return ROOT.application(settings, **overrides)
