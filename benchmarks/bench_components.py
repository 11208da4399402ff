"""
P2: message hops per second through a 10-stage pipeline of pass-through components.

Shape (the same for every contender)::

    source -> stage 1 -> ... -> stage 10 -> sink

``N`` integer messages (default 10^5) go from the source through ten pass-through stages to a
sink that checks it got ``0 .. N-1`` in order, then a shutdown message travels down the
chain and everything ends. A *hop* is one stage passing one message on, so a run makes
``N * 10`` hops; the clock runs from the source's first step to the sink's last message.

Contenders, each in its own fresh process (``python bench_components.py --one NAME``),
interleaved, repeated ``--repeat`` times; the table shows the median:

* ``asyncio``       -- 10 tasks joined by ``asyncio.Queue(maxsize=64)``, ``asyncio.run``.
* ``uvloop``        -- the same tasks and queues on uvloop's event loop (``uvloop.run``),
  when uvloop is installed (``pip install uvloop``; in the ``bench`` extra).
* ``trio``          -- 12 tasks in a nursery joined by ``trio.open_memory_channel(64)``.
* ``anyio``         -- the same with ``anyio.create_memory_object_stream(64)`` in a task
  group, on anyio's default (asyncio) backend.
* ``axon``          -- Kamaelia ``Pipeline`` of Axon generator components on Axon's own
  scheduler (``Axon.Scheduler.scheduler.run.runThreads()``), inboxes bounded to 64 with
  ``inboxes["inbox"].setSize(64)`` (Axon wakes a paused sender when its message is taken).
* ``axon-unbounded`` -- the same with Axon's default unbounded inboxes (its list-based
  inboxes pop from the front, O(n) per message while they are long, and with no bound the
  source fills the first inbox with all N messages).
* ``pcpkit-gen``    -- ``pcpkit.chassis.Pipeline`` of generator components, ``setInboxSize
  ("inbox", 64)``, on Twisted's default reactor.
* ``axon-inbox``, ``pcpkit-inbox`` -- ``axon`` and ``pcpkit-gen`` with the stages and the
  sink written in Kamaelia's other idiom, ``for msg in self.Inbox("inbox"): self.send(msg)``
  (Axon's ``Inbox`` is ``while dataReady: yield recv()``; pcpkit's takes in one frame).
* ``pcpkit-async``  -- the same with ``async def`` components (``messages()`` / ``put()``).
* ``pcpkit-park``   -- parking bounds (``setInboxSize("inbox", 1, park=True)``), plain
  Kamaelia-style components with no exception handling, and a slow sink (one message per
  step): every stage is held back by parking, never by ``BoxFull``; the row's note gives the
  parks per hop. The cost per hop of parked flow control.

The pass-through logic of ``axon``/``axon-unbounded`` and ``pcpkit-gen`` is the same code, and
that of ``axon-inbox`` and ``pcpkit-inbox`` too (recv, send, hold the
message and pause on ``noSpaceInBox`` / ``BoxFull``, pause when the inbox is empty).

Usage::

    python benchmarks/bench_components.py            # 10^5 messages, 5 runs each
    python benchmarks/bench_components.py --quick    # 10^4 messages, 3 runs each
    python benchmarks/bench_components.py --inbox-size 2   # every hop a switch

``--inbox-size`` changes the bound of every contender's inboxes and queues (not
``pcpkit-park``'s, which is 1 by design); a small bound measures the cost of switching
between components rather than of passing messages.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from typing import Any

STAGES = 10
INBOX_SIZE = 64

#: name -> description
CONTENDERS: dict[str, str] = {
    "asyncio": "asyncio.Queue(maxsize={bound}), 10 tasks",
    "uvloop": "asyncio.Queue(maxsize={bound}) on uvloop",
    "trio": "trio.open_memory_channel({bound}), 10 tasks",
    "anyio": "anyio memory object streams ({bound}), asyncio backend",
    "axon": "Kamaelia/Axon Pipeline, inboxes setSize({bound})",
    "axon-unbounded": "Kamaelia/Axon Pipeline, default unbounded inboxes",
    "axon-inbox": "the same, for msg in self.Inbox('inbox')",
    "pcpkit-gen": "pcpkit Pipeline, generator components",
    "pcpkit-inbox": "the same, for msg in self.Inbox('inbox')",
    "pcpkit-async": "pcpkit Pipeline, async def components",
    "pcpkit-park": "pcpkit Pipeline, parking bound 1, slow sink",
}


class Result:
    """What one run measured; printed as JSON by ``--one``."""

    def __init__(self, messages: int, seconds: float, ok: bool, note: str = "") -> None:
        self.messages = messages
        self.seconds = seconds
        self.ok = ok
        self.note = note

    def toJSON(self) -> str:
        return json.dumps(
            {"messages": self.messages, "seconds": self.seconds, "ok": self.ok, "note": self.note}
        )


class Timer:
    """Start at the source's first step, stop at the sink's last message."""

    def __init__(self) -> None:
        self.start = 0.0
        self.stop = 0.0

    def begin(self) -> None:
        if not self.start:
            self.start = time.perf_counter()

    def end(self) -> None:
        self.stop = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.stop - self.start


# -- asyncio -------------------------------------------------------------------------------------


def runAsyncio(n: int, useUvloop: bool = False) -> Result:
    import asyncio

    done = object()
    timer = Timer()
    got: list[int] = []

    async def source(out: asyncio.Queue[object]) -> None:
        timer.begin()
        for i in range(n):
            await out.put(i)
        await out.put(done)

    async def stage(inq: asyncio.Queue[object], out: asyncio.Queue[object]) -> None:
        while True:
            msg = await inq.get()
            await out.put(msg)
            if msg is done:
                return

    async def sink(inq: asyncio.Queue[object]) -> None:
        while True:
            msg = await inq.get()
            if msg is done:
                return
            got.append(msg)  # type: ignore[arg-type]
            if len(got) == n:
                timer.end()

    async def main() -> None:
        queues: list[asyncio.Queue[object]] = [
            asyncio.Queue(maxsize=INBOX_SIZE) for _ in range(STAGES + 1)
        ]
        tasks = [asyncio.create_task(source(queues[0]))]
        tasks += [asyncio.create_task(stage(queues[i], queues[i + 1])) for i in range(STAGES)]
        tasks.append(asyncio.create_task(sink(queues[-1])))
        await asyncio.gather(*tasks)

    if useUvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
    return Result(n, timer.seconds, got == list(range(n)))


def channelTasks(n: int, timer: Timer, got: list[int]) -> tuple[Any, Any, Any]:
    """Source, stage and sink tasks over trio/anyio-style channels (``send``, ``async for``)."""
    done = object()

    async def source(out: Any) -> None:
        timer.begin()
        async with out:
            for i in range(n):
                await out.send(i)
            await out.send(done)

    async def stage(inq: Any, out: Any) -> None:
        async with inq, out:
            async for msg in inq:
                await out.send(msg)
                if msg is done:
                    return

    async def sink(inq: Any) -> None:
        async with inq:
            async for msg in inq:
                if msg is done:
                    return
                got.append(msg)
                if len(got) == n:
                    timer.end()

    return source, stage, sink


def runChannels(
    n: int, openChannel: Callable[[], Any], openGroup: Callable[[], Any], run: Callable[..., Any]
) -> Result:
    """The pipeline on trio-style channels: ``openChannel()`` gives ``(send, receive)``,
    ``openGroup()`` a task group (``start_soon``), ``run(main)`` runs it."""
    timer = Timer()
    got: list[int] = []
    source, stage, sink = channelTasks(n, timer, got)

    async def main() -> None:
        channels = [openChannel() for _ in range(STAGES + 1)]
        async with openGroup() as group:
            group.start_soon(source, channels[0][0])
            for i in range(STAGES):
                group.start_soon(stage, channels[i][1], channels[i + 1][0])
            group.start_soon(sink, channels[-1][1])

    run(main)
    return Result(n, timer.seconds, got == list(range(n)))


def runTrio(n: int) -> Result:
    import trio

    return runChannels(
        n, lambda: trio.open_memory_channel[object](INBOX_SIZE), trio.open_nursery, trio.run
    )


def runAnyio(n: int) -> Result:
    import anyio

    return runChannels(
        n,
        lambda: anyio.create_memory_object_stream[object](INBOX_SIZE),
        anyio.create_task_group,
        anyio.run,
    )


def makeGeneratorComponents(
    base: Any, full: type[BaseException], finished: Callable[[Any], Any], timer: Timer
) -> tuple[type, type, type]:
    """Source, PassThrough and Sink written once, Axon style, over ``base``."""

    class Source(base):  # type: ignore[misc]
        def __init__(self, n: int) -> None:
            super().__init__()
            self.n = n

        def main(self) -> Generator[int, None, None]:
            timer.begin()
            for i in range(self.n):
                while True:
                    try:
                        self.send(i, "outbox")
                        break
                    except full:
                        self.pause()
                        yield 1
            self.send(finished(self), "signal")
            yield 1

    class PassThrough(base):  # type: ignore[misc]
        def main(self) -> Generator[int, None, None]:
            held: list[Any] = []
            while True:
                while held or self.dataReady("inbox"):
                    msg = held.pop() if held else self.recv("inbox")
                    try:
                        self.send(msg, "outbox")
                    except full:
                        held.append(msg)
                        break
                if not held and not self.dataReady("inbox") and self.dataReady("control"):
                    self.send(self.recv("control"), "signal")
                    return
                self.pause()
                yield 1

    class Sink(base):  # type: ignore[misc]
        def __init__(self, n: int) -> None:
            super().__init__()
            self.n = n
            self.got: list[int] = []

        def main(self) -> Generator[int, None, None]:
            got = self.got
            while True:
                while self.dataReady("inbox"):
                    got.append(self.recv("inbox"))
                    if len(got) == self.n:
                        timer.end()
                if self.dataReady("control"):
                    self.recv("control")
                    return
                self.pause()
                yield 1

    return Source, PassThrough, Sink


def makeInboxComponents(base: Any, full: type[BaseException]) -> tuple[type, type]:
    """PassThrough and Sink in Kamaelia's other idiom, ``for msg in self.Inbox("inbox")``."""

    class PassThrough(base):  # type: ignore[misc]
        def main(self) -> Generator[int, None, None]:
            held: list[Any] = []
            while True:
                if held:
                    try:
                        self.send(held[0], "outbox")
                        held.clear()
                    except full:
                        self.pause()
                        yield 1
                        continue
                for msg in self.Inbox("inbox"):
                    try:
                        self.send(msg, "outbox")
                    except full:
                        held.append(msg)
                        break
                if not held and not self.dataReady("inbox") and self.dataReady("control"):
                    self.send(self.recv("control"), "signal")
                    return
                self.pause()
                yield 1

    class Sink(base):  # type: ignore[misc]
        def __init__(self, n: int, timer: Timer) -> None:
            super().__init__()
            self.n = n
            self.timer = timer
            self.got: list[int] = []

        def main(self) -> Generator[int, None, None]:
            got = self.got
            while True:
                for msg in self.Inbox("inbox"):
                    got.append(msg)
                if len(got) == self.n:
                    self.timer.end()
                if not self.dataReady("inbox") and self.dataReady("control"):
                    self.recv("control")
                    return
                self.pause()
                yield 1

    return PassThrough, Sink


