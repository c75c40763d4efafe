"""Decode the bridge's `file:` export (OTLP JSON lines) into the receiver's span dicts.

Each line is one OTLP JSON `ExportTraceServiceRequest`. OTLP JSON writes `traceId`,
`spanId` and `parentSpanId` (and the ids of links) as hex — the OTLP spec's exception to
the protobuf JSON mapping — while `json_format` reads `bytes` fields as base64. So those
keys are converted from hex to base64 and the rest is left to `json_format.ParseDict`: the
file is never decoded by hand, and a field the official definitions do not know fails the
test instead of being skipped.
"""

from __future__ import annotations

import base64
import json
import re

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otlp_receiver import request_records

ID_KEYS = ("traceId", "spanId", "parentSpanId")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


class OTLPJSONError(ValueError):
    pass


def _hex_to_base64(value, where):
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise OTLPJSONError(f"{where}: expected a hex id (OTLP JSON), got {value!r}")
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def _convert_ids(obj, where):
    for key in ID_KEYS:
        if key in obj:
            obj[key] = _hex_to_base64(obj[key], f"{where}.{key}")


def hex_ids_to_base64(request_json, where="request"):
    """Rewrite, in place, the hex ids of an OTLP JSON request so `json_format` can read them."""
    for r, resource_spans in enumerate(request_json.get("resourceSpans", [])):
        for s, scope_spans in enumerate(resource_spans.get("scopeSpans", [])):
            for i, span in enumerate(scope_spans.get("spans", [])):
                at = f"{where}.resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                _convert_ids(span, at)
                for j, link in enumerate(span.get("links", [])):
                    _convert_ids(link, f"{at}.links[{j}]")
    return request_json


def parse_request_line(line, where="line"):
    """One OTLP JSON line as an `ExportTraceServiceRequest`."""
    try:
        request_json = json.loads(line)
    except json.JSONDecodeError as exc:
        raise OTLPJSONError(f"{where}: not JSON: {exc}") from exc
    hex_ids_to_base64(request_json, where)
    try:
        return json_format.ParseDict(request_json, ExportTraceServiceRequest())
    except json_format.ParseError as exc:
        raise OTLPJSONError(f"{where}: not an OTLP ExportTraceServiceRequest: {exc}") from exc


def load_file_export(path):
    """All spans of a `file:` export, as `otlp_receiver.span_record` dicts, in file order."""
    spans = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                spans.extend(request_records(parse_request_line(line, f"{path}:{number}")))
    return spans
