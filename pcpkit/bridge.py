"""
The seam between the byte level and the message level.

* :class:`InboxConsumer` is an ``IConsumer`` whose writes become messages in a component's
  inbox. A producer registered on it (a transport, a proxy, a file sender) is paused when the
  inbox holds its high watermark of messages and resumed when it has drained to the low one.
* :class:`OutboxProducer` is an ``IPushProducer`` that writes what a component sends out of an
  outbox to an ``IConsumer``. While the consumer has it paused it takes nothing, so its bounded
  sink fills and the component's ``send`` parks it (``put`` waits): back-pressure
  from a slow transport reaches the component that produces.

With these, transport -> component -> transport holds bounded memory at every hop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IProducer, IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from pcpkit._fifo import asBytes
from pcpkit._pause import Pause, Pauser, Watermark
from pcpkit._twisted import currentFailure, getReactor
from pcpkit.component import Box, Component, Linkage, Runnable, linkBoxes, unlinkBoxes

__all__ = ["InboxConsumer", "OutboxProducer"]

_log = Logger()

#: Bound used for an inbox or a sink that has none of its own (messages, not bytes).
DEFAULT_HIGH_WATERMARK = 64
#: Set by :mod:`pcpkit.inspect` while its registry is on (``None`` otherwise: no cost);
#: called once with each InboxConsumer and OutboxProducer when it is made.
inspectHook: Callable[[object], object] | None = None


@implementer(IConsumer)
class InboxConsumer:
    """
    An ``IConsumer`` that delivers each ``write`` as one message to ``component``'s inbox
    ``box``.

    The high watermark is the inbox's size (``setInboxSize``), or ``highWatermark`` (default
    64 messages) for an unbounded inbox; the producer resumes when the inbox has drained to its
    low watermark. Writes are never refused: a streaming producer may write a little after
    being paused (a transport finishing its read), so the inbox holds at most the high
    watermark plus what the producer wrote before it noticed.
    """

    def __init__(
        self,
        component: Component,
        box: str = "inbox",
        highWatermark: int | None = None,
        *,
        outbox: bool = False,
    ) -> None:
        self.component = component
        self.boxname = box
        # With outbox=True the writes go out of the component's outbox ``box`` to wherever it
        # links (how a transport feeds a component's output: a TCP client's reads).
        self._box: Box = component._outbox(box) if outbox else component._inbox(box)
        self.producer: Any = None
        self.streaming = True
        final = self._box.final
        if final.maxsize is not None:
            self.highWatermark = final.maxsize
        else:
            self.highWatermark = highWatermark or DEFAULT_HIGH_WATERMARK
            # An unbounded box never uses its low watermark for senders; waiters do.
            final.low = self.highWatermark // 2
        #: Counted pauses of the registered producer; the box's level holds one of them.
        self.pauser = Pauser(self._pauseProducer, self._resumeProducer)
        self.watermark = Watermark(self.pauser, self.highWatermark, final.low, reason=self)
        self._pullCall: Any = None
        if inspectHook is not None:
            inspectHook(self)

    def __repr__(self) -> str:
        return f"<InboxConsumer into {self._box!r}>"

    @property
    def producerPaused(self) -> bool:
        """Whether the registered producer is paused (the box is above its watermark)."""
        return self.pauser.paused

    @property
    def pauses(self) -> int:
        """How many times the producer was paused by a full box."""
        return self.pauser.pauses

    def _pauseProducer(self) -> None:
        # A pull producer is paused by not being asked for more.
        if self.producer is not None and self.streaming:
            self.producer.pauseProducing()

    def _resumeProducer(self) -> None:
        if self.producer is None:
            return
        if self.streaming:
            self.producer.resumeProducing()
        else:
            self._pull()

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError(
                f"{self!r} already has producer {self.producer!r}; unregister it first"
            )
        self.producer = producer
        self.streaming = streaming
        if not streaming:
            self._pull()

    def unregisterProducer(self) -> None:
        self.producer = None
        self.watermark.release()
        if self._pullCall is not None and self._pullCall.active():
            self._pullCall.cancel()
        self._pullCall = None

    def write(self, data: bytes) -> None:
        data = asBytes(data)
        final = self._box.final
        final.forceDeliver(data)
        if self.producer is None:
            return
        self.watermark.check(len(final.queue))
        if self.watermark.holding:
            final.addWaiter(self._drained)
        elif not self.streaming:
            # A pull producer is asked for more on the next turn, not recursively.
            if self._pullCall is None:
                self._pullCall = getReactor().callLater(0, self._pull)

    def _drained(self) -> None:
        # The box has drained to its low watermark: the watermark releases its pause.
        self.watermark.check(len(self._box.final.queue))

    def _pull(self) -> None:
        self._pullCall = None
        if self.producer is not None:
            self.producer.resumeProducing()


@implementer(IPushProducer)
class OutboxProducer(Runnable):
    """
    An ``IPushProducer`` that writes the messages ``component`` sends out of ``box`` to
    ``consumer`` (registered as a streaming producer on it).

    The outbox is linked to a sink of ``bufferSize`` messages (default 64). Messages must be
    bytes-like; anything else stops the producer and fails ``done`` with ``TypeError``.
    ``done`` fires when the producer is stopped (``stopProducing`` or :meth:`stop`).
    """

    def __init__(
        self,
        component: Component,
        box: str,
        consumer: Any,
        bufferSize: int = DEFAULT_HIGH_WATERMARK,
    ) -> None:
        super().__init__(component.scheduler)
        self.component = component
        self.consumer: Any = consumer
        self.stopped = False
        #: The consumer's pauses (one party: ``pauseProducing`` takes, ``resumeProducing``
        #: releases); while one is held nothing is taken from the sink.
        self.pauser = Pauser(lambda: None, self._wake)
        self._consumerPause: Pause | None = None
        self.done: Deferred[None] = Deferred()
        self._drainWaiters: list[Deferred[None]] = []
        self.sink = Box(self, f"{box}->{type(consumer).__name__}", True)
        self.sink.setLimits(bufferSize, bufferSize // 2, parking=True)
        self._link: Linkage | None = linkBoxes(component._outbox(box), self.sink, 0, component)
        consumer.registerProducer(self, True)
        if self.sink.queue:
            self._wake()
        if inspectHook is not None:
            inspectHook(self)

    def __repr__(self) -> str:
        return f"<OutboxProducer {self.sink.name!r} of {self.component!r}>"

    @property
    def paused(self) -> bool:
        """Whether the consumer has this producer paused."""
        return self.pauser.paused

    @property
    def pauses(self) -> int:
        """How many times the consumer paused this producer."""
        return self.pauser.pauses

    @property
    def buffered(self) -> int:
        """Messages waiting in the sink."""
        return len(self.sink.queue)

    def _wake(self) -> None:
        self._paused = False
        if not self.paused and not self.stopped and not self._queued:
            self.scheduler.schedule(self)  # type: ignore[union-attr]

    def _run(self) -> None:
        self._queued = False
        sink = self.sink
        consumer = self.consumer
        if consumer is None:
            return
        while sink.queue and not self.paused and not self.stopped:
            msg = sink.take()
            try:
                data = asBytes(msg, "a message for a byte consumer")
            except TypeError:
                failure = currentFailure()
                _log.failure("{producer} cannot write", failure, producer=self)
                self._stop(failure)
                return
            consumer.write(data)
        if not sink.queue and self._drainWaiters:
            waiters, self._drainWaiters = self._drainWaiters, []
            for d in waiters:
                d.callback(None)

    def whenDrained(self) -> Deferred[None]:
        """A Deferred that fires once every message taken so far is written to the consumer."""
        d: Deferred[None] = Deferred()
        if not self.sink.queue or self.stopped:
            d.callback(None)
        else:
            self._drainWaiters.append(d)
            self._wake()
        return d

    def pauseProducing(self) -> None:
        if self._consumerPause is None:
            self._consumerPause = self.pauser.pause(self.consumer)

    def resumeProducing(self) -> None:
        p, self._consumerPause = self._consumerPause, None
        if p is not None:
            p.unpause()  # resumes: _wake
        else:
            self._wake()

    def stopProducing(self) -> None:
        self._stop(None)

    def stop(self) -> None:
        """Stop writing and unregister from the consumer."""
        consumer = self.consumer
        self._stop(None)
        if consumer is not None:
            consumer.unregisterProducer()

    def _stop(self, failure: Any) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.consumer = None
        if self._link is not None:
            unlinkBoxes(self._link)
            self._link = None
        waiters, self._drainWaiters = self._drainWaiters, []
        for d in waiters:
            d.callback(None)
        if failure is None:
            self.done.callback(None)
        else:
            self.done.errback(failure)
