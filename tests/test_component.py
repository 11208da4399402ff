"""Mailbox components on the reactor: Kamaelia-style programs, async mains, errors."""

from __future__ import annotations

import gc
import sys
import threading
import weakref
from collections.abc import Generator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater

from pcpkit import (
    BoxAlreadyLinked,
    BoxFull,
    Component,
    EmptyBox,
    ErrorInformation,
    ProducerFinished,
    ShutdownMicroprocess,
    UnknownBox,
    noSpaceInBox,
    producerFinished,
)
from pcpkit.chassis import Graphline, Pipeline
from pcpkit.component import Scheduler
from pcpkit.threaded import ThreadedComponent
from tests.componentutil import Collector, PassThrough, Source, Upper, settle
from tests.waitutil import waitUntil


def waitingInSend(thread: threading.Thread) -> bool:
    """Whether ``thread`` waits (on a Condition) inside ``ThreadedComponent.send``."""
    codes = set()
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        codes.add(frame.f_code)
        frame = frame.f_back
    return {ThreadedComponent.send.__code__, threading.Condition.wait.__code__} <= codes


def withTimeout(d: Deferred[Any], seconds: float = 20) -> Deferred[Any]:
    return d.addTimeout(seconds, reactor)


# -- Kamaelia-style programs ------------------------------------------------------------------


class Echo(Component):
    """The DESIGN card's generator component, verbatim."""

    Inboxes = {"inbox": "data", "control": "shutdown messages"}
    Outboxes = {"outbox": "data", "signal": "shutdown messages"}

    def main(self) -> Generator[int, None, None]:
        while not self.dataReady("control"):
            while self.dataReady("inbox"):
                self.send(self.recv("inbox"), "outbox")
            self.pause()
            yield 1
        while self.dataReady("inbox"):
            self.send(self.recv("inbox"), "outbox")
        self.send(self.recv("control"), "signal")


@pytest_twisted.ensureDeferred
async def test_pipeline_of_generators_delivers_in_order_and_shuts_down() -> None:
    sink = Collector()
    source = Source([f"m{i}" for i in range(1000)])
    p = Pipeline(source, Echo(), PassThrough(), sink)
    await withTimeout(p.activate().finished)
    assert sink.got == [f"m{i}" for i in range(1000)]
    assert len(sink.control) == 1 and isinstance(sink.control[0], ProducerFinished)
    assert sink.control[0].caller is source
    assert all(c.finished.called for c in p.childComponents())


@pytest_twisted.ensureDeferred
async def test_graphline_with_self_boxes() -> None:
    sink = Collector()
    g = Graphline(
        linkages={
            ("self", "inbox"): ("echo", "inbox"),
            ("self", "control"): ("echo", "control"),
            ("echo", "outbox"): ("upper", "inbox"),
            ("echo", "signal"): ("upper", "control"),
            ("upper", "outbox"): ("self", "outbox"),
            ("upper", "signal"): ("self", "signal"),
        },
        echo=Echo(),
        upper=Upper(),
    )
    outer = Pipeline(Source(["a", "b", "c"]), g, sink)
    await withTimeout(outer.activate().finished)
    assert sink.got == ["A", "B", "C"]
    assert isinstance(sink.control[0], ProducerFinished)


def test_graphline_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="'nope'"):
        Graphline(linkages={("a", "outbox"): ("nope", "inbox")}, a=Echo())


@pytest_twisted.ensureDeferred
async def test_async_and_generator_and_threaded_mixed_pipeline() -> None:
    class ThreadDouble(ThreadedComponent):
        def main(self) -> None:
            while True:
                while self.dataReady("inbox"):
                    self.send(self.recv("inbox") * 2, "outbox")
                if self.dataReady("control") and not self.dataReady("inbox"):
                    self.send(self.recv("control"), "signal")
                    return
                self.pause(1.0)

    sink = Collector()
    items = [f"x{i}" for i in range(500)]
    p = Pipeline(Source(items), Upper(), ThreadDouble(), PassThrough(), sink)
    for c in p.childComponents()[1:]:
        c.setInboxSize("inbox", 8)
    await withTimeout(p.activate().finished)
    assert sink.got == [i.upper() * 2 for i in items]
    assert isinstance(sink.control[0], ProducerFinished)


@pytest_twisted.ensureDeferred
async def test_async_main_forwards_the_shutdown_it_ended_on() -> None:
    sink = Collector()
    p = Pipeline(Source(["q"]), Upper(), Upper(), sink)
    await withTimeout(p.activate().finished)
    assert sink.got == ["Q"]
    assert isinstance(sink.control[0], ProducerFinished)


