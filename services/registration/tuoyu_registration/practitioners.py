"""The practitioner register (从业人员库) that registration asks for a practitioner's ref.

Credit keeps the register of practitioners and issues their refs, random pseudonyms: when an
institution hires someone this service does not know as a practitioner yet, it asks credit
(``register_practitioner``, which enters the person if new) and keeps the answer in its own
blind index. So a practitioner has one ref in every service, and no service can compute it
from the ID number.

:class:`RpcPractitionerRegister` is the adapter the composition root builds (nameko RPC to
credit, with the command's actor, department and correlation id); :class:`InProcessRegister`
calls a credit application in the same process (tests, tools).
"""

from __future__ import annotations

from typing import Any, Protocol

from tuoyu_shared.errors import Unavailable
from tuoyu_shared.rpc import RemoteError, RpcPool, RpcTimeout, UnknownService


class PractitionerRegister(Protocol):
    def register(self, name: str, id_number: str) -> str:
        """The practitioner's ref (entered in the register if new)."""


class RpcPractitionerRegister:
    def __init__(self, amqp_uri: str, timeout: float = 10.0):
        self._rpc = RpcPool(amqp_uri, timeout)

    def register(self, name: str, id_number: str) -> str:
        try:
            answer = self._rpc.call("credit", "register_practitioner",
                                    [{"name": name, "id_number": id_number}], {})
        except (UnknownService, RpcTimeout, OSError, ConnectionError) as e:
            raise Unavailable("the practitioner register (credit) cannot be reached: "
                              "try again") from e
        except RemoteError as e:  # the register refused the person: its reason, as it was
            raise e.as_local() from None
        return str(answer["person_ref"])


class InProcessRegister:
    """Credit's application called directly (tests and tools in one process)."""

    def __init__(self, credit: Any):
        self.credit = credit

    def register(self, name: str, id_number: str) -> str:
        return str(self.credit.register_practitioner(
            {"name": name, "id_number": id_number})["person_ref"])
