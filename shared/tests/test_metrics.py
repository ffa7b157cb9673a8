"""The metrics ops scrape, on real PostgreSQL: the database's gauges read at collect time
(consumer positions, a parked letter with its aggregate and error, the log head and the
relay's lag), parsed back with prometheus_client's parser; a database that is away; a
worker's /health and /metrics; the container health check."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from types import SimpleNamespace
from uuid import uuid4

import psycopg
import pytest

from tuoyu_shared import healthcheck
from tuoyu_shared.consumer import SqlTrackingStore
from tuoyu_shared.envelope import Envelope
from tuoyu_shared.metrics import (
    EventLogCollector,
    ReadModelCollector,
    event_log_metrics,
    read_model_metrics,
    registry_of,
    render,
)
from tuoyu_shared.testing import metric_samples
from tuoyu_shared.worker_http import WorkerHttp, address_from_env

ERROR = 'Traceback (most recent call last):\n  …\nValueError: a "quoted" \\ value'


def envelope(notification_id: int, aggregate_id: str) -> Envelope:
    return Envelope(
        event_id=str(uuid4()), event_type="InstitutionRegistered", schema_version=1,
        source="registration", aggregate_id=aggregate_id, aggregate_version=1,
        notification_id=notification_id, occurred_at="2026-01-01T00:00:00+00:00",
        actor="officer", department="health", correlation_id="c", causation_id="",
        payload={})


def values(samples, **labels) -> list[float]:
    return [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]


def test_a_parked_letter_shows_with_its_aggregate_and_error(fresh_database):
    url = fresh_database("metrics", migrated="kit")
    store = SqlTrackingStore(url, "reader")
    aggregate = str(uuid4())
    try:
        assert store.park(envelope(7, aggregate), ERROR, 3)
        [letter] = store.dead_letters()
    finally:
        store.close()

    metrics = metric_samples(read_model_metrics("svc", url))
    labels = {"service": "svc", "consumer": "reader", "upstream": "registration"}
    assert [(s.labels, s.value) for s in metrics["tuoyu_consumer_position"]] == [(labels, 7)]
    assert [(s.labels, s.value) for s in metrics["tuoyu_parked_messages"]] == [(labels, 1)]
    assert [(s.labels, s.value) for s in metrics["tuoyu_held_aggregates"]] == [(labels, 1)]
    assert metrics["tuoyu_held_messages"] == []
    [parked] = metrics["tuoyu_parked_message"]
    assert parked.labels == {**labels, "dead_letter_id": str(letter.id), "notification_id": "7",
                             "event_type": "InstitutionRegistered", "aggregate_id": aggregate,
                             "error": 'ValueError: a "quoted" \\ value'}  # its last line
    assert parked.value == 1
    assert values(metrics["tuoyu_database_up"], service="svc") == [1]


def test_the_log_head_and_the_relays_lag_come_from_the_database(fresh_database):
    url = fresh_database("metrics", migrated="kit")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO relay_position VALUES ('svc.events', 3)")
    app = SimpleNamespace(log_head=lambda: 5, settings=SimpleNamespace(database_url=url),
                          recorder=SimpleNamespace())
    metrics = metric_samples(event_log_metrics("svc", app))
    assert values(metrics["tuoyu_log_head"], service="svc") == [5]
    assert values(metrics["tuoyu_relay_position"], exchange="svc.events") == [3]
    assert values(metrics["tuoyu_relay_lag"], service="svc", exchange="svc.events") == [2]
    assert metrics["tuoyu_consumer_position"] == []  # no consumer tables: none, no error
    # Collected again at each scrape: never stale.
    app.log_head = lambda: 9
    registry = registry_of(EventLogCollector("svc", app), process=False)
    lag = [s.value for m in registry.collect() if m.name == "tuoyu_relay_lag" for s in m.samples]
    assert lag == [6]


def test_a_database_that_is_away_is_a_gauge_not_a_failed_scrape():
    collector = ReadModelCollector("svc", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    body, content_type = render(collector)
    metrics = metric_samples(body.decode())
    assert content_type.startswith("text/plain")
    assert values(metrics["tuoyu_database_up"], service="svc") == [0]
    assert "tuoyu_parked_messages" not in metrics
    assert metrics["process_resident_memory_bytes"][0].value > 0  # the process's own, still


def test_openmetrics_when_the_scraper_asks_for_it(fresh_database):
    url = fresh_database("metrics", migrated="kit")
    body, content_type = render(ReadModelCollector("svc", url),
                                accept="application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    for accept in ("application/openmetrics-text; version=abc", "text/plain; version=x.y",
                   "application/openmetrics-text; version=0.0.1", ";;,;=", "\x00\xff"):
        body, content_type = render(accept=accept)  # never a failed scrape
        assert content_type == "text/plain; version=0.0.4; charset=utf-8", accept


# ---- a worker's /health and /metrics ----------------------------------------------------

def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def worker_http():
    http = WorkerHttp("svc", "127.0.0.1", 0)
    http.start()
    yield http
    http.close()


def test_worker_health_follows_its_parts(worker_http):
    base = f"http://127.0.0.1:{worker_http.port}"
    status, body = get(f"{base}/health")
    assert (status, json.loads(body)["status"]) == (503, "starting")

    stop, release = threading.Event(), threading.Event()
    alive = threading.Thread(target=release.wait, name="relay", daemon=True)
    ending = threading.Thread(target=lambda: None, name="views", daemon=True)
    for thread in (alive, ending):
        thread.start()
    worker_http.watch([alive], stop)
    status, body = get(f"{base}/health")
    assert (status, json.loads(body)) == (200, {"service": "svc", "status": "ok",
                                                "parts": {"relay": True}})

    ending.join()
    worker_http.watch([alive, ending], stop)
    status, body = get(f"{base}/health")
    assert (status, json.loads(body)["status"]) == (503, "degraded")
    assert json.loads(body)["parts"] == {"relay": True, "views": False}
    status, body = get(f"{base}/metrics")
    assert status == 200
    up = metric_samples(body.decode())["tuoyu_worker_part_up"]
    assert {s.labels["part"]: s.value for s in up} == {"relay": 1, "views": 0}

    stop.set()
    assert json.loads(get(f"{base}/health")[1])["status"] == "stopping"
    assert get(f"{base}/nothing")[0] == 404
    release.set()


def test_the_worker_port_comes_from_the_environment_or_the_command_line():
    assert address_from_env({}) == ("127.0.0.1", 9100)
    assert address_from_env({"TUOYU_WORKER_HTTP_PORT": "9200", "TUOYU_HTTP_HOST": "0.0.0.0"}) \
        == ("0.0.0.0", 9200)
    assert address_from_env({"TUOYU_WORKER_HTTP_PORT": "9200"}, port=9300)[1] == 9300
    with pytest.raises(ValueError):
        address_from_env({"TUOYU_WORKER_HTTP_PORT": "nine"})


def test_the_container_health_check_finds_the_process_it_checks(worker_http):
    worker_cmd = b"python\0-m\0tuoyu_credit.worker\0"
    service_cmd = b"python\0-m\0tuoyu_shared.serve\0tuoyu_credit.service:CreditService\0"
    assert healthcheck.process_kind({}, worker_cmd) == "worker"
    assert healthcheck.process_kind({}, service_cmd) == "service"
    assert healthcheck.process_kind({"TUOYU_PROCESS": "worker"}, service_cmd) == "worker"
    assert healthcheck.health_url({"TUOYU_HTTP_PORT": "8001"}, service_cmd) == \
        "http://127.0.0.1:8001/health/ready"
    assert healthcheck.health_url({}, worker_cmd) == "http://127.0.0.1:9100/health/ready"
    # the image's launcher: /bin/sh /usr/local/bin/tuoyu worker, until it execs python
    assert healthcheck.process_kind({}, b"/bin/sh\0/usr/local/bin/tuoyu\0worker\0") == "worker"
    assert healthcheck.process_kind({}, b"python\0-m\0tuoyu_credit\0serve\0") == "service"

    env = {"TUOYU_PROCESS": "worker", "TUOYU_WORKER_HTTP_PORT": str(worker_http.port)}
    assert healthcheck.main(env) == 1  # starting: no parts yet
    release = threading.Event()
    part = threading.Thread(target=release.wait, name="relay", daemon=True)
    part.start()
    worker_http.watch([part], threading.Event())
    assert healthcheck.main(env) == 0
    release.set()
    part.join()
    assert healthcheck.main(env) == 1
