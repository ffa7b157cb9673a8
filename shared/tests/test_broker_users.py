"""Broker users (tuoyu_shared.broker_users) against the real RabbitMQ: each service's user does
what its processes do and nothing of another service's; the subscriber reads and never
publishes; guest is kept out."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator

import amqp
import pytest
from kombu import Connection

from tuoyu_shared.broker_users import (
    REPLY_QUEUES,
    SUBSCRIBER,
    access_of,
    create_broker_users,
    password_store,
    users_of,
)
from tuoyu_shared.devrun import SERVICES
from tuoyu_shared.rpc import RPC_EXCHANGE, RpcClient

SERVICE_NAMES = [spec.name for spec in SERVICES]


def test_a_services_own_amqp_uri_wins_over_the_shared_one(monkeypatch):
    from tuoyu_shared.config import settings_for

    monkeypatch.setenv("TUOYU_AMQP_URI", "amqp://shared:x@127.0.0.1:1//")
    monkeypatch.setenv("TUOYU_CREDIT_AMQP_URI", "amqp://tuoyu-credit:y@127.0.0.1:1//")
    monkeypatch.setenv("TUOYU_DASHBOARD_AMQP_URI", "")  # empty: unset
    assert settings_for("credit").amqp_uri == "amqp://tuoyu-credit:y@127.0.0.1:1//"
    assert settings_for("registration").amqp_uri == "amqp://shared:x@127.0.0.1:1//"
    assert settings_for("dashboard").amqp_uri == "amqp://shared:x@127.0.0.1:1//"


def test_what_each_service_may_touch_comes_from_its_code():
    registration, credit = access_of("registration"), access_of("credit")
    dashboard, gateway = access_of("dashboard"), access_of("gateway")
    assert registration.consumes == (("registration.credit.events", "credit.events"),)
    assert dashboard.consumes == (  # a view per upstream
        ("dashboard.registration.events", "registration.events"),
        ("dashboard-credit.credit.events", "credit.events"),
        ("dashboard-inspection.inspection.events", "inspection.events"),
        ("dashboard-subsidy.subsidy.events", "subsidy.events"))
    assert ("credit.registration.events", "registration.events") in credit.consumes
    assert (registration.publishes, credit.publishes) == ("registration.events", "credit.events")
    assert dashboard.publishes is None  # a read model: no log, no relay
    assert (gateway.publishes, gateway.serves_rpc, gateway.consumes) == (None, False, ())
    configure, write, read = registration.permissions()
    assert re.fullmatch(configure, "credit.events")  # the consumer declares it
    assert not re.fullmatch(write, "credit.events")
    assert not re.fullmatch(configure, "credit.registration.events")
    assert re.fullmatch(read, "rpc-registration") and not re.fullmatch(read, "rpc-credit")


def test_the_names_are_those_of_nameko_and_of_the_rpc_client(broker):
    from nameko.rpc import RPC_QUEUE_TEMPLATE

    from tuoyu_shared.broker_users import NAMEKO_RPC_QUEUE

    assert NAMEKO_RPC_QUEUE == RPC_QUEUE_TEMPLATE
    client = RpcClient(broker.uri)
    client._connect()
    try:
        assert re.fullmatch(REPLY_QUEUES, client._reply_key)
    finally:
        client.close()


@pytest.fixture
def users(broker, unique) -> Iterator[dict[str, str]]:
    vhost = f"tuoyu-users-{unique}"
    broker.ctl("add_vhost", vhost)
    try:
        # the passwords every group of this node uses (users are node-wide)
        passwords = password_store(broker.root / "broker-users.json", users_of(SERVICE_NAMES))
        uris = create_broker_users(broker, vhost, SERVICE_NAMES, passwords=passwords)
        uris["vhost"] = vhost
        yield uris
    finally:
        broker.ctl("delete_vhost", vhost, check=False)


def channel(uri: str) -> tuple[Connection, amqp.Channel]:
    conn = Connection(uri)
    conn.connect()
    return conn, conn.channel()


def declare_consumer_queue(ch: amqp.Channel, queue: str, exchange: str) -> None:
    """As a tracked consumer does (kombu declares the exchange, then the queue, binds)."""
    ch.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
    ch.queue_declare(queue, durable=True, auto_delete=False,
                     arguments={"x-single-active-consumer": True})
    ch.queue_bind(queue, exchange, "#")


def publish_confirmed(ch: amqp.Channel, exchange: str, body: str = "{}") -> None:
    """Publish and wait for the broker's confirm, so that a refusal surfaces here."""
    ch.basic_publish_confirm(amqp.Message(body, content_type="application/json"),
                             exchange=exchange, routing_key="InstitutionRegistered",
                             confirm_timeout=10)


def test_a_service_publishes_to_its_exchange_and_consumes_its_queues(users):
    with Connection(users["registration"]) as reg_conn, \
            Connection(users["credit"]) as credit_conn, \
            Connection(users["dashboard"]) as dash_conn:
        reg, credit, dash = reg_conn.channel(), credit_conn.channel(), dash_conn.channel()
        declare_consumer_queue(reg, "registration.credit.events", "credit.events")
        declare_consumer_queue(dash, "dashboard.registration.events", "registration.events")
        # each relay declares its own exchange and publishes to it
        credit.exchange_declare("credit.events", "topic", durable=True, auto_delete=False)
        reg.exchange_declare("registration.events", "topic", durable=True, auto_delete=False)
        publish_confirmed(credit, "credit.events", '{"from": "credit"}')
        publish_confirmed(reg, "registration.events", '{"from": "registration"}')
        got = reg.basic_get("registration.credit.events", no_ack=True)
        assert got is not None and json.loads(got.body) == {"from": "credit"}
        got = dash.basic_get("dashboard.registration.events", no_ack=True)
        assert got is not None and json.loads(got.body) == {"from": "registration"}


