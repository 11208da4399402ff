"""
P9: the P2 pipeline with the inspector on and a client watching, against the same pipeline
with the inspector off, side by side in one run.

The pipeline is P2's ``pcpkit-gen`` contender (``bench_components.py``): a source, ten
pass-through generator stages and a sink, inboxes bounded to 64, ``N`` messages (default
10^5); the clock runs from the source's first step to the sink's last message. Contenders,
each in its own fresh process, interleaved, ``--repeat`` runs each, medians shown:

* ``off``     -- :mod:`pcpkit.inspect` never imported (its hooks are ``None``).
* ``on``      -- ``pcpkit.inspect.serve("tcp:0:interface=127.0.0.1")``: the registry is on
  and the HTTP server listens, nobody connected.
* ``watched`` -- the same with a client in another process reading ``/events`` (what a
  browser tab on the page does): a full snapshot is taken and sent up to 10 times a second
  while the pipeline runs. The note gives, per run, the events the client received and the
  reactor time the server spent taking, encoding and sending them.

With ``--parked``, it measures something else: the time one snapshot takes (on the reactor,
blocking it) of a pipeline of ``N`` stages whose every sender is parked (a sink that takes
nothing), for N = 100, 200, 400, 800: ``N`` waits-on chains of up to ``N`` steps.

Usage::

    python benchmarks/bench_inspect.py            # 10^5 messages, 5 runs each
    python benchmarks/bench_inspect.py --quick    # 10^4 messages, 3 runs each
    python benchmarks/bench_inspect.py --parked   # snapshot of long parked pipelines
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_components import INBOX_SIZE, STAGES, Result, Timer, makeGeneratorComponents  # noqa: E402

CONTENDERS = {
    "off": "inspector off",
    "on": "inspector serving, no client",
    "watched": "inspector serving, a client reading /events",
}

# The watching client: reads the event stream until the server closes it, prints the count.
CLIENT = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
data = b""
count = 0
while True:
    chunk = s.recv(1 << 16)
    if not chunk:
        break
    data += chunk
    count += chunk.count(b"event: graph")
    data = data[-32:]
print(count)
"""


def runPipeline(mode: str, n: int) -> Result:
    from twisted.internet import reactor, task

    from pcpkit import BoxFull, Component, producerFinished
    from pcpkit.chassis import Pipeline

    r: Any = reactor
    timer = Timer()
    Source, PassThrough, Sink = makeGeneratorComponents(Component, BoxFull, producerFinished, timer)
    out: dict[str, Any] = {"note": ""}

    async def go() -> None:
        server = client = None
        if mode != "off":
            import pcpkit.inspect

            server = pcpkit.inspect.serve("tcp:0:interface=127.0.0.1")
            port = (await server.listening).getHost().port
            if mode == "watched":
                client = subprocess.Popen(
                    [sys.executable, "-c", CLIENT, str(port)], stdout=subprocess.PIPE, text=True
                )
                while not server.updates:  # connected, and got its first graph
                    await task.deferLater(r, 0.01, lambda: None)
        stages = [PassThrough() for _ in range(STAGES)]
        sink = Sink(n)
        for c in [*stages, sink]:
            c.setInboxSize("inbox", INBOX_SIZE)
        pipe = Pipeline(Source(n), *stages, sink)
        pipe.activate()
        await pipe.finished
        out["ok"] = sink.got == list(range(n))
        if server is not None:
            busy = server.busySeconds
            await server.stop()
        if client is not None:
            events = int(client.communicate(timeout=30)[0].strip() or 0)
            out["note"] = f"{events} ev, {busy * 1000:.0f} ms"

    def start() -> None:
        from twisted.internet.defer import ensureDeferred

        d = ensureDeferred(go())
        d.addErrback(lambda f: out.setdefault("error", f.getTraceback()))
        d.addBoth(lambda _: r.stop())

    r.callWhenRunning(start)
    r.run()
    if "error" in out:
        raise RuntimeError(out["error"])
    return Result(n, timer.seconds, bool(out.get("ok")), out["note"])


