"""A person erased (crypto-shredding) across the whole system, as deployed: afterwards no table
of any service's database, no read model and no log file holds anything of theirs, and the
history still replays (issue 10's "Done when").

The person is both an institution's person in charge (registration's own) and a practitioner
hired at another institution (credit's register issues the ref, registration keeps it), so
both services and both kinds of blind-index entry are covered. Everything goes through the
gateway, as an officer would do it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tuoyu_registration.samples import (
    sample_filing_submission,
    sample_registration,
    sample_resident_id,
)
from tuoyu_shared.devrun import ProcessGroup
from tuoyu_shared.devrun import http_json as _http_json
from tuoyu_shared.testing import bearer, group_environment, wait_for

# Services on 8701-8703 and the gateway on 8700+offset: no other group uses offset 700.
PORT_OFFSET = 700
OFFICER = bearer("health_officer", subject="officer-erasure")
NAME, PHONE = "欧阳娜娜", "13987654321"
ID_NUMBER = sample_resident_id(345)
OTHER_NAME = "司马相如"  # someone else, who must stay readable


def http_json(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    return _http_json(method, url, body, OFFICER)


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory):
    with group_environment(servers, "erasure", vhost="tuoyu-erasure") as env:
        g = ProcessGroup(env, tmp_path_factory.mktemp("erasure-logs"), port_offset=PORT_OFFSET)
        g.start()
        yield g
        g.stop()


def filed_institution(gateway: str, n: int, person: dict) -> str:
    status, reply = http_json("POST", f"{gateway}/api/institutions",
                              sample_registration(n, person_in_charge=person))
    assert status == 201, reply
    institution_id = reply["institution_id"]
    status, reply = http_json("POST", f"{gateway}/api/institutions/{institution_id}/"
                              "submit_filing", sample_filing_submission())
    assert status in (200, 202), reply
    return institution_id


def hire(gateway: str, institution_id: str, name: str, id_number: str) -> str:
    status, reply = http_json("POST", f"{gateway}/api/institutions/{institution_id}/"
                              "request_hire", {"practitioner": {"name": name,
                                                                "id_number": id_number},
                                               "role": "carer", "certificates": []})
    assert status in (200, 201, 202), reply
    return reply["result"]


def hire_status(gateway: str, institution_id: str, hire_id: str) -> str | None:
    _, facts = http_json("GET", f"{gateway}/api/institutions/{institution_id}")
    return facts["roster"].get(hire_id, {}).get("status")


def forbidden_forms() -> list[bytes]:
    """What of the person must be nowhere: the number (and its distinctive part: birth date
    and sequence), the name and its mask, the phone number; as UTF-8 and JSON-escaped."""
    texts = [ID_NUMBER, ID_NUMBER[6:17], NAME, NAME[0] + "***", PHONE]
    forms = []
    for text in texts:
        forms.append(text.encode())
        forms.append(json.dumps(text).strip('"').encode())  # \\u escapes
    return sorted(set(forms))


def every_row_of_every_table(database_url: str) -> list[tuple[str, bytes]]:
    """``(table, the row as text)``, bytea columns included as their raw bytes (``state``)."""
    found = []
    with psycopg.connect(database_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_type = 'BASE TABLE'").fetchall()]
        for table in tables:
            columns = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = %s", (table,)).fetchall()
            for row in conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))):
                raw = b"".join(bytes(value) if kind == "bytea" and value is not None
                               else str(value).encode() for value, (_, kind)
                               in zip(row, columns, strict=True))
                found.append((table, raw))
    return found


def databases(system) -> dict[str, str]:
    return {name[len("TUOYU_"):-len("_DATABASE_URL")].lower(): url
            for name, url in system.env.items()
            if name.startswith("TUOYU_") and name.endswith("_DATABASE_URL")}


def test_an_erased_person_is_nowhere_and_the_history_replays(system):
    gateway = system.url("gateway")
    person = {"name": NAME, "id_number": ID_NUMBER, "phone": PHONE}
    led = filed_institution(gateway, 341, person)
    employer = filed_institution(gateway, 342, {"name": OTHER_NAME, "id_number":
                                                sample_resident_id(346),
                                                "phone": "13900001111"})
    hire_id = hire(gateway, employer, NAME, ID_NUMBER)
    wait_for(lambda: hire_status(gateway, employer, hire_id) == "employed", timeout=60,
             what="the hire cleared by the background check")

    # What an officer sees before: the masks, from the vault.
    _, facts = http_json("GET", f"{gateway}/api/institutions/{led}")
    assert facts["person_in_charge"] == NAME[0] + "***"
    _, facts = http_json("GET", f"{gateway}/api/institutions/{employer}")
    assert facts["roster"][hire_id]["name"] == NAME[0] + "***"

    # The person asks for a copy of their data: both services have it, opened.
    status, export = http_json("POST", f"{gateway}/api/people/exports",
                               {"id_number": ID_NUMBER, "purpose": "本人查阅申请，身份已核验"})
    assert status == 200, export
    registration = export["services"]["registration"]
    assert set(registration["refs"]) == {"person_in_charge", "practitioner"}
    opened = {v for e in registration["events"] for v in e["values"].values()}
    assert {NAME, ID_NUMBER, PHONE} <= opened
    credit = export["services"]["credit"]
    assert credit["refs"]["practitioner"] == registration["refs"]["practitioner"]  # one ref
    assert {NAME, ID_NUMBER} <= {v for e in credit["events"] for v in e["values"].values()}

    # The erasure, through the gateway.
    status, erased = http_json("POST", f"{gateway}/api/people/erasures", {
        "id_number": ID_NUMBER, "reason": "本人书面申请删除（身份已当面核验）",
        "legal_basis": "个人信息保护法 第四十七条"})
    assert status == 200, erased
    assert {e["kind"] for e in erased["services"]["registration"]["erased"]} == {
        "person_in_charge", "practitioner"}
    assert [e["kind"] for e in erased["services"]["credit"]["erased"]] == ["practitioner"]
    again = http_json("POST", f"{gateway}/api/people/erasures", {
        "id_number": ID_NUMBER, "reason": "重复申请", "legal_basis": "个人信息保护法 第四十七条"})
    assert again[0] == 200 and again[1]["services"]["registration"]["erased"] == []

    # What an officer sees after.
    _, facts = http_json("GET", f"{gateway}/api/institutions/{led}")
    assert facts["person_in_charge"] == "（已删除）"
    _, facts = http_json("GET", f"{gateway}/api/institutions/{employer}")
    assert facts["roster"][hire_id]["name"] == "（已删除）"
    assert facts["person_in_charge"] == OTHER_NAME[0] + "***"  # the others untouched
    status, export = http_json("POST", f"{gateway}/api/people/exports",
                               {"id_number": ID_NUMBER, "purpose": "复查"})
    assert status == 200 and all(not s["refs"] for s in export["services"].values())

    # The erasure is an event, published like any other, with no number in it.
    def erasure_events() -> list[dict]:
        _, log = _http_json("GET", f"{gateway}/api/events/registration?limit=1000", None,
                            bearer("subscriber"))
        return [e for e in log["events"] if e["event_type"] == "PersonalDataErased"]

    events = wait_for(lambda: len(erasure_events()) == 2 and erasure_events(), timeout=30,
                      what="the erasure events")
    assert ID_NUMBER not in json.dumps(events)

    # Replay: the read models rebuilt from the logs come out as the live ones.
    def public_rows() -> list:
        with psycopg.connect(databases(system)["registration"]) as conn:
            return conn.execute("SELECT * FROM public_register ORDER BY institution_id "
                                ).fetchall()

    live = wait_for(lambda: public_rows() or None, what="the public register")
    env = {**os.environ, **system.env}
    for service, view in (("registration", "registration-views"), ("dashboard", "dashboard")):
        done = subprocess.run([sys.executable, "-m", f"tuoyu_{service}.worker", "rebuild",
                               view], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert [r[:-1] for r in public_rows()] == [r[:-1] for r in live]  # updated_at aside

    # Every aggregate of every service replays from its log.
    for service in ("registration", "credit"):
        done = subprocess.run([sys.executable, "-c", REPLAY.format(service=service)],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "replayed" in done.stdout

    # Nothing of theirs in any table of any database (events' state included).
    forms = forbidden_forms()
    for service, url in databases(system).items():
        rows = every_row_of_every_table(url)
        assert rows or service == "gateway"
        for table, raw in rows:
            leaked = [f for f in forms if f in raw]
            assert not leaked, f"{service}.{table} holds {leaked!r}"
        with psycopg.connect(url) as conn:
            if conn.execute("SELECT to_regclass('person_keys')").fetchone()[0]:
                refs = set(registration["refs"].values()) | set(credit["refs"].values())
                assert conn.execute(
                    "SELECT count(*) FROM person_keys WHERE person_ref = ANY(%s) "
                    "AND wrapped_key IS NOT NULL", (sorted(refs),)).fetchone()[0] == 0
                assert conn.execute("SELECT count(*) FROM person_index WHERE person_ref = "
                                    "ANY(%s)", (sorted(refs),)).fetchone()[0] == 0
    # Nor in any process's log.
    for log_file in Path(system.log_dir).glob("*.log"):
        text = log_file.read_bytes()
        leaked = [f for f in forms if f in text]
        assert not leaked, f"{log_file.name} holds {leaked!r}"


REPLAY = """
from tuoyu_{service}.bootstrap import application
import psycopg
app = application()
with psycopg.connect(app.settings.database_url) as conn:
    ids = [r[0] for r in conn.execute(
        "SELECT DISTINCT originator_id FROM {service}_events").fetchall()]
for aggregate_id in ids:
    app.repository.get(aggregate_id)
print("replayed", len(ids))
app.close()
"""
