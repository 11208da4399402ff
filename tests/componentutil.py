"""Small components shared by the component tests (written as a Kamaelia user would)."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from pcpkit import BoxFull, Component, producerFinished, shutdownMicroprocess


class Source(Component):
    """
    Sends each item, Axon style (on ``BoxFull`` it pauses, counting it in ``fullCount``, and
    retries when woken), then ``producerFinished`` on ``signal``; ``sent`` counts what went
    out. A message on ``control`` stops it early (passed on along ``signal``). It uses
    ``send`` rather than ``await put`` on purpose: the tests that use it exercise Kamaelia's
    ``BoxFull`` protocol.
    """

    #: Messages sent in one step at most (with a parking bound the inbox it feeds may hold
    #: this many more than its size: "size + one step's sends").
    step = 32

    def __init__(self, items: Iterable[Any], **argd: Any) -> None:
        super().__init__(**argd)
        self.items = list(items)
        self.fullCount = 0
        self.sent = 0

    def main(self) -> Generator[int, None, None]:
        for item in self.items:
            while True:
                try:
                    self.send(item, "outbox")
                    break
                except BoxFull:
                    self.fullCount += 1
                    self.pause()
                    yield 1
            self.sent += 1
            if self.dataReady("control"):
                self.send(self.recv("control"), "signal")
                return
            if self.sent % self.step == 0:
                yield 1
        self.send(producerFinished(self), "signal")
        yield 1


class PassThrough(Component):
    """Axon-style pass-through: recv, send, pause; forwards shutdown when drained."""

    def main(self) -> Generator[int, None, None]:
        held: list[Any] = []
        while True:
            while held or self.dataReady("inbox"):
                msg = held.pop() if held else self.recv("inbox")
                try:
                    self.send(msg, "outbox")
                except BoxFull:
                    held.append(msg)
                    break
            if not held and not self.dataReady("inbox") and self.dataReady("control"):
                msg = self.recv("control")
                self.send(msg, "signal")
                return
            self.pause()
            yield 1


class Upper(Component):
    """The DESIGN card's async component."""

    async def main(self) -> None:
        async for msg in self.messages("inbox"):
            await self.put(msg.upper(), "outbox")


class Collector(Component):
    """Records everything; ends on any message on control. Tracks its largest inbox."""

    def __init__(self, **argd: Any) -> None:
        super().__init__(**argd)
        self.got: list[Any] = []
        self.control: list[Any] = []
        self.maxQueued = 0

    def main(self) -> Generator[int, None, list[Any]]:
        while True:
            self.maxQueued = max(self.maxQueued, self.dataReady("inbox"))
            while self.dataReady("inbox"):
                self.got.append(self.recv("inbox"))
            if self.dataReady("control"):
                self.control.append(self.recv("control"))
                return self.got
            self.pause()
            yield 1


class Stopper(Component):
    """Sends shutdownMicroprocess to whatever its outbox links to."""

    def main(self) -> Generator[int, None, None]:
        self.send(shutdownMicroprocess(self), "outbox")
        yield 1


def settle(clock: Clock, turns: int = 10_000) -> None:
    """
    Advance ``clock`` (by zero seconds) until nothing on it is due: the components on a
    ``Scheduler(clock)`` have done all they can until something happens from outside or a
    later call comes due (``clock.getDelayedCalls()`` then says which).
    """
    for _ in range(turns):
        now = clock.seconds()
        if not any(c.getTime() <= now for c in clock.getDelayedCalls()):
            return
        clock.advance(0)
    raise AssertionError(f"still busy after {turns} turns: {clock.getDelayedCalls()}")


def drive(clock: Any, *components: Component, limit: int = 100_000, step: float = 1.0) -> None:
    """Advance ``clock`` (a ``task.Clock``) until every component has finished."""
    for _ in range(limit):
        if all(c.finished.called for c in components):
            return
        clock.advance(step)
    raise AssertionError(f"not finished: {[c for c in components if not c.finished.called]}")


def wire(src: Component, dst: Component) -> None:
    """Link ``src``'s outbox and signal to ``dst``'s inbox and control, as Pipeline does."""
    src.link((src, "outbox"), (dst, "inbox"))
    src.link((src, "signal"), (dst, "control"))


def outcome(d: Deferred[Any]) -> Any:
    """What the fired Deferred ``d`` carries (a result or a Failure); fails if it has not fired."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "not fired"
    return out[0]
