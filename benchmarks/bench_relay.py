"""
P3: loopback TCP relay throughput and memory, side by side in one run.

Contenders (each relay in its own process, so its RSS is its own):

* ``direct``            -- no relay: sender -> receiver
* ``pcpkit-portable``   -- ``pcpkit.internet.relay.Relay(splice=False)``
* ``pcpkit-transports`` -- ``Relay(splice=False)`` to a wrapped TCP endpoint, which the relay
  cannot see through (as TLS or a user's own endpoint): the path of Twisted transports
* ``pcpkit-splice``     -- ``Relay(splice=True)`` (Linux ``os.splice``)
* ``portforward``       -- ``twisted.protocols.portforward.ProxyFactory``
* ``socat``             -- ``socat TCP-LISTEN:port,bind=127.0.0.1,reuseaddr TCP:127.0.0.1:target``
  (when installed)
* ``haproxy``           -- ``/usr/sbin/haproxy`` in TCP mode, one thread, ``option splice-auto``
  (when installed; its configuration is written to a temporary folder)

The sender and the receiver share one more process (two threads on blocking sockets, which
release the GIL in ``sendall`` / ``recv_into``). Each run moves ``--size`` bytes (1 GiB by
default) and is timed from the sender's connect to the receiver's end of stream; the receiver
checks the byte count. Runs are interleaved and the median of ``--repeat`` is reported.

Then the memory check: each pcpkit relay with a receiver throttled to 1 MB/s and a sender
that never stops, for ``--rss-seconds``; the relay process's peak RSS (``VmHWM``) is reported.

Then the connection rate (``--connects N``, 1,000 by default; 0 skips it): the target is an
echo-once sink (reads one byte, writes it back, closes after the client's end of stream), in a
process of its own; a client process makes

* ``sequential``: ``N`` connections one after another, each: connect, send 1 byte, read the
  byte back, half-close, read to the end of stream (the whole life of a connection through the
  relay and back), and
* ``concurrent``: ``--concurrency`` (500) connections at once, the same exchange on each
  (non-blocking sockets; timed until the last one has closed),

and counts failures; and, against a sink that only counts (no echo), a
``storm``: ``N`` times connect, send 1 byte, close, as fast as the client can, timed until the
sink has seen every connection end with its byte (the relay's sustained accept-dial-relay-close
rate; a listen queue too short for the storm shows here), with the relay process's CPU time
(user + system, from ``/proc/PID/stat``) per connection of the storm: on a shared machine the
steadier figure of the two. The relay's descriptors per
connection are read from ``/proc/PID/fd`` with ``--concurrency`` connections held open after
their echo.

Usage::

    python benchmarks/bench_relay.py            # 1 GiB, 3 runs each
    python benchmarks/bench_relay.py --quick    # 128 MiB, 3 runs, 3 s of throttled reading
    python benchmarks/bench_relay.py --size 0 --repeat 5   # connection rate only
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.abspath(__file__)
RELAYS = [
    "pcpkit-portable",
    "pcpkit-splice",
    "pcpkit-transports",
    "portforward",
    "socat",
    "haproxy",
]
HAPROXY = "/usr/sbin/haproxy"
HAPROXY_CONFIG = """\
global
    nbthread 1
    maxconn 4000
defaults
    mode tcp
    timeout connect 10s
    timeout client 60s
    timeout server 60s
    option splice-auto
frontend relay
    bind 127.0.0.1:{port}
    default_backend target
backend target
    server target 127.0.0.1:{target}
