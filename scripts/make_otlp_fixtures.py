#!/usr/bin/env python3
"""Write the OTLP golden files the Swift exporter tests compare against.

The expected bytes come from the OFFICIAL OpenTelemetry protobuf definitions (PyPI
``opentelemetry-proto``), not from TraceBridge's own encoder, so a wrong field number,
wire type or varint in ``Sources/Exporters/OTLP`` shows up as a byte difference.

Writes into ``Tests/Fixtures/otlp/`` (or ``--out DIR``):

* ``spans.json`` -- the hand-specified input spans, one list per request; the Swift test
  (``Tests/ExportersTests/OTLPEncodingTests.swift``) builds its ``SpanRecord`` values from it.
* ``<request>.pb`` -- the ``ExportTraceServiceRequest``, ``SerializeToString(deterministic=True)``.
* ``<request>.json`` -- ``json_format.MessageToDict`` of the same message (enums as numbers,
  64-bit integers as strings), with trace and span ids turned from base64 into lower-case hex
  as the OTLP JSON encoding requires; written compact.

Requests: ``request`` (three spans of two services: Cyrillic, an arrow, every attribute
type, an empty string, events with attributes, a link, an error status, dropped events) and
``large_request`` (strings long enough that length prefixes need two and three bytes).

Grouping follows ``SpanBatcher``: one ``ResourceSpans`` per ``service.name``, services in
name order, spans in input order, one ``ScopeSpans`` with scope ``tracebridge`` ``0.1.0``.

Run from the repository root: ``python3 scripts/make_otlp_fixtures.py``. The output depends
only on this file.
"""

import argparse
import base64
import json
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

SCOPE = {"name": "tracebridge", "version": "0.1.0"}

TRACE_A = "99b73e160bf8e396404e6f5eed6e0a51"
TRACE_UPSTREAM = "0af7651916cd43dd8448eb211c80319c"
ROOT_A = "7560ba59c2dad063"

# Attribute values are typed: {"key", "type": string|int|bool|double|repeat, "value"}.
# int values are strings (exact int64 in any JSON reader); "repeat" is
# {"text", "count"}: text repeated count times (long strings without a long file).
REQUEST = [
    {
        "service": "MES",
        "traceId": TRACE_A,
        "spanId": "e4301cb477f6e448",
        "parentSpanId": ROOT_A,
        "name": "PAID → IN_PRODUCTION",
        "kind": 1,
        "startTimeUnixNano": "1774742398123456789",
        "endTimeUnixNano": "1774745998987654321",
        "attributes": [
            {"key": "order.id", "type": "string", "value": "Заказ-123"},
            {"key": "order.status.from", "type": "string", "value": "PAID"},
            {"key": "order.status.to", "type": "string", "value": "IN_PRODUCTION"},
            {"key": "enduser.id", "type": "string", "value": "u1042"},
            {"key": "mes.note", "type": "string", "value": ""},
            {"key": "mes.line", "type": "int", "value": "7"},
            {"key": "mes.offset", "type": "int", "value": "-1"},
            {"key": "mes.big", "type": "int", "value": "9223372036854775807"},
            {"key": "mes.rework", "type": "bool", "value": True},
            {"key": "mes.load", "type": "double", "value": 0.25},
            {"key": "tracebridge.rule", "type": "string", "value": "mes_status"},
        ],
        "events": [
            {
                "timeUnixNano": "1774742400000000001",
                "name": "Задание J-00077 создано",
                "attributes": [
                    {"key": "service.name", "type": "string", "value": "MES"},
                    {"key": "mes.job", "type": "string", "value": "J-00077"},
                ],
            },
            {"timeUnixNano": "1774742500000000000", "name": "status IN_PRODUCTION repeated", "attributes": []},
        ],
        "droppedEventsCount": 5,
        "links": [
            {
                "traceId": TRACE_UPSTREAM,
                "spanId": "b7ad6b7169203331",
                "attributes": [{"key": "link.source", "type": "string", "value": "traceparent"}],
            }
        ],
        "status": {"code": 2, "message": "конвейер остановлен: нет материала"},
    },
    {
        "service": "CRM",
        "traceId": TRACE_A,
        "spanId": "00f067aa0ba902b7",
        "parentSpanId": ROOT_A,
        "name": "CREATED → PAID",
        "kind": 1,
        "startTimeUnixNano": "1774742000000000000",
        "endTimeUnixNano": "1774742398123456789",
        "attributes": [
            {"key": "order.id", "type": "string", "value": "Заказ-123"},
            {"key": "crm.amount", "type": "double", "value": -1.5e-07},
            {"key": "crm.zero", "type": "double", "value": 0.0},
            {"key": "crm.retry", "type": "bool", "value": False},
            {"key": "crm.count", "type": "int", "value": "0"},
        ],
        "events": [],
        "droppedEventsCount": 0,
        "links": [],
        "status": {"code": 0, "message": ""},
    },
    {
        "service": "CRM",
        "traceId": TRACE_A,
        "spanId": "0000000000000001",
        "name": "order.paid",
        "kind": 4,
        "startTimeUnixNano": "1774742398123456789",
        "endTimeUnixNano": "1774742398123456789",
        "attributes": [
            {"key": "order.id", "type": "string", "value": "Заказ-123"},
            {"key": "messaging.system", "type": "string", "value": "rabbitmq"},
        ],
        "events": [],
        "droppedEventsCount": 0,
        "links": [],
        "status": {"code": 1, "message": ""},
    },
]

