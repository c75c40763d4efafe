"""`tracebridge run` against RabbitMQ over TLS, and two bridges as competing consumers of one
queue: a real broker (scripts/rabbitmq on loopback, with a TLS listener that requires client
certificates from a throwaway CA), real bridge processes, real OTLP receiver processes
decoding with opentelemetry-proto, messages published with pika and publisher confirms.

What is asserted:
- over amqps with the CA and a client certificate (credentials from `user_env` and
  `password_file`), every published order's spans arrive, every message is acknowledged, and
  the broker sees the bridge's connection as TLS with the client certificate's subject;
- with a CA that did not sign the server certificate, without a client certificate, or
  connecting by IP address (the certificate names DNS:localhost only), nothing is consumed
  (the messages stay ready, no consumer), the bridge logs the failed connection naming the
  broker, stays alive, keeps retrying (tracebridge_amqp_reconnects_total grows) and still
  stops cleanly on SIGTERM;
- two bridges (own data_dir, own /metrics, own receiver, same namespace and secret) on one
  queue: each message's span (its transition, its `status` event on a root span, or its
  PRODUCER span, told apart by `messaging.message.id`) is exported exactly once across
  both, both take a share, every span of an order carries the trace id derived from the
  order id whichever bridge sent it, and each bridge builds transitions and root spans from
  the events it saw (see the root-span notes in that test).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pytest

from amqp_helpers import Broker, declare_queue, free_port, publish, queue_counts, tls_probe
from test_live import ARRIVE_TIMEOUT, Bridge, PortReceiver, wait_for

SECRET = "amqp-cluster-test-secret"
NAMESPACE = "amqp-cluster-test"
STATUSES = ["CREATED", "PAID", "SHIPPED", "DELIVERED"]
USER_ENV = "TB_TEST_AMQP_USER"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """One broker for the module: plain AMQP for publishing and inspecting, TLS for the
    bridge's TLS tests."""
    b = Broker(tmp_path_factory.mktemp("rabbitmq-tls"), free_port(), tls=True)
    b.start()
    yield b
    b.stop()


# ---------------------------------------------------------------------------
# configuration, messages, spans
# ---------------------------------------------------------------------------

def config_text(amqp: dict, queue: str, data: Path, receiver: PortReceiver, *,
                prefetch: int = 500, final_grace: str = "1s", horizon: str = "1h") -> str:
    return f"""
namespace: {NAMESPACE}
ids: {{secret: {SECRET}}}
data_dir: {data}
orders: {{final_statuses: [DELIVERED], final_grace: {final_grace}, horizon: {horizon}}}
amqp: {json.dumps(amqp)}
sources:
  - name: bus
    service: Shop
    amqp: {{queue: {queue}, prefetch: {prefetch}}}
rules:
  - name: bus-status
    source: bus
    json: {{order: /body/orderId, status: /body/status, ts: /body/occurredAt, user: /body/userId}}
    event: {{order_id: '${{order}}', kind: status_change, status: '${{status}}', user_id: '${{user}}'}}
  - name: bus-published
    source: bus
    json: {{order: /body/orderId, event: /body/event, ts: /properties/timestamp}}
    where: {{event: '^order[.]published$'}}
    timestamp: {{field: ts, format: epoch_seconds}}
    event: {{order_id: '${{order}}', kind: bus_publish, name: order.published}}
exporter:
  endpoint: {receiver.url}
  retry: {{initial_interval: 200ms, max_interval: 1s}}
live:
  listen: 127.0.0.1:{free_port()}
  poll_interval: 50ms
  reorder_window: 500ms
  commit_interval: 100ms
"""


