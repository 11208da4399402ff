"""
P1: pcpkit.pcp proxies against twisted.protocols.pcp, side by side in one run.

    python benchmarks/bench_pcp.py [--quick] [--cap SECONDS]

(a) N writes of 100 bytes into a paused proxy, then one resume that drains it, for N in
    10^4, 10^5, 10^6. Both proxies have a streaming producer registered (flow control on,
    the case a proxy exists for) and a buffer limit too large to pause it. Twisted's proxy
    is fed ``str`` (it cannot join bytes on Python 3) and runs in a subprocess killed after
    ``--cap`` seconds per size; "> cap" means it did not finish. As a reference, Twisted's
    proxy with *no* producer registered (it then skips its per-write ``sum``) is also shown.
(c) The per-write cost alone (issue 15): 10^6 x 100 B writes into a paused proxy, then the
    drain, pcpkit's ``ProducerConsumerProxy`` with a streaming producer registered (flow
    control on) against Twisted's with no producer (its bare ``list.append`` path); each run
    in a fresh process, interleaved, median of 5.
(b) 1 GiB in 64 KiB chunks through a chain of 4 pcpkit proxies into a null consumer, against
    the same writes straight into the null consumer; once with data flowing through, and
    once with the consumer pausing the chain after every 1 MiB (so every hop buffers and
    flushes).

Prints markdown tables. Times are medians of several repeats where a run is cheap.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import twisted

WRITE = 100


class NullConsumer:
    """Counts bytes; like a transport it has ``writeSequence``."""

    def __init__(self) -> None:
        self.n = 0
        self.producer: Any = None

    def write(self, data: Any) -> None:
        self.n += len(data)

    def writeSequence(self, seq: list[Any]) -> None:
        self.n += sum(map(len, seq))  # at C speed: measure the proxy, not this

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None


class PausingNullConsumer(NullConsumer):
    """Pauses its producer after every ``every`` bytes, like a transport whose buffer fills."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every = every
        self.since = 0
        self.pausedIt = False

    def write(self, data: Any) -> None:
        self.n += len(data)
        self.since += len(data)
        self._check()

    def writeSequence(self, seq: list[Any]) -> None:
        for chunk in seq:
            self.n += len(chunk)
            self.since += len(chunk)
        self._check()

    def _check(self) -> None:
        if self.since >= self.every and not self.pausedIt and self.producer is not None:
            self.pausedIt = True
            self.producer.pauseProducing()

    def drain(self) -> None:
        self.since = 0
        if self.pausedIt:
            self.pausedIt = False
            self.producer.resumeProducing()


class Upstream:
    """A streaming producer that does nothing but record pause/resume."""

    paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        pass


# -- (a) writes into a paused proxy ------------------------------------------------------


def pcpkitPaused(n: int, withProducer: bool = True) -> float:
    from pcpkit.pcp import ProducerConsumerProxy

    consumer = NullConsumer()
    proxy = ProducerConsumerProxy(consumer, highWatermark=2**62)
    if withProducer:
        proxy.registerProducer(Upstream(), True)
    data = b"x" * WRITE
    write = proxy.write
    gc.collect()
    start = time.perf_counter()
    proxy.pauseProducing()
    for _ in range(n):
        write(data)
    proxy.resumeProducing()
    elapsed = time.perf_counter() - start
    assert consumer.n == n * WRITE and proxy.bufferedBytes == 0
    return elapsed


def twistedPaused(n: int, withProducer: bool) -> float:
    from twisted.protocols.pcp import ProducerConsumerProxy

    consumer = NullConsumer()
    proxy = ProducerConsumerProxy(consumer)
    proxy.bufferSize = 2**62
    if withProducer:
        proxy.registerProducer(Upstream(), True)
    data = "x" * WRITE  # str: its "".join cannot take bytes
    write = proxy.write
    gc.collect()
    start = time.perf_counter()
    proxy.pauseProducing()
    for _ in range(n):
        write(data)
    proxy.resumeProducing()
    elapsed = time.perf_counter() - start
    assert consumer.n == n * WRITE
    return elapsed


