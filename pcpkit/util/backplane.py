"""
Publish/subscribe by name: :class:`Backplane`, :class:`PublishTo`, :class:`SubscribeTo`
(Kamaelia's ``Kamaelia.Util.Backplane``).

A :class:`Backplane` is a named :class:`~pcpkit.util.fanout.PlugSplitter`: whatever any
:class:`PublishTo` of that name receives goes to every :class:`SubscribeTo` of that name that
is running at the time. Publishers and subscribers join and leave at run time.

Every subscriber is bounded: what it sends on waits in the inbox it links to, up to that
inbox's own size or ``size`` messages (default 64). When a subscriber is full the backplane
either pauses its publishers (policy :data:`~pcpkit.util.outlets.PAUSE`, the default: nothing
is lost, and the slowest subscriber sets the pace) or drops messages for that subscriber only
(policy :data:`~pcpkit.util.outlets.DROP`: counted in :attr:`SubscribeTo.dropped`, logged, and
the others never wait for it). The policy is the backplane's, or the subscriber's own.

Names are per process; a second live backplane with the same name is an error.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pcpkit.component import Component, Linkage
from pcpkit.ipc import Shutdown
from pcpkit.util.fanout import PlugSplitter
from pcpkit.util.outlets import DEFAULT_GRACE, DROP, PAUSE, Outlet, boundInbox

__all__ = ["Backplane", "PublishTo", "SubscribeTo", "BackplaneExists", "findBackplane"]

_registry: dict[str, Backplane] = {}


class BackplaneExists(ValueError):
    """A backplane of that name is already running."""


def findBackplane(name: str) -> Backplane:
    """The live :class:`Backplane` called ``name``; ``LookupError`` naming it if none."""
    try:
        return _registry[name]
    except KeyError:
        raise LookupError(
            f"no Backplane named {name!r} is running (running: {sorted(_registry)})"
        ) from None


class Backplane(Component):
    """
    A named meeting point for publishers and subscribers.

    :param name: the name :class:`PublishTo` and :class:`SubscribeTo` use.
    :param size: the bound of a subscriber whose destination inbox has none (default 64).
    :param policy: what a full subscriber does: ``"pause"`` the publishers (default) or
        ``"drop"`` its messages once it has taken nothing for ``grace`` seconds.

    Boxes: ``inbox`` and ``outbox`` are not used; a shutdown message on ``control`` ends the
    backplane, is passed to every subscriber (which end too) and comes out of ``signal``.
    ``splitter`` is the :class:`~pcpkit.util.fanout.PlugSplitter` doing the work (its
    ``dropped`` and ``pauses`` count over all subscribers).
    """

    Inboxes = {
        "inbox": "NOT USED",
        "control": "shutdown signalling (shuts down the backplane and all subscribers)",
    }
    Outboxes = {"outbox": "NOT USED", "signal": "shutdown signalling"}

    def __init__(
        self,
        name: str,
        size: int | None = None,
        policy: str = PAUSE,
        grace: float = DEFAULT_GRACE,
        **argd: Any,
    ) -> None:
        super().__init__(**argd)
        if not isinstance(name, str):
            raise TypeError(f"a backplane name is a str, not {type(name).__name__}")
        if name in _registry:
            raise BackplaneExists(f"a Backplane named {name!r} is already running")
        self.backplaneName = name
        self.splitter = PlugSplitter(size=size, policy=policy, grace=grace)
        self.addChildren(self.splitter)
        self.link((self, "control"), (self.splitter, "control"), passthrough=1)
        self.link((self.splitter, "signal"), (self, "signal"), passthrough=2)
        _registry[name] = self
        self.splitter.finished.addBoth(self._splitterFinished)

    def __str__(self) -> str:
        return f"Backplane {self.backplaneName!r}"

    def _splitterFinished(self, result: Any) -> Any:
        if _registry.get(self.backplaneName) is self:
            del _registry[self.backplaneName]
        self.unpause()
        return result

    @property
    def dropped(self) -> int:
        """Messages dropped for full subscribers, over all subscribers."""
        return self.splitter.dropped

    def main(self) -> Generator[int, None, None]:
        while not self.splitter.finished.called:
            self.pause()
            yield 1


class PublishTo(Component):
    """
    Publish what arrives on ``inbox`` to the backplane named ``destination``.

    The inbox is linked straight to the backplane's (bounded) inbox: a publisher is held
    back, like any sender into a full inbox, while a ``"pause"`` subscriber is full. A
    shutdown message on ``control`` ends the publisher (not the backplane) and is passed on
    along ``signal``. A missing backplane fails the publisher with ``LookupError``.
    """

    Inboxes = {
        "inbox": "data to publish to the backplane",
        "control": "shutdown signalling (does not shut the backplane down)",
    }
    Outboxes = {"outbox": "NOT USED", "signal": "shutdown signalling"}

    def __init__(self, destination: str, **argd: Any) -> None:
        super().__init__(**argd)
        self.destination = destination
        self._linkage: Linkage | None = None
        # until it is linked to the backplane, what is sent to it waits here: bounded too
        boundInbox(self, "inbox")
        if destination in _registry:
            # link now, not when main starts: a sender waiting for room in our own inbox
            # would not be woken by room in the backplane's once the link moves its messages
            self._link(_registry[destination])

    def _link(self, backplane: Backplane) -> None:
        self._linkage = self.link((self, "inbox"), (backplane.splitter, "inbox"), passthrough=1)

    def main(self) -> Generator[int, None, None]:
        if self._linkage is None:
            self._link(findBackplane(self.destination))
        while True:
            while self.dataReady("control"):
                msg = self.recv("control")
                self.send(msg, "signal")
                if isinstance(msg, Shutdown):
                    self.unlink(thelinkage=self._linkage)
                    self._linkage = None
                    return
            self.pause()
            yield 1


class SubscribeTo(Component):
    """
    Send out of ``outbox`` everything published to the backplane named ``source`` from now
    until this subscriber ends.

    :param policy: ``"pause"`` or ``"drop"`` for this subscriber (default: the backplane's).
    :param size: this subscriber's bound when its destination inbox has none.

    What is published goes straight from the backplane to the inbox ``outbox`` links to,
    which holds at most its own size (or ``size``) messages. ``dropped`` counts the messages
    this subscriber lost to the ``"drop"`` policy. A shutdown message on ``control`` (or the
    backplane ending) ends the subscriber and is passed on along ``signal``.
    """

    Inboxes = {
        "inbox": "NOT USED",
        "control": "shutdown signalling (does not shut the backplane down)",
    }
    Outboxes = {
        "outbox": "data published to the backplane",
        "signal": "shutdown signalling",
    }

    def __init__(
        self, source: str, policy: str | None = None, size: int | None = None, **argd: Any
    ) -> None:
        super().__init__(**argd)
        if policy not in (None, PAUSE, DROP):
            raise ValueError(f"policy must be {PAUSE!r} or {DROP!r}, not {policy!r}")
        self.source = source
        self.policy = policy
        self.size = size
        #: This subscriber's branch of the backplane (``dropped``, ``peak``...), once joined.
        self.outlet: Outlet | None = None

    @property
    def dropped(self) -> int:
        """Messages this subscriber lost to the ``"drop"`` policy."""
        return self.outlet.dropped if self.outlet is not None else 0

    def main(self) -> Generator[int, None, None]:
        backplane = findBackplane(self.source)
        splitter = backplane.splitter
        # data straight to wherever our outbox leads; the backplane's control messages to us
        self.outlet = splitter.addSink(
            self, "outbox", None, passthrough=2, policy=self.policy, size=self.size
        )
        splitter.addSink(self, None, "control")
        try:
            while True:
                while self.dataReady("control"):
                    msg = self.recv("control")
                    self.send(msg, "signal")
                    if isinstance(msg, Shutdown):
                        return
                self.pause()
                yield 1
        finally:
            splitter.removeSink(self, "outbox", "control")