"""
BLOCK = 1 << 20


# -- child process: one relay ------------------------------------------------------------


def serveRelay(kind: str, target: int) -> None:
    """Run one relay on 127.0.0.1:0 to ``target``; print the port; stop on SIGTERM."""
    from twisted.internet import reactor

    r: Any = reactor
    if kind == "portforward":
        from twisted.protocols.portforward import ProxyFactory

        # The relay's listen backlog, so a burst of connects is not a test of Twisted's 50.
        port = r.listenTCP(
            0, ProxyFactory("127.0.0.1", target), interface="127.0.0.1", backlog=4096
        )
        print(port.getHost().port, flush=True)
    else:
        from pcpkit.internet.relay import Relay

        connect: Any = f"tcp:127.0.0.1:{target}"
        if kind == "pcpkit-transports":
            # An endpoint the relay cannot see through, as TLS or a user's own would be:
            # the portable path of Twisted transports.
            from twisted.internet.endpoints import TCP4ClientEndpoint
            from twisted.internet.interfaces import IStreamClientEndpoint
            from zope.interface import implementer

            @implementer(IStreamClientEndpoint)
            class Wrapped:
                def __init__(self, inner: Any) -> None:
                    self.inner = inner

                def connect(self, factory: Any) -> Any:
                    return self.inner.connect(factory)

            connect = Wrapped(TCP4ClientEndpoint(r, "127.0.0.1", target))
        relay = Relay(
            "tcp:0:interface=127.0.0.1",
            connect,
            splice=(kind == "pcpkit-splice"),
            maxConnections=4096,
        )

        def started(p: Any) -> None:
            print(p.getHost().port, flush=True)

        r.callWhenRunning(lambda: relay.start().addCallback(started))
    r.run()


# -- child process: sender + receiver ----------------------------------------------------


def traffic(size: int, throttle: float, seconds: float) -> None:
    """
    Listen for the receiver, print its port, read the port to send to from stdin, move
    ``size`` bytes (or, throttled, send until ``seconds`` have passed), print a result line.
    """
    server = socket.create_server(("127.0.0.1", 0))
    print(server.getsockname()[1], flush=True)
    dest = int(sys.stdin.readline())
    received = [0]
    finished = threading.Event()

    def receive() -> None:
        conn, _ = server.accept()
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        chunk = 65536
        start = time.monotonic()
        while True:
            if throttle:
                # Read ``chunk`` bytes per (chunk / throttle) seconds.
                due = start + received[0] / throttle
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                n = conn.recv_into(view[:chunk])
            else:
                n = conn.recv_into(view)
            if not n:
                break
            received[0] += n
        conn.close()
        finished.set()

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    block = memoryview(bytes(range(256)) * (BLOCK // 256))
    t0 = time.perf_counter()
    sender = socket.create_connection(("127.0.0.1", dest))
    sent = 0
    if throttle:
        sender.settimeout(0.2)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                sent += sender.send(block)
            except TimeoutError:
                pass
        print(f"sent {sent} received {received[0]}", flush=True)
        # Tell the parent we are done, then wait to be killed (it samples the relay first).
        sys.stdin.readline()
        sender.close()
        return
    while sent < size:
        n = min(BLOCK, size - sent)
        sender.sendall(block[:n])
        sent += n
    sender.shutdown(socket.SHUT_WR)
    finished.wait()
    elapsed = time.perf_counter() - t0
    sender.close()
    print(f"{received[0]} {elapsed:.6f}", flush=True)


# -- child processes: the connection-rate sink and client ---------------------------------


def echoSink() -> None:
    """Accept forever; echo each connection's first byte, close after its end of stream."""
    sel = selectors.DefaultSelector()
    server = socket.create_server(("127.0.0.1", 0), backlog=4096)
    server.setblocking(False)
    sel.register(server, selectors.EVENT_READ)
    print(server.getsockname()[1], flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if sock is server:
                while True:
                    try:
                        conn, _ = server.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, [False])
                continue
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data and not key.data[0]:
                key.data[0] = True
                sock.send(data[:1])
            if not data:
                sel.unregister(sock)
                sock.close()


def countSink() -> None:
    """
    Accept forever, read each connection to its end, echo nothing. On ``expect N`` (stdin),
    answer ``SECONDS`` once N more connections have ended having delivered their byte.
    """
    sel = selectors.DefaultSelector()
    server = socket.create_server(("127.0.0.1", 0), backlog=4096)
    server.setblocking(False)
    sel.register(server, selectors.EVENT_READ, "server")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    print(server.getsockname()[1], flush=True)
    expected, done, t0 = 0, 0, 0.0
    while True:
        for key, _ in sel.select():
            if key.data == "stdin":
                line = sys.stdin.readline()
                if not line:
                    return
                expected, done, t0 = int(line.split()[1]), 0, time.perf_counter()
                continue
            if key.data == "server":
                while True:
                    try:
                        conn, _ = server.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, [0])
                continue
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            key.data[0] += len(data)
            if data:
                continue
            sel.unregister(sock)
            sock.close()
            if key.data[0]:
                done += 1
                if done == expected:
                    print(f"{time.perf_counter() - t0:.6f}", flush=True)


