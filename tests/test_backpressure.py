"""Back-pressure end to end: bounded inboxes, the bridge to transports, hypothesis."""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from typing import Any

import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from zope.interface.verify import verifyObject

from pcpkit import Component, producerFinished
from pcpkit.bridge import InboxConsumer, OutboxProducer
from pcpkit.chassis import Pipeline
from pcpkit.component import Scheduler
from tests.componentutil import PassThrough, Source
from tests.tcputil import Streamer


class SlowSink(Component):
    """Takes at most ``perTurn`` messages per wake-up and then waits ``delay`` seconds."""

    def __init__(
        self, perTurn: int, delay: float, bound: int, clock: Any = reactor, **argd: Any
    ) -> None:
        super().__init__(**argd)
        self.perTurn = perTurn
        self.delay = delay
        self.bound = bound
        self.clock = clock
        self.got: list[Any] = []
        self.maxQueued = 0

    def main(self) -> Generator[int, None, list[Any]]:
        # A message wakes a paused component; a slow sink goes back to sleep until its time.
        nextAt = 0.0
        while True:
            self.maxQueued = max(self.maxQueued, self.dataReady("inbox"))
            if self.clock.seconds() < nextAt:
                self.pause()
                yield 1
                continue
            for _ in range(self.perTurn):
                if not self.dataReady("inbox"):
                    break
                self.got.append(self.recv("inbox"))
            if self.dataReady("control") and not self.dataReady("inbox"):
                return self.got
            if self.delay:
                nextAt = self.clock.seconds() + self.delay
                self.clock.callLater(self.delay, self.unpause)
                self.pause()
            elif not self.dataReady("inbox"):
                self.pause()
            yield 1


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(0, 400),
    sizes=st.lists(st.integers(1, 20), min_size=1, max_size=4),
    perTurn=st.integers(1, 30),
    delay=st.sampled_from([0.0, 0.001, 0.01]),
)
def test_fast_source_slow_sink_bounded_and_lossless(
    count: int, sizes: list[int], perTurn: int, delay: float
) -> None:
    """
    The scheduler driven by a deterministic ``Clock`` (pure logic, so hypothesis can shrink);
    the real-reactor versions of this are the TCP tests below and test_component.py.
    """
    clock = Clock()
    scheduler = Scheduler(clock)
    stages: list[Component] = [PassThrough() for _ in sizes[:-1]]
    sink = SlowSink(perTurn, delay, sizes[-1], clock=clock)
    chain = [Source(range(count)), *stages, sink]
    for comp, size in zip(chain[1:], sizes, strict=True):
        comp.setInboxSize("inbox", size)
    p = Pipeline(*chain)
    p.activate(scheduler)
    for _ in range(200_000):
        if p.finished.called:
            break
        clock.advance(0.0005)
        for comp, size in zip(chain[1:], sizes, strict=True):
            assert comp.dataReady("inbox") <= size
    assert p.finished.called, "the pipeline stalled"
    assert sink.got == list(range(count))
    assert sink.maxQueued <= sizes[-1]


# -- the bridge with real TCP ------------------------------------------------------------------


class IntoInbox(Protocol):
    """Client side: the transport is the producer for an InboxConsumer."""

    def __init__(self, consumer: InboxConsumer, sink: Component) -> None:
        self.consumer = consumer
        self.sink = sink
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.consumer.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        self.consumer.write(data)

    def connectionLost(self, reason: object = None) -> None:
        self.consumer.unregisterProducer()
        self.sink.inboxes["control"].deliver(producerFinished(self))
        self.closed.callback(None)


@pytest_twisted.ensureDeferred
async def test_transport_feeding_an_inbox_is_paused_and_resumed() -> None:
    sink = SlowSink(perTurn=4, delay=0.002, bound=16)
    sink.setInboxSize("inbox", 16)
    consumer = InboxConsumer(sink, "inbox")
    verifyObject(IConsumer, consumer)
    total = 8 * 1024 * 1024
    factory = Factory.forProtocol(Streamer)
    factory.total = total  # type: ignore[attr-defined]
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    try:
        sink.activate()
        proto = IntoInbox(consumer, sink)
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            Factory.forProtocol(lambda: proto)
        )
        got = await sink.finished.addTimeout(60, reactor)
        await proto.closed
    finally:
        await port.stopListening()
    data = b"".join(got)
    assert len(data) == total
    assert (
        hashlib.sha256(data).digest()
        == hashlib.sha256(Streamer.chunk * (total // len(Streamer.chunk))).digest()
    )
    assert consumer.pauses > 0
    # a transport writes at most one read's worth after being paused
    assert sink.maxQueued <= 16 + 1


class CollectingServer(Protocol):
    received: list[bytes]
    done: Deferred[bytes]

    def connectionMade(self) -> None:
        self.received = []
        # read slowly at first: pause the transport, resume in a moment
        self.transport.pauseProducing()  # type: ignore[union-attr]
        reactor.callLater(0.3, self.transport.resumeProducing)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: object = None) -> None:
        self.done.callback(b"".join(self.received))


@pytest_twisted.ensureDeferred
async def test_component_feeding_a_transport_is_held_back() -> None:
    chunk = b"z" * 65536
    count = 256  # 16 MiB

    class Writer(Component):
        async def main(self) -> int:
            for _ in range(count):
                await self.put(chunk, "outbox")
            return count

    done: Deferred[bytes] = Deferred()

    def make() -> CollectingServer:
        p = CollectingServer()
        p.done = done
        return p

    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(make)
    )
    try:
        client = await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            Factory.forProtocol(Protocol)
        )
        writer = Writer()
        producer = OutboxProducer(writer, "outbox", client.transport, bufferSize=8)
        verifyObject(IPushProducer, producer)
        maxBuffered = 0

        def watch() -> None:
            nonlocal maxBuffered
            maxBuffered = max(maxBuffered, producer.buffered)

        from twisted.internet.task import LoopingCall

        watcher = LoopingCall(watch)
        watcher.start(0.001)
        writer.activate()
        await writer.finished.addTimeout(60, reactor)
        # wait until the sink is drained into the transport
        while producer.buffered:
            await deferLater(reactor, 0.01, lambda: None)
        watcher.stop()
        producer.stop()
        client.transport.loseConnection()
        data = await done.addTimeout(60, reactor)
    finally:
        await port.stopListening()
    assert data == chunk * count
    assert producer.pauses > 0
    assert maxBuffered <= 8


