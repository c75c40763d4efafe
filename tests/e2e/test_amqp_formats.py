"""`tracebridge run` reading XML, text and framework-enveloped JSON from RabbitMQ queues: a
real broker (scripts/rabbitmq on loopback, one for the module), one real bridge process, a
real OTLP receiver process decoding with opentelemetry-proto, messages published with pika
and publisher confirms, each with its own message_id.

One bridge consumes three queues and one log file; 40 orders are published through them:

- MES (queue `tb.fmt.mes`, bound to the topic exchange `tb.fmt.mes.events`), XML:
  `OperationCompleted` events with a default and a prefixed namespace, Cyrillic text and a
  zone-less Moscow local time (`dd.MM.yyyy HH:mm:ss`), in windows-1251 named only by the XML
  prolog, only by `content_encoding`, or only by the content type's `charset=` (and, for a
  quarter of the orders, UTF-8 with no content type at all: sniffed); `JobStarted` /
  `JobFinished` naming only a MES job id (alias-only events) and the ERP's `JobAssigned`
  linking the job to its order, published after the JobStarted messages were consumed.
- Courier (queue `tb.fmt.courier`), text/plain in UTF-8 or KOI8-R, parsed by a `pattern:`
  rule that also reads the courier portal's log file (source `courier-portal`); `PICKUP`
  messages take their event time from when the bridge received them.
- CRM (queue `tb.fmt.crm`), JSON: MassTransit envelopes told apart by `where:` on the
  `messageType` array, NServiceBus messages told apart only by their
  `NServiceBus.EnclosedMessageTypes` header (`when.headers`), a plain JSON message timed by
  the AMQP `timestamp` property, and a legacy sender's JSON sent as text/plain, read with
  `body: json`.

Malformed XML, XML no rule maps, binary garbage, invalid JSON and unknown envelope types are
interleaved with the good messages; they must be dead-lettered with their reason while every
good message still becomes its span. Every span must carry the trace id derived from its
order id, the right times (local time converted to UTC), the attributes read from the body,
its properties and headers, and the service.name of the source that consumed it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from amqp_helpers import Broker, declare_queue, free_port, get_all, queue_counts
from test_live import Bridge, PortReceiver, wait_for

SECRET = "amqp-formats-secret"
NAMESPACE = "amqp-formats"
ORDERS = list(range(3_100_000, 3_100_040))
BAD_BYTE_ORDER = 3_100_099        # its XML has a byte windows-1251 does not define
WAIT = 45                          # s: the longest any one wait for spans or metrics

EXCHANGE = "tb.fmt.mes.events"
MES_Q, COURIER_Q, CRM_Q = "tb.fmt.mes", "tb.fmt.courier", "tb.fmt.crm"
MSK = ZoneInfo("Europe/Moscow")
YEKT = ZoneInfo("Asia/Yekaterinburg")

STATIONS = [("Сборка-1", "A1"), ("Покраска-2", "P2"), ("Контроль ОТК №3", "K3"),
            ("Упаковка-4", "U4")]
OPERATORS = ["Иванов И.И.", "Петрова А.С.", "Щукин Ё.Э."]
COURIERS = ["DHL", "СДЭК", "Почта-России", "UPS"]
NOTE = "Клиент просит позвонить за час"
NSB_TYPE = "Crm.Messages.{}, Crm.Messages, Version=1.0.0.0, Culture=neutral, PublicKeyToken=null"

CONSUMER, INTERNAL = 5, 1         # OTLP SpanKind values

# The configuration under test, verbatim; @NAME@ are filled in by `config_text`.
CONFIG = r"""
namespace: amqp-formats
ids: {secret: amqp-formats-secret}
data_dir: @DATA@
orders: {final_statuses: [DELIVERED], final_grace: 1s, horizon: 6h, alias_ttl: 6h}
amqp:
  url: @BROKER@
  heartbeat: 10s
sources:
  - name: mes
    service: MES
    timezone: Europe/Moscow
    amqp: {queue: tb.fmt.mes, prefetch: 500}
  - name: courier-bus
    service: Courier
    amqp: {queue: tb.fmt.courier, prefetch: 500}
  - name: courier-portal
    service: CourierPortal
    paths: ['@LOGS@/courier-portal.log']
  - name: crm
    service: CRM
    amqp: {queue: tb.fmt.crm, prefetch: 500}
