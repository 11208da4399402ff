"""
``Pipeline`` and ``Graphline``: components made of linked children (Kamaelia's chassis).

Both are components themselves: link them, nest them, wait on ``finished``. They finish when
all their children have finished. If a child fails, the failure has already travelled on the
child's ``signal`` (``ErrorInformation`` then ``ProducerFinished``); the chassis also sends
``ShutdownMicroprocess`` to the ``control`` inbox of every child still running, so nothing is
left waiting on a component that is gone, and then fails ``finished`` with the first error.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from twisted.internet.defer import DeferredList
from twisted.python.failure import Failure

from pcpkit.component import Component
from pcpkit.ipc import ShutdownMicroprocess

__all__ = ["Pipeline", "Graphline", "pipeline"]


class _Chassis(Component):
    """Shared behaviour: watch the children, stop the rest if one fails."""

    def _adopt(self, children: list[Component]) -> None:
        self.addChildren(*children)
        for child in children:
            child.finished.addErrback(self._childFailed, child)

    def _childFailed(self, failure: Failure, child: Component) -> Failure:
        for other in self.children:
            if other is not child and not other.finished.called:
                ctl = other.inboxes.get("control")
                if ctl is not None:
                    ctl.final.forceDeliver(ShutdownMicroprocess(self, f"{child} failed"))
        return failure

    async def main(self) -> Any:
        results = await DeferredList(
            [c.finished for c in self.children], consumeErrors=True
        )
        for ok, value in results:
            if not ok:
                assert isinstance(value, Failure)
                value.raiseException()
        return None

    def _signalFailure(self, failure: Failure) -> None:
        # The failing child has signalled already; saying it twice would confuse the listener.
        pass


class Pipeline(_Chassis):
    """
    Children linked in a chain: each ``outbox`` to the next ``inbox``, each ``signal`` to the
    next ``control``. The pipeline's own ``inbox`` and ``control`` feed the first child; the
    last child's ``outbox`` and ``signal`` come out of the pipeline's.

    Example::

        Pipeline(FileReader("in.bin"), Upper(), FileWriter("out.bin")).run()
    """

    def __init__(self, *components: Component, **argd: Any) -> None:
        super().__init__(**argd)
        if not components:
            raise ValueError("Pipeline needs at least one component")
        for c in components:
            if not isinstance(c, Component):
                raise TypeError(f"Pipeline takes components, not {type(c).__name__}: {c!r}")
        chain = list(components)
        self._adopt(chain)
        first, last = chain[0], chain[-1]
        for src, dst in pairwise(chain):
            self.link((src, "outbox"), (dst, "inbox"))
            self.link((src, "signal"), (dst, "control"))
        self.link((self, "inbox"), (first, "inbox"), passthrough=1)
        self.link((self, "control"), (first, "control"), passthrough=1)
        self.link((last, "outbox"), (self, "outbox"), passthrough=2)
        self.link((last, "signal"), (self, "signal"), passthrough=2)


pipeline = Pipeline


class Graphline(_Chassis):
    """
    Named children wired by a ``linkages`` dict of ``(name, box) -> (name, box)``.

    The name ``"self"`` means the graphline's own boxes: ``("self", "inbox") -> ("a",
    "inbox")`` passes what reaches the graphline on to child ``a``; ``("b", "outbox") ->
    ("self", "outbox")`` passes ``b``'s output out. Example::

        Graphline(
            linkages={("src", "outbox"): ("sink", "inbox"),
                      ("src", "signal"): ("sink", "control")},
            src=Source(), sink=Sink(),
        )
    """

    def __init__(
        self, linkages: dict[tuple[str, str], tuple[str, str]] | None = None, **components: Any
    ) -> None:
        children = {k: v for k, v in components.items() if isinstance(v, Component)}
        others = {k: v for k, v in components.items() if not isinstance(v, Component)}
        super().__init__(**others)
        self.components = children
        self._adopt(list(children.values()))
        for (srcName, srcBox), (dstName, dstBox) in (linkages or {}).items():
            src = self._named(srcName)
            dst = self._named(dstName)
            if src is self and dst is self:
                raise ValueError(f"linkage ('self', {srcBox!r}) -> ('self', {dstBox!r}) loops")
            if src is self and srcBox in self.inboxes:
                self.link((self, srcBox), (dst, dstBox), passthrough=1)
            elif dst is self and dstBox in self.outboxes:
                self.link((src, srcBox), (self, dstBox), passthrough=2)
            else:
                self.link((src, srcBox), (dst, dstBox))

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
