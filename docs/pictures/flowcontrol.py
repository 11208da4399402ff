"""
The flow-control contract, drawn from a real run: docs/_static/flowcontrol.svg.

    python docs/pictures/flowcontrol.py        # needs matplotlib: pip install -e '.[bench]'

A producer writes 16 KiB chunks, one per reactor turn while it is not paused, into a
:class:`~pcpkit.pcp.ProducerConsumerProxy` (high watermark 256 KiB, low 128 KiB) whose
consumer is a slow link: 8 KiB per millisecond, taken through the proxy's partial-write hook
(``_writeSomeData``), so the buffer drains gradually as it would into a rate-limited
connection. The script records the bytes the proxy holds after every write and every
millisecond, and every pause and resume the producer receives, checks that every byte
arrived in order, and plots the buffer against the watermarks: it rises to the high
watermark, the producer is paused, it drains to the low watermark, the producer is resumed --
no flapping in between, never more than high watermark + one chunk.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IConsumer, IPushProducer
from zope.interface import implementer

from pcpkit import ProducerConsumerProxy

OUT = Path(__file__).resolve().parent.parent / "_static" / "flowcontrol.svg"
HIGH, CHUNK, TOTAL, RATE = 256 * 1024, 16 * 1024, 8 * 1024 * 1024, 8 * 1024


class SlowLinkProxy(ProducerConsumerProxy):
    """The proxy before a link that takes ``RATE`` bytes per millisecond."""

    budget = 0

    def _writeSomeData(self, data: bytes) -> int:
        n = min(len(data), self.budget)
        self.budget -= n
        if n:
            self.consumer.write(data[:n])
        return n

    def tick(self) -> None:
        self.budget = RATE
        self.resumeProducing()  # the link is ready again: offer it what is buffered


@implementer(IConsumer)
class Sink:
    """The far end of the link: counts and hashes what arrives."""

    def __init__(self) -> None:
        self.received, self.sha = 0, hashlib.sha256()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.received += len(data)
        self.sha.update(data)


@implementer(IPushProducer)
class Recorder:
    """
    The fast producer: one chunk per reactor turn while not paused. Records (time, bytes
    held by the proxy) after every write and every millisecond, and its pauses and resumes.
    """

    def __init__(self, reactor: Any, proxy: ProducerConsumerProxy) -> None:
        self.reactor, self.proxy = reactor, proxy
        self.left, self.paused = TOTAL, False
        self.start = time.monotonic()
        self.sha = hashlib.sha256()
        self.samples: list[tuple[float, int]] = []
        self.events: list[tuple[float, str]] = []
        #: the bytes the proxy held at each pause and at each resume
        self.heldAt: dict[str, list[int]] = {"pause": [], "resume": []}
        self.sampler = task.LoopingCall(self.sample)
        self.sampler.clock = reactor
        self.sampler.start(0.001)
        proxy.registerProducer(self, True)
        reactor.callLater(0, self.writeOne)

    def now(self) -> float:
        return (time.monotonic() - self.start) * 1000

    def sample(self) -> None:
        self.samples.append((self.now(), self.proxy.bufferedBytes))

    def pauseProducing(self) -> None:
        self.paused = True
        self.events.append((self.now(), "pause"))
        self.heldAt["pause"].append(self.proxy.bufferedBytes)

    def resumeProducing(self) -> None:
        if self.paused:
            self.events.append((self.now(), "resume"))
            self.heldAt["resume"].append(self.proxy.bufferedBytes)
            self.paused = False
            self.reactor.callLater(0, self.writeOne)

    def writeOne(self) -> None:
        if self.paused or not self.left:
            return
        n = min(CHUNK, self.left)
        self.left -= n
        data = bytes([self.left % 251]) * n
        self.sha.update(data)
        self.proxy.write(data)
        self.sample()
        if not self.left:
            self.sampler.stop()
            self.proxy.unregisterProducer()
            self.proxy.finish()
        elif not self.paused:
            self.reactor.callLater(0, self.writeOne)

    def stopProducing(self) -> None:
        self.left = 0


async def record(reactor: Any) -> Recorder:
    sink = Sink()
    proxy = SlowLinkProxy(sink, highWatermark=HIGH)
    link = task.LoopingCall(proxy.tick)
    link.clock = reactor
    link.start(0.001)
    recorder = Recorder(reactor, proxy)
    while sink.received < TOTAL:
        await task.deferLater(reactor, 0.01, lambda: None)
    link.stop()
    assert sink.sha.digest() == recorder.sha.digest(), "bytes lost or reordered"
    return recorder


def draw(recorder: Recorder) -> None:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "pcpkit"  # the same run draws the same file
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6))
    begin = 0.0
    end = begin + 120.0
    shown = [(t - begin, b / 1024) for t, b in recorder.samples if begin <= t <= end]
    xs, ys = [t for t, _ in shown], [b for _, b in shown]
    pausedFrom = None
    first = True
    for t, what in recorder.events:
        if what == "pause":
            pausedFrom = t
        elif pausedFrom is not None:
            if t >= begin and pausedFrom <= end:
                ax.axvspan(
                    max(pausedFrom, begin) - begin,
                    min(t, end) - begin,
                    color="#f4c7c3",
                    lw=0,
                    label="producer paused" if first else None,
                )
                first = False
            pausedFrom = None
    ax.step(xs, ys, where="post", color="#1f5fa8", lw=1.2, label="bytes held by the proxy")
    ax.axhline(HIGH / 1024, color="#b3261e", ls="--", lw=1, label="high watermark (pause)")
    ax.axhline(HIGH / 2048, color="#2e7d32", ls="--", lw=1, label="low watermark (resume)")
    ax.set_xlim(0, end - begin)
    ax.set_ylim(0, HIGH / 1024 * 1.35)
    ax.set_xlabel("time (ms), the first 120 ms of the run")
    ax.set_ylabel("KiB buffered")
    pauses = sum(1 for _, w in recorder.events if w == "pause")
    ax.set_title(
        f"ProducerConsumerProxy, fast producer, 8 MB/s link: {pauses} pauses for "
        f"{TOTAL // 2**20} MiB, at most {max(b for _, b in recorder.samples) // 1024} KiB held",
        fontsize=10,
    )
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(OUT, format="svg", metadata={"Date": None})


def main(reactor: Any) -> defer.Deferred[None]:
    async def run() -> None:
        recorder = await record(reactor)
        draw(recorder)
        held = max(b for _, b in recorder.samples)
        assert held <= HIGH + CHUNK, held
        sys.stdout.write(
            f"wrote {OUT}: {len(recorder.events)} pause/resume events, at most {held} bytes held\n"
        )

    return defer.ensureDeferred(run())


if __name__ == "__main__":
    task.react(main)
