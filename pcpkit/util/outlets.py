"""
Bounded outlets: how every building block sends without buffering without limit.

A building block that sends to several places (a fan-out's branches, a backplane's
subscribers) or that makes many messages out of one (a deframer) must not let one slow
destination fill memory. :class:`Outlets` is the one mechanism they share:

* each destination is an :class:`Outlet`: one outbox of the owner, linked somewhere, with a
  bound (the destination inbox's own size, or ``size`` messages when it has none) and a
  policy: :data:`PAUSE` (hold the message and pause the owner's input until the destination
  drains) or :data:`DROP` (drop messages for this destination while it is full, counted in
  :attr:`Outlet.dropped`, so it never stalls the others);
* the owner's input is paused through a :class:`~pcpkit._pause.Pauser`: every full
  :data:`PAUSE` outlet holds one pause and the input resumes when the *last* full outlet has
  drained to its low watermark (counted pauses).

Only the public mailbox API is used: ``send`` into a box that is not full (so it never raises
``BoxFull`` and never parks the sender), ``len(box)``, ``box.maxsize`` and
``box.addWaiter``. :func:`boundInbox` bounds a building block's own inbox: a parking bound
where the component API offers one, else an Axon bound (senders ``put``, or retry on
``BoxFull``).

:class:`Transformer` is the base of the one-in, many-out components (framers, deframers,
marshallers, :class:`~pcpkit.util.sequencing.PureTransformer`).
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import Any, ClassVar

from twisted.logger import Logger

from pcpkit._pause import Pause, Pauser
from pcpkit._twisted import getReactor
from pcpkit.component import Box, Component, Linkage
from pcpkit.ipc import ErrorInformation, ProducerFinished, Shutdown, ShutdownMicroprocess

__all__ = [
    "PAUSE",
    "DROP",
    "DEFAULT_SIZE",
    "DEFAULT_GRACE",
    "Outlet",
    "Outlets",
    "boundInbox",
    "Transformer",
]

_log = Logger()

#: Policy: hold the message and pause the input while this destination is full.
PAUSE = "pause"
#: Policy: drop messages for this destination while it is full (counted), never stall.
DROP = "drop"
#: Bound (messages) of a destination inbox that has none of its own, and of the inboxes of
#: the building blocks.
DEFAULT_SIZE = 64
#: Seconds a full :data:`DROP` destination may take nothing before its messages are dropped
#: (a consumer that is merely behind a burst catches up within it).
DEFAULT_GRACE = 0.05
#: Messages a building block takes from its inbox in one step before giving others a turn.
BATCH = 64

_PARKING = "park" in inspect.signature(Component.setInboxSize).parameters


def boundInbox(component: Component, box: str, size: int = DEFAULT_SIZE) -> None:
    """
    Bound ``component``'s inbox ``box`` to ``size`` messages, with a parking bound when the
    component API has them (a plain ``send`` into it then parks the sender instead of raising
    ``BoxFull``), else with an Axon bound.
    """
    if _PARKING:
        component.setInboxSize(box, size, park=True)  # type: ignore[call-arg,unused-ignore]
    else:
        component.setInboxSize(box, size)


class Outlet:
    """
    One destination of an :class:`Outlets`: outbox ``boxname`` of the owner.

    Public counters: ``delivered`` (messages sent on), ``dropped`` (messages dropped by the
    :data:`DROP` policy, or left undelivered when the destination went away), ``pauses``
    (times this outlet paused the input) and ``peak`` (the most messages seen waiting in the
    destination inbox right after a send: the bound held if ``peak <= bound``).
    """

    __slots__ = (
        "outlets",
        "boxname",
        "policy",
        "size",
        "key",
        "linkage",
        "pending",
        "delivered",
        "dropped",
        "pauses",
        "peak",
        "_pause",
        "_dropping",
        "_graceUntil",
        "linkedSeen",
        "_onDrained",
        "_watched",
    )

    def __init__(
        self,
        outlets: Outlets,
        boxname: str,
        policy: str,
        size: int | None,
        key: object = None,
        linkage: Linkage | None = None,
    ) -> None:
        if policy not in (PAUSE, DROP):
            raise ValueError(f"policy must be {PAUSE!r} or {DROP!r}, not {policy!r}")
        if size is not None and size < 1:
            raise ValueError(f"an outlet size must be at least 1, not {size}")
        self.outlets = outlets
        self.boxname = boxname
        self.policy = policy
        self.size = size
        self.key = key
        self.linkage = linkage
        self.pending: deque[Any] = deque()
        self.delivered = 0
        self.dropped = 0
        self.pauses = 0
        self.peak = 0
        self._pause: Pause | None = None
        self._dropping = False
        self._graceUntil = 0.0
        #: Whether this outlet's outbox was seen linked to an inbox (by the batch paths).
        self.linkedSeen = False
        self._watched: object = None

        def onDrained() -> None:
            outlets._drained(self)

        self._onDrained = onDrained

    def __repr__(self) -> str:
        return (
            f"<Outlet {self.boxname!r} of {self.outlets.owner!r} ({self.policy}, "
            f"{self.delivered} delivered, {self.dropped} dropped)>"
        )

    @property
    def destination(self) -> Box:
        """The box messages sent here land in now."""
        return self.outlets.owner.outboxes[self.boxname].final

    @property
    def bound(self) -> int:
        """How many messages the destination may hold before this outlet counts as full."""
        dest = self.destination
        own = dest.maxsize
        if own is None:
            return self.size if self.size is not None else DEFAULT_SIZE
        return own if self.size is None else min(own, self.size)

    @property
    def blocked(self) -> bool:
        """Whether this outlet holds messages waiting for its destination to drain."""
        return bool(self.pending)

    def isFull(self) -> bool:
        return len(self.destination) >= self.bound


class Outlets:
    """
    The destinations of one component, and the counted pause of its input.

    ``onPause`` and ``onResume`` are called when the first full :data:`PAUSE` outlet pauses
    the input and when the last one has drained (by default: nothing, and ``owner.unpause``,
    for a generator ``main`` that checks :attr:`paused` before taking input).
    """

    def __init__(
        self,
        owner: Component,
        onPause: Callable[[], object] | None = None,
        onResume: Callable[[], object] | None = None,
        prefix: str = "outlet",
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self.owner = owner
        #: Seconds a full DROP outlet's destination gets to take a message before drops.
        self.grace = grace
        self.pauser = Pauser(onPause or (lambda: None), onResume or owner.unpause)
        self.outlets: list[Outlet] = []
        self.prefix = prefix
        self._counter = 0
        self._graceCall: Any = None

    def __iter__(self) -> Any:
        return iter(list(self.outlets))

    def __len__(self) -> int:
        return len(self.outlets)

    @property
    def paused(self) -> bool:
        """Whether a full outlet has paused the input."""
        return self.pauser.paused

    @property
    def pending(self) -> bool:
        """Whether any outlet still holds messages for its destination."""
        return any(o.pending for o in self.outlets)

    @property
    def dropped(self) -> int:
        """Messages dropped over all outlets (including outlets since removed)."""
        return self._droppedGone + sum(o.dropped for o in self.outlets)

    _droppedGone = 0

    # -- adding and removing destinations --------------------------------------------------

    def attach(
        self, boxname: str, policy: str = PAUSE, size: int | None = None, key: object = None
    ) -> Outlet:
        """Make the owner's existing outbox ``boxname`` an outlet."""
        if boxname not in self.owner.outboxes:
            raise KeyError(f"{self.owner!r} has no outbox {boxname!r}")
        outlet = Outlet(self, boxname, policy, size, key)
        self.outlets.append(outlet)
        return outlet

    def add(
        self,
        sink: Component,
        sinkbox: str = "inbox",
        policy: str = PAUSE,
        size: int | None = None,
        passthrough: int = 0,
    ) -> Outlet:
        """Make a new outbox of the owner, link it to ``(sink, sinkbox)``, return its outlet."""
        self._counter += 1
        name = f"{self.prefix}-{self._counter}"
        owner = self.owner
        owner.outboxes[name] = Box(owner, name, False)
        try:
            linkage = owner.link((owner, name), (sink, sinkbox), passthrough=passthrough)
        except BaseException:
            del owner.outboxes[name]
            raise
        outlet = Outlet(self, name, policy, size, (sink, sinkbox), linkage)
        self.outlets.append(outlet)
        return outlet

    def find(self, key: object) -> Outlet | None:
        for o in self.outlets:
            if o.key == key:
                return o
        return None

    def remove(self, outlet: Outlet, why: str = "removed") -> None:
        """
        Forget ``outlet``: unlink the outbox :meth:`add` made, release its pause. Messages
        it still held are counted in its ``dropped`` and logged.
        """
        if outlet not in self.outlets:
            return
        self.discard(outlet, why)
        self.outlets.remove(outlet)
        self._droppedGone += outlet.dropped
        if outlet.linkage is not None:
            self.owner.unlink(thelinkage=outlet.linkage)
            self.owner.outboxes.pop(outlet.boxname, None)

    def clear(self, why: str = "stopped") -> None:
        """Give up every outlet's messages; remove the outlets :meth:`add` made."""
        if self._graceCall is not None:
            if self._graceCall.active():
                self._graceCall.cancel()
            self._graceCall = None
        for o in list(self.outlets):
            if o.linkage is not None:
                self.remove(o, why)
            else:
                self.discard(o, why)

    def discard(self, outlet: Outlet, why: str) -> None:
        """Give up what ``outlet`` holds (counted in its ``dropped``, logged); keep it."""
        if outlet.pending:
            n = len(outlet.pending)
            outlet.dropped += n
            outlet.pending.clear()
            _log.warn(
                "{owner}: {n} messages for {box} not delivered: {why}",
                owner=self.owner,
                n=n,
                box=outlet.boxname,
                why=why,
            )
        self._release(outlet)

    def abandonUnlinked(self) -> None:
        """
        Give up on outlets whose outbox was linked to an inbox and no longer is (the
        consumer went away, say a closed connection): what they hold, and what is stranded
        in the outbox itself, is counted in ``dropped`` and logged.
        """
        why = "its outbox is no longer linked to anything"
        for o in self.outlets:
            dest = o.destination
            if dest.isInbox:
                continue
            self.discard(o, why)
            if o.linkedSeen and len(dest):
                n = 0
                while len(dest):
                    dest.take()
                    n += 1
                o.dropped += n
                _log.warn(
                    "{owner}: {n} messages for {box} not delivered: {why}",
                    owner=self.owner,
                    n=n,
                    box=o.boxname,
                    why=why,
                )

    # -- delivering --------------------------------------------------------------------------

    def deliver(self, msg: object) -> None:
        """Send ``msg`` to every outlet, by each outlet's policy."""
        # The per-message path of every fan-out: the common case (room, nothing held)
        # inlined; anything else goes through deliverTo.
        outboxes = self.owner.outboxes
        send = self.owner.send
        for outlet in self.outlets:
            if not outlet.pending and not outlet._dropping:
                dest = outboxes[outlet.boxname].final
                n = len(dest)
                own = dest.maxsize
                size = outlet.size
                if own is None:
                    bound = DEFAULT_SIZE if size is None else size
                else:
                    bound = own if size is None or size > own else size
                if n < bound:
                    send(msg, outlet.boxname)
                    outlet.delivered += 1
                    if n >= outlet.peak:
                        outlet.peak = n + 1
                    continue
            self.deliverTo(outlet, msg)

    def deliverMany(self, msgs: list[Any]) -> None:
        """:meth:`deliver` each of ``msgs``, in order (one bound check for one outlet)."""
        if len(self.outlets) != 1:
            for m in msgs:
                self.deliver(m)
            return
        outlet = self.outlets[0]
        i = 0
        if not outlet.pending and not outlet._dropping:
            name = outlet.boxname
            final = self.owner.outboxes[name].final
            if final.isInbox:
                outlet.linkedSeen = True
            n = len(final)
            # nothing else runs while we send: the destination only grows by our sends
            i = max(0, min(len(msgs), outlet.bound - n))
            send = self.owner.send
            for k in range(i):
                send(msgs[k], name)
            if i:
                outlet.delivered += i
                if n + i > outlet.peak:
                    outlet.peak = n + i
        if i < len(msgs) and outlet.policy == PAUSE:
            # the first goes through deliverTo (which blocks the outlet), the rest queue
            self.deliverTo(outlet, msgs[i])
            outlet.pending.extend(msgs[i + 1 :])
            return
        for k in range(i, len(msgs)):
            self.deliverTo(outlet, msgs[k])

    def deliverTo(self, outlet: Outlet, msg: object) -> None:
        """Send ``msg`` to ``outlet`` only, by its policy."""
        if outlet.pending:
            # already waiting: queue behind, so order is kept
            outlet.pending.append(msg)
            return
        box = self.owner.outboxes[outlet.boxname]
        dest = box.final
        if dest.isInbox:
            outlet.linkedSeen = True
        n = len(dest)
        if n >= outlet.bound:
            if outlet.policy == DROP:
                if outlet._dropping:
                    outlet.dropped += 1
                    return
                # Full for the first time since it last took a message: give its owner one
                # reactor turn to catch up (a burst is not a stall), then drop.
                outlet.pending.append(msg)
                self._block(outlet, dest)
                self._startGrace(outlet)
                return
            outlet.pending.append(msg)
            self._block(outlet, dest)
            return
        if outlet._dropping:
            outlet._dropping = False
            _log.info(
                "{owner}: {box} takes messages again ({n} dropped so far)",
                owner=self.owner,
                box=outlet.boxname,
                n=outlet.dropped,
            )
        self.owner.send(msg, outlet.boxname)
        outlet.delivered += 1
        if n >= outlet.peak:
            outlet.peak = n + 1

    def _clock(self) -> Any:
        # the reactor the owner is scheduled on, where the component API tells it
        reactor = getattr(getattr(self.owner, "scheduler", None), "reactor", None)
        return reactor if reactor is not None else getReactor()

    def _startGrace(self, outlet: Outlet) -> None:
        clock = self._clock()
        outlet._graceUntil = clock.seconds() + self.grace
        if self._graceCall is None:
            self._graceCall = clock.callLater(self.grace, self._graceOver)

    def _graceOver(self) -> None:
        self._graceCall = None
        clock = self._clock()
        now = clock.seconds()
        nextAt: float | None = None
        for outlet in list(self.outlets):
            if outlet.policy != DROP or not outlet.pending:
                continue
            if len(outlet.destination) < outlet.bound:
                self.flush(outlet)
                continue
            if outlet._graceUntil > now:
                nextAt = outlet._graceUntil if nextAt is None else min(nextAt, outlet._graceUntil)
                continue
            n = len(outlet.pending)
            outlet.pending.clear()
            outlet.dropped += n
            outlet._dropping = True
            _log.warn(
                "{owner}: destination of {box} took nothing for {grace}s; dropping messages "
                "for it until it does",
                owner=self.owner,
                box=outlet.boxname,
                grace=self.grace,
            )
            self._release(outlet)
        if nextAt is not None:
            self._graceCall = clock.callLater(max(0.0, nextAt - now), self._graceOver)

    def _block(self, outlet: Outlet, dest: Box) -> None:
        if outlet._pause is None:
            outlet._pause = self.pauser.pause(outlet)
            if outlet.policy == PAUSE:
                outlet.pauses += 1
        owner = dest.owner
        if (
            isinstance(owner, Component)
            and outlet._watched is not owner
            and outlet.linkage is not None
        ):
            # a destination component that has finished will never drain its inbox
            outlet._watched = owner
            owner.finished.addBoth(self._destinationFinished, outlet, owner)
        dest.addWaiter(outlet._onDrained)

    def _destinationFinished(self, result: Any, outlet: Outlet, owner: Component) -> Any:
        if outlet in self.outlets and outlet.destination.owner is owner:
            self.remove(outlet, f"{owner} has finished")
        return result

    def _drained(self, outlet: Outlet) -> None:
        if outlet not in self.outlets:
            return
        self.flush(outlet)

    def flush(self, outlet: Outlet) -> None:
        """Send what ``outlet`` holds while its destination has room."""
        pending = outlet.pending
        name = outlet.boxname
        box = self.owner.outboxes[name]
        send = self.owner.send
        while pending:
            dest = box.final
            if dest.isInbox:
                outlet.linkedSeen = True
            n = len(dest)
            room = outlet.bound - n
            if room <= 0:
                dest.addWaiter(outlet._onDrained)
                return
            k = min(room, len(pending))
            for _ in range(k):
                send(pending.popleft(), name)
            outlet.delivered += k
            if n + k > outlet.peak:
                outlet.peak = n + k
        self._release(outlet)

    def _release(self, outlet: Outlet) -> None:
        p = outlet._pause
        if p is not None:
            outlet._pause = None
            p.unpause()
        call = self._graceCall
        if call is not None and not any(o.pending for o in self.outlets if o.policy == DROP):
            self._graceCall = None
            if call.active():
                call.cancel()


