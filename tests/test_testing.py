"""pcpkit.testing under pytest-twisted: the collector, the recording fakes, runComponent."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, cast

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, TimeoutError
from twisted.internet.interfaces import IConsumer, IPullProducer, IPushProducer
from twisted.internet.task import Clock, deferLater
from zope.interface.verify import verifyObject

from pcpkit import (
    Component,
    ErrorInformation,
    ProducerFinished,
    ShutdownMicroprocess,
    UnknownBox,
    producerFinished,
)
from pcpkit._twisted import getReactor
from pcpkit.bridge import InboxConsumer, OutboxProducer
from pcpkit.chassis import Pipeline
from pcpkit.component import Scheduler
from pcpkit.pcp import ProducerConsumerProxy
from pcpkit.testing import (
    MessageCollector,
    MissingMessages,
    RecordingConsumer,
    RecordingProducer,
    runComponent,
)
from tests.componentutil import Source, Upper, settle


def pendingCalls() -> list[Any]:
    return [c for c in getReactor().getDelayedCalls() if c.active()]


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await deferLater(reactor, 0, lambda: None)


class Failing(Component):
    def main(self) -> Generator[int, None, None]:
        yield 1
        raise ValueError("planned failure")


class Forever(Component):
    """Waits for a message that never comes (paused: costs nothing, leaves nothing)."""

    def main(self) -> Generator[int, None, None]:
        while not self.dataReady("control"):
            self.pause()
            yield 1
        self.recv("control")


class ByteSource(Component):
    """Puts each chunk on its outbox, waiting while the destination is full."""

    def __init__(self, chunks: list[bytes], **argd: Any) -> None:
        super().__init__(**argd)
        self.chunks = chunks

    async def main(self) -> int:
        for chunk in self.chunks:
            await self.put(chunk, "outbox")
        return len(self.chunks)


# -- MessageCollector -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_collector_records_a_pipeline_and_ends_on_its_shutdown() -> None:
    sink = MessageCollector()
    source = Source(["a", "b", "c"])
    result = await runComponent(Pipeline(source, Upper(), sink))
    assert result is None  # a Pipeline's own result
    assert sink.messages == ["A", "B", "C"]
    assert len(sink.controlMessages) == 1
    shutdownMsg = sink.controlMessages[0]
    assert isinstance(shutdownMsg, ProducerFinished) and shutdownMsg.caller is source
    assert sink.shutdownMessage is shutdownMsg
    assert sink.finished.called and sink.finished.result is sink.messages
    assert sink.history == [
        ("inbox", "A"),
        ("inbox", "B"),
        ("inbox", "C"),
        ("control", shutdownMsg),
    ]


@pytest_twisted.ensureDeferred
async def test_collector_finished_fires_with_the_inbox_list() -> None:
    sink = MessageCollector()
    sink.inboxes["inbox"].deliver(1)
    sink.inboxes["inbox"].deliver(2)
    sink.inboxes["control"].deliver(ShutdownMicroprocess())
    assert await runComponent(sink) == [1, 2]


@pytest_twisted.ensureDeferred
async def test_collector_extra_inboxes_and_non_shutdown_control() -> None:
    sink = MessageCollector("torrent-inbox", "other")
    assert set(sink.inboxes) == {"inbox", "control", "torrent-inbox", "other"}
    sink.activate()
    err = ErrorInformation(message="just so you know")
    sink.inboxes["torrent-inbox"].deliver("t1")
    sink.inboxes["control"].deliver(err)
    sink.inboxes["other"].deliver("o1")
    assert await sink.waitFor(1, "torrent-inbox", timeout=5) == ["t1"]
    assert await sink.waitFor(1, "control", timeout=5) == [err]
    assert not sink.finished.called  # ErrorInformation only informs
    sink.inboxes["torrent-inbox"].deliver("t2")
    sink.inboxes["control"].deliver(producerFinished())
    await runComponent(sink, timeout=5)
    assert sink.received["torrent-inbox"] == ["t1", "t2"]
    assert sink.received["other"] == ["o1"]
    assert sink.controlMessages[0] is err
    assert isinstance(sink.controlMessages[1], ProducerFinished)


def test_collector_rejects_bad_names() -> None:
    with pytest.raises(TypeError, match="str"):
        MessageCollector(3)  # type: ignore[arg-type]
    with pytest.raises(UnknownBox, match="no inbox 'nope'"):
        MessageCollector().waitFor(1, "nope")
    with pytest.raises(UnknownBox):
        MessageCollector().bytes("nope")
    with pytest.raises(ValueError):
        MessageCollector().waitFor(-1)


@pytest_twisted.ensureDeferred
async def test_waitFor_fires_at_count_with_a_snapshot() -> None:
    sink = MessageCollector()
    sink.activate()
    waiting = sink.waitFor(3)
    already = sink.waitFor(0)
    assert already.called
    for i in range(2):
        sink.inboxes["inbox"].deliver(i)
    await turns()
    assert not waiting.called
    sink.inboxes["inbox"].deliver(2)
    sink.inboxes["inbox"].deliver(3)
    got = await waiting
    assert got == [0, 1, 2, 3]  # at least three: all that had arrived
    sink.inboxes["inbox"].deliver(4)
    await turns()
    assert got == [0, 1, 2, 3]  # a copy, not the live list
    assert await sink.waitFor(2) == [0, 1, 2, 3, 4]  # enough already: at once
    sink.stop()
    assert await sink.finished == [0, 1, 2, 3, 4]


@pytest_twisted.ensureDeferred
async def test_waitFor_times_out_cleanly() -> None:
    sink = MessageCollector()
    sink.activate()
    sink.inboxes["inbox"].deliver("only one")
    before = len(pendingCalls())
    with pytest.raises(TimeoutError, match=r"1 of 2 messages in 'inbox' after 0.05 seconds"):
        await sink.waitFor(2, timeout=0.05)
    assert len(pendingCalls()) <= before
    # a wait that succeeds cancels its timeout at once
    d = sink.waitFor(2, timeout=30)
    sink.inboxes["inbox"].deliver("two")
    await d
    assert not [c for c in pendingCalls() if c.getTime() > getReactor().seconds() + 20]
    sink.stop()
    await sink.finished


@pytest_twisted.ensureDeferred
async def test_waitFor_fails_when_the_collector_ends_short() -> None:
    sink = MessageCollector()
    sink.activate()
    waiting = sink.waitFor(5, timeout=30)
    sink.inboxes["inbox"].deliver("x")
    sink.inboxes["control"].deliver(producerFinished())
    with pytest.raises(MissingMessages, match=r"finished with 1 of the 5 messages"):
        await waiting
    with pytest.raises(MissingMessages):
        await sink.waitFor(2)  # after it has finished: at once


@pytest_twisted.ensureDeferred
async def test_waitFor_can_be_cancelled() -> None:
    sink = MessageCollector()
    sink.activate()
    waiting = sink.waitFor(1, timeout=30)
    waiting.cancel()
    with pytest.raises(CancelledError):
        await waiting
    sink.stop()
    await sink.finished


@pytest_twisted.ensureDeferred
async def test_stopOnShutdown_false_keeps_recording_until_stop() -> None:
    sink = MessageCollector(stopOnShutdown=False)
    sink.activate()
    sink.inboxes["control"].deliver(producerFinished())
    sink.inboxes["inbox"].deliver("after the shutdown")
    await sink.waitFor(1, timeout=5)
    await turns()
    assert not sink.finished.called
    assert isinstance(sink.controlMessages[0], ProducerFinished)
    sink.inboxes["inbox"].deliver("queued at stop")
    sink.stop()
    assert await sink.finished == ["after the shutdown", "queued at stop"]
    assert sink.shutdownMessage is None


@pytest_twisted.ensureDeferred
async def test_bytes_joins_and_refuses_non_bytes() -> None:
    sink = MessageCollector()
    for m in (b"ab", bytearray(b"cd"), memoryview(b"ef")):
        sink.inboxes["inbox"].deliver(m)
    sink.inboxes["control"].deliver(producerFinished())
    await runComponent(sink)
    assert sink.bytes() == b"abcdef"
    sink.received["inbox"].append("text")
    with pytest.raises(TypeError, match=r"message 3 in 'inbox'.* is str, not bytes"):
        sink.bytes()


@pytest_twisted.ensureDeferred
async def test_collector_back_pressure_with_a_bounded_inbox() -> None:
    sink = MessageCollector()
    sink.setInboxSize("inbox", 4)
    source = Source(range(100))
    await runComponent(Pipeline(source, sink))
    assert sink.messages == list(range(100))
    assert source.fullCount > 0  # the bound was felt


@pytest_twisted.ensureDeferred
async def test_what_a_waitFor_callback_sends_before_a_shutdown_is_recorded() -> None:
    # The continuation of ``await waitFor(...)`` runs inside the collector's step.
    sink = MessageCollector("extra")
    sink.activate()
    sink.inboxes["extra"].deliver("e")
    await sink.waitFor(1, "extra", timeout=5)
    sink.inboxes["inbox"].deliver("late 1")
    sink.inboxes["inbox"].deliver("late 2")
    sink.inboxes["control"].deliver(producerFinished())
    assert await runComponent(sink, timeout=5) == ["late 1", "late 2"]
    assert [box for box, _ in sink.history] == ["extra", "inbox", "inbox", "control"]


@pytest_twisted.ensureDeferred
async def test_collector_fed_by_an_endless_producer_does_not_starve_the_reactor() -> None:
    class Endless:
        """A push producer that writes until paused, for ever."""

        def __init__(self) -> None:
            self.paused = self.stopped = False
            self.consumer: InboxConsumer | None = None
            self.n = 0

        def pauseProducing(self) -> None:
            self.paused = True

        def resumeProducing(self) -> None:
            self.paused = False
            while not self.paused and not self.stopped and self.consumer is not None:
                self.n += 1
                self.consumer.write(b"x")

        def stopProducing(self) -> None:
            self.stopped = True

    sink = MessageCollector()
    sink.setInboxSize("inbox", 8)
    producer = Endless()
    producer.consumer = consumer = InboxConsumer(sink, "inbox")
    consumer.registerProducer(cast(IPushProducer, producer), True)
    producer.resumeProducing()
    sink.activate()
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1

    await deferLater(reactor, 0.001, tick)  # the reactor still gets its turns
    got = await sink.waitFor(5000, timeout=10)
    assert len(got) >= 5000 and ticks == 1
    producer.stopProducing()
    consumer.unregisterProducer()
    sink.stop()
    assert len(await sink.finished) <= producer.n


# -- runComponent -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_runComponent_returns_main_result_and_leaves_no_timer() -> None:
    class Answer(Component):
        async def main(self) -> int:
            return 42

    c = Answer()
    assert await runComponent(c, timeout=30) == 42
    assert not pendingCalls()  # the 30 s timeout was cancelled
    assert c.finished.result == 42  # a result stays available


@pytest_twisted.ensureDeferred
async def test_runComponent_fails_with_the_component_exception() -> None:
    c = Failing()
    with pytest.raises(ValueError, match="planned failure"):
        await runComponent(c)
    await turns()
    assert not pendingCalls()
    assert c.finished.result is None  # the failure was handed over, not left unhandled


@pytest_twisted.ensureDeferred
async def test_runComponent_timeout_names_component_and_cleans_up() -> None:
    c = Forever()
    with pytest.raises(TimeoutError) as info:
        await runComponent(c, timeout=0.05)
    assert repr(c) in str(info.value) and "0.05 seconds" in str(info.value)
    assert not pendingCalls()  # the conftest also checks this after the test
    assert not c.finished.called  # left as it is ...
    c.inboxes["control"].deliver(ShutdownMicroprocess())  # ... and can still be ended
    await c.finished


@pytest_twisted.ensureDeferred
async def test_runComponent_with_a_clock_and_no_timeout() -> None:
    clock = Clock()
    c = Forever()
    d = runComponent(c, timeout=5, clock=clock)
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.2)
    with pytest.raises(TimeoutError, match="5 seconds"):
        await d
    assert not clock.getDelayedCalls()

    c2 = Forever()
    d2 = runComponent(c2, timeout=None)
    await turns()
    assert not d2.called and not pendingCalls()
    c2.inboxes["control"].deliver(ShutdownMicroprocess())
    assert await d2 is None


@pytest_twisted.ensureDeferred
async def test_runComponent_cancel_and_bad_argument() -> None:
    c = Forever()
    d = runComponent(c, timeout=30)
    d.cancel()
    with pytest.raises(CancelledError):
        await d
    await turns()
    assert not pendingCalls()  # the 30 s timeout went with it
    c.inboxes["control"].deliver(ShutdownMicroprocess())
    await c.finished
    with pytest.raises(TypeError, match="Component"):
        runComponent("not a component")  # type: ignore[arg-type]


# -- RecordingConsumer / RecordingProducer ----------------------------------------------------


def test_fakes_provide_their_interfaces() -> None:
    assert verifyObject(IConsumer, RecordingConsumer())
    push = RecordingProducer()
    assert verifyObject(IPushProducer, push)
    pull = RecordingProducer(streaming=False)
    assert verifyObject(IPullProducer, pull)
    assert not IPushProducer.providedBy(pull)


def test_consumer_records_writes_and_calls() -> None:
    consumer = RecordingConsumer()
    producer = RecordingProducer()
    consumer.registerProducer(producer, True)
    with pytest.raises(RuntimeError, match="already has producer"):
        consumer.registerProducer(RecordingProducer(), True)
    buf = bytearray(b"xy")
    consumer.write(b"ab")
    consumer.write(buf)
    consumer.writeSequence([b"c", memoryview(b"d")])
    buf[:] = b"ZZ"  # copied when written
    assert consumer.writes == [b"ab", b"xy", b"c", b"d"]
    assert consumer.data == b"abxycd" and consumer.size == 6
    with pytest.raises(TypeError, match="not str.*encode"):
        consumer.write("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not int"):
        consumer.write(3)  # type: ignore[arg-type]
    assert consumer.producer is producer and consumer.streaming is True
    consumer.unregisterProducer()
    assert consumer.calls == ["registerProducer", "unregisterProducer"]
    assert consumer.producer is None and consumer.streaming is True
    with pytest.raises(RuntimeError, match="no producer"):
        consumer.resumeProducer()


def test_producer_records_flow_control_calls() -> None:
    producer = RecordingProducer()
    producer.pauseProducing()
    assert producer.paused
    producer.resumeProducing()
    producer.stopProducing()
    assert producer.calls == ["pauseProducing", "resumeProducing", "stopProducing"]
    assert not producer.paused and producer.stopped and producer.done.called


def test_push_producer_drives_a_consumer_that_pauses_after_n_bytes() -> None:
    consumer = RecordingConsumer(pauseAfter=10)
    producer = RecordingProducer([b"12345"] * 5)
    done = producer.startProducing(consumer)
    assert consumer.data == b"1234512345" and producer.paused
    assert producer.calls == ["pauseProducing"] and consumer.pauses == 1
    consumer.resumeProducer()
    assert consumer.size == 20 and producer.paused
    consumer.pauseAfter = None
    consumer.resumeProducer()
    assert consumer.data == b"12345" * 5 and done.called
    assert producer.calls == ["pauseProducing", "resumeProducing"] * 2
    assert consumer.calls == ["registerProducer", "unregisterProducer"]
    assert producer.remaining == []


def test_pull_producer_writes_one_chunk_per_resume() -> None:
    consumer = RecordingConsumer(pauseAfter=1)  # ignored: a pull producer is not paused
    producer = RecordingProducer([b"a", b"b"], streaming=False, unregisterWhenDone=False)
    producer.startProducing(consumer)
    assert consumer.streaming is False and consumer.writes == []
    consumer.resumeProducer()
    assert consumer.writes == [b"a"] and producer.remaining == [b"b"]
    with pytest.raises(RuntimeError, match="pull producer"):
        consumer.pauseProducer()
    consumer.resumeProducer()
    assert consumer.writes == [b"a", b"b"] and producer.done.called
    assert consumer.calls == ["registerProducer"]  # unregisterWhenDone=False


@pytest.mark.parametrize("streaming", [True, False])
def test_producer_of_no_chunks_is_done_at_once(streaming: bool) -> None:
    consumer = RecordingConsumer()
    producer = RecordingProducer([], streaming=streaming)
    assert producer.startProducing(consumer).called
    assert consumer.calls == ["registerProducer", "unregisterProducer"]
    assert consumer.writes == []


def test_producer_refuses_str_chunks_and_a_second_consumer() -> None:
    with pytest.raises(TypeError, match="str"):
        RecordingProducer(["text"])  # type: ignore[list-item]
    producer = RecordingProducer()
    producer.startProducing(RecordingConsumer())
    with pytest.raises(RuntimeError, match="already produces"):
        producer.startProducing(RecordingConsumer())


def test_stopProducer_stops_and_nothing_more_is_written() -> None:
    consumer = RecordingConsumer(pauseAfter=2)
    producer = RecordingProducer([b"x"] * 5)
    producer.startProducing(consumer)
    consumer.stopProducer()
    assert producer.stopped and producer.done.called
    producer.resumeProducing()
    assert consumer.data == b"xx"


@pytest_twisted.ensureDeferred
async def test_consumer_waitFor_and_its_timeout() -> None:
    consumer = RecordingConsumer()
    d = consumer.waitFor(3, timeout=30)
    consumer.write(b"ab")
    assert not d.called
    consumer.write(b"cd")
    assert await d == b"abcd"
    assert not pendingCalls()
    with pytest.raises(TimeoutError, match="had 4 of 10 bytes"):
        await consumer.waitFor(10, timeout=0.05)
    assert await consumer.waitFor(4) == b"abcd"


# -- the fakes against pcpkit's real parts ------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_InboxConsumer_pauses_and_resumes_a_push_producer() -> None:
    sink = MessageCollector()
    sink.setInboxSize("inbox", 4)  # high watermark 4, low 2
    chunks = [b"%02d" % i for i in range(20)]
    producer = RecordingProducer(chunks)
    inboxConsumer = InboxConsumer(sink, "inbox")
    done = producer.startProducing(inboxConsumer)
    assert producer.paused and producer.calls == ["pauseProducing"]
    assert sink.dataReady("inbox") == 4 and len(producer.written) == 4
    sink.activate()
    await done
    assert await sink.waitFor(20, timeout=10) == chunks
    assert sink.bytes() == b"".join(chunks)
    # paused at the high watermark, resumed at the low one, strictly alternating; the last
    # pause (the final chunk filled the inbox) is never resumed: the producer was done
    pauses = producer.calls.count("pauseProducing")
    assert pauses > 1 and inboxConsumer.pauses == pauses
    assert producer.calls == ["pauseProducing", "resumeProducing"] * (pauses - 1) + [
        "pauseProducing"
    ]
    assert inboxConsumer.producer is None  # unregistered when done
    sink.stop()
    await sink.finished


@pytest_twisted.ensureDeferred
async def test_InboxConsumer_pulls_a_pull_producer() -> None:
    sink = MessageCollector()
    producer = RecordingProducer([b"a", b"b", b"c"], streaming=False)
    inboxConsumer = InboxConsumer(sink, "inbox")
    sink.activate()
    await producer.startProducing(inboxConsumer)
    assert await sink.waitFor(3, timeout=10) == [b"a", b"b", b"c"]
    assert producer.calls == ["resumeProducing"] * 3
    sink.stop()
    await sink.finished


@pytest_twisted.ensureDeferred
async def test_OutboxProducer_into_a_consumer_that_pauses_after_n_bytes() -> None:
    chunks = [bytes([65 + i]) * 10 for i in range(20)]
    source = ByteSource(chunks)
    consumer = RecordingConsumer(pauseAfter=30)
    clock = Clock()
    # on a clock: run until nothing is left to run, then look
    source.activate(Scheduler(clock))
    producer = OutboxProducer(source, "outbox", consumer, bufferSize=4)
    assert consumer.calls == ["registerProducer"] and consumer.producer is producer
    settle(clock)
    assert consumer.data == b"".join(chunks[:3])
    assert producer.paused and consumer.producerPaused
    assert clock.getDelayedCalls() == []  # all done until the consumer resumes:
    assert consumer.size == 30  # a paused producer writes nothing more ...
    assert not source.finished.called  # ... and the source is held back by the full sink
    assert producer.buffered == 4
    consumer.pauseAfter = None
    consumer.resumeProducer()
    settle(clock)
    assert await source.finished == 20
    await producer.whenDrained()
    assert consumer.data == b"".join(chunks)
    producer.stop()
    assert consumer.calls == ["registerProducer", "unregisterProducer"]
    assert producer.pauses == consumer.pauses == 1


@pytest_twisted.ensureDeferred
async def test_ProducerConsumerProxy_between_the_fakes() -> None:
    consumer = RecordingConsumer(pauseAfter=8)
    proxy = ProducerConsumerProxy(consumer, highWatermark=16)
    producer = RecordingProducer([b"0123456789"] * 6)
    done = producer.startProducing(proxy)
    # the consumer paused the proxy after 8 bytes; the proxy buffered to its watermark and
    # paused the producer
    assert consumer.size == 10 and producer.paused
    consumer.pauseAfter = None
    consumer.resumeProducer()
    await done
    assert consumer.data == b"0123456789" * 6
    assert producer.calls[:2] == ["pauseProducing", "resumeProducing"]