def parkedSnapshots(lengths: list[int], repeat: int) -> None:
    """Print the snapshot time of an ``N``-stage pipeline whose senders are all parked."""
    import gc
    import time

    from twisted.internet.task import Clock

    import pcpkit.inspect
    from pcpkit import Component
    from pcpkit.chassis import Pipeline
    from pcpkit.component import Scheduler

    class Source(Component):
        def main(self) -> Any:
            while True:
                self.send(1, "outbox")
                yield 1

    class Stage(Component):
        def main(self) -> Any:
            while True:
                while self.dataReady("inbox"):
                    self.send(self.recv("inbox"), "outbox")
                self.pause()
                yield 1

    class Sink(Component):
        def main(self) -> Any:
            while True:
                self.pause()
                yield 1

    pcpkit.inspect.enable()
    print(f"snapshot of a parked pipeline: median of {repeat} snapshots per length")
    print(f"Python {platform.python_version()}, {datetime.date.today().isoformat()}")
    print()
    print("| stages | parked | snapshot ms | JSON MB |")
    print("|-------:|-------:|------------:|--------:|")
    for length in lengths:
        clock = Clock()
        comps = [Source(), *(Stage() for _ in range(length)), Sink()]
        for stage in comps[1:]:
            stage.setInboxSize("inbox", 4, park=True)
        Pipeline(*comps).activate(Scheduler(clock))
        for _ in range(4 * length):
            clock.advance(0)
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            graph = pcpkit.inspect.snapshot()
            times.append(time.perf_counter() - began)
        size = len(json.dumps(graph, default=str)) / 1e6
        ms = statistics.median(times) * 1000
        parked: Any = graph["parked"]
        print(f"| {length:>6} | {len(parked):>6} | {ms:>11.1f} | {size:>7.1f} |")
        del comps, stage, graph, clock
        gc.collect()  # this pipeline gone from the registry before the next is measured


def runOne(name: str, n: int) -> Result:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--one", name, "--messages", str(n)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}):\n{proc.stderr}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return Result(data["messages"], data["seconds"], data["ok"], data["note"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="P9: P2's pipeline, inspector on vs off")
    parser.add_argument("--quick", action="store_true", help="10^4 messages, 3 runs each")
    parser.add_argument("--messages", type=int, default=None, help="messages (default 10^5)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per contender (5)")
    parser.add_argument("--one", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument(
        "--parked", action="store_true", help="snapshot time of long parked pipelines"
    )
    args = parser.parse_args(argv)
    if args.parked:
        parkedSnapshots([100, 200, 400, 800], args.repeat or 5)
        return 0
    n = args.messages or (10_000 if args.quick else 100_000)
    if args.one:
        print(runPipeline(args.one, n).toJSON())
        return 0
    repeat = args.repeat or (3 if args.quick else 5)
    runs: dict[str, list[Result]] = {name: [] for name in CONTENDERS}
    for _ in range(repeat):  # interleaved: noise on a shared machine hits all alike
        for name in CONTENDERS:
            res = runOne(name, n)
            if not res.ok:
                print(f"{name}: WRONG OUTPUT (messages lost or reordered)", file=sys.stderr)
                return 1
            runs[name].append(res)
    print(
        f"P9 inspector cost: P2's {STAGES}-stage pipeline (inbox bound {INBOX_SIZE}), "
        f"median of {repeat} runs, each in its own process"
    )
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {datetime.date.today().isoformat()}"
    )
    print()
    header = f"| {'contender':<8} | {'setup':<44} | {'messages':>8} | {'seconds':>7} |"
    header += f" {'hops/s':>11} | {'vs off':>6} | {'note':<24} |"
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    rate = {}
    for name, desc in CONTENDERS.items():
        secs = statistics.median(r.seconds for r in runs[name])
        rate[name] = n * STAGES / secs
        notes = ", ".join(r.note for r in runs[name] if r.note)
        print(
            f"| {name:<8} | {desc:<44} | {n:>8} | {secs:>7.3f} | {rate[name]:>11,.0f} |"
            f" {rate[name] / rate['off']:>6.2f} | {notes:<24} |"
        )
    print()
    ratio = rate["watched"] / rate["off"]
    verdict = "meets" if ratio >= 0.9 else "MISSES"
    print(f"watched vs off: {ratio:.2f}x ({verdict} the 'within 10% of off' goal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