@pytest_twisted.ensureDeferred
async def test_get_and_put_helpers_and_return_value() -> None:
    class Adder(Component):
        async def main(self) -> int:
            a = await self.get("inbox")
            b = await self.get("inbox")
            await self.put(a + b, "outbox")
            return a + b

    adder = Adder()
    sink = Collector()
    adder.link((adder, "outbox"), (sink, "inbox"))
    clock = Clock()
    sched = Scheduler(clock)
    adder.activate(sched)
    sink.activate(sched)
    settle(clock)
    # it is waiting, not spinning: nothing is left to run until a message comes
    assert not adder.finished.called and clock.getDelayedCalls() == []
    adder.inboxes["inbox"].deliver(2)
    settle(clock)
    assert not adder.finished.called and clock.getDelayedCalls() == []
    adder.inboxes["inbox"].deliver(40)
    settle(clock)
    assert await withTimeout(adder.finished) == 42
    sink.inboxes["control"].deliver(producerFinished())
    settle(clock)
    assert await withTimeout(sink.finished) == [42]


def test_run_refuses_when_the_reactor_already_runs() -> None:
    # pytest-twisted keeps the reactor running while tests run.
    assert reactor.running
    with pytest.raises(RuntimeError, match="activate"):
        Echo().run()


@pytest_twisted.ensureDeferred
async def test_yield_newComponent_activates() -> None:
    from pcpkit.ipc import newComponent

    sink = Collector()

    class Parent(Component):
        def main(self) -> Generator[Any, None, None]:
            child = Source(["hello"])
            self.link((child, "outbox"), (sink, "inbox"))
            self.link((child, "signal"), (sink, "control"))
            yield newComponent(child, sink)

    await withTimeout(Parent().activate().finished)
    await withTimeout(sink.finished)
    assert sink.got == ["hello"]


# -- links ---------------------------------------------------------------------------------


def test_messages_sent_before_linking_are_delivered_in_order() -> None:
    a, b = Echo(), Collector()
    a.send(1)
    a.send(2)
    a.link((a, "outbox"), (b, "inbox"))
    a.send(3)
    assert [b.recv() for _ in range(3)] == [1, 2, 3]


def test_link_resolves_through_passthroughs_to_the_final_inbox() -> None:
    outer = Pipeline(Echo(), Echo())
    inner = outer.childComponents()[0]
    src = Echo()
    src.link((src, "outbox"), (outer, "inbox"))
    assert src.outboxes["outbox"].final is inner.inboxes["inbox"]
    src.send("x")
    assert inner.dataReady("inbox") == 1 and outer.dataReady("inbox") == 0


def test_unlink_stops_delivery() -> None:
    a, b = Echo(), Collector()
    lk = a.link((a, "outbox"), (b, "inbox"))
    a.send(1)
    a.unlink(thelinkage=lk)
    a.send(2)
    assert b.dataReady() == 1
    assert a.outboxes["outbox"].queue[0] == 2
    # relinking elsewhere moves the held message on
    c = Collector()
    a.link((a, "outbox"), (c, "inbox"))
    assert c.recv() == 2


def test_linking_a_linked_outbox_is_an_error() -> None:
    a, b, c = Echo(), Collector(), Collector()
    a.link((a, "outbox"), (b, "inbox"))
    with pytest.raises(BoxAlreadyLinked, match="already linked"):
        a.link((a, "outbox"), (c, "inbox"))


def test_fan_in_is_allowed() -> None:
    a, b, sink = Echo(), Echo(), Collector()
    a.link((a, "outbox"), (sink, "inbox"))
    b.link((b, "outbox"), (sink, "inbox"))
    a.send("a")
    b.send("b")
    assert [sink.recv(), sink.recv()] == ["a", "b"]


def test_unknown_boxes_and_empty_recv_are_clear_errors() -> None:
    e = Echo()
    with pytest.raises(UnknownBox, match="no outbox 'nope'.*outbox"):
        e.send("x", "nope")
    with pytest.raises(UnknownBox, match="no inbox 'nope'"):
        e.recv("nope")
    with pytest.raises(UnknownBox):
        e.link((e, "nope"), (Echo(), "inbox"))
    with pytest.raises(EmptyBox, match="empty") as info:
        e.recv("inbox")
    assert isinstance(info.value, IndexError)  # Axon code catches IndexError


