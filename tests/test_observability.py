"""What ops scrape, on the processes as `make run` runs them: every service's and every
worker's /health and /metrics, parsed with prometheus_client's parser; requests counted by
outcome; the relay's published events and each worker part's liveness."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tuoyu_registration.samples import sample_registration
from tuoyu_shared.devrun import BACKENDS, ProcessGroup
from tuoyu_shared.devrun import http_json as _http_json
from tuoyu_shared.rpc import RpcClient
from tuoyu_shared.testing import bearer, group_environment, metric_samples, wait_for

# Services on 8401-8403, workers on 9501-9503: test_end_to_end uses offset 100, test_hostile_input
# 200, test_supervision 300.
PORT_OFFSET = 400
VHOST = "tuoyu-observability"
EVENT_SOURCED = ("registration", "credit")
PARTS = {"registration": {"relay", "audit", "views", "credit"},
         "dashboard": {"dashboard", "dashboard-credit", "dashboard-inspection",
                       "dashboard-subsidy"},
         "credit": {"relay", "audit", "views", "registration", "inspection", "subsidy", "timers",
                    "inquiries"},
         "inspection": {"relay", "audit", "views", "inspection-directory", "inspection-grades",
                        "timers"},
         "subsidy": {"relay", "audit", "views", "registration", "credit", "timers"}}


#: Through the gateway, as a city-wide health officer unless a test says otherwise.
OFFICER = bearer("health_officer", subject="officer-3")


def http_json(method: str, url: str, body: dict | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict]:
    return _http_json(method, url, body, {**OFFICER, **(headers or {})})


@pytest.fixture(scope="module")
def group(servers, tmp_path_factory):
    spans = tmp_path_factory.mktemp("observability-spans")
    with group_environment(servers, "obs", vhost=VHOST, TUOYU_OTEL_EXPORTER="file",
                           TUOYU_OTEL_DIR=str(spans)) as env:
        g = ProcessGroup(env, tmp_path_factory.mktemp("observability-logs"),
                         port_offset=PORT_OFFSET)
        try:
            g.start()  # waits for every service's and every worker's /health
            yield g
        finally:
            g.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(url: str) -> dict[str, list]:
    status, text = get(f"{url}/metrics")
    assert status == 200, text
    return metric_samples(text)


def value(samples: list, **labels: str) -> float | None:
    found = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(found) if found else None


@pytest.fixture(scope="module")
def relayed(group) -> str:
    """An institution registered and on the dashboard: the relay and a consumer have work."""
    status, reply = http_json("POST", f"{group.url('gateway')}/api/institutions",
                              sample_registration(1))
    assert status == 201, reply

    def on_dashboard() -> bool:
        _, listing = http_json("GET", f"{group.url('gateway')}/api/dashboard/institutions")
        return listing.get("count", 0) >= 1

    wait_for(on_dashboard, timeout=60, what="the institution on the dashboard")
    return reply["institution_id"]


@pytest.mark.parametrize("service", [s.name for s in BACKENDS])
def test_each_service_serves_health_and_metrics(group, relayed, service):
    status, body = get(f"{group.url(service)}/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    metrics = scrape(group.url(service))
    assert value(metrics["tuoyu_database_up"], service=service) == 1
    assert metrics["process_resident_memory_bytes"][0].value > 0
    assert metrics["process_open_fds"][0].value > 0
    if service in EVENT_SOURCED:
        assert value(metrics["tuoyu_log_head"], service=service) >= (
            1 if service == "registration" else 0)
        assert "tuoyu_relay_lag" in metrics
    if service == "dashboard":
        assert value(metrics["tuoyu_consumer_position"], consumer="dashboard",
                     upstream="registration") >= 1
    # Every entrypoint call is counted, /health's too.
    wait_for(lambda: (value(scrape(group.url(service))["tuoyu_requests"], service=service,
                            entrypoint="health", transport="http", outcome="ok") or 0) >= 1,
             timeout=10, what=f"{service}'s /health counted")


@pytest.mark.parametrize("service", [s.name for s in BACKENDS])
def test_each_worker_serves_health_and_metrics(group, relayed, service):
    base = group.worker_url(service)
    status, body = get(f"{base}/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok", health
    assert health["parts"] == dict.fromkeys(PARTS[service], True)

    metrics = scrape(base)
    up = {s.labels["part"]: s.value for s in metrics["tuoyu_worker_part_up"]
          if s.labels["service"] == service}
    assert up == dict.fromkeys(PARTS[service], 1)
    assert value(metrics["tuoyu_database_up"], service=service) == 1
    assert metrics["process_resident_memory_bytes"][0].value > 0
    if service == "registration":
        wait_for(lambda: (value(scrape(base)["tuoyu_relay_published"],
                                exchange="registration.events") or 0) >= 1,
                 what="the registration relay's published events")
        assert value(metrics["tuoyu_log_head"], service=service) >= 1
    if service == "dashboard":
        assert value(metrics["tuoyu_consumer_position"], consumer="dashboard",
                     upstream="registration") >= 1


def test_requests_are_counted_by_outcome_and_timed(group, relayed):
    registration, gateway = group.url("registration"), group.url("gateway")
    before, gateway_before = scrape(registration), scrape(gateway)
    status, _ = http_json("POST", f"{gateway}/api/institutions", {"name": "x"})
    assert status == 400  # refused at the gateway: the service never sees it
    status, _ = http_json("GET", f"{gateway}/api/institutions/"
                          "6f1d3c2e-5b7a-4d21-9a43-0c8e2f7b9d10")
    assert status == 404
    status, _ = http_json("GET", f"{gateway}/api/officer/staff-cases", headers={
        "Authorization": "Bearer not-a-token"})
    assert status == 401
    rpc = RpcClient(group.env["TUOYU_AMQP_URI"])
    try:
        assert rpc.call("registration", "log_head") >= 1
    finally:
        rpc.close()
    after, gateway_after = scrape(registration), scrape(gateway)

    def grew(entrypoint: str, transport: str, outcome: str) -> float:
        labels = dict(service="registration", entrypoint=entrypoint, transport=transport,
                      outcome=outcome)
        return (value(after["tuoyu_requests"], **labels) or 0) - (
            value(before["tuoyu_requests"], **labels) or 0)

    assert value(after["tuoyu_requests"], entrypoint="register_institution", transport="rpc",
                 outcome="ok") >= 1  # the registration of the fixture, through the gateway
    assert grew("register_institution", "rpc", "refused") == 0
    assert grew("get_institution", "rpc", "refused") == 1
    assert grew("log_head", "rpc", "ok") == 1
    counts = {s.labels["entrypoint"]: s.value for s in after["tuoyu_request_duration_seconds"]
              if s.name == "tuoyu_request_duration_seconds_count"
              and s.labels["service"] == "registration"}
    assert counts["register_institution"] >= 1 and counts["log_head"] >= 1

    def refusals(samples: dict, status: str, code: str) -> float:
        return value(samples["tuoyu_gateway_refusals"], status=status, code=code) or 0

    assert refusals(gateway_after, "400", "validation_failed") - refusals(
        gateway_before, "400", "validation_failed") == 1
    assert refusals(gateway_after, "401", "token_malformed") - refusals(
        gateway_before, "401", "token_malformed") == 1


def _probe(url: str) -> tuple[int, dict]:
    status, body = get(url)
    return status, json.loads(body)


@pytest.mark.parametrize("service", [s.name for s in BACKENDS])
def test_each_service_and_worker_is_live_and_ready(group, relayed, service):
    for base in (group.url(service), group.worker_url(service)):
        status, live = _probe(f"{base}/health/live")
        assert status == 200, live
        status, ready = _probe(f"{base}/health/ready")
        assert status == 200 and ready["status"] == "ready", ready
        checks = ready["checks"]
        assert {"database", "schema", "broker"} <= set(checks), checks
        assert all(c["ok"] for c in checks.values()), checks
        assert checks["schema"]["pending"] == []
        assert "@" not in json.dumps(checks)  # host:port, never the URL's user or password


def test_the_gateway_is_live_and_ready(group):
    status, live = _probe(f"{group.url('gateway')}/health/live")
    assert status == 200, live
    status, ready = _probe(f"{group.url('gateway')}/health/ready")
    assert status == 200 and ready["checks"]["broker"]["ok"], ready


def test_a_worker_reports_each_consumers_lag_per_upstream(group, relayed):
    samples = scrape(group.worker_url("dashboard"))["tuoyu_consumer_lag_events"]
    lag = {(s.labels["consumer"], s.labels["upstream"]): s.value for s in samples}
    assert ("dashboard", "registration") in lag, lag
    wait_for(lambda: value(scrape(group.worker_url("dashboard"))["tuoyu_consumer_lag_events"],
                           consumer="dashboard", upstream="registration") == 0,
             timeout=30, what="the dashboard caught up with registration")


def test_a_request_is_one_trace_from_the_gateway_to_the_consumers(group):
    """TUOYU_OTEL_EXPORTER=file: the gateway's request, registration's command, its relay's
    publication and the dashboard's application are spans of one trace, the correlation id's;
    the service's span is the gateway span's child."""
    import uuid

    from tuoyu_shared.tracing import read_spans, trace_id_of

    correlation = f"trace-{uuid.uuid4().hex[:12]}"
    status, reply = http_json("POST", f"{group.url('gateway')}/api/institutions",
                              sample_registration(77), headers={"X-Correlation-Id": correlation})
    assert status == 201, reply
    folder = group.env["TUOYU_OTEL_DIR"]

    def ours() -> list[dict]:
        return [s for s in read_spans(folder)
                if s["attributes"].get("tuoyu.correlation_id") == correlation]

    def by_service() -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {}
        for s in ours():
            found.setdefault(s["resource"]["attributes"]["service.name"], []).append(s)
        return found

    wait_for(lambda: {"tuoyu-gateway", "tuoyu-registration", "tuoyu-dashboard"} <= set(
        by_service()) and any(s["name"].startswith("publish ") for s in ours())
        and any(s["name"].startswith("apply ") for s in by_service().get("tuoyu-dashboard", [])),
        timeout=60, what="the spans of every hop")
    spans = ours()
    assert {int(s["context"]["trace_id"], 16) for s in spans} == {trace_id_of(correlation)}
    [request] = [s for s in spans if s["name"] == "POST register_institution"
                 or s["resource"]["attributes"]["service.name"] == "tuoyu-gateway"]
    [command] = [s for s in spans if s["name"] == "rpc registration.register_institution"]
    assert command["parent_id"] == request["context"]["span_id"]
    publish = [s for s in spans if s["name"] == "publish registration.InstitutionRegistered"]
    assert publish and publish[0]["attributes"]["tuoyu.aggregate_id"] == reply["institution_id"]
    applied = [s for s in spans if s["name"] == "apply registration.InstitutionRegistered"]
    assert applied, [(s["name"], s["resource"]["attributes"]["service.name"]) for s in spans]
    assert {s["attributes"]["tuoyu.consumer"] for s in applied} >= {"dashboard"}
