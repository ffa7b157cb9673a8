"""An auditor's work on the running system, through the gateway: a case's history, its state on
a past date and its diff, a request followed across services by its correlation id, a signed
export verified by the stand-alone verifier, the live log verified against the checkpoints the
workers publish, and a witness that follows those checkpoints from the broker."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
import zipfile

import pytest

from tuoyu_registration.samples import sample_filing_submission, sample_registration
from tuoyu_shared import merkle
from tuoyu_shared.devrun import ProcessGroup
from tuoyu_shared.devrun import http_json as _http_json
from tuoyu_shared.testing import PROJECT_ROOT, bearer, group_environment, token, wait_for
from tuoyu_shared.witness import run as run_witness

HEALTH = bearer("health_officer", subject="health-audit")
AUDITOR_TOKEN = token("auditor", subject="auditor-7")
AUDITOR = {"Authorization": f"Bearer {AUDITOR_TOKEN}"}
VERIFIER = PROJECT_ROOT / "tools" / "tuoyu_verify.py"


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory):
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    with group_environment(servers, "audit", vhost="tuoyu-audit",
                           TUOYU_AUDIT_CHECKPOINT_INTERVAL="1",
                           TUOYU_AUDIT_CHECKPOINT_DIR=str(checkpoints)) as env:
        group = ProcessGroup(env, tmp_path_factory.mktemp("logs"), port_offset=1000)
        group.start()
        group.checkpoint_dir = checkpoints
        group.env = env
        yield group
        group.stop()


def call(system, path: str, body: dict | None = None, headers=None, method=None):
    return _http_json(method or ("POST" if body is not None else "GET"),
                      f"{system.url('gateway')}{path}", body, headers or AUDITOR)


def ok(reply, status: int = 200) -> dict:
    assert reply[0] == status, reply
    return reply[1]


def download(system, path: str) -> bytes:
    request = urllib.request.Request(f"{system.url('gateway')}{path}", headers=AUDITOR)
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.headers["Content-Type"].startswith("application/zip")
        return response.read()


def latest(system) -> dict | None:
    return ok(call(system, "/api/audit/registration/checkpoints/latest"))["checkpoint"]


def verifier(*args) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, str(VERIFIER), *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_an_auditor_follows_a_case_exports_a_period_and_verifies_it(system, tmp_path):
    n = 7000 + uuid.uuid4().int % 500
    correlation = f"audit-case-{uuid.uuid4().hex[:8]}"
    institution = ok(call(system, "/api/institutions", sample_registration(n), headers={
        **HEALTH, "X-Correlation-Id": correlation}), 201)["institution_id"]
    ok(call(system, f"/api/institutions/{institution}/submit_filing",
            sample_filing_submission(), headers=HEALTH))

    history = ok(call(system, f"/api/audit/registration/cases/{institution}/history"))
    assert [e["version"] for e in history["events"]] == [1, 2]
    assert history["events"][0]["actor"] == "health-audit"  # the token's subject
    assert history["events"][0]["correlation_id"] == correlation
    assert "sealed" not in json.dumps(history, ensure_ascii=False)

    past = call(system, f"/api/audit/registration/cases/{institution}/state?at=2000-01-01")
    assert past[0] == 404, past
    now = ok(call(system, f"/api/audit/registration/cases/{institution}/state"))
    first = ok(call(system, f"/api/audit/registration/cases/{institution}/state?version=1"))
    assert (now["version"], first["version"]) == (2, 1)
    assert first["state"]["status"] == "registered"
    diff = ok(call(system, f"/api/audit/registration/cases/{institution}/diff"
                           "?from_version=1&to_version=2"))
    assert "status" in {c["field"] for c in diff["changes"]}
    bad = call(system, f"/api/audit/registration/cases/{institution}/state?at=yesterday")
    assert bad[0] == 400 and "at" in json.dumps(bad[1]), bad

    across = ok(call(system, f"/api/audit/correlations/{correlation}"))
    assert across["services"]["registration"] == 1
    assert across["events"][0]["aggregate_id"] == institution

    # officers do not read the audit trail; auditors change nothing
    assert call(system, "/api/audit/registration/verify", headers=HEALTH)[0] == 403
    assert call(system, "/api/institutions", sample_registration(n + 1))[0] == 403

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(ok(call(system, "/api/audit/registration/keys"))))
    bundle = tmp_path / "period.zip"
    bundle.write_bytes(download(system, "/api/audit/registration/export?since=2000-01-01"))
    with zipfile.ZipFile(io.BytesIO(bundle.read_bytes())) as z:
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["created_by"] == "auditor-7"
    assert manifest["counts"]["events"] >= 2
    code, report = verifier("export", bundle, "--keys", keys)
    assert code == 0 and report["ok"], report
    case = tmp_path / "case.zip"
    case.write_bytes(download(system, f"/api/audit/registration/export?case={institution}"))
    code, report = verifier("export", case, "--keys", keys)
    assert code == 0 and report["events"] == 2, report

    # the workers checkpoint the log and publish the checkpoints to the folder
    wait_for(lambda: (latest(system) or {}).get("tree_size", 0) >= manifest["checkpoint"][
        "tree_size"], 30, "a checkpoint")
    wait_for(lambda: (system.checkpoint_dir / "registration.checkpoints.jsonl").exists(), 30,
             "the checkpoint file")
    kept = system.checkpoint_dir / "registration.checkpoints.jsonl"
    code, report = verifier("live", "--gateway", system.url("gateway"), "--service",
                            "registration", "--token", AUDITOR_TOKEN, "--keys", keys,
                            "--checkpoints", kept)
    assert code == 0 and report["ok"], report

    calls = ok(call(system, "/api/audit/registration/calls?subject=auditor-7"))["calls"]
    assert {"audit_history", "audit_export", "audit_records"} <= {c["method"] for c in calls}


def test_a_witness_follows_the_published_checkpoints(system, tmp_path):
    keys = merkle.load_keys(ok(call(system, "/api/audit/registration/keys")))
    gateway = merkle.Gateway(system.url("gateway"), AUDITOR_TOKEN, "registration")
    witness = merkle.Witness(str(tmp_path), keys, lambda first, second: gateway.get(
        "proofs/consistency", first=first, second=second)["proof"])
    offers: list[tuple[int, bool, str]] = []
    stop = threading.Event()
    thread = threading.Thread(target=run_witness, args=(
        "registration", system.env["TUOYU_AMQP_URI"], witness, stop, "test"), kwargs={
        "on_offer": lambda cp, accepted, why: offers.append(
            (cp.get("tree_size"), accepted, why))}, daemon=True)
    thread.start()
    try:
        for _ in range(2):
            before = (latest(system) or {}).get("tree_size", 0)
            n = 7600 + uuid.uuid4().int % 300
            ok(call(system, "/api/institutions", sample_registration(n), headers=HEALTH), 201)
            size = wait_for(lambda before=before: (
                (latest(system) or {}).get("tree_size", 0) > before
                and latest(system)["tree_size"]), 60, "a new checkpoint")
            wait_for(lambda size=size: any(accepted and got >= size
                                           for got, accepted, _ in offers), 60,
                     "the witness to accept it")
    finally:
        stop.set()
        thread.join(10)
    assert all(accepted for _, accepted, _ in offers), offers
    sizes = [size for size, _, _ in offers]
    assert sizes == sorted(sizes)
    assert witness.last("tuoyu/registration")["tree_size"] == sizes[-1]


def test_the_subscriber_user_may_bind_a_witness_queue(system):
    import re

    from tuoyu_shared.broker_users import SUBSCRIBER_PERMISSIONS

    # the read regex lets a subscriber bind a queue to a checkpoints exchange, not publish

    assert re.fullmatch(SUBSCRIBER_PERMISSIONS[2], "registration.checkpoints")
    assert not re.fullmatch(SUBSCRIBER_PERMISSIONS[1], "registration.checkpoints")


def test_refusals_over_http_say_why(system):
    missing = call(system, f"/api/audit/registration/cases/{uuid.uuid4()}/history")
    assert missing[0] == 404, missing
    notuuid = call(system, "/api/audit/registration/cases/abc/history")
    assert notuuid[0] == 400 and "aggregate_id" in json.dumps(notuuid[1]), notuuid
    # an auditor's read is recorded before it runs: an id with a NUL in it was a 503
    nul = call(system, "/api/audit/registration/cases/a%00b/history")
    assert nul[0] == 400, nul
    proof = call(system, "/api/audit/registration/proofs/inclusion?notification_id=999999")
    assert proof[0] == 404, proof
    try:
        download(system, "/api/audit/registration/export?since=2026-02-01&until=2026-01-01")
        raise AssertionError("an empty period was exported")
    except urllib.error.HTTPError as e:
        assert e.code == 400
