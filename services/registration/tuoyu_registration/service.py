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

from typing import Any

from nameko.rpc import rpc
from nameko.web.handlers import http

from tuoyu_registration.application import RegistrationApplication
from tuoyu_shared.nameko_support import (
    ApplicationProvider,
    CommandContextProvider,
    EventLogEntrypoints,
    http_json,
    read_json,
)
from tuoyu_shared.validation import FieldError, ValidationFailed

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
    filters: dict[str, Any] = {k: args.get(k) or None for k in ("district", "street", "kind",
                                                                 "name")}
    if args.get("affordable") not in (None, ""):
        if args["affordable"] not in ("true", "false"):
            raise ValidationFailed([FieldError("affordable", "true or false", "invalid_choice")])
        filters["affordable"] = args["affordable"] == "true"
    try:
        filters["limit"] = max(1, min(int(args.get("limit", 100)), 1000))
        filters["offset"] = max(0, int(args.get("offset", 0)))
    except ValueError:
        raise ValidationFailed([FieldError("limit", "a whole number", "invalid_format")]) \
            from None
    return filters


class RegistrationService(EventLogEntrypoints):
    name = "registration"

    app: RegistrationApplication = ApplicationProvider(RegistrationApplication)
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
        return _json(self.app.institution(institution_id, version))

    @rpc
    def institution_record(self, institution_id: str) -> dict[str, Any]:
        return _json(self.app.institution_record(institution_id))

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
        version = request.args.get("version")
        if version is not None and not version.isdigit():
            raise ValidationFailed([FieldError("version", "a positive whole number",
                                               "invalid_format")])
        return _json(self.app.institution(institution_id, int(version) if version else None))

    @http("GET", "/api/institutions/<string:institution_id>/record")
    @http_json
    def http_record(self, request: Any, institution_id: str) -> dict[str, Any]:
        return _json(self.app.institution_record(institution_id))

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
    @http_json
    def http_import(self, request: Any) -> dict[str, Any]:
        return self.app.import_filings_csv(request.get_data(as_text=True),
                                           request.args.get("source", "provincial-csv"))


def _json(value: Any) -> Any:
    """Dates and other values as JSON (RPC replies are JSON-serialised)."""
    from tuoyu_registration.application import _public

    return _public(value)