def _exchange(port: int) -> None:
    """One connection's life, blocking: connect, 1 byte there and back, close both ways."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(b"x")
        if s.recv(1) != b"x":
            raise RuntimeError("no echo")
        s.shutdown(socket.SHUT_WR)
        if s.recv(1):
            raise RuntimeError("data after the echo")
    finally:
        s.close()


def _concurrent(port: int, n: int, hold: bool) -> tuple[float, int, list[socket.socket]]:
    """
    ``n`` connections at once, the exchange of :func:`_exchange` on each; returns the seconds,
    the failures and (``hold``) the sockets left open after their echo.
    """
    sel = selectors.DefaultSelector()
    t0 = time.perf_counter()
    pending = n
    failed = 0
    held: list[socket.socket] = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_WRITE, "connecting")
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            state = key.data
            try:
                if state == "connecting":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    s.send(b"x")
                    sel.modify(s, selectors.EVENT_READ, "echo")
                    continue
                data = s.recv(16)
                if state == "echo":
                    if data != b"x":
                        raise RuntimeError("no echo")
                    if hold:
                        sel.unregister(s)
                        held.append(s)
                        pending -= 1
                        continue
                    s.shutdown(socket.SHUT_WR)
                    sel.modify(s, selectors.EVENT_READ, "closing")
                    continue
                if data:
                    raise RuntimeError("data after the echo")
            except BlockingIOError:
                continue
            except (OSError, RuntimeError):
                failed += 1
            sel.unregister(s)
            s.close()
            pending -= 1
    elapsed = time.perf_counter() - t0
    failed += pending  # timed out
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    return elapsed, failed, held


def connector() -> None:
    """
    Read commands from stdin, answer one line each: ``seq PORT N`` -> ``SECONDS FAILED``;
    ``conc PORT N`` -> ``SECONDS FAILED``; ``hold PORT N`` -> ``SECONDS FAILED`` (connections
    kept open until the next ``release``).
    """
    held: list[socket.socket] = []
    for line in sys.stdin:
        words = line.split()
        if words[0] == "release":
            for s in held:
                s.close()
            held = []
            print("ok", flush=True)
            continue
        port, n = int(words[1]), int(words[2])
        if words[0] == "fire":
            # The shape of a connection storm: connect, send 1 byte, close, at once again.
            failed = 0
            t0 = time.perf_counter()
            for _ in range(n):
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=30)
                    s.sendall(b"x")
                    s.close()
                except OSError:
                    failed += 1
            elapsed = time.perf_counter() - t0
        elif words[0] == "seq":
            failed = 0
            t0 = time.perf_counter()
            for _ in range(n):
                try:
                    _exchange(port)
                except (OSError, RuntimeError):
                    failed += 1
            elapsed = time.perf_counter() - t0
        else:
            elapsed, failed, held = _concurrent(port, n, hold=words[0] == "hold")
        print(f"{elapsed:.6f} {failed}", flush=True)


# -- parent ------------------------------------------------------------------------------


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, HERE, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _readLine(p: subprocess.Popen[str], what: str) -> str:
    assert p.stdout is not None
    line = p.stdout.readline()
    if not line:
        raise RuntimeError(f"{what} exited before answering (rc={p.wait()})")
    return line.strip()


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    want = f":{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(want) and fields[3] == "0A":
                return True
    return False


def _waitListening(p: subprocess.Popen[str], port: int, what: str) -> None:
    deadline = time.monotonic() + 10
    while not _listening(port):
        if time.monotonic() > deadline or p.poll() is not None:
            raise RuntimeError(f"{what} did not start listening")
        time.sleep(0.01)


def startRelay(kind: str, target: int) -> tuple[subprocess.Popen[str], int]:
    if kind == "haproxy":
        port = _freePort()
        folder = tempfile.mkdtemp(prefix="bench-haproxy-")
        config = os.path.join(folder, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(HAPROXY_CONFIG.format(port=port, target=target))
        # -db: stay in the foreground, no daemon; -q: quiet.
        p = subprocess.Popen(
            [HAPROXY, "-db", "-q", "-f", config],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            _waitListening(p, port, "haproxy")
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # read at start
        return p, port
    if kind == "socat":
        port = _freePort()
        p = subprocess.Popen(
            [
                "socat",
                f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr",
                f"TCP:127.0.0.1:{target}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        _waitListening(p, port, "socat")
        return p, port
    p = _child("--serve-relay", kind, "--target", str(target))
    return p, int(_readLine(p, kind))


def cpuSeconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peakRSS(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0  # a zombie: gone already


def stop(p: subprocess.Popen[str]) -> tuple[float, int]:
    """Stop ``p``; return its lifetime CPU seconds and peak RSS (from ``wait4``)."""
    if p.returncode is not None:
        return 0.0, 0
    # os.kill / os.wait4 rather than Popen's methods, which reap the child and lose its rusage.
    pid, status, usage = os.wait4(p.pid, os.WNOHANG)
    if not pid:
        os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(p.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.01)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.stdout is not None:
        p.stdout.close()
    if p.stdin is not None:
        p.stdin.close()
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def runOnce(kind: str, size: int) -> tuple[float, int, float]:
    """Seconds to move ``size`` bytes through ``kind``, the relay's peak RSS and CPU time."""
    t = _child("--traffic", "--size", str(size))
    relay: subprocess.Popen[str] | None = None
    try:
        target = int(_readLine(t, "traffic"))
        if kind == "direct":
            port = target
        else:
            relay, port = startRelay(kind, target)
        cpu0 = cpuSeconds(relay.pid) if relay is not None else 0.0
        assert t.stdin is not None
        t.stdin.write(f"{port}\n")
        t.stdin.flush()
        got, elapsed = _readLine(t, "traffic").split()
        if int(got) != size:
            raise RuntimeError(f"{kind}: received {got} of {size} bytes")
        if relay is None:
            return float(elapsed), 0, 0.0
        # socat exits by itself at the end of its one connection: then its rusage tells.
        try:
            rss, cpu = peakRSS(relay.pid), cpuSeconds(relay.pid)
        except OSError:
            rss, cpu = 0, 0.0
        lifetimeCPU, _ = stop(relay)
        if not cpu:
            # (Its ru_maxrss is not comparable: it counts the fork before the exec.)
            cpu = lifetimeCPU
        return float(elapsed), rss, cpu - cpu0
    finally:
        stop(t)
        if relay is not None:
            stop(relay)


