"""The background check's inquiry to the public-security system (未成年人保护法 第62条): when a
pending check is sent or asked again, and what the dispatch counts.

A check that no ban answered at once waits in ``checks_pending`` (:mod:`tuoyu_credit.projections`)
until the dispatch (:meth:`tuoyu_credit.application.CreditApplication.dispatch_inquiries`,
run by the worker every few seconds) has sent it through the adapter
(:class:`tuoyu_shared.public_security.PublicSecurityInquiry`) and the answer came:

- an answer completes the check (``cleared`` only on "no record" and no ban in force);
- accepted without an answer yet (``None``): asked again with ``status`` after
  :attr:`InquirySchedule.poll` seconds, growing to :attr:`InquirySchedule.max_retry`;
- :class:`~tuoyu_shared.public_security.InquiryUnavailable` (down, a timeout, a 5xx, a
  credential refused): sent again after :attr:`InquirySchedule.initial_retry` seconds,
  doubling each time up to :attr:`InquirySchedule.max_retry`; a round stops sending at the
  first outage (the others wait for the next round, so a system that is down gets one request
  per round, not one per check). The check stays pending: never cleared because the system
  could not answer;
- :class:`~tuoyu_shared.public_security.InquiryRejected`: the check is flagged
  ``inquiry_rejected`` for an officer, with the status, field and code of the refusal (never
  the external reason's text, which may quote what was sent).

Configuration (read by the composition root, :mod:`tuoyu_credit.bootstrap`):
``TUOYU_CREDIT_INQUIRY_INTERVAL`` (seconds between dispatch rounds, default 5),
``TUOYU_CREDIT_INQUIRY_RETRY`` (first retry after an outage, default 30),
``TUOYU_CREDIT_INQUIRY_RETRY_MAX`` (the longest wait, default 1800),
``TUOYU_CREDIT_INQUIRY_POLL`` (first status poll of an accepted inquiry, default 30).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from tuoyu_shared.config import ConfigurationError

INTERVAL_VAR = "TUOYU_CREDIT_INQUIRY_INTERVAL"
RETRY_VAR = "TUOYU_CREDIT_INQUIRY_RETRY"
RETRY_MAX_VAR = "TUOYU_CREDIT_INQUIRY_RETRY_MAX"
POLL_VAR = "TUOYU_CREDIT_INQUIRY_POLL"

#: Checks sent per dispatch round at most (the others wait for the next round).
ROUND_LIMIT = 50

# ---- metrics (the process's registry: the worker's /metrics) -------------------------------
#: Every call to the public-security system, by operation (``inquire``, ``status``) and
#: outcome: ``answered``, ``pending`` (accepted, no answer yet), ``unavailable`` (no usable
#: answer: retried later), ``rejected`` (flagged for an officer).
INQUIRIES = Counter("tuoyu_background_check_inquiries",
                    "Calls to the public-security records inquiry, by outcome.",
                    ["service", "operation", "outcome"])
INQUIRY_SECONDS = Histogram("tuoyu_background_check_inquiry_duration_seconds",
                            "Time of one call to the public-security records inquiry.",
                            ["service", "operation"])
#: Checks completed, by outcome and by what answered them (``ban_list``, ``public_security``).
CHECKS_COMPLETED = Counter("tuoyu_background_checks_completed",
                           "Background checks completed, by outcome and what answered them.",
                           ["service", "outcome", "answered_by"])
#: Checks flagged for an officer, by flag.
CHECKS_FLAGGED = Counter("tuoyu_background_checks_flagged",
                         "Background checks flagged for an officer, by flag.",
                         ["service", "flag"])
#: The pending checks as the last dispatch round found them: ``due`` (to send or ask now),
#: ``waiting`` (sent or retrying, asked again later), ``flagged`` (an officer must act).
CHECKS_PENDING = Gauge("tuoyu_background_checks_pending",
                       "Pending background checks at the last dispatch round, by state.",
                       ["service", "state"])
#: Days since the oldest pending check was requested (0: none older than today).
OLDEST_PENDING = Gauge("tuoyu_background_checks_oldest_pending_days",
                       "Days since the oldest pending background check was requested.",
                       ["service"])


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ConfigurationError(f"{name} must be more than 0 seconds, got {raw!r}")
    return value


@dataclass(frozen=True)
class InquirySchedule:
    """When the dispatch runs and when a pending check is sent or asked again."""

    interval: float = 5.0
    initial_retry: float = 30.0
    max_retry: float = 1800.0
    poll: float = 30.0

    def __post_init__(self) -> None:
        for name in ("interval", "initial_retry", "max_retry", "poll"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"the inquiry schedule's {name} must be positive")
        if self.max_retry < self.initial_retry or self.max_retry < self.poll:
            raise ConfigurationError("the inquiry schedule's longest wait must be at least "
                                     "its first retry and its first poll")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InquirySchedule:
        env = os.environ if env is None else env
        defaults = cls()
        initial = _seconds(env, RETRY_VAR, defaults.initial_retry)
        poll = _seconds(env, POLL_VAR, defaults.poll)
        return cls(interval=_seconds(env, INTERVAL_VAR, defaults.interval),
                   initial_retry=initial,
                   max_retry=_seconds(env, RETRY_MAX_VAR, max(defaults.max_retry, initial,
                                                              poll)),
                   poll=poll)

    def retry_at(self, now: datetime, attempts: int) -> datetime:
        """After the ``attempts``-th outage in a row (1: the first): exponential backoff."""
        delay = min(self.initial_retry * 2 ** max(attempts - 1, 0), self.max_retry)
        return now + timedelta(seconds=delay)

    def poll_at(self, now: datetime, polls: int) -> datetime:
        """After the ``polls``-th answer "not yet" (1: the first)."""
        delay = min(self.poll * 2 ** max(polls - 1, 0), self.max_retry)
        return now + timedelta(seconds=delay)


_DIGITS = re.compile(r"[0-9]{4,}[0-9Xx]?")


def _no_digits(text: str) -> str:
    """A text of the external system's with no run of digits that could be part of an ID
    number (HTTP statuses have three)."""
    return _DIGITS.sub("…", text)


def rejection_reason(error: Any) -> str:
    """What a check flagged ``inquiry_rejected`` records: the refusal's status, field and code
    (the external reason's text may quote the name or number that was sent: left out)."""
    details = getattr(error, "details", None) or {}
    parts = [f"HTTP {details['external_status']}"] if details.get("external_status") else []
    for key, label in (("field", "field"), ("external_code", "code")):
        if details.get(key):
            parts.append(f"{label} {_no_digits(str(details[key]))[:60]}")
    said = f" ({', '.join(parts)})" if parts else ""
    return (f"the public-security records inquiry refused the request{said}: correct the "
            "practitioner's data, then have the check sent again")


def unavailable_reason(error: Any) -> str:
    """The outage as the dispatch keeps it (``last_error``): the adapter's message names the
    system and what went wrong, never the person."""
    return str(getattr(error, "message", None) or error)[:300]
