"""End-to-end: `tracebridge run` (live mode, issue 3) against real files, a real receiver.

The bridge runs as its own process tailing `shop.log`, `crm.log` and `mes.log` written by
`logwriter.py` (O_APPEND, whole lines, logrotate-style rotation), and exports over OTLP/HTTP
to `otlp_receiver.py` on a fixed loopback port, so the receiver can be stopped ("down") and
started again on the same port; every receiver run appends to the same spans file.

What the bridge should have sent is computed, not hard-coded: every line the writer wrote is
also in an unrotated truth file, and `tracebridge backfill` over the truth files gives the
expected spans. Span ids depend on the file a line was read from (fingerprint and offset),
which differs between a truth file and the rotated live files, so spans are compared by
(trace id, name, start, end, service.name, kind), never by span id across the two; within
what the receiver got, every span id seen more than once must carry byte-identical spans.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml

from conftest import RECEIVER_SCRIPT, run_backfill
from otlp_decode import load_file_export
import logwriter
from logwriter import (SERVICES, STATUS_RULES, append_lines, free_port, iso_ms, live_config,
                       noise_line, order_lines)

ARROW = " → "
READY_TIMEOUT = 60          # s: `run` up to /readyz 200
STOP_TIMEOUT = 60           # s: SIGTERM to exit ("drains what it can for a few seconds")
SPANS_TIMEOUT = 120         # s: the fault test's wait for the full span set
ARRIVE_TIMEOUT = 60         # s: the smaller tests' waits for spans or metrics
SETTLE = 3.0                # s without a new span before the received set counts as final
MAX_REPORTED = 12

# The fault test's load and faults (seconds after the writer started).
FAULT_RATE = 5000
FAULT_SECONDS = 34
FAULT_ROTATE_LINES = 4000           # per file: about every 2.5 s at 5,000 lines/s in all
FAULT_COPYTRUNCATE_AT = 15000       # per file: once, about 9 s in
FIRST_KILL_AT = 6.0                 # SIGKILL + restart while the receiver is up
RECEIVER_DOWN_AT = 12.0
SECOND_KILL_AT = 18.0               # SIGKILL + restart while the receiver is down
RECEIVER_DOWN_FOR = 20.0


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------

def wait_for(predicate, timeout: float, what, interval: float = 0.2):
    """Poll `predicate` until it returns something truthy (returned); fail after `timeout`
    seconds with `what` (a string, or a callable giving one, for the current state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            message = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout:.0f}s: {message}", pytrace=False)
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    if not Path(path).exists():
        return f"({path} does not exist)"
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.rstrip().splitlines()[-lines:])


def report(problems, what: str) -> str:
    problems = list(problems)
    shown = "\n  ".join(map(str, problems[:MAX_REPORTED]))
    more = f"\n  … and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
    return f"{len(problems)} {what}:\n  {shown}{more}"


def fmt_ns(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    return iso_ms(seconds)[:-5] + f".{frac:09d}Z"


def span_key(span) -> tuple:
    """What identifies a span across the truth files and the rotated live files."""
    return (span["trace_id"], span["name"], span["start"], span["end"], span["service"],
            span["kind"])


def key_label(key) -> str:
    trace_id, name, start, end, service, kind = key
    return f"{name!r} [{service}] {fmt_ns(start)}..{fmt_ns(end)} kind={kind} trace={trace_id}"


def order_of(span) -> str | None:
    return span["attributes"].get("order.id")


# ---------------------------------------------------------------------------
# the receiver on a fixed port
# ---------------------------------------------------------------------------

class SpanLog:
    """Reads the receiver's spans file incrementally (it only ever grows)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self.partial = b""
        self.spans: list = []
        self.last_change = time.monotonic()

    def poll(self) -> list:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        new = [json.loads(line) for line in lines if line.strip()]
        if new:
            self.spans.extend(new)
            self.last_change = time.monotonic()
        return new


class PortReceiver:
    """`otlp_receiver.py` (the one conftest.Receiver runs) on one fixed loopback port, so it
    can be stopped and started again where the bridge expects it. Every run appends to the
    same spans file (the receiver opens it with mode "a")."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1/traces"
        self.out = self.workdir / "spans.jsonl"
        self.spans = SpanLog(self.out)
        self.process = None
        self.log = None
        self.runs = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self):
        assert not self.running, "receiver already running"
        ready = self.workdir / f"ready{self.runs}"
        log_path = self.workdir / f"receiver{self.runs}.log"
        self.log = open(log_path, "w")
        cmd = [sys.executable, str(RECEIVER_SCRIPT), "--port", str(self.port),
               "--out", str(self.out), "--ready-file", str(ready)]
        self.process = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        self.runs += 1
        deadline = time.monotonic() + 15
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"OTLP receiver did not start on port {self.port}:\n"
                            f"{tail(log_path)}", pytrace=False)
            time.sleep(0.05)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.log is not None:
            self.log.close()
            self.log = None

    def requests(self) -> list:
        path = Path(f"{self.out}.requests.jsonl")
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------
# Prometheus text
# ---------------------------------------------------------------------------

_METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^(?P<name>{_METRIC_NAME})(?:\{{(?P<labels>[^\n]*)\}})?[ \t]+"
                     r"(?P<value>\S+)(?:[ \t]+(?P<timestamp>-?\d+))?[ \t]*$")
