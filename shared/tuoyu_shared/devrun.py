"""Start the services as processes, the way `make run` and the end-to-end tests do.

Each service is two processes: its nameko adapter (RPC + HTTP, under eventlet) and its worker
(relay and tracked consumers, plain threads). Ports and URIs come in through the environment,
exactly as in a deployment. Each worker serves ``/health`` and ``/metrics`` on a port of its
own (``worker_http_port``: 9101-9105, plus the group's port offset like the services' ports),
so the workers of one machine never collide on the default 9100.

With ``supervise_in_background()`` the group restarts a process that dies (with exponential
backoff, one line in the output each time) and keeps the others running; ``stop()`` stops
everything, and a process being stopped is never restarted.

The systems outside Tuoyu are simulated: the group serves the public-security records
inquiry's simulator (:mod:`tuoyu_shared.simulators.public_security`) in its own process, on
port 8090 plus the offset (any free port if that one is taken), with the records of
``public_security_records`` (or the file ``TUOYU_PUBLIC_SECURITY_RECORDS`` names), and gives
every process ``TUOYU_PUBLIC_SECURITY_URL``; a test plays its faults through
``group.public_security`` (``set_down``, ``set_deferred``). An environment that sets
``TUOYU_PUBLIC_SECURITY_URL`` itself (a real system, a simulator of its own) gets none.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    nameko_class: str | None
    http_port: int
    worker_module: str | None
    worker_http_port: int | None = None  # the worker's /health and /metrics
    #: a process that is no nameko service (the gateway): its module, run with --port
    module: str | None = None

    def argv(self, port: int) -> list[str]:
        if self.module is not None:
            return [sys.executable, "-m", self.module, "serve", "--port", str(port)]
        # the image's entry point (python -m tuoyu_<service> serve), which runs the nameko
        # class through tuoyu_shared.serve
        return [sys.executable, "-m", f"tuoyu_{self.name}", "serve", "--port", str(port)]


#: The one public HTTP entry: every command and query goes through it.
GATEWAY = ServiceSpec("gateway", None, 8000, None, module="tuoyu_gateway")

BACKENDS = (
    ServiceSpec("registration", "tuoyu_registration.service:RegistrationService", 8001,
                "tuoyu_registration.worker", 9101),
    ServiceSpec("dashboard", "tuoyu_dashboard.service:DashboardService", 8002,
                "tuoyu_dashboard.worker", 9102),
    ServiceSpec("credit", "tuoyu_credit.service:CreditService", 8003, "tuoyu_credit.worker",
                9103),
    ServiceSpec("inspection", "tuoyu_inspection.service:InspectionService", 8004,
                "tuoyu_inspection.worker", 9104),
    ServiceSpec("subsidy", "tuoyu_subsidy.service:SubsidyService", 8005,
                "tuoyu_subsidy.worker", 9105),
)
SERVICES = (*BACKENDS, GATEWAY)

#: Where the group's public-security simulator listens (plus the port offset).
PUBLIC_SECURITY_PORT = 8090
PUBLIC_SECURITY_URL_VAR = "TUOYU_PUBLIC_SECURITY_URL"
#: A JSON file of the simulated records (resident ID number -> categories), if any.
PUBLIC_SECURITY_RECORDS_VAR = "TUOYU_PUBLIC_SECURITY_RECORDS"


@dataclass
class _Restart:
    """A dead process's pending restart."""
    due: float  # time.monotonic() at which to start it again
    attempt: int


