"""
Fan-out: one stream of messages to several destinations, every branch bounded.

The Kamaelia names and boxes (``Kamaelia.Util.Splitter``, ``Kamaelia.Util.TwoWaySplitter``):

* :class:`Splitter`: destinations added and removed at run time with :class:`addsink` /
  :class:`removesink` messages on its ``configuration`` inbox;
* :class:`PlugSplitter` and :class:`Plug`: a splitter (optionally around a source child)
  that data *and* control messages fan out of, and a wrapper that plugs a component into it
  for as long as that component runs;
* :class:`TwoWaySplitter`: ``outbox`` and ``outbox2``, ``signal`` and ``signal2``;
* :func:`fanOut` for the common case: ``Pipeline(FileReader(path), fanOut(FileWriter(a),
  FileWriter(b)))``.

Back-pressure: the splitter takes its next message only when every branch has room, so the
source is paused (its sends into the splitter's bounded inbox park, or ``put`` waits) while
any branch is full, and resumes when the last full branch has drained (counted pauses, see
:mod:`pcpkit.util.outlets`). A branch that must never stall the others is added with the
:data:`~pcpkit.util.outlets.DROP` policy: while it is full its messages are dropped, counted
in its outlet's ``dropped`` (and the splitter's :attr:`Splitter.dropped`) and logged.

The same object is sent to every branch, not a copy (as in Kamaelia).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.python.failure import Failure

from pcpkit.component import Component, Scheduler
from pcpkit.ipc import ProducerFinished, Shutdown, ShutdownMicroprocess
from pcpkit.util.outlets import (
    BATCH,
    DEFAULT_GRACE,
    DEFAULT_SIZE,
    DROP,
    PAUSE,
    Outlet,
    Outlets,
    boundInbox,
)

__all__ = [
    "addsink",
    "removesink",
    "Splitter",
    "PlugSplitter",
    "Plug",
    "TwoWaySplitter",
    "FanOut",
    "fanOut",
]


class addsink:
    """
    Ask a splitter to send to ``(sink, sinkbox)`` (data) and ``(sink, sinkcontrol)``
    (control messages, :class:`PlugSplitter` only), as Kamaelia's message of the same name.

    ``policy`` (:data:`~pcpkit.util.outlets.PAUSE` or :data:`~pcpkit.util.outlets.DROP`) and
    ``size`` (the bound when the sink's inbox has none) are pcpkit's additions.
    """

    def __init__(
        self,
        sink: Component,
        sinkbox: str | None = "inbox",
        sinkcontrol: str | None = None,
        passthrough: int = 0,
        *,
        policy: str = PAUSE,
        size: int | None = None,
    ) -> None:
        self.sink = sink
        self.sinkbox = sinkbox
        self.sinkcontrol = sinkcontrol
        self.passthrough = passthrough
        self.policy = policy
        self.size = size

    def __repr__(self) -> str:
        return f"addsink({self.sink!r}, {self.sinkbox!r}, {self.sinkcontrol!r})"


class removesink:
    """Ask a splitter to stop sending to ``(sink, sinkbox)`` and ``(sink, sinkcontrol)``."""

    def __init__(
        self, sink: Component, sinkbox: str | None = "inbox", sinkcontrol: str | None = None
    ) -> None:
        self.sink = sink
        self.sinkbox = sinkbox
        self.sinkcontrol = sinkcontrol

    def __repr__(self) -> str:
        return f"removesink({self.sink!r}, {self.sinkbox!r}, {self.sinkcontrol!r})"


class Splitter(Component):
    """
    Send every message from ``inbox`` to every destination added with :class:`addsink`.

    Messages:

    * ``configuration``: :class:`addsink` / :class:`removesink`;
    * ``inbox``: data; its bound (``inboxSize``, default 64 messages) holds the source back
      while a branch is full;
    * ``control``: ``ProducerFinished`` ends it once everything queued is delivered;
      ``ShutdownMicroprocess`` ends it at once (what branches still held is counted as
      dropped). Either is passed on along ``signal``. (Kamaelia's Splitter never ends.)

    :param size: the bound of a branch whose sink inbox has none (default 64 messages).
    :param policy: the default policy of new branches.
    :param grace: how long (seconds) a full ``"drop"`` branch may take nothing before its
        messages are dropped (default 0.05): a branch merely behind a burst catches up.

    ``dropped`` counts messages dropped over all branches; ``outlets`` lists the branches
    (each with ``delivered``, ``dropped``, ``pauses``, ``peak``); ``pauses`` counts the times
    a full branch paused the source.
    """

    Inboxes = {
        "inbox": "source of data items",
        "control": "ProducerFinished / ShutdownMicroprocess end the splitter",
        "configuration": "addsink(...) and removesink(...) request messages",
    }
    Outboxes = {"outbox": "NOT USED", "signal": "the shutdown message, passed on"}

    inboxSize = DEFAULT_SIZE

    def __init__(
        self,
        size: int | None = None,
        policy: str = PAUSE,
        grace: float = DEFAULT_GRACE,
        **argd: Any,
    ) -> None:
        super().__init__(**argd)
        if policy not in (PAUSE, DROP):
            raise ValueError(f"policy must be {PAUSE!r} or {DROP!r}, not {policy!r}")
        self.size = size
        self.policy = policy
        self.outlets = Outlets(self, prefix="sink", grace=grace)
        self.controlOutlets = Outlets(self, prefix="sinkcontrol")
        self.inboxname = "inbox"
        self.controlname = "control"
        boundInbox(self, "inbox", self.inboxSize)

    @property
    def dropped(self) -> int:
        """Messages dropped over all branches."""
        return self.outlets.dropped

    @property
    def pauses(self) -> int:
        """How many times a full branch paused the source (a ``"drop"`` branch's grace too)."""
        return self.outlets.pauser.pauses

    # -- configuration -------------------------------------------------------------------------

    def addSink(
        self,
        sink: Component,
        sinkbox: str | None = "inbox",
        sinkcontrol: str | None = None,
        passthrough: int = 0,
        policy: str | None = None,
        size: int | None = None,
    ) -> Outlet | None:
        """Add a branch now (what an :class:`addsink` message does); returns its outlet."""
        outlet = None
        if sinkbox is not None and self.outlets.find((sink, sinkbox)) is None:
            outlet = self.outlets.add(
                sink,
                sinkbox,
                policy or self.policy,
                size if size is not None else self.size,
                passthrough,
            )
        if sinkcontrol is not None and self._controlFanOut():
            if self.controlOutlets.find((sink, sinkcontrol)) is None:
                self.controlOutlets.add(sink, sinkcontrol, PAUSE, None, passthrough)
        return outlet

    def removeSink(
        self, sink: Component, sinkbox: str | None = "inbox", sinkcontrol: str | None = None
    ) -> None:
        """Remove a branch now (what a :class:`removesink` message does)."""
        for outlets, box in ((self.outlets, sinkbox), (self.controlOutlets, sinkcontrol)):
            if box is not None:
                outlet = outlets.find((sink, box))
                if outlet is not None:
                    outlets.remove(outlet, "removesink")

    def _controlFanOut(self) -> bool:
        return False

    def _configure(self) -> None:
        while self.dataReady("configuration"):
            msg = self.recv("configuration")
            if isinstance(msg, addsink):
                self.addSink(
                    msg.sink, msg.sinkbox, msg.sinkcontrol, msg.passthrough, msg.policy, msg.size
                )
            elif isinstance(msg, removesink):
                self.removeSink(msg.sink, msg.sinkbox, msg.sinkcontrol)

    # -- running ------------------------------------------------------------------------------

    def _take(self) -> int:
        """Fan out what waits in the data inbox while no branch is full; return how many."""
        out = self.outlets
        n = 0
        name = self.inboxname
        while not out.paused and n < BATCH and self.dataReady(name):
            n += 1
            out.deliver(self.recv(name))
        return n

    def _sourceDone(self) -> bool:
        """With a source child: whether it has finished."""
        return False

    def _passOn(self, msg: object) -> None:
        """A control message to pass on: along ``signal`` (and to the control sinks)."""
        self.send(msg, "signal")

    def main(self) -> Generator[int, None, None]:
        ending: Shutdown | None = None
        while True:
            self._configure()
            n = self._take()
            while self.dataReady(self.controlname):
                msg = self.recv(self.controlname)
                if isinstance(msg, ShutdownMicroprocess):
                    self.outlets.clear("told to stop")
                    self._passOn(msg)
                    self._stop()
                    return
                if isinstance(msg, Shutdown):
                    ending = ending or msg
                else:
                    self._passOn(msg)
            idle = not self.dataReady(self.inboxname) and not self.outlets.pending
            if idle and (ending is not None or self._sourceDone()):
                self._passOn(ending or ProducerFinished(self))
                self._stop()
                return
            if n < BATCH or self.outlets.paused:
                self.pause()
            yield 1

    def _stop(self) -> None:
        self.outlets.clear("the splitter stopped")
        self.controlOutlets.clear("the splitter stopped")


class PlugSplitter(Splitter):
    """
    A :class:`Splitter` whose data *and* control messages fan out, optionally around a
    source child (Kamaelia's PlugSplitter).

    Without ``sourceComponent``, what arrives on ``inbox`` goes to every data sink (and to
    ``outbox`` while it is linked), what arrives on ``control`` to every control sink (and to
    ``signal`` while linked); a ``ProducerFinished`` or ``ShutdownMicroprocess`` on
    ``control`` ends it after passing the message on. With ``sourceComponent``, that child's
    ``outbox`` and ``signal`` are what fans out, the splitter's ``inbox`` and ``control`` go
    to the child, and the splitter ends when the child has finished and its output is
    delivered.

    Add destinations with :class:`Plug`, or :class:`addsink` / :class:`removesink` on
    ``configuration``.
    """

    Inboxes = {
        "inbox": "data items to be fanned out (or passed to the source child)",
        "control": "shutdown signalling, and signalling to be fanned out",
        "configuration": "addsink(...) and removesink(...) request messages",
        "_inbox": "internal: the source child's outbox",
        "_control": "internal: the source child's signal",
    }
    Outboxes = {
        "outbox": "data items fanned out (while linked)",
        "signal": "control messages fanned out (while linked)",
    }

    def __init__(self, sourceComponent: Component | None = None, **argd: Any) -> None:
        super().__init__(**argd)
        self.source = sourceComponent
        if sourceComponent is not None:
            self.addChildren(sourceComponent)
            self.link((self, "inbox"), (sourceComponent, "inbox"), passthrough=1)
            self.link((self, "control"), (sourceComponent, "control"), passthrough=1)
            self.link((sourceComponent, "outbox"), (self, "_inbox"))
            self.link((sourceComponent, "signal"), (self, "_control"))
            boundInbox(self, "_inbox", self.inboxSize)
            self.inboxname = "_inbox"
            self.controlname = "_control"
        # a branch only while linked to an inbox (see _take)
        self._outboxOutlet = Outlet(self.outlets, "outbox", PAUSE, None, (self, "outbox"))

    def _controlFanOut(self) -> bool:
        return True

    def _take(self) -> int:
        # "outbox" is a branch only while linked: an unlinked outbox has nobody to drain it
        outbox = self._outboxOutlet
        if not self.outboxes["outbox"].final.isInbox:
            if outbox in self.outlets.outlets and not outbox.pending:
                self.outlets.outlets.remove(outbox)
        elif outbox not in self.outlets.outlets:
            self.outlets.outlets.insert(0, outbox)
        return super()._take()

    def _sourceDone(self) -> bool:
        return self.source is not None and self.source.finished.called

    def _passOn(self, msg: object) -> None:
        if self.outboxes["signal"].final.isInbox:
            self.send(msg, "signal")
        for outlet in self.controlOutlets:
            self.send(msg, outlet.boxname)


class Plug(Component):
    """
    Plug ``component`` into ``splitter`` (a :class:`PlugSplitter` or :class:`Splitter`) as
    a destination for as long as it runs (Kamaelia's Plug).

    The plug's ``inbox`` and ``control`` are the child's; the child's ``outbox`` and
    ``signal`` come out of the plug's. When the child has finished the plug unplugs and ends.
    ``policy`` and ``size`` are the branch's (see :class:`addsink`).
    """

    Inboxes = {
        "inbox": "incoming data for the child component",
        "control": "incoming control data for the child component",
    }
    Outboxes = {
        "outbox": "outgoing data from the child component",
        "signal": "outgoing control data from the child component",
        "splitter_config": "used to communicate with the target splitter",
    }

    def __init__(
        self,
        splitter: Component,
        component: Component,
        policy: str = PAUSE,
        size: int | None = None,
        **argd: Any,
    ) -> None:
        super().__init__(**argd)
        self.splitter = splitter
        self.child = component
        self.policy = policy
        self.size = size
        self.pluglinkage = self.link((self, "splitter_config"), (splitter, "configuration"))
        self.addChildren(component)
        self.link((self, "inbox"), (component, "inbox"), passthrough=1)
        self.link((self, "control"), (component, "control"), passthrough=1)
        self.link((component, "outbox"), (self, "outbox"), passthrough=2)
        self.link((component, "signal"), (self, "signal"), passthrough=2)

    def activate(self, scheduler: Scheduler | None = None) -> Component:
        if not self._active:
            # Plug in now, before anything runs: a splitter activated with this plug (a
            # Graphline of both) then has the plug before its first item. Kamaelia's plug
            # sends this in its first step, which Kamaelia's splitter (starting a round
            # later) still sees first; here the source could be done by then.
            self.send(
                addsink(self, "inbox", "control", policy=self.policy, size=self.size),
                "splitter_config",
            )
        return super().activate(scheduler)

    def main(self) -> Generator[int, None, None]:
        while not self.child.finished.called:
            self.pause()
            yield 1
        self.send(removesink(self, "inbox", "control"), "splitter_config")
        self.unlink(thelinkage=self.pluglinkage)


class TwoWaySplitter(Splitter):
    """
    Send every message from ``inbox`` out of both ``outbox`` and ``outbox2``, and control
    messages out of both ``signal`` and ``signal2`` (Kamaelia's TwoWaySplitter).

    Both branches are bounded (their inbox's own size, or ``size``); the splitter waits while
    either is full (``policy2="drop"`` makes ``outbox2`` drop instead). It ends on
    ``ProducerFinished`` once everything is delivered, or at once on ``ShutdownMicroprocess``.
    """

    Inboxes = {
        "inbox": "messages to send out of 'outbox' and 'outbox2'",
        "control": "shutdown signalling (also sent out of 'signal' and 'signal2')",
        "configuration": "NOT USED",
    }
    Outboxes = {
        "outbox": "the messages sent to 'inbox'",
        "outbox2": "the messages sent to 'inbox'",
        "signal": "the messages sent to 'control'",
        "signal2": "the messages sent to 'control'",
    }

    def __init__(
        self, size: int | None = None, policy: str = PAUSE, policy2: str | None = None, **argd: Any
    ) -> None:
        super().__init__(size=size, policy=policy, **argd)
        self.outlets.attach("outbox", policy, size)
        self.outlets.attach("outbox2", policy2 or policy, size)

    def _passOn(self, msg: object) -> None:
        self.send(msg, "signal")
        self.send(msg, "signal2")


class FanOut(PlugSplitter):
    """
    What :func:`fanOut` returns: a :class:`PlugSplitter` whose destinations are its children;
    it finishes when they all have (so a ``Pipeline`` around it ends when the last file is
    written), and fails with the first destination's failure if one failed (the others still
    get everything).
    """

    def __init__(
        self,
        *destinations: Component,
        size: int | None = None,
        drop: Any = (),
        **argd: Any,
    ) -> None:
        super().__init__(size=size, **argd)
        dropping = list(drop)
        for d in dropping:
            if not any(d is x for x in destinations):
                raise ValueError(f"drop names {d!r}, which is not one of the destinations")
        self.destinations = list(destinations)
        #: The first failure of a destination; ``finished`` fails with it at the end.
        self.failure: Failure | None = None
        for d in destinations:
            if not isinstance(d, Component):
                raise TypeError(f"fanOut takes components, not {type(d).__name__}: {d!r}")
            policy = DROP if any(d is x for x in dropping) else PAUSE
            self.addSink(d, "inbox", "control", policy=policy)
            d.finished.addBoth(self._destinationFinished)
        self.addChildren(*destinations)

    def _destinationFinished(self, result: Any) -> Any:
        self.unpause()
        if isinstance(result, Failure):
            # reported once: by this fan-out's own failure, at its end
            if self.failure is None:
                self.failure = result
            return None
        return result

    def main(self) -> Generator[int, None, None]:
        yield from super().main()
        while not all(d.finished.called for d in self.destinations):
            self.pause()
            yield 1
        if self.failure is not None:
            # a destination failed (a disk error, say): this fan-out did not do its job
            self.failure.raiseException()

    def _stop(self) -> None:
        # keep the links to the destinations: they end on the shutdown message passed on
        pass


def fanOut(*destinations: Component, size: int | None = None, drop: Any = ()) -> FanOut:
    """
    Send everything that reaches the returned component's ``inbox`` to the ``inbox`` of each
    of ``destinations``, and its ``control`` messages to their ``control``.

    Each branch is bounded (its inbox's own size, or ``size`` messages, default 64); the
    source waits while any is full, except for the destinations listed in ``drop``, which
    lose messages (counted) instead. The component finishes when every destination has.
    """
    return FanOut(*destinations, size=size, drop=drop)
