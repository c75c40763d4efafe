#!/usr/bin/env python3
"""A realistic live log writer for the end-to-end tests of `tracebridge run`.

It plays three services writing about the same orders, in real time, into one folder:

    shop.log   2026-12-02T10:00:00.123Z INFO [shop] order=1000123 status=CREATED user=u42
    crm.log    2026-12-02T10:00:00.301Z level=info component=crm.orders msg="status changed" order_id=1000123 status=PAYMENT_PENDING user=u42
    mes.log    2026-12-02T10:00:00.912Z [MES] INFO  Order 1000123: status IN_PRODUCTION (user u42)
               2026-12-02T10:00:01.020Z [MES] INFO  Order 1000123: step "cutting" started
               2026-12-02T10:00:01.180Z [MES] INFO  Order 1000123: step "cutting" finished

Every order walks Shop CREATED, CRM PAYMENT_PENDING, CRM PAID, MES IN_PRODUCTION, (MES steps),
MES PRODUCED, MES HANDED_TO_COURIER, Shop DELIVERED within a couple of seconds, interleaved
with noise lines that no rule matches (about two per event line, some naming the order).
Timestamps are the current UTC time (milliseconds, `Z`) when the line is written; the events
of one order are at least MIN_GAP apart, so their order never depends on how sources are
merged.

Orders start continuously for `--seconds`; then no new order starts and the writer finishes
the orders under way (a couple of seconds) and exits, so every order reaches DELIVERED.

Files are opened with O_APPEND and written in whole lines, one write per file per tick.
Rotation happens between writes, as logrotate does it (`delaycompress`):

    by rename (every `--rotate-lines` lines of a file)
        x.log.N.gz -> x.log.N+1.gz (N >= 2), x.log.1 gzipped to x.log.2.gz and removed,
        x.log -> x.log.1, a new x.log opened
    by copytruncate (once per file, when it has written `--copytruncate-at-line` lines)
        the same shifting, then x.log copied to x.log.1 and truncated to 0 in place; writing
        goes on through the same O_APPEND descriptor

Every line is also appended, unrotated, to `<truth>/<service>.log`, so the expected spans are
what `tracebridge backfill` makes of the truth folder.

`live_config(log_dir, data_dir, endpoint, **overrides)` writes the matching configuration.

    python3 tests/e2e/logwriter.py --out LOGDIR --truth TRUTHDIR --rate 5000 --seconds 30 \
        --seed 1 --rotate-lines 4000 --copytruncate-at-line 15000 --stats stats.json
"""

from __future__ import annotations

import argparse
import gzip
import heapq
import json
import os
import random
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

SERVICES = ("shop", "crm", "mes")
SERVICE_NAMES = {"shop": "Shop", "crm": "CRM", "mes": "MES"}
FINAL_STATUS = "DELIVERED"
STEP_NAMES = ("cutting", "welding", "painting", "assembly", "quality check")
MIN_GAP = 0.05       # seconds between two events of one order, at least
TICK = 0.02          # seconds between two batches
FIRST_ORDER = 1_000_000
SECRET = "tracebridge-live-e2e-secret"
NAMESPACE = "e2e-live"


# ---------------------------------------------------------------------------
# line formats
# ---------------------------------------------------------------------------

def iso_ms(epoch: float | None = None) -> str:
    """`2026-12-02T10:00:00.123Z` for `epoch` (default: now), truncated to milliseconds."""
    ms = int((time.time() if epoch is None else epoch) * 1000)
    seconds, millis = divmod(ms, 1000)
    stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis:03d}Z"


def status_line(service: str, ts: str, order: int | str, status: str, user: str) -> str:
    if service == "shop":
        return f"{ts} INFO [shop] order={order} status={status} user={user}"
    if service == "crm":
        return (f'{ts} level=info component=crm.orders msg="status changed" order_id={order} '
                f"status={status} user={user}")
    if service == "mes":
        return f"{ts} [MES] INFO  Order {order}: status {status} (user {user})"
    raise ValueError(f"unknown service {service!r}")