def test_outbox_producer_rejects_str_messages() -> None:
    class Null:
        def registerProducer(self, p: Any, s: bool) -> None:
            self.p = p

        def unregisterProducer(self) -> None:
            pass

        def write(self, data: bytes) -> None:
            raise AssertionError("must not be called")

    comp = Component()
    producer = OutboxProducer(comp, "outbox", Null())
    failures: list[Any] = []
    producer.done.addErrback(failures.append)
    comp.send("text, not bytes")
    producer._run()
    assert producer.stopped
    assert failures and failures[0].check(TypeError)
    assert "not str" in str(failures[0].value)


def test_inbox_consumer_rejects_str_and_double_registration() -> None:
    comp = Component()
    consumer = InboxConsumer(comp)
    try:
        consumer.write("text")  # type: ignore[arg-type]
    except TypeError as e:
        assert "str" in str(e)
    else:
        raise AssertionError("str accepted")

    class P:
        def pauseProducing(self) -> None: ...
        def resumeProducing(self) -> None: ...
        def stopProducing(self) -> None: ...

    consumer.registerProducer(P(), True)
    try:
        consumer.registerProducer(P(), True)
    except RuntimeError as e:
        assert "already has producer" in str(e)
    else:
        raise AssertionError("double registration accepted")


# -- the bridge pauses through pcpkit._pause ---------------------------------------------------


class RecordingProducer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


def test_inbox_consumer_pauses_at_high_resumes_at_low_and_counts_other_pauses() -> None:
    comp = Component()
    comp.setInboxSize("inbox", 4, low=1)
    consumer = InboxConsumer(comp, "inbox")
    producer = RecordingProducer()
    consumer.registerProducer(producer, True)
    for i in range(3):
        consumer.write(b"%d" % i)
    assert producer.calls == [] and not consumer.producerPaused
    consumer.write(b"3")
    consumer.write(b"4")  # a streaming producer may write a little after the pause
    assert producer.calls == ["pause"] and consumer.producerPaused and consumer.pauses == 1
    comp.recv("inbox")
    comp.recv("inbox")
    comp.recv("inbox")  # 2 left: above the low watermark, no flapping
    assert producer.calls == ["pause"]
    # a second party pauses the same producer: draining the box alone does not resume it
    other = consumer.pauser.pause("someone else")
    comp.recv("inbox")
    assert producer.calls == ["pause"] and consumer.producerPaused
    other.unpause()
    assert producer.calls == ["pause", "resume"] and not consumer.producerPaused
    assert consumer.pauses == 1
    comp.recv("inbox")
    for i in range(4):
        consumer.write(b"again %d" % i)
    assert producer.calls == ["pause", "resume", "pause"] and consumer.pauses == 2
    consumer.unregisterProducer()  # the pause the box level held goes with the producer
    assert not consumer.producerPaused


def test_outbox_producer_takes_nothing_while_any_pause_is_held() -> None:
    class Recording:
        def __init__(self) -> None:
            self.written: list[bytes] = []

        def registerProducer(self, p: Any, s: bool) -> None:
            self.producer = p

        def unregisterProducer(self) -> None:
            pass

        def write(self, data: bytes) -> None:
            self.written.append(data)

    comp = Component()
    consumer = Recording()
    producer = OutboxProducer(comp, "outbox", consumer)
    producer.pauseProducing()
    producer.pauseProducing()  # the consumer saying it twice is still one pause
    other = producer.pauser.pause("someone else")
    comp.send(b"a")
    producer._run()
    assert consumer.written == [] and producer.paused and producer.pauses == 1
    producer.resumeProducing()
    producer._run()
    assert consumer.written == [] and producer.paused  # the other pause still holds
    other.unpause()
    producer._run()
    assert consumer.written == [b"a"] and not producer.paused
    producer.stop()