_LABEL = re.compile(r'[ \t]*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*'
                    r'"(?P<value>(?:[^"\\\n]|\\[\\"n])*)"[ \t]*(?P<sep>,|$)')
_VALUE = re.compile(r"^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class PrometheusError(ValueError):
    pass


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def _labels(text: str, where: str) -> dict:
    labels, pos = {}, 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if not m or m.end() == pos:
            raise PrometheusError(f"{where}: bad label set {{{text}}} at character {pos}")
        if m.group("name") in labels:
            raise PrometheusError(f"{where}: label {m.group('name')!r} twice")
        labels[m.group("name")] = _unescape(m.group("value"))
        pos = m.end()
        if m.group("sep") == "":
            break
    if text[pos:].strip():
        raise PrometheusError(f"{where}: bad label set {{{text}}}")
    return labels


class Metrics(dict):
    """(name, frozenset of label pairs) -> value, from the Prometheus text format."""

    def __init__(self, text: str):
        super().__init__()
        self.types: dict = {}
        self.text = text
        for number, line in enumerate(text.splitlines(), 1):
            where = f"/metrics line {number}: {line!r}"
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                    if len(parts) < 3 or not re.fullmatch(_METRIC_NAME, parts[2]):
                        raise PrometheusError(f"{where}: # {parts[1]} without a metric name")
                    if parts[1] == "TYPE":
                        if len(parts) != 4 or parts[3].strip() not in _TYPES:
                            raise PrometheusError(f"{where}: unknown metric type")
                        if parts[2] in self.types:
                            raise PrometheusError(f"{where}: second # TYPE for {parts[2]}")
                        self.types[parts[2]] = parts[3].strip()
                continue
            m = _SAMPLE.match(line)
            if not m:
                raise PrometheusError(f"{where}: not `name{{labels}} value`")
            if not _VALUE.match(m.group("value")):
                raise PrometheusError(f"{where}: value {m.group('value')!r} is not a number")
            labels = _labels(m.group("labels") or "", where)
            key = (m.group("name"), frozenset(labels.items()))
            if key in self:
                raise PrometheusError(f"{where}: the same series twice")
            self[key] = float(m.group("value").replace("Inf", "inf").replace("NaN", "nan"))

    def series(self, name: str, **labels) -> list:
        """(labels dict, value) of every sample of `name` whose labels include `labels`."""
        want = set(labels.items())
        return [(dict(ls), v) for (n, ls), v in self.items() if n == name and want <= ls]

    def value(self, name: str, **labels) -> float | None:
        """The sum over the matching series; None when there is none."""
        found = self.series(name, **labels)
        return sum(v for _, v in found) if found else None

    def names(self) -> set:
        return {name for name, _ in self}


# ---------------------------------------------------------------------------
# the bridge process
# ---------------------------------------------------------------------------

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Bridge:
    """`tracebridge run --config FILE` as its own process; every start is one run with its
    own stdout/stderr files, so a restart keeps the earlier run's output."""

    def __init__(self, binary: Path, config: Path, workdir: Path, args=()):
        self.binary = Path(binary)
        self.config = Path(config)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        # Words before the binary (a wrapper that execs it, e.g. deny_sched.py): the pid stays
        # the bridge's.
        self.prefix: list[str] = []
        doc = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        listen = (doc.get("live") or {}).get("listen", "127.0.0.1:9464")
        self.base = f"http://{listen}"
        self.process: subprocess.Popen | None = None
        self.runs: list = []     # dicts: cmd, stderr, stdout, exit, how it ended

    # -- life cycle --------------------------------------------------------

    def start(self, ready_timeout: float = READY_TIMEOUT) -> "Bridge":
        assert not self.running, "bridge already running"
        n = len(self.runs)
        stdout, stderr = self.workdir / f"run{n}.stdout", self.workdir / f"run{n}.stderr"
        cmd = [*self.prefix, str(self.binary), "run", "--config", str(self.config), *self.args]
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL)
        self.runs.append({"cmd": cmd, "stdout": stdout, "stderr": stderr, "exit": None,
                          "ended": None, "pid": self.process.pid})
        self.wait_ready(ready_timeout)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT):
        def ready():
            self.assert_alive("while waiting for /readyz")
            return self.get("/readyz")[0] == 200
        wait_for(ready, timeout, lambda: f"GET {self.base}/readyz never answered 200 "
                                         f"(last: {self.get('/readyz')})\n{self.describe()}",
                 interval=0.1)

    def assert_alive(self, context: str = ""):
        if self.process is not None and self.process.poll() is not None:
            self._ended(self.process.returncode, "exited by itself")
            pytest.fail(f"the bridge exited with {self.process.returncode} {context}\n"
                        f"{self.describe()}", pytrace=False)

    def kill9(self):
        """SIGKILL this run by its pid and reap it."""
        assert self.running, f"kill9: the bridge is not running\n{self.describe()}"
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._ended(self.process.returncode, "SIGKILL")

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM; the exit status (fails the test if the bridge does not exit in time)."""
        assert self.running, f"terminate: the bridge is not running\n{self.describe()}"
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            self._ended(self.process.returncode, "SIGKILL after SIGTERM timed out")
            pytest.fail(f"the bridge did not exit within {timeout:.0f}s of SIGTERM\n"
                        f"{self.describe()}", pytrace=False)
        self._ended(code, "SIGTERM")
        return code

    def cleanup(self):
        if self.running:
            self.process.kill()
            self.process.wait(timeout=30)
            self._ended(self.process.returncode, "killed at teardown")

    def _ended(self, code, how):
        if self.runs and self.runs[-1]["exit"] is None:
            self.runs[-1].update(exit=code, ended=how)

    # -- HTTP ------------------------------------------------------------------

    def get(self, path: str, timeout: float = 5) -> tuple:
        """(status, body, content type); status None when nothing answered."""
        try:
            with _NO_PROXY.open(self.base + path, timeout=timeout) as response:
                return (response.status, response.read().decode("utf-8", "replace"),
                        response.headers.get("Content-Type", ""))
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace"), exc.headers.get(
                "Content-Type", "")
        except (urllib.error.URLError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}", ""

    def metrics(self) -> Metrics:
        self.assert_alive("while reading /metrics")
        status, body, _ = self.get("/metrics")
        if status != 200:
            pytest.fail(f"GET {self.base}/metrics answered {status}: {body[:500]}\n"
                        f"{self.describe()}", pytrace=False)
        try:
            return Metrics(body)
        except PrometheusError as exc:
            pytest.fail(f"/metrics is not valid Prometheus text: {exc}", pytrace=False)

    def metric(self, name: str, **labels) -> float | None:
        return self.metrics().value(name, **labels)

    def wait_metric(self, name: str, check, what: str, timeout: float = ARRIVE_TIMEOUT,
                    **labels) -> float:
        last = {}

        def ok():
            last["value"] = self.metric(name, **labels)
            return last["value"] is not None and check(last["value"])
        wait_for(ok, timeout, lambda: f"{name}{labels or ''} {what}; last value "
                                      f"{last.get('value')}\n{self.describe()}")
        return last["value"]

    # -- reporting ---------------------------------------------------------

    def stderr_text(self) -> str:
        """Everything the runs so far wrote to standard error."""
        return "".join(Path(run["stderr"]).read_text(encoding="utf-8", errors="replace")
                       for run in self.runs)

    def describe(self) -> str:
        parts = []
        for n, run in enumerate(self.runs):
            state = (f"exit {run['exit']} ({run['ended']})" if run["exit"] is not None
                     else "running")
            parts.append(f"--- bridge run {n} (pid {run['pid']}, {state}): "
                         f"{' '.join(run['cmd'])}\n--- stderr (tail) ---\n"
                         f"{tail(run['stderr'])}")
        return "\n".join(parts) or "(the bridge was never started)"


# ---------------------------------------------------------------------------
# one test's world: log folder, truth, receiver, configuration, bridge
# ---------------------------------------------------------------------------

class LiveEnv:
    def __init__(self, root: Path, bridge_bin: Path, receiver_up: bool = True,
                 **config_overrides):
        self.root = Path(root)
        self.bridge_bin = Path(bridge_bin)
        self.logs = self.root / "logs"
        self.truth = self.root / "truth"
        self.data = self.root / "data"
        for folder in (self.logs, self.truth, self.data):
            folder.mkdir(parents=True, exist_ok=True)
        self.receiver = PortReceiver(self.root / "receiver")
        if receiver_up:
            self.receiver.start()
        self.config = self.root / "tracebridge.yaml"
        self.config.write_text(live_config(self.logs, self.data, self.receiver.url,
                                           **config_overrides), encoding="utf-8")
        self.bridge = Bridge(bridge_bin, self.config, self.root / "bridge")
        self.children: list = []   # other processes this test started (the writer)
        self._expected = None

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def write(self, service: str, lines, truth: bool = True):
        """Append whole lines to the live file (and to its truth file)."""
        append_lines(self.log(service), lines,
                     truth=self.truth / f"{service}.log" if truth else None)

    def write_order(self, order, statuses=None, services=None, noise: int = 0, seed: int = 0):
        """One complete order, its last line timestamped now, with `noise` noise lines
        before each status line in the same file."""
        self.write_orders([order], statuses, services, noise, seed)

    def write_orders(self, orders, statuses=None, services=None, noise: int = 0,
                     seed: int = 0, gap: float = 0.1):
        """Complete orders (the full Shop/CRM/MES walk unless `statuses`/`services` say
        otherwise), each lasting (statuses - 1) * gap and ending about now, order k starting
        k ms after order k-1; every file gets its lines in time order, as a real log does."""
        rng = random.Random(seed)
        n = len(statuses) if statuses else 7
        now = time.time()
        per_file = {s: [] for s in SERVICES}
        for k, order in enumerate(orders):
            start = now - gap * (n - 1) - 0.001 * (len(orders) - 1 - k)
            lines = order_lines(order, user=f"u{int(order) % 1000}", start=start, gap=gap,
                                statuses=statuses, services=services)
            for service in SERVICES:
                for line in lines[service]:
                    ts = line[:24]
                    per_file[service] += [(ts, noise_line(service, ts, rng))
                                          for _ in range(noise)] + [(ts, line)]
        for service, stamped in per_file.items():
            if stamped:
                stamped.sort(key=lambda pair: pair[0])       # stable: noise stays before
                self.write(service, [line for _, line in stamped])

    def expected_spans(self, refresh: bool = False) -> list:
        """The spans `tracebridge backfill` makes of the truth files (OTLP JSON file export)."""
        if self._expected is None or refresh:
            work = self.root / "backfill"
            work.mkdir(exist_ok=True)
            config = work / "tracebridge.yaml"
            # The live-only blocks are left out: backfill need not know them.
            config.write_text(live_config(self.logs, work / "data", self.receiver.url,
                                          live=None, spool=None), encoding="utf-8")
            out = work / "expected.otlp.jsonl"
            out.unlink(missing_ok=True)
            run = run_backfill(self.bridge_bin, config, export=f"file:{out}",
                               paths=[self.truth], work=work)
            run.expect_exit(0)
            assert out.exists(), f"backfill wrote no {out}\n{run.describe()}"
            self._expected = load_file_export(out)
            assert self._expected, f"backfill of the truth files made no span\n{run.describe()}"
        return self._expected

    def close(self):
        for child in self.children:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
        self.bridge.cleanup()
        self.receiver.stop()

    def describe(self) -> str:
        requests = self.receiver.requests()
        statuses = Counter(r["status"] for r in requests)
        return (f"receiver on port {self.receiver.port}: {len(requests)} requests "
                f"{dict(statuses)}, {len(self.receiver.spans.spans)} spans read so far\n"
                f"{self.bridge.describe()}")


@pytest.fixture
def live_env(tmp_path, bridge_bin):
    """Factory: `live_env(receiver_up=True, **config_overrides)` -> LiveEnv; its processes
    are ended at teardown and the bridge's stderr is printed (shown when the test failed)."""
    envs = []

    def make(receiver_up: bool = True, **overrides) -> LiveEnv:
        env = LiveEnv(tmp_path / f"env{len(envs)}", bridge_bin, receiver_up, **overrides)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()
        print(env.describe())


