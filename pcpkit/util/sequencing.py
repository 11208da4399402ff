"""
Sequencing and control: :class:`Carousel`, :class:`Seq`, :class:`PureTransformer`,
:class:`MessageRateLimit`, :class:`OneShot`, :class:`TriggeredOneShot` (the Kamaelia names
and boxes: ``Kamaelia.Chassis.Carousel``, ``Kamaelia.Chassis.Seq``,
``Kamaelia.Util.PureTransformer``, ``Kamaelia.Util.RateFilter``, ``Kamaelia.Util.OneShot``).

Each bounds its own inbox and sends through a bounded outlet
(:mod:`pcpkit.util.outlets`), so none of them buffers without limit.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import Any

from twisted.logger import Logger

from pcpkit._twisted import getReactor
from pcpkit.component import Box, Component, Linkage
from pcpkit.ipc import ProducerFinished, Shutdown, ShutdownMicroprocess
from pcpkit.util.outlets import DEFAULT_SIZE, Outlets, Transformer, boundInbox

__all__ = [
    "PureTransformer",
    "OneShot",
    "TriggeredOneShot",
    "MessageRateLimit",
    "Seq",
    "Carousel",
]

_log = Logger()


class PureTransformer(Transformer):
    """
    Send ``function(message)`` for each message, unless it returns ``None`` (Kamaelia's
    PureTransformer). Subclasses may override ``processMessage`` instead of passing a
    function. A shutdown message on ``control`` ends it (after the queued messages, unless it
    is ``ShutdownMicroprocess``) and is passed on along ``signal``. A ``ValueError`` from the
    function stops it with an ``ErrorInformation`` on ``signal``; another exception fails it.
    """

    def __init__(self, function: Callable[[Any], Any] | None = None, **argd: Any) -> None:
        super().__init__(**argd)
        if function is not None:
            self.processMessage = function  # type: ignore[method-assign,assignment]

    def processMessage(self, msg: Any) -> Any:
        """Override (or pass ``function``): the message to send, or ``None``."""
        return None

    def transform(self, msg: Any) -> Iterable[Any]:
        result = self.processMessage(msg)
        return () if result is None else (result,)


class OneShot(Component):
    """Send ``msg`` once out of ``outbox``, then ``ProducerFinished`` on ``signal``; end."""

    Inboxes = {"inbox": "NOT USED", "control": "ShutdownMicroprocess: stop before sending"}
    Outboxes = {"outbox": "the item is sent out here", "signal": "ProducerFinished"}

    def __init__(self, msg: Any = None, **argd: Any) -> None:
        super().__init__(**argd)
        self.msg = msg

    async def main(self) -> None:
        await self.put(self.msg, "outbox")
        self.send(ProducerFinished(self), "signal")


class TriggeredOneShot(Component):
    """
    Wait for anything on ``inbox``, then send ``msg`` once and ``ProducerFinished`` on
    ``signal``. A shutdown message on ``control`` before that ends it (passed on).
    """

    Inboxes = {"inbox": "anything, as the trigger", "control": "shutdown signalling"}
    Outboxes = {"outbox": "the item is sent out here", "signal": "shutdown signalling"}

    def __init__(self, msg: Any = None, **argd: Any) -> None:
        super().__init__(**argd)
        self.msg = msg

    def main(self) -> Generator[int, None, None]:
        out = Outlets(self)
        outlet = out.attach("outbox")
        while not self.dataReady("inbox"):
            while self.dataReady("control"):
                msg = self.recv("control")
                self.send(msg, "signal")
                if isinstance(msg, Shutdown):
                    return
            self.pause()
            yield 1
        self.recv("inbox")
        out.deliver(self.msg)
        while outlet.pending:
            self.pause()
            yield 1
        self.send(ProducerFinished(self), "signal")


class MessageRateLimit(Component):
    """
    Pass messages on at most ``messages_per_second`` (Kamaelia's MessageRateLimit): it waits
    until ``buffer`` messages are queued (or the stream ends), then sends one every
    ``1 / messages_per_second`` seconds.

    Its inbox holds ``max(buffer, 64)`` messages (senders wait beyond that), its output is
    bounded as for every building block. ``ProducerFinished`` on ``control`` ends it once the
    queued messages are sent; ``ShutdownMicroprocess`` at once; either is passed on. ``clock``
    (an ``IReactorTime``, default the reactor) is for tests.
    """

    Inboxes = {"inbox": "incoming items/messages", "control": "shutdown signalling"}
    Outboxes = {
        "outbox": "items/messages limited to the maximum rate",
        "signal": "shutdown signalling",
    }

    def __init__(
        self, messages_per_second: float, buffer: int = 60, clock: Any = None, **argd: Any
    ) -> None:
        super().__init__(**argd)
        if messages_per_second <= 0:
            raise ValueError(f"messages_per_second must be positive, not {messages_per_second}")
        if buffer < 0:
            raise ValueError(f"buffer must be 0 or more, not {buffer}")
        self.mps = messages_per_second
        self.interval = 1.0 / messages_per_second
        self.buffer = buffer
        self.clock = clock
        boundInbox(self, "inbox", max(buffer, DEFAULT_SIZE))
        self._timer: Any = None

    def _tick(self) -> None:
        self._timer = None
        self.unpause()

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def main(self) -> Generator[int, None, None]:
        clock = self.clock or getReactor()
        out = Outlets(self)
        out.attach("outbox")
        ending: Shutdown | None = None
        buffering = self.buffer > 0
        due = 0.0
        try:
            while True:
                while self.dataReady("control"):
                    msg = self.recv("control")
                    if isinstance(msg, ShutdownMicroprocess):
                        out.clear("told to stop")
                        self.send(msg, "signal")
                        return
                    if isinstance(msg, Shutdown):
                        ending = ending or msg
                if buffering and (self.dataReady("inbox") >= self.buffer or ending):
                    buffering = False
                if not buffering and not out.paused and self.dataReady("inbox"):
                    now = clock.seconds()
                    if now >= due:
                        out.deliver(self.recv("inbox"))
                        due = now + self.interval
                    if self.dataReady("inbox") and self._timer is None:
                        self._timer = clock.callLater(max(0.0, due - now), self._tick)
                if ending is not None and not self.dataReady("inbox") and not out.pending:
                    self.send(ending, "signal")
                    return
                self.pause()
                yield 1
        finally:
            self._cancel()


class Seq(Component):
    """
    Run the given components one after another (Kamaelia's Seq): each in turn gets the
    ``inbox`` and sends out of the ``outbox``; when it finishes the next starts, given
    first what it left unread in its inbox (Kamaelia drops that, and timing decides how
    much there is; the last child's is dropped here too). A ``str`` in the sequence is
    logged (Kamaelia prints it). After the last, ``ProducerFinished`` on ``signal``. A
    ``ShutdownMicroprocess`` on ``control`` is passed to the running child and no later one
    is started.
    """

    Inboxes = {"inbox": "passed to the running child", "control": "ShutdownMicroprocess"}
    Outboxes = {"outbox": "the running child's outbox", "signal": "ProducerFinished at the end"}

    def __init__(self, *sequence: Component | str, **argd: Any) -> None:
        super().__init__(**argd)
        for item in sequence:
            if not isinstance(item, (Component, str)):
                raise TypeError(f"Seq takes components (or str), not {type(item).__name__}")
        self.sequence = sequence
        boundInbox(self, "inbox", DEFAULT_SIZE)

    def main(self) -> Generator[int, None, None]:
        leftover: Box | None = None
        for item in self.sequence:
            if isinstance(item, str):
                _log.info("{seq}: {text}", seq=self, text=item)
                continue
            self.addChildren(item)
            if leftover is not None:
                # What the last child left unread is the next one's, before anything newer.
                # (Kamaelia drops it, so what a child gets depends on how far ahead its
                # source ran; here it does not. Bounded: at most that inbox's contents.)
                dest = item.inboxes["inbox"]
                while leftover.queue:
                    dest.forceDeliver(leftover.take())
            links = [
                self.link((item, "outbox"), (self, "outbox"), passthrough=2),
                self.link((self, "inbox"), (item, "inbox"), passthrough=1),
            ]
            item.activate()
            stop: ShutdownMicroprocess | None = None
            while not item.finished.called:
                while self.dataReady("control"):
                    msg = self.recv("control")
                    if isinstance(msg, ShutdownMicroprocess) and stop is None:
                        stop = msg
                        item.inboxes["control"].final.deliver(msg)
                self.pause()
                yield 1
            for lk in links:
                self.unlink(thelinkage=lk)
            self.removeChild(item)
            leftover = item.inboxes["inbox"]
            if stop is not None:
                self.send(stop, "signal")
                return
        self.send(ProducerFinished(self), "signal")


class Carousel(Component):
    """
    Run one child at a time, replacing it on request (Kamaelia's Carousel).

    A message on ``next`` makes a new child with ``componentFactory(message)`` (stopping the
    current one first with ``ShutdownMicroprocess`` on its ``control``); the child gets the
    carousel's ``inbox`` and sends out of its ``outbox``. When a child finishes by itself,
    ``"NEXT"`` is sent out of ``requestNext`` (and at start with ``make1stRequest``).
    ``ProducerFinished`` on ``control`` lets the current child finish and then ends;
    ``ShutdownMicroprocess`` stops the child and ends. Either is passed on along ``signal``.
    Messages still in a replaced child's inbox go with it, as in Kamaelia.
    """

    Inboxes = {
        "inbox": "the child's inbox",
        "next": "requests to replace the child (the argument for the factory)",
        "control": "ProducerFinished, ShutdownMicroprocess",
    }
    Outboxes = {
        "outbox": "the child's outbox",
        "signal": "the shutdown message, passed on",
        "_signal": "internal: shutdown messages for the child",
        "requestNext": "'NEXT' when a new child is wanted",
    }

    def __init__(
        self,
        componentFactory: Callable[[Any], Component],
        make1stRequest: bool = False,
        **argd: Any,
    ) -> None:
        super().__init__(**argd)
        self.factory = componentFactory
        self.make1stRequest = make1stRequest
        self.child: Component | None = None
        self._childLinks: list[Linkage] = []
        boundInbox(self, "inbox", DEFAULT_SIZE)

    def _startChild(self, arg: Any) -> None:
        child = self.factory(arg)
        self.child = child
        self.addChildren(child)
        self._childLinks = [
            self.link((self, "inbox"), (child, "inbox"), passthrough=1),
            self.link((self, "_signal"), (child, "control")),
            self.link((child, "outbox"), (self, "outbox"), passthrough=2),
        ]
        child.activate()

    def _forget(self) -> None:
        child = self.child
        assert child is not None
        for lk in self._childLinks:
            self.unlink(thelinkage=lk)
        self.removeChild(child)
        self.child = None

    def main(self) -> Generator[int, None, None]:
        mustStop: Shutdown | None = None
        pleaseStop: Shutdown | None = None
        if self.make1stRequest:
            self.send("NEXT", "requestNext")
        stopping = False
        while True:
            while self.dataReady("control"):
                msg = self.recv("control")
                if isinstance(msg, ShutdownMicroprocess):
                    mustStop = msg
                elif isinstance(msg, Shutdown):
                    pleaseStop = pleaseStop or msg
            if self.child is not None and self.child.finished.called:
                self._forget()
                replaced = stopping
                stopping = False
                if not (replaced or self.dataReady("next") or mustStop or pleaseStop):
                    self.send("NEXT", "requestNext")
            if self.child is None:
                if mustStop is not None:
                    self.send(mustStop, "signal")
                    return
                if self.dataReady("next"):
                    self._startChild(self.recv("next"))
                elif pleaseStop is not None:
                    self.send(pleaseStop, "signal")
                    return
            elif not stopping:
                if mustStop is not None:
                    self.send(mustStop, "_signal")
                    stopping = True
                elif self.dataReady("next"):
                    self.send(ShutdownMicroprocess(self, "replaced"), "_signal")
                    stopping = True
                elif pleaseStop is not None:
                    self.send(pleaseStop, "_signal")
                    stopping = True
            self.pause()
            yield 1