class Transformer(Component):
    """
    Base of the components that turn each message into zero or more messages.

    Override :meth:`transform` (a message in, an iterable of messages out) and, if something
    is left at the end of the stream, :meth:`final`. Output goes out of ``outbox`` through an
    :class:`Outlet`: while the next inbox is full the transformer stops taking input, so its
    own bounded inbox (``inboxSize`` messages) holds its senders back.

    A ``ProducerFinished`` (or any ``Shutdown``) on ``control`` ends it once the inbox is
    empty and everything is delivered; a ``ShutdownMicroprocess`` ends it at once. Either is
    passed on along ``signal``. A :class:`ValueError` raised by :meth:`transform` (bad input)
    is reported on ``signal`` as an :class:`~pcpkit.ipc.ErrorInformation` followed by a
    ``ProducerFinished`` (messages made before it, listed in the exception's ``partial``
    attribute if it has one, are sent first); what still arrives is then discarded (counted
    in ``discarded``) until a shutdown message on ``control``, so no sender is left blocked.
    """

    Inboxes: ClassVar[dict[str, str] | list[str] | tuple[str, ...]] = {
        "inbox": "messages to transform",
        "control": "ProducerFinished: finish after the queued messages; "
        "ShutdownMicroprocess: stop now",
    }
    Outboxes: ClassVar[dict[str, str] | list[str] | tuple[str, ...]] = {
        "outbox": "transformed messages",
        "signal": "ErrorInformation on bad input; the shutdown message, passed on",
    }

    inboxSize = DEFAULT_SIZE

    def __init__(self, **argd: Any) -> None:
        super().__init__(**argd)
        boundInbox(self, "inbox", self.inboxSize)
        self.out = Outlets(self)
        self.outlet = self.out.attach("outbox")
        self.discarded = 0
        self.error: ErrorInformation | None = None

    def transform(self, msg: Any) -> Iterable[Any]:
        """Override: the messages that ``msg`` becomes."""
        return (msg,)

    def final(self) -> Iterable[Any]:
        """Override: messages to send at the end of the stream (say, a last frame)."""
        return ()

    def step(self) -> None:
        """Override: called once per turn after the inbox (say, to look at another inbox)."""

    def _fault(self, error: ValueError) -> None:
        self.error = ErrorInformation(self, exception=error, message=str(error))
        _log.warn("{component}: {error}", component=self, error=error)
        self.send(self.error, "signal")
        self.send(ProducerFinished(self, "stopped on bad input"), "signal")

    def main(self) -> Generator[int, None, None]:
        out = self.out
        ending: Shutdown | None = None
        finalSent = False
        while True:
            # control first: a ShutdownMicroprocess stops at once
            while self.dataReady("control"):
                msg = self.recv("control")
                if isinstance(msg, ShutdownMicroprocess):
                    out.clear("told to stop")
                    self.send(msg, "signal")
                    return
                if isinstance(msg, Shutdown):
                    ending = ending or msg
                elif isinstance(msg, ErrorInformation):
                    self.send(msg, "signal")
            if self.error is not None:
                # stopped on bad input: take (and count) what still comes, until told to end
                while self.dataReady("inbox"):
                    self.recv("inbox")
                    self.discarded += 1
                if ending is not None:
                    return
                self.pause()
                yield 1
                continue
            n = 0
            while not out.paused and n < BATCH and self.dataReady("inbox"):
                n += 1
                try:
                    results = list(self.transform(self.recv("inbox")))
                except ValueError as e:
                    # what was made before the error still goes out
                    out.deliverMany(list(getattr(e, "partial", ())))
                    self._fault(e)
                    break
                out.deliverMany(results)
            if self.error is None:
                self.step()
            if self.error is not None:
                continue
            if ending is not None:
                # the stream ends: nobody will ever drain an outbox that was unlinked
                out.abandonUnlinked()
            if ending is not None and not out.pending and not self.dataReady("inbox"):
                if not finalSent:
                    finalSent = True
                    try:
                        results = list(self.final())
                    except ValueError as e:
                        self._fault(e)
                        continue
                    for r in results:
                        out.deliver(r)
                    continue
                self.send(ending, "signal")
                return
            if n < BATCH or out.paused:
                self.pause()
            yield 1