def step_line(ts: str, order: int | str, step: str, started: bool) -> str:
    """A MES production step start or end (only MES logs steps)."""
    return f'{ts} [MES] INFO  Order {order}: step "{step}" {"started" if started else "finished"}'


def noise_line(service: str, ts: str, rng: random.Random, order: int | str | None = None,
               user: str | None = None) -> str:
    """A line no rule matches; some name an order, to look like the real thing."""
    order = order if order is not None else rng.randint(FIRST_ORDER, FIRST_ORDER + 999_999)
    user = user or f"u{rng.randint(1, 5000)}"
    n = rng.randint(1, 999)
    if service == "shop":
        choices = (
            f"{ts} DEBUG [http-nio-8080-exec-{n % 16}] GET /api/products/{n} 200 {n % 90 + 3}ms",
            f"{ts} INFO [shop] order={order} viewed by user={user}",
            f"{ts} WARN [shop] cart of {user} has {n % 7 + 1} stale items",
            f"{ts} INFO [http-nio-8080-exec-{n % 16}] POST /api/orders/{order}/notes 201 {n % 40 + 2}ms",
            f"{ts} DEBUG [shop] cache hit ratio 0.{n:03d}",
        )
    elif service == "crm":
        choices = (
            f'{ts} level=debug component=crm.sync msg="contact synced" contact=c{n}',
            f'{ts} level=info component=crm.orders msg="reminder queued" order_id={order}',
            f'{ts} level=warn component=crm.mail msg="smtp slow" took_ms={n}',
            f'{ts} level=info component=crm.orders msg="status viewed" order_id={order} user={user}',
            f'{ts} level=debug component=crm.payments msg="gateway ping" rtt_ms={n % 80}',
        )
    elif service == "mes":
        choices = (
            f"{ts} [MES] DEBUG Machine CNC-{n % 9} temperature {n % 60 + 20}.{n % 10}C",
            f"{ts} [MES] INFO  Order {order}: material reserved ({n % 30 + 1} units)",
            f"{ts} [MES] WARN  Conveyor belt {n % 4} speed adjusted to {n % 5 + 1}.0 m/s",
            f"{ts} [MES] INFO  Shift report: {n} parts, {n % 7} rejects",
            f'{ts} [MES] DEBUG Order {order}: step "inspection" queued',
        )
    else:
        raise ValueError(f"unknown service {service!r}")
    return rng.choice(choices)


def order_plan(rng: random.Random) -> list:
    """The events of one order: (service, kind, value, delay before it in seconds)."""
    plan = [("shop", "status", "CREATED", 0.0),
            ("crm", "status", "PAYMENT_PENDING", rng.uniform(0.08, 0.3)),
            ("crm", "status", "PAID", rng.uniform(0.08, 0.35)),
            ("mes", "status", "IN_PRODUCTION", rng.uniform(0.08, 0.3))]
    for step in rng.sample(STEP_NAMES, rng.randint(1, 3)):
        plan.append(("mes", "step_start", step, rng.uniform(MIN_GAP, 0.15)))
        plan.append(("mes", "step_end", step, rng.uniform(0.06, 0.25)))
    plan += [("mes", "status", "PRODUCED", rng.uniform(MIN_GAP, 0.2)),
             ("mes", "status", "HANDED_TO_COURIER", rng.uniform(0.08, 0.3)),
             ("shop", "status", FINAL_STATUS, rng.uniform(0.08, 0.35))]
    return [(s, k, v, max(MIN_GAP, d) if i else 0.0) for i, (s, k, v, d) in enumerate(plan)]


MEAN_EVENT_LINES = 7 + 2 * 2      # 7 statuses + 2 lines for each of 1..3 steps (mean 2)
MEAN_NOISE_PER_EVENT = 2          # noise lines per event line: 1, 2 or 3
MEAN_LINES_PER_ORDER = MEAN_EVENT_LINES * (1 + MEAN_NOISE_PER_EVENT)