def runAxon(n: int, bounded: bool, inbox: bool = False) -> Result:
    from Axon.AxonExceptions import noSpaceInBox
    from Axon.Component import component
    from Axon.Ipc import producerFinished
    from Axon.Scheduler import scheduler
    from Kamaelia.Chassis.Pipeline import Pipeline

    timer = Timer()
    Source, PassThrough, Sink = makeGeneratorComponents(
        component, noSpaceInBox, producerFinished, timer
    )
    if inbox:
        PassThrough, InboxSink = makeInboxComponents(component, noSpaceInBox)
        Sink = functools.partial(InboxSink, timer=timer)
    stages = [PassThrough() for _ in range(STAGES)]
    sink = Sink(n)
    if bounded:
        for c in [*stages, sink]:
            c.inboxes["inbox"].setSize(INBOX_SIZE)
    Pipeline(Source(n), *stages, sink).activate()
    scheduler.run.runThreads()
    return Result(n, timer.seconds, sink.got == list(range(n)))


def runPcpkitGenerators(n: int, inbox: bool = False) -> Result:
    from pcpkit import BoxFull, Component, producerFinished
    from pcpkit.chassis import Pipeline

    timer = Timer()
    Source, PassThrough, Sink = makeGeneratorComponents(Component, BoxFull, producerFinished, timer)
    if inbox:
        PassThrough, InboxSink = makeInboxComponents(Component, BoxFull)
        Sink = functools.partial(InboxSink, timer=timer)
    stages = [PassThrough() for _ in range(STAGES)]
    sink = Sink(n)
    for c in [*stages, sink]:
        c.setInboxSize("inbox", INBOX_SIZE)
    Pipeline(Source(n), *stages, sink).run()
    return Result(n, timer.seconds, sink.got == list(range(n)))


