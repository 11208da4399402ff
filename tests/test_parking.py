"""
Parking bounds vs Axon bounds, put into unlinked outboxes, the injectable scheduler.

Most tests drive a :class:`~pcpkit.component.Scheduler` on a ``task.Clock``: deterministic, no
sleeps, and nothing touches the global reactor. The TCP and thread tests use the real one.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.task import Clock

from pcpkit import Component, ErrorInformation, producerFinished
from pcpkit.component import (
    UNLINKED_OUTBOX_SIZE,
    Box,
    BoxFull,
    EmptyBox,
    Linkage,
    Runnable,
    Scheduler,
    UndeliveredMessages,
    linkBoxes,
    noSpaceInBox,
    unlinkBoxes,
)
from pcpkit.internet.tcp import TCPClient
from pcpkit.ipc import ProducerFinished, ShutdownMicroprocess
from pcpkit.threaded import ThreadedComponent
from tests.componentutil import drive, wire
from tests.tcputil import Recorder, server

ROOT = Path(__file__).resolve().parent.parent


class Feed(Component):
    """The issue's Kamaelia-style sender: a plain ``send`` per step, never catching anything."""

    def __init__(self, items: list[Any], perStep: int = 1, **argd: Any) -> None:
        super().__init__(**argd)
        self.items = items
        self.perStep = perStep
        self.steps = 0

    def main(self) -> Generator[int, None, None]:
        items = self.items
        for i in range(0, len(items), self.perStep):
            for m in items[i : i + self.perStep]:
                self.send(m, "outbox")
            self.steps += 1
            yield 1
        self.send(producerFinished(self), "signal")


class Slow(Component):
    """Takes ``perTurn`` messages each time the clock has advanced by ``delay``."""

    def __init__(self, clock: Clock, perTurn: int = 1, delay: float = 1.0, **argd: Any) -> None:
        super().__init__(**argd)
        self.clock = clock
        self.perTurn = perTurn
        self.delay = delay
        self.got: list[Any] = []
        self.maxQueued = 0
        self.control: list[Any] = []

    def main(self) -> Generator[int, None, None]:
        while True:
            self.maxQueued = max(self.maxQueued, self.dataReady("inbox"))
            for _ in range(self.perTurn):
                if self.dataReady("inbox"):
                    self.got.append(self.recv("inbox"))
            if self.dataReady("control") and not self.dataReady("inbox"):
                self.control.append(self.recv("control"))
                return
            self.clock.callLater(self.delay, self.unpause)
            self.pause()
            yield 1


# -- parking bounds -----------------------------------------------------------------------------


def test_plain_send_into_a_parking_inbox_parks_the_sender_and_loses_nothing() -> None:
    clock = Clock()
    sched = Scheduler(clock)
    feed = Feed(list(range(300)))
    sink = Slow(clock, perTurn=3)
    sink.setInboxSize("inbox", 8, park=True)
    wire(feed, sink)
    sink.activate(sched)
    feed.activate(sched)
    drive(clock, feed, sink)
    assert sink.got == list(range(300))
    # the bound: size + one step's sends (one message per step here)
    assert sink.maxQueued <= 8 + 1
    assert sink.inboxes["inbox"].putCount == 300
    assert feed.finished.result is None
    assert not clock.getDelayedCalls()


def test_the_bound_is_size_plus_one_steps_sends() -> None:
    clock = Clock()
    sched = Scheduler(clock)
    feed = Feed(list(range(500)), perStep=7)
    sink = Slow(clock, perTurn=5)
    sink.setInboxSize("inbox", 10, park=True)
    wire(feed, sink)
    for c in (sink, feed):
        c.activate(sched)
    drive(clock, feed, sink)
    assert sink.got == list(range(500))
    assert 10 < sink.maxQueued <= 10 + 7


def test_a_parked_sender_is_not_stepped_even_if_it_never_pauses() -> None:
    clock = Clock()
    sched = Scheduler(clock)
    feed = Feed(list(range(100)))
    box = Component()
    box.setInboxSize("inbox", 4, low=1, park=True)
    feed.link((feed, "outbox"), (box, "inbox"))
    feed.activate(sched)  # the receiver is never activated: nobody drains
    for _ in range(50):
        clock.advance(0)
    assert feed.steps == 5  # four fill the box, the fifth is accepted and parks the sender
    assert len(box.inboxes["inbox"]) == 5
    box.recv("inbox")
    box.recv("inbox")
    clock.advance(0)
    assert feed.steps == 5, "woken above the low watermark"
    box.recv("inbox")
    box.recv("inbox")  # one left: the low watermark
    clock.advance(0)
    # unparked: fills the box again and parks on the step that overfills it
    assert feed.steps == 9
    assert len(box.inboxes["inbox"]) == 5


