"""Unit tests for pcpkit.pcp: the proxies as consumers, as producers, and in chains."""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import (
    IConsumer,
    IProducer,
    IPullProducer,
    IPushProducer,
)
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, capturedLogs, formatEvent
from zope.interface.verify import verifyObject

from pcpkit.pcp import (
    DEFAULT_HIGH_WATERMARK,
    BasicProducerConsumerProxy,
    ProducerConsumerProxy,
    ProxyClosedError,
)

reactor: Any = _reactor

pytestmark = pytest.mark.timeout(60)
PROXIES = [BasicProducerConsumerProxy, ProducerConsumerProxy]


# -- fakes -------------------------------------------------------------------------------


class Consumer:
    """Records every call, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.producer: Any = None
        self.streaming: bool | None = None

    def write(self, data: bytes) -> None:
        assert type(data) is bytes
        self.events.append(("write", data))

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer, self.streaming = producer, streaming
        self.events.append(("registerProducer", streaming))

    def unregisterProducer(self) -> None:
        self.producer = None
        self.events.append(("unregisterProducer",))

    def finish(self) -> None:
        self.events.append(("finish",))

    @property
    def data(self) -> bytes:
        out = []
        for event in self.events:
            if event[0] == "write":
                out.append(event[1])
            elif event[0] == "writeSequence":
                out.extend(event[1])
        return b"".join(out)

    def calls(self, name: str) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == name]


class SequenceConsumer(Consumer):
    def writeSequence(self, data: list[bytes]) -> None:
        assert all(type(c) is bytes for c in data)
        self.events.append(("writeSequence", list(data)))


class TransportLike:
    """Like a Twisted transport: no ``finish``; pauses its producer past ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.pending = 0
        self.received = bytearray()
        self.producer: Any = None
        self.pausedIt = False
        self.unregistered = 0

    def write(self, data: bytes) -> None:
        self.received += data
        self.pending += len(data)
        if self.pending > self.capacity and self.producer and not self.pausedIt:
            self.pausedIt = True
            self.producer.pauseProducing()

    def drain(self) -> None:
        self.pending = 0
        if self.pausedIt:
            self.pausedIt = False
            self.producer.resumeProducing()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None
        self.unregistered += 1


class PushProducer:
    def __init__(self, proxy: Any = None) -> None:
        self.proxy = proxy
        self.paused = False
        self.pauses = self.resumes = self.stops = 0
        self.bufferedAtResume: list[int] = []

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        self.resumes += 1
        if self.proxy is not None:
            self.bufferedAtResume.append(self.proxy.bufferedBytes)

    def stopProducing(self) -> None:
        self.stops += 1


class PullProducer:
    """Writes ``chunk`` on every pull, ``limit`` times (forever if ``None``)."""

    def __init__(self, proxy: Any, chunk: bytes = b"p" * 10, limit: int | None = None) -> None:
        self.proxy = proxy
        self.chunk = chunk
        self.limit = limit
        self.pulls = self.stops = 0

    def resumeProducing(self) -> None:
        self.pulls += 1
        if self.limit is None or self.pulls <= self.limit:
            self.proxy.write(self.chunk)

    def stopProducing(self) -> None:
        self.stops += 1


