"""A real RabbitMQ broker for the end-to-end tests, and the AMQP client side of them (pika).

No pytest here, so that fixtures, benchmarks and scripts can all use it:

    broker = Broker(tmp_path / "rabbit", free_port())
    broker.start()                    # scripts/rabbitmq start DIR PORT (5-11 s)
    declare_queue(broker.url, "orders")
    publish(broker.url, "", "orders", [b"...", ...])   # confirmed, persistent
    queue_counts(broker.url, "orders")                  # -> (ready messages, consumers)
    broker.kill9(); broker.start()    # crash: durable queues keep confirmed persistent messages
    get_all(broker.url, "orders.dlq")                   # -> [(body, properties), ...]
    broker.stop()

With TLS (`scripts/rabbitmq start DIR PORT --tls-port N`: a throwaway CA, a server
certificate for DNS:localhost and a client certificate in DIR/tls/, client certificates
required), the plain listener stays for publishing and inspecting:

    broker = Broker(tmp_path / "rabbit", tls=True)      # or tls_port=N
    broker.start()
    broker.amqps_url                  # amqps://guest:guest@localhost:N/%2F (by name, not IP)
    broker.tls_files                  # {"ca_file", "cert_file", "key_file", "untrusted_ca_file"}
    tls_probe(broker.amqps_url, broker.tls_files["ca_file"])   # -> None, or why it failed

Each broker has its own state directory, node name and ports (see scripts/rabbitmq); its
queues survive `restart()` and `kill9()` + `start()` on the same directory.

`python3 tests/e2e/amqp_helpers.py --selftest` checks all of it against a real broker.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RABBITMQ_SCRIPT = REPO / "scripts" / "rabbitmq"

START_TIMEOUT = 150  # seconds for `scripts/rabbitmq start`: a first run installs the package
STOP_TIMEOUT = 60


def _pika():
    try:
        import pika
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError("pika is not installed: python3 -m pip install -r "
                           "tests/requirements.txt") from exc
    return pika


# ---------------------------------------------------------------------------
# ports and processes
# ---------------------------------------------------------------------------

def dist_port(port: int) -> int:
    """The Erlang distribution port scripts/rabbitmq gives a broker on AMQP port `port`."""
    if port + 20000 <= 65535:
        return port + 20000
    if port + 1000 <= 65535:
        return port + 1000
    return port - 20000


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port that is free now, and whose distribution port (`dist_port`) is free
    too. (Another process may take either before the broker binds it: rare on loopback.)"""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 4369 and _port_free(dist_port(port)):
            return port
    raise RuntimeError("found no free pair of loopback ports")


