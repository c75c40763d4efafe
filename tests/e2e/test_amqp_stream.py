"""Bus history and sample messages, against a real RabbitMQ broker (scripts/rabbitmq):

- `tracebridge backfill --amqp-stream QUEUE --since T` replays a stream queue
  (`x-queue-type: stream`) through the rules of the source that consumes the live queue: the
  order spans it exports (decoded with opentelemetry-proto) are the ones `tracebridge run`
  sends for the same messages, byte for byte, and messages before --since are not replayed;
- `tracebridge rules test --message` shows the event a sample message makes (also of a gzipped
  body), or why it would be dead-lettered.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest

from amqp_helpers import Broker, _blocking, free_port, publish
from conftest import run_backfill
from otlp_decode import load_file_export
from test_live import ARRIVE_TIMEOUT, Bridge, PortReceiver, wait_for

SECRET = "amqp-stream-secret"
STATUSES = ["CREATED", "PAID", "SHIPPED", "DELIVERED"]
EXCHANGE = "tb.history"
LIVE_Q = "tb.history.live"
STREAM_Q = "tb.history.stream"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("rabbitmq"), free_port())
    b.start()
    yield b
    b.stop()


def config(broker: Broker, data: Path, listen: int | None = None, receiver: str | None = None) -> str:
    text = f"""
namespace: amqp-stream
ids: {{secret: {SECRET}}}
data_dir: {data}
orders: {{final_statuses: [DELIVERED], final_grace: 1s, horizon: 1h}}
amqp: {{url: '{broker.url}', heartbeat: 10s}}
sources:
  - name: bus
    service: Shop
    amqp: {{queue: {LIVE_Q}, prefetch: 500}}
rules:
  - name: bus-status
    source: bus
    json: {{order: /body/orderId, status: /body/status, ts: /body/occurredAt}}
    event: {{order_id: '${{order}}', kind: status_change, status: '${{status}}'}}
"""
    if receiver:
        text += f"""exporter: {{endpoint: {receiver}, retry: {{initial_interval: 200ms, max_interval: 1s}}}}
live: {{listen: '127.0.0.1:{listen}', poll_interval: 50ms, reorder_window: 300ms, commit_interval: 100ms}}
"""
    return text


def declare(broker: Broker):
    conn = _blocking(broker.url)
    ch = conn.channel()
    ch.exchange_declare(EXCHANGE, exchange_type="fanout", durable=True)
    ch.queue_declare(STREAM_Q, durable=True, arguments={"x-queue-type": "stream"})
    ch.queue_declare(LIVE_Q, durable=True)
    ch.queue_bind(STREAM_Q, EXCHANGE)
    ch.queue_bind(LIVE_Q, EXCHANGE)
    conn.close()


def orders_messages(orders, base: float):
    bodies, props = [], []
    for k, order in enumerate(orders):
        for i, status in enumerate(STATUSES):
            t = base + k * 0.01 + i * 0.1
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"
            bodies.append(json.dumps({"orderId": str(order), "status": status, "occurredAt": ts}))
            props.append({"message_id": f"{order}-{status}", "content_type": "application/json",
                          "timestamp": int(t)})
    return bodies, props


def by_order(spans) -> dict:
    out = defaultdict(list)
    for s in spans:
        out[s["attributes"].get("order.id")].append(s)
    return out


def test_stream_replay_from_since_makes_the_spans_run_made(tmp_path, broker, bridge_bin):
    declare(broker)
    old = [str(o) for o in range(4_100_000, 4_100_020)]
    new = [str(o) for o in range(4_200_000, 4_200_030)]
    base_old = time.time() - 120
    bodies, props = orders_messages(map(int, old), base_old)
    publish(broker.url, EXCHANGE, "", bodies, properties=lambda i: props[i])
    # Stream offsets by timestamp are kept per chunk: leave a gap the broker can tell apart.
    time.sleep(2.5)
    since = time.time()
    time.sleep(1.1)
    bodies, props = orders_messages(map(int, new), time.time())
    publish(broker.url, EXCHANGE, "", bodies, properties=lambda i: props[i])

    # The live bridge consumes the classic queue bound to the same exchange.
    receiver = PortReceiver(tmp_path / "receiver")
    receiver.start()
    listen = free_port()
    live_cfg = tmp_path / "live.yaml"
    live_cfg.write_text(config(broker, tmp_path / "live-data", listen, receiver.url))
    bridge = Bridge(bridge_bin, live_cfg, tmp_path / "live")
    try:
        bridge.start()

        def complete():
            receiver.spans.poll()
            got = by_order(receiver.spans.spans)
            return all(len([s for s in got.get(o, []) if "→" in s["name"]]) == 3 for o in old + new)
        wait_for(complete, ARRIVE_TIMEOUT, lambda: f"the live bridge did not send every order\n{bridge.describe()}")
        assert bridge.terminate() == 0
    finally:
        bridge.cleanup()
        receiver.stop()
    live = {s["span_id"]: s for s in receiver.spans.spans if "→" in s["name"]}

    # The replay: only the stream, from --since.
    cfg = tmp_path / "backfill.yaml"
    cfg.write_text(config(broker, tmp_path / "bf-data"))
    out = tmp_path / "replay.jsonl"
    since_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    run = run_backfill(bridge_bin, cfg, "--amqp-stream", STREAM_Q, "--since", since_text,
                       "--amqp-idle", "2", export=f"file:{out}", work=tmp_path / "bf", store=False)
    run.expect_exit(0)
    replay = load_file_export(out)
    got = by_order(replay)
    assert not set(old) & set(got), f"orders before --since were replayed: {sorted(set(old) & set(got))[:5]}"
    assert set(new) <= set(got), f"orders missing from the replay: {sorted(set(new) - set(got))[:5]}"
    for o in new:
        names = sorted(s["name"] for s in got[o])
        assert names == sorted(["CREATED → PAID", "PAID → SHIPPED", "SHIPPED → DELIVERED", f"order {o}"]), (o, names)
        assert all(s["service"] == "Shop" for s in got[o])
        assert all(s["attributes"].get("messaging.destination.name") == EXCHANGE
                   for s in got[o] if "→" in s["name"])
    transitions = [s for s in replay if "→" in s["name"]]
    assert len(transitions) == 3 * len(new)
    different = [s["name"] for s in transitions if live.get(s["span_id"], {}).get("raw") != s["raw"]]
    assert not different, f"{len(different)} replayed spans differ from the live ones: {different[:5]}"
    summary = run.summary
    assert summary["records"] >= 4 * len(new), summary
    assert summary["unmatched"] == 0, summary

    # A second replay of the same history is byte-identical.
    out2 = tmp_path / "replay2.jsonl"
    run_backfill(bridge_bin, cfg, "--amqp-stream", STREAM_Q, "--since", since_text, "--amqp-idle", "2",
                 export=f"file:{out2}", work=tmp_path / "bf2", store=False).expect_exit(0)
    assert sorted(s["raw"] for s in load_file_export(out2)) == sorted(s["raw"] for s in replay)


def test_stream_replay_of_a_missing_queue_fails_naming_it(tmp_path, broker, bridge_bin):
    cfg = tmp_path / "backfill.yaml"
    cfg.write_text(config(broker, tmp_path / "data"))
    run = run_backfill(bridge_bin, cfg, "--amqp-stream", "tb.no.such.stream", "--amqp-idle", "1",
                       export=f"file:{tmp_path / 'out.jsonl'}", store=False)
    assert run.returncode == 4, run.describe()
    assert "tb.no.such.stream" in run.stderr and "NOT_FOUND" in run.stderr, run.describe()


def test_rules_test_shows_the_event_of_each_sample_message(tmp_path, bridge_bin):
    cfg = tmp_path / "tb.yaml"
    cfg.write_text(f"""