def test_a_shutdown_on_control_reaches_a_parked_component() -> None:
    class Endless(Component):
        def main(self) -> Generator[int, None, str]:
            i = 0
            while not self.dataReady("control"):
                self.send(i, "outbox")
                i += 1
                yield 1
            return type(self.recv("control")).__name__

    clock = Clock()
    sched = Scheduler(clock)
    endless = Endless()
    stuck = Component()
    stuck.setInboxSize("inbox", 3, park=True)
    endless.link((endless, "outbox"), (stuck, "inbox"))
    endless.activate(sched)
    for _ in range(20):
        clock.advance(0)
    assert not endless.finished.called
    assert len(stuck.inboxes["inbox"]) == 4  # parked
    endless.inboxes["control"].deliver(ShutdownMicroprocess())
    clock.advance(0)
    assert endless.finished.result == "ShutdownMicroprocess"
    assert list(stuck.inboxes["inbox"].queue) == [0, 1, 2, 3]


def test_a_parked_component_still_receives_data_and_runs_when_unparked() -> None:
    from tests.test_component import Echo as Relay

    clock = Clock()
    sched = Scheduler(clock)
    feed, relay, sink = Feed(list(range(200)), perStep=5), Relay(), Slow(clock, perTurn=2)
    relay.setInboxSize("inbox", 6, park=True)
    sink.setInboxSize("inbox", 6, park=True)
    wire(feed, relay)
    wire(relay, sink)
    for c in (feed, relay, sink):
        c.activate(sched)
    drive(clock, feed, relay, sink)
    assert sink.got == list(range(200))
    assert isinstance(sink.control[0], ProducerFinished)


def test_box_deliver_from_outside_respects_the_bound_kind() -> None:
    c = Component()
    c.setInboxSize("inbox", 2, park=True)
    box = c.inboxes["inbox"]
    for i in range(5):
        box.deliver(i)  # parking and no sender: accepted
    assert list(box.queue) == [0, 1, 2, 3, 4]
    c.setInboxSize("inbox", 2)
    with pytest.raises(BoxFull):
        box.deliver(5)
    box.forceDeliver(5)
    assert box.putCount == 6
    assert [box.take() for _ in range(6)] == [0, 1, 2, 3, 4, 5]
    with pytest.raises(EmptyBox):
        box.take()


# -- Axon bounds ----------------------------------------------------------------------------------


class AxonRetry(Component):
    """Axon retry-on-full code, as ported Kamaelia programs have it."""

    def __init__(self, n: int, **argd: Any) -> None:
        super().__init__(**argd)
        self.n = n
        self.fulls = 0

    def main(self) -> Generator[int, None, None]:
        for i in range(self.n):
            while True:
                try:
                    self.send(i, "outbox")
                    break
                except noSpaceInBox:
                    self.fulls += 1
                    self.pause()
                    yield 1
            yield 1
        self.send(producerFinished(self), "signal")


@pytest.mark.parametrize("how", ["setInboxSize", "setSize"])
def test_axon_bounds_raise_and_retry_code_keeps_working(how: str) -> None:
    clock = Clock()
    sched = Scheduler(clock)
    sender = AxonRetry(100)
    sink = Slow(clock, perTurn=2)
    if how == "setSize":
        sink.inboxes["inbox"].setSize(5)
    else:
        sink.setInboxSize("inbox", 5)
    assert sink.inboxes["inbox"].getSize() == 5
    assert not sink.inboxes["inbox"].parking
    wire(sender, sink)
    for c in (sender, sink):
        c.activate(sched)
    drive(clock, sender, sink)
    assert sink.got == list(range(100))
    assert sender.fulls > 0
    assert sink.maxQueued <= 5


def test_setSize_none_and_getSize() -> None:
    c = Component()
    box = c.inboxes["inbox"]
    assert box.getSize() is None
    box.setSize(3)
    assert (box.getSize(), box.low, box.parking) == (3, 1, False)
    box.setSize(None)
    assert box.getSize() is None
    with pytest.raises(ValueError):
        box.setSize(0)
    c.setInboxSize("inbox", 4, park=True)
    assert (box.maxsize, box.low, box.parking) == (4, 2, True)


