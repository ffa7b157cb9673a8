"""A container's health check: ``python -m tuoyu_shared.healthcheck`` exits 0 when the process
of the container answers ``/health/ready`` with 200 (its database, broker and schema ready:
:mod:`tuoyu_shared.readiness`), 1 otherwise.

Which process: ``TUOYU_PROCESS`` (``service``, the nameko adapter on ``TUOYU_HTTP_PORT``,
default 8000; or ``worker``, on ``TUOYU_WORKER_HTTP_PORT``, default 9100). Without it, the
container's first process is looked at: a command line naming a ``.worker`` module (``python
-m tuoyu_<service>.worker``, or ``tuoyu worker``) is a worker. So one image's ``HEALTHCHECK``
serves both its service and its worker containers.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

DEFAULT_SERVICE_PORT = 8000
DEFAULT_WORKER_PORT = 9100


def process_kind(env: Mapping[str, str], cmdline: bytes = b"") -> str:
    """``service`` or ``worker``: ``TUOYU_PROCESS`` if set, else from PID 1's command line."""
    given = (env.get("TUOYU_PROCESS") or "").strip().lower()
    if given in ("service", "worker"):
        return given
    words = cmdline.split(b"\0")
    return "worker" if any(w.endswith(b".worker") or w == b"worker" for w in words) \
        else "service"


def health_url(env: Mapping[str, str], cmdline: bytes = b"") -> str:
    if process_kind(env, cmdline) == "worker":
        port = env.get("TUOYU_WORKER_HTTP_PORT") or DEFAULT_WORKER_PORT
    else:
        port = env.get("TUOYU_HTTP_PORT") or DEFAULT_SERVICE_PORT
    return f"http://127.0.0.1:{port}/health/ready"


def main(env: Mapping[str, str] | None = None, timeout: float = 3.0) -> int:
    env = os.environ if env is None else env
    try:
        cmdline = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    url = health_url(env, cmdline)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            healthy = resp.status == 200
    except (urllib.error.URLError, OSError, ValueError) as e:
        print(f"unhealthy: {url}: {e}", file=sys.stderr)
        return 1
    if not healthy:
        print(f"unhealthy: {url}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