def runThrottled(kind: str, seconds: float) -> tuple[int, int, int]:
    """Peak RSS of relay ``kind`` with a 1 MB/s reader, and bytes sent / received."""
    t = _child("--traffic", "--throttle", "1000000", "--seconds", str(seconds))
    relay, port = startRelay(kind, int(_readLine(t, "traffic")))
    try:
        assert t.stdin is not None
        t.stdin.write(f"{port}\n")
        t.stdin.flush()
        words = _readLine(t, "traffic").split()
        rss = peakRSS(relay.pid)
        return rss, int(words[1]), int(words[3])
    finally:
        stop(t)
        stop(relay)


def fdCount(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Connects:
    """The connection-rate runs: one sink and one client process for all contenders."""

    def __init__(self) -> None:
        self.sink = _child("--echo-sink")
        self.target = int(_readLine(self.sink, "echo sink"))
        self.counter = _child("--count-sink")
        self.countTarget = int(_readLine(self.counter, "count sink"))
        self.client = _child("--connector")

    def fire(self, kind: str, n: int) -> tuple[float, float]:
        """
        Connects/s of ``n`` connect-send-close, until the target has had every byte, and the
        relay's CPU time per connection (user + system, µs; NaN for ``direct``).
        """
        relay: subprocess.Popen[str] | None = None
        if kind == "direct":
            port = self.countTarget
        else:
            relay, port = startRelay(kind, self.countTarget)
        try:
            cpu0 = cpuSeconds(relay.pid) if relay is not None else 0.0
            assert self.counter.stdin is not None
            self.counter.stdin.write(f"expect {n}\n")
            self.counter.stdin.flush()
            _, failed = self.ask(f"fire {port} {n}")
            if int(failed):
                raise RuntimeError(f"{kind}: {failed} of {n} connections failed")
            rate = n / float(_readLine(self.counter, "count sink"))
            cpu = (cpuSeconds(relay.pid) - cpu0) / n * 1e6 if relay is not None else float("nan")
            return rate, cpu
        finally:
            if relay is not None:
                stop(relay)

    def ask(self, command: str) -> list[str]:
        assert self.client.stdin is not None
        self.client.stdin.write(command + "\n")
        self.client.stdin.flush()
        return _readLine(self.client, "connector").split()

    def run(self, kind: str, n: int, concurrency: int, fds: bool) -> tuple[float, float, float]:
        """(sequential connects/s, concurrent connects/s, descriptors per connection)."""
        relay: subprocess.Popen[str] | None = None
        if kind == "direct":
            port = self.target
        else:
            relay, port = startRelay(kind, self.target)
        try:
            seconds, failed = self.ask(f"seq {port} {n}")
            if int(failed):
                raise RuntimeError(f"{kind}: {failed} of {n} sequential connections failed")
            seq = n / float(seconds)
            seconds, failed = self.ask(f"conc {port} {concurrency}")
            if int(failed):
                raise RuntimeError(f"{kind}: {failed} of {concurrency} connections failed")
            conc = concurrency / float(seconds)
            perConnection = float("nan")
            if fds and relay is not None:
                before = fdCount(relay.pid)
                _, failed = self.ask(f"hold {port} {concurrency}")
                if int(failed):
                    raise RuntimeError(f"{kind}: {failed} held connections failed")
                perConnection = (fdCount(relay.pid) - before) / concurrency
                self.ask("release")
            return seq, conc, perConnection
        finally:
            if relay is not None:
                stop(relay)

    def close(self) -> None:
        stop(self.client)
        stop(self.sink)
        stop(self.counter)


def runConnects(kinds: list[str], n: int, concurrency: int, repeat: int) -> None:
    kinds = [k for k in kinds if k != "socat"]  # socat serves one connection and exits
    print(
        f"\nConnection rate x {repeat} runs: {n} connect-send-close (storm), {n} one at a time "
        f"(1 byte there and back, close; round trip), {concurrency} at once (concurrent)",
        flush=True,
    )
    rates: dict[str, dict[str, list[float]]] = {
        k: {"storm": [], "round trip": [], "concurrent": []} for k in kinds
    }
    cpus: dict[str, list[float]] = {k: [] for k in kinds}
    fds: dict[str, float] = {}
    c = Connects()
    try:
        for i in range(repeat):
            for kind in kinds:
                storm, cpu = c.fire(kind, n)
                a, b, f = c.run(kind, n, concurrency, fds=i == 0)
                for name, value in (("storm", storm), ("round trip", a), ("concurrent", b)):
                    rates[kind][name].append(value)
                cpus[kind].append(cpu)
                if i == 0:
                    fds[kind] = f
                print(
                    f"  run {i + 1} {kind:18} {storm:8.0f} /s storm ({cpu:4.0f} µs CPU each) "
                    f"{a:8.0f} /s round trip {b:8.0f} /s concurrent",
                    flush=True,
                )
    finally:
        c.close()
    base = "haproxy" if "haproxy" in kinds else "portforward" if "portforward" in kinds else None
    print()
    print(
        "| contender         | storm /s | relay CPU µs/conn (storm) | round trip /s "
        f"| concurrent /s | vs {base or '-'} (storm, round trip, concurrent) "
        "| fds per connection |"
    )
    print(
        "|-------------------|---------:|--------------------------:|--------------:"
        "|--------------:|----------------------------------------:|-------------------:|"
    )
    for kind in kinds:
        medians = {name: statistics.median(v) for name, v in rates[kind].items()}
        if base:
            ratios = ", ".join(
                f"{medians[name] / statistics.median(rates[base][name]):.2f}x"
                for name in ("storm", "round trip", "concurrent")
            )
        else:
            ratios = "-"
        f = fds[kind]
        perConnection = "-" if f != f else f"{f:.1f}"
        cpu = statistics.median(cpus[kind])
        cpuText = "-" if cpu != cpu else f"{cpu:.0f}"
        print(
            f"| {kind:17} | {medians['storm']:8.0f} | {cpuText:>25} "
            f"| {medians['round trip']:13.0f} "
            f"| {medians['concurrent']:13.0f} | {ratios:>39} | {perConnection:>18} |"
        )


def runThroughput(kinds: list[str], size: int, repeat: int, rssSeconds: float) -> None:
    times: dict[str, list[float]] = {k: [] for k in kinds}
    cpus: dict[str, list[float]] = {k: [] for k in kinds}
    rss: dict[str, int] = {k: 0 for k in kinds}
    for i in range(repeat):
        for kind in kinds:
            elapsed, peak, cpu = runOnce(kind, size)
            times[kind].append(elapsed)
            cpus[kind].append(cpu)
            rss[kind] = max(rss[kind], peak)
            print(
                f"  run {i + 1} {kind:18} {size / elapsed / 1e6:9.1f} MB/s  relay CPU {cpu:.2f} s",
                flush=True,
            )

    base = statistics.median(times["portforward"]) if "portforward" in times else None
    gib = size / 2**30
    print()
    print(
        "| contender         | MB/s (median) | runs (MB/s)      | vs portforward "
        "| relay CPU s/GiB | relay peak RSS |"
    )
    print(
        "|-------------------|--------------:|------------------|---------------:"
        "|----------------:|---------------:|"
    )
    for kind in kinds:
        med = statistics.median(times[kind])
        runs = ", ".join(f"{size / t / 1e6:.0f}" for t in times[kind])
        ratio = f"{base / med:.2f}x" if base else "-"
        cpu = f"{statistics.median(cpus[kind]) / gib:.2f}" if kind != "direct" else "-"
        mem = f"{rss[kind] / 2**20:.1f} MiB" if rss[kind] else "-"
        print(
            f"| {kind:17} | {size / med / 1e6:13.1f} | {runs:16} | {ratio:>14} "
            f"| {cpu:>15} | {mem:>14} |"
        )

    throttled = [k for k in ("pcpkit-portable", "pcpkit-splice", "pcpkit-transports") if k in kinds]
    if throttled:
        print()
        print(f"Reader throttled to 1 MB/s for {rssSeconds:g} s, sender unthrottled:")
        print()
        print("| relay             | peak RSS (VmHWM) | sent     | received |")
        print("|-------------------|-----------------:|---------:|---------:|")
        for kind in throttled:
            peak, sent, received = runThrottled(kind, rssSeconds)
            print(
                f"| {kind:17} | {peak / 2**20:12.1f} MiB | {sent / 1e6:5.1f} MB | "
                f"{received / 1e6:5.1f} MB |"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="128 MiB, 3 s throttled")
    parser.add_argument("--size", type=int, default=None, help="bytes per run (1 GiB)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rss-seconds", type=float, default=None)
    parser.add_argument("--only", action="append", help="run only these contenders")
    parser.add_argument(
        "--connects",
        type=int,
        default=1000,
        help="sequential connections per run (0: no connection-rate runs)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=500, help="connections at once in the concurrent runs"
    )
    # child modes
    parser.add_argument("--serve-relay", help=argparse.SUPPRESS)
    parser.add_argument("--target", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--traffic", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--throttle", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--echo-sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--connector", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count-sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.echo_sink:
        echoSink()
        return 0
    if args.connector:
        connector()
        return 0
    if args.count_sink:
        countSink()
        return 0

    if args.serve_relay:
        serveRelay(args.serve_relay, args.target)
        return 0
    if args.traffic:
        traffic(args.size or 0, args.throttle, args.seconds)
        return 0

    size = (128 << 20) if args.quick else (1 << 30) if args.size is None else args.size
    rssSeconds = args.rss_seconds or (3.0 if args.quick else 10.0)
    kinds = ["direct", *RELAYS]
    if shutil.which("socat") is None:
        kinds.remove("socat")
    if not os.access(HAPROXY, os.X_OK):
        kinds.remove("haproxy")
    if args.only:
        kinds = [k for k in kinds if k in args.only]

    import twisted

    print(
        f"# P3 relay benchmark {datetime.date.today()}: {size} bytes x {args.repeat} runs; "
        f"Python {platform.python_version()}, Twisted {twisted.__version__}, "
        f"{os.cpu_count()} CPUs, kernel {platform.release()}",
        flush=True,
    )
    if size:
        runThroughput(kinds, size, args.repeat, rssSeconds)
    if args.connects:
        runConnects(kinds, args.connects, args.concurrency, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