# -- put into an unlinked outbox, and unlinking mid-flow ----------------------------------------


class Putter(Component):
    def __init__(self, n: int, **argd: Any) -> None:
        super().__init__(**argd)
        self.n = n
        self.sent = 0

    async def main(self) -> None:
        for i in range(self.n):
            await self.put(i, "outbox")
            self.sent += 1
        await self.put(producerFinished(self), "signal")


class ItemPutter(Component):
    """An async sender: ``await self.put`` for each item."""

    def __init__(self, items: list[Any], **argd: Any) -> None:
        super().__init__(**argd)
        self.items = items

    async def main(self) -> None:
        for m in self.items:
            await self.put(m, "outbox")


@pytest.mark.parametrize("park", [False, True])
def test_two_put_senders_into_one_full_inbox_both_finish(park: bool) -> None:
    """
    A woken ``put`` that finds the box refilled by the other sender waits again (it must
    register a new waiter, or it sleeps for ever).
    """
    clock = Clock()
    sched = Scheduler(clock)
    a = ItemPutter([("a", i) for i in range(200)])
    b = ItemPutter([("b", i) for i in range(200)])
    sink = Slow(clock, perTurn=3)
    sink.setInboxSize("inbox", 8, park=park)
    a.link((a, "outbox"), (sink, "inbox"))
    b.link((b, "outbox"), (sink, "inbox"))
    for c in (sink, a, b):
        c.activate(sched)
    drive(clock, a, b)
    for _ in range(1000):
        if len(sink.got) == 400:
            break
        clock.advance(1.0)
    assert [m for m in sink.got if m[0] == "a"] == [("a", i) for i in range(200)]
    assert [m for m in sink.got if m[0] == "b"] == [("b", i) for i in range(200)]
    assert sink.maxQueued <= 8


class TakeThenEnd(Component):
    """Takes ``n`` messages (one per step) and ends, leaving its inbox behind."""

    def __init__(self, n: int, **argd: Any) -> None:
        super().__init__(**argd)
        self.n = n
        self.got: list[Any] = []

    def main(self) -> Generator[int, None, None]:
        while len(self.got) < self.n:
            if self.dataReady("inbox"):
                self.got.append(self.recv("inbox"))
            else:
                self.pause()
            yield 1


@pytest.mark.parametrize("how", ["send, parking bound", "send, Axon bound", "put"])
def test_senders_into_a_finished_components_inbox_are_let_go(how: str) -> None:
    """
    A component that ends leaves an inbox nothing will take from again: a sender parked or
    waiting on it is let go when it ends, and what it sends once the inbox is full is
    dropped (counted), never parked, waited on or refused with BoxFull for good. (A
    Kamaelia program whose source fed a finished Seq child hung on pcpkit.)
    """
    clock = Clock()
    sched = Scheduler(clock)
    sink = TakeThenEnd(3)
    sink.setInboxSize("inbox", 8, park=how != "send, Axon bound")
    if how == "put":
        sender: Component = ItemPutter(list(range(100)))
    else:
        sender = Feed(list(range(100)), perStep=4)
    if how == "send, Axon bound":
        # Axon's retry idiom: catch noSpaceInBox, pause, resend when woken
        class Retrying(Component):
            def main(self) -> Generator[int, None, None]:
                for i in range(100):
                    while True:
                        try:
                            self.send(i, "outbox")
                            break
                        except noSpaceInBox:
                            self.pause()
                            yield 1
                    yield 1

        sender = Retrying()
    sender.link((sender, "outbox"), (sink, "inbox"))
    sink.activate(sched)
    sender.activate(sched)
    drive(clock, sink, sender)
    box = sink.inboxes["inbox"]
    assert sink.got == [0, 1, 2] and box.closed
    # the inbox stayed bounded; the rest was dropped, and counted
    assert len(box) <= 8 + 4
    assert 3 + len(box) + box.dropped == 100 == box.putCount + box.dropped
    assert not box.waiters and not clock.getDelayedCalls()


