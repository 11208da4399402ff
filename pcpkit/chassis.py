"""
``Pipeline`` and ``Graphline``: components made of linked children (Kamaelia's chassis).

Both are components themselves: link them, nest them, wait on ``finished``. They finish when
all their children have finished (a child that finishes wakes its parent, as in Axon).

Shutdown follows Kamaelia's chassis:

* A ``Graphline`` whose ``("self", "control")`` is not linked passes every message arriving
  on its ``control`` to each child whose ``control`` inbox no linkage feeds; when all its
  children have finished, a ``Graphline`` whose ``("self", "signal")`` is not linked sends
  ``ProducerFinished`` on its ``signal`` (or the ``ShutdownMicroprocess`` it was told to stop
  with), so what follows it in a ``Pipeline`` stops too.
* A ``Pipeline``'s ``control`` leads to its first child and its last child's ``signal`` is
  its own, so its shutdown messages are its children's.

If a child fails, the failure has already travelled on the child's ``signal``
(``ErrorInformation`` then ``ProducerFinished``); the chassis also sends
``ShutdownMicroprocess`` to the ``control`` inbox of every child still running, so nothing is
left waiting on a component that is gone, and then fails ``finished`` with the first error.
"""

from __future__ import annotations

from collections.abc import Generator
from itertools import pairwise
from typing import Any

from twisted.python.failure import Failure

from pcpkit.component import Box, Component
from pcpkit.ipc import ProducerFinished, Shutdown, ShutdownMicroprocess

__all__ = ["Pipeline", "Graphline", "pipeline"]


class _Chassis(Component):
    """Shared behaviour: watch the children, stop the rest if one fails."""

    _firstFailure: Failure | None = None
    _adopted: tuple[Component, ...] = ()

    def _adopt(self, children: list[Component]) -> None:
        self.addChildren(*children)
        self._adopted = (*self._adopted, *children)
        for child in children:
            child.finished.addErrback(self._childFailed, child)

    def _childFailed(self, failure: Failure, child: Component) -> Failure:
        # Passed on: whoever awaits the child's own ``finished`` gets its error too (a
        # FileWriter's full disk). Consumed once the chassis finishes (_consumeFailures):
        # the chassis reports the first through its own ``finished``.
        if self._firstFailure is None:
            self._firstFailure = failure
        for other in self.children:
            if other is not child and not other._isStopped():
                ctl = other.inboxes.get("control")
                if ctl is not None:
                    ctl.final.forceDeliver(ShutdownMicroprocess(self, f"{child} failed"))
        return failure

    def _consumeFailures(self) -> None:
        for child in self._adopted:
            child.finished.addErrback(lambda _: None)

    def childrenDone(self) -> bool:
        """Whether every child has finished (Kamaelia's name)."""
        return all(c._isStopped() for c in self.children)

    def _handleControl(self) -> None:
        """Hook: look at this chassis's own ``control`` inbox while the children run."""

    def _allDone(self) -> None:
        """Hook: called once, when every child has finished."""

    def main(self) -> Generator[int, None, None]:
        # Woken by every message on our own boxes and by every child that finishes.
        while not self.childrenDone():
            self._handleControl()
            if not self.childrenDone():
                self.pause()
            yield 1
        self._handleControl()
        self._allDone()
        self._consumeFailures()
        if self._firstFailure is not None:
            self._firstFailure.raiseException()

    def _signalFailure(self, failure: Failure) -> None:
        # The failing child has signalled already; saying it twice would confuse the listener.
        pass


class Pipeline(_Chassis):
    """
    Children linked in a chain: each ``outbox`` to the next ``inbox``, each ``signal`` to the
    next ``control``. The pipeline's own ``inbox`` and ``control`` feed the first child; the
    last child's ``outbox`` and ``signal`` come out of the pipeline's.

    With ``circular=True`` (Kamaelia's option) the last child's ``outbox`` and ``signal``
    go back to the first child's ``inbox`` and ``control`` instead.

    Example::

        Pipeline(FileReader("in.bin"), Upper(), FileWriter("out.bin")).run()
    """

    circular = False

    def __init__(self, *components: Component, **argd: Any) -> None:
        super().__init__(**argd)
        if not components:
            raise ValueError("Pipeline needs at least one component")
        for c in components:
            if not isinstance(c, Component):
                raise TypeError(f"Pipeline takes components, not {type(c).__name__}: {c!r}")
        chain = list(components)
        self.components = chain
        self._adopt(chain)
        first, last = chain[0], chain[-1]
        for src, dst in pairwise(chain):
            self.link((src, "outbox"), (dst, "inbox"))
            self.link((src, "signal"), (dst, "control"))
        self.link((self, "inbox"), (first, "inbox"), passthrough=1)
        self.link((self, "control"), (first, "control"), passthrough=1)
        if self.circular:
            self.link((last, "outbox"), (first, "inbox"))
            self.link((last, "signal"), (first, "control"))
        else:
            self.link((last, "outbox"), (self, "outbox"), passthrough=2)
            self.link((last, "signal"), (self, "signal"), passthrough=2)


