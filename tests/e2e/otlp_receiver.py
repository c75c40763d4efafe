#!/usr/bin/env python3
"""A real OTLP/HTTP trace receiver for end-to-end tests.

Stands in for Jaeger/the Collector, which cannot be installed here: it accepts
`POST /v1/traces` with an OTLP protobuf body (optionally gzip-compressed), decodes it with
the official definitions (PyPI `opentelemetry-proto`) and appends every accepted span as
one JSON line to `--out`. Every request, accepted or not, is logged to
`<out>.requests.jsonl` so tests can count attempts and retries.

    python3 tests/e2e/otlp_receiver.py --port 0 --out spans.jsonl --ready-file ready \
        [--fail-first N --fail-status 503 --retry-after 1] [--always-status 400]

`--port 0` picks a free port; the port actually bound is written to `--ready-file` once the
server is listening. SIGTERM (or SIGINT) stops it cleanly.

`span_record` (span -> JSON-able dict) is shared with `otlp_decode.py`, so spans received
over HTTP and spans read from the bridge's `file:` export compare field by field and by
their `raw` bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import signal
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

TRACES_PATH = "/v1/traces"


# ---------------------------------------------------------------------------
# span -> dict (shared with otlp_decode.py)
# ---------------------------------------------------------------------------

def any_value(value):
    """An OTLP `AnyValue` as a plain Python value (bytes become a hex string)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def attributes(key_values):
    """A repeated `KeyValue` as a dict (a repeated key keeps its last value, as the SDKs do)."""
    return {kv.key: any_value(kv.value) for kv in key_values}


def canonical_bytes(span):
    """The span's deterministic protobuf encoding, with an all-default `status` left out.

    Proto3 tracks presence of message fields: a protobuf sender that omits `status` and an
    OTLP JSON writer that writes `"status": {}` describe the same span, but `ParseDict`
    marks the empty status present and it would serialize as two extra bytes. Leaving an
    empty status out makes `raw` equal for equal spans whichever transport carried them.
    """
    if span.HasField("status") and span.status.ByteSize() == 0:
        span = type(span).FromString(span.SerializeToString())
        span.ClearField("status")
    return span.SerializeToString(deterministic=True)


def span_record(span, resource_attrs, scope_name):
    """One span as the JSON-able dict the tests compare.

    `raw` is the span's deterministic protobuf encoding (`canonical_bytes`): two spans with
    equal `raw` are byte-identical, whichever transport (OTLP/HTTP protobuf or OTLP JSON
    file) carried them.
    """
    return {
        "service": resource_attrs.get("service.name"),
        "resource": resource_attrs,
        "scope": scope_name,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "name": span.name,
        "kind": int(span.kind),
        "start": int(span.start_time_unix_nano),
        "end": int(span.end_time_unix_nano),
        "attributes": attributes(span.attributes),
        "events": [
            {"name": e.name, "time": int(e.time_unix_nano), "attributes": attributes(e.attributes)}
            for e in span.events
        ],
        "links": [
            {"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex(),
             "attributes": attributes(l.attributes)}
            for l in span.links
        ],
        "status": {"code": int(span.status.code), "message": span.status.message},
        "raw": canonical_bytes(span).hex(),
    }


def request_records(request):
    """Every span of an `ExportTraceServiceRequest` as a `span_record` dict, in request order."""
    records = []
    for resource_spans in request.resource_spans:
        resource_attrs = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                records.append(span_record(span, resource_attrs, scope_spans.scope.name))
    return records


def count_spans(request):
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


# ---------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------

class ReceiverState:
    """What all handler threads share: the failure plan and the two output files."""

    def __init__(self, out_path, fail_first, fail_status, retry_after, always_status):
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.always_status = always_status
        self.lock = threading.Lock()
        self.requests_seen = 0
        self.out = open(out_path, "a", encoding="utf-8")
        self.requests_log = open(out_path + ".requests.jsonl", "a", encoding="utf-8")

    def close(self):
        with self.lock:
            self.out.close()
            self.requests_log.close()


class OTLPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as OTLP exporters expect
    server_version = "otlp-test-receiver/1"

    def log_message(self, fmt, *args):  # quiet: tests read the request log instead
        pass

    @property
    def state(self) -> ReceiverState:
        return self.server.state

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _respond(self, status, body=b"", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_POST(self):
        body = self._read_body()
        if self.path.split("?")[0] != TRACES_PATH:
            self._respond(404)
            return
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        entry = {"status": None, "spans": 0, "bytes": len(body), "gzip": encoding == "gzip",
                 "content_type": content_type, "time": time.time()}
        request = None
        status = 200
        error = None
        try:
            if encoding == "gzip":
                payload = gzip.decompress(body)
            elif encoding in ("", "identity"):
                payload = body
            elif encoding == "deflate":
                payload = zlib.decompress(body)
            else:
                raise ValueError(f"unsupported Content-Encoding {encoding!r}")
            entry["sha256"] = hashlib.sha256(payload).hexdigest()
            if content_type != "application/x-protobuf":
                status, error = 415, f"unsupported Content-Type {content_type!r}"
            else:
                request = ExportTraceServiceRequest.FromString(payload)
                entry["spans"] = count_spans(request)
        except Exception as exc:  # a bad body is the sender's bug: say so, keep serving
            status, error = 400, f"{type(exc).__name__}: {exc}"

        headers = []
        with self.state.lock:
            self.state.requests_seen += 1
            if status == 200:
                if self.state.always_status is not None:
                    status = self.state.always_status
                elif self.state.requests_seen <= self.state.fail_first:
                    status = self.state.fail_status
                    if self.state.retry_after is not None:
                        headers.append(("Retry-After", str(self.state.retry_after)))
            if status == 200:
                for record in request_records(request):
                    self.state.out.write(json.dumps(record, ensure_ascii=False) + "\n")
                self.state.out.flush()
            entry["status"] = status
            if error:
                entry["error"] = error
            self.state.requests_log.write(json.dumps(entry) + "\n")
            self.state.requests_log.flush()

        response = ExportTraceServiceResponse().SerializeToString() if status == 200 else b""
        self._respond(status, response, headers)

    def do_GET(self):
        self._read_body()
        self._respond(405 if self.path.split("?")[0] == TRACES_PATH else 404)


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True       # open keep-alive connections do not hold up a SIGTERM
    request_queue_size = 128    # an exporter's burst of parallel requests is not refused


def main(argv=None):
    parser = argparse.ArgumentParser(description="OTLP/HTTP trace receiver for tests")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--out", required=True, help="accepted spans, one JSON object a line")
    parser.add_argument("--fail-first", type=int, default=0,
                        help="answer the first N requests with --fail-status, store nothing")
    parser.add_argument("--fail-status", type=int, default=503)
    parser.add_argument("--retry-after", help="Retry-After value sent with --fail-status")
    parser.add_argument("--always-status", type=int,
                        help="answer every request with this status, store nothing")
    parser.add_argument("--ready-file", help="the bound port is written here once listening")
    args = parser.parse_args(argv)

    state = ReceiverState(args.out, args.fail_first, args.fail_status, args.retry_after,
                          args.always_status)
    server = ReceiverServer(("127.0.0.1", args.port), OTLPHandler)
    server.state = state

    serve_until_signalled(server, args.ready_file, "otlp-receiver")
    state.close()
    return 0


def serve_until_signalled(server, ready_file: str | None, name: str) -> None:
    """Serve on a thread until SIGTERM or SIGINT; once listening, write the bound port to
    `ready_file` (it appears whole: readers never see a partial port). Also used by
    scripts/bench_live_receiver.py."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name)
    serving.start()
    port = server.server_address[1]
    if ready_file:
        tmp = ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, ready_file)
    print(f"{name} listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    serving.join()
    server.server_close()


if __name__ == "__main__":
    sys.exit(main())