class TurnClock:
    """
    A clock that runs one reactor turn at a time. (``task.Clock.advance(0)`` would also
    run a ``callLater(0)`` scheduled by a call it runs, where the reactor waits a turn.)
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def callLater(self, delay: float, f: Any) -> Call:
        call = Call(f)
        self.calls.append(call)
        return call

    def turn(self) -> None:
        calls, self.calls = self.calls, []
        for call in calls:
            if call.active():
                call.called = True
                call.f()

    def pending(self) -> list[Call]:
        return [c for c in self.calls if c.active()]


class Call:
    def __init__(self, f: Any) -> None:
        self.f = f
        self.called = self.cancelled = False

    def active(self) -> bool:
        return not (self.called or self.cancelled)

    def cancel(self) -> None:
        assert self.active()
        self.cancelled = True


class PullMode(ProducerConsumerProxy):
    iAmStreaming = False


class BasicPullMode(BasicProducerConsumerProxy):
    iAmStreaming = False


# -- interfaces --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", PROXIES)
def test_streaming_proxy_provides_push_producer_and_consumer(cls: type) -> None:
    consumer = Consumer()
    proxy = cls(consumer)
    assert verifyObject(IPushProducer, proxy)
    assert verifyObject(IProducer, proxy)
    assert verifyObject(IConsumer, proxy)
    assert not IPullProducer.providedBy(proxy)
    assert consumer.producer is proxy and consumer.streaming is True


@pytest.mark.parametrize("cls", [PullMode, BasicPullMode])
def test_pull_mode_proxy_provides_pull_producer_and_consumer(cls: type) -> None:
    consumer = Consumer()
    proxy = cls(consumer)
    assert verifyObject(IPullProducer, proxy)
    assert verifyObject(IConsumer, proxy)
    assert not IPushProducer.providedBy(proxy)
    assert consumer.producer is proxy and consumer.streaming is False


# -- bytes in, bytes out -----------------------------------------------------------------


@pytest.mark.parametrize("cls", PROXIES)
def test_write_through_when_not_paused(cls: type) -> None:
    consumer = Consumer()
    proxy = cls(consumer)
    proxy.write(b"hello")
    proxy.write(b"")  # empty writes are not forwarded
    assert consumer.calls("write") == [("write", b"hello")]
    assert proxy.bufferedBytes == 0


@pytest.mark.parametrize("cls", PROXIES)
def test_bytes_like_accepted_and_mutables_copied(cls: type) -> None:
    consumer = Consumer()
    proxy = cls(consumer)
    proxy.pauseProducing()
    mutable = bytearray(b"abc")
    view = memoryview(bytearray(b"def"))
    proxy.write(mutable)
    proxy.write(view)
    mutable[0] = ord("X")
    view[0] = ord("Y")
    proxy.resumeProducing()
    assert consumer.data == b"abcdef"


@pytest.mark.parametrize("cls", PROXIES)
@pytest.mark.parametrize(
    "bad, name", [("text", "str"), (42, "int"), (None, "NoneType"), ([b"a"], "list")]
)
def test_write_rejects_non_bytes_naming_the_type(cls: type, bad: Any, name: str) -> None:
    consumer = Consumer()
    proxy = cls(consumer)
    with pytest.raises(TypeError, match=rf"must be bytes, bytearray or memoryview, not {name}"):
        proxy.write(bad)
    assert consumer.calls("write") == [] and proxy.bufferedBytes == 0


def test_str_error_suggests_encoding() -> None:
    proxy = ProducerConsumerProxy(Consumer())
    with pytest.raises(TypeError, match=re.escape("'héllo'.encode('utf-8')")):
        proxy.write("héllo")  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.binary(max_size=300), st.sampled_from([bytes, bytearray, memoryview])),
        max_size=60,
    )
)
def test_buffered_size_is_the_sum_of_the_chunks(writes: list[tuple[bytes, type]]) -> None:
    consumer = SequenceConsumer()
    producer = PushProducer()
    proxy = ProducerConsumerProxy(consumer, highWatermark=10**9)
    proxy.registerProducer(producer, True)
    proxy.pauseProducing()
    total = 0
    for data, kind in writes:
        proxy.write(kind(data))
        total += len(data)
        assert proxy.bufferedBytes == total == sum(len(c) for c in proxy._buffer)
    proxy.resumeProducing()
    assert consumer.data == b"".join(d for d, _ in writes)
    assert proxy.bufferedBytes == 0
    assert producer.pauses == 0


# -- flushing ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", PROXIES)
def test_flush_is_one_writeSequence_with_every_chunk(cls: type) -> None:
    consumer = SequenceConsumer()
    proxy = cls(consumer)
    proxy.pauseProducing()
    for chunk in (b"one ", b"two ", b"three"):
        proxy.write(chunk)
    assert consumer.events == [("registerProducer", True)]
    proxy.resumeProducing()
    assert consumer.events[1:] == [("writeSequence", [b"one ", b"two ", b"three"])]


def test_pull_answer_is_one_writeSequence_when_available() -> None:
    consumer = SequenceConsumer()
    proxy = PullMode(consumer)
    proxy.write(b"a")
    proxy.write(b"b")
    assert consumer.calls("writeSequence") == []
    proxy.resumeProducing()
    assert consumer.calls("writeSequence") == [("writeSequence", [b"a", b"b"])]
    assert not proxy.outstandingPull


def test_flush_without_writeSequence_stops_where_the_consumer_pauses() -> None:
    consumer = TransportLike(capacity=25)
    proxy = ProducerConsumerProxy(consumer)
    proxy.pauseProducing()
    for i in range(10):
        proxy.write(bytes([65 + i]) * 10)
    proxy.resumeProducing()
    # 10 + 10 + 10 > 25: the consumer paused after the third chunk and the flush stopped.
    assert bytes(consumer.received) == b"A" * 10 + b"B" * 10 + b"C" * 10
    assert proxy.paused and proxy.bufferedBytes == 70
    while proxy.bufferedBytes:
        consumer.drain()
    assert bytes(consumer.received) == b"".join(bytes([65 + i]) * 10 for i in range(10))


# -- watermarks and hysteresis -----------------------------------------------------------


def test_watermark_defaults() -> None:
    proxy = ProducerConsumerProxy(Consumer())
    assert proxy.highWatermark == proxy.bufferSize == DEFAULT_HIGH_WATERMARK == 65536
    assert proxy.lowWatermark == 32768


def test_bufferSize_is_a_settable_alias_and_default_low_follows() -> None:
    proxy = ProducerConsumerProxy(Consumer(), highWatermark=1000)
    proxy.bufferSize = 100
    assert proxy.highWatermark == 100 and proxy.lowWatermark == 50
    proxy.highWatermark = 400
    assert proxy.bufferSize == 400 and proxy.lowWatermark == 200


def test_explicit_low_watermark_is_kept_and_capped_at_high() -> None:
    proxy = ProducerConsumerProxy(Consumer(), highWatermark=1000, lowWatermark=10)
    assert proxy.lowWatermark == 10
    proxy.bufferSize = 5
    assert proxy.lowWatermark == 5
    proxy.lowWatermark = None
    assert proxy.lowWatermark == 2


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"highWatermark": -1}, ValueError, "highWatermark must be >= 0, got -1"),
        ({"lowWatermark": -5}, ValueError, "lowWatermark must be >= 0, got -5"),
        (
            {"highWatermark": 10, "lowWatermark": 11},
            ValueError,
            "lowWatermark (11) must not exceed highWatermark (10)",
        ),
        ({"highWatermark": 1.5}, TypeError, "highWatermark must be an int, not float"),
    ],
)
def test_bad_watermarks(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        ProducerConsumerProxy(Consumer(), **kwargs)


def test_twisted_style_bufferSize_class_attribute() -> None:
    class Small(ProducerConsumerProxy):
        bufferSize = 1024

    proxy = Small(Consumer())
    assert proxy.highWatermark == proxy.bufferSize == 1024
    proxy.bufferSize = 10  # still the alias, not an instance attribute
    assert proxy.highWatermark == 10
    assert Small(Consumer(), highWatermark=7).bufferSize == 7


def test_pauses_at_high_and_resumes_only_at_low() -> None:
    consumer = TransportLike(capacity=15)
    proxy = ProducerConsumerProxy(consumer, highWatermark=100, lowWatermark=30)
    producer = PushProducer(proxy)
    proxy.registerProducer(producer, True)
    proxy.pauseProducing()
    consumer.pausedIt = True  # as if the transport's buffer were full
    for _ in range(9):
        proxy.write(b"x" * 10)
    assert producer.pauses == 0  # 90 < 100
    proxy.write(b"x" * 10)
    assert producer.pauses == 1 and proxy.producerPaused
    # Each drain takes 20 bytes before the transport pauses the proxy again: 80, 60, 40
    # stay above the low watermark, so the producer stays paused.
    for expected in (80, 60, 40):
        consumer.drain()
        assert proxy.bufferedBytes == expected
        assert producer.resumes == 0
    consumer.drain()
    assert proxy.bufferedBytes == 20
    assert producer.resumes == 1 and producer.bufferedAtResume == [20]
    assert not proxy.producerPaused


def test_no_flapping_over_a_long_transfer() -> None:
    consumer = TransportLike(capacity=64)
    proxy = ProducerConsumerProxy(consumer, highWatermark=1000, lowWatermark=200)
    producer = PushProducer(proxy)
    proxy.registerProducer(producer, True)
    sent = 0
    rounds = 0
    while sent < 200_000:
        rounds += 1
        while not producer.paused and sent < 200_000:
            proxy.write(b"z" * 10)
            sent += 10
        consumer.drain()
    while proxy.bufferedBytes:
        consumer.drain()
    assert len(consumer.received) == sent
    # Each pause/resume cycle moves at least high - low bytes: no pause per write.
    assert producer.pauses <= sent // (1000 - 200) + 1
    assert producer.resumes <= producer.pauses
    assert all(n <= 200 for n in producer.bufferedAtResume)


def test_streaming_producer_registered_on_a_full_buffer_is_paused_at_once() -> None:
    proxy = ProducerConsumerProxy(Consumer(), highWatermark=100)
    proxy.pauseProducing()
    proxy.write(b"x" * 150)
    producer = PushProducer()
    proxy.registerProducer(producer, True)
    assert producer.paused and proxy.producerPaused


def test_consumer_pause_is_not_relayed_by_the_bounded_proxy() -> None:
    proxy = ProducerConsumerProxy(Consumer())
    producer = PushProducer()
    proxy.registerProducer(producer, True)
    proxy.pauseProducing()
    assert producer.pauses == 0
    proxy.resumeProducing()
    assert producer.resumes == 0


def test_chain_hop_holds_at_most_high_plus_one_chunk() -> None:
    # proxy1 -> proxy2 -> transport. proxy2, paused by the transport part-way through its
    # flush, resumes proxy1; proxy1's flush must stop when proxy2 reaches its high
    # watermark, not hand it everything at once.
    final = TransportLike(capacity=55)
    proxy2 = ProducerConsumerProxy(final, highWatermark=100, lowWatermark=50)
    proxy1 = ProducerConsumerProxy(proxy2, highWatermark=100, lowWatermark=50)
    producer = PushProducer(proxy1)
    proxy1.registerProducer(producer, True)
    proxy2.pauseProducing()
    final.pausedIt = True  # as if the transport had paused it
    written = 0
    while not producer.paused:
        proxy1.write(b"%09d\n" % written)
        written += 10
    assert proxy2.bufferedBytes == 100 and proxy1.bufferedBytes == 100
    final.drain()  # takes 60 bytes, pauses proxy2 with 40 left, which resumes proxy1
    assert proxy2.bufferedBytes <= 100 + 10
    assert proxy1.bufferedBytes + proxy2.bufferedBytes + len(final.received) == written
    while final.producer is not None and (proxy1.bufferedBytes or proxy2.bufferedBytes):
        final.drain()
        assert proxy2.bufferedBytes <= 110 and proxy1.bufferedBytes <= 110
    assert bytes(final.received) == b"".join(b"%09d\n" % i for i in range(0, written, 10))


def test_basic_proxy_relays_pause_and_resume_and_never_pauses_on_its_own() -> None:
    consumer = SequenceConsumer()
    proxy = BasicProducerConsumerProxy(consumer)
    producer = PushProducer()
    proxy.registerProducer(producer, True)
    for _ in range(1000):
        proxy.write(b"x" * 1000)
    assert producer.pauses == 0
    proxy.pauseProducing()
    assert producer.pauses == 1
    proxy.write(b"y" * 100_000)
    assert producer.pauses == 1 and proxy.bufferedBytes == 100_000
    proxy.resumeProducing()
    assert producer.resumes == 1 and proxy.bufferedBytes == 0
    assert consumer.data == b"x" * 1_000_000 + b"y" * 100_000


# -- pull producers ----------------------------------------------------------------------


def test_pull_producer_is_pulled_on_registration_and_kept_ahead_of_low() -> None:
    clock = TurnClock()
    consumer = SequenceConsumer()
    proxy = ProducerConsumerProxy(consumer, highWatermark=100, lowWatermark=50, clock=clock)
    proxy.pauseProducing()
    producer = PullProducer(proxy, chunk=b"p" * 10)
    proxy.registerProducer(producer, False)
    # Paused: pulled until 50 bytes (the low watermark) are ready, then left alone.
    assert producer.pulls == 5 and proxy.bufferedBytes == 50
    assert not clock.pending()
    # Resumed: the buffer goes out and data flows straight through; after one high
    # watermark's worth in this turn, pulling continues on the next reactor turn.
    proxy.resumeProducing()
    assert proxy.bufferedBytes == 0
    assert len(consumer.data) == 150 and producer.pulls == 15
    assert len(clock.pending()) == 1
    clock.turn()
    assert len(consumer.data) == 250
    proxy.unregisterProducer()
    assert not clock.pending()
    assert producer.stops == 0


def test_pull_producer_that_answers_late_is_pulled_again_on_its_write() -> None:
    consumer = Consumer()
    proxy = ProducerConsumerProxy(consumer, highWatermark=100)
    producer = PullProducer(proxy, limit=0)  # answers nothing by itself
    proxy.registerProducer(producer, False)
    assert producer.pulls == 1
    proxy.write(b"late answer")
    assert producer.pulls == 2
    assert consumer.data == b"late answer"
    proxy.unregisterProducer()


def test_pull_mode_proxy_answers_pulls_from_prefetched_data() -> None:
    consumer = Consumer()
    proxy = PullMode(consumer, highWatermark=40, lowWatermark=20)
    producer = PullProducer(proxy, chunk=b"abcde", limit=100)
    proxy.registerProducer(producer, False)
    assert proxy.bufferedBytes == 20  # prefetched up to the low watermark
    proxy.resumeProducing()  # the consumer pulls: one write, then prefetch again
    assert consumer.calls("write") == [("write", b"abcde" * 4)]
    assert proxy.bufferedBytes == 20
    proxy.finish()
    proxy.resumeProducing()
    assert consumer.data == b"abcde" * 8
    assert consumer.events[-2:] == [("unregisterProducer",), ("finish",)]


def test_endless_pull_producer_moves_one_high_watermark_per_turn() -> None:
    # An endless pull producer with data flowing through must not loop forever inside
    # one call: each reactor turn moves about one high watermark.
    clock = TurnClock()
    consumer = Consumer()
    proxy = ProducerConsumerProxy(consumer, highWatermark=1000, clock=clock)
    producer = PullProducer(proxy, chunk=b"q" * 100)
    proxy.registerProducer(producer, False)
    assert len(consumer.data) == 1000
    for turn in range(2, 6):
        clock.turn()
        assert len(consumer.data) == 1000 * turn
    proxy.stopProducing()
    assert producer.stops == 1 and not clock.pending()


@pytest_twisted.inlineCallbacks
def test_pull_continuation_runs_on_the_global_reactor() -> Generator[Any, Any, None]:
    consumer = Consumer()
    proxy = ProducerConsumerProxy(consumer, highWatermark=4096)
    producer = PullProducer(proxy, chunk=b"r" * 512)
    proxy.registerProducer(producer, False)
    assert len(consumer.data) == 4096  # one turn's worth, then back to the reactor
    for _ in range(200):
        if len(consumer.data) >= 64 * 1024:
            break
        yield deferLater(reactor, 0, lambda: None)
    assert len(consumer.data) >= 64 * 1024
    proxy.unregisterProducer()
    yield deferLater(reactor, 0, lambda: None)
    assert consumer.calls("unregisterProducer")


# -- registration ------------------------------------------------------------------------


@pytest.mark.parametrize("cls", PROXIES)
def test_registering_over_a_registered_producer_raises(cls: type) -> None:
    proxy = cls(Consumer())
    first, second = PushProducer(), PushProducer()
    proxy.registerProducer(first, True)
    with pytest.raises(RuntimeError) as info:
        proxy.registerProducer(second, True)
    assert str(info.value) == (
        f"Cannot register producer {second!r}, because producer {first!r} was never unregistered."
    )
    assert proxy.producer is first


def test_proxy_without_consumer_buffers_and_pauses_its_producer() -> None:
    proxy = ProducerConsumerProxy(None, highWatermark=10)
    producer = PushProducer()
    proxy.registerProducer(producer, True)
    proxy.write(b"0123456789")
    assert proxy.bufferedBytes == 10 and producer.paused


def test_reregistering_after_unregister_reattaches_to_the_consumer() -> None:
    consumer = Consumer()
    proxy = ProducerConsumerProxy(consumer)
    proxy.registerProducer(PushProducer(), True)
    proxy.unregisterProducer()
    assert consumer.producer is None
    proxy.registerProducer(PushProducer(), True)
    assert consumer.producer is proxy
    assert [e[0] for e in consumer.events] == [
        "registerProducer",
        "unregisterProducer",
        "registerProducer",
    ]


# -- unregister, finish and stop ---------------------------------------------------------


@pytest.mark.parametrize("cls", PROXIES)
def test_finish_completes_only_after_the_buffer_drains(cls: type) -> None:
    consumer = Consumer()
    proxy = cls(consumer)
    producer = PushProducer()
    proxy.registerProducer(producer, True)
    proxy.pauseProducing()
    proxy.write(b"last ")
    proxy.write(b"words")
    proxy.finish()
    assert consumer.events == [("registerProducer", True)]
    assert proxy.producer is None
    with pytest.raises(ProxyClosedError, match=re.escape("write() after finish()")):
        proxy.write(b"more")
    with pytest.raises(RuntimeError, match="has finished"):
        proxy.registerProducer(PushProducer(), True)
    proxy.resumeProducing()
    assert consumer.events[1:] == [
        ("write", b"last "),
        ("write", b"words"),
        ("unregisterProducer",),
        ("finish",),
    ]
    assert producer.resumes == 0
    proxy.finish()  # idempotent
    assert len(consumer.calls("finish")) == 1


def test_finish_on_a_consumer_without_finish_only_unregisters() -> None:
    consumer = TransportLike(capacity=10**9)
    proxy = ProducerConsumerProxy(consumer)
    proxy.pauseProducing()
    proxy.write(b"data")
    proxy.finish()
    assert consumer.unregistered == 0
    proxy.resumeProducing()
    assert bytes(consumer.received) == b"data" and consumer.unregistered == 1


@pytest.mark.parametrize("cls", PROXIES)
def test_unregister_hands_back_to_the_consumer_only_after_draining(cls: type) -> None:
    consumer = Consumer()
    proxy = cls(consumer)
    producer = PushProducer()
    proxy.registerProducer(producer, True)
    proxy.pauseProducing()
    proxy.write(b"pending")
    proxy.unregisterProducer()
    assert proxy.producer is None and proxy.unregistered
    assert consumer.calls("unregisterProducer") == []
    proxy.resumeProducing()
    assert consumer.events[1:] == [("write", b"pending"), ("unregisterProducer",)]
    assert producer.resumes == 0
    proxy.write(b"after")  # still writable: unregistering is not finishing
    assert consumer.data == b"pendingafter"


def test_registering_again_cancels_a_pending_hand_back() -> None:
    consumer = Consumer()
    proxy = ProducerConsumerProxy(consumer)
    proxy.registerProducer(PushProducer(), True)
    proxy.pauseProducing()
    proxy.write(b"x")
    proxy.unregisterProducer()
    proxy.registerProducer(PushProducer(), True)
    proxy.resumeProducing()
    assert consumer.calls("unregisterProducer") == []
    assert consumer.producer is proxy


@pytest.mark.parametrize("cls", PROXIES)
def test_stopProducing_propagates_and_releases_both_ends(cls: type) -> None:
    consumer = Consumer()
    proxy = cls(consumer)
    producer = PushProducer()
    proxy.registerProducer(producer, True)
    proxy.pauseProducing()
    proxy.write(b"undeliverable")
    proxy.stopProducing()
    assert producer.stops == 1
    assert proxy.stopped and proxy.producer is None and proxy.consumer is None
    assert proxy.bufferedBytes == 0
    proxy.write(b"more")  # discarded, as a disconnected transport does
    assert proxy.discardedBytes == 4
    proxy.stopProducing()
    proxy.pauseProducing()
    proxy.resumeProducing()
    assert producer.stops == 1 and producer.resumes == 0
    late = PushProducer()
    proxy.registerProducer(late, True)  # like a disconnected transport: stop it
    assert late.stops == 1 and proxy.producer is None
    assert consumer.data == b""


@pytest.mark.parametrize("cls", PROXIES)
def test_writes_after_stop_are_discarded_counted_and_logged_once(cls: type) -> None:
    consumer = Consumer()
    proxy = cls(consumer)
    proxy.write(b"before")
    with capturedLogs() as events:
        proxy.stopProducing()
        proxy.write(b"12345")
        proxy.write(bytearray(b"678"))
        proxy.write(b"")
        with pytest.raises(TypeError, match="str"):
            proxy.write("text")  # bad input is still refused, not counted
    assert proxy.discardedBytes == 8
    assert consumer.data == b"before"
    assert len(events) == 1
    assert events[0]["log_level"] is LogLevel.debug
    assert "discarding later writes" in formatEvent(events[0])


@pytest.mark.parametrize("cls", PROXIES)
def test_write_after_finish_stays_an_error_even_once_stopped(cls: type) -> None:
    # finish() then stopProducing(), and stopProducing() then finish(): the producer that
    # said the stream ended and writes again is told, whatever the consumer did.
    for order in (("finish", "stopProducing"), ("stopProducing", "finish")):
        proxy = cls(Consumer())
        proxy.pauseProducing()
        proxy.write(b"x")
        for name in order:
            getattr(proxy, name)()
        with pytest.raises(ProxyClosedError, match=re.escape("write() after finish()")):
            proxy.write(b"more")
        assert proxy.discardedBytes == 0


def test_basic_proxy_relays_its_consumers_pause_once() -> None:
    # The consumer's pauses are not counted (pauseProducing twice, resumeProducing once
    # resumes, as in Twisted); the upstream sees one pause and one resume.
    consumer = Consumer()
    proxy = BasicProducerConsumerProxy(consumer)
    producer = PushProducer()
    proxy.registerProducer(producer, True)
    proxy.pauseProducing()
    proxy.pauseProducing()
    assert producer.pauses == 1 and proxy.producerPaused
    proxy.write(b"held")
    proxy.resumeProducing()
    assert producer.resumes == 1 and not proxy.producerPaused
    assert consumer.data == b"held"
    # Unregistering while paused releases the pause without resuming the old producer.
    proxy.pauseProducing()
    proxy.unregisterProducer()
    assert not proxy.producerPaused and producer.resumes == 1


def test_zero_and_equal_watermarks_keep_hysteresis() -> None:
    # highWatermark=0 pauses as soon as anything is buffered; a low watermark equal to the
    # high one resumes one byte below it (never at the level that paused).
    consumer = TransportLike(capacity=10**9)
    proxy = ProducerConsumerProxy(consumer, highWatermark=0)
    producer = PushProducer(proxy)
    proxy.registerProducer(producer, True)
    proxy.pauseProducing()
    assert not producer.paused
    proxy.write(b"a")
    assert producer.paused
    proxy.resumeProducing()
    assert not producer.paused and producer.bufferedAtResume == [0]

    class Two(ProducerConsumerProxy):
        def _writeSomeData(self, data: bytes) -> int:
            return super()._writeSomeData(data[:1])

    proxy = Two(Consumer(), highWatermark=4, lowWatermark=4)
    producer = PushProducer(proxy)
    proxy.registerProducer(producer, True)
    proxy.pauseProducing()
    proxy.write(b"abcd")
    assert producer.paused and proxy.lowWatermark == 4
    proxy.resumeProducing()  # one byte goes out per call
    assert proxy.bufferedBytes == 3 and not producer.paused


def test_producer_writing_from_pauseProducing_is_resumed_after_the_drain() -> None:
    # A producer that flushes a last chunk when paused re-enters the proxy from inside
    # pauseProducing(); it must still be paused once and resumed once.
    consumer = Consumer()
    proxy = ProducerConsumerProxy(consumer, highWatermark=10)

    class LastChunk(PushProducer):
        def pauseProducing(self) -> None:
            super().pauseProducing()
            proxy.write(b"z" * 10)

    producer = LastChunk(proxy)
    proxy.registerProducer(producer, True)
    proxy.pauseProducing()
    proxy.write(b"y" * 10)
    assert producer.pauses == 1 and proxy.producerPaused
    proxy.resumeProducing()
    assert proxy.bufferedBytes == 0 and not proxy.producerPaused
    assert producer.resumes == 1
    assert consumer.data == b"y" * 10 + b"z" * 10


def test_stop_cancels_a_scheduled_pull() -> None:
    clock = TurnClock()
    proxy = ProducerConsumerProxy(Consumer(), highWatermark=10, clock=clock)
    producer = PullProducer(proxy)
    proxy.registerProducer(producer, False)
    assert clock.pending()
    proxy.stopProducing()
    assert not clock.pending() and producer.stops == 1


# -- partial writes and re-entrancy ------------------------------------------------------


class Trickle(ProducerConsumerProxy):
    """Writes at most ``n`` bytes per call, as a slow consumer's writer would."""

    n = 7

    def _writeSomeData(self, data: bytes) -> int:
        return super()._writeSomeData(data[: self.n])


