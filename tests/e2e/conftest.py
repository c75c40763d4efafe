"""Fixtures for the end-to-end tests: the bridge binary, generated samples with their ground
truth, a real OTLP/HTTP receiver process, and a runner for `tracebridge backfill`.

Nothing here is mocked: the bridge runs as its own process, spans travel over loopback HTTP
(or through its `file:` export) and are decoded with the official OpenTelemetry protobuf
definitions.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
RECEIVER_SCRIPT = E2E_DIR / "otlp_receiver.py"
EXAMPLE_CONFIG = REPO / "examples" / "tracebridge.yaml"
GEN_SAMPLES = REPO / "scripts" / "gen_samples.py"

SAMPLE_ORDERS = 60
SAMPLE_SEED = 11
BACKFILL_TIMEOUT = 300  # seconds; a hung bridge fails the test instead of hanging CI


# ---------------------------------------------------------------------------
# the bridge
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def bridge_bin() -> Path:
    path = Path(os.environ.get("TRACEBRIDGE_BIN", REPO / ".build" / "debug" / "tracebridge"))
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"tracebridge binary not found or not executable at {path}: build it with "
                    f"`swift build` in {REPO}, or point TRACEBRIDGE_BIN at it", pytrace=False)
    return path


@dataclass
class BackfillRun:
    """One finished `tracebridge backfill` process and what it reported."""
    cmd: list
    config: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    summary_path: Path
    rejected_path: Path

    @property
    def summary(self) -> dict:
        if not self.summary_path.exists():
            pytest.fail(f"backfill wrote no --summary-json file {self.summary_path} "
                        f"(exit {self.returncode})\n{self.describe()}", pytrace=False)
        return json.loads(self.summary_path.read_text())

    def describe(self) -> str:
        tail = lambda s: "\n".join(s.strip().splitlines()[-25:])  # noqa: E731
        return (f"command: {' '.join(map(str, self.cmd))}\nexit: {self.returncode} "
                f"after {self.seconds:.1f}s\n--- stderr (tail) ---\n{tail(self.stderr)}\n"
                f"--- stdout (tail) ---\n{tail(self.stdout)}")

    def expect_exit(self, code: int):
        assert self.returncode == code, \
            f"backfill exited {self.returncode}, expected {code}\n{self.describe()}"
        return self


def run_backfill(bridge: Path, config: Path, *args, export: str | None = None,
                 paths=(), timeout: float = BACKFILL_TIMEOUT, work: Path | None = None,
                 store: bool = True) -> BackfillRun:
    """Run `tracebridge backfill` to completion with its summary, rejected lines and store
    in `work` (default: the config's folder), so that runs never share state."""
    work = Path(work or config.parent)
    work.mkdir(parents=True, exist_ok=True)
    summary = work / "summary.json"
    rejected = work / "rejected.jsonl"
    for stale in (summary, rejected):
        stale.unlink(missing_ok=True)
    cmd = [str(bridge), "backfill", "--config", str(config), "--no-progress",
           "--summary-json", str(summary), "--rejected", str(rejected)]
    cmd += ["--store", str(work / "state.sqlite")] if store else ["--no-store"]
    if export is not None:
        cmd += ["--export", export]
    cmd += [str(a) for a in args]
    cmd += [str(p) for p in paths]
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"backfill did not finish within {timeout:.0f}s: {' '.join(cmd)}\n"
                    f"--- stderr (tail) ---\n{(out or '')[-3000:]}", pytrace=False)
    return BackfillRun(cmd, Path(config), done.returncode, done.stdout, done.stderr,
                       time.monotonic() - started, summary, rejected)


@pytest.fixture(scope="session")
def backfill(bridge_bin):
    """`backfill(config, *args, export=..., paths=..., timeout=...)` -> BackfillRun."""
    return lambda config, *args, **kw: run_backfill(bridge_bin, config, *args, **kw)


# ---------------------------------------------------------------------------
# samples, their ground truth, and a configuration pointing at them
# ---------------------------------------------------------------------------

@dataclass
class Samples:
    """Generated sample logs (`dir`) and their ground truth (`truth`, parsed truth.json:
    per order its statuses, steps and events with UTC nanosecond times; per source the
    line, record, noise and malformed counts)."""
    dir: Path
    truth: dict


def generate_samples(out: Path, orders: int = SAMPLE_ORDERS, seed: int = SAMPLE_SEED) -> Samples:
    if not GEN_SAMPLES.exists():
        pytest.fail(f"sample generator {GEN_SAMPLES} is missing", pytrace=False)
    cmd = [sys.executable, str(GEN_SAMPLES), "--orders", str(orders), "--seed", str(seed),
           "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed with exit {done.returncode}:\n{done.stderr[-3000:]}",
                    pytrace=False)
    truth_path = out / "truth.json"
    if not truth_path.exists():
        pytest.fail(f"{' '.join(cmd)} wrote no {truth_path}", pytrace=False)
    return Samples(out, json.loads(truth_path.read_text(encoding="utf-8")))


