"""Start the services as processes, the way `make run` and the end-to-end tests do.

Each service is two processes: its nameko adapter (RPC + HTTP, under eventlet) and its worker
(relay and tracked consumers, plain threads). Ports and URIs come in through the environment,
exactly as in a deployment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    nameko_class: str
    http_port: int
    worker_module: str | None


SERVICES = (
    ServiceSpec("registration", "tuoyu_registration.service:RegistrationService", 8001,
                "tuoyu_registration.worker"),
    ServiceSpec("dashboard", "tuoyu_dashboard.service:DashboardService", 8002,
                "tuoyu_dashboard.worker"),
    ServiceSpec("credit", "tuoyu_credit.service:CreditService", 8003, "tuoyu_credit.worker"),
)


class ProcessGroup:
    def __init__(self, env: dict[str, str], log_dir: Path, port_offset: int = 0):
        self.env = {**os.environ, **env}
        self.log_dir = log_dir
        self.port_offset = port_offset
        self.procs: dict[str, subprocess.Popen] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def port(self, spec: ServiceSpec) -> int:
        return spec.http_port + self.port_offset

    def url(self, service: str) -> str:
        spec = next(s for s in SERVICES if s.name == service)
        return f"http://127.0.0.1:{self.port(spec)}"

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log,
                                            start_new_session=True)

    def start(self, services: tuple[ServiceSpec, ...] = SERVICES, workers: bool = True) -> None:
        for spec in services:
            self._spawn(f"{spec.name}-service", [sys.executable, "-m", "tuoyu_shared.serve",
                                                 spec.nameko_class, "--port", str(self.port(spec))])
            if workers and spec.worker_module:
                self.start_worker(spec)
        for spec in services:
            self.wait_healthy(spec)

    def start_worker(self, spec: ServiceSpec) -> None:
        self._spawn(f"{spec.name}-worker", [sys.executable, "-m", spec.worker_module])

    def stop_process(self, name: str, signalled: bool = False) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if not signalled:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def wait_healthy(self, spec: ServiceSpec, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port(spec)}/health"
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{spec.name} not healthy at {url} after {timeout}s")

    def stop(self) -> None:
        for proc in self.procs.values():  # signal all first, then wait: shutdowns overlap
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name in list(self.procs):
            self.stop_process(name, signalled=True)

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}


def http_json(method: str, url: str, body: dict | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