def test_put_into_an_unlinked_outbox_waits_for_a_link() -> None:
    clock = Clock()
    sched = Scheduler(clock)
    putter = Putter(200)
    putter.activate(sched)
    for _ in range(20):
        clock.advance(0)
    assert putter.sent == UNLINKED_OUTBOX_SIZE
    assert len(putter.outboxes["outbox"]) == UNLINKED_OUTBOX_SIZE
    sink = Slow(clock, perTurn=10)
    sink.setInboxSize("inbox", 16, park=True)
    wire(putter, sink)
    sink.activate(sched)
    drive(clock, putter, sink)
    assert sink.got == list(range(200))


def test_plain_send_into_an_unlinked_outbox_is_axon_like() -> None:
    # Kamaelia's last stage of a pipeline sends into an unlinked outbox forever: no parking.
    clock = Clock()
    sched = Scheduler(clock)
    feed = Feed(list(range(UNLINKED_OUTBOX_SIZE * 3)))
    feed.activate(sched)
    drive(clock, feed)
    assert list(feed.outboxes["outbox"].queue) == list(range(UNLINKED_OUTBOX_SIZE * 3))


def _unlinkMidFlow(relink: bool) -> tuple[Putter, Slow, Slow | None, Clock]:
    clock = Clock()
    sched = Scheduler(clock)
    putter = Putter(40)
    sink = Slow(clock, perTurn=1)
    sink.setInboxSize("inbox", 4, park=True)
    data = putter.link((putter, "outbox"), (sink, "inbox"))
    putter.link((putter, "signal"), (sink, "control"))
    for c in (putter, sink):
        c.activate(sched)
    for _ in range(1000):
        if len(sink.got) >= 5:
            break
        clock.advance(1)
    assert len(sink.got) >= 5, (sink.got, putter, sink)
    putter.unlink(thelinkage=data)
    other = None
    if relink:
        other = Slow(clock, perTurn=50)
        putter.link((putter, "outbox"), (other, "inbox"))
        other.activate(sched)
    for _ in range(200):
        clock.advance(1)
    return putter, sink, other, clock


def test_unlinking_a_data_link_mid_flow_never_loses_silently() -> None:
    # Before: the putter's remaining messages sat in its unlinked outbox, producerFinished
    # went out on signal -> control, the sink stopped, and the messages were gone unsaid.
    putter, sink, _, _ = _unlinkMidFlow(relink=False)
    assert putter.finished.called
    failures: list[Any] = []
    putter.finished.addErrback(failures.append)
    assert failures and failures[0].check(UndeliveredMessages)
    stranded = list(putter.outboxes["outbox"].queue)
    assert sink.got + stranded == list(range(40))
    assert "never delivered" in str(failures[0].value)
    # the sink was told why: the error, then the end
    assert sink.finished.called
    assert isinstance(sink.control[0], ErrorInformation)


def test_relinking_after_an_unlink_delivers_in_order() -> None:
    putter, sink, other, clock = _unlinkMidFlow(relink=True)
    assert other is not None
    # signal still goes to the first sink: the new one gets the rest of the data, in order
    assert sink.got + other.got == list(range(40))
    assert putter.finished.result is None


def test_send_of_a_shutdown_after_an_unlink_raises() -> None:
    a, b = Component(), Component()
    lk = a.link((a, "outbox"), (b, "inbox"))
    a.link((a, "signal"), (b, "control"))
    a.send(1, "outbox")
    a.unlink(thelinkage=lk)
    a.send(2, "outbox")
    with pytest.raises(UndeliveredMessages):
        a.send(producerFinished(a), "signal")
    assert list(b.inboxes["control"].queue) == []
    a.link((a, "outbox"), (b, "inbox"))
    a.send(producerFinished(a), "signal")
    assert list(b.inboxes["inbox"].queue) == [1, 2]


# -- the public mailbox API -------------------------------------------------------------------


def test_linkBoxes_and_unlinkBoxes() -> None:
    a, b = Component(), Component()
    a.send("early", "outbox")
    lk = linkBoxes(a.outboxes["outbox"], b.inboxes["inbox"], 0, a)
    assert isinstance(lk, Linkage) and lk in a.postoffice
    assert a.outboxes["outbox"].final is b.inboxes["inbox"]
    a.send("late", "outbox")
    assert list(b.inboxes["inbox"].queue) == ["early", "late"]
    unlinkBoxes(lk)
    assert lk not in a.postoffice
    assert a.outboxes["outbox"].final is a.outboxes["outbox"]


