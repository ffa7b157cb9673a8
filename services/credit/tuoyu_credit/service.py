"""The credit service's nameko adapter: every command and query over RPC and HTTP.

Run: ``python -m tuoyu_shared.serve tuoyu_credit.service:CreditService --port 8003``.

HTTP (JSON; errors name the field and the reason; 400 bad input, 404 unknown institution or
person, 409 a step the state does not allow):

- ``POST /api/practitioners`` ``{name, id_number}``: register (201; 200 if known already).
- ``POST /api/practitioners/<person_ref>/bans``: impose a ban (201 with ``ban_ref``).
- ``POST /api/practitioners/<person_ref>/checks``: the yearly check, answered at once.
- ``POST /api/practitioners/<person_ref>/reads`` ``{purpose}``: the audit of reads.
- ``POST /api/practitioner-checks`` ``{id_number | person_ref, purpose}``:
  ``{barred, ban_reference}`` and nothing more; the read is recorded. A POST, so the ID number
  never appears in a URL (URLs end up in access logs).
- ``GET /api/institutions/<id>/credit``: the credit report (grade, score, lists, history).
- ``POST /api/institutions/<id>/credit/causes``: a scoring cause entered by an officer.
- ``POST /api/institutions/<id>/listings/<list>/<step>``: a step of the listing procedure,
  ``<list>`` one of ``serious_dishonesty``, ``trust_reward``; ``<step>`` one of
  :data:`~tuoyu_credit.application.LISTING_STEPS`.
- ``GET /api/credit-register?grade=&list=&limit=&offset=`` and ``GET /api/officer/listings-due``.
- ``POST /api/timers/expire-listings`` and ``POST /api/timers/lift-expired-bans`` (the worker
  runs them daily; ops may run them by hand).

The actor, department and correlation id come from RPC context or the ``X-Actor``,
``X-Department`` and ``X-Correlation-Id`` headers; reads of practitioners are recorded under them.
"""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc
from nameko.web.handlers import http

from tuoyu_credit import bootstrap
from tuoyu_credit.application import LISTING_STEPS, CreditApplication
from tuoyu_shared.envelope import to_json_value
from tuoyu_shared.nameko_support import (
    ApplicationProvider,
    CommandContextProvider,
    EventLogEntrypoints,
    http_json,
    query_paging,
    read_json,
)
from tuoyu_shared.validation import FieldError, ValidationFailed


def _listing_command(name: str):
    def command(self, institution_id: str, list_name: str, data: dict[str, Any]) -> Any:
        return getattr(self.app, name)(institution_id, list_name, data)

    command.__name__ = name
    command.__doc__ = getattr(CreditApplication, name).__doc__
    return rpc(command)


def _paging(args: Any) -> dict[str, Any]:
    """``limit`` (1 to 1000, default 100) and ``offset`` (0 or more); both named if bad."""
    errors: list[FieldError] = []
    paging: dict[str, Any] = query_paging(args, errors)
    if errors:
        raise ValidationFailed(errors)
    return paging