def test_a_service_is_refused_another_services_exchange_and_queues(users):
    with Connection(users["dashboard"]) as conn:
        declare_consumer_queue(conn.channel(), "dashboard.registration.events",
                               "registration.events")
    with Connection(users["credit"]) as conn:
        conn.channel().exchange_declare("credit.events", "topic", durable=True,
                                        auto_delete=False)
    conn, ch = channel(users["registration"])
    with conn:
        with pytest.raises(amqp.exceptions.AccessRefused, match="credit.events"):
            publish_confirmed(ch, "credit.events")
        with pytest.raises(amqp.exceptions.AccessRefused, match="dashboard.registration"):
            conn.channel().queue_delete("dashboard.registration.events")
        with pytest.raises(amqp.exceptions.AccessRefused):
            conn.channel().basic_get("dashboard.registration.events")
        with pytest.raises(amqp.exceptions.AccessRefused):  # no queue in another's name
            conn.channel().queue_declare("credit.registration.events", durable=True,
                                         auto_delete=False)


def test_rpc_calls_reach_the_service_and_nobody_binds_to_anothers_calls(users):
    """The gateway's user calls a service over nameko-rpc (its own reply queue); the service
    (played here as nameko would, under its own user) answers. Another service may not bind
    a queue of its own to those calls, nor read the service's RPC queue."""
    conn, server = channel(users["registration"])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            message = server.basic_get("rpc-registration", no_ack=True)
            if message is None:
                stop.wait(0.02)
                continue
            reply = amqp.Message(json.dumps({"result": "pong", "error": None}),
                                 content_type="application/json", content_encoding="utf-8",
                                 correlation_id=message.properties["correlation_id"])
            server.basic_publish(reply, exchange=RPC_EXCHANGE,
                                 routing_key=message.properties["reply_to"])

    with conn:
        server.exchange_declare(RPC_EXCHANGE, "topic", durable=True, auto_delete=False)
        server.queue_declare("rpc-registration", durable=True, auto_delete=False)
        server.queue_bind("rpc-registration", RPC_EXCHANGE, "registration.*")
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client = RpcClient(users["gateway"], timeout=10)
        try:
            assert client.call("registration", "ping") == "pong"
        finally:
            client.close()
            stop.set()
            thread.join(5)
        with Connection(users["credit"]) as spy:
            ch = spy.channel()
            mine = f"rpc.reply-tuoyu-{uuid.uuid4()}"
            ch.queue_declare(mine, exclusive=True, auto_delete=True)
            with pytest.raises(amqp.exceptions.AccessRefused, match="registration"):
                ch.queue_bind(mine, RPC_EXCHANGE, "registration.*")
        with Connection(users["gateway"]) as gateway:
            with pytest.raises(amqp.exceptions.AccessRefused):
                gateway.channel().basic_get("rpc-registration")


def test_the_subscriber_reads_events_and_publishes_nothing(users, unique):
    with Connection(users["registration"]) as reg_conn, \
            Connection(users[SUBSCRIBER]) as sub_conn:
        reg, sub = reg_conn.channel(), sub_conn.channel()
        reg.exchange_declare("registration.events", "topic", durable=True, auto_delete=False)
        queue = f"subscriber.province-{unique}"
        sub.queue_declare(queue, durable=True, auto_delete=False)
        sub.queue_bind(queue, "registration.events", "#")
        publish_confirmed(reg, "registration.events", '{"n": 1}')
        got = sub.basic_get(queue, no_ack=True)
        assert got is not None and json.loads(got.body) == {"n": 1}
        with pytest.raises(amqp.exceptions.AccessRefused, match="registration.events"):
            publish_confirmed(sub_conn.channel(), "registration.events")
        with pytest.raises(amqp.exceptions.AccessRefused):  # a service's queue: not its own
            sub_conn.channel().queue_declare("dashboard.registration.events", durable=True,
                                             auto_delete=False)
        with pytest.raises(amqp.exceptions.AccessRefused):  # nor the RPC exchange
            sub_conn.channel().exchange_declare(RPC_EXCHANGE, "topic", durable=True,
                                                auto_delete=False)


def test_guest_cannot_connect_to_the_vhost(users, broker):
    port = broker.port
    guest = amqp.Connection(f"127.0.0.1:{port}", userid="guest", password="guest",
                            virtual_host=users["vhost"], connect_timeout=5)
    with pytest.raises((amqp.exceptions.NotAllowed, amqp.exceptions.AccessRefused)):
        guest.connect()
    with pytest.raises(amqp.exceptions.AccessRefused):  # nor log in with a wrong password
        amqp.Connection(f"127.0.0.1:{port}", userid="tuoyu-registration", password="guest",
                        virtual_host=users["vhost"], connect_timeout=5).connect()