def free_port_besides(*taken: int) -> int:
    """A loopback port that is free now and none of `taken` (e.g. a broker's TLS port, which
    must differ from its AMQP port and that port's distribution port)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken and port != 4369:
            return port
    raise RuntimeError("found no free loopback port")


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie (PID 1 on these machines can be slow to
    reap orphans, and `kill -0` succeeds on a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat[stat.rfind(b")") + 2:][:1]
    return state not in (b"Z", b"X", b"")


def wait_pid_gone(pid: int, timeout: float = 10) -> bool:
    """Wait until `pid` has left /proc (exited and reaped: a dead beam.smp is reaped by its
    rabbitmq-server wrapper a moment later). False if it is still there after `timeout`."""
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ---------------------------------------------------------------------------
# the broker
# ---------------------------------------------------------------------------

class BrokerError(RuntimeError):
    pass


class Broker:
    """A RabbitMQ node run by scripts/rabbitmq with its state in `dir`, AMQP on
    127.0.0.1:`port` (default: a free port), user guest/guest, vhost "/".

    With `tls=True` (a free port) or `tls_port=N` it also listens for AMQP over TLS on
    127.0.0.1:N with the certificates scripts/rabbitmq makes in `tls_dir` (reused across
    restarts on the same directory); the broker requires a client certificate its CA
    signed. Connect by name (`amqps_url`, host `localhost`): the server certificate names
    DNS:localhost only, and clients that check host names refuse an IP address."""

    def __init__(self, dir, port: int | None = None, tls_port: int | None = None,
                 tls: bool = False):
        self.dir = Path(dir).resolve()
        self.port = int(port) if port else free_port()
        if tls_port:
            self.tls_port: int | None = int(tls_port)
        elif tls:
            self.tls_port = free_port_besides(self.port, dist_port(self.port))
        else:
            self.tls_port = None
        self.pid: int | None = None
        self.timings: dict[str, float] = {}  # seconds of the last start, stop, restart

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def tls(self) -> bool:
        return self.tls_port is not None

    def _need_tls(self):
        if not self.tls:
            raise BrokerError(f"the broker in {self.dir} has no TLS listener: "
                              f"Broker(..., tls=True) or tls_port=N")

    @property
    def tls_dir(self) -> Path:
        """DIR/tls: ca.pem, server.pem/.key, client.pem/.key, untrusted-ca.pem."""
        self._need_tls()
        return self.dir / "tls"

    @property
    def amqps_url(self) -> str:
        """The TLS listener, by host name (the certificate names DNS:localhost)."""
        self._need_tls()
        return f"amqps://guest:guest@localhost:{self.tls_port}/%2F"

    @property
    def tls_files(self) -> dict:
        """What a client needs: `ca_file` (the CA that signed the server and client
        certificates), `cert_file` and `key_file` (the client certificate), and
        `untrusted_ca_file` (a CA that signed nothing here: verification must fail)."""
        t = self.tls_dir
        return {"ca_file": t / "ca.pem", "cert_file": t / "client.pem",
                "key_file": t / "client.key", "untrusted_ca_file": t / "untrusted-ca.pem"}

    @property
    def env(self) -> dict:
        """The broker's environment (DIR/env): what rabbitmqctl needs to reach it."""
        out = {}
        for line in (self.dir / "env").read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                key, value = line[len("export "):].split("=", 1)
                out[key] = value.strip("'")
        return out

    @property
    def node(self) -> str:
        return self.env["RABBITMQ_NODENAME"]

    def _run(self, *args, timeout: float) -> subprocess.CompletedProcess:
        cmd = [str(RABBITMQ_SCRIPT), *map(str, args)]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) \
                else (exc.stderr or "")
            raise BrokerError(f"{' '.join(cmd)} did not finish within {timeout:.0f}s\n"
                              f"{err[-3000:]}") from None

    def _read_pid(self) -> int | None:
        try:
            text = (self.dir / "rabbit.pid").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def alive(self) -> bool:
        pid = self.pid or self._read_pid()
        return bool(pid) and pid_alive(pid)

    def start(self) -> float:
        """Start the broker (or find it already running); returns the seconds it took."""
        self.dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        args = ["start", self.dir, self.port]
        if self.tls:
            args += ["--tls-port", self.tls_port]
        done = self._run(*args, timeout=START_TIMEOUT)
        if done.returncode != 0:
            raise BrokerError(f"scripts/rabbitmq {' '.join(map(str, args))} failed with exit "
                              f"{done.returncode}:\n{done.stderr[-4000:]}")
        self.pid = self._read_pid()
        if not self.pid or not pid_alive(self.pid):
            raise BrokerError(f"the broker in {self.dir} started but {self.dir}/rabbit.pid "
                              f"names no live process")
        self.timings["start"] = time.monotonic() - started
        return self.timings["start"]

    def stop(self) -> float:
        """`rabbitmqctl stop` (SIGKILL after 15 s); the PID is gone when this returns."""
        pid = self.pid or self._read_pid()
        started = time.monotonic()
        done = self._run("stop", self.dir, timeout=STOP_TIMEOUT)
        if done.returncode != 0:
            raise BrokerError(f"scripts/rabbitmq stop {self.dir} failed with exit "
                              f"{done.returncode}:\n{done.stderr[-3000:]}")
        if pid and pid_alive(pid):
            raise BrokerError(f"scripts/rabbitmq stop returned but pid {pid} is alive")
        if pid:
            wait_pid_gone(pid, 10)  # a zombie for a moment at most
        self.pid = None
        self.timings["stop"] = time.monotonic() - started
        return self.timings["stop"]

    def restart(self) -> float:
        started = time.monotonic()
        self.stop()
        self.start()
        self.timings["restart"] = time.monotonic() - started
        return self.timings["restart"]

    def kill9(self, timeout: float = 10) -> None:
        """SIGKILL the broker's beam.smp by its PID (a crash: no clean shutdown) and wait
        until it is gone. `start()` brings it back on the same state directory."""
        pid = self.pid or self._read_pid()
        if not pid or not pid_alive(pid):
            raise BrokerError(f"no live broker process to kill in {self.dir}")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() > deadline:
                raise BrokerError(f"pid {pid} is still alive {timeout}s after SIGKILL")
            time.sleep(0.02)
        wait_pid_gone(pid, timeout)
        self.pid = None

    def ctl(self, *args, check: bool = True, timeout: float = 60) -> str:
        """`rabbitmqctl ARGS` against this broker; returns its standard output."""
        done = self._run("ctl", self.dir, *args, timeout=timeout)
        if check and done.returncode != 0:
            raise BrokerError(f"rabbitmqctl {' '.join(map(str, args))} failed with exit "
                              f"{done.returncode}:\n{done.stderr[-3000:]}{done.stdout[-2000:]}")
        return done.stdout

    def log_tail(self, lines: int = 40) -> str:
        """The end of the broker's own log, for failure messages."""
        try:
            text = (self.dir / "log" / f"{self.node}.log").read_text(errors="replace")
        except (FileNotFoundError, KeyError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        if self.alive():
            self.stop()


# ---------------------------------------------------------------------------
# publishing with confirms, across connection loss
# ---------------------------------------------------------------------------

class PublishError(RuntimeError):
    pass


@dataclass
class PublishResult:
    confirmed: int            # messages the broker confirmed (each body once)
    published: int            # basic.publish calls, resends included
    resent: int               # messages sent again after a connection loss or a nack
    reconnects: int           # connections opened after the first
    seconds: float
    errors: list = field(default_factory=list)  # why connections were lost


def _parameters(url: str, heartbeat: int = 10, ssl_context: ssl.SSLContext | None = None):
    pika = _pika()
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.heartbeat = heartbeat  # notices a hung (not just a dead) broker
    params.blocked_connection_timeout = 60
    if ssl_context is not None:
        params.ssl_options = pika.SSLOptions(ssl_context, server_hostname=params.host)
    return params


def tls_context(ca_file, cert_file=None, key_file=None) -> ssl.SSLContext:
    """A client TLS context that trusts only `ca_file`, checks the host name, and presents
    `cert_file`/`key_file` when given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    if cert_file:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return context


def tls_probe(url: str, ca_file, cert_file=None, key_file=None, timeout: float = 15) -> str | None:
    """Connect to an amqps:// URL with pika (TLS, log in, open a channel, close): None when
    that worked, else what failed (the TLS alert or verification error, as text). No retry:
    the broker must already be up."""
    pika = _pika()
    params = _parameters(url, heartbeat=30,
                         ssl_context=tls_context(ca_file, cert_file, key_file))
    params.socket_timeout = timeout
    quiet = logging.getLogger("pika")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # an expected failure is logged with tracebacks otherwise
    try:
        conn = pika.BlockingConnection(params)
    except Exception as exc:  # noqa: BLE001 - the reason is the answer
        return f"{type(exc).__name__}: {exc}"
    finally:
        quiet.setLevel(level)
    try:
        conn.channel().close()
    finally:
        conn.close()
    return None


def _make_properties(properties, index: int):
    pika = _pika()
    if callable(properties):
        properties = properties(index)
    if properties is None:
        return pika.BasicProperties(delivery_mode=2)
    if isinstance(properties, pika.BasicProperties):
        values = {k: v for k, v in vars(properties).items() if v is not None}
    else:
        values = dict(properties)
    values["delivery_mode"] = 2  # persistent
    return pika.BasicProperties(**values)


class _Publisher:
    """One publish() call: a SelectConnection per attempt, up to `window` unconfirmed
    messages in flight; on connection loss the unconfirmed ones go back to the front of
    the queue and are sent again on the next connection (duplicates are possible: the
    broker may have stored a message whose confirm was lost)."""

    def __init__(self, url, exchange, routing_key, bodies, properties, confirm, mandatory,
                 window, timeout, on_confirm):
        self.params = _parameters(url)
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.confirm = confirm
        self.mandatory = mandatory
        self.window = max(1, window)
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.on_confirm = on_confirm
        items = [(i, b.encode() if isinstance(b, str) else bytes(b)) for i, b in enumerate(bodies)]
        self.total = len(items)
        self.pending = collections.deque(items)   # (index, body) to send
        self.unconfirmed: dict[int, tuple] = {}   # delivery tag -> (index, body)
        self.done: set[int] = set()               # indexes confirmed (or sent, without confirm)
        self.returned: list[tuple] = []           # (index or None, reply code, reply text)
        self.fatal: Exception | None = None       # not worth retrying (404 exchange, ...)
        self.published = 0
        self.resent = 0
        self.sent_once: set[int] = set()
        self.errors: list[str] = []
        self.conn = None
        self.channel = None
        self.tag = 0

    # -- driving loop
    def run(self) -> PublishResult:
        pika = _pika()
        started = time.monotonic()
        attempts = 0
        while len(self.done) < self.total and self.fatal is None:
            if time.monotonic() > self.deadline:
                raise PublishError(
                    f"publish: {len(self.done)} of {self.total} messages confirmed after "
                    f"{self.timeout:.0f}s; connection errors: {self.errors[-5:]}")
            if attempts:
                time.sleep(0.3)
            attempts += 1
            self.tag = 0
            self.channel = None
            self.conn = pika.SelectConnection(
                self.params, on_open_callback=self._on_open,
                on_open_error_callback=self._on_open_error,
                on_close_callback=self._on_closed)
            self.conn.ioloop.call_later(0.5, self._tick)
            try:
                self.conn.ioloop.start()
            finally:
                try:
                    self.conn.ioloop.close()
                except Exception:  # noqa: BLE001 - best effort
                    pass
            # Whatever was in flight on that connection is unknown: send it again.
            if self.unconfirmed:
                back = sorted(self.unconfirmed.values())
                self.unconfirmed.clear()
                self.pending.extendleft(reversed(back))
        if self.fatal is not None:
            raise PublishError(f"publish to exchange {self.exchange!r} with routing key "
                               f"{self.routing_key!r} failed: {self.fatal}")
        if self.returned:
            code, text = self.returned[0][1:]
            raise PublishError(f"{len(self.returned)} message(s) were unroutable (exchange "
                               f"{self.exchange!r}, routing key {self.routing_key!r}): "
                               f"{code} {text}; no queue bound? (mandatory=False to allow)")
        return PublishResult(len(self.done), self.published, self.resent,
                             max(0, attempts - 1), time.monotonic() - started, self.errors)

    def _tick(self):
        if time.monotonic() > self.deadline:
            self.errors.append("deadline")
            self._close()
            return
        self.conn.ioloop.call_later(0.5, self._tick)

    def _close(self):
        if self.conn is not None and not (self.conn.is_closing or self.conn.is_closed):
            self.conn.close()
        elif self.conn is not None and self.conn.is_closed:
            self.conn.ioloop.stop()

    # -- connection and channel
    def _on_open(self, conn):
        conn.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, conn, exc):
        self.errors.append(f"connect: {exc!r}")
        conn.ioloop.stop()

    def _on_closed(self, conn, reason):
        if len(self.done) < self.total:
            self.errors.append(f"closed: {reason!r}")
        conn.ioloop.stop()

    def _on_channel(self, channel):
        self.channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        if self.confirm:
            channel.confirm_delivery(self._on_ack_nack, callback=lambda _frame: self._send())
        else:
            self._send()

    def _on_channel_closed(self, channel, reason):
        pika = _pika()
        # 404 (no such exchange), 403, 406 ... are the caller's mistakes: retrying cannot help.
        if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
            self.fatal = reason
        else:
            self.errors.append(f"channel closed: {reason!r}")
        self._close()

    def _on_return(self, channel, method, properties, body):
        self.returned.append((None, method.reply_code, method.reply_text))

    # -- messages
    def _send(self):
        if self.channel is None or not self.channel.is_open:
            return
        while self.pending and len(self.unconfirmed) < self.window:
            index, body = self.pending.popleft()
            if index in self.done:   # confirmed meanwhile (a late ack for an earlier copy)
                continue
            self.channel.basic_publish(self.exchange, self.routing_key, body,
                                       _make_properties(self.properties, index),
                                       mandatory=self.mandatory)
            self.published += 1
            if index in self.sent_once:
                self.resent += 1
            self.sent_once.add(index)
            if self.confirm:
                self.tag += 1
                self.unconfirmed[self.tag] = (index, body)
            else:
                self.done.add(index)
        if len(self.done) >= self.total and not self.unconfirmed:
            self._close()   # without confirms, the close is queued behind the messages

    def _on_ack_nack(self, frame):
        pika = _pika()
        method = frame.method
        tags = [t for t in self.unconfirmed if t <= method.delivery_tag] if method.multiple \
            else ([method.delivery_tag] if method.delivery_tag in self.unconfirmed else [])
        if isinstance(method, pika.spec.Basic.Ack):
            for t in tags:
                self.done.add(self.unconfirmed.pop(t)[0])
            if self.on_confirm is not None:
                self.on_confirm(len(self.done))
        else:  # Basic.Nack: the broker could not take them; send them again
            back = sorted(self.unconfirmed.pop(t) for t in tags)
            self.pending.extendleft(reversed(back))
        self._send()


def publish(url: str, exchange: str, routing_key: str, bodies, properties=None,
            confirm: bool = True, *, mandatory: bool = True, window: int = 500,
            timeout: float = 120, on_confirm=None) -> PublishResult:
    """Publish every body (bytes or str) as a persistent message (delivery_mode 2).

    `properties`: None, a dict of `pika.BasicProperties` fields, a `BasicProperties`, or a
    callable `f(index) -> dict` (e.g. a message_id per message). With `confirm` (publisher
    confirms) it returns only when the broker has confirmed every message, keeping up to
    `window` in flight, and survives connection loss (broker stop, restart or kill -9):
    it reconnects until `timeout` and re-sends whatever was not confirmed, so a consumer may
    see duplicates. `mandatory`: an unroutable message (no queue bound) raises PublishError
    instead of vanishing. `on_confirm(total_confirmed)` is called from the publishing thread
    as confirms arrive."""
    bodies = list(bodies)
    if not bodies:
        return PublishResult(0, 0, 0, 0, 0.0)
    return _Publisher(url, exchange, routing_key, bodies, properties, confirm, mandatory,
                      window, timeout, on_confirm).run()


# ---------------------------------------------------------------------------
# queues
# ---------------------------------------------------------------------------

def _blocking(url: str, timeout: float = 30):
    """A BlockingConnection, retried until `timeout` (the broker may still be booting)."""
    pika = _pika()
    deadline = time.monotonic() + timeout
    while True:
        try:
            return pika.BlockingConnection(_parameters(url, heartbeat=30))
        except pika.exceptions.AMQPConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def declare_queue(url: str, name: str, durable: bool = True, arguments: dict | None = None) -> str:
    """Declare a queue (durable by default; `arguments` e.g. {"x-dead-letter-exchange": "",
    "x-dead-letter-routing-key": "orders.dlq"} or {"x-queue-mode": "lazy"})."""
    conn = _blocking(url)
    try:
        ok = conn.channel().queue_declare(name, durable=durable, arguments=arguments)
        return ok.method.queue
    finally:
        conn.close()


def delete_queue(url: str, name: str) -> None:
    conn = _blocking(url)
    try:
        conn.channel().queue_delete(name)
    finally:
        conn.close()


def queue_counts(url: str, name: str) -> tuple[int, int]:
    """(messages ready, consumers) of an existing queue, by a passive declare. Messages
    delivered but not yet acked are not counted. Raises pika's ChannelClosedByBroker (404)
    if the queue does not exist."""
    conn = _blocking(url)
    try:
        ok = conn.channel().queue_declare(name, passive=True)
        return ok.method.message_count, ok.method.consumer_count
    finally:
        conn.close()


def get_all(url: str, queue: str) -> list[tuple[bytes, object]]:
    """Drain a queue with basic.get, acking each message: [(body, properties), ...] in queue
    order (e.g. to read a dead-letter queue; `properties.headers["x-death"]` says why)."""
    conn = _blocking(url)
    out = []
    try:
        channel = conn.channel()
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            out.append((body, properties))
            channel.basic_ack(method.delivery_tag)
        return out
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# self-check against a real broker
# ---------------------------------------------------------------------------

def _selftest() -> int:
    import logging
    import shutil
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # reconnect noise is expected
    work = Path(tempfile.mkdtemp(prefix="tb-amqp-selftest-"))
    broker = Broker(work / "broker", free_port(), tls=True)
    ok = False
    say = lambda msg: print(f"selftest: {msg}", flush=True)  # noqa: E731
    try:
        say(f"broker dir {broker.dir}, port {broker.port} (distribution {dist_port(broker.port)})")
        say(f"start: {broker.start():.1f}s (pid {broker.pid}, node {broker.node})")
        assert broker.start() < 10 and broker.alive(), "a second start should find it running"

        tls = broker.tls_files
        assert tls_probe(broker.amqps_url, tls["ca_file"], tls["cert_file"], tls["key_file"]) \
            is None, "TLS with the CA and the client certificate should connect"
        no_cert = tls_probe(broker.amqps_url, tls["ca_file"])
        assert no_cert is not None, "the broker accepted a TLS client without a certificate"
        wrong_ca = tls_probe(broker.amqps_url, tls["untrusted_ca_file"], tls["cert_file"],
                             tls["key_file"])
        assert wrong_ca is not None and "CERTIFICATE_VERIFY_FAILED" in wrong_ca, wrong_ca
        by_ip = tls_probe(broker.amqps_url.replace("localhost", "127.0.0.1"), tls["ca_file"],
                          tls["cert_file"], tls["key_file"])
        assert by_ip is not None and "IP address mismatch" in by_ip, by_ip
        server_cert = (broker.tls_dir / "server.pem").read_bytes()
        say(f"TLS on localhost:{broker.tls_port}: the client certificate connects; refused "
            f"without one ({no_cert[:80]}), with another CA and by IP address")

        q = "tb.selftest"
        declare_queue(broker.url, q)
        bodies = [f'{{"seq": {i}, "order": "O-{i:05d}"}}'.encode() for i in range(1000)]
        res = publish(broker.url, "", q, bodies,
                      properties=lambda i: {"message_id": f"m{i}", "content_type": "application/json"})
        assert res.confirmed == 1000 and res.resent == 0, res
        say(f"published 1000 persistent messages with confirms in {res.seconds:.2f}s")
        assert queue_counts(broker.url, q) == (1000, 0), queue_counts(broker.url, q)
        t0 = time.monotonic()
        got = get_all(broker.url, q)
        assert [b for b, _ in got] == bodies, "read back other bodies or another order"
        assert all(p.delivery_mode == 2 and p.message_id == f"m{i}" for i, (_, p) in enumerate(got))
        assert queue_counts(broker.url, q) == (0, 0)
        say(f"read them back with basic.get in {time.monotonic() - t0:.2f}s: bodies, order, "
            f"message_id and delivery_mode 2 intact")

        try:
            publish(broker.url, "", "no.such.queue", [b"x"])
            raise AssertionError("an unroutable publish should raise")
        except PublishError:
            pass

        kept = [f"kept-{i}".encode() for i in range(500)]
        publish(broker.url, "", q, kept)
        broker.restart()
        say(f"restart: {broker.timings['restart']:.1f}s (stop {broker.timings['stop']:.1f}s, "
            f"start {broker.timings['start']:.1f}s), pid now {broker.pid}")
        assert queue_counts(broker.url, q) == (500, 0), queue_counts(broker.url, q)
        assert [b for b, _ in get_all(broker.url, q)] == kept
        say("the durable queue kept its 500 undelivered persistent messages across the restart")
        assert (broker.tls_dir / "server.pem").read_bytes() == server_cert, \
            "the restart made new certificates"
        assert tls_probe(broker.amqps_url, tls["ca_file"], tls["cert_file"],
                         tls["key_file"]) is None, "TLS gone after the restart"
        say("TLS still up after the restart, with the same certificates")

        # Crash while publishing: kill -9 the broker once 2,000 of 20,000 are confirmed, start
        # it again; the publisher reconnects and re-sends what was not confirmed. Every body
        # must be there afterwards (duplicates allowed).
        cq = "tb.selftest.crash"
        declare_queue(broker.url, cq)
        n = 20000
        many = [f"crash-{i}".encode() for i in range(n)]
        reached = threading.Event()
        box = {}

        def run():
            try:
                box["result"] = publish(broker.url, "", cq, many, timeout=180,
                                        on_confirm=lambda c: c >= 2000 and reached.set())
            except Exception as exc:  # noqa: BLE001 - reported below
                box["error"] = exc
        th = threading.Thread(target=run, daemon=True)
        th.start()
        assert reached.wait(60), f"publisher did not reach 2,000 confirms: {box}"
        old = broker.pid
        t0 = time.monotonic()
        broker.kill9()
        assert not pid_alive(old)
        say(f"kill -9 of pid {old} after 2,000+ confirms, gone in {time.monotonic() - t0:.2f}s")
        t0 = time.monotonic()
        broker.start()
        say(f"start after the crash: {time.monotonic() - t0:.1f}s")
        th.join(200)
        assert not th.is_alive(), "publisher still running"
        assert "error" not in box, f"publish failed: {box.get('error')}"
        res = box["result"]
        got = [b for b, _ in get_all(broker.url, cq)]
        missing = set(many) - set(got)
        assert not missing, f"{len(missing)} confirmed-or-resent messages lost"
        say(f"publisher survived the crash: {res.confirmed} confirmed, {res.published} "
            f"basic.publish, {res.resent} re-sent, {res.reconnects} reconnect attempt(s); "
            f"queue held {len(got)} messages, all {n} bodies present, "
            f"{len(got) - len(set(got))} duplicate(s)")

        out = broker.ctl("-q", "list_queues", "name", "durable")
        assert q in out and cq in out, out
        pid = broker.pid
        say(f"stop: {broker.stop():.1f}s")
        assert not pid_alive(pid), f"pid {pid} still alive after stop"
        assert wait_pid_gone(pid, 0), f"pid {pid} still in /proc after stop"
        say(f"pid {pid} is gone")
        ok = True
        say("OK")
        return 0
    finally:
        if broker.alive():
            try:
                broker.stop()
            except BrokerError as exc:
                print(exc, file=sys.stderr)
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"selftest: FAILED; broker files kept in {work}", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:] == ["--selftest"]:
        sys.exit(_selftest())
    print(f"usage: python3 {sys.argv[0]} --selftest", file=sys.stderr)
    sys.exit(2)
