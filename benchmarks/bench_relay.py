"""
P3: loopback TCP relay throughput and memory, side by side in one run.

Contenders (each relay in its own process, so its RSS is its own):

* ``direct``            -- no relay: sender -> receiver
* ``pcpkit-portable``   -- ``pcpkit.internet.relay.Relay(splice=False)``
* ``pcpkit-splice``     -- ``Relay(splice=True)`` (Linux ``os.splice``)
* ``portforward``       -- ``twisted.protocols.portforward.ProxyFactory``
* ``socat``             -- ``socat TCP-LISTEN:port,bind=127.0.0.1,reuseaddr TCP:127.0.0.1:target``
  (when installed)

The sender and the receiver share one more process (two threads on blocking sockets, which
release the GIL in ``sendall`` / ``recv_into``). Each run moves ``--size`` bytes (1 GiB by
default) and is timed from the sender's connect to the receiver's end of stream; the receiver
checks the byte count. Runs are interleaved and the median of ``--repeat`` is reported.

Then the memory check: each pcpkit relay with a receiver throttled to 1 MB/s and a sender
that never stops, for ``--rss-seconds``; the relay process's peak RSS (``VmHWM``) is reported.

Usage::

    python benchmarks/bench_relay.py            # 1 GiB, 3 runs each
    python benchmarks/bench_relay.py --quick    # 128 MiB, 3 runs, 3 s of throttled reading
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

HERE = os.path.abspath(__file__)
RELAYS = ["pcpkit-portable", "pcpkit-splice", "portforward", "socat"]
BLOCK = 1 << 20


# -- child process: one relay ------------------------------------------------------------


def serveRelay(kind: str, target: int) -> None:
    """Run one relay on 127.0.0.1:0 to ``target``; print the port; stop on SIGTERM."""
    from twisted.internet import reactor

    r: Any = reactor
    if kind == "portforward":
        from twisted.protocols.portforward import ProxyFactory

        port = r.listenTCP(0, ProxyFactory("127.0.0.1", target), interface="127.0.0.1")
        print(port.getHost().port, flush=True)
    else:
        from pcpkit.internet.relay import Relay

        relay = Relay(
            "tcp:0:interface=127.0.0.1",
            f"tcp:127.0.0.1:{target}",
            splice=(kind == "pcpkit-splice"),
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


def startRelay(kind: str, target: int) -> tuple[subprocess.Popen[str], int]:
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
        deadline = time.monotonic() + 10
        while not _listening(port):
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError("socat did not start listening")
            time.sleep(0.01)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="128 MiB, 3 s throttled")
    parser.add_argument("--size", type=int, default=None, help="bytes per run (1 GiB)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rss-seconds", type=float, default=None)
    parser.add_argument("--only", action="append", help="run only these contenders")
    # child modes
    parser.add_argument("--serve-relay", help=argparse.SUPPRESS)
    parser.add_argument("--target", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--traffic", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--throttle", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve_relay:
        serveRelay(args.serve_relay, args.target)
        return 0
    if args.traffic:
        traffic(args.size or 0, args.throttle, args.seconds)
        return 0

    size = args.size or ((128 << 20) if args.quick else (1 << 30))
    rssSeconds = args.rss_seconds or (3.0 if args.quick else 10.0)
    kinds = ["direct", *RELAYS]
    if shutil.which("socat") is None:
        kinds.remove("socat")
    if args.only:
        kinds = [k for k in kinds if k in args.only]

    import twisted

    print(
        f"# P3 relay benchmark {datetime.date.today()}: {size} bytes x {args.repeat} runs; "
        f"Python {platform.python_version()}, Twisted {twisted.__version__}, "
        f"{os.cpu_count()} CPUs, kernel {platform.release()}",
        flush=True,
    )
    times: dict[str, list[float]] = {k: [] for k in kinds}
    cpus: dict[str, list[float]] = {k: [] for k in kinds}
    rss: dict[str, int] = {k: 0 for k in kinds}
    for i in range(args.repeat):
        for kind in kinds:
            elapsed, peak, cpu = runOnce(kind, size)
            times[kind].append(elapsed)
            cpus[kind].append(cpu)
            rss[kind] = max(rss[kind], peak)
            print(
                f"  run {i + 1} {kind:16} {size / elapsed / 1e6:9.1f} MB/s"
                f"  relay CPU {cpu:.2f} s",
                flush=True,
            )

    base = statistics.median(times["portforward"]) if "portforward" in times else None
    gib = size / 2**30
    print()
    print(
        "| contender       | MB/s (median) | runs (MB/s)      | vs portforward "
        "| relay CPU s/GiB | relay peak RSS |"
    )
    print(
        "|-----------------|--------------:|------------------|---------------:"
        "|----------------:|---------------:|"
    )
    for kind in kinds:
        med = statistics.median(times[kind])
        runs = ", ".join(f"{size / t / 1e6:.0f}" for t in times[kind])
        ratio = f"{base / med:.2f}x" if base else "-"
        cpu = f"{statistics.median(cpus[kind]) / gib:.2f}" if kind != "direct" else "-"
        mem = f"{rss[kind] / 2**20:.1f} MiB" if rss[kind] else "-"
        print(
            f"| {kind:15} | {size / med / 1e6:13.1f} | {runs:16} | {ratio:>14} "
            f"| {cpu:>15} | {mem:>14} |"
        )

    throttled = [k for k in ("pcpkit-portable", "pcpkit-splice") if k in kinds]
    if throttled:
        print()
        print(f"Reader throttled to 1 MB/s for {rssSeconds:g} s, sender unthrottled:")
        print()
        print("| relay           | peak RSS (VmHWM) | sent     | received |")
        print("|-----------------|-----------------:|---------:|---------:|")
        for kind in throttled:
            peak, sent, received = runThrottled(kind, rssSeconds)
            print(
                f"| {kind:15} | {peak / 2**20:12.1f} MiB | {sent / 1e6:5.1f} MB | "
                f"{received / 1e6:5.1f} MB |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
