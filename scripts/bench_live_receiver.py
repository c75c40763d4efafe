#!/usr/bin/env python3
"""A timing OTLP/HTTP trace receiver for `scripts/bench_live`.

Accepts `POST /v1/traces` (OTLP protobuf, optionally gzip), decodes it with the official
definitions (PyPI `opentelemetry-proto`) and appends one text line per span to `--out`:

    <receipt unix seconds, 6 decimals> <end_time_unix_nano> <T|O> <span id hex>

The receipt time is `time.time()` when the request arrived (its headers had been read),
taken before the body is read and decoded, so decoding cost is not counted as latency.
`T` marks a transition span (its name contains " → "), `O` any other span.

`GET /stats` answers JSON counters (requests, spans, transitions, last receipt time), which
the benchmark polls to know when the spans have stopped coming.

    python3 scripts/bench_live_receiver.py --port 0 --out spans.txt --ready-file ready

`--port 0` picks a free port; the bound port is written to `--ready-file` once listening.
SIGTERM or SIGINT stops it cleanly. It always answers 200 to a decodable request.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from otlp_receiver import serve_until_signalled  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

TRACES_PATH = "/v1/traces"
ARROW = " → "
OK_BODY = ExportTraceServiceResponse().SerializeToString()


class State:
    def __init__(self, out_path: str):
        self.lock = threading.Lock()
        self.out = open(out_path, "a", encoding="utf-8", buffering=1 << 20)
        self.requests = 0
        self.bad_requests = 0
        self.spans = 0
        self.transitions = 0
        self.first_receipt = None
        self.last_receipt = None

    def stats(self) -> dict:
        with self.lock:
            return {"requests": self.requests, "bad_requests": self.bad_requests,
                    "spans": self.spans, "transitions": self.transitions,
                    "first_receipt": self.first_receipt, "last_receipt": self.last_receipt,
                    "now": time.time()}

    def close(self):
        with self.lock:
            self.out.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tracebridge-bench-receiver/1"

    def log_message(self, fmt, *args):
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _respond(self, status: int, body: bytes = b"", content_type="application/x-protobuf"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_POST(self):
        receipt = time.time()
        state: State = self.server.state
        body = self._read_body()
        if self.path.split("?")[0] != TRACES_PATH:
            self._respond(404)
            return
        try:
            encoding = self.headers.get("Content-Encoding", "").strip().lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            request = ExportTraceServiceRequest.FromString(body)
        except Exception as exc:  # the sender's bug: say so, keep serving
            with state.lock:
                state.requests += 1
                state.bad_requests += 1
            self._respond(400, f"{type(exc).__name__}: {exc}".encode(), "text/plain")
            return
        stamp = f"{receipt:.6f} "
        lines = []
        transitions = 0
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    kind = "T" if ARROW in span.name else "O"
                    transitions += kind == "T"
                    lines.append(f"{stamp}{span.end_time_unix_nano} {kind} {span.span_id.hex()}\n")
        with state.lock:
            state.out.write("".join(lines))
            state.out.flush()
            state.requests += 1
            state.spans += len(lines)
            state.transitions += transitions
            if state.first_receipt is None:
                state.first_receipt = receipt
            if lines:
                state.last_receipt = receipt
        self._respond(200, OK_BODY)

    def do_GET(self):
        if self.path.split("?")[0] == "/stats":
            self._respond(200, json.dumps(self.server.state.stats()).encode(), "application/json")
        else:
            self._respond(404)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="timing OTLP/HTTP receiver for bench_live")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--out", required=True, help="one line per received span")
    parser.add_argument("--ready-file", help="the bound port is written here once listening")
    args = parser.parse_args(argv)

    state = State(args.out)
    server = Server(("127.0.0.1", args.port), Handler)
    server.state = state
    serve_until_signalled(server, args.ready_file, "bench-receiver")
    state.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