def test_no_module_imports_underscore_names_of_component() -> None:
    offenders = []
    for path in (ROOT / "pcpkit").rglob("*.py"):
        text = path.read_text()
        for m in re.finditer(r"from pcpkit\.component import \(?([^)\n]*(?:\n[^)]*)*?)\)?\n", text):
            names = [n.strip() for n in m.group(1).replace("\n", ",").split(",") if n.strip()]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("_")]
    assert offenders == []


class Counter(Runnable):
    """A plain Runnable (as the bridge's OutboxProducer is one): runs when woken."""

    def __init__(self, sched: Scheduler) -> None:
        super().__init__(sched)
        self.box = Box(self, "in", True)
        self.runs = 0

    def _wake(self) -> None:
        assert self.scheduler is not None
        self.scheduler.schedule(self)

    def _run(self) -> None:
        self._queued = False
        self.runs += 1
        while self.box.queue:
            self.box.take()


def test_a_runnable_on_an_injected_scheduler() -> None:
    clock = Clock()
    r = Counter(Scheduler(clock))
    r.box.deliver(1)
    r.box.deliver(2)
    assert r.runs == 0
    clock.advance(0)
    assert r.runs == 1 and not r.box.queue and r.box.putCount == 2
    assert not clock.getDelayedCalls()


def test_children_run_on_their_parents_scheduler_and_nothing_on_the_reactor() -> None:
    from pcpkit.chassis import Pipeline

    clock = Clock()
    sched = Scheduler(clock)
    sink = Slow(clock, perTurn=4)
    sink.setInboxSize("inbox", 4, park=True)
    p = Pipeline(Feed(list(range(50))), sink)
    before = set(reactor.getDelayedCalls())  # type: ignore[attr-defined]
    p.activate(sched)
    assert all(c.scheduler is sched for c in p.children)
    assert set(reactor.getDelayedCalls()) == before  # type: ignore[attr-defined]
    drive(clock, p)
    assert sink.got == list(range(50))


