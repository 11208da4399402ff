"""Graphline, Pipeline and children as Kamaelia documents them (shutdown fan-out, signal when
done, boxes named in linkages, parents woken by their children)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from pcpkit import Component, ProducerFinished, ShutdownMicroprocess, producerFinished
from pcpkit.chassis import Graphline, Pipeline
from pcpkit.component import UnknownBox
from tests.componentutil import Collector, Source, Upper


def withTimeout(d: Deferred[Any], seconds: float = 20) -> Deferred[Any]:
    return d.addTimeout(seconds, reactor)


class Pinger(Component):
    """Sends each of ``tosend`` out of ``box`` (Kamaelia's shutdown demo)."""

    def __init__(self, tosend: list[Any], box: str = "signal", **argd: Any) -> None:
        super().__init__(**argd)
        self.tosend = tosend
        self.box = box

    def main(self) -> Generator[int, None, None]:
        for msg in self.tosend:
            self.send(msg, self.box)
            yield 1


class Waiter(Component):
    """Waits for any message on control, records it, passes it on along signal."""

    def __init__(self, **argd: Any) -> None:
        super().__init__(**argd)
        self.got: list[Any] = []

    def main(self) -> Generator[int, None, None]:
        while not self.dataReady("control"):
            self.pause()
            yield 1
        msg = self.recv("control")
        self.got.append(msg)
        self.send(msg, "signal")


# -- shutdown fan-out ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_control_reaches_every_child_whose_control_is_not_linked() -> None:
    waiters = [Waiter(), Waiter(), Waiter()]
    g = Graphline(
        TO_SHUTDOWN1=waiters[0], TO_SHUTDOWN2=waiters[1], TO_SHUTDOWN3=waiters[2], linkages={}
    )
    finished = producerFinished()
    sink = Collector()
    p = Pipeline(Pinger([finished]), g, sink)
    await withTimeout(p.activate().finished)
    assert [w.got for w in waiters] == [[finished]] * 3
    # ... and the graphline signals the next stage once its children are done
    assert len(sink.control) == 1 and isinstance(sink.control[0], ProducerFinished)
    assert sink.control[0].caller is g


@pytest_twisted.ensureDeferred
async def test_linked_controls_are_left_alone() -> None:
    waiters = [Waiter(), Waiter(), Waiter()]
    g = Graphline(
        TO_SHUTDOWN1=waiters[0],
        TO_SHUTDOWN2=waiters[1],
        TO_SHUTDOWN3=waiters[2],
        linkages={
            ("TO_SHUTDOWN1", "signal"): ("TO_SHUTDOWN2", "control"),
            ("TO_SHUTDOWN2", "signal"): ("TO_SHUTDOWN3", "control"),
        },
    )
    assert g.controlTargets == [waiters[0]]
    finished = producerFinished()
    await withTimeout(Pipeline(Pinger([finished]), g, Collector()).activate().finished)
    # one copy each: the first from the graphline, the others along the chain
    assert [w.got for w in waiters] == [[finished]] * 3


@pytest_twisted.ensureDeferred
async def test_control_passed_through_makes_the_user_responsible() -> None:
    w1, w2 = Waiter(), Waiter()
    g = Graphline(W1=w1, W2=w2, linkages={("self", "control"): ("W1", "control")})
    assert g.controlTargets == [w2]  # would be, but the pass-through turns fan-out off
    sink = Collector()
    p = Pipeline(Pinger([producerFinished()]), g, sink)
    p.activate()
    await withTimeout(w1.finished)
    assert not w2.got and not w2.finished.called and not p.finished.called
    w2.inboxes["control"].deliver(ShutdownMicroprocess())
    await withTimeout(p.finished)
    assert isinstance(sink.control[0], ProducerFinished)


@pytest_twisted.ensureDeferred
async def test_shutdownmicroprocess_is_passed_on_instead_of_producerfinished() -> None:
    stop = ShutdownMicroprocess()
    w = Waiter()
    sink = Collector()
    await withTimeout(
        Pipeline(Pinger([stop]), Graphline(W=w, linkages={}), sink).activate().finished
    )
    assert w.got == [stop]
    assert sink.control == [stop]


# -- signal when done ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_graphline_signals_producerfinished_when_its_children_are_done() -> None:
    g = Graphline(SRC=Source(["a", "b"]), linkages={("SRC", "outbox"): ("self", "outbox")})
    sink = Collector()
    await withTimeout(Pipeline(g, sink).activate().finished)
    assert sink.got == ["a", "b"]
    assert len(sink.control) == 1 and sink.control[0].caller is g


@pytest_twisted.ensureDeferred
async def test_graphline_with_signal_linked_adds_nothing() -> None:
    src = Source(["a"])
    g = Graphline(
        SRC=src,
        linkages={("SRC", "outbox"): ("self", "outbox"), ("SRC", "signal"): ("self", "signal")},
    )
    sink = Collector()
    p = Pipeline(g, sink)
    await withTimeout(p.activate().finished)
    assert sink.got == ["a"]
    # the child's own message and nothing else: nothing more is waiting in the collector
    assert len(sink.control) == 1 and sink.control[0].caller is src
    assert not sink.dataReady("control")


@pytest_twisted.ensureDeferred
async def test_nested_graphlines_stop_the_stage_after_them() -> None:
    inner = Graphline(W=Waiter(), linkages={})
    outer = Graphline(INNER=inner, linkages={})
    sink = Collector()
    p = Pipeline(Pinger([producerFinished()]), outer, sink)
    await withTimeout(p.activate().finished)
    assert sink.control[0].caller is outer


# -- boxes named in linkages --------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_boxes_named_in_linkages_are_created() -> None:
    g = Graphline(
        V=Upper(),
        A=Upper(),
        linkages={
            ("self", "video"): ("V", "inbox"),
            ("self", "audio"): ("A", "inbox"),
            ("V", "outbox"): ("self", "vout"),
            ("A", "outbox"): ("self", "aout"),
        },
    )
    assert {"video", "audio", "inbox", "control"} <= set(g.inboxes)
    assert {"vout", "aout", "outbox", "signal"} <= set(g.outboxes)
    assert "video" not in g.outboxes and "vout" not in g.inboxes
    vsink, asink = Collector(), Collector()
    top = Graphline(
        FEEDV=Source(["v1", "v2"]),
        FEEDA=Source(["a1"]),
        G=g,
        VS=vsink,
        AS=asink,
        linkages={
            ("FEEDV", "outbox"): ("G", "video"),
            ("FEEDA", "outbox"): ("G", "audio"),
            ("FEEDV", "signal"): ("G", "control"),
            ("G", "vout"): ("VS", "inbox"),
            ("G", "aout"): ("AS", "inbox"),
            ("G", "signal"): ("VS", "control"),
        },
    )
    top.activate()
    await withTimeout(vsink.finished)
    assert vsink.got == ["V1", "V2"] and asink.got == ["A1"]
    top.inboxes["control"].deliver(ShutdownMicroprocess())  # fan-out reaches AS
    await withTimeout(top.finished)
    # a second graphline of the same class does not inherit the first one's boxes
    assert "video" not in Graphline(linkages={}).inboxes


def test_unknown_box_on_a_child_is_still_an_error() -> None:
    with pytest.raises(UnknownBox):
        Graphline(V=Upper(), linkages={("self", "video"): ("V", "nosuchbox")})


# -- children -----------------------------------------------------------------------------------


class AxonDocParent(Component):
    """The example of Axon's Component docstring, with a Source and a Collector."""

    def __init__(self, **argd: Any) -> None:
        super().__init__(**argd)
        self.src = Source(["x", "y"])
        self.dst = Collector()
        self.wakeups = 0

    def main(self) -> Generator[int, None, str]:
        src, dst = self.src, self.dst
        lnk = self.link((src, "outbox"), (dst, "inbox"))
        self.link((src, "signal"), (dst, "control"))
        self.addChildren(src, dst)  # we will be woken if they terminate
        src.activate()
        dst.activate()
        while not dst._isStopped() and not src._isStopped():
            self.pause()
            yield 1
            self.wakeups += 1
        self.unlink(thelinkage=lnk)
        self.removeChild(src)
        self.removeChild(dst)
        return "done"


@pytest_twisted.ensureDeferred
async def test_axon_docstring_example_with_isStopped_ends() -> None:
    parent = AxonDocParent()
    assert not parent._isStopped()
    assert await withTimeout(parent.activate().finished) == "done"
    assert parent._isStopped() and parent.src._isStopped()
    await withTimeout(parent.dst.finished)
    assert parent.dst.got == ["x", "y"]
    assert parent.childComponents() == []


@pytest_twisted.ensureDeferred
async def test_parent_is_woken_by_each_child_that_finishes() -> None:
    class Parent(Component):
        def main(self) -> Generator[int, None, int]:
            kids = [Pinger(["a"], "outbox"), Pinger(["b", "c", "d"], "outbox")]
            self.addChildren(*kids)
            for k in kids:
                k.activate()
            seen = 0
            while seen < len(kids):
                self.pause()
                yield 1
                seen = sum(k._isStopped() for k in kids)
            return seen

    assert await withTimeout(Parent().activate().finished) == 2


@pytest_twisted.ensureDeferred
async def test_failed_child_is_stopped_too() -> None:
    class Boom(Component):
        def main(self) -> Generator[int, None, None]:
            yield 1
            raise RuntimeError("boom")

    boom = Boom()
    boom.finished.addErrback(lambda f: None)
    parentDone: list[bool] = []

    class Parent(Component):
        def main(self) -> Generator[int, None, None]:
            self.addChildren(boom)
            boom.activate()
            while not boom._isStopped():
                self.pause()
                yield 1
            parentDone.append(True)

    await withTimeout(Parent().activate().finished)
    assert parentDone == [True] and boom._isStopped()


@pytest_twisted.ensureDeferred
async def test_a_childs_failure_reaches_whoever_awaits_it_in_a_pipeline() -> None:
    """
    The chassis consumed a failed child's error, so ``await child.finished`` on a child of a
    Pipeline got ``None``: a FileWriter that hit a full disk looked like a success.
    """

    class Boom(Component):
        def main(self) -> Generator[int, None, None]:
            while not self.dataReady("inbox"):
                self.pause()
                yield 1
            raise OSError(28, "No space left on device")

    boom = Boom()
    pipe = Pipeline(Source([1, 2, 3]), boom)
    pipe.activate()
    with pytest.raises(OSError, match="No space left"):
        await withTimeout(boom.finished)
    with pytest.raises(OSError, match="No space left"):
        await withTimeout(pipe.finished)