def test_partial_writes_keep_the_rest_in_order() -> None:
    consumer = SequenceConsumer()
    proxy = Trickle(consumer)
    proxy.write(b"abcdefghijklmnopqrst")
    assert consumer.data == b"abcdefg"
    assert proxy.bufferedBytes == 13
    proxy.resumeProducing()
    assert consumer.data == b"abcdefghijklmn"
    proxy.write(b"UVW")  # queued behind the rest, which goes first
    while proxy.bufferedBytes:
        proxy.resumeProducing()
    assert consumer.data == b"abcdefghijklmnopqrstUVW"
    assert consumer.calls("writeSequence") == []  # the hook is always honoured


def test_reentrant_write_during_a_partial_write_keeps_order() -> None:
    proxy: Any = None

    class Reentrant(Consumer):
        def write(self, data: bytes) -> None:
            super().write(data)
            if len(self.calls("write")) == 1:
                proxy.write(b"XY")  # arrives while the proxy is mid-write

    class Half(ProducerConsumerProxy):
        def _writeSomeData(self, data: bytes) -> int:
            return super()._writeSomeData(data[:2])

    consumer = Reentrant()
    proxy = Half(consumer)
    proxy.write(b"abcd")
    assert consumer.data == b"ab"
    assert list(proxy._buffer) == [b"cd", b"XY"]  # the unsent rest first
    proxy.resumeProducing()
    assert consumer.data == b"abcdXY"


