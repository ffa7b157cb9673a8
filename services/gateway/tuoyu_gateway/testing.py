"""The gateway in a test's own process: its FastAPI app with the services' nameko classes
called directly instead of over RabbitMQ (:class:`InProcessRpc`), errors crossing as nameko
sends them. For tests of a service's HTTP surface that need no broker."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tuoyu_gateway.app import GatewaySettings, create_app
from tuoyu_shared.auth import KeyRing
from tuoyu_shared.errors import TuoyuError
from tuoyu_shared.rpc import RemoteError
from tuoyu_shared.testing import auth_env


class InProcessRpc:
    """``call(service, method, …)`` on service instances (nameko classes whose dependencies
    the test set), an exception turned into the :class:`RemoteError` nameko would send."""

    def __init__(self, **services: Any):
        self.services = services

    def call(self, service: str, method: str, args: list, kwargs: dict,
             rpc_context: dict[str, str]) -> Any:
        try:
            return getattr(self.services[service], method)(*args, **kwargs)
        except TuoyuError as e:
            raise RemoteError(type(e).__name__, str(e), list(e.args)) from None
        except Exception as e:  # a bug: nameko sends it too, without a status
            raise RemoteError(type(e).__name__, str(e), []) from None


def gateway_client(**services: Any) -> TestClient:
    """A test client of a gateway in front of these service instances (the test session's
    keys; no rate limit to speak of)."""
    settings = GatewaySettings(keys=KeyRing.from_env(auth_env()), rate=1e6, burst=10 ** 6)
    return TestClient(create_app(settings, rpc=InProcessRpc(**services)))