def event_line(service: str, kind: str, value: str, ts: str, order: int | str, user: str) -> str:
    if kind == "status":
        return status_line(service, ts, order, value, user)
    return step_line(ts, order, value, started=(kind == "step_start"))


def order_lines(order: int | str, user: str = "u1", start: float | None = None,
                gap: float = 0.1, statuses=None, services=None) -> dict:
    """Lines of one complete order without writing them: service -> [line], timestamps
    `start` (default now) + i * gap. By default the full walk Shop/CRM/MES without steps;
    `statuses=[...]` and `services=[...]` (same length) choose another walk, e.g. a
    one-file order `statuses=["CREATED", "DELIVERED"], services=["shop", "shop"]`."""
    if statuses is None:
        statuses = ["CREATED", "PAYMENT_PENDING", "PAID", "IN_PRODUCTION", "PRODUCED",
                    "HANDED_TO_COURIER", FINAL_STATUS]
        services = ["shop", "crm", "crm", "mes", "mes", "mes", "shop"]
    if services is None or len(services) != len(statuses):
        raise ValueError("give one service per status")
    start = time.time() if start is None else start
    out = {s: [] for s in SERVICES}
    for i, (service, status) in enumerate(zip(services, statuses)):
        out[service].append(status_line(service, iso_ms(start + i * gap), order, status, user))
    return out


def append_lines(path: Path | str, lines, truth: Path | str | None = None, newline=True):
    """Append whole lines with one O_APPEND write (and the same lines to `truth`)."""
    data = "".join(line + "\n" for line in lines) if newline else "".join(lines)
    raw = data.encode("utf-8")
    for target in ([path] if truth is None else [path, truth]):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            write_all(fd, raw)
        finally:
            os.close(fd)


def write_all(fd: int, data: bytes):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# ---------------------------------------------------------------------------
# a log file that rotates like logrotate
# ---------------------------------------------------------------------------

