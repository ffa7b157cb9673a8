"""Who asked for a command and why: the context every recorded event carries.

An adapter (RPC, HTTP or event handler) opens a :func:`command_context`; the application layer
stamps it on each new event, the relay copies it into the envelope, and the logs bind it.
The correlation id follows a case across services; the causation id names the message (or
request) that caused this one.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any

import structlog


@dataclass(frozen=True)
class CommandContext:
    actor: str = "system"
    department: str = "system"
    correlation_id: str = ""
    causation_id: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


_current: contextvars.ContextVar[CommandContext | None] = contextvars.ContextVar(
    "tuoyu_command_context", default=None
)


def new_id() -> str:
    return str(uuid.uuid4())


def current_context() -> CommandContext:
    ctx = _current.get()
    if ctx is None:
        return CommandContext(correlation_id=new_id())
    return ctx


@contextmanager
def command_context(
    actor: str | None = None,
    department: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Iterator[CommandContext]:
    outer = _current.get()
    base = outer or CommandContext()
    ctx = replace(
        base,
        actor=actor or base.actor,
        department=department or base.department,
        correlation_id=correlation_id or base.correlation_id or new_id(),
        causation_id=causation_id or base.causation_id,
    )
    token = _current.set(ctx)
    with structlog.contextvars.bound_contextvars(correlation_id=ctx.correlation_id):
        try:
            yield ctx
        finally:
            _current.reset(token)


#: Who called, as their verified token says (:class:`tuoyu_shared.auth.Principal`), while a
#: call made with a token runs; None for calls from inside the system (timers, consumers,
#: tools). Not recorded in events (the context's actor and department are): for checks an
#: application makes beyond the gateway's, such as the caller's district.
_principal: contextvars.ContextVar[Any] = contextvars.ContextVar("tuoyu_principal",
                                                                  default=None)


def current_principal() -> Any:
    return _principal.get()


@contextmanager
def acting_as(principal: Any) -> Iterator[Any]:
    token = _principal.set(principal)
    try:
        yield principal
    finally:
        _principal.reset(token)
