"""Private PostgreSQL and RabbitMQ servers under the project's own folder.

Ports stay below Linux's ephemeral range (32768–60999): a port in it can be taken at any moment
by an outgoing connection's local end, and the server then fails to bind.

`make run` and `make test` use these on machines without a Docker engine: each server gets its
own data directory, ports and node name, so nothing system-wide is touched and a development
instance and a test instance can run side by side.

    python -m tuoyu_shared.localservers start --root .local/run --pg-port 25432 --amqp-port 25672
    python -m tuoyu_shared.localservers stop --root .local/run

PostgreSQL refuses to run as root and RabbitMQ's wrapper drops to the ``rabbitmq`` user, so when
started by root each data directory is handed to that user first.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/local/bin")


def _pg_bin(name: str) -> str:
    for folder in PG_BIN_CANDIDATES:
        path = Path(folder) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"PostgreSQL program {name!r} not found; install postgresql-15")
    return found


def _is_root() -> bool:
    return os.geteuid() == 0


def _as_user(user: str, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if _is_root() else argv


def _chown_tree(path: Path, user: str) -> None:
    if not _is_root():
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _make_reachable(path: Path) -> None:
    """Let the server's user walk down to its data directory (a checkout may sit in /root)."""
    for parent in [path, *path.parents]:
        try:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
        except PermissionError:
            pass


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@dataclass
class LocalPostgres:
    root: Path
    port: int
    user: str = "tuoyu"
    fast: bool = False  # fsync off: for throw-away test instances only

    @property
    def data_dir(self) -> Path:
        return self.root / "postgres"

    @property
    def uri(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(_as_user("postgres", argv), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        if port_open(self.port):
            return
        self.root.mkdir(parents=True, exist_ok=True)
        _make_reachable(self.root)
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            _chown_tree(self.data_dir, "postgres")
            self._run([_pg_bin("initdb"), "-D", str(self.data_dir), "-A", "trust",
                       "-U", self.user, "-E", "UTF8", "--locale=C.UTF-8"])
        options = [
            f"-p {self.port}", "-k /tmp", "-c listen_addresses=127.0.0.1",
            "-c max_connections=200", "-c shared_buffers=256MB",
        ]
        if self.fast:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        log = self.root / "postgres.log"
        log.touch()
        _chown_tree(log, "postgres")
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(log),
                   "-o", " ".join(options), "-w", "-t", "60", "start"])

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run(_as_user("postgres", [_pg_bin("pg_ctl"), "-D", str(self.data_dir),
                                                 "-m", "fast", "-w", "stop"]),
                           capture_output=True)


@dataclass
class LocalRabbitMQ:
    root: Path
    port: int
    node_name: str = "tuoyu"

    @property
    def base(self) -> Path:
        return self.root / "rabbitmq"

    @property
    def node(self) -> str:
        return f"{self.node_name}@localhost"

    @property
    def uri(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            # The distribution port defaults to AMQP port + 20000, which can collide with
            # another node or pass 65535: pick one just above the AMQP port instead.
            "RABBITMQ_DIST_PORT": str(self.port + 1),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbitmq.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(self.base / "feature_flags"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
        })
        return env

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["rabbitmqctl", "-n", self.node, *args], env=self._env(),
                              check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        if port_open(self.port):
            return
        if not shutil.which("rabbitmq-server"):
            raise RuntimeError("rabbitmq-server not found: apt-get install rabbitmq-server")
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        _make_reachable(self.base)
        plugins = self.base / "enabled_plugins"
        if not plugins.exists():
            plugins.write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text(
            "loopback_users = none\n"
            "disk_free_limit.absolute = 50MB\n"
            "log.file.level = warning\n"
        )
        _chown_tree(self.base, "rabbitmq")
        subprocess.run(["rabbitmq-server", "-detached"], env=self._env(), check=True,
                       capture_output=True, timeout=60)
        self.await_startup()

    def await_startup(self) -> None:
        # await_startup fails at once while the node has not yet registered with epmd.
        deadline = time.monotonic() + 90
        while True:
            result = self.ctl("await_startup", "--timeout", "60", check=False)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if result.returncode != 0:
            raise RuntimeError(f"RabbitMQ node {self.node} did not start: {result.stderr}"
                               f" (logs in {self.base / 'log'})")

    def stop(self) -> None:
        self.ctl("stop", check=False)
        deadline = time.monotonic() + 30
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)

    # An outage as clients see it: the broker's AMQP application stops, the node stays.
    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.await_startup()


def servers(root: Path, pg_port: int, amqp_port: int, name: str, fast: bool = False):
    return (LocalPostgres(root, pg_port, fast=fast), LocalRabbitMQ(root, amqp_port, name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--root", default=".local/run")
    parser.add_argument("--pg-port", type=int, default=25432)
    parser.add_argument("--amqp-port", type=int, default=25672)
    parser.add_argument("--node-name", default="tuoyu-run")
    parser.add_argument("--fast", action="store_true", help="fsync off (test instances)")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    pg, rabbit = servers(root, args.pg_port, args.amqp_port, args.node_name, args.fast)
    if args.action == "start":
        pg.start()
        rabbit.start()
        print(json.dumps({"postgres": pg.uri, "amqp": rabbit.uri}))
    elif args.action == "stop":
        rabbit.stop()
        pg.stop()
    else:
        up = {"postgres": port_open(pg.port), "rabbitmq": port_open(rabbit.port)}
        print(json.dumps(up))
        return 0 if all(up.values()) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