# -- pcpkit async components -----------------------------------------------------------------


def runPcpkitAsync(n: int) -> Result:
    from pcpkit import Component, producerFinished
    from pcpkit.chassis import Pipeline

    timer = Timer()

    class Source(Component):
        async def main(self) -> None:
            timer.begin()
            for i in range(n):
                await self.put(i, "outbox")
            await self.put(producerFinished(self), "signal")

    class PassThrough(Component):
        async def main(self) -> None:
            async for msg in self.messages("inbox"):
                await self.put(msg, "outbox")

    class Sink(Component):
        def __init__(self) -> None:
            super().__init__()
            self.got: list[int] = []

        async def main(self) -> None:
            got = self.got
            async for msg in self.messages("inbox"):
                got.append(msg)
                if len(got) == n:
                    timer.end()

    stages = [PassThrough() for _ in range(STAGES)]
    sink = Sink()
    for c in [*stages, sink]:
        c.setInboxSize("inbox", INBOX_SIZE)
    Pipeline(Source(), *stages, sink).run()
    return Result(n, timer.seconds, sink.got == list(range(n)))


# -- pcpkit parking bounds, slow sink ---------------------------------------------------------


def runPcpkitParking(n: int) -> Result:
    from pcpkit import Component, producerFinished
    from pcpkit.chassis import Pipeline
    from pcpkit.component import Box

    timer = Timer()
    parks = [0]

    class Counting(Component):
        def _park(self, box: Box) -> None:
            parks[0] += 1
            super()._park(box)

    class Source(Counting):
        def main(self) -> Generator[int, None, None]:
            timer.begin()
            for i in range(n):
                self.send(i, "outbox")
                yield 1
            self.send(producerFinished(self), "signal")
            yield 1

    class PassThrough(Counting):
        def main(self) -> Generator[int, None, None]:
            while True:
                while self.dataReady("inbox"):
                    self.send(self.recv("inbox"), "outbox")
                if not self.dataReady("inbox") and self.dataReady("control"):
                    self.send(self.recv("control"), "signal")
                    return
                self.pause()
                yield 1

    class SlowSink(Component):
        def __init__(self) -> None:
            super().__init__()
            self.got: list[int] = []

        def main(self) -> Generator[int, None, None]:
            got = self.got
            while True:
                if self.dataReady("inbox"):
                    got.append(self.recv("inbox"))  # one message per step
                    if len(got) == n:
                        timer.end()
                elif self.dataReady("control"):
                    return
                else:
                    self.pause()
                yield 1

    stages = [PassThrough() for _ in range(STAGES)]
    sink = SlowSink()
    for c in [*stages, sink]:
        c.setInboxSize("inbox", 1, park=True)
    Pipeline(Source(), *stages, sink).run()
    note = f"{parks[0] / (n * STAGES):.2f} parks per hop"
    return Result(n, timer.seconds, sink.got == list(range(n)), note)


