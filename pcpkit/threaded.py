"""
``ThreadedComponent``: a component whose ``main`` is a plain function in its own thread.

For code that must block (a blocking socket, a C library without callbacks). The thread sees
the usual mailbox methods; they are safe to call from it:

* ``dataReady`` / ``anyReady`` / ``recv`` read the component's inboxes, which live on the
  reactor and are filled by ordinary links (bounded inboxes hold their senders back as usual);
* ``send`` hands the message to the reactor thread through a bounded queue
  (``queuelengths`` messages), which delivers it when the destination inbox has room, whatever
  its kind of bound (parking or Axon): while that queue is full ``send`` blocks the thread --
  back-pressure, never loss. A destination inbox never holds more than its bound because of
  a thread (a message into an unlinked outbox is accepted, as a plain ``send`` is);
* ``pause(timeout)`` blocks the thread until a message arrives (or ``timeout`` passes).

``link`` and ``unlink`` called from the thread are done on the reactor thread, which the
thread waits for (as Axon's ``_do_threadsafe``).

When the reactor shuts down, blocked ``send``, ``pause``, ``link`` and ``unlink`` calls raise
:class:`ThreadStopped` so the thread can end; ``self.stopping`` tells a polling loop the same.

:class:`ThreadedAdaptiveCommsComponent` (Axon's ``threadedadaptivecommscomponent``) is a
threaded :class:`~pcpkit.adaptive.AdaptiveCommsComponent`: its thread may add and delete
boxes too.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.logger import Logger

from pcpkit._twisted import currentFailure, getReactor, inReactorThread
from pcpkit.adaptive import AdaptiveCommsComponent
from pcpkit.component import Box, Component, Linkage, Scheduler, UndeliveredMessages

__all__ = [
    "ThreadedComponent",
    "ThreadStopped",
    "threadedcomponent",
    "ThreadedAdaptiveCommsComponent",
    "threadedadaptivecommscomponent",
]

_T = TypeVar("_T")

_log = Logger()


class ThreadStopped(Exception):
    """The reactor is shutting down; the component's thread should return."""


class _ThreadInbox(Box):
    """An inbox read by a thread: its waiters (senders held back) run on the reactor thread."""

    __slots__ = ()

    def drained(self) -> None:
        if inReactorThread():
            self.fireWaiters()
        else:
            getReactor().callFromThread(self.fireWaiters)


