"""
P8: messages/s through RabbitMQ, pcpkit's AMQPSource/AMQPSink vs plain pika, in one run.

Three workloads, each run by pcpkit and by plain pika's ``TwistedProtocolConnection`` (the
way its documentation writes a consumer and a publisher on Twisted), each contender in its
own process so that its peak RSS (``VmHWM``) is its own:

* ``publish``  -- N messages published with publisher confirms, at most ``--window``
  unconfirmed (pika: a count of outstanding ``basic_publish`` Deferreds);
* ``consume``  -- N messages waiting in a queue consumed and acknowledged, prefetch
  ``--prefetch`` (pika: ``basic_qos`` + ``basic_consume`` + ``queue.get()``, one ack each);
* ``relay``    -- source -> sink: N messages consumed from one queue and published to
  another with confirms (pcpkit: ``AMQPSource(q1) -> AMQPSink(q2)``; pika: consume, publish,
  ack the consumed message when its publish is confirmed).

Plus the memory row: ``consume`` into a slow consumer (``--slow-ms`` per message, fewer
messages) for pcpkit and for pika with its default (no prefetch limit), where the broker
pushes the whole queue into the consumer process.

Messages are ``--size`` bytes, persistent, on durable queues. Runs are interleaved and the
median of ``--repeat`` is reported. The broker is a throw-away node started for the run
(tests/rabbitutil.py), or ``--url``.

Usage::

    python benchmarks/bench_amqp.py            # 20,000 x 1 KiB, 3 runs each
    python benchmarks/bench_amqp.py --quick    # 5,000 x 1 KiB, 3 runs each
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORKLOADS = ["publish", "consume", "relay"]
#: The consume workload again with this much more credit (the cost of a small prefetch).
BIG_PREFETCH_FACTOR = 4


def vmhwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


# -- child process: one contender ------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    r: Any = reactor
    outcome: dict[str, Any] = {}

    async def run() -> None:
        start = time.perf_counter()
        if args.impl == "pcpkit":
            await runPcpkit(args)
        else:
            await runPika(args)
        outcome["seconds"] = time.perf_counter() - start

    def done(result: Any) -> None:
        outcome["error"] = result if result is not None else None
        r.stop()

    r.callWhenRunning(lambda: ensureDeferred(run()).addBoth(done))
    r.run()
    if outcome.get("error") is not None:
        print(f"error {outcome['error']}", flush=True)
        sys.exit(1)
    print(f"{outcome['seconds']:.6f} {vmhwm()}", flush=True)


def payload(size: int) -> bytes:
    return b"m" * size


async def runPcpkit(args: argparse.Namespace) -> None:
    from twisted.internet.task import deferLater

    from pcpkit.amqp import AMQPSink, AMQPSource
    from pcpkit.component import Component
    from pcpkit.ipc import ProducerFinished, ShutdownMicroprocess
    from pcpkit.testing import MessageCollector

    n = args.count
    from twisted.internet import reactor

    class Feeder(Component):
        async def main(self) -> None:
            data = payload(args.size)
            for _ in range(n):
                await self.put(data)
            await self.put(ProducerFinished(self), "signal")

    class Counter(Component):
        """Takes N messages (sleeping ``slow`` per message), then stops the source."""

        def __init__(self, source: AMQPSource, slow: float, **argd: Any) -> None:
            super().__init__(**argd)
            self.source = source
            self.slow = slow

        async def main(self) -> None:
            for _ in range(n):
                await self.get("inbox")
                if self.slow:
                    await deferLater(reactor, self.slow, lambda: None)
            self.source.inboxes["control"].deliver(ShutdownMicroprocess(self))

    signals = MessageCollector()
    if args.workload == "publish":
        feeder = Feeder()
        sink = AMQPSink("", "bench.out", url=args.url, window=args.window)
        feeder.link((feeder, "outbox"), (sink, "inbox"))
        feeder.link((feeder, "signal"), (sink, "control"))
        sink.link((sink, "signal"), (signals, "control"))
        for c in (signals, sink, feeder):
            c.activate()
    elif args.workload == "consume":
        source = AMQPSource("bench.in", url=args.url)
        counter = Counter(source, args.slow)
        counter.setInboxSize("inbox", args.prefetch)
        source.link((source, "outbox"), (counter, "inbox"))
        source.link((source, "signal"), (signals, "control"))
        for c in (signals, counter, source):
            c.activate()
    else:
        source = AMQPSource("bench.in", url=args.url)
        sink = AMQPSink("", "bench.out", url=args.url, window=args.window)
        sink.setInboxSize("inbox", args.prefetch)
        source.link((source, "outbox"), (sink, "inbox"))
        sink.link((sink, "signal"), (signals, "control"))
        for c in (signals, sink, source):
            c.activate()
        while sink.confirmed < n:
            await deferLater(reactor, 0.01, lambda: None)
        source.inboxes["control"].deliver(ShutdownMicroprocess())
        await source.finished
        sink.inboxes["control"].deliver(ProducerFinished())
    await signals.finished


async def runPika(args: argparse.Namespace) -> None:
    import pika
    from pika.adapters.twisted_connection import TwistedProtocolConnection
    from twisted.internet import protocol, reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.task import deferLater

    params = pika.URLParameters(args.url)
    conn = await protocol.ClientCreator(reactor, TwistedProtocolConnection, params).connectTCP(
        params.host, params.port
    )
    await conn.ready
    n = args.count
    props = pika.BasicProperties(delivery_mode=2)
    data = payload(args.size)
    window = args.window

    async def publisher() -> Any:
        ch = await conn.channel()
        await ch.confirm_delivery()
        return ch

    if args.workload == "publish":
        ch = await publisher()
        state = {"out": 0, "done": 0}
        space: list[Deferred[None]] = []

        def confirmed(_: Any) -> None:
            state["out"] -= 1
            state["done"] += 1
            if space and state["out"] <= window // 2:
                space.pop().callback(None)

        for _ in range(n):
            if state["out"] >= window:
                d: Deferred[None] = Deferred()
                space.append(d)
                await d
            state["out"] += 1
            ch.basic_publish("", "bench.out", data, props).addCallback(confirmed)
        while state["done"] < n:
            await deferLater(reactor, 0.001, lambda: None)
    elif args.workload == "consume":
        ch = await conn.channel()
        if args.prefetch:
            await ch.basic_qos(prefetch_count=args.prefetch)
        queue, tag = await ch.basic_consume("bench.in")
        for _ in range(n):
            channel, method, properties, body = await queue.get()
            if args.slow:
                await deferLater(reactor, args.slow, lambda: None)
            ch.basic_ack(method.delivery_tag)
        await ch.basic_cancel(tag)
    else:
        inCh = await conn.channel()
        await inCh.basic_qos(prefetch_count=args.prefetch)
        outCh = await publisher()
        queue, tag = await inCh.basic_consume("bench.in")
        done = {"n": 0}
        finished: Deferred[None] = Deferred()

        def acker(tag: int) -> Any:
            def ack(_: Any) -> None:
                inCh.basic_ack(tag)
                done["n"] += 1
                if done["n"] == n:
                    finished.callback(None)

            return ack

        for _ in range(n):
            channel, method, properties, body = await queue.get()
            outCh.basic_publish("", "bench.out", body, properties).addCallback(
                acker(method.delivery_tag)
            )
        await finished
        await inCh.basic_cancel(tag)
    conn.close()
    await conn.closed


# -- parent ------------------------------------------------------------------------------------


class Broker:
    def __init__(self, url: str | None) -> None:
        self.node: Any = None
        if url is None:
            from tests.rabbitutil import RabbitNode

            self.node = RabbitNode(Path(tempfile.mkdtemp(prefix="bench-amqp-")))
            self.node.start()
            url = self.node.url
        self.url = url

    def reset(self, preload: int, size: int) -> None:
        """Empty both queues, then put ``preload`` persistent messages into bench.in."""
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            ch = conn.channel()
            for q in ("bench.in", "bench.out"):
                ch.queue_declare(q, durable=True)
                ch.queue_purge(q)
            props = pika.BasicProperties(delivery_mode=2)
            data = payload(size)
            for _ in range(preload):
                ch.basic_publish("", "bench.in", data, props)
            while ch.queue_declare("bench.in", passive=True).method.message_count < preload:
                time.sleep(0.05)
        finally:
            conn.close()

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()


def runChild(
    broker: Broker,
    impl: str,
    workload: str,
    args: argparse.Namespace,
    count: int,
    slow: float,
    prefetch: int,
    size: int,
) -> tuple[float, int]:
    broker.reset(0 if workload == "publish" else count, size)
    argv = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--impl",
        impl,
        "--workload",
        workload,
        "--url",
        broker.url,
        "--count",
        str(count),
        "--size",
        str(size),
        "--window",
        str(args.window),
        "--prefetch",
        str(prefetch),
        "--slow",
        str(slow),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{impl} {workload} failed:\n{out.stdout}\n{out.stderr[-3000:]}")
    seconds, rss = out.stdout.split()[-2:]
    return float(seconds), int(rss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 messages per run")
    parser.add_argument("--count", type=int, default=None, help="messages per run (20,000)")
    parser.add_argument("--size", type=int, default=1024, help="bytes per message")
    parser.add_argument("--window", type=int, default=256, help="unconfirmed publishes")
    parser.add_argument("--prefetch", type=int, default=64, help="consumer prefetch")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slow-ms", type=float, default=1.0, help="slow consumer, ms/message")
    parser.add_argument("--url", help="an existing broker (default: start a throw-away node)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--slow", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.count is None:
            parser.error("--count is required with --child")
        child(args)
        return 0
    count = args.count or (5000 if args.quick else 20000)

    broker = Broker(args.url)
    try:
        print(
            f"# bench_amqp {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load "
            f"{os.getloadavg()[0]:.2f}; {count} x {args.size} B persistent, window "
            f"{args.window}, prefetch {args.prefetch}, median of {args.repeat}"
        )
        results: dict[tuple[str, str], list[tuple[float, int]]] = {}
        big = args.prefetch * BIG_PREFETCH_FACTOR
        rows = [(w, w, args.prefetch) for w in WORKLOADS]
        rows.insert(2, (f"consume, prefetch {big}", "consume", big))
        for _ in range(args.repeat):
            for label, workload, prefetch in rows:
                for impl in ("pcpkit", "pika"):
                    got = runChild(broker, impl, workload, args, count, 0.0, prefetch, args.size)
                    results.setdefault((label, impl), []).append(got)
        print()
        print(
            "| workload | pcpkit msg/s | plain pika msg/s | pcpkit / pika | pcpkit RSS | pika RSS |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for label, _, _ in rows:
            rates = {}
            rss = {}
            for impl in ("pcpkit", "pika"):
                runs = results[(label, impl)]
                rates[impl] = statistics.median(count / s for s, _ in runs)
                rss[impl] = max(r for _, r in runs)
            print(
                f"| {label} | {rates['pcpkit']:,.0f} | {rates['pika']:,.0f} | "
                f"{rates['pcpkit'] / rates['pika']:.2f}x | {rss['pcpkit'] / 2**20:.0f} MiB | "
                f"{rss['pika'] / 2**20:.0f} MiB |"
            )

        slowCount, slowSize = 400, 65536
        slow = args.slow_ms / 1000
        print()
        print(
            f"Memory: {slowCount} x {slowSize} B waiting, consumer taking {args.slow_ms:g} ms "
            "per message (peak RSS of the consumer process):"
        )
        print()
        print("| consumer | messages/s | peak RSS |")
        print("|---|---:|---:|")
        for label, impl, prefetch in (
            (f"pcpkit AMQPSource, inbox {args.prefetch}", "pcpkit", args.prefetch),
            (f"plain pika, prefetch {args.prefetch}", "pika", args.prefetch),
            ("plain pika, no prefetch (its default)", "pika", 0),
        ):
            s, r = runChild(broker, impl, "consume", args, slowCount, slow, prefetch, slowSize)
            print(f"| {label} | {slowCount / s:,.0f} | {r / 2**20:.0f} MiB |")
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