RUNNERS: dict[str, Callable[[int], Result]] = {
    "asyncio": runAsyncio,
    "uvloop": lambda n: runAsyncio(n, useUvloop=True),
    "trio": runTrio,
    "anyio": runAnyio,
    "axon": lambda n: runAxon(n, bounded=True),
    "axon-unbounded": lambda n: runAxon(n, bounded=False),
    "axon-inbox": lambda n: runAxon(n, bounded=True, inbox=True),
    "pcpkit-gen": runPcpkitGenerators,
    "pcpkit-inbox": lambda n: runPcpkitGenerators(n, inbox=True),
    "pcpkit-async": runPcpkitAsync,
    "pcpkit-park": runPcpkitParking,
}


# -- the driver ------------------------------------------------------------------------------


def axonAvailable() -> bool:
    try:
        import Axon.Component  # noqa: F401
        import Kamaelia.Chassis.Pipeline  # noqa: F401
    except Exception:
        return False
    return True


def importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


#: contender -> the module it needs, for the optional anchors
OPTIONAL = {"uvloop": "uvloop", "trio": "trio", "anyio": "anyio"}


def runOne(name: str, n: int, timeout: float) -> Result:
    """Run one contender in a fresh interpreter and read its JSON line."""
    proc = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--one",
            name,
            "--messages",
            str(n),
            "--inbox-size",
            str(INBOX_SIZE),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}):\n{proc.stderr}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return Result(data["messages"], data["seconds"], data["ok"], data["note"])


