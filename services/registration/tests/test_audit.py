"""The audit trail (tuoyu_shared.audit) on the registration service's real log: checkpoints and
proofs, verification that finds each kind of change made directly in PostgreSQL, a case's
history, state and diff, and signed exports that the stand-alone verifier accepts (and
refuses once changed)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
import pytest

from tuoyu_registration.application import RegistrationApplication
from tuoyu_registration.samples import sample_filing_submission, sample_registration
from tuoyu_shared import merkle
from tuoyu_shared.audit import public_keys
from tuoyu_shared.context import command_context
from tuoyu_shared.errors import NotFound
from tuoyu_shared.validation import ValidationFailed

VERIFIER = Path(__file__).resolve().parents[3] / "tools" / "tuoyu_verify.py"


@pytest.fixture
def app(settings_factory):
    application = RegistrationApplication(settings_factory("registration"))
    yield application
    application.close()


def _file(app, n: int, correlation_id: str | None = None) -> str:
    with command_context(actor=f"officer-{n}", department="health",
                         correlation_id=correlation_id):
        return str(app.register_institution(sample_registration(n)))


def _submit(app, institution_id: str) -> None:
    with command_context(actor="operator-9", department="institution"):
        app.submit_filing(institution_id, sample_filing_submission())


def _sql(app, statement: str, params=()) -> None:
    with psycopg.connect(app.settings.database_url, autocommit=True) as conn:
        conn.execute(statement, params)


def _checkpointed(app, n: int = 6) -> list[str]:
    ids = [_file(app, i) for i in range(1, n + 1)]
    app.audit_trail.append_all()
    assert app.audit_trail.checkpoint() is not None
    return ids


def test_checkpoint_signs_the_tree_and_proofs_verify_against_it(app):
    trail = app.audit_trail
    _checkpointed(app, 5)
    keys = merkle.load_keys(public_keys(app.settings))
    first = trail.latest_checkpoint()
    assert first["tree_size"] == 5 and merkle.checkpoint_problem(first, keys) is None
    assert trail.checkpoint() is None, "nothing new: no second checkpoint of the same tree"
    for nid in range(1, 6):
        proof = trail.inclusion(nid)
        assert merkle.verify_inclusion(proof["position"], 5, bytes.fromhex(proof["leaf_hash"]),
                                       [bytes.fromhex(h) for h in proof["path"]],
                                       bytes.fromhex(first["root_hash"]))
    _file(app, 6)
    _file(app, 7)
    trail.append_all()
    second = trail.checkpoint()
    assert second["tree_size"] == 7
    proof = trail.consistency(5)
    assert merkle.verify_consistency(5, 7, bytes.fromhex(first["root_hash"]),
                                     bytes.fromhex(second["root_hash"]),
                                     [bytes.fromhex(h) for h in proof["proof"]])
    assert [cp["tree_size"] for cp in trail.checkpoints()] == [5, 7]
    with pytest.raises(NotFound):
        trail.inclusion(99)
    with pytest.raises(ValidationFailed):
        trail.consistency(8)


def test_verify_passes_on_an_untouched_log_and_after_an_erasure(app):
    _checkpointed(app, 4)
    report = app.audit_trail.verify()
    assert report["ok"], report
    assert report["events"] == 4 and report["checkpoints"] == 1
    with command_context(actor="officer-1", department="health"):
        app.erase_person({
            "id_number": sample_registration(2)["person_in_charge"]["id_number"],
            "reason": "申请编号 2026-17, 身份已核验", "legal_basis": "个人信息保护法 第47条"})
    app.audit_trail.append_all()
    app.audit_trail.checkpoint()
    report = app.audit_trail.verify()
    assert report["ok"], report  # the key is gone, the ciphertext and its hash are not


TAMPERING = {
    "changed": ("UPDATE registration_events SET state = overlay(state PLACING 'X'::bytea "
                "FROM 20 FOR 1) WHERE notification_id = 3", 3),
    "deleted": ("DELETE FROM registration_events WHERE notification_id = 4", 4),
    "swapped": ("UPDATE registration_events AS e SET state = o.state FROM registration_events "
                "AS o WHERE (e.notification_id, o.notification_id) IN ((2, 5), (5, 2))", 2),
}


@pytest.mark.parametrize("kind", sorted(TAMPERING))
def test_verify_names_the_first_record_changed_deleted_or_swapped(app, kind):
    _checkpointed(app)
    statement, first = TAMPERING[kind]
    _sql(app, statement)
    report = app.audit_trail.verify()
    assert not report["ok"]
    assert report["first_notification_id"] == first, report
    assert report["kind"] == ("changed" if kind == "swapped" else kind)


def test_verify_names_a_record_inserted_into_the_log(app):
    _file(app, 1)
    _file(app, 2)
    _sql(app, "SELECT nextval(pg_get_serial_sequence('registration_events', "
              "'notification_id'))")  # a hole, as a rolled-back insert leaves one
    _file(app, 3)
    app.audit_trail.append_all()
    app.audit_trail.checkpoint()
    assert app.audit_trail.verify()["ok"]
    _sql(app, "INSERT INTO registration_events (originator_id, originator_version, topic, "
              "state, notification_id) SELECT originator_id, 99, topic, state, 3 "
              "FROM registration_events WHERE notification_id = 1")
    report = app.audit_trail.verify()
    assert (report["ok"], report["kind"], report["first_notification_id"]) == (
        False, "inserted", 3)


def test_a_record_changed_with_its_leaf_is_caught_by_the_checkpoint(app):
    _checkpointed(app, 4)
    _sql(app, "UPDATE registration_events SET state = overlay(state PLACING 'X'::bytea "
              "FROM 20 FOR 1) WHERE notification_id = 2")
    with psycopg.connect(app.settings.database_url) as conn:
        state = conn.execute("SELECT originator_id, originator_version, topic, state FROM "
                             "registration_events WHERE notification_id = 2").fetchone()
        leaf = merkle.leaf_hash(merkle.leaf_bytes(2, state[0], state[1], state[2],
                                                  bytes(state[3])))
        conn.execute("UPDATE audit_leaves SET leaf_hash = %s WHERE notification_id = 2",
                     (leaf,))
    report = app.audit_trail.verify()
    assert (report["ok"], report["kind"]) == (False, "root")


def test_a_checkpoint_not_signed_by_the_service_is_refused(app):
    _checkpointed(app, 2)
    _sql(app, "UPDATE audit_checkpoints SET checkpoint = jsonb_set(checkpoint, '{tree_size}', "
              "'3')")
    report = app.audit_trail.verify()
    assert (report["ok"], report["kind"]) == (False, "signature")


def test_history_state_as_of_and_diff_of_a_case(app, monkeypatch):
    import datetime as dt

    import eventsourcing.domain

    clock = [dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)]
    monkeypatch.setattr(eventsourcing.domain, "datetime_now_with_tzinfo", lambda: clock[0])
    institution_id = _file(app, 1, correlation_id="case-77")
    clock[0] = dt.datetime(2026, 5, 10, 2, 0, tzinfo=dt.UTC)
    _submit(app, institution_id)
    app.audit_trail.append_all()
    trail = app.audit_trail

    history = trail.history(institution_id)
    assert [e["version"] for e in history["events"]] == [1, 2]
    assert history["events"][0]["actor"] == "officer-1"
    assert history["events"][0]["correlation_id"] == "case-77"
    assert history["events"][1]["notification_id"] == 2
    assert "sealed" not in json.dumps(history, ensure_ascii=False)

    before = trail.state(institution_id, at="2026-04-30")  # the end of that day, +08:00
    assert before["version"] == 1
    now = trail.state(institution_id)
    assert now["version"] == 2
    assert trail.state(institution_id, version=1)["state"] == before["state"]
    with pytest.raises(NotFound):
        trail.state(institution_id, at="2026-02-28T23:00:00+08:00")
    with pytest.raises(ValidationFailed) as refused:
        trail.state(institution_id, at="2026-04-30T12:00:00")
    assert refused.value.errors[0].field == "at"
    with pytest.raises(ValidationFailed):
        trail.state(institution_id, version=3)
    with pytest.raises(ValidationFailed):
        trail.history("not-a-uuid")

    changes = {c["field"]: c for c in trail.diff(institution_id)["changes"]}
    assert changes["version"]["from"] == 1 and changes["version"]["to"] == 2
    assert changes["status"]["from"] == "registered", changes
    assert changes["status"]["to"] != "registered"

    assert [e["aggregate_id"] for e in trail.correlated("case-77")["events"]] == [
        institution_id]


def _bundle(export: dict) -> dict[str, bytes]:
    data = base64.b64decode(export["content_base64"])
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in z.namelist()}


def _rezip(files: dict[str, bytes], path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def _verifier(*args) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, str(VERIFIER), *map(str, args)],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout)


def test_exports_verify_with_the_stand_alone_verifier_and_not_once_changed(app, tmp_path):
    ids = [_file(app, i) for i in range(1, 6)]
    _submit(app, ids[2])
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps(public_keys(app.settings)))
    with command_context(actor="auditor-1", department="audit"):
        case = app.audit_trail.export(aggregate_id=ids[2])
        period = app.audit_trail.export()
    case_files, period_files = _bundle(case), _bundle(period)
    manifest = json.loads(period_files["manifest.json"])
    assert manifest["counts"]["events"] == 6 and manifest["created_by"] == "auditor-1"
    assert manifest["checkpoint"]["tree_size"] == 6
    assert len(case_files["events.jsonl"].splitlines()) == 2
    assert case_files["events.csv"].decode("utf-8-sig").startswith("notification_id,")

    keys = merkle.load_keys(public_keys(app.settings))
    for files, name in ((case_files, "case.zip"), (period_files, "period.zip")):
        path = _rezip(files, tmp_path / name)
        assert merkle.verify_export(str(path), keys).ok
        code, report = _verifier("export", path, "--keys", keys_file)
        assert code == 0 and report["ok"], report

    # a record changed in the export: the manifest's hash of the file no longer matches
    changed = dict(period_files)
    changed["records.jsonl"] = changed["records.jsonl"].replace(b'"originator_version": 1',
                                                                b'"originator_version": 7', 1)
    code, report = _verifier("export", _rezip(changed, tmp_path / "c.zip"), "--keys",
                             keys_file)
    assert code == 1 and report["kind"] == "file"
    # …and with the manifest rewritten to match, its signature no longer verifies
    entry = json.loads(changed["manifest.json"])
    import hashlib

    entry["files"]["records.jsonl"]["sha256"] = hashlib.sha256(
        changed["records.jsonl"]).hexdigest()
    changed["manifest.json"] = json.dumps(entry).encode()
    code, report = _verifier("export", _rezip(changed, tmp_path / "d.zip"), "--keys",
                             keys_file)
    assert code == 1 and report["kind"] == "signature"

    # a period: only the events in it, proven against the whole tree
    with command_context(actor="auditor-1", department="audit"):
        empty = app.audit_trail.export(since="2000-01-01", until="2000-01-02")
    assert json.loads(_bundle(empty)["manifest.json"])["counts"]["events"] == 0
    with pytest.raises(ValidationFailed):
        app.audit_trail.export(since="2026-02-01", until="2026-01-01")


def test_the_command_line_verifies_and_exports(app, tmp_path, servers):
    import os

    institution = _checkpointed(app, 3)[0]
    env = {**os.environ, "TUOYU_REGISTRATION_DATABASE_URL": app.settings.database_url}
    run = [sys.executable, "-m", "tuoyu_registration", "audit"]

    def cli(*args) -> tuple[int, dict]:
        done = subprocess.run([*run, *args], env=env, capture_output=True, text=True,
                              timeout=120)
        out = json.loads(done.stdout) if done.stdout.startswith("{") else {}
        return done.returncode, {**out, "stderr": done.stderr}

    code, history = cli("history", institution)
    assert code == 0 and [e["version"] for e in history["events"]] == [1], history
    code, past = cli("state", institution, "--version", "1")
    assert code == 0 and past["state"]["status"] == "registered", past
    code, _ = cli("state", institution, "--at", "2000-01-01")
    assert code != 0  # nothing of the case existed then
    code, bad = cli("state", institution, "--at", "yesterday")
    assert code != 0 and "at" in json.dumps(bad), bad
    period = tmp_path / "period.zip"
    code, _ = cli("export", "--since", "2000-01-01", "-o", str(period))
    assert code == 0 and period.exists()
    done = subprocess.run([*run, "verify"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"]
    out = tmp_path / "all.zip"
    done = subprocess.run([*run, "export", "-o", str(out)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    keys = tmp_path / "keys.json"
    keys.write_text(subprocess.run([*run, "keys"], env=env, capture_output=True, text=True,
                                   timeout=120).stdout)
    assert _verifier("export", out, "--keys", keys)[0] == 0
    assert _verifier("export", period, "--keys", keys)[0] == 0
    _sql(app, "DELETE FROM registration_events WHERE notification_id = 2")
    done = subprocess.run([*run, "verify"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert json.loads(done.stdout)["first_notification_id"] == 2


@pytest.fixture
def empty_database(servers):
    import uuid

    name = f"replay_{uuid.uuid4().hex[:10]}"
    yield servers.database_url(name)
    with psycopg.connect(servers.database_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_replay_into_an_empty_database_reproduces_every_aggregate_and_view(
        app, empty_database, servers):
    ids = [_file(app, i) for i in range(1, 5)]
    _submit(app, ids[0])
    with command_context(actor="officer-1", department="health"):
        app.erase_person({
            "id_number": sample_registration(3)["person_in_charge"]["id_number"],
            "reason": "申请编号 2026-18", "legal_basis": "个人信息保护法 第47条"})
    result = app.audit_trail.replay_check(empty_database)
    assert result["ok"], result
    assert result["aggregates"] >= 4
    assert result["aggregates_sha256"] == result["replayed_aggregates_sha256"]
    assert result["views"] and all(v["equal"] for v in result["views"].values())
    assert sum(v["rows"] for v in result["views"].values()) > 0
    with pytest.raises(ValidationFailed):
        app.audit_trail.replay_check(empty_database)  # not empty any more


def test_a_replay_tells_a_view_that_differs_from_its_log(app, empty_database):
    _file(app, 1)
    app.catch_up_views()
    with psycopg.connect(app.settings.database_url, autocommit=True) as conn:
        table = next(t for t in app.views.tables
                     if conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
        conn.execute(f"DELETE FROM {table}")
    result = app.audit_trail.replay_check(empty_database)
    assert not result["ok"] and not result["views"][table]["equal"], result



def test_the_worker_loop_keeps_one_connection_across_commits(app):
    """The worker hashes each commit's records as it lands. It used to open a new session for
    every step (two a commit: PostgreSQL forked and authenticated a backend each time, about
    1.5 sessions per command across the system); its loop now keeps one."""
    import threading
    import time

    trail = app.audit_trail
    opened_by = []
    connect = trail._connect
    trail._connect = lambda: opened_by.append(threading.get_ident()) or connect()
    stop = threading.Event()
    loop = threading.Thread(target=trail.run, args=(stop,), daemon=True)
    loop.start()
    try:
        for n in range(1, 13):
            _file(app, n)
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(trail.leaves()) < 12:
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(10)
    assert len(trail.leaves()) == 12, "every record hashed by the loop"
    assert opened_by.count(loop.ident) == 1, f"{opened_by.count(loop.ident)} sessions"
    assert trail._held is None, "the loop closes its connection when it stops"


def test_a_correlation_is_found_at_once_though_the_worker_has_not_hashed_it_yet(app):
    """The correlation search reads the leaves, which the worker appends a window after each
    commit (TUOYU_AUDIT_BATCH_WINDOW_MS): the search brings them up to date first (found by
    the end-to-end audit test, which looked a request up at once)."""
    institution = _file(app, 1, correlation_id="corr-at-once")
    assert app.audit_trail.leaves() == [], "no worker ran: nothing hashed yet"
    found = app.audit_trail.correlated("corr-at-once")
    assert found["count"] == 1 and found["events"][0]["aggregate_id"] == institution