ids: {{secret: rules-test-secret}}
amqp: {{url: 'amqp://localhost:5672/'}}
sources:
  - name: mes-bus
    service: MES
    timezone: Europe/Moscow
    amqp: {{queue: mes.events}}
rules:
  - name: job-started
    source: mes-bus
    xml: {{order: '/m:Job/@order', ts: '/m:Job/m:Time', station: /m:Job/m:Station}}
    namespaces: {{m: 'urn:mes'}}
    timestamp: {{format: 'dd.MM.yyyy HH:mm:ss'}}
    event: {{order_id: '${{order}}', kind: step_start, step: production, attributes: {{station: '${{station}}'}}}}
""")
    good = tmp_path / "job.xml"
    good.write_bytes('<?xml version="1.0" encoding="windows-1251"?><m:Job xmlns:m="urn:mes" order="77">'
                     '<m:Time>01.12.2026 13:05:00</m:Time><m:Station>Сборка-1</m:Station></m:Job>'.encode("cp1251"))
    (tmp_path / "job.xml.amqp.json").write_text(json.dumps(
        {"properties": {"content_type": "application/xml", "routing_key": "mes.job.started"}}))
    bad = tmp_path / "bad.xml"
    bad.write_text("<m:Job><oops></m:Job>")
    # The same body gzipped, as Spring AMQP sends large payloads.
    packed = tmp_path / "job.xml.gz"
    packed.write_bytes(gzip.compress(good.read_bytes()))
    (tmp_path / "job.xml.gz.amqp.json").write_text(json.dumps(
        {"properties": {"content_type": "application/xml", "content_encoding": "gzip"}}))
    done = subprocess.run([str(bridge_bin), "rules", "test", "-c", str(cfg), "--message", str(good),
                           "--message", str(bad), "--message", str(packed)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["rule"] == "job-started"
    assert lines[0]["charset"] == "windows-1251"
    assert lines[0]["event"]["order_id"] == "77"
    assert lines[0]["event"]["time"] == "2026-12-01T10:05:00Z"
    assert lines[0]["event"]["attributes"]["station"] == "Сборка-1"
    assert lines[1]["dead_letter"].startswith("not well-formed XML: line 1:"), lines[1]
    assert lines[2]["rule"] == "job-started" and lines[2]["event"] == lines[0]["event"], lines[2]
    # --properties with several messages is refused with a reason.
    done = subprocess.run([str(bridge_bin), "rules", "test", "-c", str(cfg), "--message", str(good),
                           "--message", str(bad), "--properties", str(tmp_path / "job.xml.amqp.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "--properties goes with exactly one --message" in done.stderr