rules:
  # --- MES: XML on a topic exchange -------------------------------------------------------
  - name: mes-operation
    source: mes
    when: {exchange: tb.fmt.mes.events, routing_key: 'mes.*.operation.#'}
    namespaces: {ev: 'urn:mes:events:v2', st: 'urn:mes:station:v1'}
    xml:
      type: /*/ev:Header/ev:Type
      ts: /Event/Header/Time
      order: /Event/Order/@id
      station: //st:Station/st:Name
      station_code: //st:Station/@code
      shift: /Event/Params/Param[1]
      operator: "//Param[@name='operator']"
      torque: "//Measure[Kind='torque']/Value"
    where: {type: '^OperationCompleted$'}
    message: {plant: /headers/x-plant, sender: /properties/app_id}
    timestamp: {field: ts, format: 'dd.MM.yyyy HH:mm:ss'}
    event:
      order_id: '${order}'
      kind: bus_consume
      name: mes.operation.completed
      attributes: {mes.station: '${station}', mes.station.code: '${station_code}',
                   mes.shift: '${shift}', mes.operator: '${operator}', mes.torque: '${torque}',
                   mes.plant: '${plant}', mes.sender: '${sender}'}
  - name: mes-job-started
    source: mes
    when: {routing_key: 'mes.*.job.started'}
    namespaces: {j: 'urn:mes:jobs:v1'}
    xml: {job: /j:JobStarted/@id, ts: /j:JobStarted/j:At, station: /j:JobStarted/j:Station}
    timestamp: {format: 'dd.MM.yyyy HH:mm:ss'}
    event:
      alias: {kind: mes_job, key: '${job}'}
      kind: step_start
      step: mes.job
      attributes: {mes.job: '${job}', mes.job.station: '${station}'}
  - name: mes-job-finished
    source: mes
    when: {routing_key: 'mes.*.job.finished'}
    namespaces: {j: 'urn:mes:jobs:v1'}
    xml: {job: /j:JobFinished/@id, ts: /j:JobFinished/j:At, result: /j:JobFinished/j:Result/@code}
    timestamp: {from: field, field: ts, format: 'dd.MM.yyyy HH:mm:ss', timezone: Europe/Moscow}
    event:
      alias: {kind: mes_job, key: '${job}'}
      kind: step_end
      step: mes.job
      attributes: {mes.job.result: '${result}'}
  - name: erp-job-assigned
    source: mes
    when: {routing_key: 'erp.#.job.assigned', type: JobAssigned}
    xml: {job: /JobAssigned/Job, order: /JobAssigned/Order, ts: /JobAssigned/At}
    timestamp: {format: 'yyyy-MM-dd HH:mm:ssXXX'}
    link: {kind: mes_job, key: '${job}', order_id: '${order}'}
  # --- Courier: text from a queue and from a log file -------------------------------------
  - name: courier-handover
    sources: [courier-bus, courier-portal]
    pattern: '^HANDOVER order=(?<order>\d+) courier=(?<courier>\S+) at (?<ts>%{TIMESTAMP_ISO8601})$'
    timestamp: {format: iso8601}
    event: {order_id: '${order}', kind: bus_consume, name: courier.handover,
            attributes: {courier.name: '${courier}'}}
  - name: courier-pickup
    source: courier-bus
    when: {content_type: text/plain}
    pattern: '^PICKUP order=(?<order>\d+) courier=(?<courier>\S+)$'
    message: {ref: /properties/correlation_id}
    timestamp: {from: received}
    event: {order_id: '${order}', kind: bus_consume, name: courier.pickup,
            attributes: {courier.name: '${courier}', courier.ref: '${ref}'}}
  # --- CRM: framework envelopes, plain JSON, a legacy sender ------------------------------
  - name: crm-mt-order-confirmed
    source: crm
    when: {content_type: application/vnd.masstransit+json}
    json: {types: /body/messageType, order: /body/message/orderId,
           ts: /body/message/confirmedAt, user: /body/message/customerId, sent: /body/sentTime}
    where: {types: 'urn:message:Crm[.]Contracts:OrderConfirmed\b'}
    timestamp: {format: iso8601}
    event: {order_id: '${order}', kind: bus_consume, name: crm.order.confirmed,
            user_id: '${user}', attributes: {crm.sent_time: '${sent}'}}
  - name: crm-mt-note-added
    source: crm
    when: {content_type: application/vnd.masstransit+json}
    json: {types: /body/messageType, order: /body/message/orderId,
           ts: /body/message/addedAt, note: /body/message/text}
    where: {types: 'urn:message:Crm[.]Contracts:OrderNoteAdded\b'}
    timestamp: {format: iso8601}
    event: {order_id: '${order}', kind: bus_consume, name: crm.note.added,
            attributes: {crm.note: '${note}'}}
  - name: crm-nsb-order-shipped
    source: crm
    when: {headers: {NServiceBus.EnclosedMessageTypes: 'Crm.Messages.OrderShipped, Crm.Messages, Version=1.0.0.0, Culture=neutral, PublicKeyToken=null'}}
    json: {order: /body/OrderId, ts: /body/At, carrier: /body/Carrier}
    message: {conversation: /headers/NServiceBus.ConversationId}
    timestamp: {format: epoch_millis}
    event: {order_id: '${order}', kind: bus_consume, name: crm.order.shipped,
            attributes: {crm.carrier: '${carrier}', crm.conversation: '${conversation}'}}
  - name: crm-nsb-shipment-delayed
    source: crm
    when: {headers: {NServiceBus.EnclosedMessageTypes: 'Crm.Messages.ShipmentDelayed, Crm.Messages, Version=1.0.0.0, Culture=neutral, PublicKeyToken=null'}}
    json: {order: /body/OrderId, ts: /body/At, carrier: /body/Carrier, reason: /body/Reason}
    timestamp: {format: epoch_millis}
    event: {order_id: '${order}', kind: bus_consume, name: crm.shipment.delayed,
            attributes: {crm.carrier: '${carrier}', crm.delay.reason: '${reason}'}}
  - name: crm-payment-captured
    source: crm
    when: {queue: tb.fmt.crm, type: PaymentCaptured}
    json: {order: /body/orderId, amount: /body/amount, currency: /body/currency}
    timestamp: {from: amqp}
    event: {order_id: '${order}', kind: bus_consume, name: crm.payment.captured,
            attributes: {crm.amount: '${amount}', crm.currency: '${currency}'}}
  - name: crm-legacy-score
    source: crm
    when: {app_id: legacy-crm}
    body: json
    json: {order: /body/order, score: /body/score, ts: /body/at}
    timestamp: {format: 'dd.MM.yyyy HH:mm:ss,SSS', timezone: Asia/Yekaterinburg}
    event: {order_id: '${order}', kind: bus_consume, name: crm.legacy.score,
            attributes: {crm.score: '${score}'}}
exporter:
  endpoint: @RECEIVER@
  retry: {initial_interval: 200ms, max_interval: 1s}
live:
  listen: 127.0.0.1:@LISTEN@
  poll_interval: 50ms
  reorder_window: 500ms
  commit_interval: 100ms
"""


def config_text(broker: Broker, data: Path, logs: Path, receiver: PortReceiver) -> str:
    values = {"DATA": str(data), "BROKER": broker.url, "LOGS": str(logs),
              "RECEIVER": receiver.url, "LISTEN": str(free_port())}
    text = CONFIG
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


# ---------------------------------------------------------------------------
# times, ids
# ---------------------------------------------------------------------------

def expected_trace_id(order) -> str:
    """docs/configuration.md: the first 16 bytes of HMAC-SHA-256(secret, order|ns|id)."""
    mac = hmac.new(SECRET.encode(), f"order|{NAMESPACE}|{order}".encode(), hashlib.sha256)
    return mac.digest()[:16].hex()


def ns(ms: int) -> int:
    return ms * 1_000_000


def moscow(ms: int) -> str:
    """`dd.MM.yyyy HH:mm:ss` in Moscow local time (UTC+3 all year since 2014)."""
    local = datetime.fromtimestamp(ms / 1000, MSK)
    assert local.utcoffset() == timedelta(hours=3)
    return local.strftime("%d.%m.%Y %H:%M:%S")


def moscow_offset(ms: int) -> str:
    """`yyyy-MM-dd HH:mm:ssXXX` in Moscow: `2026-12-02 08:14:02+03:00`."""
    return datetime.fromtimestamp(ms / 1000, MSK).strftime("%Y-%m-%d %H:%M:%S") + "+03:00"


def yekaterinburg_ms(ms: int) -> str:
    """`dd.MM.yyyy HH:mm:ss,SSS` in Yekaterinburg local time (UTC+5)."""
    local = datetime.fromtimestamp(ms / 1000, YEKT)
    assert local.utcoffset() == timedelta(hours=5)
    return local.strftime("%d.%m.%Y %H:%M:%S") + f",{ms % 1000:03d}"


def iso_z(ms: int, digits: int = 3) -> str:
    base = datetime.fromtimestamp(ms // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if digits == 0:
        return base + "Z"
    return base + "." + f"{ms % 1000:03d}".ljust(digits, "0") + "Z"


def iso_offset(ms: int, hours: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone(timedelta(hours=hours))) \
        .isoformat(timespec="milliseconds")


def local_minus_3h(local: str) -> int:
    """A Moscow `dd.MM.yyyy HH:mm:ss` read as if it were UTC, minus 3 h: epoch ns."""
    naive = datetime.strptime(local, "%d.%m.%Y %H:%M:%S").replace(tzinfo=timezone.utc)
    return int((naive - timedelta(hours=3)).timestamp()) * 1_000_000_000


# ---------------------------------------------------------------------------
# messages
# ---------------------------------------------------------------------------

@dataclass
class Msg:
    exchange: str
    routing_key: str
    body: bytes
    props: dict


@dataclass
class Expect:
    """One span the bridge must send."""
    order: int
    name: str
    service: str
    kind: int
    start: int | None                     # ns; None: checked by the test itself
    end: int | None
    attributes: dict = field(default_factory=dict)
    note: str = ""


@dataclass
class Dead:
    message_id: str
    reason_prefix: str
    body: bytes


def publish_messages(url: str, messages: list[Msg]) -> None:
    """Publish in list order on one channel with publisher confirms (each basic_publish
    returns once the broker confirmed it), persistent, mandatory (unroutable raises)."""
    import pika
    params = pika.URLParameters(url)
    params.heartbeat = 30
    params.blocked_connection_timeout = 60
    conn = pika.BlockingConnection(params)
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        for m in messages:
            channel.basic_publish(m.exchange, m.routing_key, m.body,
                                  pika.BasicProperties(delivery_mode=2, **m.props),
                                  mandatory=True)
    finally:
        conn.close()


def declare_topology(url: str) -> None:
    import pika
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
        for q in (MES_Q, COURIER_Q, CRM_Q):
            channel.queue_declare(q, durable=True)
        channel.queue_bind(MES_Q, EXCHANGE, routing_key="#")
    finally:
        conn.close()


def operation_xml(order, ms, station, code, shift, operator, torque, kind="OperationCompleted",
                  prolog="") -> str:
    # A decoy <q:Name> in another namespace comes before <st:Name>: a prefixed step must
    # match the namespace URI, not only the local name. Param[1] is the shift, the operator
    # is found by its attribute, the torque by its sibling's text (and its value is trimmed).
    return f"""{prolog}<Event xmlns="urn:mes:events:v2" xmlns:st="urn:mes:station:v1" version="2">
  <!-- смена {shift} -->
  <Header>
    <Type>{kind}</Type>
    <Time>{moscow(ms)}</Time>
  </Header>
  <Order id="{order}"/>
  <st:Station code="{code}">
    <q:Name xmlns:q="urn:mes:quality:v1">Брак</q:Name>
    <st:Name>{station}</st:Name>
  </st:Station>
  <Params>
    <Param name="shift">{shift}</Param>
    <Param name="operator">{operator}</Param>
  </Params>
  <Measures>
    <Measure><Kind>temperature</Kind><Value>21.5</Value></Measure>
    <Measure><Kind>torque</Kind><Value>
        {torque}
    </Value></Measure>
  </Measures>
</Event>
"""


PROLOG_1251 = '<?xml version="1.0" encoding="windows-1251"?>\n'
PROLOG_BARE = '<?xml version="1.0"?>\n'

# How each quarter of the orders says the charset of its OperationCompleted message.
CHARSET_VARIANTS = ["prolog", "content_encoding", "content_type", "utf-8 sniffed"]


class Plan:
    """Every message the module publishes or writes, what each must become, and which are
    poison. Times are whole milliseconds, 20 to 30 minutes in the past (within the order
    horizon and the alias TTL of the configuration)."""

    def __init__(self, base_ms: int):
        self.base_ms = base_ms
        self.mes_phase1: list[Msg] = []
        self.mes_phase2: list[Msg] = []
        self.courier: list[Msg] = []
        self.crm: list[Msg] = []
        self.portal_lines: list[str] = []
        self.expect: list[Expect] = []
        self.dead: dict[str, list[Dead]] = {MES_Q: [], COURIER_Q: [], CRM_Q: []}
        self.jobs: dict[int, str] = {}
        self.variant: dict[int, str] = {}
        self.local_time: dict[int, str] = {}     # order -> the Moscow time its operation says
        self.published_from = 0      # ns: when the first message was published
        rng = random.Random(5)
        self.garbage = [b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(200)),
                        b"\x00\x01\xfe\xff" + bytes(rng.randrange(256) for _ in range(300)),
                        b"\xff\xfe\x00\xd8" + bytes(rng.randrange(256) for _ in range(64))]
        for k, order in enumerate(ORDERS):
            t = base_ms + k * 15_000
            self._mes(k, order, t)
            self._courier(k, order, t)
            self._crm(k, order, t)
            self._poison(k, order, t)
        self._bad_byte(base_ms + 3_000)

    # -- MES -----------------------------------------------------------------
    def _mes(self, k, order, t):
        station, code = STATIONS[k % len(STATIONS)]
        operator = OPERATORS[k % len(OPERATORS)]
        shift = str(1 + k % 3)
        torque = f"{12 + k % 3}.5"
        variant = CHARSET_VARIANTS[k % 4]
        self.variant[order] = variant
        op_ms = t + 3_000
        self.local_time[order] = moscow(op_ms)
        line = 1 + k % 2
        rk = "mes.line1.operation.completed" if line == 1 else "mes.line2.operation"
        mid = f"mes-op-{order}"
        props = {"message_id": mid, "app_id": f"mes-line{line}", "type": "OperationCompleted",
                 "headers": {"x-plant": "plant-tver"}}
        if variant == "prolog":
            body = operation_xml(order, op_ms, station, code, shift, operator, torque,
                                 prolog=PROLOG_1251).encode("cp1251")
            props["content_type"] = "application/xml"
        elif variant == "content_encoding":
            body = operation_xml(order, op_ms, station, code, shift, operator, torque,
                                 prolog=PROLOG_BARE).encode("cp1251")
            props.update(content_type="application/xml", content_encoding="windows-1251")
        elif variant == "content_type":
            body = operation_xml(order, op_ms, station, code, shift, operator,
                                 torque).encode("cp1251")
            props["content_type"] = "application/xml; charset=windows-1251"
        else:
            body = operation_xml(order, op_ms, station, code, shift, operator,
                                 torque).encode("utf-8")
        op = Msg(EXCHANGE, rk, body, props)
        self.expect.append(Expect(
            order, "mes.operation.completed", "MES", CONSUMER, ns(op_ms), ns(op_ms),
            {"order.id": str(order), "mes.station": station, "mes.station.code": code,
             "mes.shift": shift, "mes.operator": operator, "mes.torque": torque,
             "mes.plant": "plant-tver", "mes.sender": f"mes-line{line}",
             "messaging.system": "rabbitmq", "messaging.message.id": mid,
             "messaging.destination.name": EXCHANGE,
             "messaging.rabbitmq.destination.routing_key": rk},
            note=f"charset via {variant}"))

        # The job: an id unrelated to the order number, so only the link can join them.
        job = f"J-{90000 - 37 * k}"
        self.jobs[order] = job
        started = Msg(EXCHANGE, f"mes.line{line}.job.started", (
            f'{PROLOG_1251}<j:JobStarted xmlns:j="urn:mes:jobs:v1" id="{job}">\n'
            f"  <j:At>{moscow(t + 1_000)}</j:At>\n  <j:Station>{station}</j:Station>\n"
            f"</j:JobStarted>\n").encode("cp1251"),
            {"message_id": f"mes-job-started-{job}", "content_type": "application/xml",
             "app_id": f"mes-line{line}"})
        assigned = Msg(EXCHANGE, "erp.job.assigned", (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<JobAssigned xmlns="urn:erp:mes">'
            f"<Job>{job}</Job><Order>{order}</Order><At>{moscow_offset(t + 2_000)}</At>"
            f"</JobAssigned>").encode("utf-8"),
            {"message_id": f"erp-job-assigned-{job}", "content_type": "application/xml",
             "type": "JobAssigned", "app_id": "erp"})
        finished = Msg(EXCHANGE, f"mes.line{line}.job.finished", (
            f'<JobFinished xmlns="urn:mes:jobs:v1" id="{job}"><At>{moscow(t + 6_000)}</At>'
            f'<Result code="OK"/></JobFinished>').encode("utf-8"),
            {"message_id": f"mes-job-finished-{job}", "content_type": "text/xml; charset=utf-8",
             "app_id": f"mes-line{line}"})
        self.mes_phase1 += [started, op]
        self.mes_phase2 += [assigned, finished]
        self.expect.append(Expect(
            order, "mes.job", "MES", INTERNAL, ns(t + 1_000), ns(t + 6_000),
            {"order.id": str(order), "order.step": "mes.job", "mes.job": job,
             "mes.job.station": station, "mes.job.result": "OK"}))

    def _bad_byte(self, t):
        """One more order whose operator name holds 0x98, undefined in windows-1251."""
        order = BAD_BYTE_ORDER
        body = operation_xml(order, t, "Сборка-1", "A1", "1", "Петров@", "12.5",
                             prolog=PROLOG_1251).encode("cp1251").replace(b"@", b"\x98")
        self.mes_phase1.append(Msg(EXCHANGE, "mes.line1.operation.completed", body, {
            "message_id": f"mes-op-{order}", "app_id": "mes-line1",
            "content_type": "application/xml", "headers": {"x-plant": "plant-tver"}}))

    # -- Courier ---------------------------------------------------------------
    def _courier(self, k, order, t):
        courier = COURIERS[k % len(COURIERS)]
        text = f"HANDOVER order={order} courier={courier} at {iso_z(t + 8_000, 0)}"
        if k % 5 == 0:
            self.portal_lines.append(text)
            self.expect.append(Expect(order, "courier.handover", "CourierPortal", CONSUMER,
                                      ns(t + 8_000), ns(t + 8_000),
                                      {"order.id": str(order), "courier.name": courier},
                                      note="from the portal's log file"))
        else:
            koi8 = k % 4 in (1, 2)
            mid = f"courier-handover-{order}"
            charset = "koi8-r" if koi8 else "utf-8"
            self.courier.append(Msg("", COURIER_Q, text.encode(charset), {
                "message_id": mid, "content_type": f"text/plain; charset={charset}"}))
            self.expect.append(Expect(order, "courier.handover", "Courier", CONSUMER,
                                      ns(t + 8_000), ns(t + 8_000),
                                      {"order.id": str(order), "courier.name": courier,
                                       "messaging.message.id": mid},
                                      note="koi8-r" if koi8 else "utf-8"))
        mid = f"courier-pickup-{order}"
        self.courier.append(Msg("", COURIER_Q, f"PICKUP order={order} courier={courier}".encode(), {
            "message_id": mid, "correlation_id": f"pickup-ref-{order}",
            "content_type": "Text/Plain; Charset=UTF-8"}))
        self.expect.append(Expect(order, "courier.pickup", "Courier", CONSUMER, None, None,
                                  {"order.id": str(order), "courier.name": courier,
                                   "courier.ref": f"pickup-ref-{order}",
                                   "messaging.message.id": mid}))

    # -- CRM -------------------------------------------------------------------
    def _crm(self, k, order, t):
        o = str(order)
        # MassTransit: the type only in the messageType array; an interface type too.
        mid = f"crm-mt-confirmed-{order}"
        sent = iso_z(t + 300, 7)
        envelope = {
            "messageId": f"0b4e0000-{k:04x}-0000-0000-000000000001",
            "conversationId": f"0b4e0000-{k:04x}-0000-0000-000000000002",
            "sourceAddress": "rabbitmq://crm/crm_api",
            "destinationAddress": "rabbitmq://crm/Crm.Contracts:OrderConfirmed",
            "messageType": ["urn:message:Crm.Contracts:OrderConfirmed",
                            "urn:message:Crm.Contracts:IOrderEvent"],
            "message": {"orderId": o, "customerId": f"c-{k % 17}",
                        "confirmedAt": iso_z(t + 250)},
            "sentTime": sent, "headers": {}, "host": {"machineName": "crm-01"}}
        ctype = "application/vnd.masstransit+json" if k % 2 == 0 \
            else "Application/Vnd.MassTransit+JSON; charset=utf-8"
        self.crm.append(Msg("", CRM_Q, json.dumps(envelope).encode(), {
            "message_id": mid, "content_type": ctype, "headers": {"MT-Activity-Id": f"a{k}"}}))
        self.expect.append(Expect(order, "crm.order.confirmed", "CRM", CONSUMER, ns(t + 250),
                                  ns(t + 250), {"order.id": o, "enduser.id": f"c-{k % 17}",
                                                "crm.sent_time": sent,
                                                "messaging.message.id": mid}))
        if k % 4 == 0:
            mid = f"crm-mt-note-{order}"
            note = {"messageId": f"0b4e0000-{k:04x}-0000-0000-000000000003",
                    "messageType": ["urn:message:Crm.Contracts:OrderNoteAdded"],
                    "message": {"orderId": o, "text": NOTE, "addedAt": iso_offset(t + 1_500, 1)},
                    "sentTime": iso_z(t + 1_600, 7)}
            self.crm.append(Msg("", CRM_Q, json.dumps(note, ensure_ascii=False).encode(), {
                "message_id": mid, "content_type": "application/vnd.masstransit+json"}))
            self.expect.append(Expect(order, "crm.note.added", "CRM", CONSUMER, ns(t + 1_500),
                                      ns(t + 1_500), {"order.id": o, "crm.note": NOTE,
                                                      "messaging.message.id": mid}))
        # NServiceBus: the type only in a header; both bodies have the same shape.
        carrier = ["DHL", "UPS", "DPD"][k % 3]
        mid = f"crm-nsb-shipped-{order}"
        self.crm.append(Msg("", CRM_Q, (
            f'{{"OrderId": "{o}", "Carrier": "{carrier}", "At": {t + 7_125}}}').encode(), {
            "message_id": mid, "content_type": "application/json",
            "headers": {"NServiceBus.EnclosedMessageTypes": NSB_TYPE.format("OrderShipped"),
                        "NServiceBus.ConversationId": f"conv-{order}",
                        "NServiceBus.MessageIntent": "Publish"}}))
        self.expect.append(Expect(order, "crm.order.shipped", "CRM", CONSUMER, ns(t + 7_125),
                                  ns(t + 7_125), {"order.id": o, "crm.carrier": carrier,
                                                  "crm.conversation": f"conv-{order}",
                                                  "messaging.message.id": mid}))
        if k % 5 == 2:
            mid = f"crm-nsb-delayed-{order}"
            self.crm.append(Msg("", CRM_Q, (
                f'{{"OrderId": "{o}", "Carrier": "{carrier}", "At": {t + 11_000}, '
                f'"Reason": "weather"}}').encode(), {
                "message_id": mid, "content_type": "application/json",
                "headers": {"NServiceBus.EnclosedMessageTypes": NSB_TYPE.format("ShipmentDelayed"),
                            "NServiceBus.ConversationId": f"conv-{order}",
                            "NServiceBus.MessageIntent": "Publish"}}))
            self.expect.append(Expect(order, "crm.shipment.delayed", "CRM", CONSUMER,
                                      ns(t + 11_000), ns(t + 11_000),
                                      {"order.id": o, "crm.carrier": carrier,
                                       "crm.delay.reason": "weather",
                                       "messaging.message.id": mid}))
        # Plain JSON, no content type (sniffed), timed by the AMQP timestamp property only.
        mid = f"crm-payment-{order}"
        amount = f"{100 + k}.50"
        stamp = (t + 9_000) // 1000
        self.crm.append(Msg("", CRM_Q, (
            f'{{"orderId": "{o}", "amount": {amount}, "currency": "EUR"}}').encode(), {
            "message_id": mid, "type": "PaymentCaptured", "timestamp": stamp}))
        self.expect.append(Expect(order, "crm.payment.captured", "CRM", CONSUMER,
                                  stamp * 1_000_000_000, stamp * 1_000_000_000,
                                  {"order.id": o, "crm.amount": amount, "crm.currency": "EUR",
                                   "messaging.message.id": mid}, note="time from amqp"))
        # A legacy sender: JSON labelled text/plain, local Yekaterinburg time with millis.
        if k % 3 == 0:
            mid = f"crm-legacy-{order}"
            self.crm.append(Msg("", CRM_Q, json.dumps(
                {"order": o, "score": 5 - k % 5, "at": yekaterinburg_ms(t + 10_750)}).encode(), {
                "message_id": mid, "content_type": "text/plain", "app_id": "legacy-crm"}))
            self.expect.append(Expect(order, "crm.legacy.score", "CRM", CONSUMER,
                                      ns(t + 10_750), ns(t + 10_750),
                                      {"order.id": o, "crm.score": str(5 - k % 5),
                                       "messaging.message.id": mid}))

    # -- poison, interleaved with the good messages ---------------------------------
    def _poison(self, k, order, t):
        def mes(mid, rk, body, reason, **props):
            self.mes_phase1.append(Msg(EXCHANGE, rk, body, {"message_id": mid, **props}))
            self.dead[MES_Q].append(Dead(mid, reason, body))

        def crm(mid, body, reason, **props):
            self.crm.append(Msg("", CRM_Q, body, {"message_id": mid, **props}))
            self.dead[CRM_Q].append(Dead(mid, reason, body))

        def courier(mid, body, reason, **props):
            self.courier.append(Msg("", COURIER_Q, body, {"message_id": mid, **props}))
            self.dead[COURIER_Q].append(Dead(mid, reason, body))

        op_rk = "mes.line1.operation.completed"
        xml = "not well-formed XML"
        none = "no rule matched"
        if k == 2:
            mes("bad-xml-mismatch", op_rk, b'<Event xmlns="urn:mes:events:v2"><Header>'
                b"<Type>OperationCompleted</Type></Event>", xml, content_type="application/xml")
            crm("bad-json-payment", f'{{"orderId": "{order}", "amount": '.encode(), "not JSON",
                content_type="application/json", type="PaymentCaptured")
            courier("bad-text-hello", b"HELLO courier gateway v2.1 started", none,
                    content_type="text/plain")
        elif k == 7:
            mes("bad-xml-unquoted", op_rk, (PROLOG_1251 + f"<Event><Order id={order}/>"
                "<Station>Сборка</Station></Event>").encode("cp1251"), xml,
                content_type="application/xml")
            crm("bad-json-envelope", b'{"messageType": ["urn:message:Crm.Contracts:Order'
                b'Confirmed"], "message": {"orderId": ', "not JSON",
                content_type="application/vnd.masstransit+json")
            courier("bad-text-order", b"HANDOVER order=abc courier=DHL at yesterday", none,
                    content_type="text/plain; charset=utf-8")
        elif k == 12:
            whole = operation_xml(order, t + 3_000, "Сборка-1", "A1", "1", "Иванов И.И.",
                                  "12.5", prolog=PROLOG_1251).encode("cp1251")
            mes("bad-xml-truncated", op_rk, whole[: len(whole) * 3 // 5], xml,
                content_type="application/xml")
            crm("no-rule-mt-archived", json.dumps({
                "messageType": ["urn:message:Crm.Contracts:OrderArchived"],
                "message": {"orderId": str(order), "confirmedAt": iso_z(t), "archivedAt": iso_z(t)},
                "sentTime": iso_z(t, 7)}).encode(), none,
                content_type="application/vnd.masstransit+json")
            courier("bad-text-garbage", self.garbage[2], none, content_type="text/plain")
        elif k == 17:
            mes("no-rule-heartbeat", op_rk, f'<Heartbeat xmlns="urn:mes:events:v2"><At>'
                f"{moscow(t)}</At></Heartbeat>".encode(), none, content_type="application/xml")
            crm("no-rule-nsb-archived", f'{{"OrderId": "{order}", "Carrier": "DHL", '
                f'"At": {t}}}'.encode(), none, content_type="application/json",
                headers={"NServiceBus.EnclosedMessageTypes": NSB_TYPE.format("OrderArchived"),
                         "NServiceBus.ConversationId": f"conv-{order}"})
        elif k == 22:
            # Well-formed, selected by `when`, but its Type fails the rule's `where`.
            mes("no-rule-operation-started", op_rk, operation_xml(
                order, t + 4_000, "Сборка-1", "A1", "1", "Иванов И.И.", "12.5",
                kind="OperationStarted").encode(), none, content_type="application/xml",
                app_id="mes-line1", headers={"x-plant": "plant-tver"})
        elif k == 27:
            # Well-formed and mappable, but on a routing key no rule's `when` selects.
            mes("no-rule-routing-key", "mes.line1.maintenance.done", operation_xml(
                order, t + 4_000, "Сборка-1", "A1", "1", "Иванов И.И.", "12.5").encode(), none,
                content_type="application/xml", app_id="mes-line1",
                headers={"x-plant": "plant-tver"})
        elif k == 32:
            # Sniffed as text, and every rule `when` selects for it reads XML.
            mes("garbage-png", op_rk, self.garbage[0], "not XML: the body is text")
        elif k == 37:
            mes("garbage-octets", op_rk, self.garbage[1], "not XML: the body is text",
                content_type="application/octet-stream")
        if k == 20:
            body = b'<JobAssigned xmlns="urn:erp:mes"><Job>J-1</Job><Order>1'
            self.mes_phase2.append(Msg(EXCHANGE, "erp.job.assigned", body, {
                "message_id": "bad-xml-assigned", "content_type": "application/xml",
                "type": "JobAssigned"}))
            self.dead[MES_Q].append(Dead("bad-xml-assigned", xml, body))

    def expected(self, *names) -> list[Expect]:
        return [e for e in self.expect if not names or e.name in names]


# ---------------------------------------------------------------------------
# the module's world: broker, receiver, bridge, everything published once
# ---------------------------------------------------------------------------

class World:
    def __init__(self, root: Path, bridge_bin: Path, broker: Broker):
        self.root = root
        self.broker = broker
        self.logs = root / "logs"
        self.logs.mkdir(parents=True)
        self.receiver = PortReceiver(root / "receiver")
        self.receiver.start()
        self.config = root / "tracebridge.yaml"
        self.config.write_text(config_text(broker, root / "data", self.logs, self.receiver),
                               encoding="utf-8")
        self.bridge = Bridge(bridge_bin, self.config, root / "bridge")
        self.plan = Plan((int(time.time()) - 1800) * 1000)
        self._dead: dict[str, dict] = {MES_Q: {}, COURIER_Q: {}, CRM_Q: {}}
        self.timed_out = False

    def run(self):
        declare_topology(self.broker.url)
        (self.logs / "courier-portal.log").write_text(
            "portal 2.3 started\n" + "".join(f"{line}\n" for line in self.plan.portal_lines),
            encoding="utf-8")
        self.bridge.start()
        p = self.plan
        p.published_from = time.time_ns()
        publish_messages(self.broker.url, p.crm)
        publish_messages(self.broker.url, p.courier)
        publish_messages(self.broker.url, p.mes_phase1)
        # The JobStarted messages are consumed (and, 0.5 s later, out of the reorder window
        # waiting for their link) before any JobAssigned is published.
        self.bridge.wait_metric("tracebridge_amqp_messages_received_total",
                                lambda v: v >= len(p.mes_phase1),
                                "did not receive the first MES batch", timeout=WAIT, source="mes")
        # Not a wait for a result: the reorder window is 500 ms, so after 1 s the alias-only
        # JobStarted events have left it and wait in the correlator for their link.
        time.sleep(1.0)
        publish_messages(self.broker.url, p.mes_phase2)

    def close(self):
        if self.bridge.running:
            self.bridge.terminate()
        self.receiver.stop()

    # -- spans -----------------------------------------------------------------
    def spans(self) -> list:
        self.receiver.spans.poll()
        return self.receiver.spans.spans

    def index(self) -> dict:
        """(order id, span name) -> {span id: span}; spans without order.id under None."""
        out = defaultdict(dict)
        for s in self.spans():
            out[(s["attributes"].get("order.id"), s["name"])][s["span_id"]] = s
        return out

    def wait_expected(self, expects: list[Expect], timeout: float = WAIT) -> dict:
        def missing():
            idx = self.index()
            return [e for e in expects if not idx.get((str(e.order), e.name))]

        def what():
            gone = missing()
            return (f"{len(gone)} of {len(expects)} expected spans never arrived, e.g. "
                    + "; ".join(f"{e.name} of order {e.order} ({e.note or e.service})"
                                for e in gone[:8])
                    + f"\nspans received: {len(self.spans())}\n{self.bridge.describe()}")
        # Spans come together: once one wait timed out, later ones do not wait as long again.
        timeout = timeout if not self.timed_out else min(timeout, 5)
        try:
            wait_for(lambda: not missing(), timeout, what)
        except pytest.fail.Exception:
            self.timed_out = True
            raise
        return self.index()

    def one(self, idx: dict, e: Expect) -> dict:
        found = idx[(str(e.order), e.name)]
        raws = {s["raw"] for s in found.values()}
        assert len(found) == 1 and len(raws) == 1, \
            f"{e.name} of order {e.order}: {len(found)} different spans: " \
            f"{[(s['start'], s['attributes']) for s in found.values()]}"
        return next(iter(found.values()))

    # -- dead letters ----------------------------------------------------------
    def dead(self, queue: str) -> dict:
        """message_id -> (body, properties) of everything dead-lettered from `queue`, read
        (and drained) until all expected ones are there."""
        want = {d.message_id for d in self.plan.dead[queue]}
        got = self._dead[queue]

        def collect():
            if want - set(got):
                for body, props in get_all(self.broker.url, f"{queue}.dead"):
                    got[props.message_id] = (body, props)
            return not (want - set(got))
        wait_for(collect, WAIT, lambda: f"{queue}.dead lacks {sorted(want - set(got))}; "
                                        f"has {sorted(got)}\n{self.bridge.describe()}",
                 interval=0.5)
        return got


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("rabbitmq"), free_port())
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory, bridge_bin, broker):
    w = World(tmp_path_factory.mktemp("formats"), bridge_bin, broker)
    try:
        w.run()
        yield w
    finally:
        try:
            w.close()
        finally:
            w.bridge.cleanup()
            print(w.bridge.describe())


def check_span(w: World, idx: dict, e: Expect, problems: list) -> dict | None:
    s = w.one(idx, e)
    where = f"{e.name} of order {e.order}" + (f" ({e.note})" if e.note else "")
    if s["service"] != e.service:
        problems.append(f"{where}: service.name {s['service']!r}, expected {e.service!r}")
    if s["kind"] != e.kind:
        problems.append(f"{where}: kind {s['kind']}, expected {e.kind}")
    if s["trace_id"] != expected_trace_id(e.order):
        problems.append(f"{where}: trace id {s['trace_id']}, expected "
                        f"{expected_trace_id(e.order)}")
    if e.start is not None and (s["start"], s["end"]) != (e.start, e.end):
        problems.append(f"{where}: start..end {s['start']}..{s['end']}, expected "
                        f"{e.start}..{e.end} (off by {(s['start'] - e.start) / 1e9:+.3f} s)")
    for key, value in e.attributes.items():
        if s["attributes"].get(key) != value:
            problems.append(f"{where}: attribute {key} = {s['attributes'].get(key)!r}, "
                            f"expected {value!r}")
    return s


def assert_no_problems(problems: list, what: str):
    assert not problems, f"{len(problems)} {what}:\n  " + "\n  ".join(problems[:25])


# ---------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------

def test_xml_in_windows_1251_with_namespaces_and_moscow_local_time(world):
    """Every OperationCompleted: Cyrillic station and operator names arrive as the right
    UTF-8 whichever of prolog, content_encoding or content type named windows-1251 (or none:
    UTF-8, sniffed); the zone-less Moscow time is local minus 3 h; prefixed and unprefixed
    steps, `*`, `[N]`, `[@a='v']`, `[child='v']` and a trimmed value read the right nodes;
    `message:` captured a header and a property."""
    expects = world.plan.expected("mes.operation.completed")
    idx = world.wait_expected(expects)
    problems = []
    by_variant = Counter()
    for e in expects:
        s = check_span(world, idx, e, problems)
        local = world.plan.local_time[e.order]
        if s["start"] != local_minus_3h(local):
            problems.append(f"order {e.order}: local {local} in Moscow is "
                            f"{local_minus_3h(local)} ns UTC, the span starts at {s['start']}")
        by_variant[world.plan.variant[e.order]] += 1
    assert_no_problems(problems, "problems with XML operation spans")
    assert set(by_variant) == set(CHARSET_VARIANTS) and min(by_variant.values()) >= 10


def test_an_undefined_windows_1251_byte_becomes_a_replacement_character(world):
    """0x98 is not a windows-1251 character: the message still maps, with U+FFFD there."""
    e = Expect(BAD_BYTE_ORDER, "mes.operation.completed", "MES", CONSUMER, None, None,
               {"order.id": str(BAD_BYTE_ORDER), "mes.operator": "Петров\ufffd",
                "mes.station": "Сборка-1", "messaging.message.id": f"mes-op-{BAD_BYTE_ORDER}"})
    idx = world.wait_expected([e])
    problems = []
    check_span(world, idx, e, problems)
    assert_no_problems(problems, "problems with the message holding an undefined byte")
    assert world.bridge.running, "the bridge died"


def test_alias_only_job_events_wait_for_their_link_and_join_the_orders_trace(world):
    """JobStarted names only the MES job id and is consumed before the ERP's JobAssigned
    links job → order; JobFinished comes after the link. Each order gets one `mes.job` step
    span in its own trace (the trace id of its other spans), from the start to the end time."""
    expects = world.plan.expected("mes.job")
    idx = world.wait_expected(expects)
    problems = []
    for e in expects:
        s = check_span(world, idx, e, problems)
        others = {x["trace_id"] for (order, name), found in idx.items()
                  if order == str(e.order) and name != "mes.job" for x in found.values()}
        if others != {s["trace_id"]}:
            problems.append(f"order {e.order}: the job span is in trace {s['trace_id']}, the "
                            f"order's other spans in {sorted(others)}")
    assert_no_problems(problems, "problems with alias-only job spans")
    strays = [(o, n) for (o, n) in idx if n == "mes.job" and o not in {str(x) for x in ORDERS}]
    assert not strays, f"job spans outside the linked orders: {strays}"


def test_text_bodies_from_a_queue_and_a_log_file_share_one_pattern_rule(world):
    """HANDOVER lines: from the queue (UTF-8 or KOI8-R by the content type's charset) with
    service Courier, from the portal's log file with service CourierPortal, by one rule.
    PICKUP messages (`when.content_type` compared case-insensitively, without parameters)
    take the time the bridge received them and `message:` the correlation id."""
    expects = world.plan.expected("courier.handover", "courier.pickup")
    idx = world.wait_expected(expects)
    seen_by = time.time_ns()
    problems = []
    sources = Counter()
    earliest = world.plan.published_from
    for e in expects:
        s = check_span(world, idx, e, problems)
        sources[s["service"]] += e.name == "courier.handover"
        if e.name == "courier.pickup":
            if not (earliest - 1_000_000_000 <= s["start"] <= seen_by + 1_000_000_000) \
                    or s["end"] != s["start"]:
                problems.append(f"pickup of order {e.order}: time {s['start']} is not between "
                                f"the publish ({earliest}) and its arrival ({seen_by})")
    assert_no_problems(problems, "problems with text spans")
    assert sources["Courier"] >= 30 and sources["CourierPortal"] >= 5, sources


def test_framework_envelopes_and_plain_json_are_told_apart_by_where_and_when(world):
    """MassTransit envelopes (type in the messageType array, `where:`; content type with
    other case and parameters), NServiceBus messages with identical bodies told apart only by
    the EnclosedMessageTypes header (`when.headers`), and a legacy sender's JSON labelled
    text/plain (`body: json`, local Yekaterinburg time) each become their own span."""
    names = ("crm.order.confirmed", "crm.note.added", "crm.order.shipped",
             "crm.shipment.delayed", "crm.legacy.score")
    expects = world.plan.expected(*names)
    idx = world.wait_expected(expects)
    problems = []
    for e in expects:
        check_span(world, idx, e, problems)
    assert_no_problems(problems, "problems with CRM JSON spans")
    want = Counter(e.name for e in expects)
    got = Counter(n for (o, n), found in idx.items() if n in names for _ in found)
    assert got == want, f"CRM spans by name: {dict(got)}, expected {dict(want)}"


def test_event_time_from_the_amqp_timestamp_property(world):
    """PaymentCaptured says no time in its body: the span is at the AMQP `timestamp`."""
    expects = world.plan.expected("crm.payment.captured")
    idx = world.wait_expected(expects)
    problems = []
    for e in expects:
        check_span(world, idx, e, problems)
    assert_no_problems(problems, "problems with spans timed by the AMQP timestamp")


def test_unmappable_bodies_are_dead_lettered_with_their_reason_while_good_ones_flow(world):
    """Malformed XML ("not well-formed XML…"), invalid JSON ("not JSON…"), and XML, JSON,
    text or binary garbage no rule maps ("no rule matched…") go to `<queue>.dead` with the
    reason in x-tracebridge-reason, their body unchanged; every good message interleaved
    with them still became its span (and none of them did)."""
    idx = world.wait_expected(world.plan.expected())
    problems = []
    sources = {MES_Q: "mes", COURIER_Q: "courier-bus", CRM_Q: "crm"}
    for queue, dead in world.plan.dead.items():
        world.bridge.wait_metric("tracebridge_amqp_messages_dead_lettered_total",
                                 lambda v, n=len(dead): v >= n,
                                 f"did not dead-letter the {len(dead)} poison messages of {queue}",
                                 timeout=WAIT, source=sources[queue])
        got = world.dead(queue)
        for d in dead:
            body, props = got[d.message_id]
            reason = (props.headers or {}).get("x-tracebridge-reason")
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            if not reason or not reason.startswith(d.reason_prefix):
                problems.append(f"{queue}: {d.message_id}: reason {reason!r}, expected one "
                                f"starting with {d.reason_prefix!r}")
            if body != d.body:
                problems.append(f"{queue}: {d.message_id}: the dead-lettered body changed")
        extra = set(got) - {d.message_id for d in dead}
        if extra:
            problems.append(f"{queue}: good messages dead-lettered: {sorted(extra)}")
        value = world.bridge.metric("tracebridge_amqp_messages_dead_lettered_total",
                                    source=sources[queue])
        if value != len(dead):
            problems.append(f"{queue}: {value} dead-lettered, expected {len(dead)}")
    assert_no_problems(problems, "problems with dead-lettered messages")
    assert world.bridge.running, "the bridge died"


def test_every_span_is_in_its_orders_trace_with_its_sources_service(world):
    """All spans together: exactly the expected set per order (nothing from a poison
    message, nothing twice), each in the trace derived from its order id, each with the
    service of the source that consumed it."""
    expects = world.plan.expected()
    world.wait_expected(expects)
    time.sleep(1.0)  # let anything unexpected arrive too
    idx = world.index()
    want = Counter((str(e.order), e.name) for e in expects)
    want[(str(BAD_BYTE_ORDER), "mes.operation.completed")] += 1
    got = Counter({key: len(found) for key, found in idx.items()})
    assert got == want, (f"unexpected spans: {dict(got - want)}; "
                         f"missing spans: {dict(want - got)}")
    services = {"mes.operation.completed": {"MES"}, "mes.job": {"MES"},
                "courier.handover": {"Courier", "CourierPortal"}, "courier.pickup": {"Courier"}}
    problems = []
    for (order, name), found in idx.items():
        for s in found.values():
            if s["trace_id"] != expected_trace_id(order):
                problems.append(f"{name} of order {order}: trace {s['trace_id']}")
            allowed = services.get(name, {"CRM"} if name.startswith("crm.") else set())
            if s["service"] not in allowed:
                problems.append(f"{name} of order {order}: service.name {s['service']!r}")
    assert_no_problems(problems, "spans in the wrong trace or service")


def test_every_message_is_acknowledged_and_the_bridge_stops_cleanly(world):
    p = world.plan
    counts = {"mes": (MES_Q, len(p.mes_phase1) + len(p.mes_phase2)),
              "courier-bus": (COURIER_Q, len(p.courier)), "crm": (CRM_Q, len(p.crm))}
    for source, (queue, n) in counts.items():
        world.bridge.wait_metric("tracebridge_amqp_messages_acked_total", lambda v, n=n: v == n,
                                 f"did not acknowledge the {n} messages of {queue}",
                                 timeout=WAIT, source=source)
        wait_for(lambda q=queue: queue_counts(world.broker.url, q)[0] == 0, WAIT,
                 lambda q=queue: f"messages left in {q}: {queue_counts(world.broker.url, q)}")
    assert world.bridge.terminate() == 0