def test_bounded_inbox_raises_boxfull_with_a_message() -> None:
    a, b = Echo(), Collector()
    b.setInboxSize("inbox", 2)
    a.link((a, "outbox"), (b, "inbox"))
    a.send(1)
    a.send(2)
    with pytest.raises(BoxFull, match="full") as info:
        a.send(3)
    assert noSpaceInBox is BoxFull
    assert info.value.box is b.inboxes["inbox"]
    assert b.dataReady() == 2
    with pytest.raises(ValueError):
        b.setInboxSize("inbox", 0)


# -- errors ----------------------------------------------------------------------------------


class Exploder(Component):
    def main(self) -> Generator[int, None, None]:
        n = 0
        while True:
            while self.dataReady("inbox"):
                self.send(self.recv("inbox"), "outbox")
                n += 1
                if n == 3:
                    raise ValueError("boom at message 3")
            self.pause()
            yield 1


@pytest_twisted.ensureDeferred
async def test_raising_component_signals_and_others_keep_running() -> None:
    bad = Exploder()
    sink = Collector()
    bad.link((bad, "outbox"), (sink, "inbox"))
    bad.link((bad, "signal"), (sink, "control"))
    bystander = Collector()
    other = Source(range(100))
    other.link((other, "outbox"), (bystander, "inbox"))
    other.link((other, "signal"), (bystander, "control"))
    for c in (bad, sink, bystander, other):
        c.activate()
    for i in range(5):
        bad.inboxes["inbox"].deliver(i)
    with pytest.raises(ValueError, match="boom"):
        await withTimeout(bad.finished)
    await withTimeout(sink.finished)
    assert sink.got == [0, 1, 2]
    err = sink.control[0]
    assert isinstance(err, ErrorInformation)
    assert err.caller is bad and isinstance(err.exception, ValueError)
    assert "boom at message 3" in str(err)
    # the sink ended on the ErrorInformation; the ProducerFinished that follows is queued
    assert isinstance(sink.recv("control"), ProducerFinished)
    assert await withTimeout(bystander.finished) == list(range(100))


@pytest_twisted.ensureDeferred
async def test_pipeline_with_a_failing_child_fails_and_stops_the_rest() -> None:
    sink = Collector()
    source = Source(range(10_000))
    p = Pipeline(source, Exploder(), sink)
    p.childComponents()[1].setInboxSize("inbox", 4)
    with pytest.raises(ValueError, match="boom"):
        await withTimeout(p.activate().finished)
    assert sink.got == [0, 1, 2]
    # the source was told to stop rather than left blocked on a dead component's inbox
    assert source.finished.called


@pytest_twisted.ensureDeferred
async def test_shutdown_mid_stream() -> None:
    items = list(range(100_000))

    class StopsMidStream(Collector):
        """Tells the pipeline to stop when it takes its 1,000th message."""

        taken = 0

        def recv(self, boxname: str = "inbox") -> Any:
            msg = super().recv(boxname)
            if boxname == "inbox":
                self.taken += 1
                if self.taken == 1000:
                    p.inboxes["control"].final.deliver(ShutdownMicroprocess())
            return msg

    sink = StopsMidStream()
    source = Source(items)
    p = Pipeline(source, PassThrough(), sink)
    for c in p.childComponents()[1:]:
        c.setInboxSize("inbox", 16)
    p.activate()
    await withTimeout(p.finished)
    assert isinstance(sink.control[0], ShutdownMicroprocess)
    assert sink.got == items[: len(sink.got)]  # a prefix: nothing lost or reordered
    assert 1000 <= len(sink.got) < len(items)


@pytest_twisted.ensureDeferred
async def test_async_main_raising_errbacks_finished() -> None:
    class Bad(Component):
        async def main(self) -> None:
            await self.get("inbox")
            raise RuntimeError("async boom")

    bad = Bad()
    sink = Collector()
    bad.link((bad, "signal"), (sink, "control"))
    bad.activate()
    sink.activate()
    bad.inboxes["inbox"].deliver("go")
    with pytest.raises(RuntimeError, match="async boom"):
        await withTimeout(bad.finished)
    await withTimeout(sink.finished)
    assert isinstance(sink.control[0], ErrorInformation)


@pytest_twisted.ensureDeferred
async def test_threaded_component_exception_is_reported() -> None:
    class BadThread(ThreadedComponent):
        def main(self) -> None:
            raise OSError("thread boom")

    bad = BadThread()
    sink = Collector()
    bad.link((bad, "signal"), (sink, "control"))
    sink.activate()
    bad.activate()
    with pytest.raises(OSError, match="thread boom"):
        await withTimeout(bad.finished)
    await withTimeout(sink.finished)
    assert isinstance(sink.control[0], ErrorInformation)