LARGE_REQUEST = [
    {
        "service": "Shop",
        "traceId": TRACE_A,
        "spanId": "1111111111111111",
        "parentSpanId": ROOT_A,
        "name": "длинный шаг",
        "kind": 1,
        "startTimeUnixNano": "1774742000000000000",
        "endTimeUnixNano": "1774742001000000000",
        "attributes": [
            # 2 + 2 * 70 = 142 bytes of UTF-8: the value's length needs two bytes.
            {"key": "shop.medium", "type": "repeat", "value": {"text": "ая", "count": 70}},
        ],
        "events": [
            {
                "timeUnixNano": "1774742000500000000",
                "name": "payload",
                # 20,000 bytes: the attribute, the event and the span need three-byte lengths.
                "attributes": [{"key": "shop.body", "type": "repeat", "value": {"text": "0123456789", "count": 2000}}],
            }
        ],
        "droppedEventsCount": 0,
        "links": [],
        "status": {"code": 2, "message": "x" * 130},
    }
]

REQUESTS = {"request": REQUEST, "large_request": LARGE_REQUEST}


def attribute_value(attribute):
    kind, value = attribute["type"], attribute["value"]
    if kind == "string":
        return common_pb2.AnyValue(string_value=value)
    if kind == "repeat":
        return common_pb2.AnyValue(string_value=value["text"] * value["count"])
    if kind == "int":
        return common_pb2.AnyValue(int_value=int(value))
    if kind == "bool":
        return common_pb2.AnyValue(bool_value=value)
    if kind == "double":
        return common_pb2.AnyValue(double_value=value)
    raise ValueError(f"unknown attribute type {kind!r}")


def add_attributes(target, attributes):
    for a in attributes:
        kv = target.add()
        kv.key = a["key"]
        kv.value.CopyFrom(attribute_value(a))


def build_span(spec):
    span = trace_pb2.Span()
    span.trace_id = bytes.fromhex(spec["traceId"])
    span.span_id = bytes.fromhex(spec["spanId"])
    if "parentSpanId" in spec:
        span.parent_span_id = bytes.fromhex(spec["parentSpanId"])
    span.name = spec["name"]
    span.kind = spec["kind"]
    span.start_time_unix_nano = int(spec["startTimeUnixNano"])
    span.end_time_unix_nano = int(spec["endTimeUnixNano"])
    add_attributes(span.attributes, spec["attributes"])
    for e in spec["events"]:
        event = span.events.add()
        event.time_unix_nano = int(e["timeUnixNano"])
        event.name = e["name"]
        add_attributes(event.attributes, e["attributes"])
    span.dropped_events_count = spec["droppedEventsCount"]
    for link_spec in spec["links"]:
        link = span.links.add()
        link.trace_id = bytes.fromhex(link_spec["traceId"])
        link.span_id = bytes.fromhex(link_spec["spanId"])
        add_attributes(link.attributes, link_spec["attributes"])
    # TraceBridge writes Status only when it says something (proto3 omits an all-default message).
    if spec["status"]["code"] != 0 or spec["status"]["message"]:
        span.status.code = spec["status"]["code"]
        span.status.message = spec["status"]["message"]
    return span


def build_request(specs):
    request = trace_service_pb2.ExportTraceServiceRequest()
    for service in sorted({s["service"] for s in specs}):
        resource_spans = request.resource_spans.add()
        kv = resource_spans.resource.attributes.add()
        kv.key = "service.name"
        kv.value.string_value = service
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = SCOPE["name"]
        scope_spans.scope.version = SCOPE["version"]
        for spec in specs:
            if spec["service"] == service:
                scope_spans.spans.add().CopyFrom(build_span(spec))
    return request


def hex_ids(node):
    """OTLP JSON carries trace and span ids as hex, where the protobuf JSON mapping has base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId"):
                node[key] = base64.b64decode(value).hex()
            else:
                hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            hex_ids(item)
    return node


def main():
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=root / "Tests" / "Fixtures" / "otlp")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with open(args.out / "spans.json", "w", encoding="utf-8") as f:
        json.dump({"scope": SCOPE, "requests": REQUESTS}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    for name, specs in REQUESTS.items():
        request = build_request(specs)
        (args.out / f"{name}.pb").write_bytes(request.SerializeToString(deterministic=True))
        as_dict = hex_ids(json_format.MessageToDict(request, use_integers_for_enums=True))
        with open(args.out / f"{name}.json", "w", encoding="utf-8") as f:
            json.dump(as_dict, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        print(f"{name}: {len(specs)} spans, {request.ByteSize()} bytes")


if __name__ == "__main__":
    main()
