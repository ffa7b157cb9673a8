"""The system as deployed: each service's nameko process and worker started as processes,
talking over real RabbitMQ and PostgreSQL. What an officer and a subscriber see."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from kombu import Connection

from tuoyu_registration.samples import sample_registration
from tuoyu_shared.devrun import SERVICES, ProcessGroup
from tuoyu_shared.devrun import http_json as _http_json
from tuoyu_shared.rpc import RemoteError, RpcClient
from tuoyu_shared.testing import bearer, group_environment, metric_samples, wait_for

#: Through the gateway, as a city-wide health officer unless a test says otherwise.
OFFICER = bearer("health_officer", subject="officer-3")


def http_json(method: str, url: str, body: dict | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict]:
    return _http_json(method, url, body, {**OFFICER, **(headers or {})})


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory):
    with group_environment(servers, "e2e", vhost="tuoyu-e2e") as env:
        group = ProcessGroup(env, tmp_path_factory.mktemp("logs"), port_offset=100)
        group.start()
        yield group
        group.stop()


def dashboard_count(system) -> int:
    _, listing = http_json("GET", f"{system.url('gateway')}/api/dashboard/institutions")
    return listing.get("count", 0)


def test_officer_files_and_the_dashboard_shows_it(system):
    status, reply = http_json("POST", f"{system.url('gateway')}/api/institutions",
                              sample_registration(1), {"X-Correlation-Id": "e2e-case-1"})
    assert status == 201, reply

    def row_of_this_institution():  # other tests' institutions may be there too
        _, listing = http_json("GET", f"{system.url('gateway')}/api/dashboard/institutions")
        return next((r for r in listing["institutions"]
                     if r["institution_id"] == reply["institution_id"]), None)

    row = wait_for(row_of_this_institution, what="dashboard row")
    assert "person_in_charge" not in row  # leaders' dashboards keep no personal data

    status, view = http_json("GET", f"{system.url('gateway')}/api/institutions/"
                             f"{reply['institution_id']}")
    assert status == 200 and view["name"] == "示范托育园 1"
    assert view["person_in_charge"] == "王**"  # the mask the vault keeps, never the log


def test_bad_input_over_http_is_refused_with_field_and_reason(system):
    rpc = RpcClient(system.env["TUOYU_AMQP_URI"])
    registered = sample_registration(2)  # this test's own: it passes alone and in any order
    status, _ = http_json("POST", f"{system.url('gateway')}/api/institutions", registered)
    assert status == 201
    head = rpc.call("registration", "log_head")
    data = sample_registration(4)
    data["credit_code"] = "91350100M000100Y44"
    status, reply = http_json("POST", f"{system.url('gateway')}/api/institutions", data)
    assert status == 400
    assert reply["errors"][0]["field"] == "credit_code"
    assert "should be '3'" in reply["errors"][0]["reason"]
    status, reply = http_json("POST", f"{system.url('gateway')}/api/institutions",
                              registered)
    assert status == 409 and reply["state"] == "registered"
    assert rpc.call("registration", "log_head") == head
    rpc.close()


def test_rpc_carries_the_correlation_id_into_the_envelope(system):
    from tuoyu_shared.context import command_context

    rpc = RpcClient(system.env["TUOYU_AMQP_URI"])
    with command_context(actor="officer-9", department="health", correlation_id="rpc-case-7"):
        institution_id = rpc.call("registration", "register_institution", sample_registration(3))
    head = rpc.call("registration", "log_head")
    [envelope] = rpc.call("registration", "notifications", start=head, limit=1)
    assert envelope["aggregate_id"] == institution_id
    assert envelope["correlation_id"] == "rpc-case-7" and envelope["actor"] == "officer-9"
    with pytest.raises(RemoteError) as e:
        rpc.call("registration", "register_institution", {"name": "x"})
    assert e.value.exc_type == "ValidationFailed" and "credit_code" in e.value.value
    # what a gateway answers, by code and status, not by class name
    assert (e.value.code, e.value.http_status) == ("validation_failed", 400)
    assert "credit_code" in [f["field"] for f in e.value.body["errors"]]
    with pytest.raises(RemoteError) as e:
        rpc.call("registration", "get_institution", "6f1d3c2e-5b7a-4d21-9a43-0c8e2f7b9d10")
    assert (e.value.exc_type, e.value.code, e.value.http_status) == (
        "InstitutionNotFound", "not_found", 404)
    assert e.value.body["error"] == "InstitutionNotFound"
    rpc.close()


def test_dashboard_catches_up_over_rpc_after_its_queue_was_purged(system):
    spec = next(s for s in SERVICES if s.name == "dashboard")
    system.stop_process("dashboard-worker")
    mine = set()
    for n in (10, 11, 12):
        status, reply = http_json("POST", f"{system.url('gateway')}/api/institutions",
                              sample_registration(n))
        assert status == 201
        mine.add(reply["institution_id"])
    rpc = RpcClient(system.env["TUOYU_AMQP_URI"])
    head = rpc.call("registration", "log_head")
    rpc.close()
    with Connection(system.env["TUOYU_AMQP_URI"]) as conn:
        channel = conn.default_channel
        # wait until the relay has delivered all three to the (unconsumed) queue, then purge
        wait_for(lambda: channel.queue_declare("dashboard.registration.events",
                                               passive=True).message_count == 3,
                 what="three messages queued")
        channel.queue_purge("dashboard.registration.events")
    system.start_worker(spec)

    def caught_up():  # these three, whatever other tests' rows are still on their way
        _, listing = http_json("GET", f"{system.url('gateway')}/api/dashboard/institutions")
        return mine <= {r["institution_id"] for r in listing["institutions"]}

    wait_for(caught_up, what="catch-up over RPC")
    assert head >= 3


def test_registration_lifecycle_over_http(system):
    from tuoyu_registration.samples import sample_enrolment, sample_filing_submission

    registration = system.url("gateway")
    status, reply = http_json("POST", f"{registration}/api/institutions", sample_registration(20))
    assert status == 201
    base = f"{registration}/api/institutions/{reply['institution_id']}"
    status, reply = http_json("POST", f"{base}/submit_filing", sample_filing_submission())
    assert status == 200 and reply["result"]  # the receipt's due date
    status, reply = http_json("POST", f"{base}/submit_filing", sample_filing_submission())
    assert status == 409 and reply["state"] == "filing_submitted"
    status, reply = http_json("POST", f"{base}/issue_filing_receipt", {"receipt_number": ""})
    assert status == 400 and reply["errors"][0]["field"] == "receipt_number"
    status, _ = http_json("POST", f"{base}/issue_filing_receipt", {"receipt_number": "BA-20"})
    assert status == 200
    this_month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    status, reply = http_json("POST", f"{base}/report_enrolment", sample_enrolment(this_month))
    assert status == 200
    status, reply = http_json("POST", f"{base}/no_such_command", {})
    assert status == 404 and reply["code"] == "no_such_route"

    status, record = http_json("GET", f"{base}/record")
    assert status == 200
    assert [h["event_type"] for h in record["history"]] == [
        "InstitutionRegistered", "InstitutionFilingSubmitted", "InstitutionFiled",
        "InstitutionEnrolmentReported"]
    status, then = http_json("GET", f"{base}?version=1")
    assert status == 200 and then["status"] == "registered"

    def disclosed() -> bool:
        _, listing = http_json("GET", f"{registration}/api/public/institutions")
        return any(r["name"] == "示范托育园 20" for r in listing.get("institutions", []))

    wait_for(disclosed, what="public disclosure")
    status, reply = http_json("GET", f"{registration}/api/public/institutions?affordable=maybe")
    assert status == 400 and reply["errors"][0]["field"] == "affordable"
    status, reply = http_json("GET", f"{registration}/api/officer/filings-awaiting")
    assert status == 200 and any(f["stage"] == "verification" for f in reply["filings"])


def test_metrics_show_the_log_head_relay_lag_and_consumer_positions(system):
    import urllib.request

    status, _ = http_json("POST", f"{system.url('gateway')}/api/institutions",
                          sample_registration(30))  # its own: the test passes alone
    assert status == 201
    wait_for(lambda: dashboard_count(system) >= 1, what="something relayed")
    with urllib.request.urlopen(f"{system.url('registration')}/metrics", timeout=10) as resp:
        metrics = metric_samples(resp.read().decode())
    [head] = metrics["tuoyu_log_head"]
    assert head.labels == {"service": "registration"} and head.value >= 1
    assert {"service": "registration", "exchange": "registration.events"} in [
        s.labels for s in metrics["tuoyu_relay_lag"]]
    assert {"service": "registration", "consumer": "registration", "upstream": "credit"} in [
        s.labels for s in metrics["tuoyu_consumer_position"]]  # a reacting consumer


def view_rows(database_url: str, tables: tuple[str, ...]) -> dict[str, list[tuple]]:
    """Every row of each table, in a stable order, without the columns that say when a row
    was projected (``updated_at``)."""
    import psycopg
    from psycopg import sql

    rows: dict[str, list[tuple]] = {}
    with psycopg.connect(database_url) as conn:
        for table in tables:
            columns = [c for (c,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name=%s "
                "AND column_name <> 'updated_at' ORDER BY ordinal_position", (table,))]
            query = sql.SQL("SELECT {} FROM {} ORDER BY 1, 2").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table))
            rows[table] = conn.execute(query).fetchall()
    return rows


def test_each_view_rebuilt_from_the_command_line_equals_the_live_one(system):
    import subprocess
    import sys

    from tuoyu_credit.projections import VIEW as CREDIT_VIEW
    from tuoyu_dashboard.projections import REGISTRATION_VIEW
    from tuoyu_registration.projections import VIEW as REGISTRATION_VIEWS
    from tuoyu_registration.samples import sample_filing_submission

    registration = system.url("gateway")
    officer = bearer("health_officer", subject="officer-9")
    for n in (901, 902, 903):
        status, reply = http_json("POST", f"{registration}/api/institutions",
                                  sample_registration(n), officer)
        assert status == 201, reply
    status, _ = http_json("POST", f"{registration}/api/institutions/{reply['institution_id']}"
                          "/submit_filing", sample_filing_submission(), officer)
    assert status == 200

    def head(service: str) -> int:
        _, health = http_json("GET", f"{system.url(service)}/health")
        return health["log_head"]

    def settled() -> bool:  # every view has applied everything its upstream has
        import psycopg

        with psycopg.connect(system.env["TUOYU_DASHBOARD_DATABASE_URL"]) as conn:
            dash = conn.execute("SELECT notification_id FROM consumer_tracking WHERE "
                                "consumer='dashboard' AND upstream='registration'").fetchone()
        with psycopg.connect(system.env["TUOYU_REGISTRATION_DATABASE_URL"]) as conn:
            own = conn.execute("SELECT notification_id FROM consumer_tracking "
                               "WHERE consumer='registration-views'").fetchone()
        with psycopg.connect(system.env["TUOYU_CREDIT_DATABASE_URL"]) as conn:
            credit = conn.execute("SELECT notification_id FROM consumer_tracking "
                                  "WHERE consumer='credit-views'").fetchone()
        return bool(dash and own and credit) and dash[0] == own[0] == head("registration") \
            and credit[0] == head("credit")

    wait_for(settled, timeout=60, what="every view up to date")
    for worker, view, database in (
            ("tuoyu_dashboard.worker", REGISTRATION_VIEW, "TUOYU_DASHBOARD_DATABASE_URL"),
            ("tuoyu_registration.worker", REGISTRATION_VIEWS,
             "TUOYU_REGISTRATION_DATABASE_URL"),
            ("tuoyu_credit.worker", CREDIT_VIEW, "TUOYU_CREDIT_DATABASE_URL")):
        live = view_rows(system.env[database], view.tables)
        assert any(live.values()), view.name
        done = subprocess.run([sys.executable, "-m", worker, "rebuild", view.name],
                              env=system.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"rebuilt {view.name} from" in done.stdout
        assert view_rows(system.env[database], view.tables) == live, view.name


def test_an_events_actor_is_the_tokens_subject_whatever_headers_say(system):
    """Who acted is proven: the gateway forwards the verified token, the service takes the
    actor and department from it, and headers claiming another actor change nothing."""
    headers = {**bearer("market_officer", "徐汇区", subject="王强-市场监管"),
               "X-Actor": "mallory", "X-Department": "finance", "X-Role": "auditor"}
    status, reply = _http_json("POST", f"{system.url('gateway')}/api/institutions",
                               sample_registration(40, district="徐汇区"), headers)
    assert status == 201, reply
    rpc = RpcClient(system.env["TUOYU_AMQP_URI"])
    try:
        head = rpc.call("registration", "log_head")
        envelopes = rpc.call("registration", "notifications", start=max(1, head - 20),
                             limit=50)
        [mine] = [e for e in envelopes if e["aggregate_id"] == reply["institution_id"]]
        assert (mine["actor"], mine["department"]) == ("王强-市场监管", "market_regulation")
        # an RPC call whose token does not verify is refused and records nothing
        with pytest.raises(RemoteError) as refused:
            rpc.call("registration", "register_institution", sample_registration(41),
                     rpc_context={"authorization": "eyJhbGciOiJub25lIn0.e30."})
        assert (refused.value.code, refused.value.http_status) == ("unauthenticated", 401)
        assert rpc.call("registration", "log_head") == head
    finally:
        rpc.close()


def test_every_call_of_an_auditor_is_recorded_with_who_what_and_when(system):
    """Auditors read everything and change nothing; each of their reads is recorded in the
    service's ``audited_calls`` (the ids named, never a body), and a write is refused."""
    import psycopg

    gateway = system.url("gateway")
    status, reply = http_json("POST", f"{gateway}/api/institutions", sample_registration(50))
    assert status == 201, reply
    institution = reply["institution_id"]
    auditor = bearer("auditor", subject="审计-孙磊")
    assert _http_json("GET", f"{gateway}/api/institutions/{institution}/record", None,
                      {**auditor, "X-Correlation-Id": "audit-case-1"})[0] == 200
    assert _http_json("GET", f"{gateway}/api/institutions/{institution}/credit", None,
                      auditor)[0] in (200, 404)  # credit may not have it yet: still recorded
    status, refused = _http_json("POST", f"{gateway}/api/institutions/{institution}/resume",
                                 {}, auditor)
    assert status == 403 and refused["code"] == "role_not_allowed"
    with psycopg.connect(system.env["TUOYU_REGISTRATION_DATABASE_URL"]) as conn:
        rows = conn.execute("SELECT subject, role, method, arguments, correlation_id "
                            "FROM audited_calls WHERE subject = %s", ("审计-孙磊",)).fetchall()
    assert rows == [("审计-孙磊", "auditor", "institution_record", [institution],
                     "audit-case-1")]
    with psycopg.connect(system.env["TUOYU_CREDIT_DATABASE_URL"]) as conn:
        [(method, arguments)] = conn.execute(
            "SELECT method, arguments FROM audited_calls WHERE subject = %s",
            ("审计-孙磊",)).fetchall()
    assert (method, arguments) == ("institution_credit_report", [institution])
    # ... and an auditor reads them through the gateway (a read recorded in its turn)
    status, listed = _http_json("GET", f"{gateway}/api/audit/registration/calls?subject="
                                "%E5%AE%A1%E8%AE%A1-%E5%AD%99%E7%A3%8A", None, auditor)
    assert status == 200, listed
    # (the listing is recorded before it runs, so it lists itself last)
    assert [(c["method"], c["arguments"], c["correlation_id"]) for c in listed["calls"]][
        0] == ("institution_record", [institution], "audit-case-1")
    assert [c["method"] for c in listed["calls"]] == ["institution_record", "audited_calls"]
    assert _http_json("GET", f"{gateway}/api/audit/registration/calls", None,
                      OFFICER)[0] == 403  # an officer may not
