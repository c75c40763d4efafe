#!/usr/bin/env python3
"""Generate deterministic sample logs for TraceBridge.

Two modes:

* Samples (default): ``--orders N --seed S --out DIR`` writes realistic, rotated logs of
  four systems (Shop, CRM, MES, configurator) for N orders, plus ``DIR/truth.json``, the
  ground truth the tests assert against (every order's statuses, steps, aliases, and the
  number of lines, noise lines and malformed lines per source).
* Benchmark: ``--bench-lines M --seed S --out DIR`` writes about M lines across
  ``shop/shop.log``, ``crm/crm.log`` and ``mes/mes.log`` (plain files, about one line in
  three matching a rule of ``examples/tracebridge.yaml``) and prints the counts.

The output depends only on the arguments: the same seed and N give byte-identical files
(gzip members are written with ``mtime=0`` and no file name).

Line formats (one example each; ``examples/README.md`` lists them all):

  shop  (UTF-8, ISO time with offset, Europe/Berlin):
    2026-03-29T01:59:58.123+01:00 INFO  [http-nio-8080-exec-3] c.acme.shop.OrderService - Order 1234567 created by user u1042 channel=web total=129.90
  crm   (UTF-8, local Europe/Berlin without zone; plus CLEF JSON and logfmt lines in UTC):
    2026-03-29 01:59:58.1230|INFO|Acme.Crm.Payments|Payment for order 1234567 status changed to PAID user=u1042
  mes   (windows-1251, local Europe/Moscow without zone, multiline stack traces):
    29.03.2026 03:59:58.123 [INFO ] Задание J-00077 создано для заказа 1234567
  configurator (UTF-8, UTC with a literal Z, whole seconds):
    2026-03-29 00:59:58Z file f-9a1b saved for order 1234567

Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

# --------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------

NAMESPACE = "demo"
BERLIN = "Europe/Berlin"
MOSCOW = "Europe/Moscow"

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

# Orders are created in this UTC window; it contains the switch to summer time in
# Berlin (2026-03-29 01:00 UTC: 02:00 CET -> 03:00 CEST), so offsets change inside the data.
WINDOW_START_MS = int(datetime(2026, 3, 28, 6, 0, tzinfo=timezone.utc).timestamp() * 1000)
WINDOW_END_MS = int(datetime(2026, 3, 29, 6, 0, tzinfo=timezone.utc).timestamp() * 1000)
DST_SWITCH_MS = int(datetime(2026, 3, 29, 1, 0, tzinfo=timezone.utc).timestamp() * 1000)

STAGES = [
    "CREATED",
    "PAYMENT_PENDING",
    "PAID",
    "IN_PRODUCTION",
    "PRODUCED",
    "HANDED_TO_COURIER",
    "DELIVERED",
]
STAGE_INDEX = {name: i for i, name in enumerate(STAGES)}
FINAL_STATUSES = ("DELIVERED", "CANCELLED")

SOURCES = ("shop", "crm", "mes", "configurator")
SERVICE = {"shop": "Shop", "crm": "CRM", "mes": "MES", "configurator": "Configurator"}
ENCODING = {"shop": "utf-8", "crm": "utf-8", "mes": "cp1251", "configurator": "utf-8"}
STATUS_SOURCE = {
    "CREATED": "shop",
    "PAYMENT_PENDING": "crm",
    "PAID": "crm",
    "IN_PRODUCTION": "mes",
    "PRODUCED": "mes",
    "HANDED_TO_COURIER": "mes",
    "DELIVERED": "shop",
    "CANCELLED": "shop",
}

# Production steps in their natural order; each job runs an ordered subset of them.
STEP_NAMES = ["Раскрой", "Фрезеровка", "Шлифовка", "Покраска", "Сборка", "Упаковка"]

# (kind, name, source) of the non-status events as examples/tracebridge.yaml produces them:
# the event's `name:`; a link rule without an event records "<alias kind> <key> linked".
EVENT_NAMES = {
    "file_saved": ("file_link", "config_file {file_id} linked", "configurator"),
    "file_approved": ("log", "config file approved", "configurator"),
    "confirmed": ("log", "order confirmed", "crm"),
    "invoice": ("db_write", "invoice issued", "crm"),
    "job_link": ("file_link", "mes_job {job_id} linked", "mes"),
    "error": ("log", "production error", "mes"),
}

COURIERS = ["DHL", "DPD", "GLS", "UPS", "Hermes"]
CHANNELS = ["web", "web", "web", "app", "app", "phone"]

# --------------------------------------------------------------------------------------
# Time rendering
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=16384)
def _local_second(epoch_second: int, zone: str) -> tuple[str, str, str, str]:
    """Parts of one UTC second rendered in `zone`: (Y-m-d, d.m.Y, H:M:S, +hh:mm)."""
    dt = datetime.fromtimestamp(epoch_second, ZoneInfo(zone))
    offset = dt.utcoffset()
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return (
        dt.strftime("%Y-%m-%d"),
        dt.strftime("%d.%m.%Y"),
        dt.strftime("%H:%M:%S"),
        f"{sign}{minutes // 60:02d}:{minutes % 60:02d}",
    )


def shop_ts(ms: int) -> str:
    """logback ISO-8601 with offset in Berlin: 2026-03-29T01:59:58.123+01:00."""
    ymd, _, hms, off = _local_second(ms // 1000, BERLIN)
    return f"{ymd}T{hms}.{ms % 1000:03d}{off}"


def crm_ts(ms: int) -> str:
    """NLog local Berlin time without zone, 4 fraction digits: 2026-03-29 01:59:58.1230."""
    ymd, _, hms, _ = _local_second(ms // 1000, BERLIN)
    return f"{ymd} {hms}.{ms % 1000:03d}0"


def clef_ts(ms: int) -> str:
    """Serilog CLEF UTC time, 7 fraction digits: 2026-03-29T00:59:58.1230000Z."""
    ymd, _, hms, _ = _local_second(ms // 1000, "UTC")
    return f"{ymd}T{hms}.{ms % 1000:03d}0000Z"


def logfmt_ts(ms: int) -> str:
    """logfmt UTC time, milliseconds: 2026-03-29T00:59:58.123Z."""
    ymd, _, hms, _ = _local_second(ms // 1000, "UTC")
    return f"{ymd}T{hms}.{ms % 1000:03d}Z"


def mes_ts(ms: int) -> str:
    """MES local Moscow time without zone: 29.03.2026 03:59:58.123."""
    _, dmy, hms, _ = _local_second(ms // 1000, MOSCOW)
    return f"{dmy} {hms}.{ms % 1000:03d}"


def cfg_ts(ms: int) -> str:
    """Configurator UTC time, whole seconds, literal Z: 2026-03-29 00:59:58Z."""
    ymd, _, hms, _ = _local_second(ms // 1000, "UTC")
    return f"{ymd} {hms}Z"


# --------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------


@dataclass
class Fact:
    """Something a system logs about an order; rendered into one log record later.

    kind is one of: created, cancelled, delivered (shop); payment, confirmed, invoice (crm);
    job_link, job_status, step_start, step_end, handed, error (mes); file_saved,
    file_approved (configurator).
    """

    ms: int
    source: str
    kind: str
    data: dict = field(default_factory=dict)


@dataclass
class Order:
    """One order's identity, fate and the facts the systems log about it."""

    order_id: str
    user_id: str
    fate: str  # delivered | cancelled | unfinished
    stop_stage: str | None = None  # unfinished: last status reached; cancelled: cancelled after
    alias_before_link: bool = False
    file_id: str | None = None
    job_id: str | None = None
    facts: list[Fact] = field(default_factory=list)