@pytest_twisted.ensureDeferred
async def test_threaded_send_blocks_while_destination_is_full() -> None:
    release = threading.Event()
    sent: list[int] = []

    class Producer(ThreadedComponent):
        def main(self) -> None:
            for i in range(50):
                self.send(i, "outbox")
                sent.append(i)
            self.send(producerFinished(self), "signal")

    class Gate(Component):
        """Reads nothing until released."""

        def main(self) -> Generator[int, None, list[Any]]:
            got: list[Any] = []
            while not release.is_set():
                self.pause()
                yield 1
            while True:
                while self.dataReady("inbox"):
                    got.append(self.recv("inbox"))
                if self.dataReady("control"):
                    return got
                self.pause()
                yield 1

    prod = Producer(queuelengths=4)
    gate = Gate()
    gate.setInboxSize("inbox", 5)
    Pipeline(prod, gate).activate()
    (thread,) = [t for t in threading.enumerate() if t.name == f"pcpkit-{prod}"]
    # 5 messages in the inbox, 4 in the thread's queue: sends 0 to 8 returned, and the
    # thread waits inside send 9 (seen in its stack) for room
    await waitUntil(
        lambda: len(sent) == 9 and gate.dataReady("inbox") == 5 and waitingInSend(thread),
        20,
        "the thread to wait in its tenth send",
    )
    assert sent == list(range(9))
    release.set()
    gate.unpause()
    assert await withTimeout(gate.finished) == list(range(50))
    await withTimeout(prod.finished)


# -- scheduler -------------------------------------------------------------------------------


class Spinner(Component):
    """Never pauses: the worst neighbour."""

    def main(self) -> Generator[int, None, None]:
        self.spins = 0
        while not self.dataReady("control"):
            self.spins += 1
            yield 1


@pytest_twisted.ensureDeferred
async def test_busy_component_does_not_starve_timers_or_tcp() -> None:
    from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
    from twisted.internet.protocol import Factory, Protocol

    spinner = Spinner()
    spinner.activate()
    try:
        # a timer still fires on time (give it generous slack on a shared machine)
        start = reactor.seconds()
        await deferLater(reactor, 0.05, lambda: None)
        assert reactor.seconds() - start < 1.0

        class EchoP(Protocol):
            def dataReceived(self, data: bytes) -> None:
                self.transport.write(data)  # type: ignore[union-attr]

        class Client(Protocol):
            def connectionMade(self) -> None:
                self.got = b""
                self.done: Deferred[bytes] = Deferred()
                self.transport.write(b"ping" * 1000)  # type: ignore[union-attr]

            def dataReceived(self, data: bytes) -> None:
                self.got += data
                if len(self.got) == 4000:
                    self.done.callback(self.got)

        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(EchoP)
        )
        try:
            client = await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
                Factory.forProtocol(Client)
            )
            assert await withTimeout(client.done, 10) == b"ping" * 1000
            client.transport.loseConnection()
        finally:
            await port.stopListening()
        assert spinner.spins > 100
    finally:
        spinner.inboxes["control"].deliver(producerFinished())
        await withTimeout(spinner.finished)


@pytest_twisted.ensureDeferred
async def test_idle_components_use_no_cpu() -> None:
    # Paused components leave nothing on the scheduler or the reactor (a Clock here): no
    # poll, no timer, so an idle program costs no CPU until a message comes.
    clock = Clock()
    sched = Scheduler(clock)
    comps = [Collector() for _ in range(20)] + [Upper() for _ in range(20)]
    for c in comps:
        c.activate(sched)
    settle(clock)
    assert clock.getDelayedCalls() == [] and not sched.runQueue and sched.pending is None
    comps[0].inboxes["inbox"].deliver("x")
    comps[20].inboxes["inbox"].deliver("y")
    settle(clock)
    assert comps[0].got == ["x"] and comps[20].outboxes["outbox"].queue[0] == "Y"
    assert clock.getDelayedCalls() == [] and not sched.runQueue and sched.pending is None
    for c in comps:
        c.inboxes["control"].deliver(producerFinished())
    settle(clock)
    for c in comps:
        await withTimeout(c.finished)


@pytest_twisted.ensureDeferred
async def test_async_sender_blocked_on_a_dead_component_is_stopped() -> None:
    class AsyncSource(Component):
        async def main(self) -> None:
            for i in range(100):
                await self.put(i, "outbox")
            await self.put(producerFinished(self), "signal")

    class DiesLater(Component):
        async def main(self) -> None:
            await deferLater(reactor, 0.1, lambda: None)
            raise ValueError("boom")

    src, bad, sink = AsyncSource(), DiesLater(), Collector()
    bad.setInboxSize("inbox", 4)
    p = Pipeline(src, bad, sink)
    with pytest.raises(ValueError, match="boom"):
        await withTimeout(p.activate().finished, 10)
    # the source was waiting in put() on the dead component's full inbox: it was stopped
    assert await withTimeout(src.finished, 1) is None
    assert isinstance(src.shutdownMessage, ShutdownMicroprocess)