# -- real reactor: TCP and threads --------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_issue_example_feed_into_tcpclient_does_not_crash() -> None:
    data = hashlib.sha256(b"seed").digest() * (65536 * 200 // 32)

    class BigFeed(Component):
        def main(self) -> Generator[int, None, None]:
            for i in range(0, len(data), 65536):
                self.send(data[i : i + 65536], "outbox")
                yield 1
            self.send(producerFinished(self), "signal")

    async with server(Recorder) as (port, factory):
        client = TCPClient("127.0.0.1", port)
        feed = BigFeed()
        wire(feed, client)
        client.activate()
        feed.activate()
        got = await factory.done.addTimeout(60, reactor)
        await client.finished.addTimeout(30, reactor)
    assert feed.finished.result is None
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert client.inboxes["inbox"].parking


class ThreadSender(ThreadedComponent):
    def __init__(self, n: int, **argd: Any) -> None:
        super().__init__(queuelengths=4, **argd)
        self.n = n

    def main(self) -> None:
        for i in range(self.n):
            self.send(i, "outbox")
        self.send(producerFinished(self), "signal")


class MaxDeque(deque[Any]):
    """A box's queue that records the most it ever held."""

    most = 0

    def append(self, x: Any) -> None:
        super().append(x)
        if len(self) > self.most:
            self.most = len(self)


def watchQueue(box: Box) -> MaxDeque:
    box.queue = q = MaxDeque(box.queue)
    return q


class Watch(Component):
    """Collects, slowly; ``maxQueued`` is the most its inbox ever held."""

    def __init__(self, **argd: Any) -> None:
        super().__init__(**argd)
        self.got: list[Any] = []
        self.watched = watchQueue(self.inboxes["inbox"])

    @property
    def maxQueued(self) -> int:
        return self.watched.most

    async def main(self) -> None:
        from twisted.internet.task import deferLater

        async for msg in self.messages():
            self.got.append(msg)
            if len(self.got) % 50 == 0:
                await deferLater(reactor, 0.001, lambda: None)


@pytest.mark.parametrize("park", [True, False], ids=["parking", "axon"])
@pytest_twisted.ensureDeferred
async def test_threaded_send_blocks_on_either_bound(park: bool) -> None:
    sender, sink = ThreadSender(600), Watch()
    sink.setInboxSize("inbox", 8, park=park)
    wire(sender, sink)
    sink.activate()
    sender.activate()
    await sink.finished.addTimeout(30, reactor)
    await sender.finished.addTimeout(30, reactor)
    assert sink.got == list(range(600))
    assert sink.maxQueued <= 8


# -- hypothesis: random senders into a parking inbox, random drain timing -------------------------


class RandomSender(Component):
    """Sends ``items`` in steps of the given sizes, each by plain send or by put."""

    Inboxes = {"inbox": "unused", "control": "unused", "wake": "one message per step"}

    def __init__(self, items: list[Any], steps: list[int], usePut: bool, **argd: Any) -> None:
        super().__init__(**argd)
        self.items = items
        self.steps = steps
        self.usePut = usePut

    async def main(self) -> None:
        i = 0
        k = 0
        while i < len(self.items):
            n = self.steps[k % len(self.steps)]
            k += 1
            for m in self.items[i : i + n]:
                if self.usePut:
                    await self.put(m, "outbox")
                else:
                    self.send(m, "outbox")
            i += n
            await self.get("wake")  # one step ends: yield the turn (a tick delivers "wake")


class GeneratorSender(RandomSender):
    """The same as a Kamaelia generator: plain sends, then ``yield`` (pausing for "wake")."""

    def main(self) -> Generator[int, None, None]:  # type: ignore[override]
        i = 0
        k = 0
        while i < len(self.items):
            n = self.steps[k % len(self.steps)]
            k += 1
            for m in self.items[i : i + n]:
                self.send(m, "outbox")
            i += n
            yield 1  # one step ends
            while not self.dataReady("wake"):
                self.pause()
                yield 1
            self.recv("wake")


@settings(max_examples=150, deadline=None)
@given(
    senders=st.lists(
        st.tuples(
            st.integers(0, 60),
            st.lists(st.integers(1, 6), min_size=1, max_size=4),
            st.sampled_from(["generator send", "async send", "async put"]),
        ),
        min_size=1,
        max_size=4,
    ),
    size=st.integers(1, 12),
    drains=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 3)), min_size=1, max_size=20),
)
def test_hypothesis_parking_bound_nothing_lost_or_reordered(
    senders: list[tuple[int, list[int], str]], size: int, drains: list[tuple[int, int]]
) -> None:
    clock = Clock()
    sched = Scheduler(clock)
    sink = Component()
    sink.setInboxSize("inbox", size, park=True)
    box = sink.inboxes["inbox"]
    watched = watchQueue(box)
    comps = []
    for idx, (n, steps, how) in enumerate(senders):
        kind = GeneratorSender if how == "generator send" else RandomSender
        s = kind([(idx, j) for j in range(n)], steps, usePut=how == "async put")
        s.link((s, "outbox"), (sink, "inbox"))
        s.activate(sched)
        comps.append(s)
    maxStep = max(max(steps) for _, steps, _ in senders)
    got: list[tuple[int, int]] = []
    total = sum(n for n, _, _ in senders)
    for turn in range(100_000):
        take, ticks = drains[turn % len(drains)]
        for _ in range(ticks + 1):
            for s in comps:
                if not s.finished.called and not s.inboxes["wake"].queue:
                    s.inboxes["wake"].deliver(None)
            clock.advance(0)
        for _ in range(take + (turn > 200)):  # late turns always drain: the run ends
            if box.queue:
                got.append(box.take())
        if len(got) == total and all(s.finished.called for s in comps):
            break
    for s in comps:
        assert s.finished.called, "a sender stalled"
        s.finished.addErrback(lambda f: pytest.fail(str(f)))
    assert sorted(got) == sorted((i, j) for i, (n, _, _) in enumerate(senders) for j in range(n))
    for i in range(len(senders)):
        mine = [j for k, j in got if k == i]
        assert mine == sorted(mine), "reordered"
    # size + one step's sends of each sender that can be parked on it at once
    assert watched.most <= size + len(senders) * maxStep
    assert box.putCount == total


# -- threaded, hypothesis on the real reactor ------------------------------------------------------


