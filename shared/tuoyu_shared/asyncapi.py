"""The event contract for subscribers, as an AsyncAPI 3.0 document per service and a readable
page of it, built from the catalogue (:mod:`tuoyu_shared.catalogue`) so that neither can say
something the schemas do not.

Each document describes, for one source: the broker (RabbitMQ, AMQP 0-9-1); the channel of its
events (the topic exchange ``<service>.events``, routing key = event type) with one message per
event type and schema version (the envelope, its ``payload`` the type's schema, the AMQP
headers: ``notification_id``, ``previous_notification_id``, ``schema_version`` and the
CloudEvents 1.0 attributes); the channel of its signed checkpoints; and the gap fill, the
notification log read through the gateway (``GET /api/events/<service>``, a subscriber's
token), described as a request and its reply. The gateway serves them at
``/catalogue/<service>/asyncapi.json`` and the page at ``/catalogue/``.
"""

from __future__ import annotations

import html
import json
from functools import cache
from typing import Any

from tuoyu_shared.catalogue import (
    CATALOGUE_DIR,
    catalogue_index,
    envelope_schema,
    legacy_served,
)

#: The CloudEvents 1.0 attributes every published message carries as AMQP headers, by the
#: CloudEvents AMQP binding's naming (``cloudEvents_<attribute>``).
CLOUDEVENTS_HEADERS = ("id", "source", "type", "specversion", "time", "subject",
                       "datacontenttype", "dataschema")
CLOUDEVENTS_TYPE_PREFIX = "cn.gov.tuoyu"


def cloudevents_type(source: str, event_type: str, version: int) -> str:
    return f"{CLOUDEVENTS_TYPE_PREFIX}.{source}.{event_type}.v{version}"


def cloudevents_source(source: str) -> str:
    return f"/tuoyu/{source}"


def dataschema(source: str, event_type: str, version: int) -> str:
    """Where the gateway serves the payload's schema (a URI reference)."""
    return f"/catalogue/{source}/{event_type}.v{version}.json"


def cloudevents_headers(source: str, event_id: str, event_type: str, version: int,
                        occurred_at: str, aggregate_id: str) -> dict[str, str]:
    return {"cloudEvents_specversion": "1.0", "cloudEvents_id": event_id,
            "cloudEvents_source": cloudevents_source(source),
            "cloudEvents_type": cloudevents_type(source, event_type, version),
            "cloudEvents_time": occurred_at, "cloudEvents_subject": aggregate_id,
            "cloudEvents_datacontenttype": "application/json",
            "cloudEvents_dataschema": dataschema(source, event_type, version)}


def sources() -> list[str]:
    return sorted(p.name for p in CATALOGUE_DIR.iterdir() if p.is_dir())


def _plain_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A catalogue schema as an AsyncAPI Schema Object (a superset of JSON Schema draft 7,
    which is all the catalogue's keywords are): without ``$schema`` and ``$id``."""
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}


def _headers_schema() -> dict[str, Any]:
    text = {"type": "string"}
    properties: dict[str, Any] = {
        "source": {**text, "description": "The publishing service."},
        "notification_id": {"type": "integer", "minimum": 1},
        "previous_notification_id": {
            "type": "integer", "minimum": 0,
            "description": "The notification id before this one in the source's log: a "
                           "subscriber that last applied a smaller one has a gap to fill."},
        "schema_version": {"type": "integer", "minimum": 1},
    }
    for name in CLOUDEVENTS_HEADERS:
        properties[f"cloudEvents_{name}"] = {**text, "description": f"CloudEvents 1.0 "
                                             f"attribute {name} (AMQP binding naming)."}
    return {"type": "object", "properties": properties,
            "required": ["source", "notification_id", "previous_notification_id",
                         "schema_version", "cloudEvents_id", "cloudEvents_source",
                         "cloudEvents_type", "cloudEvents_specversion"]}


