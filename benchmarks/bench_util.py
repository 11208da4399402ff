"""
P7: the building blocks (pcpkit.util) against their plain equivalents, in the same run.

Messages (``N`` integers, default 10^5; every sink checks it got ``0 .. N-1`` in order):

* ``fanout-pcpkit``     -- ``Pipeline(source, fanOut(4 sinks))``: every branch bounded (64).
* ``fanout-asyncio``    -- a source task putting each message into 4 ``asyncio.Queue(64)``,
  one consumer task per queue.
* ``backplane-pcpkit``  -- ``Backplane`` with 10 ``SubscribeTo`` sinks, one ``PublishTo``.
* ``backplane-asyncio`` -- one ``asyncio.Queue(64)`` per subscriber (10), one publisher.

The rate is messages/s *from the source* (each reaches every branch / subscriber).

Line framing (``--megabytes`` MiB of lines of 20..120 bytes, default 32, fed in 64 KiB
chunks; every line counted and the total checked):

* ``lines-decoder``       -- ``pcpkit.util.framing.LineDecoder.feed`` (the pure function).
* ``lines-component``     -- ``Pipeline(chunks source, LineDeframer(), counting sink)``.
* ``lines-linereceiver``  -- Twisted's ``LineReceiver.dataReceived`` on the same chunks.
* ``lines-lineonly``      -- Twisted's ``LineOnlyReceiver.dataReceived`` on the same chunks.

Each contender runs in its own fresh process, interleaved, ``--repeat`` times (median shown).

Usage::

    python benchmarks/bench_util.py            # 10^5 messages, 32 MiB of lines, 5 runs
    python benchmarks/bench_util.py --quick    # 10^4 messages, 4 MiB, 3 runs
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from typing import Any

CHUNK = 65536

CONTENDERS: dict[str, str] = {
    "fanout-pcpkit": "pcpkit fanOut to 4 sinks, branches bounded to 64",
    "fanout-asyncio": "asyncio: 4 Queue(maxsize=64), 4 consumer tasks",
    "backplane-pcpkit": "pcpkit Backplane, 10 SubscribeTo, 1 PublishTo",
    "backplane-asyncio": "asyncio: one Queue(maxsize=64) per subscriber (10)",
    "lines-decoder": "pcpkit LineDecoder.feed (function)",
    "lines-component": "pcpkit Pipeline(source, LineDeframer, sink)",
    "lines-linereceiver": "twisted.protocols.basic.LineReceiver",
    "lines-lineonly": "twisted.protocols.basic.LineOnlyReceiver",
}


def lineData(mib: int) -> tuple[list[bytes], int]:
    """Deterministic lines (20..120 bytes + CRLF) cut into 64 KiB chunks; and the count."""
    rnd = random.Random(7)
    parts: list[bytes] = []
    size = 0
    count = 0
    while size < mib * 1024 * 1024:
        line = b"x" * rnd.randint(20, 120) + b"\r\n"
        parts.append(line)
        size += len(line)
        count += 1
    data = b"".join(parts)
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)], count


# -- pcpkit ----------------------------------------------------------------------------------


def pcpkitParts() -> tuple[type, type]:
    from pcpkit import BoxFull, Component, producerFinished

    class Source(Component):
        def __init__(self, items: Any) -> None:
            super().__init__()
            self.items = items

        def main(self) -> Generator[int, None, None]:
            for item in self.items:
                while True:
                    try:
                        self.send(item, "outbox")
                        break
                    except BoxFull:
                        self.pause()
                        yield 1
            self.send(producerFinished(self), "signal")

    class CountingSink(Component):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0
            self.ok = True

        def main(self) -> Generator[int, None, None]:
            while True:
                while self.dataReady("inbox"):
                    msg = self.recv("inbox")
                    if msg != self.count:
                        self.ok = False
                    self.count += 1
                if self.dataReady("control"):
                    return
                self.pause()
                yield 1

    return Source, CountingSink


def runReactor(start: Callable[[], Any]) -> float:
    """Run the reactor until the Deferred ``start()`` returns fires; return the seconds."""
    from twisted.internet import reactor

    t: list[float] = []

    def go() -> None:
        t.append(time.perf_counter())
        d = start()

        def done(result: Any) -> None:
            t.append(time.perf_counter())
            reactor.stop()  # type: ignore[attr-defined]
            return result

        d.addBoth(done)

    reactor.callWhenRunning(go)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return t[1] - t[0]


def runFanoutPcpkit(n: int, branches: int = 4) -> dict[str, Any]:
    from twisted.internet.defer import DeferredList

    from pcpkit.chassis import Pipeline
    from pcpkit.util import fanOut

    Source, CountingSink = pcpkitParts()
    sinks = [CountingSink() for _ in range(branches)]

    def start() -> Any:
        p = Pipeline(Source(range(n)), fanOut(*sinks))
        p.activate()
        return DeferredList([p.finished])

    secs = runReactor(start)
    return {"count": n, "seconds": secs, "ok": all(s.ok and s.count == n for s in sinks)}


def runBackplanePcpkit(n: int, subscribers: int = 10) -> dict[str, Any]:
    from twisted.internet.defer import DeferredList

    from pcpkit import ProducerFinished
    from pcpkit.chassis import Pipeline
    from pcpkit.util import Backplane, PublishTo, SubscribeTo

    Source, CountingSink = pcpkitParts()
    sinks = [CountingSink() for _ in range(subscribers)]
    bp = Backplane("bench")

    def start() -> Any:
        bp.activate()
        subs = [Pipeline(SubscribeTo("bench"), s) for s in sinks]
        for s in subs:
            s.activate()
        pub = Pipeline(Source(range(n)), PublishTo("bench"))

        def startPublishing() -> Any:
            # subscribers join when their main first runs: publish after that
            pub.activate()
            return pub.finished

        def allDelivered(_: Any) -> Any:
            bp.inboxes["control"].final.deliver(ProducerFinished())
            return DeferredList([s.finished for s in subs])

        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        return deferLater(reactor, 0, startPublishing).addCallback(allDelivered)

    secs = runReactor(start)
    return {"count": n, "seconds": secs, "ok": all(s.ok and s.count == n for s in sinks)}


# -- asyncio ---------------------------------------------------------------------------------


def runQueuesAsyncio(n: int, branches: int) -> dict[str, Any]:
    import asyncio

    done = object()
    counts = [0] * branches
    oks = [True] * branches

    async def source(qs: list[asyncio.Queue[object]]) -> None:
        for i in range(n):
            for q in qs:
                await q.put(i)
        for q in qs:
            await q.put(done)

    async def sink(k: int, q: asyncio.Queue[object]) -> None:
        while True:
            msg = await q.get()
            if msg is done:
                return
            if msg != counts[k]:
                oks[k] = False
            counts[k] += 1

    async def main() -> float:
        qs: list[asyncio.Queue[object]] = [asyncio.Queue(maxsize=64) for _ in range(branches)]
        t0 = time.perf_counter()
        await asyncio.gather(source(qs), *[sink(k, q) for k, q in enumerate(qs)])
        return time.perf_counter() - t0

    secs = asyncio.run(main())
    return {"count": n, "seconds": secs, "ok": all(oks) and counts == [n] * branches}


# -- line framing ----------------------------------------------------------------------------


def runLinesDecoder(mib: int) -> dict[str, Any]:
    from pcpkit.util.framing import LineDecoder

    chunks, expected = lineData(mib)
    d = LineDecoder(b"\r\n", maxLength=16384)
    t0 = time.perf_counter()
    count = 0
    for c in chunks:
        count += len(d.feed(c))
    secs = time.perf_counter() - t0
    return {"count": mib, "seconds": secs, "ok": count == expected}


def runLinesComponent(mib: int) -> dict[str, Any]:
    from pcpkit import Component
    from pcpkit.chassis import Pipeline
    from pcpkit.util import LineDeframer

    chunks, expected = lineData(mib)
    Source, _ = pcpkitParts()

    class Count(Component):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def main(self) -> Generator[int, None, None]:
            while True:
                while self.dataReady("inbox"):
                    self.recv("inbox")
                    self.count += 1
                if self.dataReady("control"):
                    return
                self.pause()
                yield 1

    sink = Count()

    def start() -> Any:
        p = Pipeline(Source(chunks), LineDeframer(b"\r\n"), sink)
        p.activate()
        return p.finished

    secs = runReactor(start)
    return {"count": mib, "seconds": secs, "ok": sink.count == expected}


def runLineReceiver(mib: int, only: bool) -> dict[str, Any]:
    from twisted.protocols.basic import LineOnlyReceiver, LineReceiver

    chunks, expected = lineData(mib)
    counter = [0]
    base: Any = LineOnlyReceiver if only else LineReceiver

    class Count(base):  # type: ignore[misc,valid-type]
        def lineReceived(self, line: bytes) -> None:
            counter[0] += 1

    from twisted.internet.testing import StringTransport

    proto = Count()
    proto.makeConnection(StringTransport())
    t0 = time.perf_counter()
    for c in chunks:
        proto.dataReceived(c)
    secs = time.perf_counter() - t0
    return {"count": mib, "seconds": secs, "ok": counter[0] == expected}


def runner(name: str, n: int, mib: int) -> dict[str, Any]:
    table: dict[str, Callable[[], dict[str, Any]]] = {
        "fanout-pcpkit": lambda: runFanoutPcpkit(n),
        "fanout-asyncio": lambda: runQueuesAsyncio(n, 4),
        "backplane-pcpkit": lambda: runBackplanePcpkit(n),
        "backplane-asyncio": lambda: runQueuesAsyncio(n, 10),
        "lines-decoder": lambda: runLinesDecoder(mib),
        "lines-component": lambda: runLinesComponent(mib),
        "lines-linereceiver": lambda: runLineReceiver(mib, False),
        "lines-lineonly": lambda: runLineReceiver(mib, True),
    }
    return table[name]()


def runOne(name: str, n: int, mib: int) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--one",
            name,
            "--messages",
            str(n),
            "--megabytes",
            str(mib),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}):\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="P7: building blocks vs plain equivalents")
    parser.add_argument("--quick", action="store_true", help="10^4 messages, 4 MiB, 3 runs")
    parser.add_argument("--messages", type=int, default=None, help="messages (10^5)")
    parser.add_argument("--megabytes", type=int, default=None, help="MiB of lines (32)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per contender (5)")
    parser.add_argument("--only", action="append", choices=sorted(CONTENDERS), default=None)
    parser.add_argument("--one", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n = args.messages or (10_000 if args.quick else 100_000)
    mib = args.megabytes or (4 if args.quick else 32)
    if args.one:
        print(json.dumps(runner(args.one, n, mib)))
        return 0
    repeat = args.repeat or (3 if args.quick else 5)
    names = args.only or list(CONTENDERS)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for _ in range(repeat):  # interleaved: noise on a shared box hits all alike
        for name in names:
            r = runOne(name, n, mib)
            if not r["ok"]:
                print(f"{name}: WRONG OUTPUT (lost, duplicated or reordered)", file=sys.stderr)
                return 1
            runs[name].append(r)
    print(
        f"P7 building blocks: median of {repeat} runs, each in its own process; every run "
        "delivered everything in order"
    )
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {datetime.date.today().isoformat()}"
    )
    print()
    header = f"| {'contender':<18} | {'setup':<50} | {'seconds':>7} | {'rate':>16} |"
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    rate: dict[str, float] = {}
    for name in names:
        secs = statistics.median(r["seconds"] for r in runs[name])
        if name.startswith("lines"):
            rate[name] = mib / secs
            shown = f"{rate[name]:,.1f} MiB/s"
        else:
            rate[name] = n / secs
            shown = f"{rate[name]:,.0f} msg/s"
        print(f"| {name:<18} | {CONTENDERS[name]:<50} | {secs:>7.3f} | {shown:>16} |")
    print()
    for mine, other in (
        ("fanout-pcpkit", "fanout-asyncio"),
        ("backplane-pcpkit", "backplane-asyncio"),
        ("lines-decoder", "lines-linereceiver"),
        ("lines-decoder", "lines-lineonly"),
        ("lines-component", "lines-linereceiver"),
    ):
        if mine in rate and other in rate:
            print(f"{mine} / {other}: {rate[mine] / rate[other]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
