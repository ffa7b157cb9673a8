"""The reliability suite's report: a row per scenario, written as JSON and Markdown (to
``bench-results/reliability/``), and the processes' resources over the run."""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg


@dataclass
class ScenarioResult:
    name: str
    fault: str
    seconds: float = 0.0  # of load
    sent: int = 0
    accepted: int = 0
    refused: int = 0
    unknown: int = 0  # no answer or 5xx: the command may or may not have been applied
    events: int = 0  # new in the logs during the scenario (all services)
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    mismatches: int = 0
    tables_compared: int = 0
    parked: int = 0  # open dead letters after it (all the poison so far)
    set_aside: int = 0  # unreadable messages set aside at the door so far
    unexpected_letters: int = 0
    audit_failures: int = 0
    converge_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.reordered or self.mismatches
                    or self.unexpected_letters or self.audit_failures)


COLUMNS = (("scenario", "name"), ("accepted", "accepted"), ("refused", "refused"),
           ("unknown", "unknown"), ("events", "events"), ("lost", "lost"),
           ("duplicated", "duplicated"), ("read-model mismatches", "mismatches"),
           ("dead letters", "parked"), ("set aside", "set_aside"),
           ("converged in s", "converge_seconds"))


def markdown(results: list[ScenarioResult], resources: dict[str, Any], profile: str,
             commands: dict[str, dict[str, int]] | None = None) -> str:
    lines = [f"# Reliability run ({profile})", "",
             f"{datetime.now(UTC).isoformat(timespec='seconds')}, {platform.node()}, "
             f"{os.cpu_count()} cores.", "",
             "| " + " | ".join(c for c, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for r in results:
        cells = []
        for _, attr in COLUMNS:
            value = getattr(r, attr)
            cells.append(f"{value:.1f}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Faults:", ""]
    lines += [f"- **{r.name}**: {r.fault}" for r in results]
    if commands:
        lines += ["", "Commands over the run:", "",
                  "| command | accepted | refused | unknown | no change |", "|---|---|---|---|---|"]
        for name, c in commands.items():
            lines.append(f"| {name} | {c['accepted']} | {c['refused']} | {c['unknown']} | "
                         f"{c['noop']} |")
    problems = [(r.name, p) for r in results for p in r.problems]
    if problems:
        lines += ["", "Problems:", ""] + [f"- {name}: {p}" for name, p in problems]
    if resources.get("processes"):
        lines += ["", f"Resources over {resources['minutes']:.1f} min "
                  f"({resources['samples']} samples):", "",
                  "| process | RSS MiB first | RSS MiB last | RSS MiB max | fds first | "
                  "fds last | fds max |", "|---|---|---|---|---|---|---|"]
        for name, p in sorted(resources["processes"].items()):
            lines.append(f"| {name} | {p['rss_mib'][0]:.0f} | {p['rss_mib'][-1]:.0f} | "
                         f"{max(p['rss_mib']):.0f} | {p['fds'][0]} | {p['fds'][-1]} | "
                         f"{max(p['fds'])} |")
        lines += ["", "| database | connections first | last | max |", "|---|---|---|---|"]
        for name, values in sorted(resources["connections"].items()):
            lines.append(f"| {name} | {values[0]} | {values[-1]} | {max(values)} |")
        if resources.get("violations"):
            lines += ["", "Bounds exceeded:", ""] + [f"- {v}" for v in resources["violations"]]
    return "\n".join(lines) + "\n"


def write(folder: Path, results: list[ScenarioResult], resources: dict[str, Any],
          profile: str, commands: dict[str, dict[str, int]] | None = None
          ) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"profile": profile, "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"node": platform.node(), "cores": os.cpu_count()},
            "scenarios": [asdict(r) | {"clean": r.clean} for r in results],
            "commands": commands or {}, "resources": resources}
    as_json = folder / f"{profile}.json"
    as_md = folder / f"{profile}.md"
    as_json.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    as_md.write_text(markdown(results, resources, profile, commands or {}), encoding="utf-8")
    return as_json, as_md


# ---- resources -------------------------------------------------------------------------------
def _rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class ResourceSampler:
    """Samples every process's resident size and open file descriptors, and each service's
    database connections, every ``interval`` seconds. A restarted process (a new pid) starts a
    new series under ``name#2``: growth is judged within one process's life."""

    def __init__(self, system: Any, interval: float = 5.0):
        self.system = system
        self.interval = interval
        self.series: dict[str, dict[str, list]] = {}
        self.connections: dict[str, list[int]] = {}
        self._pids: dict[str, int] = {}
        self._lives: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = time.monotonic()

    def sample(self) -> None:
        for name, pid in self.system.group.pids().items():
            if self._pids.get(name) != pid:
                self._pids[name] = pid
                self._lives[name] = self._lives.get(name, 0) + 1
            key = name if self._lives[name] == 1 else f"{name}#{self._lives[name]}"
            rss, fds = _rss_mib(pid), _fds(pid)
            if rss is None or fds is None:
                continue
            s = self.series.setdefault(key, {"rss_mib": [], "fds": []})
            s["rss_mib"].append(round(rss, 1))
            s["fds"].append(fds)
        for service, url in self.system.direct.items():
            try:
                with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
                    n = conn.execute("SELECT count(*) - 1 FROM pg_stat_activity WHERE datname "
                                     "= current_database()").fetchone()[0]
            except psycopg.Error:
                continue
            self.connections.setdefault(service, []).append(n)
        self.samples += 1

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self.sample()
                except Exception:  # noqa: BLE001 - a sample missed is no failure
                    pass

        self.sample()
        self._thread = threading.Thread(target=loop, name="resources", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.sample()

    def summary(self, rss_growth_mib: float | None = None, fd_growth: int | None = None,
                connections_max: int | None = None, warmup: int = 3) -> dict[str, Any]:
        """The series, and the bounds exceeded (growth from the ``warmup``-th sample of a
        process's life to its last, and database connections at any time)."""
        violations = []
        for name, s in self.series.items():
            if len(s["rss_mib"]) <= warmup:
                continue
            grown = s["rss_mib"][-1] - s["rss_mib"][warmup]
            if rss_growth_mib is not None and grown > rss_growth_mib:
                violations.append(f"{name}: resident size grew {grown:.0f} MiB "
                                  f"(bound {rss_growth_mib:.0f})")
            more = s["fds"][-1] - s["fds"][warmup]
            if fd_growth is not None and more > fd_growth:
                violations.append(f"{name}: {more} more open files (bound {fd_growth})")
        for service, values in self.connections.items():
            if connections_max is not None and max(values) > connections_max:
                violations.append(f"{service}: {max(values)} database connections "
                                  f"(bound {connections_max})")
        return {"minutes": (time.monotonic() - self.started) / 60, "samples": self.samples,
                "processes": self.series, "connections": self.connections,
                "bounds": {"rss_growth_mib": rss_growth_mib, "fd_growth": fd_growth,
                           "connections_max": connections_max},
                "violations": violations}