@pytest.fixture(scope="session")
def samples(tmp_path_factory) -> Samples:
    """Samples generated once per session (`--orders 60 --seed 11`). Read-only: a test that
    changes files works on a copy."""
    return generate_samples(tmp_path_factory.mktemp("gen") / "samples")


_SAMPLES_PATH = re.compile(r"""(?<=[\s'"\[,:=])(?:\./)?samples/""")


def make_config(samples_dir: Path, tmp: Path, exporter_options: dict | None = None) -> Path:
    """Copy `examples/tracebridge.yaml` into `tmp`, pointing its `samples/…` paths at
    `samples_dir`. Everything else relative in it (data_dir, store, exporter file) now
    resolves inside `tmp`, so every run has its own state. `exporter_options` (e.g.
    `{"max_batch_spans": 100}`) are merged into its `exporter` block."""
    if not EXAMPLE_CONFIG.exists():
        pytest.fail(f"example configuration {EXAMPLE_CONFIG} is missing", pytrace=False)
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    rewritten, count = _SAMPLES_PATH.subn(lambda _: f"{Path(samples_dir).resolve()}/", text)
    if count == 0:
        pytest.fail(f"{EXAMPLE_CONFIG} names no `samples/…` path to point at the generated "
                    f"samples", pytrace=False)
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    if exporter_options:
        import yaml
        doc = yaml.safe_load(rewritten)
        doc.setdefault("exporter", {}).update(exporter_options)
        rewritten = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    config = tmp / "tracebridge.yaml"
    config.write_text(rewritten, encoding="utf-8")
    return config


@pytest.fixture(name="make_config", scope="session")
def make_config_fixture():
    return make_config


def config_services(config: Path) -> dict:
    """Source name -> {service, timezone, encoding, paths} from a configuration file."""
    import yaml
    doc = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    return {s["name"]: {"service": s.get("service"), "timezone": s.get("timezone", "UTC"),
                        "encoding": s.get("encoding", "utf-8"), "paths": s.get("paths", [])}
            for s in doc.get("sources", [])}


# ---------------------------------------------------------------------------
# the OTLP receiver process
# ---------------------------------------------------------------------------

class Receiver:
    """`otlp_receiver.py` running as its own process on a free loopback port."""

    def __init__(self, workdir: Path, fail_first=0, fail_status=503, retry_after=None,
                 always_status=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.out = self.workdir / "spans.jsonl"
        self.requests_path = Path(str(self.out) + ".requests.jsonl")
        ready = self.workdir / "ready"
        cmd = [sys.executable, str(RECEIVER_SCRIPT), "--port", "0", "--out", str(self.out),
               "--ready-file", str(ready)]
        if fail_first:
            cmd += ["--fail-first", str(fail_first), "--fail-status", str(fail_status)]
        if retry_after is not None:
            cmd += ["--retry-after", str(retry_after)]
        if always_status is not None:
            cmd += ["--always-status", str(always_status)]
        self.log = open(self.workdir / "receiver.log", "w")
        self.process = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"OTLP receiver did not start: "
                            f"{(self.workdir / 'receiver.log').read_text()[-2000:]}",
                            pytrace=False)
            time.sleep(0.05)
        self.port = int(ready.read_text())
        self.url = f"http://127.0.0.1:{self.port}/v1/traces"

    def spans(self) -> list:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text(encoding="utf-8").splitlines()
                if line.strip()]

    def requests(self) -> list:
        if not self.requests_path.exists():
            return []
        return [json.loads(line) for line in self.requests_path.read_text().splitlines()
                if line.strip()]

    def stop(self):
        """Stop this receiver by its pid: SIGTERM, then wait (SIGKILL only if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture
def receiver(tmp_path):
    """Factory: `receiver(fail_first=2, fail_status=503, retry_after=1)` or
    `receiver(always_status=400)` starts a receiver; all are stopped at teardown."""
    started = []

    def start(**options) -> Receiver:
        rx = Receiver(tmp_path / f"receiver{len(started)}", **options)
        started.append(rx)
        return rx

    yield start
    for rx in started:
        rx.stop()


def start_receiver(workdir: Path, **options) -> Receiver:
    """For module-scoped fixtures, which must stop it themselves (`Receiver.stop`)."""
    return Receiver(workdir, **options)