@dataclass
class Record:
    """One log record (one line, or several for a multiline MES record) of a source."""

    ms: int
    seq: int
    lines: list  # list[str] (encoded with the source's encoding) or list[bytes] (raw)
    category: str  # event | noise | malformed


# --------------------------------------------------------------------------------------
# Random helpers
# --------------------------------------------------------------------------------------


def gap(rng: random.Random, low_ms: int, high_ms: int) -> int:
    """A log-uniform duration between low and high (whole milliseconds): mostly short."""
    return int(round(low_ms * (high_ms / low_ms) ** rng.random()))


def unique_ints(rng: random.Random, low: int, high: int, count: int) -> list[int]:
    """`count` distinct integers in [low, high], in random order."""
    return rng.sample(range(low, high + 1), count)


# --------------------------------------------------------------------------------------
# Order life cycles
# --------------------------------------------------------------------------------------


def assign_fates(rng: random.Random, n: int) -> list[tuple[str, str | None]]:
    """Fates for n orders: ~5% cancelled, ~10% unfinished, the rest delivered."""
    n_cancel = max(1, round(n * 0.05)) if n >= 3 else 0
    n_unfinished = max(1, round(n * 0.10)) if n >= 3 else 0
    fates: list[tuple[str, str | None]] = []
    for i in range(n):
        if i < n_cancel:
            fates.append(("cancelled", rng.choice(["CREATED", "PAYMENT_PENDING", "PAID"])))
        elif i < n_cancel + n_unfinished:
            fates.append(("unfinished", rng.choice(STAGES[:-1])))
        else:
            fates.append(("delivered", None))
    rng.shuffle(fates)
    return fates


def reaches_production(fate: str, stop_stage: str | None) -> bool:
    """Whether the order's kept timeline contains IN_PRODUCTION."""
    if fate == "delivered":
        return True
    if fate == "unfinished":
        return STAGE_INDEX[stop_stage] >= STAGE_INDEX["IN_PRODUCTION"]
    return False