def test_reentrant_pull_from_the_consumer_keeps_order() -> None:
    # A pull-mode proxy whose consumer pulls again from inside write().
    proxy: Any = None

    class Greedy(Consumer):
        def write(self, data: bytes) -> None:
            super().write(data)
            if len(self.calls("write")) < 5:
                proxy.resumeProducing()

    consumer = Greedy()
    proxy = PullMode(consumer, highWatermark=6, lowWatermark=3)
    producer = PullProducer(proxy, chunk=b"", limit=0)
    proxy.registerProducer(producer, False)
    for i in range(6):
        proxy.write(b"%d" % i)
    proxy.resumeProducing()
    proxy.finish()
    while not consumer.calls("finish"):
        proxy.resumeProducing()
    assert consumer.data == b"012345"


def test_repr_names_the_state() -> None:
    proxy = ProducerConsumerProxy(Consumer())
    proxy.pauseProducing()
    proxy.write(b"abc")
    assert re.fullmatch(
        r"<ProducerConsumerProxy at 0x[0-9a-f]+ paused, 3 bytes buffered>", repr(proxy)
    )


@pytest_twisted.inlineCallbacks
def test_proxies_leave_nothing_on_the_reactor() -> Generator[Any, Any, None]:
    # The pull continuation is the proxies' only use of the reactor; check it is gone
    # after unregister, finish and stop.
    for end in ("unregisterProducer", "finish", "stopProducing"):
        proxy = ProducerConsumerProxy(Consumer(), highWatermark=100)
        proxy.registerProducer(PullProducer(proxy), False)
        assert any(c.active() for c in reactor.getDelayedCalls())
        getattr(proxy, end)()
    yield defer.succeed(None)
