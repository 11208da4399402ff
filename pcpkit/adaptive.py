"""
``AdaptiveCommsComponent``: a component that adds and deletes inboxes and outboxes while it
runs (Axon's ``Axon.AdaptiveCommsComponent.AdaptiveCommsComponent``).

For programs whose boxes follow their peers: a server with an inbox per connection, a
fan-out with an outbox per subscriber. Beside the boxes it can *track resources*: remember
which resource (a connection handler, a subscriber) goes with an inbox, or with a bundle of
boxes and information, as Axon's does.

Deleting a box takes it out of every link first, so nothing is delivered into a dead box:

* every link into or out of the box is removed, the ones this component made (its
  ``postoffice``) and the ones others made (found through the box's ``sources`` and
  ``target``). An outbox that led into a deleted inbox is unlinked as by ``unlink``: what is
  sent into it afterwards waits there until it is linked again (it is not lost, and it
  reaches no dead box);
* messages still queued in a deleted box are dropped with it, as in Axon (a log line says
  how many);
* senders waiting on a deleted inbox -- parked by a parking bound, told ``BoxFull`` by an
  Axon bound, or in ``await put()`` -- are woken, and their next send goes into their own
  (now unlinked) outbox;
* ``send``, ``recv`` and ``dataReady`` naming a deleted box raise
  :class:`~pcpkit.component.UnknownBox` (a ``KeyError``, as in Axon).

``addInbox(name)`` returns ``name`` when no box of that kind has it, as Axon's does, and
otherwise a variant with a number appended. A deleted box's name is used again only when the
deletion found and removed every ``Linkage`` that referred to the box. A link made by a third
component (a ``Graphline`` linking two of its children) is removed too, but its ``Linkage``
stays in that component's ``postoffice`` (where :mod:`pcpkit.inspect` reads links, naming boxes
by owner and name), so the names of both its boxes are retired for good rather than let a new
box be taken for one the old ``Linkage`` names.

Resource tracking is plain bookkeeping, as in Axon: deleting an inbox does not forget the
resource tracked for it (``ceaseTrackingResource`` does, for bundles).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.logger import Logger

from pcpkit.component import Box, Component, Linkage, UnknownBox, unlinkBoxes

__all__ = ["AdaptiveCommsComponent"]

_log = Logger()

#: The numbers appended to a requested name that is taken (Axon uses its global id counter).
_suffixes = itertools.count(1)


class AdaptiveCommsComponent(Component):
    """
    A :class:`~pcpkit.component.Component` that can add and delete boxes at run time (Axon's
    ``AdaptiveCommsComponent``); see the module documentation for what deletion does.

    Its declared boxes are those of ``Component`` (``Inboxes``: ``inbox``, ``control``;
    ``Outboxes``: ``outbox``, ``signal``) or a subclass's; the boxes it adds are ordinary
    boxes of the same component (``send``, ``recv``, ``dataReady``, ``link``,
    ``setInboxSize`` all take their names).
    """

    def __init__(self, *args: Any, **argd: Any) -> None:
        super().__init__(*args, **argd)
        self._resourceLookup: dict[str, Any] = {}
        self._resourceStore: dict[Any, tuple[Sequence[str], Sequence[str], Any]] = {}
        # names of deleted boxes that a link we could not remove may still name
        self._retiredInboxes: set[str] = set()
        self._retiredOutboxes: set[str] = set()
        # live boxes of ours that such a link names at its other end
        self._staleNamed: set[Box] = set()

    # -- boxes ------------------------------------------------------------------------------

    def newBox(self, name: str, isInbox: bool) -> Box:
        """The box ``addInbox`` / ``addOutbox`` add (a subclass may make its own kind)."""
        return Box(self, name, isInbox)

    def addInbox(self, name: str = "inbox") -> str:
        """
        Add an inbox named *after* ``name`` and return its name: ``name`` itself if no inbox
        has it, else ``name`` with a number appended.
        """
        name = _freshName(name, self.inboxes, self._retiredInboxes)
        self.inboxes[name] = self.newBox(name, True)
        return name

    def addOutbox(self, name: str = "outbox") -> str:
        """
        Add an outbox named *after* ``name`` and return its name: ``name`` itself if no
        outbox has it, else ``name`` with a number appended.
        """
        name = _freshName(name, self.outboxes, self._retiredOutboxes)
        self.outboxes[name] = self.newBox(name, False)
        return name

    def deleteInbox(self, name: str) -> None:
        """
        Delete inbox ``name``: unlink it from everything, drop the messages still in it, wake
        the senders waiting on it. :class:`~pcpkit.component.UnknownBox` if there is none.
        """
        box = self.inboxes.get(name)
        if box is None:
            raise UnknownBox(
                f"{self!r} has no inbox {name!r} to delete; its inboxes are {sorted(self.inboxes)}"
            )
        del self.inboxes[name]
        if not self._retire(box):
            self._retiredInboxes.add(name)

    def deleteOutbox(self, name: str) -> None:
        """
        Delete outbox ``name``: unlink it from everything and drop the messages still waiting
        in it (sent while it was not linked). :class:`~pcpkit.component.UnknownBox` if there
        is none.
        """
        box = self.outboxes.get(name)
        if box is None:
            raise UnknownBox(
                f"{self!r} has no outbox {name!r} to delete; its outboxes are "
                f"{sorted(self.outboxes)}"
            )
        del self.outboxes[name]
        if not self._retire(box):
            self._retiredOutboxes.add(name)

    def _retire(self, box: Box) -> bool:
        """
        Take deleted ``box`` out of every link, empty it and wake its waiters. True when no
        ``Linkage`` left anywhere names it (so its name may be used again).
        """
        clean = box not in self._staleNamed
        self._staleNamed.discard(box)
        links = [(src, box) for src in list(box.sources)]
        if box.target is not None:
            links.append((box, box.target))
        for src, dst in links:
            lk = _findLinkage(src, dst, (self, src.owner, dst.owner))
            if lk is None:
                # Made by a component we cannot see: unlink the boxes all the same.
                clean = False
                lk = Linkage(src, dst, 0, None)
                other = src if dst is box else dst
                if isinstance(other.owner, AdaptiveCommsComponent):
                    # the Linkage left behind names that box too, should it be deleted
                    other.owner._staleNamed.add(other)
            unlinkBoxes(lk)
        dropped = len(box)
        while len(box):
            box.take()
        if dropped:
            _log.info(
                "{component} deleted {kind} {name!r} with {count} messages in it: dropped",
                component=self,
                kind="inbox" if box.isInbox else "outbox",
                name=box.name,
                count=dropped,
            )
        # Whoever waits for room in it (parked, told BoxFull, in put) goes on now.
        box.fireWaiters()
        return clean

    # -- resources --------------------------------------------------------------------------

    def trackResource(self, resource: Any, inbox: str) -> None:
        """Remember ``resource`` as going with inbox ``inbox`` (which must exist)."""
        if inbox not in self.inboxes:
            raise UnknownBox(
                f"{self!r} has no inbox {inbox!r} to track a resource for; its inboxes are "
                f"{sorted(self.inboxes)}"
            )
        self._resourceLookup[inbox] = resource

    def retrieveTrackedResource(self, inbox: str) -> Any:
        """The resource tracked for inbox ``inbox``; ``KeyError`` if there is none."""
        try:
            return self._resourceLookup[inbox]
        except KeyError:
            raise KeyError(f"{self!r} tracks no resource for inbox {inbox!r}") from None

    def trackResourceInformation(
        self, resource: Any, inboxes: Iterable[str], outboxes: Iterable[str], information: Any
    ) -> None:
        """
        Remember ``(inboxes, outboxes, information)`` for ``resource``; the boxes named must
        exist (:class:`~pcpkit.component.UnknownBox` otherwise, and nothing is stored).
        """
        inboxes, outboxes = list(inboxes), list(outboxes)
        for names, boxes, kind in (
            (inboxes, self.inboxes, "inbox"),
            (outboxes, self.outboxes, "outbox"),
        ):
            for n in names:
                if n not in boxes:
                    raise UnknownBox(
                        f"{self!r} has no {kind} {n!r} to track with {resource!r}; its "
                        f"{kind}es are {sorted(boxes)}"
                    )
        self._resourceStore[resource] = (inboxes, outboxes, information)

    def retrieveTrackedResourceInformation(
        self, resource: Any
    ) -> tuple[Sequence[str], Sequence[str], Any]:
        """``(inboxes, outboxes, information)`` stored for ``resource``; ``KeyError`` if none."""
        try:
            return self._resourceStore[resource]
        except KeyError:
            raise KeyError(f"{self!r} tracks no resource {resource!r}") from None

    def ceaseTrackingResource(self, resource: Any) -> None:
        """Forget what was stored for ``resource``; ``KeyError`` if nothing was."""
        try:
            del self._resourceStore[resource]
        except KeyError:
            raise KeyError(f"{self!r} tracks no resource {resource!r}") from None


def _freshName(name: str, boxes: dict[str, Box], retired: set[str]) -> str:
    while name in boxes or name in retired:
        name = f"{name}{next(_suffixes)}"
    return name


def _findLinkage(src: Box, dst: Box, creators: Iterable[object]) -> Linkage | None:
    """The ``Linkage`` from ``src`` to ``dst`` in one of ``creators``' postoffices."""
    for c in creators:
        for lk in getattr(c, "postoffice", ()):
            if lk.source is src and lk.sink is dst:
                return lk  # type: ignore[no-any-return]
    return None
