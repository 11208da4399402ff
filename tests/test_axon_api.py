"""
The rest of Axon's component API: ``Inbox()``, the ``initialiseComponent`` / ``mainBody`` /
``closeDownComponent`` protocol, ``stop()`` and ``WaitComplete``.

Driven on a ``task.Clock`` through an injected :class:`~pcpkit.component.Scheduler`; the same
programs run on real Axon in ``tests/test_kamaelia_differential.py``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Generator
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from pcpkit import Component, producerFinished
from pcpkit.chassis import Pipeline
from pcpkit.component import BoxFull, Scheduler, Stopped, UnknownBox
from pcpkit.ipc import WaitComplete
from pcpkit.testing import runComponent
from pcpkit.threaded import ThreadedComponent
from tests.componentutil import Collector, Source, drive, outcome, wire
from tests.waitutil import waitUntil


class InboxEcho(Component):
    """Kamaelia's idiom: ``for msg in self.Inbox("inbox")``, holding one back on BoxFull."""

    def __init__(self, perStep: int | None = None) -> None:
        super().__init__()
        self.perStep = perStep
        self.maxQueued = 0

    def main(self) -> Generator[int, None, None]:
        held: list[Any] = []
        while True:
            self.maxQueued = max(self.maxQueued, self.dataReady("inbox"))
            if held:
                try:
                    self.send(held[0], "outbox")
                    held.clear()
                except BoxFull:
                    self.pause()
                    yield 1
                    continue
            n = 0
            for msg in self.Inbox("inbox"):
                try:
                    self.send(msg, "outbox")
                except BoxFull:
                    held.append(msg)
                    break
                n += 1
                if n == self.perStep:
                    break
            if n == self.perStep:
                yield 1  # a slow stage: more next step
                continue
            if not held and not self.dataReady("inbox") and self.dataReady("control"):
                self.send(self.recv("control"), "signal")
                return
            self.pause()
            yield 1


# -- Inbox() ----------------------------------------------------------------------------------


def test_inbox_takes_in_order_including_what_arrives_while_iterating() -> None:
    c = Component()
    box = c.inboxes["inbox"]
    for i in range(3):
        box.deliver(i)
    got = []
    for msg in c.Inbox("inbox"):
        got.append(msg)
        if msg == 1:
            box.deliver("late")
    assert got == [0, 1, 2, "late"]
    assert c.dataReady("inbox") == 0
    assert box.putCount == 4
    assert list(c.Inbox()) == []


def test_inbox_of_an_unknown_box_is_a_keyerror_naming_the_boxes() -> None:
    with pytest.raises(UnknownBox, match="'inbox'") as info:
        next(Component().Inbox("nosuchbox"))
    assert isinstance(info.value, KeyError)


def test_inbox_wakes_a_sender_held_back_by_an_axon_bound() -> None:
    clock = Clock()
    sched = Scheduler(clock)
    items = list(range(500))
    src, echo, sink = Source(items), InboxEcho(perStep=3), Collector()
    echo.setInboxSize("inbox", 4)
    wire(src, echo)
    wire(echo, sink)
    for c in (sink, echo, src):
        c.activate(sched)
    drive(clock, src, echo, sink)
    assert sink.got == items
    assert src.fullCount > 0  # BoxFull happened, and Inbox's takes woke the source
    assert echo.maxQueued <= 4


def test_inbox_unparks_a_sender_parked_on_a_parking_bound() -> None:
    clock = Clock()
    sched = Scheduler(clock)

    class Plain(Component):
        def main(self) -> Generator[int, None, None]:
            for i in range(300):
                self.send(i, "outbox")  # never catches BoxFull: parking holds it back
                if i % 5 == 4:
                    yield 1
            self.send(producerFinished(self), "signal")
            yield 1

    src, echo, sink = Plain(), InboxEcho(perStep=2), Collector()
    echo.setInboxSize("inbox", 8, park=True)
    wire(src, echo)
    wire(echo, sink)
    for c in (sink, echo, src):
        c.activate(sched)
    drive(clock, src, echo, sink)
    assert sink.got == list(range(300))
    assert echo.maxQueued <= 8 + 5  # the bound plus one step's sends


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 300),
    size=st.integers(1, 20),
    park=st.booleans(),
    burst=st.integers(1, 9),
    perStep=st.one_of(st.none(), st.integers(1, 7)),
)
def test_inbox_pipeline_loses_duplicates_and_reorders_nothing(
    n: int, size: int, park: bool, burst: int, perStep: int | None
) -> None:
    clock = Clock()
    sched = Scheduler(clock)
    items = list(range(n))
    src, a, b, sink = Source(items, step=burst), InboxEcho(perStep), InboxEcho(perStep), Collector()
    a.setInboxSize("inbox", size, park=park)
    b.setInboxSize("inbox", size, park=park)
    for x, y in ((src, a), (a, b), (b, sink)):
        wire(x, y)
    for c in (sink, b, a, src):
        c.activate(sched)
    drive(clock, src, a, b, sink)
    assert sink.got == items
    if not park:
        assert a.maxQueued <= size and b.maxQueued <= size
    else:
        # the contract: the bound plus what one step of the sender sends
        boundA = size + burst
        assert a.maxQueued <= boundA
        assert b.maxQueued <= size + (perStep or boundA)


