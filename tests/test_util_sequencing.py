"""Sequencing and control (pcpkit.util.sequencing), with Kamaelia differentials."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from pcpkit import ErrorInformation, ProducerFinished, ShutdownMicroprocess
from pcpkit.chassis import Pipeline
from pcpkit.component import Component
from pcpkit.testing import MessageCollector, runComponent
from pcpkit.util import (
    Carousel,
    MessageRateLimit,
    OneShot,
    PureTransformer,
    Seq,
    TriggeredOneShot,
)
from tests.componentutil import Source
from tests.kamaeliautil import runKamaelia
from tests.test_util_fanout import Gate, waitUntil


def double(x: Any) -> Any:
    return None if x % 3 == 0 else x * 2


@pytest_twisted.ensureDeferred
async def test_pure_transformer_differential() -> None:
    from Kamaelia.Util.PureTransformer import PureTransformer as KPure

    items = list(range(50))
    out = MessageCollector()
    await runComponent(Pipeline(Source(items), PureTransformer(double), out), 5)
    assert out.messages == runKamaelia(items, KPure(double))
    assert isinstance(out.controlMessages[-1], ProducerFinished)


@pytest_twisted.ensureDeferred
async def test_pure_transformer_subclass_and_back_pressure() -> None:
    class Upper(PureTransformer):
        def processMessage(self, msg: Any) -> Any:
            return msg.upper()

    slow = Gate(bound=3)
    feeder = Source([b"m%d" % i for i in range(200)])
    upper = Upper()
    p = Pipeline(feeder, upper, slow)
    p.activate()
    await waitUntil(lambda: upper.out.paused and feeder.sent >= upper.inboxSize)
    assert feeder.sent <= upper.inboxSize + 3 + 1 + Source.step
    slow.open()
    await runComponent(p, 10)
    assert slow.got == [b"M%d" % i for i in range(200)]


@pytest_twisted.ensureDeferred
async def test_pure_transformer_value_error_is_reported() -> None:
    out = MessageCollector()
    p = Pipeline(Source(["1", "x", "3"]), PureTransformer(int), out)
    await runComponent(p, 5)
    assert out.messages == [1]
    assert isinstance(out.controlMessages[0], ErrorInformation)


@pytest_twisted.ensureDeferred
async def test_seq_differential_with_oneshots() -> None:
    import Axon
    from Kamaelia.Chassis.Pipeline import Pipeline as KPipeline
    from Kamaelia.Chassis.Seq import Seq as KSeq
    from Kamaelia.Util.OneShot import OneShot as KOneShot

    from tests.kamaeliautil import _Collect

    words = ["Hello", "Doctor", "Name"]
    collect = _Collect()
    KPipeline(KSeq("BEGIN", *[KOneShot(w) for w in words], "END"), collect).run()
    assert isinstance(collect, Axon.Component.component)
    out = MessageCollector()
    await runComponent(Pipeline(Seq("BEGIN", *[OneShot(w) for w in words], "END"), out), 5)
    assert out.messages == collect.got == words
    assert isinstance(out.controlMessages[-1], ProducerFinished)


class TakeN(Component):
    """Tags and passes on ``n`` messages, then ends (whatever else waits in its inbox)."""

    def __init__(self, tag: str, n: int) -> None:
        super().__init__()
        self.tag, self.n = tag, n

    def main(self) -> Generator[int, None, None]:
        got = 0
        while got < self.n:
            while self.dataReady("inbox") and got < self.n:
                self.send((self.tag, self.recv("inbox")), "outbox")
                got += 1
            if got < self.n:
                self.pause()
                yield 1


@pytest_twisted.ensureDeferred
async def test_seq_gives_what_a_child_left_unread_to_the_next() -> None:
    # The source sends everything at once: the first child's inbox holds all of it when it
    # ends. Kamaelia's Seq drops what a finished child left (timing decides how much);
    # pcpkit's hands it on, in order, so every item reaches some child exactly once.
    items = list(range(12))
    out = MessageCollector()
    seq = Seq(TakeN("a", 3), TakeN("b", 3), TakeN("c", 6))
    await runComponent(Pipeline(Source(items), seq, out), 5)
    tags = ["a"] * 3 + ["b"] * 3 + ["c"] * 6
    assert out.messages == list(zip(tags, items, strict=True))
    assert isinstance(out.controlMessages[-1], ProducerFinished)


@pytest_twisted.ensureDeferred
async def test_triggered_oneshot() -> None:
    shot = TriggeredOneShot("bang")
    out = MessageCollector()
    p = Pipeline(shot, out)
    p.activate()
    shot.inboxes["inbox"].deliver("go")
    await runComponent(p, 5)
    assert out.messages == ["bang"]
    # told to stop before the trigger: nothing sent, the message passed on
    shot2, out2 = TriggeredOneShot("never"), MessageCollector()
    p2 = Pipeline(shot2, out2)
    p2.activate()
    shot2.inboxes["control"].deliver(ShutdownMicroprocess())
    await runComponent(p2, 5)
    assert out2.messages == []
    assert isinstance(out2.controlMessages[-1], ShutdownMicroprocess)


@pytest_twisted.ensureDeferred
async def test_message_rate_limit_on_a_clock() -> None:
    clock = Clock()
    limit = MessageRateLimit(10, buffer=3, clock=clock)
    out = MessageCollector()
    p = Pipeline(limit, out)
    p.activate()
    for i in range(2):
        limit.inboxes["inbox"].deliver(i)
    await waitUntil(lambda: limit.dataReady("inbox") == 2 and limit._paused)
    assert out.messages == [] and not clock.getDelayedCalls()  # still buffering
    limit.inboxes["inbox"].deliver(2)
    await out.waitFor(1, timeout=5)
    (call,) = clock.getDelayedCalls()
    assert call.getTime() == pytest.approx(0.1)
    clock.advance(0.05)
    assert out.messages == [0] and call.active()
    clock.advance(0.05)
    await out.waitFor(2, timeout=5)
    limit.inboxes["control"].deliver(ProducerFinished())
    clock.advance(0.1)
    await out.waitFor(3, timeout=5)
    await runComponent(p, 5)
    assert out.messages == [0, 1, 2]
    assert not clock.getDelayedCalls()


def test_message_rate_limit_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        MessageRateLimit(0)
    with pytest.raises(ValueError, match="buffer"):
        MessageRateLimit(1, buffer=-1)


@pytest_twisted.ensureDeferred
async def test_carousel_replaces_its_child() -> None:
    made: list[Any] = []

    def factory(arg: Any) -> Any:
        made.append(arg)
        return PureTransformer(lambda m: f"{arg}:{m}")

    carousel = Carousel(factory, make1stRequest=True)
    out, requests = MessageCollector(), MessageCollector()
    carousel.link((carousel, "outbox"), (out, "inbox"))
    carousel.link((carousel, "requestNext"), (requests, "inbox"))
    carousel.link((carousel, "signal"), (out, "control"))
    out.activate()
    requests.activate()
    carousel.activate()
    await requests.waitFor(1, timeout=5)
    carousel.inboxes["next"].deliver("a")
    await waitUntil(lambda: carousel.child is not None)
    carousel.inboxes["inbox"].final.deliver(1)
    await out.waitFor(1, timeout=5)
    carousel.inboxes["next"].deliver("b")  # the current child is stopped and replaced
    await waitUntil(lambda: made == ["a", "b"] and carousel.child is not None)
    carousel.inboxes["inbox"].final.deliver(2)
    await out.waitFor(2, timeout=5)
    carousel.inboxes["control"].deliver(ProducerFinished())
    await runComponent(carousel, 5)
    assert out.messages == ["a:1", "b:2"]
    assert requests.messages == ["NEXT"]
    await out.finished
    requests.stop()
    await requests.finished
