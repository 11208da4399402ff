"""
Typed access to the Twisted things mypy cannot see through.

``twisted.internet.reactor`` is installed at run time, so its static type is an opaque module;
and ``Failure()`` (capture the current exception) is an untyped call. Everything in pcpkit
goes through these helpers instead of sprinkling ``type: ignore``.
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure

__all__ = [
    "getReactor",
    "currentFailure",
    "inReactorThread",
    "clientEndpoint",
    "serverEndpoint",
    "connectProtocol",
]


def getReactor() -> Any:
    """The global reactor (looked up on each call, so tests may install another first)."""
    from twisted.internet import reactor

    return reactor


def currentFailure() -> Failure:
    """A :class:`Failure` for the exception being handled."""
    return Failure()  # type: ignore[no-untyped-call,unused-ignore]


def inReactorThread() -> bool:
    """Whether the caller runs on the reactor's thread."""
    from twisted.python import threadable

    return bool(threadable.isInIOThread())  # type: ignore[no-untyped-call,unused-ignore]


def clientEndpoint(description: str, reactor: Any = None) -> Any:
    """``clientFromString`` on ``reactor`` (the global one by default)."""
    from twisted.internet.endpoints import clientFromString

    return clientFromString(  # type: ignore[no-untyped-call,unused-ignore]
        getReactor() if reactor is None else reactor, description
    )


def serverEndpoint(description: str, reactor: Any = None) -> Any:
    """``serverFromString`` on ``reactor`` (the global one by default)."""
    from twisted.internet.endpoints import serverFromString

    return serverFromString(  # type: ignore[no-untyped-call,unused-ignore]
        getReactor() if reactor is None else reactor, description
    )


def connectProtocol(endpoint: Any, protocol: Any) -> Any:
    """``endpoints.connectProtocol``, typed: a Deferred firing with ``protocol``."""
    from twisted.internet import endpoints

    return endpoints.connectProtocol(endpoint, protocol)  # type: ignore[no-untyped-call,unused-ignore]
