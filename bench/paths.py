"""The paths users take: commands over HTTP and over RPC through the real nameko processes.

    .venv/bin/python bench/paths.py [--quick] [--n N]

Starts registration, credit and the dashboard with their workers (``ProcessGroup``, the way
``make run`` does, on the bench servers of ``bench/run.py``), then for 1, 8 and 32 concurrent
clients sends

- ``http_register_institution``: ``POST /api/institutions`` through the gateway, with a
  token (keep-alive connections, one per client),
- ``rpc_register_institution``: ``register_institution`` over nameko RPC (one client each),
- ``http_register_practitioner`` / ``rpc_register_practitioner``: the same for credit,

each command with data of its own, and reports throughput and p50/p95/p99 latency; then the
same with two processes per service (sharing the HTTP port by SO_REUSEPORT and the RPC queue).
Then ``end_to_end``: registrations sent over HTTP at 100/s for 60 s, and the time from sending
each to its row in the dashboard's read model; the resident size of every process before and
after that run.
Baseline in the same run: ``raw_eventsourcing_save`` (a plain eventsourcing save, one
aggregate per save, on the same PostgreSQL). Checks: every command answered 201 (or returned
an id), and each service's log holds exactly the events the commands made.

Results: ``bench-results/paths-latest.json`` and ``bench-results/paths-<UTC timestamp>.json``,
with the previous ``paths-latest.json`` compared (a figure more than 20% worse is flagged).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from run import Checks, Servers, bench_raw_save, bench_servers, machine_info

from tuoyu_registration.samples import sample_registration
from tuoyu_shared.devrun import BACKENDS, SERVICES, ProcessGroup
from tuoyu_shared.rpc import RpcClient
from tuoyu_shared.testing import auth_env, bearer
from tuoyu_shared.validation import resident_id_check_character

RESULTS = Path(__file__).resolve().parent.parent / "bench-results"
BENCH_ROOT = Path(__file__).resolve().parent.parent / ".local" / "bench"
#: After a measured run, how long its downstream work (relays, reactions, views) may take
#: to finish, inside the CPU measurement.
SETTLE_SECONDS = 2.0
CLIENTS = (1, 8, 32)
PORT_OFFSET = 1000
#: Targets of issue 9 (HTTP, 8 clients, against the raw save): one process, two processes.
TARGETS = {1: 0.5, 2: 0.8}


def resident_id(n: int) -> str:
    """A valid resident ID number for each n (up to 36 million): birth dates from 1970."""
    born = date(1970, 1, 1) + timedelta(days=n // 1000)
    first17 = f"310104{born:%Y%m%d}{n % 1000:03d}"
    return first17 + resident_id_check_character(first17)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


@contextmanager
def group_of_services(servers: Servers, instances: int):
    """Every service and worker, on databases of their own, stopped and dropped after."""
    admin = servers.database_url("postgres")
    names = {spec.name: f"bench_paths_{spec.name}_{uuid.uuid4().hex[:8]}" for spec in BACKENDS}
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names.values():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    env = {f"TUOYU_{service.upper()}_DATABASE_URL": servers.database_url(db)
           for service, db in names.items()}
    env.update(TUOYU_AMQP_URI=servers.amqp_uri, TUOYU_LOG_LEVEL="warning",
               TUOYU_PORT_SHIFT="0", TUOYU_GATEWAY_RATE="1000000", TUOYU_GATEWAY_BURST="1000000",
               **auth_env())
    with tempfile.TemporaryDirectory() as logs:
        group = ProcessGroup(env, Path(logs), port_offset=PORT_OFFSET)
        try:
            group.start(instances=instances)
            yield group, env
        finally:
            group.stop()
            with psycopg.connect(admin, autocommit=True) as conn:
                for name in names.values():
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(name)))


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def server_pids(root: Path) -> dict[str, set[int]]:
    """The bench's own PostgreSQL and RabbitMQ processes: those started with ``root`` on
    their command line, and all their descendants (PostgreSQL's backends, Erlang's helpers)."""
    parents: dict[int, int] = {}
    named: dict[str, set[int]] = {"postgres": set(), "rabbitmq": set()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                "utf-8", "replace")
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1]
                                           .split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if str(root) in cmdline:
            named["rabbitmq" if "rabbit" in cmdline else "postgres"].add(int(entry.name))
    # RabbitMQ's Erlang VM takes its directories from the environment, not its command
    # line: found by its pid file
    try:
        named["rabbitmq"].add(int((root / "rabbitmq" / "rabbitmq.pid").read_text().strip()))
    except (OSError, ValueError):
        pass
    for pids in named.values():
        grew = True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in pids} - pids
            pids |= more
            grew = bool(more)
    return named


class CpuMeter:
    """CPU seconds of every process of the group (and of the bench's servers), to give each
    measurement its CPU per command by process: where the two cores went."""

    def __init__(self, group: ProcessGroup, servers: Servers):
        self.group, self.servers = group, servers
        self.idle_per_second: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        seconds = {name: cpu_seconds(pid) for name, pid in self.group.pids().items()}
        if self.servers.origin == "local":
            for name, pids in server_pids(BENCH_ROOT).items():
                seconds[name] = sum(cpu_seconds(pid) for pid in pids)
        return seconds

    def measure_idle(self, seconds: float = 3.0) -> None:
        before = self.read()
        time.sleep(seconds)
        after = self.read()
        self.idle_per_second = {k: (after[k] - before.get(k, 0.0)) / seconds for k in after}

    def per_command(self, before: dict[str, float], after: dict[str, float], seconds: float,
                    commands: int) -> dict[str, float]:
        """ms of CPU per command by process, less what the process spends idle (timers,
        heartbeats) over the same time."""
        out = {}
        for name, end in after.items():
            used = end - before.get(name, 0.0) - self.idle_per_second.get(name, 0.0) * seconds
            out[name] = round(max(used, 0.0) * 1000 / max(commands, 1), 2)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def log_head(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
            sql.Identifier(table))).fetchone()[0]


class Numbers:
    """Unique data per command across the whole run."""

    def __init__(self, start: int = 100_000):
        self._next = start
        self._lock = threading.Lock()

    def take(self, n: int) -> list[int]:
        with self._lock:
            first, self._next = self._next, self._next + n
        return list(range(first, first + n))


def run_clients(clients: int, per_client: int, send) -> dict[str, Any]:
    """``clients`` threads, each sending ``per_client`` commands with ``send(client, i)``
    (which returns True when the command was accepted); latencies in ms."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    refused = [0] * clients
    barrier = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        session = send.open()
        try:
            barrier.wait()
            for i in range(per_client):
                began = time.perf_counter()
                ok = send(session, k, i)
                latencies[k].append((time.perf_counter() - began) * 1000)
                if not ok:
                    refused[k] += 1
        finally:
            send.close(session)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    every = sorted(x for per in latencies for x in per)
    n = len(every)
    return {"clients": clients, "commands": n, "seconds": round(seconds, 3),
            "per_second": round(n / seconds, 1) if seconds else 0.0,
            "p50_ms": round(percentile(every, 0.50), 2),
            "p95_ms": round(percentile(every, 0.95), 2),
            "p99_ms": round(percentile(every, 0.99), 2),
            "mean_ms": round(statistics.fmean(every), 2) if every else 0.0,
            "refused": sum(refused)}


class HttpSender:
    def __init__(self, port: int, path: str, body_of, numbers: Numbers, per_client: int,
                 role: str = "health_officer"):
        self.port, self.path, self.body_of = port, path, body_of
        self.headers = bearer(role, subject="bench")
        self.numbers, self.per_client = numbers, per_client
        #: the gateway's own share of each answer (ms), from its Server-Timing header
        self.gateway_own_ms: list[float] = []
        #: each answer's time at the client less its calls' time outside the gateway (ms):
        #: what the HTTP way in added as the client saw it (the gateway, uvicorn's parsing
        #: and writing, the loopback, and this process's own threads waiting for the GIL)
        self.client_less_rpc_ms: list[float] = []

    def open(self) -> dict[str, Any]:
        return {"conn": http.client.HTTPConnection("127.0.0.1", self.port, timeout=60),
                "numbers": self.numbers.take(self.per_client)}

    def __call__(self, session: dict[str, Any], k: int, i: int) -> bool:
        body = json.dumps(self.body_of(session["numbers"][i])).encode()
        conn = session["conn"]
        began = time.perf_counter()
        conn.request("POST", self.path, body, {"Content-Type": "application/json",
                                                **self.headers})
        response = conn.getresponse()
        response.read()
        took = (time.perf_counter() - began) * 1000
        for part in (response.getheader("server-timing") or "").split(","):
            name, _, duration = part.strip().partition(";dur=")
            if name == "gateway" and duration:
                self.gateway_own_ms.append(float(duration))
            elif name == "rpc" and duration:
                self.client_less_rpc_ms.append(took - float(duration))
        return response.status in (200, 201)

    def close(self, session: dict[str, Any]) -> None:
        session["conn"].close()


class RpcSender:
    def __init__(self, amqp_uri: str, service: str, method: str, body_of, numbers: Numbers,
                 per_client: int):
        self.amqp_uri, self.service, self.method, self.body_of = amqp_uri, service, method, body_of
        self.numbers, self.per_client = numbers, per_client

    def open(self) -> dict[str, Any]:
        return {"rpc": RpcClient(self.amqp_uri, timeout=60),
                "numbers": self.numbers.take(self.per_client)}

    def __call__(self, session: dict[str, Any], k: int, i: int) -> bool:
        return bool(session["rpc"].call(self.service, self.method,
                                        self.body_of(session["numbers"][i])))

    def close(self, session: dict[str, Any]) -> None:
        session["rpc"].close()


def practitioner(n: int) -> dict[str, Any]:
    return {"name": "赵敏", "id_number": resident_id(n)}


PATHS = (
    # name, service, HTTP path, RPC method, body, the table whose log counts the events
    ("register_institution", "registration", "/api/institutions", "register_institution",
     sample_registration, "registration_events"),
    ("register_practitioner", "credit", "/api/practitioners", "register_practitioner",
     practitioner, "credit_events"),
)


def bench_paths(servers: Servers, instances: int, n: int, checks: Checks,
                numbers: Numbers) -> list[dict[str, Any]]:
    results = []
    with group_of_services(servers, instances) as (group, env):
        meter = CpuMeter(group, servers)
        meter.measure_idle()
        for name, service, path, method, body_of, table in PATHS:
            url = env[f"TUOYU_{service.upper()}_DATABASE_URL"]
            port = group.port(next(s for s in SERVICES if s.name == "gateway"))
            role = "health_officer" if service == "registration" else "credit_officer"
            for transport in ("http", "rpc"):
                for clients in CLIENTS:
                    per_client = max(1, n // clients)
                    sender = (HttpSender(port, path, body_of, numbers, per_client, role)
                              if transport == "http" else
                              RpcSender(env["TUOYU_AMQP_URI"], service, method, body_of,
                                        numbers, per_client))
                    before = log_head(url, table)
                    cpu_before, cpu_started = meter.read(), time.monotonic()
                    result = run_clients(clients, per_client, sender)
                    after = log_head(url, table)
                    if transport == "http":
                        own = sorted(sender.gateway_own_ms)
                        checks.equal(f"http_{name} x{clients}: answers with the gateway timing",
                                     len(own), result["commands"])
                        result["gateway_own_ms"] = {
                            "p50": round(percentile(own, 0.50), 3),
                            "p95": round(percentile(own, 0.95), 3),
                            "p99": round(percentile(own, 0.99), 3)}
                        seen = sorted(sender.client_less_rpc_ms)
                        result["client_less_rpc_ms"] = {
                            "p50": round(percentile(seen, 0.50), 3),
                            "p95": round(percentile(seen, 0.95), 3),
                            "p99": round(percentile(seen, 0.99), 3)}
                    if clients == 8:
                        time.sleep(SETTLE_SECONDS)
                        cpu = meter.per_command(cpu_before, meter.read(),
                                                time.monotonic() - cpu_started,
                                                result["commands"])
                        result["cpu_ms_per_command"] = {"total": round(sum(cpu.values()), 2),
                                                        **cpu}
                    label = f"{transport}_{name}"
                    checks.equal(f"{label} x{clients} ({instances} process(es)): accepted",
                                 result["commands"] - result["refused"], result["commands"])
                    # a registration records one event; a practitioner two (registered and
                    # the identity sealed): count at least one per command
                    if after - before < result["commands"]:
                        checks.failures.append(f"{label}: {after - before} events for "
                                               f"{result['commands']} commands")
                    results.append({"name": label, "processes": instances, **result})
                    print(f"  {label:32} x{clients:<3} {instances}p  "
                          f"{result['per_second']:8.1f}/s  p50 {result['p50_ms']:7.2f} ms  "
                          f"p95 {result['p95_ms']:7.2f}  p99 {result['p99_ms']:7.2f}",
                          flush=True)
    return results


def resident_sizes(group: ProcessGroup) -> dict[str, int]:
    """Resident set size (KiB) of each process of the group."""
    sizes = {}
    for name, pid in group.pids().items():
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        sizes[name] = int(line.split()[1])
        except OSError:
            pass
    return sizes


def bench_end_to_end(servers: Servers, rate: float, seconds: float, checks: Checks,
                     numbers: Numbers) -> dict[str, Any]:
    """Registrations sent over HTTP at ``rate`` per second for ``seconds``; the time from
    sending each to its row in the dashboard's read model (the row's ``updated_at``, set by
    the projector's transaction, against the send time on the same clock)."""
    with group_of_services(servers, 1) as (group, env):
        memory_before = resident_sizes(group)
        port = group.port(next(s for s in SERVICES if s.name == "gateway"))
        officer = bearer("health_officer", subject="bench")
        total = int(rate * seconds)
        todo = numbers.take(total)
        sent: dict[str, float] = {}
        refused = [0]
        lock = threading.Lock()
        cursor = iter(range(total))
        began = time.time()

        def sender() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                while True:
                    with lock:
                        i = next(cursor, None)
                    if i is None:
                        return
                    due = began + i / rate
                    delay = due - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    at = time.time()
                    conn.request("POST", "/api/institutions",
                                 json.dumps(sample_registration(todo[i])).encode(),
                                 {"Content-Type": "application/json", **officer})
                    response = conn.getresponse()
                    body = json.loads(response.read() or b"{}")
                    if response.status == 201:
                        sent[body["institution_id"]] = at
                    else:
                        refused[0] += 1
            finally:
                conn.close()

        threads = [threading.Thread(target=sender) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        send_seconds = time.time() - began
        dashboard = env["TUOYU_DASHBOARD_DATABASE_URL"]
        deadline = time.monotonic() + 120
        visible: dict[str, float] = {}
        while time.monotonic() < deadline:
            with psycopg.connect(dashboard) as conn:
                visible = {str(i): float(t) for i, t in conn.execute(
                    "SELECT institution_id, extract(epoch FROM updated_at) "
                    "FROM institution_directory")}
            if set(sent) <= set(visible):
                break
            time.sleep(0.5)
        memory_after = resident_sizes(group)
    latencies = sorted((visible[i] - at) * 1000 for i, at in sent.items() if i in visible)
    checks.equal("end to end: registrations accepted", len(sent), total)
    checks.equal("end to end: rows visible in the dashboard", len(latencies), len(sent))
    return {"rate_wanted": rate, "rate_sent": round(total / send_seconds, 1),
            "seconds": round(send_seconds, 1), "commands": total, "refused": refused[0],
            "p50_ms": round(percentile(latencies, 0.50), 1),
            "p95_ms": round(percentile(latencies, 0.95), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(latencies[-1], 1) if latencies else None,
            "memory_kib_before": memory_before, "memory_kib_after": memory_after}


def compare(previous: dict[str, Any] | None, report: dict[str, Any]) -> list[str]:
    """Paths more than 20% slower than in the previous run with the same settings."""
    if not previous or previous.get("settings") != report.get("settings"):
        return []
    before = {(r["name"], r["processes"], r["clients"]): r for r in previous.get("paths", [])}
    flagged = []
    for r in report["paths"]:
        old = before.get((r["name"], r["processes"], r["clients"]))
        if old and old["per_second"] and r["per_second"] < 0.8 * old["per_second"]:
            flagged.append(f"{r['name']} x{r['clients']} {r['processes']}p: "
                           f"{r['per_second']}/s, was {old['per_second']}/s")
    return flagged


def bench_http_floor(count: int) -> dict[str, Any]:
    """One client's requests to ``bench/http_floor.py`` (FastAPI under uvicorn, nothing
    behind it) on an otherwise idle machine: p50/p95/p99 in ms."""
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "http_floor:app", "--app-dir",
         str(Path(__file__).resolve().parent), "--port", str(port), "--log-level", "warning"])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the HTTP floor's server did not start") from None
                time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps(practitioner(1)).encode()
        headers = {"Content-Type": "application/json", **bearer("credit_officer")}
        took = []
        for i in range(count + count // 10):
            began = time.perf_counter()
            conn.request("POST", "/floor", body, headers)
            response = conn.getresponse()
            response.read()
            if i >= count // 10:  # the first tenth warms up
                took.append((time.perf_counter() - began) * 1000)
        conn.close()
    finally:
        server.terminate()
        server.wait(10)
    took.sort()
    return {"name": "http_floor", "requests": len(took),
            "p50_ms": round(percentile(took, 0.50), 3),
            "p95_ms": round(percentile(took, 0.95), 3),
            "p99_ms": round(percentile(took, 0.99), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer commands (a smoke run)")
    parser.add_argument("--n", type=int, default=None, help="commands per measurement")
    parser.add_argument("--e2e-seconds", type=float, default=None,
                        help="how long the end-to-end run sends (default 60, quick 10)")
    args = parser.parse_args(argv)
    n = args.n or (96 if args.quick else 400)
    checks = Checks()
    numbers = Numbers()
    stamp = datetime.now(UTC)
    with bench_servers() as servers:
        raw = bench_raw_save(servers, max(n, 500), checks)
        print(f"  raw_eventsourcing_save             {raw.per_second:8.1f}/s", flush=True)
        floor = bench_http_floor(max(n, 500))
        print(f"  http_floor (FastAPI, nothing behind) p50 {floor['p50_ms']:.3f} ms  "
              f"p99 {floor['p99_ms']:.3f}", flush=True)
        paths = []
        for instances in (1, 2):
            paths += bench_paths(servers, instances, n, checks, numbers)
        e2e_seconds = args.e2e_seconds or (10 if args.quick else 60)
        end_to_end = bench_end_to_end(servers, 100, e2e_seconds, checks, numbers)
    for r in paths:
        r["ratio_to_raw_save"] = round(r["per_second"] / raw.per_second, 3)
    targets = []
    for processes, target in TARGETS.items():
        [row] = [r for r in paths if r["name"] == "http_register_institution"
                 and r["clients"] == 8 and r["processes"] == processes]
        targets.append({"what": f"HTTP register_institution, 8 clients, {processes} process(es)",
                        "target_ratio": target, "ratio": row["ratio_to_raw_save"],
                        "met": row["ratio_to_raw_save"] >= target})
    # The gateway's own share, 8 clients, one process per service: what the gateway itself
    # spent on each answer (its Server-Timing: all but the wait for the service's reply),
    # p50. Beside it: the client's time for each answer less its calls' time outside the
    # gateway (which adds uvicorn's parsing and writing, the loopback and the bench's own
    # threads), and the p50 over HTTP less the p50 of the same command sent over RPC
    # directly: two runs of a saturated machine, which moves by tens of ms from run to run
    # (it has come out below zero).
    for name in ("register_institution", "register_practitioner"):
        [http_row] = [r for r in paths if r["name"] == f"http_{name}" and r["clients"] == 8
                      and r["processes"] == 1]
        [rpc_row] = [r for r in paths if r["name"] == f"rpc_{name}" and r["clients"] == 8
                     and r["processes"] == 1]
        own = http_row["gateway_own_ms"]["p50"]
        difference = round(http_row["p50_ms"] - rpc_row["p50_ms"], 2)
        targets.append({"what": f"the gateway's added latency, {name}, 8 clients, p50 of its "
                                f"own share (p99 {http_row['gateway_own_ms']['p99']} ms; "
                                f"at the client less the rpc share: p50 "
                                f"{http_row['client_less_rpc_ms']['p50']} ms, against "
                                f"{floor['p50_ms']} ms for FastAPI with nothing behind it "
                                f"on the idle machine; "
                                f"HTTP p50 {http_row['p50_ms']} ms - RPC p50 "
                                f"{rpc_row['p50_ms']} ms = {difference} ms)",
                        "target_ms": 2, "ms": own, "met": own < 2})
    targets.append({"what": "end to end at 100/s: p50 under 50 ms", "target_ms": 50,
                    "ms": end_to_end["p50_ms"], "met": end_to_end["p50_ms"] < 50})
    targets.append({"what": "end to end at 100/s: p99 under 250 ms", "target_ms": 250,
                    "ms": end_to_end["p99_ms"], "met": end_to_end["p99_ms"] < 250})
    report = {"started_at": stamp.isoformat(), "machine": machine_info(),
              "settings": {"quick": args.quick, "n": n, "e2e_seconds": e2e_seconds},
              "baseline": raw.as_dict(), "http_floor": floor, "paths": paths,
              "end_to_end": end_to_end,
              "targets": targets,
              "checks_failed": checks.failures}
    RESULTS.mkdir(exist_ok=True)
    latest = RESULTS / "paths-latest.json"
    previous = json.loads(latest.read_text()) if latest.exists() else None
    report["regressions"] = compare(previous, report)
    comparable = bool(previous) and previous.get("settings") == report["settings"]
    text = json.dumps(report, ensure_ascii=False, indent=2)
    latest.write_text(text)
    (RESULTS / f"paths-{stamp:%Y%m%dT%H%M%SZ}.json").write_text(text)
    print(f"\nbaseline raw_eventsourcing_save: {raw.per_second:.1f}/s")
    print(f"{'path':34} {'clients':>7} {'procs':>5} {'per s':>9} {'x raw':>6} {'p50':>8} "
          f"{'p99':>8}")
    for r in paths:
        print(f"{r['name']:34} {r['clients']:>7} {r['processes']:>5} {r['per_second']:>9.1f} "
              f"{r['ratio_to_raw_save']:>6.2f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}")
    for r in paths:
        if "cpu_ms_per_command" in r:
            cpu = r["cpu_ms_per_command"]
            print(f"CPU ms per command, {r['name']} x8 {r['processes']}p: total "
                  f"{cpu['total']}: " + ", ".join(f"{k} {v}" for k, v in cpu.items()
                                                   if k != "total" and v >= 0.05))
    e = end_to_end
    print(f"\nend to end (HTTP command -> dashboard row), {e['rate_sent']}/s sent for "
          f"{e['seconds']} s: p50 {e['p50_ms']} ms, p95 {e['p95_ms']} ms, p99 {e['p99_ms']} ms")
    print("resident size (MiB) before -> after: " + ", ".join(
        f"{name} {e['memory_kib_before'].get(name, 0) / 1024:.0f} -> {kib / 1024:.0f}"
        for name, kib in sorted(e["memory_kib_after"].items())))
    for t in targets:
        if "ratio" in t:
            print(f"target {t['what']}: {t['ratio']:.2f}x raw save, wanted "
                  f"{t['target_ratio']}x: {'met' if t['met'] else 'NOT met'}")
        else:
            print(f"target {t['what']}: {t['ms']} ms: {'met' if t['met'] else 'NOT met'}")
    if not comparable:
        print("no previous run with the same settings to compare with")
    elif not report["regressions"]:
        print(f"no path over 20% slower than in the run of {previous['started_at']}")
    for line in report["regressions"]:
        print(f"REGRESSION (over 20% slower than the run of {previous['started_at']}): "
              f"{line}")
    for failure in checks.failures:
        print(f"CHECK FAILED: {failure}")
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