def threadedCases() -> list[tuple[int, int, int, bool]]:
    """
    Hypothesis draws the cases; they run afterwards on the real reactor (threads need it, and
    a test body may not block on it), so a failure names its case instead of shrinking.
    """
    cases: list[tuple[int, int, int, bool]] = []

    @settings(max_examples=8, deadline=None, database=None)
    @given(
        n=st.integers(0, 300),
        size=st.integers(1, 10),
        queuelengths=st.integers(1, 20),
        park=st.booleans(),
    )
    def draw(n: int, size: int, queuelengths: int, park: bool) -> None:
        cases.append((n, size, queuelengths, park))

    draw()
    return cases


@pytest_twisted.ensureDeferred
async def test_hypothesis_threaded_senders() -> None:
    for n, size, queuelengths, park in threadedCases():
        case = f"n={n} size={size} queuelengths={queuelengths} park={park}"
        sender = ThreadSender(n)
        sender.queuelengths = queuelengths
        sink = Watch()
        sink.setInboxSize("inbox", size, park=park)
        wire(sender, sink)
        sink.activate()
        sender.activate()
        await sink.finished.addTimeout(30, reactor)
        await sender.finished.addTimeout(30, reactor)
        assert sink.got == list(range(n)), case
        assert sink.maxQueued <= size, case


# -- the async budget: a spent budget gives up the turn and then makes progress -------------------


class BudgetCollector(Component):
    def __init__(self, **argd: Any) -> None:
        super().__init__(**argd)
        self.got: list[Any] = []

    async def main(self) -> None:
        async for msg in self.messages():
            self.got.append(msg)


def _runTurns(sched: Scheduler, turns: int) -> int:
    """Run the scheduler's reactor turns one by one (not ``Clock.advance``, which would spin
    for ever on a scheduler that never empties its queue); return how many ran."""
    for n in range(turns):
        call = sched.pending
        if call is None:
            return n
        call.cancel()
        sched.pending = None
        sched.runSlice()
    return turns


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_async_main_with_a_tiny_budget_and_no_slice_time_makes_progress(
    monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """
    Adversarial timing, deterministically: every slice is over after one run (a loaded
    machine) and the budget of get/put calls is tiny. Before: a ``messages()`` loop resumed
    after giving up its turn found its budget still spent and gave the turn up again, for
    ever (budget 1), so the scheduler never emptied its queue and ``Clock.advance`` spun.
    """
    monkeypatch.setattr("pcpkit.component.SLICE_SECONDS", 0)
    monkeypatch.setattr("pcpkit.component.ASYNC_BUDGET", budget)
    clock = Clock()
    sched = Scheduler(clock)
    sink = BudgetCollector()
    putter = Putter(50)
    wire(putter, sink)
    sink.setInboxSize("inbox", 4, park=True)
    sink.activate(sched)
    putter.activate(sched)
    ran = _runTurns(sched, 5_000)
    assert ran < 5_000, (len(sink.got), putter.sent, sched.runQueue)
    assert sink.got == list(range(50))
    assert putter.finished.called and sink.finished.called
    assert not clock.getDelayedCalls()


class IdleThenPause(Component):
    """Looks at control, yields a few turns, then pauses without looking again (legal)."""

    def __init__(self, idle: int, **argd: Any) -> None:
        super().__init__(**argd)
        self.idle = idle
        self.got: list[Any] = []

    def main(self) -> Generator[int, None, None]:
        while True:
            while self.dataReady("inbox"):
                self.got.append(self.recv("inbox"))
            if self.dataReady("control") and not self.dataReady("inbox"):
                return
            for _ in range(self.idle):
                yield 1
            if not self.dataReady("inbox"):
                self.pause()
            yield 1


@pytest.mark.parametrize("batch", [1, 2])
def test_a_message_that_arrives_while_queued_mid_loop_is_not_lost(
    monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    """
    Its batch ends mid-loop (as when a slice ends on a loaded machine), the shutdown arrives
    while it waits in the run queue, and it then pauses without looking at control: before,
    the wake-up was cleared when its next step started and it slept for ever.
    """
    monkeypatch.setattr("pcpkit.component.SLICE_SECONDS", 0)
    monkeypatch.setattr("pcpkit.component.GENERATOR_BATCH", batch)
    clock = Clock()
    sched = Scheduler(clock)
    feed = Feed([0, 1])
    sink = IdleThenPause(idle=2)
    wire(feed, sink)
    sink.activate(sched)
    feed.activate(sched)
    _runTurns(sched, 1_000)
    assert sink.finished.called, (sink.got, sink._paused, sink.dataReady("control"))
    assert sink.got == [0, 1]
