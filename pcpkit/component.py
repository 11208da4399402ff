"""
Kamaelia/Axon-style mailbox components, scheduled on the Twisted reactor.

A :class:`Component` has named inboxes and outboxes. Its ``main`` is either a generator (Axon
style: do some work, ``yield``, and ``self.pause()`` when there is nothing to do) or an
``async def`` coroutine that awaits :meth:`Component.get`, :meth:`Component.put` and
``async for msg in self.messages()``. The scheduler steps both itself (``next`` /
``coroutine.send``); a coroutine may also await any Deferred, which resumes it when it fires.
Components are linked outbox to inbox; a link resolves to the *final* inbox, so a send is one
append plus a wake-up, however deeply components nest.

Bounds come in two kinds (see ``docs/components.rst``, "Bounded inboxes"):

* a *parking* bound (``setInboxSize(box, n, park=True)``, what pcpkit's adapters use): a plain
  ``send`` into the full inbox is accepted and the *sender* is parked -- not stepped again
  until the inbox has drained to its low watermark. The inbox holds at most its size plus
  what one step of each sender sends.
* an *Axon* bound (``setInboxSize(box, n)``, ``inboxes[box].setSize(n)``): ``send`` raises
  :class:`BoxFull` (``noSpaceInBox``), as Axon does, and the sender is woken when the inbox
  has drained to its low watermark.

``await self.put(...)`` waits on either kind; ``ThreadedComponent.send`` blocks its thread on
either.

Every message enters a box through :meth:`Box.deliver` and leaves an inbox through
:meth:`Box.take`. The scheduler (:class:`Scheduler`) runs on a reactor, the global one unless
a component is activated on another: nothing runs while every component is paused, each
reactor turn runs components for a bounded slice of time, and then the reactor gets to do its
I/O.
"""

from __future__ import annotations

import contextvars
import inspect
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from typing import Any, ClassVar, cast

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pcpkit._twisted import currentFailure, getReactor, onForeignThread
from pcpkit.ipc import (
    ErrorInformation,
    NewComponent,
    ProducerFinished,
    Shutdown,
    ShutdownMicroprocess,
    WaitComplete,
)

__all__ = [
    "Stopped",
    "Box",
    "BoxFull",
    "noSpaceInBox",
    "EmptyBox",
    "UnknownBox",
    "BoxAlreadyLinked",
    "UndeliveredMessages",
    "Linkage",
    "Scheduler",
    "Runnable",
    "linkBoxes",
    "unlinkBoxes",
    "Component",
    "component",
]

_log = Logger()

#: How long one reactor turn may spend running components before the reactor polls I/O.
SLICE_SECONDS = 0.005
#: How many times a generator is stepped in a row before the next component gets a turn.
GENERATOR_BATCH = 16
#: How many get/put calls an ``async`` main may complete without suspending before it is made
#: to give up its turn (so a coroutine over unbounded boxes cannot starve the reactor).
ASYNC_BUDGET = 256
#: How many messages an outbox that is not linked holds before ``put`` waits for a link (a
#: plain ``send`` keeps Axon's behaviour there: it is accepted and nobody is parked).
UNLINKED_OUTBOX_SIZE = 64
#: Set by :mod:`pcpkit.inspect` while its registry is on (``None`` otherwise: no cost);
#: called once with each component when it is made.
inspectHook: Callable[[object], object] | None = None


class BoxFull(Exception):
    """
    ``send`` found the destination inbox full, and its bound is an Axon bound (Axon:
    ``noSpaceInBox``).

    The sender has been registered on the inbox: a generator that now calls ``self.pause()``
    and yields is woken when the inbox drains to its low watermark. ``box`` is the full inbox.
    """

    def __init__(self, box: Box) -> None:
        super().__init__(
            f"inbox {box.name!r} of {box.owner!r} is full ({len(box.queue)} of {box.maxsize} "
            "messages); pause and retry when woken, or use 'await self.put(...)'"
        )
        self.box = box


noSpaceInBox = BoxFull


class UndeliveredMessages(Exception):
    """
    A shutdown message would overtake messages that are stranded in an outbox.

    An outbox that was linked and then unlinked holds what was sent into it afterwards until
    it is linked again. Sending a :class:`~pcpkit.ipc.Shutdown` on ``signal`` to a listener
    meanwhile would tell it "nothing more comes" with data still owed to it, so the send
    raises this instead. ``box`` is the outbox holding the messages. (Not when the outbox
    was unlinked from a component that had finished, as Kamaelia's chassis unplug finished
    children: nobody is owed those messages.)
    """

    def __init__(self, sender: object, box: Box, message: object) -> None:
        super().__init__(
            f"{sender!r} sent {message!r} while its outbox {box.name!r} still holds "
            f"{len(box.queue)} messages that were never delivered (it was unlinked); "
            "link it again before signalling the end"
        )
        self.box = box


class EmptyBox(IndexError):
    """``recv`` on an inbox with nothing in it (an ``IndexError``, as in Axon)."""


class UnknownBox(KeyError):
    """A box name the component does not declare in ``Inboxes`` / ``Outboxes``."""

    def __str__(self) -> str:
        return str(self.args[0])


class BoxAlreadyLinked(Exception):
    """An outbox (or a passthrough inbox) can be linked to only one destination."""


class Scheduler:
    """
    Runs runnable things (:class:`Runnable`) on a reactor, a bounded slice of time per turn.

    ``reactor`` defaults to the global reactor (looked up when needed); a test may pass a
    ``twisted.internet.task.Clock`` and drive the scheduler with ``clock.advance(0)``:
    ``component.activate(Scheduler(clock))``. There is at most one pending ``callLater(0)``,
    and none when nothing is runnable, so an idle program costs no CPU and a test sees a clean
    reactor.
    """

    def __init__(self, reactor: Any = None) -> None:
        self._reactor = reactor
        self.runQueue: deque[Runnable] = deque()
        self.pending: Any = None

    @property
    def reactor(self) -> Any:
        """The reactor this scheduler runs on."""
        return self._reactor if self._reactor is not None else getReactor()

    def schedule(self, r: Runnable) -> None:
        """Run ``r`` (its ``_run``) soon, unless it is already queued."""
        if r._queued:
            return
        r._queued = True
        self.runQueue.append(r)
        if self.pending is None:
            self.pending = self.reactor.callLater(0, self.runSlice)

    def runSlice(self) -> None:
        """Run queued things for up to :data:`SLICE_SECONDS`; called by the reactor."""
        self.pending = None
        q = self.runQueue
        clock = time.perf_counter
        deadline = clock() + SLICE_SECONDS
        while q:
            r = q.popleft()
            # _queued stays True while it runs, so wake-ups during its own run are cheap;
            # _run decides whether it goes back in the queue.
            r._run()
            if clock() >= deadline:
                break
        if q and self.pending is None:
            self.pending = self.reactor.callLater(0, self.runSlice)


