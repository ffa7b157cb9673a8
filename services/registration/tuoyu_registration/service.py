"""The registration service's nameko adapter: every command and query over RPC.

Run: ``python -m tuoyu_shared.serve tuoyu_registration.service:RegistrationService``.

People and other systems come in through the gateway (``services/gateway``), which serves the
routes of :mod:`tuoyu_registration.routes` and calls these methods with the caller's verified
token; the service's own HTTP port serves only ``/health`` and ``/metrics``.
"""

from __future__ import annotations

from typing import Any

from tuoyu_registration import bootstrap
from tuoyu_registration.application import RegistrationApplication
from tuoyu_registration.routes import INSTITUTION_COMMANDS
from tuoyu_shared.envelope import to_json_value
from tuoyu_shared.nameko_support import (
    ApplicationProvider,
    CommandContextProvider,
    EventLogEntrypoints,
    PeopleEntrypoints,
    rpc,
)


def _institution_command(name: str):
    def command(self, institution_id: str, data: dict[str, Any]) -> Any:
        return getattr(self.app, name)(institution_id, data)

    command.__name__ = name
    command.__doc__ = getattr(RegistrationApplication, name).__doc__
    return rpc(command)


class RegistrationService(PeopleEntrypoints, EventLogEntrypoints):
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
    def institution_scope(self, institution_id: str) -> dict[str, Any]:
        """The institution's district (what the gateway checks an officer's district
        against); 404 for an unknown one."""
        facts = self.app.institution(institution_id)
        return {"institution_id": str(institution_id), "district": facts.get("district")}

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