class CreditService(EventLogEntrypoints):
    name = "credit"

    app: CreditApplication = ApplicationProvider(bootstrap.application)
    context = CommandContextProvider()

    # ---- RPC: practitioners ----------------------------------------------------------------
    @rpc
    def register_practitioner(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.app.register_practitioner(data)

    @rpc
    def impose_ban(self, person_ref: str, data: dict[str, Any]) -> str:
        return self.app.impose_ban(person_ref, data)

    @rpc
    def request_check(self, person_ref: str, data: dict[str, Any]) -> dict[str, Any]:
        return self.app.request_check(person_ref, data)

    @rpc
    def check_practitioner(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.app.check_practitioner(data)

    @rpc
    def practitioner_reads(self, person_ref: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        return self.app.practitioner_reads(person_ref, data)

    @rpc
    def lift_expired_bans(self) -> dict[str, Any]:
        return self.app.lift_expired_bans()

    # ---- RPC: institutions -----------------------------------------------------------------
    @rpc
    def record_scoring_cause(self, institution_id: str, data: dict[str, Any]) -> dict:
        return self.app.record_scoring_cause(institution_id, data)

    for _name in LISTING_STEPS.values():
        locals()[_name] = _listing_command(_name)
    del _name

    @rpc
    def expire_listings(self) -> dict[str, Any]:
        return self.app.expire_listings()

    @rpc
    def institution_credit_report(self, institution_id: str) -> dict[str, Any]:
        return to_json_value(self.app.institution_credit_report(institution_id))

    @rpc
    def credit_register(self, grade: str | None = None, list_name: str | None = None,
                        limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return self.app.credit_register(grade, list_name, limit, offset)

    @rpc
    def listings_due(self) -> list[dict[str, Any]]:
        return self.app.listings_due()

    # ---- HTTP ------------------------------------------------------------------------------
    @http("POST", "/api/practitioners")
    @http_json
    def http_register_practitioner(self, request: Any) -> tuple[int, dict[str, Any]]:
        result = self.app.register_practitioner(read_json(request))
        return (201 if result["created"] else 200), result

    @http("POST", "/api/practitioners/<string:person_ref>/bans")
    @http_json
    def http_impose_ban(self, request: Any, person_ref: str) -> tuple[int, dict[str, Any]]:
        ban_ref = self.app.impose_ban(person_ref, read_json(request))
        return 201, {"person_ref": person_ref, "ban_ref": ban_ref}

    @http("POST", "/api/practitioners/<string:person_ref>/checks")
    @http_json
    def http_request_check(self, request: Any, person_ref: str) -> dict[str, Any]:
        return self.app.request_check(person_ref, read_json(request))

    @http("POST", "/api/practitioners/<string:person_ref>/reads")
    @http_json
    def http_practitioner_reads(self, request: Any, person_ref: str) -> dict[str, Any]:
        return {"person_ref": person_ref,
                "reads": self.app.practitioner_reads(person_ref, read_json(request))}

    @http("POST", "/api/practitioner-checks")
    @http_json
    def http_check_practitioner(self, request: Any) -> dict[str, Any]:
        return self.app.check_practitioner(read_json(request))

    @http("GET", "/api/institutions/<string:institution_id>/credit")
    @http_json
    def http_credit_report(self, request: Any, institution_id: str) -> dict[str, Any]:
        return to_json_value(self.app.institution_credit_report(institution_id))

    @http("POST", "/api/institutions/<string:institution_id>/credit/causes")
    @http_json
    def http_scoring_cause(self, request: Any, institution_id: str) -> dict[str, Any]:
        return self.app.record_scoring_cause(institution_id, read_json(request))

    @http("POST", "/api/institutions/<string:institution_id>/listings/<string:list_name>/"
                  "<string:step>")
    @http_json
    def http_listing_step(self, request: Any, institution_id: str, list_name: str,
                          step: str) -> Any:
        if step not in LISTING_STEPS:
            return 404, {"error": "unknown_step", "reason": f"no step {step!r}",
                         "steps": list(LISTING_STEPS)}
        result = self.app.listing_step(institution_id, list_name, step, read_json(request))
        body: dict[str, Any] = {"institution_id": institution_id, "list_name": list_name,
                                "step": step}
        if result is not None:
            body["result"] = result
        return (201 if step == "propose" else 200), body

    @http("GET", "/api/credit-register")
    @http_json
    def http_credit_register(self, request: Any) -> dict[str, Any]:
        rows = self.app.credit_register(request.args.get("grade") or None,
                                        request.args.get("list") or None,
                                        **_paging(request.args))
        return {"institutions": rows, "count": len(rows)}

    @http("GET", "/api/officer/listings-due")
    @http_json
    def http_listings_due(self, request: Any) -> dict[str, Any]:
        return {"listings": self.app.listings_due()}

    @http("POST", "/api/timers/expire-listings")
    @http_json
    def http_expire_listings(self, request: Any) -> dict[str, Any]:
        return self.app.expire_listings()

    @http("POST", "/api/timers/lift-expired-bans")
    @http_json
    def http_lift_expired_bans(self, request: Any) -> dict[str, Any]:
        return self.app.lift_expired_bans()