pipeline = Pipeline


class Graphline(_Chassis):
    """
    Named children wired by a ``linkages`` dict of ``(name, box) -> (name, box)``.

    The name ``"self"`` means the graphline's own boxes: ``("self", "inbox") -> ("a",
    "inbox")`` passes what reaches the graphline on to child ``a``; ``("b", "outbox") ->
    ("self", "outbox")`` passes ``b``'s output out. A box named this way that the graphline
    does not have yet is created: ``("self", "video")`` as a source makes an inbox ``video``,
    as a destination an outbox. Example::

        Graphline(
            linkages={("src", "outbox"): ("sink", "inbox"),
                      ("src", "signal"): ("sink", "control")},
            src=Source(), sink=Sink(),
        )

    Shutdown, as in Kamaelia: unless ``("self", "control")`` is linked, whatever arrives on
    the graphline's ``control`` is passed to every child whose ``control`` no linkage feeds;
    unless ``("self", "signal")`` is linked, the graphline sends ``ProducerFinished`` on its
    ``signal`` once all its children have finished (the ``ShutdownMicroprocess`` itself if
    that is what it received).
    """

    def __init__(
        self, linkages: dict[tuple[str, str], tuple[str, str]] | None = None, **components: Any
    ) -> None:
        children = {k: v for k, v in components.items() if isinstance(v, Component)}
        others = {k: v for k, v in components.items() if not isinstance(v, Component)}
        super().__init__(**others)
        self.components = children
        self.layout = dict(linkages or {})
        self._adopt(list(children.values()))
        fedControls: set[int] = set()
        self._controlPassthrough = False
        self._signalPassthrough = False
        self._stopMessage: Shutdown | None = None
        for (srcName, srcBox), (dstName, dstBox) in self.layout.items():
            src = self._named(srcName)
            dst = self._named(dstName)
            if src is self and dst is self:
                raise ValueError(f"linkage ('self', {srcBox!r}) -> ('self', {dstBox!r}) loops")
            if src is self:
                self._ensureBox(self.inboxes, srcBox, isInbox=True)
                self.link((self, srcBox), (dst, dstBox), passthrough=1)
                self._controlPassthrough |= srcBox == "control"
            elif dst is self:
                self._ensureBox(self.outboxes, dstBox, isInbox=False)
                self.link((src, srcBox), (self, dstBox), passthrough=2)
                self._signalPassthrough |= dstBox == "signal"
            else:
                self.link((src, srcBox), (dst, dstBox))
            if dstBox == "control":
                fedControls.add(id(dst))
        #: The children that receive what arrives on the graphline's own ``control``.
        self.controlTargets = [
            c for c in children.values() if id(c) not in fedControls and "control" in c.inboxes
        ]

    def _ensureBox(self, boxes: dict[str, Box], name: str, isInbox: bool) -> None:
        if name not in boxes:
            boxes[name] = Box(self, name, isInbox)

    def _named(self, name: str) -> Component:
        if name == "self":
            return self
        try:
            return self.components[name]
        except KeyError:
            raise KeyError(
                f"Graphline linkage names {name!r}, which is not one of its components "
                f"{sorted(self.components)} (or 'self')"
            ) from None

    def _handleControl(self) -> None:
        if self._controlPassthrough:
            return
        while self.dataReady("control"):
            msg = self.recv("control")
            for child in self.controlTargets:
                if not child._isStopped():
                    child.inboxes["control"].final.forceDeliver(msg)
            if isinstance(msg, ShutdownMicroprocess):
                self._stopMessage = msg

    def _allDone(self) -> None:
        if not self._signalPassthrough:
            stop = self._stopMessage or ProducerFinished(self)
            self._forceSend(stop, "signal")