def gzip_file(src: Path, dst: Path):
    """Compress `src` into `dst` the way logrotate's gzip does: written in place."""
    with open(src, "rb") as fin, open(dst, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            shutil.copyfileobj(fin, gz, 1 << 20)


class RotatingLog:
    """`<dir>/<service>.log`, appended in whole lines, rotated between writes."""

    def __init__(self, log_dir: Path, service: str, truth_dir: Path | None,
                 rotate_lines: int = 0, copytruncate_at_line: int = 0, keep: int = 1000):
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.service = service
        self.path = self.dir / f"{service}.log"
        self.rotate_lines = rotate_lines
        self.copytruncate_at_line = copytruncate_at_line
        self.keep = keep
        self.fd = self._open()
        self.truth_fd = None
        if truth_dir is not None:
            Path(truth_dir).mkdir(parents=True, exist_ok=True)
            self.truth_fd = os.open(Path(truth_dir) / f"{service}.log",
                                    os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lines_total = 0          # every line written (the truth file's line count)
        self.lines_in_file = 0        # lines in the current x.log
        self.bytes_total = 0
        self.rotations = 0
        self.copytruncates = 0

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def rotated(self, n: int) -> Path:
        return self.dir / (f"{self.service}.log.1" if n == 1 else f"{self.service}.log.{n}.gz")

    def write(self, lines: list):
        """Write `lines`, rotating between writes at the configured line counts."""
        while lines:
            room = len(lines)
            if self.rotate_lines:
                room = min(room, max(1, self.rotate_lines - self.lines_in_file))
            if self.copytruncate_at_line and not self.copytruncates:
                if self.lines_total < self.copytruncate_at_line:
                    room = min(room, self.copytruncate_at_line - self.lines_total)
            chunk, lines = lines[:room], lines[room:]
            data = "".join(line + "\n" for line in chunk).encode("utf-8")
            write_all(self.fd, data)
            if self.truth_fd is not None:
                write_all(self.truth_fd, data)
            self.lines_total += len(chunk)
            self.lines_in_file += len(chunk)
            self.bytes_total += len(data)
            if (self.copytruncate_at_line and not self.copytruncates
                    and self.lines_total >= self.copytruncate_at_line):
                self.rotate(copytruncate=True)
            elif self.rotate_lines and self.lines_in_file >= self.rotate_lines:
                self.rotate()

    def _shift(self):
        """x.log.N.gz -> x.log.N+1.gz, x.log.1 -> x.log.2.gz (delaycompress)."""
        prefix, suffix = f"{self.service}.log.", ".gz"
        existing = sorted((int(p.name[len(prefix):-len(suffix)])
                           for p in self.dir.glob(f"{prefix}*{suffix}")
                           if p.name[len(prefix):-len(suffix)].isdigit()), reverse=True)
        for n in existing:
            if n + 1 > self.keep:
                self.rotated(n).unlink()
            else:
                os.rename(self.rotated(n), self.rotated(n + 1))
        one = self.rotated(1)
        if one.exists():
            if self.keep >= 2:
                gzip_file(one, self.rotated(2))
            one.unlink()

    def rotate(self, copytruncate: bool = False):
        self._shift()
        if copytruncate:
            shutil.copyfile(self.path, self.rotated(1))
            os.ftruncate(self.fd, 0)        # O_APPEND: the next write lands at offset 0
            self.copytruncates += 1
        else:
            os.rename(self.path, self.rotated(1))
            os.close(self.fd)
            self.fd = self._open()
            self.rotations += 1
        self.lines_in_file = 0

    def close(self):
        os.close(self.fd)
        if self.truth_fd is not None:
            os.close(self.truth_fd)

    def stats(self) -> dict:
        return {"lines": self.lines_total, "bytes": self.bytes_total,
                "rotations": self.rotations, "copytruncates": self.copytruncates}


# ---------------------------------------------------------------------------
# the writer
# ---------------------------------------------------------------------------

@dataclass(order=True)
class _Order:
    due: float
    order_id: int = field(compare=False)
    user: str = field(compare=False)
    plan: list = field(compare=False)
    step: int = field(default=0, compare=False)
    last_ms: int = field(default=-1, compare=False)


class LogWriter:
    """Writes orders in real time into `log_dir` (and `truth_dir`); see the module doc."""

    def __init__(self, log_dir, truth_dir=None, rate: float = 5000, seconds: float = 30,
                 seed: int = 1, rotate_lines: int = 0, copytruncate_at_line: int = 0,
                 keep: int = 1000, first_order: int = FIRST_ORDER, drain_timeout: float = 30):
        self.rng = random.Random(seed)
        self.rate = rate
        self.seconds = seconds
        self.first_order = first_order
        self.drain_timeout = drain_timeout
        self.logs = {s: RotatingLog(Path(log_dir), s, Path(truth_dir) if truth_dir else None,
                                    rotate_lines, copytruncate_at_line, keep)
                     for s in SERVICES}
        self.orders_started = 0
        self.orders_finished = 0
        self.stop_requested = False

    def _noise_count(self) -> int:
        return self.rng.randint(1, 2 * MEAN_NOISE_PER_EVENT - 1)

    def run(self) -> dict:
        started_at = time.time()
        start = time.monotonic()
        order_rate = self.rate / MEAN_LINES_PER_ORDER
        heap: list = []
        while True:
            now_mono = time.monotonic()
            elapsed = now_mono - start
            starting = elapsed < self.seconds and not self.stop_requested
            if not starting and not heap:
                break
            if not starting and elapsed > self.seconds + self.drain_timeout:
                raise RuntimeError(f"{len(heap)} orders still under way "
                                   f"{self.drain_timeout}s after the writer stopped")
            if starting:
                due_orders = int(order_rate * elapsed) + 1 - self.orders_started
                for _ in range(max(0, due_orders)):
                    order_id = self.first_order + self.orders_started
                    self.orders_started += 1
                    user = f"u{self.rng.randint(1, 5000)}"
                    heapq.heappush(heap, _Order(now_mono, order_id, user, order_plan(self.rng)))
            now = time.time()
            now_ms = int(now * 1000)
            ts = iso_ms(now)
            batch = {s: [] for s in SERVICES}
            postponed = []
            while heap and heap[0].due <= now_mono:
                order = heapq.heappop(heap)
                if now_ms <= order.last_ms:          # never two events of one order in one ms
                    postponed.append(order)
                    continue
                service, kind, value, _ = order.plan[order.step]
                for _ in range(self._noise_count()):
                    noisy = self.rng.choice(SERVICES)
                    batch[noisy].append(noise_line(noisy, ts, self.rng,
                                                   order.order_id if self.rng.random() < 0.3
                                                   else None, order.user))
                position = self.rng.randint(0, len(batch[service]))
                batch[service].insert(position, event_line(service, kind, value, ts,
                                                           order.order_id, order.user))
                order.last_ms = now_ms
                order.step += 1
                if order.step < len(order.plan):
                    order.due = now_mono + order.plan[order.step][3]
                    heapq.heappush(heap, order)
                else:
                    self.orders_finished += 1
            for order in postponed:
                heapq.heappush(heap, order)
            for service in SERVICES:
                if batch[service]:
                    self.logs[service].write(batch[service])
            time.sleep(max(0.0, TICK - (time.monotonic() - now_mono)))
        for log in self.logs.values():
            log.close()
        return self.stats(started_at, time.time())

    def stats(self, started_at: float, ended_at: float) -> dict:
        files = {s: log.stats() for s, log in self.logs.items()}
        lines = sum(f["lines"] for f in files.values())
        return {"orders": self.orders_started, "orders_finished": self.orders_finished,
                "first_order": self.first_order, "lines": lines,
                "seconds": round(ended_at - started_at, 3),
                "lines_per_second": round(lines / max(1e-9, ended_at - started_at), 1),
                "started_at": iso_ms(started_at), "ended_at": iso_ms(ended_at), "files": files}


# ---------------------------------------------------------------------------
# the configuration for these logs
# ---------------------------------------------------------------------------

def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TS = "%{TIMESTAMP_ISO8601:ts}"


def _rules() -> list:
    def rule(name, source, pattern, event):
        return {"name": name, "source": source, "pattern": pattern,
                "timestamp": {"field": "ts", "format": "iso8601"}, "event": event}

    status_event = {"order_id": "${order}", "kind": "status_change", "status": "${status}",
                    "user_id": "${user}"}
    return [
        rule("shop-status", "shop",
             rf"^{TS} %{{LOGLEVEL:level}} \[shop\] order=%{{ORDER_ID:order}} "
             rf"status=%{{STATUS:status}} user=%{{USER_ID:user}}$", dict(status_event)),
        rule("crm-status", "crm",
             rf'^{TS} level=%{{WORD:level}} component=crm\.orders msg="status changed" '
             rf"order_id=%{{ORDER_ID:order}} status=%{{STATUS:status}} user=%{{USER_ID:user}}$",
             dict(status_event)),
        rule("mes-status", "mes",
             rf"^{TS} \[MES\] %{{LOGLEVEL:level}} +Order %{{ORDER_ID:order}}: "
             rf"status %{{STATUS:status}} \(user %{{USER_ID:user}}\)$", dict(status_event)),
        rule("mes-step-start", "mes",
             rf'^{TS} \[MES\] %{{LOGLEVEL:level}} +Order %{{ORDER_ID:order}}: '
             rf'step "(?<step>[^"]+)" started$',
             {"order_id": "${order}", "kind": "step_start", "step": "${step}"}),
        rule("mes-step-end", "mes",
             rf'^{TS} \[MES\] %{{LOGLEVEL:level}} +Order %{{ORDER_ID:order}}: '
             rf'step "(?<step>[^"]+)" finished$',
             {"order_id": "${order}", "kind": "step_end", "step": "${step}"}),
    ]


STATUS_RULES = ("shop-status", "crm-status", "mes-status")
STEP_RULES = ("mes-step-start", "mes-step-end")


def _merge(base: dict, overrides: dict) -> dict:
    """Deep merge; a value of None removes the key."""
    for key, value in overrides.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def live_config_doc(log_dir, data_dir, endpoint, **overrides) -> dict:
    log_dir, data_dir = Path(log_dir).resolve(), Path(data_dir).resolve()
    doc = {
        "namespace": NAMESPACE,
        "ids": {"secret": SECRET},
        "data_dir": str(data_dir),
        "store": {"path": str(data_dir / "state.sqlite")},
        "rejected": {"path": str(data_dir / "rejected.jsonl")},
        "orders": {"final_statuses": [FINAL_STATUS], "final_grace": "1s", "horizon": "1h"},
        "patterns": {"ORDER_ID": r"\d{6,9}", "USER_ID": r"u\d+",
                     "STATUS": r"[A-Z][A-Z_]*[A-Z]"},
        "sources": [{"name": s, "service": SERVICE_NAMES[s], "paths": [str(log_dir / f"{s}.log")]}
                    for s in SERVICES],
        "rules": _rules(),
        "exporter": {"endpoint": endpoint,
                     "timeout": "5s",
                     "retry": {"initial_interval": "100ms", "max_interval": "1s",
                               "max_elapsed": "24h"},
                     "max_batch_spans": 512},
        "live": {"listen": f"127.0.0.1:{free_port()}", "poll_interval": "100ms",
                 "reorder_window": "1s", "multiline_flush": "1s", "commit_interval": "200ms"},
        "spool": {"max_bytes": "1GiB"},
    }
    return _merge(doc, overrides)


def live_config(log_dir, data_dir, endpoint, **overrides) -> str:
    """The YAML configuration for logs written by LogWriter into `log_dir`.

    `overrides` are deep-merged into the document: `live={"reorder_window": "2s"}` changes
    one key, `live=None, spool=None` leaves those blocks out (for a `backfill` that does not
    know them), `orders={"final_grace": "5s"}`, `sources=[...]` replaces the list. The
    `live.listen` port is a free loopback port picked now."""
    import yaml
    doc = live_config_doc(log_dir, data_dir, endpoint, **overrides)
    header = ("# generated by tests/e2e/logwriter.py live_config(); sources shop, crm, mes\n")
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder of shop.log, crm.log, mes.log")
    parser.add_argument("--truth", help="folder of the unrotated copies <service>.log")
    parser.add_argument("--rate", type=float, default=5000, help="lines per second, all files")
    parser.add_argument("--seconds", type=float, default=30,
                        help="orders start for this long; the ones under way then finish")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rotate-lines", type=int, default=0,
                        help="rotate a file by rename every N lines written to it (0: never)")
    parser.add_argument("--copytruncate-at-line", type=int, default=0,
                        help="rotate each file once by copytruncate when it has had N lines")
    parser.add_argument("--keep", type=int, default=1000, help="rotated files kept per log")
    parser.add_argument("--first-order", type=int, default=FIRST_ORDER)
    parser.add_argument("--stats", help="write the run's counts here as JSON (also printed)")
    parser.add_argument("--config", help="also write live_config() for these logs here")
    parser.add_argument("--data-dir", help="data_dir of --config (default: next to it)")
    parser.add_argument("--endpoint", default="http://127.0.0.1:4318/v1/traces",
                        help="exporter.endpoint of --config")
    args = parser.parse_args(argv)

    if args.config:
        config = Path(args.config)
        data_dir = Path(args.data_dir) if args.data_dir else config.parent / "data"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(live_config(args.out, data_dir, args.endpoint), encoding="utf-8")

    writer = LogWriter(args.out, args.truth, rate=args.rate, seconds=args.seconds,
                       seed=args.seed, rotate_lines=args.rotate_lines,
                       copytruncate_at_line=args.copytruncate_at_line, keep=args.keep,
                       first_order=args.first_order)

    def stop(*_):
        writer.stop_requested = True   # start no new order; finish the ones under way

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stats = writer.run()
    text = json.dumps(stats, indent=2)
    if args.stats:
        tmp = Path(f"{args.stats}.tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, args.stats)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
