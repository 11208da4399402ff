"""
Random interleavings of write / pause / resume / register / unregister / finish through a
chain of one to three proxies, checked by a hypothesis state machine.

The final consumer behaves like a transport (it pauses its producer from inside ``write``
past a capacity); every hop checks that the bounded proxy it feeds pauses it only at the
high watermark and resumes it only at the low one (hysteresis). Invariants:

* nothing lost, reordered or duplicated: what the final consumer received, followed by what
  each proxy holds (nearest the consumer first), is exactly what was written;
* bounded: while the upstream honours pause, every ``ProducerConsumerProxy`` holds at most
  its high watermark plus the largest chunk;
* ``finish()`` completes, after the last byte, with the consumer unregistered and finished.

Some scenarios need a precise setup that random search reaches too rarely (a flush into a
paused hop, a producer registered on a full buffer, re-entrant writes); test_pcp.py pins
each of those with a deterministic test.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from pcpkit.pcp import BasicProducerConsumerProxy, ProducerConsumerProxy
from tests.test_pcp import TurnClock

MAX_CHUNK = 64

pytestmark = pytest.mark.timeout(120)

chunks = st.binary(min_size=1, max_size=MAX_CHUNK)
byteKinds: st.SearchStrategy[type] = st.sampled_from([bytes, bytearray, memoryview])


class FinalConsumer:
    """
    The end of the chain, like a transport: records bytes and, past ``capacity`` bytes
    not yet "sent", pauses its producer from inside ``write``; ``drain()`` sends them and
    resumes it. The machine can also pause and resume it directly.
    """

    def __init__(self, capacity: int | None) -> None:
        self.data = bytearray()
        self.producer: Any = None
        self.finished = False
        self.capacity = capacity
        self.pending = 0
        self.pausedIt = False

    def write(self, data: bytes) -> None:
        assert type(data) is bytes
        assert not self.finished, "write after finish"
        self.data += data
        self.pending += len(data)
        if (
            self.capacity is not None
            and self.pending > self.capacity
            and self.producer is not None
            and not self.pausedIt
        ):
            self.pausedIt = True
            self.producer.pauseProducing()

    def drain(self) -> None:
        self.pending = 0
        if self.pausedIt:
            self.pausedIt = False
            if self.producer is not None:
                self.producer.resumeProducing()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert self.producer is None, "registered over a registered producer"
        assert streaming
        self.producer = producer
        self.pausedIt = False

    def unregisterProducer(self) -> None:
        self.producer = None
        self.pausedIt = False

    def finish(self) -> None:
        assert not self.finished, "finished twice"
        self.finished = True


class FinalSequenceConsumer(FinalConsumer):
    """A final consumer with ``writeSequence``, as Twisted transports have."""

    sequences = 0

    def writeSequence(self, data: list[bytes]) -> None:
        self.sequences += 1
        for chunk in data:
            self.write(chunk)


class PushUpstream:
    """A streaming producer that honours pause: the machine writes only while unpaused."""

    paused = False
    stopped = False

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer

    def pauseProducing(self) -> None:
        checkPausedAtHigh(self.consumer)
        self.paused = True

    def resumeProducing(self) -> None:
        checkResumedAtLow(self.consumer)
        self.paused = False

    def stopProducing(self) -> None:
        self.stopped = True


def checkPausedAtHigh(consumer: Any) -> None:
    # Hysteresis: a bounded proxy pauses its producer only at its high watermark ...
    if isinstance(consumer, ProducerConsumerProxy):
        assert consumer.bufferedBytes >= consumer.highWatermark, "paused below high"


def checkResumedAtLow(consumer: Any) -> None:
    # ... and resumes it only at or below its low watermark: no flapping in between.
    if isinstance(consumer, ProducerConsumerProxy):
        assert consumer.bufferedBytes <= consumer.lowWatermark, "resumed above low"


class CheckedProxy(ProducerConsumerProxy):
    """A hop that checks the hysteresis of the bounded proxy it feeds."""

    def pauseProducing(self) -> None:
        if not self._fromFinal():
            checkPausedAtHigh(self.consumer)
        super().pauseProducing()

    def resumeProducing(self) -> None:
        if not self._fromFinal():
            checkResumedAtLow(self.consumer)
        super().resumeProducing()

    def _fromFinal(self) -> bool:
        return not isinstance(self.consumer, ProducerConsumerProxy)


class PullUpstream:
    """A pull producer with a finite script: one chunk per pull, nothing once exhausted."""

    def __init__(self, machine: ProxyChain, script: list[bytes]) -> None:
        self.machine = machine
        self.script = list(script)
        self.pulls = 0

    def resumeProducing(self) -> None:
        self.pulls += 1
        if self.script:
            chunk = self.script.pop(0)
            self.machine.written += chunk
            self.machine.head.write(chunk)

    def stopProducing(self) -> None:
        self.script = []


class ProxyChain(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.upstream: PushUpstream | PullUpstream | None = None
        self.finished = False
        self.clock = TurnClock()

    @initialize(
        hops=st.lists(
            st.tuples(
                st.booleans(),  # bounded (ProducerConsumerProxy) or Basic
                st.integers(0, 160),  # high watermark
                st.one_of(st.none(), st.floats(0, 1)),  # low as a fraction of high
            ),
            min_size=1,
            max_size=3,
        ),
        withSequence=st.booleans(),
        capacity=st.one_of(st.none(), st.integers(0, 200)),
    )
    def build(
        self,
        hops: list[tuple[bool, int, float | None]],
        withSequence: bool,
        capacity: int | None,
    ) -> None:
        finalClass = FinalSequenceConsumer if withSequence else FinalConsumer
        self.final = finalClass(capacity)
        # Build from the consumer end: each proxy registers on the one after it.
        consumer: Any = self.final
        self.proxies: list[BasicProducerConsumerProxy] = []
        for bounded, high, lowFraction in reversed(hops):
            proxy: BasicProducerConsumerProxy
            if bounded:
                low = None if lowFraction is None else int(high * lowFraction)
                proxy = CheckedProxy(consumer, high, low, clock=self.clock)
            else:
                proxy = BasicProducerConsumerProxy(consumer)
            self.proxies.insert(0, proxy)
            consumer = proxy
        self.head = self.proxies[0]
        self.upstream = PushUpstream(self.head)
        self.head.registerProducer(self.upstream, True)

    # -- the upstream producer ----------------------------------------------------------

    @precondition(lambda self: isinstance(self.upstream, PushUpstream))
    @rule(burst=st.lists(st.tuples(chunks, byteKinds), min_size=1, max_size=8))
    def writeBurst(self, burst: list[tuple[bytes, type]]) -> None:
        self.write(burst)

    def write(self, burst: list[tuple[bytes, type]]) -> None:
        upstream = self.upstream
        assert isinstance(upstream, PushUpstream)
        for data, kind in burst:
            if upstream.paused:
                break  # an upstream that honours pause stops mid-burst
            self.written += data
            self.head.write(kind(data))

    @precondition(lambda self: isinstance(self.upstream, PushUpstream))
    @rule(
        rounds=st.lists(
            st.tuples(
                st.lists(st.tuples(chunks, byteKinds), max_size=8),
                st.sampled_from(["drain", "resume", "pause", "tick", "none"]),
            ),
            min_size=1,
            max_size=6,
        )
    )
    def flow(self, rounds: list[tuple[list[tuple[bytes, type]], str]]) -> None:
        # A transfer in miniature: bursts from the upstream, the consumer reacting between.
        for burst, action in rounds:
            self.write(burst)
            if action != "none":
                self.consumer(action)

    def pauseOrResume(self, action: str) -> None:
        if self.final.producer is not None:
            getattr(self.final.producer, action + "Producing")()

    @precondition(lambda self: self.upstream is None and not self.finished)
    @rule(streaming=st.booleans(), script=st.lists(chunks, max_size=30))
    def register(self, streaming: bool, script: list[bytes]) -> None:
        self.upstream = PushUpstream(self.head) if streaming else PullUpstream(self, script)
        self.head.registerProducer(self.upstream, streaming)

    # unregister and finish end a phase: make them rarer than the other rules.
    @precondition(lambda self: self.upstream is not None)
    @rule(dice=st.integers(0, 3))
    def unregister(self, dice: int) -> None:
        if dice:
            return
        self.head.unregisterProducer()
        self.upstream = None

    @precondition(lambda self: not self.finished)
    @rule(dice=st.integers(0, 7))
    def finish(self, dice: int) -> None:
        if dice:
            return
        self.head.finish()
        self.finished = True
        self.upstream = None

    # -- the final consumer and the reactor ---------------------------------------------

    @rule(action=st.sampled_from(["drain", "resume", "pause", "tick"]))
    def consumer(self, action: str) -> None:
        # One rule with an argument rather than four without: hypothesis picks argument-
        # less rules far more often, which starved the writes.
        if action == "drain":
            self.final.drain()
        elif action == "tick":
            self.clock.turn()
        else:
            self.pauseOrResume(action)

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def nothingLostReorderedOrDuplicated(self) -> None:
        held = b"".join(b"".join(proxy._buffer) for proxy in reversed(getattr(self, "proxies", [])))
        assert bytes(self.final.data) + held == bytes(self.written)
        for proxy in getattr(self, "proxies", []):
            assert proxy.bufferedBytes == sum(len(c) for c in proxy._buffer)

    @invariant()
    def bounded(self) -> None:
        for proxy in getattr(self, "proxies", []):
            if isinstance(proxy, ProducerConsumerProxy):
                assert proxy.bufferedBytes <= proxy.highWatermark + MAX_CHUNK, (
                    proxy,
                    proxy.highWatermark,
                )

    @invariant()
    def finishedOnlyWhenDrained(self) -> None:
        if self.final.finished if hasattr(self, "final") else False:
            assert bytes(self.final.data) == bytes(self.written)
            assert self.final.producer is None

    def teardown(self) -> None:
        if not hasattr(self, "final"):
            return
        if not self.finished:
            self.head.finish()
        for _ in range(1000):
            if self.final.finished:
                break
            self.final.drain()
            if self.final.producer is not None:
                self.final.producer.resumeProducing()
            self.clock.turn()
        assert self.final.finished, [p.bufferedBytes for p in self.proxies]
        assert bytes(self.final.data) == bytes(self.written)
        assert self.final.producer is None
        assert all(p.bufferedBytes == 0 for p in self.proxies)
        assert not self.clock.pending()


ProxyChain.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestProxyChain = ProxyChain.TestCase