class ThreadedComponent(Component):
    """
    A :class:`~pcpkit.component.Component` whose ``main()`` runs in a thread of its own (not
    the reactor's thread pool, which is for short calls). ``finished`` fires on the reactor
    thread with ``main``'s result; an exception is reported as for any component.
    """

    queuelengths = 1000

    def __init__(self, queuelengths: int | None = None, **argd: Any) -> None:
        super().__init__(**argd)
        self.inboxes = {n: _ThreadInbox(self, n, True) for n in self.Inboxes}
        if queuelengths is not None:
            if queuelengths < 1:
                raise ValueError(f"queuelengths must be at least 1, not {queuelengths}")
            self.queuelengths = queuelengths
        self._outq: deque[tuple[str, object]] = deque()
        self._outCond = threading.Condition()
        self._flushCalled = False
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._shutdownTrigger: Any = None
        self.stopping = False
        self._pendingEnd: tuple[bool, Any] | None = None

    # -- life cycle (reactor thread) ------------------------------------------------------

    def activate(self, scheduler: Scheduler | None = None) -> Component:
        # The thread talks to the global reactor (callFromThread); ``scheduler`` is what its
        # children are activated on.
        if self._active:
            return self
        self._active = True
        self.scheduler = scheduler
        for c in self.children:
            c.activate(scheduler)
        if self._halted:
            self._finish(None)  # stopped before it ran: no thread
            return self
        reactor = getReactor()
        self._shutdownTrigger = reactor.addSystemEventTrigger(
            "before", "shutdown", self._reactorStopping
        )
        self._thread = threading.Thread(target=self._threadMain, name=f"pcpkit-{self}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """
        Halt this component (Axon's ``stop``). A thread cannot be stopped from outside, so it
        is told as at reactor shutdown: ``stopping`` becomes true, and the ``send``,
        ``pause``, ``link`` or ``unlink`` it is blocked in (or calls next) raises
        :class:`ThreadStopped`. ``finished`` fires with ``None`` once the thread has
        returned (``ThreadStopped`` leaving ``main`` is a normal end here); what it had sent
        and is still queued goes out as the destinations drain, nothing is lost. Nothing is
        sent on ``signal``.
        """
        if self._done or self._halted:
            return
        self._halted = True
        if not self._active:
            return
        self._tellThreadToStop()

    def _threadMain(self) -> None:
        reactor = getReactor()
        try:
            result = self.main()
        except BaseException:
            failure = currentFailure()
            reactor.callFromThread(self._threadEnded, False, failure)
        else:
            reactor.callFromThread(self._threadEnded, True, result)

    def _threadEnded(self, ok: bool, value: Any) -> None:
        # Messages the thread sent before returning go out before the component is done.
        self._flush()
        if self._shutdownTrigger is not None:
            getReactor().removeSystemEventTrigger(self._shutdownTrigger)
            self._shutdownTrigger = None
        if self._outq and not self._halted:
            # A destination is full: finish once the last message is delivered. (Stopped,
            # it finishes now; what it sent still goes out as the destinations drain.)
            self._pendingEnd = (ok, value)
            return
        self._end(ok, value)

    def _end(self, ok: bool, value: Any) -> None:
        if ok:
            self._finish(value)
        elif self._halted and value.check(ThreadStopped):
            self._finish(None)  # stop() told it to end
        else:
            self._fail(value)

    def _reactorStopping(self) -> None:
        self._shutdownTrigger = None
        self._tellThreadToStop()

    def _tellThreadToStop(self) -> None:
        self.stopping = True
        self._event.set()
        with self._outCond:
            self._outCond.notify_all()

    def _run(self) -> None:
        # Never scheduled: the thread is its own scheduler.
        self._queued = False

    def _wake(self) -> None:
        # Called on the reactor thread when a message arrives or a full inbox drained.
        self._event.set()
        if self._outq:
            self._flush()

    def _releaseOutboxLinks(self) -> None:
        # Stopped with messages still to go out (as destinations drain): they need the links.
        if not self._outq:
            super()._releaseOutboxLinks()

    def main(self) -> Any:
        """
        Override: an ordinary function, run in the component's thread (it may block).

        The default runs Axon's older protocol, as Axon's ``threadedcomponent`` does:
        ``initialiseComponent()``, then ``mainBody()`` until it returns a false value, then
        ``closeDownComponent()``.
        """
        self.initialiseComponent()
        while self.mainBody():
            pass
        self.closeDownComponent()
        return None

    # -- mailbox, thread side ------------------------------------------------------------------

    # Component.send also takes the ``box`` Box.deliver passes it; a thread never gets one.
    def send(self, message: object, boxname: str = "outbox") -> None:  # type: ignore[override]
        self._outbox(boxname)  # an unknown box is the caller's error, raised here
        if inReactorThread():
            self._outq.append((boxname, message))
            self._flush()
            return
        with self._outCond:
            while len(self._outq) >= self.queuelengths:
                if self.stopping:
                    raise ThreadStopped(f"{self}: the reactor is shutting down")
                self._outCond.wait(0.5)
            self._outq.append((boxname, message))
            if self._flushCalled:
                return
            self._flushCalled = True
        getReactor().callFromThread(self._flush)

    def pause(self, timeout: float | None = None) -> None:
        """Block the thread until a message arrives, ``timeout`` passes, or shutdown."""
        if inReactorThread():
            raise RuntimeError("ThreadedComponent.pause() blocks; call it from its own thread")
        self._event.clear()
        if self.anyReady():
            return
        if self.stopping:
            raise ThreadStopped(f"{self}: the reactor is shutting down")
        self._event.wait(timeout)

    def link(
        self,
        source: tuple[Component, str],
        sink: tuple[Component, str],
        passthrough: int = 0,
        pipewidth: int | None = None,
        synchronous: bool | None = None,
    ) -> Linkage:
        """``Component.link``, done on the reactor thread when called from the thread."""
        return self.onReactor(
            Component.link, self, source, sink, passthrough, pipewidth, synchronous
        )

    def unlink(
        self, thecomponent: Component | None = None, thelinkage: Linkage | None = None
    ) -> None:
        """``Component.unlink``, done on the reactor thread when called from the thread."""
        self.onReactor(Component.unlink, self, thecomponent, thelinkage)

    def onReactor(self, f: Callable[..., _T], *args: Any) -> _T:
        """
        Call ``f(*args)`` and return its result (or raise its exception); called from this
        component's thread, on the reactor thread, waiting for it: for what changes boxes and
        links, which only the reactor thread may touch. Raises :class:`ThreadStopped` when the
        reactor shuts down meanwhile.
        """
        if threading.current_thread() is not self._thread:
            return f(*args)
        done = threading.Event()
        outcome: list[Any] = []

        def call() -> None:
            try:
                outcome.append((True, f(*args)))
            except BaseException as e:
                outcome.append((False, e))
            done.set()

        getReactor().callFromThread(call)
        while not done.wait(0.5):
            if self.stopping:
                raise ThreadStopped(f"{self}: the reactor is shutting down")
        ok, value = outcome[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    # -- delivery, reactor side -------------------------------------------------------------------

    def _flush(self) -> None:
        with self._outCond:
            self._flushCalled = False
        outq = self._outq
        delivered = 0
        while outq:
            boxname, message = outq[0]
            box = self.outboxes.get(boxname)
            if box is None:
                # deleted (ThreadedAdaptiveCommsComponent) after the thread sent into it
                outq.popleft()
                delivered += 1
                continue
            dest = box.final
            if dest.isInbox and dest.isFull() and not dest.closed:
                # Either kind of bound holds the thread back: resume when it has drained.
                dest.addWaiter(self._wake)
                break
            try:
                Component.send(self, message, boxname)
            except UndeliveredMessages:
                # The thread cannot be told at its send; fail loudly and stop it.
                outq.clear()
                self.stopping = True
                self._fail(currentFailure())
                break
            outq.popleft()
            delivered += 1
        if delivered:
            with self._outCond:
                self._outCond.notify_all()
        pending = self._pendingEnd
        if pending is not None and not outq:
            self._pendingEnd = None
            self._end(*pending)


threadedcomponent = ThreadedComponent


class ThreadedAdaptiveCommsComponent(AdaptiveCommsComponent, ThreadedComponent):
    """
    A :class:`ThreadedComponent` that adds and deletes boxes as an
    :class:`~pcpkit.adaptive.AdaptiveCommsComponent` does (Axon's
    ``threadedadaptivecommscomponent``).

    ``addInbox``, ``addOutbox``, ``deleteInbox`` and ``deleteOutbox`` may be called from the
    thread: they are done on the reactor thread, which the thread waits for, so the box
    exists (or is gone) when the call returns. The box dicts are replaced, never changed in
    place, so the thread can look at them meanwhile. Messages the thread sent into an outbox
    and that were not delivered yet (their destination was full) are dropped when the
    outbox is deleted, as Axon drops its outbox queue. The resource-tracking methods are
    for the thread alone, as in Axon.
    """

    def newBox(self, name: str, isInbox: bool) -> Box:
        return _ThreadInbox(self, name, True) if isInbox else Box(self, name, False)

    def addInbox(self, name: str = "inbox") -> str:
        return str(self.onReactor(self._changeBoxes, AdaptiveCommsComponent.addInbox, name))

    def addOutbox(self, name: str = "outbox") -> str:
        return str(self.onReactor(self._changeBoxes, AdaptiveCommsComponent.addOutbox, name))

    def deleteInbox(self, name: str) -> None:
        self.onReactor(self._changeBoxes, AdaptiveCommsComponent.deleteInbox, name)

    def deleteOutbox(self, name: str) -> None:
        self.onReactor(self._deleteOutbox, name)

    def _changeBoxes(self, f: Callable[[AdaptiveCommsComponent, str], _T], name: str) -> _T:
        # copy on write: the thread may be iterating over the old dicts
        self.inboxes = dict(self.inboxes)
        self.outboxes = dict(self.outboxes)
        return f(self, name)

    def _deleteOutbox(self, name: str) -> None:
        self._changeBoxes(AdaptiveCommsComponent.deleteOutbox, name)
        with self._outCond:
            kept = [(b, m) for b, m in self._outq if b != name]
            if len(kept) < len(self._outq):
                self._outq.clear()
                self._outq.extend(kept)
                self._outCond.notify_all()
        self._flush()  # (a pending end may have waited for those)


threadedadaptivecommscomponent = ThreadedAdaptiveCommsComponent