def full_timeline(rng: random.Random, order: Order, start_ms: int) -> tuple[list[Fact], dict]:
    """All facts of a delivered order starting at start_ms, and each status's time.

    Gaps are chosen so that a whole order spans about 1 to 28 hours.
    """
    facts: list[Fact] = []
    at: dict[str, int] = {}

    def add(ms: int, source: str, kind: str, **data) -> int:
        facts.append(Fact(ms, source, kind, data))
        return ms

    t = at["CREATED"] = add(
        start_ms, "shop", "created",
        channel=rng.choice(CHANNELS), total=f"{rng.randint(1990, 249990) / 100:.2f}",
        thread=rng.randint(1, 12),
    )
    saved = _whole_second(t + gap(rng, 20 * SECOND, 5 * MINUTE))
    add(saved, "configurator", "file_saved")
    t = at["PAYMENT_PENDING"] = add(
        saved + gap(rng, 10 * SECOND, 10 * MINUTE), "crm", "payment",
        status="PAYMENT_PENDING", json=rng.random() < 0.5,
    )
    t = at["PAID"] = add(
        t + gap(rng, 20 * SECOND, 2 * HOUR), "crm", "payment",
        status="PAID", json=rng.random() < 0.3,
    )
    add(t + gap(rng, 1 * SECOND, 60 * SECOND), "crm", "invoice",
        invoice=f"INV-{rng.randint(10, 99999)}", amount=facts[0].data["total"])
    add(t + gap(rng, 90 * SECOND, 5 * MINUTE), "crm", "confirmed",
        via=rng.choice(["email", "email", "sms", "phone"]))
    approved = _whole_second(t + gap(rng, 6 * MINUTE, 2 * HOUR))
    add(approved, "configurator", "file_approved")
    if order.alias_before_link:
        in_prod = approved + gap(rng, 1 * MINUTE, 45 * MINUTE)
        link = in_prod + gap(rng, 5 * SECOND, 3 * MINUTE)
    else:
        link = approved + gap(rng, 1 * MINUTE, 45 * MINUTE)
        in_prod = link + gap(rng, 10 * SECOND, 20 * MINUTE)
    add(link, "mes", "job_link")
    at["IN_PRODUCTION"] = add(in_prod, "mes", "job_status", status="IN_PRODUCTION")

    t = max(link, in_prod)
    steps = sorted(rng.sample(range(len(STEP_NAMES)), rng.randint(2, 4)))
    has_error = rng.random() < 0.3
    error_step = rng.choice(steps)
    for i, index in enumerate(steps):
        name = STEP_NAMES[index]
        begin = t + gap(rng, 1 * MINUTE, 20 * MINUTE)
        end = begin + gap(rng, 5 * MINUTE, 90 * MINUTE)
        add(begin, "mes", "step_start", step=name, step_no=i)
        add(end, "mes", "step_end", step=name, step_no=i)
        if has_error and index == error_step:
            add(begin + (end - begin) // 3, "mes", "error", step=name, step_no=i,
                variant=rng.randint(0, 2))
        t = end
    t = at["PRODUCED"] = add(t + gap(rng, 1 * MINUTE, 15 * MINUTE), "mes", "job_status",
                             status="PRODUCED")
    t = at["HANDED_TO_COURIER"] = add(t + gap(rng, 10 * MINUTE, 3 * HOUR), "mes", "handed",
                                      waybill=f"{rng.randint(10**9, 10**10 - 1)}")
    courier = rng.choice(COURIERS)
    at["DELIVERED"] = add(t + gap(rng, 1 * HOUR, 12 * HOUR), "shop", "delivered",
                          courier=courier, tracking=f"{courier[:2].upper()}{rng.randint(10**9, 10**10 - 1)}")
    return facts, at