# ---------------------------------------------------------------------------
# comparing what arrived with what was expected
# ---------------------------------------------------------------------------

class Comparison:
    def __init__(self, expected: list, received: list):
        self.by_id = defaultdict(list)
        for span in received:
            self.by_id[span["span_id"]].append(span)
        self.unique = [copies[0] for copies in self.by_id.values()]
        self.duplicated = {sid: c for sid, c in self.by_id.items() if len(c) > 1}
        self.not_identical = {sid: c for sid, c in self.duplicated.items()
                              if len({s["raw"] for s in c}) > 1}
        want = Counter(span_key(s) for s in expected)
        got = Counter(span_key(s) for s in self.unique)
        self.want = want
        self.missing = want - got
        self.unexpected = got - want

    @property
    def complete(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        return (f"{sum(self.want.values())} spans expected; received "
                f"{sum(len(c) for c in self.by_id.values())} spans with "
                f"{len(self.by_id)} distinct span ids ({len(self.duplicated)} received more "
                f"than once); {sum(self.missing.values())} missing, "
                f"{sum(self.unexpected.values())} unexpected, "
                f"{len(self.not_identical)} span ids with differing copies")

    def missing_report(self) -> str:
        return (report([f"{key_label(k)} ×{n}" for k, n in sorted(self.missing.items(),
                                                                   key=lambda kv: kv[0][2])],
                       "expected spans never arrived")
                + "\n" + self.histogram(self.missing, "missing"))

    @staticmethod
    def histogram(keys: Counter, what: str) -> str:
        """Where in time the spans are: (service, second of the span end) -> count."""
        buckets = Counter((k[4], iso_ms(k[3] // 1_000_000_000)[11:19]) for k in keys.elements())
        shown = ", ".join(f"{svc} {sec} ×{n}" for (svc, sec), n in sorted(buckets.items(),
                                                                          key=lambda kv: kv[0][1]))
        return f"{what} by service and second of span end: {shown[:1500]}"

    def assert_all(self, context: str = ""):
        problems = []
        if self.missing:
            problems.append(self.missing_report())
        if self.unexpected:
            problems.append(report(
                [f"{key_label(k)} ×{n}" for k, n in sorted(self.unexpected.items(),
                                                          key=lambda kv: kv[0][2])],
                "spans arrived that backfill of the truth files does not make (or once more "
                "under another span id)") + "\n" + self.histogram(self.unexpected, "unexpected"))
        if self.not_identical:
            lines = []
            for sid, copies in list(self.not_identical.items())[:MAX_REPORTED]:
                first = copies[0]
                for other in copies[1:]:
                    if other["raw"] != first["raw"]:
                        fields = [k for k in first if k != "raw" and first[k] != other[k]]
                        lines.append(f"span id {sid} {first['name']!r}: copies differ in "
                                     f"{fields or 'encoding only'}\n    {first['raw']}\n"
                                     f"    {other['raw']}")
                        break
            problems.append(report(lines, "span ids received more than once with different "
                                          "bytes"))
        if problems:
            pytest.fail(f"{self.summary()}\n" + "\n".join(problems)
                        + (f"\n{context}" if context else ""), pytrace=False)


def wait_for_spans(env: LiveEnv, expected: list, timeout: float, settle: float = SETTLE,
                   give_up_quiet: float = 20.0) -> Comparison:
    """Wait until every expected span arrived and nothing new came for `settle` seconds;
    the comparison at that moment. Fails after `timeout`, or earlier when spans are still
    missing although nothing arrived for `give_up_quiet` seconds and the bridge has an
    empty spool and no open order (nothing more is coming), with what is missing."""
    deadline = time.monotonic() + timeout
    rx = env.receiver.spans
    while True:
        rx.poll()
        env.bridge.assert_alive("while waiting for spans")
        comparison = Comparison(expected, rx.spans)
        quiet_for = time.monotonic() - rx.last_change
        if comparison.complete and quiet_for >= settle:
            return comparison
        idle = False
        if quiet_for >= give_up_quiet and env.receiver.running:
            metrics = env.bridge.metrics()
            idle = (metrics.value("tracebridge_spool_spans") == 0
                    and metrics.value("tracebridge_open_orders") == 0)
        if idle or time.monotonic() > deadline:
            why = (f"nothing arrived for {quiet_for:.0f}s, spool empty, no open order"
                   if idle else f"after {timeout:.0f}s")
            pytest.fail(f"{why}: {comparison.summary()}\n"
                        f"{comparison.missing_report() if comparison.missing else ''}\n"
                        f"{env.describe()}", pytrace=False)
        time.sleep(0.5)


def wait_for_orders(env: LiveEnv, orders, timeout: float = ARRIVE_TIMEOUT) -> list:
    """Wait until the expected transition spans (not root spans) of `orders` arrived."""
    orders = {str(o) for o in orders}
    want = Counter(span_key(s) for s in env.expected_spans(refresh=True)
                   if order_of(s) in orders and ARROW in s["name"])
    assert want, f"backfill of the truth makes no transition span for orders {sorted(orders)}"

    def arrived():
        env.receiver.spans.poll()
        env.bridge.assert_alive("while waiting for spans")
        got = Counter(span_key(s) for s in {s["span_id"]: s for s in
                                            env.receiver.spans.spans}.values())
        return not (want - got)

    wait_for(arrived, timeout, lambda: f"the transition spans of orders {sorted(orders)} "
                                       f"did not all arrive: expected "
                                       f"{[key_label(k) for k in want]}\n{env.describe()}")
    return [s for s in env.receiver.spans.spans if order_of(s) in orders]


def assert_nothing_unexpected(env: LiveEnv):
    """Everything received is something backfill of the truth makes, and copies of one span
    id are byte-identical (missing root spans are not judged here)."""
    comparison = Comparison(env.expected_spans(refresh=True), env.receiver.spans.spans)
    comparison.missing = Counter()
    comparison.assert_all(env.describe())


# ---------------------------------------------------------------------------
# a) the fault test
# ---------------------------------------------------------------------------

def test_no_span_lost_or_changed_through_rotation_sigkill_and_receiver_outage(live_env):
    """~5,000 lines/s for 34 s into three files rotated by rename every 4,000 lines and once
    by copytruncate; meanwhile the bridge is SIGKILLed twice (once while the receiver is
    down) and the receiver is down for 20 s. Every span backfill makes of the truth
    arrives, nothing else does, repeated span ids are byte-identical, SIGTERM exits 0."""
    env = live_env()
    env.bridge.start()
    stats_path = env.root / "writer-stats.json"
    writer_log = env.root / "writer.log"
    cmd = [sys.executable, str(Path(logwriter.__file__)), "--out", str(env.logs),
           "--truth", str(env.truth), "--rate", str(FAULT_RATE), "--seconds", str(FAULT_SECONDS),
           "--seed", "20261202", "--rotate-lines", str(FAULT_ROTATE_LINES),
           "--copytruncate-at-line", str(FAULT_COPYTRUNCATE_AT), "--stats", str(stats_path)]
    with open(writer_log, "wb") as log:
        writer = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
    env.children.append(writer)
    began = time.monotonic()

    def at(offset: float):
        """Sleep until `offset` seconds after the writer started, watching both processes."""
        while time.monotonic() - began < offset:
            if writer.poll() not in (None, 0):
                pytest.fail(f"the log writer failed with {writer.returncode}:\n"
                            f"{tail(writer_log)}", pytrace=False)
            if env.bridge.process is not None and env.bridge.runs[-1]["exit"] is None:
                env.bridge.assert_alive(f"{time.monotonic() - began:.1f}s into the writer")
            time.sleep(0.1)

    at(FIRST_KILL_AT)
    env.bridge.kill9()
    env.bridge.start()
    at(RECEIVER_DOWN_AT)
    env.receiver.stop()
    at(SECOND_KILL_AT)
    env.bridge.kill9()
    env.bridge.start()
    at(RECEIVER_DOWN_AT + RECEIVER_DOWN_FOR)
    env.receiver.start()

    try:
        writer.wait(timeout=FAULT_SECONDS + 60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the log writer did not finish\n{tail(writer_log)}", pytrace=False)
    assert writer.returncode == 0, f"the log writer failed:\n{tail(writer_log)}"
    stats = json.loads(stats_path.read_text())
    for service, counts in stats["files"].items():
        assert counts["rotations"] >= 2 and counts["copytruncates"] == 1, \
            f"the writer did not rotate {service}.log as planned: {counts}"
    assert stats["lines_per_second"] >= FAULT_RATE * 0.6, \
        f"the writer reached only {stats['lines_per_second']} lines/s: {stats}"

    expected = env.expected_spans()
    roots = sum(1 for s in expected if s["name"].startswith("order "))
    assert roots == stats["orders"], \
        f"backfill of the truth makes {roots} root spans, the writer wrote {stats['orders']} orders"

    comparison = wait_for_spans(env, expected, SPANS_TIMEOUT)
    comparison.assert_all(env.describe())

    metrics = env.bridge.metrics()
    assert metrics.value("tracebridge_files_rotated_total"), \
        f"tracebridge_files_rotated_total is {metrics.value('tracebridge_files_rotated_total')} " \
        f"after {sum(f['rotations'] for f in stats['files'].values())} rotations in this run"
    assert metrics.value("tracebridge_export_failures_total") == 0, \
        f"tracebridge_export_failures_total " \
        f"{metrics.value('tracebridge_export_failures_total')}: nothing was refused for good"
    env.bridge.wait_metric("tracebridge_spool_spans", lambda v: v == 0,
                           "did not drop to 0 after every span arrived", timeout=30)
    code = env.bridge.terminate()
    assert code == 0, f"SIGTERM: the bridge exited {code}\n{env.bridge.describe()}"


# ---------------------------------------------------------------------------
# b) c) d) truncation, deletion, an over-long line
# ---------------------------------------------------------------------------

def test_file_truncated_in_place_is_read_again_from_its_start(live_env):
    env = live_env()
    env.bridge.start()
    env.write_order(2_000_001, ["CREATED", "DELIVERED"], ["shop", "shop"], noise=40, seed=1)
    wait_for_orders(env, [2_000_001])
    size_before = env.log("shop").stat().st_size

    os.truncate(env.log("shop"), 0)          # what `truncate -s 0 shop.log` does
    env.write_order(2_000_002, ["CREATED", "DELIVERED"], ["shop", "shop"], noise=2, seed=2)
    assert env.log("shop").stat().st_size < size_before, "the new content must be shorter"

    wait_for_orders(env, [2_000_002])
    env.bridge.wait_metric("tracebridge_files_truncated_total", lambda v: v >= 1,
                           "did not count the truncation", source="shop")
    assert_nothing_unexpected(env)


def test_file_deleted_while_tailed_and_created_again_is_read(live_env):
    env = live_env()
    env.bridge.start()
    env.write_order(2_000_011, ["CREATED", "DELIVERED"], ["crm", "crm"], noise=5, seed=3)
    wait_for_orders(env, [2_000_011])
    size_before = env.log("crm").stat().st_size

    env.log("crm").unlink()
    time.sleep(1.0)                          # several poll intervals without the file
    # Longer than the deleted file: if the new file gets the old inode back, only its
    # fingerprint tells it is not the old file grown.
    env.write_order(2_000_012, ["CREATED", "DELIVERED"], ["crm", "crm"], noise=30, seed=4)
    assert env.log("crm").stat().st_size > size_before

    wait_for_orders(env, [2_000_012])
    assert_nothing_unexpected(env)


def test_ten_megabyte_line_without_newline_is_cut_and_later_lines_are_read(live_env):
    env = live_env()
    env.bridge.start()
    env.write_order(2_000_021, ["CREATED", "DELIVERED"], ["mes", "mes"], noise=3, seed=5)
    wait_for_orders(env, [2_000_021])

    huge = f"{iso_ms()} [MES] DEBUG Dump " + "x" * (10 * 1024 * 1024)
    append_lines(env.log("mes"), [huge], newline=False)   # no newline yet; not in the truth
    time.sleep(1.5)                         # the bridge sees 10 MB without a line end
    assert env.bridge.running, f"the bridge died on a 10 MB line\n{env.bridge.describe()}"
    append_lines(env.log("mes"), [""])       # the line ends
    env.write_order(2_000_022, ["CREATED", "DELIVERED"], ["mes", "mes"], noise=3, seed=6)

    wait_for_orders(env, [2_000_022])
    env.bridge.wait_metric("tracebridge_lines_cut_total", lambda v: v >= 1,
                           "did not count the cut line", source="mes")
    assert env.bridge.get("/healthz")[0] == 200
    assert_nothing_unexpected(env)


def proc_io(pid: int) -> dict:
    """/proc/PID/io as numbers (wchar: bytes the process handed to write calls)."""
    text = Path(f"/proc/{pid}/io").read_text()
    return {k: int(v) for k, v in (line.split(": ") for line in text.splitlines())}


def test_an_idle_bridge_writes_nothing_and_commits_again_when_lines_come(live_env):
    """With nothing read, nothing to export and no order left to close, the bridge skips its
    commits (they rewrote its clock and watch times every commit_interval: ~59 KB/s); the next
    lines are committed and exported as before, and a restart goes on from them."""
    env = live_env()
    env.bridge.start()
    env.write_order(2_000_031, ["CREATED", "DELIVERED"], ["shop", "shop"], noise=2, seed=9)
    wait_for_orders(env, [2_000_031])
    env.bridge.wait_metric("tracebridge_open_orders", lambda v: v == 0,
                           "the order did not close after final_grace")
    env.bridge.wait_metric("tracebridge_spool_spans", lambda v: v == 0,
                           "the spool did not empty")
    time.sleep(1.0)                          # the commit that deletes the delivered spool rows
    pid = env.bridge.process.pid
    before = proc_io(pid)
    time.sleep(3.0)                          # 15 commit intervals with nothing in them
    after = proc_io(pid)
    written = after["wchar"] - before["wchar"]
    assert written < 4096, (f"an idle bridge wrote {written} bytes in 3 s "
                            f"({after['syscw'] - before['syscw']} write calls)\n{env.describe()}")

    env.write_order(2_000_032, ["CREATED", "DELIVERED"], ["shop", "shop"], noise=2, seed=10)
    wait_for_orders(env, [2_000_032])
    assert env.bridge.terminate() == 0
    env.bridge.start()
    env.write_order(2_000_033, ["CREATED", "DELIVERED"], ["shop", "shop"], noise=2, seed=11)
    wait_for_orders(env, [2_000_033])
    assert_nothing_unexpected(env)
    assert env.bridge.metric("tracebridge_events_total") == 2, \
        "after the restart only the new order's two events are read"


# ---------------------------------------------------------------------------
# e) the spool survives a restart
# ---------------------------------------------------------------------------

def test_spool_survives_a_restart_and_drains_when_the_receiver_comes(live_env):
    env = live_env(receiver_up=False)
    env.bridge.start()
    orders = range(2_000_100, 2_000_120)
    env.write_orders(orders, noise=2, seed=8)
    expected = env.expected_spans()
    assert {order_of(s) for s in expected} == {str(o) for o in orders}

    env.bridge.wait_metric("tracebridge_spool_spans", lambda v: v > 0,
                           "stayed 0 with the receiver down")
    # Give the bridge a moment to spool the rest (root spans follow after final_grace);
    # what is not spooled yet must come from the store after the restart anyway.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (env.bridge.metric("tracebridge_spool_spans") or 0) >= len(expected):
            break
        time.sleep(0.3)
    spooled = env.bridge.metric("tracebridge_spool_spans")
    code = env.bridge.terminate()
    assert code == 0, f"SIGTERM with a full spool: exit {code}\n{env.bridge.describe()}"
    assert not env.receiver.spans.poll(), "spans arrived while no receiver was running"

    env.receiver.start()
    env.bridge.start()
    comparison = wait_for_spans(env, expected, ARRIVE_TIMEOUT)
    comparison.assert_all(f"({spooled:.0f} spans were spooled at SIGTERM)\n{env.describe()}")
    env.bridge.wait_metric("tracebridge_spool_spans", lambda v: v == 0,
                           "did not drop to 0 after the receiver came back")
    code = env.bridge.terminate()
    assert code == 0, f"SIGTERM: exit {code}\n{env.bridge.describe()}"


# ---------------------------------------------------------------------------
# f) health, readiness, metrics
# ---------------------------------------------------------------------------

GAUGES = ("tracebridge_open_orders", "tracebridge_spool_spans", "tracebridge_spool_bytes",
          "tracebridge_spool_oldest_span_age_seconds", "tracebridge_spool_full")
COUNTERS = ("tracebridge_events_total", "tracebridge_export_spans_total",
            "tracebridge_export_retries_total", "tracebridge_export_failures_total")
PER_SOURCE = ("tracebridge_lines_read_total", "tracebridge_file_bytes_read_total")


def test_healthz_readyz_and_metrics_in_prometheus_text(live_env):
    env = live_env()
    env.bridge.start()
    env.write_order(2_000_200, noise=2, seed=7)
    written = {s: len(env.log(s).read_text().splitlines()) for s in SERVICES}
    for service in SERVICES:
        env.bridge.wait_metric("tracebridge_lines_read_total", lambda v: v >= written[service],
                               f"did not reach the {written[service]} lines written",
                               source=service)
    # Events are counted when the reorder window releases them: wait for that too.
    for rule in STATUS_RULES:
        env.bridge.wait_metric("tracebridge_rule_matches_total", lambda v: v > 0,
                               "counts no match", rule=rule)

    status, body, _ = env.bridge.get("/healthz")
    assert (status, body.strip()) == (200, "ok"), f"/healthz answered {status} {body!r}"
    status, body, _ = env.bridge.get("/readyz")
    assert status == 200, f"/readyz answered {status} {body!r}"

    status, text, content_type = env.bridge.get("/metrics")
    assert status == 200, f"/metrics answered {status}: {text[:300]!r}"
    assert content_type.startswith("text/plain"), f"/metrics Content-Type {content_type!r}"
    try:
        metrics = Metrics(text)
    except PrometheusError as exc:
        pytest.fail(f"/metrics is not valid Prometheus text: {exc}\n{text[:3000]}",
                    pytrace=False)
    assert text.endswith("\n"), "the Prometheus text must end with a newline"

    problems = []
    for name in GAUGES + COUNTERS:
        if metrics.value(name) is None:
            problems.append(f"{name}: no sample")
    for name in PER_SOURCE:
        for service in SERVICES:
            if not metrics.value(name, source=service):
                problems.append(f"{name}{{source={service!r}}}: missing or 0 after lines were read")
    for labels, _ in metrics.series("tracebridge_file_bytes_read_total"):
        if "path" not in labels:
            problems.append(f"tracebridge_file_bytes_read_total{labels}: no path label")
    for rule in STATUS_RULES:
        if not metrics.value("tracebridge_rule_matches_total", rule=rule):
            problems.append(f"tracebridge_rule_matches_total{{rule={rule!r}}}: missing or 0")
    if metrics.value("tracebridge_spool_full") not in (0, 1, None):
        problems.append(f"tracebridge_spool_full is {metrics.value('tracebridge_spool_full')}")
    for (name, labels), value in metrics.items():
        if name.startswith("tracebridge_") and (math.isnan(value) or value < 0):
            problems.append(f"{name}{dict(labels)} = {value}")
        declared = metrics.types.get(name)
        if declared and name.endswith("_total") and declared != "counter":
            problems.append(f"{name} is declared {declared}, a _total is a counter")
        if declared and name in GAUGES and declared != "gauge":
            problems.append(f"{name} is declared {declared}, the contract says gauge")
    assert not problems, report(problems, "problems with /metrics") + f"\n{text[:3000]}"
    code = env.bridge.terminate()
    assert code == 0, f"SIGTERM: exit {code}\n{env.bridge.describe()}"


def thread_policies(pid: int) -> dict:
    """{thread name: set of Linux scheduling policies} from /proc/PID/task/*/stat (field 41)."""
    out = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the thread ended
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        out.setdefault(name, set()).add(int(fields[38]))  # field 41; fields[0] is field 3
    return out


@pytest.mark.parametrize("setting", [None, "normal"])
def test_ingest_threads_run_under_the_configured_cpu_scheduling(live_env, setting):
    env = live_env(**({} if setting is None else {"live": {"cpu_scheduling": setting}}))
    env.bridge.start()
    env.write_order(2_000_300, seed=3)
    env.bridge.wait_metric("tracebridge_lines_read_total", lambda v: v > 0, "read nothing",
                           source=SERVICES[0])
    policies = thread_policies(env.bridge.process.pid)
    # The policy the bridge was started with: this test's own (normally the default, 0).
    inherited = os.sched_getscheduler(0)
    want = inherited if setting == "normal" else 3  # SCHED_BATCH
    ingest = ["live-pipeline", "live-commit", "spool-sender", "wal-checkpoint"]
    problems = [f"{name}: {sorted(policies.get(name, []))}, expected [{want}]"
                for name in ingest if policies.get(name) != {want}]
    # The operations endpoints keep it too: /healthz and /metrics answer promptly.
    if not any(name.startswith("NIO-") for name in policies):
        problems.append(f"no NIO- thread (the HTTP endpoints) to check among {sorted(policies)}")
    problems += [f"{name}: {sorted(p)}, expected [{inherited}]" for name, p in policies.items()
                 if name.startswith("NIO-") and p != {inherited}]
    assert not problems, report(problems, "thread scheduling policies") + f"\n{policies}"
    code = env.bridge.terminate()
    assert code == 0, f"SIGTERM: exit {code}\n{env.bridge.describe()}"


@pytest.mark.skipif(platform.machine() != "x86_64", reason="deny_sched.py knows x86-64's syscalls")
def test_a_kernel_that_refuses_the_batch_policy_costs_a_warning_not_the_run(live_env):
    """Under a seccomp profile without sched_setscheduler (deny_sched.py: EPERM), the default
    `batch` is not applied: one warning says so, the threads keep the policy they were started
    with, and the bridge reads, correlates and exports as usual."""
    env = live_env()
    env.bridge.prefix = [sys.executable, str(Path(__file__).with_name("deny_sched.py"))]
    env.bridge.start()
    orders = range(2_000_320, 2_000_324)
    env.write_orders(orders, noise=1, seed=5)
    comparison = wait_for_spans(env, env.expected_spans(), ARRIVE_TIMEOUT)
    comparison.assert_all(env.describe())
    policies = thread_policies(env.bridge.process.pid)
    inherited = os.sched_getscheduler(0)
    ingest = ["live-pipeline", "live-commit", "spool-sender", "wal-checkpoint"]
    problems = [f"{name}: {sorted(policies.get(name, []))}, expected [{inherited}]"
                for name in ingest if policies.get(name) != {inherited}]
    assert not problems, report(problems, "thread scheduling policies") + f"\n{policies}"
    warnings = [line for line in env.bridge.stderr_text().splitlines()
                if "live.cpu_scheduling batch not applied" in line]
    assert len(warnings) == 1, f"expected one warning, got {warnings}\n{env.bridge.describe()}"
    assert "Operation not permitted" in warnings[0], warnings[0]
    code = env.bridge.terminate()
    assert code == 0, f"SIGTERM: exit {code}\n{env.bridge.describe()}"


# ---------------------------------------------------------------------------
# g) a full spool pauses reading instead of dropping
# ---------------------------------------------------------------------------

def test_full_spool_pauses_reading_and_loses_nothing(live_env):
    # A spool bound a few spans deep: with the receiver down it fills at once.
    env = live_env(receiver_up=False, spool={"max_bytes": "4KiB"})
    env.bridge.start()
    first = range(2_000_200, 2_000_210)
    env.write_orders(first, noise=1, seed=11)
    env.bridge.wait_metric("tracebridge_spool_full", lambda v: v == 1,
                           "never reported the spool full with the receiver down")
    # While full, new lines wait on disk: no event of these orders is read.
    events_at_full = env.bridge.metric("tracebridge_events_total") or 0
    later = range(2_000_210, 2_000_220)
    env.write_orders(later, noise=1, seed=12)
    time.sleep(2)
    assert (env.bridge.metric("tracebridge_events_total") or 0) == events_at_full, \
        "the bridge kept reading while its spool was full"
    assert "spool full" in env.bridge.stderr_text(), "the pause was not logged"

    env.receiver.start()
    expected = env.expected_spans()
    comparison = wait_for_spans(env, expected, ARRIVE_TIMEOUT)
    comparison.assert_all(env.describe())
    env.bridge.wait_metric("tracebridge_spool_full", lambda v: v == 0,
                           "stayed full after the receiver came back")
    assert env.bridge.terminate() == 0