class ProcessGroup:
    """The services' processes, each in a session (process group) of its own.

    ``pids_file``, when given, always holds ``{"supervisor": this pid, "processes": {name:
    pid}}``: it is rewritten whenever a pid changes, so ``make stop`` finds every process.
    """

    def __init__(self, env: dict[str, str], log_dir: Path, port_offset: int = 0,
                 pids_file: Path | None = None, report: Callable[[str], None] | None = None,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 stable_after: float = 60.0,
                 public_security_records: Mapping[str, Iterable[str]] | str | Path | None = None):
        self.env = {**os.environ, **env}
        #: The simulated public-security records inquiry, once started (None when the
        #: environment names a system of its own).
        self.public_security: Any = None
        self._simulate_public_security = not self.env.get(PUBLIC_SECURITY_URL_VAR)
        self._public_security_records = (public_security_records
                                         or self.env.get(PUBLIC_SECURITY_RECORDS_VAR) or None)
        self.log_dir = log_dir
        # TUOYU_PORT_SHIFT moves a whole checkout's groups (a second working tree testing
        # beside the first on one machine).
        self.port_offset = port_offset + int(os.environ.get("TUOYU_PORT_SHIFT", "0"))
        self.pids_file = pids_file
        self.report = report or (lambda line: print(line, flush=True))
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.stable_after = stable_after  # up this long, a process's next death is attempt 1
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {}  # name: restarts so far (all, for tests and ops)
        self._argv: dict[str, list[str]] = {}
        self._started_at: dict[str, float] = {}
        self._attempts: dict[str, int] = {}  # consecutive quick deaths
        self._pending: dict[str, _Restart] = {}
        self._lock = threading.RLock()  # procs, pending restarts and stopping change under it
        self._stopping = False
        self._supervisor: threading.Thread | None = None
        self._wake = threading.Event()
        log_dir.mkdir(parents=True, exist_ok=True)

    def port(self, spec: ServiceSpec) -> int:
        return spec.http_port + self.port_offset

    def url(self, service: str) -> str:
        spec = next(s for s in SERVICES if s.name == service)
        return f"http://127.0.0.1:{self.port(spec)}"

    def worker_port(self, spec: ServiceSpec) -> int | None:
        if spec.worker_http_port is None:
            return None
        return spec.worker_http_port + self.port_offset

    def worker_url(self, service: str) -> str:
        """Where a service's worker serves ``/health`` and ``/metrics``."""
        spec = next(s for s in SERVICES if s.name == service)
        return f"http://127.0.0.1:{self.worker_port(spec)}"

    def _spawn(self, name: str, argv: list[str]) -> None:
        with self._lock:
            if self._stopping:
                return
            with open(self.log_dir / f"{name}.log", "ab") as log:  # the child keeps its copy
                self.procs[name] = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log,
                                                    start_new_session=True)
            self._argv[name] = argv
            self._started_at[name] = time.monotonic()
            self._pending.pop(name, None)
            self._write_pids()

    def start(self, services: tuple[ServiceSpec, ...] = SERVICES, workers: bool = True,
              instances: int = 1) -> None:
        """Start the services (and their workers) and wait until each answers ``/health``;
        if one does not, stop everything started and raise (no process is left behind).

        ``instances`` processes of each service share its HTTP port (SO_REUSEPORT, which
        eventlet sets on the listening socket: the kernel spreads connections) and its RPC
        queue (consumers compete), as replicas behind a load balancer would."""
        try:
            self.start_public_security()
            self.migrate(services)
            for spec in services:
                for instance in range(1, instances + 1):
                    self._spawn(f"{spec.name}-service" + (f"-{instance}" if instance > 1 else ""),
                                spec.argv(self.port(spec)))
                if workers and spec.worker_module:
                    self.start_worker(spec)
            for spec in services:
                self.wait_healthy(spec)
            for spec in services:
                if workers and spec.worker_module and self.worker_port(spec) is not None:
                    self.wait_healthy(spec, url=f"{self.worker_url(spec.name)}/health")
        except BaseException:
            self.stop()
            raise

    def start_public_security(self) -> None:
        """Serve the public-security simulator in this process (once) and point every process
        started from now on at it (``TUOYU_PUBLIC_SECURITY_URL``)."""
        if not self._simulate_public_security or self.public_security is not None:
            return
        from tuoyu_shared.simulators.public_security import start_simulator

        try:
            sim = start_simulator(PUBLIC_SECURITY_PORT + self.port_offset,
                                  self._public_security_records)
        except OSError:  # the port is taken (another group): any free one will do
            sim = start_simulator(0, self._public_security_records)
        self.public_security = sim
        self.env[PUBLIC_SECURITY_URL_VAR] = sim.url

    def migrate(self, services: tuple[ServiceSpec, ...] = SERVICES) -> None:
        """Bring each service's schema up to date first, the way a deployment's migration
        job does (``python -m tuoyu_<service> migrate``)."""
        for spec in services:
            done = subprocess.run([sys.executable, "-m", f"tuoyu_{spec.name}", "migrate"],
                                  env=self.env, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise RuntimeError(f"migrating {spec.name} failed:\n{done.stderr[-3000:]}")

    def start_worker(self, spec: ServiceSpec) -> None:
        argv = [sys.executable, "-m", f"tuoyu_{spec.name}", "worker"]
        port = self.worker_port(spec)
        if port is not None:
            argv += ["--http-port", str(port)]
        self._spawn(f"{spec.name}-worker", argv)

    def stop_process(self, name: str, signalled: bool = False) -> None:
        """Stop one process for good: supervision does not restart it (start it again
        with ``start_worker``)."""
        with self._lock:
            proc = self.procs.pop(name, None)
            self._pending.pop(name, None)
            self._write_pids()
        if proc is None:
            return
        if not signalled and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def wait_healthy(self, spec: ServiceSpec, timeout: float = 60, url: str | None = None) -> None:
        """Until the service's ``/health`` (or ``url``) answers 200."""
        deadline = time.monotonic() + timeout
        url = url or f"http://127.0.0.1:{self.port(spec)}/health"
        while time.monotonic() < deadline:
            with self._lock:
                procs = dict(self.procs)
            for name, proc in procs.items():
                if proc.poll() is not None and self._supervisor is None:
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

    # Supervision

    def supervise(self) -> None:
        """One step: notice processes that exited, schedule their restart (with backoff,
        one reported line each) and start those that are due. Nothing while stopping."""
        with self._lock:
            if self._stopping:
                return
            now = time.monotonic()
            for name, proc in self.procs.items():
                code = proc.poll()
                if code is None or name in self._pending:
                    continue
                up_for = now - self._started_at.get(name, now)
                attempt = 1 if up_for >= self.stable_after else self._attempts.get(name, 0) + 1
                self._schedule(name, attempt, now, f"restarting {name} (exit {code})")
            for name, restart in list(self._pending.items()):
                if restart.due > now:
                    continue
                try:
                    self._spawn(name, self._argv[name])
                except OSError as e:
                    self._schedule(name, restart.attempt + 1, now,
                                   f"could not start {name} ({e})")
                else:
                    self.restarts[name] = self.restarts.get(name, 0) + 1

    def _schedule(self, name: str, attempt: int, now: float, what: str) -> None:
        self._attempts[name] = attempt
        delay = min(self.backoff_initial * 2 ** (attempt - 1), self.backoff_max)
        self._pending[name] = _Restart(now + delay, attempt)
        line = f"{what}, attempt {attempt}, in {delay:g}s"
        self._log_line(name, line)
        self.report(line)

    def supervise_in_background(self, interval: float = 0.2) -> threading.Thread:
        """Run ``supervise()`` every ``interval`` seconds until ``stop()``."""

        def loop() -> None:
            while not self._stopping:
                try:
                    self.supervise()
                except Exception as e:  # a failed restart is retried at the next step
                    self.report(f"supervision step failed: {e!r}")
                self._wake.wait(interval)

        with self._lock:
            if self._supervisor is None:
                self._supervisor = threading.Thread(target=loop, name="supervisor",
                                                    daemon=True)
                self._supervisor.start()
            return self._supervisor

    def _log_line(self, name: str, line: str) -> None:
        try:
            with open(self.log_dir / f"{name}.log", "a") as log:
                log.write(f"--- {line} ---\n")
        except OSError:
            pass

    def _write_pids(self) -> None:
        if self.pids_file is None:
            return
        tmp = self.pids_file.with_name(self.pids_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"supervisor": os.getpid(), "processes": self.pids()}))
            os.replace(tmp, self.pids_file)  # a reader sees the old file or the new, whole
        except OSError as e:
            self.report(f"could not write {self.pids_file}: {e}")

    def stop(self) -> None:
        with self._lock:  # from here on nothing is restarted, and no restart is under way
            self._stopping = True
            self._pending.clear()
            procs = dict(self.procs)
        self._wake.set()
        for proc in procs.values():  # signal all first, then wait: shutdowns overlap
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name in procs:
            self.stop_process(name, signalled=True)
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout=5)
        if self.public_security is not None:
            self.public_security.stop()
        if self.pids_file is not None:
            self.pids_file.unlink(missing_ok=True)

    def pids(self) -> dict[str, int]:
        with self._lock:
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