def _whole_second(ms: int) -> int:
    """Rounds up to a whole second (the configurator logs no fraction)."""
    return -(-ms // 1000) * 1000


def plan_order(rng: random.Random, order: Order, start_ms: int) -> None:
    """Fills order.facts according to its fate (delivered, cancelled, unfinished)."""
    facts, at = full_timeline(rng, order, start_ms)
    if order.fate == "delivered":
        order.facts = facts
        return

    stage = order.stop_stage
    this_t = at[stage]
    next_t = at[STAGES[STAGE_INDEX[stage] + 1]]
    cut = this_t + int((next_t - this_t) * rng.uniform(0.3, 0.9))

    if order.fate == "cancelled":
        kept = [f for f in facts if f.ms < cut and f.source in ("shop", "crm", "configurator")
                and f.kind != "file_approved"]
        kept.append(Fact(cut, "shop", "cancelled",
                         {"reason": rng.choice(["customer_request", "payment_timeout",
                                                "out_of_stock"]),
                          "thread": rng.randint(1, 12)}))
        order.facts = kept
        return

    # Unfinished: keep what happened before the cut; a step still running at the cut is
    # dropped whole (its start, end and errors) so that every kept step is complete.
    open_steps = {f.data["step_no"] for f in facts if f.kind == "step_end" and f.ms >= cut}
    order.facts = [
        f for f in facts
        if f.ms < cut and not (f.kind in ("step_start", "step_end", "error")
                               and f.data["step_no"] in open_steps)
    ]


def pin_to_dst_switch(rng: random.Random, orders: list[Order]) -> None:
    """Moves one delivered order so that CRM logs its PAYMENT_PENDING at 01:59:58 local
    time (CET) and its PAID after 03:00 (CEST): its local times jump by an hour.

    The shift is a whole number of seconds so the configurator's times stay whole seconds.
    """
    candidates = [o for o in orders if o.fate == "delivered" and not o.alias_before_link]
    if not candidates:
        return
    order = rng.choice(candidates)
    pending = next(f.ms for f in order.facts if f.data.get("status") == "PAYMENT_PENDING")
    target = DST_SWITCH_MS - 2 * SECOND + 123
    delta = round((target - pending) / 1000) * 1000
    for f in order.facts:
        f.ms += delta


def build_orders(rng: random.Random, n: int) -> list[Order]:
    """Creates n orders with ids, users, fates and planned facts; assigns job/file ids."""
    order_ids = [str(x) for x in unique_ints(rng, 100000, 9999999, n)]
    pool = max(5, int(n * 0.7))
    users = [f"u{x}" for x in unique_ints(rng, 1000, 1000 + pool * 10, pool)]
    fates = assign_fates(rng, n)
    starts = sorted(rng.randint(WINDOW_START_MS, WINDOW_END_MS) for _ in range(n))

    orders = [Order(order_ids[i], rng.choice(users), fates[i][0], fates[i][1]) for i in range(n)]
    producing = [o for o in orders if reaches_production(o.fate, o.stop_stage)]
    if producing:
        for o in rng.sample(producing, max(1, round(n * 0.05))):
            o.alias_before_link = True
    for order, start in zip(orders, starts):
        plan_order(rng, order, start)
    pin_to_dst_switch(rng, orders)

    hex_digits = max(4, len(f"{4 * n:x}"))
    file_numbers = unique_ints(rng, 0, 16 ** hex_digits - 1, n)
    for order, number in zip(orders, file_numbers):
        if any(f.kind == "file_saved" for f in order.facts):
            order.file_id = f"f-{number:0{hex_digits}x}"
    linked = sorted((f.ms, i) for i, o in enumerate(orders) for f in o.facts
                    if f.kind == "job_link")
    job_no = rng.randint(20, 900)
    for _, i in linked:
        orders[i].job_id = f"J-{job_no:05d}"
        job_no += rng.randint(1, 3)
    return orders


# --------------------------------------------------------------------------------------
# Rendering facts into log records
# --------------------------------------------------------------------------------------

JAVA_TRACES = [
    ["ru.acme.mes.equipment.MachineTimeoutException: CNC-3 did not respond within 30000 ms",
     "\tat ru.acme.mes.equipment.MachineClient.await(MachineClient.java:212)",
     "\tat ru.acme.mes.equipment.MachineClient.send(MachineClient.java:148)",
     "\tat ru.acme.mes.production.StepRunner.run(StepRunner.java:87)",
     "Caused by: java.net.SocketTimeoutException: Read timed out",
     "\tat java.base/java.net.SocketInputStream.socketRead0(Native Method)",
     "\t... 3 more"],
    ["ru.acme.mes.production.MaterialShortageException: нет заготовки на складе 2",
     "\tat ru.acme.mes.production.MaterialGuard.check(MaterialGuard.java:54)",
     "\tat ru.acme.mes.production.StepRunner.run(StepRunner.java:71)"],
    ["System.IO.IOException: Канал связи с контроллером закрыт",
     "   at Acme.Mes.Plc.PlcChannel.Read(Int32 address)",
     "   at Acme.Mes.Plc.PlcPoller.Poll()",
     "   at Acme.Mes.Production.StepRunner.Run()"],
]
ERROR_MESSAGES = [
    "станок CNC-3 не ответил за 30 с",
    "нет заготовки на складе 2",
    "потеряна связь с контроллером ПЛК-1",
]


def render_fact(fact: Fact, order: Order) -> list[str]:
    """The log line(s) a system writes for one fact of an order."""
    d = fact.data
    oid, uid, ms = order.order_id, order.user_id, fact.ms
    k = fact.kind
    if k == "created":
        return [f"{shop_ts(ms)} INFO  [http-nio-8080-exec-{d['thread']}] c.acme.shop.OrderService"
                f" - Order {oid} created by user {uid} channel={d['channel']} total={d['total']}"]
    if k == "cancelled":
        return [f"{shop_ts(ms)} INFO  [http-nio-8080-exec-{d['thread']}] c.acme.shop.OrderService"
                f" - Order {oid} status changed to CANCELLED by user {uid} reason={d['reason']}"]
    if k == "delivered":
        return [f"{shop_ts(ms)} INFO  [courier-webhook-2] c.acme.shop.DeliveryWebhook"
                f" - Order {oid} delivered courier={d['courier']} tracking={d['tracking']}"]
    if k == "payment":
        if d["json"]:
            return [json.dumps({
                "@t": clef_ts(ms), "@l": "Information",
                "@mt": "Payment of order {OrderId} changed to {Status}",
                "OrderId": oid, "Status": d["status"], "UserId": uid,
                "SourceContext": "Acme.Crm.Payments.Api",
            }, ensure_ascii=False, separators=(",", ":"))]
        return [f"{crm_ts(ms)}|INFO|Acme.Crm.Payments|Payment for order {oid} status changed to"
                f" {d['status']} user={uid}"]
    if k == "confirmed":
        return [f"{crm_ts(ms)}|INFO|Acme.Crm.Orders|Customer {uid} confirmed order {oid}"
                f" via {d['via']}"]
    if k == "invoice":
        return [f'ts={logfmt_ts(ms)} level=info msg="invoice issued" order_id={oid}'
                f" invoice={d['invoice']} amount={d['amount']}"]
    if k == "file_saved":
        return [f"{cfg_ts(ms)} file {order.file_id} saved for order {oid}"]
    if k == "file_approved":
        return [f"{cfg_ts(ms)} file {order.file_id} approved"]
    job = order.job_id
    if k == "job_link":
        return [f"{mes_ts(ms)} [INFO ] Задание {job} создано для заказа {oid}"]
    if k == "job_status":
        return [f"{mes_ts(ms)} [INFO ] Задание {job}: статус {d['status']}"]
    if k == "step_start":
        return [f'{mes_ts(ms)} [INFO ] Задание {job}: начат этап "{d["step"]}"']
    if k == "step_end":
        return [f'{mes_ts(ms)} [INFO ] Задание {job}: завершён этап "{d["step"]}"']
    if k == "handed":
        return [f"{mes_ts(ms)} [INFO ] Задание {job} передано курьеру (накладная {d['waybill']})"]
    if k == "error":
        v = d["variant"]
        return [f'{mes_ts(ms)} [ERROR] Задание {job}: ошибка на этапе "{d["step"]}":'
                f" {ERROR_MESSAGES[v]}"] + JAVA_TRACES[v]
    raise ValueError(f"unknown fact kind {k}")


def noise_record(rng: random.Random, source: str, ms: int, order_ids: list[str],
                 users: list[str]) -> list[str]:
    """One record that no rule matches (health checks, cache stats, sync reports…)."""
    r = rng.randrange(5)
    if source == "shop":
        ts, n = shop_ts(ms), rng.randint(1, 12)
        return [[
            f"{ts} DEBUG [http-nio-8080-exec-{n}] c.a.shop.web.HealthController - GET /actuator/health status=200 took={rng.randint(1, 40)}ms",
            f"{ts} INFO  [cache-stats-1] c.acme.shop.cache.CacheMetrics - cache=products size={rng.randint(900, 5000)} hits={rng.randint(10**4, 10**6)} misses={rng.randint(0, 999)} evictions={rng.randint(0, 20)}",
            f"{ts} INFO  [http-nio-8080-exec-{n}] c.acme.shop.CartService - Cart {rng.randint(10**4, 10**6)} updated by user {rng.choice(users)} items={rng.randint(1, 9)}",
            f"{ts} WARN  [http-nio-8080-exec-{n}] c.a.shop.web.RateLimiter - client 10.0.{rng.randint(0, 9)}.{rng.randint(2, 250)} throttled path=/api/catalog",
            f"{ts} INFO  [scheduling-1] c.acme.shop.catalog.PriceSync - price list synchronised: {rng.randint(0, 400)} items changed",
        ][r]]
    if source == "crm":
        ts = crm_ts(ms)
        return [[
            f"{ts}|DEBUG|Acme.Crm.Sync|Synchronised {rng.randint(1, 500)} contacts in {rng.randint(80, 4000)} ms",
            f"{ts}|INFO|Acme.Crm.Mail|Newsletter batch {rng.randint(1, 99)} sent to {rng.randint(10, 900)} recipients",
            json.dumps({"@t": clef_ts(ms), "@l": "Debug", "@mt": "Health check {HealthStatus} in {Elapsed} ms",
                        "HealthStatus": "Healthy", "Elapsed": rng.randint(1, 30)}, separators=(",", ":")),
            f'ts={logfmt_ts(ms)} level=info msg="reconciliation finished" batch={rng.randint(1, 400)} rows={rng.randint(0, 5000)} duration={rng.randint(1, 90) / 10}s',
            # Has every key the invoice rule reads, but its `where` rejects msg and invoice.
            f'ts={logfmt_ts(ms)} level=debug msg="invoice preview rendered" order_id={rng.choice(order_ids)} invoice=DRAFT amount=0.00',
        ][r]]
    if source == "mes":
        ts = mes_ts(ms)
        if r == 4:
            return [f"{ts} [ERROR] Ошибка подключения к OPC-серверу opc.tcp://10.1.2.{rng.randint(2, 40)}:4840",
                    "ru.acme.mes.opc.OpcConnectException: connection refused",
                    "\tat ru.acme.mes.opc.OpcClient.connect(OpcClient.java:97)",
                    "\tat ru.acme.mes.opc.OpcPoller.run(OpcPoller.java:41)"]
        return [[
            f"{ts} [INFO ] Опрос оборудования: {rng.randint(8, 14)} станков в сети, {rng.randint(0, 5)} в простое",
            f"{ts} [DEBUG] Синхронизация справочника материалов: {rng.randint(0, 30)} изменений",
            f"{ts} [WARN ] Температура в цехе {rng.randint(1, 3)}: {rng.randint(180, 290) / 10} °C",
            f"{ts} [INFO ] Смена {rng.randint(1, 3)}: выработка {rng.randint(40, 99)} %",
        ][r]]
    ts = cfg_ts(ms)
    return [[
        f"{ts} autosave: {rng.randint(0, 30)} open sessions",
        f"{ts} render queue length {rng.randint(0, 12)}",
        f"{ts} user session expired (idle {rng.randint(15, 120)} min)",
        f"{ts} template library reloaded ({rng.randint(100, 400)} templates)",
        f"{ts} pdf export finished in {rng.randint(200, 9000)} ms",
    ][r]]


def malformed_records(rng: random.Random, window: tuple[int, int]) -> dict[str, list[Record]]:
    """The ten deliberately broken records, per source, with a note each for truth.json.

    Order id 0000000 never belongs to a real order: a line carrying it must not produce one.
    """
    t = [rng.randint(*window) for _ in range(10)]
    out: dict[str, list[tuple[int, list, str]]] = {
        "shop": [
            (t[0], [f"{shop_ts(t[0])} INFO  [http-nio-8080-exec-7] c.acme.shop.OrderService - Order 48"],
             "truncated"),
            (t[1], ["2026-03-28T24:71:99.000+01:00 INFO  [http-nio-8080-exec-1] c.acme.shop.OrderService"
                    " - Order 0000000 created by user u0000 channel=web total=1.00"], "bad_timestamp"),
            (t[2], [f"{shop_ts(t[2])} DEBUG [http-nio-8080-exec-4] c.acme.shop.web.RequestDump - body="
                    + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                              for _ in range(100 * 1024))], "too_long"),
            (t[3], [f"{shop_ts(t[3])} INFO  [http-nio-8080-exec-9] c.acme.shop.SearchController - query=\"".encode()
                    + b"\xff\xfe\xc3(\x80" + b"\" results=0"], "invalid_bytes"),
        ],
        "crm": [
            (t[4], ['{"@t":"' + clef_ts(t[4]) + '","@l":"Inform'], "truncated"),
            (t[5], ["2026-03-29 25:61:00.0000|INFO|Acme.Crm.Payments|Payment for order 0000000 status"
                    " changed to PAID user=u0000"], "bad_timestamp"),
            (t[6], [""], "empty"),
        ],
        "mes": [
            (t[7], [f"{mes_ts(t[7])} [INFO ] Задание J-0"], "truncated"),
            (t[8], [f"{mes_ts(t[8])} [INFO ] Опрос датчиков: ".encode("cp1251") + b"\x98\x98 \x98"],
             "invalid_bytes"),
        ],
        "configurator": [
            (t[9], ["2026-03-29 99:00:00Z file f-0000 saved for order 0000000"], "bad_timestamp"),
        ],
    }
    return {src: [Record(ms, -1, lines, "malformed:" + note) for ms, lines, note in items]
            for src, items in out.items()}


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def encode_record(record: Record, encoding: str) -> bytes:
    """The record's bytes, each physical line terminated by '\\n'."""
    out = bytearray()
    for line in record.lines:
        out += line if isinstance(line, bytes) else line.encode(encoding)
        out += b"\n"
    return bytes(out)


