"""
Producer/consumer proxies: a flow-controlled, bytes-correct replacement for
:mod:`twisted.protocols.pcp`.

A proxy sits between an upstream producer and a downstream consumer. To the producer it is
a consumer (``write``, ``registerProducer``, ``unregisterProducer``, ``finish``); to the
consumer it is a producer (``pauseProducing``, ``resumeProducing``, ``stopProducing``). It
keeps the public names and semantics of Twisted's proxies, so code written for them runs
unchanged, and fixes what they get wrong:

* bytes only: ``bytes``, ``bytearray`` and ``memoryview`` are accepted (mutable ones are
  copied), anything else raises ``TypeError`` naming its type;
* O(1) amortised per write: the buffered size is a running count, never a sum;
* high and low watermarks (hysteresis) instead of one threshold;
* ``finish()`` and ``unregisterProducer()`` wait until the buffer has drained, so nothing
  buffered is dropped.

The upstream producer is paused through :mod:`pcpkit._pause`, the one pause mechanism of
pcpkit: a :class:`~pcpkit._pause.Pauser` per proxy, and, in :class:`ProducerConsumerProxy`,
a :class:`~pcpkit._pause.Watermark` over the buffered bytes.

See :doc:`pcp` for the contract in prose.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, cast

from twisted.internet.interfaces import (
    IConsumer,
    IProducer,
    IPullProducer,
    IPushProducer,
)
from twisted.logger import Logger
from zope.interface import alsoProvides, implementer

from pcpkit._fifo import ByteFIFO, asBytes
from pcpkit._pause import Pause, Pauser, Watermark

__all__ = [
    "DEFAULT_HIGH_WATERMARK",
    "BasicProducerConsumerProxy",
    "ProducerConsumerProxy",
    "ProxyClosedError",
]

#: The default high watermark, in bytes: the same as Twisted's ``bufferSize``.
DEFAULT_HIGH_WATERMARK = 65536
#: Set by :mod:`pcpkit.inspect` while its registry is on (``None`` otherwise: no cost);
#: called once with each proxy when it is made.
inspectHook: Callable[[object], object] | None = None

log = Logger()


class _Consumer(Protocol):
    # What a proxy needs from its consumer (``writeSequence`` and ``finish`` are optional
    # and looked up when used). Positional-only so any parameter names match.
    def write(self, data: bytes, /) -> None: ...

    def registerProducer(self, producer: Any, streaming: bool, /) -> None: ...

    def unregisterProducer(self) -> None: ...


class _Producer(Protocol):
    # A pull producer needs only these; a push producer also has ``pauseProducing``.
    def resumeProducing(self) -> None: ...

    def stopProducing(self) -> None: ...


class _PushProducer(_Producer, Protocol):
    def pauseProducing(self) -> None: ...


class _DelayedCall(Protocol):
    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class _Clock(Protocol):
    def callLater(self, delay: float, callable: Callable[..., object], /) -> _DelayedCall: ...


class ProxyClosedError(RuntimeError):
    """
    Raised by ``write()`` after ``finish()``: the producer said the stream ended and then
    wrote more. (A write after ``stopProducing()`` is discarded instead, as a disconnected
    transport does; see :attr:`BasicProducerConsumerProxy.discardedBytes`.)

    A subclass of ``RuntimeError``, so ``except RuntimeError`` also catches it.
    """


@implementer(IProducer, IConsumer)
class BasicProducerConsumerProxy:
    """
    An unbounded relay between a producer and a consumer.

    While paused it buffers everything written to it; resumed, it flushes the buffer to
    its consumer. ``pauseProducing`` and ``resumeProducing`` are relayed to the upstream
    producer. It never pauses the upstream on its own: use :class:`ProducerConsumerProxy`
    for a bounded buffer.

    The constructor registers the proxy on ``consumer`` (streaming or not according to
    :attr:`iAmStreaming`), as Twisted's proxy does. A subclass with ``iAmStreaming = False``
    is a pull producer: each ``resumeProducing()`` from the consumer is answered by one
    write of everything buffered, or, if nothing is buffered, by the next ``write``.

    Instances provide ``IConsumer`` and either ``IPushProducer`` (``iAmStreaming`` true) or
    ``IPullProducer``.

    :param consumer: the consumer to write to, or ``None`` (writes are then buffered).
    """

    #: The consumer I write to; ``None`` after ``stopProducing()``.
    consumer: _Consumer | None = None
    #: The producer registered on me, if any.
    producer: _Producer | None = None
    #: Whether :attr:`producer` is a push (``True``) or pull (``False``) producer.
    producerIsStreaming: bool | None = None
    #: Whether I am a push producer for my consumer; set to ``False`` in a subclass for a
    #: pull producer.
    iAmStreaming: bool = True
    #: Pull mode only: my consumer asked for data that I did not have yet; the next
    #: ``write`` goes straight through to answer it.
    outstandingPull: bool = False
    #: Whether my consumer has paused me.
    paused: bool = False
    #: Whether ``stopProducing()`` was called.
    stopped: bool = False
    #: Bytes written to me after ``stopProducing()`` and discarded (there is no consumer
    #: left to deliver them to), as a disconnected Twisted transport discards them.
    discardedBytes: int = 0
    #: Whether my producer unregistered (and no new one registered since).
    unregistered: bool = False
    # The basic proxy never pauses its producer: a high watermark it cannot reach.
    _high: int = sys.maxsize

    def __init__(self, consumer: _Consumer | None) -> None:
        self._buffer = ByteFIFO()
        # Every pause of my producer is a Pause taken from this Pauser; it is the one
        # place that calls the producer's pauseProducing/resumeProducing.
        self._pauser = Pauser(self._pauseUpstream, self._resumeUpstream)
        # The basic proxy relays its consumer's pause as one Pause.
        self._consumerPause: Pause | None = None
        self._makeWatermark()
        # True while a call to the consumer is in progress: a write that arrives then
        # (from a re-entrant resume/pull) is queued behind what is being sent, not sent
        # ahead of the unsent rest of a partial write.
        self._sending = False
        self._finishing = False
        # stopped or finishing: one flag for write()'s hot path
        self._closed = False
        self._finishPending = False
        self._detachPending = False
        self._attached = False
        # Bytes written while a pull loop runs: how the loop sees that a pull was answered.
        self._pulling = False
        self._pulled = 0
        # Partial writes are only possible through an overridden ``_writeSomeData``;
        # without one the flush can hand the consumer's ``writeSequence`` every chunk.
        self._hooked = type(self)._writeSomeData is not BasicProducerConsumerProxy._writeSomeData
        alsoProvides(self, IPushProducer if self.iAmStreaming else IPullProducer)
        if consumer is not None:
            self.consumer = consumer
            self._attached = True
            consumer.registerProducer(self, self.iAmStreaming)
        if inspectHook is not None:
            inspectHook(self)

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else ("paused" if self.paused else "running")
        return (
            f"<{type(self).__name__} at 0x{id(self):x} {state}, {len(self._buffer)} bytes buffered>"
        )

    @property
    def bufferedBytes(self) -> int:
        """The number of bytes I hold, waiting for my consumer (O(1))."""
        return len(self._buffer)

    @property
    def producerPaused(self) -> bool:
        """Whether I paused my (streaming) producer and have not resumed it yet."""
        return self._pauser.count > 0

    # -- producer side (called by my consumer) ------------------------------------------

    def pauseProducing(self) -> None:
        """Stop writing to my consumer (buffer instead) and pause my producer."""
        if self.stopped:
            return
        self.paused = True
        if self._consumerPause is None and self.producerIsStreaming:
            self._consumerPause = self._pauser.pause("consumer")

    def resumeProducing(self) -> None:
        """
        Flush my buffer to my consumer, then resume (or pull) my producer.

        In pull mode this is a request for one write: it is answered by everything
        buffered, or, if nothing is, by the next ``write``.
        """
        if self.stopped:
            return
        self.paused = False
        if not self.iAmStreaming:
            self.outstandingPull = True
        self._drain()
        if self.paused:
            return  # paused again by my consumer during the flush: still held
        held = self._consumerPause
        if held is not None:
            self._consumerPause = None
            held.unpause()
        elif self.producer is not None:
            # A pull, or (as Twisted's proxy does) a resume relayed to a push producer
            # that I had not paused.
            self.producer.resumeProducing()

    def stopProducing(self) -> None:
        """
        My consumer wants no more data: stop my producer and let go of both ends.

        Whatever is still buffered is discarded (there is no one left to deliver it to).
        Later writes are discarded too and counted in :attr:`discardedBytes`, as a
        disconnected Twisted transport does, so a protocol still writing while its
        connection tears down does not fail.
        """
        if self.stopped:
            return
        self.stopped = self._closed = True
        self._cancelPull()
        producer = self.producer
        self._dropProducer()
        self.consumer = None
        self._attached = False
        self._detachPending = self._finishPending = False
        self._buffer.clear()
        if producer is not None:
            producer.stopProducing()

    # -- consumer side (called by my producer) ------------------------------------------

    def write(self, data: bytes) -> None:
        """
        Write ``data`` to my consumer now if it will take it, else buffer it.

        :param data: ``bytes``, ``bytearray`` or ``memoryview`` (the latter two are
            copied, so the caller may reuse them).
        :raises TypeError: for any other type (``str`` included), naming it.
        :raises ProxyClosedError: after ``finish()``. (After ``stopProducing()`` the data
            is discarded and counted in :attr:`discardedBytes`.)
        """
        if (
            self.paused
            and self.producerIsStreaming
            and type(data) is bytes
            and data
            and not self._closed
            and not self._pulling
        ):
            # The buffered case, the per-write cost of a proxy that holds data (paused by
            # its consumer, a push producer upstream): what the general path below does
            # for it, with no Python call. Below the high watermark there is nothing else
            # to do (a held pause is released only by a drain, which checks it itself).
            buf = self._buffer
            buf.parts.append(data)
            buf.size = size = buf.size + len(data)
            if size < self._high:
                return
            self._afterWrite()
            return
        if type(data) is not bytes:
            data = asBytes(data)
        if self._closed:
            self._writeClosed(data)
            return
        if not data:
            return
        if self._pulling:
            self._pulled += len(data)
        consumer = self.consumer
        # Cheapest tests first: this is the per-write cost.
        if (
            self.paused
            or self._sending
            or consumer is None
            or not (self.iAmStreaming or self.outstandingPull)
            or self._buffer
        ):
            buf = self._buffer
            buf.append(data)
            # The common case, the watermark check inlined: buffered below the high
            # watermark there is nothing to do (a held pause is released only by a
            # drain, which checks the watermark itself).
            if self.paused and self.producerIsStreaming and len(buf) < self._high:
                return
            self._afterWrite()
            return
        # Write-through: nothing buffered and the consumer takes data now.
        if not self.iAmStreaming:
            self.outstandingPull = False  # this write answers the pull
        self._sending = True
        if self._hooked:
            try:
                sent = self._writeSomeData(data)
            finally:
                self._sending = False
            if sent < len(data) and not self.stopped:
                self._buffer.appendleft(data[sent:])
                if not sent and not self.iAmStreaming:
                    self.outstandingPull = True
                # The consumer took what it could: the rest waits for the next resume
                # (or write) rather than being offered again at once.
                self._regulate()
                return
        else:
            try:
                consumer.write(data)
            finally:
                self._sending = False
        # A pull producer may be pulled again; re-entrant writes may have been queued.
        if self.producerIsStreaming is False or self._buffer:
            self._afterWrite()
        elif self._detachPending or self._finishPending:
            self._maybeComplete()

    def registerProducer(self, producer: _Producer, streaming: bool) -> None:
        """
        Register ``producer`` as my data source.

        :param streaming: ``True`` for an ``IPushProducer``, ``False`` for an
            ``IPullProducer``.
        :raises RuntimeError: if a producer is already registered, or after ``finish()``.

        After ``stopProducing()`` the new producer is stopped at once, as a disconnected
        Twisted transport does.
        """
        if self._finishing:
            raise RuntimeError(f"Cannot register producer {producer!r}: {self!r} has finished.")
        if self.stopped:
            producer.stopProducing()
            return
        if self.producer is not None:
            raise RuntimeError(
                f"Cannot register producer {producer!r}, because producer "
                f"{self.producer!r} was never unregistered."
            )
        # A new producer cancels a pending hand-back, and a proxy that already handed
        # itself back to its consumer re-registers so flow control works again.
        self._detachPending = False
        consumer = self.consumer
        if not self._attached and consumer is not None:
            self._attached = True
            consumer.registerProducer(self, self.iAmStreaming)
        self.producer = producer
        self.producerIsStreaming = bool(streaming)
        self.unregistered = False

    def unregisterProducer(self) -> None:
        """
        My producer is done. I stop talking to it at once; once my buffer has drained I
        unregister myself from my consumer (never before: nothing buffered is dropped).
        """
        self._dropProducer()
        self.unregistered = True
        if self._attached:
            self._detachPending = True
            self._maybeComplete()

    def finish(self) -> None:
        """
        End the stream. Like ``unregisterProducer()``, and once the buffer has drained my
        consumer's ``unregisterProducer()`` and then its ``finish()`` (if it has one) are
        called. Later writes raise :class:`ProxyClosedError`.
        """
        if self._finishing:
            return
        if self.stopped:
            self._finishing = True  # nothing left to finish, but later writes are errors
            return
        self._finishing = self._closed = True
        self._dropProducer()
        self.unregistered = True
        self._detachPending = self._attached
        self._finishPending = True
        self._maybeComplete()

    def _writeSomeData(self, data: bytes) -> int:
        """
        Write as much of ``data`` as possible to my consumer; return how many bytes.

        Override for partial writes: the unsent rest stays at the head of my buffer and is
        offered again on the next ``resumeProducing()`` (or ``write``).
        """
        consumer = self.consumer
        if consumer is None:
            return 0
        consumer.write(data)
        return len(data)

    # -- internals ----------------------------------------------------------------------

    def _writeClosed(self, data: bytes) -> None:
        if self._finishing:
            raise ProxyClosedError(f"write() after finish(): {self!r} has finished")
        # Stopped by my consumer: discard, as FileDescriptor.write does after a disconnect.
        if data:
            if not self.discardedBytes:
                log.debug(
                    "{proxy!r} was stopped by its consumer: discarding later writes",
                    proxy=self,
                )
            self.discardedBytes += len(data)

    def _makeWatermark(self) -> None:
        """Set up the pausing that needs the Pauser (the bounded proxy's watermark)."""

    def _pauseUpstream(self) -> None:
        # Called by my Pauser when the first pause is taken.
        producer = self.producer
        if producer is not None and self.producerIsStreaming:
            cast(_PushProducer, producer).pauseProducing()

    def _resumeUpstream(self) -> None:
        # Called by my Pauser when the last pause is released; after _dropProducer the
        # producer is gone and there is nobody to resume.
        producer = self.producer
        if producer is not None:
            producer.resumeProducing()

    def _releasePauses(self) -> None:
        held = self._consumerPause
        if held is not None:
            self._consumerPause = None
            held.unpause()

    def _canSend(self) -> bool:
        return (
            not self.paused
            and self.consumer is not None
            and (self.iAmStreaming or self.outstandingPull)
        )

    def _dropProducer(self) -> None:
        self._cancelPull()
        self.producer = None
        self.producerIsStreaming = None
        # The producer is gone first, so releasing its pauses resumes nothing.
        self._releasePauses()

    def _cancelPull(self) -> None:
        pass

    def _afterWrite(self) -> None:
        # Buffered data (a partial write's rest, or a re-entrant write) goes out now if it
        # can; then the subclass applies its watermarks.
        if not self.paused and not self._sending and self._canSend():
            self._drain()
        self._regulate()

    def _regulate(self) -> None:
        """Pause, resume or pull the upstream producer according to my buffer."""

    def _drain(self) -> None:
        if self._sending:
            # A re-entrant call: the loop below, further up the stack, sees the new state.
            return
        if self._buffer and self._canSend():
            self._sending = True
            try:
                self._sendBuffered()
            finally:
                self._sending = False
        self._maybeComplete()

    def _sendBuffered(self) -> None:
        buf = self._buffer
        while buf and self._canSend():
            consumer = cast(_Consumer, self.consumer)
            writeSequence: Callable[[Sequence[bytes]], None] | None = (
                None if self._hooked else getattr(consumer, "writeSequence", None)
            )
            if not self.iAmStreaming:
                # One pull, one write: everything buffered, merged.
                self.outstandingPull = False
                if writeSequence is not None:
                    writeSequence(buf.popAll())
                    continue
                data = b"".join(buf.popAll())
                sent = self._writeSomeData(data)
                if self.stopped:
                    return
                if sent < len(data):
                    buf.appendleft(data[sent:])
                    if not sent:
                        self.outstandingPull = True
                        return
                continue
            if writeSequence is not None:
                writeSequence(buf.popAll())
                continue
            # No writeSequence: one chunk at a time, so that a consumer which pauses me
            # part-way (a downstream proxy at its high watermark) stops the flush there and
            # holds at most its high watermark plus one chunk.
            chunk = buf.popChunk()
            sent = self._writeSomeData(chunk)
            if self.stopped:
                return
            if sent < len(chunk):
                buf.appendleft(chunk[sent:])
                return

    def _maybeComplete(self) -> None:
        # Finish and hand-back happen only once the last buffered byte has gone out.
        if self._buffer or self._sending or self.stopped:
            return
        consumer = self.consumer
        if self._detachPending:
            self._detachPending = False
            self._attached = False
            # Nobody will resume a proxy its consumer has forgotten.
            self.paused = False
            if consumer is not None:
                consumer.unregisterProducer()
        if self._finishPending:
            self._finishPending = False
            finish: Callable[[], object] | None = getattr(consumer, "finish", None)
            if finish is not None:
                finish()


class ProducerConsumerProxy(BasicProducerConsumerProxy):
    """
    A proxy with a bounded buffer and hysteresis.

    When my buffer reaches ``highWatermark`` bytes I pause my (push) producer; I resume it
    only once the buffer has fallen to ``lowWatermark``. My consumer pausing me does not
    pause my producer directly: my buffer absorbs the difference, and the watermarks
    decide. A pull producer is pulled at once on registration and then whenever my buffer
    is below ``lowWatermark`` and I want data (I am not paused, or I am preparing data
    ahead of a pull), so there is data ready when my consumer asks for it. While data
    flows straight through, pulls continue on later reactor turns after every
    ``highWatermark`` bytes, so an endless pull producer cannot starve the reactor.

    :param consumer: the consumer to write to (I register on it), or ``None``.
    :param highWatermark: pause my producer at this many buffered bytes. Defaults to
        :data:`DEFAULT_HIGH_WATERMARK` (65536), or to ``bufferSize`` if a subclass sets
        that as a class attribute, as Twisted subclasses do.
    :param lowWatermark: resume my producer at this many buffered bytes or fewer;
        ``None`` means half the high watermark (following later changes to it). It is
        capped at the high watermark.
    :param clock: what schedules continued pulls (an ``IReactorTime``); the global
        reactor by default.
    :raises ValueError: for a negative watermark or a low watermark above the high one.
    """

    #: The high watermark used when none is given.
    defaultHighWatermark: ClassVar[int] = DEFAULT_HIGH_WATERMARK

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Twisted subclasses say ``bufferSize = N``; a plain class attribute would hide
        # the alias property, so turn it into this class's default high watermark.
        size = cls.__dict__.get("bufferSize")
        if isinstance(size, int):
            cls.defaultHighWatermark = size
            delattr(cls, "bufferSize")

    def __init__(
        self,
        consumer: _Consumer | None,
        highWatermark: int | None = None,
        lowWatermark: int | None = None,
        *,
        clock: _Clock | None = None,
    ) -> None:
        high = self.defaultHighWatermark if highWatermark is None else highWatermark
        self._high = _checkWatermark("highWatermark", high)
        self._low: int | None = None
        if lowWatermark is not None:
            self._low = _checkWatermark("lowWatermark", lowWatermark)
            if self._low > self._high:
                raise ValueError(
                    f"lowWatermark ({lowWatermark}) must not exceed highWatermark ({high})"
                )
        self._clock = clock
        self._pullCall: _DelayedCall | None = None
        # Last: registering on the consumer may pull me straight away.
        super().__init__(consumer)

    def _makeWatermark(self) -> None:
        self._wm = Watermark(self._pauser, *self._limits(), reason="buffer")

    def _limits(self) -> tuple[int, int]:
        # The Watermark pauses at >= high and resumes at <= low < high. A high watermark
        # of 0 pauses as soon as anything is buffered, like 1; a low watermark equal to
        # the high one resumes one byte below it, so there is still no flapping.
        high = max(self._high, 1)
        return high, min(self.lowWatermark, high - 1)

    @property
    def highWatermark(self) -> int:
        """Buffered bytes at which my streaming producer is paused (settable)."""
        return self._high

    @highWatermark.setter
    def highWatermark(self, value: int) -> None:
        self._high = _checkWatermark("highWatermark", value)
        self._wm.setLimits(*self._limits())
        self._regulate()

    @property
    def lowWatermark(self) -> int:
        """Buffered bytes at or below which my producer is resumed (settable)."""
        low = self._high // 2 if self._low is None else self._low
        return min(low, self._high)

    @lowWatermark.setter
    def lowWatermark(self, value: int | None) -> None:
        self._low = None if value is None else _checkWatermark("lowWatermark", value)
        self._wm.setLimits(*self._limits())
        self._regulate()

    @property
    def bufferSize(self) -> int:
        """Twisted's name for :attr:`highWatermark` (settable)."""
        return self._high

    @bufferSize.setter
    def bufferSize(self, value: int) -> None:
        self.highWatermark = value

    def pauseProducing(self) -> None:
        """Buffer instead of writing; my producer is paused only by my watermarks."""
        if not self.stopped:
            self.paused = True

    def resumeProducing(self) -> None:
        """
        Flush my buffer, then resume my producer if the buffer is at or below the low
        watermark (or pull it, for a pull producer).
        """
        if self.stopped:
            return
        self.paused = False
        if not self.iAmStreaming:
            self.outstandingPull = True
        self._drain()
        self._regulate()

    def registerProducer(self, producer: _Producer, streaming: bool) -> None:
        """
        Register ``producer``. A pull producer is pulled at once (unless my buffer is
        already at the high watermark); a push producer is paused at once if my buffer is
        already at the high watermark.

        :raises RuntimeError: if a producer is already registered, or after ``finish()``.
        """
        super().registerProducer(producer, streaming)
        if self.producer is not producer:
            return
        if streaming:
            self._regulate()
        else:
            self._pullMore(force=len(self._buffer) < self._high)

    def _afterWrite(self) -> None:
        if not self.paused and not self._sending and self._canSend():
            self._drain()
        if self.producer is None:
            return
        if self.producerIsStreaming:
            size = len(self._buffer)
            wm = self._wm
            # Inlined: below the high watermark with no pause held, nothing to do.
            if size >= wm.high or self._pauser.count:
                wm.check(size)
            return
        self._pullMore()

    def _regulate(self) -> None:
        if self.producer is None:
            return
        if self.producerIsStreaming:
            self._wm.check(len(self._buffer))
        else:
            self._pullMore()

    def _releasePauses(self) -> None:
        super()._releasePauses()
        self._wm.release()

    def _wantsPull(self) -> bool:
        if self.producer is None or self.producerIsStreaming or self._finishing:
            return False
        size = len(self._buffer)
        return size < self.lowWatermark or (not size and self._canSend())

    def _pullMore(self, force: bool = False) -> None:
        if self._pulling or self.stopped:
            return
        self._cancelPull()
        self._pulling = True
        try:
            moved = 0
            while force or self._wantsPull():
                force = False
                producer = self.producer
                if producer is None:
                    break
                before = self._pulled
                producer.resumeProducing()
                got = self._pulled - before
                if not got:
                    # Nothing now; its late write will bring us back here.
                    break
                moved += got
                if moved >= max(self._high, 1) and self._wantsPull():
                    # Enough for one reactor turn; carry on in the next.
                    self._schedulePull()
                    break
        finally:
            self._pulling = False

    def _schedulePull(self) -> None:
        if self._pullCall is None:
            clock = self._clock
            if clock is None:
                from twisted.internet import reactor

                clock = cast(_Clock, reactor)
            self._pullCall = clock.callLater(0, self._scheduledPull)

    def _scheduledPull(self) -> None:
        self._pullCall = None
        self._pullMore()

    def _cancelPull(self) -> None:
        call = self._pullCall
        if call is not None:
            self._pullCall = None
            if call.active():
                call.cancel()


def _checkWatermark(name: str, value: int) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value