def main(argv: list[str] | None = None) -> int:
    global INBOX_SIZE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="10^4 messages, 3 runs each")
    parser.add_argument("--messages", type=int, default=None, help="messages (default 10^5)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per contender (5)")
    parser.add_argument("--only", action="append", choices=sorted(RUNNERS), default=None)
    parser.add_argument("--one", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument(
        "--inbox-size", type=int, default=INBOX_SIZE, help=f"inbox bound ({INBOX_SIZE})"
    )
    args = parser.parse_args(argv)
    if args.inbox_size < 2:
        parser.error("--inbox-size must be at least 2 (a low watermark below the bound)")
    INBOX_SIZE = args.inbox_size

    n = args.messages or (10_000 if args.quick else 100_000)
    if args.one:
        print(RUNNERS[args.one](n).toJSON())
        return 0

    repeat = args.repeat or (3 if args.quick else 5)
    names = args.only or list(CONTENDERS)
    if not axonAvailable():
        skipped = [x for x in names if x.startswith("axon")]
        names = [x for x in names if not x.startswith("axon")]
        if skipped:
            print("Axon not installed (pip install kamaelia-axon kamaelia): skipping axon\n")
    for name, module in OPTIONAL.items():
        if name in names and not importable(module):
            names.remove(name)
            print(f"{module} not installed (pip install {module}): skipping {name}\n")

    runs: dict[str, list[Result]] = {name: [] for name in names}
    for _ in range(repeat):  # interleaved, so that noise on a shared box hits all alike
        for name in names:
            r = runOne(name, n, timeout=600)
            if not r.ok:
                print(f"{name}: WRONG OUTPUT (messages lost or reordered)", file=sys.stderr)
                return 1
            runs[name].append(r)

    rate: dict[str, float] = {}
    rows = []
    for name in names:
        rs = runs[name]
        secs = statistics.median(r.seconds for r in rs)
        count = rs[0].messages
        hops = count * STAGES
        rate[name] = hops / secs
        rows.append((name, CONTENDERS[name], count, secs, rate[name], 1e6 / rate[name], rs[0].note))

    print(
        f"P2 message hops: {STAGES}-stage pipeline, inbox bound {INBOX_SIZE}, "
        f"median of {repeat} runs, each in its own process; all runs delivered every message "
        "in order"
    )
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {datetime.date.today().isoformat()}"
    )
    print()
    header = f"| {'contender':<15} | {'setup':<50} | {'messages':>8} | {'seconds':>7} |"
    header += f" {'hops/s':>11} | {'µs/hop':>7} | {'note':<20} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, template, count, secs, hps, us, note in rows:
        desc = template.format(bound=INBOX_SIZE)
        print(
            f"| {name:<15} | {desc:<50} | {count:>8} | {secs:>7.3f} | {hps:>11,.0f} | {us:>7.3f} |"
            f" {note:<20} |"
        )
    print()

    # DESIGN.md's P2 goals (2x asyncio, 20x Axon) and issue 15's (generators 3x asyncio,
    # async def 2x asyncio); the other runtimes are anchors without a goal.
    goals: dict[str, dict[str, float | None]] = {
        "pcpkit-gen": {"asyncio": 3.0, "axon": 20.0, "axon-unbounded": 20.0},
        "pcpkit-inbox": {"asyncio": 3.0, "axon-inbox": 20.0},
        "pcpkit-async": {"asyncio": 2.0},
    }
    for mine, theirs in goals.items():
        if mine not in rate:
            continue
        for other in ("asyncio", "uvloop", "trio", "anyio", "axon", "axon-unbounded", "axon-inbox"):
            if other not in rate:
                continue
            ratio = rate[mine] / rate[other]
            goal = theirs.get(other)
            if goal is None:
                print(f"{mine} vs {other}: {ratio:.2f}x")
            else:
                verdict = "meets" if ratio >= goal else "MISSES"
                print(f"{mine} vs {other}: {ratio:.2f}x  ({verdict} the >= {goal:g}x goal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