def test_socketShutdown_is_a_producerFinished_as_in_kamaelia() -> None:
    from pcpkit import SocketShutdown

    assert isinstance(SocketShutdown(), ProducerFinished)


@pytest_twisted.ensureDeferred
async def test_message_delivered_during_own_step_before_pause_is_not_lost() -> None:
    class SelfFeeder(Component):
        def main(self) -> Generator[int, None, list[Any]]:
            got: list[Any] = []
            # deliver to our own inbox during our step (as a Deferred callback might) ...
            self.inboxes["inbox"].deliver("early")
            while not got:
                while self.dataReady("inbox"):
                    got.append(self.recv("inbox"))
                if got:
                    break
                self.pause()  # ... an Axon loop that pauses before looking
                yield 1
            return got

    class LatePauser(Component):
        def main(self) -> Generator[int, None, str]:
            self.link((self, "outbox"), (self, "inbox"))
            self.send("to myself", "outbox")
            self.pause()
            yield 1
            return str(self.recv("inbox"))

    assert await withTimeout(SelfFeeder().activate().finished, 5) == ["early"]
    assert await withTimeout(LatePauser().activate().finished, 5) == "to myself"


def test_outbox_isFull_looks_at_the_inbox_it_leads_to_and_wakes_its_owner() -> None:
    """Axon's ``outbox.isFull()``: the destination's bound; asked so, the owner is woken."""
    sender, taker = Component(), Component()  # not activated: the boxes are what is tested
    taker.inboxes["inbox"].setSize(3)
    sender.link((sender, "outbox"), (taker, "inbox"))
    outbox = sender.outboxes["outbox"]
    for i in range(3):
        assert not outbox.isFull()
        sender.send(i, "outbox")
    assert outbox.isFull() and len(taker.inboxes["inbox"]) == 3
    woken: list[str] = []
    taker.inboxes["inbox"].waiters.append(lambda: woken.append("other"))
    assert taker.inboxes["inbox"].waiters.count(sender._wake) == 1  # registered by isFull
    taker.recv("inbox")
    assert woken == []  # above the low watermark (1): not yet
    taker.recv("inbox")
    assert woken == ["other"] and sender._wake not in taker.inboxes["inbox"].waiters
    # a closed inbox (its owner has finished) takes what is sent and drops it: never full
    for i in range(2):
        sender.send(i, "outbox")
    assert outbox.isFull()
    taker.inboxes["inbox"].close()
    assert not outbox.isFull()


def test_a_finished_component_releases_the_links_it_made_from_its_outboxes() -> None:
    """
    Short-lived components that link themselves to a long-lived inbox, send and finish: as in
    Axon, their links go with them, so the inbox does not keep every one of them alive.
    """
    clock = Clock()
    scheduler = Scheduler(clock)
    sink = Collector()
    sink.activate(scheduler)

    class Job(Component):
        def main(self) -> Generator[int, None, None]:
            self.link((self, "outbox"), (sink, "inbox"))
            self.send(self.id, "outbox")
            yield 1

    jobs = [Job() for _ in range(50)]
    refs = [weakref.ref(j) for j in jobs]
    ids = [j.id for j in jobs]
    for j in jobs:
        j.activate(scheduler)
    settle(clock)
    assert all(j.finished.called for j in jobs)
    assert sink.inboxes["inbox"].sources == []
    assert all(j.postoffice == [] for j in jobs)
    del jobs, j
    gc.collect()
    assert [r for r in refs if r() is not None] == []
    assert sink.got == ids  # everything they sent arrived
    sink.inboxes["control"].deliver(ShutdownMicroprocess())
    settle(clock)


def test_link_pipewidth_and_synchronous_give_the_sink_an_axon_bound() -> None:
    a, b, c = Component(), Component(), Component()
    a.link((a, "outbox"), (b, "inbox"), pipewidth=2)
    a.link((a, "signal"), (c, "control"), synchronous=True)
    assert b.inboxes["inbox"].getSize() == 2 and not b.inboxes["inbox"].parking
    assert c.inboxes["control"].getSize() == 1
    a.send(1, "outbox")
    a.send(2, "outbox")
    with pytest.raises(BoxFull):
        a.send(3, "outbox")
    b._deliver("direct", "control")
    assert b.recv("control") == "direct"
