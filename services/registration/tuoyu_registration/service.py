"""The registration service's nameko adapter: RPC and HTTP over the application layer.

Run: ``python -m tuoyu_shared.serve tuoyu_registration.service:RegistrationService``.
"""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc
from nameko.web.handlers import http

from tuoyu_registration.application import RegistrationApplication
from tuoyu_shared.nameko_support import (
    ApplicationProvider,
    CommandContextProvider,
    http_json,
    read_json,
)


class RegistrationService:
    name = "registration"

    app: RegistrationApplication = ApplicationProvider(RegistrationApplication)
    context = CommandContextProvider()

    # RPC
    @rpc
    def file_institution(self, data: dict[str, Any]) -> str:
        return str(self.app.file_institution(data))

    @rpc
    def get_institution(self, institution_id: str) -> dict[str, Any]:
        return self.app.institution(institution_id)

    @rpc
    def notifications(self, start: int, limit: int = 500, stop: int | None = None) -> list:
        """The notification log as envelopes: consumers pull missing ranges from here."""
        limit = max(1, min(int(limit), 1000))
        return [e.to_dict() for e in self.app.read_log(int(start), limit, stop)]

    @rpc
    def log_head(self) -> int:
        return self.app.log_head()

    # HTTP
    @http("GET", "/health")
    @http_json
    def health(self, request: Any) -> dict[str, Any]:
        return {"service": self.name, "status": "ok", "log_head": self.app.log_head()}

    @http("POST", "/api/institutions")
    @http_json
    def http_file_institution(self, request: Any) -> tuple[int, dict[str, Any]]:
        institution_id = self.app.file_institution(read_json(request))
        return 201, {"institution_id": str(institution_id)}

    @http("GET", "/api/institutions/<string:institution_id>")
    @http_json
    def http_get_institution(self, request: Any, institution_id: str) -> dict[str, Any]:
        return self.app.institution(institution_id)