# -- initialiseComponent / mainBody / closeDownComponent ---------------------------------------


class OldStyleEcho(Component):
    """Axon's older protocol, as in Axon's documentation."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def initialiseComponent(self) -> int:
        self.calls.append("init")
        return 1

    def mainBody(self) -> int:
        while self.dataReady("inbox"):
            self.send(self.recv("inbox"), "outbox")
        if self.dataReady("control"):
            self.send(self.recv("control"), "signal")
            return 0
        if not self.anyReady():
            self.pause()
        return 1

    def closeDownComponent(self) -> int:
        self.calls.append("closeDown")
        return 1


def test_mainbody_protocol_runs_until_mainbody_returns_false() -> None:
    clock = Clock()
    sched = Scheduler(clock)
    src, echo, sink = Source(range(50)), OldStyleEcho(), Collector()
    wire(src, echo)
    wire(echo, sink)
    for c in (sink, echo, src):
        c.activate(sched)
    drive(clock, src, echo, sink)
    assert sink.got == list(range(50))
    assert echo.calls == ["init", "closeDown"]
    assert isinstance(sink.control[0], type(producerFinished()))


def test_a_component_that_overrides_nothing_ends() -> None:
    clock = Clock()
    c = Component().activate(Scheduler(clock))
    drive(clock, c)
    assert outcome(c.finished) is None


# -- stop() -----------------------------------------------------------------------------------


def test_stop_from_outside_closes_main_and_fires_finished() -> None:
    clock = Clock()
    closed: list[bool] = []

    class Sleeper(Component):
        def main(self) -> Generator[int, None, None]:
            try:
                while True:
                    self.pause()
                    yield 1
            finally:
                closed.append(True)

    c = Sleeper().activate(Scheduler(clock))
    clock.advance(1)
    assert not c.finished.called and not c._isStopped()
    c.stop()
    assert c._isStopped()  # at once, as in Axon
    drive(clock, c)
    assert outcome(c.finished) is None and closed == [True]
    assert not c.outboxes["signal"].queue  # Axon's stop sends nothing


def test_stop_from_inside_main_takes_effect_at_the_next_yield() -> None:
    clock = Clock()
    steps: list[int] = []

    class Quitter(Component):
        def main(self) -> Generator[int, None, None]:
            for i in range(10):
                steps.append(i)
                if i == 2:
                    self.stop()
                yield 1

    c = Quitter().activate(Scheduler(clock))
    drive(clock, c)
    assert steps == [0, 1, 2] and outcome(c.finished) is None


def test_stop_before_activate_never_runs_main() -> None:
    clock = Clock()
    ran: list[bool] = []

    class Never(Component):
        def main(self) -> Generator[int, None, None]:
            ran.append(True)
            yield 1

    c = Never()
    c.stop()
    c.activate(Scheduler(clock))
    drive(clock, c)
    assert ran == [] and outcome(c.finished) is None


def test_stop_ends_a_parked_sender() -> None:
    clock = Clock()
    sched = Scheduler(clock)

    class Flood(Component):
        def main(self) -> Generator[int, None, None]:
            i = 0
            while True:
                self.send(i, "outbox")
                i += 1
                yield 1

    flood, idle = Flood(), Component()
    idle.setInboxSize("inbox", 2, park=True)
    flood.link((flood, "outbox"), (idle, "inbox"))
    flood.activate(sched)  # idle is never activated: nobody drains its inbox
    clock.advance(1)
    clock.advance(1)
    assert flood._parkedOn is idle.inboxes["inbox"]
    flood.stop()
    drive(clock, flood)
    assert outcome(flood.finished) is None


@pytest.mark.parametrize("waitsOn", ["get", "deferred"])
def test_stop_ends_an_async_main_waiting(waitsOn: str) -> None:
    clock = Clock()
    closed: list[bool] = []
    never: Deferred[None] = Deferred()

    class Waiter(Component):
        async def main(self) -> None:
            try:
                if waitsOn == "get":
                    await self.get("inbox")
                else:
                    await never
            finally:
                closed.append(True)

    c = Waiter().activate(Scheduler(clock))
    clock.advance(1)
    assert not c.finished.called
    c.stop()
    drive(clock, c)
    assert outcome(c.finished) is None and closed == [True]
    never.callback(None)  # the coroutine is closed: nothing is resumed
    assert closed == [True]


# -- WaitComplete -----------------------------------------------------------------------------


class Framed(Component):
    """Reads a header with one WaitComplete generator, then the body with another."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[Any] = []

    def waitFor(self, count: int) -> Generator[int, None, None]:
        got: list[Any] = []
        while len(got) < count:
            while self.dataReady("inbox") and len(got) < count:
                got.append(self.recv("inbox"))
            if len(got) < count:
                self.pause()  # sleeps the component until a message comes
                yield 1
        self.log.append(tuple(got))

    def main(self) -> Generator[Any, None, str]:
        yield WaitComplete(self.waitFor(2))
        yield WaitComplete(self.nested())
        return "done"

    def nested(self) -> Generator[Any, None, None]:
        yield WaitComplete(self.waitFor(1))
        yield WaitComplete(self.waitFor(3))


