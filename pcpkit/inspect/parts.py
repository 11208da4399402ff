"""
The opt-in registry of live pcpkit parts that :mod:`pcpkit.inspect` reads.

While it is off (the default), every instrumented module's ``inspectHook`` is ``None``:
making a component, a bridge, a proxy, a relay or a torrent stream costs one ``is None``
test, and nothing at all is done per message or per byte. :func:`enable` sets those hooks
(so everything made from then on is registered, in weak sets: the registry never keeps a
part alive) and finds the parts that already exist with one walk of the garbage
collector's objects, so the inspector can be turned on in a program that is already
running. Everything else is computed on demand from the registered objects
(:mod:`pcpkit.inspect.graph`).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from pcpkit import bridge, component, pcp
from pcpkit.internet import relay

__all__ = ["Registry", "disable", "enable", "isEnabled", "registry"]


def _streamModule() -> ModuleType | None:
    try:
        from pcpkit.torrent import stream
    except ImportError:  # pragma: no cover - libtorrent is an install requirement
        return None
    return stream


class Registry:
    """
    Weak sets of the live parts, by kind: :attr:`components` (every
    :class:`~pcpkit.component.Component`, chassis and threaded ones included),
    :attr:`bridges` (:class:`~pcpkit.bridge.InboxConsumer`,
    :class:`~pcpkit.bridge.OutboxProducer`), :attr:`proxies` (the byte proxies of
    :mod:`pcpkit.pcp`), :attr:`relays` (:class:`~pcpkit.internet.relay.Relay`) and
    :attr:`streams` (:class:`~pcpkit.torrent.stream.TorrentFileProducer`).
    """

    def __init__(self) -> None:
        self.components: weakref.WeakSet[Any] = weakref.WeakSet()
        self.bridges: weakref.WeakSet[Any] = weakref.WeakSet()
        self.proxies: weakref.WeakSet[Any] = weakref.WeakSet()
        self.relays: weakref.WeakSet[Any] = weakref.WeakSet()
        self.streams: weakref.WeakSet[Any] = weakref.WeakSet()
        self._kinds: list[tuple[type, weakref.WeakSet[Any]]] = [
            (component.Component, self.components),
            (bridge.InboxConsumer, self.bridges),
            (bridge.OutboxProducer, self.bridges),
            (pcp.BasicProducerConsumerProxy, self.proxies),
            (relay.Relay, self.relays),
        ]
        stream = _streamModule()
        if stream is not None:
            self._kinds.append((stream.TorrentFileProducer, self.streams))
        #: Called with each part as it is registered (``pcpkit.testing``'s fill recorder).
        self.listeners: list[Callable[[object], object]] = []

    def add(self, obj: object) -> None:
        """Register ``obj`` in the set of its kind (the modules' ``inspectHook``)."""
        for kind, members in self._kinds:
            if isinstance(obj, kind):
                if obj not in members:
                    members.add(obj)
                    for listener in list(self.listeners):
                        listener(obj)
                return

    def scan(self) -> int:
        """Register every instance of the known kinds that exists now; return how many."""
        kinds = tuple(kind for kind, _ in self._kinds)
        found = 0
        gc.collect()  # what is unreachable already is not live
        for obj in gc.get_objects():
            if isinstance(obj, kinds):
                self.add(obj)
                found += 1
        return found

    def __iter__(self) -> Iterator[Any]:
        for _, members in self._kinds:
            yield from list(members)

    def clear(self) -> None:
        for _, members in self._kinds:
            members.clear()


#: The process's registry (empty until :func:`enable`).
registry = Registry()
_enabledBy = 0


def _hookedModules() -> list[ModuleType]:
    modules: list[ModuleType] = [component, bridge, pcp, relay]
    stream = _streamModule()
    if stream is not None:
        modules.append(stream)
    return modules


def enable() -> Registry:
    """
    Turn the registry on (counted: each call needs one :func:`disable`); returns it.

    The first call registers what exists already (one pass over the garbage collector's
    objects) and sets the modules' hooks so that what is made later registers itself.
    """
    global _enabledBy
    _enabledBy += 1
    if _enabledBy == 1:
        for module in _hookedModules():
            setattr(module, "inspectHook", registry.add)  # noqa: B010 - typed as a module
        registry.scan()
    return registry


def disable() -> None:
    """Undo one :func:`enable`; the last one clears the hooks and forgets every part."""
    global _enabledBy
    if _enabledBy == 0:
        return
    _enabledBy -= 1
    if _enabledBy == 0:
        for module in _hookedModules():
            setattr(module, "inspectHook", None)  # noqa: B010
        registry.clear()


def isEnabled() -> bool:
    """Whether the registry is on."""
    return _enabledBy > 0