@cache
def document(source: str) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of one source's events."""
    from tuoyu_shared.catalogue import payload_schema

    entries = [e for e in catalogue_index() if e["source"] == source]
    if not entries:
        raise KeyError(f"no events of {source!r} in the catalogue")
    envelope = _plain_schema(envelope_schema())
    messages: dict[str, Any] = {}
    latest: dict[str, int] = {}
    for entry in entries:
        latest[entry["event_type"]] = max(latest.get(entry["event_type"], 0),
                                          entry["schema_version"])
    for entry in entries:
        event_type, version = entry["event_type"], entry["schema_version"]
        key = f"{event_type}.v{version}"
        payload = json.loads(json.dumps(envelope))
        payload["properties"]["event_type"] = {"const": event_type}
        payload["properties"]["schema_version"] = {"const": version}
        payload["properties"]["source"] = {"const": source}
        payload["properties"]["payload"] = _plain_schema(
            payload_schema(source, event_type, version))
        current = version == latest[event_type]
        served = legacy_served(source).get((event_type, version))
        messages[key] = {
            "name": event_type, "title": f"{event_type} v{version}",
            "summary": (entry["description"] or event_type).split("\n")[0][:300],
            "contentType": "application/json",
            "headers": _headers_schema(),
            "payload": payload,
            "correlationId": {"location": "$message.header#/correlation_id"},
            "bindings": {"amqp": {"messageType": event_type, "bindingVersion": "0.3.0"}},
            "x-schema-version": version,
            "x-current": current,
            **({} if current else {"x-superseded-by": f"{event_type}.v{latest[event_type]}"}),
            "x-routing-key": event_type if current else (
                served["routing_key"] if served else None),
            **({"x-published-until": served["until"]} if served else {}),
        }
    refs = {key: {"$ref": f"#/components/messages/{key}"} for key in messages}
    checkpoint = {
        "type": "object", "required": ["format", "origin", "tree_size", "root_hash",
                                       "last_notification_id", "issued_at", "key_id",
                                       "signature"],
        "properties": {"format": {"const": "tuoyu-checkpoint/1"},
                       "origin": {"const": f"tuoyu/{source}"},
                       "tree_size": {"type": "integer", "minimum": 1},
                       "root_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                       "last_notification_id": {"type": "integer", "minimum": 1},
                       "issued_at": {"type": "string", "format": "date-time"},
                       "key_id": {"type": "string"},
                       "signature": {"type": "string", "description": "Ed25519 over the "
                                     "canonical JSON of the other fields, base64"}}}
    log_query = {"type": "object", "required": ["start"], "properties": {
        "start": {"type": "integer", "minimum": 1},
        "stop": {"type": "integer", "minimum": 1},
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000}}}
    log_reply = {"type": "object", "required": ["events", "count"], "properties": {
        "events": {"type": "array", "items": envelope}, "count": {"type": "integer"}}}
    exchange = {"type": "topic", "durable": True, "autoDelete": False, "vhost": "/"}
    return {
        "asyncapi": "3.0.0",
        "id": f"urn:tuoyu:{source}:events",
        "info": {
            "title": f"Tuoyu {source} events",
            "version": "1.0.0",
            "description": (
                f"What the {source} service publishes. Every message is the envelope "
                "(tuoyu:envelope:v1), its payload described per event type and schema "
                "version; old versions stay described while a subscriber may still receive "
                "them from the log (x-current: false). Apply each source's messages in "
                "notification_id order; a message whose previous_notification_id is past the "
                "last one applied means a gap: fill it from the log (operation fillGap). "
                "Personal data is carried only as a random ref. CloudEvents 1.0 attributes "
                "are AMQP headers (cloudEvents_*)."),
            "license": {"name": "Government open data"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "broker": {"host": "rabbitmq:5672", "protocol": "amqp",
                       "protocolVersion": "0.9.1",
                       "description": "The RabbitMQ of the deployment; subscribers connect as "
                                      "the read-only subscriber user and declare queues named "
                                      "subscriber.<name>."},
            "gateway": {"host": "gateway:8000", "protocol": "http",
                        "description": "The one HTTP way in; a subscriber's token."},
        },
        "channels": {
            "events": {"address": f"{source}.events", "title": f"{source}'s events",
                       "description": "Topic exchange; routing key = event_type for the "
                                      "current version of each type (bind * for all of "
                                      "them), <event_type>.v<N> for an earlier version "
                                      "still published until its x-published-until.",
                       "servers": [{"$ref": "#/servers/broker"}], "messages": refs,
                       "bindings": {"amqp": {"is": "routingKey", "exchange": {
                           "name": f"{source}.events", **exchange},
                           "bindingVersion": "0.3.0"}}},
            "checkpoints": {"address": f"{source}.checkpoints",
                            "title": "Signed checkpoints of the log",
                            "description": "Routing key checkpoint; each extends the one "
                                           "before (ask a consistency proof of the gateway).",
                            "servers": [{"$ref": "#/servers/broker"}],
                            "messages": {"Checkpoint": {
                                "$ref": "#/components/messages/Checkpoint"}},
                            "bindings": {"amqp": {"is": "routingKey", "exchange": {
                                "name": f"{source}.checkpoints", **exchange},
                                "bindingVersion": "0.3.0"}}},
            "log": {"address": f"/api/events/{source}", "title": "The notification log",
                    "description": "GET with the query start, stop and limit: the envelopes "
                                   "of that range, as published.",
                    "servers": [{"$ref": "#/servers/gateway"}],
                    "messages": {"LogQuery": {"$ref": "#/components/messages/LogQuery"},
                                 "LogPage": {"$ref": "#/components/messages/LogPage"}}},
        },
        "operations": {
            "receiveEvents": {"action": "receive", "channel": {"$ref": "#/channels/events"},
                              "summary": f"Every event {source} records, once it commits.",
                              "bindings": {"amqp": {"deliveryMode": 2, "ack": True,
                                                    "bindingVersion": "0.3.0"}},
                              "messages": [{"$ref": f"#/channels/events/messages/{key}"}
                                           for key in messages]},
            "receiveCheckpoints": {"action": "receive",
                                   "channel": {"$ref": "#/channels/checkpoints"},
                                   "messages": [{"$ref": "#/channels/checkpoints/messages/"
                                                         "Checkpoint"}]},
            "fillGap": {"action": "send", "channel": {"$ref": "#/channels/log"},
                        "summary": "Read a range of the log (a gap, or a replay from 1).",
                        "messages": [{"$ref": "#/channels/log/messages/LogQuery"}],
                        "bindings": {"http": {"method": "GET", "bindingVersion": "0.3.0"}},
                        "reply": {"channel": {"$ref": "#/channels/log"},
                                  "messages": [{"$ref": "#/channels/log/messages/LogPage"}]}},
        },
        "components": {"messages": {
            **messages,
            "Checkpoint": {"name": "Checkpoint", "contentType": "application/json",
                           "payload": checkpoint},
            "LogQuery": {"name": "LogQuery", "payload": log_query},
            "LogPage": {"name": "LogPage", "contentType": "application/json",
                        "payload": log_reply},
        }},
    }


def _fields(schema: dict[str, Any]) -> str:
    rows = []
    required = set(schema.get("required", []))
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") or " | ".join(
            str(o.get("type", "…")) for o in prop.get("anyOf", [])) or "…"
        if "format" in prop:
            kind = f"{kind} ({prop['format']})"
        if "enum" in prop:
            kind = f"{kind}: {', '.join(map(str, prop['enum']))}"
        rows.append(f"<tr><td><code>{html.escape(name)}</code></td><td>"
                    f"{html.escape(str(kind))}</td><td>{'是' if name in required else ''}"
                    f"</td><td>{html.escape(str(prop.get('description', '')))}</td></tr>")
    return ("<table><thead><tr><th>字段 field</th><th>类型 type</th><th>必填</th>"
            "<th>说明</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def page() -> str:
    """The readable catalogue (Chinese headings, the schemas' own words): every source's
    exchange, each event type and version with its fields, and the documents' links."""
    parts = ["<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
             "<title>托育事件目录 Tuoyu event catalogue</title><style>"
             "body{font-family:sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}"
             "table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;"
             "padding:.2rem .5rem;text-align:left;vertical-align:top}"
             ".old{color:#777}code{font-size:.95em}</style></head><body>"
             "<h1>托育事件目录 <small>Tuoyu event catalogue</small></h1>"
             "<p>每条消息都是统一信封（envelope），<code>payload</code> 按事件类型和版本描述。"
             "个人信息只以随机引用（ref）出现。CloudEvents 1.0 属性在 AMQP 消息头"
             "（<code>cloudEvents_*</code>）。按 <code>notification_id</code> 顺序处理；"
             "缺口用 <code>GET /api/events/&lt;service&gt;</code> 补齐。</p>"]
    index = []
    for source in sources():
        messages = [k for k, m in document(source)["components"]["messages"].items()
                    if "x-schema-version" in m]
        links = " ".join(f"<a href='#{source}-{k}'>{html.escape(k)}</a>" for k in messages)
        index.append(f"<li><a href='#{source}'><b>{source}</b></a> ({len(messages)}): "
                     f"<small>{links}</small></li>")
    parts.append(f"<h2>来源 Sources</h2><ul>{''.join(index)}</ul>")
    for source in sources():
        doc = document(source)
        parts.append(f"<h2 id='{source}'>{html.escape(source)}</h2><p>交换机 exchange "
                     f"<code>{source}.events</code>（topic，路由键 = 事件类型）· "
                     f"<a href='/catalogue/{source}/asyncapi.json'>AsyncAPI 3.0</a> · "
                     f"检查点 <code>{source}.checkpoints</code></p>")
        for key, message in doc["components"]["messages"].items():
            if "x-schema-version" not in message:
                continue
            schema = message["payload"]["properties"]["payload"]
            ce_type = cloudevents_type(source, message["name"], message["x-schema-version"])
            if message["x-current"]:
                status = f"当前版本 current · 路由键 <code>{message['x-routing-key']}</code>"
            elif "x-published-until" in message:
                status = (f"旧版本，发布至 {message['x-published-until']} 止 (served until), "
                          f"路由键 <code>{message['x-routing-key']}</code> · superseded by "
                          f"{message['x-superseded-by']}")
            else:
                status = (f"旧版本，不再发布，日志中的旧事件按此读取 superseded by "
                          f"{message['x-superseded-by']}")
            parts.append(
                f"<h3 id='{source}-{key}' class='{'' if message['x-current'] else 'old'}'>"
                f"{html.escape(message['title'])} <small>{status}</small></h3>"
                f"<p>{html.escape(schema.get('description', ''))}</p>"
                f"<p><a href='/catalogue/{source}/{key}.json'>JSON Schema</a> · CloudEvents "
                f"type <code>{ce_type}</code></p>{_fields(schema)}")
    parts.append("</body></html>")
    return "".join(parts)
