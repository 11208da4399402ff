"""
``pcpkit.inspect``: see back-pressure live.

A read-only view of a running program's pcpkit parts -- components and their boxes, chassis,
bridges, byte proxies, relays, torrent streams -- with box fill levels, parked senders,
paused producers and, for each of them, the chain of parts it waits on down to the one that
is not draining. Turn it on from any program::

    import pcpkit.inspect
    pcpkit.inspect.serve("tcp:8090:interface=127.0.0.1")   # then open http://127.0.0.1:8090/

or with ``--inspect ENDPOINT`` on ``twistd pcpkit relay|torrent|demo`` and ``pcpkit demo``.
Off (the default) it costs nothing: see :mod:`pcpkit.inspect.parts`. The page, the JSON
contract of ``/graph.json`` and a walk-through are in ``docs/inspect.rst``.
"""

from __future__ import annotations

from pcpkit.inspect.graph import DEFAULT_FULL_THRESHOLD, Inspector, formatWaitsOn
from pcpkit.inspect.parts import Registry, disable, enable, isEnabled, registry
from pcpkit.inspect.web import (
    DEFAULT_ENDPOINT,
    InspectServer,
    InspectService,
    inspectResource,
    serve,
)

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_FULL_THRESHOLD",
    "InspectServer",
    "InspectService",
    "Inspector",
    "Registry",
    "disable",
    "enable",
    "formatWaitsOn",
    "inspectResource",
    "isEnabled",
    "registry",
    "serve",
    "snapshot",
]


def snapshot(fullThreshold: float = DEFAULT_FULL_THRESHOLD) -> dict[str, object]:
    """
    One snapshot of every registered part (turn the registry on with :func:`enable` first,
    or this finds nothing). Time spent full needs repeated snapshots from one
    :class:`Inspector`; this one-off call has none.
    """
    return Inspector(fullThreshold=fullThreshold).snapshot()
