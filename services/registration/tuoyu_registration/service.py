"""The registration service's nameko adapter: every command and query over RPC and HTTP.

Run: ``python -m tuoyu_shared.serve tuoyu_registration.service:RegistrationService``.

HTTP (JSON; errors name the field and the reason):

- ``POST /api/institutions``: register (登记); 201 with the id.
- ``POST /api/institutions/<id>/<command>``: one of :data:`INSTITUTION_COMMANDS`.
- ``GET /api/institutions/<id>[?version=N]``: facts (as of a version), personal data masked.
- ``GET /api/institutions/<id>/record``: facts and the full history (who, when, what).
- ``GET /api/public/institutions?district=&street=&kind=&affordable=&name=``: 信息公示.
- ``GET /api/officer/filings-awaiting`` and ``GET /api/officer/staff-cases``.
- ``POST /api/imports/filings`` with a CSV body: a report of imported and rejected rows.
"""

from __future__ import annotations

import os
from typing import Any

from nameko.rpc import rpc
from nameko.web.handlers import http

from tuoyu_registration import bootstrap
from tuoyu_registration.application import RegistrationApplication
from tuoyu_shared.envelope import to_json_value
from tuoyu_shared.nameko_support import (
    ApplicationProvider,
    CommandContextProvider,
    EventLogEntrypoints,
    http_json,
    query_int,
    query_paging,
    read_json,
    read_text,
)
from tuoyu_shared.validation import FieldError, ValidationFailed

#: A CSV import may be larger than a JSON body (``TUOYU_HTTP_MAX_IMPORT_BYTES``, 32 MiB).
MAX_IMPORT_BYTES = int(os.environ.get("TUOYU_HTTP_MAX_IMPORT_BYTES") or 32 << 20)

# Commands on one institution: name → what it returns (for the HTTP status).
INSTITUTION_COMMANDS = (
    "submit_filing", "issue_filing_receipt", "verify_filing", "file_change",
    "designate_affordable", "withdraw_affordable", "grant_demonstration_level",
    "revoke_demonstration_level", "report_enrolment", "correct_enrolment", "request_hire",
    "release_practitioner", "suspend_for_rectification", "resume", "deregister",
)


def _institution_command(name: str):
    def command(self, institution_id: str, data: dict[str, Any]) -> Any:
        return getattr(self.app, name)(institution_id, data)

    command.__name__ = name
    command.__doc__ = getattr(RegistrationApplication, name).__doc__
    return rpc(command)


def _filters(args: Any) -> dict[str, Any]:
    """The public register's filters from the query string; every bad one named at once."""
    errors: list[FieldError] = []
    filters: dict[str, Any] = {}
    for key, max_length in (("district", 50), ("street", 50), ("kind", 50), ("name", 100)):
        value = (args.get(key) or "").strip()
        if len(value) > max_length:
            errors.append(FieldError(key, f"must be at most {max_length} characters, got "
                                     f"{len(value)}", "too_long"))
        filters[key] = value or None
    if args.get("affordable") not in (None, ""):
        if args["affordable"] not in ("true", "false"):
            errors.append(FieldError("affordable", "true or false", "invalid_choice"))
        filters["affordable"] = args["affordable"] == "true"
    filters.update(query_paging(args, errors))
    if errors:
        raise ValidationFailed(errors)
    return filters


class RegistrationService(EventLogEntrypoints):
    name = "registration"

    app: RegistrationApplication = ApplicationProvider(bootstrap.application)
    context = CommandContextProvider()

    # ---- RPC -------------------------------------------------------------------------------
    @rpc
    def register_institution(self, data: dict[str, Any]) -> str:
        return str(self.app.register_institution(data))

    for _name in INSTITUTION_COMMANDS:
        locals()[_name] = _institution_command(_name)
    del _name

    @rpc
    def import_filings_csv(self, text: str, source: str = "provincial-csv") -> dict[str, Any]:
        return self.app.import_filings_csv(text, source)

    @rpc
    def get_institution(self, institution_id: str, version: int | None = None) -> dict:
        return to_json_value(self.app.institution(institution_id, version))

    @rpc
    def institution_record(self, institution_id: str) -> dict[str, Any]:
        return to_json_value(self.app.institution_record(institution_id))

    @rpc
    def public_disclosure(self, **filters: Any) -> list[dict[str, Any]]:
        return self.app.public_disclosure(**filters)

    @rpc
    def filings_awaiting(self) -> list[dict[str, Any]]:
        return self.app.filings_awaiting()

    @rpc
    def open_staff_cases(self) -> list[dict[str, Any]]:
        return self.app.open_staff_cases()

    # ---- HTTP ------------------------------------------------------------------------------
    @http("POST", "/api/institutions")
    @http_json
    def http_register(self, request: Any) -> tuple[int, dict[str, Any]]:
        institution_id = self.app.register_institution(read_json(request))
        return 201, {"institution_id": str(institution_id)}

    @http("POST", "/api/institutions/<string:institution_id>/<string:command>")
    @http_json
    def http_command(self, request: Any, institution_id: str, command: str) -> Any:
        if command not in INSTITUTION_COMMANDS:
            return 404, {"error": "unknown_command", "reason": f"no command {command!r}",
                         "commands": list(INSTITUTION_COMMANDS)}
        result = getattr(self.app, command)(institution_id, read_json(request))
        body: dict[str, Any] = {"institution_id": institution_id, "command": command}
        if result is not None:
            body["result"] = result
        return 200, body

    @http("GET", "/api/institutions/<string:institution_id>")
    @http_json
    def http_institution(self, request: Any, institution_id: str) -> dict[str, Any]:
        version = query_int(request.args, "version", None, min_value=1)
        return to_json_value(self.app.institution(institution_id, version))

    @http("GET", "/api/institutions/<string:institution_id>/record")
    @http_json
    def http_record(self, request: Any, institution_id: str) -> dict[str, Any]:
        return to_json_value(self.app.institution_record(institution_id))

    @http("GET", "/api/public/institutions")
    @http_json
    def http_public(self, request: Any) -> dict[str, Any]:
        rows = self.app.public_disclosure(**_filters(request.args))
        return {"institutions": rows, "count": len(rows)}

    @http("GET", "/api/officer/filings-awaiting")
    @http_json
    def http_filings_awaiting(self, request: Any) -> dict[str, Any]:
        return {"filings": self.app.filings_awaiting()}

    @http("GET", "/api/officer/staff-cases")
    @http_json
    def http_staff_cases(self, request: Any) -> dict[str, Any]:
        return {"cases": self.app.open_staff_cases()}

    @http("POST", "/api/imports/filings")
    @http_json(max_body_bytes=MAX_IMPORT_BYTES)
    def http_import(self, request: Any) -> dict[str, Any]:
        return self.app.import_filings_csv(read_text(request),
                                           request.args.get("source") or "provincial-csv")
