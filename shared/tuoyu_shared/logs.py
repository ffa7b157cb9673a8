"""structlog JSON logs: service, correlation id, aggregate id and event type on every line.

Personal data never reaches a log in clear: values under keys that name personal data are
masked by :func:`mask_personal_data`, whatever the caller passed.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from tuoyu_shared.validation import mask_name, mask_phone, mask_resident_id

_MASKS = {
    "id_number": mask_resident_id,
    "resident_id": mask_resident_id,
    "phone": mask_phone,
    "mobile": mask_phone,
    "person_name": mask_name,
    "legal_representative": mask_name,
    "practitioner_name": mask_name,
}


def _mask_value(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_value(k, v) for k, v in value.items()}
    mask = _MASKS.get(key)
    if mask is not None and isinstance(value, str):
        try:
            return mask(value)
        except Exception:
            return "***"
    return value


def mask_personal_data(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask every value whose key names personal data."""
    return {key: _mask_value(key, value) for key, value in event_dict.items()}


def configure_logging(service: str, level: str = "info") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr,
                        level=getattr(logging, level.upper(), logging.INFO))
    def add_service(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_service,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_personal_data,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
