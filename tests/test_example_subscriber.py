"""The example external subscriber (examples/subscriber, plain kombu) against the running
system: as the broker's read-only subscriber user with a subscriber's token, it applies every
registration event once and in order, fills a gap from the log through the gateway, resumes
after being stopped, and reads the CloudEvents headers; what it received matches the AsyncAPI
document."""

from __future__ import annotations

import itertools
import json
import signal
import sqlite3
import subprocess
import sys
import uuid

import jsonschema
import pytest
from kombu import Connection

from tuoyu_registration.samples import sample_registration
from tuoyu_shared import asyncapi
from tuoyu_shared.devrun import ProcessGroup
from tuoyu_shared.devrun import http_json as _http_json
from tuoyu_shared.testing import PROJECT_ROOT, bearer, group_environment, token, wait_for

HEALTH = bearer("health_officer", subject="health-sub")
SUBSCRIBER = bearer("subscriber", subject="other-system")
EXAMPLE = PROJECT_ROOT / "examples" / "subscriber" / "subscriber.py"
NAME = "exampletest"
QUEUE = f"subscriber.{NAME}.registration"


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory):
    with group_environment(servers, "example", vhost="tuoyu-example") as env:
        group = ProcessGroup(env, tmp_path_factory.mktemp("logs"), port_offset=1100)
        group.start()
        group.env = env
        yield group
        group.stop()


#: Sample numbers of this module's institutions: each once (a random pick of 800 collided,
#: and a credit code registers only once).
SAMPLES = itertools.count(8100)


def register(system) -> str:
    n = next(SAMPLES)
    status, body = _http_json("POST", f"{system.url('gateway')}/api/institutions",
                              sample_registration(n), HEALTH)
    assert status == 201, body
    return body["institution_id"]


def head(system) -> int:
    status, body = _http_json("GET", f"{system.url('gateway')}/api/events/registration/head",
                              None, SUBSCRIBER)
    assert status == 200, body
    return body["head"]


def applied(db) -> list[tuple[int, str, str | None]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT notification_id, via, cloudevents_type FROM events "
                                "WHERE source = 'registration' ORDER BY notification_id"
                                ).fetchall()
        except sqlite3.OperationalError:
            return []


def start(system, db, log):
    return subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--amqp", system.env["TUOYU_SUBSCRIBER_AMQP_URI"],
         "--gateway", system.url("gateway"), "--token", token("subscriber", subject="other"),
         "--sources", "registration", "--db", str(db), "--name", NAME],
        stdout=log, stderr=subprocess.STDOUT)


def test_the_example_needs_nothing_but_kombu_and_the_standard_library():
    import ast

    tree = ast.parse(EXAMPLE.read_text())
    imported = {(node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
                for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    assert imported - sys.stdlib_module_names == {"kombu"}


def caught_up(system, db) -> bool:
    ids = [row[0] for row in applied(db)]
    return bool(ids) and ids[-1] == head(system)


def test_the_example_subscriber_applies_every_event_once_in_order(system, tmp_path):
    db = tmp_path / "subscriber.sqlite3"
    log = open(tmp_path / "subscriber.log", "w")
    register(system)
    register(system)
    process = start(system, db, log)
    try:
        wait_for(lambda: caught_up(system, db), 60, "the subscriber to catch up from the log")
        register(system)
        wait_for(lambda: caught_up(system, db), 60, "an event from the broker")
        assert applied(db)[-1][1] == "broker"

        # a message lost on the way (the queue unbound while it was published): the next
        # message's previous_notification_id shows the gap, filled from the log
        with Connection(system.env["TUOYU_AMQP_URI"]) as admin:
            channel = admin.channel()
            channel.queue_unbind(QUEUE, "registration.events", "*")
            register(system)
            lost = head(system)
            channel.queue_bind(QUEUE, "registration.events", "*")
        register(system)
        wait_for(lambda: caught_up(system, db), 60, "the gap to be filled")
        vias = {nid: via for nid, via, _ in applied(db)}
        assert vias[lost] == "log" and vias[lost + 1] == "broker", vias
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)

    # stopped: events go on being recorded; started again, it resumes where it was
    register(system)
    register(system)
    process = start(system, db, log)
    try:
        wait_for(lambda: caught_up(system, db), 60, "the subscriber to resume")
        register(system)
        wait_for(lambda: caught_up(system, db), 60, "the next event after resuming")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    log.close()

    rows = applied(db)
    ids = [nid for nid, _, _ in rows]
    assert ids == list(range(1, head(system) + 1)), "every event once, in order, none missing"
    broker = [ce for _, via, ce in rows if via == "broker"]
    assert broker and all(ce.startswith("cn.gov.tuoyu.registration.") for ce in broker)

    with sqlite3.connect(db) as conn:
        envelopes = [json.loads(e) for (e,) in conn.execute("SELECT envelope FROM events")]
    messages = asyncapi.document("registration")["components"]["messages"]
    for envelope in envelopes:
        schema = messages[f"{envelope['event_type']}.v{envelope['schema_version']}"]["payload"]
        jsonschema.Draft202012Validator(schema).validate(envelope)


def test_the_relay_sends_cloudevents_attributes_beside_the_envelope(system):
    from kombu import Exchange, Queue

    queue = Queue(f"ce-check-{uuid.uuid4().hex[:6]}", Exchange("registration.events", "topic",
                                                              durable=True),
                  routing_key="InstitutionRegistered", auto_delete=True)
    with Connection(system.env["TUOYU_AMQP_URI"]) as conn:
        bound = queue(conn.channel())
        bound.declare()
        institution = register(system)
        message = wait_for(lambda: bound.get(no_ack=True), 30, "the published message")
    envelope = json.loads(message.body)
    assert envelope["aggregate_id"] == institution
    headers = message.headers
    assert headers["cloudEvents_specversion"] == "1.0"
    assert headers["cloudEvents_id"] == envelope["event_id"]
    assert headers["cloudEvents_source"] == "/tuoyu/registration"
    assert headers["cloudEvents_type"] == "cn.gov.tuoyu.registration.InstitutionRegistered.v1"
    assert headers["cloudEvents_time"] == envelope["occurred_at"]
    assert headers["cloudEvents_subject"] == institution
    described = asyncapi.document("registration")["components"]["messages"][
        "InstitutionRegistered.v1"]
    jsonschema.Draft202012Validator(described["headers"]).validate(dict(headers))
    jsonschema.Draft202012Validator(described["payload"]).validate(envelope)
    status, schema = _http_json("GET", f"{system.url('gateway')}"
                                f"{headers['cloudEvents_dataschema']}", None, {})
    assert status == 200 and schema["title"] == "InstitutionRegistered"


def test_the_gateway_serves_the_catalogue_page_and_documents(system):
    import urllib.request

    with urllib.request.urlopen(f"{system.url('gateway')}/catalogue/", timeout=30) as page:
        text = page.read().decode()
    assert "托育事件目录" in text and "/catalogue/credit/asyncapi.json" in text
    status, document = _http_json("GET", f"{system.url('gateway')}/catalogue/subsidy/"
                                  "asyncapi.json", None, {})
    assert status == 200 and document["asyncapi"] == "3.0.0"
    status, problem = _http_json("GET", f"{system.url('gateway')}/catalogue/nobody/"
                                 "asyncapi.json", None, {})
    assert status == 404, problem
    status, problem = _http_json("GET", f"{system.url('gateway')}/catalogue/registration/"
                                 "..%2F..%2Fconfig.json", None, {})
    assert status == 404, problem