def write_rotated(directory: str, base: str, records: list[Record], encoding: str) -> None:
    """Splits chronological records into base.2.gz (oldest), base.1 and base (newest)."""
    os.makedirs(directory, exist_ok=True)
    n = len(records)
    chunks = [records[: n // 3], records[n // 3: 2 * n // 3], records[2 * n // 3:]]
    names = [f"{base}.2.gz", f"{base}.1", base]
    for name, chunk in zip(names, chunks):
        data = b"".join(encode_record(r, encoding) for r in chunk)
        path = os.path.join(directory, name)
        if name.endswith(".gz"):
            data = gzip.compress(data, compresslevel=9, mtime=0)
        with open(path, "wb") as f:
            f.write(data)


def generate_samples(n: int, seed: int, out: str) -> dict:
    """Writes the rotated sample logs of n orders and truth.json under `out`; returns truth."""
    rng = random.Random(seed)
    orders = build_orders(rng, n)
    by_source: dict[str, list[Record]] = {s: [] for s in SOURCES}
    seq = 0
    for order in orders:
        for fact in order.facts:
            by_source[fact.source].append(Record(fact.ms, seq, render_fact(fact, order), "event"))
            seq += 1

    all_ms = [r.ms for recs in by_source.values() for r in recs]
    window = (min(all_ms) - 10 * MINUTE, max(all_ms) + 10 * MINUTE)
    order_ids = [o.order_id for o in orders]
    users = sorted({o.user_id for o in orders})
    for source in SOURCES:
        events = len(by_source[source])
        for _ in range(max(3, round(events * 0.25))):
            ms = rng.randint(*window)
            by_source[source].append(
                Record(ms, seq, noise_record(rng, source, ms, order_ids, users), "noise"))
            seq += 1
    for source, records in malformed_records(rng, window).items():
        for r in records:
            r.seq = seq
            seq += 1
        by_source[source].extend(records)

    for source in SOURCES:
        records = sorted(by_source[source], key=lambda r: (r.ms, r.seq))
        write_rotated(os.path.join(out, source), f"{source}.log", records, ENCODING[source])

    truth = build_truth(seed, orders, by_source)
    with open(os.path.join(out, "truth.json"), "w", encoding="utf-8") as f:
        json.dump(truth, f, ensure_ascii=False, indent=2)
        f.write("\n")
    return truth


def build_truth(seed: int, orders: list[Order], by_source: dict[str, list[Record]]) -> dict:
    """The ground truth: per order its statuses, steps and aliases; per source the counts."""
    truth_orders = {}
    for o in sorted(orders, key=lambda o: min(f.ms for f in o.facts)):
        statuses, steps, events = [], [], []
        starts: dict[int, Fact] = {}
        for f in sorted(o.facts, key=lambda f: f.ms):
            status = {"created": "CREATED", "cancelled": "CANCELLED", "delivered": "DELIVERED",
                      "handed": "HANDED_TO_COURIER"}.get(f.kind) or (
                f.data.get("status") if f.kind in ("payment", "job_status") else None)
            if status:
                statuses.append({"status": status, "service": SERVICE[STATUS_SOURCE[status]],
                                 "time_unix_nano": f.ms * 1_000_000})
            elif f.kind == "step_start":
                starts[f.data["step_no"]] = f
            elif f.kind == "step_end":
                start = starts.pop(f.data["step_no"])
                steps.append({"name": f.data["step"], "service": "MES",
                              "start_unix_nano": start.ms * 1_000_000,
                              "end_unix_nano": f.ms * 1_000_000})
            else:
                kind, name, source = EVENT_NAMES[f.kind]
                name = name.format(job_id=o.job_id, file_id=o.file_id)
                events.append({"name": name, "kind": kind, "service": SERVICE[source],
                               "time_unix_nano": f.ms * 1_000_000})
        assert not starts, f"open step in order {o.order_id}"
        truth_orders[o.order_id] = {
            "user_id": o.user_id,
            "job_id": o.job_id,
            "file_id": o.file_id,
            "final": statuses[-1]["status"] in FINAL_STATUSES,
            "fate": o.fate,
            "statuses": statuses,
            "steps": steps,
            "events": events,
            "alias_before_link": o.alias_before_link,
            "crosses_dst": statuses[0]["time_unix_nano"] < DST_SWITCH_MS * 1_000_000
            <= statuses[-1]["time_unix_nano"],
        }

    def count(source: str, predicate) -> int:
        return sum(1 for r in by_source[source] if predicate(r))

    return {
        "seed": seed,
        "namespace": NAMESPACE,
        "dst_switch_unix_nano": DST_SWITCH_MS * 1_000_000,
        "orders": truth_orders,
        "malformed": {s: count(s, lambda r: r.category.startswith("malformed")) for s in SOURCES},
        "malformed_lines": [
            {"source": s, "kind": r.category.split(":", 1)[1],
             "time_unix_nano": r.ms * 1_000_000}
            for s in SOURCES for r in sorted(by_source[s], key=lambda r: (r.ms, r.seq))
            if r.category.startswith("malformed")
        ],
        "lines": {s: sum(len(r.lines) for r in by_source[s]) for s in SOURCES},
        "records": {s: len(by_source[s]) for s in SOURCES},
        "event_records": {s: count(s, lambda r: r.category == "event") for s in SOURCES},
        "noise_records": {s: count(s, lambda r: r.category == "noise") for s in SOURCES},
    }


# --------------------------------------------------------------------------------------
# Benchmark corpus
# --------------------------------------------------------------------------------------

# Lines per order in one batch: matched lines per source and noise lines per source, so
# that each file gets 11 lines per order and one line in three matches a rule.
BENCH_MATCHED = {"shop": 2, "crm": 3, "mes": 6}
BENCH_NOISE = {"shop": 9, "crm": 8, "mes": 5}
BENCH_BATCH = 50
BENCH_BATCH_MS = 10 * MINUTE


def bench_order_lines(rng: random.Random, source: str, t: list[int], oid: str, uid: str,
                      job: str) -> list[tuple[int, str]]:
    """The matched lines of one benchmark order in `source`, at the stage times t[0..10]."""
    if source == "shop":
        return [
            (t[0], f"{shop_ts(t[0])} INFO  [http-nio-8080-exec-{rng.randint(1, 12)}] c.acme.shop.OrderService"
                   f" - Order {oid} created by user {uid} channel=web total={rng.randint(1990, 99990) / 100:.2f}"),
            (t[10], f"{shop_ts(t[10])} INFO  [courier-webhook-2] c.acme.shop.DeliveryWebhook"
                    f" - Order {oid} delivered courier=DHL tracking=DH{rng.randint(10**9, 10**10 - 1)}"),
        ]
    if source == "crm":
        return [
            (t[1], '{"@t":"' + clef_ts(t[1]) + '","@l":"Information","@mt":"Payment of order {OrderId} changed to'
                   ' {Status}","OrderId":"' + oid + '","Status":"PAYMENT_PENDING","UserId":"' + uid
                   + '","SourceContext":"Acme.Crm.Payments.Api"}'),
            (t[2], f"{crm_ts(t[2])}|INFO|Acme.Crm.Payments|Payment for order {oid} status changed to PAID"
                   f" user={uid} gateway=stripe"),
            (t[3], f'ts={logfmt_ts(t[3])} level=info msg="invoice issued" order_id={oid}'
                   f" invoice=INV-{rng.randint(10, 99999)} amount=129.90 currency=EUR"),
        ]
    return [
        (t[4], f"{mes_ts(t[4])} [INFO ] Задание {job} создано для заказа {oid}, приоритет обычный"),
        (t[5], f"{mes_ts(t[5])} [INFO ] Задание {job}: статус IN_PRODUCTION"),
        (t[6], f'{mes_ts(t[6])} [INFO ] Задание {job}: начат этап "Фрезеровка"'),
        (t[7], f'{mes_ts(t[7])} [INFO ] Задание {job}: завершён этап "Фрезеровка"'),
        (t[8], f"{mes_ts(t[8])} [INFO ] Задание {job}: статус PRODUCED"),
        (t[9], f"{mes_ts(t[9])} [INFO ] Задание {job} передано курьеру (накладная {rng.randint(10**9, 10**10 - 1)})"),
    ]


def bench_noise_line(rng: random.Random, source: str, ms: int) -> str:
    """One unmatched line, padded so that a file averages about 145 bytes a line."""
    if source == "shop":
        return (f"{shop_ts(ms)} INFO  [cache-stats-1] c.acme.shop.cache.CacheMetrics - cache=products"
                f" size={rng.randint(900, 5000)} hits={rng.randint(10**5, 10**6)} misses={rng.randint(0, 999)}"
                f" evictions={rng.randint(0, 20)} load_time={rng.randint(1, 999)}ms")
    if source == "crm":
        return (f"{crm_ts(ms)}|DEBUG|Acme.Crm.Sync.ContactSynchroniser|Synchronised {rng.randint(1, 500)}"
                f" contacts with the mail provider in {rng.randint(80, 4000)} ms, next run in 60 s, batch size 500,"
                f" {rng.randint(0, 9)} retries")
    return (f"{mes_ts(ms)} [INFO ] Опрос оборудования завершён: {rng.randint(8, 14)} станков в сети,"
            f" {rng.randint(0, 5)} в простое, {rng.randint(0, 3)} на обслуживании, цех {rng.randint(1, 3)}"
            f", линия {rng.randint(1, 9)}, средняя загрузка {rng.randint(10, 99)} %, ошибок связи: {rng.randint(0, 4)}")


def generate_bench(lines: int, seed: int, out: str) -> dict:
    """Writes about `lines` lines across shop/crm/mes plain files; returns the counts."""
    rng = random.Random(seed)
    per_order = sum(BENCH_MATCHED.values()) + sum(BENCH_NOISE.values())
    n_orders = max(1, lines // per_order)
    ids = [str(x) for x in unique_ints(rng, 1000000, 9999999, n_orders)]
    stage_ms = BENCH_BATCH_MS // 12
    counts = {s: {"lines": 0, "matched": 0, "bytes": 0} for s in BENCH_MATCHED}
    files = {}
    for source in BENCH_MATCHED:
        os.makedirs(os.path.join(out, source), exist_ok=True)
        files[source] = open(os.path.join(out, source, f"{source}.log"), "wb", buffering=1 << 20)
    try:
        batch_start = WINDOW_START_MS
        for first in range(0, n_orders, BENCH_BATCH):
            batch = ids[first:first + BENCH_BATCH]
            rows: dict[str, list[tuple[int, str]]] = {s: [] for s in BENCH_MATCHED}
            for i, oid in enumerate(batch):
                uid = f"u{1000 + (first + i) % 7919}"
                job = f"J-{first + i + 100:05d}"
                offset = i * (stage_ms // BENCH_BATCH)
                t = [batch_start + s * stage_ms + offset + rng.randrange(stage_ms // BENCH_BATCH)
                     for s in range(11)]
                for source in BENCH_MATCHED:
                    rows[source].extend(bench_order_lines(rng, source, t, oid, uid, job))
            for source, n_noise in BENCH_NOISE.items():
                matched = len(rows[source])
                for _ in range(n_noise * len(batch)):
                    ms = batch_start + rng.randrange(BENCH_BATCH_MS)
                    rows[source].append((ms, bench_noise_line(rng, source, ms)))
                rows[source].sort(key=lambda row: row[0])
                data = ("\n".join(text for _, text in rows[source]) + "\n").encode(ENCODING[source])
                files[source].write(data)
                counts[source]["lines"] += len(rows[source])
                counts[source]["matched"] += matched
                counts[source]["bytes"] += len(data)
            batch_start += BENCH_BATCH_MS
    finally:
        for f in files.values():
            f.close()
    return counts


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parses the command line."""
    parser = argparse.ArgumentParser(
        description="Generate deterministic TraceBridge sample logs (and truth.json).")
    parser.add_argument("--orders", type=int, default=20, help="number of orders (default 20)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--bench-lines", type=int, metavar="M",
                        help="instead: write a benchmark corpus of about M lines (no truth.json)")
    args = parser.parse_args(argv)
    if args.orders < 1:
        parser.error("--orders must be at least 1")
    if args.bench_lines is not None and args.bench_lines < 1:
        parser.error("--bench-lines must be at least 1")
    return args


def main(argv: list[str]) -> int:
    """Entry point: generates samples or a benchmark corpus and prints a summary."""
    args = parse_args(argv)
    began = time.monotonic()
    if args.bench_lines is not None:
        counts = generate_bench(args.bench_lines, args.seed, args.out)
        total = {k: sum(c[k] for c in counts.values()) for k in ("lines", "matched", "bytes")}
        for source, c in counts.items():
            print(f"{source}: {c['lines']} lines, {c['matched']} matching a rule, {c['bytes']} bytes")
        print(f"total: {total['lines']} lines, {total['matched']} matching a rule, "
              f"{total['bytes']} bytes ({total['bytes'] / max(1, total['lines']):.0f} bytes/line), "
              f"{time.monotonic() - began:.1f}s")
        return 0
    truth = generate_samples(args.orders, args.seed, args.out)
    fates = [o["fate"] for o in truth["orders"].values()]
    print(f"{len(fates)} orders: {fates.count('delivered')} delivered, "
          f"{fates.count('cancelled')} cancelled, {fates.count('unfinished')} unfinished, "
          f"{sum(o['alias_before_link'] for o in truth['orders'].values())} alias before link")
    for source in SOURCES:
        print(f"{source}: {truth['lines'][source]} lines, {truth['records'][source]} records "
              f"({truth['event_records'][source]} events, {truth['noise_records'][source]} noise, "
              f"{truth['malformed'][source]} malformed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
