"""The credit service's nameko adapter: every command and query over RPC.

Run: ``python -m tuoyu_shared.serve tuoyu_credit.service:CreditService --port 8003``.

People and other systems come in through the gateway (``services/gateway``), which serves the
routes of :mod:`tuoyu_credit.routes` (400 bad input, 404 unknown institution or person, 409 a
step the state does not allow) and calls these methods with the caller's verified token;
reads of practitioners are recorded under the token's subject. The service's own HTTP port
serves only ``/health`` and ``/metrics``.
"""

from __future__ import annotations

from typing import Any

from tuoyu_credit import bootstrap
from tuoyu_credit.application import LISTING_STEPS, CreditApplication
from tuoyu_shared.envelope import to_json_value
from tuoyu_shared.nameko_support import (
    ApplicationProvider,
    CommandContextProvider,
    EventLogEntrypoints,
    rpc,
)


def _listing_command(name: str):
    def command(self, institution_id: str, list_name: str, data: dict[str, Any]) -> Any:
        return getattr(self.app, name)(institution_id, list_name, data)

    command.__name__ = name
    command.__doc__ = getattr(CreditApplication, name).__doc__
    return rpc(command)


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

    @rpc
    def retry_check(self, person_ref: str, data: dict[str, Any]) -> dict[str, Any]:
        return self.app.retry_check(person_ref, data)

    @rpc
    def pending_checks(self) -> list[dict[str, Any]]:
        return self.app.pending_checks()

    @rpc
    def dispatch_inquiries(self) -> dict[str, Any]:
        return self.app.dispatch_inquiries()

    # ---- RPC: people's rights over their data (tuoyu_shared.people) --------------------------
    @rpc
    def erase_person(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.app.erase_person(data)

    @rpc
    def export_person(self, data: dict[str, Any]) -> dict[str, Any]:
        return to_json_value(self.app.export_person(data))

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