_defaultScheduler = Scheduler()


class Runnable:
    """
    The base of what a :class:`Scheduler` runs and of what owns an inbox.

    A subclass implements ``_wake()`` (a message arrived in one of its inboxes, or a box it
    waits on drained: schedule yourself, ``self.scheduler.schedule(self)``) and ``_run()``
    (called by the scheduler: do a bounded amount of work, set ``_queued = False`` unless
    it should run again). ``scheduler`` is the :class:`Scheduler` it runs on (``None``: the
    global one). ``_paused``/``_queued``/``_poked`` are read by :meth:`Box.deliver` to skip
    redundant wake-ups; ``_parkedOn`` is the box a parked sender waits on.
    """

    _paused: bool = False
    _queued: bool = False
    _poked: bool = False
    _parkedOn: Box | None = None
    scheduler: Scheduler | None = None

    def __init__(self, scheduler: Scheduler | None = None) -> None:
        self.scheduler = scheduler if scheduler is not None else _defaultScheduler

    def _wake(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        raise NotImplementedError

    def _park(self, box: Box) -> None:
        """A plain ``send`` filled ``box`` past its parking bound: stop until it drains."""
        self._parkedOn = box
        box.addWaiter(self._unpark)

    def _unpark(self) -> None:
        if self._parkedOn is not None:
            self._parkedOn = None
            if not self._paused:
                self._wake()


#: ``Box.deliver(msg, FORCE)``: accept even when full (messages already accepted upstream).
FORCE: Any = object()


def _reactorOf(owner: object) -> Any:
    sched = getattr(owner, "scheduler", None)
    return sched.reactor if isinstance(sched, Scheduler) else getReactor()


def _send(sender: Any, message: object, boxname: str = "outbox", box: Box | None = None) -> None:
    """
    The one delivery path of every message: :meth:`Component.send` is this function, and
    :meth:`Box.deliver` / :meth:`Box.forceDeliver` call it with the box already resolved.
    :meth:`Component.put` writes out its last steps (append, count, wake the owner) for an
    inbox with room, sparing a call per message; a test holds the two together.
    """
    if box is None:
        try:
            box = sender.outboxes[boxname]
        except KeyError:
            box = sender._outbox(boxname)
    if boxname == "signal" and isinstance(message, Shutdown):
        sender._signalling(box, message)
    dest = box.final
    q = dest.queue
    if len(q) >= dest.limit and sender is not FORCE:
        if dest.closed:
            dest.dropped += 1  # its owner has finished: nobody will make room
            return
        if not dest.parking:
            if sender is not None:
                dest.addWaiter(sender._wake)
            raise BoxFull(dest)
        if sender is not None and dest.isInbox:
            sender._park(dest)
    q.append(message)
    dest.putCount += 1
    if dest.isInbox:
        # The owner is woken only if it is asleep (a queued or running component will look
        # at its inboxes anyway) ...
        owner = dest.owner
        if owner._paused or not owner._queued:
            owner._wake()
        else:
            # ... but remembers, so a pause() later in its step is not a sleep.
            owner._poked = True


def _recv(owner: Any, boxname: str = "inbox", box: Box | None = None) -> Any:
    """
    The one take path: :meth:`Component.recv` is this function, and :meth:`Box.take` calls
    it with the box already resolved. The two per-message loops, :meth:`Component.Inbox` and
    :meth:`Component.messages`, take with ``popleft`` and then apply this function's rule
    themselves (waiters run once the box has drained to ``low``), sparing a call per message.
    """
    if box is None:
        try:
            box = owner.inboxes[boxname]
        except KeyError:
            box = owner._inbox(boxname)
    q = box.queue
    try:
        msg = q.popleft()
    except IndexError:
        raise EmptyBox(
            f"inbox {box.name!r} of {box.owner!r} is empty; check dataReady({box.name!r}) first"
        ) from None
    if box.waiters and len(q) <= box.low:
        box.drained()
    return msg


class Box:
    """
    One inbox or outbox.

    Every box has a queue. An inbox's queue holds messages for its owner. An outbox's queue
    holds what was sent while it was not linked; linking it moves those messages on, in order.
    ``final`` is where a message put into this box really lands: the end of the chain of links.

    Public, documented attributes: ``owner``, ``name``, ``isInbox``, ``final``, ``maxsize``
    (``None``: unbounded), ``low`` (the low watermark), ``parking`` (whether the bound parks
    senders rather than raising :class:`BoxFull`), ``putCount`` (messages that ever entered
    this box's queue; for an inbox, messages taken = ``putCount - len(box)``), ``closed``
    (an inbox whose owner has finished: nothing will ever take from it) and ``dropped``
    (messages sent into it once it was closed and full, and discarded).
    """

    __slots__ = (
        "owner",
        "name",
        "isInbox",
        "queue",
        "maxsize",
        "limit",
        "low",
        "parking",
        "putCount",
        "waiters",
        "target",
        "sources",
        "final",
        "wasLinked",
        "closed",
        "dropped",
        "lastFinal",
    )

    def __init__(self, owner: Any, name: str, isInbox: bool) -> None:
        self.owner = owner
        self.name = name
        self.isInbox = isInbox
        self.queue: deque[Any] = deque()
        self.maxsize: int | None = None
        # maxsize as a number that is never None, for one comparison on the hot path
        self.limit = sys.maxsize
        self.low = 0
        self.parking = False
        self.putCount = 0
        self.waiters: list[Callable[[], object]] = []
        self.target: Box | None = None
        self.sources: list[Box] = []
        self.final: Box = self
        self.wasLinked = False
        self.closed = False
        self.dropped = 0
        # the inbox this box led to before an unlink made it its own final box
        self.lastFinal: Box | None = None
        if not isInbox:
            self.setLimits(UNLINKED_OUTBOX_SIZE, UNLINKED_OUTBOX_SIZE // 2, parking=True)

    def __repr__(self) -> str:
        kind = "inbox" if self.isInbox else "outbox"
        return f"<{kind} {self.name!r} of {self.owner!r}: {len(self.queue)} queued>"

    def __len__(self) -> int:
        return len(self.queue)

    # -- putting and taking ---------------------------------------------------------------------

    def deliver(self, msg: object, sender: Any = None) -> None:
        """
        Put ``msg`` into this box's final box, respecting its bound as ``send`` does.

        When that box is full: with an Axon bound, raise :class:`BoxFull` (registering
        ``sender``'s wake-up on it first); with a parking bound, accept ``msg`` and park
        ``sender`` if the box is an inbox. ``sender`` is the sending :class:`Runnable`,
        ``None`` for code that is not a component (then a parking bound simply accepts), or
        :data:`FORCE` to accept whatever the bound (messages accepted upstream already, and
        signals that must not be lost). This is :meth:`Component.send`'s own code.
        """
        _send(sender, msg, "", self)

    def forceDeliver(self, msg: object) -> None:
        """``deliver(msg, FORCE)``: append even when full."""
        _send(FORCE, msg, "", self)

    def take(self) -> Any:
        """
        Remove and return the oldest message; the waiters run when the box has drained to its
        low watermark. Raises :class:`EmptyBox` (an ``IndexError``) when empty. This is
        :meth:`Component.recv`'s own code.
        """
        return _recv(None, "", self)

    def drained(self) -> None:
        """Run the waiters (the box has drained); a thread's inbox overrides where."""
        self.fireWaiters()

    def isFull(self) -> bool:
        """
        Whether this box is at its bound; for a linked outbox, whether the inbox it leads to
        is (Axon's ``isFull``). Kamaelia components look before they send (``if
        outbox.isFull(): pause()``) and count on being woken when that inbox is read: asked
        so, the owner is woken once it has drained to its low watermark.
        """
        final = self.final
        if final is self:
            return len(self.queue) >= self.limit
        if len(final.queue) < final.limit or final.closed:
            return False  # (a closed inbox takes what is sent, and drops it)
        owner = self.owner
        # (a thread's own calls stay side-effect free: waiters belong to the reactor)
        if isinstance(owner, Runnable) and not onForeignThread():
            final.addWaiter(owner._wake)
        return True

    def setLimits(self, maxsize: int | None, low: int, parking: bool = False) -> None:
        self.maxsize = maxsize
        self.limit = sys.maxsize if maxsize is None else maxsize
        self.low = low
        self.parking = parking
        self.fireWaiters()

    def setSize(self, size: int | None) -> None:
        """Axon's ``postbox.setSize``: an Axon bound of ``size`` messages (``None``: none)."""
        if size is None:
            self.setLimits(None, 0)
            return
        if size < 1:
            raise ValueError(f"a box size must be at least 1, not {size}")
        self.setLimits(size, size // 2)

    def getSize(self) -> int | None:
        """Axon's ``postbox.getSize``: the bound in messages, ``None`` when unbounded."""
        return self.maxsize

    # -- waiting for space ------------------------------------------------------------------

    def addWaiter(self, waiter: Callable[[], object]) -> None:
        """
        Call ``waiter`` once, when this box has drained to its low watermark.

        If it already has (a thread may have drained it meanwhile), ``waiter`` is called on
        the next reactor turn, never from inside this call: the caller has not yet paused.
        """
        if waiter not in self.waiters:
            self.waiters.append(waiter)
        if len(self.queue) <= self.low:
            _reactorOf(self.owner).callLater(0, self.fireWaiters)

    def fireWaiters(self) -> None:
        if len(self.queue) > self.low and not self.closed:
            return
        waiters, self.waiters = self.waiters, []
        for w in waiters:
            w()

    def close(self) -> None:
        """
        The owner has finished: nothing will take from this inbox again. Senders waiting for
        room are let go, and once it is full what is sent into it is discarded (counted in
        ``dropped``) instead of parking or blocking its sender, or raising :class:`BoxFull`,
        for good. (In Axon it would pile up in the dead inbox; here it stays bounded.)
        """
        self.closed = True
        self.fireWaiters()

    # -- link resolution ----------------------------------------------------------------------

    def _refresh(self) -> None:
        new = self.target.final if self.target is not None else self
        if self.final.isInbox and new is self:
            self.lastFinal = self.final
        self.final = new
        if new is not self and self.queue:
            # Messages that waited here (an unlinked outbox) move on, in order.
            moved = list(self.queue)
            self.queue.clear()
            for m in moved:
                new.deliver(m, FORCE)
        if self.waiters:
            self.fireWaiters()
        for s in self.sources:
            s._refresh()


class Linkage:
    """A link from ``source`` box to ``sink`` box, as returned by :meth:`Component.link`."""

    __slots__ = ("source", "sink", "passthrough", "creator")

    def __init__(self, source: Box, sink: Box, passthrough: int, creator: object) -> None:
        self.source = source
        self.sink = sink
        self.passthrough = passthrough
        self.creator = creator

    def __repr__(self) -> str:
        return f"<Linkage {self.source!r} -> {self.sink!r}>"


def linkBoxes(src: Box, dst: Box, passthrough: int, creator: Any) -> Linkage:
    """
    Link box ``src`` to box ``dst``: what :meth:`Component.link` does once it has found the
    boxes. Messages waiting in ``src`` move on to the new final box, in order. ``creator``
    (a component, or ``None``) records the link in its ``postoffice``.
    """
    if src.target is not None:
        raise BoxAlreadyLinked(
            f"{src!r} is already linked to {src.target!r}; unlink it first "
            "(a box has one destination; fan in by linking several outboxes to one inbox)"
        )
    if dst.final is src or dst is src:
        raise ValueError(f"linking {src!r} to {dst!r} would make a loop")
    src.target = dst
    src.wasLinked = True
    dst.sources.append(src)
    linkage = Linkage(src, dst, passthrough, creator)
    postoffice = getattr(creator, "postoffice", None)
    if postoffice is not None:
        postoffice.append(linkage)
    src._refresh()
    return linkage


def unlinkBoxes(lk: Linkage) -> None:
    """Remove link ``lk``; what is sent into its source afterwards waits there for a link."""
    src, dst = lk.source, lk.sink
    if src.target is dst:
        src.target = None
        dst.sources.remove(src)
        src._refresh()
    postoffice = getattr(lk.creator, "postoffice", None)
    if postoffice is not None and lk in postoffice:
        postoffice.remove(lk)


def _abortIn(control: Box | None) -> ShutdownMicroprocess | None:
    if control is not None and control.queue:
        for msg in control.queue:
            if isinstance(msg, ShutdownMicroprocess):
                return msg
    return None


class _Waiter:
    """
    What an ``async`` main is suspended on: data in some inboxes, or a free turn. A
    ``ShutdownMicroprocess`` arriving in ``abortOn`` (the control inbox) ends the wait too.

    ``await waiter`` yields the waiter itself to the component's driver
    (:meth:`Component._resume`), which keeps it until it is ready and then sends the
    coroutine the value (the message taken, or ``None``) or throws :class:`Stopped` into it:
    no Deferred on the way.
    """

    __slots__ = ("boxes", "take", "abortOn")

    def __init__(self, boxes: tuple[Box, ...], take: bool, abortOn: Box | None = None) -> None:
        self.boxes = boxes
        self.take = take
        self.abortOn = abortOn

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self)

    def ready(self) -> bool:
        if not self.boxes:
            return True
        for b in self.boxes:
            if b.queue:
                return True
        ctl = self.abortOn
        return ctl is not None and bool(ctl.queue) and _abortIn(ctl) is not None


#: What a coroutine awaits to give up its turn (its budget is spent): ready at once, it
#: sends the coroutine to the back of the run queue. It holds no state, so it is shared.
_TURN = _Waiter((), take=False)


class _SpaceWaiter(_Waiter):
    """
    Suspended until the box an outbox leads to has room again. Woken but still full (others
    filled it first, or the outbox now leads elsewhere), it waits on that box again.
    """

    __slots__ = ("wake",)

    def __init__(self, box: Box, wake: Callable[[], object], abortOn: Box | None) -> None:
        super().__init__((box,), take=False, abortOn=abortOn)
        self.wake = wake

    def ready(self) -> bool:
        dest = self.boxes[0].final
        if not dest.isFull() or dest.closed or _abortIn(self.abortOn) is not None:
            return True
        dest.addWaiter(self.wake)
        return False


class Stopped(Exception):
    """
    Raised inside an ``async`` main by ``get`` or ``put`` when a ``ShutdownMicroprocess``
    arrives on ``control`` while it waits (say, the inbox it feeds belongs to a component
    that died). Letting it propagate ends the component normally: ``finished`` fires with
    ``None`` and the shutdown message is passed on along ``signal``.
    """


class Component(Runnable):
    """
    A mailbox component (Axon's ``component``).

    Subclasses declare their boxes in the ``Inboxes`` and ``Outboxes`` dicts (name to
    description) and write ``main`` as a generator or an ``async def``.

    Keyword arguments to the constructor become attributes, as in Axon.

    ``finished`` is a Deferred that fires with ``main``'s return value when it ends, or fails
    with its exception. An exception in ``main`` is also logged, and sent on ``signal`` as an
    :class:`~pcpkit.ipc.ErrorInformation` followed by a :class:`~pcpkit.ipc.ProducerFinished`
    so that the components downstream finish too; other components keep running.

    An ``async`` main that ends because :meth:`messages` saw a shutdown message, and that
    did not itself send a :class:`~pcpkit.ipc.Shutdown` on ``signal``, has that message
    forwarded on ``signal`` for it, so a pipeline of such components shuts down in order.
    """

    Inboxes: ClassVar[dict[str, str] | list[str] | tuple[str, ...]] = {
        "inbox": "data",
        "control": "shutdown messages",
    }
    Outboxes: ClassVar[dict[str, str] | list[str] | tuple[str, ...]] = {
        "outbox": "data",
        "signal": "shutdown messages",
    }

    _idCounter: ClassVar[int] = 0

    def __init__(self, *args: Any, **argd: Any) -> None:
        if args:
            raise TypeError(
                f"{type(self).__name__}() passes unexpected positional arguments {args!r} "
                "to Component.__init__ (only keyword arguments become attributes)"
            )
        # setattr, not __dict__.update: the latter turns off CPython's fast attribute
        # access for the instance, which costs every self.x on the per-message path.
        for key, value in argd.items():
            setattr(self, key, value)
        Component._idCounter += 1
        self.id = Component._idCounter
        self.name = f"{type(self).__module__}.{type(self).__name__}_{self.id}"
        self.inboxes: dict[str, Box] = {n: Box(self, n, True) for n in self.Inboxes}
        self.outboxes: dict[str, Box] = {n: Box(self, n, False) for n in self.Outboxes}
        self.children: list[Component] = []
        self.postoffice: list[Linkage] = []
        self.finished: Deferred[Any] = Deferred()
        self.shutdownMessage: Shutdown | None = None
        self._active = False
        self._started = False
        self._done = False
        self._queued = False
        self._paused = False
        self._keepPoke = False
        self._gen: Generator[Any, Any, Any] | None = None
        # the generators suspended by ``yield WaitComplete(g)``, innermost last
        self._suspended: list[Generator[Any, Any, Any]] = []
        # raised by a WaitComplete generator, to be raised in its caller on the next step
        self._thrown: BaseException | None = None
        self._halted = False
        self._waiter: _Waiter | None = None
        self._coro: Coroutine[Any, Any, Any] | None = None
        self._context: contextvars.Context | None = None
        self._budget = ASYNC_BUDGET
        self._sentShutdown = False
        self._parkedOn = None
        #: the :class:`Scheduler` it runs on, set by :meth:`activate`
        self.scheduler = None
        if inspectHook is not None:
            inspectHook(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.id}>"

    def __str__(self) -> str:
        return f"{type(self).__name__} #{self.id}"

    # -- the mailbox ----------------------------------------------------------------------------

    def _inbox(self, box: str) -> Box:
        try:
            return self.inboxes[box]
        except KeyError:
            raise UnknownBox(
                f"{self!r} has no inbox {box!r}; its inboxes are {sorted(self.inboxes)}"
            ) from None

    def _outbox(self, box: str) -> Box:
        try:
            return self.outboxes[box]
        except KeyError:
            raise UnknownBox(
                f"{self!r} has no outbox {box!r}; its outboxes are {sorted(self.outboxes)}"
            ) from None

    send = _send
    send.__doc__ = """
        send(message, boxname="outbox")

        Send ``message`` out of outbox ``boxname``, straight into the final inbox.

        If that inbox is full: with a parking bound the message is accepted and this
        component is parked (not stepped again until the inbox drains to its low watermark);
        with an Axon bound :class:`BoxFull` is raised and this component is woken
        (``unpause``) when the inbox has drained to its low watermark. A shutdown message on
        ``signal`` raises :class:`UndeliveredMessages` instead of overtaking messages stranded
        in an unlinked outbox. (``box`` is for :meth:`Box.deliver`, which shares this code.)
        """

    def _signalling(self, box: Box, message: object) -> None:
        """A shutdown message goes out on ``box``: refuse to overtake stranded messages."""
        if box.final.isInbox:
            for other in self.outboxes.values():
                f = other.final
                if other is not box and f.queue and not f.isInbox and f.wasLinked:
                    last = f.lastFinal
                    if last is not None and last.closed:
                        # it led to a component that has finished (and was unplugged, as
                        # Kamaelia's chassis do): nobody is owed these messages
                        continue
                    raise UndeliveredMessages(self, f, message)
        dest = box.final
        if dest.parking or len(dest.queue) < dest.limit:  # else BoxFull: not sent after all
            self._sentShutdown = True

    def _forceSend(self, message: object, boxname: str) -> None:
        """Send even into a full inbox: for signals that must not be lost or block."""
        box = self.outboxes.get(boxname)
        if box is not None:
            _send(FORCE, message, "", box)
            if boxname == "signal" and isinstance(message, Shutdown):
                self._sentShutdown = True

    recv = _recv
    recv.__doc__ = """
        recv(boxname="inbox")

        Take the oldest message from inbox ``boxname``; :class:`EmptyBox` if there is none.
        (``box`` is for :meth:`Box.take`, which shares this code.)
        """

    def Inbox(self, boxname: str = "inbox") -> Iterator[Any]:
        """
        Iterate over the messages in inbox ``boxname`` until it is empty (Axon's
        ``for msg in self.Inbox("inbox")``): ``while dataReady: yield recv()`` in one frame.

        Each message is taken as :meth:`recv` takes it: when it is yielded it has left the
        box, and senders waiting on the box are woken once it has drained to its low
        watermark. Messages that arrive while the loop runs are yielded too.
        """
        try:
            box = self.inboxes[boxname]
        except KeyError:
            box = self._inbox(boxname)
        q = box.queue
        take = q.popleft
        while q:
            msg = take()
            # _recv's rule after a take, written here to spare a call per message (this
            # is the per-message loop of Kamaelia code); keep the two in step.
            if box.waiters and len(q) <= box.low:
                box.drained()
            yield msg

    def _takeShutdownMicroprocess(self, boxname: str = "control") -> ShutdownMicroprocess | None:
        """
        For a source that only stops early: take what waits in ``boxname`` up to the first
        ``ShutdownMicroprocess`` and return it (what came before it is dropped), or ``None``.
        """
        while self.dataReady(boxname):
            msg = self.recv(boxname)
            if isinstance(msg, ShutdownMicroprocess):
                return msg
        return None

    def dataReady(self, boxname: str = "inbox") -> int:
        """How many messages wait in inbox ``boxname``."""
        try:
            return len(self.inboxes[boxname].queue)
        except KeyError:
            return len(self._inbox(boxname).queue)

    def anyReady(self) -> bool:
        """Whether any inbox has a message waiting."""
        return any(b.queue for b in self.inboxes.values())

    def setInboxSize(
        self, boxname: str, size: int | None, low: int | None = None, *, park: bool = False
    ) -> None:
        """
        Bound inbox ``boxname`` to ``size`` messages (``None``: unbounded).

        ``park=False`` (Axon's semantics, the default): a ``send`` into the full inbox raises
        :class:`BoxFull`. ``park=True`` (pcpkit's adapters): a plain ``send`` is accepted and
        the sender is parked until the inbox drains, so the inbox holds at most ``size`` plus
        what one step of each sender sends. Either way senders are woken when it drains to
        ``low`` messages (default ``size // 2``), and ``put`` waits.
        """
        box = self._inbox(boxname)
        if size is None:
            box.setLimits(None, 0)
            return
        if size < 1:
            raise ValueError(f"an inbox size must be at least 1, not {size}")
        if low is None:
            low = size // 2
        if not 0 <= low < size:
            raise ValueError(f"low watermark {low} must be in [0, {size})")
        box.setLimits(size, low, parking=park)

    # -- links ------------------------------------------------------------------------------

    def link(
        self,
        source: tuple[Component, str],
        sink: tuple[Component, str],
        passthrough: int = 0,
        pipewidth: int | None = None,
        synchronous: bool | None = None,
    ) -> Linkage:
        """
        Link ``source`` to ``sink`` (each a ``(component, boxname)`` pair).

        ``passthrough=0``: an outbox to an inbox. ``1``: this component's inbox to a child's
        inbox. ``2``: a child's outbox to this component's outbox. As in Axon,
        ``pipewidth=N`` gives the sink box an Axon bound of ``N`` messages
        (:meth:`Box.setSize`), and ``synchronous=True`` (without ``pipewidth``) one of 1.
        """
        srcComp, srcName = source
        dstComp, dstName = sink
        if passthrough == 0:
            src, dst = srcComp._outbox(srcName), dstComp._inbox(dstName)
        elif passthrough == 1:
            src, dst = srcComp._inbox(srcName), dstComp._inbox(dstName)
        elif passthrough == 2:
            src, dst = srcComp._outbox(srcName), dstComp._outbox(dstName)
        else:
            raise ValueError(f"passthrough must be 0, 1 or 2, not {passthrough!r}")
        if pipewidth is not None:
            dst.setSize(pipewidth)
        elif synchronous is not None:
            dst.setSize(1)
        return linkBoxes(src, dst, passthrough, self)

    def _deliver(self, message: object, boxname: str = "inbox") -> None:
        """
        Axon's ``_deliver``, "for tests and debugging only" (Kamaelia's ``SingleServer``
        uses it): put ``message`` into inbox ``boxname`` as a sender outside any component.
        """
        self._inbox(boxname).deliver(message)

    def unlink(
        self, thecomponent: Component | None = None, thelinkage: Linkage | None = None
    ) -> None:
        """
        Remove ``thelinkage``, or every link this component made that involves
        ``thecomponent``, or (with neither) every link this component made.
        """
        if thelinkage is not None:
            targets = [thelinkage]
        elif thecomponent is not None:
            targets = [
                lk
                for lk in self.postoffice
                if lk.source.owner is thecomponent or lk.sink.owner is thecomponent
            ]
        else:
            targets = list(self.postoffice)
        for lk in targets:
            unlinkBoxes(lk)

    # -- children ---------------------------------------------------------------------------

    def addChildren(self, *children: Component) -> None:
        """
        Adopt ``children``: they are activated with this component (or now, if it is), and
        this component is woken (``unpause``) when one of them finishes, as in Axon.
        """
        for c in children:
            if c not in self.children:
                self.children.append(c)
                c.finished.addBoth(self._childFinished, c)
                if self._active:
                    c.activate(self.scheduler)

    def _childFinished(self, result: Any, child: Component) -> Any:
        if child in self.children:
            self.unpause()
        return result

    def removeChild(self, child: Component) -> None:
        """Forget ``child`` and remove the links this component made to it."""
        if child in self.children:
            self.children.remove(child)
        self.unlink(thecomponent=child)

    def childComponents(self) -> list[Component]:
        return list(self.children)

    # -- running --------------------------------------------------------------------------------

    def activate(self, scheduler: Scheduler | None = None) -> Component:
        """
        Schedule ``main`` (and the children's) on ``scheduler`` (default: the global
        scheduler, on the global reactor); returns ``self``.
        """
        if not self._active:
            self._active = True
            self.scheduler = scheduler if scheduler is not None else _defaultScheduler
            self.scheduler.schedule(self)
            for c in self.children:
                c.activate(self.scheduler)
        return self

    def pause(self) -> None:
        """Sleep after the next ``yield`` until a message arrives or ``unpause`` is called."""
        self._paused = True

    def unpause(self) -> None:
        """Wake this component if it is paused; any thread may call it, as in Axon."""
        if onForeignThread():
            # as in Axon, any thread may wake a component: the scheduler is the reactor's
            getReactor().callFromThread(self._wake)
            return
        self._wake()

    def _isStopped(self) -> bool:
        """
        Whether ``main`` has ended (returned or raised) or :meth:`stop` was called: Axon's
        name, used by parents.
        """
        return self._done or self._halted

    def stop(self) -> None:
        """
        Halt this component for good (Axon's ``stop``): ``main`` is not stepped again (it is
        closed, so its ``finally`` blocks run) and ``finished`` fires with ``None``. Nothing
        is sent on ``signal``, as in Axon: tell the components downstream yourself. Called
        from inside ``main``, it takes effect at the next ``yield`` or ``await``.
        """
        if self._done or self._halted:
            return
        self._halted = True
        # parked or asleep: it must run once more to be closed
        self._parkedOn = None
        self._paused = False
        if self._active and not self._queued:
            self.scheduler.schedule(self)  # type: ignore[union-attr]

    def _halt(self) -> None:
        """Close ``main`` after :meth:`stop`; ``finished`` fires with ``None``."""
        self._queued = False
        gens = [self._gen, *reversed(self._suspended)] if self._gen is not None else []
        coro, context = self._coro, self._context
        self._gen, self._suspended, self._coro, self._waiter = None, [], None, None
        try:
            for g in gens:
                g.close()
            if coro is not None and context is not None:
                context.run(coro.close)
        except BaseException:
            self._fail(currentFailure())
            return
        self._finish(None)

    def _wake(self) -> None:
        self._paused = False
        self._poked = True
        if not self._queued and self._active and not self._done:
            if self._parkedOn is not None:
                # Parked: only a control message gets it running (a shutdown must get
                # through); the box it fills wakes it otherwise.
                ctl = self.inboxes.get("control")
                if ctl is None or not ctl.queue:
                    return
                self._parkedOn = None
            self.scheduler.schedule(self)  # type: ignore[union-attr]

    def _park(self, box: Box) -> None:
        # Runnable._park, without the call (this is the per-park path), and an async main
        # suspends at its next get/put/messages step (its budget is spent).
        self._parkedOn = box
        box.addWaiter(self._unpark)
        self._budget = 0

    def main(self) -> Any:
        """
        Override: a generator, or an ``async def``.

        The default runs Axon's older protocol: :meth:`initialiseComponent` once, then
        :meth:`mainBody` once per step while it returns a true value, then
        :meth:`closeDownComponent`. With none of the three overridden, the component ends
        after its first steps.
        """
        result = self.initialiseComponent()
        if not result:
            result = 1
        yield result
        while result:
            result = self.mainBody()
            if result:
                yield result
        yield self.closeDownComponent()

    def initialiseComponent(self) -> Any:
        """Axon's: called once, before the first :meth:`mainBody`. Override it."""
        return 1

    def mainBody(self) -> Any:
        """Axon's: one step of the component; a false value ends it. Override it."""
        return None

    def closeDownComponent(self) -> Any:
        """Axon's: called once, after :meth:`mainBody` returned a false value. Override it."""
        return 1

    def run(self) -> Any:
        """
        Activate this component, run the reactor until it finishes, then stop the reactor.

        For scripts. Returns ``main``'s result or raises its exception. Inside a program whose
        reactor already runs, use ``activate()`` and wait on ``finished`` instead.
        """
        reactor = getReactor()
        if reactor.running:
            raise RuntimeError(
                "run() starts the reactor, which is already running; use "
                "component.activate() and wait for component.finished instead"
            )
        outcome: list[Any] = []

        def done(result: Any) -> None:
            outcome.append(result)
            reactor.stop()

        def start() -> None:
            self.activate()
            self.finished.addBoth(done)

        reactor.callWhenRunning(start)
        reactor.run()
        if not outcome:
            raise RuntimeError(f"the reactor stopped before {self!r} finished")
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        return outcome[0]

    def _run(self) -> None:
        if self._halted:
            if not self._done:
                self._halt()
            self._queued = False
            return
        if self._done or self._parkedOn is not None:
            self._queued = False
            return
        if not self._started:
            self._started = True
            if not self._start() or self._parkedOn is not None:
                self._queued = False
                return
        if self._gen is not None:
            self._stepGenerator()
        else:
            self._stepAsync()

    def _start(self) -> bool:
        """Call ``main``; return True if there is a generator or coroutine to drive."""
        try:
            result = self.main()
        except BaseException:
            self._fail(currentFailure())
            return False
        if inspect.isgenerator(result):
            self._gen = result
            return True
        if inspect.iscoroutine(result):
            # Driven here, as generators are: no Deferred between it and its mailbox. It
            # runs in a context of its own, as under ensureDeferred.
            self._coro = result
            self._context = contextvars.copy_context()
            self._resume(None)
            return not self._done
        if isinstance(result, Deferred):
            result.addCallbacks(self._mainReturned, self._mainFailed)
            return not self._done
        self._finish(result)
        return False

    def _stepGenerator(self) -> None:
        gen = self._gen
        assert gen is not None
        # A step starts with no poke, unless the generator is mid-loop: requeued at the end
        # of its batch, or parked by a send. It need not look at its inboxes again before it
        # pauses, so a message that arrived while it waited (others ran, or the reactor
        # delivered from I/O after the slice ended) counts against its next pause, whichever
        # step that is: only a pause consumes a poke.
        if not self._keepPoke:
            self._poked = False
        self._keepPoke = False
        thrown, self._thrown = self._thrown, None
        for _ in range(GENERATOR_BATCH):
            try:
                if thrown is None:
                    yielded = next(gen)
                else:
                    exc, thrown = thrown, None
                    yielded = gen.throw(exc)
            except StopIteration as stop:
                if self._suspended:
                    # a WaitComplete generator ended: the one that yielded it goes on
                    gen = self._gen = self._suspended.pop()
                    continue
                self._gen = None
                self._finish(stop.value)
                return
            except BaseException as e:
                if self._suspended:
                    # ... or raised: the exception is raised at that yield
                    gen = self._gen = self._suspended.pop()
                    thrown = e
                    continue
                self._gen = None
                self._fail(currentFailure())
                return
            if type(yielded) is int or yielded is None:
                pass  # what nearly every step yields: spare the two tests below
            elif isinstance(yielded, NewComponent):
                for c in yielded.components:
                    c.activate(self.scheduler)
            elif isinstance(yielded, WaitComplete):
                self._suspended.append(gen)
                gen = self._gen = yielded.generator
            if self._halted:
                self._halt()
                return
            if self._parkedOn is not None:
                # It sent into a full parking inbox: not stepped again until that drains.
                if self._poked:
                    self._paused = False
                self._keepPoke = True
                self._queued = False
                return
            if self._paused:
                if self._poked:
                    # a message arrived during the step, before it paused: not a sleep
                    self._paused = False
                    self._poked = False
                    continue
                self._queued = False
                return
        # Still runnable: back of the queue, so others get their turn.
        self._thrown = thrown
        self._keepPoke = True
        self._queued = False
        self.scheduler.schedule(self)  # type: ignore[union-attr]

    def _stepAsync(self) -> None:
        # (Each waiter's ready() is asked once: nothing else runs between the asking and
        # the acting on it. This and _resume are the per-switch cost of async mains.)
        again = False  # whether it is to run again after this step
        for _ in range(GENERATOR_BATCH):
            w = self._waiter
            if w is None or not w.ready():
                break  # (None: it waits on a Deferred, whose callback resumes it)
            self._waiter = None
            ctl = w.abortOn
            abort = _abortIn(ctl) if ctl is not None and ctl.queue else None
            if abort is not None:
                ctl.queue.remove(abort)  # type: ignore[union-attr]
                self.shutdownMessage = abort
                stop = Stopped(f"{self} was told to stop: {abort}")
                self._resume(Failure(stop))  # type: ignore[no-untyped-call,unused-ignore]
            else:
                value = None
                if w.take:
                    for b in w.boxes:
                        if b.queue:
                            value = _recv(self, "", b)
                            break
                self._resume(value)
            if self._done or self._parkedOn is not None or self._halted:
                break
            w = self._waiter
            if w is not None and not w.boxes:
                # It gave up its turn (its budget is spent): back of the queue. Resumed
                # here instead, a messages() loop found its budget spent again and gave
                # the turn up again, for the whole batch: with a small budget it never
                # got anywhere, and the scheduler (and a test's Clock.advance) spun.
                again = True
                break
        else:
            w = self._waiter
            again = w is not None and w.ready()
        self._queued = False
        if self._halted or (again and not self._done and self._parkedOn is None):
            self.scheduler.schedule(self)  # type: ignore[union-attr]

    def _resume(self, result: Any) -> None:
        """
        Run the coroutine ``main`` on from where it waits, sending it ``result`` (a
        :class:`Failure` is thrown into it), until it waits again or ends.

        It waits on a :class:`_Waiter` (``get``/``put``/``messages``: the scheduler resumes
        it) or on a Deferred (any Twisted API: the Deferred's callback resumes it, as
        ``ensureDeferred`` would). Anything else it yields is sent straight back, as
        ``ensureDeferred`` does.
        """
        coro, context = self._coro, self._context
        if coro is None or context is None:
            return
        # It suspended: a fresh budget of get/put calls before it must give up its turn.
        self._budget = ASYNC_BUDGET
        run = context.run
        while True:
            try:
                if isinstance(result, Failure):
                    yielded = run(result.throwExceptionIntoGenerator, coro)
                else:
                    yielded = run(coro.send, result)
            except StopIteration as stop:
                self._coro = None
                self._mainReturned(stop.value)
                return
            except BaseException:
                self._coro = None
                self._mainFailed(currentFailure())
                return
            if isinstance(yielded, _Waiter):
                self._waiter = yielded
                # Queued (or running: _stepAsync asks the waiter itself), it will be
                # looked at anyway; else it is scheduled now if the waiter is ready.
                if not self._queued and (
                    self._halted or (yielded.ready() and self._parkedOn is None)
                ):
                    self.scheduler.schedule(self)  # type: ignore[union-attr]
                return
            if not isinstance(yielded, Deferred):
                if not (inspect.iscoroutine(yielded) or inspect.isgenerator(yielded)):
                    result = yielded
                    continue
                yielded = ensureDeferred(cast(Any, yielded))
            waiting: list[Any] = []
            yielded.addBoth(self._deferredFired, waiting)
            if not waiting:
                waiting.append(self)  # not fired yet: its callback resumes the coroutine
                if self._halted:
                    self.scheduler.schedule(self)  # type: ignore[union-attr]
                return
            result = waiting[0]  # it had fired already: go on here, not recursively

    def _deferredFired(self, result: Any, waiting: list[Any]) -> None:
        if waiting:
            self._resume(result)
        else:
            waiting.append(result)

    def _mainReturned(self, result: Any) -> None:
        if (
            self.shutdownMessage is not None
            and not self._sentShutdown
            and "signal" in self.outboxes
        ):
            self._forceSend(self.shutdownMessage, "signal")
        self._finish(result)

    def _mainFailed(self, failure: Failure) -> None:
        if failure.check(Stopped):  # type: ignore[no-untyped-call,unused-ignore]
            self._mainReturned(None)
        else:
            self._fail(failure)

    def _finish(self, result: Any) -> None:
        if self._done:
            return
        self._done = True
        self._gen = None
        self._closeInboxes()
        self._releaseOutboxLinks()
        self.finished.callback(result)

    def _closeInboxes(self) -> None:
        # Nothing takes from them again: a sender parked or waiting on one is let go.
        for box in list(self.inboxes.values()):
            box.close()

    def _releaseOutboxLinks(self) -> None:
        # As Axon removes a finished component's links: those it made from its own outboxes
        # go (it sends nothing more, and a linked outbox holds nothing), so a long-lived
        # inbox fed by many short-lived components does not keep every one of them alive.
        # Links it made between other components stay: they may still be running.
        for lk in [lk for lk in self.postoffice if lk.source.owner is self]:
            if not lk.source.isInbox:
                unlinkBoxes(lk)

    def _fail(self, failure: Failure) -> None:
        if self._done:
            return
        self._done = True
        self._gen = None
        self._closeInboxes()
        _log.failure("{component} failed", failure, component=self)
        self._signalFailure(failure)
        self._releaseOutboxLinks()
        self.finished.errback(failure)

    def _signalFailure(self, failure: Failure) -> None:
        """Tell whoever listens on ``signal``: the error, then that nothing more will come."""
        self._forceSend(ErrorInformation(self, failure=failure), "signal")
        self._forceSend(ProducerFinished(self, "failed"), "signal")

    # -- async helpers ----------------------------------------------------------------------

    async def get(self, boxname: str = "inbox") -> Any:
        """
        Wait for and return the next message in inbox ``boxname``.

        Raises :class:`Stopped` if a ``ShutdownMicroprocess`` arrives on ``control`` while it
        waits (unless ``boxname`` is ``"control"`` itself).
        """
        box = self.inboxes.get(boxname)
        if box is None:
            box = self._inbox(boxname)
        self._budget -= 1
        if box.queue and self._budget > 0:
            return _recv(self, "", box)
        abortOn = None if boxname == "control" else self.inboxes.get("control")
        return await _Waiter((box,), take=True, abortOn=abortOn)

    async def put(self, message: object, boxname: str = "outbox") -> None:
        """
        Send ``message``, waiting while the destination is full (either kind of bound, and an
        unlinked outbox holding :data:`UNLINKED_OUTBOX_SIZE` messages waits for a link).

        Raises :class:`Stopped` if a ``ShutdownMicroprocess`` arrives on ``control`` while it
        waits; the message is then not sent. Raises :class:`UndeliveredMessages` as ``send``
        does.
        """
        try:
            box = self.outboxes[boxname]
        except KeyError:
            box = self._outbox(boxname)
        self._budget -= 1
        if self._budget <= 0:
            await _TURN
        while True:
            dest = box.final
            q = dest.queue
            if len(q) < dest.limit:
                if boxname == "signal" or not dest.isInbox:
                    _send(self, message, boxname, box)
                    return
                # _send's delivery into an inbox with room, written out here to spare a
                # call per message (this is the per-message step of async components;
                # test_put_delivers_as_send_does holds the two together): keep them in step.
                q.append(message)
                dest.putCount += 1
                owner = dest.owner
                if owner._paused or not owner._queued:
                    owner._wake()
                else:
                    owner._poked = True
                return
            if dest.closed:
                dest.dropped += 1  # as _send: its owner has finished, nobody makes room
                return
            await _SpaceWaiter(box, self._wake, self.inboxes.get("control"))

    async def messages(
        self, boxname: str = "inbox", control: str = "control"
    ) -> AsyncIterator[Any]:
        """
        Iterate over the messages arriving in ``boxname`` until a shutdown message comes on
        ``control``.

        On :class:`~pcpkit.ipc.ShutdownMicroprocess` it stops at once; on any other
        :class:`~pcpkit.ipc.Shutdown` (``ProducerFinished``, ``SocketShutdown``) it first
        yields what is already queued. The shutdown message is kept in
        ``self.shutdownMessage``. An :class:`~pcpkit.ipc.ErrorInformation` on ``control`` is
        passed on along ``signal``; other control messages are dropped with a log line.
        """
        box = self._inbox(boxname)
        ctl = self._inbox(control)
        arrival = _Waiter((box, ctl), take=False)  # stateless: made once, awaited often
        ending: Shutdown | None = None
        while True:
            if ending is None and ctl.queue:
                msg = ctl.take()
                if isinstance(msg, ShutdownMicroprocess):
                    self.shutdownMessage = msg
                    return
                if isinstance(msg, Shutdown):
                    ending = msg
                elif isinstance(msg, ErrorInformation):
                    if "signal" in self.outboxes:
                        self._forceSend(msg, "signal")
                else:
                    _log.info(
                        "{component} ignored control message {msg!r}", component=self, msg=msg
                    )
                continue
            q = box.queue
            if q:
                if self._budget <= 0:
                    # (checked before the count: resumed, it has a budget again and takes)
                    await _TURN
                    continue
                self._budget -= 1
                msg = q.popleft()
                # _recv's rule after a take, as in Inbox: a call per message spared
                if box.waiters and len(q) <= box.low:
                    box.drained()
                yield msg
                continue
            if ending is not None:
                self.shutdownMessage = ending
                return
            await arrival


component = Component
