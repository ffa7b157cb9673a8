"""The image definition and the compose file, checked without a Docker engine: hadolint on
the Dockerfile, the compose file against the compose specification's schema (as
check-jsonschema vendors it), and what each says against the code: the entry points `make
run` uses, the variables each service reads, the broker's users and the databases' roles."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from tuoyu_shared.broker_users import definitions, users_of
from tuoyu_shared.devrun import BACKENDS, GATEWAY, SERVICES, ProcessGroup
from tuoyu_shared.migrate import PROCESSES

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
ENV_FILE = ROOT / "deploy" / "compose" / ".env"
BIN = Path(sys.executable).parent


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def dotenv() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in ENV_FILE.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return {k: v for k, v in pairs}


def test_the_dockerfile_passes_hadolint():
    done = subprocess.run([str(BIN / "hadolint"), str(DOCKERFILE)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_is_multi_stage_non_root_pinned_and_runs_the_entry_points():
    text = DOCKERFILE.read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) == 2  # build, then run
    assert re.search(r"^USER 10001$", text, re.M)
    assert "-c constraints.txt" in text  # every third-party version pinned
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}", text, re.M)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", text, re.M)  # no "latest"
    assert 'ENTRYPOINT ["tuoyu"]' in text and 'CMD ["serve"]' in text
    assert 'exec python -m "tuoyu_${TUOYU_SERVICE}" "$@"' in text
    # the service packages it installs exist, each with python -m tuoyu_<service>
    for spec in SERVICES:
        assert (ROOT / "services" / spec.name / f"tuoyu_{spec.name}" / "__main__.py").exists()
    dockerignore = (ROOT / ".dockerignore").read_text()
    assert ".venv" in dockerignore and ".git" in dockerignore


def test_the_compose_file_is_valid_against_the_compose_specification():
    done = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                           "vendor.compose-spec", str(COMPOSE)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_every_service_with_its_worker_and_migrations_by_the_entry_points():
    services = compose()["services"]
    assert {"postgres", "rabbitmq", "gateway", "broker-definitions"} <= set(services)
    for spec in BACKENDS:
        name = spec.name
        migrate, serve, worker = (services[name + "-migrate"], services[name],
                                  services[name + "-worker"])
        assert migrate["command"] == ["migrate"] and migrate["restart"] == "no"
        assert serve["command"] == ["serve"] and worker["command"] == ["worker"]
        for process in (serve, worker):
            assert process["depends_on"][name + "-migrate"] == {
                "condition": "service_completed_successfully"}
            assert process["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}
            env = process["environment"]
            assert env[f"TUOYU_{name.upper()}_DATABASE_URL"].endswith(f"/tuoyu_{name}")
            assert f"tuoyu-{name}:" in env[f"TUOYU_{name.upper()}_AMQP_URI"]
            assert "guest" not in json.dumps(env)
        assert serve["environment"]["TUOYU_PROCESS"] == "service"
        assert worker["environment"]["TUOYU_PROCESS"] == "worker"
        assert serve["image"] == worker["image"] == migrate["image"]
        assert migrate["build"]["args"] == {"SERVICE": name}
    assert services["gateway"]["command"] == ["serve"]
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published == ["${TUOYU_GATEWAY_PUBLISHED_PORT:-8000}:8000"]  # the one way in


def test_make_run_starts_the_processes_by_the_same_entry_points(tmp_path):
    """What devrun (make run, the process-group tests) runs is what the images run."""
    group = ProcessGroup({}, tmp_path)
    for spec in BACKENDS:
        argv = spec.argv(8001)
        assert argv[1:4] == ["-m", f"tuoyu_{spec.name}", "serve"]
    assert GATEWAY.argv(8000)[1:4] == ["-m", "tuoyu_gateway", "serve"]
    started: list[list[str]] = []
    group._spawn = lambda name, argv: started.append(argv)  # noqa: SLF001 (no process)
    group.start_worker(BACKENDS[0])
    assert started[0][1:4] == ["-m", f"tuoyu_{BACKENDS[0].name}", "worker"]
    assert set(PROCESSES) == {"serve", "worker"}


def test_every_variable_compose_needs_is_in_its_env_file():
    needed = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert needed and needed <= set(dotenv()), needed - set(dotenv())


def test_the_broker_definitions_job_makes_every_service_user(monkeypatch):
    from tuoyu_shared.broker_users import access_of, main

    env = dotenv()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = Path(f"/tmp/definitions-{uuid.uuid4().hex}.json")
    try:
        assert main(["definitions", "-o", str(out)]) == 0
        made = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    names = [spec.name for spec in SERVICES]
    assert [u["name"] for u in made["users"]] == users_of(names)
    assert made["vhosts"] == [{"name": "/"}]
    expected = definitions("/", [access_of(n) for n in names],
                           {u: "x" for u in users_of(names)})
    assert made["permissions"] == expected["permissions"]
    # the job fails, naming the variable, when a password is missing
    monkeypatch.delenv("TUOYU_BROKER_PASSWORD_CREDIT")
    with pytest.raises(SystemExit, match="TUOYU_BROKER_PASSWORD_CREDIT"):
        main(["definitions"])


def test_the_postgres_init_script_makes_one_role_and_database_per_service(servers):
    if shutil.which("psql") is None:
        pytest.fail("psql is needed (Debian's postgresql-client)")
    from urllib.parse import urlsplit

    url = urlsplit(servers.postgres_url)
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    env = {"PATH": "/usr/bin:/bin", "PGHOST": url.hostname, "PGPORT": str(url.port),
           "POSTGRES_USER": url.username or "postgres", "TUOYU_DB_PREFIX": prefix,
           **{k: v for k, v in dotenv().items() if k.startswith("TUOYU_DB_PASSWORD_")}}
    done = subprocess.run(["sh", str(ROOT / "deploy/compose/postgres/init.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    try:
        assert done.returncode == 0, done.stderr
        with psycopg.connect(servers.database_url("postgres"), autocommit=True) as conn:
            owners = dict(conn.execute(
                "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname "
                "LIKE %s", (prefix + "%",)).fetchall())
        assert owners == {prefix + s.name: prefix + s.name for s in BACKENDS}
    finally:
        with psycopg.connect(servers.database_url("postgres"), autocommit=True) as conn:
            for spec in BACKENDS:
                conn.execute(f'DROP DATABASE IF EXISTS "{prefix}{spec.name}" WITH (FORCE)')
                conn.execute(f'DROP ROLE IF EXISTS "{prefix}{spec.name}"')