def test_waitcomplete_runs_each_generator_in_turn_and_sleeps_in_them() -> None:
    clock = Clock()
    c = Framed().activate(Scheduler(clock))
    box = c.inboxes["inbox"]
    for i in range(6):
        clock.advance(1)
        clock.advance(1)
        assert not c.finished.called
        assert c._paused  # asleep inside a WaitComplete generator, not spinning
        box.deliver(i)
    drive(clock, c)
    assert c.log == [(0, 1), (2,), (3, 4, 5)]
    assert outcome(c.finished) == "done"


def test_an_exception_in_a_waitcomplete_generator_is_raised_at_its_yield() -> None:
    clock = Clock()

    class Catches(Component):
        def bad(self) -> Generator[int, None, None]:
            yield 1
            raise ValueError("bad header")

        def main(self) -> Generator[Any, None, str]:
            try:
                yield WaitComplete(self.bad())
            except ValueError as e:
                return f"caught {e}"
            return "not raised"

    c = Catches().activate(Scheduler(clock))
    drive(clock, c)
    assert outcome(c.finished) == "caught bad header"


def test_an_uncaught_exception_in_a_waitcomplete_generator_fails_the_component() -> None:
    clock = Clock()

    class Fails(Component):
        def bad(self) -> Generator[int, None, None]:
            raise Stopped("from the sub-generator")
            yield 1

        def main(self) -> Generator[Any, None, None]:
            yield WaitComplete(self.bad())

    c = Fails().activate(Scheduler(clock))
    drive(clock, c)
    failure = outcome(c.finished)
    assert failure.check(Stopped)
    kinds = [type(m).__name__ for m in c.outboxes["signal"].queue]
    assert kinds == ["ErrorInformation", "ProducerFinished"]


def test_waitcomplete_needs_a_generator() -> None:
    with pytest.raises(TypeError, match="generator"):
        WaitComplete()


@pytest_twisted.ensureDeferred
async def test_a_threaded_component_runs_the_mainbody_protocol_in_its_thread() -> None:
    class Counter(ThreadedComponent):
        def initialiseComponent(self) -> int:
            self.threads = {threading.current_thread().name}
            self.left = 5
            return 1

        def mainBody(self) -> int:
            self.threads.add(threading.current_thread().name)
            self.send(self.left, "outbox")
            self.left -= 1
            return self.left

        def closeDownComponent(self) -> int:
            self.send(producerFinished(self), "signal")
            return 1

    counter, sink = Counter(), Collector()
    await runComponent(Pipeline(counter, sink), timeout=20)
    assert sink.got == [5, 4, 3, 2, 1]
    assert counter.threads == {f"pcpkit-{counter}"}


@pytest_twisted.ensureDeferred
async def test_stop_tells_a_thread_to_end_where_it_blocks() -> None:
    class Waits(ThreadedComponent):
        def main(self) -> None:
            while True:
                self.pause()  # blocks until a message: only stop() gets it out

    class Floods(ThreadedComponent):
        def main(self) -> None:
            i = 0
            while True:
                self.send(i, "outbox")  # blocks once the idle inbox and the queue are full
                i += 1

    waits, floods, idle = Waits(), Floods(queuelengths=4), Component()
    idle.setInboxSize("inbox", 4)
    floods.link((floods, "outbox"), (idle, "inbox"))
    waits.activate()
    floods.activate()
    # floods is blocked in send: the idle inbox holds 4, the thread's queue 4 more
    await waitUntil(lambda: len(idle.inboxes["inbox"]) == 4, 20, "the idle inbox to fill")
    waits.stop()
    floods.stop()
    assert waits._isStopped() and floods._isStopped()
    assert await runComponent(waits, timeout=20) is None
    assert await runComponent(floods, timeout=20) is None
    # what the thread had queued is not lost: it goes out as the inbox drains
    box = idle.inboxes["inbox"]
    assert box.queue == deque(range(4))
    assert [box.take() for _ in range(4)] == [0, 1, 2, 3]
    await waitUntil(lambda: len(box) == 4, 20, "the queued messages to be delivered")
    assert box.queue == deque(range(4, 8))


def test_a_threaded_component_stopped_before_it_runs_starts_no_thread() -> None:
    ran: list[bool] = []

    class Never(ThreadedComponent):
        def main(self) -> None:
            ran.append(True)

    c = Never()
    c.stop()
    c.activate()
    assert c.finished.called and c._thread is None and ran == []