def iso_ms(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def order_messages(orders, base: float):
    """Per order: its four statuses 100 ms apart (message ids `<order>-<STATUS>`) and one
    order.published event (`<order>-published`), in that order, order after order."""
    bodies, props = [], []
    for k, order in enumerate(orders):
        t0 = base + k * 0.001
        for i, status in enumerate(STATUSES):
            bodies.append(json.dumps({"orderId": str(order), "status": status,
                                      "occurredAt": iso_ms(t0 + i * 0.1),
                                      "userId": f"u{order % 100}"}))
            props.append({"message_id": f"{order}-{status}", "content_type": "application/json"})
        bodies.append(json.dumps({"orderId": str(order), "event": "order.published"}))
        props.append({"message_id": f"{order}-published", "timestamp": int(t0) + 1,
                      "content_type": "application/json"})
    return bodies, props


def message_ids(orders) -> set:
    return {f"{o}-{s}" for o in orders for s in STATUSES + ["published"]}


def publish_orders(url: str, queue: str, orders, base: float | None = None):
    bodies, props = order_messages(orders, time.time() - 1 if base is None else base)
    result = publish(url, "", queue, bodies, properties=lambda i: props[i])
    assert result.confirmed == len(bodies), result
    return result


def trace_id_of(order) -> str:
    """What the bridge must derive: HMAC-SHA-256(secret, `order|<namespace>|<id>`)[:16]."""
    mac = hmac.new(SECRET.encode(), f"order|{NAMESPACE}|{order}".encode(), hashlib.sha256)
    return mac.digest()[:16].hex()


def is_root(span) -> bool:
    return span["parent_span_id"] in ("", "0" * 16) and span["name"].startswith("order ")


def by_order(spans) -> dict:
    out = defaultdict(list)
    for s in spans:
        out[s["attributes"].get("order.id")].append(s)
    return out


def message_spans(spans):
    """(message id, what carries it, span) for every trace of a queue message in `spans`: a
    span with `messaging.message.id` (a transition, a PRODUCER span) or a span event with it
    (an order's first status, recorded on the root span)."""
    for s in spans:
        mid = s["attributes"].get("messaging.message.id")
        if mid is not None:
            yield mid, ("span", s["name"]), s
        for e in s["events"]:
            mid = e["attributes"].get("messaging.message.id")
            if mid is not None:
                yield mid, ("event", e["name"]), s


def order_spans_complete(receiver: PortReceiver, orders) -> bool:
    receiver.spans.poll()
    got = by_order(receiver.spans.spans)
    want = {"order", "CREATED → PAID", "PAID → SHIPPED", "SHIPPED → DELIVERED", "order.published"}
    return all({"order" if is_root(s) else s["name"] for s in got.get(str(o), [])} >= want
               for o in orders)


class Node:
    """One bridge with its own receiver, data_dir and /metrics port."""

    def __init__(self, root: Path, bridge_bin: Path, amqp: dict, queue: str, **config):
        self.root = Path(root)
        self.receiver = PortReceiver(self.root / "receiver")
        self.receiver.start()
        self.config = self.root / "tracebridge.yaml"
        self.config.write_text(config_text(amqp, queue, self.root / "data", self.receiver,
                                           **config), encoding="utf-8")
        self.bridge = Bridge(bridge_bin, self.config, self.root / "bridge")

    def spans(self) -> list:
        self.receiver.spans.poll()
        return self.receiver.spans.spans

    def close(self):
        self.bridge.cleanup()
        self.receiver.stop()


@pytest.fixture
def nodes(tmp_path, bridge_bin):
    """Factory: `nodes(amqp_dict, queue, **config)` -> a Node (bridge not started yet);
    every bridge and receiver is stopped by PID at teardown."""
    made = []

    def make(amqp: dict, queue: str, **config) -> Node:
        n = Node(tmp_path / f"node{len(made)}", bridge_bin, amqp, queue, **config)
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()
        print(n.bridge.describe())


def connections(broker: Broker) -> list:
    """The broker's client connections: dicts with ssl, peer_cert_subject, user, state."""
    fields = ["ssl", "peer_cert_subject", "user", "state", "peer_host"]
    out = broker.ctl("-q", "list_connections", "--no-table-headers", *fields)
    return [dict(zip(fields, line.split("\t"))) for line in out.splitlines() if line.strip()]


# ---------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------

def test_bridge_consumes_over_tls_with_a_client_certificate(broker, nodes, tmp_path, monkeypatch):
    tls = broker.tls_files
    assert tls_probe(broker.amqps_url, tls["ca_file"], tls["cert_file"], tls["key_file"]) is None
    queue = "tb.tls"
    declare_queue(broker.url, queue)
    # Credentials from the environment and a file; the URL carries none.
    monkeypatch.setenv(USER_ENV, "guest")
    password = tmp_path / "rabbit-password"
    password.write_text("guest\n")
    amqp = {"url": f"amqps://localhost:{broker.tls_port}/%2F", "user_env": USER_ENV,
            "password_file": str(password), "heartbeat": "10s",
            "tls": {"ca_file": str(tls["ca_file"]), "cert_file": str(tls["cert_file"]),
                    "key_file": str(tls["key_file"])}}
    n = nodes(amqp, queue)
    n.bridge.start()
    orders = range(4_100_000, 4_100_040)
    publish_orders(broker.url, queue, orders)
    wait_for(lambda: order_spans_complete(n.receiver, orders), ARRIVE_TIMEOUT,
             lambda: f"not every order's spans arrived over TLS\n{n.bridge.describe()}")

    got = by_order(n.spans())
    for order in orders:
        spans = got[str(order)]
        assert {s["trace_id"] for s in spans} == {trace_id_of(order)}
        names = Counter("order" if is_root(s) else s["name"] for s in spans)
        assert names == Counter(["order", "CREATED → PAID", "PAID → SHIPPED",
                                 "SHIPPED → DELIVERED", "order.published"]), (order, names)
        pub = next(s for s in spans if s["name"] == "order.published")
        assert pub["attributes"]["messaging.message.id"] == f"{order}-published"
        assert pub["attributes"]["messaging.destination.name"] == queue
    n.bridge.wait_metric("tracebridge_amqp_messages_acked_total",
                         lambda v: v == len(orders) * 5, "did not acknowledge every message",
                         source="bus")
    wait_for(lambda: queue_counts(broker.url, queue) == (0, 1), 20,
             lambda: f"queue not drained by one consumer: {queue_counts(broker.url, queue)}")
    # The broker's side: the bridge's connection is TLS and presented the client certificate.
    # (The probe's connection above may still be listed for a moment, in state closed.)
    tls_conns = [c for c in connections(broker) if c["ssl"] == "true" and c["state"] != "closed"]
    assert len(tls_conns) == 1, connections(broker)
    assert "CN=tracebridge-test-client" in tls_conns[0]["peer_cert_subject"], tls_conns
    assert tls_conns[0]["user"] == "guest"
    assert f"amqps://guest@localhost:{broker.tls_port}/%2F" in n.bridge.stderr_text(), \
        "the bridge did not log the broker it consumes from"
    assert n.bridge.metric("tracebridge_amqp_reconnects_total", source="bus") in (None, 0.0)
    assert n.bridge.terminate() == 0


def _untrusted_ca(broker):
    f = broker.tls_files
    return ({"ca_file": str(f["untrusted_ca_file"]), "cert_file": str(f["cert_file"]),
             "key_file": str(f["key_file"])}, "localhost")


def _no_client_cert(broker):
    return {"ca_file": str(broker.tls_files["ca_file"])}, "localhost"


def _by_ip_address(broker):
    f = broker.tls_files
    return ({"ca_file": str(f["ca_file"]), "cert_file": str(f["cert_file"]),
             "key_file": str(f["key_file"])}, "127.0.0.1")


@pytest.mark.parametrize("case", [_untrusted_ca, _no_client_cert, _by_ip_address],
                         ids=["ca-did-not-sign-the-server", "no-client-certificate",
                              "ip-address-not-in-certificate"])
def test_bridge_that_cannot_establish_tls_consumes_nothing_logs_and_keeps_retrying(
        broker, nodes, case):
    tls, host = case(broker)
    queue = f"tb.tls.refused.{case.__name__.strip('_')}"
    declare_queue(broker.url, queue)
    orders = range(4_200_000, 4_200_010)
    publish_orders(broker.url, queue, orders)
    assert queue_counts(broker.url, queue) == (50, 0)
    # pika, with the same files, agrees that this TLS connection cannot be made.
    assert tls_probe(f"amqps://guest:guest@{host}:{broker.tls_port}/%2F", tls["ca_file"],
                     tls.get("cert_file"), tls.get("key_file")) is not None

    amqp = {"url": f"amqps://guest:guest@{host}:{broker.tls_port}/%2F", "heartbeat": "10s",
            "tls": tls}
    n = nodes(amqp, queue)
    n.bridge.start()
    first = n.bridge.wait_metric("tracebridge_amqp_reconnects_total", lambda v: v >= 2,
                                 "did not retry the connection", source="bus")
    # Still retrying later (backoff 0.5 s doubling: the next attempt comes within ~4 s).
    n.bridge.wait_metric("tracebridge_amqp_reconnects_total", lambda v: v > first,
                         "stopped retrying", timeout=30, source="bus")
    n.bridge.assert_alive("while it cannot connect")
    assert n.bridge.get("/healthz")[0] == 200
    assert queue_counts(broker.url, queue) == (50, 0), "messages left the queue or a consumer exists"
    assert n.bridge.metric("tracebridge_amqp_messages_received_total", source="bus") in (None, 0.0)
    assert not n.spans(), "spans exported without a connection"
    assert not [c for c in connections(broker) if c["state"] == "running" and c["ssl"] == "true"]

    log = n.bridge.stderr_text()
    # Never connected: the bridge says it cannot consume (not that a connection was lost).
    failures = [line for line in log.splitlines() if "cannot consume from RabbitMQ; retrying" in line]
    assert "connection lost" not in log, "a connection that never was is reported lost"
    assert failures, f"no log line about the failed connection:\n{log[-3000:]}"
    assert all(f"{host}:{broker.tls_port}" in line for line in failures), \
        f"a connection failure that does not name the broker {host}:{broker.tls_port}:\n" \
        + "\n".join(failures[:5])
    assert any(word in failures[0].lower() for word in ("ssl", "tls", "certificate", "handshake")), \
        f"the failure does not say it is about TLS: {failures[0]}"
    assert n.bridge.terminate() == 0
    assert queue_counts(broker.url, queue) == (50, 0)


# ---------------------------------------------------------------------------
# competing consumers
# ---------------------------------------------------------------------------

def test_two_bridges_on_one_queue_export_each_message_once_in_the_orders_trace(broker, nodes):
    queue = "tb.competing"
    declare_queue(broker.url, queue)
    # Grace and horizon short enough that every order each bridge saw is closed within the
    # test, long enough that no event reaches a bridge after it closed the order: orders close
    # against a watermark that follows the wall clock (now - reorder_window), so an event
    # released more than final_grace after its order's final status was (or more than
    # horizon after its last event) is set aside as after_order_closed. A message is
    # acknowledged only after the reorder window and a commit, so a bridge drains at most
    # about prefetch / (reorder_window + commit_interval) messages a second: ~16/s with
    # prefetch 10, and then this test loses events; ~330/s with 200.
    settings = dict(prefetch=200, final_grace="10s", horizon="20s")
    a = nodes({"url": broker.url, "heartbeat": "10s"}, queue, **settings)
    b = nodes({"url": broker.url, "heartbeat": "10s"}, queue, **settings)
    assert a.bridge.base != b.bridge.base
    a.bridge.start()
    b.bridge.start()
    wait_for(lambda: queue_counts(broker.url, queue)[1] == 2, 30,
             lambda: f"not two consumers: {queue_counts(broker.url, queue)}")

    orders = list(range(4_300_000, 4_300_200))
    expected = message_ids(orders)
    publish_orders(broker.url, queue, orders, base=time.time())
    total = len(expected)

    def settled():
        received = [n.bridge.metric("tracebridge_amqp_messages_acked_total", source="bus") or 0
                    for n in (a, b)]
        if sum(received) < total:
            return False
        return all(n.bridge.metric("tracebridge_open_orders") == 0
                   and n.bridge.metric("tracebridge_spool_spans") == 0 for n in (a, b))
    wait_for(settled, 90, lambda: f"the bridges did not ack all {total} messages, close every "
                                  f"order and empty their spools\n{a.bridge.describe()}\n"
                                  f"{b.bridge.describe()}")
    assert queue_counts(broker.url, queue) == (0, 2)
    for name, n in (("a", a), ("b", b)):
        assert n.bridge.metric("tracebridge_rejected_total") in (None, 0.0), \
            f"bridge {name} set events aside: " \
            f"{n.bridge.metrics().series('tracebridge_rejected_total')}; see {n.root}/data/rejected.jsonl"

    spans = {"a": a.spans(), "b": b.spans()}
    # Each message's span exactly once across both bridges.
    seen = defaultdict(list)       # message id -> [(bridge, carrier)]
    for name, got in spans.items():
        for mid, carrier, _ in message_spans(got):
            seen[mid].append((name, carrier))
    missing = expected - set(seen)
    twice = {m: c for m, c in seen.items() if len(c) > 1}
    unknown = set(seen) - expected
    assert not missing, f"{len(missing)} messages have no span: {sorted(missing)[:10]}"
    assert not twice, f"{len(twice)} messages exported more than once: {list(twice.items())[:5]}"
    assert not unknown, sorted(unknown)[:10]

    # Both took a share, and each bridge's exported share is what it acknowledged.
    share = Counter(c[0][0] for c in seen.values())
    assert share["a"] > 0 and share["b"] > 0, share
    for name, n in (("a", a), ("b", b)):
        assert n.bridge.metric("tracebridge_amqp_messages_acked_total", source="bus") == share[name]
        assert n.bridge.metric("tracebridge_amqp_messages_received_total", source="bus") == share[name]
        assert n.bridge.metric("tracebridge_amqp_duplicates_total", source="bus") in (None, 0.0)

    # Every span of an order, from either bridge, is in the trace derived from the order id.
    orders_of = {name: by_order(got) for name, got in spans.items()}
    for order in orders:
        ids = {s["trace_id"] for name in spans for s in orders_of[name].get(str(order), [])}
        assert ids == {trace_id_of(order)}, (order, ids)

    # Each bridge builds transitions and roots from the events it saw, in event time order.
    status_time = {f"{o}-{s}": i for o in orders for i, s in enumerate(STATUSES)}
    split = two_roots = false_transitions = 0
    for order in orders:
        mine = {name: sorted((m for m, c in seen.items() if c[0][0] == name
                              and m.startswith(f"{order}-") and m in status_time),
                             key=status_time.get)
                for name in spans}
        saw = {name for name in spans
               if any(m.startswith(f"{order}-") and c[0][0] == name for m, c in seen.items())}
        split += len(saw) == 2
        roots = {name: [s for s in orders_of[name].get(str(order), []) if is_root(s)]
                 for name in spans}
        for name in spans:
            statuses = [m.split("-", 1)[1] for m in mine[name]]
            transitions = sorted(
                (s["name"], s["attributes"]["messaging.message.id"])
                for s in orders_of[name].get(str(order), []) if " → " in s["name"])
            want = sorted((f"{p} → {q}", f"{order}-{q}") for p, q in zip(statuses, statuses[1:]))
            assert transitions == want, (order, name, transitions, want)
            false_transitions += sum(1 for t, _ in transitions
                                     if t not in ("CREATED → PAID", "PAID → SHIPPED",
                                                  "SHIPPED → DELIVERED"))
            if name not in saw:
                assert not roots[name], (order, name, "a root from a bridge that saw nothing")
                continue
            assert len(roots[name]) == 1, (order, name, len(roots[name]))
            root = roots[name][0]
            assert root["attributes"]["order.transitions"] == len(want)
            if f"{order}-DELIVERED" in mine[name]:
                assert "order.incomplete" not in root["attributes"], (order, name)
                assert root["attributes"]["order.status"] == "DELIVERED"
            else:
                assert root["attributes"].get("order.incomplete") is True, (order, name)
            if statuses:
                first = [e for e in root["events"] if e["name"] == f"status {statuses[0]}"]
                assert len(first) == 1, (order, name, root["events"])
        all_roots = [r for name in spans for r in roots[name]]
        assert len({r["span_id"] for r in all_roots}) == 1, \
            f"order {order}: the roots' span ids differ: {[r['span_id'] for r in all_roots]}"
        if len(all_roots) == 2:
            two_roots += 1
            assert all_roots[0]["raw"] != all_roots[1]["raw"]
    # What happened, for docs/operations.md (shown with -s or on failure).
    print(f"competing consumers: {total} messages, shares {dict(share)}; {split} of "
          f"{len(orders)} orders seen by both bridges, {two_roots} of them with two root spans "
          f"(same span id, different content: one complete, one order.incomplete=true); "
          f"{false_transitions} transition spans between statuses that were not consecutive")
    assert split > 0, "no order was split across the bridges: the test shows nothing"
    assert a.bridge.terminate() == 0
    assert b.bridge.terminate() == 0