def twistedInSubprocess(n: int, withProducer: bool, cap: float) -> float | None:
    """Run Twisted's proxy in a child process; ``None`` if it exceeds ``cap`` seconds."""
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--twisted-worker", str(n), str(int(withProducer))],
            capture_output=True,
            text=True,
            timeout=cap,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return None
    return float(out.stdout.strip())


def median(run: Callable[[], float], repeats: int) -> float:
    return statistics.median(run() for _ in range(repeats))


def fmtTime(seconds: float | None, cap: float) -> str:
    if seconds is None:
        return f"> {cap:.0f} s"
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmtPerWrite(seconds: float | None, n: int) -> str:
    return "-" if seconds is None else f"{seconds / n * 1e9:.0f}"


def fmtRatio(theirs: float | None, ours: float, cap: float) -> str:
    if theirs is None:
        return f"> {cap / ours:,.0f}x"
    return f"{theirs / ours:,.1f}x"


def partA(sizes: list[int], cap: float) -> list[str]:
    rows = [
        "| writes | pcpkit | ns/write | twisted, producer registered | ns/write | "
        "pcpkit speed-up | twisted, no producer | ns/write | pcpkit speed-up |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    skip = False
    for n in sizes:
        repeats = 5 if n <= 10**5 else 3
        ours = median(lambda n=n: pcpkitPaused(n), repeats)
        theirs: float | None = None
        note = ""
        if skip:
            # Quadratic: if a smaller N hit the cap, this one cannot finish within it.
            note = " (not run)"
        else:
            runs = [twistedInSubprocess(n, True, cap)]
            if runs[0] is not None and runs[0] * 3 < cap:
                runs += [twistedInSubprocess(n, True, cap) for _ in range(2)]
            done = [t for t in runs if t is not None]
            theirs = statistics.median(done) if done else None
            skip = theirs is None
        plainRuns = [twistedInSubprocess(n, False, cap) for _ in range(3)]
        plainDone = [t for t in plainRuns if t is not None]
        plain = statistics.median(plainDone) if plainDone else None
        rows.append(
            f"| 10^{len(str(n)) - 1} | {fmtTime(ours, cap)} | {fmtPerWrite(ours, n)} | "
            f"{fmtTime(theirs, cap)}{note} | {fmtPerWrite(theirs, n)} | "
            f"{fmtRatio(theirs, ours, cap)} | {fmtTime(plain, cap)} | "
            f"{fmtPerWrite(plain, n)} | {fmtRatio(plain, ours, cap)} |"
        )
        print(rows[-1], file=sys.stderr, flush=True)  # progress
    return rows


# -- (c) the per-write cost, each contender in its own process ----------------------------


def writeWorker(name: str, n: int) -> float:
    return pcpkitPaused(n) if name == "pcpkit" else twistedPaused(n, False)


def partC(n: int, repeats: int) -> list[str]:
    times: dict[str, list[float]] = {"pcpkit": [], "twisted": []}
    for _ in range(repeats):
        for name in times:
            out = subprocess.run(
                [sys.executable, __file__, "--write-worker", name, str(n)],
                capture_output=True,
                text=True,
                check=True,
            )
            times[name].append(float(out.stdout.strip()))
    ours = statistics.median(times["pcpkit"])
    theirs = statistics.median(times["twisted"])
    return [
        "| proxy | ns/write (write + drain) | runs (ns/write) | vs Twisted bare |",
        "|---|---:|---|---:|",
        f"| pcpkit ProducerConsumerProxy, producer registered | {ours / n * 1e9:.0f} | "
        + ", ".join(f"{t / n * 1e9:.0f}" for t in times["pcpkit"])
        + f" | {theirs / ours:.2f}x |",
        f"| twisted ProducerConsumerProxy, no producer (list.append) | {theirs / n * 1e9:.0f} | "
        + ", ".join(f"{t / n * 1e9:.0f}" for t in times["twisted"])
        + " | 1.00x |",
    ]


# -- (b) throughput through a chain ------------------------------------------------------


def chainThroughput(total: int, chunkSize: int, hops: int, pauseEvery: int | None) -> float:
    from pcpkit.pcp import ProducerConsumerProxy

    consumer: NullConsumer = PausingNullConsumer(pauseEvery) if pauseEvery else NullConsumer()
    target: Any = consumer
    for _ in range(hops):
        target = ProducerConsumerProxy(target)
    head = target
    upstream = Upstream()
    if hops:
        head.registerProducer(upstream, True)
    chunk = b"c" * chunkSize
    count = total // chunkSize
    gc.collect()
    start = time.perf_counter()
    if isinstance(consumer, PausingNullConsumer):
        drain = consumer.drain
        if hops:
            written = 0
            while written < count:
                # Write while the head proxy lets us; else the "transport" drains.
                if upstream.paused:
                    drain()
                    continue
                head.write(chunk)
                written += 1
            while consumer.n < total:
                drain()
        else:
            write = consumer.write
            for _ in range(count):
                write(chunk)
                if consumer.since >= consumer.every:
                    consumer.since = 0
    else:
        write = head.write
        for _ in range(count):
            write(chunk)
    elapsed = time.perf_counter() - start
    assert consumer.n == count * chunkSize, (consumer.n, count * chunkSize)
    return elapsed


def partB(total: int, repeats: int) -> list[str]:
    chunk = 64 * 1024
    rows = [
        "| path | time | GB/s | vs direct |",
        "|---|---:|---:|---:|",
    ]
    for label, pauseEvery in (("flowing", None), ("consumer pauses every 1 MiB", 2**20)):
        direct = median(lambda p=pauseEvery: chainThroughput(total, chunk, 0, p), repeats)
        chain = median(lambda p=pauseEvery: chainThroughput(total, chunk, 4, p), repeats)
        for name, t in (
            (f"direct to null consumer ({label})", direct),
            (f"4 pcpkit proxies ({label})", chain),
        ):
            rows.append(
                f"| {name} | {t * 1e3:.1f} ms | {total / t / 1e9:.1f} | {direct / t:.3f}x |"
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="P1: pcpkit.pcp vs twisted.protocols.pcp")
    parser.add_argument("--quick", action="store_true", help="small sizes, short cap")
    parser.add_argument("--cap", type=float, help="seconds allowed per Twisted run")
    parser.add_argument(
        "--twisted-worker", nargs=2, metavar=("N", "PRODUCER"), help=argparse.SUPPRESS
    )
    parser.add_argument("--write-worker", nargs=2, metavar=("NAME", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--only-c", action="store_true", help="only part (c), the per-write cost")
    args = parser.parse_args(argv)
    if args.write_worker:
        print(writeWorker(args.write_worker[0], int(args.write_worker[1])))
        return 0
    if args.twisted_worker:
        n, withProducer = int(args.twisted_worker[0]), bool(int(args.twisted_worker[1]))
        print(twistedPaused(n, withProducer))
        return 0

    cap = args.cap or (10.0 if args.quick else 60.0)
    sizes = [10**3, 10**4, 10**5] if args.quick else [10**4, 10**5, 10**6]
    total = 2**27 if args.quick else 2**30
    command = "python benchmarks/bench_pcp.py" + (" --quick" if args.quick else "")
    print(f"# P1: proxy writes ({datetime.date.today().isoformat()})")
    print()
    print(
        f"`{command}` -- Python {platform.python_version()}, Twisted {twisted.__version__}, "
        f"{os.cpu_count()} CPUs ({platform.machine()}), cap {cap:.0f} s per Twisted run"
    )
    print()
    writes = 10**5 if args.quick else 10**6
    print(f"(c) {writes} x {WRITE} B buffered writes then the drain, each run in its own process")
    print()
    for row in partC(writes, 3 if args.quick else 5):
        print(row)
    print()
    if args.only_c:
        return 0
    print(f"(a) N x {WRITE} B writes into a paused proxy, then one resume (drain)")
    print()
    for row in partA(sizes, cap):
        print(row)
    print()
    print(f"(b) {total // 2**20} MiB in 64 KiB chunks, null consumer")
    print()
    for row in partB(total, 3 if args.quick else 5):
        print(row)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
